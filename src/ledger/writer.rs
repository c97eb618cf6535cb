//! The chain writer of one recording: the single task that turns spooled segments into chain
//! entries and enforces the coverage invariant where entries enter the chain. For a segment:
//! fsync and hash the file, choose its start time (camera or server clock, never outside the
//! session), cover any hole before it with a gap entry, store the object, insert the entry, then
//! forget the spool file. Failures are retried with backoff; order is never changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use object_store::{PutMode, PutOptions};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::db::Pool;
use crate::ledger::chain::{ClockSource, Entry, EntryKind, one_line};
use crate::ledger::checkpoint::Checkpointer;
use crate::ledger::clock;
use crate::ledger::coverage::OVERLAP_MARK;
use crate::ledger::index;
use crate::ledger::late;
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
    /// The recorder sending to this writer failed: what it left in `dir` (segments closed and
    /// held back, the one it had open) is chained now, in order, as after a crash; `done` is
    /// told once they are, so that no new run's file is taken for a leftover.
    Leftovers {
        dir: PathBuf,
        measure: spool::Measure,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

/// What became of an entry the writer tried to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    Done,
    /// Its seq (or its object key) was taken by another writer.
    Conflict,
    /// This node may no longer write this chain.
    Fenced,
}

/// How many times one entry may be re-based on a chain another writer advanced.
const MAX_RESYNCS: usize = 3;

/// How often a writer looks for late segments other nodes listed for its recording.
const LATE_EVERY: Duration = Duration::from_secs(2);

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
    /// How long a lease this writer re-takes lasts (after it lapsed with nobody taking it).
    pub lease_ttl_us: i64,
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
    /// When late segments were last looked for.
    late_checked: Instant,
    /// Whether the store takes create-only-if-absent puts (until it says it does not).
    store_has_create: bool,
    /// Signs the head every so often while recording; none once a check of the chain against
    /// its checkpoints failed (nothing more is signed for that session).
    pub checkpoints: Option<Checkpointer>,
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
            late_checked: Instant::now(),
            store_has_create: true,
            checkpoints: None,
            pool,
            store,
            recording_id,
            key_prefix,
            head,
            stats,
            metrics,
            lease: None,
            lease_ttl_us: 0,
            fenced: false,
        })
    }

    /// Whether this node may still write: no other node holds the room's lease. A database
    /// error proves nothing either way, so writing waits until the lease can be read again
    /// (segments wait in the spool meanwhile); another node's lease fences for good, and what
    /// is left in the spool becomes late evidence (`late`).
    async fn may_write(&mut self) -> bool {
        if self.fenced {
            return false;
        }
        let Some((room, node)) = self.lease.clone() else {
            return true;
        };
        let mut backoff = Duration::from_millis(200);
        let holder = loop {
            // This node's lease, or one that lapsed with nobody taking it: (re)taken in one
            // statement, so no other node can hold it while this one writes.
            let confirmed = match crate::ledger::lease::holder(&self.pool, &room).await {
                Ok(Some(h)) => Ok(Some(h)),
                Ok(None) => {
                    crate::ledger::lease::acquire(&self.pool, &room, &node, self.lease_ttl_us)
                        .await
                        .map(|won| {
                            Some(if won {
                                node.clone()
                            } else {
                                "another node".into()
                            })
                        })
                }
                Err(e) => Err(e),
            };
            match confirmed {
                Ok(h) => break h,
                Err(e) => {
                    self.stats.set_problem(Some(format!(
                        "database unreachable; writing paused until the lease is confirmed: {e}"
                    )));
                    tracing::warn!(recording = %self.recording_id, room = %room, error = %e, "cannot confirm the lease: writing paused, segments wait in the spool");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        if holder.as_deref().is_some_and(|h| h != node) {
            tracing::error!(recording = %self.recording_id, room = %room, node = %node, holder = ?holder, "another node holds this room's lease: this node stops writing; unstored segments stay in the spool as late evidence");
            self.fenced = true;
        }
        !self.fenced
    }

    /// Chains the late segments other nodes listed for this recording (see `late`): each
    /// object re-read and its hash checked, entered as media that declares its overlap.
    async fn chain_late(&mut self) {
        let pending = match late::pending(&self.pool, &self.recording_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(recording = %self.recording_id, error = %e, "cannot read late segments; tried again later");
                return;
            }
        };
        for l in pending {
            let sha256 = match self.stored_sha256(&l.object_key).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(key = %l.object_key, error = %e, "late segment unreadable; tried again later");
                    continue;
                }
            };
            if sha256 != l.sha256 {
                tracing::error!(key = %l.object_key, listed = %l.sha256, stored = %sha256, "late segment's object does not match its listed hash: not chained");
                continue;
            }
            // A hole before a late segment lies in the other node's time; the outage pending
            // here (a takeover, say) is the hole before this node's own next segment, and keeps
            // its reason for that one.
            let outage = self.pending_outage.take();
            let hole = l.wall_start_us - self.covered_until_us;
            let reason = if self.head.seq == 0 {
                // Nothing chained yet: the hole before the recording's first segment is the
                // time the node that spooled it took to reach the camera.
                format!("{CONNECTING} ({:.1} s)", hole as f64 / 1e6)
            } else {
                format!("no media for {:.1} s", hole as f64 / 1e6)
            };
            let covered = self.cover_to(l.wall_start_us, &reason, false).await;
            self.pending_outage = outage;
            if covered != Commit::Done {
                return;
            }
            let mut detail = l.note.clone();
            if l.wall_start_us < self.covered_until_us - self.rules.tolerance_us {
                detail.push_str(&format!(
                    "; {OVERLAP_MARK} {:.3} s",
                    (self.covered_until_us - l.wall_start_us) as f64 / 1e6
                ));
            }
            let mut entry = self.next(EntryKind::Media, l.wall_start_us, l.duration_us, &detail);
            entry.object_key = l.object_key.clone();
            entry.bytes = l.bytes;
            entry.sha256 = l.sha256.clone();
            entry.clock = l.clock.clone();
            let seq = entry.seq;
            if self.commit(entry, None).await != Commit::Done {
                // A conflict is resolved by the next look, from the chain as it then stands.
                let _ = self.resync(0).await;
                return;
            }
            if let Err(e) = late::mark_chained(&self.pool, &l.object_key, seq).await {
                tracing::warn!(key = %l.object_key, seq, error = %e, "late segment chained but not marked");
            }
            self.stats.late_chained.fetch_add(1, Ordering::Relaxed);
            tracing::info!(recording = %self.recording_id, seq, key = %l.object_key, "late segment chained");
        }
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
        if matches!(msg, WriterMsg::Close { .. }) || self.late_checked.elapsed() >= LATE_EVERY {
            self.late_checked = Instant::now();
            self.chain_late().await;
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
            WriterMsg::Leftovers { dir, measure, done } => {
                // Every segment sent before this message is chained and out of the spool: what
                // is left there was never sent.
                let left = tokio::task::spawn_blocking(move || spool::leftovers(&dir, measure))
                    .await
                    .unwrap_or_default();
                for (path, meta, recovered) in left {
                    self.append_segment(path, meta, recovered, Instant::now())
                        .await;
                }
                let _ = done.send(());
            }
            WriterMsg::Close { stop_us } => {
                let stop_us = stop_us.min(now_us());
                // A chain with nothing but its genesis says why, however short the session.
                let force = self.head.seq == 0 && stop_us > self.covered_until_us;
                for attempt in 0.. {
                    let done = self
                        .cover_to(stop_us, "no media between the last segment and stop", force)
                        .await;
                    if done != Commit::Conflict || !self.resync(attempt).await {
                        break;
                    }
                }
            }
        }
    }

    /// Covers [chain end, `until_us`] with a gap entry if it is longer than the tolerance (or,
    /// with `force`, however short, but not empty). The reason is the pending outage's, or
    /// `default_reason`.
    async fn cover_to(&mut self, until_us: i64, default_reason: &str, force: bool) -> Commit {
        let hole = until_us - self.covered_until_us;
        if hole <= self.rules.tolerance_us && !(force && hole > 0) {
            return Commit::Done;
        }
        let reason = match &self.pending_outage {
            Some(r) => format!("{r} ({:.1} s)", hole as f64 / 1e6),
            None => default_reason.to_string(),
        };
        let entry = self.next(EntryKind::Gap, self.covered_until_us, hole, &reason);
        let done = self.commit(entry, None).await;
        if done == Commit::Done {
            self.pending_outage = None;
            self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    /// After another writer took a seq: continue from the chain as the database has it, if this
    /// node still holds the lease (the other writer was a node that lost it, and its entries
    /// are evidence too). At most `MAX_RESYNCS` times per entry; then the writer stops with an
    /// alarm rather than fight over the chain.
    async fn resync(&mut self, attempt: usize) -> bool {
        if attempt >= MAX_RESYNCS || !self.may_write().await {
            if !self.fenced {
                let problem = format!(
                    "chain conflict: another writer keeps appending to this recording; this writer stopped after {attempt} attempts, its segments stay in the spool"
                );
                tracing::error!(recording = %self.recording_id, "{problem}");
                self.stats.set_problem(Some(problem));
                self.fenced = true;
            }
            return false;
        }
        match (
            index::head(&self.pool, &self.recording_id).await,
            index::chain_end(&self.pool, &self.recording_id).await,
        ) {
            (Ok(Some(head)), Ok(end)) => {
                tracing::warn!(recording = %self.recording_id, from = self.head.seq, to = head.seq, "chain conflict: continuing from the head another writer left");
                self.head = head;
                self.covered_until_us = self.covered_until_us.max(end.unwrap_or(0));
                true
            }
            _ => false,
        }
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
        // Instrumented, never entered: a span entered across an await stays on the thread's
        // stack after it closes, and the next `Span::current()` there panics in
        // tracing-subscriber (tokio-rs/tracing#3514), killing whatever task ran it.
        let span =
            tracing::info_span!("segment", recording = %self.recording_id, file = %path.display());
        tracing::Instrument::instrument(
            self.append_segment_in_span(path, meta, recovered, closed_at),
            span,
        )
        .await
    }

    async fn append_segment_in_span(
        &mut self,
        path: PathBuf,
        meta: SegmentMeta,
        recovered: bool,
        closed_at: Instant,
    ) {
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
        let extension = extension.as_str();
        let mut attempt = 0;
        let (bytes, duration_us) = loop {
            let tried = self
                .enter_segment(
                    &sealed,
                    &meta,
                    &stamp,
                    &default_reason,
                    recovered,
                    extension,
                )
                .await;
            match tried {
                Commit::Done => break (sealed.bytes.len() as u64, duration_us.max(1) as u64),
                Commit::Conflict if self.resync(attempt).await => attempt += 1,
                // Fenced or stopped: the file stays in the spool, to become late evidence.
                _ => return,
            }
        };
        self.last_server_end_us = meta
            .server_start_us
            .map(|s| s + meta.duration_us.unwrap_or(0).max(0));
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

    /// The gap before a segment (if any), its object, its entry: from the chain as it stands.
    async fn enter_segment(
        &mut self,
        sealed: &spool::Sealed,
        meta: &SegmentMeta,
        stamp: &clock::Stamp,
        default_reason: &str,
        recovered: bool,
        extension: &str,
    ) -> Commit {
        let gap = self.cover_to(stamp.start_us, default_reason, false).await;
        if gap != Commit::Done {
            return gap;
        }
        self.pending_outage = None;
        let mut notes: Vec<String> = Vec::new();
        if recovered {
            notes.push("recovered from spool; duration from its media".into());
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
            meta.duration_us.unwrap_or(0).max(0),
            &notes.join("; "),
        );
        entry.object_key = object_key(&self.key_prefix, entry.seq, extension);
        entry.bytes = sealed.bytes.len() as i64;
        entry.sha256 = sealed.sha256.clone();
        entry.clock = stamp.clock.as_str().into();
        if !self.put_object(&entry.object_key, sealed).await {
            return Commit::Conflict;
        }
        self.commit(entry, Some(&sealed.sm3)).await
    }

    /// The SHA-256 of the bytes the store holds under `key`.
    async fn stored_sha256(&self, key: &str) -> Result<String, object_store::Error> {
        let path = object_store::path::Path::from(key);
        let bytes = self.store.get(&path).await?.bytes().await?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    /// Stores a segment's bytes under `key`, never over another's: created only if absent
    /// (where the store can say so); a key that already holds these very bytes (an earlier try
    /// whose answer was lost) is stored. False when the key holds other bytes: another writer
    /// used this seq. Store failures are retried, the segment safe in the spool meanwhile.
    async fn put_object(&mut self, key: &str, sealed: &spool::Sealed) -> bool {
        let path = object_store::path::Path::from(key);
        let mut backoff = Duration::from_millis(200);
        loop {
            let mode = if self.store_has_create {
                PutMode::Create
            } else {
                PutMode::Overwrite
            };
            let put = self
                .store
                .put_opts(
                    &path,
                    crate::store::payload(&sealed.bytes),
                    PutOptions::from(mode),
                )
                .await;
            match put {
                Ok(_) => return true,
                Err(object_store::Error::AlreadyExists { .. }) => {
                    match self.stored_sha256(key).await {
                        Ok(h) => return h == sealed.sha256,
                        Err(e) => {
                            tracing::warn!(key, error = %e, "cannot read the object already at this key; retrying")
                        }
                    }
                }
                Err(object_store::Error::NotImplemented) => {
                    tracing::warn!(
                        "the object store cannot create only-if-absent; segments are put plainly"
                    );
                    self.store_has_create = false;
                    continue;
                }
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(key, error = %e, "object store write failed, retrying; segment stays in the spool");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }

    /// Seals and inserts the entry, retrying while the database fails and this node still may
    /// write. False when it was not inserted: the lease went to another node, or the seq is
    /// taken (another writer appended to this chain: an alarm, and this writer stops for good
    /// rather than retry a conflict that cannot resolve). `sm3`: a media segment's SM3, from
    /// the bytes sealed, inserted with the entry.
    async fn commit(&mut self, entry: Entry, sm3: Option<&str>) -> Commit {
        let entry = entry.seal();
        let end = entry.wall_start_us + entry.duration_us;
        let mut backoff = Duration::from_millis(200);
        loop {
            match index::insert_entry(&self.pool, &entry, sm3).await {
                Ok(()) => break,
                Err(e) if index::is_conflict(&e) => {
                    tracing::error!(recording = %self.recording_id, seq = entry.seq, error = %e, "chain conflict: another writer took this seq");
                    self.stats.chain_conflicts.fetch_add(1, Ordering::Relaxed);
                    return Commit::Conflict;
                }
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(seq = entry.seq, error = %e, "index write failed, retrying once the lease is confirmed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                    if !self.may_write().await {
                        return Commit::Fenced;
                    }
                }
            }
        }
        if matches!(entry.kind, EntryKind::Media | EntryKind::Gap) {
            self.covered_until_us = self.covered_until_us.max(end);
        }
        self.head = entry;
        if let Some(c) = &mut self.checkpoints {
            c.after_commit(&self.store, &self.pool, &self.key_prefix, &self.head);
        }
        Commit::Done
    }
}
