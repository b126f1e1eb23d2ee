//! Proxy children: the `nutcracker` oracle and our `ncproxy`.

use super::{looks_like_bind_failure, ManagedChild, START_ATTEMPTS, START_TIMEOUT};
use crate::port::{lease_port, PortLease};
use crate::raw::RawConn;
use crate::Error;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Which proxy a [`ProxyProcess`] runs. Both take the same flags
/// (`-c -s -a -i -v -o ...`); the kind is used for labels and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// twemproxy's `nutcracker` (the compatibility oracle).
    Nutcracker,
    /// Our `ncproxy`.
    Ncproxy,
}

impl ProxyKind {
    /// `"nutcracker"` or `"ncproxy"`.
    pub fn label(self) -> &'static str {
        match self {
            ProxyKind::Nutcracker => "nutcracker",
            ProxyKind::Ncproxy => "ncproxy",
        }
    }
}

/// A pool's listen address, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`.
    Tcp(SocketAddr),
    /// `/path/to.sock [perm]`.
    Unix(PathBuf),
}

/// A running proxy, killed (SIGKILL) on drop.
///
/// The token `{dir}` in the YAML is replaced by the proxy's temp directory
/// before anything else (for unix socket listen paths:
/// `listen: {dir}/proxy.sock 0600`).
///
/// Started as `<binary> -c <tmp>/conf.yml -s <free port> -a 127.0.0.1
/// -o <tmp>/proxy.log <extra args...>` (each of `-c -s -a -o` is left out when
/// `extra_args` gives it). Ready once every pool's `listen:` address accepts a
/// connection, so the proxy's stats show one `client_eof` per pool from the
/// readiness probe. Retried on a fresh stats port if the stats port was taken.
#[derive(Debug)]
pub struct ProxyProcess {
    kind: ProxyKind,
    binary: PathBuf,
    child: ManagedChild,
    listens: Vec<ListenAddr>,
    stats_port: u16,
    _stats_lease: Option<PortLease>,
    conf_path: PathBuf,
    log_path: PathBuf,
    out_path: PathBuf,
    dir: TempDir,
}

impl ProxyProcess {
    /// Writes `yaml` to a temp dir and starts `binary` on it; waits until all
    /// pools listen (bounded), else fails with the proxy's log.
    pub fn start(
        kind: ProxyKind,
        binary: &Path,
        yaml: &str,
        extra_args: &[&str],
    ) -> Result<Self, Error> {
        if !binary.is_file() {
            return Err(Error::StartFailed {
                what: format!("{} ({})", kind.label(), binary.display()),
                reason: "binary does not exist (build it, or check NCPROXY_BIN)".into(),
                log: String::new(),
            });
        }
        let dir = super::temp_dir(kind.label())?;
        let yaml = yaml.replace("{dir}", &dir.path().to_string_lossy());
        let listens = parse_listens(&yaml)?;
        let conf_path = dir.path().join("conf.yml");
        fs::write(&conf_path, &yaml).map_err(|e| Error::io("write proxy config", e))?;
        let log_path = dir.path().join("proxy.log");
        let out_path = dir.path().join("proxy.out");
        let has = |flag: &str| extra_args.contains(&flag);
        let given_stats = extra_args
            .iter()
            .position(|a| *a == "-s")
            .and_then(|i| extra_args.get(i + 1))
            .and_then(|s| s.parse::<u16>().ok());

        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let (stats_port, lease) = match given_stats {
                Some(p) => (p, None),
                None => {
                    let l = lease_port()?;
                    (l.port(), Some(l))
                }
            };
            let mut cmd = Command::new(binary);
            cmd.current_dir(dir.path());
            if !has("-c") {
                cmd.arg("-c").arg(&conf_path);
            }
            if !has("-s") {
                cmd.arg("-s").arg(stats_port.to_string());
            }
            if !has("-a") {
                cmd.args(["-a", "127.0.0.1"]);
            }
            if !has("-o") {
                cmd.arg("-o").arg(&log_path);
            }
            cmd.args(extra_args);
            let _ = fs::remove_file(&log_path);
            let _ = fs::remove_file(&out_path);
            let what = format!("{} ({})", kind.label(), binary.display());
            let mut child = ManagedChild::spawn(cmd, &out_path)?;
            match wait_ready(&mut child, &listens, &[&log_path, &out_path], &what) {
                Ok(()) => {
                    return Ok(ProxyProcess {
                        kind,
                        binary: binary.to_path_buf(),
                        child,
                        listens,
                        stats_port,
                        _stats_lease: lease,
                        conf_path,
                        log_path,
                        out_path,
                        dir,
                    })
                }
                Err((log, err)) => {
                    let stats_taken = looks_like_bind_failure(&log)
                        && log.contains(&format!(":{stats_port}"))
                        && given_stats.is_none()
                        && !listens.iter().any(|l| match l {
                            ListenAddr::Tcp(a) => log.contains(&format!(":{}", a.port())),
                            ListenAddr::Unix(_) => false,
                        });
                    if !stats_taken {
                        return Err(err);
                    }
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    /// Which proxy this is.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Pid of the proxy.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// All pools' listen addresses, in config-file order.
    pub fn listens(&self) -> &[ListenAddr] {
        &self.listens
    }

    /// The first TCP listen address in config-file order.
    ///
    /// # Panics
    /// If no pool listens on TCP.
    pub fn addr(&self) -> SocketAddr {
        self.listens
            .iter()
            .find_map(|l| match l {
                ListenAddr::Tcp(a) => Some(*a),
                ListenAddr::Unix(_) => None,
            })
            .expect("the proxy config has no TCP listen address")
    }

    /// The stats port (`-s`).
    pub fn stats_port(&self) -> u16 {
        self.stats_port
    }

    /// `127.0.0.1:<stats port>`.
    pub fn stats_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.stats_port))
    }

    /// Fetches the stats JSON (connect, read until the server closes).
    pub fn stats_json(&self) -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&self.stats_addr(), Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// A raw connection to the first pool in config-file order (TCP or unix).
    pub fn connect(&self) -> io::Result<RawConn> {
        RawConn::connect_listen(&self.listens[0])
    }

    /// The written config file.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// The `-o` log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last few KiB of the `-o` log and of stdout/stderr.
    pub fn log(&self) -> String {
        super::log_tail(&[&self.log_path, &self.out_path])
    }

    /// The temp directory holding config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`, `libc::SIGUSR1`).
    pub fn signal(&mut self, sig: i32) -> io::Result<()> {
        self.child.signal(sig)
    }

    /// SIGSTOP.
    pub fn pause(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> io::Result<()> {
        self.child.signal(libc::SIGCONT)
    }

    /// Whether the proxy is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// Waits up to `timeout` for the proxy to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    /// SIGKILL + reap (also done on drop).
    pub fn stop(&mut self) {
        self.child.kill();
    }
}

/// Waits until all listens accept; on failure returns (log tail, error).
fn wait_ready(
    child: &mut ManagedChild,
    listens: &[ListenAddr],
    logs: &[&Path],
    what: &str,
) -> Result<(), (String, Error)> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pending: Vec<&ListenAddr> = listens.iter().collect();
    loop {
        if let Some(status) = child.exited() {
            let log = super::log_tail(logs);
            return Err((
                log.clone(),
                Error::StartFailed {
                    what: what.to_string(),
                    reason: format!("exited with {status}"),
                    log,
                },
            ));
        }
        pending.retain(|l| !accepts(l));
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = super::log_tail(logs);
            return Err((
                log.clone(),
                Error::Timeout {
                    what: format!("{what} listening on {pending:?}"),
                    waited: START_TIMEOUT,
                    log,
                },
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn accepts(l: &ListenAddr) -> bool {
    match l {
        ListenAddr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok(),
        ListenAddr::Unix(p) => UnixStream::connect(p).is_ok(),
    }
}

/// Extracts every pool's `listen:` value from a nutcracker YAML.
pub(crate) fn parse_listens(yaml: &str) -> Result<Vec<ListenAddr>, Error> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("listen:") else {
            continue;
        };
        let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.starts_with('/') {
            let path = v.split_whitespace().next().unwrap_or(v);
            out.push(ListenAddr::Unix(PathBuf::from(path)));
            continue;
        }
        let (host, port) = v
            .rsplit_once(':')
            .ok_or_else(|| Error::Config(format!("listen `{v}` is not host:port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| Error::Config(format!("listen `{v}` has a bad port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("resolve listen `{v}`"), e))?
            .next()
            .ok_or_else(|| Error::Config(format!("listen `{v}` does not resolve")))?;
        out.push(ListenAddr::Tcp(addr));
    }
    if out.is_empty() {
        return Err(Error::Config("the config has no `listen:` line".into()));
    }
    Ok(out)
}

/// Starts the `nutcracker` oracle.
#[derive(Debug)]
pub struct Nutcracker;

impl Nutcracker {
    /// The nutcracker binary: `$NUTCRACKER_BIN`, `PATH`, `/usr/sbin`.
    pub fn binary() -> Result<PathBuf, Error> {
        super::find_binary(
            "nutcracker",
            "NUTCRACKER_BIN",
            &[
                "/usr/sbin/nutcracker",
                "/usr/local/sbin/nutcracker",
                "/usr/bin/nutcracker",
            ],
            "install it with `apt-get install nutcracker` (CI's .ci/run does)",
        )
    }

    /// Starts nutcracker on `yaml`.
    pub fn start(yaml: &str) -> Result<ProxyProcess, Error> {
        Self::start_with(yaml, &[])
    }

    /// Starts nutcracker on `yaml` with extra flags (e.g. `&["-v", "6"]`).
    pub fn start_with(yaml: &str, extra_args: &[&str]) -> Result<ProxyProcess, Error> {
        ProxyProcess::start(ProxyKind::Nutcracker, &Self::binary()?, yaml, extra_args)
    }
}

/// Starts our `ncproxy`.
#[derive(Debug)]
pub struct Ncproxy;

impl Ncproxy {
    /// Starts `binary` (usually `ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))`).
    ///
    /// With `NCPROXY_TEST_IO=uring` (CI's second pass) the proxy gets
    /// `--io uring` unless `extra_args` names an `--io` itself, so every
    /// test that starts ncproxy here runs on that I/O path too.
    pub fn start(binary: &Path, yaml: &str, extra_args: &[&str]) -> Result<ProxyProcess, Error> {
        let io = test_io_args(binary, extra_args);
        let args: Vec<&str> = extra_args.iter().copied().chain(io).collect();
        ProxyProcess::start(ProxyKind::Ncproxy, binary, yaml, &args)
    }
}

/// `NCPROXY_TEST_IO`'s flags for an ncproxy start: `--io <value>` when it
/// is set and the arguments choose no I/O path (nor is the binary under test
/// the nutcracker oracle, which has no such flag).
fn test_io_args(binary: &Path, extra_args: &[&str]) -> Option<&'static str> {
    let io = std::env::var("NCPROXY_TEST_IO").ok()?;
    let chosen = extra_args
        .iter()
        .any(|a| *a == "--io" || a.starts_with("--io="));
    let oracle = binary
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("nutcracker"));
    match io.as_str() {
        _ if chosen || oracle => None,
        "uring" => Some("--io=uring"),
        "epoll" => Some("--io=epoll"),
        _ => None,
    }
}

/// The ncproxy binary under test: `$NCPROXY_BIN` when set and non-empty
/// (e.g. `/usr/sbin/nutcracker` to validate a test against the oracle),
/// else `default`.
pub fn ncproxy_bin(default: impl AsRef<OsStr>) -> PathBuf {
    match std::env::var_os("NCPROXY_BIN") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::tests::pid_alive;
    use crate::{free_port, resp_cmd, PoolConfig, RedisServer};

    #[test]
    fn listens_are_parsed() {
        let yaml = "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:1:1\n\
                    b:\n  listen: \"/tmp/x.sock 0666\"\nc:\n  listen: localhost:7\n";
        let l = parse_listens(yaml).unwrap();
        assert_eq!(l[0], ListenAddr::Tcp("127.0.0.1:22121".parse().unwrap()));
        assert_eq!(l[1], ListenAddr::Unix("/tmp/x.sock".into()));
        assert!(matches!(l[2], ListenAddr::Tcp(a) if a.port() == 7));
        assert!(parse_listens("a:\n  hash: md5\n").is_err());
    }

    #[test]
    fn nutcracker_proxies_reports_stats_and_dies_on_drop() {
        let r = RedisServer::start().unwrap();
        let yaml = PoolConfig::redis("alpha", free_port().unwrap())
            .server(r.addr(), 1, Some("s1"))
            .render();
        let p = Nutcracker::start(&yaml).expect("nutcracker must be installed");
        assert_eq!(p.kind(), ProxyKind::Nutcracker);
        let mut c = p.connect().unwrap();
        c.send(&resp_cmd(&[b"SET", b"hk", b"hv"])).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.read_exact_reply_bytes(t).unwrap(), b"+OK\r\n");
        assert_eq!(r.cmd(&[b"GET", b"hk"]).unwrap(), b"$2\r\nhv\r\n");
        let stats = p.stats_json().unwrap();
        assert!(stats.starts_with("{\"service\":\"nutcracker\""), "{stats}");
        assert!(stats.contains("\"alpha\""), "{stats}");
        let pid = p.pid();
        let addr = p.addr();
        drop(p);
        assert!(!pid_alive(pid));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn unix_socket_listen_and_backend() {
        let r = RedisServer::start_unix(&[]).unwrap();
        let sock = r.unix_socket().unwrap();
        let yaml = PoolConfig::redis("u", 0)
            .listen("{dir}/proxy.sock 0600")
            .server(sock.display(), 1, Some("s1"))
            .render();
        let p = Nutcracker::start(&yaml).unwrap();
        let ListenAddr::Unix(path) = &p.listens()[0] else {
            panic!("not a unix listen: {:?}", p.listens());
        };
        assert!(path.starts_with(p.dir()), "{path:?}");
        let mut c = p.connect().unwrap();
        c.send(&resp_cmd(&[b"SET", b"uk", b"uv"])).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.read_exact_reply_bytes(t).unwrap(), b"+OK\r\n");
        assert_eq!(r.cmd(&[b"GET", b"uk"]).unwrap(), b"$2\r\nuv\r\n");
    }

    #[test]
    fn a_bad_config_fails_with_the_log() {
        let yaml = "alpha:\n  listen: 127.0.0.1:1\n  hash: nope\n  servers:\n   - 127.0.0.1:1:1\n";
        let err = Nutcracker::start(yaml).unwrap_err().to_string();
        assert!(err.contains("not a valid hash"), "{err}");
    }

    #[test]
    fn a_missing_proxy_binary_is_reported() {
        let err = Ncproxy::start(Path::new("/nonexistent/ncproxy"), "a:\n listen: 1:1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ncproxy"), "{err}");
    }
}
