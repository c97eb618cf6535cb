//! The local spool: segment files as the muxer wrote them, each with a JSON sidecar, until they
//! are stored and indexed. Whatever is here at start-up was not indexed yet and is replayed
//! into the chain first, so a crash loses no closed segment.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the recorder knows of a segment file, kept beside it as `<file>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    pub wall_start_us: i64,
    /// Unknown until the muxer closes the file.
    pub duration_us: Option<i64>,
    /// `rtcp-ntp` or `server`.
    pub clock: String,
    /// This server's clock at the segment's first buffer, and the camera's (RTCP) if known:
    /// the chain writer chooses between them (`clock::stamp`).
    #[serde(default)]
    pub server_start_us: Option<i64>,
    #[serde(default)]
    pub camera_start_us: Option<i64>,
    /// What the entry's detail should say about this run (e.g. a stream not recorded).
    #[serde(default)]
    pub note: Option<String>,
}

pub fn recording_dir(root: &Path, recording_id: &str) -> PathBuf {
    root.join(recording_id)
}

pub fn sidecar_path(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Writes the sidecar atomically (temp file, fsync, rename).
pub fn write_sidecar(segment: &Path, meta: &SegmentMeta) -> std::io::Result<()> {
    let path = sidecar_path(segment);
    let tmp = path.with_extension("json.tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta).expect("meta serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        // A full disk leaves no half-written sidecar behind: the segment's times are then
        // estimated from the file, as for a crash.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl SegmentMeta {
    /// Adds `note` (if any) to what the entry's detail says, after what is there.
    pub fn add_note(&mut self, note: Option<String>) {
        if let Some(n) = note {
            self.note = Some(match self.note.take() {
                Some(before) => format!("{before}; {n}"),
                None => n,
            });
        }
    }
}

pub fn read_sidecar(segment: &Path) -> Option<SegmentMeta> {
    let bytes = std::fs::read(sidecar_path(segment)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How long the media in a segment file lasts, in microseconds, if it can be read.
pub type Measure = fn(&Path) -> Option<i64>;

/// A closed segment file made durable and read back: its bytes and SHA-256.
pub struct Sealed {
    pub bytes: bytes::Bytes,
    pub sha256: String,
    /// SM3 of the same bytes, for evidence packages (kept in `media_digests`, not chained).
    pub sm3: String,
}

/// fsyncs the file, then reads and hashes exactly what is on disk, once, with both digests:
/// the bytes are in hand here, and an export that needs SM3 later would read them again.
pub fn seal(segment: &Path) -> std::io::Result<Sealed> {
    let f = std::fs::File::open(segment)?;
    f.sync_all()?;
    drop(f);
    let data = std::fs::read(segment)?;
    let sha256 = hex::encode(Sha256::digest(&data));
    let sm3 = hex::encode(sm3::Sm3::digest(&data));
    Ok(Sealed {
        bytes: bytes::Bytes::from(data),
        sha256,
        sm3,
    })
}

/// Removes a segment and its sidecar once it is stored and indexed.
pub fn forget(segment: &Path) {
    let _ = std::fs::remove_file(sidecar_path(segment).with_extension("json.tmp"));
    let _ = std::fs::remove_file(sidecar_path(segment));
    let _ = std::fs::remove_file(segment);
}

fn is_segment(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    ext != "json" && ext != "tmp"
}

/// Whether a recording's spool folder holds any segment file (sidecars and temporary files
/// aside).
pub fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().any(|e| is_segment(&e.path())))
        .unwrap_or(false)
}

/// Segment files left in a recording's spool folder, oldest first (names sort by run, then
/// index). A file the muxer never closed is marked recovered, its duration measured from its
/// media by `measure` (the ledger reads no media itself: `capture::media_span`); one without a sidecar is placed to end at its last write.
pub fn leftovers(dir: &Path, measure: Measure) -> Vec<(PathBuf, SegmentMeta, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_segment(p))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let md = std::fs::metadata(&path).ok()?;
            if md.len() == 0 {
                forget(&path);
                return None;
            }
            let modified_us = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0);
            // Open when the process died or the node was cut off: the file holds what its media
            // timestamps say, never more than the time up to its last write.
            let measured = || measure(&path).unwrap_or(0);
            match read_sidecar(&path) {
                Some(meta) if meta.duration_us.is_some() => Some((path, meta, false)),
                Some(mut meta) => {
                    let by_file_times = (modified_us - meta.wall_start_us).max(0);
                    meta.duration_us = Some(measured().min(by_file_times));
                    Some((path, meta, true))
                }
                None => {
                    let duration = measured();
                    Some((
                        path,
                        SegmentMeta {
                            wall_start_us: modified_us - duration,
                            duration_us: Some(duration),
                            clock: "server".into(),
                            ..Default::default()
                        },
                        true,
                    ))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_sorted_and_estimated() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("0001-00000001.ts");
        let b = dir.path().join("0001-00000000.ts");
        let empty = dir.path().join("0002-00000000.ts");
        std::fs::write(&a, b"aa").unwrap();
        std::fs::write(&b, b"bb").unwrap();
        std::fs::write(&empty, b"").unwrap();
        let meta = SegmentMeta {
            wall_start_us: 5,
            duration_us: Some(7),
            clock: "server".into(),
            ..Default::default()
        };
        write_sidecar(&b, &meta).unwrap();
        write_sidecar(
            &a,
            &SegmentMeta {
                duration_us: None,
                ..meta.clone()
            },
        )
        .unwrap();
        let left = leftovers(dir.path(), |_| Some(3));
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].0, b);
        assert_eq!(left[0].1, meta);
        assert!(!left[0].2);
        assert!(left[1].2, "an unclosed segment is marked recovered");
        assert_eq!(left[1].1.duration_us, Some(3), "as long as its media");
        assert!(!empty.exists(), "empty files are dropped");
        let sealed = seal(&a).unwrap();
        assert_eq!(sealed.sha256, hex::encode(Sha256::digest(b"aa")));
    }
}
