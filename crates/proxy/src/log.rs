//! nutcracker-style logging: `[YYYY-MM-DD HH:MM:SS.mmm] message` lines on
//! stderr or a log file, filtered by a global level (`-v`, 0..=11, default 5).
//! Logging is for events (connects, failures, bad input), never per request.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
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
    *OUTPUT.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.to_string(), file));
    Ok(())
}

/// Reopens the log file (SIGHUP, for log rotation).
pub fn reopen() -> std::io::Result<()> {
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, file)) = output.as_mut() {
        *file = OpenOptions::new().append(true).create(true).open(&*path)?;
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
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
