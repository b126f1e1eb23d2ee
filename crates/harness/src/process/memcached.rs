//! `memcached` children.

use super::{looks_like_bind_failure, ChildSlot, ManagedChild, START_ATTEMPTS, START_TIMEOUT};
use crate::port::{lease_port, PortLease};
use crate::raw::RawConn;
use crate::Error;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A running `memcached -p P -l 127.0.0.1 -U 0` (plus `-u root` when the
/// harness runs as root, which memcached otherwise refuses), killed on drop.
/// Ready once it answers `version`.
#[derive(Debug)]
pub struct Memcached {
    child: ChildSlot,
    lease: PortLease,
    binary: PathBuf,
    args: Vec<String>,
    dir: TempDir,
}

impl Memcached {
    /// The memcached binary: `$MEMCACHED_BIN`, `PATH`, `/usr/bin`.
    pub fn binary() -> Result<PathBuf, Error> {
        super::find_binary(
            "memcached",
            "MEMCACHED_BIN",
            &["/usr/bin/memcached", "/usr/local/bin/memcached"],
            "install it with `apt-get install memcached` (CI's .ci/run does)",
        )
    }

    /// Starts memcached with the default arguments.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(&[])
    }

    /// Starts memcached with extra arguments, e.g. `&["-m", "8", "-I", "2m"]`.
    pub fn start_with(args: &[&str]) -> Result<Self, Error> {
        let binary = Self::binary()?;
        let dir = super::temp_dir("memcached")?;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let lease = lease_port()?;
            match launch(&binary, &args, dir.path(), lease.port()) {
                Ok(child) => {
                    return Ok(Memcached {
                        child: ChildSlot::new(child, "memcached"),
                        lease,
                        binary,
                        args,
                        dir,
                    })
                }
                Err((true, e)) => last_err = Some(e),
                Err((false, e)) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.lease.addr()
    }

    /// The pid of the current process.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// A raw connection.
    pub fn connect(&self) -> io::Result<RawConn> {
        RawConn::connect(self.addr())
    }

    /// Output of the process.
    pub fn log(&self) -> String {
        super::log_tail(&[&self.dir.path().join("memcached.out")])
    }

    /// Kills the server (SIGKILL + reap); the port stays reserved.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Starts again on the same port (empty cache).
    pub fn restart(&mut self) -> Result<(), Error> {
        let (binary, args, dir, port) =
            (&self.binary, &self.args, self.dir.path(), self.lease.port());
        self.child
            .restart(|| launch(binary, args, dir, port).map_err(|(_, e)| e))
    }

    /// SIGSTOP.
    pub fn pause(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGCONT)
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }
}

/// `Err((port_taken, error))`.
fn launch(
    binary: &Path,
    extra: &[String],
    dir: &Path,
    port: u16,
) -> Result<ManagedChild, (bool, Error)> {
    let out = dir.join("memcached.out");
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .arg("-p")
        .arg(port.to_string())
        .args(["-l", "127.0.0.1", "-U", "0"]);
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    if unsafe { libc::geteuid() } == 0 && !extra.iter().any(|a| a == "-u") {
        cmd.args(["-u", "root"]);
    }
    cmd.args(extra);
    let mut child = ManagedChild::spawn(cmd, &out).map_err(|e| (false, e))?;
    let what = format!("memcached on 127.0.0.1:{port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.exited() {
            let tail = super::log_tail(&[&out]);
            let taken = looks_like_bind_failure(&tail);
            return Err((
                taken,
                Error::StartFailed {
                    what,
                    reason: format!("exited with {status}"),
                    log: tail,
                },
            ));
        }
        if version(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            return Err((
                false,
                Error::Timeout {
                    what,
                    waited: START_TIMEOUT,
                    log: super::log_tail(&[&out]),
                },
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn version(port: u16) -> bool {
    let Ok(mut c) = RawConn::connect_timeout(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    if c.send(b"version\r\n").is_err() {
        return false;
    }
    c.read_line(Duration::from_millis(500))
        .map(|l| l.starts_with(b"VERSION "))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::tests::pid_alive;

    #[test]
    fn starts_answers_and_dies_on_drop() {
        let m = Memcached::start().expect("memcached must be installed");
        let mut c = m.connect().unwrap();
        c.send(b"set k 0 0 2\r\nhi\r\nget k\r\n").unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.read_line(t).unwrap(), b"STORED\r\n");
        assert_eq!(c.read_line(t).unwrap(), b"VALUE k 0 2\r\n");
        assert_eq!(c.read_line(t).unwrap(), b"hi\r\n");
        assert_eq!(c.read_line(t).unwrap(), b"END\r\n");
        let pid = m.pid().unwrap();
        drop(m);
        assert!(!pid_alive(pid));
    }
}
