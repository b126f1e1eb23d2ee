//! CPU placement: the [`CpuList`] type (taskset's cpu-list syntax, `0-1,3`),
//! the CPUs this process may use, pinning the calling thread, running a
//! spawn (of a child process or of in-process threads) on given CPUs, and
//! reading back from /proc where a process or thread is allowed to run.
//!
//! Children and threads inherit the CPU mask of the thread that creates them,
//! so [`on_cpus`] pins the calling thread, runs the spawn and restores the
//! thread's previous mask: no `pre_exec`, and no other thread of ncbench (nor
//! threads a child starts later) ever sees a half-applied mask.
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::{Child, Command};

/// A set of CPU numbers, parsed from and printed as a cpu-list (`0-1,3`).
/// Sorted and without duplicates, so two lists naming the same CPUs are equal
/// and print the same, in the kernel's `Cpus_allowed_list` form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(Vec<usize>);

const SYNTAX_HINT: &str = "write a list like \"0\", \"0,2\", \"0-3\" or \"0-1,3\"";

impl CpuList {
    /// Parses taskset's cpu-list syntax: comma-separated CPU numbers and
    /// inclusive ranges. The error is a one-line problem text.
    pub fn parse(text: &str) -> Result<CpuList, String> {
        let max = CpuSet::count() - 1;
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("empty CPU list ({SYNTAX_HINT})"));
        }
        // `what` names the whole item in the error, so "1-x" reads as a bad range.
        let number = |s: &str, what: &str| -> Result<usize, String> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("`{what}` is not a {} ({SYNTAX_HINT})", {
                    if what.contains('-') {
                        "CPU range"
                    } else {
                        "CPU number"
                    }
                }));
            }
            match s.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(format!("CPU {s} is beyond the largest CPU number ({max})")),
            }
        };
        let mut cpus = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("`{text}` has an empty item ({SYNTAX_HINT})"));
            }
            match item.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (number(lo, item)?, number(hi, item)?);
                    if lo > hi {
                        return Err(format!("range `{item}` runs backwards (write {hi}-{lo})"));
                    }
                    cpus.extend(lo..=hi);
                }
                None => cpus.push(number(item, item)?),
            }
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }

    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first CPU of `self` that `allowed` lacks.
    pub fn first_outside(&self, allowed: &CpuList) -> Option<usize> {
        self.0
            .iter()
            .copied()
            .find(|c| allowed.0.binary_search(c).is_err())
    }

    fn to_cpuset(&self) -> io::Result<CpuSet> {
        let mut set = CpuSet::new();
        for &c in &self.0 {
            set.set(c)?;
        }
        Ok(set)
    }

    fn from_cpuset(set: &CpuSet) -> CpuList {
        CpuList(
            (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect(),
        )
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            if start != self.0[0] {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl std::str::FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuList::parse(s)
    }
}

/// `[placement]` after validation: where each role runs (`None` = not pinned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// ncbench's driver threads (and their pacers).
    pub generator: Option<CpuList>,
    /// Every proxy under test: nutcracker, the ncproxy binary, in-process ncproxy threads.
    pub proxies: Option<CpuList>,
    /// redis-server backends and the embedded backend thread.
    pub backends: Option<CpuList>,
}

impl Placement {
    /// Whether any role is pinned.
    pub fn is_set(&self) -> bool {
        self.generator.is_some() || self.proxies.is_some() || self.backends.is_some()
    }
}

/// The CPUs this process may run on (the affinity of its main thread, which
/// ncbench only pins for the moment of a spawn).
pub fn allowed_cpus() -> io::Result<CpuList> {
    Ok(CpuList::from_cpuset(&sched_getaffinity(Pid::this())?))
}

/// Pid 0 means the calling thread for sched_{get,set}affinity.
fn this_thread() -> Pid {
    Pid::from_raw(0)
}

/// Pins the calling thread (and the threads and processes it starts from now on).
pub fn pin_current_thread(cpus: &CpuList) -> io::Result<()> {
    sched_setaffinity(this_thread(), &cpus.to_cpuset()?)?;
    Ok(())
}

/// Puts the calling thread's previous mask back when dropped, also on panic.
struct RestoreMask(CpuSet);

impl Drop for RestoreMask {
    fn drop(&mut self) {
        // Restoring a mask the thread had a moment ago cannot meaningfully fail.
        let _ = sched_setaffinity(this_thread(), &self.0);
    }
}

/// Runs `f` with the calling thread pinned to `cpus` (unchanged when `None`),
/// then restores the thread's mask. Whatever `f` starts (threads, child
/// processes) inherits `cpus` and keeps it.
pub fn on_cpus<T>(cpus: Option<&CpuList>, f: impl FnOnce() -> T) -> io::Result<T> {
    let Some(cpus) = cpus else {
        return Ok(f());
    };
    let previous = sched_getaffinity(this_thread())?;
    pin_current_thread(cpus)?;
    let _restore = RestoreMask(previous);
    Ok(f())
}

/// Spawns `cmd` so that the child starts on `cpus` (unchanged when `None`).
pub fn spawn_on(cmd: &mut Command, cpus: Option<&CpuList>) -> io::Result<Child> {
    on_cpus(cpus, || cmd.spawn())?
}

/// `Cpus_allowed_list` of a /proc status file (`/proc/PID/status`, ...).
fn cpus_allowed_in(status: &Path) -> Option<String> {
    std::fs::read_to_string(status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// Where process `pid` (its main thread) may run, as the kernel reports it;
/// `"unknown"` when /proc cannot tell (the process is gone, no /proc).
pub fn cpus_allowed_of_process(pid: u32) -> String {
    cpus_allowed_in(Path::new(&format!("/proc/{pid}/status"))).unwrap_or_else(|| "unknown".into())
}

/// Where the calling thread may run, as the kernel reports it.
pub fn cpus_allowed_of_this_thread() -> String {
    cpus_allowed_in(Path::new("/proc/thread-self/status")).unwrap_or_else(|| "unknown".into())
}

/// Thread ids of this process.
pub fn thread_ids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Name and allowed CPUs of thread `tid` of this process (None when it is gone).
pub fn thread_name_and_cpus(tid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    Some((field("Name:")?, field("Cpus_allowed_list:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_lists() {
        for (text, canonical) in [
            ("0", "0"),
            ("0,2", "0,2"),
            ("0-3", "0-3"),
            ("0-1,3", "0-1,3"),
            ("3,0,1", "0-1,3"),
            ("1,1,0-1", "0-1"),
            (" 0 , 2-3 ", "0,2-3"),
            ("5-5", "5"),
        ] {
            assert_eq!(
                CpuList::parse(text).unwrap().to_string(),
                canonical,
                "{text}"
            );
        }
        assert_eq!(CpuList::parse("0-1,3").unwrap().cpus(), &[0, 1, 3]);
    }

    #[test]
    fn rejects_bad_syntax() {
        for (text, problem) in [
            ("", "empty CPU list"),
            ("a", "`a` is not a CPU number"),
            ("3-1", "range `3-1` runs backwards"),
            ("1,,2", "`1,,2` has an empty item"),
            ("1,", "has an empty item"),
            ("-1", "`-1` is not a CPU range"),
            ("1-", "`1-` is not a CPU range"),
            ("0-1-2", "`0-1-2` is not a CPU range"),
            ("0-3:2", "`0-3:2` is not a CPU range"),
            ("99999", "CPU 99999 is beyond the largest CPU number"),
        ] {
            let e = CpuList::parse(text).unwrap_err();
            assert!(e.contains(problem), "{text:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn first_outside_finds_missing_cpus() {
        let allowed = CpuList::parse("0-1").unwrap();
        assert_eq!(CpuList::parse("0").unwrap().first_outside(&allowed), None);
        assert_eq!(
            CpuList::parse("1,3-4").unwrap().first_outside(&allowed),
            Some(3)
        );
    }

    #[test]
    fn pinning_shows_in_proc_and_is_undone() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let before = cpus_allowed_of_this_thread();
        assert_eq!(before, allowed.to_string());
        let last = CpuList(vec![*allowed.cpus().last().unwrap()]);
        // A thread started while pinned keeps the mask; the caller gets its own back.
        let seen = on_cpus(Some(&last), || {
            std::thread::spawn(cpus_allowed_of_this_thread)
                .join()
                .unwrap()
        })
        .unwrap();
        assert_eq!(seen, last.to_string());
        assert_eq!(cpus_allowed_of_this_thread(), before);
        // So does a child process.
        let mut child = spawn_on(
            Command::new("sleep")
                .arg("5")
                .stdout(std::process::Stdio::null()),
            Some(&last),
        )
        .unwrap();
        let child_cpus = cpus_allowed_of_process(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(child_cpus, last.to_string());
        assert_eq!(cpus_allowed_of_this_thread(), before);
    }
}
