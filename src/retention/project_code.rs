//! The code of a trading project, checked once where it comes in: holds, complaints, project
//! events and project views all take it typed.

use super::RetentionError;
use crate::ledger::values::valid_code;

/// A project code that can exist: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` (it goes into object keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectCode(String);

impl ProjectCode {
    /// Refused as `project_not_found`: no project can have such a code.
    pub fn parse(code: &str) -> Result<ProjectCode, RetentionError> {
        if !valid_code(code) {
            return Err(RetentionError::not_found(
                "project_not_found",
                format!("{code:?} is not a project code"),
            ));
        }
        Ok(ProjectCode(code.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
