//! Trusted timestamps (`[signing] tsa_url`) for what the server signed: every stopped session's
//! manifest (the token beside it in the store, `manifest.json.tsr`), every audit checkpoint
//! (the token in SQL) and every chain checkpoint signed while recording (listed in
//! `chain_checkpoints`; the token beside it, `{seq:08}.checkpoint.json.tsr`). A background job,
//! never the stop nor the writer: a session is sealed and a chain written whether the TSA
//! answers or not. A token still missing `tsa_alarm_seconds` after its manifest or checkpoint was
//! signed raises the alarm (log, `/metrics`, room status, one `tsa_unavailable` audit entry per
//! outage; `tsa_recovered` when it clears). Tokens are asked for again every `tsa_retry_seconds`.

use std::sync::Arc;

use object_store::{PutMode, PutOptions};
use sha2::Digest;

use super::Core;
use crate::audit::{self, Actor, checkpoint::Checkpoint};
use crate::error::CoreError;
use crate::ledger::checkpoint::{self as chain_checkpoint, Listed};
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
            let chain_checkpoints = chain_checkpoint::unstamped(&self.pool, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if manifests.is_empty() && checkpoints.is_empty() && chain_checkpoints.is_empty() {
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
            // A chain checkpoint whose stored bytes are not what its writer stored is not
            // stamped: it stays missing (the alarm names it) and the others go on.
            let mut stamped = 0;
            let mut unusable = None;
            for c in &chain_checkpoints {
                match self.chain_checkpoint_bytes(c).await {
                    Ok(body) => {
                        self.stamp_chain_checkpoint(tsa, c, &body)
                            .await
                            .inspect_err(|_| self.count_failure())?;
                        stamped += 1;
                    }
                    Err(problem) => {
                        tracing::warn!(key = %c.object_key, %problem, "chain checkpoint not timestamped");
                        unusable = Some(problem);
                    }
                }
            }
            if manifests.is_empty() && checkpoints.is_empty() && stamped == 0 {
                return unusable.map_or(Ok(()), Err);
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
        let token_key = tsa::token_key(key);
        let (token, stamp) = self.stamp_beside(tsa, &body, &token_key).await?;
        tsa::insert_token(&self.pool, Subject::Manifest, session_id, &token, &stamp)
            .await
            .map_err(|e| e.to_string())?;
        self.obtained(&stamp, &token_key);
        Ok(())
    }

    /// A token over `body`, stored create-only under `token_key`; a token another node stored
    /// there first is kept, once it is checked against `body`.
    async fn stamp_beside(
        &self,
        tsa: &Tsa,
        body: &[u8],
        token_key: &str,
    ) -> Result<(Vec<u8>, timestamp::Stamp), String> {
        let (token, stamp) = tsa.stamp(body).await?;
        let path = object_store::path::Path::from(token_key);
        let put = match self
            .store
            .put_opts(
                &path,
                token.clone().into(),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            // The store cannot create only-if-absent: a plain put (the key is this object's).
            Err(object_store::Error::NotImplemented) => self
                .store
                .put(&path, token.clone().into())
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        };
        match put {
            Ok(()) => Ok((token, stamp)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_vec();
                let stamp = timestamp::verify(&there, body, Some(&tsa.ca))
                    .map_err(|e| format!("{token_key} already stored and refused: {e}"))?;
                Ok((there, stamp))
            }
            Err(e) => Err(format!("{token_key}: {e}")),
        }
    }

    /// A listed chain checkpoint's bytes as stored, when they are what its writer stored (the
    /// SHA-256 it listed) and a checkpoint of this server for that recording and seq: only
    /// those are stamped. Fails with why not.
    async fn chain_checkpoint_bytes(&self, c: &Listed) -> Result<Vec<u8>, String> {
        let key = &c.object_key;
        let body = self
            .store
            .get(&key.as_str().into())
            .await
            .map_err(|e| format!("chain checkpoint {key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("chain checkpoint {key}: {e}"))?
            .to_vec();
        if hex::encode(sha2::Sha256::digest(&body)) != c.sha256 {
            return Err(format!(
                "chain checkpoint {key}: the stored bytes differ from those its writer stored (replaced in the store)"
            ));
        }
        let cp = chain_checkpoint::open(&body, &self.signer.all_public_keys())
            .map_err(|p| format!("chain checkpoint {key}: {p}"))?;
        if cp.recording_id != c.recording_id || cp.seq != c.seq {
            return Err(format!(
                "chain checkpoint {key}: names recording {} seq {}, not the listed {} seq {}",
                cp.recording_id, cp.seq, c.recording_id, c.seq
            ));
        }
        Ok(body)
    }

    /// A token over a chain checkpoint's exact stored bytes, stored create-only beside it
    /// (`{key}.tsr`), then recorded in SQL.
    async fn stamp_chain_checkpoint(
        &self,
        tsa: &Tsa,
        c: &Listed,
        body: &[u8],
    ) -> Result<(), String> {
        let token_key = chain_checkpoint::token_key(&c.object_key);
        let (token, stamp) = self.stamp_beside(tsa, body, &token_key).await?;
        tsa::insert_token(
            &self.pool,
            Subject::ChainCheckpoint,
            &c.object_key,
            &token,
            &stamp,
        )
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
        let chain_checkpoints = chain_checkpoint::unstamped(&self.pool, 10_000).await?;
        let overdue = manifests.iter().filter(|m| m.stopped_at_us < bound).count()
            + checkpoints.iter().filter(|c| c.at_us < bound).count()
            + chain_checkpoints.iter().filter(|c| c.at_us < bound).count();
        t.pending.store(
            (manifests.len() + checkpoints.len() + chain_checkpoints.len()) as u64,
            Relaxed,
        );
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
