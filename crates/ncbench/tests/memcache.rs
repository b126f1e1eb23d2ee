//! End-to-end memcache runs: ncbench starts real memcached backends itself
//! (`workload.protocol = "memcache"`), drives nutcracker, the backends
//! directly and ncproxy, checks every reply, and reads the data back with its
//! memcached client. Every run is bounded in requests and stops by itself.
//! ncproxy (in-process) runs in both send modes, and its send counters must
//! show batching.
use hdrhistogram::Histogram;
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;
use ncbench::results::RunResult;

fn config(targets: &str, workload: &str) -> String {
    format!(
        r#"
[run]
requests = 2000
warmup = "0s"
time_limit = "20s"
[backends]
count = 2
{targets}
[workload]
protocol = "memcache"
connections = 4
pipeline = 8
keys = 300
mget_keys = 5
value_size = {{ min = 16, max = 200 }}
{workload}
[workload.mix]
get = 40
set = 25
mget = 15
del = 10
incr = 10
"#
    )
}

fn run(toml: &str) -> Result<RunResult, String> {
    run_with_histograms(toml).map(|(r, _)| r)
}

/// The result and each cell's latency histogram (one trial).
fn run_with_histograms(toml: &str) -> Result<(RunResult, Vec<Histogram<u64>>), String> {
    let cfg = from_toml_str(toml, "test.toml").expect("valid test config");
    ncbench::bench::run(&cfg, &Quiet)
        .map(|r| {
            let h = r.histograms.into_iter().map(|mut t| t.remove(0)).collect();
            (r.result, h)
        })
        .map_err(|e| e.to_string())
}

#[track_caller]
fn assert_clean(r: &RunResult) {
    assert!(r.verdict.pass, "{:?}", r.verdict);
    assert_eq!(r.backends.kind, "memcached");
    for c in &r.cells {
        assert!(c.skipped.is_none(), "{}: {:?}", c.id, c.skipped);
        let s = &c.summary;
        assert_eq!(s.requests, 2000, "{}", c.id);
        assert_eq!((s.errors, s.mismatches, s.lost), (0, 0, 0), "{}", c.id);
    }
    let v = r.verify.as_ref().expect("verified");
    assert!(v.checked > 0 && v.bad == 0, "{v:?}");
}

#[test]
fn nutcracker_and_direct_are_clean_and_verified() {
    let r = run(&config(
        "[[target]]\nkind = \"nutcracker\"\n[[target]]\nkind = \"direct\"\n",
        "",
    ))
    .unwrap();
    assert_clean(&r);
    assert_eq!(r.cells.len(), 2);
    // Every op of the mix was sent and checked.
    let o = &r.cells[0].summary.ops;
    assert!(
        [o.get, o.set, o.mget, o.del, o.incr].iter().all(|&n| n > 0),
        "{o:?}"
    );
    // nutcracker's stats (same JSON for a memcache pool) are found and read;
    // it aggregates them once a second, so a run this short may see few.
    let nut = r.cells[0].summary.proxy.expect("nutcracker stats scraped");
    assert_eq!(nut.syscalls_per_request, None, "{nut:?}");
}

#[test]
fn noreply_sets_count_as_done_when_written() {
    let (r, hists) = run_with_histograms(&config(
        "[[target]]\nkind = \"nutcracker\"\n[[target]]\nkind = \"direct\"\n",
        "set_noreply = true",
    ))
    .unwrap();
    assert_clean(&r);
    for (c, h) in r.cells.iter().zip(&hists) {
        let sets = c.summary.ops.set;
        assert!(sets > 0, "{}", c.id);
        // Sets have no reply: they count in ops, not in the latency histogram.
        assert_eq!(h.len(), c.summary.requests - sets, "{}", c.id);
    }
}

#[test]
fn ncproxy_serves_memcache_in_both_send_modes() {
    let toml = config(
        "[[target]]\nkind = \"ncproxy\"\n[sweep]\nsend_mode = [\"batched\", \"per_message\"]\n",
        "",
    );
    let r = run(&toml).unwrap();
    assert_clean(&r);
    assert_eq!(r.cells.len(), 2);
    let spr = |i: usize| {
        r.cells[i]
            .summary
            .proxy
            .expect("stats scraped")
            .syscalls_per_request
            .expect("ncproxy counts send syscalls")
    };
    let (batched, per_message) = (spr(0), spr(1));
    assert!(per_message >= 0.99, "{per_message}");
    assert!(batched <= per_message, "{batched} > {per_message}");
}
