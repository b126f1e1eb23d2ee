//! Unit tests for directive parsing and validation: every default, every
//! message, ordering and naming rules, and the ncproxy extension keys.

use super::*;
use crate::{Config, ConfigErrorKind, Listen, SendMode, ServerAddr};
use std::net::SocketAddr;

const SERVERS: &str = "  servers:\n   - 127.0.0.1:6379:1\n";

fn pool_yaml(extra: &str) -> String {
    format!("alpha:\n  listen: 127.0.0.1:22121\n{extra}{SERVERS}")
}

fn ok(text: &str) -> Config {
    match Config::from_yaml_str(text, "t.yml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got {e}\n{text}"),
    }
}

/// The messages nutcracker would log, as `file:line message` lines.
fn err(text: &str) -> String {
    match Config::from_yaml_str(text, "t.yml") {
        Ok(_) => panic!("expected an error for\n{text}"),
        Err(e) => e
            .log_lines()
            .iter()
            .map(|l| format!("{} {}", l.source(), l.message))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[track_caller]
fn check_err(extra: &str, expected: &str) {
    assert_eq!(err(&pool_yaml(extra)), expected, "for {extra:?}");
}

#[test]
fn defaults() {
    let cfg = ok(&pool_yaml(""));
    assert_eq!(cfg.path, "t.yml");
    let p = &cfg.pools[0];
    assert_eq!(p.name, "alpha");
    assert_eq!(p.hash, HashKind::Fnv1a_64);
    assert_eq!(p.hash_tag, None);
    assert_eq!(p.distribution, DistributionKind::Ketama);
    assert_eq!(p.timeout_ms, None);
    assert_eq!(p.backlog, 512);
    assert_eq!(p.client_connections, 0);
    assert_eq!(p.client_connections_configured, 0);
    assert!(!p.redis);
    assert!(!p.tcpkeepalive);
    assert!(!p.reuseport);
    assert_eq!(p.redis_auth, None);
    assert_eq!(p.redis_db, 0);
    assert!(!p.preconnect);
    assert!(!p.auto_eject_hosts);
    assert_eq!(p.server_connections, 1);
    assert_eq!(p.server_retry_timeout_ms, 30_000);
    assert_eq!(p.server_failure_limit, 2);
    assert_eq!(p.send_mode, SendMode::Batched);
    assert_eq!(p.iov_max, 128);
    assert_eq!(p.send_limit, None);
    assert_eq!(p.client_output_limit, 0);
    let expected: SocketAddr = "127.0.0.1:22121".parse().unwrap();
    assert_eq!(
        p.listen,
        Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 22121,
            addr: expected,
            text: "127.0.0.1:22121".into()
        }
    );
    assert_eq!(p.listen.text(), "127.0.0.1:22121");
}

#[test]
fn every_key_is_applied() {
    let cfg = ok(&pool_yaml(
        "  hash: murmur\n  hash_tag: \"{}\"\n  distribution: modula\n  timeout: 400\n  backlog: 1024\n  \
         client_connections: 10\n  redis: true\n  tcpkeepalive: true\n  reuseport: true\n  redis_auth: pw\n  \
         redis_db: 3\n  preconnect: true\n  auto_eject_hosts: true\n  server_connections: 2\n  \
         server_retry_timeout: 2000\n  server_failure_limit: 3\n  send_mode: per_message\n  iov_max: 64\n  \
         send_limit: 65536\n  client_output_limit: 1048576\n",
    ));
    let p = &cfg.pools[0];
    assert_eq!(p.hash, HashKind::Murmur);
    assert_eq!(p.hash_tag, Some(*b"{}"));
    assert_eq!(p.distribution, DistributionKind::Modula);
    assert_eq!(p.timeout_ms, Some(400));
    assert_eq!(p.backlog, 1024);
    assert_eq!(p.client_connections, 0, "nutcracker resets it");
    assert_eq!(p.client_connections_configured, 10);
    assert!(p.redis && p.tcpkeepalive && p.reuseport && p.preconnect && p.auto_eject_hosts);
    assert_eq!(p.redis_auth.as_deref(), Some("pw"));
    assert_eq!(p.redis_db, 3);
    assert_eq!(p.server_connections, 2);
    assert_eq!(p.server_retry_timeout_ms, 2000);
    assert_eq!(p.server_failure_limit, 3);
    assert_eq!(p.send_mode, SendMode::PerMessage);
    assert_eq!(p.iov_max, 64);
    assert_eq!(p.send_limit, Some(65536));
    assert_eq!(p.client_output_limit, 1_048_576);
}

#[test]
fn every_hash_and_distribution_name() {
    for h in HashKind::ALL {
        let cfg = ok(&pool_yaml(&format!("  hash: {}\n", h.name())));
        assert_eq!(cfg.pools[0].hash, h);
    }
    for d in DistributionKind::ALL {
        let cfg = ok(&pool_yaml(&format!("  distribution: {}\n", d.name())));
        assert_eq!(cfg.pools[0].distribution, d);
    }
    check_err(
        "  hash: FNV1A_64\n",
        "nc_conf.c:529 conf: directive \"hash\" is not a valid hash",
    );
    check_err(
        "  distribution: Ketama\n",
        "nc_conf.c:529 conf: directive \"distribution\" is not a valid distribution",
    );
}

#[test]
fn timeout_zero_means_none() {
    assert_eq!(ok(&pool_yaml("  timeout: 0\n")).pools[0].timeout_ms, None);
    assert_eq!(
        ok(&pool_yaml("  timeout: 1\n")).pools[0].timeout_ms,
        Some(1)
    );
}

#[test]
fn numbers_follow_nc_atoi() {
    assert_eq!(nc_atoi(b"0"), 0);
    assert_eq!(nc_atoi(b"007"), 7);
    assert_eq!(nc_atoi(b""), -1);
    assert_eq!(nc_atoi(b"-1"), -1);
    assert_eq!(nc_atoi(b"+1"), -1);
    assert_eq!(nc_atoi(b" 1"), -1);
    assert_eq!(nc_atoi(b"1x"), -1);
    assert_eq!(nc_atoi(b"2147483647"), i32::MAX);
    assert_eq!(nc_atoi(b"2147483648"), -1, "wraps negative");
    assert_eq!(nc_atoi(b"4294967297"), 1, "wraps to 1 like the C int");
    assert_eq!(
        ok(&pool_yaml("  backlog: 4294967297\n")).pools[0].backlog,
        1
    );
    for bad in ["-1", "1x", "1.5", "0x10", "2147483648", "'  1'"] {
        check_err(
            &format!("  timeout: {bad}\n"),
            "nc_conf.c:529 conf: directive \"timeout\" is not a number",
        );
    }
}

#[test]
fn bools_are_exact() {
    assert!(ok(&pool_yaml("  redis: true\n")).pools[0].redis);
    assert!(!ok(&pool_yaml("  redis: false\n")).pools[0].redis);
    for bad in ["yes", "True", "1", "on"] {
        check_err(
            &format!("  preconnect: {bad}\n"),
            "nc_conf.c:529 conf: directive \"preconnect\" is not \"true\" or \"false\"",
        );
    }
}

#[test]
fn duplicates_and_unknown_keys() {
    for (key, value) in [
        ("listen", "127.0.0.1:1"),
        ("hash", "md5"),
        ("hash_tag", "ab"),
        ("distribution", "modula"),
        ("timeout", "1"),
        ("redis", "true"),
        ("redis_auth", "x"),
        ("send_mode", "batched"),
        ("iov_max", "2"),
        ("send_limit", "2"),
    ] {
        let text = format!(
            "alpha:\n  listen: 127.0.0.1:22121\n  {key}: {value}\n  {key}: {value}\n{SERVERS}"
        );
        let text = if key == "listen" {
            format!("alpha:\n  listen: 127.0.0.1:22121\n  listen: {value}\n{SERVERS}")
        } else {
            text
        };
        assert_eq!(
            err(&text),
            format!("nc_conf.c:529 conf: directive \"{key}\" is a duplicate")
        );
    }
    check_err(
        "  foo: bar\n",
        "nc_conf.c:536 conf: directive \"foo\" is unknown",
    );
    check_err(
        "  Hash: md5\n",
        "nc_conf.c:536 conf: directive \"Hash\" is unknown",
    );
    // the first failing directive wins
    check_err(
        "  foo: 1\n  hash: bad\n",
        "nc_conf.c:536 conf: directive \"foo\" is unknown",
    );
}

#[test]
fn hash_tag_is_two_bytes() {
    assert_eq!(
        ok(&pool_yaml("  hash_tag: \"$$\"\n")).pools[0].hash_tag,
        Some(*b"$$")
    );
    // two bytes of UTF-8 count as two characters, as in nutcracker
    assert_eq!(
        ok(&pool_yaml("  hash_tag: \"\u{a7}\"\n")).pools[0].hash_tag,
        Some([0xc2, 0xa7])
    );
    for bad in ["\"{\"", "\"{}{\"", "abc"] {
        check_err(
            &format!("  hash_tag: {bad}\n"),
            "nc_conf.c:529 conf: directive \"hash_tag\" is not a valid hash tag string with two characters",
        );
    }
}

#[test]
fn listen_forms() {
    let cfg = ok("a:\n  listen: ::1:22121\n  servers:\n   - 127.0.0.1:6379:1\n");
    match &cfg.pools[0].listen {
        Listen::Tcp {
            host, port, addr, ..
        } => {
            assert_eq!(host, "::1");
            assert_eq!(*port, 22121);
            assert_eq!(*addr, "[::1]:22121".parse::<SocketAddr>().unwrap());
        }
        other => panic!("{other:?}"),
    }
    let cfg = ok("a:\n  listen: \"::1:22121\"\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert_eq!(cfg.pools[0].listen.text(), "::1:22121");

    let cfg = ok("a:\n  listen: /tmp/nc.sock 0666\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert_eq!(
        cfg.pools[0].listen,
        Listen::Unix {
            path: "/tmp/nc.sock".into(),
            perm: Some(0o666),
            text: "/tmp/nc.sock 0666".into()
        }
    );
    let cfg = ok("a:\n  listen: /tmp/nc.sock\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert_eq!(
        cfg.pools[0].listen,
        Listen::Unix {
            path: "/tmp/nc.sock".into(),
            perm: None,
            text: "/tmp/nc.sock".into()
        }
    );
    // strtol(.., 8) stops at the first non-octal digit: "0999" is 0, no chmod
    let cfg = ok("a:\n  listen: /tmp/nc.sock 0999\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert!(matches!(
        cfg.pools[0].listen,
        Listen::Unix { perm: None, .. }
    ));
    // (mode_t)strtol: -37777777777 wraps to 1
    let cfg = ok("a:\n  listen: /tmp/nc.sock -37777777777\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert!(matches!(
        cfg.pools[0].listen,
        Listen::Unix { perm: Some(1), .. }
    ));
    let cfg = ok("a:\n  listen: /tmp/nc.sock 777\n  servers:\n   - 127.0.0.1:6379:1\n");
    assert!(matches!(
        cfg.pools[0].listen,
        Listen::Unix {
            perm: Some(0o777),
            ..
        }
    ));
}

#[test]
fn listen_errors() {
    let with_listen = |l: &str| format!("a:\n  listen: {l}\n{SERVERS}");
    assert_eq!(
        err(&with_listen("localhost")),
        "nc_conf.c:529 conf: directive \"listen\" has an invalid \"hostname:port\" format string"
    );
    for port in ["0", "65536", "99999", "x", ""] {
        assert_eq!(
            err(&with_listen(&format!("\"127.0.0.1:{port}\""))),
            "nc_conf.c:529 conf: directive \"listen\" has an invalid port in \"hostname:port\" format string"
        );
    }
    assert_eq!(
        err(&with_listen("nonexistent.invalid:22121")),
        "nc_util.c:505 address resolution of node 'nonexistent.invalid' service '22121' failed: \
         Name or service not known\n\
         nc_conf.c:529 conf: directive \"listen\" has an invalid value"
    );
    assert_eq!(
        err(&with_listen("\"[::1]:22121\"")),
        "nc_util.c:505 address resolution of node '[::1]' service '22121' failed: \
         Name or service not known\n\
         nc_conf.c:529 conf: directive \"listen\" has an invalid value"
    );
    for perm in ["01000", "-1", "7777777777777777777777777"] {
        assert_eq!(
            err(&with_listen(&format!("/tmp/x.sock {perm}"))),
            "nc_conf.c:529 conf: directive \"listen\" has an invalid file permission in \"socket_path permission\" format string"
        );
    }
    let longest = format!("/tmp/{}", "a".repeat(MAX_UNIX_PATH - 5));
    assert_eq!(longest.len(), 107);
    assert!(Config::from_yaml_str(&with_listen(&longest), "t").is_ok());
    let too_long = format!("{longest}a");
    assert_eq!(
        err(&with_listen(&too_long)),
        "nc_conf.c:529 conf: directive \"listen\" has an invalid value"
    );
}

#[test]
fn strtol_octal_edge_cases() {
    assert_eq!(strtol_octal_mode(b"0666"), Some(0o666));
    assert_eq!(strtol_octal_mode(b" 17"), Some(0o17));
    assert_eq!(strtol_octal_mode(b"+7"), Some(7));
    assert_eq!(strtol_octal_mode(b"-0"), Some(0));
    assert_eq!(strtol_octal_mode(b"-1"), Some(u32::MAX));
    assert_eq!(strtol_octal_mode(b""), Some(0));
    assert_eq!(strtol_octal_mode(b"8"), Some(0));
    assert_eq!(strtol_octal_mode(b"7\x007"), Some(7));
    assert_eq!(strtol_octal_mode(b"777777777777777777777"), Some(u32::MAX));
    assert_eq!(strtol_octal_mode(b"1777777777777777777777"), None);
}

#[test]
fn server_names_and_addresses() {
    let cfg = ok(
        "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:6379:1\n   - 10.0.0.1:11211:2\n   \
         - 10.0.0.2:011211:3\n   - 10.0.0.3:06380:4 named\n   - /tmp/r.sock:5\n   - /tmp/q.sock:6 unixname\n   \
         - ::1:6379:7\n   - \"10.0.0.4:6379:1 \"\n",
    );
    let servers = &cfg.pools[0].servers;
    let find = |name: &str| {
        servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {servers:?}"))
    };
    let s = find("127.0.0.1:6379");
    assert_eq!(
        s.addr,
        ServerAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 6379
        }
    );
    assert_eq!((s.weight, s.pname.as_str()), (1, "127.0.0.1:6379:1"));
    // port 11211 (by value) is left out of the name
    assert_eq!(find("10.0.0.1").weight, 2);
    assert_eq!(find("10.0.0.2").pname, "10.0.0.2:011211:3");
    // an explicit name wins; pname drops it
    let s = find("named");
    assert_eq!((s.weight, s.pname.as_str()), (4, "10.0.0.3:06380:4"));
    // unix sockets keep nutcracker's trailing ':' when unnamed
    let s = find("/tmp/r.sock:");
    assert_eq!(s.addr, ServerAddr::Unix("/tmp/r.sock".into()));
    assert_eq!((s.weight, s.pname.as_str()), (5, "/tmp/r.sock:5"));
    assert_eq!(
        find("unixname").addr,
        ServerAddr::Unix("/tmp/q.sock".into())
    );
    let s = find("::1:6379");
    assert_eq!(
        s.addr,
        ServerAddr::Tcp {
            host: "::1".into(),
            port: 6379
        }
    );
    // a trailing space gives an empty name, and pname keeps the space
    let s = find("");
    assert_eq!(s.pname, "10.0.0.4:6379:1 ");
}

#[test]
fn servers_sorted_like_nutcracker() {
    let cfg = ok(
        "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:27009:1\n   - 127.0.0.1:27001:1\n   \
         - 10.0.0.1:6379:1\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:6379:1 zz\n   - 127.0.0.1:6379:1 b\n",
    );
    let names: Vec<&str> = cfg.pools[0]
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    // shorter names first, then bytewise
    assert_eq!(
        names,
        [
            "b",
            "zz",
            "127.0.0.1",
            "10.0.0.1:6379",
            "127.0.0.1:27001",
            "127.0.0.1:27009"
        ]
    );
}

#[test]
fn pools_sorted_by_name() {
    let pool = |name: &str, port: u16| format!("{name}:\n  listen: 127.0.0.1:{port}\n{SERVERS}");
    let cfg = ok(&format!(
        "{}{}{}{}",
        pool("rpool", 1),
        pool("dead", 3),
        pool("mpool", 2),
        pool("b", 4)
    ));
    let names: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["b", "dead", "mpool", "rpool"]);
}

#[test]
fn string_compare_is_length_then_strncmp() {
    assert_eq!(string_compare("b", "aa"), Ordering::Less);
    assert_eq!(string_compare("ab", "aa"), Ordering::Greater);
    assert_eq!(string_compare("a\0b", "a\0c"), Ordering::Equal);
    assert_eq!(string_compare("", ""), Ordering::Equal);
}

#[test]
fn server_errors() {
    let with_server = |s: &str| format!("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - {s}\n");
    let format = "nc_conf.c:529 conf: directive \"servers\" has an invalid \"hostname:port:weight [name]\"or \"/path/unix_socket:weight [name]\" format string";
    for bad in [
        "127.0.0.1",
        "127.0.0.1:6379",
        "/tmp/a:b.sock:1",
        "host",
        "/tmp/x.sock",
    ] {
        assert_eq!(err(&with_server(bad)), format, "{bad}");
    }
    assert_eq!(
        err(&with_server("127.0.0.1:6379:0")),
        "nc_conf.c:529 conf: directive \"servers\" has a zero weight in \"hostname:port:weight [name]\" format string"
    );
    for bad in [
        "127.0.0.1:6379:x",
        "127.0.0.1:6379:-1",
        "127.0.0.1:6379:1 a b",
    ] {
        assert_eq!(
            err(&with_server(bad)),
            "nc_conf.c:529 conf: directive \"servers\" has an invalid weight in \"hostname:port:weight [name]\" format string",
            "{bad}"
        );
    }
    for bad in ["127.0.0.1:0:1", "127.0.0.1:65536:1", "127.0.0.1:x:1"] {
        assert_eq!(
            err(&with_server(bad)),
            "nc_conf.c:529 conf: directive \"servers\" has an invalid port in \"hostname:port:weight [name]\" format string",
            "{bad}"
        );
    }
    // host names are not resolved at parse time
    assert!(Config::from_yaml_str(&with_server("nonexistent.invalid:6379:1"), "t").is_ok());
}

#[test]
fn pool_validation_messages() {
    assert_eq!(
        err(&format!("a:\n  hash: md5\n{SERVERS}")),
        "nc_conf.c:1216 conf: directive \"listen:\" is missing"
    );
    check_err(
        "  server_connections: 0\n",
        "nc_conf.c:1263 conf: directive \"server_connections:\" cannot be 0",
    );
    check_err(
        "  redis_auth: pw\n",
        "nc_conf.c:1276 conf: directive \"redis_auth:\" is only valid for a redis pool",
    );
    assert_eq!(
        err("a:\n  listen: 127.0.0.1:22121\n  hash:\n   - md5\n"),
        "nc_conf.c:1174 conf: pool 'a' has no servers"
    );
    assert_eq!(
        err("alpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6379:2\n"),
        "nc_conf.c:1193 conf: pool 'alpha' has servers with same name '127.0.0.1:6379'"
    );
    assert_eq!(
        err("alpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:011211:1\n"),
        "nc_conf.c:1193 conf: pool 'alpha' has servers with same name '127.0.0.1'"
    );
    // listen missing is checked before server_connections, which is checked
    // before redis_auth, which is checked before the servers
    assert_eq!(
        err("a:\n  server_connections: 0\n  redis_auth: x\n  hash:\n   - md5\n"),
        "nc_conf.c:1216 conf: directive \"listen:\" is missing"
    );
    assert_eq!(
        err("a:\n  listen: 127.0.0.1:1\n  redis_auth: x\n  hash:\n   - md5\n"),
        "nc_conf.c:1276 conf: directive \"redis_auth:\" is only valid for a redis pool"
    );
}

#[test]
fn cross_pool_validation() {
    let pool = |name: &str, listen: &str| format!("{name}:\n  listen: {listen}\n{SERVERS}");
    // duplicate listen reported in file order (nutcracker's sort is stable)
    assert_eq!(
        err(&format!(
            "{}{}{}",
            pool("zeta", "127.0.0.1:22121"),
            pool("mid", "127.0.0.1:22122"),
            pool("alpha", "127.0.0.1:22121")
        )),
        "nc_conf.c:1325 conf: pools 'zeta' and 'alpha' have the same listen address '127.0.0.1:22121'"
    );
    // the unbalanced quote is nutcracker's
    assert_eq!(
        err(&format!(
            "{}{}",
            pool("alpha", "127.0.0.1:1"),
            pool("alpha", "127.0.0.1:2")
        )),
        "nc_conf.c:1346 conf: 't.yml' has pools with same name alpha'"
    );
    // a bad pool is reported before cross-pool problems
    assert_eq!(
        err(&format!(
            "{}{}beta:\n  hash: md5\n{SERVERS}",
            pool("a", "127.0.0.1:1"),
            pool("b", "127.0.0.1:1")
        )),
        "nc_conf.c:1216 conf: directive \"listen:\" is missing"
    );
}

#[test]
fn empty_scalars_fail_silently() {
    for text in [
        pool_yaml("  hash: \"\"\n"),
        pool_yaml("  hash:\n"),
        pool_yaml("  \"\": x\n"),
        pool_yaml("  foo: \"\"\n"),
        format!("\"\":\n  listen: 127.0.0.1:22121\n{SERVERS}"),
        "a:\n  listen: 127.0.0.1:22121\n  servers:\n   -\n".to_owned(),
    ] {
        let e = Config::from_yaml_str(&text, "t.yml").unwrap_err();
        assert!(e.log_lines().is_empty(), "{text}: {e:?}");
        assert_eq!(e.kind(), ConfigErrorKind::Directive);
        assert_eq!(
            e.to_string(),
            "nutcracker: configuration file 't.yml' syntax is invalid"
        );
    }
}

#[test]
fn nul_bytes_end_values_like_strndup() {
    let cfg = ok("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - \"127.0.0.1:6379:1 a\\0b\"\n");
    assert_eq!(cfg.pools[0].servers[0].name, "a\0\0");
    assert_eq!(
        err("a:\n  listen: \"127.0.\\0.1:22121\"\n  servers:\n   - 127.0.0.1:6379:1\n"),
        "nc_conf.c:529 conf: directive \"listen\" has an invalid \"hostname:port\" format string"
    );
    check_err(
        "  \"fo\\0o\": 1\n",
        "nc_conf.c:536 conf: directive \"fo\" is unknown",
    );
}

#[test]
fn extension_keys() {
    assert_eq!(
        ok(&pool_yaml("  send_mode: batched\n")).pools[0].send_mode,
        SendMode::Batched
    );
    check_err(
        "  send_mode: Batched\n",
        "nc_conf.c:529 conf: directive \"send_mode\" is not \"batched\" or \"per_message\"",
    );
    assert_eq!(ok(&pool_yaml("  iov_max: 1\n")).pools[0].iov_max, 1);
    assert_eq!(ok(&pool_yaml("  iov_max: 1024\n")).pools[0].iov_max, 1024);
    for bad in ["0", "1025", "99999"] {
        check_err(
            &format!("  iov_max: {bad}\n"),
            "nc_conf.c:529 conf: directive \"iov_max\" must be between 1 and 1024",
        );
    }
    check_err(
        "  iov_max: x\n",
        "nc_conf.c:529 conf: directive \"iov_max\" is not a number",
    );
    assert_eq!(
        ok(&pool_yaml("  send_limit: 1\n")).pools[0].send_limit,
        Some(1)
    );
    check_err(
        "  send_limit: 0\n",
        "nc_conf.c:529 conf: directive \"send_limit\" cannot be 0",
    );
    check_err(
        "  send_limit: -5\n",
        "nc_conf.c:529 conf: directive \"send_limit\" is not a number",
    );
    check_err(
        "  reuseport: maybe\n",
        "nc_conf.c:529 conf: directive \"reuseport\" is not \"true\" or \"false\"",
    );
}

#[test]
fn yaml_shape_errors_carry_the_path() {
    assert_eq!(
        err("alpha:\n  listen: 127.0.0.1:1\n"),
        "nc_conf.c:1059 conf: 't.yml' missing sequence directive at depth 2"
    );
    assert_eq!(
        err(""),
        "nc_conf.c:847 conf: 't.yml' must contain only 1 document; found 0 documents"
    );
}

#[test]
fn error_rendering() {
    let e = Config::from_yaml_str(&pool_yaml("  foo: 1\n"), "conf/x.yml").unwrap_err();
    assert_eq!(e.to_string(), "conf: directive \"foo\" is unknown");
    assert_eq!(e.message(), Some("conf: directive \"foo\" is unknown"));
    assert_eq!(e.path(), "conf/x.yml");
    assert!(!e.is_open_failure());
    assert_eq!(
        e.syntax_invalid_line().as_deref(),
        Some("nutcracker: configuration file 'conf/x.yml' syntax is invalid")
    );
    assert_eq!(
        e.test_conf_stderr(),
        "nutcracker: configuration file 'conf/x.yml' syntax is invalid\n\
         nutcracker: configuration file 'conf/x.yml' syntax is invalid\n"
    );
    let l = &e.log_lines()[0];
    assert_eq!(l.source(), "nc_conf.c:536");
    assert_eq!(
        l.render("2024-01-02 03:04:05.678"),
        "[2024-01-02 03:04:05.678] nc_conf.c:536 conf: directive \"foo\" is unknown"
    );

    let e = Config::from_yaml_str(
        &format!("a:\n  listen: nonexistent.invalid:1\n{SERVERS}"),
        "f",
    )
    .unwrap_err();
    assert_eq!(e.log_lines().len(), 2);
    assert!(e.to_string().contains('\n'));
}

#[test]
fn open_failures() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yml").display().to_string();
    let e = Config::load(&missing).unwrap_err();
    assert!(e.is_open_failure());
    assert_eq!(e.kind(), ConfigErrorKind::Open);
    assert_eq!(
        e.to_string(),
        format!("conf: failed to open configuration '{missing}': No such file or directory")
    );
    assert_eq!(e.log_lines()[0].source(), "nc_conf.c:764");
    assert_eq!(e.syntax_invalid_line(), None);
    assert_eq!(
        e.test_conf_stderr(),
        format!("nutcracker: configuration file '{missing}' syntax is invalid\n")
    );
    // a directory opens but fails in libyaml's reader
    let d = dir.path().display().to_string();
    assert_eq!(
        Config::load(&d).unwrap_err().to_string(),
        "conf: failed (err 2) to get the next yaml document"
    );
    // and a real file loads
    let f = dir.path().join("ok.yml");
    std::fs::write(&f, pool_yaml("")).unwrap();
    let cfg = Config::load(&f.display().to_string()).unwrap();
    assert_eq!(cfg.path, f.display().to_string());
}

#[test]
fn ok_and_invalid_lines() {
    assert_eq!(
        crate::syntax_ok_line("a.yml"),
        "nutcracker: configuration file 'a.yml' syntax is ok"
    );
    assert_eq!(
        crate::syntax_invalid_line("a.yml"),
        "nutcracker: configuration file 'a.yml' syntax is invalid"
    );
}

#[test]
fn bytes_entry_point_reports_reader_errors() {
    let e = Config::from_yaml_bytes(b"a:\n  listen: \xff\n", "t").unwrap_err();
    assert_eq!(
        e.to_string(),
        "conf: failed (err 2) to get the next yaml document"
    );
}

#[test]
fn client_output_limit_takes_a_number() {
    assert_eq!(
        ok(&pool_yaml("  client_output_limit: 4096\n")).pools[0].client_output_limit,
        4096
    );
    assert_eq!(
        err(&pool_yaml("  client_output_limit: lots\n")),
        "nc_conf.c:529 conf: directive \"client_output_limit\" is not a number"
    );
}

#[test]
fn redis_cluster_pools() {
    let cfg = ok(&pool_yaml("  redis: true\n  distribution: redis_cluster\n"));
    let pool = &cfg.pools[0];
    let cluster = pool.cluster.as_ref().expect("a cluster pool");
    assert_eq!(cluster.read, crate::ClusterRead::Master);
    assert_eq!(
        cluster.refresh_interval_ms,
        crate::DEFAULT_CLUSTER_REFRESH_INTERVAL_MS
    );
    assert_eq!(cfg.notes().len(), 1);
    assert!(cfg.notes()[0].contains("pool 'alpha' routes by Redis Cluster hash slot"));

    let cfg = ok(&pool_yaml(
        "  redis: true\n  distribution: redis_cluster\n  cluster_read: prefer_replica\n  cluster_refresh_interval: 250\n",
    ));
    let cluster = cfg.pools[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.read, crate::ClusterRead::PreferReplica);
    assert_eq!(cluster.refresh_interval_ms, 250);

    assert!(ok(&pool_yaml("  redis: true\n")).pools[0].cluster.is_none());
    assert!(ok(&pool_yaml("  redis: true\n")).notes().is_empty());

    for (extra, expected) in [
        (
            "  distribution: redis_cluster\n",
            "nc_conf.c:1276 conf: directive \"distribution: redis_cluster\" is only valid for a redis pool",
        ),
        (
            "  redis: true\n  distribution: redis_cluster\n  redis_db: 2\n",
            "nc_conf.c:1276 conf: directive \"redis_db:\" must be 0 in a redis_cluster pool",
        ),
        (
            "  redis: true\n  cluster_read: replica\n",
            "nc_conf.c:1276 conf: directive \"cluster_read:\" is only valid for a redis_cluster pool",
        ),
        (
            "  redis: true\n  distribution: redis_cluster\n  cluster_read: replicas\n",
            "nc_conf.c:529 conf: directive \"cluster_read\" is not \"master\", \"prefer_replica\" or \"replica\"",
        ),
        (
            "  redis: true\n  distribution: redis_cluster\n  cluster_refresh_interval: 0\n",
            "nc_conf.c:529 conf: directive \"cluster_refresh_interval\" cannot be 0",
        ),
        (
            "  redis: true\n  distribution: redis_cluster\n  health_check_interval: 100\n",
            "nc_conf.c:1276 conf: directives \"server_tls:\" and \"health_check_interval:\" are not supported in a redis_cluster pool",
        ),
        (
            "  distribution: redis_cluster\n  distribution: ketama\n",
            "nc_conf.c:529 conf: directive \"distribution\" is a duplicate",
        ),
    ] {
        check_err(extra, expected);
    }
}

#[test]
fn tls_and_health_keys() {
    let p = &ok(&pool_yaml(
        "  tls_cert: /c.pem\n  tls_key: /k.pem\n  tls_client_ca: /ca.pem\n  server_tls: true\n  server_tls_ca: /sca.pem\n  server_tls_name: redis.test\n  health_check_interval: 250\n  auto_eject_drop: false\n",
    ))
    .pools[0];
    let tls = p.tls.as_ref().expect("listener TLS");
    assert_eq!(tls.cert.to_str(), Some("/c.pem"));
    assert_eq!(
        tls.client_ca.as_ref().and_then(|c| c.to_str()),
        Some("/ca.pem")
    );
    let server = p.server_tls.as_ref().expect("server TLS");
    assert_eq!(server.ca.to_str(), Some("/sca.pem"));
    assert_eq!(server.name.as_deref(), Some("redis.test"));
    assert_eq!(server.client_cert, None);
    assert_eq!(
        (p.health_check_interval_ms, p.auto_eject_drop),
        (250, false)
    );

    let plain = &ok(&pool_yaml("")).pools[0];
    assert_eq!(
        (plain.tls.is_some(), plain.server_tls.is_some()),
        (false, false)
    );
    assert_eq!(
        (plain.health_check_interval_ms, plain.auto_eject_drop),
        (0, true)
    );
    // server_tls: false turns the feature off; its other keys are then errors.
    assert!(ok(&pool_yaml("  server_tls: false\n")).pools[0]
        .server_tls
        .is_none());

    for (extra, message) in [
        (
            "  tls_cert: /c\n",
            "conf: directive \"tls_cert:\" needs \"tls_key:\"",
        ),
        (
            "  tls_key: /k\n",
            "conf: directive \"tls_key:\" needs \"tls_cert:\"",
        ),
        (
            "  tls_client_ca: /a\n",
            "conf: directive \"tls_client_ca:\" needs \"tls_cert:\"",
        ),
        (
            "  server_tls: true\n",
            "conf: directive \"server_tls_ca:\" is missing",
        ),
        (
            "  server_tls: true\n  server_tls_ca: /a\n  server_tls_cert: /c\n",
            "conf: directive \"server_tls_cert:\" needs \"server_tls_key:\"",
        ),
        (
            "  server_tls_ca: /a\n",
            "conf: directive \"server_tls_ca:\" is only valid with \"server_tls: true\"",
        ),
        (
            "  server_tls: yes\n",
            "conf: directive \"server_tls\" is not \"true\" or \"false\"",
        ),
        (
            "  auto_eject_drop: no\n",
            "conf: directive \"auto_eject_drop\" is not \"true\" or \"false\"",
        ),
        (
            "  health_check_interval: -1\n",
            "conf: directive \"health_check_interval\" is not a number",
        ),
        (
            "  tls_cert: /a\n  tls_cert: /b\n",
            "conf: directive \"tls_cert\" is a duplicate",
        ),
    ] {
        check_err(extra, &format!("nc_conf.c:529 {message}"));
    }
    assert_eq!(
        err("alpha:\n  listen: 127.0.0.1:22121\n  server_tls: true\n  server_tls_ca: /a\n  servers:\n   - /tmp/r.sock:1\n"),
        "nc_conf.c:529 conf: directive \"server_tls_name:\" is missing (unix socket servers have no host name)"
    );
}
