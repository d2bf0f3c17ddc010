//! The store's one error type.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("unsupported format version {version} in {path}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("catalog error: {0}")]
    Catalog(#[from] sled::Error),
    #[error("invalid matcher: {0}")]
    InvalidMatcher(String),
    #[error("invalid tenant id {0:?}: use 1-150 characters of [A-Za-z0-9_.-]")]
    InvalidTenant(String),
    #[error("query limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("the store is shutting down")]
    ShuttingDown,
    /// A query ran past the deadline its caller gave it, and stopped.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Writes come faster than the store can persist them; the writer should retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
