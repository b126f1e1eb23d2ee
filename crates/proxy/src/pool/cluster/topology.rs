//! A Redis Cluster pool's topology, shared by the workers: the slot map, the
//! registry of every node ever seen (each with its counters), and the
//! refresh thread that loads the map with CLUSTER SLOTS.
//!
//! The map is replaced whole, only by a reply that assigns all 16384 slots;
//! workers notice a new one by its epoch (one atomic load per routed
//! request) and take their own `Arc` of it. A refresh is asked for by any
//! worker (MOVED, CLUSTERDOWN, READONLY, a failed connection) and also runs
//! every `cluster_refresh_interval`; requests coalesce, and refreshes are at
//! least `MIN_REFRESH_GAP` apart. The thread uses blocking sockets with
//! timeouts: it never runs on a worker.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nc_config::ServerAddr;
use nc_protocol::{resp, Limits};

use crate::dialect::cluster::{self, NodeAddr, SlotRange, CLUSTER_SLOTS};
use crate::log;
use crate::stats::{ClusterPoolStats, NodeStats};

/// Refreshes never run closer together than this, however many are asked.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);
/// Connect, write and read timeout of one topology query, when the pool
/// sets no `timeout:`.
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_millis(1000);
/// A slot no node serves.
pub(crate) const UNASSIGNED: u16 = u16::MAX;

/// One node ever seen by the pool. Ids index `Topology::nodes` and are never
/// reused, so a worker's connections and counters stay attached to the
/// right node whatever the map does.
pub(crate) struct Node {
    pub(crate) id: usize,
    pub(crate) addr: NodeAddr,
    pub(crate) stats: Arc<NodeStats>,
}

/// One master and its replicas, serving some slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) master: usize,
    pub(crate) replicas: Vec<usize>,
}

/// Which shard serves each slot.
pub(crate) struct SlotMap {
    /// Per slot: an index into `shards`, or `UNASSIGNED`.
    owner: Box<[u16]>,
    pub(crate) shards: Vec<Shard>,
    /// The nodes the map lists (masters, then replicas), for the stats.
    pub(crate) listed: Vec<usize>,
    /// Whether it came from a node (false: the seeds stand in until one answers).
    pub(crate) loaded: bool,
}

impl SlotMap {
    /// Before any node answered: every slot goes to the first seed, whose
    /// MOVED replies then teach the workers.
    fn seeded(seed: usize) -> SlotMap {
        SlotMap {
            owner: vec![0; nc_hashkit::CLUSTER_SLOTS].into_boxed_slice(),
            shards: vec![Shard {
                master: seed,
                replicas: Vec::new(),
            }],
            listed: vec![seed],
            loaded: false,
        }
    }

    /// The shard serving `slot`, if any.
    #[inline]
    pub(crate) fn shard(&self, slot: u16) -> Option<&Shard> {
        match self.owner.get(usize::from(slot)) {
            Some(&UNASSIGNED) | None => None,
            Some(&i) => self.shards.get(usize::from(i)),
        }
    }

    fn same_as(&self, other: &SlotMap) -> bool {
        self.owner == other.owner && self.shards == other.shards
    }
}

/// The map and the node registry, under one lock (taken per refresh and per
/// new node, never per request).
pub(crate) struct Topology {
    pub(crate) map: Arc<SlotMap>,
    pub(crate) nodes: Vec<Arc<Node>>,
}

impl Topology {
    /// The node at `addr`, registered now if it is new.
    fn node(&mut self, addr: &NodeAddr, workers: usize) -> Arc<Node> {
        if let Some(node) = self.nodes.iter().find(|n| n.addr == *addr) {
            return node.clone();
        }
        let node = Arc::new(Node {
            id: self.nodes.len(),
            addr: addr.clone(),
            stats: Arc::new(NodeStats::new(addr.name(), workers)),
        });
        self.nodes.push(node.clone());
        node
    }
}

/// Wakes the refresh thread; kept apart from `ClusterShared` so the thread
/// can wait on it while holding only a `Weak` to the pool.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    cond: Condvar,
}

#[derive(Default)]
struct SignalState {
    wanted: bool,
    stop: bool,
}

/// A cluster pool's shared state.
pub(crate) struct ClusterShared {
    pub(crate) pool_name: String,
    pub(crate) workers: usize,
    seeds: Vec<NodeAddr>,
    auth: Option<String>,
    query_timeout: Duration,
    interval: Duration,
    limits: Limits,
    topology: Mutex<Topology>,
    /// Bumped (Release) after `topology.map` is replaced.
    epoch: AtomicU64,
    signal: Arc<Signal>,
    pub(crate) stats: ClusterPoolStats,
}

impl ClusterShared {
    /// The pool's topology: loaded now from the seeds (any one answering is
    /// enough; none answering leaves the seeds standing in), then kept fresh
    /// by a refresh thread that ends when the pool is dropped.
    pub(crate) fn start(
        pool: &nc_config::Pool,
        cluster: &nc_config::ClusterConfig,
        workers: usize,
        limits: Limits,
    ) -> Arc<ClusterShared> {
        let seeds: Vec<NodeAddr> = pool
            .servers
            .iter()
            .filter_map(|s| match &s.addr {
                ServerAddr::Tcp { host, port } => Some(NodeAddr {
                    host: host.clone(),
                    port: *port,
                }),
                ServerAddr::Unix(_) => None,
            })
            .collect();
        let mut topology = Topology {
            map: Arc::new(SlotMap::seeded(0)),
            nodes: Vec::new(),
        };
        for seed in &seeds {
            topology.node(seed, workers);
        }
        let shared = Arc::new(ClusterShared {
            pool_name: pool.name.clone(),
            workers,
            seeds,
            auth: pool.redis_auth.clone(),
            query_timeout: pool
                .timeout_ms
                .map_or(DEFAULT_QUERY_TIMEOUT, Duration::from_millis),
            interval: Duration::from_millis(cluster.refresh_interval_ms),
            limits,
            topology: Mutex::new(topology),
            epoch: AtomicU64::new(0),
            signal: Arc::new(Signal::default()),
            stats: ClusterPoolStats::default(),
        });
        if shared.seeds.is_empty() {
            log::error(format_args!(
                "pool '{}': redis_cluster needs host:port seeds; unix sockets are ignored",
                shared.pool_name
            ));
        }
        shared.refresh();
        let weak = Arc::downgrade(&shared);
        let signal = shared.signal.clone();
        let name = format!("ncproxy-cluster-{}", shared.pool_name);
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || refresh_loop(weak, signal))
        {
            log::error(format_args!("cluster refresh thread failed to start: {e}"));
        }
        shared
    }

    fn topology(&self) -> MutexGuard<'_, Topology> {
        self.topology.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map's epoch: it changes whenever the map is replaced.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current map with its epoch.
    pub(crate) fn map(&self) -> (u64, Arc<SlotMap>) {
        let topology = self.topology();
        (self.epoch(), topology.map.clone())
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: usize) -> Option<Arc<Node>> {
        self.topology().nodes.get(id).cloned()
    }

    /// The node at `addr`, registered if new (a MOVED to a node the map
    /// does not list yet).
    pub(crate) fn node_at(&self, addr: &NodeAddr) -> Arc<Node> {
        self.topology().node(addr, self.workers)
    }

    /// The counters of the nodes the current map lists, in map order.
    pub(crate) fn listed_nodes(&self) -> Vec<Arc<NodeStats>> {
        let topology = self.topology();
        topology
            .map
            .listed
            .iter()
            .filter_map(|&id| topology.nodes.get(id).map(|n| n.stats.clone()))
            .collect()
    }

    /// Asks the refresh thread for a refresh; cheap, and coalesced.
    pub(crate) fn want_refresh(&self) {
        let mut state = self.signal.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.wanted {
            state.wanted = true;
            self.signal.cond.notify_one();
        }
    }

    /// Loads CLUSTER SLOTS from the first node that gives a full map:
    /// the current masters, then the other listed nodes, then the seeds.
    fn refresh(&self) {
        let candidates: Vec<Arc<Node>> = {
            let mut topology = self.topology();
            let map = topology.map.clone();
            let mut ids: Vec<usize> = map.shards.iter().map(|s| s.master).collect();
            ids.extend(map.listed.iter().copied());
            let seeds: Vec<usize> = self
                .seeds
                .iter()
                .map(|seed| topology.node(seed, self.workers).id)
                .collect();
            ids.extend(seeds);
            let mut seen = Vec::new();
            ids.retain(|id| {
                let new = !seen.contains(id);
                seen.push(*id);
                new
            });
            ids.iter()
                .filter_map(|&id| topology.nodes.get(id).cloned())
                .collect()
        };
        for node in candidates {
            match self.query(&node.addr) {
                Ok(ranges) if cluster::covers_every_slot(&ranges) => {
                    node.stats.refresh_ok.incr();
                    self.stats.refresh_ok.incr();
                    self.install(&ranges, &node);
                    return;
                }
                Ok(_) => {
                    node.stats.refresh_failed.incr();
                    log::warn(format_args!(
                        "pool '{}': node {} reports a slot map that does not cover every slot",
                        self.pool_name,
                        node.addr.name()
                    ));
                }
                Err(e) => {
                    node.stats.refresh_failed.incr();
                    log::debug(format_args!(
                        "pool '{}': CLUSTER SLOTS on {} failed: {e}",
                        self.pool_name,
                        node.addr.name()
                    ));
                }
            }
        }
        self.stats.refresh_failed.incr();
        log::warn(format_args!(
            "pool '{}': no cluster node gave a full slot map; keeping the current one",
            self.pool_name
        ));
    }

    /// Replaces the map with `ranges` (which cover every slot) unless it is
    /// the same.
    fn install(&self, ranges: &[SlotRange], from: &Node) {
        let mut topology = self.topology();
        let mut shards: Vec<Shard> = Vec::new();
        let mut owner = vec![UNASSIGNED; nc_hashkit::CLUSTER_SLOTS].into_boxed_slice();
        let mut listed = Vec::new();
        for range in ranges {
            let master = topology.node(&range.master, self.workers).id;
            let replicas: Vec<usize> = range
                .replicas
                .iter()
                .map(|r| topology.node(r, self.workers).id)
                .collect();
            let shard = Shard { master, replicas };
            let index = match shards.iter().position(|s| *s == shard) {
                Some(i) => i,
                None => {
                    shards.push(shard);
                    shards.len() - 1
                }
            };
            for slot in range.slots.clone() {
                owner[usize::from(slot)] = index as u16;
            }
        }
        for shard in &shards {
            if !listed.contains(&shard.master) {
                listed.push(shard.master);
            }
        }
        for shard in &shards {
            for &replica in &shard.replicas {
                if !listed.contains(&replica) {
                    listed.push(replica);
                }
            }
        }
        let map = SlotMap {
            owner,
            shards,
            listed,
            loaded: true,
        };
        if topology.map.loaded && topology.map.same_as(&map) {
            return;
        }
        log::notice(format_args!(
            "pool '{}': slot map from {}: {} masters, {} nodes",
            self.pool_name,
            from.addr.name(),
            map.shards
                .iter()
                .map(|s| s.master)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            map.listed.len()
        ));
        topology.map = Arc::new(map);
        self.stats.topology_changes.incr();
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// One CLUSTER SLOTS query (after AUTH when the pool has `redis_auth`).
    fn query(&self, addr: &NodeAddr) -> Result<Vec<SlotRange>, String> {
        let target = (addr.host.as_str(), addr.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve: {e}"))?
            .next()
            .ok_or("resolve: no address")?;
        let mut stream = TcpStream::connect_timeout(&target, self.query_timeout)
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(self.query_timeout))
            .and_then(|_| stream.set_write_timeout(Some(self.query_timeout)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let deadline = Instant::now() + self.query_timeout;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        if let Some(password) = &self.auth {
            let mut auth = BytesMut::new();
            resp::encode_command(&mut auth, b"AUTH", [password.as_bytes()].into_iter());
            stream.write_all(&auth).map_err(|e| format!("write: {e}"))?;
            let reply = read_reply(&mut stream, &mut buf, &self.limits, deadline)?;
            if reply.first() == Some(&b'-') {
                return Err(format!(
                    "AUTH: {}",
                    String::from_utf8_lossy(&reply).trim_end()
                ));
            }
        }
        stream
            .write_all(&CLUSTER_SLOTS)
            .map_err(|e| format!("write: {e}"))?;
        let reply = read_reply(&mut stream, &mut buf, &self.limits, deadline)?;
        cluster::parse_slots(&reply, &addr.host, &self.limits).map_err(|e| {
            let head = String::from_utf8_lossy(&reply[..reply.len().min(80)]).into_owned();
            format!("{e}: {}", head.trim_end())
        })
    }
}

impl Drop for ClusterShared {
    fn drop(&mut self) {
        let mut state = self.signal.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stop = true;
        self.signal.cond.notify_one();
    }
}

/// Reads one complete reply (bounded by the limits and the deadline).
fn read_reply(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &Limits,
    deadline: Instant,
) -> Result<BytesMut, String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match resp::parse_reply(buf, limits) {
            Ok(reply) => return Ok(buf.split_to(reply.len)),
            Err(nc_protocol::resp::ParseError::Incomplete) => {}
            Err(e) => return Err(format!("bad reply: {e}")),
        }
        if Instant::now() >= deadline {
            return Err("timed out".to_owned());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed".to_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The refresh thread: waits for a request or the interval, keeps refreshes
/// `MIN_REFRESH_GAP` apart, and ends with the pool.
fn refresh_loop(pool: Weak<ClusterShared>, signal: Arc<Signal>) {
    let interval = match pool.upgrade() {
        Some(pool) => pool.interval,
        None => return,
    };
    let mut last = Instant::now();
    loop {
        {
            let mut state = signal.state.lock().unwrap_or_else(|e| e.into_inner());
            let due = last + interval;
            while !state.wanted && !state.stop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                state = signal
                    .cond
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if state.stop {
                return;
            }
            let gap = last + MIN_REFRESH_GAP;
            while !state.stop && Instant::now() < gap {
                state = signal
                    .cond
                    .wait_timeout(state, gap.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if state.stop {
                return;
            }
            state.wanted = false;
        }
        let Some(pool) = pool.upgrade() else { return };
        pool.refresh();
        drop(pool);
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::cluster::SlotRange;

    fn addr(port: u16) -> NodeAddr {
        NodeAddr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn range(slots: RangeInclusive<u16>, master: u16, replicas: &[u16]) -> SlotRange {
        SlotRange {
            slots,
            master: addr(master),
            replicas: replicas.iter().map(|&p| addr(p)).collect(),
        }
    }

    use std::ops::RangeInclusive;

    /// A cluster pool whose only seed refuses connections (port 1).
    fn unreachable_pool() -> Arc<ClusterShared> {
        let config = nc_config::Config::from_yaml_str(
            "c:\n  listen: 127.0.0.1:22121\n  redis: true\n  distribution: redis_cluster\n  timeout: 200\n  servers:\n   - 127.0.0.1:1:1\n",
            "t.yml",
        )
        .unwrap();
        let pool = &config.pools[0];
        ClusterShared::start(pool, pool.cluster.as_ref().unwrap(), 2, Limits::default())
    }

    #[test]
    fn without_an_answering_seed_every_slot_goes_to_the_first_seed() {
        let shared = unreachable_pool();
        let (epoch, map) = shared.map();
        assert_eq!(epoch, 0);
        assert!(!map.loaded);
        assert_eq!(map.shard(0).unwrap().master, 0);
        assert_eq!(map.shard(16383).unwrap().master, 0);
        assert_eq!(shared.node(0).unwrap().addr, addr(1));
        assert_eq!(shared.stats.refresh_failed.get(), 1);
        assert_eq!(shared.listed_nodes()[0].refresh_failed.get(), 1);
    }

    #[test]
    fn a_full_map_replaces_the_old_one_once() {
        let shared = unreachable_pool();
        let seed = shared.node(0).unwrap();
        let ranges = vec![
            range(0..=5460, 7000, &[7003]),
            range(5461..=10922, 7001, &[7004]),
            range(10923..=12181, 7002, &[]),
            range(12182..=12182, 7001, &[7004]),
            range(12183..=16383, 7002, &[]),
        ];
        shared.install(&ranges, &seed);
        let (epoch, map) = shared.map();
        assert_eq!(epoch, 1);
        assert!(map.loaded);
        let node_of = |slot: u16| {
            shared
                .node(map.shard(slot).unwrap().master)
                .unwrap()
                .addr
                .port
        };
        assert_eq!(node_of(0), 7000);
        assert_eq!(node_of(12182), 7001, "a single migrated slot");
        assert_eq!(node_of(12183), 7002);
        let shard = map.shard(100).unwrap();
        assert_eq!(shared.node(shard.replicas[0]).unwrap().addr.port, 7003);
        // The same shard serving two ranges is one shard.
        assert_eq!(map.shards.len(), 3);
        let listed: Vec<String> = shared
            .listed_nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        assert_eq!(
            listed,
            [
                "127.0.0.1:7000",
                "127.0.0.1:7001",
                "127.0.0.1:7002",
                "127.0.0.1:7003",
                "127.0.0.1:7004"
            ]
        );
        // The same map again changes nothing; node ids are stable.
        let id_7001 = shared.node_at(&addr(7001)).id;
        shared.install(&ranges, &seed);
        assert_eq!(shared.epoch(), 1);
        assert_eq!(shared.node_at(&addr(7001)).id, id_7001);
        assert_eq!(shared.stats.topology_changes.get(), 1);
        // A node leaves: the stats stop listing it, its id stays.
        let shrunk = vec![range(0..=16383, 7001, &[])];
        shared.install(&shrunk, &seed);
        assert_eq!(shared.epoch(), 2);
        assert_eq!(shared.listed_nodes().len(), 1);
        assert_eq!(shared.node_at(&addr(7000)).id, 1);
    }
}
