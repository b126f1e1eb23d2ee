//! nutcracker's command line (src/nc.c nc_get_options), plus ncproxy's extensions.
//!
//! This is a small hand-written `getopt_long` rather than clap: drop-in
//! compatibility needs GNU getopt's exact behaviour — bundled short flags
//! (`-tdv5`), an option argument taken from the next word even when it starts
//! with `-` (`-v -1`, `-c --`), non-options permuted away and ignored, unique
//! prefixes of long names (`--verb=5`), ambiguous or unknown long names
//! reported as option `'\0'`, `--help=x` reported as `-- 'h'` — and
//! nutcracker's own wording for every error (`option -s requires a number`),
//! none of which clap can be configured to reproduce.
//!
//! Numbers are parsed with nutcracker's `nc_atoi` (digits only, 32-bit
//! wrap-around), so `-s 4294967297` is port 1, exactly as in nutcracker.
//!
//! Extensions are long-only (`--workers`, `--send-mode`, `--iov-max`,
//! `--send-limit`, `--prometheus-port`, `--busy-poll`, `--wait`, `--wait-cap`, `--io`) and must be
//! spelled in full, so that
//! every abbreviation nutcracker accepts keeps meaning the same option.

use std::ffi::OsString;

use crate::conf::{nc_atoi, valid_port};
use crate::{Config, SendMode, MAX_IOV_MAX, MIN_IOV_MAX};

/// Default `-v` level (LOG_NOTICE), and the bounds `log_init` clamps to.
pub const DEFAULT_VERBOSITY: u8 = 5;
pub const MIN_VERBOSITY: u8 = 0;
pub const MAX_VERBOSITY: u8 = 11;
/// Upstream's default `-c` (the Debian build uses /etc/nutcracker/nutcracker.yml).
pub const DEFAULT_CONF_FILE: &str = "conf/nutcracker.yml";
pub const DEFAULT_STATS_PORT: u16 = 22222;
pub const DEFAULT_STATS_ADDR: &str = "0.0.0.0";
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_MBUF_SIZE: usize = 16384;
pub const MIN_MBUF_SIZE: usize = 512;
pub const MAX_MBUF_SIZE: usize = 16_777_216;
/// The longest `--busy-poll` window, in microseconds (10 ms).
pub const MAX_BUSY_POLL_US: u32 = 10_000;
/// `--wait-cap` default: adaptive spinning may take 30% of a worker's CPU.
pub const DEFAULT_WAIT_CAP_PERCENT: u8 = 30;

/// `--wait` (extension): what a worker does when it runs out of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// Block in `epoll_wait` at once, as nutcracker does (the default).
    #[default]
    Sleep,
    /// Spin first when recent work came back sooner than a wakeup costs,
    /// within `--wait-cap` percent of the CPU.
    Adaptive,
}

/// `--io` (extension): how the workers do client socket I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoMode {
    /// Readiness (epoll) and one syscall per read or send: the default.
    #[default]
    Epoll,
    /// Client receives and reply sends on a per-worker io_uring, submitted
    /// once per event-loop iteration (falls back to epoll where io_uring
    /// is unavailable).
    Uring,
}

impl IoMode {
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Epoll => "epoll",
            IoMode::Uring => "uring",
        }
    }

    pub fn from_name(name: &str) -> Option<IoMode> {
        match name {
            "epoll" => Some(IoMode::Epoll),
            "uring" => Some(IoMode::Uring),
            _ => None,
        }
    }
}

/// The nutcracker version ncproxy is compatible with.
pub const NUTCRACKER_VERSION: &str = "0.5.0";

/// What the command line asks for. The binary prints [`version_text`] first
/// for `Help`, `Version` and `DescribeStats`, as nutcracker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    /// `-h`: version banner, then [`usage_text`]; exit 0. (With `-D` as well,
    /// nutcracker would also print the stats description; ncproxy does not.)
    Help,
    /// `-V`: version banner; exit 0.
    Version,
    /// `-D`: version banner, then the stats description; exit 0.
    DescribeStats,
    /// `-t`: check the configuration file and exit.
    TestConf(Options),
    /// Run the proxy.
    Run(Options),
}

/// Settings from the command line, with nutcracker's (upstream) defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-c`: configuration file.
    pub conf_file: String,
    /// `-v`: log level 0..=11 (larger values are clamped to 11 like log_init).
    pub verbosity: u8,
    /// `-o`: log file; `None` = stderr (an empty `-o ''` also means stderr).
    pub output: Option<String>,
    /// `-s`: stats port.
    pub stats_port: u16,
    /// `-a`: stats address (resolved by the binary).
    pub stats_addr: String,
    /// `-i`: stats aggregation interval in ms.
    pub stats_interval_ms: u64,
    /// `-p`: pid file; `None` = no pid file.
    pub pid_file: Option<String>,
    /// `-m`: mbuf chunk size in bytes, 512..=16777216.
    pub mbuf_size: usize,
    /// `-d`: daemonize.
    pub daemonize: bool,
    /// `--workers N` (extension): worker threads; `None` = number of cores.
    pub workers: Option<usize>,
    /// `--send-mode` (extension): overrides every pool's `send_mode`.
    pub send_mode: Option<SendMode>,
    /// `--iov-max` (extension): overrides every pool's `iov_max`.
    pub iov_max: Option<usize>,
    /// `--send-limit` (extension): overrides every pool's `send_limit`.
    pub send_limit: Option<usize>,
    /// `--prometheus-port` (extension): serve Prometheus metrics on this port.
    pub prometheus_port: Option<u16>,
    /// `--busy-poll` (extension): microseconds a worker keeps polling after
    /// activity before it sleeps; 0 = off.
    pub busy_poll_us: u32,
    /// `--wait` (extension): sleep (default) or adaptive.
    pub wait: WaitMode,
    /// `--wait-cap` (extension): the most CPU adaptive spinning may take,
    /// in percent of a worker's thread (1..=100).
    pub wait_cap_percent: u8,
    /// `--io` (extension): epoll (default) or uring.
    pub io: IoMode,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            conf_file: DEFAULT_CONF_FILE.to_owned(),
            verbosity: DEFAULT_VERBOSITY,
            output: None,
            stats_port: DEFAULT_STATS_PORT,
            stats_addr: DEFAULT_STATS_ADDR.to_owned(),
            stats_interval_ms: DEFAULT_STATS_INTERVAL_MS,
            pid_file: None,
            mbuf_size: DEFAULT_MBUF_SIZE,
            daemonize: false,
            workers: None,
            send_mode: None,
            iov_max: None,
            send_limit: None,
            prometheus_port: None,
            busy_poll_us: 0,
            wait: WaitMode::Sleep,
            wait_cap_percent: DEFAULT_WAIT_CAP_PERCENT,
            io: IoMode::Epoll,
        }
    }
}

impl Options {
    /// Applies the per-pool overrides (`--send-mode`, `--iov-max`,
    /// `--send-limit`) to every pool of `config`.
    pub fn apply_overrides(&self, config: &mut Config) {
        for pool in &mut config.pools {
            if let Some(mode) = self.send_mode {
                pool.send_mode = mode;
            }
            if let Some(n) = self.iov_max {
                pool.iov_max = n;
            }
            if let Some(n) = self.send_limit {
                pool.send_limit = Some(n);
            }
        }
    }
}

/// A rejected command line. `Display` is nutcracker's exact message; the
/// binary prints it, then [`usage_text`], and exits 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Unknown option character; `'\0'` for an unknown or ambiguous long
    /// option (nutcracker really prints a NUL byte there).
    #[error("nutcracker: invalid option -- '{0}'")]
    InvalidOption(char),
    /// Missing or non-numeric value for `-v`, `-s`, `-i`, or missing for `-m`.
    #[error("nutcracker: option -{0} requires a number")]
    RequiresNumber(char),
    /// Missing value for `-o`, `-c`, `-p`.
    #[error("nutcracker: option -{0} requires a file name")]
    RequiresFileName(char),
    /// Missing value for `-a`.
    #[error("nutcracker: option -{0} requires a string")]
    RequiresString(char),
    /// `-m` value zero or not a number.
    #[error("nutcracker: option -{0} requires a non-zero number")]
    RequiresNonZeroNumber(char),
    /// `-s` value outside 1..=65535.
    #[error("nutcracker: option -s value {0} is not a valid port")]
    InvalidStatsPort(i32),
    /// `-m` value outside 512..=16777216.
    #[error(
        "nutcracker: mbuf chunk size must be between {MIN_MBUF_SIZE} and {MAX_MBUF_SIZE} bytes"
    )]
    MbufSize,
    /// Extension option missing its value or given a non-number.
    #[error("nutcracker: option --{0} requires a number")]
    ExtRequiresNumber(&'static str),
    /// Extension option given zero.
    #[error("nutcracker: option --{0} requires a non-zero number")]
    ExtRequiresNonZeroNumber(&'static str),
    /// `--send-mode` missing its value.
    #[error("nutcracker: option --send-mode requires a string")]
    SendModeMissing,
    /// `--send-mode` value not recognised.
    #[error("nutcracker: option --send-mode value '{0}' is not \"batched\" or \"per_message\"")]
    InvalidSendMode(String),
    /// `--iov-max` outside 1..=1024.
    #[error("nutcracker: option --iov-max value must be between {MIN_IOV_MAX} and {MAX_IOV_MAX}")]
    IovMaxRange,
    /// `--prometheus-port` outside 1..=65535.
    #[error("nutcracker: option --prometheus-port value {0} is not a valid port")]
    InvalidPrometheusPort(i32),
    /// `--busy-poll` above its maximum.
    #[error("nutcracker: option --busy-poll value must be between 0 and {MAX_BUSY_POLL_US} usec")]
    BusyPollRange,
    /// `--wait` missing its value.
    #[error("nutcracker: option --wait requires a string")]
    WaitMissing,
    /// `--wait` value not recognised.
    #[error("nutcracker: option --wait value '{0}' is not \"sleep\" or \"adaptive\"")]
    InvalidWait(String),
    /// `--wait-cap` outside 1..=100.
    #[error("nutcracker: option --wait-cap value must be between 1 and 100 percent")]
    WaitCapRange,
    /// `--wait adaptive` together with `--busy-poll`.
    #[error("nutcracker: options --wait adaptive and --busy-poll cannot be combined")]
    WaitWithBusyPoll,
    /// `--io` missing its value.
    #[error("nutcracker: option --io requires a string")]
    IoMissing,
    /// `--io` value not recognised.
    #[error("nutcracker: option --io value '{0}' is not \"epoll\" or \"uring\"")]
    InvalidIo(String),
}

/// Option identities: nutcracker's short characters, then the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Short(u8),
    Workers,
    SendMode,
    IovMax,
    SendLimit,
    PrometheusPort,
    BusyPoll,
    Wait,
    WaitCap,
    Io,
}

struct LongOpt {
    name: &'static str,
    has_arg: bool,
    opt: Opt,
    /// nutcracker's own options may be abbreviated; the extensions may not.
    abbreviable: bool,
}

const fn nc(name: &'static str, has_arg: bool, c: u8) -> LongOpt {
    LongOpt {
        name,
        has_arg,
        opt: Opt::Short(c),
        abbreviable: true,
    }
}

const fn ext(name: &'static str, opt: Opt) -> LongOpt {
    LongOpt {
        name,
        has_arg: true,
        opt,
        abbreviable: false,
    }
}

const LONG_OPTIONS: &[LongOpt] = &[
    nc("help", false, b'h'),
    nc("version", false, b'V'),
    nc("test-conf", false, b't'),
    nc("daemonize", false, b'd'),
    nc("describe-stats", false, b'D'),
    nc("verbose", true, b'v'),
    nc("output", true, b'o'),
    nc("conf-file", true, b'c'),
    nc("stats-port", true, b's'),
    nc("stats-interval", true, b'i'),
    nc("stats-addr", true, b'a'),
    nc("pid-file", true, b'p'),
    nc("mbuf-size", true, b'm'),
    ext("workers", Opt::Workers),
    ext("send-mode", Opt::SendMode),
    ext("iov-max", Opt::IovMax),
    ext("send-limit", Opt::SendLimit),
    ext("prometheus-port", Opt::PrometheusPort),
    ext("busy-poll", Opt::BusyPoll),
    ext("wait", Opt::Wait),
    ext("wait-cap", Opt::WaitCap),
    ext("io", Opt::Io),
];

/// nutcracker's short option string "hVtdDv:o:c:s:i:a:p:m:": (char, has_arg).
fn short_option(c: u8) -> Option<bool> {
    match c {
        b'h' | b'V' | b't' | b'd' | b'D' => Some(false),
        b'v' | b'o' | b'c' | b's' | b'i' | b'a' | b'p' | b'm' => Some(true),
        _ => None,
    }
}

/// getopt_long's long-name lookup: exact match, else a unique prefix.
fn find_long(name: &[u8]) -> Option<&'static LongOpt> {
    if let Some(o) = LONG_OPTIONS.iter().find(|o| o.name.as_bytes() == name) {
        return Some(o);
    }
    let mut matches = LONG_OPTIONS
        .iter()
        .filter(|o| o.abbreviable && o.name.as_bytes().starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(o), None) => Some(o),
        _ => None, // unknown or ambiguous: getopt reports optopt 0
    }
}

/// The error for an option whose required value is missing (getopt's '?'
/// with optopt set, as nc_get_options words it).
fn missing_value(opt: Opt) -> CliError {
    match opt {
        Opt::Short(c @ (b'o' | b'c' | b'p')) => CliError::RequiresFileName(char::from(c)),
        Opt::Short(c @ (b'm' | b'v' | b's' | b'i')) => CliError::RequiresNumber(char::from(c)),
        Opt::Short(c @ b'a') => CliError::RequiresString(char::from(c)),
        Opt::Short(c) => CliError::InvalidOption(char::from(c)),
        Opt::Workers => CliError::ExtRequiresNumber("workers"),
        Opt::SendMode => CliError::SendModeMissing,
        Opt::IovMax => CliError::ExtRequiresNumber("iov-max"),
        Opt::SendLimit => CliError::ExtRequiresNumber("send-limit"),
        Opt::PrometheusPort => CliError::ExtRequiresNumber("prometheus-port"),
        Opt::BusyPoll => CliError::ExtRequiresNumber("busy-poll"),
        Opt::Wait => CliError::WaitMissing,
        Opt::WaitCap => CliError::ExtRequiresNumber("wait-cap"),
        Opt::Io => CliError::IoMissing,
    }
}

#[derive(Default)]
struct Flags {
    show_help: bool,
    show_version: bool,
    test_conf: bool,
    describe_stats: bool,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One option with its value, as nc_get_options' switch handles it.
fn apply(opt: Opt, value: &[u8], o: &mut Options, f: &mut Flags) -> Result<(), CliError> {
    let num = || nc_atoi(value);
    match opt {
        Opt::Short(b'h') => {
            f.show_version = true;
            f.show_help = true;
        }
        Opt::Short(b'V') => f.show_version = true,
        Opt::Short(b't') => f.test_conf = true,
        Opt::Short(b'd') => o.daemonize = true,
        Opt::Short(b'D') => {
            f.describe_stats = true;
            f.show_version = true;
        }
        Opt::Short(b'v') => {
            let v = num();
            if v < 0 {
                return Err(CliError::RequiresNumber('v'));
            }
            o.verbosity = v.min(i32::from(MAX_VERBOSITY)) as u8;
        }
        Opt::Short(b'o') => o.output = (!value.is_empty()).then(|| lossy(value)),
        Opt::Short(b'c') => o.conf_file = lossy(value),
        Opt::Short(b's') => {
            let v = num();
            if v < 0 {
                return Err(CliError::RequiresNumber('s'));
            }
            if !valid_port(v) {
                return Err(CliError::InvalidStatsPort(v));
            }
            o.stats_port = v as u16;
        }
        Opt::Short(b'i') => {
            let v = num();
            if v < 0 {
                return Err(CliError::RequiresNumber('i'));
            }
            o.stats_interval_ms = v as u64;
        }
        Opt::Short(b'a') => o.stats_addr = lossy(value),
        Opt::Short(b'p') => o.pid_file = Some(lossy(value)),
        Opt::Short(b'm') => {
            let v = num();
            if v <= 0 {
                return Err(CliError::RequiresNonZeroNumber('m'));
            }
            let v = v as usize;
            if !(MIN_MBUF_SIZE..=MAX_MBUF_SIZE).contains(&v) {
                return Err(CliError::MbufSize);
            }
            o.mbuf_size = v;
        }
        Opt::Short(c) => return Err(CliError::InvalidOption(char::from(c))),
        Opt::Workers => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("workers"));
            }
            if v == 0 {
                return Err(CliError::ExtRequiresNonZeroNumber("workers"));
            }
            o.workers = Some(v as usize);
        }
        Opt::SendMode => {
            let s = lossy(value);
            o.send_mode = Some(SendMode::from_name(&s).ok_or(CliError::InvalidSendMode(s))?);
        }
        Opt::IovMax => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("iov-max"));
            }
            let v = v as usize;
            if !(MIN_IOV_MAX..=MAX_IOV_MAX).contains(&v) {
                return Err(CliError::IovMaxRange);
            }
            o.iov_max = Some(v);
        }
        Opt::SendLimit => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("send-limit"));
            }
            if v == 0 {
                return Err(CliError::ExtRequiresNonZeroNumber("send-limit"));
            }
            o.send_limit = Some(v as usize);
        }
        Opt::PrometheusPort => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("prometheus-port"));
            }
            if !valid_port(v) {
                return Err(CliError::InvalidPrometheusPort(v));
            }
            o.prometheus_port = Some(v as u16);
        }
        Opt::BusyPoll => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("busy-poll"));
            }
            if v as u32 > MAX_BUSY_POLL_US {
                return Err(CliError::BusyPollRange);
            }
            o.busy_poll_us = v as u32;
        }
        Opt::Wait => {
            o.wait = match value {
                b"sleep" => WaitMode::Sleep,
                b"adaptive" => WaitMode::Adaptive,
                _ => return Err(CliError::InvalidWait(lossy(value))),
            };
        }
        Opt::WaitCap => {
            let v = num();
            if v < 0 {
                return Err(CliError::ExtRequiresNumber("wait-cap"));
            }
            if !(1..=100).contains(&v) {
                return Err(CliError::WaitCapRange);
            }
            o.wait_cap_percent = v as u8;
        }
        Opt::Io => {
            let s = lossy(value);
            o.io = IoMode::from_name(&s).ok_or(CliError::InvalidIo(s))?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn arg_bytes(a: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    a.into_vec()
}

#[cfg(not(unix))]
fn arg_bytes(a: OsString) -> Vec<u8> {
    a.to_string_lossy().into_owned().into_bytes()
}

/// Parses the command line (`std::env::args_os().skip(1)`), stopping at the
/// first error like nutcracker. Passing the program name too is harmless: like
/// every non-option word it is ignored.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<CliAction, CliError> {
    let args: Vec<Vec<u8>> = args.into_iter().map(arg_bytes).collect();
    let mut opts = Options::default();
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg.as_slice() == b"--" {
            break; // everything after is a non-option
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, inline) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let Some(long) = find_long(name) else {
                return Err(CliError::InvalidOption('\0'));
            };
            let value: &[u8] = match (long.has_arg, inline) {
                (false, None) => &[],
                (false, Some(_)) => {
                    // getopt reports the option's own character.
                    return Err(match long.opt {
                        Opt::Short(c) => CliError::InvalidOption(char::from(c)),
                        other => missing_value(other),
                    });
                }
                (true, Some(v)) => v,
                (true, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v
                    }
                    None => return Err(missing_value(long.opt)),
                },
            };
            apply(long.opt, value, &mut opts, &mut flags)?;
        } else if arg.len() > 1 && arg[0] == b'-' {
            let mut j = 1;
            while j < arg.len() {
                let c = arg[j];
                j += 1;
                let Some(has_arg) = short_option(c) else {
                    return Err(CliError::InvalidOption(char::from(c)));
                };
                if !has_arg {
                    apply(Opt::Short(c), &[], &mut opts, &mut flags)?;
                    continue;
                }
                let value: &[u8] = if j < arg.len() {
                    &arg[j..]
                } else {
                    match args.get(i) {
                        Some(v) => {
                            i += 1;
                            v
                        }
                        None => return Err(missing_value(Opt::Short(c))),
                    }
                };
                apply(Opt::Short(c), value, &mut opts, &mut flags)?;
                break;
            }
        }
        // Anything else is a non-option: GNU getopt permutes it away and
        // nutcracker ignores it.
    }
    if opts.wait == WaitMode::Adaptive && opts.busy_poll_us > 0 {
        return Err(CliError::WaitWithBusyPoll);
    }

    Ok(if flags.show_help {
        CliAction::Help
    } else if flags.describe_stats {
        CliAction::DescribeStats
    } else if flags.show_version {
        CliAction::Version
    } else if flags.test_conf {
        CliAction::TestConf(opts)
    } else {
        CliAction::Run(opts)
    })
}

/// What `-V` prints (and `-h`/`-D` print first), newlines included.
///
/// nutcracker prints `This is nutcracker-0.5.0`; ncproxy names itself but
/// keeps the remaining lines.
pub fn version_text() -> String {
    format!(
        "This is ncproxy-{} (nutcracker-{NUTCRACKER_VERSION} compatible)\nasync event backend: epoll\n\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// nutcracker's usage text (printed after [`version_text`] for `-h`, and
/// alone after a command-line error), with upstream's defaults and ncproxy's
/// extension options appended. nutcracker's CRLF line ends are kept.
pub fn usage_text() -> String {
    format!(
        "Usage: nutcracker [-?hVdDt] [-v verbosity level] [-o output file]\r\n\
         \x20                 [-c conf file] [-s stats port] [-a stats addr]\r\n\
         \x20                 [-i stats interval] [-p pid file] [-m mbuf size]\r\n\
         \n\
         Options:\r\n\
         \x20 -h, --help             : this help\r\n\
         \x20 -V, --version          : show version and exit\r\n\
         \x20 -t, --test-conf        : test configuration for syntax errors and exit\r\n\
         \x20 -d, --daemonize        : run as a daemon\r\n\
         \x20 -D, --describe-stats   : print stats description and exit\n\
         \x20 -v, --verbose=N        : set logging level (default: {DEFAULT_VERBOSITY}, min: {MIN_VERBOSITY}, max: {MAX_VERBOSITY})\r\n\
         \x20 -o, --output=S         : set logging file (default: stderr)\r\n\
         \x20 -c, --conf-file=S      : set configuration file (default: {DEFAULT_CONF_FILE})\r\n\
         \x20 -s, --stats-port=N     : set stats monitoring port (default: {DEFAULT_STATS_PORT})\r\n\
         \x20 -a, --stats-addr=S     : set stats monitoring ip (default: {DEFAULT_STATS_ADDR})\r\n\
         \x20 -i, --stats-interval=N : set stats aggregation interval in msec (default: {DEFAULT_STATS_INTERVAL_MS} msec)\r\n\
         \x20 -p, --pid-file=S       : set pid file (default: off)\r\n\
         \x20 -m, --mbuf-size=N      : set size of mbuf chunk in bytes (default: {DEFAULT_MBUF_SIZE} bytes)\r\n\
         \x20     --workers=N        : set number of worker threads (default: number of cores)\r\n\
         \x20     --send-mode=S      : override every pool's send_mode (batched or per_message)\r\n\
         \x20     --iov-max=N        : override every pool's iov_max ({MIN_IOV_MAX} to {MAX_IOV_MAX})\r\n\
         \x20     --send-limit=N     : override every pool's send_limit in bytes\r\n\
         \x20     --prometheus-port=N: serve prometheus metrics on this port (default: off)\r\n\
         \x20     --busy-poll=N      : poll N usec after activity before a worker sleeps (default: 0, off)\r\n\
         \x20     --wait=S           : when a worker runs out of work: sleep (default) or adaptive\r\n\
         \x20     --wait-cap=N       : most CPU percent adaptive waiting may spin (default: {DEFAULT_WAIT_CAP_PERCENT})\r\n\
         \x20     --io=S             : client socket I/O: epoll or uring (default: epoll)\r\n\
         \n"
    )
}

/// `-h` output: the version banner followed by the usage.
pub fn help_text() -> String {
    format!("{}{}", version_text(), usage_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<CliAction, CliError> {
        parse(args.iter().map(OsString::from))
    }

    #[track_caller]
    fn opts(args: &[&str]) -> Options {
        match run(args) {
            Ok(CliAction::Run(o)) => o,
            other => panic!("{args:?}: expected Run, got {other:?}"),
        }
    }

    #[track_caller]
    fn error(args: &[&str]) -> String {
        match run(args) {
            Err(e) => e.to_string(),
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = opts(&[]);
        assert_eq!(o, Options::default());
        assert_eq!(o.conf_file, "conf/nutcracker.yml");
        assert_eq!(o.verbosity, 5);
        assert_eq!(o.output, None);
        assert_eq!(o.stats_port, 22222);
        assert_eq!(o.stats_addr, "0.0.0.0");
        assert_eq!(o.stats_interval_ms, 30_000);
        assert_eq!(o.pid_file, None);
        assert_eq!(o.mbuf_size, 16384);
        assert!(!o.daemonize);
        assert_eq!(o.workers, None);
        assert_eq!(o.send_mode, None);
        assert_eq!(o.iov_max, None);
        assert_eq!(o.send_limit, None);
        assert_eq!(o.prometheus_port, None);
    }

    #[test]
    fn every_flag_short_and_long() {
        let short = opts(&[
            "-d",
            "-v",
            "7",
            "-o",
            "/tmp/log",
            "-c",
            "x.yml",
            "-s",
            "1234",
            "-i",
            "500",
            "-a",
            "127.0.0.1",
            "-p",
            "/tmp/pid",
            "-m",
            "512",
        ]);
        let long = opts(&[
            "--daemonize",
            "--verbose=7",
            "--output",
            "/tmp/log",
            "--conf-file=x.yml",
            "--stats-port",
            "1234",
            "--stats-interval=500",
            "--stats-addr",
            "127.0.0.1",
            "--pid-file=/tmp/pid",
            "--mbuf-size",
            "512",
        ]);
        assert_eq!(short, long);
        assert!(short.daemonize);
        assert_eq!(short.verbosity, 7);
        assert_eq!(short.output.as_deref(), Some("/tmp/log"));
        assert_eq!(short.conf_file, "x.yml");
        assert_eq!(short.stats_port, 1234);
        assert_eq!(short.stats_interval_ms, 500);
        assert_eq!(short.stats_addr, "127.0.0.1");
        assert_eq!(short.pid_file.as_deref(), Some("/tmp/pid"));
        assert_eq!(short.mbuf_size, 512);
    }

    #[test]
    fn getopt_forms() {
        assert_eq!(opts(&["-v5"]).verbosity, 5);
        assert_eq!(opts(&["-v", "5"]).verbosity, 5);
        assert_eq!(opts(&["--verbose=9"]).verbosity, 9);
        assert_eq!(opts(&["--verbose", "9"]).verbosity, 9);
        // bundled flags, with the last one taking the rest as its value
        assert_eq!(
            run(&["-td"]),
            Ok(CliAction::TestConf(Options {
                daemonize: true,
                ..Options::default()
            }))
        );
        let o = opts(&["-dv8"]);
        assert!(o.daemonize);
        assert_eq!(o.verbosity, 8);
        assert_eq!(opts(&["-dc", "f.yml"]).conf_file, "f.yml");
        // a value is taken from the next word even if it looks like an option
        assert_eq!(opts(&["-c", "-V"]).conf_file, "-V");
        assert_eq!(opts(&["-c", "--"]).conf_file, "--");
        assert_eq!(opts(&["--pid", "-V"]).pid_file.as_deref(), Some("-V"));
        // unique prefixes of nutcracker's long names
        assert_eq!(opts(&["--verb=3"]).verbosity, 3);
        assert_eq!(opts(&["--stats-p", "99"]).stats_port, 99);
        assert_eq!(opts(&["--c", "a.yml"]).conf_file, "a.yml");
        assert_eq!(opts(&["--p", "p"]).pid_file.as_deref(), Some("p"));
        // non-options are permuted away and ignored; "--" ends options
        assert_eq!(opts(&["extra", "-c", "a.yml", "more"]).conf_file, "a.yml");
        assert_eq!(opts(&["--", "-x"]), Options::default());
        assert_eq!(opts(&["-"]), Options::default());
        // later values win
        assert_eq!(opts(&["-c", "a", "-c", "b"]).conf_file, "b");
    }

    #[test]
    fn numbers_like_nc_atoi() {
        assert_eq!(opts(&["-v", "12"]).verbosity, 11, "clamped like log_init");
        assert_eq!(opts(&["-v", "2147483647"]).verbosity, 11);
        assert_eq!(opts(&["-v", "0"]).verbosity, 0);
        assert_eq!(opts(&["-s", "65535"]).stats_port, 65535);
        assert_eq!(opts(&["-s", "4294967297"]).stats_port, 1, "32-bit wrap");
        assert_eq!(opts(&["-i", "0"]).stats_interval_ms, 0);
        assert_eq!(opts(&["-m", "16777216"]).mbuf_size, 16_777_216);
        assert_eq!(opts(&["-o", ""]).output, None, "empty means stderr");
    }

    #[test]
    fn actions() {
        assert_eq!(run(&["-h"]), Ok(CliAction::Help));
        assert_eq!(run(&["--help"]), Ok(CliAction::Help));
        assert_eq!(run(&["--he"]), Ok(CliAction::Help));
        assert_eq!(run(&["-V"]), Ok(CliAction::Version));
        assert_eq!(run(&["--version"]), Ok(CliAction::Version));
        assert_eq!(run(&["-D"]), Ok(CliAction::DescribeStats));
        assert_eq!(run(&["--describe-stats"]), Ok(CliAction::DescribeStats));
        assert_eq!(run(&["-t", "-V"]), Ok(CliAction::Version));
        assert_eq!(run(&["-V", "-h"]), Ok(CliAction::Help));
        assert_eq!(run(&["-D", "-t"]), Ok(CliAction::DescribeStats));
        assert_eq!(
            run(&["-t", "-c", "x"]),
            Ok(CliAction::TestConf(Options {
                conf_file: "x".into(),
                ..Options::default()
            }))
        );
        assert_eq!(
            run(&["--test-conf"]),
            Ok(CliAction::TestConf(Options::default()))
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["-x"], "nutcracker: invalid option -- 'x'"),
            (&["-?"], "nutcracker: invalid option -- '?'"),
            (&["-:"], "nutcracker: invalid option -- ':'"),
            (&["-W"], "nutcracker: invalid option -- 'W'"),
            (&["-tdx"], "nutcracker: invalid option -- 'x'"),
            (&["-V", "-x"], "nutcracker: invalid option -- 'x'"),
            (&["--foo"], "nutcracker: invalid option -- '\0'"),
            (&["--stats"], "nutcracker: invalid option -- '\0'"),
            (&["--v"], "nutcracker: invalid option -- '\0'"),
            (&["--=x"], "nutcracker: invalid option -- '\0'"),
            (&["--help=3"], "nutcracker: invalid option -- 'h'"),
            (&["--version=1"], "nutcracker: invalid option -- 'V'"),
            (&["--test-conf=1"], "nutcracker: invalid option -- 't'"),
            (&["--daemonize=1"], "nutcracker: invalid option -- 'd'"),
            (&["--describe-stats=1"], "nutcracker: invalid option -- 'D'"),
            (&["-v"], "nutcracker: option -v requires a number"),
            (&["-v", "abc"], "nutcracker: option -v requires a number"),
            (&["-v", "-1"], "nutcracker: option -v requires a number"),
            (&["-vt"], "nutcracker: option -v requires a number"),
            (&["--verbose"], "nutcracker: option -v requires a number"),
            (&["--verbose=5x"], "nutcracker: option -v requires a number"),
            (&["-s"], "nutcracker: option -s requires a number"),
            (&["-s", "abc"], "nutcracker: option -s requires a number"),
            (
                &["-s", "2147483648"],
                "nutcracker: option -s requires a number",
            ),
            (
                &["-s", "0"],
                "nutcracker: option -s value 0 is not a valid port",
            ),
            (
                &["-s", "65536"],
                "nutcracker: option -s value 65536 is not a valid port",
            ),
            (
                &["-s", "4294967296"],
                "nutcracker: option -s value 0 is not a valid port",
            ),
            (
                &["--stats-port=0"],
                "nutcracker: option -s value 0 is not a valid port",
            ),
            (&["-i"], "nutcracker: option -i requires a number"),
            (&["-i", "-5"], "nutcracker: option -i requires a number"),
            (&["-m"], "nutcracker: option -m requires a number"),
            (
                &["-m", "0"],
                "nutcracker: option -m requires a non-zero number",
            ),
            (
                &["-m", "abc"],
                "nutcracker: option -m requires a non-zero number",
            ),
            (
                &["--mbuf-size="],
                "nutcracker: option -m requires a non-zero number",
            ),
            (
                &["-m", "2147483648"],
                "nutcracker: option -m requires a non-zero number",
            ),
            (
                &["-m", "511"],
                "nutcracker: mbuf chunk size must be between 512 and 16777216 bytes",
            ),
            (
                &["-m", "16777217"],
                "nutcracker: mbuf chunk size must be between 512 and 16777216 bytes",
            ),
            (&["-o"], "nutcracker: option -o requires a file name"),
            (&["-c"], "nutcracker: option -c requires a file name"),
            (
                &["--conf-file"],
                "nutcracker: option -c requires a file name",
            ),
            (&["-p"], "nutcracker: option -p requires a file name"),
            (&["-a"], "nutcracker: option -a requires a string"),
            (&["--stats-addr"], "nutcracker: option -a requires a string"),
        ];
        for (args, expected) in cases {
            assert_eq!(error(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn extensions() {
        let o = opts(&[
            "--workers",
            "4",
            "--send-mode=per_message",
            "--iov-max",
            "64",
            "--send-limit=1048576",
            "--prometheus-port",
            "9100",
            "--busy-poll",
            "200",
        ]);
        assert_eq!(o.workers, Some(4));
        assert_eq!(o.send_mode, Some(SendMode::PerMessage));
        assert_eq!(o.iov_max, Some(64));
        assert_eq!(o.send_limit, Some(1_048_576));
        assert_eq!(o.prometheus_port, Some(9100));
        assert_eq!(o.busy_poll_us, 200);
        assert_eq!(opts(&[]).busy_poll_us, 0, "off by default");
        assert_eq!(opts(&["--busy-poll=0"]).busy_poll_us, 0);
        assert_eq!(opts(&["--busy-poll=10000"]).busy_poll_us, 10_000);
        assert_eq!(opts(&[]).wait, WaitMode::Sleep, "sleep by default");
        assert_eq!(opts(&[]).wait_cap_percent, 30);
        let o = opts(&["--wait", "adaptive", "--wait-cap=100"]);
        assert_eq!((o.wait, o.wait_cap_percent), (WaitMode::Adaptive, 100));
        assert_eq!(opts(&["--wait=sleep"]).wait, WaitMode::Sleep);
        assert_eq!(opts(&["--wait-cap", "1"]).wait_cap_percent, 1);
        assert_eq!(
            opts(&["--send-mode", "batched"]).send_mode,
            Some(SendMode::Batched)
        );
        assert_eq!(opts(&["--iov-max=1"]).iov_max, Some(1));
        assert_eq!(opts(&["--iov-max=1024"]).iov_max, Some(1024));

        let cases: &[(&[&str], &str)] = &[
            (
                &["--workers"],
                "nutcracker: option --workers requires a number",
            ),
            (
                &["--workers=x"],
                "nutcracker: option --workers requires a number",
            ),
            (
                &["--workers=0"],
                "nutcracker: option --workers requires a non-zero number",
            ),
            (
                &["--send-mode"],
                "nutcracker: option --send-mode requires a string",
            ),
            (
                &["--send-mode=fast"],
                "nutcracker: option --send-mode value 'fast' is not \"batched\" or \"per_message\"",
            ),
            (
                &["--iov-max"],
                "nutcracker: option --iov-max requires a number",
            ),
            (
                &["--iov-max=0"],
                "nutcracker: option --iov-max value must be between 1 and 1024",
            ),
            (
                &["--iov-max=1025"],
                "nutcracker: option --iov-max value must be between 1 and 1024",
            ),
            (
                &["--send-limit=0"],
                "nutcracker: option --send-limit requires a non-zero number",
            ),
            (
                &["--send-limit=-1"],
                "nutcracker: option --send-limit requires a number",
            ),
            (
                &["--prometheus-port"],
                "nutcracker: option --prometheus-port requires a number",
            ),
            (
                &["--prometheus-port=70000"],
                "nutcracker: option --prometheus-port value 70000 is not a valid port",
            ),
            (
                &["--busy-poll"],
                "nutcracker: option --busy-poll requires a number",
            ),
            (
                &["--busy-poll=-5"],
                "nutcracker: option --busy-poll requires a number",
            ),
            (
                &["--busy-poll=10001"],
                "nutcracker: option --busy-poll value must be between 0 and 10000 usec",
            ),
            (&["--wait"], "nutcracker: option --wait requires a string"),
            (
                &["--wait=spin"],
                "nutcracker: option --wait value 'spin' is not \"sleep\" or \"adaptive\"",
            ),
            (
                &["--wait-cap=0"],
                "nutcracker: option --wait-cap value must be between 1 and 100 percent",
            ),
            (
                &["--wait-cap=101"],
                "nutcracker: option --wait-cap value must be between 1 and 100 percent",
            ),
            (
                &["--wait-cap=x"],
                "nutcracker: option --wait-cap requires a number",
            ),
            (
                &["--wait=adaptive", "--busy-poll=200"],
                "nutcracker: options --wait adaptive and --busy-poll cannot be combined",
            ),
            (&["--busy=100"], "nutcracker: invalid option -- '\0'"),
            // extensions cannot be abbreviated, so nutcracker's prefixes keep
            // their meaning
            (&["--work=2"], "nutcracker: invalid option -- '\0'"),
            (&["--send=batched"], "nutcracker: invalid option -- '\0'"),
        ];
        for (args, expected) in cases {
            assert_eq!(error(args), *expected, "{args:?}");
        }
    }

    #[test]
    fn overrides_apply_to_every_pool() {
        let yaml = "a:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\n\
                    b:\n  listen: 127.0.0.1:2\n  iov_max: 8\n  servers:\n   - 127.0.0.1:6379:1\n";
        let mut cfg = Config::from_yaml_str(yaml, "t").unwrap();
        opts(&[]).apply_overrides(&mut cfg);
        assert_eq!(cfg.pools[1].iov_max, 8, "no override, config value kept");
        let o = opts(&[
            "--send-mode=per_message",
            "--iov-max=16",
            "--send-limit=100",
        ]);
        o.apply_overrides(&mut cfg);
        for p in &cfg.pools {
            assert_eq!(p.send_mode, SendMode::PerMessage);
            assert_eq!(p.iov_max, 16);
            assert_eq!(p.send_limit, Some(100));
        }
    }

    #[test]
    fn texts() {
        let v = version_text();
        assert!(v.starts_with("This is ncproxy-"));
        assert!(v.ends_with(" (nutcracker-0.5.0 compatible)\nasync event backend: epoll\n\n"));
        let u = usage_text();
        assert!(
            u.starts_with("Usage: nutcracker [-?hVdDt] [-v verbosity level] [-o output file]\r\n")
        );
        assert!(u.contains("(default: conf/nutcracker.yml)\r\n"));
        assert!(u.contains("  -D, --describe-stats   : print stats description and exit\n"));
        for ext in [
            "--workers",
            "--send-mode",
            "--iov-max",
            "--send-limit",
            "--prometheus-port",
            "--busy-poll",
            "--wait=",
            "--wait-cap",
        ] {
            assert!(u.contains(ext), "{ext} missing from usage");
        }
        assert!(u.ends_with("\r\n\n"));
        assert_eq!(help_text(), format!("{v}{u}"));
    }

    #[test]
    fn io_mode() {
        assert_eq!(opts(&[]).io, IoMode::Epoll, "epoll by default");
        assert_eq!(opts(&["--io", "uring"]).io, IoMode::Uring);
        assert_eq!(opts(&["--io=epoll"]).io, IoMode::Epoll);
        assert_eq!(
            error(&["--io"]),
            "nutcracker: option --io requires a string"
        );
        assert_eq!(
            error(&["--io=poll"]),
            "nutcracker: option --io value 'poll' is not \"epoll\" or \"uring\""
        );
        // Long-only extensions must be spelled in full.
        assert!(run(&["--i=uring"]).is_err());
    }
}
