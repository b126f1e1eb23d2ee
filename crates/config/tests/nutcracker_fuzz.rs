//! Randomised differential test against the real nutcracker 0.5.0.
//!
//! Valid configurations are mutated (characters inserted, replaced, deleted;
//! YAML-significant ones favoured) with a fixed seed, and each result is given
//! to `nutcracker -t` and, when rejected, to a nutcracker run whose log holds
//! the reason. nc-config must agree on validity every time. The logged reason
//! must agree for nearly all: libyaml and yaml-rust2 occasionally classify
//! broken YAML (mostly stray flow brackets) as a scanner rather than a parser
//! error, which changes only the `err N` number.
//!
//! `NC_CONFIG_FUZZ_CASES` (default 200 per base) and `NC_CONFIG_FUZZ_SEED`
//! scale it up for longer local runs. nutcracker must be installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nc_config::Config;

/// The real nutcracker (NUTCRACKER_BIN, PATH or /usr/sbin); a missing one
/// fails the test with an install hint, it never skips.
fn nutcracker() -> PathBuf {
    nc_harness::Nutcracker::binary().unwrap_or_else(|e| panic!("{e}"))
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A base configuration and the fragments mutations draw from. Listen
/// addresses use port 1 and unix paths under a directory that does not exist,
/// so nothing is ever bound: accepted configs are only checked with `-t`.
const BASES: &[(&str, &[&str])] = &[
    (
        "alpha:\n  listen: 127.0.0.1:1\n  hash: md5\n  hash_tag: \"{}\"\n  redis: true\n  servers:\n   \
         - 127.0.0.1:6379:1\n   - 127.0.0.1:6380:1 name\n  timeout: 400\nbeta:\n  listen: /nonexistent/x.sock 0666\n  \
         servers:\n   - /tmp/r.sock:2\n",
        &[
            " ", "\t", "\n", ":", "-", "#", "\"", "'", "?", "|", ">", "a", "1", "&", "*", "!", "%",
            "[", "]", "{", "}", ",", "\\", "\r", "  ", "\n  ", "\n   - ", ": ", "---", "...", "~",
            "@", "`",
        ],
    ),
    (
        "# c\nalpha:   # pool\n  listen: \"127.0.0.1:1\"\n  hash: 'md5'\n  hash_tag: \"{}\"\n  redis: true\n\n  \
         servers:\n  - 127.0.0.1:6379:1\n  - \"127.0.0.1:6380:1 name\"\n  timeout: >-\n    400\nbeta:\n  \
         listen: /nonexistent/x.sock 0666\n  servers:\n   - /tmp/r.sock:2\n",
        &[
            " ", "\t", "\n", "\t\t", " \t", "\"", "'", "#", "\r\n", ":", "-", "\\", "  ", "\n\t", "x",
        ],
    ),
];

fn mutate(base: &str, alphabet: &[&str], seed: &mut u64) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for _ in 0..1 + xorshift(seed) % 3 {
        let pos = (xorshift(seed) as usize) % (text.len() + 1);
        let piece = alphabet[(xorshift(seed) as usize) % alphabet.len()];
        match xorshift(seed) % 3 {
            0 if pos < text.len() => {
                text.remove(pos);
            }
            1 if pos < text.len() => {
                text.splice(pos..=pos, piece.chars());
            }
            _ => {
                text.splice(pos..pos, piece.chars());
            }
        }
    }
    text.into_iter().collect()
}

/// nutcracker's verdict: `None` if accepted, else its `file:line message` log.
fn nutcracker_verdict(bin: &Path, file: &str, log: &Path) -> Option<String> {
    let t = Command::new(bin)
        .args(["-t", "-c", file])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run nutcracker -t");
    if t.success() {
        return None;
    }
    let _ = std::fs::remove_file(log);
    // Rejected configs make nutcracker exit before binding anything.
    Command::new(bin)
        .args(["-c", file, "-s", "1", "-a", "127.0.0.1", "-o"])
        .arg(log)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run nutcracker");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Some(
        text.lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .filter(|l| l.starts_with("nc_conf.c:") || l.starts_with("nc_util.c:"))
            .collect::<Vec<_>>()
            .join(" | "),
    )
}

#[test]
fn mutated_configs_match_nutcracker() {
    let bin = nutcracker();
    let cases: usize = std::env::var("NC_CONFIG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut seed: u64 = std::env::var("NC_CONFIG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("nutcracker.log");

    let (mut total, mut validity, mut messages) = (0, Vec::new(), Vec::new());
    for (base, alphabet) in BASES {
        for case in 0..cases {
            let text = mutate(base, alphabet, &mut seed);
            let file = dir.path().join(format!("c{case}.yml"));
            std::fs::write(&file, &text).expect("write config");
            let file = file.display().to_string();
            let theirs = nutcracker_verdict(&bin, &file, &log);
            let ours = Config::load(&file).err().map(|e| {
                e.log_lines()
                    .iter()
                    .map(|l| format!("{} {}", l.source(), l.message))
                    .collect::<Vec<_>>()
                    .join(" | ")
            });
            total += 1;
            match (&theirs, &ours) {
                (None, None) => {}
                (Some(t), Some(o)) if t == o => {}
                (Some(t), Some(o)) => {
                    messages.push(format!("{text:?}\n  nutcracker: {t}\n  ours:       {o}"))
                }
                _ => validity.push(format!(
                    "{text:?}\n  nutcracker: {theirs:?}\n  ours:       {ours:?}"
                )),
            }
        }
    }
    assert!(
        validity.is_empty(),
        "{} of {total} mutated configs: nutcracker and nc-config disagree on validity:\n{}",
        validity.len(),
        validity.join("\n")
    );
    // Allow 2% of reasons to differ (the err N class of malformed YAML).
    assert!(
        messages.len() * 50 <= total,
        "{} of {total} mutated configs log a different reason:\n{}",
        messages.len(),
        messages.join("\n")
    );
}
