//! Backends and targets: what gets started for a run, and where load goes.
//!
//! Backends live for the whole run (every cell hits the same data). A target is
//! started per cell, because the send-path knobs are pool settings: ncproxy
//! in-process or as its binary, nutcracker from PATH with a generated config,
//! an external address, or the backends themselves (`direct`, the physical limit).
//! Backends start on `[placement] backends`, proxies on `[placement] proxies`;
//! each records where it was actually allowed to run.
//!
//! TLS: with `[backends] tls = true` the redis-server backends also serve
//! TLS on a second port each, with the run's certificates (`tls::Pki`);
//! external TLS backends speak only TLS. A target's `tls = true` makes the
//! load speak TLS to it (ncproxy's listener gets `tls_cert`/`tls_key`,
//! `direct` uses the backends' TLS ports), `server_tls = true` points
//! ncproxy's pool at the TLS ports (`server_tls`, `server_tls_ca`). The
//! running target says how the driver verifies it ([`RunningTarget::tls`]).
//!
//! memcache (`workload.protocol = "memcache"`): the backends are memcached
//! children, and the generated pool says `redis: false`. An ncproxy binary
//! older than memcache support refuses such a pool at start; it counts as
//! unavailable (an `optional` target is then skipped) rather than broken.
use crate::affinity::CpuList;
use crate::config::{
    BackendKind, BackendsSection, Protocol, ProxySection, SendLimit, SendMode, TargetKind,
    TargetSpec,
};
use crate::embedded::{self, EmbeddedBackends};
use crate::error::{BenchError, Result};
use crate::events::{EventAction, ProxyChange};
use crate::procs::{self, ChildGuard};
use crate::scrape::POOL;
use crate::timeline::IoCount;
use crate::tls::{Pki, TlsClient};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The backends of a run.
pub struct Backends {
    pub addrs: Vec<SocketAddr>,
    /// `redis-server`, `memcached`, `embedded` or `external`.
    pub kind: &'static str,
    /// What they speak.
    pub protocol: Protocol,
    /// `redis-server --version` (or `memcached -V`) when started by us.
    pub version: Option<String>,
    /// Whether ncbench owns them (and may flush them).
    pub owned: bool,
    /// (process or thread, its `Cpus_allowed_list`) for each backend ncbench started.
    pub cpus_observed: Vec<(String, String)>,
    /// redis-server or memcached children, by backend index (events kill,
    /// stop and restart them).
    children: Mutex<Vec<BackendSlot>>,
    /// How to start a backend again on its port.
    spawner: Option<Spawner>,
    cpus: Option<CpuList>,
    _embedded: Option<EmbeddedBackends>,
    /// `kind = "cluster"`: the local Redis Cluster (`addrs` are its masters
    /// at start, in port order).
    cluster: Option<Mutex<nc_harness::RedisCluster>>,
    /// The backends' TLS side (`[backends] tls = true`).
    pub tls: Option<BackendTls>,
    /// The run's certificates, when the backends or a target use TLS.
    pub pki: Option<Arc<Pki>>,
}

/// How the backends serve TLS.
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// Each backend's TLS address, in `addrs` order (external TLS backends:
    /// `addrs` themselves).
    pub addrs: Vec<SocketAddr>,
    /// The host name each is verified as (`127.0.0.1` for ours).
    pub names: Vec<String>,
    /// The CA file that verifies them (None: the system's roots).
    pub ca: Option<PathBuf>,
    /// `addrs` speak only TLS (external TLS backends): the loader uses TLS.
    pub only: bool,
}

impl BackendTls {
    /// How the driver verifies backend `i`.
    fn client(&self, i: usize) -> Result<TlsClient> {
        let config = crate::tls::client_config(self.ca.as_deref())?;
        TlsClient::new(config, &self.names[i])
    }
}

/// A cluster's masters now and, per slot, the index of its master there.
pub type ClusterMap = (Vec<SocketAddr>, Vec<u16>);

/// One backend child: None while killed.
struct BackendSlot {
    child: Option<ChildGuard>,
    stopped: bool,
}

#[derive(Debug, Clone)]
enum Spawner {
    Redis {
        binary: PathBuf,
        tls: Option<procs::RedisTls>,
    },
    Memcached {
        binary: PathBuf,
        max_value: u64,
    },
}

fn slots(guards: Vec<ChildGuard>) -> Mutex<Vec<BackendSlot>> {
    Mutex::new(
        guards
            .into_iter()
            .map(|g| BackendSlot {
                child: Some(g),
                stopped: false,
            })
            .collect(),
    )
}

impl Backends {
    /// Whether the backends are a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// How the loader must reach `addrs`: over TLS when they speak only TLS.
    pub fn loader_tls(&self) -> Result<Option<crate::loader::LoaderTls>> {
        let Some(t) = self.tls.as_ref().filter(|t| t.only) else {
            return Ok(None);
        };
        let ca_pem = match &t.ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| BenchError::io(p, e))?),
            None => None,
        };
        Ok(Some(crate::loader::LoaderTls {
            ca_pem,
            names: t.names.clone(),
        }))
    }

    fn cluster(&self) -> Option<std::sync::MutexGuard<'_, nc_harness::RedisCluster>> {
        self.cluster
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The cluster's masters now (they change with `failover` events), and
    /// for each slot the index of its master in that list.
    pub fn cluster_map(&self) -> Option<std::result::Result<ClusterMap, String>> {
        let cluster = self.cluster()?;
        let map = || -> std::io::Result<ClusterMap> {
            let mut masters = cluster.masters()?;
            masters.sort_unstable();
            let mut owners = vec![u16::MAX; nc_hashkit::CLUSTER_SLOTS];
            for (i, &port) in masters.iter().enumerate() {
                for (lo, hi) in cluster.slots_of(port)? {
                    for slot in lo..=hi {
                        owners[usize::from(slot)] = i as u16;
                    }
                }
            }
            let addrs = masters
                .iter()
                .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect();
            Ok((addrs, owners))
        };
        Some(map().map_err(|e| format!("reading the cluster's slot map: {e}")))
    }

    /// Runs a cluster event: `reshard` moves `slots` slots from master
    /// `from` to master `to` (indices into the masters at start), `failover`
    /// makes master `from`'s replica take over. Returns what happened.
    pub fn cluster_act(
        &self,
        action: EventAction,
        from: usize,
        to: Option<usize>,
        slots: Option<u32>,
    ) -> std::result::Result<String, String> {
        let Some(cluster) = self.cluster() else {
            return Err("the backends are not a cluster".into());
        };
        let port = |i: usize| {
            self.addrs
                .get(i)
                .map(SocketAddr::port)
                .ok_or_else(|| format!("master {i} does not exist"))
        };
        let source = port(from)?;
        match action {
            EventAction::Reshard => {
                let target = port(to.unwrap_or(usize::MAX))?;
                let n = slots.unwrap_or(0) as usize;
                cluster
                    .reshard(source, target, n)
                    .map_err(|e| e.to_string())?;
                Ok(format!("{n} slots moved from :{source} to :{target}"))
            }
            EventAction::Failover => {
                let replica = cluster
                    .replica_of(source)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("master :{source} has no replica"))?;
                let reply = cluster
                    .cmd(replica, &[b"CLUSTER", b"FAILOVER"])
                    .map_err(|e| e.to_string())?;
                if reply != b"+OK\r\n" {
                    return Err(format!(
                        "CLUSTER FAILOVER on :{replica}: {}",
                        String::from_utf8_lossy(&reply).trim_end()
                    ));
                }
                let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while !cluster
                    .masters()
                    .map_err(|e| e.to_string())?
                    .contains(&replica)
                {
                    if std::time::Instant::now() >= until {
                        return Err(format!(":{replica} did not take over within 30 s"));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                cluster
                    .wait_healthy(std::time::Duration::from_secs(30))
                    .map_err(|e| e.to_string())?;
                Ok(format!(":{replica} took over from :{source}"))
            }
            other => Err(format!("`{other}` is not a cluster action")),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<BackendSlot>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether ncbench runs these backends as child processes.
    pub fn has_processes(&self) -> bool {
        self.spawner.is_some()
    }

    /// Read + write syscalls of every backend process alive now (None
    /// when ncbench runs none).
    pub fn io(&self) -> Option<IoCount> {
        if !self.has_processes() {
            return None;
        }
        let mut sum = IoCount::default();
        for slot in self.slots().iter() {
            if let Some(c) = slot
                .child
                .as_ref()
                .and_then(|g| procs::io_of_process(g.pid()))
            {
                sum.reads += c.reads;
                sum.writes += c.writes;
            }
        }
        Some(sum)
    }

    /// Runs a backend action (kill, stop, continue, restart) on backend `i`.
    pub fn act(&self, i: usize, action: EventAction) -> std::result::Result<(), String> {
        use nix::sys::signal::Signal;
        let mut slots = self.slots();
        let slot = slots
            .get_mut(i)
            .ok_or_else(|| format!("backend {i} does not exist"))?;
        let pid = slot.child.as_ref().map(|g| g.pid());
        match action {
            EventAction::Kill => {
                let Some(g) = slot.child.take() else {
                    return Err(format!("backend {i} is not running"));
                };
                drop(g); // SIGKILL and reap
                slot.stopped = false;
                Ok(())
            }
            EventAction::Stop | EventAction::Continue => {
                let Some(pid) = pid else {
                    return Err(format!("backend {i} is not running"));
                };
                let (sig, stopped) = match action {
                    EventAction::Stop => (Signal::SIGSTOP, true),
                    _ => (Signal::SIGCONT, false),
                };
                procs::signal(pid, sig).map_err(|e| format!("{sig:?} to pid {pid}: {e}"))?;
                slot.stopped = stopped;
                Ok(())
            }
            EventAction::Restart => {
                drop(slot.child.take());
                slot.stopped = false;
                let g = self.spawn_on(i)?;
                slot.child = Some(g);
                Ok(())
            }
            other => Err(format!("`{other}` is not a backend action")),
        }
    }

    /// Starts backend `i` again on its port(s).
    fn spawn_on(&self, i: usize) -> std::result::Result<ChildGuard, String> {
        let cpus = self.cpus.as_ref();
        let port = self.addrs[i].port();
        let r = match &self.spawner {
            Some(Spawner::Redis { binary, tls }) => {
                let tls_port = self.tls.as_ref().map(|t| t.addrs[i].port());
                procs::start_redis_on(binary, port, tls.as_ref().zip(tls_port), cpus)
            }
            Some(Spawner::Memcached { binary, max_value }) => {
                procs::start_memcached_on(binary, port, *max_value, cpus)
            }
            None => return Err("ncbench did not start these backends".into()),
        };
        r.map(|(g, _)| g).map_err(|e| e.to_string())
    }

    /// Puts every backend back after a cell with events: continues stopped
    /// ones and starts killed ones again. Returns the indices restarted
    /// (their data is gone) and what could not be restored.
    pub fn restore(&self) -> (Vec<usize>, Vec<String>) {
        let mut restarted = Vec::new();
        let mut problems = Vec::new();
        let n = self.slots().len();
        for i in 0..n {
            let (down, stopped) = {
                let s = &self.slots()[i];
                (s.child.is_none(), s.stopped)
            };
            let r = if down {
                restarted.push(i);
                self.act(i, EventAction::Restart)
            } else if stopped {
                self.act(i, EventAction::Continue)
            } else {
                Ok(())
            };
            if let Err(e) = r {
                problems.push(format!("backend {i}: {e}"));
            }
        }
        (restarted, problems)
    }

    /// `redis-server :6379 (pid 12)` for event records.
    pub fn describe(&self, i: usize) -> String {
        let slots = self.slots();
        match slots.get(i).and_then(|s| s.child.as_ref()) {
            Some(g) => format!("{} (pid {})", g.name, g.pid()),
            None => format!("backend {i} (down)"),
        }
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("addrs", &self.addrs)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Starts a local Redis Cluster: `count` masters with `cluster_replicas`
/// replicas each, on free loopback ports (nc-harness's `RedisCluster`).
fn start_cluster(cfg: &BackendsSection, protocol: Protocol) -> Result<Backends> {
    // The harness finds redis-server itself ($REDIS_SERVER_BIN, then PATH).
    let redis_bin = procs::which(&cfg.redis_server);
    let cluster = nc_harness::RedisCluster::start_with(nc_harness::ClusterOptions {
        masters: cfg.count as usize,
        replicas_per_master: cfg.cluster_replicas as usize,
        node_timeout_ms: 5000,
        extra_args: Vec::new(),
    })
    .map_err(|e| BenchError::setup(format!("backends.kind = \"cluster\": {e}")))?;
    let mut masters = cluster
        .masters()
        .map_err(|e| BenchError::setup(format!("reading the cluster's masters: {e}")))?;
    masters.sort_unstable();
    let version = redis_bin.as_ref().and_then(|bin| {
        procs::version_of(bin, "--version").map(|v| {
            v.split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .map(|n| format!("redis-server {n}"))
                .unwrap_or(v)
        })
    });
    Ok(Backends {
        addrs: masters
            .iter()
            .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect(),
        kind: "redis-cluster",
        protocol,
        version: version.map(|v| {
            format!(
                "Redis Cluster of {} masters with {} replica(s) each ({v})",
                cfg.count, cfg.cluster_replicas
            )
        }),
        owned: true,
        cpus_observed: Vec::new(),
        children: Mutex::new(Vec::new()),
        spawner: None,
        cpus: None,
        _embedded: None,
        cluster: Some(Mutex::new(cluster)),
        tls: None,
        pki: None,
    })
}

/// Starts (or resolves) the backends described by `[backends]`, speaking
/// `protocol`, sized for values up to `max_value` bytes; the ones ncbench
/// starts run on `cpus` when given. `pki`: the run's certificates (needed
/// for `tls = true` backends ncbench starts; kept for the targets).
pub fn start_backends(
    cfg: &BackendsSection,
    protocol: Protocol,
    max_value: u64,
    cpus: Option<&CpuList>,
    pki: Option<Arc<Pki>>,
) -> Result<Backends> {
    let mut b = start_backends_inner(cfg, protocol, max_value, cpus, pki.as_deref())?;
    b.pki = pki;
    Ok(b)
}

fn start_backends_inner(
    cfg: &BackendsSection,
    protocol: Protocol,
    max_value: u64,
    cpus: Option<&CpuList>,
    pki: Option<&Pki>,
) -> Result<Backends> {
    let count = cfg.count as usize;
    if cfg.kind == BackendKind::Cluster {
        return start_cluster(cfg, protocol);
    }
    if protocol == Protocol::Memcache && cfg.kind != BackendKind::External {
        return start_memcached(cfg, max_value, cpus);
    }
    let redis_bin = procs::which(&cfg.redis_server);
    let use_redis = match cfg.kind {
        BackendKind::External => {
            let mut addrs = Vec::new();
            for a in &cfg.addresses {
                addrs.push(resolve(a)?);
            }
            let tls = cfg.tls.then(|| BackendTls {
                addrs: addrs.clone(),
                names: cfg
                    .addresses
                    .iter()
                    .map(|a| crate::config::parse_host_port(a).map_or_else(String::new, |h| h.0))
                    .collect(),
                ca: cfg.tls_ca.as_ref().map(PathBuf::from),
                only: true,
            });
            return Ok(Backends {
                addrs,
                kind: "external",
                protocol,
                version: None,
                owned: false,
                cpus_observed: Vec::new(),
                children: Mutex::new(Vec::new()),
                spawner: None,
                cpus: None,
                _embedded: None,
                cluster: None,
                tls,
                pki: None,
            });
        }
        BackendKind::Embedded => false,
        BackendKind::Cluster => return start_cluster(cfg, protocol),
        BackendKind::Memcached => {
            return Err(BenchError::setup(
                "backends.kind = \"memcached\" needs workload.protocol = \"memcache\"",
            ))
        }
        BackendKind::Redis => {
            if redis_bin.is_none() {
                return Err(BenchError::setup(format!(
                    "backends.kind = \"redis\" but `{}` is not on PATH (install redis-server, or use kind = \"auto\")",
                    cfg.redis_server
                )));
            }
            true
        }
        BackendKind::Auto => redis_bin.is_some(),
    };
    if cfg.tls && !use_redis {
        return Err(BenchError::setup(format!(
            "backends.tls = true needs redis-server, and `{}` is not on PATH (the embedded backend has no TLS)",
            cfg.redis_server
        )));
    }
    if use_redis {
        let bin = redis_bin.expect("checked above");
        let files = match (cfg.tls, pki) {
            (false, _) => None,
            (true, Some(p)) => Some(procs::RedisTls {
                cert: p.cert().to_path_buf(),
                key: p.key().to_path_buf(),
                ca: p.ca().to_path_buf(),
            }),
            (true, None) => {
                return Err(BenchError::setup(
                    "backends.tls = true but no certificates were made for the run",
                ))
            }
        };
        let mut guards = Vec::with_capacity(count);
        let mut addrs = Vec::with_capacity(count);
        let mut tls_addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let (g, a, t) = procs::start_redis(&bin, files.as_ref(), cpus)?;
            guards.push(g);
            addrs.push(a);
            tls_addrs.extend(t);
        }
        let tls = files.as_ref().map(|f| BackendTls {
            names: tls_addrs.iter().map(|a| a.ip().to_string()).collect(),
            addrs: tls_addrs,
            ca: Some(f.ca.clone()),
            only: false,
        });
        Ok(Backends {
            addrs,
            kind: "redis-server",
            protocol,
            // "Redis server v=7.0.15 sha=..." -> "redis-server 7.0.15".
            version: procs::version_of(&bin, "--version").map(|v| {
                v.split_whitespace()
                    .find_map(|w| w.strip_prefix("v="))
                    .map(|n| format!("redis-server {n}"))
                    .unwrap_or(v)
            }),
            owned: true,
            cpus_observed: guards
                .iter()
                .map(|g| (g.name.clone(), g.cpus_allowed()))
                .collect(),
            children: slots(guards),
            spawner: Some(Spawner::Redis {
                binary: bin,
                tls: files,
            }),
            cpus: cpus.cloned(),
            _embedded: None,
            cluster: None,
            tls,
            pki: None,
        })
    } else {
        let e = embedded::start(count, cpus)?;
        Ok(Backends {
            addrs: e.addrs.clone(),
            kind: "embedded",
            protocol,
            version: Some("ncbench embedded RESP backend".into()),
            owned: true,
            cpus_observed: vec![("embedded backend".into(), e.cpus_allowed.clone())],
            children: Mutex::new(Vec::new()),
            spawner: None,
            cpus: None,
            _embedded: Some(e),
            cluster: None,
            tls: None,
            pki: None,
        })
    }
}

/// `count` memcached children (kind `auto` or `memcached` with protocol memcache).
fn start_memcached(
    cfg: &BackendsSection,
    max_value: u64,
    cpus: Option<&CpuList>,
) -> Result<Backends> {
    let Some(bin) = procs::which(&cfg.memcached) else {
        return Err(BenchError::setup(format!(
            "workload.protocol = \"memcache\" but `{}` is not on PATH (apt-get install memcached, or set backends.memcached)",
            cfg.memcached
        )));
    };
    let mut guards = Vec::with_capacity(cfg.count as usize);
    let mut addrs = Vec::with_capacity(cfg.count as usize);
    for _ in 0..cfg.count {
        let (g, a) = procs::start_memcached(&bin, max_value, cpus)?;
        guards.push(g);
        addrs.push(a);
    }
    Ok(Backends {
        addrs,
        kind: "memcached",
        protocol: Protocol::Memcache,
        // "memcached 1.6.18".
        version: procs::version_of(&bin, "-V"),
        owned: true,
        cpus_observed: guards
            .iter()
            .map(|g| (g.name.clone(), g.cpus_allowed()))
            .collect(),
        children: slots(guards),
        spawner: Some(Spawner::Memcached {
            binary: bin,
            max_value,
        }),
        cpus: cpus.cloned(),
        _embedded: None,
        cluster: None,
        tls: None,
        pki: None,
    })
}

/// Resolves `host:port` to one socket address.
pub fn resolve(a: &str) -> Result<SocketAddr> {
    a.to_socket_addrs()
        .map_err(|e| BenchError::setup(format!("cannot resolve {a}: {e}")))?
        .next()
        .ok_or_else(|| BenchError::setup(format!("{a} resolves to nothing")))
}

/// The send-path settings of one cell (only for targets that have them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    pub send_mode: SendMode,
    pub iov_max: u32,
    pub send_limit: SendLimit,
}

/// Why a target could not start. `unavailable` = the software is missing,
/// which an `optional` target turns into a skipped cell.
#[derive(Debug)]
pub struct StartError {
    pub unavailable: bool,
    pub error: BenchError,
}

impl From<BenchError> for StartError {
    fn from(error: BenchError) -> Self {
        StartError {
            unavailable: false,
            error,
        }
    }
}

enum Guard {
    None,
    Child { _guard: ChildGuard },
    // Boxed: the in-process proxy is far larger than the other guards.
    InProc(Box<crate::inproc::InProcProxy>),
}

/// A started target.
pub struct RunningTarget {
    /// Where the load goes (several for `direct` with several backends).
    pub addrs: Vec<SocketAddr>,
    pub stats: Option<SocketAddr>,
    /// How it runs, for the report (`ncproxy in-process`, `nutcracker 0.5.0 (pid 123)`).
    pub how: String,
    pub pid: Option<u32>,
    /// (process or thread, its `Cpus_allowed_list`) for the proxy ncbench started.
    pub cpus_observed: Vec<(String, String)>,
    /// Where the proxy's syscall counters are.
    pub io: IoSource,
    /// What a reload needs (proxies ncbench started).
    reload: Option<ReloadPlan>,
    guard: Guard,
    /// `direct` to a cluster: per slot, the index in `addrs` of the master
    /// that serves it, so the load routes by slot itself.
    pub slot_owners: Option<std::sync::Arc<Vec<u16>>>,
    /// Over TLS: how the driver verifies each of `addrs` (empty: plaintext).
    pub tls: Vec<TlsClient>,
}

/// Where a target's syscalls can be read.
#[derive(Debug, Clone, PartialEq)]
pub enum IoSource {
    /// No proxy process (direct) or not ours (external).
    None,
    /// A child process: `/proc/<pid>/io`.
    Process(u32),
    /// Threads of this process (in-process ncproxy): `/proc/self/task/<tid>/io`.
    Threads(Vec<u32>),
}

impl IoSource {
    pub fn read(&self) -> Option<IoCount> {
        match self {
            IoSource::None => None,
            IoSource::Process(pid) => procs::io_of_process(*pid),
            IoSource::Threads(t) => procs::io_of_threads(t),
        }
    }
}

/// The inputs of a proxy's generated config, kept to write a changed one.
#[derive(Debug, Clone)]
struct ReloadPlan {
    kind: TargetKind,
    listen: SocketAddr,
    proxy: ProxySection,
    protocol: Protocol,
    backends: Vec<SocketAddr>,
    knobs: Option<Knobs>,
    tls: PoolTls,
    /// The binary's `-c` file (None in-process).
    conf: Option<PathBuf>,
}

/// The TLS keys of a generated pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolTls {
    /// `tls_cert` and `tls_key`: the listener speaks TLS.
    pub listen: Option<(PathBuf, PathBuf)>,
    /// `server_tls: true` with this `server_tls_ca`, and `server_tls_name`
    /// when given.
    pub servers: Option<(PathBuf, Option<String>)>,
}

impl PoolTls {
    /// `, TLS clients and servers` for the target's description.
    fn describe(&self) -> &'static str {
        match (self.listen.is_some(), self.servers.is_some()) {
            (true, true) => ", TLS clients and servers",
            (true, false) => ", TLS clients",
            (false, true) => ", TLS to servers",
            (false, false) => "",
        }
    }
}

impl std::fmt::Debug for RunningTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTarget")
            .field("addrs", &self.addrs)
            .field("how", &self.how)
            .finish()
    }
}

impl RunningTarget {
    /// A target with no process of ncbench's: the backends themselves or an
    /// external address.
    fn unmanaged(
        addrs: Vec<SocketAddr>,
        stats: Option<SocketAddr>,
        how: String,
        tls: Vec<TlsClient>,
    ) -> RunningTarget {
        RunningTarget {
            addrs,
            stats,
            how,
            pid: None,
            cpus_observed: Vec::new(),
            io: IoSource::None,
            reload: None,
            guard: Guard::None,
            slot_owners: None,
            tls,
        }
    }

    /// Reloads the proxy with `change` applied to its pool; returns the
    /// outcome for the event record (`ok`, `failed: ...`, `not supported: ...`).
    pub fn reload(&self, change: &ProxyChange) -> String {
        let Some(plan) = &self.reload else {
            return "not supported: this target is not a proxy ncbench started".into();
        };
        if plan.kind == TargetKind::Nutcracker {
            return "not supported: nutcracker does not reload its config (SIGUSR1 is a no-op there)"
                .into();
        }
        let proxy = change.apply(&plan.proxy);
        let knobs = plan.knobs.map(|k| Knobs {
            send_mode: change.send_mode.unwrap_or(k.send_mode),
            iov_max: change.iov_max.unwrap_or(k.iov_max),
            send_limit: change.send_limit.unwrap_or(k.send_limit),
        });
        let yaml = proxy_yaml(
            plan.listen,
            &proxy,
            plan.protocol,
            &plan.backends,
            knobs,
            &plan.tls,
        );
        match (&self.guard, &plan.conf, self.pid) {
            (Guard::InProc(p), _, _) => match p.reload(&yaml) {
                Ok(()) => "ok".into(),
                Err(e) => format!("failed: {e}"),
            },
            (Guard::Child { .. }, Some(conf), Some(pid)) => {
                if let Err(e) = std::fs::write(conf, yaml) {
                    return format!("failed: cannot write {}: {e}", conf.display());
                }
                match procs::signal(pid, nix::sys::signal::Signal::SIGUSR1) {
                    Ok(()) => "ok (config rewritten, SIGUSR1 sent)".into(),
                    Err(e) => format!("failed: SIGUSR1 to pid {pid}: {e}"),
                }
            }
            _ => "not supported: no way to reload this target".into(),
        }
    }

    /// Stops the target (also done on drop).
    pub fn stop(mut self) {
        if let Guard::InProc(p) = std::mem::replace(&mut self.guard, Guard::None) {
            p.stop();
        }
    }
}

/// The pool config ncbench generates for a proxy target (`redis: false` for memcache).
pub fn proxy_yaml(
    listen: SocketAddr,
    proxy: &ProxySection,
    protocol: Protocol,
    backends: &[SocketAddr],
    knobs: Option<Knobs>,
    tls: &PoolTls,
) -> String {
    let mut y = String::new();
    y.push_str(&format!("{POOL}:\n"));
    y.push_str(&format!("  listen: {listen}\n"));
    y.push_str(&format!("  hash: {}\n", proxy.hash));
    y.push_str(&format!("  distribution: {}\n", proxy.distribution));
    y.push_str(&format!("  redis: {}\n", protocol.is_redis()));
    if proxy.timeout_ms > 0 {
        y.push_str(&format!("  timeout: {}\n", proxy.timeout_ms));
    }
    y.push_str(&format!(
        "  server_connections: {}\n",
        proxy.server_connections
    ));
    y.push_str("  auto_eject_hosts: false\n");
    y.push_str("  preconnect: true\n");
    if let Some(k) = knobs {
        y.push_str(&format!("  send_mode: {}\n", k.send_mode));
        y.push_str(&format!("  iov_max: {}\n", k.iov_max));
        if let Some(l) = k.send_limit.0 {
            y.push_str(&format!("  send_limit: {l}\n"));
        }
    }
    if let Some((cert, key)) = &tls.listen {
        y.push_str(&format!("  tls_cert: {}\n", cert.display()));
        y.push_str(&format!("  tls_key: {}\n", key.display()));
    }
    if let Some((ca, name)) = &tls.servers {
        y.push_str("  server_tls: true\n");
        y.push_str(&format!("  server_tls_ca: {}\n", ca.display()));
        if let Some(n) = name {
            y.push_str(&format!("  server_tls_name: {n}\n"));
        }
    }
    y.push_str("  servers:\n");
    for (i, a) in backends.iter().enumerate() {
        y.push_str(&format!("    - {a}:1 s{i}\n"));
    }
    y
}

/// Finds the ncproxy binary: `$NCPROXY_BIN`, next to the running executable
/// (or one level up, for test binaries in `target/*/deps`), then PATH.
pub fn find_ncproxy(explicit: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return procs::which(p);
    }
    if let Some(p) = std::env::var_os("NCPROXY_BIN") {
        return procs::which(&p.to_string_lossy());
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let cand = d.join("ncproxy");
            if cand.is_file() {
                return Some(cand);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    procs::which("ncproxy")
}

/// Starts one target for one cell; a proxy ncbench starts runs on `cpus` when given.
pub fn start_target(
    spec: &TargetSpec,
    knobs: Option<Knobs>,
    proxy: &ProxySection,
    backends: &Backends,
    workdir: &Path,
    cpus: Option<&CpuList>,
) -> std::result::Result<RunningTarget, StartError> {
    let unavailable = |msg: String| StartError {
        unavailable: true,
        error: BenchError::setup(msg),
    };
    // A cluster: the proxies get its masters now as seeds and route by slot.
    let cluster = match backends.cluster_map() {
        Some(Ok(map)) => Some(map),
        Some(Err(e)) => return Err(BenchError::setup(e).into()),
        None => None,
    };
    let cluster_proxy;
    let (proxy, pool_servers) = match &cluster {
        Some((masters, _)) => {
            cluster_proxy = ProxySection {
                distribution: "redis_cluster".into(),
                ..proxy.clone()
            };
            (&cluster_proxy, masters.clone())
        }
        None if spec.server_tls => match &backends.tls {
            Some(t) => (proxy, t.addrs.clone()),
            None => {
                return Err(BenchError::setup(
                    "server_tls = true needs [backends] tls = true (backends with TLS ports)",
                )
                .into())
            }
        },
        None => (proxy, backends.addrs.clone()),
    };
    if cluster.is_some() && spec.kind == TargetKind::Nutcracker {
        return Err(unavailable(
            "nutcracker cannot route to a Redis Cluster (it has no redis_cluster distribution)"
                .into(),
        ));
    }
    match spec.kind {
        TargetKind::Direct if cluster.is_some() => {
            let (masters, owners) = cluster.expect("checked");
            let how = format!("{} masters directly, routed by slot", masters.len());
            Ok(RunningTarget {
                slot_owners: Some(std::sync::Arc::new(owners)),
                ..RunningTarget::unmanaged(masters, None, how, Vec::new())
            })
        }
        TargetKind::Direct => {
            let (addrs, tls, how) = match (&backends.tls, spec.tls) {
                (_, false) => (
                    backends.addrs.clone(),
                    Vec::new(),
                    format!("{} backends directly", backends.kind),
                ),
                (Some(t), true) => (
                    t.addrs.clone(),
                    (0..t.addrs.len())
                        .map(|i| t.client(i))
                        .collect::<Result<_>>()?,
                    format!("{} backends directly, over TLS", backends.kind),
                ),
                (None, true) => {
                    return Err(BenchError::setup(
                        "a direct target over TLS needs [backends] tls = true",
                    )
                    .into())
                }
            };
            Ok(RunningTarget::unmanaged(addrs, None, how, tls))
        }
        TargetKind::External => {
            let address = spec.address.as_deref().unwrap_or_default();
            let addr = resolve(address)?;
            let stats = match &spec.stats {
                Some(s) => Some(resolve(s)?),
                None => None,
            };
            let tls = match spec.tls {
                false => Vec::new(),
                true => {
                    let config = crate::tls::client_config(spec.tls_ca.as_deref().map(Path::new))?;
                    let host = crate::config::parse_host_port(address)
                        .map_or_else(|| addr.ip().to_string(), |h| h.0);
                    vec![TlsClient::new(config, &host)?]
                }
            };
            let how = match spec.tls {
                true => format!("external {addr}, over TLS"),
                false => format!("external {addr}"),
            };
            Ok(RunningTarget::unmanaged(vec![addr], stats, how, tls))
        }
        TargetKind::Nutcracker => {
            let name = spec
                .binary
                .as_deref()
                .or(proxy.nutcracker_bin.as_deref())
                .unwrap_or("nutcracker");
            let Some(bin) = procs::which(name) else {
                return Err(unavailable(format!(
                    "`{name}` is not on PATH (apt-get install nutcracker)"
                )));
            };
            let listen: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
            // nutcracker has no send-path knobs: it always batches up to 128 iovecs.
            let yaml = proxy_yaml(
                listen,
                proxy,
                backends.protocol,
                &pool_servers,
                None,
                &PoolTls::default(),
            );
            let child = procs::start_proxy_binary(&bin, &yaml, listen, &[], workdir, cpus)?;
            let g = child.guard;
            let version = procs::version_of(&bin, "-V").unwrap_or_else(|| "nutcracker".into());
            Ok(RunningTarget {
                addrs: vec![listen],
                stats: Some(child.stats),
                how: format!("{version} (pid {})", g.pid()),
                pid: Some(g.pid()),
                cpus_observed: vec![(g.name.clone(), g.cpus_allowed())],
                io: IoSource::Process(g.pid()),
                reload: Some(ReloadPlan {
                    kind: spec.kind,
                    listen,
                    proxy: proxy.clone(),
                    protocol: backends.protocol,
                    backends: pool_servers.clone(),
                    knobs: None,
                    tls: PoolTls::default(),
                    conf: Some(child.conf),
                }),
                guard: Guard::Child { _guard: g },
                slot_owners: None,
                tls: Vec::new(),
            })
        }
        TargetKind::Ncproxy | TargetKind::NcproxyBin => {
            let listen: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
            let (pool_tls, driver_tls) = ncproxy_tls(spec, backends, listen)?;
            let yaml = proxy_yaml(
                listen,
                proxy,
                backends.protocol,
                &pool_servers,
                knobs,
                &pool_tls,
            );
            let workers = spec.workers.unwrap_or(proxy.workers);
            let busy_poll_us = spec.busy_poll_us.unwrap_or(proxy.busy_poll_us);
            let settings = match busy_poll_us {
                0 => format!("{workers} worker(s){}", pool_tls.describe()),
                us => format!(
                    "{workers} worker(s), busy-poll {us} us{}",
                    pool_tls.describe()
                ),
            };
            let plan = ReloadPlan {
                kind: spec.kind,
                listen,
                proxy: proxy.clone(),
                protocol: backends.protocol,
                backends: pool_servers.clone(),
                knobs,
                tls: pool_tls,
                conf: None,
            };
            if spec.kind == TargetKind::Ncproxy {
                let log = workdir.join("ncproxy-inproc.log");
                if let Some(r) =
                    crate::inproc::start(&yaml, listen, workers, busy_poll_us, cpus, &log)
                {
                    let p = r.map_err(refused_memcache)?;
                    let name = format!("ncproxy in-process :{}", listen.port());
                    return Ok(RunningTarget {
                        addrs: vec![listen],
                        stats: p.stats_addr(),
                        how: format!("ncproxy in-process ({settings})"),
                        pid: None,
                        cpus_observed: p
                            .threads_cpus
                            .iter()
                            .map(|(_, _, cpus)| (name.clone(), cpus.clone()))
                            .collect(),
                        io: IoSource::Threads(p.threads_cpus.iter().map(|t| t.0).collect()),
                        reload: Some(plan),
                        guard: Guard::InProc(Box::new(p)),
                        slot_owners: None,
                        tls: driver_tls,
                    });
                }
            }
            let explicit = spec.binary.as_deref().or(proxy.ncproxy_bin.as_deref());
            let Some(bin) = find_ncproxy(explicit) else {
                return Err(unavailable(
                    "no ncproxy binary found (build it with `cargo build --release -p ncproxy-cli`, or set NCPROXY_BIN)".into(),
                ));
            };
            let mut extra = vec!["--workers".to_string(), workers.to_string()];
            if busy_poll_us > 0 {
                extra.extend(["--busy-poll".to_string(), busy_poll_us.to_string()]);
            }
            let child = procs::start_proxy_binary(&bin, &yaml, listen, &extra, workdir, cpus)
                .map_err(refused_memcache)?;
            let g = child.guard;
            Ok(RunningTarget {
                addrs: vec![listen],
                stats: Some(child.stats),
                how: format!(
                    "ncproxy binary {} ({settings}, pid {})",
                    bin.display(),
                    g.pid()
                ),
                pid: Some(g.pid()),
                cpus_observed: vec![(g.name.clone(), g.cpus_allowed())],
                io: IoSource::Process(g.pid()),
                reload: Some(ReloadPlan {
                    conf: Some(child.conf),
                    ..plan
                }),
                guard: Guard::Child { _guard: g },
                slot_owners: None,
                tls: driver_tls,
            })
        }
    }
}

/// An ncproxy target's pool TLS keys, and how the driver verifies its
/// listener (the run's CA, the listen address as the name).
fn ncproxy_tls(
    spec: &TargetSpec,
    backends: &Backends,
    listen: SocketAddr,
) -> std::result::Result<(PoolTls, Vec<TlsClient>), StartError> {
    let mut pool = PoolTls::default();
    let mut driver = Vec::new();
    if spec.tls {
        let Some(pki) = &backends.pki else {
            return Err(
                BenchError::setup("tls = true but no certificates were made for the run").into(),
            );
        };
        pool.listen = Some((pki.cert().to_path_buf(), pki.key().to_path_buf()));
        driver.push(TlsClient::for_addr(pki.client_config()?, listen));
    }
    if spec.server_tls {
        let Some(t) = &backends.tls else {
            return Err(BenchError::setup("server_tls = true needs [backends] tls = true").into());
        };
        let Some(ca) = &t.ca else {
            return Err(BenchError::setup(
                "server_tls = true needs a CA for the backends (backends.tls_ca)",
            )
            .into());
        };
        // One host name for every backend that is not an address: ncproxy
        // verifies it (the pool lists the resolved addresses).
        let first = t.names.first().cloned().unwrap_or_default();
        let name = (t.names.iter().all(|n| *n == first)
            && first.parse::<std::net::IpAddr>().is_err())
        .then_some(first);
        pool.servers = Some((ca.clone(), name));
    }
    Ok((pool, driver))
}

/// What ncproxy says when it does not serve memcache pools (nc_proxy's
/// `MemcachedPool` error): that ncproxy is unavailable for this run, not broken.
pub const MEMCACHE_REFUSAL: &str = "is a memcached pool (redis: false)";

fn refused_memcache(error: BenchError) -> StartError {
    let unavailable = error.to_string().contains(MEMCACHE_REFUSAL);
    let error = if unavailable {
        BenchError::setup(format!(
            "this ncproxy does not serve memcache pools yet ({error})"
        ))
    } else {
        error
    };
    StartError { unavailable, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_has_knobs_only_when_given() {
        let p = ProxySection::default();
        let b: Vec<SocketAddr> = vec![
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        ];
        let listen = "127.0.0.1:9000".parse().unwrap();
        let y = proxy_yaml(listen, &p, Protocol::Redis, &b, None, &PoolTls::default());
        assert!(y.starts_with("bench:\n  listen: 127.0.0.1:9000\n"));
        assert!(y.contains("  redis: true\n"));
        assert!(y.contains("    - 127.0.0.1:7002:1 s1\n"));
        assert!(!y.contains("send_mode"));
        let k = Knobs {
            send_mode: SendMode::PerMessage,
            iov_max: 16,
            send_limit: SendLimit(Some(4096)),
        };
        let y = proxy_yaml(
            listen,
            &p,
            Protocol::Memcache,
            &b,
            Some(k),
            &PoolTls::default(),
        );
        assert!(y.contains("  redis: false\n"));
        assert!(y.contains("  send_mode: per_message\n  iov_max: 16\n  send_limit: 4096\n"));
        assert!(!y.contains("tls"));
        let tls = PoolTls {
            listen: Some(("/p/server.pem".into(), "/p/server.key".into())),
            servers: Some(("/p/ca.pem".into(), None)),
        };
        let y = proxy_yaml(listen, &p, Protocol::Redis, &b, None, &tls);
        assert!(
            y.contains("  tls_cert: /p/server.pem\n  tls_key: /p/server.key\n  server_tls: true\n  server_tls_ca: /p/ca.pem\n  servers:\n"),
            "{y}"
        );
        assert_eq!(tls.describe(), ", TLS clients and servers");
    }
}
