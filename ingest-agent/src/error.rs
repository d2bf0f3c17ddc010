//! The agent library's one error type. Parse failures of observed payloads are not errors (they
//! are data we could not read and are reported as such); these are failures of the agent itself.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the kernel object: {0}")]
    Load(#[from] Box<aya::EbpfError>),

    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("map {0} is not in the loaded object (already taken, or the object is not ours)")]
    MissingMap(&'static str),

    #[error("program {program}: {message}")]
    Program {
        program: &'static str,
        message: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("event record of {len} bytes is too short for kind {kind}")]
    ShortRecord { kind: u32, len: usize },

    #[error("event record of unknown kind {0}")]
    UnknownEventKind(u32),

    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn map(name: &'static str, source: aya::maps::MapError) -> Self {
        Error::Map {
            name,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
