//! The harness error type.

use std::io;
use std::time::Duration;

/// Everything that can go wrong while starting or talking to a child process.
///
/// The `Display` text is meant to be read in a failing test's output: it names
/// the binary, the reason and, where there is one, the tail of the child's log.
/// `Debug` prints the same text, so `.expect("start redis")` shows it too.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required binary is not installed (and its override variable is unset).
    #[error("required binary `{name}` not found (looked at ${env}, PATH and {fallbacks}); {hint}")]
    BinaryNotFound {
        /// Binary name, e.g. `redis-server`.
        name: String,
        /// The environment variable that overrides the lookup.
        env: String,
        /// The fixed locations that were tried.
        fallbacks: String,
        /// How to install it.
        hint: String,
    },
    /// An override variable points at a file that does not exist.
    #[error("${env} is set to `{path}`, which is not an executable file")]
    BadOverride {
        /// The variable.
        env: String,
        /// Its value.
        path: String,
    },
    /// An I/O error, with what the harness was doing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The child exited (or failed in another way) before it became ready.
    #[error("{what} failed to start: {reason}\n--- log tail ---\n{log}")]
    StartFailed {
        /// Which process, e.g. `redis-server on 127.0.0.1:20001`.
        what: String,
        /// Why.
        reason: String,
        /// Tail of the child's output.
        log: String,
    },
    /// The child did not become ready in time.
    #[error("{what} not ready after {waited:?}\n--- log tail ---\n{log}")]
    Timeout {
        /// Which process.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// Tail of the child's output.
        log: String,
    },
    /// No free loopback port could be found.
    #[error("no free loopback port found after {tries} candidates")]
    NoFreePort {
        /// How many candidates were probed.
        tries: usize,
    },
    /// A configuration given to the harness is unusable (e.g. no `listen:`).
    #[error("bad configuration: {0}")]
    Config(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
