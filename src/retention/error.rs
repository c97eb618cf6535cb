//! What a retention operation refuses, and why. The variant says what kind of refusal it is
//! (bad input, nothing there, not for this caller, not in this state); `code` is the stable
//! snake_case name clients match on. The HTTP layer maps each variant to one status.

use crate::error::CoreError;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A field that fails validation.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// What the request names does not exist (`hold_not_found`, `project_not_found` …).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// Outside what the caller may see (`out_of_scope`).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Valid input that the rules or the current state refuse (`same_person`,
    /// `not_disposable` …).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The object store refused a deletion; the detail is for the server log.
    #[error("object store: {0}")]
    Store(String),
    /// A refusal of the recording core (a session or room that does not exist …).
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl RetentionError {
    /// A field that fails validation (`invalid_field`).
    pub fn invalid(message: impl Into<String>) -> Self {
        RetentionError::Invalid {
            code: "invalid_field",
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        RetentionError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        RetentionError::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        RetentionError::Conflict {
            code,
            message: message.into(),
        }
    }
}

/// A free-text field: not blank, at most `max` characters.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), RetentionError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(RetentionError::invalid(format!(
            "{field}: 1 to {max} characters"
        )));
    }
    Ok(())
}
