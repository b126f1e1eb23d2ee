//! CI gates on real results: a baseline comparison passes on a copy of a
//! result and fails on a degraded copy; ratio and bound gates judge cells of
//! one run; `run --baseline` turns a regression into exit code 1.
use nc_harness::RedisServer;
use ncbench::config::{from_toml_str, BaselineThresholds};
use ncbench::progress::{Quiet, Style};
use ncbench::results::RunResult;
use ncbench::{cmd_compare, cmd_run, export, Outputs, EXIT_FAIL, EXIT_PASS};

fn config(r: &RedisServer, extra: &str) -> ncbench::BenchConfig {
    from_toml_str(
        &format!(
            r#"
[run]
requests = 5000
warmup = "0s"
verify = false
[backends]
kind = "external"
addresses = ["{}"]
[[target]]
kind = "direct"
[workload]
connections = 4
pipeline = 8
keys = 100
{extra}
"#,
            r.addr()
        ),
        "gates.toml",
    )
    .unwrap()
}

fn degrade(r: &RunResult, ops: f64, p99: f64) -> RunResult {
    let mut d = r.clone();
    for c in &mut d.cells {
        c.summary.ops_per_sec *= ops;
        c.summary.latency_us.p99 *= p99;
        for t in &mut c.trials {
            t.ops_per_sec *= ops;
            t.latency_us.p99 *= p99;
        }
    }
    d
}

#[test]
fn compare_passes_on_a_copy_and_fails_on_a_degraded_copy() {
    let redis = RedisServer::start().unwrap();
    let cfg = config(&redis, "");
    let result = ncbench::bench::run(&cfg, &Quiet).unwrap().result;
    assert!(result.verdict.pass, "{:?}", result.verdict);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.json");
    export::write_json(&base, &result).unwrap();
    let th = BaselineThresholds::default();

    let copy = dir.path().join("copy.json");
    std::fs::copy(&base, &copy).unwrap();
    assert_eq!(cmd_compare(&base, &copy, &th).unwrap(), EXIT_PASS);

    let slow = dir.path().join("slow.json");
    export::write_json(&slow, &degrade(&result, 0.5, 1.0)).unwrap();
    assert_eq!(cmd_compare(&base, &slow, &th).unwrap(), EXIT_FAIL);

    let laggy = dir.path().join("laggy.json");
    export::write_json(&laggy, &degrade(&result, 1.0, 3.0)).unwrap();
    assert_eq!(cmd_compare(&base, &laggy, &th).unwrap(), EXIT_FAIL);

    // Faster is never a regression.
    let fast = dir.path().join("fast.json");
    export::write_json(&fast, &degrade(&result, 2.0, 0.5)).unwrap();
    assert_eq!(cmd_compare(&base, &fast, &th).unwrap(), EXIT_PASS);

    // A result file that is not one is an input error, not a verdict.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"schema\": \"something/v9\"}").unwrap();
    let e = cmd_compare(&base, &junk, &th).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("junk.json"), "{e}");

    // run --baseline: a baseline twice as fast as anything this run can do fails it.
    let fast_base = dir.path().join("fast_base.json");
    export::write_json(&fast_base, &degrade(&result, 1000.0, 1.0)).unwrap();
    let out = Outputs {
        json: Some(dir.path().join("new.json")),
        ..Outputs::default()
    };
    assert_eq!(
        cmd_run(&cfg, &out, Some(&fast_base), Style::Quiet).unwrap(),
        EXIT_FAIL
    );
    let new = RunResult::load(&dir.path().join("new.json")).unwrap();
    let b = new.baseline.expect("baseline checked");
    assert!(b.checks.iter().any(|c| c.verdict == "fail"), "{b:?}");
}

#[test]
fn gates_judge_cells_of_one_run() {
    let redis = RedisServer::start().unwrap();
    // Two pipeline depths of the same target; deeper pipelines can only help
    // throughput on the same backend, but no ratio is guaranteed, so the
    // ratio gate here checks pairing and arithmetic with a bound that holds.
    let cfg = config(
        &redis,
        r#"
[sweep]
pipeline = [1, 8]
[[gate]]
name = "paired ratio exists"
metric = "ops_per_sec"
numerator = { pipeline = 8 }
denominator = { pipeline = 1 }
min = 0.0
[[gate]]
name = "no errors"
metric = "errors"
cells = {}
max = 0
[[gate]]
name = "impossible"
metric = "ops_per_sec"
cells = { target = "direct" }
min = 1e12
"#,
    );
    let r = ncbench::bench::run(&cfg, &Quiet).unwrap().result;
    assert_eq!(r.gates.len(), 3);
    assert_eq!(r.gates[0].verdict, "pass", "{:?}", r.gates[0]);
    assert_eq!(r.gates[0].checks.len(), 1);
    assert_eq!(r.gates[0].checks[0].cell, "direct/p8/c4");
    assert_eq!(
        r.gates[0].checks[0].against.as_deref(),
        Some("direct/p1/c4")
    );
    assert_eq!(r.gates[1].verdict, "pass");
    assert_eq!(r.gates[1].checks.len(), 2);
    assert_eq!(r.gates[2].verdict, "fail");
    assert!(!r.verdict.pass);
    assert!(
        r.verdict.reasons.iter().any(|x| x.contains("impossible")),
        "{:?}",
        r.verdict
    );
}
