//! The chain writer of one recording: the single task that turns spooled segments and gaps into
//! chain entries. For a segment: fsync and hash the file, store the object, insert the entry,
//! then forget the spool file. Failures are retried with backoff; order is never changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use object_store::PutPayload;
use tokio::sync::mpsc;

use super::chain::{Entry, EntryKind, one_line};
use super::index;
use super::metrics::{Metrics, SourceStats};
use super::spool::{self, SegmentMeta};
use crate::db::Pool;
use crate::store::Store;

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
    Gap {
        start_us: i64,
        end_us: i64,
        reason: String,
    },
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
    pub async fn open(
        pool: Pool,
        store: Store,
        recording_id: String,
        key_prefix: String,
        stats: Arc<SourceStats>,
        metrics: Arc<Metrics>,
    ) -> Result<ChainWriter, sqlx::Error> {
        let head = index::head(&pool, &recording_id)
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound)?;
        Ok(ChainWriter {
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
            && let Ok(holder) = super::lease::holder(&self.pool, room).await
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
            WriterMsg::Gap {
                start_us,
                end_us,
                reason,
            } => {
                let entry = self.next(
                    EntryKind::Gap,
                    start_us,
                    (end_us - start_us).max(0),
                    &reason,
                );
                self.commit(entry).await;
                self.stats.gaps.fetch_add(1, Ordering::Relaxed);
            }
        }
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
                    // The file vanished or is unreadable: say so in the chain, never hide it.
                    tracing::error!(error = %e, "segment file unreadable, recorded as a gap");
                    let end = meta.wall_start_us + meta.duration_us.unwrap_or(0);
                    let entry = self.next(
                        EntryKind::Gap,
                        meta.wall_start_us,
                        end - meta.wall_start_us,
                        &format!("segment file lost before storing: {e}"),
                    );
                    self.commit(entry).await;
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
        let mut entry = self.next(
            EntryKind::Media,
            meta.wall_start_us,
            meta.duration_us.unwrap_or(0),
            if recovered {
                "recovered from spool; duration estimated"
            } else {
                ""
            },
        );
        entry.object_key = object_key(&self.key_prefix, entry.seq, &extension);
        entry.bytes = sealed.bytes.len() as i64;
        entry.sha256 = sealed.sha256;
        entry.clock = meta.clock.clone();

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
            .store(crate::db::now_us() as u64, Ordering::Relaxed);
    }

    /// Seals and inserts the entry, retrying until the index accepts it.
    async fn commit(&mut self, entry: Entry) {
        let entry = entry.seal();
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
        self.head = entry;
    }
}
