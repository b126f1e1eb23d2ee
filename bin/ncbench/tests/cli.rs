//! The `ncbench` binary as users and CI scripts see it: exit codes (0 pass,
//! 1 gate failed, 2 usage/config error), one-line config errors naming the
//! file and key, every shipped config valid, and a short smoke run of the
//! built-in default through ncproxy (in-process), nutcracker and redis-server.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ncbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ncbench"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("ncbench runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-configs")
}

#[track_caller]
fn assert_config_error(o: &Output, file: &str, key: &str) {
    assert_eq!(code(o), 2, "stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].contains(file) && lines[0].contains(key), "{err}");
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[[target]]\nkind = \"direct\"\n[workload]\npipelin = 4\n",
    );
    assert_config_error(
        &ncbench(&["run", unknown.to_str().unwrap()]),
        "unknown.toml",
        "workload.pipelin",
    );

    let bad = write(
        dir.path(),
        "bad.toml",
        "[[target]]\nkind = \"direct\"\n[run]\nwarmup = \"soon\"\n",
    );
    assert_config_error(
        &ncbench(&["check", bad.to_str().unwrap()]),
        "bad.toml",
        "run.warmup",
    );

    let range = write(
        dir.path(),
        "range.toml",
        "[[target]]\nkind = \"direct\"\n[sweep]\niov_max = [128, 0]\n",
    );
    assert_config_error(
        &ncbench(&["capacity", range.to_str().unwrap()]),
        "range.toml",
        "sweep.iov_max[1]",
    );

    let kind = write(
        dir.path(),
        "kind.toml",
        "[[target]]\nkind = \"twemproxy\"\n",
    );
    assert_config_error(
        &ncbench(&["run", kind.to_str().unwrap()]),
        "kind.toml",
        "target[0].kind",
    );

    let cpus = write(
        dir.path(),
        "cpus.toml",
        "[[target]]\nkind = \"direct\"\n[placement]\nproxies = \"3-1\"\n",
    );
    assert_config_error(
        &ncbench(&["check", cpus.to_str().unwrap()]),
        "cpus.toml",
        "placement.proxies",
    );

    let syntax = write(dir.path(), "syntax.toml", "[[target]\nkind = \"direct\"\n");
    let o = ncbench(&["run", syntax.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("syntax.toml"), "{}", stderr(&o));

    let missing = dir.path().join("nope.toml");
    let o = ncbench(&["run", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));

    // Flags are checked like config keys.
    let o = ncbench(&["run", "--duration", "forever"]);
    assert_config_error(&o, "command line", "--duration");
    // Unknown flags are usage errors too.
    assert_eq!(code(&ncbench(&["run", "--frobnicate"])), 2);
}

#[test]
fn memcache_config_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = write(
        dir.path(),
        "embedded.toml",
        "[[target]]\nkind = \"direct\"\n[backends]\nkind = \"embedded\"\n[workload]\nprotocol = \"memcache\"\n",
    );
    assert_config_error(
        &ncbench(&["check", embedded.to_str().unwrap()]),
        "embedded.toml",
        "backends.kind",
    );
    let noreply = write(
        dir.path(),
        "noreply.toml",
        "[[target]]\nkind = \"direct\"\n[workload]\nset_noreply = true\n",
    );
    assert_config_error(
        &ncbench(&["run", noreply.to_str().unwrap()]),
        "noreply.toml",
        "workload.set_noreply",
    );
    // A missing memcached is a setup error, named like a missing redis-server.
    let missing = write(
        dir.path(),
        "missing.toml",
        "[[target]]\nkind = \"direct\"\n[backends]\nmemcached = \"no-such-memcached\"\n[workload]\nprotocol = \"memcache\"\n",
    );
    let o = ncbench(&["run", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`no-such-memcached` is not on PATH (apt-get install memcached"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_shipped_config_is_valid() {
    let mut n = 0;
    for e in std::fs::read_dir(configs_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let o = ncbench(&["check", p.to_str().unwrap()]);
            assert_eq!(code(&o), 0, "{}: {}", p.display(), stderr(&o));
            assert!(stdout(&o).contains("configuration OK"));
            n += 1;
        }
    }
    assert!(n >= 7, "only {n} configs in bench-configs/");
    // The built-in default is quick.toml, byte for byte.
    let o = ncbench(&["default-config"]);
    assert_eq!(
        stdout(&o),
        std::fs::read_to_string(configs_dir().join("quick.toml")).unwrap()
    );
}

#[test]
fn help_documents_exit_codes() {
    let o = ncbench(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains("2 = usage or config error"),
        "{}",
        stdout(&o)
    );
}

/// The CI smoke run: the built-in default, shortened, through ncproxy
/// in-process (both send modes), nutcracker and the backends; then the gate
/// passes on a copy of the result and fails on a degraded one.
#[test]
fn smoke_run_through_ncproxy_then_gate_on_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let csv = dir.path().join("result.csv");
    let html = dir.path().join("report.html");
    let hdr = dir.path().join("hdr");
    let o = ncbench(&[
        "run",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--progress",
        "plain",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--hdr-dir",
        hdr.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "stdout: {out}\nstderr: {}", stderr(&o));
    assert!(out.contains("verdict: PASS"), "{out}");
    assert!(out.contains("ncproxy/batched/"), "{out}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema"], "ncbench.result/v1");
    let cells = v["cells"].as_array().unwrap();
    let ncproxy: Vec<_> = cells
        .iter()
        .filter(|c| c["params"]["kind"] == "ncproxy")
        .collect();
    assert_eq!(ncproxy.len(), 2);
    for c in &ncproxy {
        assert!(c["summary"]["requests"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["summary"]["mismatches"], 0);
        assert_eq!(c["summary"]["lost"], 0);
        assert!(
            c["summary"]["proxy"]["syscalls_per_request"]
                .as_f64()
                .is_some(),
            "{c}"
        );
        assert!(c["how"].as_str().unwrap().contains("in-process"), "{c}");
    }
    assert!(std::fs::read_to_string(&csv).unwrap().lines().count() >= 4);
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    assert!(std::fs::read_dir(&hdr).unwrap().count() >= 3);

    // Gate: a copy passes, a degraded copy fails, with the documented codes.
    let copy = dir.path().join("copy.json");
    std::fs::copy(&json, &copy).unwrap();
    let o = ncbench(&["compare", json.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let mut worse = v.clone();
    for c in worse["cells"].as_array_mut().unwrap() {
        let ops = c["summary"]["ops_per_sec"].as_f64().unwrap_or(0.0);
        c["summary"]["ops_per_sec"] = serde_json::json!(ops * 0.5);
        for t in c["trials"].as_array_mut().unwrap() {
            t["ops_per_sec"] = serde_json::json!(ops * 0.5);
        }
    }
    let degraded = dir.path().join("degraded.json");
    std::fs::write(&degraded, serde_json::to_string(&worse).unwrap()).unwrap();
    let o = ncbench(&[
        "compare",
        json.to_str().unwrap(),
        degraded.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL"), "{}", stdout(&o));
    // Thresholds are flags: allow a 60% drop and the same pair passes.
    let o = ncbench(&[
        "compare",
        json.to_str().unwrap(),
        degraded.to_str().unwrap(),
        "--max-throughput-drop",
        "60%",
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn failed_gate_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "gate.toml",
        r#"
[run]
requests = 2000
warmup = "0s"
[backends]
count = 1
[[target]]
kind = "direct"
[workload]
connections = 2
pipeline = 4
keys = 100
[[gate]]
name = "impossible throughput"
metric = "ops_per_sec"
cells = {}
min = 1e12
"#,
    );
    let o = ncbench(&["run", cfg.to_str().unwrap(), "--progress", "quiet"]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("gate FAIL: impossible throughput"),
        "{}",
        stdout(&o)
    );
}

/// `--target HOST:PORT`: load at a server that is already running, with no
/// config file and nothing started; memtier-style short flags.
#[test]
fn quick_target_drives_an_existing_server() {
    let redis = nc_harness::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    let addr = redis.addr().to_string();
    let o = ncbench(&[
        "run",
        "--target",
        &addr,
        "-c",
        "4",
        "-P",
        "8",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--progress",
        "quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["cells"][0]["id"], "target/p8/c4");
    assert!(v["cells"][0]["summary"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(v["backends"]["kind"], "external");
    assert!(!v["cells"][0]["trials"][0]["timeline"]
        .as_array()
        .unwrap()
        .is_empty());

    let mc = nc_harness::Memcached::start().unwrap();
    let o = ncbench(&[
        "run",
        "--target",
        &mc.addr().to_string(),
        "--protocol",
        "memcache",
        "-c",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--progress",
        "quiet",
    ]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("target/p16/c2"), "{}", stdout(&o));

    assert_config_error(
        &ncbench(&["run", "--target", "nowhere"]),
        "command line",
        "--target",
    );
    // --target replaces the config file: giving both is a usage error.
    assert_eq!(code(&ncbench(&["run", "x.toml", "--target", &addr])), 2);
}

/// `--target HOST:PORT --tls --tls-ca FILE`: an existing TLS server, driven,
/// preloaded and read back over TLS; the flags' mistakes are exit 2.
#[test]
fn quick_target_over_tls() {
    let pki = nc_harness::TestPki::generate().unwrap();
    let redis = nc_harness::RedisServer::start_tls(&pki, false, &[]).unwrap();
    let addr = redis.tls_addr().unwrap().to_string();
    let ca = pki.ca.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tls.json");
    let quick = [
        "-c",
        "2",
        "-P",
        "4",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
    ];
    let mut args = vec!["run", "--target", &addr, "--tls", "--tls-ca", ca];
    args.extend(quick);
    args.extend(["--progress", "quiet", "--json", json.to_str().unwrap()]);
    let o = ncbench(&args);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cell = &v["cells"][0];
    assert!(cell["summary"]["requests"].as_u64().unwrap() > 0, "{cell}");
    assert_eq!(cell["summary"]["mismatches"], 0);
    assert!(cell["how"].as_str().unwrap().contains("over TLS"), "{cell}");
    assert!(
        v["verify"]["checked"].as_u64().unwrap() > 0,
        "{}",
        v["verify"]
    );

    // Plaintext to the TLS port does not get through.
    let mut plain = vec!["run", "--target", &addr, "--progress", "quiet"];
    plain.extend(quick);
    assert_eq!(code(&ncbench(&plain)), 2);
    // The test CA is not among the system's roots: refused.
    let mut system = vec!["run", "--target", &addr, "--tls", "--progress", "quiet"];
    system.extend(quick);
    let o = ncbench(&system);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    // Bad flags: one line naming the flag, exit 2.
    assert_config_error(
        &ncbench(&[
            "run",
            "--target",
            &addr,
            "--tls",
            "--tls-ca",
            "/no/such/ca.pem",
        ]),
        "command line",
        "--tls-ca",
    );
    assert_eq!(code(&ncbench(&["run", "--tls"])), 2, "--tls needs --target");
}

/// nutcracker has no TLS: asking for it is a config error (exit 2, one
/// line with the file, the key and why), before anything starts.
#[test]
fn nutcracker_with_tls_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = write(
        dir.path(),
        "nut-tls.toml",
        "[[target]]\nkind = \"ncproxy\"\ntls = true\n[[target]]\nkind = \"nutcracker\"\ntls = true\n",
    );
    for cmd in ["run", "check"] {
        let o = ncbench(&[cmd, client.to_str().unwrap()]);
        assert_config_error(&o, "nut-tls.toml", "target[1].tls");
        assert!(
            stderr(&o).contains("nutcracker has no TLS"),
            "{}",
            stderr(&o)
        );
    }
    let servers = write(
        dir.path(),
        "nut-server-tls.toml",
        "[backends]\ntls = true\n[[target]]\nkind = \"nutcracker\"\nserver_tls = true\n",
    );
    let o = ncbench(&["run", servers.to_str().unwrap()]);
    assert_config_error(&o, "nut-server-tls.toml", "target[0].server_tls");
    assert!(
        stderr(&o).contains("nutcracker has no TLS"),
        "{}",
        stderr(&o)
    );
}
