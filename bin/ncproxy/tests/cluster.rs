//! `distribution: redis_cluster` against a real local Redis Cluster (six
//! `redis-server --cluster-enabled yes` nodes, three masters with a replica
//! each, started by the harness on free loopback ports).
//!
//! - placement: every key written through ncproxy is on the node that owns
//!   its `CLUSTER KEYSLOT`; multi-key commands split per slot and merge;
//!   replica reads reach replicas;
//! - a manual single-slot migration: ASK is followed with ASKING, TRYAGAIN
//!   is retried until the slot has moved, then MOVED is followed;
//! - a live reshard and a rebalance onto an added master under pipelined
//!   load from several raw clients and a plain (non-cluster) redis-rs client:
//!   0 errors, 0 lost, 0 mismatched;
//! - a master killed with SIGKILL: every request gets exactly one reply, the
//!   proxy follows the promoted replica without a MOVED to tell it, and no
//!   acknowledged, replicated key is lost.
//!
//! Every load is bounded in time and requests and stops by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nc_harness::{
    ncproxy_bin, parse_reply, resp_cmd, ClusterOptions, Ncproxy, ProxyProcess, RawConn,
    RedisCluster, Reply,
};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn start_cluster(node_timeout_ms: u64) -> RedisCluster {
    RedisCluster::start_with(ClusterOptions {
        node_timeout_ms,
        ..ClusterOptions::default()
    })
    .expect("start a 3+3 Redis Cluster (redis-server and redis-cli needed)")
}

/// ncproxy with one cluster pool seeded by two of the nodes.
fn start_proxy(cluster: &RedisCluster, extra: &str) -> ProxyProcess {
    let seeds = cluster.seeds();
    let yaml = format!(
        "cluster:\n  listen: 127.0.0.1:0\n  redis: true\n  distribution: redis_cluster\n  timeout: 8000\n  cluster_refresh_interval: 500\n{extra}  servers:\n   - {}:1\n   - {}:1\n",
        seeds[0], seeds[1]
    );
    let yaml = yaml.replace(
        "127.0.0.1:0",
        &format!(
            "127.0.0.1:{}",
            nc_harness::free_port().expect("a free port")
        ),
    );
    Ncproxy::start(&ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")), &yaml, &[]).expect("start ncproxy")
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(IO_TIMEOUT).expect("reply")
}

/// Sends `cmds` (words split at spaces) in one write and returns their
/// replies, concatenated.
fn pipeline(conn: &mut RawConn, cmds: &[&str]) -> String {
    let bytes: Vec<u8> = cmds
        .iter()
        .flat_map(|c| resp_cmd(&c.split(' ').map(str::as_bytes).collect::<Vec<_>>()))
        .collect();
    conn.send(&bytes).expect("send");
    let replies = conn.read_replies(cmds.len(), IO_TIMEOUT).expect("replies");
    String::from_utf8_lossy(&replies.concat()).into_owned()
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// The pool's stats object.
fn pool_stats(proxy: &ProxyProcess) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&proxy.stats_json().expect("stats")).expect("stats JSON");
    json["cluster"].clone()
}

/// A node counter summed over every node entry of the pool.
fn node_sum(pool: &serde_json::Value, field: &str) -> u64 {
    pool.as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.get(field).and_then(|f| f.as_u64()))
        .sum()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn placement_multikey_and_replica_reads() {
    let cluster = start_cluster(5000);
    let proxy = start_proxy(&cluster, "");
    let mut conn = proxy.connect().unwrap();

    // Placement: each key lands on the master that owns its CLUSTER KEYSLOT.
    let keys: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("placement:{i}").into_bytes())
        .chain(["{user1000}.following", "foo{}{bar}", "{}", "a{b}c"].map(|k| k.as_bytes().to_vec()))
        .collect();
    let mut writes = Vec::new();
    for key in &keys {
        writes.extend(resp_cmd(&[b"SET", key, key]));
    }
    conn.send(&writes).unwrap();
    for reply in conn.read_replies(keys.len(), IO_TIMEOUT).unwrap() {
        assert_eq!(reply, b"+OK\r\n");
    }
    let mut owners: HashMap<u16, u16> = HashMap::new();
    for master in cluster.masters().unwrap() {
        for (lo, hi) in cluster.slots_of(master).unwrap() {
            for slot in lo..=hi {
                owners.insert(slot, master);
            }
        }
    }
    for key in &keys {
        let slot = cluster.keyslot(key).unwrap();
        assert_eq!(slot, nc_hashkit::cluster_key_slot(key), "{key:?}");
        let owner = owners[&slot];
        assert_eq!(
            cluster.cmd(owner, &[b"GET", key]).unwrap(),
            bulk(key),
            "key {:?} is not on {owner}, the owner of slot {slot}",
            String::from_utf8_lossy(key)
        );
    }

    // Multi-key commands across slots, split per slot and merged.
    let k: Vec<&[u8]> = vec![b"foo", b"bar", b"baz", b"hello", b"{bar}x"];
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for key in &k {
        mset.push(key);
        mset.push(key);
    }
    assert_eq!(cmd(&mut conn, &mset), b"+OK\r\n");
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(&k);
    mget.push(b"missing");
    let mut expected = b"*6\r\n".to_vec();
    for key in &k {
        expected.extend(bulk(key));
    }
    expected.extend(b"$-1\r\n");
    assert_eq!(cmd(&mut conn, &mget), expected);
    assert_eq!(
        cmd(
            &mut conn,
            &[b"EXISTS", b"foo", b"bar", b"nope", b"baz", b"foo"]
        ),
        b":4\r\n"
    );
    assert_eq!(
        cmd(&mut conn, &[b"TOUCH", b"foo", b"bar", b"nope"]),
        b":2\r\n"
    );
    assert_eq!(
        cmd(&mut conn, &[b"DEL", b"foo", b"bar", b"nope"]),
        b":2\r\n"
    );
    assert_eq!(
        cmd(&mut conn, &[b"UNLINK", b"baz", b"hello", b"{bar}x"]),
        b":3\r\n"
    );
    // Same slot: passes whole (one MSET, atomic on its node).
    assert_eq!(
        cmd(&mut conn, &[b"MSET", b"{t}1", b"a", b"{t}2", b"b"]),
        b"+OK\r\n"
    );
    assert_eq!(
        cmd(&mut conn, &[b"MGET", b"{t}1", b"{t}2"]),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    // What Redis cannot serve gets Redis's own error, verbatim.
    assert_eq!(
        cmd(&mut conn, &[b"SUNION", b"foo", b"bar"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // Transactions whose keys share a slot go whole to its node.
    assert_eq!(
        pipeline(
            &mut conn,
            &[
                "MULTI",
                "SET {tx}a 1",
                "INCR {tx}a",
                "MGET {tx}a {tx}b",
                "EXEC",
            ]
        ),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:2\r\n*2\r\n$1\r\n2\r\n$-1\r\n"
    );
    assert_eq!(
        pipeline(
            &mut conn,
            &[
                "MULTI",
                "SET foo 1",
                "SET bar 2",
                "EXEC",
                "EXEC",
                "DISCARD",
                "MULTI",
                "MULTI",
                "DISCARD",
                "GET foo",
            ]
        ),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n-CROSSSLOT Keys in request don't hash to the same slot\r\n\
         -ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n\
         -ERR MULTI calls can not be nested\r\n+OK\r\n$-1\r\n"
    );

    let stats = pool_stats(&proxy);
    assert_eq!(
        node_sum(&stats, "moved"),
        0,
        "a fresh map needs no redirect"
    );
    assert!(stats["cluster_refresh_ok"].as_u64().unwrap() >= 1);
    // The periodic refresh lists every node, replicas included.
    wait_for(
        "six node entries in the stats",
        Duration::from_secs(10),
        || {
            pool_stats(&proxy)
                .as_object()
                .unwrap()
                .values()
                .filter(|v| v.is_object())
                .count()
                == 6
        },
    );

    // Replica reads: GETs reach replicas, writes stay on masters.
    let replica_proxy = start_proxy(&cluster, "  cluster_read: prefer_replica\n");
    let mut rconn = replica_proxy.connect().unwrap();
    thread::sleep(Duration::from_millis(700)); // a refresh that lists the replicas
    for key in &keys[..50] {
        assert_eq!(cmd(&mut rconn, &[b"GET", key]), bulk(key));
    }
    assert_eq!(cmd(&mut rconn, &[b"SET", b"written", b"1"]), b"+OK\r\n");
    let stats = pool_stats(&replica_proxy);
    let masters: Vec<String> = cluster
        .masters()
        .unwrap()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut replica_requests = 0;
    let mut master_requests = 0;
    for (name, node) in stats.as_object().unwrap() {
        let Some(requests) = node.get("requests").and_then(|r| r.as_u64()) else {
            continue;
        };
        match masters.contains(name) {
            true => master_requests += requests,
            false => replica_requests += requests,
        }
    }
    assert_eq!(replica_requests, 50, "{stats}");
    assert_eq!(master_requests, 1, "{stats}");
}

#[test]
fn ask_then_tryagain_then_moved_during_a_manual_migration() {
    let cluster = start_cluster(5000);
    let proxy = start_proxy(&cluster, "");
    // A proxy that learns the move only from the nodes' replies.
    let late = {
        let seeds = cluster.seeds();
        let yaml = format!(
            "late:\n  listen: 127.0.0.1:{}\n  redis: true\n  distribution: redis_cluster\n  timeout: 8000\n  cluster_refresh_interval: 600000\n  servers:\n   - {}:1\n",
            nc_harness::free_port().unwrap(),
            seeds[0]
        );
        Ncproxy::start(&ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")), &yaml, &[]).unwrap()
    };
    let mut late_conn = late.connect().unwrap();
    let mut conn = proxy.connect().unwrap();
    assert_eq!(cmd(&mut conn, &[b"SET", b"{m}a", b"va"]), b"+OK\r\n");
    assert_eq!(cmd(&mut conn, &[b"SET", b"{m}b", b"vb"]), b"+OK\r\n");
    let slot = cluster.keyslot(b"{m}").unwrap();
    let source = cluster.slot_owner(slot).unwrap();
    let target = *cluster
        .masters()
        .unwrap()
        .iter()
        .find(|&&m| m != source)
        .unwrap();
    cluster.set_importing(slot, target, source).unwrap();
    cluster.set_migrating(slot, source, target).unwrap();
    cluster.migrate_keys(source, target, &[b"{m}a"]).unwrap();

    // The source answers ASK for the moved key; ncproxy asks the target.
    assert_eq!(cmd(&mut conn, &[b"GET", b"{m}a"]), b"$2\r\nva\r\n");
    assert_eq!(cmd(&mut conn, &[b"GET", b"{m}b"]), b"$2\r\nvb\r\n");
    let stats = pool_stats(&proxy);
    assert_eq!(node_sum(&stats, "ask"), 1, "{stats}");

    // Keys split across source and target: TRYAGAIN, retried until the
    // migration finishes; then the source says MOVED and ncproxy follows.
    let finisher = {
        let ports = (source, target);
        let cluster = &cluster;
        thread::scope(|scope| {
            let handle = scope.spawn(move || {
                thread::sleep(Duration::from_millis(300));
                cluster.migrate_keys(ports.0, ports.1, &[b"{m}b"]).unwrap();
                cluster.finish_slot(slot, ports.1).unwrap();
            });
            let started = Instant::now();
            let reply = cmd(&mut conn, &[b"MGET", b"{m}a", b"{m}b"]);
            handle.join().unwrap();
            (reply, started.elapsed())
        })
    };
    assert_eq!(finisher.0, b"*2\r\n$2\r\nva\r\n$2\r\nvb\r\n");
    assert!(finisher.1 >= Duration::from_millis(250), "{:?}", finisher.1);
    let stats = pool_stats(&proxy);
    assert!(node_sum(&stats, "tryagain") >= 1, "{stats}");
    assert_eq!(node_sum(&stats, "gave_up"), 0, "{stats}");
    assert_eq!(cmd(&mut conn, &[b"GET", b"{m}b"]), b"$2\r\nvb\r\n");
    assert_eq!(cmd(&mut conn, &[b"SET", b"{m}c", b"vc"]), b"+OK\r\n");
    assert_eq!(
        cluster.cmd(target, &[b"GET", b"{m}c"]).unwrap(),
        b"$2\r\nvc\r\n"
    );

    // The late proxy still routes the slot to the source: a transaction's
    // queued command gets MOVED there, so the whole transaction goes again
    // to the target.
    assert_eq!(
        pipeline(
            &mut late_conn,
            &["MULTI", "GET {m}a", "SET {m}d vd", "EXEC",]
        ),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$2\r\nva\r\n+OK\r\n"
    );
    let stats: serde_json::Value = serde_json::from_str(&late.stats_json().unwrap()).unwrap();
    assert_eq!(node_sum(&stats["late"], "moved"), 1, "{stats}");
    assert_eq!(
        cluster.cmd(target, &[b"GET", b"{m}d"]).unwrap(),
        b"$2\r\nvd\r\n"
    );
}

/// What a load client saw.
#[derive(Debug, Default)]
struct LoadReport {
    requests: u64,
    errors: u64,
    first_errors: Vec<String>,
    lost: u64,
    mismatched: u64,
    /// Keys whose SET was acknowledged, with their values.
    acked: Vec<(Vec<u8>, Vec<u8>)>,
}

impl LoadReport {
    fn add(&mut self, other: LoadReport) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.lost += other.lost;
        self.mismatched += other.mismatched;
        self.first_errors
            .extend(other.first_errors.into_iter().take(5));
        self.acked.extend(other.acked);
    }
}

/// A raw client pipelining `depth` requests at a time: SETs of new keys and
/// GETs of keys it already wrote, every reply checked, until `stop`.
fn raw_load(
    proxy: std::net::SocketAddr,
    id: usize,
    depth: usize,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let mut report = LoadReport::default();
    let Ok(mut conn) = RawConn::connect(proxy) else {
        report.lost += 1;
        return report;
    };
    let cap = Instant::now() + Duration::from_secs(60);
    let mut next = 0u64;
    let mut rng = 0x9E37_79B9u64 ^ id as u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < cap && next < 200_000 {
        let mut batch = Vec::new();
        let mut expect: Vec<(bool, Vec<u8>, Vec<u8>)> = Vec::new();
        for _ in 0..depth {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if report.acked.is_empty() || rng % 2 == 0 {
                let key = format!("load:{id}:{next}").into_bytes();
                let value = format!("v{next}-{id}").into_bytes();
                next += 1;
                batch.extend(resp_cmd(&[b"SET", &key, &value]));
                expect.push((true, key, value));
            } else {
                let (key, value) = report.acked[(rng as usize) % report.acked.len()].clone();
                batch.extend(resp_cmd(&[b"GET", &key]));
                expect.push((false, key, value));
            }
        }
        if conn.send(&batch).is_err() {
            report.lost += expect.len() as u64;
            return report;
        }
        let replies = match conn.read_replies(expect.len(), IO_TIMEOUT) {
            Ok(replies) => replies,
            Err(_) => {
                report.lost += expect.len() as u64;
                return report;
            }
        };
        for ((is_set, key, value), reply) in expect.into_iter().zip(replies) {
            report.requests += 1;
            let parsed = parse_reply(&reply).ok().flatten().map(|(r, _)| r);
            match (is_set, parsed) {
                (_, Some(Reply::Error(e))) => {
                    report.errors += 1;
                    if report.first_errors.len() < 5 {
                        report
                            .first_errors
                            .push(String::from_utf8_lossy(&e).into_owned());
                    }
                }
                (true, Some(Reply::Status(s))) if s == b"OK" => report.acked.push((key, value)),
                (false, Some(Reply::Bulk(Some(v)))) if v == value => {}
                _ => report.mismatched += 1,
            }
        }
    }
    report
}

/// A plain redis-rs client (not cluster-aware): SET then GET, one at a time.
fn plain_client_load(proxy: std::net::SocketAddr, stop: Arc<AtomicBool>) -> LoadReport {
    let mut report = LoadReport::default();
    let client = redis::Client::open(format!("redis://{proxy}/")).expect("client");
    let mut con = match client.get_connection_with_timeout(IO_TIMEOUT) {
        Ok(con) => con,
        Err(e) => {
            report.errors += 1;
            report.first_errors.push(format!("connect: {e}"));
            return report;
        }
    };
    let _ = con.set_read_timeout(Some(IO_TIMEOUT));
    let cap = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < cap && i < 100_000 {
        let key = format!("plain:{i}");
        let value = format!("p{i}");
        i += 1;
        report.requests += 2;
        let set: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
        if let Err(e) = set {
            report.errors += 1;
            report.first_errors.push(format!("SET: {e}"));
            if e.is_io_error() {
                return report;
            }
            continue;
        }
        report
            .acked
            .push((key.clone().into_bytes(), value.clone().into_bytes()));
        match redis::cmd("GET")
            .arg(&key)
            .query::<Option<String>>(&mut con)
        {
            Ok(Some(v)) if v == value => {}
            Ok(_) => report.mismatched += 1,
            Err(e) => {
                report.errors += 1;
                report.first_errors.push(format!("GET: {e}"));
                if e.is_io_error() {
                    return report;
                }
            }
        }
    }
    report
}

/// Runs `clients` raw clients and one plain client until `during` returns.
fn under_load<T>(
    proxy: &ProxyProcess,
    clients: usize,
    during: impl FnOnce() -> T,
) -> (LoadReport, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = proxy.addr();
    let mut handles = Vec::new();
    for id in 0..clients {
        let stop = stop.clone();
        handles.push(thread::spawn(move || raw_load(addr, id, 8, stop)));
    }
    let plain = {
        let stop = stop.clone();
        thread::spawn(move || plain_client_load(addr, stop))
    };
    thread::sleep(Duration::from_millis(300));
    let result = during();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut report = LoadReport::default();
    for handle in handles {
        report.add(handle.join().expect("load thread"));
    }
    report.add(plain.join().expect("plain client thread"));
    (report, result)
}

/// Reads every acknowledged key back through the proxy.
fn verify_acked(proxy: &ProxyProcess, acked: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let mut conn = proxy.connect().unwrap();
    let mut missing = 0;
    for chunk in acked.chunks(200) {
        let mut batch = Vec::new();
        for (key, _) in chunk {
            batch.extend(resp_cmd(&[b"GET", key]));
        }
        conn.send(&batch).unwrap();
        for ((_, value), reply) in chunk
            .iter()
            .zip(conn.read_replies(chunk.len(), IO_TIMEOUT).unwrap())
        {
            if reply != bulk(value) {
                missing += 1;
            }
        }
    }
    missing
}

#[test]
fn live_reshard_and_rebalance_onto_a_new_master_under_load() {
    let mut cluster = start_cluster(5000);
    let proxy = start_proxy(&cluster, "");
    let masters = cluster.masters().unwrap();
    let (report, ()) = under_load(&proxy, 4, || {
        cluster
            .reshard(masters[0], masters[1], 600)
            .expect("reshard");
    });
    eprintln!(
        "reshard: {} requests, {} errors, {} lost, {} mismatched; stats {}",
        report.requests,
        report.errors,
        report.lost,
        report.mismatched,
        pool_stats(&proxy)
    );
    assert!(report.requests > 500, "the load ran: {report:?}");
    assert_eq!(
        (report.errors, report.lost, report.mismatched),
        (0, 0, 0),
        "{:?}",
        report.first_errors
    );
    assert_eq!(verify_acked(&proxy, &report.acked), 0);
    let stats = pool_stats(&proxy);
    assert!(
        node_sum(&stats, "moved") + node_sum(&stats, "ask") > 0,
        "the reshard redirected some requests: {stats}"
    );

    let new_master = cluster.add_master().expect("add a master");
    let (report, ()) = under_load(&proxy, 4, || {
        cluster.rebalance(true).expect("rebalance");
    });
    eprintln!(
        "rebalance: {} requests, {} errors, {} lost, {} mismatched",
        report.requests, report.errors, report.lost, report.mismatched
    );
    assert_eq!(
        (report.errors, report.lost, report.mismatched),
        (0, 0, 0),
        "{:?}",
        report.first_errors
    );
    assert_eq!(verify_acked(&proxy, &report.acked), 0);
    assert!(!cluster.slots_of(new_master).unwrap().is_empty());
    let name = format!("127.0.0.1:{new_master}");
    wait_for(
        "the new master in the stats",
        Duration::from_secs(5),
        || pool_stats(&proxy)[&name]["requests"].as_u64().unwrap_or(0) > 0,
    );
}

#[test]
fn a_killed_master_is_followed_to_its_promoted_replica() {
    let mut cluster = start_cluster(2000);
    let proxy = start_proxy(&cluster, "");
    let victim = cluster.masters().unwrap()[0];
    let probe_key = (0..)
        .map(|i| format!("probe:{i}").into_bytes())
        .find(|k| cluster.slot_owner(cluster.keyslot(k).unwrap()).unwrap() == victim)
        .unwrap();

    // Phase 1: keys written and replicated before the kill.
    let (before, ()) = under_load(&proxy, 3, || thread::sleep(Duration::from_millis(500)));
    assert_eq!((before.errors, before.lost, before.mismatched), (0, 0, 0));
    cluster
        .wait_replicated(victim, Duration::from_secs(10))
        .expect("replicated");

    // Phase 2: kill the master under load; a probe times the first good
    // reply for one of its slots.
    let replica = cluster.replica_of(victim).unwrap().expect("a replica");
    let first_good = Arc::new(Mutex::new(None::<Duration>));
    let (during, killed_at) = under_load(&proxy, 3, || {
        let killed_at = Instant::now();
        cluster.kill_node(victim);
        // The cluster's own failover time: when the replica first serves
        // the slot itself (it answers MOVED to the dead master until then).
        let direct = {
            let probe_key = probe_key.clone();
            thread::spawn(move || {
                let mut conn = RawConn::connect(("127.0.0.1", replica)).unwrap();
                loop {
                    conn.send(&resp_cmd(&[b"SET", &probe_key, b"direct"]))
                        .unwrap();
                    let reply = conn.read_exact_reply_bytes(IO_TIMEOUT).unwrap();
                    if reply == b"+OK\r\n" || killed_at.elapsed() > Duration::from_secs(30) {
                        return killed_at.elapsed();
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut probe = proxy.connect().unwrap();
        loop {
            probe
                .send(&resp_cmd(&[b"SET", &probe_key, b"after"]))
                .unwrap();
            let reply = probe
                .read_exact_reply_bytes(IO_TIMEOUT)
                .expect("probe reply");
            if reply == b"+OK\r\n" {
                *first_good.lock().unwrap() = Some(killed_at.elapsed());
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "no good reply"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let promoted = cluster
            .wait_failover(victim, Duration::from_secs(30))
            .expect("failover");
        (direct.join().unwrap(), promoted)
    });
    let (cluster_failover, promoted) = killed_at;
    let first_good = first_good.lock().unwrap().expect("a good reply");
    let stats = pool_stats(&proxy);
    eprintln!(
        "failover: the replica served the slot {cluster_failover:?} after the kill, ncproxy's first good reply came {first_good:?} after it; {} requests, {} errors {:?}, {} lost, {} mismatched; promoted {promoted}; moved {} resent {} clusterdown {} gave_up {}",
        during.requests,
        during.errors,
        during.first_errors,
        during.lost,
        during.mismatched,
        node_sum(&stats, "moved"),
        node_sum(&stats, "resent"),
        node_sum(&stats, "clusterdown"),
        node_sum(&stats, "gave_up"),
    );
    // Every request got exactly one reply and none was wrong; a request in
    // flight on the dead connection may fail (it may have run), nothing else.
    assert_eq!((during.lost, during.mismatched), (0, 0), "{during:?}");
    assert!(during.errors <= 3 * 8 + 1, "{:?}", during.first_errors);
    assert!(during.requests > 100, "the load ran through the failover");
    // No acknowledged, replicated key is lost.
    assert_eq!(verify_acked(&proxy, &before.acked), 0);
    let mut conn = proxy.connect().unwrap();
    assert_eq!(cmd(&mut conn, &[b"GET", &probe_key]), b"$5\r\nafter\r\n");
    assert_eq!(
        cluster
            .slot_owner(cluster.keyslot(&probe_key).unwrap())
            .unwrap(),
        promoted
    );
}
