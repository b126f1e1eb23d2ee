//! Child processes: redis-server, memcached, nutcracker and ncproxy.
//!
//! Every handle owns its child and a temp directory (config, logs, redis's
//! working dir). Dropping the handle sends SIGKILL, reaps the child, releases
//! the port leases and deletes the directory (set `NC_HARNESS_KEEP=1` to keep
//! the directories for post-mortem reading; their paths are printed).
//!
//! All children are spawned from one long-lived helper thread with
//! `PR_SET_PDEATHSIG = SIGKILL` (Linux), so they are killed by the kernel when
//! the harness process dies without running destructors (a test binary killed
//! by a timeout, an abort, ^C).

mod memcached;
mod proxy;
mod redis;

pub use memcached::Memcached;
pub use proxy::{ncproxy_bin, ListenAddr, Ncproxy, Nutcracker, ProxyKind, ProxyProcess};
pub use redis::RedisServer;

use crate::Error;
use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a start waits for a child to answer.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start attempt is repeated after a bind failure.
pub(crate) const START_ATTEMPTS: usize = 5;
/// How much of a log goes into an error message.
const LOG_TAIL: usize = 4_000;

/// Finds a binary: `$env_var` if set (it must then exist), else `PATH`, else
/// the given fixed locations.
///
/// ```no_run
/// let p = nc_harness::find_binary("redis-server", "REDIS_SERVER_BIN",
///     &["/usr/bin/redis-server"], "apt-get install redis-server").unwrap();
/// ```
pub fn find_binary(
    name: &str,
    env_var: &str,
    fallbacks: &[&str],
    install_hint: &str,
) -> Result<PathBuf, Error> {
    let over = env::var_os(env_var).filter(|v| !v.is_empty());
    let path = env::var_os("PATH").unwrap_or_default();
    find_binary_in(
        name,
        env_var,
        over.as_deref().map(Path::new),
        &path,
        fallbacks,
        install_hint,
    )
}

/// [`find_binary`] with explicit inputs (testable without touching the
/// process environment).
pub(crate) fn find_binary_in(
    name: &str,
    env_var: &str,
    over: Option<&Path>,
    path: &std::ffi::OsStr,
    fallbacks: &[&str],
    install_hint: &str,
) -> Result<PathBuf, Error> {
    if let Some(p) = over {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(Error::BadOverride {
                env: env_var.to_string(),
                path: p.display().to_string(),
            })
        };
    }
    for dir in env::split_paths(path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    for f in fallbacks {
        let p = Path::new(f);
        if is_executable(p) {
            return Ok(p.to_path_buf());
        }
    }
    Err(Error::BinaryNotFound {
        name: name.to_string(),
        env: env_var.to_string(),
        fallbacks: fallbacks.join(", "),
        hint: install_hint.to_string(),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread (see module docs).
pub(crate) fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnJob>();
            thread::Builder::new()
                .name("nc-harness-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        set_death_signal(&mut cmd);
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawn the nc-harness spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("nc-harness spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("nc-harness spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn set_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls the
    // async-signal-safe prctl(2); it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_death_signal(_cmd: &mut Command) {}

/// A backend process that tests stop, restart on the same port, pause and
/// resume: what `RedisServer` and `Memcached` share.
#[derive(Debug)]
pub(crate) struct ChildSlot {
    child: Option<ManagedChild>,
    /// Named in the error when a stopped child is signalled.
    what: &'static str,
}

impl ChildSlot {
    pub(crate) fn new(child: ManagedChild, what: &'static str) -> ChildSlot {
        ChildSlot {
            child: Some(child),
            what,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ManagedChild::pid)
    }

    /// Kills the child (SIGKILL + reap).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Stops the child, then calls `launch` until it succeeds or
    /// START_TIMEOUT passes: the old socket may linger briefly.
    pub(crate) fn restart(
        &mut self,
        mut launch: impl FnMut() -> Result<ManagedChild, Error>,
    ) -> Result<(), Error> {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match launch() {
                Ok(c) => {
                    self.child = Some(c);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, ...) to the running child.
    pub(crate) fn signal(&mut self, sig: i32) -> std::io::Result<()> {
        let what = self.what;
        self.child
            .as_mut()
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotConnected, format!("{what} stopped"))
            })?
            .signal(sig)
    }

    /// Whether the process is alive (a paused one counts as running).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.exited().is_none())
    }
}

/// A child that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ManagedChild {
    child: Child,
    status: Option<ExitStatus>,
}

impl ManagedChild {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to `out`.
    pub(crate) fn spawn(mut cmd: Command, out: &Path) -> Result<Self, Error> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
        let file2 = file.try_clone().map_err(|e| Error::io("dup log file", e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(file2));
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = spawn(cmd).map_err(|e| Error::io(format!("spawn {program}"), e))?;
        Ok(ManagedChild {
            child,
            status: None,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited (never blocks).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `sig` to a running child.
    pub(crate) fn signal(&mut self, sig: i32) -> io::Result<()> {
        if self.exited().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "child has already exited",
            ));
        }
        let pid = libc::pid_t::try_from(self.pid()).map_err(io::Error::other)?;
        // SAFETY: kill(2) with the pid of our own un-reaped child (it cannot
        // have been recycled: we have not waited for it yet).
        let rc = unsafe { libc::kill(pid, sig) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// SIGKILL and reap; idempotent.
    pub(crate) fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates the per-child temp directory.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, Error> {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("nc-harness-{prefix}-"))
        .tempdir()
        .map_err(|e| Error::io("create temp dir", e))?;
    if env::var_os("NC_HARNESS_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
        dir.disable_cleanup(true);
        eprintln!("nc-harness: keeping {}", dir.path().display());
    }
    Ok(dir)
}

/// The last [`LOG_TAIL`] bytes of the given files, labelled.
pub(crate) fn log_tail(files: &[&Path]) -> String {
    let mut out = String::new();
    for f in files {
        let text = fs::read(f).unwrap_or_default();
        let start = text.len().saturating_sub(LOG_TAIL);
        let tail = String::from_utf8_lossy(&text[start..]);
        if !tail.trim().is_empty() {
            out.push_str(&format!("[{}]\n{}\n", f.display(), tail.trim_end()));
        }
    }
    if out.is_empty() {
        out.push_str("(no output)");
    }
    out
}

/// Whether a child's output says it could not bind its port.
pub(crate) fn looks_like_bind_failure(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("addrinuse")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn find_binary_prefers_override_then_path_then_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-tool");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();

        let found =
            find_binary_in("fake-tool", "X", None, dir.path().as_os_str(), &[], "").unwrap();
        assert_eq!(found, bin);

        let via_override =
            find_binary_in("other", "X", Some(&bin), OsStr::new(""), &[], "").unwrap();
        assert_eq!(via_override, bin);

        let fallback = bin.to_str().unwrap();
        let via_fallback = find_binary_in(
            "nope",
            "X",
            None,
            OsStr::new("/nonexistent"),
            &[fallback],
            "",
        )
        .unwrap();
        assert_eq!(via_fallback, bin);
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let err = find_binary_in(
            "redis-server-missing",
            "REDIS_SERVER_BIN",
            None,
            OsStr::new("/nonexistent"),
            &["/nonexistent/redis-server"],
            "install it with `apt-get install redis-server`",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("redis-server-missing"), "{msg}");
        assert!(msg.contains("REDIS_SERVER_BIN"), "{msg}");
        assert!(msg.contains("apt-get install redis-server"), "{msg}");

        let err = find_binary_in(
            "x",
            "X_BIN",
            Some(Path::new("/nonexistent/x")),
            OsStr::new(""),
            &[],
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("$X_BIN"), "{err}");
    }

    #[test]
    fn managed_child_is_reaped_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let child = ManagedChild::spawn(cmd, &dir.path().join("out")).unwrap();
        let pid = child.pid();
        assert!(pid_alive(pid));
        drop(child);
        assert!(!pid_alive(pid), "child {pid} survived drop");
    }

    pub(crate) fn pid_alive(pid: u32) -> bool {
        // A reaped child has no /proc entry (a zombie would still have one).
        Path::new(&format!("/proc/{pid}")).exists()
    }
}
