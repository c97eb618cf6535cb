//! After a restart or a node's death: sessions left recording are resumed (with a gap that
//! says why), the spool replayed, and leases renewed or taken over.

use crate::capture::recorder::Stop;
use crate::error::CoreError;
use crate::ledger::index::{self, SessionRow};
use crate::ledger::values::SessionState;
use crate::ledger::writer::{TimeRules, recording_prefix};
use crate::ledger::{late, lease};

use super::{Core, checkpoints};

impl Core {
    /// Start-up: stores and indexes whatever the spool holds, then resumes sessions that were
    /// recording (with a gap for the time the server was down) and finishes those that were
    /// stopping.
    pub async fn resume_interrupted(&self) -> Result<(), CoreError> {
        for session in index::live_sessions(&self.pool).await? {
            // Another node may be recording it; then it is not ours to resume.
            if !lease::acquire(
                &self.pool,
                &session.room_id,
                &self.node_id,
                self.lease_ttl_us,
            )
            .await?
            {
                continue;
            }
            let recordings = index::recordings(&self.pool, &session.id).await?;
            for rec in &recordings {
                self.replay_spool(&session, rec).await?;
            }
            self.resume(
                &session,
                "server was not running (restart or crash); recording resumed",
            )
            .await?;
        }
        // What is left belongs to sessions this node no longer records: late evidence.
        self.publish_stranded().await;
        Ok(())
    }

    /// Stores and lists as late evidence (`ledger::late`) every segment left in this node's
    /// spool for a session it does not record: one another node took over while this one was
    /// frozen or cut off, or one that stopped meanwhile. The lease holder chains them. Failures
    /// (store or database down) leave the files where they are for the next sweep.
    pub(super) async fn publish_stranded(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.config.spool_dir) else {
            return;
        };
        for dir in dirs.flatten() {
            let recording_id = dir.file_name().to_string_lossy().to_string();
            // Only looked at, not touched: a live recording's open segment may be in there.
            let has_files = std::fs::read_dir(dir.path())
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if !has_files {
                continue;
            }
            let rec = match index::recording(&self.pool, &recording_id).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(recording = %recording_id, error = %e, "spool sweep: cannot read the recording");
                    continue;
                }
            };
            let Ok(Some(session)) = index::session(&self.pool, &rec.session_id).await else {
                continue;
            };
            // Ours to write: a session this node records or is finishing.
            if self.live.lock().await.contains_key(&session.id)
                || self.stopping.lock().await.contains(&session.id)
            {
                continue;
            }
            if session.state.is_live() {
                match lease::holder(&self.pool, &session.room_id).await {
                    Ok(Some(h)) if h != self.node_id => {}
                    // Nobody's, or ours though not running here (being started or resumed):
                    // the takeover or the resume indexes it through the chain.
                    _ => continue,
                }
            }
            let prefix = recording_prefix(&session.project_code, &session.id, &rec.source_name);
            if let Err(e) = late::publish(
                &self.pool,
                &self.store,
                &rec.id,
                &prefix,
                &self.node_id,
                &dir.path(),
                late::Reading {
                    max_camera_offset_us: TimeRules::of(&self.config).max_camera_offset_us,
                    measure: crate::capture::media_span::measure,
                },
            )
            .await
            {
                tracing::warn!(session = %session.id, recording = %rec.id, error = %e, "late segments not published yet; tried again at the next sweep");
            } else if !crate::ledger::spool::has_segments(&dir.path()) {
                // Only sidecars or temporary files were left: the folder has served.
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }

    /// Continues a live session whose lease this node holds: a stopping one is finished, a
    /// recording one gets its recorders back, with a gap from each chain's end to now.
    pub(super) async fn resume(&self, session: &SessionRow, reason: &str) -> Result<(), CoreError> {
        if session.state == SessionState::Stopping {
            match self.finish(session).await {
                // Halted and alarmed: the session stays `stopping`, unsigned, for people to look.
                Err(e) if checkpoints::refuses_signing(&e) => return Ok(()),
                other => other?,
            }
            let _ = lease::release(&self.pool, &session.room_id, &self.node_id).await;
            return Ok(());
        }
        // Checked before the writers sign anything more; a difference halts signing (alarmed,
        // audited) but not the recording.
        if let Err(e) = self.check_checkpoints(session).await
            && !checkpoints::refuses_signing(&e)
        {
            tracing::warn!(session = %session.id, error = %e, "chain checkpoints not checked at resume; finish checks them again");
        }
        let recordings = index::recordings(&self.pool, &session.id).await?;
        tracing::warn!(session = %session.id, room = %session.room_id, node = %self.node_id, %reason, "resuming a session");
        let ls = self
            .spawn_session(session, &recordings, Some(reason))
            .await?;
        self.live.lock().await.insert(session.id.clone(), ls);
        Ok(())
    }

    /// Every few seconds: renew this node's leases, stop what another node asked to stop, let go
    /// of rooms whose lease was lost, and take over rooms whose node stopped renewing.
    pub async fn cluster_tick(&self) -> Result<(), CoreError> {
        // The live sessions first, then the renewal: `start` holds the live-session lock from
        // taking a room's lease until its session is live, so every session seen here had its
        // lease before the renewal, and a session started since is looked at next tick. (The
        // other order took a session started in between for a lost lease.) The lock is not
        // held across the renewal, which may wait for the database while start and stop wait.
        let local: Vec<String> = self.live.lock().await.keys().cloned().collect();
        let held = lease::renew(&self.pool, &self.node_id, self.lease_ttl_us).await?;
        for id in local {
            let Some(s) = index::session(&self.pool, &id).await? else {
                continue;
            };
            // Renewed late (this node was slow or frozen) but nobody took the room meanwhile:
            // it is still this node's to record; taken again in one statement.
            if !held.contains(&s.room_id)
                && lease::acquire(&self.pool, &s.room_id, &self.node_id, self.lease_ttl_us).await?
            {
                tracing::warn!(session = %s.id, room = %s.room_id, node = %self.node_id, "lease had lapsed and nobody took the room: kept");
                continue;
            }
            if !held.contains(&s.room_id) {
                // Fenced: another node has the room now. Stop recording here, finish nothing.
                // (A session stopped here since the snapshot has already left `live`.)
                if let Some(ls) = self.live.lock().await.remove(&s.id) {
                    tracing::error!(session = %s.id, room = %s.room_id, node = %self.node_id, "lease lost: another node records this room now; local recorders stop, their spool becomes late evidence");
                    let _ = ls.stop.send(Stop::Abandon);
                    for t in ls.tasks {
                        let _ = t.await;
                    }
                }
                continue;
            }
            if s.state == SessionState::Stopping
                && !self.stopping.lock().await.contains(&s.id)
                && self.metrics.signing_halted(&s.id).is_none()
            {
                tracing::info!(session = %s.id, room = %s.room_id, "stop asked by another node");
                self.stop_local(&s.room_id).await?;
            }
        }
        for s in index::live_sessions(&self.pool).await? {
            if self.live.lock().await.contains_key(&s.id)
                || self.stopping.lock().await.contains(&s.id)
                || lease::holder(&self.pool, &s.room_id).await?.is_some()
            {
                continue;
            }
            let previous = lease::last_holder(&self.pool, &s.room_id).await?;
            if lease::acquire(&self.pool, &s.room_id, &self.node_id, self.lease_ttl_us).await? {
                let reason = format!(
                    "node {} stopped renewing its lease; recording taken over by node {}",
                    previous.as_deref().unwrap_or("?"),
                    self.node_id
                );
                self.resume(&s, &reason).await?;
            }
        }
        self.publish_stranded().await;
        Ok(())
    }
}
