//! Differential test against the real nutcracker 0.5.0 binary.
//!
//! Every configuration in the corpus is written to a temporary file and given
//! to `nutcracker -t -c FILE` and to `nutcracker -c FILE -s PORT -a 127.0.0.1
//! -o LOG` (killed once its stats port answers, i.e. the config was accepted).
//! We compare with nc-config: validity, the exact `-t` stderr, the exact log
//! detail lines (source location and message) and stderr line of a run, and for
//! accepted configs the pool and server order nutcracker reports in its stats.
//!
//! nutcracker must be installed (CI installs the Debian package); set
//! `NUTCRACKER_BIN` to use another path. The test fails when it is missing.

use std::collections::HashSet;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nc_config::{Config, ConfigError};

/// The real nutcracker (NUTCRACKER_BIN, PATH or /usr/sbin); a missing one
/// fails the test with an install hint, it never skips.
fn nutcracker() -> PathBuf {
    nc_harness::Nutcracker::binary().unwrap_or_else(|e| panic!("{e}"))
}

/// Loopback ports nobody in this process has used yet.
fn free_port() -> u16 {
    static USED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// What one nutcracker run reported.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Accepted: pools in stats order, each with its servers in stats order.
    Valid(Vec<(String, Vec<String>)>),
    /// Rejected: `file:line message` log lines and the stderr text.
    Invalid { log: Vec<String>, stderr: String },
}

/// `nutcracker -t -c FILE`: (exit code, stderr).
fn nutcracker_test_conf(bin: &Path, file: &str) -> (i32, String) {
    let out = Command::new(bin)
        .args(["-t", "-c", file])
        .stdin(Stdio::null())
        .output()
        .expect("run nutcracker -t");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Extracts `"name": {"<marker>"` keys from nutcracker's stats JSON, in order.
fn stats_keys_before(json: &str, marker: &str) -> Vec<(usize, String)> {
    let needle = format!(": {{\"{marker}\"");
    let mut keys = Vec::new();
    let mut from = 0;
    while let Some(i) = json[from..].find(&needle) {
        let end = from + i; // closing quote of the key is at end - 1
        let start = json[..end - 1].rfind('"').expect("opening quote") + 1;
        keys.push((end, json[start..end - 1].to_owned()));
        from = end + needle.len();
    }
    keys
}

fn parse_stats(json: &str) -> Vec<(String, Vec<String>)> {
    let pools = stats_keys_before(json, "client_eof");
    let servers = stats_keys_before(json, "server_eof");
    pools
        .iter()
        .enumerate()
        .map(|(i, (at, name))| {
            let next = pools.get(i + 1).map_or(usize::MAX, |p| p.0);
            let names = servers
                .iter()
                .filter(|(s, _)| s > at && *s < next)
                .map(|(_, n)| n.clone())
                .collect();
            (name.clone(), names)
        })
        .collect()
}

/// `nutcracker -c FILE -s PORT -a 127.0.0.1 -o LOG`, stopped as soon as it
/// either exits or serves stats. `None` when a runtime bind failure (a port
/// race) made the run inconclusive.
fn nutcracker_run(bin: &Path, file: &str, dir: &Path) -> Option<Outcome> {
    let stats_port = free_port();
    let log = dir.join(format!("run-{stats_port}.log"));
    let mut child = Command::new(bin)
        .args([
            "-c",
            file,
            "-s",
            &stats_port.to_string(),
            "-a",
            "127.0.0.1",
            "-o",
        ])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nutcracker");
    let deadline = Instant::now() + Duration::from_secs(5);
    let outcome = loop {
        if let Some(_status) = child.try_wait().expect("wait nutcracker") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut stderr).expect("read stderr");
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            if log.contains("bind on") {
                return None;
            }
            let lines = log
                .lines()
                .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
                .filter(|l| l.starts_with("nc_conf.c:") || l.starts_with("nc_util.c:"))
                .map(str::to_owned)
                .collect();
            break Outcome::Invalid { log: lines, stderr };
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", stats_port)) {
            let mut json = String::new();
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let _ = s.read_to_string(&mut json);
            if !json.is_empty() {
                break Outcome::Valid(parse_stats(&json));
            }
        }
        if Instant::now() > deadline {
            break Outcome::Valid(Vec::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    Some(outcome)
}

fn ours(file: &str) -> Result<Config, ConfigError> {
    Config::load(file)
}

/// What printf's `%.*s` shows of a name (nutcracker's stats stop at a NUL).
fn printed(s: &str) -> String {
    s.split('\0').next().unwrap_or("").to_owned()
}

fn our_outcome(result: &Result<Config, ConfigError>) -> Outcome {
    match result {
        Ok(cfg) => Outcome::Valid(
            cfg.pools
                .iter()
                .map(|p| {
                    (
                        printed(&p.name),
                        p.servers.iter().map(|s| printed(&s.name)).collect(),
                    )
                })
                .collect(),
        ),
        Err(e) => Outcome::Invalid {
            log: e
                .log_lines()
                .iter()
                .map(|l| format!("{} {}", l.source(), l.message))
                .collect(),
            stderr: e
                .syntax_invalid_line()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default(),
        },
    }
}

/// The corpus: (name, YAML). `{P1}`..`{P3}` become free loopback ports and
/// `{DIR}` the temporary directory.
fn corpus() -> Vec<(&'static str, String)> {
    let h = "alpha:\n  listen: 127.0.0.1:{P1}\n";
    let s = "  servers:\n   - 127.0.0.1:6379:1\n";
    let with = |extra: &str| format!("{h}{extra}{s}");
    let pool = |name: &str, port: &str, body: &str| {
        format!("{name}:\n  listen: 127.0.0.1:{{{port}}}\n{body}{s}")
    };
    vec![
        // ---- accepted ----
        ("minimal", with("")),
        (
            "all_keys",
            with(
                "  hash: murmur\n  hash_tag: \"{}\"\n  distribution: modula\n  timeout: 400\n  \
                 backlog: 1024\n  client_connections: 10\n  redis: true\n  tcpkeepalive: true\n  \
                 redis_auth: secret\n  redis_db: 3\n  preconnect: false\n  auto_eject_hosts: true\n  \
                 server_connections: 2\n  server_retry_timeout: 2000\n  server_failure_limit: 3\n",
            ),
        ),
        (
            "sorted_servers",
            format!(
                "{h}  servers:\n   - 127.0.0.1:27009:1\n   - 127.0.0.1:27001:1\n   - 10.0.0.1:6379:1\n   \
                 - 127.0.0.1:11211:1\n   - /tmp/r.sock:1\n   - 127.0.0.1:06380:2 zz\n   - \"127.0.0.2:6390:1 \"\n   \
                 - host.example:6379:5 a\n"
            ),
        ),
        (
            "sorted_pools",
            format!(
                "{}{}{}",
                pool("rpool", "P1", ""),
                pool("dead", "P2", ""),
                pool("mpool", "P3", "")
            ),
        ),
        ("ipv6_listen", format!("alpha:\n  listen: ::1:{{P1}}\n{s}")),
        ("ipv6_listen_quoted", format!("alpha:\n  listen: \"::1:{{P1}}\"\n{s}")),
        ("localhost_listen", format!("alpha:\n  listen: localhost:{{P1}}\n{s}")),
        ("unix_listen", format!("alpha:\n  listen: {{DIR}}/a.sock\n{s}")),
        ("unix_listen_perm", format!("alpha:\n  listen: {{DIR}}/b.sock 0666\n{s}")),
        ("unix_perm_strtol", format!("alpha:\n  listen: {{DIR}}/c.sock 0999\n{s}")),
        ("timeout_zero", with("  timeout: 0\n")),
        ("number_wraps", with("  timeout: 4294967297\n")),
        ("seq_not_indented", format!("{h}  servers:\n  - 127.0.0.1:6379:1\n")),
        ("servers_first", format!("alpha:\n{s}  listen: 127.0.0.1:{{P1}}\n")),
        ("crlf", format!("{h}{s}").replace('\n', "\r\n")),
        ("bom", format!("\u{feff}{h}{s}")),
        ("comments", format!("# top\n{h}  hash: md5 # trailing\n{s}")),
        ("quoted_values", with("  hash: 'md5'\n  distribution: \"ketama\"\n")),
        ("folded_scalar", with("  hash: >-\n    md5\n")),
        ("complex_key", with("  ? hash\n  : md5\n")),
        ("nul_in_name", format!("{h}  servers:\n   - \"127.0.0.1:6379:1 a\\0b\"\n")),
        ("empty_server_host", format!("{h}  servers:\n   - :6379:1\n")),
        ("unix_server_named", format!("{h}  servers:\n   - /tmp/r.sock:1 redis-a\n   - /tmp/q.sock:3\n")),
        ("many_pools", format!("{}{}{}", pool("b", "P1", "  redis: true\n"), pool("a", "P2", ""), pool("cc", "P3", "  hash: md5\n"))),
        // ---- rejected: §2.5 rows ----
        ("unknown_key", with("  foo: bar\n")),
        ("sentinels", format!("{h}  sentinels:\n   - 127.0.0.1:26379:1\n")),
        ("duplicate_key", with("  timeout: 1\n  timeout: 2\n")),
        ("duplicate_bool", with("  redis: true\n  redis: false\n")),
        ("bad_hash", with("  hash: sha1\n")),
        ("bad_distribution", with("  distribution: rendezvous\n")),
        ("bad_bool", with("  redis: yes\n")),
        ("negative_number", with("  timeout: -1\n")),
        ("garbage_number", with("  backlog: 1x\n")),
        ("overflow_number", with("  timeout: 2147483648\n")),
        ("hash_tag_length", with("  hash_tag: \"{\"\n")),
        ("listen_no_colon", format!("alpha:\n  listen: localhost\n{s}")),
        ("listen_bad_port", format!("alpha:\n  listen: 127.0.0.1:99999\n{s}")),
        ("listen_port_zero", format!("alpha:\n  listen: 127.0.0.1:0\n{s}")),
        ("listen_unresolvable", format!("alpha:\n  listen: nonexistent.invalid:{{P1}}\n{s}")),
        ("listen_empty_host", format!("alpha:\n  listen: :{{P1}}\n{s}")),
        ("listen_brackets", format!("alpha:\n  listen: \"[::1]:{{P1}}\"\n{s}")),
        ("listen_duplicate_via_seq", "alpha:\n  listen:\n   - 127.0.0.1:1\n   - 127.0.0.1:2\n".to_owned()),
        ("listen_as_sequence", "alpha:\n  listen:\n   - 127.0.0.1:22121\n".to_owned()),
        ("unix_perm_too_big", format!("alpha:\n  listen: {{DIR}}/d.sock 01777\n{s}")),
        ("unix_perm_negative", format!("alpha:\n  listen: {{DIR}}/e.sock -1\n{s}")),
        ("unix_perm_overflow", format!("alpha:\n  listen: {{DIR}}/f.sock 7777777777777777777777777\n{s}")),
        ("unix_perm_wraps", format!("alpha:\n  listen: {{DIR}}/g.sock -37777777777\n{s}")),
        ("unix_path_too_long", format!("alpha:\n  listen: /tmp/{}.sock\n{s}", "a".repeat(110))),
        ("unix_path_107", format!("alpha:\n  listen: {{UNIX107}}\n{s}")),
        ("unix_path_108", format!("alpha:\n  listen: {{UNIX108}}\n{s}")),
        ("server_bad_format", format!("{h}  servers:\n   - 127.0.0.1\n")),
        ("server_unix_with_colon", format!("{h}  servers:\n   - /tmp/a:b.sock:1\n")),
        ("server_zero_weight", format!("{h}  servers:\n   - 127.0.0.1:6379:0\n")),
        ("server_bad_weight", format!("{h}  servers:\n   - 127.0.0.1:6379:x\n")),
        ("server_name_with_space", format!("{h}  servers:\n   - 127.0.0.1:6379:1 a b\n")),
        ("server_bad_port", format!("{h}  servers:\n   - 127.0.0.1:99999:1\n")),
        ("server_nul", format!("{h}  servers:\n   - \"127.0.0.1:6379:1\\0\"\n")),
        ("missing_listen", format!("alpha:\n  hash: md5\n{s}")),
        ("server_connections_zero", with("  server_connections: 0\n")),
        ("redis_auth_memcache", with("  redis_auth: pw\n")),
        ("duplicate_server", format!("{h}  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6379:2\n")),
        ("duplicate_server_name", format!("{h}  servers:\n   - 127.0.0.1:6379:1 a\n   - 127.0.0.1:6380:1 a\n")),
        ("duplicate_11211", format!("{h}  servers:\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:011211:1\n")),
        ("no_servers_key", with("").replace(s, "")),
        ("empty_servers", format!("{h}  servers:\n")),
        ("hash_as_sequence", format!("{h}  hash:\n   - md5\n")),
        ("two_sequences", format!("{h}{s}  other:\n   - x\n")),
        ("nested_mapping", with("  x:\n    y: 1\n")),
        ("mapping_in_sequence", format!("{h}  servers:\n   - a: b\n")),
        ("sequence_in_sequence", format!("{h}  servers:\n   - - a\n")),
        ("scalar_top", "hello\n".to_owned()),
        ("sequence_top", "- a\n- b\n".to_owned()),
        ("sequence_at_depth_1", "alpha:\n- a\n".to_owned()),
        ("pool_is_scalar", "alpha: x\n".to_owned()),
        ("mapping_key_at_depth_1", "? a: 1\n: x\n".to_owned()),
        ("sequence_key_at_depth_2", format!("{h}  ? - a\n  : b\n")),
        ("empty_file", String::new()),
        ("comment_only", "# nothing\n".to_owned()),
        ("two_documents", format!("{h}{s}---\nbeta: 1\n")),
        ("document_start", format!("---\n{h}{s}")),
        ("document_end", format!("{h}{s}...\n")),
        ("flow_sequence", format!("{h}  servers: [127.0.0.1:6379:1]\n")),
        ("flow_mapping", "alpha: {listen: 127.0.0.1:22121}\n".to_owned()),
        ("anchor", with("  hash: &a md5\n")),
        ("alias_undefined", with("  hash: *b\n")),
        ("duplicate_anchor", with("  hash: &x md5\n  timeout: &x 1\n")),
        ("tag", with("  hash: !!str md5\n")),
        ("version_directive", format!("%YAML 1.1\n---\n{h}{s}")),
        ("tag_directive", format!("%TAG ! tag:x,2000:\n---\n{h}{s}")),
        ("unknown_directive", format!("%FOO bar\n---\n{h}{s}")),
        ("scanner_error", with("  hash: \"md5\n")),
        ("parser_error", with("  hash: md5\n  - x\n")),
        ("tab_indent", format!("alpha:\n\tlisten: 127.0.0.1:1\n{s}")),
        ("bad_indent", format!("{h}   hash: md5\n{s}")),
        ("colon_in_value", with("  hash: md5: x\n")),
        ("invalid_utf8", with("  hash: \u{fffd}\n").replace('\u{fffd}', "\u{1}")),
        ("document_end_only", "...\n".to_owned()),
        ("same_listen", format!("{}{}", pool("zeta", "P1", ""), pool("alpha", "P1", ""))),
        ("same_name", format!("{}{}", pool("alpha", "P1", ""), pool("alpha", "P2", ""))),
        ("second_pool_invalid", format!("{}beta:\n  listen: 127.0.0.1:{{P2}}\n  hash: md5\n", pool("alpha", "P1", ""))),
        ("first_error_wins", with("  foo: 1\n  hash: bad\n")),
        // conf_push_scalar fails on empty scalars without logging anything
        ("empty_value", with("  hash: \"\"\n")),
        ("empty_plain_value", with("  hash:\n")),
        ("empty_key", with("  \"\": x\n")),
        ("empty_pool_name", format!("\"\":\n  listen: 127.0.0.1:{{P1}}\n{s}")),
        ("empty_server", format!("{h}  servers:\n   -\n")),
        ("error_before_empty", with("  foo: 1\n  hash: \"\"\n")),
        // ---- YAML corner cases where yaml-rust2 and libyaml might disagree ----
        ("tab_after_colon", with("  hash:\tmd5\n")),
        ("tab_after_dash", format!("{h}  servers:\n   -\t127.0.0.1:6379:1\n")),
        ("trailing_tab", with("  hash: md5\t\n")),
        ("tab_only_line", format!("{h}\t\n{s}")),
        ("space_tab_line", format!("{h}  \t\n{s}")),
        ("tab_before_comment", with("  hash: md5\t# c\n")),
        ("tab_before_colon", with("  hash\t: md5\n")),
        ("tab_in_continuation", with("  hash: md5\n     \tfoo\n")),
        ("space_tab_after_dash", format!("{h}  servers:\n   - \t127.0.0.1:6379:1\n")),
        ("space_tab_after_colon", with("  hash: \tmd5\n")),
        ("tab_after_colon_empty", with("  hash:\t\n")),
        ("tab_after_colon_dash", with("  hash:\t-md5\n")),
        ("tab_after_seq_key", format!("{h}  servers:\t\n   - 127.0.0.1:6379:1\n")),
        ("tab_in_quoted_continuation", with("  hash: \"md5\n  \t\"\n")),
        ("tab_after_pool_key", format!("alpha:\t\n  listen: 127.0.0.1:{{P1}}\n{s}")),
        ("tab_after_complex_key", with("  ?\thash\n  : md5\n")),
        ("tab_after_complex_value", with("  ? hash\n  :\tmd5\n")),
        ("tab_indented_comment", format!("{h}\t# c\n{s}")),
        ("tab_in_comment", format!("{h}  # a\tb\n{s}")),
        ("tab_in_literal", with("  hash: |\n    md\t5\n")),
        ("tab_indenting_folded", with("  timeout: >-\n    \t400\n")),
        ("tab_before_folded_indent", with("  timeout: >-\n   \t 400\n")),
        ("nul_in_listen", format!("alpha:\n  listen: \"127.0.\\0.1:{{P1}}\"\n{s}")),
        ("nul_in_server_port", format!("{h}  servers:\n   - \"127.0.0.1:63\\0:1 name\"\n")),
        ("nul_in_key", with("  \"li\\0sten\": x\n")),
        ("blank_lines", format!("\n\n{h}\n   \n{s}\n")),
        ("multiline_plain", with("  hash: md5\n    foo\n")),
        ("multiline_quoted", with("  hash: \"md\n    5\"\n")),
        ("literal_scalar", with("  hash: |\n    md5\n")),
        ("literal_strip", with("  hash: |-\n    md5\n")),
        ("escape_in_quotes", with("  hash: \"md\\x35\"\n")),
        ("bad_escape", with("  hash: \"md\\q5\"\n")),
        ("quoted_key_colon", with("  \"a:b\": x\n")),
        ("unicode_pool", format!("p\u{e9}ol:\n  listen: 127.0.0.1:{{P1}}\n{s}")),
        ("hash_tag_multibyte", with("  hash_tag: \"\u{a7}\"\n")),
        ("long_key", with(&format!("  {}: x\n", "k".repeat(1100)))),
        ("directive_after_content", format!("{h}{s}%YAML 1.1\n")),
        ("document_start_with_value", "--- a\n".to_owned()),
        ("two_empty_documents", "---\n---\n".to_owned()),
        ("document_end_twice", format!("{h}{s}...\n...\n")),
        ("nel_line_breaks", format!("{h}  hash: md5\u{85}{s}")),
        ("bom_in_middle", with("  hash: md5\u{feff}\n")),
        ("control_char", with("  hash: a\u{1}b\n")),
        ("key_without_value", with("  hash\n")),
        ("question_key_only", with("  ? hash\n")),
        ("dash_in_plain", with("  hash: -md5\n")),
        ("plain_with_hash_char", with("  hash_tag: a#\n")),
        ("seq_under_pool_name", "alpha:\n  - listen\n".to_owned()),
        ("deeper_indent_seq", format!("{h}  servers:\n        - 127.0.0.1:6379:1\n        - 127.0.0.1:6380:1\n")),
        ("seq_entries_misaligned", format!("{h}  servers:\n   - 127.0.0.1:6379:1\n    - 127.0.0.1:6380:1\n")),
        ("carriage_return_only", format!("{h}{s}").replace('\n', "\r")),
    ]
}

fn instantiate(template: &str, dir: &Path) -> String {
    let d = dir.display().to_string();
    // unix socket paths of exactly 107 (the longest sun_path takes) and 108 bytes
    let unix = |len: usize| format!("{d}/{}", "u".repeat(len - d.len() - 1));
    let mut text = template
        .replace("{UNIX107}", &unix(107))
        .replace("{UNIX108}", &unix(108))
        .replace("{DIR}", &d);
    for p in ["{P1}", "{P2}", "{P3}"] {
        text = text.replace(p, &free_port().to_string());
    }
    text
}

#[test]
fn configs_match_nutcracker() {
    let bin = nutcracker();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = corpus();
    assert!(corpus.len() >= 40, "corpus too small");

    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for (name, template) in &corpus {
        let mut attempt = 0;
        let (file, ours_res, theirs_run) = loop {
            let file = dir.path().join(format!("{name}.yml"));
            let text = instantiate(template, dir.path());
            std::fs::write(&file, &text).expect("write config");
            if *name == "invalid_utf8" {
                let mut bytes = std::fs::read(&file).expect("read back");
                let at = bytes.iter().position(|&b| b == 1).expect("marker byte");
                bytes[at] = 0xff;
                std::fs::write(&file, bytes).expect("write config");
            }
            let file = file.display().to_string();
            let ours_res = ours(&file);
            match nutcracker_run(&bin, &file, dir.path()) {
                Some(run) => break (file, ours_res, run),
                None if attempt < 3 => attempt += 1,
                None => panic!("{name}: nutcracker kept failing to bind"),
            }
        };
        let ours_out = our_outcome(&ours_res);

        // -t: exit status and exact stderr
        let (rc, stderr) = nutcracker_test_conf(&bin, &file);
        let (our_rc, our_stderr) = match &ours_res {
            Ok(_) => (0, format!("{}\n", nc_config::syntax_ok_line(&file))),
            Err(e) => (1, e.test_conf_stderr()),
        };
        if (rc, &stderr) != (our_rc, &our_stderr) {
            failures.push(format!(
                "{name}: -t differs\n  nutcracker: rc={rc} {stderr:?}\n  ours:       rc={our_rc} {our_stderr:?}"
            ));
        }

        match (&theirs_run, &ours_out) {
            (Outcome::Valid(t), Outcome::Valid(o)) => {
                valid += 1;
                // Only compare order when nutcracker's stats were read.
                if !t.is_empty() && t != o {
                    failures.push(format!(
                        "{name}: pool/server order differs\n  nutcracker: {t:?}\n  ours:       {o:?}"
                    ));
                }
            }
            (t, o) => {
                invalid += 1;
                if t != o {
                    failures.push(format!(
                        "{name}: run differs\n  nutcracker: {t:?}\n  ours:       {o:?}"
                    ));
                }
            }
        }
    }
    // ncproxy's extension keys: nutcracker 0.5.0 rejects them as unknown.
    for (key, line) in [
        ("reuseport", "  reuseport: true\n"),
        ("send_mode", "  send_mode: per_message\n"),
        ("iov_max", "  iov_max: 64\n"),
        ("send_limit", "  send_limit: 65536\n"),
    ] {
        let file = dir.path().join(format!("ext-{key}.yml"));
        let text = instantiate(
            &format!(
                "alpha:\n  listen: 127.0.0.1:{{P1}}\n{line}  servers:\n   - 127.0.0.1:6379:1\n"
            ),
            dir.path(),
        );
        std::fs::write(&file, text).expect("write config");
        let file = file.display().to_string();
        let theirs = nutcracker_run(&bin, &file, dir.path()).expect("run");
        let expected = vec![format!(
            "nc_conf.c:536 conf: directive \"{key}\" is unknown"
        )];
        if !matches!(&theirs, Outcome::Invalid { log, .. } if *log == expected) {
            failures.push(format!("extension {key}: nutcracker said {theirs:?}"));
        }
        if let Err(e) = ours(&file) {
            failures.push(format!("extension {key}: ncproxy rejected it: {e}"));
        }
    }

    // The open failure: no "syntax is invalid" line in run mode, one with -t.
    let missing = dir.path().join("missing.yml").display().to_string();
    let theirs = nutcracker_run(&bin, &missing, dir.path()).expect("run");
    let ours_missing = our_outcome(&ours(&missing));
    if theirs != ours_missing {
        failures.push(format!(
            "missing file: run differs\n  nutcracker: {theirs:?}\n  ours:       {ours_missing:?}"
        ));
    }
    let (rc, stderr) = nutcracker_test_conf(&bin, &missing);
    let our = ours(&missing).expect_err("missing file must fail");
    if rc != 1 || stderr != our.test_conf_stderr() {
        failures.push(format!(
            "missing file: -t differs: {stderr:?} vs {:?}",
            our.test_conf_stderr()
        ));
    }
    // A directory opens but cannot be read.
    let dir_path = dir.path().display().to_string();
    let theirs = nutcracker_run(&bin, &dir_path, dir.path()).expect("run");
    let ours_dir = our_outcome(&ours(&dir_path));
    if theirs != ours_dir {
        failures.push(format!(
            "directory: run differs\n  nutcracker: {theirs:?}\n  ours:       {ours_dir:?}"
        ));
    }

    assert!(
        failures.is_empty(),
        "{} of {} configs differ from nutcracker:\n{}",
        failures.len(),
        corpus.len() + 2,
        failures.join("\n")
    );
    assert!(
        valid >= 15 && invalid >= 40,
        "corpus lost coverage: {valid} valid, {invalid} invalid"
    );
}
