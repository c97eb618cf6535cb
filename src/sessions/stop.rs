//! Stopping a session: on this node, or by asking the node that records it; every last segment
//! stored and indexed, every chain closed at the stop time, the manifest signed.

use crate::capture::recorder::Stop;
use crate::capture::rooms;
use crate::error::CoreError;
use crate::ledger::index::{self, SessionRow, existing_session};
use crate::ledger::lease;
use crate::ledger::manifest::{self, MANIFEST_FORMAT, Manifest, ManifestHead};
use crate::ledger::values::SessionState;
use crate::ledger::views::SessionView;
use crate::ledger::writer::{TimeRules, WriterMsg};
use crate::time::now_us;

use super::{Core, LiveSession};
use crate::audit::{self, Actor};

impl Core {
    /// Stops the room's live session; returns once every last segment is stored and indexed and
    /// the manifest is signed.
    pub async fn stop(&self, room_id: &str, by: &Actor) -> Result<SessionView, CoreError> {
        let view = self.stop_here_or_there(room_id).await?;
        audit::Event::new(by, "room_stop")
            .session(&view.summary.id, &view.summary.project_code)
            .target(&view.summary.room_id)
            .append(&self.pool)
            .await?;
        Ok(view)
    }

    /// Stops on this node, or asks the node whose lease it is.
    async fn stop_here_or_there(&self, room_id: &str) -> Result<SessionView, CoreError> {
        rooms::get(&self.pool, room_id).await?;
        if let Some(session) = index::live_session_of_room(&self.pool, room_id).await?
            && !self.live.lock().await.contains_key(&session.id)
            && let Some(holder) = lease::holder(&self.pool, room_id).await?
            && holder != self.node_id
        {
            return self.stop_remote(room_id, &session, &holder).await;
        }
        self.stop_local(room_id).await
    }

    /// The room is recorded by another node: ask it to stop (through the session's state) and
    /// wait until it has. If that node dies meanwhile, its lease runs out and this node finishes.
    pub(super) async fn stop_remote(
        &self,
        room_id: &str,
        session: &SessionRow,
        holder: &str,
    ) -> Result<SessionView, CoreError> {
        tracing::info!(room = %room_id, session = %session.id, node = %holder, "asking the recording node to stop");
        index::set_session_state(&self.pool, &session.id, SessionState::Stopping, None, None)
            .await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            // The lease before the state: the recording node marks the session stopped before it
            // lets the lease go, so a lease found gone with the session still live means that
            // node died, not that it finished (the other order took a finished stop for a death).
            let alive = lease::holder(&self.pool, room_id).await?.is_some();
            let now = existing_session(&self.pool, &session.id).await?;
            if matches!(now.state, SessionState::Stopped | SessionState::Failed) {
                return self.view(&session.id).await;
            }
            if !alive
                && lease::acquire(&self.pool, room_id, &self.node_id, self.lease_ttl_us).await?
            {
                return self.stop_local(room_id).await;
            }
            if std::time::Instant::now() > deadline {
                return Err(CoreError::conflict(
                    "stop_pending",
                    format!(
                        "node {holder} has not stopped room {room_id} yet; the session stays `stopping`"
                    ),
                ));
            }
        }
    }

    pub(super) async fn stop_local(&self, room_id: &str) -> Result<SessionView, CoreError> {
        let (session, taken, stop_us) = {
            let mut live = self.live.lock().await;
            rooms::get(&self.pool, room_id).await?;
            let Some(session) = index::live_session_of_room(&self.pool, room_id).await? else {
                return Err(CoreError::conflict(
                    "not_recording",
                    format!("room {room_id} is not recording"),
                ));
            };
            if !self.stopping.lock().await.insert(session.id.clone()) {
                return Err(CoreError::conflict(
                    "already_stopping",
                    format!("session {} is already stopping", session.id),
                ));
            }
            // Absent when a previous stop failed after its recorders ended: finish again.
            let taken = live.remove(&session.id);
            // The stop time every chain must reach; a stop retried keeps the first one.
            let stop_us = session.stopped_at_us.unwrap_or_else(now_us);
            if let Err(e) = index::set_session_state(
                &self.pool,
                &session.id,
                SessionState::Stopping,
                Some(stop_us),
                None,
            )
            .await
            {
                self.stopping.lock().await.remove(&session.id);
                if let Some(ls) = taken {
                    live.insert(session.id.clone(), ls);
                }
                return Err(e.into());
            }
            (session, taken, stop_us)
        };
        if let Some(ls) = taken {
            let _ = ls.stop.send(Stop::At(stop_us));
            for t in ls.tasks {
                let _ = t.await;
            }
            for id in &ls.recording_ids {
                self.metrics.forget(id);
            }
        }
        let finished = self.finish(&session).await;
        self.stopping.lock().await.remove(&session.id);
        finished?;
        let _ = lease::release(&self.pool, room_id, &self.node_id).await;
        tracing::info!(room = %room_id, session = %session.id, "recording stopped");
        self.view(&session.id).await
    }

    /// Closes every chain at the stop time (a gap covers any tail the recorders left), then
    /// signs and stores the manifest of all chain heads and marks the session stopped.
    pub(super) async fn finish(&self, session: &SessionRow) -> Result<(), CoreError> {
        let session = &existing_session(&self.pool, &session.id).await?;
        let stopped = session.stopped_at_us.unwrap_or_else(now_us);
        let rules = TimeRules::of(&self.config);
        let mut heads = Vec::new();
        for rec in index::recordings(&self.pool, &session.id).await? {
            let (mut writer, _) = self.open_writer(session, &rec).await?;
            writer.apply(WriterMsg::Close { stop_us: stopped }).await;
            let entries = index::entries(&self.pool, &rec.id).await?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            heads.push(ManifestHead {
                recording_id: rec.id.clone(),
                source: rec.source_name.clone(),
                genesis_hash: first.entry_hash.clone(),
                head_seq: last.seq,
                head_hash: last.entry_hash.clone(),
            });
        }
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            session_id: session.id.clone(),
            project_code: session.project_code.clone(),
            session_code: session.session_code.clone(),
            kind: session.kind.to_string(),
            room_id: session.room_id.clone(),
            room_name: session.room_name.clone(),
            started_at_us: session.started_at_us,
            stopped_at_us: stopped,
            public_key: self.signer.public_key_hex(),
            recordings: heads,
            coverage_tolerance_us: Some(rules.tolerance_us),
            server_clock: tokio::task::spawn_blocking(crate::ledger::clock::server_clock_sync)
                .await
                .ok(),
        };
        let body = serde_json::to_vec_pretty(&m).map_err(|e| CoreError::Internal(e.to_string()))?;
        let sig = self.signer.sign_hex(&body);
        let key = manifest::manifest_key(&session.project_code, &session.id);
        self.store.put(&key.as_str().into(), body.into()).await?;
        self.store
            .put(
                &manifest::signature_key(&key).as_str().into(),
                sig.into_bytes().into(),
            )
            .await?;
        index::set_manifest_key(&self.pool, &session.id, &key).await?;
        index::set_session_state(
            &self.pool,
            &session.id,
            SessionState::Stopped,
            Some(stopped),
            None,
        )
        .await?;
        Ok(())
    }

    /// On server shutdown: close every open segment so it is stored. Sessions stay `recording`
    /// and resume, with a gap, at the next start.
    pub async fn shutdown(&self) {
        let sessions: Vec<LiveSession> = self.live.lock().await.drain().map(|(_, v)| v).collect();
        for ls in &sessions {
            let _ = ls.stop.send(Stop::Abandon);
        }
        for ls in sessions {
            for t in ls.tasks {
                let _ = t.await;
            }
        }
    }
}
