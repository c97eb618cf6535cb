//! Trusted timestamps (`[signing] tsa_url`) for what the server signed: every stopped session's
//! manifest (the token beside it in the store, `manifest.json.tsr`) and every audit checkpoint
//! (the token in SQL). A background job, never the stop: a session is sealed whether the TSA
//! answers or not. A token still missing `tsa_alarm_seconds` after its manifest or checkpoint was
//! signed raises the alarm (log, `/metrics`, room status, one `tsa_unavailable` audit entry per
//! outage; `tsa_recovered` when it clears). Tokens are asked for again every `tsa_retry_seconds`.

use std::sync::Arc;

use object_store::{PutMode, PutOptions};

use super::Core;
use crate::audit::{self, Actor, checkpoint::Checkpoint};
use crate::error::CoreError;
use crate::ledger::timestamp;
use crate::ledger::tsa::{self, Subject, Tsa};
use crate::time::now_us;

/// Items fetched per query; a round goes on until nothing is left or the TSA fails.
const BATCH: i64 = 100;

/// Runs the job until the process ends (nothing to do without a TSA).
pub fn spawn(core: Arc<Core>) {
    if core.timestamps.tsa.is_none() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let failure = core.timestamp_round().await.err();
            if let Err(e) = core.timestamp_alarm(failure.as_deref()).await {
                tracing::warn!(error = %e, "timestamp alarm not updated");
            }
            let t = &core.timestamps;
            tokio::select! {
                _ = t.wake.notified() => {}
                _ = tokio::time::sleep(t.retry) => {}
            }
        }
    });
}

impl Core {
    /// Asks the TSA for every missing token, oldest first; stops at the first failure (the TSA
    /// down or refusing), which it returns.
    async fn timestamp_round(&self) -> Result<(), String> {
        let Some(tsa) = &self.timestamps.tsa else {
            return Ok(());
        };
        loop {
            let manifests = tsa::unstamped_manifests(&self.pool, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let checkpoints = audit::checkpoint::unstamped(&self.pool, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if manifests.is_empty() && checkpoints.is_empty() {
                return Ok(());
            }
            for m in &manifests {
                self.stamp_manifest(tsa, &m.session_id, &m.manifest_key)
                    .await
                    .inspect_err(|_| self.count_failure())?;
            }
            for c in &checkpoints {
                self.stamp_checkpoint(tsa, c)
                    .await
                    .inspect_err(|_| self.count_failure())?;
            }
        }
    }

    fn count_failure(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.timestamps.failures_total.fetch_add(1, Relaxed);
    }

    /// A token for the manifest as stored, stored create-only beside it (a token another node
    /// stored first is kept, once it is checked), then recorded in SQL.
    async fn stamp_manifest(&self, tsa: &Tsa, session_id: &str, key: &str) -> Result<(), String> {
        let body = self
            .store
            .get(&key.into())
            .await
            .map_err(|e| format!("manifest {key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("manifest {key}: {e}"))?;
        let (token, stamp) = tsa.stamp(&body).await?;
        let token_key = tsa::token_key(key);
        let put = self
            .store
            .put_opts(
                &token_key.as_str().into(),
                token.clone().into(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        let (token, stamp) = match put {
            Ok(_) => (token, stamp),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self
                    .store
                    .get(&token_key.as_str().into())
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_vec();
                let stamp = timestamp::verify(&there, &body, Some(&tsa.ca))
                    .map_err(|e| format!("{token_key} already stored and refused: {e}"))?;
                (there, stamp)
            }
            Err(e) => return Err(format!("{token_key}: {e}")),
        };
        tsa::insert_token(&self.pool, Subject::Manifest, session_id, &token, &stamp)
            .await
            .map_err(|e| e.to_string())?;
        self.obtained(&stamp, &token_key);
        Ok(())
    }

    /// A token for the checkpoint's signed text, recorded in SQL.
    async fn stamp_checkpoint(&self, tsa: &Tsa, c: &Checkpoint) -> Result<(), String> {
        let message = Checkpoint::message(c.seq, &c.entry_hash, c.at_us);
        let (token, stamp) = tsa.stamp(message.as_bytes()).await?;
        let subject = c.seq.to_string();
        tsa::insert_token(
            &self.pool,
            Subject::AuditCheckpoint,
            &subject,
            &token,
            &stamp,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.obtained(&stamp, &format!("audit checkpoint {subject}"));
        Ok(())
    }

    fn obtained(&self, stamp: &timestamp::Stamp, what: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        self.timestamps.obtained_total.fetch_add(1, Relaxed);
        tracing::debug!(%what, tsa = %stamp.tsa, at = %crate::time::rfc3339(stamp.gen_time_us), "timestamp token stored");
    }

    /// After a round: counts what is still missing; raises the alarm when something has waited
    /// longer than the bound (audited once per outage), clears it when nothing has.
    async fn timestamp_alarm(&self, failure: Option<&str>) -> Result<(), CoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let t = &self.timestamps;
        let bound = now_us() - t.alarm_after.as_micros() as i64;
        let manifests = tsa::unstamped_manifests(&self.pool, 10_000).await?;
        let checkpoints = audit::checkpoint::unstamped(&self.pool, 10_000).await?;
        let overdue = manifests.iter().filter(|m| m.stopped_at_us < bound).count()
            + checkpoints.iter().filter(|c| c.at_us < bound).count();
        t.pending
            .store((manifests.len() + checkpoints.len()) as u64, Relaxed);
        t.overdue.store(overdue as u64, Relaxed);
        let alarm = (overdue > 0).then(|| {
            format!(
                "{overdue} timestamp tokens missing for more than {} s (TSA {}): {}",
                t.alarm_after.as_secs_f64(),
                t.tsa.as_ref().map_or("", |x| x.url.as_str()),
                failure.unwrap_or("not answered yet")
            )
        });
        let raised = alarm.is_some();
        if !t.set_alarm(alarm.clone()) {
            return Ok(());
        }
        let system = Actor::local("system");
        let event = if raised {
            let alarm = alarm.unwrap_or_default();
            tracing::error!(%alarm, "ALARM: timestamp authority unavailable; recording goes on, tokens will be asked for again");
            audit::Event::new(&system, "tsa_unavailable")
                .reason(alarm)
                .flagged(true)
        } else {
            tracing::info!("timestamp authority answering again; every token obtained");
            audit::Event::new(&system, "tsa_recovered")
        };
        event
            .target(t.tsa.as_ref().map_or("", |x| x.url.as_str()))
            .append(&self.pool)
            .await?;
        Ok(())
    }
}
