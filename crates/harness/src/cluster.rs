//! A real local Redis Cluster: [`RedisCluster`], [`ClusterOptions`] and
//! [`ReshardHandle`].
//!
//! Every node is a [`RedisServer`] started in cluster mode on a leased
//! loopback port, with its cluster bus on a second leased port
//! (`--cluster-port`, Redis 7.0+) instead of the conventional port + 10000,
//! which may be taken. The nodes are joined with
//! `redis-cli --cluster create`, and the start only returns once the cluster
//! is fully usable: every node says `cluster_state:ok`,
//! `redis-cli --cluster check` finds all nodes agreeing, and `CLUSTER SLOTS`
//! lists every replica (a replica shows up there only after its first sync).
//!
//! Topology changes go through the same tools an operator uses
//! (`redis-cli --cluster reshard | add-node | rebalance`, `SIGKILL` for a
//! crash), each followed by a bounded wait until the cluster has settled
//! again. For ASK/TRYAGAIN tests the single-slot migration steps
//! (`CLUSTER SETSLOT ... IMPORTING | MIGRATING | NODE`, `MIGRATE ... KEYS`)
//! are separate calls, so a test can look at the cluster between them.
//!
//! Everything is blocking std code with explicit timeouts; waits that expire
//! fail with what was last seen (tool output, `CLUSTER INFO` lines).
//! Dropping the cluster kills (SIGKILL) and reaps every node and removes
//! their directories.

use crate::port::{lease_port, PortLease};
use crate::process::{find_binary, log_tail, looks_like_bind_failure, temp_dir, ManagedChild};
use crate::raw::{escape_bytes, parse_reply, resp_cmd, RawConn, Reply};
use crate::{Error, RedisServer};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Number of hash slots in a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16_384;

/// How long a start, reshard, add-node or rebalance waits for the cluster to
/// settle before failing.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli --cluster` run may take (a rebalance moving 4096
/// slots took 5 s on an idle 2-core machine, 22 s with both cores busy).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of one command sent to a node.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between polls.
const POLL: Duration = Duration::from_millis(50);
/// How often a node start is retried with a new bus port.
const NODE_START_ATTEMPTS: usize = 3;
/// What `redis-cli --cluster check` prints when all nodes agree.
const AGREE: &str = "[OK] All nodes agree about slots configuration.";
/// What `redis-cli --cluster check` prints when every slot is assigned.
const COVERED: &str = "[OK] All 16384 slots covered.";
/// What reshard and rebalance print when they refuse to start because the
/// nodes do not agree yet (e.g. right after another topology change).
const FIX_FIRST: &str = "Please fix your cluster problems";

/// Shape and settings of a [`RedisCluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Number of masters (at least 3; `redis-cli --cluster create` refuses
    /// fewer).
    pub masters: usize,
    /// Replicas per master.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout` in milliseconds: how long a node may be
    /// unreachable before it is marked failed (failover takes about twice
    /// this).
    pub node_timeout_ms: u64,
    /// Extra `redis-server` arguments for every node; later arguments
    /// override the harness's, e.g. `["--cluster-require-full-coverage", "no"]`.
    pub extra_args: Vec<String>,
}

impl Default for ClusterOptions {
    /// 3 masters with 1 replica each, node timeout 2000 ms.
    fn default() -> Self {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: 2_000,
            extra_args: Vec::new(),
        }
    }
}

/// One node: the server, its bus port and its cluster node id.
#[derive(Debug)]
struct Node {
    server: RedisServer,
    /// Held for the node's lifetime so nobody else takes the bus port.
    bus: PortLease,
    id: String,
    running: bool,
}

/// A line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master_id: Option<String>,
}

impl NodeLine {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    fn is_failed(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }
}

/// One range of `CLUSTER SLOTS`: `(first, last, master port, replica ports)`.
type SlotRange = (u16, u16, u16, Vec<u16>);

/// A running Redis Cluster of local `redis-server` nodes, killed on drop.
///
/// Nodes are addressed by their client port (see
/// [`node_ports`](Self::node_ports)); the port of a node stays the same across
/// [`kill_node`](Self::kill_node) / [`restart_node`](Self::restart_node).
///
/// ```no_run
/// use nc_harness::RedisCluster;
/// let cluster = RedisCluster::start().unwrap();
/// let owner = cluster.slot_owner(cluster.keyslot(b"foo").unwrap()).unwrap();
/// assert_eq!(cluster.cmd(owner, &[b"SET", b"foo", b"1"]).unwrap(), b"+OK\r\n");
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    opts: ClusterOptions,
    cli: PathBuf,
    /// Output files of the `redis-cli` runs.
    work: TempDir,
    /// Slots a master owned when [`kill_node`](Self::kill_node) killed it.
    slots_at_kill: HashMap<u16, Vec<(u16, u16)>>,
}

impl RedisCluster {
    /// The redis-cli binary: `$REDIS_CLI_BIN`, `PATH`, `/usr/bin`.
    pub fn cli_binary() -> Result<PathBuf, Error> {
        find_binary(
            "redis-cli",
            "REDIS_CLI_BIN",
            &["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"],
            "install it with `apt-get install redis-tools` (CI's .ci/run does)",
        )
    }

    /// Starts 3 masters with one replica each, node timeout 2000 ms.
    pub fn start() -> Result<RedisCluster, Error> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a cluster of the given shape and waits (bounded) until it is
    /// fully usable: `cluster_state:ok` on every node, all nodes agreeing
    /// about the slots, every replica listed in `CLUSTER SLOTS`.
    pub fn start_with(opts: ClusterOptions) -> Result<RedisCluster, Error> {
        if opts.masters < 3 {
            return Err(Error::Config(format!(
                "a Redis Cluster needs at least 3 masters, got {}",
                opts.masters
            )));
        }
        let cli = Self::cli_binary()?;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            cli,
            work: temp_dir("cluster")?,
            slots_at_kill: HashMap::new(),
            opts,
        };
        let count = cluster.opts.masters * (1 + cluster.opts.replicas_per_master);
        for _ in 0..count {
            let node = cluster.start_node()?;
            cluster.nodes.push(node);
        }
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(cluster.nodes.iter().map(|n| addr_arg(n.server.port())));
        args.extend([
            "--cluster-replicas".to_string(),
            cluster.opts.replicas_per_master.to_string(),
            "--cluster-yes".to_string(),
        ]);
        cluster.run_tool(&args)?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        cluster.wait_healthy_until(deadline)?;
        cluster.wait_replicas_listed(deadline)?;
        Ok(cluster)
    }

    /// Starts one empty cluster-mode node on fresh client and bus ports.
    fn start_node(&self) -> Result<Node, Error> {
        let mut last = None;
        for _ in 0..NODE_START_ATTEMPTS {
            let bus = lease_port()?;
            let timeout = self.opts.node_timeout_ms.to_string();
            let bus_port = bus.port().to_string();
            let mut args: Vec<&str> = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus_port,
                // Relative to --dir, the node's own directory.
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &timeout,
                // The default 5 s delay before a diskless full sync would
                // make every replica take 5 s to appear.
                "--repl-diskless-sync-delay",
                "0",
                // CLUSTER SLOTS lists a replica only once its replication
                // offset is non-zero. On an idle master the offset moves
                // only with the master's PING to its replicas, by default
                // every 10 s.
                "--repl-ping-replica-period",
                "1",
            ];
            args.extend(self.opts.extra_args.iter().map(String::as_str));
            match RedisServer::start_with(&args) {
                Ok(server) => {
                    let id =
                        bulk_string(&server.cmd(&[b"CLUSTER", b"MYID"]).map_err(|e| {
                            Error::io(format!("CLUSTER MYID on {}", server.port()), e)
                        })?)
                        .map_err(|e| Error::io(format!("CLUSTER MYID on {}", server.port()), e))?;
                    return Ok(Node {
                        server,
                        bus,
                        id,
                        running: true,
                    });
                }
                // The bus port may have been taken between lease and bind.
                Err(e) if looks_like_bind_failure(&e.to_string()) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Every node's client address (`127.0.0.1:<port>`), killed ones
    /// included: the seed list a cluster client is configured with.
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.server.addr()).collect()
    }

    /// Every node's client port, in start order (the first
    /// `masters` were the masters at creation).
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.server.port()).collect()
    }

    /// The cluster bus port of the node with client port `port`.
    pub fn bus_port(&self, port: u16) -> Option<u16> {
        self.nodes
            .iter()
            .find(|n| n.server.port() == port)
            .map(|n| n.bus.port())
    }

    /// Runs one command on a fresh connection to `127.0.0.1:<port>` and
    /// returns the raw reply bytes (errors such as `-MOVED` are replies, not
    /// `Err`).
    pub fn cmd(&self, port: u16, args: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut conn = RawConn::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        conn.send(&resp_cmd(args))?;
        conn.read_exact_reply_bytes(CMD_TIMEOUT)
    }

    /// Runs several commands in one pipeline on one connection and returns
    /// the raw replies (so `ASKING` can precede the command it is for).
    pub fn pipeline(&self, port: u16, cmds: &[&[&[u8]]]) -> io::Result<Vec<Vec<u8>>> {
        let mut conn = RawConn::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let req: Vec<u8> = cmds.iter().flat_map(|c| resp_cmd(c)).collect();
        conn.send(&req)?;
        conn.read_replies(cmds.len(), CMD_TIMEOUT)
    }

    /// The cluster node id of a node (`CLUSTER MYID`).
    pub fn node_id(&self, port: u16) -> io::Result<String> {
        bulk_string(&self.cmd(port, &[b"CLUSTER", b"MYID"])?)
    }

    /// The live masters now: nodes flagged `master` and neither `fail` nor
    /// `fail?` in `CLUSTER NODES` of a live node, minus nodes this handle has
    /// killed. Sorted by port.
    pub fn masters(&self) -> io::Result<Vec<u16>> {
        let mut out: Vec<u16> = self
            .cluster_nodes(self.live_port()?)?
            .into_iter()
            .filter(|l| l.has_flag("master") && !l.is_failed() && self.is_live(l.port))
            .map(|l| l.port)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// A live replica of `master_port` (from `CLUSTER NODES`), if it has one.
    pub fn replica_of(&self, master_port: u16) -> io::Result<Option<u16>> {
        let lines = self.cluster_nodes(self.live_port()?)?;
        let Some(master_id) = lines
            .iter()
            .find(|l| l.port == master_port)
            .map(|l| l.id.clone())
        else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no node with port {master_port} in CLUSTER NODES"),
            ));
        };
        let mut replicas: Vec<u16> = lines
            .iter()
            .filter(|l| {
                l.master_id.as_deref() == Some(master_id.as_str())
                    && !l.is_failed()
                    && self.is_live(l.port)
            })
            .map(|l| l.port)
            .collect();
        replicas.sort_unstable();
        Ok(replicas.first().copied())
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT` on a live node).
    pub fn keyslot(&self, key: &[u8]) -> io::Result<u16> {
        let reply = self.cmd(self.live_port()?, &[b"CLUSTER", b"KEYSLOT", key])?;
        match parse_reply(&reply) {
            Ok(Some((Reply::Integer(n), _))) => u16::try_from(n).map_err(io::Error::other),
            _ => Err(unexpected("CLUSTER KEYSLOT", &reply)),
        }
    }

    /// The port of the master serving `slot`, from `CLUSTER SLOTS` of a live
    /// node.
    pub fn slot_owner(&self, slot: u16) -> io::Result<u16> {
        self.slot_owner_seen_by(self.live_port()?, slot)
    }

    fn slot_owner_seen_by(&self, port: u16, slot: u16) -> io::Result<u16> {
        self.cluster_slots(port)?
            .into_iter()
            .find(|(lo, hi, _, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, master, _)| master)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("slot {slot} is not served (CLUSTER SLOTS on {port})"),
                )
            })
    }

    /// The slot ranges (inclusive, ascending) `master_port` serves, from
    /// `CLUSTER SLOTS` of a live node.
    pub fn slots_of(&self, master_port: u16) -> io::Result<Vec<(u16, u16)>> {
        let mut out: Vec<(u16, u16)> = self
            .cluster_slots(self.live_port()?)?
            .into_iter()
            .filter(|(_, _, m, _)| *m == master_port)
            .map(|(lo, hi, _, _)| (lo, hi))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Waits until every live node says `cluster_state:ok` and
    /// `redis-cli --cluster check` finds all nodes agreeing, every slot
    /// covered and no slot open (migrating/importing).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), Error> {
        self.wait_healthy_until(Instant::now() + timeout)
    }

    fn wait_healthy_until(&self, deadline: Instant) -> Result<(), Error> {
        let start = Instant::now();
        let mut last;
        loop {
            match self.health_problem() {
                None => return Ok(()),
                Some(p) => last = p,
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("a healthy cluster", start, last));
            }
            thread::sleep(POLL);
        }
    }

    /// `None` when healthy, else what is wrong.
    fn health_problem(&self) -> Option<String> {
        for port in self.live_ports() {
            match self.cluster_state(port) {
                Ok(s) if s == "ok" => {}
                Ok(s) => return Some(format!("node {port}: cluster_state:{s}")),
                Err(e) => return Some(format!("node {port}: CLUSTER INFO: {e}")),
            }
        }
        let out = match self.check() {
            Ok(out) => out,
            Err(e) => return Some(e.to_string()),
        };
        if !out.contains(AGREE) || !out.contains(COVERED) || out.contains("[WARNING]") {
            return Some(format!("redis-cli --cluster check:\n{out}"));
        }
        None
    }

    /// Output of `redis-cli --cluster check` against a live node.
    pub fn check(&self) -> Result<String, Error> {
        let port = self.live_port().map_err(|e| Error::io("no live node", e))?;
        let args = ["--cluster", "check", &addr_arg(port)].map(String::from);
        Ok(self.run_tool_raw(&args)?.1)
    }

    /// Waits until `CLUSTER SLOTS` on every master lists
    /// `replicas_per_master` replicas for each of its ranges.
    fn wait_replicas_listed(&self, deadline: Instant) -> Result<(), Error> {
        let start = Instant::now();
        let want = self.opts.replicas_per_master;
        loop {
            let mut problem = None;
            for port in self.live_ports() {
                match self.cluster_slots(port) {
                    Ok(ranges) => {
                        if let Some((lo, hi, m, r)) = ranges.iter().find(|r| r.3.len() < want) {
                            problem = Some(format!(
                                "CLUSTER SLOTS on {port}: {lo}-{hi} on {m} lists replicas {r:?}, want {want}"
                            ));
                            break;
                        }
                    }
                    Err(e) => {
                        problem = Some(format!("CLUSTER SLOTS on {port}: {e}"));
                        break;
                    }
                }
            }
            let Some(problem) = problem else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(self.timeout("replicas in CLUSTER SLOTS", start, problem));
            }
            thread::sleep(POLL);
        }
    }

    /// Moves `slots` slots from `from_port` to `to_port` with
    /// `redis-cli --cluster reshard ... --cluster-yes`, then waits until the
    /// cluster is healthy. A failed run's output is in the error.
    pub fn reshard(&self, from_port: u16, to_port: u16, slots: usize) -> Result<(), Error> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        // reshard refuses while a previous change is still propagating.
        self.wait_healthy_until(deadline)?;
        let args = self.reshard_args(from_port, to_port, slots)?;
        self.run_tool_retrying(&args, deadline)?;
        self.wait_healthy_until(Instant::now() + SETTLE_TIMEOUT)
    }

    /// Starts the same reshard as [`reshard`](Self::reshard) in a background
    /// `redis-cli` process (after waiting for a healthy cluster) and returns
    /// at once, so a test can drive load while slots move. Call
    /// [`ReshardHandle::wait`] and then [`wait_healthy`](Self::wait_healthy).
    pub fn spawn_reshard(
        &self,
        from_port: u16,
        to_port: u16,
        slots: usize,
    ) -> Result<ReshardHandle, Error> {
        self.wait_healthy(SETTLE_TIMEOUT)?;
        let args = self.reshard_args(from_port, to_port, slots)?;
        let dir = temp_dir("reshard")?;
        let out = dir.path().join("reshard.out");
        let mut cmd = Command::new(&self.cli);
        cmd.args(&args);
        let child = ManagedChild::spawn(cmd, &out)?;
        Ok(ReshardHandle {
            child,
            what: format!("redis-cli {}", args.join(" ")),
            out,
            _dir: dir,
        })
    }

    fn reshard_args(
        &self,
        from_port: u16,
        to_port: u16,
        slots: usize,
    ) -> Result<Vec<String>, Error> {
        let from = self.known_id(from_port)?;
        let to = self.known_id(to_port)?;
        Ok([
            "--cluster",
            "reshard",
            &addr_arg(from_port),
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]
        .map(String::from)
        .to_vec())
    }

    /// Kills a node with SIGKILL and reaps it (a crash: no shutdown, no
    /// save). Its port and directory (with `nodes.conf`) stay reserved for
    /// [`restart_node`](Self::restart_node). Unknown ports are ignored.
    pub fn kill_node(&mut self, port: u16) {
        // Remember what a master served, for wait_failover.
        if let Ok(slots) = self.slots_of(port) {
            if !slots.is_empty() {
                self.slots_at_kill.insert(port, slots);
            }
        }
        if let Some(node) = self.nodes.iter_mut().find(|n| n.server.port() == port) {
            node.server.stop();
            node.running = false;
        }
    }

    /// Starts a killed node again on the same port, bus port and directory,
    /// so it rejoins with its `nodes.conf` (an old master comes back as a
    /// replica of its replacement). Waits until it says `cluster_state:ok`.
    pub fn restart_node(&mut self, port: u16) -> Result<(), Error> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.server.port() == port)
            .ok_or_else(|| Error::Config(format!("no cluster node on port {port}")))?;
        node.server.restart()?;
        node.running = true;
        self.slots_at_kill.remove(&port);
        let start = Instant::now();
        let deadline = start + SETTLE_TIMEOUT;
        loop {
            let state = self.cluster_state(port);
            if matches!(&state, Ok(s) if s == "ok") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(
                    &format!("restarted node {port} to rejoin"),
                    start,
                    format!("cluster_state: {state:?}"),
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until the slots of `dead_master` (killed with
    /// [`kill_node`](Self::kill_node)) are served by another live node in
    /// the view of every live node, and every live node says
    /// `cluster_state:ok`. Returns the new master's port.
    pub fn wait_failover(&self, dead_master: u16, timeout: Duration) -> Result<u16, Error> {
        let slots = self.slots_at_kill.get(&dead_master).ok_or_else(|| {
            Error::Config(format!(
                "{dead_master} was not a master killed with kill_node"
            ))
        })?;
        let probe = slots[0].0;
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let problem = match self.failover_problem(dead_master, probe) {
                Ok(new) => return Ok(new),
                Err(p) => p,
            };
            if Instant::now() >= deadline {
                return Err(self.timeout(
                    &format!("failover of master {dead_master}"),
                    start,
                    problem,
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// The new owner of `probe` if the failover is complete, else why not.
    fn failover_problem(&self, dead: u16, probe: u16) -> Result<u16, String> {
        let mut owner = None;
        for port in self.live_ports() {
            match self.cluster_state(port) {
                Ok(s) if s == "ok" => {}
                other => return Err(format!("node {port}: cluster_state {other:?}")),
            }
            let seen = self
                .slot_owner_seen_by(port, probe)
                .map_err(|e| format!("node {port}: {e}"))?;
            if seen == dead || owner.is_some_and(|o| o != seen) {
                return Err(format!("node {port} says slot {probe} is on {seen}"));
            }
            owner = Some(seen);
        }
        owner.ok_or_else(|| "no live node".to_string())
    }

    /// Starts a new empty node, joins it as a master with
    /// `redis-cli --cluster add-node`, and waits until every live node knows
    /// it and the cluster is healthy. Returns its port.
    pub fn add_master(&mut self) -> Result<u16, Error> {
        let node = self.start_node()?;
        let port = node.server.port();
        let id = node.id.clone();
        self.nodes.push(node);
        let entry = self
            .live_ports()
            .into_iter()
            .find(|&p| p != port)
            .ok_or_else(|| Error::Config("no live node to join".into()))?;
        let args = ["--cluster", "add-node", &addr_arg(port), &addr_arg(entry)].map(String::from);
        self.run_tool(&args)?;
        let start = Instant::now();
        let deadline = start + SETTLE_TIMEOUT;
        loop {
            let problem = self
                .live_ports()
                .into_iter()
                .find_map(|p| match self.cluster_nodes(p) {
                    Ok(lines) if lines.len() == self.live_ports().len() => {
                        (!lines.iter().any(|l| l.id == id))
                            .then(|| format!("node {p} does not know {id}"))
                    }
                    Ok(lines) => Some(format!("node {p} knows {} nodes", lines.len())),
                    Err(e) => Some(format!("node {p}: {e}")),
                });
            match problem {
                None => break,
                Some(p) if Instant::now() >= deadline => {
                    return Err(self.timeout(&format!("new node {port} to join"), start, p))
                }
                Some(_) => thread::sleep(POLL),
            }
        }
        self.wait_healthy_until(deadline)?;
        Ok(port)
    }

    /// `redis-cli --cluster rebalance` (with `--cluster-use-empty-masters`
    /// when asked), retried while it refuses because the nodes do not agree
    /// yet, then waits until the cluster is healthy.
    pub fn rebalance(&self, use_empty_masters: bool) -> Result<(), Error> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        self.wait_healthy_until(deadline)?;
        let port = self.live_port().map_err(|e| Error::io("no live node", e))?;
        let mut args = ["--cluster", "rebalance", &addr_arg(port)]
            .map(String::from)
            .to_vec();
        if use_empty_masters {
            args.push("--cluster-use-empty-masters".into());
        }
        self.run_tool_retrying(&args, deadline)?;
        self.wait_healthy_until(Instant::now() + SETTLE_TIMEOUT)
    }

    /// Migration step 1: on `target`, `CLUSTER SETSLOT <slot> IMPORTING
    /// <source-id>`.
    pub fn set_importing(&self, slot: u16, target: u16, source: u16) -> io::Result<()> {
        self.setslot(target, slot, "IMPORTING", source)
    }

    /// Migration step 2: on `source`, `CLUSTER SETSLOT <slot> MIGRATING
    /// <target-id>`. From now on the source answers `-ASK` for keys it does
    /// not have and `-TRYAGAIN` for multi-key commands it has only some keys
    /// of.
    pub fn set_migrating(&self, slot: u16, source: u16, target: u16) -> io::Result<()> {
        self.setslot(source, slot, "MIGRATING", target)
    }

    /// `CLUSTER SETSLOT <slot> <subcommand> <id of node>` on `on`, expecting
    /// `+OK`.
    fn setslot(&self, on: u16, slot: u16, subcommand: &str, node: u16) -> io::Result<()> {
        let id = self.node_id(node)?;
        let slot = slot.to_string();
        self.expect_ok(
            on,
            &[
                b"CLUSTER",
                b"SETSLOT",
                slot.as_bytes(),
                subcommand.as_bytes(),
                id.as_bytes(),
            ],
        )
    }

    /// Migration step 3: on `source`, `MIGRATE 127.0.0.1 <target> "" 0 5000
    /// KEYS <keys...>` (`+NOKEY`, none of them existed, counts as success).
    pub fn migrate_keys(&self, source: u16, target: u16, keys: &[&[u8]]) -> io::Result<()> {
        let port = target.to_string();
        let mut args: Vec<&[u8]> = vec![
            b"MIGRATE",
            b"127.0.0.1",
            port.as_bytes(),
            b"",
            b"0",
            b"5000",
            b"KEYS",
        ];
        args.extend_from_slice(keys);
        let reply = self.cmd(source, &args)?;
        if reply == b"+OK\r\n" || reply == b"+NOKEY\r\n" {
            Ok(())
        } else {
            Err(unexpected("MIGRATE", &reply))
        }
    }

    /// Migration step 4: `CLUSTER SETSLOT <slot> NODE <target-id>` on the
    /// target, then on every other live master, then waits until every live
    /// node's `CLUSTER SLOTS` puts the slot on `target`.
    pub fn finish_slot(&self, slot: u16, target: u16) -> io::Result<()> {
        let mut masters = self.masters()?;
        // The target first: it then bumps its config epoch, so its claim
        // wins over any stale one.
        masters.sort_by_key(|&m| m != target);
        for m in masters {
            self.setslot(m, slot, "NODE", target)?;
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let disagree = self.live_ports().into_iter().find_map(|p| {
                match self.slot_owner_seen_by(p, slot) {
                    Ok(o) if o == target => None,
                    other => Some(format!("node {p} says {other:?}")),
                }
            });
            match disagree {
                None => return Ok(()),
                Some(d) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "slot {slot} not on {target} everywhere after {SETTLE_TIMEOUT:?}: {d}"
                        ),
                    ))
                }
                Some(_) => thread::sleep(POLL),
            }
        }
    }

    /// Waits until a replica of `master_port` has acknowledged everything the
    /// master has written so far, from any connection (what `WAIT 1` checks
    /// for the writes of its own connection): some online replica's
    /// acknowledged offset in `INFO replication` reaches the master's
    /// `master_repl_offset`. Replicas acknowledge once a second.
    pub fn wait_replicated(&self, master_port: u16, timeout: Duration) -> io::Result<()> {
        let target = info_field(&self.info_replication(master_port)?, "master_repl_offset")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("no master_repl_offset in INFO replication"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.info_replication(master_port)?;
            if replica_offsets(&info).any(|o| o >= target) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no replica of {master_port} reached offset {target} in {timeout:?}:\n{info}"
                    ),
                ));
            }
            // Replicas acknowledge once a second. (`WAIT 1 <ms>` cannot
            // replace this poll: on a connection that wrote nothing it
            // returns at once with the number of connected replicas.)
            thread::sleep(POLL);
        }
    }

    fn info_replication(&self, port: u16) -> io::Result<String> {
        bulk_string(&self.cmd(port, &[b"INFO", b"replication"])?)
    }

    /// The last lines of every node's log, labelled (for failure messages).
    pub fn logs(&self) -> String {
        let files: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|n| n.server.dir().join("redis.log"))
            .collect();
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        log_tail(&refs)
    }

    fn is_live(&self, port: u16) -> bool {
        self.nodes
            .iter()
            .find(|n| n.server.port() == port)
            .is_none_or(|n| n.running)
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.running)
            .map(|n| n.server.port())
            .collect()
    }

    fn live_port(&self) -> io::Result<u16> {
        self.live_ports()
            .first()
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no live cluster node"))
    }

    fn known_id(&self, port: u16) -> Result<String, Error> {
        self.nodes
            .iter()
            .find(|n| n.server.port() == port)
            .map(|n| n.id.clone())
            .ok_or_else(|| Error::Config(format!("no cluster node on port {port}")))
    }

    fn expect_ok(&self, port: u16, args: &[&[u8]]) -> io::Result<()> {
        let reply = self.cmd(port, args)?;
        if reply == b"+OK\r\n" {
            Ok(())
        } else {
            let what: Vec<String> = args.iter().map(|a| escape_bytes(a)).collect();
            Err(unexpected(&what.join(" "), &reply))
        }
    }

    fn cluster_state(&self, port: u16) -> io::Result<String> {
        let info = bulk_string(&self.cmd(port, &[b"CLUSTER", b"INFO"])?)?;
        info_field(&info, "cluster_state")
            .map(str::to_string)
            .ok_or_else(|| io::Error::other(format!("no cluster_state in CLUSTER INFO: {info}")))
    }

    fn cluster_nodes(&self, port: u16) -> io::Result<Vec<NodeLine>> {
        let text = bulk_string(&self.cmd(port, &[b"CLUSTER", b"NODES"])?)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                parse_node_line(l)
                    .ok_or_else(|| io::Error::other(format!("CLUSTER NODES line {l:?}")))
            })
            .collect()
    }

    fn cluster_slots(&self, port: u16) -> io::Result<Vec<SlotRange>> {
        let reply = self.cmd(port, &[b"CLUSTER", b"SLOTS"])?;
        parse_cluster_slots(&reply).ok_or_else(|| unexpected("CLUSTER SLOTS", &reply))
    }

    /// Runs `redis-cli <args>` (bounded) and returns (success, output).
    fn run_tool_raw(&self, args: &[String]) -> Result<(bool, String), Error> {
        let out = self.work.path().join("redis-cli.out");
        let _ = fs::remove_file(&out);
        let mut cmd = Command::new(&self.cli);
        cmd.args(args);
        let mut child = ManagedChild::spawn(cmd, &out)?;
        let status = child.wait_timeout(TOOL_TIMEOUT);
        child.kill();
        let text = read_tool_output(&out);
        match status {
            Some(s) => Ok((s.success() && !text.contains("[ERR]"), text)),
            None => Err(Error::Timeout {
                what: format!("redis-cli {}", args.join(" ")),
                waited: TOOL_TIMEOUT,
                log: text,
            }),
        }
    }

    /// Runs `redis-cli <args>`; a failure's output is in the error.
    fn run_tool(&self, args: &[String]) -> Result<String, Error> {
        let (ok, out) = self.run_tool_raw(args)?;
        if ok {
            Ok(out)
        } else {
            Err(tool_failed(args, out))
        }
    }

    /// [`run_tool`](Self::run_tool), repeated while the tool refuses with
    /// "Please fix your cluster problems", polling the check in between.
    fn run_tool_retrying(&self, args: &[String], deadline: Instant) -> Result<String, Error> {
        loop {
            let (ok, out) = self.run_tool_raw(args)?;
            if ok {
                return Ok(out);
            }
            if !out.contains(FIX_FIRST) || Instant::now() >= deadline {
                return Err(tool_failed(args, out));
            }
            self.wait_healthy_until(deadline)?;
        }
    }

    fn timeout(&self, what: &str, start: Instant, last: String) -> Error {
        Error::Timeout {
            what: what.to_string(),
            waited: start.elapsed(),
            log: format!("last seen: {last}\n{}", self.logs()),
        }
    }
}

impl Drop for RedisCluster {
    /// Kills (SIGKILL) and reaps every node first, so none of them logs the
    /// others' deaths while directories are removed; the fields' drops then
    /// remove the directories and release the ports.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.server.stop();
        }
    }
}

/// A `redis-cli --cluster reshard` running in the background (see
/// [`RedisCluster::spawn_reshard`]). Dropping it kills the tool.
#[derive(Debug)]
pub struct ReshardHandle {
    child: ManagedChild,
    what: String,
    out: PathBuf,
    _dir: TempDir,
}

impl ReshardHandle {
    /// Whether the tool has exited.
    pub fn is_finished(&mut self) -> bool {
        self.child.exited().is_some()
    }

    /// Waits (bounded) for the tool to exit; returns its output, or an error
    /// with the output if it failed or did not finish in time (it is then
    /// killed).
    pub fn wait(mut self, timeout: Duration) -> Result<String, Error> {
        let status = self.child.wait_timeout(timeout);
        self.child.kill();
        let text = read_tool_output(&self.out);
        match status {
            Some(s) if s.success() && !text.contains("[ERR]") => Ok(text),
            Some(s) => Err(Error::io(
                format!("{} ({s})", self.what),
                io::Error::other(text),
            )),
            None => Err(Error::Timeout {
                what: self.what.clone(),
                waited: timeout,
                log: text,
            }),
        }
    }
}

/// A redis-cli output file as text, without the ANSI colour codes redis-cli
/// writes even when its output is not a terminal.
fn read_tool_output(path: &Path) -> String {
    strip_ansi(&String::from_utf8_lossy(
        &fs::read(path).unwrap_or_default(),
    ))
}

/// Removes `ESC [ ... <letter>` sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn addr_arg(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn tool_failed(args: &[String], out: String) -> Error {
    Error::io(
        format!("redis-cli {} failed", args.join(" ")),
        io::Error::other(format!("output:\n{out}")),
    )
}

fn unexpected(what: &str, reply: &[u8]) -> io::Error {
    io::Error::other(format!("{what}: unexpected reply {}", escape_bytes(reply)))
}

/// The text of a bulk reply (`CLUSTER NODES`, `INFO`, `CLUSTER MYID`).
fn bulk_string(reply: &[u8]) -> io::Result<String> {
    match parse_reply(reply) {
        Ok(Some((Reply::Bulk(Some(b)), _))) => String::from_utf8(b).map_err(io::Error::other),
        _ => Err(unexpected("expected a bulk string", reply)),
    }
}

/// `value` of the `name:value` line of an INFO-style text.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Acknowledged offsets of the `slaveN:ip=..,port=..,state=online,offset=N`
/// lines of `INFO replication`.
fn replica_offsets(info: &str) -> impl Iterator<Item = u64> + '_ {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("offset="))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master-id|-> ...`
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let mut it = line.split_whitespace();
    let id = it.next()?.to_string();
    let addr = it.next()?;
    let host_port = addr.split('@').next()?;
    let port = host_port.rsplit(':').next()?.parse().ok()?;
    let flags = it.next()?.split(',').map(str::to_string).collect();
    let master = it.next()?;
    Some(NodeLine {
        id,
        port,
        flags,
        master_id: (master != "-").then(|| master.to_string()),
    })
}

/// `CLUSTER SLOTS`: `[[start, end, [ip, port, id, ..], replicas...], ...]`.
fn parse_cluster_slots(reply: &[u8]) -> Option<Vec<SlotRange>> {
    let Ok(Some((Reply::Array(Some(ranges)), _))) = parse_reply(reply) else {
        return None;
    };
    let node_port = |r: &Reply| match r {
        Reply::Array(Some(f)) => match f.get(1) {
            Some(Reply::Integer(p)) => u16::try_from(*p).ok(),
            _ => None,
        },
        _ => None,
    };
    ranges
        .iter()
        .map(|range| {
            let Reply::Array(Some(items)) = range else {
                return None;
            };
            let (Some(Reply::Integer(lo)), Some(Reply::Integer(hi))) =
                (items.first(), items.get(1))
            else {
                return None;
            };
            let master = node_port(items.get(2)?)?;
            let replicas = items[3..]
                .iter()
                .map(node_port)
                .collect::<Option<Vec<_>>>()?;
            Some((
                u16::try_from(*lo).ok()?,
                u16::try_from(*hi).ok()?,
                master,
                replicas,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_redis_cli_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[32;1m[OK] All nodes agree.\n\u{1b}[0m>>> x"),
            "[OK] All nodes agree.\n>>> x"
        );
        assert_eq!(strip_ansi("plain [x]"), "plain [x]");
    }

    #[test]
    fn parses_cluster_nodes_lines() {
        let l = parse_node_line(
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001,host myself,master - 0 0 1 connected 0-5460",
        )
        .unwrap();
        assert_eq!(l.port, 30001);
        assert!(l.has_flag("master") && l.has_flag("myself") && !l.is_failed());
        assert_eq!(l.master_id, None);
        let r =
            parse_node_line("abc 127.0.0.1:30004@40004 slave,fail? e7d1 0 0 1 connected").unwrap();
        assert_eq!(r.master_id.as_deref(), Some("e7d1"));
        assert!(r.is_failed());
        assert!(parse_node_line("abc").is_none());
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = b"*2\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:17101\r\n$2\r\nid\r\n*0\r\n*3\r\n$9\r\n127.0.0.1\r\n:17104\r\n$2\r\nid\r\n*3\r\n:5461\r\n:5461\r\n*2\r\n$9\r\n127.0.0.1\r\n:17102\r\n";
        assert_eq!(
            parse_cluster_slots(reply).unwrap(),
            vec![(0, 5460, 17101, vec![17104]), (5461, 5461, 17102, vec![])]
        );
        assert!(parse_cluster_slots(b"-ERR x\r\n").is_none());
    }

    #[test]
    fn reads_info_fields_and_replica_offsets() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=1,state=online,offset=42,lag=0\r\nslave1:ip=127.0.0.1,port=2,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:42\r\n";
        assert_eq!(info_field(info, "master_repl_offset"), Some("42"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "rol"), None);
        assert_eq!(replica_offsets(info).collect::<Vec<_>>(), vec![42]);
    }
}
