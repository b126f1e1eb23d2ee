//! Progress display: an indicatif bar when stderr is a terminal, plain
//! timestamped lines otherwise (CI logs), or nothing. Always on stderr, so
//! stdout carries only the result table.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Bar on a TTY (unless NO_COLOR or TERM=dumb), plain lines otherwise.
    Auto,
    Bar,
    Plain,
    Quiet,
}

/// Receives progress events from a run.
pub trait Progress: Send + Sync {
    /// A one-off message (backend choice, skipped target, ...).
    fn note(&self, msg: &str);
    /// A timed phase begins (one cell or capacity step), expected to last `secs`.
    fn phase(&self, label: &str, secs: f64);
    /// Replies so far in this phase, and time since it began.
    fn tick(&self, completed: u64, elapsed: Duration);
    /// The phase ended; `summary` is a short result line.
    fn finish(&self, summary: &str);
}

/// Makes the progress sink for `style`.
pub fn make(style: Style) -> Box<dyn Progress> {
    let tty = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true);
    match style {
        Style::Quiet => Box::new(Quiet),
        Style::Bar => Box::new(Bar::new()),
        Style::Auto if tty => Box::new(Bar::new()),
        _ => Box::new(Plain::new()),
    }
}

pub struct Quiet;

impl Progress for Quiet {
    fn note(&self, _: &str) {}
    fn phase(&self, _: &str, _: f64) {}
    fn tick(&self, _: u64, _: Duration) {}
    fn finish(&self, _: &str) {}
}

/// Plain lines with the time since start: readable in CI logs.
pub struct Plain {
    start: Instant,
    label: Mutex<String>,
}

impl Plain {
    pub fn new() -> Plain {
        Plain {
            start: Instant::now(),
            label: Mutex::new(String::new()),
        }
    }

    fn line(&self, msg: &str) {
        eprintln!("[{:7.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }
}

impl Default for Plain {
    fn default() -> Self {
        Plain::new()
    }
}

impl Progress for Plain {
    fn note(&self, msg: &str) {
        self.line(msg);
    }
    fn phase(&self, label: &str, secs: f64) {
        *self.label.lock().unwrap() = label.to_string();
        self.line(&format!("{label}: running (~{secs:.0}s)"));
    }
    fn tick(&self, _: u64, _: Duration) {}
    fn finish(&self, summary: &str) {
        let label = self.label.lock().unwrap().clone();
        self.line(&format!("{label}: {summary}"));
    }
}

/// An indicatif bar per phase, with the live request rate.
pub struct Bar {
    bar: Mutex<Option<(ProgressBar, String)>>,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            bar: Mutex::new(None),
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Progress for Bar {
    fn note(&self, msg: &str) {
        match &*self.bar.lock().unwrap() {
            Some((b, _)) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn phase(&self, label: &str, secs: f64) {
        let b =
            ProgressBar::with_draw_target(Some((secs * 10.0) as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_prefix(label.to_string());
        *self.bar.lock().unwrap() = Some((b, label.to_string()));
    }
    fn tick(&self, completed: u64, elapsed: Duration) {
        if let Some((b, _)) = &*self.bar.lock().unwrap() {
            b.set_position((elapsed.as_secs_f64() * 10.0) as u64);
            let rate = completed as f64 / elapsed.as_secs_f64().max(1e-3);
            b.set_message(format!("{:.0} req/s", rate));
        }
    }
    fn finish(&self, summary: &str) {
        if let Some((b, label)) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
            eprintln!("{label}: {summary}");
        }
    }
}
