//! Events during a run, end to end: ncbench starts two real redis-servers and
//! ncproxy in-process, kills a backend and starts it again (or stops and
//! continues it, and reloads the proxy) in the middle of the measured window,
//! and the per-interval timeline must show the effect where it happened,
//! while integrity checking keeps every reply honest. Each run is 2 s.
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;
use ncbench::results::RunResult;

fn run(events: &str, extra: &str) -> RunResult {
    let text = format!(
        r#"
[run]
duration = "2s"
warmup = "500ms"
interval = "250ms"
timeout = "1s"
[backends]
kind = "redis"
count = 2
[proxy]
{extra}
[[target]]
kind = "ncproxy"
[workload]
connections = 4
pipeline = 4
keys = 5000
{events}
"#
    );
    let cfg = from_toml_str(&text, "events.toml").expect("valid config");
    ncbench::bench::run(&cfg, &Quiet)
        .expect("run completes")
        .result
}

#[test]
fn a_killed_backend_shows_as_errors_in_its_interval_and_recovers_after_restart() {
    let r = run(
        r#"
[[event]]
at = "1s"
action = "kill"
backend = 0
[[event]]
at = "1.6s"
action = "restart"
backend = 0
"#,
        "timeout_ms = 500",
    );
    let c = &r.cells[0];
    let t = &c.trials[0];
    assert_eq!(t.events.len(), 2, "{:?}", t.events);
    assert!(
        t.events.iter().all(|e| e.outcome.starts_with("ok")),
        "{:?}",
        t.events
    );
    assert!(
        (t.events[0].ran_at_s - 1.0).abs() < 0.2,
        "{:?}",
        t.events[0]
    );
    let tl = &t.timeline;
    assert!(tl.len() >= 10, "{tl:?}");
    // The kill is marked in the interval it ran in.
    let k = tl
        .iter()
        .position(|p| p.events.iter().any(|e| e == "kill backend 0"))
        .expect("kill marked");
    assert!((tl[k].t_s - 1.0).abs() < 0.01, "{:?}", tl[k]);
    // Nothing failed before the kill; errors right after it.
    assert!(
        tl[..k].iter().all(|p| p.errors == 0 && p.requests > 0),
        "{tl:?}"
    );
    let after: u64 = tl[k..k + 2].iter().map(|p| p.errors).sum();
    assert!(after > 0, "{tl:?}");
    // Served again once it is back: the last interval is clean.
    let last = tl.iter().rev().find(|p| p.requests > 0).unwrap();
    assert!(last.t_s >= 2.0 && last.errors == 0, "{tl:?}");
    // Integrity held, errors were counted by kind, the run passes with a warning.
    assert_eq!(c.summary.mismatches, 0);
    assert!(
        c.summary
            .error_kinds
            .keys()
            .any(|k| k.starts_with("reply: -ERR")),
        "{:?}",
        c.summary.error_kinds
    );
    assert!(r.verdict.pass, "{:?}", r.verdict);
    assert!(
        r.verdict
            .warnings
            .iter()
            .any(|w| w.contains("during events")),
        "{:?}",
        r.verdict
    );
    // Syscalls of the proxy threads and of both backends, per interval too.
    let sc = c.summary.syscalls.expect("syscalls measured");
    assert!(sc.proxy_per_request.is_some_and(|v| v > 0.0), "{sc:?}");
    assert!(sc.backend_per_request.is_some_and(|v| v > 0.0), "{sc:?}");
    assert!(
        tl[1..k]
            .iter()
            .all(|p| p.proxy_syscalls.is_some_and(|n| n > 0)),
        "{tl:?}"
    );
    // Backend 0 is another process after the restart: its counters don't
    // subtract, so the window's shard shares are unknown, and the table says so.
    assert!(c.summary.shards.is_empty(), "{:?}", c.summary.shards);
    let table = ncbench::report::table(&r);
    assert!(
        table.contains("unknown: a backend was restarted"),
        "{table}"
    );
    // The table prints the timeline.
    assert!(table.contains("timeline of ncproxy"), "{table}");
    assert!(table.contains("kill backend 0"), "{table}");
}

#[test]
fn a_stopped_backend_stalls_replies_and_a_reload_changes_the_pool_under_load() {
    let r = run(
        r#"
[[event]]
at = "0.8s"
action = "stop"
backend = 1
[[event]]
at = "1.2s"
action = "continue"
backend = 1
[[event]]
at = "1.6s"
action = "reload"
proxy = { server_connections = 2 }
"#,
        "",
    );
    let c = &r.cells[0];
    let t = &c.trials[0];
    let outcomes: Vec<&str> = t.events.iter().map(|e| e.outcome.as_str()).collect();
    assert!(outcomes.iter().all(|o| o.starts_with("ok")), "{outcomes:?}");
    // Replies held for the 400 ms stop show as a tail of that order where
    // the backend came back. At most one request per connection is held, a
    // few per cent of the interval's requests or less, so look at p99.9.
    let tl = &t.timeline;
    let worst = tl.iter().map(|p| p.latency_us_p999).fold(0.0, f64::max);
    assert!(worst >= 250_000.0, "{tl:?}");
    assert!(tl
        .iter()
        .any(|p| p.events.iter().any(|e| e == "reload proxy")));
    assert_eq!(
        (c.summary.mismatches, c.summary.errors),
        (0, 0),
        "{:?}",
        c.summary
    );
    // Stopped and continued, the backends are the same processes at both
    // edges: the shard shares are known and add up.
    assert_eq!(c.summary.shards.len(), 2, "{:?}", c.summary.shards);
    let total: f64 = c.summary.shards.iter().map(|s| s.ops_share).sum();
    assert!((total - 1.0).abs() < 1e-9, "{:?}", c.summary.shards);
    assert!(r.verdict.pass, "{:?}", r.verdict);
}
