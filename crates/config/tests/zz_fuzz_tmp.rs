use std::process::{Command, Stdio};
use nc_config::Config;

fn rng(state: &mut u64) -> u64 { *state ^= *state << 13; *state ^= *state >> 7; *state ^= *state << 17; *state }

#[test]
fn fuzz() {
    let base = if std::env::var("FUZZ_B").is_ok() { "# c\nalpha:   # pool\n  listen: \"127.0.0.1:22121\"\n  hash: 'md5'\n  hash_tag: \"{}\"\n  redis: true\n\n  servers:\n  - 127.0.0.1:6379:1\n  - \"127.0.0.1:6380:1 name\"\n  timeout: >-\n    400\nbeta:\n  listen: /tmp/x.sock 0666\n  servers:\n   - /tmp/r.sock:2\n" } else { "alpha:\n  listen: 127.0.0.1:22121\n  hash: md5\n  hash_tag: \"{}\"\n  redis: true\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6380:1 name\n  timeout: 400\nbeta:\n  listen: /tmp/x.sock 0666\n  servers:\n   - /tmp/r.sock:2\n" };
    let alphabet: Vec<&str> = if std::env::var("FUZZ_B").is_ok() { vec![" ", "\t", "\n", "\t\t", " \t", "\"", "'", "#", "\r\n", ":", "-", "\\", "  ", "\n\t", "x"] } else { vec![" ", "\t", "\n", ":", "-", "#", "\"", "'", "?", "|", ">", "a", "1", "&", "*", "!", "%", "[", "]", "{", "}", ",", "\\", "\r", "  ", "\n  ", "\n   - ", ": ", "---", "...", "~", "@", "`"] };
    let n: usize = std::env::var("FUZZ_N").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let mut seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12345);
    let mut diffs = 0;
    for case in 0..n {
        let mut text: Vec<char> = base.chars().collect();
        let muts = 1 + rng(&mut seed) % 3;
        for _ in 0..muts {
            let pos = (rng(&mut seed) as usize) % (text.len() + 1);
            match rng(&mut seed) % 3 {
                0 if pos < text.len() => { text.remove(pos); }
                1 if pos < text.len() => { let ins = alphabet[(rng(&mut seed) as usize) % alphabet.len()]; text.splice(pos..pos+1, ins.chars()); }
                _ => { let ins = alphabet[(rng(&mut seed) as usize) % alphabet.len()]; text.splice(pos..pos, ins.chars()); }
            }
        }
        let text: String = text.into_iter().collect();
        let file = format!("/tmp/cfgt/fz/c{case}.yml");
        std::fs::write(&file, &text).unwrap();
        let ours = Config::load(&file);
        let t = Command::new("nutcracker").args(["-t", "-c", &file]).stderr(Stdio::piped()).output().unwrap();
        let their_ok = t.status.success();
        let mut their_msg = String::new();
        if !their_ok {
            let log = format!("/tmp/cfgt/fz/c{case}.log");
            let _ = std::fs::remove_file(&log);
            let _ = Command::new("nutcracker").args(["-c", &file, "-s", "45999", "-o", &log]).stderr(Stdio::null()).output().unwrap();
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            their_msg = l.lines().filter_map(|x| x.split_once("] ").map(|y| y.1.to_string())).filter(|x| x.starts_with("nc_conf") || x.starts_with("nc_util")).collect::<Vec<_>>().join(" | ");
        }
        let our_msg = match &ours { Ok(_) => String::new(), Err(e) => e.log_lines().iter().map(|l| format!("{} {}", l.source(), l.message)).collect::<Vec<_>>().join(" | ") };
        if their_ok != ours.is_ok() || their_msg != our_msg {
            diffs += 1;
            let info = { let mut p = yaml_rust2::parser::Parser::new_from_str(&text); let mut r = String::new(); loop { match p.next_token() { Ok((yaml_rust2::parser::Event::StreamEnd, _)) => break, Ok(_) => {}, Err(e) => { r = e.to_string(); break } } } r };
            println!("=== case {case}: y2err={info}\n    theirs ok={their_ok} {their_msg:?}\n    ours ok={} {our_msg:?}\n{text:?}", ours.is_ok());
        } else {
            let _ = std::fs::remove_file(&file);
        }
    }
    println!("diffs: {diffs}/{n}");
}
