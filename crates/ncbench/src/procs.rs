//! Child processes ncbench starts: redis-server or memcached backends, nutcracker and the
//! ncproxy binary. Each is killed (and reaped) when its guard drops, so a run
//! that fails half-way leaves nothing listening. Each starts on the CPUs
//! `[placement]` gives its role, if any.
//!
//! This is the minimum ncbench needs; the test harness crate (`nc-harness`)
//! offers the same for tests. ncbench keeps its own so the product does not
//! depend on test scaffolding.
use crate::affinity::{self, CpuList};
use crate::error::{BenchError, Result};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released; races are unlikely on loopback).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::setup(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| BenchError::setup(e.to_string()))?
        .port())
}

/// Looks `name` up like a shell: a path with a slash is taken as is, else PATH is searched.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A child process killed on drop.
#[derive(Debug)]
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPUs the child may run on, as the kernel reports it now.
    pub fn cpus_allowed(&self) -> String {
        affinity::cpus_allowed_of_process(self.pid())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` accepts connections, failing early if the child exits.
pub fn wait_listening(addr: SocketAddr, child: &mut ChildGuard, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            return Err(BenchError::setup(format!(
                "{} exited ({status}) before listening on {addr}",
                child.name
            )));
        }
        if Instant::now() >= deadline {
            return Err(BenchError::setup(format!(
                "{} did not listen on {addr} within {within:?}",
                child.name
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `cmd` (running `binary`) on `cpus` when given, killed when the guard drops.
fn spawn_guarded(
    cmd: &mut Command,
    binary: &Path,
    name: String,
    cpus: Option<&CpuList>,
) -> Result<ChildGuard> {
    let child = affinity::spawn_on(cmd, cpus)
        .map_err(|e| BenchError::setup(format!("cannot start {}: {e}", binary.display())))?;
    Ok(ChildGuard { child, name })
}

/// The certificate files of a redis-server TLS port.
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verifies client certificates, which are not required
    /// (`--tls-auth-clients no`).
    pub ca: PathBuf,
}

/// Starts `redis-server` on a free loopback port with persistence off, on
/// `cpus` when given; with `tls`, also on a free TLS port (the second address).
pub fn start_redis(
    binary: &Path,
    tls: Option<&RedisTls>,
    cpus: Option<&CpuList>,
) -> Result<(ChildGuard, SocketAddr, Option<SocketAddr>)> {
    let tls_port = match tls {
        Some(t) => Some((t, free_port()?)),
        None => None,
    };
    let (g, addr) = start_redis_on(binary, free_port()?, tls_port, cpus)?;
    let tls_addr = tls_port.map(|(_, p)| SocketAddr::from(([127, 0, 0, 1], p)));
    Ok((g, addr, tls_addr))
}

/// Starts `redis-server` on `port` (a restart reuses its backend's port),
/// and with `tls` also on that TLS port.
pub fn start_redis_on(
    binary: &Path,
    port: u16,
    tls: Option<(&RedisTls, u16)>,
    cpus: Option<&CpuList>,
) -> Result<(ChildGuard, SocketAddr)> {
    let mut cmd = Command::new(binary);
    if let Some((t, tls_port)) = tls {
        cmd.arg("--tls-port")
            .arg(tls_port.to_string())
            .arg("--tls-cert-file")
            .arg(&t.cert)
            .arg("--tls-key-file")
            .arg(&t.key)
            .arg("--tls-ca-cert-file")
            .arg(&t.ca)
            .args(["--tls-auth-clients", "no"]);
    }
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let name = match tls {
        Some((_, p)) => format!("redis-server :{port} (TLS :{p})"),
        None => format!("redis-server :{port}"),
    };
    let mut g = spawn_guarded(&mut cmd, binary, name, cpus)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut g, Duration::from_secs(10))?;
    if let Some((_, p)) = tls {
        wait_listening(([127, 0, 0, 1], p).into(), &mut g, Duration::from_secs(10))?;
    }
    Ok((g, addr))
}

/// Starts `memcached -p P -l 127.0.0.1 -U 0` (plus `-u root` when running as
/// root, which memcached otherwise refuses) on a free loopback port, with
/// `-m 1024` and an item size limit (`-I`) that fits `max_value` bytes, on
/// `cpus` when given.
pub fn start_memcached(
    binary: &Path,
    max_value: u64,
    cpus: Option<&CpuList>,
) -> Result<(ChildGuard, SocketAddr)> {
    start_memcached_on(binary, free_port()?, max_value, cpus)
}

/// Starts memcached on `port` (a restart reuses its backend's port).
pub fn start_memcached_on(
    binary: &Path,
    port: u16,
    max_value: u64,
    cpus: Option<&CpuList>,
) -> Result<(ChildGuard, SocketAddr)> {
    let mut cmd = Command::new(binary);
    cmd.args([
        "-p",
        &port.to_string(),
        "-l",
        "127.0.0.1",
        "-U",
        "0",
        "-m",
        "1024",
        "-I",
        &memcached_item_limit(max_value),
        "-c",
        "4096",
    ]);
    if running_as_root() {
        cmd.args(["-u", "root"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = spawn_guarded(&mut cmd, binary, format!("memcached :{port}"), cpus)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr, &mut g, Duration::from_secs(10))?;
    Ok((g, addr))
}

/// Whether this process runs with effective uid 0 (`/proc/self` belongs to
/// the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// memcached's `-I` for values up to `max_value` bytes: whole MiB, with room
/// for the item header and key, at least memcached's default of 1m.
pub fn memcached_item_limit(max_value: u64) -> String {
    let mib = (max_value + 4096).div_ceil(1 << 20).max(1);
    format!("{mib}m")
}

/// A proxy binary ncbench started: the child, its stats address and the
/// config file it reads (rewritten for a reload).
#[derive(Debug)]
pub struct ProxyChild {
    pub guard: ChildGuard,
    pub stats: SocketAddr,
    pub conf: PathBuf,
}

/// Starts a nutcracker-compatible proxy binary (nutcracker or ncproxy) with the
/// config text `yaml`, stats on a free port, on `cpus` when given. `extra`
/// adds flags (`--workers`).
pub fn start_proxy_binary(
    binary: &Path,
    yaml: &str,
    listen: SocketAddr,
    extra: &[String],
    workdir: &Path,
    cpus: Option<&CpuList>,
) -> Result<ProxyChild> {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "proxy".into());
    let conf = workdir.join(format!("{name}-{}.yml", listen.port()));
    std::fs::write(&conf, yaml).map_err(|e| BenchError::io(&conf, e))?;
    let log = workdir.join(format!("{name}-{}.log", listen.port()));
    // Config errors go to stderr before the log is opened: keep them too.
    let err_path = workdir.join(format!("{name}-{}.stderr", listen.port()));
    let stderr = std::fs::File::create(&err_path).map_err(|e| BenchError::io(&err_path, e))?;
    let stats_port = free_port()?;
    let mut cmd = Command::new(binary);
    cmd.arg("-c")
        .arg(&conf)
        .args([
            "-s",
            &stats_port.to_string(),
            "-a",
            "127.0.0.1",
            "-i",
            "1000",
            "-v",
            "4",
            "-o",
        ])
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut g = spawn_guarded(&mut cmd, binary, format!("{name} :{}", listen.port()), cpus)?;
    if let Err(e) = wait_listening(listen, &mut g, Duration::from_secs(10)) {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        };
        let mut msg = format!("{e}; log: {}", tail(&log));
        let err = tail(&err_path);
        if !err.is_empty() {
            msg.push_str(&format!("; stderr: {err}"));
        }
        return Err(BenchError::setup(msg));
    }
    let stats: SocketAddr = ([127, 0, 0, 1], stats_port).into();
    // The stats thread may start a moment after the listener.
    let _ = wait_listening(stats, &mut g, Duration::from_secs(2));
    Ok(ProxyChild {
        guard: g,
        stats,
        conf,
    })
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) -> std::io::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .map_err(std::io::Error::from)
}

/// `syscr` and `syscw` from an `io` file of /proc.
fn read_io_file(path: &str) -> Option<crate::timeline::IoCount> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(crate::timeline::IoCount {
        reads: field("syscr:")?,
        writes: field("syscw:")?,
    })
}

/// Read and write syscalls of a whole process so far (all its threads, also
/// finished ones): `/proc/<pid>/io`. These count read/readv/pread and
/// write/writev/pwrite (what nutcracker, ncproxy and the backends use on
/// sockets); epoll and recvmsg/sendmsg do not count.
pub fn io_of_process(pid: u32) -> Option<crate::timeline::IoCount> {
    read_io_file(&format!("/proc/{pid}/io"))
}

/// The same for some threads of this process (an in-process proxy's).
pub fn io_of_threads(tids: &[u32]) -> Option<crate::timeline::IoCount> {
    let mut sum = crate::timeline::IoCount::default();
    for t in tids {
        let c = read_io_file(&format!("/proc/self/task/{t}/io"))?;
        sum.reads += c.reads;
        sum.writes += c.writes;
    }
    (!tids.is_empty()).then_some(sum)
}

/// The first line of `binary --version`-style output, for the environment fingerprint.
pub fn version_of(binary: &Path, arg: &str) -> Option<String> {
    let out = Command::new(binary).arg(arg).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}
