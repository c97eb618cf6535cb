//! Re-reads every stored object of a session and checks it against the chain: hashes, links,
//! genesis binding, unexpected objects, and the signed manifest. Used by `witness verify` and
//! `GET /sessions/{id}/verify`. The checks of chains and manifest are `session_check`'s, shared
//! with the offline check of a package.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::chain;
use crate::ledger::chain::{Entry, EntryKind, LinkError};
use crate::ledger::checkpoint;
use crate::ledger::coverage::{self, Verdict};
use crate::ledger::decision;
use crate::ledger::index::{self, RecordingRow, SessionRow};
use crate::ledger::manifest::{self, Manifest};
use crate::ledger::session_check::{self, Binding, Head, ManifestProblem};
use crate::ledger::timestamp::CaBundle;
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
    /// Chain checkpoints signed while it recorded, found in the store.
    pub checkpoints: usize,
    /// Of them, those with an RFC 3161 timestamp token beside them that holds (imprint of the
    /// checkpoint's bytes, signature, TSA chained to `tsa_ca_file`).
    pub timestamped_checkpoints: usize,
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
    /// The manifest's RFC 3161 timestamp token, when there is one or a TSA is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampCheck>,
    /// `witness record: N entries, signed by X at T, SHA-256 …` when its entries, signature and
    /// the manifest's binding hold (failures otherwise, source `witness-record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_record: Option<String>,
}

/// The session's witness record from the database: its entries' chain, its signature and, once
/// the manifest is signed, the binding in it. The summary line when it holds.
async fn check_witness_record(
    pool: &Pool,
    session: &SessionRow,
    signed: Option<&Manifest>,
    failures: &mut Vec<Failure>,
) -> Result<Option<String>, CoreError> {
    use crate::ledger::witness_record as record;
    let entries = record::entries(pool, &session.id).await?;
    let signature = record::signature(pool, &session.id).await?;
    let own = record::binding(&session.id, &entries, signature.as_ref());
    // Live (or no verified manifest): the entries and the signature only.
    let bound = match signed {
        Some(m) => m.witness_record.as_ref(),
        None => Some(&own),
    };
    if signed.is_some_and(|m| m.witness_record.is_none()) && entries.is_empty() {
        return Ok(None);
    }
    match record::check(&session.id, &entries, signature.as_ref(), bound) {
        Ok(line) => Ok(Some(line)),
        Err(problems) => {
            for p in problems {
                failures.push(Failure::of("witness-record", None, None, p));
            }
            Ok(None)
        }
    }
}

/// The manifest's timestamp token (`manifest.json.tsr`) as checked now.
#[derive(Debug, Clone, Serialize)]
pub struct TimestampCheck {
    /// `verified`, `pending` (the TSA has not answered yet) or `invalid` (a failure).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsa: Option<String>,
    /// The TSA's time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// How many objects are read at once.
const PARALLEL_READS: usize = 4;

/// `tsa_ca`: the CA bundle of the configured TSA (`[signing] tsa_ca_file`), which the manifest's
/// timestamp token must chain to; without one, a token found is still checked, but not its CA.
pub async fn verify_session(
    pool: &Pool,
    store: &Store,
    keys: &[String],
    session_id: &str,
    tsa_ca: Option<&CaBundle>,
) -> Result<Report, CoreError> {
    let session = crate::ledger::index::existing_session(pool, session_id).await?;
    let mut failures = Vec::new();
    let mut chains = check_chains(pool, store, &session, &mut failures).await?;
    let heads: Vec<(String, Option<Head>)> = chains
        .iter()
        .map(|c| (c.rec.id.clone(), c.head.clone()))
        .collect();
    let (manifest, signed) = check_manifest(store, keys, &session, &heads, &mut failures).await;
    check_checkpoints(
        store,
        keys,
        &session,
        &mut chains,
        signed.as_ref(),
        tsa_ca,
        &mut failures,
    )
    .await;
    check_tombstones(store, keys, &session, &mut chains, &mut failures).await;
    let timestamp = match &signed {
        Some(_) => check_timestamp(store, &manifest.key, tsa_ca, &mut failures).await,
        None => None,
    };
    let witness_record =
        check_witness_record(pool, &session, signed.as_ref(), &mut failures).await?;
    let live = !session.state.is_sealed();
    let (stop_us, tolerance_us) = coverage_bounds(&session, live, signed.as_ref());
    let (checks, uncovered) = recording_checks(chains, stop_us, tolerance_us);
    let first_failure = failures.first().cloned();
    let status = Verdict::of(!failures.is_empty(), !uncovered.is_empty());
    let mut verdict = verdict_line(
        &session.id,
        first_failure.as_ref(),
        &uncovered,
        &checks,
        &manifest,
    );
    if let Some(t) = timestamp.as_ref().filter(|t| t.status == "verified") {
        verdict.push_str(&format!(
            "; timestamped by TSA {} at {}",
            t.tsa.as_deref().unwrap_or(""),
            t.time.as_deref().unwrap_or("")
        ));
    }
    let stamped: usize = checks.iter().map(|c| c.timestamped_checkpoints).sum();
    if stamped > 0 && status == Verdict::Intact {
        verdict.push_str(&format!(
            "; {stamped} of {} chain checkpoints timestamped",
            checks.iter().map(|c| c.checkpoints).sum::<usize>()
        ));
    }
    if let Some(line) = &witness_record {
        verdict.push_str(&format!("; {line}"));
    }
    Ok(Report {
        session_id: session.id,
        project_code: session.project_code,
        status,
        intact: status == Verdict::Intact,
        verdict,
        uncovered,
        coverage_tolerance_us: tolerance_us,
        stopped_at: stop_us.map(crate::time::rfc3339),
        first_failure,
        failures,
        recordings: checks,
        manifest,
        timestamp,
        witness_record,
    })
}

/// The token beside a verified manifest: it must imprint the manifest's bytes (and chain to
/// `tsa_ca` when given). None when there is no token and no TSA configured.
async fn check_timestamp(
    store: &Store,
    key: &str,
    tsa_ca: Option<&CaBundle>,
    failures: &mut Vec<Failure>,
) -> Option<TimestampCheck> {
    let read = |k: String| async move {
        let p = object_store::path::Path::from(k);
        store.get(&p).await?.bytes().await
    };
    let token_key = crate::ledger::tsa::token_key(key);
    let check = |status: &str| TimestampCheck {
        status: status.into(),
        tsa: None,
        time: None,
    };
    let Ok(token) = read(token_key.clone()).await else {
        return tsa_ca.map(|_| check("pending"));
    };
    let verified = match read(key.to_string()).await {
        Ok(body) => {
            crate::ledger::timestamp::verify(&token, &body, tsa_ca).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    Some(match verified {
        Ok(stamp) => TimestampCheck {
            status: "verified".into(),
            tsa: Some(stamp.tsa),
            time: Some(crate::time::rfc3339(stamp.gen_time_us)),
        },
        Err(problem) => {
            failures.push(Failure::of(
                "manifest",
                None,
                Some(&token_key),
                format!("timestamp token refused: {problem}"),
            ));
            check("invalid")
        }
    })
}

/// One recording's chain as the database holds it, with what checking it found.
struct CheckedChain {
    rec: RecordingRow,
    entries: Vec<Entry>,
    /// No failure in this chain (coverage aside).
    intact: bool,
    /// The head the report names: the one the manifest binds, or the last entry of a chain that
    /// has none.
    head: Option<Head>,
    /// Checkpoints found, and those with a token that holds.
    checkpoints: usize,
    timestamped_checkpoints: usize,
}

/// Reads every recording's chain from the database and checks it against the store, recording by
/// recording, so that the failures stand in the order people read the report.
async fn check_chains(
    pool: &Pool,
    store: &Store,
    session: &SessionRow,
    failures: &mut Vec<Failure>,
) -> Result<Vec<CheckedChain>, CoreError> {
    let mut chains = Vec::new();
    for rec in index::recordings(pool, &session.id).await? {
        let entries = index::entries(pool, &rec.id).await?;
        let late = crate::ledger::late::of_recording(pool, &rec.id).await?;
        let before = failures.len();
        let head = check_recording(store, session, &rec, &entries, &late, failures).await;
        let intact = failures.len() == before;
        chains.push(CheckedChain {
            rec,
            entries,
            intact,
            head,
            checkpoints: 0,
            timestamped_checkpoints: 0,
        });
    }
    Ok(chains)
}

/// Every chain against the checkpoints signed while it recorded, and against the list of them
/// the signed manifest keeps (one missing was deleted); and every checkpoint's timestamp token
/// against the checkpoint's bytes and `tsa_ca` (a token that does not hold, or whose
/// checkpoint is gone, is a failure).
async fn check_checkpoints(
    store: &Store,
    keys: &[String],
    session: &SessionRow,
    chains: &mut [CheckedChain],
    signed: Option<&Manifest>,
    tsa_ca: Option<&CaBundle>,
    failures: &mut Vec<Failure>,
) {
    for c in chains.iter_mut() {
        let source = c.rec.source_name.as_str();
        let prefix = recording_prefix(&session.project_code, &session.id, source);
        let listed: &[i64] = signed
            .and_then(|m| m.recordings.iter().find(|h| h.recording_id == c.rec.id))
            .map_or(&[], |h| h.checkpoints.as_slice());
        let problems = match checkpoint::load(store, &prefix, keys).await {
            Ok(found) => {
                c.checkpoints = found.len();
                checkpoint::problems(&c.rec.id, &c.entries, &found, listed)
            }
            Err(p) => vec![(None, p)],
        };
        for (seq, problem) in problems {
            c.intact = false;
            failures.push(Failure::of(
                source,
                seq,
                None,
                format!("checkpoint: {problem}"),
            ));
        }
        match checkpoint::load_tokens(store, &prefix, tsa_ca).await {
            Ok(tokens) => {
                for t in tokens {
                    match t.stamp {
                        Ok(_) => c.timestamped_checkpoints += 1,
                        Err(problem) => {
                            c.intact = false;
                            failures.push(Failure::of(
                                source,
                                t.seq,
                                Some(&t.key),
                                format!("checkpoint timestamp token refused: {problem}"),
                            ));
                        }
                    }
                }
            }
            Err(p) => {
                c.intact = false;
                failures.push(Failure::of(source, None, None, format!("checkpoint: {p}")));
            }
        }
    }
}

/// Every tombstone against the signed decision record it names (`ledger::decision`): without
/// one, its "lawful destruction" is a claim nobody signed.
async fn check_tombstones(
    store: &Store,
    keys: &[String],
    session: &SessionRow,
    chains: &mut [CheckedChain],
    failures: &mut Vec<Failure>,
) {
    let read = |k: String| async move {
        let bytes = store
            .get(&object_store::path::Path::from(k))
            .await?
            .bytes()
            .await?;
        Ok::<_, object_store::Error>(bytes)
    };
    for c in chains.iter_mut() {
        let last_seq = c.entries.last().map_or(0, |e| e.seq);
        let mut problems = Vec::new();
        for t in c.entries.iter().filter(|e| e.kind == EntryKind::Tombstone) {
            let destroyed = chain::tombstone_seqs(&t.detail, last_seq).unwrap_or_default();
            let checked = match decision::named_by(t) {
                None => Err(format!(
                    "seq {}: tombstone names no signed destruction decision",
                    t.seq
                )),
                Some((request, _)) => {
                    let key = decision::object_key(&session.project_code, &session.id, &request);
                    match (
                        read(key.clone()).await,
                        read(manifest::signature_key(&key)).await,
                    ) {
                        (Ok(body), Ok(sig)) => {
                            let sm2 = read(manifest::sm2_signature_key(&key))
                                .await
                                .ok()
                                .map(|b| String::from_utf8_lossy(&b).to_string());
                            decision::check(
                                t,
                                &destroyed,
                                &session.id,
                                &body,
                                &String::from_utf8_lossy(&sig),
                                sm2.as_deref(),
                                keys,
                            )
                            .map(|_| ())
                        }
                        _ => Err(format!(
                            "seq {}: destruction decision {key} or its signature missing from the store",
                            t.seq
                        )),
                    }
                }
            };
            if let Err(problem) = checked {
                problems.push((t.seq, problem));
            }
        }
        for (seq, problem) in problems {
            c.intact = false;
            failures.push(Failure::of(
                &c.rec.source_name,
                Some(seq),
                None,
                format!("chain: {problem}"),
            ));
        }
    }
}

/// Where coverage is judged to, and with which tolerance: what was signed at stop when the
/// manifest verifies, else the database's stop (none while the session is live: its tail is
/// still being written) and the largest tolerance.
fn coverage_bounds(
    session: &SessionRow,
    live: bool,
    signed: Option<&Manifest>,
) -> (Option<i64>, i64) {
    let stop_us = match signed {
        Some(m) => Some(m.stopped_at_us),
        None if live => None,
        None => session.stopped_at_us,
    };
    let tolerance_us = signed.map_or(coverage::MAX_TOLERANCE_US, Manifest::coverage_tolerance_us);
    (stop_us, tolerance_us)
}

/// Judges every chain's coverage and sums each chain up for the report; also returns every
/// stretch that no entry covers, all sources, in recording order.
fn recording_checks(
    chains: Vec<CheckedChain>,
    stop_us: Option<i64>,
    tolerance_us: i64,
) -> (Vec<RecordingCheck>, Vec<UncoveredView>) {
    let mut checks = Vec::new();
    let mut uncovered = Vec::new();
    for chain in chains {
        let check = recording_check(chain, stop_us, tolerance_us);
        uncovered.extend(check.uncovered.iter().cloned());
        checks.push(check);
    }
    (checks, uncovered)
}

/// One chain summed up: what it holds, its head, whether it is intact, and its coverage.
fn recording_check(chain: CheckedChain, stop_us: Option<i64>, tolerance_us: i64) -> RecordingCheck {
    let CheckedChain {
        rec,
        entries,
        intact,
        head,
        checkpoints,
        timestamped_checkpoints,
    } = chain;
    let c = coverage::check(&entries, stop_us, tolerance_us);
    let count = |kind: EntryKind| entries.iter().filter(|e| e.kind == kind).count();
    RecordingCheck {
        uncovered: uncovered_views(&rec.source_name, &c),
        recording_id: rec.id,
        source: rec.source_name,
        entries: entries.len(),
        media_segments: count(EntryKind::Media),
        gaps: count(EntryKind::Gap),
        bytes: entries.iter().map(|e| e.bytes).sum(),
        head_seq: head.as_ref().map_or(-1, |h| h.0),
        head_hash: head.map(|h| h.1).unwrap_or_default(),
        intact,
        media_seconds: c.media_us as f64 / 1e6,
        gap_seconds: c.gap_us as f64 / 1e6,
        checkpoints,
        timestamped_checkpoints,
    }
}

/// The one line for people: the first failure, else the first stretch no entry covers, else
/// what was found intact.
fn verdict_line(
    session_id: &str,
    first_failure: Option<&Failure>,
    uncovered: &[UncoveredView],
    checks: &[RecordingCheck],
    manifest: &ManifestCheck,
) -> String {
    match (first_failure, uncovered.first()) {
        (Some(f), _) => format!("TAMPERED: session {session_id}: {f}"),
        (None, Some(u)) => format!(
            "INCOMPLETE: session {session_id}: source {} not covered from {} to {} ({:.1} s){}",
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
            "INTACT: session {session_id} ({} recordings, {} segments, {} gaps), every moment covered, manifest {}",
            checks.len(),
            checks.iter().map(|c| c.media_segments).sum::<usize>(),
            checks.iter().map(|c| c.gaps).sum::<usize>(),
            manifest.status
        ),
    }
}

/// The coverage findings of one chain, for people and JSON.
pub fn uncovered_views(source: &str, c: &coverage::Coverage) -> Vec<UncoveredView> {
    let mut out: Vec<UncoveredView> = c
        .uncovered
        .iter()
        .map(|u| UncoveredView {
            source: source.into(),
            from: crate::time::rfc3339(u.from_us),
            to: crate::time::rfc3339(u.to_us),
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

impl Failure {
    fn of(source: &str, seq: Option<i64>, object_key: Option<&str>, problem: String) -> Failure {
        Failure {
            source: source.into(),
            seq,
            object_key: object_key.map(str::to_string),
            problem,
        }
    }
}

/// Checks one recording: its chain (as the package verifier does), every stored object it names,
/// and that nothing else is stored under its prefix. Returns the head the report names.
async fn check_recording(
    store: &Store,
    session: &SessionRow,
    rec: &RecordingRow,
    entries: &[Entry],
    late: &[crate::ledger::late::LateSegment],
    failures: &mut Vec<Failure>,
) -> Option<Head> {
    let source = rec.source_name.as_str();
    let binding = Binding {
        project_code: &session.project_code,
        session_id: &session.id,
        session_code: &session.session_code,
        room_id: &session.room_id,
    };
    let found = session_check::check_chain(&binding, &rec.id, source, entries);
    if let Err(e) = &found.links {
        failures.push(Failure::of(
            source,
            Some(link_seq(e)),
            None,
            format!("chain: {e}"),
        ));
    }
    // Objects that a tombstone accounts for were destroyed lawfully: not looked for.
    let destroyed = found.destroyed.unwrap_or_else(|why| {
        failures.push(Failure::of(source, None, None, format!("chain: {why}")));
        Default::default()
    });
    check_objects(store, source, entries, &destroyed, failures).await;
    check_no_unnamed_objects(store, session, source, entries, late, failures).await;
    // The manifest signed at stop binds the head then; tombstones come after it.
    found
        .signed_head
        .or_else(|| entries.last().map(|e| (e.seq, e.entry_hash.clone())))
}

/// The entry where a chain breaks, for the failure that names it.
fn link_seq(e: &LinkError) -> i64 {
    match e {
        LinkError::HashMismatch { seq }
        | LinkError::BrokenLink { seq }
        | LinkError::SeqGap { seq, .. }
        | LinkError::NoGenesis { seq }
        | LinkError::GenesisBinding { seq, .. }
        | LinkError::WrongRecording { seq, .. } => *seq,
    }
}

/// Reads every media object the chain names and no tombstone accounts for, a few at a time, and
/// checks each against its entry; failures stay in chain order.
async fn check_objects(
    store: &Store,
    source: &str,
    entries: &[Entry],
    destroyed: &BTreeSet<i64>,
    failures: &mut Vec<Failure>,
) {
    let wanted: Vec<Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Media && !destroyed.contains(&e.seq))
        .cloned()
        .collect();
    let results: Vec<(i64, String, Result<(), String>)> = futures::stream::iter(wanted)
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
            failures.push(Failure::of(source, Some(seq), Some(&key), problem));
        }
    }
}

/// Objects under the recording's prefix that no media entry names (destroyed ones included)
/// were added behind the chain's back, unless listed as late evidence (`late`: spooled media a
/// node stored after the session stopped, or before the lease holder chained it), whose bytes
/// must then be what the listing says.
async fn check_no_unnamed_objects(
    store: &Store,
    session: &SessionRow,
    source: &str,
    entries: &[Entry],
    late: &[crate::ledger::late::LateSegment],
    failures: &mut Vec<Failure>,
) {
    let prefix = object_store::path::Path::from(recording_prefix(
        &session.project_code,
        &session.id,
        source,
    ));
    let known: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Media)
        .map(|e| e.object_key.as_str())
        .collect();
    match store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
        Ok(objects) => {
            for o in objects {
                // Checkpoints and their timestamp tokens sit beside the segments;
                // `check_checkpoints` reads them.
                let key = o.location.as_ref();
                if known.contains(key) || checkpoint::is_checkpoint_object(key) {
                    continue;
                }
                if let Some(listed) = late.iter().find(|l| l.object_key == key) {
                    let stored = Entry {
                        recording_id: listed.recording_id.clone(),
                        seq: 0,
                        kind: EntryKind::Media,
                        object_key: listed.object_key.clone(),
                        wall_start_us: listed.wall_start_us,
                        duration_us: listed.duration_us,
                        bytes: listed.bytes,
                        sha256: listed.sha256.clone(),
                        clock: listed.clock.clone(),
                        detail: listed.note.clone(),
                        prev_hash: String::new(),
                        entry_hash: String::new(),
                    };
                    if let Err(problem) = check_object(store, &stored).await {
                        failures.push(Failure::of(
                            source,
                            None,
                            Some(key),
                            format!("late segment: {problem}"),
                        ));
                    }
                    continue;
                }
                failures.push(Failure::of(
                    source,
                    None,
                    Some(key),
                    "object in the store that no chain entry names".into(),
                ));
            }
        }
        Err(e) => failures.push(Failure::of(
            source,
            None,
            None,
            format!("cannot list objects: {e}"),
        )),
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
    session_check::check_bytes(e, data.len() as u64, || hex::encode(Sha256::digest(&data)))
        .map_err(|m| m.to_string())
}

/// The signed manifest of a stopped (or destroyed) session against the chain heads; the
/// manifest itself when it verifies.
async fn check_manifest(
    store: &Store,
    keys: &[String],
    session: &SessionRow,
    heads: &[(String, Option<Head>)],
    failures: &mut Vec<Failure>,
) -> (ManifestCheck, Option<Manifest>) {
    let key = manifest::manifest_key(&session.project_code, &session.id);
    let status = |s: &str| ManifestCheck {
        key: key.clone(),
        status: s.into(),
    };
    // A destroyed session keeps its signed manifest: the tombstones come after the heads it binds.
    // A session still live has none yet, unless someone moved a sealed one back (the database
    // refuses that to the application): a manifest in the store is checked whatever the state.
    if !session.state.is_sealed() && !manifest_stored(store, &key).await {
        return (status("not_yet"), None);
    }
    match signed_manifest(store, keys, session, &key, heads).await {
        Ok(m) => (status("verified"), Some(m)),
        Err((outcome, problem)) => {
            failures.push(Failure::of("manifest", None, Some(&key), problem.into()));
            (status(outcome), None)
        }
    }
}

/// Whether anything is stored under the manifest's key (an unreadable store counts as yes, so
/// that the check that follows reports it).
async fn manifest_stored(store: &Store, key: &str) -> bool {
    !matches!(
        store.head(&object_store::path::Path::from(key)).await,
        Err(object_store::Error::NotFound { .. })
    )
}

/// Reads the manifest signed at stop and its signature from the store, checks the signature
/// (as the package verifier does) and that it binds this session's chain heads, in order.
/// Fails with the manifest status and the problem.
async fn signed_manifest(
    store: &Store,
    keys: &[String],
    session: &SessionRow,
    key: &str,
    heads: &[(String, Option<Head>)],
) -> Result<Manifest, (&'static str, &'static str)> {
    let read = |k: String| async move {
        let p = object_store::path::Path::from(k);
        store.get(&p).await?.bytes().await
    };
    let (Ok(body), Ok(sig)) = (
        read(key.to_string()).await,
        read(manifest::signature_key(key)).await,
    ) else {
        return Err(("missing", "signed manifest missing from the store"));
    };
    let sig = String::from_utf8_lossy(&sig).to_string();
    // The SM2 signature, when the session was stopped with SM2 on: it must verify too.
    if let Ok(sm2) = read(manifest::sm2_signature_key(key)).await {
        let sm2 = String::from_utf8_lossy(&sm2).to_string();
        if manifest::verifying_key_of(crate::ledger::keys::Algorithm::Sm2, keys, &body, &sm2)
            .is_none()
        {
            return Err((
                "bad_signature",
                "manifest SM2 signature does not verify with the server's SM2 key",
            ));
        }
    }
    let (m, _) = session_check::open_manifest(keys, &body, &sig).map_err(|p| match p {
        ManifestProblem::BadSignature => (
            "bad_signature",
            "manifest signature does not verify with any of the server's keys (current or retired)",
        ),
        ManifestProblem::Malformed => (
            "malformed",
            "manifest is not valid JSON of format witness-manifest/1",
        ),
    })?;
    let signed: Vec<(String, Option<Head>)> = session_check::signed_heads(&m)
        .map(|(id, head)| (id, Some(head)))
        .collect();
    if m.session_id != session.id || signed != heads {
        return Err((
            "heads_differ",
            "chain heads differ from the signed manifest (entries added, removed or edited after stop)",
        ));
    }
    Ok(m)
}
