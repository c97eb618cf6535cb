//! Starting a room's recording: the request checked, the room ready, the lease taken, the
//! session and its genesis entries written, its retention stamped and the start audited, then
//! one recorder and one chain writer per source.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::capture::recorder::{self, RecorderSpec, Stop};
use crate::capture::rooms;
use crate::capture::transport::Transport;
use crate::error::{CoreError, is_unique_violation};
use crate::ledger::chain::{self, Entry, EntryKind, ZERO_HASH};
use crate::ledger::checkpoint::Checkpointer;
use crate::ledger::index::{self, RecordingRow, SessionRow};
use crate::ledger::lease;
use crate::ledger::spool;
use crate::ledger::values::{Category, SessionKind, SessionState, valid_code};
use crate::ledger::views::SessionView;
use crate::ledger::writer::{ChainWriter, TimeRules, WriterMsg, recording_prefix};
use crate::metrics::SourceStats;
use crate::time::now_us;

use super::{Core, LiveSession, StartRequest};
use crate::audit::{self, Actor};

/// A start request, checked: what the session row will say.
struct Checked {
    project_code: String,
    session_code: String,
    kind: SessionKind,
    category: Category,
    note: String,
    reason: String,
    booking_id: Option<String>,
    witness: Option<String>,
}

impl StartRequest {
    /// Codes that go into object keys, a known kind and category, a note of sane length.
    fn check(self) -> Result<Checked, CoreError> {
        for (field, value) in [
            ("project_code", &self.project_code),
            ("session_code", &self.session_code),
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
        let kind: SessionKind = self.kind.parse().map_err(invalid)?;
        let category: Category = self.category.parse().map_err(invalid)?;
        if self.reason.chars().count() > 2000 || self.reason.chars().any(char::is_control) {
            return Err(CoreError::invalid(
                "invalid_field",
                "reason: at most 2000 printable characters",
            ));
        }
        if self.note.chars().count() > 2000 {
            return Err(CoreError::invalid(
                "invalid_field",
                "note: at most 2000 characters",
            ));
        }
        Ok(Checked {
            project_code: self.project_code,
            session_code: self.session_code,
            kind,
            category,
            note: self.note,
            reason: self.reason.trim().to_string(),
            booking_id: self.booking_id,
            witness: self.witness,
        })
    }
}

impl Core {
    /// Starts recording room `room_id` for `by`: the whole operation, whoever calls it (HTTP,
    /// CLI, demo): checked, leased, written with its genesis entries, retention stamped with the
    /// rule in force, audited, and its recorders running.
    pub async fn start(
        &self,
        room_id: &str,
        req: StartRequest,
        by: &Actor,
    ) -> Result<SessionView, CoreError> {
        let req = req.check()?;
        // Recording comes first, but a new one needs room to be written.
        self.disk.admit_session()?;
        let mut live = self.live.lock().await;
        let room = self.ready_room(room_id).await?;
        self.take_lease(room_id).await?;
        let reason = req.reason.clone();
        let session = new_session(&room, req, by);
        let recordings = genesis_of_each_source(&room, &session);
        self.insert_session(&session, &recordings).await?;
        tracing::info!(room = %room.id, session = %session.id, project = %session.project_code, "recording started");
        // The policy version and rule in force are recorded on the session from its first moment.
        crate::retention::stamp(&self.pool, &self.policies, &session).await?;
        // The reason of an unbooked start, or the booking it records.
        let why = match (&session.booking_id, reason.is_empty()) {
            (Some(b), true) => format!("booking {b}"),
            (Some(b), false) => format!("booking {b}: {reason}"),
            (None, _) => reason,
        };
        audit::Event::new(by, "room_start")
            .session(&session.id, &session.project_code)
            .target(&session.room_id)
            .reason(why)
            .append(&self.pool)
            .await?;
        let rows: Vec<RecordingRow> = recordings.into_iter().map(|(r, _)| r).collect();
        let ls = self.spawn_session(&session, &rows, None).await?;
        live.insert(session.id.clone(), ls);
        drop(live);
        self.view(&session.id).await
    }

    /// The room, when it is not recording already and every source's template is installed.
    async fn ready_room(&self, room_id: &str) -> Result<rooms::Room, CoreError> {
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
        Ok(room)
    }

    /// One node per room: the lease first, so that two nodes never both start it.
    async fn take_lease(&self, room_id: &str) -> Result<(), CoreError> {
        if lease::acquire(&self.pool, room_id, &self.node_id, self.lease_ttl_us).await? {
            return Ok(());
        }
        let holder = lease::holder(&self.pool, room_id)
            .await?
            .unwrap_or_default();
        Err(CoreError::conflict(
            "room_busy",
            format!("room {room_id} is being recorded by node {holder}"),
        ))
    }

    /// The session and its recordings in one transaction; the lease goes back if that fails.
    async fn insert_session(
        &self,
        session: &SessionRow,
        recordings: &[(RecordingRow, Entry)],
    ) -> Result<(), CoreError> {
        let room_id = &session.room_id;
        let inserted = index::insert_session(&self.pool, session, recordings).await;
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
        })
    }

    pub(super) async fn spawn_session(
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
                std::sync::Arc::new(move |t: Transport| {
                    let (pool, room, source) = (pool.clone(), room.clone(), source.clone());
                    tokio::spawn(async move {
                        if let Err(e) = rooms::remember_transport(&pool, &room, &source, t).await {
                            tracing::warn!(error = %e, "cannot remember the source's transport");
                        }
                    });
                })
            };
            // Opened here, in memory, for this recorder only (the room cannot change while
            // it records, so these are the credentials the session began with).
            let credentials = rooms::source_credentials(
                &self.pool,
                &self.credentials,
                &session.room_id,
                &rec.source_name,
            )
            .await?;
            let spec = RecorderSpec {
                recording_id: rec.id.clone(),
                source_name: rec.source_name.clone(),
                url: rec.url.clone(),
                credentials,
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
                receiver: self.config.receiver.or_from_env(),
            };
            tasks.push(tokio::spawn(
                recorder::supervise(spec, tx, stop_rx.clone(), stats).instrument(span),
            ));
        }
        Ok(LiveSession {
            stop,
            tasks,
            recording_ids: recordings.iter().map(|r| r.id.clone()).collect(),
        })
    }

    /// The chain writer of a recording, positioned at its current head, and its live counters.
    pub(super) async fn open_writer(
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
            TimeRules::of(&self.config),
            stats.clone(),
            self.metrics.clone(),
        )
        .await?;
        writer.lease = Some((session.room_id.clone(), self.node_id.clone()));
        writer.lease_ttl_us = self.lease_ttl_us;
        if self.metrics.signing_halted(&session.id).is_none() {
            let checkpointer = Checkpointer::new(
                self.signer.clone(),
                &session.id,
                &rec.source_name,
                std::time::Duration::from_secs_f64(self.config.checkpoint_seconds.max(1.0)),
            );
            writer.checkpoints = Some(match self.timestamps.tsa {
                Some(_) => checkpointer.waking(self.timestamps.clone()),
                None => checkpointer,
            });
        }
        Ok((writer, stats))
    }

    pub(super) async fn replay_spool(
        &self,
        session: &SessionRow,
        rec: &RecordingRow,
    ) -> Result<(), CoreError> {
        let dir = spool::recording_dir(&self.config.spool_dir, &rec.id);
        // Blocking: a segment its muxer never closed is measured by reading its media.
        let left = tokio::task::spawn_blocking(move || {
            spool::leftovers(&dir, crate::capture::media_span::measure)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("spool replay: {e}")))?;
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
}

/// The session row of a checked request, recording from now. Confidential when the room lies in
/// the confidential area, whatever kind was typed (or when typed as an evaluation). Its witness
/// (who alone writes and signs its witness record) is the one the request names — the staff
/// member who booked it, for a booking's recording — or else `by`, who started it.
fn new_session(room: &rooms::Room, req: Checked, by: &Actor) -> SessionRow {
    let started = now_us();
    SessionRow {
        confidential: room.area == crate::catalogue::rooms::Area::Confidential
            || req.kind.is_confidential(),
        booking_id: req.booking_id,
        id: uuid::Uuid::now_v7().to_string(),
        room_id: room.id.clone(),
        room_name: room.name.clone(),
        room_kind: room.kind.clone(),
        project_code: req.project_code,
        session_code: req.session_code,
        kind: req.kind,
        note: req.note,
        state: SessionState::Recording,
        started_at_us: started,
        stopped_at_us: None,
        manifest_key: None,
        error: None,
        category: req.category,
        started_by: Some(req.witness.unwrap_or_else(|| by.person.clone())),
    }
}

/// One recording per source, each opened by its genesis entry.
fn genesis_of_each_source(room: &rooms::Room, session: &SessionRow) -> Vec<(RecordingRow, Entry)> {
    let started = session.started_at_us;
    room.sources
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
        .collect()
}
