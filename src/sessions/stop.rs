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
use crate::ledger::witness_record;
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
    ///
    /// A sealed session is never signed again (the database refuses to move it back to
    /// `stopping` too), and a manifest already in the store is never signed over: it is adopted
    /// when it is this server's, validly signed, over the chains as they stand (a finish
    /// interrupted after storing it), and otherwise refused with an alarm.
    pub(super) async fn finish(&self, session: &SessionRow) -> Result<(), CoreError> {
        let session = &existing_session(&self.pool, &session.id).await?;
        if session.state.is_sealed() {
            return Err(CoreError::conflict(
                "already_sealed",
                format!(
                    "session {} is {}: its manifest is signed and is never signed again",
                    session.id, session.state
                ),
            ));
        }
        let key = manifest::manifest_key(&session.project_code, &session.id);
        if let Some(existing) = self.stored_manifest(&key).await? {
            return self.adopt_manifest(session, &key, existing).await;
        }
        // Nothing is signed over chains that differ from what was signed while they recorded.
        let mut checkpoints = self.check_checkpoints(session).await?;
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
                checkpoints: checkpoints.remove(&rec.id).unwrap_or_default(),
            });
        }
        // The witness record as it stands (no entry enters once the session left `recording`).
        let witness_record = Some(witness_record::binding(
            &session.id,
            &witness_record::entries(&self.pool, &session.id).await?,
            witness_record::signature(&self.pool, &session.id)
                .await?
                .as_ref(),
        ));
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
            timestamp_requested: self.timestamps.tsa.is_some(),
            witness_record,
        };
        let body = serde_json::to_vec_pretty(&m).map_err(|e| CoreError::Internal(e.to_string()))?;
        let sig = self.signer.sign_hex(&body);
        // The signatures first, then the manifest: a manifest in the store always has its
        // signatures beside it (a signature alone is replaced at the next attempt).
        if let Some(sm2) = self.signer.sign_sm2_hex(&body) {
            self.store
                .put(
                    &manifest::sm2_signature_key(&key).as_str().into(),
                    sm2.into_bytes().into(),
                )
                .await?;
        }
        self.store
            .put(
                &manifest::signature_key(&key).as_str().into(),
                sig.into_bytes().into(),
            )
            .await?;
        self.store.put(&key.as_str().into(), body.into()).await?;
        index::set_manifest_key(&self.pool, &session.id, &key).await?;
        index::set_session_state(
            &self.pool,
            &session.id,
            SessionState::Stopped,
            Some(stopped),
            None,
        )
        .await?;
        // The token comes in the background: the stop never waits for the TSA.
        self.timestamps.wake.notify_one();
        Ok(())
    }

    /// The manifest and signature already stored under `key`, if a manifest is there.
    async fn stored_manifest(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, CoreError> {
        let body = match self.store.get(&key.into()).await {
            Ok(r) => r.bytes().await?.to_vec(),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sig = match self
            .store
            .get(&manifest::signature_key(key).as_str().into())
            .await
        {
            Ok(r) => String::from_utf8_lossy(&r.bytes().await?)
                .trim()
                .to_string(),
            Err(object_store::Error::NotFound { .. }) => String::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Some((body, sig)))
    }

    /// A manifest found in the store for a session still `stopping`: marks the session stopped
    /// with it when it is this server's signature over the chains as they stand now; otherwise
    /// refuses (`manifest_exists`) and raises an alarm (log and a flagged audit entry), leaving
    /// both the session and the stored manifest as they are.
    async fn adopt_manifest(
        &self,
        session: &SessionRow,
        key: &str,
        (body, sig): (Vec<u8>, String),
    ) -> Result<(), CoreError> {
        let problem = match self.manifest_matches(session, &body, &sig).await? {
            Ok(stopped) => {
                index::set_manifest_key(&self.pool, &session.id, key).await?;
                index::set_session_state(
                    &self.pool,
                    &session.id,
                    SessionState::Stopped,
                    Some(stopped),
                    None,
                )
                .await?;
                tracing::warn!(session = %session.id, "finish resumed: the manifest stored by an interrupted stop matches the chains; not signed again");
                return Ok(());
            }
            Err(problem) => problem,
        };
        tracing::error!(session = %session.id, manifest = %key, %problem, "ALARM: a manifest is already stored for this session and does not match its chains; not signed over");
        // Halted like a chain that differs from its checkpoints: alarmed, audited once, and
        // neither the start-up nor the cluster tick tries again.
        if self.metrics.halt_signing(
            &session.id,
            &format!("a manifest is already stored: {problem}"),
        ) {
            audit::Event::new(&Actor::local("system"), "manifest_conflict")
                .session(&session.id, &session.project_code)
                .target(key)
                .reason(problem.clone())
                .outcome(audit::Outcome::Failed(
                    "refused to sign over a stored manifest".into(),
                ))
                .flagged(true)
                .append(&self.pool)
                .await?;
        }
        Err(CoreError::conflict(
            "manifest_exists",
            format!(
                "session {} already has a manifest in the store ({problem}); it is not signed again",
                session.id
            ),
        ))
    }

    /// Ok(stop time) when `body` is a manifest of this session signed by this server whose heads
    /// are the chains' heads now; Err(why not) otherwise.
    async fn manifest_matches(
        &self,
        session: &SessionRow,
        body: &[u8],
        sig: &str,
    ) -> Result<Result<i64, String>, CoreError> {
        let public_key = self.signer.public_key_hex();
        if !manifest::verify_hex(&public_key, body, sig) {
            return Ok(Err(
                "its signature does not verify with this server's key".into()
            ));
        }
        let Ok(m) = serde_json::from_slice::<Manifest>(body) else {
            return Ok(Err("it does not parse".into()));
        };
        if m.session_id != session.id || session.stopped_at_us.is_some_and(|s| s != m.stopped_at_us)
        {
            return Ok(Err("it names another session or stop time".into()));
        }
        let mut heads = Vec::new();
        for rec in index::recordings(&self.pool, &session.id).await? {
            let entries = index::entries(&self.pool, &rec.id).await?;
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                heads.push((
                    rec.id,
                    first.entry_hash.clone(),
                    last.seq,
                    last.entry_hash.clone(),
                ));
            }
        }
        let signed: Vec<_> = m
            .recordings
            .iter()
            .map(|h| {
                (
                    h.recording_id.clone(),
                    h.genesis_hash.clone(),
                    h.head_seq,
                    h.head_hash.clone(),
                )
            })
            .collect();
        if heads != signed {
            return Ok(Err("the heads it signs are not the chains' heads".into()));
        }
        Ok(Ok(m.stopped_at_us))
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
