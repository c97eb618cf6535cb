//! Session lifecycle: start a room's recording (one recorder and one chain writer per source),
//! stop it once every last segment is stored and indexed, sign the manifest, and on start-up
//! replay the spool and resume sessions the last process left running.

pub mod verification;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::capture::recorder::{self, RecorderSpec, Stop};
use crate::capture::rooms;
use crate::capture::template::Templates;
use crate::capture::transport::Transport;
use crate::config::RecordingConfig;
use crate::db::{Pool, now_us, rfc3339};
use crate::error::{CoreError, is_unique_violation};
use crate::ledger::chain::{self, Entry, EntryKind, ZERO_HASH};
use crate::ledger::index::{self, RecordingRow, SessionRow, existing_session};
use crate::ledger::lease;
use crate::ledger::manifest::{self, MANIFEST_FORMAT, Manifest, ManifestHead, Signer};
use crate::ledger::spool;
use crate::ledger::values::{Category, SessionKind, SessionState, valid_code};
use crate::ledger::views::{
    ChainHead, GapView, RecordingView, SegmentView, SessionSummary, SessionView,
};
use crate::ledger::writer::{ChainWriter, WriterMsg, recording_prefix};
use crate::metrics::{Metrics, SourceStats};
use crate::store::Store;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub project_code: String,
    pub session_code: String,
    pub kind: String,
    #[serde(default)]
    pub note: String,
    /// Trading category (交易类别), one of `TRADING_CATEGORIES`; `other` when not given.
    #[serde(default = "other_category")]
    pub category: String,
}

fn other_category() -> String {
    "other".into()
}

struct LiveSession {
    stop: watch::Sender<Stop>,
    tasks: Vec<JoinHandle<()>>,
    recording_ids: Vec<String>,
}

/// The recording core as the rest of the server sees it.
pub struct Core {
    pub pool: Pool,
    pub store: Store,
    pub config: RecordingConfig,
    pub templates: Templates,
    pub signer: Signer,
    pub metrics: Arc<Metrics>,
    live: Mutex<HashMap<String, LiveSession>>,
    /// Sessions whose stop is under way, so a second stop is refused rather than run twice.
    stopping: Mutex<std::collections::HashSet<String>>,
    /// This node, and how long its room leases last: each room is recorded by one node.
    pub node_id: String,
    lease_ttl_us: i64,
}

impl Core {
    pub fn new(
        pool: Pool,
        store: Store,
        config: RecordingConfig,
        templates: Templates,
        signer: Signer,
        node_id: String,
        lease_ttl: std::time::Duration,
    ) -> Core {
        Core {
            pool,
            store,
            config,
            templates,
            signer,
            metrics: Arc::new(Metrics::default()),
            live: Mutex::new(HashMap::new()),
            stopping: Mutex::new(Default::default()),
            node_id,
            lease_ttl_us: lease_ttl.as_micros() as i64,
        }
    }

    pub async fn start(&self, room_id: &str, req: StartRequest) -> Result<SessionView, CoreError> {
        for (field, value) in [
            ("project_code", &req.project_code),
            ("session_code", &req.session_code),
        ] {
            if !valid_code(value) {
                return Err(CoreError::invalid(
                    "invalid_field",
                    format!(
                        "{field} {value:?}: expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
                    ),
                ));
            }
        }
        let invalid =
            |e: crate::db::UnknownValue| CoreError::invalid("invalid_field", e.to_string());
        let kind: SessionKind = req.kind.parse().map_err(invalid)?;
        let category: Category = req.category.parse().map_err(invalid)?;
        if req.note.chars().count() > 2000 {
            return Err(CoreError::invalid(
                "invalid_field",
                "note: at most 2000 characters",
            ));
        }
        let mut live = self.live.lock().await;
        let room = rooms::get(&self.pool, room_id).await?;
        if let Some(s) = index::live_session_of_room(&self.pool, room_id).await? {
            return Err(CoreError::conflict(
                "already_recording",
                format!(
                    "room {room_id} is already recording session {} (project {})",
                    s.id, s.project_code
                ),
            ));
        }
        for s in &room.sources {
            if self.templates.get(&s.template).is_none() {
                return Err(CoreError::invalid(
                    "unknown_template",
                    format!(
                        "source {:?} uses template {:?}, which is not installed",
                        s.name, s.template
                    ),
                ));
            }
        }
        // One node per room: the lease first, so that two nodes never both start it.
        if !lease::acquire(&self.pool, room_id, &self.node_id, self.lease_ttl_us).await? {
            let holder = lease::holder(&self.pool, room_id)
                .await?
                .unwrap_or_default();
            return Err(CoreError::conflict(
                "room_busy",
                format!("room {room_id} is being recorded by node {holder}"),
            ));
        }
        let started = now_us();
        let session = SessionRow {
            id: uuid::Uuid::now_v7().to_string(),
            room_id: room.id.clone(),
            room_name: room.name.clone(),
            room_kind: room.kind.clone(),
            project_code: req.project_code,
            session_code: req.session_code,
            kind,
            note: req.note,
            state: SessionState::Recording,
            started_at_us: started,
            stopped_at_us: None,
            manifest_key: None,
            error: None,
            category,
        };
        let recordings: Vec<(RecordingRow, Entry)> = room
            .sources
            .iter()
            .map(|s| {
                let rec = RecordingRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    session_id: session.id.clone(),
                    source_name: s.name.clone(),
                    url: s.url.clone(),
                    media: s.media.clone(),
                    template: s.template.clone(),
                    transport: s.transport.as_str().into(),
                };
                let genesis = Entry {
                    recording_id: rec.id.clone(),
                    seq: 0,
                    kind: EntryKind::Genesis,
                    object_key: String::new(),
                    wall_start_us: started,
                    duration_us: 0,
                    bytes: 0,
                    sha256: String::new(),
                    clock: "server".into(),
                    detail: chain::genesis_detail(
                        &session.project_code,
                        &session.id,
                        &session.session_code,
                        &room.id,
                        &s.name,
                    ),
                    prev_hash: ZERO_HASH.into(),
                    entry_hash: String::new(),
                }
                .seal();
                (rec, genesis)
            })
            .collect();
        let inserted = index::insert_session(&self.pool, &session, &recordings).await;
        if inserted.is_err() {
            let _ = lease::release(&self.pool, room_id, &self.node_id).await;
        }
        inserted.map_err(|e| {
            if is_unique_violation(&e) {
                CoreError::conflict(
                    "already_recording",
                    format!("room {room_id} is already recording"),
                )
            } else {
                e.into()
            }
        })?;
        tracing::info!(room = %room.id, session = %session.id, project = %session.project_code, "recording started");
        let rows: Vec<RecordingRow> = recordings.into_iter().map(|(r, _)| r).collect();
        let ls = self.spawn_session(&session, &rows, None).await?;
        live.insert(session.id.clone(), ls);
        drop(live);
        self.view(&session.id).await
    }

    async fn spawn_session(
        &self,
        session: &SessionRow,
        recordings: &[RecordingRow],
        resume_gap: Option<&str>,
    ) -> Result<LiveSession, CoreError> {
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let mut tasks = Vec::new();
        for rec in recordings {
            let (writer, stats) = self.open_writer(session, rec).await?;
            let span = tracing::info_span!("recording", room = %session.room_id, session = %session.id, recording = %rec.id, source = %rec.source_name);
            let (tx, rx) = mpsc::unbounded_channel::<WriterMsg>();
            tasks.push(tokio::spawn(writer.run(rx).instrument(span.clone())));
            let Some(template) = self.templates.get(&rec.template).cloned() else {
                // Nothing will record it; the gap up to the stop says why.
                let _ = tx.send(WriterMsg::Outage {
                    reason: format!(
                        "template {:?} is not installed; source not recorded",
                        rec.template
                    ),
                });
                let mut stop_rx = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    while stop_rx.changed().await.is_ok() {
                        if let Stop::At(stop_us) = *stop_rx.borrow() {
                            let _ = tx.send(WriterMsg::Close { stop_us });
                            break;
                        }
                    }
                }));
                continue;
            };
            let transport = Transport::parse(&rec.transport).unwrap_or_default();
            let learned = rooms::learned_transport(&self.pool, &session.room_id, &rec.source_name)
                .await
                .unwrap_or(None);
            let on_learned: recorder::LearnedTransport = {
                let pool = self.pool.clone();
                let room = session.room_id.clone();
                let source = rec.source_name.clone();
                Box::new(move |t: Transport| {
                    let (pool, room, source) = (pool.clone(), room.clone(), source.clone());
                    tokio::spawn(async move {
                        if let Err(e) = rooms::remember_transport(&pool, &room, &source, t).await {
                            tracing::warn!(error = %e, "cannot remember the source's transport");
                        }
                    });
                })
            };
            let spec = RecorderSpec {
                recording_id: rec.id.clone(),
                source_name: rec.source_name.clone(),
                url: rec.url.clone(),
                media: rec.media.clone(),
                transport,
                learned,
                on_learned,
                template,
                spool_dir: spool::recording_dir(&self.config.spool_dir, &rec.id),
                segment: self.config.segment_duration(),
                watchdog: self.config.watchdog(),
                backoff_min: std::time::Duration::from_secs_f64(self.config.reconnect_min_seconds),
                backoff_max: std::time::Duration::from_secs_f64(self.config.reconnect_max_seconds),
                resume_gap: resume_gap.map(str::to_string),
            };
            tasks.push(tokio::spawn(
                recorder::run(spec, tx, stop_rx.clone(), stats).instrument(span),
            ));
        }
        Ok(LiveSession {
            stop,
            tasks,
            recording_ids: recordings.iter().map(|r| r.id.clone()).collect(),
        })
    }

    /// Stops the room's live session; returns once every last segment is stored and indexed and
    /// the manifest is signed.
    pub async fn stop(&self, room_id: &str) -> Result<SessionView, CoreError> {
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
    async fn stop_remote(
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
            let now = existing_session(&self.pool, &session.id).await?;
            if matches!(now.state, SessionState::Stopped | SessionState::Failed) {
                return self.view(&session.id).await;
            }
            let alive = lease::holder(&self.pool, room_id).await?.is_some();
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

    async fn stop_local(&self, room_id: &str) -> Result<SessionView, CoreError> {
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
    async fn finish(&self, session: &SessionRow) -> Result<(), CoreError> {
        let session = &existing_session(&self.pool, &session.id).await?;
        let stopped = session.stopped_at_us.unwrap_or_else(now_us);
        let rules = self.config.time_rules();
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
        Ok(())
    }

    /// Continues a live session whose lease this node holds: a stopping one is finished, a
    /// recording one gets its recorders back, with a gap from each chain's end to now.
    async fn resume(&self, session: &SessionRow, reason: &str) -> Result<(), CoreError> {
        if session.state == SessionState::Stopping {
            self.finish(session).await?;
            let _ = lease::release(&self.pool, &session.room_id, &self.node_id).await;
            return Ok(());
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
        let held = lease::renew(&self.pool, &self.node_id, self.lease_ttl_us).await?;
        let local: Vec<String> = self.live.lock().await.keys().cloned().collect();
        for id in local {
            let Some(s) = index::session(&self.pool, &id).await? else {
                continue;
            };
            if !held.contains(&s.room_id) {
                // Fenced: another node has the room now. Stop recording here, finish nothing.
                tracing::error!(session = %s.id, room = %s.room_id, node = %self.node_id, "lease lost: another node records this room now; local recorders stop");
                if let Some(ls) = self.live.lock().await.remove(&s.id) {
                    let _ = ls.stop.send(Stop::Abandon);
                    for t in ls.tasks {
                        let _ = t.await;
                    }
                }
                continue;
            }
            if s.state == SessionState::Stopping && !self.stopping.lock().await.contains(&s.id) {
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
        Ok(())
    }

    /// The chain writer of a recording, positioned at its current head, and its live counters.
    async fn open_writer(
        &self,
        session: &SessionRow,
        rec: &RecordingRow,
    ) -> Result<(ChainWriter, Arc<SourceStats>), CoreError> {
        let stats = self
            .metrics
            .source(&rec.id, &session.room_name, &session.id, &rec.source_name);
        let mut writer = ChainWriter::open(
            self.pool.clone(),
            self.store.clone(),
            rec.id.clone(),
            recording_prefix(&session.project_code, &session.id, &rec.source_name),
            session.started_at_us,
            self.config.time_rules(),
            stats.clone(),
            self.metrics.clone(),
        )
        .await?;
        writer.lease = Some((session.room_id.clone(), self.node_id.clone()));
        Ok((writer, stats))
    }

    async fn replay_spool(
        &self,
        session: &SessionRow,
        rec: &RecordingRow,
    ) -> Result<(), CoreError> {
        let dir = spool::recording_dir(&self.config.spool_dir, &rec.id);
        let left = spool::leftovers(&dir);
        if left.is_empty() {
            return Ok(());
        }
        tracing::info!(session = %session.id, recording = %rec.id, files = left.len(), "indexing segments left in the spool");
        let (mut writer, _) = self.open_writer(session, rec).await?;
        for (path, meta, recovered) in left {
            writer
                .apply(WriterMsg::Segment {
                    path,
                    meta,
                    recovered,
                    closed_at: std::time::Instant::now(),
                })
                .await;
        }
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

    pub async fn view(&self, session_id: &str) -> Result<SessionView, CoreError> {
        let s = existing_session(&self.pool, session_id).await?;
        let mut recordings = Vec::new();
        for rec in index::recordings(&self.pool, &s.id).await? {
            let entries = index::entries(&self.pool, &rec.id).await?;
            recordings.push(self.recording_view(&s, rec, &entries));
        }
        Ok(SessionView::new(s, recordings))
    }

    fn recording_view(
        &self,
        s: &SessionRow,
        rec: RecordingRow,
        entries: &[Entry],
    ) -> RecordingView {
        let live = self.metrics.snapshot(&rec.id);
        let state = match (&live, s.state.as_str()) {
            (Some(st), _) => st.state().as_str().to_string(),
            (None, "recording") => "connecting".into(),
            (None, other) => other.to_string(),
        };
        let segments: Vec<SegmentView> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Media)
            .map(|e| SegmentView {
                seq: e.seq,
                object_key: e.object_key.clone(),
                start: rfc3339(e.wall_start_us),
                duration_seconds: e.duration_us as f64 / 1e6,
                bytes: e.bytes,
                sha256: e.sha256.clone(),
                clock: e.clock.clone(),
                note: e.detail.clone(),
            })
            .collect();
        let gaps: Vec<GapView> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Gap)
            .map(|e| GapView {
                seq: e.seq,
                start: rfc3339(e.wall_start_us),
                end: rfc3339(e.wall_start_us + e.duration_us),
                duration_seconds: e.duration_us as f64 / 1e6,
                reason: e.detail.clone(),
            })
            .collect();
        let head = entries.last();
        RecordingView {
            id: rec.id,
            source: rec.source_name,
            url: rec.url,
            media: rec.media,
            template: rec.template,
            state,
            bytes: segments.iter().map(|x| x.bytes).sum(),
            duration_seconds: segments.iter().map(|x| x.duration_seconds).sum(),
            segment_count: segments.len(),
            gap_count: gaps.len(),
            chain_head: head.map(|e| ChainHead {
                seq: e.seq,
                hash: e.entry_hash.clone(),
            }),
            segments,
            gaps,
        }
    }

    pub async fn list(
        &self,
        filter: &index::SessionFilter,
        limit: i64,
    ) -> Result<Vec<SessionSummary>, CoreError> {
        Ok(index::list_sessions(&self.pool, filter, limit)
            .await?
            .into_iter()
            .map(SessionSummary::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for ok in ["ZB2026-001", "a", "P.1_x"] {
            assert!(valid_code(ok), "{ok}");
        }
        for bad in ["", "-x", "a/b", "..", "a b", "项目", &"x".repeat(65)] {
            assert!(!valid_code(bad), "{bad}");
        }
    }
}
