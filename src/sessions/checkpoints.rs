//! Before anything more is signed for a session (its manifest at `finish`, new chain
//! checkpoints after a resume), its chains as the database holds them are checked: links and
//! hashes, and every checkpoint signed while it recorded. A difference halts signing for the
//! session: an alarm (`witness_signing_halted` in /metrics, the room card), one audit entry
//! `chain_tampered`, and `finish` refuses with 409 `chain_tampered`. Recording goes on.

use std::collections::BTreeMap;

use super::Core;
use crate::audit::{self, Actor};
use crate::error::CoreError;
use crate::ledger::chain;
use crate::ledger::checkpoint;
use crate::ledger::index::{self, SessionRow};
use crate::ledger::writer::recording_prefix;

/// The error code of a session whose chains differ from what was signed while it recorded.
pub const CHAIN_TAMPERED: &str = "chain_tampered";

impl Core {
    /// Checks every chain of `session` against itself and its checkpoints. Returns the seqs of
    /// each recording's checkpoints (by recording id) for the manifest to list; on a
    /// difference, halts the session's signing and fails with 409 `chain_tampered`.
    pub(super) async fn check_checkpoints(
        &self,
        session: &SessionRow,
    ) -> Result<BTreeMap<String, Vec<i64>>, CoreError> {
        if let Some(problem) = self.metrics.signing_halted(&session.id) {
            return Err(tampered(session, &problem));
        }
        let keys = self.signer.all_public_keys();
        let mut listed = BTreeMap::new();
        for rec in index::recordings(&self.pool, &session.id).await? {
            let entries = index::entries(&self.pool, &rec.id).await?;
            let genesis = chain::genesis_detail(
                &session.project_code,
                &session.id,
                &session.session_code,
                &session.room_id,
                &rec.source_name,
            );
            let prefix = recording_prefix(&session.project_code, &session.id, &rec.source_name);
            let found = checkpoint::load(&self.store, &prefix, &keys)
                .await
                .map_err(CoreError::Internal)?;
            let problem = chain::check_links(&rec.id, &genesis, &entries)
                .err()
                .map(|e| format!("chain: {e}"))
                .or_else(|| {
                    checkpoint::problems(&rec.id, &entries, &found, &[])
                        .into_iter()
                        .next()
                        .map(|(_, p)| p)
                });
            if let Some(p) = problem {
                let problem = format!("source {}: {p}", rec.source_name);
                self.halt_signing(session, &problem).await;
                return Err(tampered(session, &problem));
            }
            listed.insert(rec.id.clone(), checkpoint::seqs(&found));
        }
        Ok(listed)
    }

    /// Signing stops for the session: logged, the alarm raised, audited once.
    async fn halt_signing(&self, session: &SessionRow, problem: &str) {
        tracing::error!(session = %session.id, room = %session.room_id, %problem, "chain differs from what was signed while recording: nothing more is signed for this session");
        if self.metrics.halt_signing(&session.id, problem) {
            let appended = audit::Event::new(&Actor::local("system"), CHAIN_TAMPERED)
                .session(&session.id, &session.project_code)
                .target(&session.room_id)
                .reason(problem)
                .append(&self.pool)
                .await;
            if let Err(e) = appended {
                tracing::error!(session = %session.id, error = %e, "chain_tampered not audited");
            }
        }
    }
}

fn tampered(session: &SessionRow, problem: &str) -> CoreError {
    CoreError::conflict(
        CHAIN_TAMPERED,
        format!(
            "session {}: its chains differ from what was signed while it recorded ({problem}); nothing more is signed for it",
            session.id
        ),
    )
}

/// Whether an error is a refusal to sign that stands until people look: [`CHAIN_TAMPERED`], or
/// `manifest_exists` (a manifest already stored that does not match the chains).
pub fn refuses_signing(e: &CoreError) -> bool {
    matches!(e, CoreError::Conflict { code, .. } if *code == CHAIN_TAMPERED || *code == "manifest_exists")
}
