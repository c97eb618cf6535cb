//! Late evidence: segments a node had spooled but could not chain because it lost the room's
//! lease (it froze, or lost the database, while another node took the room over). They are not
//! stranded: the node that spooled them stores each as an object under `{prefix}/late/` and
//! lists it in `late_segments`; the node holding the lease then chains it (`writer`), after
//! re-reading the object and checking its hash, as a media entry that declares its overlap.
//! A session that stopped before they arrived keeps them listed, hash and all.

use sqlx::Row;

use crate::db::Pool;
use crate::ledger::{clock, spool};
use crate::store::Store;
use crate::time::now_us;

#[derive(Debug, thiserror::Error)]
pub enum LateError {
    #[error("late segment {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("storing late segment {key}: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How the note of a late segment, and so its chain entry's detail, begins.
pub const LATE_MARK: &str = "late: ";

/// One late segment as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct LateSegment {
    pub object_key: String,
    pub recording_id: String,
    pub node_id: String,
    pub wall_start_us: i64,
    pub duration_us: i64,
    pub bytes: i64,
    pub sha256: String,
    pub clock: String,
    pub note: String,
    pub published_at_us: i64,
    pub chained_seq: Option<i64>,
}

/// The key of a late segment: content-addressed, so publishing twice stores it once.
pub fn late_key(prefix: &str, node: &str, sha256: &str, extension: &str) -> String {
    format!("{prefix}/late/{node}-{}.{extension}", &sha256[..16])
}

/// How a spooled segment is read: its start told by the writer's clock rule, and a segment the
/// muxer never closed measured by its media.
#[derive(Clone, Copy)]
pub struct Reading {
    pub max_camera_offset_us: i64,
    pub measure: spool::Measure,
}

/// Stores and lists every segment left in `spool_dir` (one recording's), then forgets the
/// spool files. Returns how many were published. A file is forgotten only once its object is
/// stored and its row committed.
pub async fn publish(
    pool: &Pool,
    store: &Store,
    recording_id: &str,
    key_prefix: &str,
    node: &str,
    spool_dir: &std::path::Path,
    reading: Reading,
) -> Result<usize, LateError> {
    let Reading {
        max_camera_offset_us,
        measure,
    } = reading;
    let mut published = 0;
    let listed = {
        let dir = spool_dir.to_path_buf();
        tokio::task::spawn_blocking(move || spool::leftovers(&dir, measure))
            .await
            .map_err(|e| LateError::Spool {
                path: spool_dir.display().to_string(),
                source: std::io::Error::other(e),
            })?
    };
    for (path, meta, recovered) in listed {
        let shown = path.display().to_string();
        let sealed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || spool::seal(&path))
                .await
                .map_err(|e| LateError::Spool {
                    path: shown.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|source| LateError::Spool {
                    path: shown.clone(),
                    source,
                })?
        };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("bin");
        let key = late_key(key_prefix, node, &sealed.sha256, extension);
        store
            .put(
                &object_store::path::Path::from(key.as_str()),
                crate::store::payload(&sealed.bytes),
            )
            .await
            .map_err(|source| LateError::Store {
                key: key.clone(),
                source,
            })?;
        // Told by the rule the writer applies to every segment (`clock::stamp`): the camera's
        // clock within the bound, else the server's. The server's alone would start a late
        // segment by when its first packet arrived, late by the jitter buffer and the load, and
        // open a hole the camera's clock shows was not there.
        let stamp = match meta.server_start_us {
            Some(server) => clock::stamp(server, meta.camera_start_us, max_camera_offset_us),
            None => clock::stamp(meta.wall_start_us, None, max_camera_offset_us),
        };
        let mut note = format!("{LATE_MARK}spooled by node {node}, which lost the room's lease");
        if recovered {
            note.push_str("; recovered from spool, duration from its media");
        }
        if let Some(n) = &stamp.note {
            note.push_str("; ");
            note.push_str(n);
        }
        sqlx::query(
            "INSERT INTO late_segments (object_key, recording_id, node_id, wall_start_us, duration_us, bytes, sha256, clock, note, published_at_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (object_key) DO NOTHING",
        )
        .bind(&key)
        .bind(recording_id)
        .bind(node)
        .bind(stamp.start_us)
        .bind(meta.duration_us.unwrap_or(0).max(0))
        .bind(sealed.bytes.len() as i64)
        .bind(&sealed.sha256)
        .bind(stamp.clock.as_str())
        .bind(&note)
        .bind(now_us())
        .execute(pool)
        .await?;
        spool::forget(&path);
        published += 1;
    }
    if published > 0 {
        tracing::warn!(recording = %recording_id, node, published, "late segments stored and listed for the chain");
    }
    Ok(published)
}

const COLS: &str = "object_key, recording_id, node_id, wall_start_us, duration_us, bytes, sha256, clock, note, published_at_us, chained_seq";

fn from_row(r: &sqlx::any::AnyRow) -> Result<LateSegment, sqlx::Error> {
    Ok(LateSegment {
        object_key: r.try_get("object_key")?,
        recording_id: r.try_get("recording_id")?,
        node_id: r.try_get("node_id")?,
        wall_start_us: r.try_get("wall_start_us")?,
        duration_us: r.try_get("duration_us")?,
        bytes: r.try_get("bytes")?,
        sha256: r.try_get("sha256")?,
        clock: r.try_get("clock")?,
        note: r.try_get("note")?,
        published_at_us: r.try_get("published_at_us")?,
        chained_seq: r.try_get("chained_seq")?,
    })
}

/// A recording's late segments not chained yet, oldest first.
pub async fn pending(pool: &Pool, recording_id: &str) -> Result<Vec<LateSegment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM late_segments WHERE recording_id = $1 AND chained_seq IS NULL ORDER BY wall_start_us, object_key"
    ))
    .bind(recording_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Every late segment of a recording, chained or not.
pub async fn of_recording(
    pool: &Pool,
    recording_id: &str,
) -> Result<Vec<LateSegment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM late_segments WHERE recording_id = $1 ORDER BY wall_start_us, object_key"
    ))
    .bind(recording_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Records the entry that chained a late segment.
pub async fn mark_chained(pool: &Pool, object_key: &str, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE late_segments SET chained_seq = $1 WHERE object_key = $2")
        .bind(seq)
        .bind(object_key)
        .execute(pool)
        .await?;
    Ok(())
}
