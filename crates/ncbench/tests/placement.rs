//! `[placement]` end to end: with every role on CPU 0, every process and
//! thread ncbench starts (redis-server, nutcracker, in-process ncproxy, the
//! embedded backend, the driver threads) reports `Cpus_allowed_list` 0 in the
//! result, for `run` and `capacity` alike. Unpinned, they would report the
//! whole machine (`0-1` on a 2-CPU CI runner), so these fail if pinning does
//! not happen. This file holds one test on purpose: the in-process proxy's
//! threads are found among this process's threads, and no other test may
//! start threads of its own meanwhile.
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;
use ncbench::results::RunResult;

const ON_CPU_0: &str = r#"
[placement]
generator = "0"
proxies = "0"
backends = "0"
"#;

#[track_caller]
fn assert_all_on_cpu_0(r: &RunResult, expected_names: &[&str]) {
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let p = r
        .environment
        .placement
        .as_ref()
        .expect("placement recorded");
    let zero = Some("0".to_string());
    assert_eq!(
        (&p.generator, &p.proxies, &p.backends),
        (&zero, &zero, &zero)
    );
    for prefix in expected_names {
        assert!(
            p.observed.keys().any(|k| k.starts_with(prefix)),
            "nothing observed for {prefix}: {:?}",
            p.observed
        );
    }
    for (name, lists) in &p.observed {
        assert_eq!(lists, &["0"], "{name} ran elsewhere: {:?}", p.observed);
    }
    let table = ncbench::report::table(r);
    assert!(
        table.contains("\nplacement: generator 0 · proxies 0 · backends 0\n"),
        "{table}"
    );
    // Consumers of the JSON see the same, and it still loads as a result.
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(
        json["environment"]["placement"]["observed"]["generator"],
        serde_json::json!(["0"])
    );
    let back: RunResult = serde_json::from_value(json).unwrap();
    assert_eq!(back.environment.placement, r.environment.placement);
}

#[test]
fn every_role_runs_where_placed() {
    // `run`: redis-server backends, nutcracker and ncproxy in-process, two driver threads.
    let cfg = from_toml_str(
        &format!(
            r#"
[run]
requests = 3000
warmup = "0s"
threads = 2
verify = false
[backends]
kind = "redis"
count = 2
[[target]]
kind = "nutcracker"
[[target]]
kind = "ncproxy"
[workload]
connections = 4
pipeline = 8
keys = 200
{ON_CPU_0}"#
        ),
        "placed.toml",
    )
    .expect("valid config");
    let r = ncbench::bench::run(&cfg, &Quiet)
        .expect("run completes")
        .result;
    assert_eq!(r.cells.len(), 2);
    assert_all_on_cpu_0(
        &r,
        &[
            "generator",
            "redis-server :",
            "nutcracker :",
            "ncproxy in-process :",
        ],
    );
    let redis = r
        .environment
        .placement
        .as_ref()
        .unwrap()
        .observed
        .keys()
        .filter(|k| k.starts_with("redis-server :"))
        .count();
    assert_eq!(redis, 2);

    // `capacity`: the embedded backend thread, nutcracker, open-loop drivers.
    let cfg = from_toml_str(
        &format!(
            r#"
[run]
warmup = "100ms"
verify = false
[backends]
kind = "embedded"
count = 1
[[target]]
kind = "nutcracker"
[workload]
connections = 2
pipeline = 16
keys = 100
[capacity]
target_latency = "2s"
start_rate = 500
max_rate = 1000
growth = 2
step_duration = "300ms"
{ON_CPU_0}"#
        ),
        "placed-capacity.toml",
    )
    .expect("valid config");
    let (r, _) = ncbench::capacity::run(&cfg, &Quiet).expect("capacity run completes");
    assert_eq!(r.capacity[0].steps.len(), 2, "{:?}", r.capacity);
    assert_all_on_cpu_0(&r, &["generator", "embedded backend", "nutcracker :"]);
}
