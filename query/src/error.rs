//! The query layer's one error type, with the Prometheus `errorType` each variant maps to.

/// Prometheus's `errorType` vocabulary, which the HTTP layer maps to status codes
/// (`bad_data` → 400, `execution` → 422, `timeout`/`canceled` → 503, `internal` → 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
}

impl ErrorKind {
    /// The `errorType` string of the Prometheus HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadData => "bad_data",
            ErrorKind::Execution => "execution",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text does not parse or type-check; the message is the parser's.
    #[error("{0}")]
    Parse(String),
    /// Query parameters that cannot be evaluated (for example a non-positive step).
    #[error("{0}")]
    InvalidParameter(String),
    /// Evaluation failed on the data (duplicate label sets, many-to-many matching, …).
    #[error("{0}")]
    Execution(String),
    /// Prometheus's `ErrTooManySamples`.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Prometheus's `ErrQueryTimeout`; the text names where time ran out ("expression evaluation",
    /// "query queue").
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    #[error("expanding series: {0}")]
    Storage(#[from] strata_store::Error),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Parse(_) | QueryError::InvalidParameter(_) => ErrorKind::BadData,
            QueryError::Execution(_) | QueryError::TooManySamples => ErrorKind::Execution,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::Canceled(_) => ErrorKind::Canceled,
            // A store-side limit is the query's fault, like the sample limit; anything else from
            // the store is ours.
            QueryError::Storage(strata_store::Error::LimitExceeded(_)) => ErrorKind::Execution,
            QueryError::Storage(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;
