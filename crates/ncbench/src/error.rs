//! Error types of the library, and the exit code each maps to.
//!
//! The binary prints an error once and exits with [`BenchError::exit_code`]:
//! 2 for anything the user must fix in their input (config, flags, files),
//! 1 for a run that completed but failed a gate or an integrity check
//! (reported through the result, not through this type), and 2 for setup
//! failures too, because a benchmark that cannot start is a usage problem
//! from the point of view of a CI script (no result to judge).
use std::fmt;
use std::path::PathBuf;

/// A configuration problem: which file, which key, what is wrong. Displayed on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<built-in quick.toml>`).
    pub file: String,
    /// Dotted key path (`workload.mix.get`, `gate[1].min`), or empty when unknown.
    pub key: String,
    /// What is wrong, in a few words.
    pub problem: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, always: CI logs and terminals both show it whole.
        let problem = self.problem.replace('\n', " ");
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, problem)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Everything that can stop ncbench from producing a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{file}: {problem}")]
    Result { file: String, problem: String },
}

impl BenchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn setup(msg: impl Into<String>) -> Self {
        BenchError::Setup(msg.into())
    }

    /// Process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
