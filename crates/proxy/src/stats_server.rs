//! The stats server: on each connection, write the stats JSON and close,
//! like nutcracker's stats thread. Values are summed over all workers at the
//! moment of the request (nutcracker aggregates every `-i` milliseconds).
//!
//! The JSON keeps nutcracker's exact layout, field names and order, with
//! ncproxy's send-path fields appended inside each pool and server object.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nc_config::Config;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::pool::cluster::topology::ClusterShared;
use crate::stats::{
    Field, Kind, NodeStats, PoolStats, ServerStats, WorkerStats, CLUSTER_POOL_FIELDS,
    NODE_CLUSTER_FIELDS, NODE_REFRESH_FIELDS, POOL_FIELDS, SERVER_FIELDS, WORKER_FIELDS,
};

/// The pools being counted: replaced as a whole on reload.
pub(crate) struct StatsLayout {
    pub(crate) config: Arc<Config>,
    /// `[pool][worker]`.
    pub(crate) pools: Vec<Arc<Vec<Arc<PoolStats>>>>,
    /// Per pool: its cluster topology, for a `redis_cluster` pool. Its
    /// server entries are the nodes its current map lists.
    pub(crate) clusters: Vec<Option<Arc<ClusterShared>>>,
}

/// One server entry of a pool in the stats: a configured server (by index)
/// or a cluster node.
enum Entry {
    Server(usize, String),
    Node(Arc<NodeStats>),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Server(_, name) => name,
            Entry::Node(node) => &node.name,
        }
    }
}

/// What the JSON is built from.
pub(crate) struct StatsSource {
    pub(crate) layout: std::sync::Mutex<Arc<StatsLayout>>,
    pub(crate) workers: Vec<Arc<WorkerStats>>,
    pub(crate) started: Instant,
    pub(crate) hostname: String,
}

impl StatsSource {
    fn layout(&self) -> Arc<StatsLayout> {
        self.layout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sums `f` over every worker's connection counters.
    fn sum(&self, f: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.workers
            .iter()
            .map(|w| f(w))
            .fold(0u64, u64::wrapping_add)
    }

    /// One of ncproxy's top-level fields over every worker.
    fn worker_value(&self, field: &Field<WorkerStats>) -> u64 {
        combine(field.kind, self.workers.iter().map(|w| (field.get)(w)))
    }
}

impl StatsLayout {
    /// A pool field over every worker: summed, or the latest timestamp.
    fn pool_value(&self, p: usize, field: &Field<PoolStats>) -> u64 {
        combine(field.kind, self.pools[p].iter().map(|s| (field.get)(s)))
    }

    fn server_value(&self, p: usize, i: usize, field: &Field<ServerStats>) -> u64 {
        combine(
            field.kind,
            self.pools[p].iter().map(|s| (field.get)(&s.servers[i])),
        )
    }

    /// The server entries of pool `p`: its servers, or its cluster's nodes.
    fn entries(&self, p: usize) -> Vec<Entry> {
        match &self.clusters.get(p).and_then(Option::as_ref) {
            Some(cluster) => cluster
                .listed_nodes()
                .into_iter()
                .map(Entry::Node)
                .collect(),
            None => self.config.pools[p]
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| Entry::Server(i, s.name.clone()))
                .collect(),
        }
    }

    fn entry_value(&self, p: usize, entry: &Entry, field: &Field<ServerStats>) -> u64 {
        match entry {
            Entry::Server(i, _) => self.server_value(p, *i, field),
            Entry::Node(node) => combine(field.kind, node.workers.iter().map(|s| (field.get)(s))),
        }
    }

    /// A node's cluster fields, as (name, value) in order.
    fn node_cluster_values(entry: &Entry) -> Vec<(&'static str, u64)> {
        let Entry::Node(node) = entry else {
            return Vec::new();
        };
        NODE_CLUSTER_FIELDS
            .iter()
            .map(|f| {
                (
                    f.name,
                    combine(f.kind, node.cluster.iter().map(|s| (f.get)(s))),
                )
            })
            .chain(NODE_REFRESH_FIELDS.iter().map(|f| (f.name, (f.get)(node))))
            .collect()
    }

    /// A cluster pool's topology fields, as (name, value) in order.
    fn cluster_pool_values(&self, p: usize) -> Vec<(&'static str, u64)> {
        match self.clusters.get(p).and_then(Option::as_ref) {
            Some(cluster) => CLUSTER_POOL_FIELDS
                .iter()
                .map(|f| (f.name, (f.get)(&cluster.stats)))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// `--io uring` counters, in the JSON (top level, after `curr_connections`)
/// and Prometheus only while a worker runs a ring.
type WorkerField = (&'static str, &'static str, fn(&WorkerStats) -> u64);
const URING_FIELDS: [WorkerField; 3] = [
    (
        "uring_submits",
        "io_uring_enter calls (submitting client I/O, or only running completions that wait for an enter)",
        |w| w.uring.submits.get(),
    ),
    (
        "uring_sqes",
        "io_uring submission entries (client receives, reply sends, cancels)",
        |w| w.uring.sqes.get(),
    ),
    ("uring_cqes", "io_uring completions reaped", |w| {
        w.uring.cqes.get()
    }),
];

/// Combines one field's per-worker values. Gauges are sums of wrapping
/// increments and decrements, so they are summed like counters.
fn combine(kind: Kind, values: impl Iterator<Item = u64>) -> u64 {
    match kind {
        Kind::Timestamp | Kind::Max => values.max().unwrap_or(0),
        Kind::Counter | Kind::Gauge => values.fold(0u64, u64::wrapping_add),
    }
}

impl StatsSource {
    /// The stats document in nutcracker's layout, with its trailing newline.
    pub(crate) fn json(&self) -> String {
        let mut out = String::with_capacity(1024);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = write!(
            out,
            "{{\"service\":\"nutcracker\", \"source\":\"{}\", \"version\":\"0.5.0\", \"uptime\":{}, \"timestamp\":{}, \"total_connections\":{}, \"curr_connections\":{}",
            self.hostname,
            self.started.elapsed().as_secs(),
            timestamp,
            self.sum(|w| w.total_connections.get()),
            self.sum(|w| w.curr_connections.get()),
        );
        for field in &WORKER_FIELDS {
            let _ = write!(
                out,
                ", \"{}\":{}",
                field.name,
                self.worker_value(field) as i64
            );
        }
        if self.sum(|w| w.uring.active.get()) > 0 {
            for (name, _, get) in URING_FIELDS {
                let _ = write!(out, ", \"{name}\":{}", self.sum(get));
            }
        }
        let layout = self.layout();
        // nutcracker separates the first pool (and a pool's first server) with
        // ", " and the following ones with ",".
        let separator = |i: usize| if i == 0 { ", " } else { "," };
        for (p, pool) in layout.config.pools.iter().enumerate() {
            let _ = write!(out, "{}\"{}\": {{", separator(p), pool.name);
            for (k, field) in POOL_FIELDS.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}\"{}\":{}",
                    if k == 0 { "" } else { ", " },
                    field.name,
                    layout.pool_value(p, field) as i64
                );
            }
            for (name, value) in layout.cluster_pool_values(p) {
                let _ = write!(out, ", \"{name}\":{}", value as i64);
            }
            for (i, entry) in layout.entries(p).iter().enumerate() {
                let _ = write!(out, "{}\"{}\": {{", separator(i), entry.name());
                for (k, field) in SERVER_FIELDS.iter().enumerate() {
                    let value = layout.entry_value(p, entry, field) as i64;
                    let _ = write!(
                        out,
                        "{}\"{}\":{value}",
                        if k == 0 { "" } else { ", " },
                        field.name
                    );
                }
                for (name, value) in StatsLayout::node_cluster_values(entry) {
                    let _ = write!(out, ", \"{name}\":{}", value as i64);
                }
                out.push('}');
            }
            out.push('}');
        }
        out.push_str("}\n");
        out
    }

    /// The same counters in the Prometheus text exposition format.
    pub(crate) fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut family =
            |name: &str,
             kind: Kind,
             help: &str,
             samples: &mut dyn Iterator<Item = (String, u64)>| {
                let (suffix, kind) = match kind {
                    Kind::Counter => ("_total", "counter"),
                    Kind::Gauge => ("", "gauge"),
                    Kind::Timestamp => ("_microseconds", "gauge"),
                    Kind::Max => ("", "gauge"),
                };
                let help = help.trim_start_matches("# ").trim_end_matches(" [ncproxy]");
                let _ = writeln!(out, "# HELP ncproxy_{name}{suffix} {help}");
                let _ = writeln!(out, "# TYPE ncproxy_{name}{suffix} {kind}");
                for (labels, value) in samples {
                    let _ = writeln!(out, "ncproxy_{name}{suffix}{labels} {}", value as i64);
                }
            };
        let one = |v: u64| std::iter::once((String::new(), v));
        family(
            "uptime_seconds",
            Kind::Gauge,
            "seconds since start",
            &mut one(self.started.elapsed().as_secs()),
        );
        family(
            "connections",
            Kind::Counter,
            "connections ever created (clients, servers, listeners)",
            &mut one(self.sum(|w| w.total_connections.get())),
        );
        family(
            "curr_connections",
            Kind::Gauge,
            "connections open now",
            &mut one(self.sum(|w| w.curr_connections.get())),
        );
        for field in &WORKER_FIELDS {
            family(
                field.name,
                field.kind,
                field.help,
                &mut one(self.worker_value(field)),
            );
        }
        if self.sum(|w| w.uring.active.get()) > 0 {
            for (name, help, get) in URING_FIELDS {
                family(name, Kind::Counter, help, &mut one(self.sum(get)));
            }
        }
        let layout = self.layout();
        let pools = &layout.config.pools;
        for field in &POOL_FIELDS {
            let mut samples = pools.iter().enumerate().map(|(p, pool)| {
                (
                    format!("{{pool=\"{}\"}}", escape_label(&pool.name)),
                    layout.pool_value(p, field),
                )
            });
            family(field.name, field.kind, field.help, &mut samples);
        }
        let entries: Vec<Vec<Entry>> = (0..pools.len()).map(|p| layout.entries(p)).collect();
        let server_labels = |p: usize, entry: &Entry| {
            format!(
                "{{pool=\"{}\",server=\"{}\"}}",
                escape_label(&pools[p].name),
                escape_label(entry.name())
            )
        };
        for field in &SERVER_FIELDS {
            let mut samples = entries.iter().enumerate().flat_map(|(p, entries)| {
                let layout = &layout;
                entries.iter().map(move |entry| {
                    (server_labels(p, entry), layout.entry_value(p, entry, field))
                })
            });
            family(field.name, field.kind, field.help, &mut samples);
        }
        if layout.clusters.iter().all(Option::is_none) {
            return out;
        }
        for (k, field) in CLUSTER_POOL_FIELDS.iter().enumerate() {
            let mut samples = (0..pools.len()).filter_map(|p| {
                let values = layout.cluster_pool_values(p);
                values
                    .get(k)
                    .map(|(_, v)| (format!("{{pool=\"{}\"}}", escape_label(&pools[p].name)), *v))
            });
            family(field.name, field.kind, field.help, &mut samples);
        }
        let cluster_fields = NODE_CLUSTER_FIELDS
            .iter()
            .map(|f| (f.name, f.kind, f.help))
            .chain(NODE_REFRESH_FIELDS.iter().map(|f| (f.name, f.kind, f.help)));
        for (k, (name, kind, help)) in cluster_fields.enumerate() {
            let mut samples = entries.iter().enumerate().flat_map(|(p, entries)| {
                entries.iter().filter_map(move |entry| {
                    StatsLayout::node_cluster_values(entry)
                        .get(k)
                        .map(|(_, v)| (server_labels(p, entry), *v))
                })
            });
            let name = format!("cluster_{name}");
            family(&name, kind, help, &mut samples);
        }
        out
    }
}

/// Prometheus label values escape backslash, quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves the JSON (and, when configured, Prometheus text over HTTP) until
/// `shutdown` fires.
pub(crate) fn run(
    listener: Option<std::net::TcpListener>,
    prometheus: Option<std::net::TcpListener>,
    source: Arc<StatsSource>,
    shutdown: oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let json = async {
            let Some(listener) = listener.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
            else {
                return std::future::pending::<()>().await;
            };
            loop {
                if let Ok((mut stream, _)) = listener.accept().await {
                    let json = source.json();
                    let _ = stream.write_all(json.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        };
        let metrics = async {
            let Some(listener) = prometheus.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
            else {
                return std::future::pending::<()>().await;
            };
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_http(stream, source.clone()));
                }
            }
        };
        tokio::select! {
            _ = json => {}
            _ = metrics => {}
            _ = shutdown => {}
        }
    });
}

/// A minimal HTTP/1.x responder: `GET /metrics` gets the Prometheus text,
/// anything else a 404. One request per connection.
async fn serve_http(mut stream: tokio::net::TcpStream, source: Arc<StatsSource>) {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head, bounded in size and time.
    let head = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    request.extend_from_slice(&chunk[..n]);
                    if request.windows(4).any(|w| w == b"\r\n\r\n") {
                        return true;
                    }
                    if request.len() > 16 * 1024 {
                        return false;
                    }
                }
            }
        }
    })
    .await;
    if !matches!(head, Ok(true)) {
        return;
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let response = if method == b"GET" && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
        let body = source.prometheus();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// When the proxy started (forced by `start`), for memcache `stats` uptime.
pub(crate) static PROCESS_START: std::sync::LazyLock<Instant> =
    std::sync::LazyLock::new(Instant::now);

/// The memcache `stats` reply: memcached's `STAT name value` lines with the
/// process fields memcached leads with, then the pool's counters summed
/// over every worker, then each server's as `<server>:<field>`, then `END`.
pub(crate) fn memcache_stats(pool: &nc_config::Pool, all: &[Arc<PoolStats>]) -> bytes::Bytes {
    let mut out = String::with_capacity(2048);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = write!(out, "STAT pid {}\r\n", std::process::id());
    let _ = write!(out, "STAT uptime {}\r\n", PROCESS_START.elapsed().as_secs());
    let _ = write!(out, "STAT time {now}\r\n");
    let _ = write!(
        out,
        "STAT version ncproxy-{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = write!(out, "STAT pool {}\r\n", pool.name);
    for field in &POOL_FIELDS {
        let value = combine(field.kind, all.iter().map(|s| (field.get)(s)));
        let _ = write!(out, "STAT {} {value}\r\n", field.name);
    }
    for (i, server) in pool.servers.iter().enumerate() {
        for field in &SERVER_FIELDS {
            let value = combine(
                field.kind,
                all.iter()
                    .filter_map(|s| s.servers.get(i))
                    .map(|s| (field.get)(s)),
            );
            let _ = write!(out, "STAT {}:{} {value}\r\n", server.name, field.name);
        }
    }
    out.push_str("END\r\n");
    bytes::Bytes::from(out)
}
