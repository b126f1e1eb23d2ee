//! Differential test of the command line against the real nutcracker 0.5.0.
//!
//! For every rejected command line nutcracker prints one message, then its
//! usage, and exits 1; we compare the message byte for byte with
//! [`CliError`]'s `Display`, and the usage with [`usage_text`] once the
//! documented differences are undone (upstream instead of Debian defaults,
//! ncproxy's extra option lines). Accepted command lines are checked by
//! appending `-V`, which makes nutcracker exit 0 right after parsing.
//!
//! nutcracker must be installed (set `NUTCRACKER_BIN` to override the path);
//! the test fails when it is missing.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nc_config::cli::{self, CliAction};

/// The real nutcracker (NUTCRACKER_BIN, PATH or /usr/sbin); a missing one
/// fails the test with an install hint, it never skips.
fn nutcracker() -> PathBuf {
    nc_harness::Nutcracker::binary().unwrap_or_else(|e| panic!("{e}"))
}

/// (exit code, stderr bytes) of `nutcracker ARGS`.
fn run_nutcracker(args: &[&str]) -> (i32, Vec<u8>) {
    let out = Command::new(nutcracker())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run nutcracker");
    (out.status.code().unwrap_or(-1), out.stderr)
}

fn ours(args: &[&str]) -> Result<CliAction, cli::CliError> {
    cli::parse(args.iter().map(OsString::from))
}

/// Our usage as the Debian nutcracker build prints it: its compiled-in
/// defaults for -o/-c/-p, without ncproxy's extension lines.
fn usage_as_debian() -> String {
    cli::usage_text()
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("      --"))
        .collect::<String>()
        .replace(
            "logging file (default: stderr)",
            "logging file (default: /var/log/nutcracker/nutcracker.log)",
        )
        .replace(
            "(default: conf/nutcracker.yml)",
            "(default: /etc/nutcracker/nutcracker.yml)",
        )
        .replace(
            "pid file (default: off)",
            "pid file (default: /run/nutcracker/nutcracker.pid)",
        )
}

const NUTCRACKER_BANNER: &str = "This is nutcracker-0.5.0\n";

/// Our version text with nutcracker's first line.
fn version_as_nutcracker() -> String {
    let v = cli::version_text();
    let rest = v.split_once('\n').expect("banner line").1;
    format!("{NUTCRACKER_BANNER}{rest}")
}

#[test]
fn rejected_command_lines_match() {
    let cases: &[&[&str]] = &[
        &["-x"],
        &["-?"],
        &["-:"],
        &["-W"],
        &["-tdx"],
        &["-hx"],
        &["-V", "-x"],
        &["-x", "-V"],
        &["x", "-x"],
        &["-", "-x"],
        &["--foo"],
        &["--x=1"],
        &["--stats"],
        &["--v"],
        &["--d"],
        &["--s"],
        &["--=x"],
        &["--help=3"],
        &["--hel=1"],
        &["--version=1"],
        &["--test-conf=1"],
        &["--daemonize=1"],
        &["--describe-stats=1"],
        &["-v"],
        &["-v", "abc"],
        &["-v", "-1"],
        &["-v", ""],
        &["-vt"],
        &["-Vv"],
        &["-t", "-v"],
        &["--verbose"],
        &["--verbose", "-1", "-V"],
        &["--verbose=5x"],
        &["-s"],
        &["-s", "abc"],
        &["-s", "-1"],
        &["-s", ""],
        &["-s", "0"],
        &["-s", "65536"],
        &["-s", "99999"],
        &["-s", "2147483648"],
        &["-s", "4294967296"],
        &["--stats-port=0"],
        &["--stats-port=abc"],
        &["-i"],
        &["-i", "abc"],
        &["-i", "-5"],
        &["--stats-interval=-5"],
        &["-m"],
        &["-m", "0"],
        &["-m", "abc"],
        &["-m", ""],
        &["-m", "511"],
        &["-m", "16777217"],
        &["-m", "2147483648"],
        &["-m", "99999999999"],
        &["--mbuf-size"],
        &["--mbuf-size="],
        &["-o"],
        &["--output"],
        &["-c"],
        &["--conf-file"],
        &["-p"],
        &["--p"],
        &["-a"],
        &["--stats-addr"],
    ];
    let usage = usage_as_debian();
    let mut failures = Vec::new();
    for args in cases {
        let (rc, stderr) = run_nutcracker(args);
        let ours = match ours(args) {
            Err(e) => e.to_string(),
            Ok(action) => {
                failures.push(format!(
                    "{args:?}: nutcracker rc={rc}, ours accepted: {action:?}"
                ));
                continue;
            }
        };
        let expected = [format!("{ours}\n").into_bytes(), usage.clone().into_bytes()].concat();
        if rc != 1 || stderr != expected {
            failures.push(format!(
                "{args:?}:\n  nutcracker rc={rc} {:?}\n  ours       rc=1 {:?}",
                String::from_utf8_lossy(&stderr),
                String::from_utf8_lossy(&expected)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_command_lines_match() {
    // Each is followed by -V so nutcracker stops right after parsing.
    let cases: &[&[&str]] = &[
        &[],
        &["-t"],
        &["-d"],
        &["-td"],
        &["-v5"],
        &["-v", "5"],
        &["-v", "12"],
        &["-v", "2147483647"],
        &["--verbose=5"],
        &["--verbose", "5"],
        &["--verb=3"],
        &["-o", "/tmp/x.log"],
        &["-o", ""],
        &["-c", "x.yml"],
        &["-c", "--"],
        &["--conf-file=x.yml"],
        &["--c", "x.yml"],
        &["-s", "65535"],
        &["-s", "1"],
        &["-s", "4294967297"],
        &["--stats-p=1"],
        &["-i", "0"],
        &["-i", "99999999999"],
        &["-a", "127.0.0.1"],
        &["-p", "/tmp/x.pid"],
        &["--pid-file=/tmp/x.pid"],
        &["-m", "512"],
        &["-m", "16777216"],
        &["--t"],
        &["extra"],
        &["-", "x"],
        &["-tdv7", "-c", "f", "-s", "9"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let with_v: Vec<&str> = args.iter().copied().chain(["-V"]).collect();
        let (rc, stderr) = run_nutcracker(&with_v);
        let ours_v = ours(&with_v);
        if rc != 0
            || stderr != version_as_nutcracker().into_bytes()
            || ours_v != Ok(CliAction::Version)
        {
            failures.push(format!(
                "{with_v:?}: nutcracker rc={rc} {:?}; ours {ours_v:?}",
                String::from_utf8_lossy(&stderr)
            ));
        }
        // and without -V ours must accept it too
        if let Err(e) = ours(args) {
            failures.push(format!("{args:?}: ours rejected it: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn help_and_version_texts_match() {
    let (rc, stderr) = run_nutcracker(&["-V"]);
    assert_eq!(rc, 0);
    assert_eq!(String::from_utf8_lossy(&stderr), version_as_nutcracker());

    for flag in ["-h", "--help", "--he"] {
        let (rc, stderr) = run_nutcracker(&[flag]);
        assert_eq!(rc, 0);
        assert_eq!(
            String::from_utf8_lossy(&stderr),
            format!("{}{}", version_as_nutcracker(), usage_as_debian()),
            "{flag}"
        );
        assert_eq!(ours(&[flag]), Ok(CliAction::Help));
    }

    let (rc, stderr) = run_nutcracker(&["-D"]);
    assert_eq!(rc, 0);
    assert!(String::from_utf8_lossy(&stderr).starts_with(&version_as_nutcracker()));
    assert_eq!(ours(&["-D"]), Ok(CliAction::DescribeStats));
}
