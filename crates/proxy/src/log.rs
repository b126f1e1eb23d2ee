//! nutcracker-style logging: `[YYYY-MM-DD HH:MM:SS.mmm] message` lines on
//! stderr or a log file, filtered by a global level (`-v`, 0..=11, default 5).
//! Logging is for events (connects, failures, bad input), never per request.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const LOG_EMERG: u8 = 0;
pub const LOG_ERR: u8 = 3;
pub const LOG_WARN: u8 = 4;
pub const LOG_NOTICE: u8 = 5;
pub const LOG_INFO: u8 = 6;
pub const LOG_DEBUG: u8 = 7;
pub const LOG_MAX: u8 = 11;

static LEVEL: AtomicU8 = AtomicU8::new(LOG_NOTICE);
static OUTPUT: Mutex<Option<(String, File)>> = Mutex::new(None);
/// The descriptor log lines go to, for the fatal-signal handler, which may
/// not take a lock: stderr until `set_output`.
static OUTPUT_FD: AtomicI32 = AtomicI32::new(2);

/// Sets the level; values above 11 are clamped, as nutcracker's log_init does.
pub fn set_level(level: u8) {
    LEVEL.store(level.min(LOG_MAX), Relaxed);
}

pub fn level() -> u8 {
    LEVEL.load(Relaxed)
}

/// Logs to `path` (appending) instead of stderr.
pub fn set_output(path: &str) -> std::io::Result<()> {
    let file = OpenOptions::new().append(true).create(true).open(path)?;
    OUTPUT_FD.store(file.as_raw_fd(), Relaxed);
    *OUTPUT.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.to_string(), file));
    Ok(())
}

/// Reopens the log file (SIGHUP, for log rotation).
pub fn reopen() -> std::io::Result<()> {
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, file)) = output.as_mut() {
        *file = OpenOptions::new().append(true).create(true).open(&*path)?;
        OUTPUT_FD.store(file.as_raw_fd(), Relaxed);
    }
    Ok(())
}

/// Writes one line at `level` if the current level lets it through.
pub fn log(level: u8, args: fmt::Arguments<'_>) {
    if level > LEVEL.load(Relaxed) {
        return;
    }
    let line = format!("[{}] {}\n", timestamp(), args);
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    match output.as_mut() {
        Some((_, file)) => {
            let _ = file.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Logged whatever the level (nutcracker's `loga`).
pub fn always(args: fmt::Arguments<'_>) {
    log(LOG_EMERG, args);
}

pub fn error(args: fmt::Arguments<'_>) {
    log(LOG_ERR, args);
}

pub fn warn(args: fmt::Arguments<'_>) {
    log(LOG_WARN, args);
}

pub fn notice(args: fmt::Arguments<'_>) {
    log(LOG_NOTICE, args);
}

pub fn debug(args: fmt::Arguments<'_>) {
    log(LOG_DEBUG, args);
}

/// Logs SIGSEGV, SIGBUS and SIGABRT as nutcracker logs a fatal signal
/// (`signal 11 (SIGSEGV) received, core dumping`), then lets the default
/// action (a core dump) happen, so log-scraping tools keep working.
pub fn log_fatal_signals() -> std::io::Result<()> {
    crate::io::sys::on_fatal_signals(fatal_signal)
}

/// The fatal-signal handler's body: async-signal-safe (no lock, no
/// allocation): the line is formatted on the stack and written with one
/// `write(2)` to the log descriptor.
fn fatal_signal(signo: i32, name: &str, seconds: u64, millis: u32) {
    let mut line = [0u8; 96];
    let len = fatal_signal_line(&mut line, signo, name, seconds, millis);
    crate::io::sys::write_fd(OUTPUT_FD.load(Relaxed), &line[..len]);
}

/// `[YYYY-MM-DD HH:MM:SS.mmm] signal N (NAME) received, core dumping\n`
/// into `out`; returns its length.
fn fatal_signal_line(out: &mut [u8; 96], signo: i32, name: &str, secs: u64, millis: u32) -> usize {
    struct Cursor<'a> {
        out: &'a mut [u8; 96],
        len: usize,
    }
    impl Cursor<'_> {
        fn text(&mut self, s: &[u8]) {
            for &b in s {
                if self.len < self.out.len() {
                    self.out[self.len] = b;
                    self.len += 1;
                }
            }
        }
        fn number(&mut self, mut n: u64, width: usize) {
            let mut digits = [b'0'; 20];
            let mut i = digits.len();
            while n > 0 || digits.len() - i < width.max(1) {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            self.text(&digits[i..]);
        }
    }
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut c = Cursor { out, len: 0 };
    c.text(b"[");
    c.number(year as u64, 4);
    c.text(b"-");
    c.number(u64::from(month), 2);
    c.text(b"-");
    c.number(u64::from(day), 2);
    c.text(b" ");
    c.number(rem / 3600, 2);
    c.text(b":");
    c.number(rem % 3600 / 60, 2);
    c.text(b":");
    c.number(rem % 60, 2);
    c.text(b".");
    c.number(u64::from(millis), 3);
    c.text(b"] signal ");
    c.number(signo as u64, 1);
    c.text(b" (");
    c.text(name.as_bytes());
    c.text(b") received, core dumping\n");
    c.len
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_signal_lines_read_as_nutcracker_writes_them() {
        let mut out = [0u8; 96];
        // 2026-11-24 13:05:09.007 UTC
        let secs = 20_781 * 86_400 + 13 * 3600 + 5 * 60 + 9;
        let len = fatal_signal_line(&mut out, 11, "SIGSEGV", secs, 7);
        assert_eq!(
            std::str::from_utf8(&out[..len]).unwrap(),
            "[2026-11-24 13:05:09.007] signal 11 (SIGSEGV) received, core dumping\n"
        );
        assert_eq!(
            &timestamp()[..2],
            "20",
            "the same clock as the other log lines"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
