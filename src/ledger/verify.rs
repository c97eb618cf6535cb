//! Re-reads every stored object of a session and checks it against the chain: hashes, links,
//! genesis binding, unexpected objects, and the signed manifest. Used by `witness verify` and
//! `GET /sessions/{id}/verify`.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::chain::{self, Entry, EntryKind};
use crate::ledger::coverage::{self, Verdict};
use crate::ledger::index::{self, RecordingRow, SessionRow};
use crate::ledger::manifest::{self, Manifest};
use crate::ledger::writer::recording_prefix;
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub source: String,
    pub seq: Option<i64>,
    pub object_key: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source {}", self.source)?;
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(k) = &self.object_key {
            write!(f, " ({k})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordingCheck {
    pub recording_id: String,
    pub source: String,
    pub entries: usize,
    pub media_segments: usize,
    pub gaps: usize,
    pub bytes: i64,
    pub head_seq: i64,
    pub head_hash: String,
    /// No tampering found in this chain (coverage aside).
    pub intact: bool,
    /// Seconds of media and of gap entries, and the stretches of the session no entry covers.
    pub media_seconds: f64,
    pub gap_seconds: f64,
    pub uncovered: Vec<UncoveredView>,
}

/// A stretch of the session that no chain entry covers.
#[derive(Debug, Clone, Serialize)]
pub struct UncoveredView {
    pub source: String,
    pub from: String,
    pub to: String,
    pub seconds: f64,
    pub after_seq: i64,
    /// `hole` (no entry), or `overlap` (an entry starts before the previous one ends,
    /// without saying so).
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestCheck {
    pub key: String,
    /// `verified`, `missing`, `not_yet` (session still live), `bad_signature`, `heads_differ`, `malformed`
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub session_id: String,
    pub project_code: String,
    /// `INTACT`, `INCOMPLETE` (nothing altered, but time no entry covers) or `TAMPERED`.
    pub status: Verdict,
    /// `status` is INTACT.
    pub intact: bool,
    /// One line for people: `INTACT: …`, `INCOMPLETE: <first hole>` or `TAMPERED: <first failure>`.
    pub verdict: String,
    /// Every stretch of the session that no chain entry covers, all sources.
    pub uncovered: Vec<UncoveredView>,
    /// The tolerance coverage was checked with (µs), and the end each chain must reach (none
    /// while the session records).
    pub coverage_tolerance_us: i64,
    pub stopped_at: Option<String>,
    pub first_failure: Option<Failure>,
    pub failures: Vec<Failure>,
    pub recordings: Vec<RecordingCheck>,
    pub manifest: ManifestCheck,
}

/// How many objects are read at once.
const PARALLEL_READS: usize = 4;

pub async fn verify_session(
    pool: &Pool,
    store: &Store,
    public_key_hex: &str,
    session_id: &str,
) -> Result<Report, CoreError> {
    let session = crate::ledger::index::existing_session(pool, session_id).await?;
    let mut failures = Vec::new();
    let mut chains = Vec::new();
    let mut heads = Vec::new();
    for rec in index::recordings(pool, &session.id).await? {
        let entries = index::entries(pool, &rec.id).await?;
        let before = failures.len();
        check_recording(store, &session, &rec, &entries, &mut failures).await;
        // The manifest signed at stop binds the head then; tombstones come after it.
        let head = chain::signed_head(&entries)
            .or(entries.last())
            .map(|e| (e.seq, e.entry_hash.clone()));
        heads.push((rec.id.clone(), head.clone()));
        let intact = failures.len() == before;
        chains.push((rec, entries, intact, head));
    }
    let (manifest, signed) =
        check_manifest(store, public_key_hex, &session, &heads, &mut failures).await;
    // Coverage is judged against what was signed at stop when the manifest verifies, else
    // against the database; a live session's tail is not judged.
    let live = !session.state.is_sealed();
    let stop_us = match &signed {
        Some(m) => Some(m.stopped_at_us),
        None if live => None,
        None => session.stopped_at_us,
    };
    let tolerance_us = signed
        .as_ref()
        .map_or(coverage::MAX_TOLERANCE_US, Manifest::coverage_tolerance_us);
    let mut checks = Vec::new();
    let mut uncovered = Vec::new();
    for (rec, entries, intact, head) in chains {
        let c = coverage::check(&entries, stop_us, tolerance_us);
        let mine = uncovered_views(&rec.source_name, &c);
        checks.push(RecordingCheck {
            recording_id: rec.id.clone(),
            source: rec.source_name.clone(),
            entries: entries.len(),
            media_segments: entries
                .iter()
                .filter(|e| e.kind == EntryKind::Media)
                .count(),
            gaps: entries.iter().filter(|e| e.kind == EntryKind::Gap).count(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
            head_seq: head.as_ref().map_or(-1, |h| h.0),
            head_hash: head.map(|h| h.1).unwrap_or_default(),
            intact,
            media_seconds: c.media_us as f64 / 1e6,
            gap_seconds: c.gap_us as f64 / 1e6,
            uncovered: mine.clone(),
        });
        uncovered.extend(mine);
    }
    let first_failure = failures.first().cloned();
    let status = Verdict::of(!failures.is_empty(), !uncovered.is_empty());
    let intact = status == Verdict::Intact;
    let verdict = match (&first_failure, uncovered.first()) {
        (Some(f), _) => format!("TAMPERED: session {}: {f}", session.id),
        (None, Some(u)) => format!(
            "INCOMPLETE: session {}: source {} not covered from {} to {} ({:.1} s){}",
            session.id,
            u.source,
            u.from,
            u.to,
            u.seconds,
            if uncovered.len() > 1 {
                format!(" and {} more stretches", uncovered.len() - 1)
            } else {
                String::new()
            }
        ),
        (None, None) => format!(
            "INTACT: session {} ({} recordings, {} segments, {} gaps), every moment covered, manifest {}",
            session.id,
            checks.len(),
            checks.iter().map(|c| c.media_segments).sum::<usize>(),
            checks.iter().map(|c| c.gaps).sum::<usize>(),
            manifest.status
        ),
    };
    Ok(Report {
        session_id: session.id,
        project_code: session.project_code,
        status,
        intact,
        verdict,
        uncovered,
        coverage_tolerance_us: tolerance_us,
        stopped_at: stop_us.map(crate::db::rfc3339),
        first_failure,
        failures,
        recordings: checks,
        manifest,
    })
}

/// The coverage findings of one chain, for people and JSON.
pub fn uncovered_views(source: &str, c: &coverage::Coverage) -> Vec<UncoveredView> {
    let mut out: Vec<UncoveredView> = c
        .uncovered
        .iter()
        .map(|u| UncoveredView {
            source: source.into(),
            from: crate::db::rfc3339(u.from_us),
            to: crate::db::rfc3339(u.to_us),
            seconds: u.seconds(),
            after_seq: u.after_seq,
            problem: "hole".into(),
        })
        .collect();
    out.extend(c.undeclared_overlaps.iter().map(|o| UncoveredView {
        source: source.into(),
        from: String::new(),
        to: String::new(),
        seconds: o.overlap_us as f64 / 1e6,
        after_seq: o.seq - 1,
        problem: format!(
            "overlap: seq {} starts before the entry before it ends, without saying so",
            o.seq
        ),
    }));
    out
}

async fn check_recording(
    store: &Store,
    session: &SessionRow,
    rec: &RecordingRow,
    entries: &[Entry],
    failures: &mut Vec<Failure>,
) {
    let fail = |seq: Option<i64>, key: Option<&str>, problem: String| Failure {
        source: rec.source_name.clone(),
        seq,
        object_key: key.map(str::to_string),
        problem,
    };
    let genesis = chain::genesis_detail(
        &session.project_code,
        &session.id,
        &session.session_code,
        &session.room_id,
        &rec.source_name,
    );
    if let Err(e) = chain::check_links(&rec.id, &genesis, entries) {
        let seq = match &e {
            chain::LinkError::HashMismatch { seq }
            | chain::LinkError::BrokenLink { seq }
            | chain::LinkError::SeqGap { seq, .. }
            | chain::LinkError::NoGenesis { seq }
            | chain::LinkError::GenesisBinding { seq, .. }
            | chain::LinkError::WrongRecording { seq, .. } => *seq,
        };
        failures.push(fail(Some(seq), None, format!("chain: {e}")));
    }
    // Objects that a tombstone accounts for were destroyed lawfully: not looked for.
    let destroyed = chain::destroyed_entries(entries).unwrap_or_else(|why| {
        failures.push(fail(None, None, format!("chain: {why}")));
        Default::default()
    });
    let media: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Media)
        .collect();
    let results: Vec<(i64, String, Result<(), String>)> = futures::stream::iter(
        media
            .iter()
            .filter(|e| !destroyed.contains(&e.seq))
            .map(|e| (*e).clone())
            .collect::<Vec<Entry>>(),
    )
    .map(|e| {
        let store = store.clone();
        async move {
            let r = check_object(&store, &e).await;
            (e.seq, e.object_key, r)
        }
    })
    .buffered(PARALLEL_READS)
    .collect()
    .await;
    for (seq, key, r) in results {
        if let Err(problem) = r {
            failures.push(fail(Some(seq), Some(&key), problem));
        }
    }
    // Objects under the recording's prefix that no entry names were added behind our back.
    let prefix = object_store::path::Path::from(recording_prefix(
        &session.project_code,
        &session.id,
        &rec.source_name,
    ));
    let known: BTreeSet<&str> = media.iter().map(|e| e.object_key.as_str()).collect();
    match store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
        Ok(objects) => {
            for o in objects {
                if !known.contains(o.location.as_ref()) {
                    failures.push(fail(
                        None,
                        Some(o.location.as_ref()),
                        "object in the store that no chain entry names".into(),
                    ));
                }
            }
        }
        Err(e) => failures.push(fail(None, None, format!("cannot list objects: {e}"))),
    }
}

/// One stored object against its chain entry: present, the right size, the right SHA-256.
pub async fn check_object(store: &Store, e: &Entry) -> Result<(), String> {
    let key = object_store::path::Path::from(e.object_key.as_str());
    let data = match store.get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|err| format!("object unreadable: {err}"))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err("object missing from the store".into());
        }
        Err(err) => return Err(format!("object unreadable: {err}")),
    };
    if data.len() as i64 != e.bytes {
        return Err(format!(
            "object has {} bytes, chain says {} (sha256 mismatch)",
            data.len(),
            e.bytes
        ));
    }
    let sha = hex::encode(Sha256::digest(&data));
    if sha != e.sha256 {
        return Err(format!("sha256 mismatch: object {sha}, chain {}", e.sha256));
    }
    Ok(())
}

async fn check_manifest(
    store: &Store,
    public_key_hex: &str,
    session: &SessionRow,
    heads: &[(String, Option<(i64, String)>)],
    failures: &mut Vec<Failure>,
) -> (ManifestCheck, Option<Manifest>) {
    let key = manifest::manifest_key(&session.project_code, &session.id);
    let status = |s: &str| ManifestCheck {
        key: key.clone(),
        status: s.into(),
    };
    let mut fail = |problem: String| {
        failures.push(Failure {
            source: "manifest".into(),
            seq: None,
            object_key: Some(key.clone()),
            problem,
        })
    };
    // A destroyed session keeps its signed manifest: the tombstones come after the heads it binds.
    if !session.state.is_sealed() {
        return (status("not_yet"), None);
    }
    let read = |k: String| async move {
        let p = object_store::path::Path::from(k);
        store.get(&p).await?.bytes().await
    };
    let (body, sig) = match (
        read(key.clone()).await,
        read(manifest::signature_key(&key)).await,
    ) {
        (Ok(b), Ok(s)) => (b, s),
        _ => {
            fail("signed manifest missing from the store".into());
            return (status("missing"), None);
        }
    };
    let sig = String::from_utf8_lossy(&sig).to_string();
    if !manifest::verify_hex(public_key_hex, &body, &sig) {
        fail("manifest signature does not verify with the server key".into());
        return (status("bad_signature"), None);
    }
    let Ok(m) = serde_json::from_slice::<Manifest>(&body) else {
        fail("manifest is not valid JSON of format witness-manifest/1".into());
        return (status("malformed"), None);
    };
    let signed: Vec<(String, Option<(i64, String)>)> = m
        .recordings
        .iter()
        .map(|h| {
            (
                h.recording_id.clone(),
                Some((h.head_seq, h.head_hash.clone())),
            )
        })
        .collect();
    if m.session_id != session.id || signed != heads {
        fail("chain heads differ from the signed manifest (entries added, removed or edited after stop)".into());
        return (status("heads_differ"), None);
    }
    (status("verified"), Some(m))
}
