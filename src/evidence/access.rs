//! Who sees recorded media. Every replay, download and live view of a session is audited, and
//! a confidential (评标) session is seen only with a recorded reason; a refusal is audited too.
//! The HTTP handlers, the exporter and any later entry point go through here.

use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::index::SessionRow;

/// One look at a session's media, about to happen.
pub struct MediaAccess<'a> {
    pub actor: &'a Actor,
    /// `replay_start`, `download`, `live_view` …
    pub action: &'a str,
    pub session: &'a SessionRow,
    /// What is looked at (`session/source`, with a range for downloads).
    pub target: String,
    /// Why, in the viewer's words; required for confidential sessions.
    pub reason: &'a str,
}

impl MediaAccess<'_> {
    fn event(&self) -> audit::Event<'_> {
        audit::Event::new(self.actor, self.action)
            .session(&self.session.id, &self.session.project_code)
            .target(&self.target)
            .reason(self.reason)
            .flagged(self.session.kind.is_confidential())
    }

    /// Refuses (and audits the refusal) a confidential session's media asked for without a
    /// reason.
    pub async fn refuse_confidential_without_reason(&self, pool: &Pool) -> Result<(), CoreError> {
        if !self.session.kind.is_confidential() || !self.reason.trim().is_empty() {
            return Ok(());
        }
        self.event()
            .outcome(Outcome::Denied(
                "no reason given for a confidential session".into(),
            ))
            .append(pool)
            .await?;
        Err(CoreError::forbidden(
            "reason_required",
            format!(
                "session {} is a confidential {} session: {} needs ?reason=… (it is recorded)",
                self.session.id, self.session.kind, self.action
            ),
        ))
    }

    /// The audit entry of an allowed access, written before the media leaves.
    pub async fn record(&self, pool: &Pool) -> Result<(), CoreError> {
        self.event().append(pool).await?;
        Ok(())
    }
}
