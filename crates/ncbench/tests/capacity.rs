//! Capacity search against a real redis-server: with a generous latency
//! target every step holds until max_rate; with an impossible one the search
//! steps down from the start rate to min_rate, nothing holds and the run's
//! verdict fails; rounds repeat the whole search. Rates are small, so the
//! outcome depends on the schedule, not on the speed of the machine.
use nc_harness::RedisServer;
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;

fn config(r: &RedisServer, target: &str) -> ncbench::BenchConfig {
    config_with(r, target, "")
}

fn config_with(r: &RedisServer, target: &str, extra: &str) -> ncbench::BenchConfig {
    from_toml_str(
        &format!(
            r#"
[run]
warmup = "100ms"
verify = false
[backends]
kind = "external"
addresses = ["{}"]
[[target]]
kind = "direct"
[workload]
connections = 2
pipeline = 64
keys = 100
[capacity]
percentile = 99
target_latency = "{target}"
start_rate = 500
max_rate = 2500
growth = 2
step_duration = "300ms"
refine_steps = 2
{extra}
"#,
            r.addr()
        ),
        "capacity.toml",
    )
    .unwrap()
}

#[test]
fn generous_target_holds_up_to_max_rate() {
    let redis = RedisServer::start().unwrap();
    let (r, hists) = ncbench::capacity::run(&config(&redis, "2s"), &Quiet).unwrap();
    let c = &r.capacity[0];
    let rates: Vec<f64> = c.steps.iter().map(|s| s.rate).collect();
    // Growth doubles to 2000/s, then the last step is max_rate itself.
    assert_eq!(rates, vec![500.0, 1000.0, 2000.0, 2500.0], "{c:?}");
    assert!(c.steps.iter().all(|s| s.holds), "{c:?}");
    assert_eq!(c.max_rate_holding, Some(2500.0));
    assert!(c.stopped.contains("max_rate"), "{}", c.stopped);
    assert!(r.verdict.pass, "{:?}", r.verdict);
    assert_eq!(hists[0].len(), 4);
    assert_eq!(r.kind, "capacity");
    assert!(ncbench::plot::html(&r).contains("knee") || c.knee_rate.is_none());
}

#[test]
fn impossible_target_steps_down_to_min_rate_then_fails() {
    let redis = RedisServer::start().unwrap();
    let (r, _) = ncbench::capacity::run(&config(&redis, "1ns"), &Quiet).unwrap();
    let c = &r.capacity[0];
    // 500 fails; divide by growth (2) while nothing holds, down to the
    // default min_rate of 100/s: 250, 125, then 62.5 is below it.
    let rates: Vec<f64> = c.steps.iter().map(|s| s.rate).collect();
    assert_eq!(rates, vec![500.0, 250.0, 125.0], "{c:?}");
    assert!(c.steps.iter().all(|s| !s.holds), "{c:?}");
    assert_eq!(c.max_rate_holding, None);
    assert!(c.stopped.contains("min_rate 100/s"), "{}", c.stopped);
    assert!(!r.verdict.pass);
    // The table still shows what the target did at the failing rates.
    assert!(r.cells[0].summary.requests > 0);
}

#[test]
fn rounds_repeat_the_search_and_the_table_shows_each() {
    let redis = RedisServer::start().unwrap();
    let (r, hists) =
        ncbench::capacity::run(&config_with(&redis, "1ns", "rounds = 2"), &Quiet).unwrap();
    let c = &r.capacity[0];
    let per_round: Vec<(u32, f64)> = c.steps.iter().map(|s| (s.round, s.rate)).collect();
    assert_eq!(
        per_round,
        vec![
            (0, 500.0),
            (0, 250.0),
            (0, 125.0),
            (1, 500.0),
            (1, 250.0),
            (1, 125.0)
        ],
        "{c:?}"
    );
    assert_eq!(c.rounds.len(), 2);
    assert_eq!(hists[0].len(), 6);
    assert!(c.stopped.starts_with("round 1: no rate"), "{}", c.stopped);
    let table = ncbench::report::table(&r);
    assert!(table.contains("round 2: no rate held"), "{table}");
}
