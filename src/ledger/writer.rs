//! The chain writer of one recording: the single task that turns spooled segments into chain
//! entries and enforces the coverage invariant where entries enter the chain. For a segment:
//! fsync and hash the file, choose its start time (camera or server clock, never outside the
//! session), cover any hole before it with a gap entry, store the object, insert the entry, then
//! forget the spool file. Failures are retried with backoff; order is never changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use object_store::PutPayload;
use tokio::sync::mpsc;

use crate::db::Pool;
use crate::ledger::chain::{ClockSource, Entry, EntryKind, one_line};
use crate::ledger::clock;
use crate::ledger::coverage::OVERLAP_MARK;
use crate::ledger::index;
use crate::ledger::spool::{self, SegmentMeta};
use crate::metrics::{Metrics, SourceStats};
use crate::store::Store;
use crate::time::{now_us, rfc3339};

#[derive(Debug)]
pub enum WriterMsg {
    Segment {
        path: PathBuf,
        meta: SegmentMeta,
        /// Found in the spool after a crash or cut short: timing is estimated.
        recovered: bool,
        /// When the muxer reported it closed, for the closed → indexed latency.
        closed_at: Instant,
    },
    /// Why the next hole in this chain opened (camera dropped, server down …): the gap entry
    /// that covers it will say so. The writer, not the sender, decides where the gap lies.
    Outage { reason: String },
    /// The session stopped at `stop_us`: the chain must reach it (a gap covers any tail).
    Close { stop_us: i64 },
}

/// Why a chain's first hole opened, until the recorder knows more.
pub const CONNECTING: &str = "connecting to the camera";

/// The timing rules of a chain: how close consecutive entries must meet, and how far the
/// camera's clock may be from the server's before the server's is used.
#[derive(Debug, Clone, Copy)]
pub struct TimeRules {
    pub tolerance_us: i64,
    pub max_camera_offset_us: i64,
}

impl TimeRules {
    /// The rules `[recording]` configures.
    pub fn of(config: &crate::config::RecordingConfig) -> TimeRules {
        TimeRules {
            tolerance_us: config.coverage_tolerance_ms as i64 * 1000,
            max_camera_offset_us: (config.camera_clock_max_offset_seconds * 1e6) as i64,
        }
    }
}

pub struct ChainWriter {
    pub pool: Pool,
    pub store: Store,
    pub recording_id: String,
    /// `{project_code}/{session_id}/{source}`
    pub key_prefix: String,
    pub head: Entry,
    pub stats: Arc<SourceStats>,
    pub metrics: Arc<Metrics>,
    /// (room, node): with several nodes, this writer writes only while its node holds the
    /// room's lease. Once fenced, it stores and indexes nothing more; segments stay spooled.
    pub lease: Option<(String, String)>,
    fenced: bool,
    rules: TimeRules,
    /// The session's start: no entry starts before it (less the tolerance).
    session_start_us: i64,
    /// Where the chain's time reaches now: the latest end of any entry.
    covered_until_us: i64,
    /// The reason for the next hole, when the recorder knows it.
    pending_outage: Option<String>,
    /// The server-clock end of the previous segment, to tell a camera clock jump from a hole.
    last_server_end_us: Option<i64>,
}

/// The key prefix of a recording's objects: `{project_code}/{session_id}/{source}`.
pub fn recording_prefix(project_code: &str, session_id: &str, source: &str) -> String {
    format!("{project_code}/{session_id}/{source}")
}

/// The object key of a segment: fixed width so keys sort by sequence.
pub fn object_key(prefix: &str, seq: i64, extension: &str) -> String {
    format!("{prefix}/{seq:08}.{extension}")
}

impl ChainWriter {
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        pool: Pool,
        store: Store,
        recording_id: String,
        key_prefix: String,
        session_start_us: i64,
        rules: TimeRules,
        stats: Arc<SourceStats>,
        metrics: Arc<Metrics>,
    ) -> Result<ChainWriter, sqlx::Error> {
        let head = index::head(&pool, &recording_id)
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound)?;
        let covered_until_us = index::chain_end(&pool, &recording_id)
            .await?
            .unwrap_or(session_start_us);
        Ok(ChainWriter {
            rules,
            session_start_us,
            covered_until_us,
            pending_outage: None,
            last_server_end_us: None,
            pool,
            store,
            recording_id,
            key_prefix,
            head,
            stats,
            metrics,
            lease: None,
            fenced: false,
        })
    }

    /// Whether this node may still write: it holds the room's lease. A database error is not
    /// proof of anything (the index write will retry); only another node's lease fences.
    async fn may_write(&mut self) -> bool {
        if self.fenced {
            return false;
        }
        if let Some((room, node)) = &self.lease
            && let Ok(holder) = crate::ledger::lease::holder(&self.pool, room).await
            && holder.as_deref().is_some_and(|h| h != node)
        {
            tracing::error!(recording = %self.recording_id, room = %room, node = %node, holder = ?holder, "another node holds this room's lease: this node stops writing; unstored segments stay in the spool");
            self.fenced = true;
        }
        !self.fenced
    }

    /// Applies messages until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
        while let Some(msg) = rx.recv().await {
            self.apply(msg).await;
        }
    }

    pub async fn apply(&mut self, msg: WriterMsg) {
        // Fenced: another node continues this chain; writing here would fork or overwrite it.
        if !self.may_write().await {
            return;
        }
        match msg {
            WriterMsg::Segment {
                path,
                meta,
                recovered,
                closed_at,
            } => self.append_segment(path, meta, recovered, closed_at).await,
            WriterMsg::Outage { reason } => {
                // The first cause of a hole stands; "connecting" is refined by why it failed.
                self.pending_outage = Some(match self.pending_outage.take() {
                    None => reason,
                    Some(first) if first == CONNECTING => format!("{CONNECTING}: {reason}"),
                    Some(first) => first,
                });
            }
            WriterMsg::Close { stop_us } => {
                let stop_us = stop_us.min(now_us());
                // A chain with nothing but its genesis says why, however short the session.
                let force = self.head.seq == 0 && stop_us > self.covered_until_us;
                self.cover_to(stop_us, "no media between the last segment and stop", force)
                    .await;
            }
        }
    }

    /// Covers [chain end, `until_us`] with a gap entry if it is longer than the tolerance (or,
    /// with `force`, however short, but not empty). The reason is the pending outage's, or
    /// `default_reason`.
    async fn cover_to(&mut self, until_us: i64, default_reason: &str, force: bool) {
        let hole = until_us - self.covered_until_us;
        if hole <= self.rules.tolerance_us && !(force && hole > 0) {
            return;
        }
        let reason = match self.pending_outage.take() {
            Some(r) => format!("{r} ({:.1} s)", hole as f64 / 1e6),
            None => default_reason.to_string(),
        };
        let entry = self.next(EntryKind::Gap, self.covered_until_us, hole, &reason);
        self.commit(entry).await;
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
    }

    /// The start a segment enters the chain with: the camera's clock within the bound, else the
    /// server's; never outside [session start, now] (less/plus the tolerance).
    fn stamp(&self, meta: &SegmentMeta) -> clock::Stamp {
        let mut st = match meta.server_start_us {
            Some(server) => clock::stamp(
                server,
                meta.camera_start_us,
                self.rules.max_camera_offset_us,
            ),
            // A sidecar written before both clocks were kept.
            None => clock::Stamp {
                start_us: meta.wall_start_us,
                clock: if meta.clock == "rtcp-ntp" {
                    ClockSource::RtcpNtp
                } else {
                    ClockSource::Server
                },
                note: None,
                corrected: false,
            },
        };
        // A camera may be ahead or behind by up to the bound; nothing further enters.
        let lo = self.session_start_us - self.rules.max_camera_offset_us;
        let hi = now_us() + self.rules.max_camera_offset_us;
        if !(lo..=hi).contains(&st.start_us) {
            let fallback = meta
                .server_start_us
                .filter(|s| (lo..=hi).contains(s))
                .unwrap_or(self.covered_until_us);
            st = clock::Stamp {
                note: Some(format!(
                    "start {} is outside the session: placed at {}",
                    rfc3339(st.start_us),
                    rfc3339(fallback)
                )),
                start_us: fallback,
                clock: ClockSource::Server,
                corrected: true,
            };
        }
        st
    }

    fn next(&self, kind: EntryKind, start_us: i64, duration_us: i64, detail: &str) -> Entry {
        Entry {
            recording_id: self.recording_id.clone(),
            seq: self.head.seq + 1,
            kind,
            object_key: String::new(),
            wall_start_us: start_us,
            duration_us,
            bytes: 0,
            sha256: String::new(),
            clock: "server".into(),
            detail: one_line(detail),
            prev_hash: self.head.entry_hash.clone(),
            entry_hash: String::new(),
        }
    }

    async fn append_segment(
        &mut self,
        path: PathBuf,
        meta: SegmentMeta,
        recovered: bool,
        closed_at: Instant,
    ) {
        let span =
            tracing::info_span!("segment", recording = %self.recording_id, file = %path.display());
        let _g = span.enter();
        let sealed = {
            let path = path.clone();
            match tokio::task::spawn_blocking(move || spool::seal(&path)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    // The file vanished or is unreadable: the hole it leaves is a gap that says
                    // so, placed by the next segment or the stop.
                    tracing::error!(error = %e, "segment file unreadable, recorded as a gap");
                    self.pending_outage
                        .get_or_insert(format!("segment file lost before storing: {e}"));
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "hashing task failed");
                    return;
                }
            }
        };
        if recovered
            && index::has_media_hash(&self.pool, &self.recording_id, &sealed.sha256)
                .await
                .unwrap_or(false)
        {
            spool::forget(&path);
            return;
        }
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .to_string();
        let duration_us = meta.duration_us.unwrap_or(0).max(0);
        let stamp = self.stamp(&meta);
        if stamp.corrected {
            self.stats.clock_corrections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(note = ?stamp.note, "segment start corrected");
        }
        // A hole before this segment becomes a gap entry first. When the server's clock shows
        // the media continuous, the hole is the camera's clock jumping, and is named so.
        let clock_jump = match (self.last_server_end_us, meta.server_start_us) {
            (Some(prev_end), Some(server)) if stamp.clock == ClockSource::RtcpNtp => {
                (server - prev_end).abs() <= self.rules.tolerance_us
            }
            _ => false,
        };
        let hole = stamp.start_us - self.covered_until_us;
        let default_reason = if clock_jump {
            format!("camera clock jumped {:+.3} s", hole as f64 / 1e6)
        } else {
            format!("no media for {:.1} s", hole as f64 / 1e6)
        };
        self.cover_to(stamp.start_us, &default_reason, false).await;
        let _ = self.pending_outage.take();
        let mut notes: Vec<String> = Vec::new();
        if recovered {
            notes.push("recovered from spool; duration estimated".into());
        }
        if stamp.start_us < self.covered_until_us - self.rules.tolerance_us {
            notes.push(format!(
                "{OVERLAP_MARK} {:.3} s",
                (self.covered_until_us - stamp.start_us) as f64 / 1e6
            ));
        }
        notes.extend(stamp.note.clone());
        notes.extend(meta.note.clone());
        let mut entry = self.next(
            EntryKind::Media,
            stamp.start_us,
            duration_us,
            &notes.join("; "),
        );
        entry.object_key = object_key(&self.key_prefix, entry.seq, &extension);
        entry.bytes = sealed.bytes.len() as i64;
        entry.sha256 = sealed.sha256;
        entry.clock = stamp.clock.as_str().into();
        self.last_server_end_us = meta.server_start_us.map(|s| s + duration_us);

        let key = object_store::path::Path::from(entry.object_key.as_str());
        let mut backoff = Duration::from_millis(200);
        loop {
            match self
                .store
                .put(&key, PutPayload::from(sealed.bytes.clone()))
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(key = %entry.object_key, error = %e, "object store write failed, retrying; segment stays in the spool");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
        let bytes = entry.bytes as u64;
        let duration_us = entry.duration_us.max(1) as u64;
        self.commit(entry).await;
        spool::forget(&path);
        self.metrics
            .observe_store_latency(closed_at.elapsed().as_secs_f64());
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.stats
            .bitrate_bps
            .store(bytes * 8 * 1_000_000 / duration_us, Ordering::Relaxed);
        self.stats
            .last_segment_at_us
            .store(crate::time::now_us() as u64, Ordering::Relaxed);
    }

    /// Seals and inserts the entry, retrying until the index accepts it.
    async fn commit(&mut self, entry: Entry) {
        let entry = entry.seal();
        let end = entry.wall_start_us + entry.duration_us;
        let mut backoff = Duration::from_millis(200);
        loop {
            match index::insert_entry(&self.pool, &entry).await {
                Ok(()) => break,
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(seq = entry.seq, error = %e, "index write failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
        if matches!(entry.kind, EntryKind::Media | EntryKind::Gap) {
            self.covered_until_us = self.covered_until_us.max(end);
        }
        self.head = entry;
    }
}
