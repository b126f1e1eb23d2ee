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

use crate::stats::{PoolStats, SendStats, ServerStats, WorkerStats};

/// The pools being counted: replaced as a whole on reload.
pub(crate) struct StatsLayout {
    pub(crate) config: Arc<Config>,
    /// `[pool][worker]`.
    pub(crate) pools: Vec<Vec<Arc<PoolStats>>>,
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
}

impl StatsLayout {
    /// Sums `f` over every worker's counters of pool `p`.
    fn sum(&self, p: usize, f: impl Fn(&PoolStats) -> u64) -> u64 {
        self.pools[p]
            .iter()
            .map(|s| f(s))
            .fold(0u64, u64::wrapping_add)
    }

    fn max(&self, p: usize, f: impl Fn(&PoolStats) -> u64) -> u64 {
        self.pools[p].iter().map(|s| f(s)).max().unwrap_or(0)
    }
}

impl StatsSource {
    /// The stats document, with its trailing newline.
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
        let layout = self.layout();
        for (p, pool) in layout.config.pools.iter().enumerate() {
            let _ = write!(
                out,
                "{}\"{}\": {{",
                if p == 0 { ", " } else { "," },
                pool.name
            );
            let pool_field = |f: &dyn Fn(&PoolStats) -> u64| layout.sum(p, f);
            let fields: [(&str, u64); 6] = [
                ("client_eof", pool_field(&|s| s.client_eof.get())),
                ("client_err", pool_field(&|s| s.client_err.get())),
                (
                    "client_connections",
                    pool_field(&|s| s.client_connections.get()),
                ),
                ("server_ejects", pool_field(&|s| s.server_ejects.get())),
                ("forward_error", pool_field(&|s| s.forward_error.get())),
                ("fragments", pool_field(&|s| s.fragments.get())),
            ];
            write_fields(&mut out, &fields);
            let send = |f: &dyn Fn(&SendStats) -> u64| pool_field(&|s| f(&s.client_send));
            let extra: [(&str, u64); 4] = [
                ("client_send_syscalls", send(&|s| s.syscalls.get())),
                ("client_send_iovecs", send(&|s| s.iovecs.get())),
                ("client_send_bytes", send(&|s| s.bytes.get())),
                ("client_send_partial", send(&|s| s.partial.get())),
            ];
            out.push_str(", ");
            write_fields(&mut out, &extra);
            for (i, server) in pool.servers.iter().enumerate() {
                let server_field =
                    |f: &dyn Fn(&ServerStats) -> u64| layout.sum(p, |s| f(&s.servers[i]));
                let _ = write!(
                    out,
                    "{}\"{}\": {{",
                    if i == 0 { ", " } else { "," },
                    server.name
                );
                let fields: [(&str, u64); 17] = [
                    ("server_eof", server_field(&|s| s.server_eof.get())),
                    ("server_err", server_field(&|s| s.server_err.get())),
                    (
                        "server_timedout",
                        server_field(&|s| s.server_timedout.get()),
                    ),
                    (
                        "server_connections",
                        server_field(&|s| s.server_connections.get()),
                    ),
                    (
                        "server_ejected_at",
                        layout.max(p, |s| s.servers[i].server_ejected_at.get()),
                    ),
                    ("requests", server_field(&|s| s.requests.get())),
                    ("request_bytes", server_field(&|s| s.request_bytes.get())),
                    ("responses", server_field(&|s| s.responses.get())),
                    ("response_bytes", server_field(&|s| s.response_bytes.get())),
                    ("in_queue", server_field(&|s| s.in_queue.get())),
                    ("in_queue_bytes", server_field(&|s| s.in_queue_bytes.get())),
                    ("out_queue", server_field(&|s| s.out_queue.get())),
                    (
                        "out_queue_bytes",
                        server_field(&|s| s.out_queue_bytes.get()),
                    ),
                    ("send_syscalls", server_field(&|s| s.send.syscalls.get())),
                    ("send_iovecs", server_field(&|s| s.send.iovecs.get())),
                    ("send_bytes", server_field(&|s| s.send.bytes.get())),
                    ("send_partial", server_field(&|s| s.send.partial.get())),
                ];
                write_fields(&mut out, &fields);
                out.push('}');
            }
            out.push('}');
        }
        out.push_str("}\n");
        out
    }
}

fn write_fields(out: &mut String, fields: &[(&str, u64)]) {
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{name}\":{}", *value as i64);
    }
}

impl StatsSource {
    /// The same counters in the Prometheus text exposition format.
    pub(crate) fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut family =
            |name: &str,
             kind: &str,
             help: &str,
             samples: &mut dyn Iterator<Item = (String, u64)>| {
                let _ = writeln!(out, "# HELP ncproxy_{name} {help}");
                let _ = writeln!(out, "# TYPE ncproxy_{name} {kind}");
                for (labels, value) in samples {
                    let _ = writeln!(out, "ncproxy_{name}{labels} {}", value as i64);
                }
            };
        let one = |v: u64| std::iter::once((String::new(), v));
        family(
            "uptime_seconds",
            "gauge",
            "Seconds since start",
            &mut one(self.started.elapsed().as_secs()),
        );
        family(
            "connections_total",
            "counter",
            "Connections ever created (clients, servers, listeners)",
            &mut one(self.sum(|w| w.total_connections.get())),
        );
        family(
            "connections",
            "gauge",
            "Connections open now",
            &mut one(self.sum(|w| w.curr_connections.get())),
        );
        type PoolGetter = fn(&PoolStats) -> u64;
        let pool_metrics: [(&str, &str, &str, PoolGetter); 10] = [
            (
                "client_eof_total",
                "counter",
                "EOF on client connections",
                |s| s.client_eof.get(),
            ),
            (
                "client_err_total",
                "counter",
                "Errors on client connections",
                |s| s.client_err.get(),
            ),
            (
                "client_connections",
                "gauge",
                "Active client connections",
                |s| s.client_connections.get(),
            ),
            (
                "server_ejects_total",
                "counter",
                "Times a backend server was ejected",
                |s| s.server_ejects.get(),
            ),
            (
                "forward_error_total",
                "counter",
                "Error replies generated for clients",
                |s| s.forward_error.get(),
            ),
            (
                "fragments_total",
                "counter",
                "Fragments from multi-key requests (always 0, as nutcracker)",
                |s| s.fragments.get(),
            ),
            (
                "client_send_syscalls_total",
                "counter",
                "Send syscalls carrying replies to clients",
                |s| s.client_send.syscalls.get(),
            ),
            (
                "client_send_iovecs_total",
                "counter",
                "Buffers passed in reply send syscalls",
                |s| s.client_send.iovecs.get(),
            ),
            (
                "client_send_bytes_total",
                "counter",
                "Reply bytes written to clients",
                |s| s.client_send.bytes.get(),
            ),
            (
                "client_send_partial_total",
                "counter",
                "Reply send syscalls that wrote less than offered",
                |s| s.client_send.partial.get(),
            ),
        ];
        let layout = self.layout();
        for (name, kind, help, get) in pool_metrics {
            let mut samples = layout.config.pools.iter().enumerate().map(|(p, pool)| {
                (
                    format!("{{pool=\"{}\"}}", escape_label(&pool.name)),
                    layout.sum(p, get),
                )
            });
            family(name, kind, help, &mut samples);
        }
        type ServerGetter = fn(&ServerStats) -> u64;
        let server_metrics: [(&str, &str, &str, ServerGetter); 16] = [
            (
                "server_eof_total",
                "counter",
                "EOF on server connections",
                |s| s.server_eof.get(),
            ),
            (
                "server_err_total",
                "counter",
                "Errors on server connections",
                |s| s.server_err.get(),
            ),
            (
                "server_timedout_total",
                "counter",
                "Timeouts on server connections",
                |s| s.server_timedout.get(),
            ),
            (
                "server_connections",
                "gauge",
                "Active server connections",
                |s| s.server_connections.get(),
            ),
            ("requests_total", "counter", "Requests forwarded", |s| {
                s.requests.get()
            }),
            (
                "request_bytes_total",
                "counter",
                "Request bytes forwarded",
                |s| s.request_bytes.get(),
            ),
            ("responses_total", "counter", "Responses received", |s| {
                s.responses.get()
            }),
            (
                "response_bytes_total",
                "counter",
                "Response bytes received",
                |s| s.response_bytes.get(),
            ),
            (
                "in_queue",
                "gauge",
                "Requests not yet written to the server",
                |s| s.in_queue.get(),
            ),
            (
                "in_queue_bytes",
                "gauge",
                "Request bytes not yet written to the server",
                |s| s.in_queue_bytes.get(),
            ),
            (
                "out_queue",
                "gauge",
                "Requests written, awaiting a reply",
                |s| s.out_queue.get(),
            ),
            (
                "out_queue_bytes",
                "gauge",
                "Request bytes written, awaiting a reply",
                |s| s.out_queue_bytes.get(),
            ),
            (
                "send_syscalls_total",
                "counter",
                "Send syscalls carrying requests to the server",
                |s| s.send.syscalls.get(),
            ),
            (
                "send_iovecs_total",
                "counter",
                "Buffers passed in request send syscalls",
                |s| s.send.iovecs.get(),
            ),
            (
                "send_bytes_total",
                "counter",
                "Request bytes written to the server",
                |s| s.send.bytes.get(),
            ),
            (
                "send_partial_total",
                "counter",
                "Request send syscalls that wrote less than offered",
                |s| s.send.partial.get(),
            ),
        ];
        let server_labels = |p: usize, i: usize| {
            let pool = &layout.config.pools[p];
            format!(
                "{{pool=\"{}\",server=\"{}\"}}",
                escape_label(&pool.name),
                escape_label(&pool.servers[i].name)
            )
        };
        let servers: Vec<(usize, usize)> = layout
            .config
            .pools
            .iter()
            .enumerate()
            .flat_map(|(p, pool)| (0..pool.servers.len()).map(move |i| (p, i)))
            .collect();
        for (name, kind, help, get) in server_metrics {
            let mut samples = servers
                .iter()
                .map(|&(p, i)| (server_labels(p, i), layout.sum(p, |s| get(&s.servers[i]))));
            family(name, kind, help, &mut samples);
        }
        let mut ejected = servers.iter().map(|&(p, i)| {
            let at = layout.max(p, |s| s.servers[i].server_ejected_at.get());
            (server_labels(p, i), at)
        });
        family(
            "server_ejected_at_microseconds",
            "gauge",
            "When the server was last ejected, microseconds since the epoch",
            &mut ejected,
        );
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
