//! End-to-end runs of the library against real redis-server processes (from
//! nc-harness, killed on drop), the real proxies, and deliberately broken fake
//! backends that integrity checking must catch. Every run is bounded in
//! requests or time and stops by itself.
use nc_harness::RedisServer;
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;
use ncbench::results::RunResult;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn run(toml: &str) -> RunResult {
    let cfg = from_toml_str(toml, "test.toml").expect("valid test config");
    ncbench::bench::run(&cfg, &Quiet)
        .expect("run completes")
        .result
}

fn backends(servers: &[&RedisServer]) -> String {
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("\"{}\"", s.addr()))
        .collect();
    format!(
        "[backends]\nkind = \"external\"\naddresses = [{}]\n",
        addrs.join(", ")
    )
}

#[test]
fn direct_mixed_workload_is_clean_and_verified() {
    let (r1, r2) = (RedisServer::start().unwrap(), RedisServer::start().unwrap());
    let r = run(&format!(
        r#"
[run]
requests = 20000
warmup = "0s"
{}
[[target]]
kind = "direct"
[workload]
connections = 8
pipeline = 8
keys = 500
mget_keys = 4
value_size = {{ min = 16, max = 300 }}
[workload.mix]
get = 40
set = 30
mget = 10
del = 10
incr = 10
"#,
        backends(&[&r1, &r2])
    ));
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let c = &r.cells[0].summary;
    assert_eq!(c.requests, 20000);
    assert_eq!((c.mismatches, c.lost, c.errors), (0, 0, 0));
    for n in [c.ops.get, c.ops.set, c.ops.mget, c.ops.del, c.ops.incr] {
        assert!(n > 0, "{:?}", c.ops);
    }
    assert!(c.latency_us.p50 > 0.0 && c.latency_us.p99 >= c.latency_us.p50);
    let v = r.verify.clone().expect("verify ran");
    assert!(v.checked >= 1000 && v.bad == 0, "{v:?}");
    // Unpinned: placement is recorded as such, and the table has no placement line.
    let p = r
        .environment
        .placement
        .as_ref()
        .expect("placement recorded");
    assert!(
        !p.is_configured() && p.observed.contains_key("generator"),
        "{p:?}"
    );
    assert!(!ncbench::report::table(&r).contains("placement:"));
    // The result survives a JSON round trip (the schema compare reads).
    let text = serde_json::to_string(&r).unwrap();
    let back: RunResult = serde_json::from_str(&text).unwrap();
    assert_eq!(back.cells[0].summary.requests, 20000);
}

#[test]
fn proxies_report_send_counters() {
    let (r1, r2) = (RedisServer::start().unwrap(), RedisServer::start().unwrap());
    let r = run(&format!(
        r#"
[run]
requests = 4000
warmup = "200ms"
verify = false
{}
[[target]]
kind = "ncproxy"
[[target]]
kind = "nutcracker"
[sweep]
send_mode = ["batched", "per_message"]
[workload]
connections = 8
pipeline = 8
keys = 1000
[reference]
target = "nutcracker"
"#,
        backends(&[&r1, &r2])
    ));
    assert!(r.verdict.pass, "{:?}", r.verdict);
    assert_eq!(r.cells.len(), 3);
    let spr = |i: usize| {
        r.cells[i]
            .summary
            .proxy
            .expect("stats scraped")
            .syscalls_per_request
    };
    let batched = spr(0).expect("ncproxy counts send syscalls");
    let per_message = spr(1).expect("ncproxy counts send syscalls");
    // One write per request, whatever the timing; batching never needs more.
    assert!(per_message >= 0.99, "{per_message}");
    assert!(batched <= per_message, "{batched} > {per_message}");
    // nutcracker has no send counters, but its request counters are scraped.
    let nut = r.cells[2].summary.proxy.expect("nutcracker stats scraped");
    assert_eq!(nut.syscalls_per_request, None);
    assert!(nut.requests >= 4000, "{nut:?}");
    assert_eq!(r.reference.as_deref(), Some("nutcracker/p8/c8"));
    assert_eq!(r.cells[2].ratio_to_reference.unwrap().ops_per_sec, 1.0);
}

#[test]
fn open_loop_accounts_for_every_scheduled_request() {
    let r1 = RedisServer::start().unwrap();
    let r = run(&format!(
        r#"
[run]
duration = "1s"
warmup = "200ms"
verify = false
{}
[[target]]
kind = "direct"
[workload]
mode = "open"
rate = 2000
connections = 4
pipeline = 32
"#,
        backends(&[&r1])
    ));
    let c = &r.cells[0].summary;
    // The schedule is fixed: 2000/s over a 1 s window, whatever the timing.
    let accounted = c.requests + c.unsent + c.lost;
    assert!((1996..=2004).contains(&accounted), "{accounted} {c:?}");
    assert_eq!(c.target_rate, Some(2000.0));
    assert!(c.latency_us.p50 > 0.0);
}

/// A backend that answers every command with a well-formed value for key 0:
/// GETs of other keys and every SET get a reply that is not theirs.
fn lying_backend() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let value = b"00000000ffffffffvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
        let mut reply = format!("${}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(value);
        reply.extend_from_slice(b"\r\n");
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            // One reply per command: count the "*2\r\n"/"*3\r\n" array headers.
            let cmds = buf[..n]
                .windows(2)
                .filter(|w| w[0] == b'*' && (w[1] == b'2' || w[1] == b'3'))
                .count();
            for _ in 0..cmds {
                if s.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    });
    (addr, h)
}

#[test]
fn integrity_catches_replies_that_are_not_theirs() {
    let (addr, h) = lying_backend();
    let r = run(&format!(
        r#"
[run]
requests = 2000
warmup = "0s"
preload = false
verify = false
[backends]
kind = "external"
addresses = ["{addr}"]
[[target]]
kind = "direct"
[workload]
connections = 1
pipeline = 4
keys = 100
[workload.mix]
get = 1
set = 1
"#
    ));
    let c = &r.cells[0].summary;
    assert!(c.mismatches > 1000, "{c:?}");
    assert!(!r.verdict.pass);
    assert!(
        r.verdict.reasons[0].contains("integrity"),
        "{:?}",
        r.verdict
    );
    assert!(c.first_problem.is_some());
    h.join().unwrap();
}

#[test]
fn silent_backend_means_lost_replies() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        // Accept and read, never answer; stop when the client goes away.
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let r = run(&format!(
        r#"
[run]
duration = "300ms"
warmup = "0s"
timeout = "300ms"
preload = false
verify = false
[backends]
kind = "external"
addresses = ["{addr}"]
[[target]]
kind = "direct"
[workload]
connections = 1
pipeline = 16
"#
    ));
    let c = &r.cells[0].summary;
    assert_eq!(c.lost, 16, "{c:?}");
    assert!(!r.verdict.pass);
    h.join().unwrap();
}

#[test]
fn embedded_backend_serves_a_full_run() {
    let r = run(r#"
[run]
requests = 5000
warmup = "0s"
[backends]
kind = "embedded"
count = 2
[[target]]
kind = "direct"
[workload]
connections = 4
pipeline = 8
keys = 200
[workload.mix]
get = 5
set = 3
mget = 1
incr = 1
"#);
    assert_eq!(r.backends.kind, "embedded");
    assert!(r.verdict.pass, "{:?}", r.verdict);
    assert_eq!(r.cells[0].summary.requests, 5000);
    assert!(
        r.notes.iter().any(|n| n.contains("embedded")),
        "{:?}",
        r.notes
    );
}
