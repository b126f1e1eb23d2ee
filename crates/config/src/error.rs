//! Configuration errors, rendered exactly as nutcracker 0.5.0 reports them.
//!
//! nutcracker reports a bad configuration in two places: the *log* gets one or
//! two detail lines (`[ts] nc_conf.c:529 conf: directive "hash" is not a valid
//! hash`), and stderr gets `nutcracker: configuration file 'f' syntax is
//! invalid`. Some failures log nothing at all (an empty YAML scalar), and a
//! missing file logs only the open failure and never prints the "syntax is
//! invalid" line. [`ConfigError`] keeps all of that so the binary can reproduce
//! each stream byte for byte.

use std::fmt;

/// One line nutcracker writes to its log for a configuration failure.
///
/// `file` and `line` are the C source location nutcracker 0.5.0 prints after the
/// timestamp; they are cosmetic but reproduced so logs diff cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// C source file nutcracker logs from (`nc_conf.c`, `nc_util.c`).
    pub file: &'static str,
    /// Line number in that file, as printed by nutcracker 0.5.0 (Debian build).
    pub line: u32,
    /// The message text, e.g. `conf: directive "foo" is unknown`.
    pub message: String,
}

impl LogLine {
    pub(crate) fn conf(line: u32, message: impl Into<String>) -> LogLine {
        LogLine {
            file: "nc_conf.c",
            line,
            message: message.into(),
        }
    }

    /// `nc_conf.c:536`: the location prefix nutcracker prints after the timestamp.
    pub fn source(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The full log line given a timestamp such as `2024-01-02 03:04:05.678`:
    /// `[2024-01-02 03:04:05.678] nc_conf.c:536 conf: directive "foo" is unknown`.
    pub fn render(&self, timestamp: &str) -> String {
        format!(
            "[{}] {}:{} {}",
            timestamp, self.file, self.line, self.message
        )
    }
}

/// Why a configuration was rejected, coarse enough for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be opened or read; nutcracker logs only the open
    /// failure and does not print "syntax is invalid".
    Open,
    /// libyaml could not load the stream, or the YAML shape is not one
    /// nutcracker accepts (documents, tokens, structure).
    Yaml,
    /// A directive's value was rejected while parsing.
    Directive,
    /// Post-parse validation (missing listen, duplicates, ...).
    Validation,
}

/// A rejected configuration, with everything nutcracker would print for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    kind: ConfigErrorKind,
    lines: Vec<LogLine>,
}

impl ConfigError {
    pub(crate) fn new(path: &str, kind: ConfigErrorKind, lines: Vec<LogLine>) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            kind,
            lines,
        }
    }

    pub(crate) fn one(path: &str, kind: ConfigErrorKind, line: LogLine) -> ConfigError {
        ConfigError::new(path, kind, vec![line])
    }

    /// The configuration file path as given (used verbatim in messages).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Coarse classification of the failure.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The detail lines nutcracker logs, in order. Empty when nutcracker logs
    /// nothing (e.g. an empty scalar value such as `hash: ""`).
    pub fn log_lines(&self) -> &[LogLine] {
        &self.lines
    }

    /// The last detail message (the `conf: ...` line), if nutcracker logs one.
    pub fn message(&self) -> Option<&str> {
        self.lines.last().map(|l| l.message.as_str())
    }

    /// True when the file could not be opened: nutcracker then prints no
    /// "syntax is invalid" line in run mode.
    pub fn is_open_failure(&self) -> bool {
        self.kind == ConfigErrorKind::Open
    }

    /// The stderr line nutcracker prints after a parse failure in run mode, or
    /// `None` for an open failure (nutcracker prints nothing there).
    pub fn syntax_invalid_line(&self) -> Option<String> {
        (!self.is_open_failure()).then(|| syntax_invalid_line(&self.path))
    }

    /// Exactly what `nutcracker -t` writes to stderr for this error, newlines
    /// included. nutcracker's logger is not initialised under `-t`, so no detail
    /// is shown; the "invalid" line appears twice (once from conf_create, once
    /// from nc_test_conf) except for an open failure, where it appears once.
    pub fn test_conf_stderr(&self) -> String {
        let line = syntax_invalid_line(&self.path);
        if self.is_open_failure() {
            format!("{line}\n")
        } else {
            format!("{line}\n{line}\n")
        }
    }
}

/// `nutcracker: configuration file '<f>' syntax is invalid`
pub fn syntax_invalid_line(path: &str) -> String {
    format!("nutcracker: configuration file '{path}' syntax is invalid")
}

/// `nutcracker: configuration file '<f>' syntax is ok` (printed by `-t`).
pub fn syntax_ok_line(path: &str) -> String {
    format!("nutcracker: configuration file '{path}' syntax is ok")
}

impl fmt::Display for ConfigError {
    /// The detail messages nutcracker logs, one per line without the
    /// timestamp/source prefix. When nutcracker logs nothing, the stderr
    /// "syntax is invalid" line is shown instead so the error is never blank.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            return f.write_str(&syntax_invalid_line(&self.path));
        }
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&l.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
