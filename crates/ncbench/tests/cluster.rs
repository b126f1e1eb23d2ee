//! `[backends] kind = "cluster"` end to end: ncbench starts a real local
//! Redis Cluster (3 masters, 1 replica each), preloads it with the redis
//! crate's cluster client, drives ncproxy (a `redis_cluster` pool, in
//! process) and the cluster-aware `direct` target, and verifies the data
//! afterwards. A `reshard` event in the middle of each cell moves slots
//! under load: ncproxy follows with no error, direct (which does not follow
//! redirects) gets MOVED errors but never wrong data. Each cell is 1.5 s.
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;

#[test]
fn ncproxy_and_direct_on_a_cluster_with_a_reshard_mid_run() {
    let text = r#"
[run]
duration = "1500ms"
warmup = "300ms"
interval = "250ms"
timeout = "2s"
[backends]
kind = "cluster"
count = 3
[proxy]
workers = 1
timeout_ms = 5000
[[target]]
kind = "ncproxy"
[[target]]
kind = "direct"
[workload]
connections = 6
pipeline = 4
keys = 3000
[workload.mix]
get = 60
set = 30
del = 5
incr = 5
[[event]]
at = "800ms"
action = "reshard"
backend = 0
to = 1
slots = 200
"#;
    let cfg = from_toml_str(text, "cluster.toml").expect("valid config");
    let outcome = ncbench::bench::run(&cfg, &Quiet).expect("run completes");
    let r = outcome.result;
    assert_eq!(r.backends.kind, "redis-cluster");
    assert_eq!(
        r.cells.len(),
        2,
        "{:?}",
        r.cells.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    for cell in &r.cells {
        assert!(cell.skipped.is_none(), "{}: {:?}", cell.id, cell.skipped);
        let s = &cell.summary;
        assert!(s.requests > 500, "{}: {s:?}", cell.id);
        assert_eq!(s.mismatches, 0, "{}: {:?}", cell.id, s.first_problem);
        assert_eq!(s.lost, 0, "{}: {:?}", cell.id, s.first_problem);
    }
    let proxy = r.cells.iter().find(|c| c.params.kind == "ncproxy").unwrap();
    // The reshard ran during the ncproxy cell, and ncproxy followed it
    // without an error.
    let events = &proxy.trials[0].events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].outcome.starts_with("ok"), "{events:?}");
    assert_eq!(proxy.summary.errors, 0, "{:?}", proxy.summary.error_kinds);
    // direct routes by the map at the start of its cell and does not follow
    // redirects: the moving slots answer it MOVED, ASK or TRYAGAIN, never
    // wrong data.
    let direct = r.cells.iter().find(|c| c.params.kind == "direct").unwrap();
    assert!(direct.how.contains("routed by slot"), "{}", direct.how);
    assert!(
        direct
            .summary
            .error_kinds
            .keys()
            // Kinds past the first few are counted as "other".
            .all(|k| {
                ["reply: -MOVED", "reply: -ASK", "reply: -TRYAGAIN"]
                    .iter()
                    .any(|redirect| k.starts_with(redirect))
                    || k == "other"
            }),
        "{:?}",
        direct.summary.error_kinds
    );
    let verify = r.verify.expect("verified");
    assert_eq!(verify.bad, 0, "{verify:?}");
    assert!(verify.checked > 1000, "{verify:?}");
}
