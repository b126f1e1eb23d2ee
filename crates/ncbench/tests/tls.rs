//! TLS end to end: ncbench makes its own certificates, starts redis-server
//! with a TLS port next to the plain one, and drives ncproxy (in process)
//! with TLS on both sides, ncproxy in plaintext and the backends' TLS ports
//! directly, in one run, with every reply checked and the data read back.
//! An external TLS server is driven with its CA, and refused with another
//! CA. Every run is bounded in requests.
use nc_harness::{RedisServer, TestPki};
use ncbench::config::from_toml_str;
use ncbench::progress::Quiet;
use ncbench::results::RunResult;

fn run(toml: &str) -> RunResult {
    let cfg = from_toml_str(toml, "tls-test.toml").expect("valid test config");
    ncbench::bench::run(&cfg, &Quiet)
        .expect("run completes")
        .result
}

/// Plain and TLS cells side by side, both send modes, values from 16 bytes
/// to 20 KB (replies span several TLS records and outgrow the read buffer
/// in a 10-key MGET).
#[test]
fn plain_and_tls_through_ncproxy_and_direct_in_one_run() {
    let r = run(r#"
[run]
requests = 4000
warmup = "0s"
timeout = "5s"
[backends]
count = 2
tls = true
[proxy]
workers = 1
[[target]]
kind = "ncproxy"
label = "plain"
[[target]]
kind = "ncproxy"
label = "tls"
tls = true
server_tls = true
[[target]]
kind = "direct"
label = "direct-tls"
tls = true
[workload]
connections = 4
pipeline = 8
keys = 400
mget_keys = 10
value_size = { min = 16, max = 20000 }
[workload.mix]
get = 50
set = 30
mget = 10
del = 5
incr = 5
[sweep]
send_mode = ["batched", "per_message"]
"#);
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let ids: Vec<&str> = r.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    for c in &r.cells {
        let s = &c.summary;
        assert!(c.skipped.is_none(), "{}: {:?}", c.id, c.skipped);
        assert_eq!(s.requests, 4000, "{}", c.id);
        assert_eq!(
            (s.mismatches, s.lost, s.errors, s.conn_errors),
            (0, 0, 0, 0),
            "{}: {:?}",
            c.id,
            s.first_problem
        );
        assert!(s.ops.mget > 0 && s.ops.set > 0, "{}: {:?}", c.id, s.ops);
    }
    let cell = |id: &str| {
        r.cells
            .iter()
            .find(|c| c.id.starts_with(id))
            .unwrap_or_else(|| panic!("no cell {id} in {ids:?}"))
    };
    let sends = |id: &str| {
        let c = cell(id);
        c.summary
            .proxy
            .as_ref()
            .and_then(|p| p.syscalls_per_request)
            .unwrap_or_else(|| panic!("{id}: send syscalls not counted"))
    };
    for id in [
        "plain/batched",
        "plain/per_message",
        "tls/batched",
        "tls/per_message",
    ] {
        let c = cell(id);
        assert!(sends(id) > 0.0, "{id}");
        assert!(
            c.summary
                .syscalls
                .as_ref()
                .and_then(|s| s.proxy_per_request)
                .is_some(),
            "{id}: /proc syscalls not read"
        );
    }
    // per_message over TLS: one flush (one write) per message; batched:
    // a batch per flush, so fewer.
    assert!(
        sends("tls/per_message") >= 0.95,
        "{}",
        sends("tls/per_message")
    );
    assert!(
        sends("tls/batched") < sends("tls/per_message"),
        "batched {} vs per_message {}",
        sends("tls/batched"),
        sends("tls/per_message")
    );
    assert!(
        cell("tls/batched").how.contains("TLS clients and servers"),
        "{}",
        cell("tls/batched").how
    );
    assert!(!cell("plain/batched").how.contains("TLS"));
    assert!(cell("direct-tls").how.contains("over TLS"));
    let v = r.verify.expect("verify ran");
    assert!(v.checked >= 400 && v.bad == 0, "{v:?}");
}

fn external_tls(server: &RedisServer, ca: &std::path::Path, target_ca: &std::path::Path) -> String {
    let addr = server.tls_addr().expect("TLS port");
    format!(
        r#"
[run]
requests = 2000
warmup = "0s"
[backends]
kind = "external"
addresses = ["{addr}"]
tls = true
tls_ca = "{ca}"
[[target]]
kind = "external"
address = "{addr}"
tls = true
tls_ca = "{target_ca}"
[[target]]
kind = "direct"
tls = true
[workload]
connections = 3
pipeline = 4
keys = 200
"#,
        ca = ca.display(),
        target_ca = target_ca.display(),
    )
}

/// A TLS server ncbench did not start: preloaded, driven and read back over
/// TLS with its CA; with a CA that did not sign its certificate the driver
/// refuses the connection.
#[test]
fn external_tls_server_is_driven_and_verified() {
    let pki = TestPki::generate().unwrap();
    let redis = RedisServer::start_tls(&pki, false, &[]).unwrap();
    let r = run(&external_tls(&redis, &pki.ca, &pki.ca));
    assert!(r.verdict.pass, "{:?}", r.verdict);
    for c in &r.cells {
        assert_eq!(c.summary.requests, 2000, "{}", c.id);
        assert_eq!(c.summary.mismatches, 0, "{}", c.id);
        assert!(c.how.contains("over TLS"), "{}", c.how);
    }

    let other = TestPki::generate().unwrap();
    // The loader and the direct target keep the right CA; only the
    // external target's is wrong, so it is the driver that refuses.
    let text = external_tls(&redis, &pki.ca, &other.ca)
        .replace("[run]\n", "[run]\npreload = false\nverify = false\n");
    let cfg = from_toml_str(&text, "wrong-ca.toml").unwrap();
    let err = match ncbench::bench::run(&cfg, &Quiet) {
        Ok(_) => panic!("a certificate from another CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("cannot connect") && err.contains("certificate"),
        "{err}"
    );
}
