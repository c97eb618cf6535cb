//! Projects as the trading platform knows them (standard 5.2): a project with its bid sections
//! (标段/包), trading category and method (ids of the trading catalogue, `crate::catalogue`),
//! tenderer, agent and the responsible service person (5.2.4). Registered at the counter by
//! witness staff or by the trading system through an integration token (`projects_register`).
//!
//! - `problems.rs`: every problem of a request at once (一次性告知), each with its field, a stable
//!   code and a Chinese and an English sentence.
//! - `register.rs`: registration of a project with its sections, and sections added later.
//! - `sections.rs`: a section's lifecycle (registered → in_progress → closed, suspended,
//!   terminated), its append-only history, and the retention clock it starts when the last
//!   open section of a project ends.
//! - `view.rs`: the list and one project (its sections, their history, its sessions and its
//!   retention clocks), within the caller's scope.
//!
//! Above `retention/` (a project's end feeds `retention::projects::record_events`, and a project
//! nobody registered is scoped as retention scopes it), below `sessions/`.

pub mod problems;
pub mod register;
pub mod sections;
pub mod view;

pub use problems::Problem;

use crate::retention::RetentionError;

/// What a project operation refuses, and why; `code` is the stable snake_case name clients
/// match on. The HTTP layer maps each variant to one status.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The request's problems, every one of them (422).
    #[error("{}", problems::summary(problems))]
    Invalid {
        code: &'static str,
        problems: Vec<Problem>,
    },
    /// The project or section does not exist (404).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// Outside the caller's scope, or a step their role may not take (403).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Valid input the current state refuses: a code taken, a transition not allowed (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Retention(#[from] RetentionError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ProjectError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ProjectError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ProjectError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ProjectError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// The stable code of a refusal, for the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            ProjectError::Invalid { code, .. }
            | ProjectError::NotFound { code, .. }
            | ProjectError::Forbidden { code, .. }
            | ProjectError::Conflict { code, .. } => code,
            ProjectError::Retention(_) | ProjectError::Db(_) => "internal",
        }
    }
}
