//! Real memcached client libraries (not our code) work through ncproxy:
//! `tests/clients/mc_client.py` drives Python `pymemcache` (every classic
//! command, noreply on and off, get_many/gets_many fan-out, gat/gats via its
//! raw_command, flush_all, version, stats, verbosity) and `meta-memcache`
//! (mg/ms/md/ma as that library sends them, cas, counters, base64-encoded
//! non-ascii and long keys) against ncproxy in front of three memcached.
//! The test asserts the script's exit status and its `ALL OK` line, and
//! that the script's keys were spread over all three memcached (so the
//! proxy really routed them).
//!
//! The libraries live in a venv, `target/py-venv` (or `$MC_CLIENT_VENV`),
//! created on first use with `python3 -m venv` + `pip install
//! pymemcache==4.0.0 meta-memcache==4.3.0`. Without python3/venv/pip (or
//! network for the first install) the test FAILS with the reason.
//!
//! `NC_MC_CLIENT_DIRECT=1` runs the script against one memcached instead
//! (validates the script itself).

use nc_harness::memcache::backend_get;
use nc_harness::{ncproxy_bin, Memcached, Ncproxy, PoolConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGES: &[&str] = &["pymemcache==4.0.0", "meta-memcache==4.3.0"];

fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("MC_CLIENT_VENV") {
        return PathBuf::from(v);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("py-venv")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (is python3 installed?)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The venv's python with both libraries importable (created if needed).
fn python() -> PathBuf {
    let venv = venv_dir();
    let py = venv.join("bin/python");
    let ready = py.exists()
        && Command::new(&py)
            .args(["-c", "import pymemcache, meta_memcache"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return py;
    }
    // Several test binaries may race here; a lock dir keeps it to one.
    let lock = venv.with_extension("lock");
    let t0 = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "waited 300 s for {} (stale lock? remove it)",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = std::panic::catch_unwind(|| {
        if !py.exists() {
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv (apt-get install python3 python3-venv)",
            );
        }
        run(
            Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PACKAGES),
            "pip install pymemcache meta-memcache",
        );
    });
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    py
}

#[test]
fn python_clients_work_through_ncproxy() {
    let py = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mc_client.py");
    let direct = std::env::var_os("NC_MC_CLIENT_DIRECT").is_some();
    let backends: Vec<Memcached> = (0..if direct { 1 } else { 3 })
        .map(|_| Memcached::start().expect("start memcached"))
        .collect();
    let _proxy;
    let addr = if direct {
        backends[0].addr()
    } else {
        let port = nc_harness::free_port().expect("free port");
        let mut pool = PoolConfig::memcache("mcclient", port)
            .hash("fnv1a_64")
            .distribution("ketama")
            .timeout(2000);
        for (i, b) in backends.iter().enumerate() {
            pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
        }
        let p = Ncproxy::start(
            &ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")),
            &pool.render(),
            &[],
        )
        .expect("start ncproxy with a memcache pool");
        let a = p.addr();
        _proxy = p;
        a
    };
    let mut child = Command::new(&py)
        .arg(&script)
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mc_client.py");
    // Bounded: the script normally takes well under a second.
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("script output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "mc_client.py through {addr} failed ({}):\n{text}",
        out.status
    );
    assert!(
        text.contains("mc_client: pymemcache ok")
            && text.contains("mc_client: meta-memcache ok")
            && text.contains("mc_client: ALL OK"),
        "unexpected script output:\n{text}"
    );
    // The script leaves pyc:spread:0..30 behind, each on exactly one backend,
    // and not all on one (fnv1a_64 places them on two of the three, as
    // nutcracker does).
    let mut per = vec![0; backends.len()];
    for i in 0..30 {
        let k = format!("pyc:spread:{i}");
        let at: Vec<usize> = (0..backends.len())
            .filter(|&b| {
                backend_get(backends[b].addr(), k.as_bytes())
                    .expect("get")
                    .is_some()
            })
            .collect();
        assert_eq!(at.len(), 1, "{k} on backends {at:?}");
        per[at[0]] += 1;
    }
    assert!(
        per.iter().filter(|&&n| n > 0).count() >= 2,
        "the script's keys all landed on one backend: {per:?}"
    );
}
