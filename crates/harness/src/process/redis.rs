//! `redis-server` children.

use super::{looks_like_bind_failure, ChildSlot, ManagedChild, START_ATTEMPTS, START_TIMEOUT};
use crate::port::{lease_port, PortLease};
use crate::raw::{resp_cmd, RawConn};
use crate::Error;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A running `redis-server` on `127.0.0.1:<free port>`, killed on drop.
///
/// Started as `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
/// --daemonize no --dir <tmp> --logfile <tmp>/redis.log <extra args...>`;
/// later arguments override earlier ones, so `start_with(&["--save", "60 1"])`
/// works. Ready once it answers `PING` (`+PONG`, or `-NOAUTH` when
/// `--requirepass` is given).
#[derive(Debug)]
pub struct RedisServer {
    child: ChildSlot,
    lease: PortLease,
    binary: PathBuf,
    args: Vec<String>,
    password: Option<String>,
    dir: TempDir,
    /// The TLS port, when started with `start_tls`.
    tls_lease: Option<PortLease>,
}

impl RedisServer {
    /// The redis-server binary: `$REDIS_SERVER_BIN`, `PATH`, `/usr/bin`.
    pub fn binary() -> Result<PathBuf, Error> {
        super::find_binary(
            "redis-server",
            "REDIS_SERVER_BIN",
            &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
            "install it with `apt-get install redis-server` (CI's .ci/run does)",
        )
    }

    /// Starts a server with the default arguments.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(&[])
    }

    /// Starts a server with extra arguments, e.g.
    /// `&["--maxmemory", "1mb", "--requirepass", "secret"]`.
    pub fn start_with(args: &[&str]) -> Result<Self, Error> {
        Self::start_impl(args, false)
    }

    /// Like [`start_with`](Self::start_with), and also serving TLS on a
    /// second port ([`tls_addr`](Self::tls_addr)) with `pki`'s server
    /// certificate. Clients must present a certificate signed by `pki`'s CA
    /// when `require_client_cert`. The plain port stays open (readiness
    /// checks, inspection).
    pub fn start_tls(
        pki: &crate::TestPki,
        require_client_cert: bool,
        args: &[&str],
    ) -> Result<Self, Error> {
        let tls_lease = lease_port()?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut all: Vec<String> = vec![
            "--tls-port".into(),
            tls_lease.port().to_string(),
            "--tls-cert-file".into(),
            path(&pki.cert),
            "--tls-key-file".into(),
            path(&pki.key),
            "--tls-ca-cert-file".into(),
            path(&pki.ca),
            "--tls-auth-clients".into(),
            if require_client_cert { "yes" } else { "no" }.into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut server = Self::start_impl(&refs, false)?;
        server.tls_lease = Some(tls_lease);
        Ok(server)
    }

    /// `127.0.0.1:<tls port>` when started with [`start_tls`](Self::start_tls).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_lease.as_ref().map(|l| l.addr())
    }

    /// Like [`start_with`](Self::start_with), and also listening on the unix
    /// socket [`unix_socket`](Self::unix_socket) (`<tmp>/redis.sock`, mode
    /// 0700) besides TCP.
    pub fn start_unix(args: &[&str]) -> Result<Self, Error> {
        Self::start_impl(args, true)
    }

    fn start_impl(args: &[&str], unix: bool) -> Result<Self, Error> {
        let binary = Self::binary()?;
        let dir = super::temp_dir("redis")?;
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if unix {
            let sock = dir.path().join("redis.sock");
            args.splice(
                0..0,
                [
                    "--unixsocket".to_string(),
                    sock.to_string_lossy().into_owned(),
                    "--unixsocketperm".to_string(),
                    "700".to_string(),
                ],
            );
        }
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1).cloned());
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let lease = lease_port()?;
            match launch(&binary, &args, dir.path(), lease.port()) {
                Ok(child) => {
                    return Ok(RedisServer {
                        child: ChildSlot::new(child, "redis-server"),
                        lease,
                        binary,
                        args,
                        password,
                        dir,
                        tls_lease: None,
                    })
                }
                Err(Launch::PortTaken(e)) => last_err = Some(e),
                Err(Launch::Fatal(e)) => return Err(e),
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

    /// The unix socket path when started with [`start_unix`](Self::start_unix).
    pub fn unix_socket(&self) -> Option<PathBuf> {
        self.args
            .iter()
            .position(|a| a == "--unixsocket")
            .and_then(|i| self.args.get(i + 1))
            .map(PathBuf::from)
    }

    /// The pid of the current process (changes on [`restart`](Self::restart)).
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// The temp directory (working dir and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Contents of the server's log (last few KiB).
    pub fn log(&self) -> String {
        super::log_tail(&[&self.dir.path().join("redis.log")])
    }

    /// A raw connection (not authenticated).
    pub fn connect(&self) -> io::Result<RawConn> {
        RawConn::connect(self.addr())
    }

    /// Runs one command on a fresh connection and returns the raw reply bytes.
    /// Authenticates first when the server was started with `--requirepass`.
    pub fn cmd(&self, args: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut conn = self.connect()?;
        let timeout = Duration::from_secs(10);
        if let Some(pw) = &self.password {
            conn.send(&resp_cmd(&[b"AUTH", pw.as_bytes()]))?;
            let r = conn.read_exact_reply_bytes(timeout)?;
            if r != b"+OK\r\n" {
                return Err(io::Error::other(format!(
                    "AUTH failed: {}",
                    crate::escape_bytes(&r)
                )));
            }
        }
        conn.send(&resp_cmd(args))?;
        conn.read_exact_reply_bytes(timeout)
    }

    /// `FLUSHALL` (expects `+OK`).
    pub fn flushall(&self) -> io::Result<()> {
        let r = self.cmd(&[b"FLUSHALL"])?;
        if r == b"+OK\r\n" {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "FLUSHALL: {}",
                crate::escape_bytes(&r)
            )))
        }
    }

    /// All keys of DB `db` (`SELECT db` + `KEYS *`), in server order.
    pub fn keys(&self, db: u32) -> io::Result<Vec<Vec<u8>>> {
        let mut conn = self.connect()?;
        let timeout = Duration::from_secs(30);
        let mut req = Vec::new();
        if let Some(pw) = &self.password {
            req.extend(resp_cmd(&[b"AUTH", pw.as_bytes()]));
        }
        req.extend(resp_cmd(&[b"SELECT", db.to_string().as_bytes()]));
        req.extend(resp_cmd(&[b"KEYS", b"*"]));
        conn.send(&req)?;
        if self.password.is_some() {
            conn.read_exact_reply_bytes(timeout)?;
        }
        let sel = conn.read_exact_reply_bytes(timeout)?;
        if sel != b"+OK\r\n" {
            return Err(io::Error::other(format!(
                "SELECT {db}: {}",
                crate::escape_bytes(&sel)
            )));
        }
        let reply = conn.read_exact_reply_bytes(timeout)?;
        match crate::parse_reply(&reply) {
            Ok(Some((crate::Reply::Array(Some(items)), _))) => items
                .into_iter()
                .map(|r| match r {
                    crate::Reply::Bulk(Some(k)) => Ok(k),
                    other => Err(io::Error::other(format!("KEYS item {other:?}"))),
                })
                .collect(),
            other => Err(io::Error::other(format!("KEYS reply {other:?}"))),
        }
    }

    /// Kills the server (SIGKILL + reap). The port stays reserved for
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Starts the server again on the same port with the same arguments
    /// (data is not kept: no persistence). Stops it first if it runs.
    pub fn restart(&mut self) -> Result<(), Error> {
        let (binary, args, dir, port) =
            (&self.binary, &self.args, self.dir.path(), self.lease.port());
        self.child.restart(|| {
            launch(binary, args, dir, port).map_err(|(Launch::PortTaken(e) | Launch::Fatal(e))| e)
        })
    }

    /// SIGSTOP: the server stops answering but keeps its connections.
    pub fn pause(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGSTOP)
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGCONT)
    }

    /// Whether the process is alive (a paused server counts as running).
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }
}

pub(crate) enum Launch {
    /// The child could not bind its port: try another one.
    PortTaken(Error),
    /// Anything else.
    Fatal(Error),
}

fn launch(binary: &Path, extra: &[String], dir: &Path, port: u16) -> Result<ManagedChild, Launch> {
    let log = dir.join("redis.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra);
    let out = dir.join("redis.stdout");
    let mut child = ManagedChild::spawn(cmd, &out).map_err(Launch::Fatal)?;
    let what = format!("redis-server on 127.0.0.1:{port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.exited() {
            let tail = super::log_tail(&[&log, &out]);
            let err = Error::StartFailed {
                what,
                reason: format!("exited with {status}"),
                log: tail.clone(),
            };
            return Err(if looks_like_bind_failure(&tail) {
                Launch::PortTaken(err)
            } else {
                Launch::Fatal(err)
            });
        }
        if ping(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            return Err(Launch::Fatal(Error::Timeout {
                what,
                waited: START_TIMEOUT,
                log: super::log_tail(&[&log, &out]),
            }));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut c) = RawConn::connect_timeout(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    if c.send(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    match c.read_exact_reply_bytes(Duration::from_millis(500)) {
        Ok(r) => r == b"+PONG\r\n" || r.starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::tests::pid_alive;

    #[test]
    fn starts_answers_and_dies_on_drop() {
        let r = RedisServer::start().expect("redis-server must be installed");
        assert!(r.port() > 0);
        assert_eq!(r.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
        assert_eq!(r.cmd(&[b"SET", b"k", b"v"]).unwrap(), b"+OK\r\n");
        assert_eq!(r.keys(0).unwrap(), vec![b"k".to_vec()]);
        // --save '' took effect.
        let save = r.cmd(&[b"CONFIG", b"GET", b"save"]).unwrap();
        assert_eq!(save, b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
        let pid = r.pid().unwrap();
        let addr = r.addr();
        let dir = r.dir().to_path_buf();
        drop(r);
        assert!(!pid_alive(pid), "redis-server {pid} still alive after drop");
        assert!(RawConn::connect_timeout(addr, Duration::from_millis(200)).is_err());
        assert!(!dir.exists(), "temp dir not removed");
    }

    #[test]
    fn extra_args_and_auth() {
        let r =
            RedisServer::start_with(&["--requirepass", "sekret", "--maxmemory", "2mb"]).unwrap();
        let mut c = r.connect().unwrap();
        c.send(&resp_cmd(&[b"GET", b"x"])).unwrap();
        let reply = c.read_exact_reply_bytes(Duration::from_secs(5)).unwrap();
        assert!(
            reply.starts_with(b"-NOAUTH"),
            "{}",
            crate::escape_bytes(&reply)
        );
        // cmd() authenticates by itself.
        let mm = r.cmd(&[b"CONFIG", b"GET", b"maxmemory"]).unwrap();
        assert_eq!(mm, b"*2\r\n$9\r\nmaxmemory\r\n$7\r\n2097152\r\n");
    }

    #[test]
    fn pause_resume_stop_restart() {
        let mut r = RedisServer::start().unwrap();
        let mut c = r.connect().unwrap();
        r.pause().unwrap();
        c.send(&resp_cmd(&[b"PING"])).unwrap();
        assert!(c
            .read_exact_reply_bytes(Duration::from_millis(300))
            .is_err());
        r.resume().unwrap();
        assert_eq!(
            c.read_exact_reply_bytes(Duration::from_secs(5)).unwrap(),
            b"+PONG\r\n"
        );
        let port = r.port();
        let old = r.pid().unwrap();
        r.stop();
        assert!(!r.is_running());
        assert!(!pid_alive(old));
        assert!(r.cmd(&[b"PING"]).is_err());
        r.restart().unwrap();
        assert_eq!(r.port(), port);
        assert!(r.is_running());
        assert_eq!(r.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
    }

    #[test]
    fn parallel_servers_get_distinct_ports() {
        let servers: Vec<_> = (0..6)
            .map(|_| std::thread::spawn(|| RedisServer::start().unwrap()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), servers.len());
        for s in &servers {
            assert_eq!(s.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
        }
    }

    #[test]
    fn unix_socket() {
        let r = RedisServer::start_unix(&[]).unwrap();
        let path = r.unix_socket().expect("socket path");
        assert!(path.starts_with(r.dir()));
        let mut c = RawConn::connect_unix(&path).unwrap();
        c.send(&resp_cmd(&[b"PING"])).unwrap();
        assert_eq!(
            c.read_exact_reply_bytes(Duration::from_secs(5)).unwrap(),
            b"+PONG\r\n"
        );
        assert_eq!(r.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
        assert!(RedisServer::start().unwrap().unix_socket().is_none());
    }

    #[test]
    fn bad_arguments_fail_with_the_log() {
        let err = RedisServer::start_with(&["--no-such-option", "1"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("failed to start"), "{msg}");
        assert!(msg.to_lowercase().contains("no-such-option"), "{msg}");
    }
}
