//! Errors of the recording core. Each names the thing and the value; the HTTP layer maps them to
//! status codes and stable snake_case codes.

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Bad input: a field that fails validation. `code` is stable, for clients.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// Valid input that the current state refuses (start while recording …).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Valid input from a caller who may not do this (a confidential session without a reason …).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Too many heavy reads of this kind running (`workload`): come back after the delay.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_seconds: u64,
    },
    /// A disk is too full for this (a new session, an export); running recordings go on.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        CoreError::Forbidden {
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        CoreError::Conflict {
            code,
            message: message.into(),
        }
    }
}

/// True for a unique-constraint violation on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().to_ascii_lowercase().contains("unique")
        }
        _ => false,
    }
}
