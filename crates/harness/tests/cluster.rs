//! RedisCluster against real redis-server nodes on loopback: the cluster
//! comes up whole, slots move with reshard and with the manual migration
//! steps (ASK, TRYAGAIN, MOVED), a killed master fails over to its replica,
//! and a new master gets slots from rebalance.

use nc_harness::{RedisCluster, CLUSTER_SLOTS};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn start() -> RedisCluster {
    RedisCluster::start().expect("start a 3+3 Redis Cluster (redis-server and redis-cli needed)")
}

fn slot_count(ranges: &[(u16, u16)]) -> usize {
    ranges.iter().map(|(lo, hi)| usize::from(hi - lo) + 1).sum()
}

/// SET through the slot's current owner.
fn set(c: &RedisCluster, key: &[u8], value: &[u8]) {
    let owner = c.slot_owner(c.keyslot(key).unwrap()).unwrap();
    assert_eq!(c.cmd(owner, &[b"SET", key, value]).unwrap(), b"+OK\r\n");
}

/// GET through the slot's current owner, as raw reply bytes.
fn get(c: &RedisCluster, key: &[u8]) -> Vec<u8> {
    let owner = c.slot_owner(c.keyslot(key).unwrap()).unwrap();
    c.cmd(owner, &[b"GET", key]).unwrap()
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn starts_three_masters_with_a_replica_each_and_keyslots_match() {
    let t0 = Instant::now();
    let c = start();
    eprintln!("cluster up in {:?}", t0.elapsed());
    assert_eq!(c.seeds().len(), 6);
    assert_eq!(c.node_ports().len(), 6);
    let masters = c.masters().unwrap();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut replicas = HashSet::new();
    let mut covered = 0;
    for &m in &masters {
        let r = c
            .replica_of(m)
            .unwrap()
            .expect("every master has a replica");
        assert!(!masters.contains(&r));
        assert!(replicas.insert(r), "replica {r} serves two masters");
        // The bus is on the leased port, not on port + 10000.
        let bus = c.bus_port(m).unwrap();
        let nodes = c.cmd(m, &[b"CLUSTER", b"NODES"]).unwrap();
        let own = format!("127.0.0.1:{m}@{bus} myself,master");
        assert!(
            String::from_utf8_lossy(&nodes).contains(&own),
            "{own} not in {}",
            String::from_utf8_lossy(&nodes)
        );
        covered += slot_count(&c.slots_of(m).unwrap());
        assert_eq!(c.node_id(m).unwrap().len(), 40);
    }
    assert_eq!(covered, usize::from(CLUSTER_SLOTS));

    // The reference's table (§1.1), verified there with CLUSTER KEYSLOT.
    let vectors: &[(&[u8], u16)] = &[
        (b"123456789", 12739),
        (b"foo", 12182),
        (b"bar", 5061),
        (b"baz", 4813),
        (b"{bar}vaz", 5061),
        (b"foo{bar}{zap}", 5061),
        (b"hello", 866),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
        (b"user1000", 3443),
        (b"foo{}{bar}", 8363),
        (b"foo{{bar}}zap", 4015),
        (b"{}", 15257),
        (b"", 0),
    ];
    for (key, slot) in vectors {
        assert_eq!(
            c.keyslot(key).unwrap(),
            *slot,
            "{}",
            String::from_utf8_lossy(key)
        );
    }

    // The owner serves the key; another master redirects to it.
    set(&c, b"foo", b"1");
    assert_eq!(get(&c, b"foo"), bulk(b"1"));
    let owner = c.slot_owner(12182).unwrap();
    let other = *masters.iter().find(|&&m| m != owner).unwrap();
    assert_eq!(
        c.cmd(other, &[b"GET", b"foo"]).unwrap(),
        format!("-MOVED 12182 127.0.0.1:{owner}\r\n").into_bytes()
    );
}

#[test]
fn single_slot_migration_gives_ask_then_tryagain_then_moved() {
    let c = start();
    let (a, b): (&[u8], &[u8]) = (b"{mig}a", b"{mig}b");
    let slot = c.keyslot(a).unwrap();
    let source = c.slot_owner(slot).unwrap();
    let target = *c.masters().unwrap().iter().find(|&&m| m != source).unwrap();
    set(&c, a, b"va");
    set(&c, b, b"vb");

    c.set_importing(slot, target, source).unwrap();
    c.set_migrating(slot, source, target).unwrap();
    c.migrate_keys(source, target, &[a]).unwrap();

    let ask = format!("-ASK {slot} 127.0.0.1:{target}\r\n").into_bytes();
    assert_eq!(c.cmd(source, &[b"GET", a]).unwrap(), ask);
    // The key still on the source is served there.
    assert_eq!(c.cmd(source, &[b"GET", b]).unwrap(), bulk(b"vb"));
    // Keys split across source and target.
    let tryagain = c.cmd(source, &[b"MGET", a, b]).unwrap();
    assert!(
        tryagain.starts_with(b"-TRYAGAIN "),
        "{}",
        String::from_utf8_lossy(&tryagain)
    );
    // The target serves an importing slot only after ASKING.
    let moved_back = format!("-MOVED {slot} 127.0.0.1:{source}\r\n").into_bytes();
    assert_eq!(c.cmd(target, &[b"GET", a]).unwrap(), moved_back);
    let asked = c.pipeline(target, &[&[b"ASKING"], &[b"GET", a]]).unwrap();
    assert_eq!(asked, vec![b"+OK\r\n".to_vec(), bulk(b"va")]);

    c.migrate_keys(source, target, &[b]).unwrap();
    c.finish_slot(slot, target).unwrap();
    let moved = format!("-MOVED {slot} 127.0.0.1:{target}\r\n").into_bytes();
    assert_eq!(c.cmd(source, &[b"GET", a]).unwrap(), moved);
    assert_eq!(c.slot_owner(slot).unwrap(), target);
    assert_eq!(c.cmd(target, &[b"MGET", a, b]).unwrap(), {
        let mut v = b"*2\r\n".to_vec();
        v.extend(bulk(b"va"));
        v.extend(bulk(b"vb"));
        v
    });
    c.wait_healthy(Duration::from_secs(30)).unwrap();
}

#[test]
fn reshard_moves_slots_and_the_data_stays_readable() {
    let c = start();
    let masters = c.masters().unwrap();
    let (from, to) = (masters[0], masters[1]);
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("key:{i}").into_bytes()).collect();
    for k in &keys {
        set(&c, k, k);
    }
    let from_before = slot_count(&c.slots_of(from).unwrap());
    let to_before = slot_count(&c.slots_of(to).unwrap());
    let owned_by_from: HashSet<u16> = c
        .slots_of(from)
        .unwrap()
        .iter()
        .flat_map(|&(lo, hi)| lo..=hi)
        .collect();

    let t0 = Instant::now();
    c.reshard(from, to, 100).unwrap();
    eprintln!("reshard of 100 slots settled in {:?}", t0.elapsed());
    assert_eq!(slot_count(&c.slots_of(from).unwrap()), from_before - 100);
    assert_eq!(slot_count(&c.slots_of(to).unwrap()), to_before + 100);
    let mut moved_keys = 0;
    for k in &keys {
        let slot = c.keyslot(k).unwrap();
        if owned_by_from.contains(&slot) && c.slot_owner(slot).unwrap() == to {
            moved_keys += 1;
        }
        assert_eq!(get(&c, k), bulk(k), "{}", String::from_utf8_lossy(k));
    }
    assert!(moved_keys > 0, "no test key was in the 100 moved slots");

    // A refused reshard fails with the tool's own words.
    let err = c.reshard(from, from, 10).unwrap_err().to_string();
    assert!(
        err.contains("It is not possible to use the target node as source node"),
        "{err}"
    );

    // The same in the background, back again, while reads continue.
    let handle = c.spawn_reshard(to, from, 100).unwrap();
    let mut reads = 0;
    let mut handle = handle;
    while !handle.is_finished() && reads < 2_000 {
        let k = &keys[reads % keys.len()];
        let reply = get(&c, k);
        assert!(
            reply == bulk(k) || reply.starts_with(b"-ASK ") || reply.starts_with(b"-MOVED "),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        reads += 1;
    }
    handle.wait(Duration::from_secs(60)).unwrap();
    c.wait_healthy(Duration::from_secs(30)).unwrap();
    assert_eq!(slot_count(&c.slots_of(from).unwrap()), from_before);
    assert_eq!(slot_count(&c.slots_of(to).unwrap()), to_before);
    for k in &keys {
        assert_eq!(get(&c, k), bulk(k));
    }
}

#[test]
fn a_killed_master_fails_over_to_its_replica_with_the_replicated_data() {
    let mut c = start();
    let slot = c.keyslot(b"foo").unwrap();
    let master = c.slot_owner(slot).unwrap();
    let replica = c.replica_of(master).unwrap().unwrap();
    set(&c, b"foo", b"before-the-crash");
    c.wait_replicated(master, Duration::from_secs(10)).unwrap();

    let t0 = Instant::now();
    c.kill_node(master);
    assert!(!c.masters().unwrap().contains(&master));
    let new_master = c.wait_failover(master, Duration::from_secs(30)).unwrap();
    eprintln!("failover took {:?}", t0.elapsed());
    assert_eq!(new_master, replica);
    assert_eq!(c.slot_owner(slot).unwrap(), replica);
    assert_eq!(
        c.cmd(replica, &[b"GET", b"foo"]).unwrap(),
        bulk(b"before-the-crash")
    );
    assert!(c.masters().unwrap().contains(&replica));
    c.wait_healthy(Duration::from_secs(30)).unwrap();

    // The old master comes back as a replica of its replacement.
    c.restart_node(master).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.replica_of(replica).unwrap() != Some(master) {
        assert!(
            Instant::now() < deadline,
            "{master} did not rejoin as replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let role = c.cmd(master, &[b"ROLE"]).unwrap();
    assert!(
        role.starts_with(b"*5\r\n$5\r\nslave\r\n"),
        "{}",
        String::from_utf8_lossy(&role)
    );
}

#[test]
fn a_new_master_gets_slots_from_rebalance() {
    let mut c = start();
    let t0 = Instant::now();
    let new = c.add_master().unwrap();
    eprintln!("add-node settled in {:?}", t0.elapsed());
    assert_eq!(c.node_ports().len(), 7);
    assert!(c.masters().unwrap().contains(&new));
    assert!(c.slots_of(new).unwrap().is_empty());
    set(&c, b"hello", b"world");

    let t0 = Instant::now();
    c.rebalance(true).unwrap();
    eprintln!("rebalance settled in {:?}", t0.elapsed());
    let got = slot_count(&c.slots_of(new).unwrap());
    // 16384 / 4 = 4096, within rebalance's default 2 % threshold.
    assert!((4_000..=4_200).contains(&got), "new master got {got} slots");
    let total: usize = c
        .masters()
        .unwrap()
        .iter()
        .map(|&m| slot_count(&c.slots_of(m).unwrap()))
        .sum();
    assert_eq!(total, usize::from(CLUSTER_SLOTS));
    assert_eq!(get(&c, b"hello"), bulk(b"world"));
}
