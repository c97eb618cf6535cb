//! The offline check of an evidence package (tar, zip or unpacked folder): no server, no database,
//! only the bytes. BagIt completeness and fixity (SHA-256 and SM3), the signed tag manifest,
//! every chain link, genesis bound to the bag's project and session, every segment against its
//! chain entry, the signed session manifest against the chain heads, and coverage of the
//! session from start to the signed stop (INTACT, INCOMPLETE or TAMPERED). Hostile archives (absolute
//! or `..` paths, links, oversized tag files, too many entries) are refused before use. The chain
//! and manifest checks are the online verifier's (`ledger::session_check`), fed from the files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use serde::Serialize;

use crate::evidence::export::{PackagedChain, Selection, media_path};
use crate::evidence::hash_lanes::{HashLanes, PIECE};
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::checkpoint;
use crate::ledger::coverage::{self, Verdict};
use crate::ledger::decision;
use crate::ledger::keys::{self, Algorithm, TrustedKeys};
use crate::ledger::manifest::{self, Manifest};
use crate::ledger::session_check::{self, Binding, Head, ManifestProblem};
use crate::ledger::timestamp::{self, CaBundle, TokenError};
use crate::ledger::verify::{UncoveredView, uncovered_views};

/// Limits that keep a hostile package from exhausting memory or time. Every member streams
/// through the hashes; only the files the checks parse (tag files at the top, `data/chain/`,
/// `data/audit/`) are kept in memory, each and in all within a bound.
const MAX_ENTRIES: usize = 1_000_000;
const MAX_KEPT_FILE: u64 = 64 * 1024 * 1024;
const MAX_KEPT_TOTAL: u64 = 128 * 1024 * 1024;
/// Beyond this expansion a compressed member is taken for a zip bomb (media barely compresses,
/// JSON and text about 10:1); members under `MIN_RATIO_CHECKED` are too small to matter.
const MAX_ZIP_RATIO: u64 = 100;
const MIN_RATIO_CHECKED: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("package {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("package refused: {0}")]
    Hostile(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentCheck {
    pub source: String,
    pub seq: i64,
    pub kind: String,
    pub file: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SigningKey {
    pub key_id: String,
    /// The key id in groups of four, as people compare it.
    pub fingerprint: String,
    pub public_key: String,
    pub trusted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    /// `INTACT`, `INCOMPLETE` (nothing altered, but time no entry covers) or `TAMPERED`.
    pub status: Verdict,
    /// `status` is INTACT.
    pub intact: bool,
    pub verdict: String,
    /// Stretches of the session that no chain entry covers (checked against the signed stop).
    pub uncovered: Vec<UncoveredView>,
    pub problems: Vec<String>,
    /// The key in `server-public-key.txt` (the exporting server's current key).
    pub public_key: String,
    /// The keys the package's signatures verified with, and whether the verifier trusts each.
    pub signed_by: Vec<SigningKey>,
    /// Where the trusted keys came from (`--public-key`, trust files).
    pub trusted_keys_from: Vec<String>,
    pub project_code: String,
    pub session_id: String,
    pub segments: Vec<SegmentCheck>,
    pub gaps: Vec<String>,
    /// Lawful destructions (tombstones): what went, under which request and rule.
    pub destructions: Vec<String>,
    /// Chain checkpoints signed while the session recorded that hold against their chains.
    pub checkpoints: usize,
    /// Playable copies under `derived/`: covered by the signed tag manifest, not evidence.
    pub derived: Vec<String>,
    /// The RFC 3161 timestamp token of the session manifest, when there is one or the manifest
    /// asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampReport>,
    /// The RFC 3161 timestamp tokens of the chain checkpoints
    /// (`data/checkpoints/{source}/{seq}.checkpoint.json.tsr`), when the package has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_timestamps: Option<CheckpointTimestamps>,
    /// `witness record: N entries, signed by X at T, SHA-256 …` when the packaged record
    /// (`data/witness-record/record.json`) holds against the signed manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_record: Option<String>,
    /// A project package: each session's report, as its own package's would be (paths as they
    /// are inside the project package).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<PackageReport>,
    /// A project package: the catalogue's line when it holds against what is inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<String>,
}

/// What the timestamp tokens of the chain checkpoints prove, all together.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointTimestamps {
    /// `verified` (every token holds and its TSA chains to the CA bundle given),
    /// `ca_not_checked` (no CA bundle given), `untrusted` (a token's TSA does not chain to the
    /// bundle: UNTRUSTED KEY) or `invalid` (a token does not hold: TAMPERED), as for the
    /// manifest's token.
    pub status: &'static str,
    /// Tokens that hold (imprint of their checkpoint's exact bytes, signature, and chain to the
    /// bundle when one was given).
    pub timestamped: usize,
    /// Checkpoints in the package.
    pub checkpoints: usize,
    /// The TSA certificates' subjects.
    pub tsa: Vec<String>,
    /// The earliest and latest TSA time of the tokens that hold, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The line the verifier prints.
    pub note: String,
}

/// What the timestamp token of `data/chain/manifest.json` (`manifest.json.tsr`) proves.
#[derive(Debug, Clone, Serialize)]
pub struct TimestampReport {
    /// `verified` (its TSA chains to the CA bundle given), `ca_not_checked` (no CA bundle given:
    /// imprint and signature by the enclosed certificate only), `untrusted` (its TSA does not
    /// chain to the bundle: UNTRUSTED KEY), `invalid` (TAMPERED), or `missing` (the manifest asks
    /// for a token and the package has none: the verdict stands, the time is not proven).
    pub status: &'static str,
    /// The TSA certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsa: Option<String>,
    /// The TSA's time (genTime), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The CA of the bundle the TSA's certificate chains to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The line the verifier prints.
    pub note: String,
}

/// What was read: hashes of every file, and the bytes of the small (non-media) ones.
#[derive(Default)]
struct Contents {
    sha256: BTreeMap<String, String>,
    sm3: BTreeMap<String, String>,
    size: BTreeMap<String, u64>,
    small: BTreeMap<String, Vec<u8>>,
    /// Bytes held in `small`.
    kept: u64,
    /// Hashing members as they are read; `None` once settled.
    lanes: Option<HashLanes>,
    /// Member names by the number the lanes know them by.
    names: Vec<String>,
}

impl Contents {
    fn text(&self, name: &str) -> Option<String> {
        self.small
            .get(name)
            .map(|b| String::from_utf8_lossy(b).to_string())
    }

    /// Moves out the files under `prefix` (a session's folder in a project package) as a bag of
    /// their own: `prefix` becomes `data/`, and its `session-info.txt` the bag-info.txt. Moved,
    /// not copied: memory stays within the bounds the reading kept.
    fn split_off(&mut self, prefix: &str) -> Contents {
        let rename = |p: &str| -> Option<String> {
            let rest = p.strip_prefix(prefix)?;
            Some(if rest == "session-info.txt" {
                "bag-info.txt".to_string()
            } else {
                format!("data/{rest}")
            })
        };
        fn moved<V>(
            from: &mut BTreeMap<String, V>,
            rename: &dyn Fn(&str) -> Option<String>,
        ) -> BTreeMap<String, V> {
            let names: Vec<String> = from
                .keys()
                .filter(|k| rename(k).is_some())
                .cloned()
                .collect();
            names
                .into_iter()
                .filter_map(|k| {
                    let v = from.remove(&k)?;
                    Some((rename(&k)?, v))
                })
                .collect()
        }
        let small = moved(&mut self.small, &rename);
        let kept = small.values().map(|b| b.len() as u64).sum();
        self.kept -= kept;
        Contents {
            sha256: moved(&mut self.sha256, &rename),
            sm3: moved(&mut self.sm3, &rename),
            size: moved(&mut self.size, &rename),
            small,
            kept,
            lanes: None,
            names: Vec::new(),
        }
    }

    /// A file and its detached signature (`{name}.sig`), when both are there.
    fn signed(&self, name: &str) -> Option<(&[u8], String)> {
        Some((self.small.get(name)?, self.text(&format!("{name}.sig"))?))
    }

    /// Hands one member to the hashing lanes as it streams by (SHA-256 and SM3 on other cores,
    /// beside the reading of the next members), keeping its bytes only when a check parses it.
    /// The digests are there once the package is read (`settle`).
    fn take(&mut self, name: &str, mut r: impl Read, len: u64) -> Result<(), PackageError> {
        let keep = parsed(name);
        if keep && (len > MAX_KEPT_FILE || self.kept + len > MAX_KEPT_TOTAL) {
            return Err(PackageError::Hostile(format!(
                "{name}: {len} bytes; tag, chain and audit files may hold {} MiB each and {} MiB in all",
                MAX_KEPT_FILE >> 20,
                MAX_KEPT_TOTAL >> 20
            )));
        }
        let io = |source| PackageError::Io {
            path: name.to_string(),
            source,
        };
        let lanes = self.lanes.get_or_insert_with(|| HashLanes::start("verify"));
        let id = self.names.len();
        self.names.push(name.to_string());
        let lane = lanes
            .begin(id, true, true)
            .map_err(|_| io(lanes_stopped()))?;
        // Sized once from the declared length (bounded above), so growth never doubles it.
        let mut kept = Vec::with_capacity(if keep { len as usize } else { 0 });
        let mut total = 0u64;
        loop {
            let mut buf = lanes.buffer().map_err(|_| io(lanes_stopped()))?;
            buf.resize(PIECE, 0);
            let n = match r.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    lanes.give_back(buf);
                    return Err(io(e));
                }
            };
            if n == 0 {
                lanes.give_back(buf);
                break;
            }
            buf.truncate(n);
            total += n as u64;
            if keep {
                // A member that holds more than it declared is not kept past the bounds either.
                if total > MAX_KEPT_FILE || self.kept + total > MAX_KEPT_TOTAL {
                    lanes.give_back(buf);
                    return Err(PackageError::Hostile(format!(
                        "{name}: holds more than the {len} bytes it declares"
                    )));
                }
                kept.extend_from_slice(&buf);
            }
            lanes.piece(lane, buf).map_err(|_| io(lanes_stopped()))?;
        }
        lanes.end(lane).map_err(|_| io(lanes_stopped()))?;
        self.size.insert(name.into(), total);
        if keep {
            self.kept += kept.len() as u64;
            self.small.insert(name.into(), kept);
        }
        Ok(())
    }

    /// Waits for the lanes to finish every member taken and files their digests.
    fn settle(&mut self) -> Result<(), PackageError> {
        let Some(lanes) = self.lanes.take() else {
            return Ok(());
        };
        let digests = lanes.finish().map_err(|_| PackageError::Io {
            path: String::new(),
            source: lanes_stopped(),
        })?;
        for d in digests {
            let name = self.names[d.id].clone();
            if let (Some(sha256), Some(sm3)) = (d.sha256, d.sm3) {
                self.sha256.insert(name.clone(), sha256);
                self.sm3.insert(name, sm3);
            }
        }
        Ok(())
    }
}

fn lanes_stopped() -> std::io::Error {
    std::io::Error::other("a hashing worker stopped")
}

/// Whether a check parses this file (so it is kept in memory): the tag files at the top of the
/// bag, the chains and the audit extract. Media and derived copies are only hashed.
fn parsed(name: &str) -> bool {
    // A session inside a project package: its folder is parsed as a session package's `data/`.
    if let Some((_, rest)) = name
        .strip_prefix("data/sessions/")
        .and_then(|r| r.split_once('/'))
    {
        return rest == "session-info.txt" || parsed(&format!("data/{rest}"));
    }
    !name.contains('/')
        || name == "data/project.json"
        || name == crate::evidence::project_catalogue::JSON_PATH
        || name.starts_with("data/chain/")
        || name.starts_with("data/audit/")
        || name.starts_with("data/witness-record/")
        || name.starts_with("data/checkpoints/")
        || name.starts_with("data/destruction/")
}

/// A path inside the bag, checked: relative, no `..`, no root, valid UTF-8.
fn bag_path(raw: &Path) -> Result<String, PackageError> {
    let hostile = |why: &str| PackageError::Hostile(format!("{}: {why}", raw.display()));
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => {
                parts.push(p.to_str().ok_or_else(|| hostile("not UTF-8"))?.to_string())
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(hostile("path climbs out with ..")),
            Component::RootDir | Component::Prefix(_) => return Err(hostile("absolute path")),
        }
    }
    Ok(parts.join("/"))
}

/// Reads a tar archive (one top folder) or an unpacked bag folder.
fn read(path: &Path) -> Result<Contents, PackageError> {
    let io = |source| PackageError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut c = Contents::default();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(io)? {
                let e = e.map_err(io)?;
                let ft = e.file_type().map_err(io)?;
                let rel = bag_path(e.path().strip_prefix(path).unwrap_or(&e.path()))?;
                if ft.is_symlink() {
                    return Err(PackageError::Hostile(format!("{rel}: symbolic link")));
                } else if ft.is_dir() {
                    stack.push(e.path());
                } else {
                    if c.size.len() >= MAX_ENTRIES {
                        return Err(PackageError::Hostile("too many files".into()));
                    }
                    let f = std::fs::File::open(e.path()).map_err(io)?;
                    let len = f.metadata().map_err(io)?.len();
                    c.take(&rel, f, len)?;
                }
            }
        }
        c.settle()?;
        return Ok(c);
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    if n == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        read_zip(f, &mut c).map_err(|e| match e {
            ZipFailure::Package(p) => p,
            ZipFailure::Zip(z) => PackageError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other(z),
            },
        })?;
    } else {
        read_tar(f, &mut c).map_err(|e| match e {
            PackageError::Io { source, .. } => io(source),
            other => other,
        })?;
    }
    c.settle()?;
    Ok(c)
}

/// Admits one archive member: every member sits in the same top folder, once. Returns its path
/// inside the bag.
fn admit(c: &Contents, top: &mut Option<String>, full: &str) -> Result<String, PackageError> {
    let (first, rest) = full
        .split_once('/')
        .ok_or_else(|| PackageError::Hostile(format!("{full}: outside the bag folder")))?;
    match top {
        None => *top = Some(first.to_string()),
        Some(t) if t != first => {
            return Err(PackageError::Hostile(format!(
                "{full}: a second top folder"
            )));
        }
        _ => {}
    }
    if c.size.contains_key(rest) {
        return Err(PackageError::Hostile(format!("{rest}: appears twice")));
    }
    if c.size.len() >= MAX_ENTRIES {
        return Err(PackageError::Hostile("too many files".into()));
    }
    Ok(rest.to_string())
}

fn read_tar(f: std::fs::File, c: &mut Contents) -> Result<(), PackageError> {
    let io = |source| PackageError::Io {
        path: String::new(),
        source,
    };
    let mut archive = tar::Archive::new(f);
    let mut top: Option<String> = None;
    for entry in archive.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        let raw = entry.path().map_err(io)?.to_path_buf();
        let full = bag_path(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(PackageError::Hostile(format!(
                    "{full}: {other:?} entries are not allowed"
                )));
            }
        }
        let rest = admit(c, &mut top, &full)?;
        let len = entry.header().size().map_err(io)?;
        c.take(&rest, entry, len)?;
    }
    Ok(())
}

enum ZipFailure {
    Package(PackageError),
    Zip(zip::result::ZipError),
}

impl From<zip::result::ZipError> for ZipFailure {
    fn from(e: zip::result::ZipError) -> Self {
        ZipFailure::Zip(e)
    }
}

impl From<PackageError> for ZipFailure {
    fn from(e: PackageError) -> Self {
        ZipFailure::Package(e)
    }
}

/// A zip, as we write it (stored) or as someone re-zipped the folder (deflated). Members that
/// expand beyond all reason (zip bombs), overlap each other, or are links are refused.
fn read_zip(f: std::fs::File, c: &mut Contents) -> Result<(), ZipFailure> {
    let archive_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut expanded = 0u64;
    let mut archive = zip::ZipArchive::new(f)?;
    if archive.len() > MAX_ENTRIES {
        return Err(PackageError::Hostile(format!("{} members: too many", archive.len())).into());
    }
    let mut top: Option<String> = None;
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    for i in 0..archive.len() {
        let member = archive.by_index(i)?;
        let raw = String::from_utf8_lossy(member.name_raw()).to_string();
        let full = bag_path(Path::new(&raw))?;
        if member.is_symlink() {
            return Err(PackageError::Hostile(format!("{full}: symbolic link")).into());
        }
        if member.is_dir() {
            continue;
        }
        let (size, packed) = (member.size(), member.compressed_size());
        if size > MAX_ZIP_RATIO * packed.max(1) && size > MIN_RATIO_CHECKED {
            return Err(PackageError::Hostile(format!(
                "{full}: expands {packed} bytes to {size} (a zip bomb?)"
            ))
            .into());
        }
        // Many members each just under the ratio still cannot expand the whole beyond it.
        expanded += size;
        if expanded > MAX_ZIP_RATIO * archive_len.max(MIN_RATIO_CHECKED) {
            return Err(PackageError::Hostile(format!(
                "members expand the {archive_len}-byte zip to more than {expanded} bytes (a zip bomb?)"
            ))
            .into());
        }
        let start = member.data_start().unwrap_or(member.header_start());
        spans.push((start, start + packed, full.clone()));
        let rest = admit(c, &mut top, &full)?;
        // Never trust the declared size: read at most one byte more and compare.
        let mut limited = member.take(size + 1);
        c.take(&rest, &mut limited, size)?;
        if c.size[&rest] != size {
            return Err(PackageError::Hostile(format!(
                "{full}: declares {size} bytes but holds {}",
                c.size[&rest]
            ))
            .into());
        }
    }
    // Members that share bytes (the overlapping-file zip bomb) are refused.
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(PackageError::Hostile(format!("{} overlaps {}", w[1].2, w[0].2)).into());
        }
    }
    Ok(())
}

fn parse_manifest(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (h, p) = l
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("malformed line {l:?}"))?;
            Ok((
                h.to_ascii_lowercase(),
                p.trim_start().trim_start_matches('*').to_string(),
            ))
        })
        .collect()
}

fn bag_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Checks a package, in the steps below; the problems stand in the order they are found, and the
/// first one names the verdict. `Err` only when it cannot be read or is refused as hostile.
///
/// The signatures are checked with the keys the package encloses (`server-public-key.txt`,
/// `server-keys.txt`) and the public keys in `trusted`; the verdict is INTACT only when every
/// key they verified with is in `trusted` (else UNTRUSTED KEY, unless TAMPERED).
///
/// The timestamp token of the session manifest, when there is one, is checked against the
/// manifest's bytes and, with `tsa_ca`, its TSA against that CA bundle.
pub fn verify_package(
    path: &Path,
    trusted: &TrustedKeys,
    tsa_ca: Option<&CaBundle>,
) -> Result<PackageReport, PackageError> {
    let c = read(path)?;
    let mut problems = Vec::new();
    let info = bag_info(&c.text("bag-info.txt").unwrap_or_default());
    check_bag(&c, &info, &mut problems);
    let public_key = c
        .text("server-public-key.txt")
        .unwrap_or_default()
        .trim()
        .to_string();
    let candidates = candidate_keys(&c, &public_key, trusted);
    let mut signers = Vec::new();
    check_tag_manifest(&c, &candidates, &mut signers, &mut problems);
    let bag = Bag {
        public_key,
        candidates,
        signers,
        trusted,
        tsa_ca,
    };
    if info.get("Witness-Package-Kind").map(String::as_str) == Some("project") {
        return Ok(verify_project(c, &info, problems, &bag));
    }
    Ok(check_session(&c, &info, problems, &bag))
}

/// What the checks of the bag as a whole established, for the checks of its session(s).
struct Bag<'a> {
    public_key: String,
    candidates: Vec<String>,
    /// The keys the tag manifest verified with.
    signers: Vec<String>,
    trusted: &'a TrustedKeys,
    tsa_ca: Option<&'a CaBundle>,
}

/// Steps 3 to 7, one session: the files of a session package, or those of one session of a
/// project package seen from its folder (`data/sessions/{id}/` as `data/`, its
/// `session-info.txt` as bag-info.txt). `problems` holds what the bag's checks found.
fn check_session(
    c: &Contents,
    info: &BTreeMap<String, String>,
    mut problems: Vec<String>,
    b: &Bag<'_>,
) -> PackageReport {
    let candidates = &b.candidates;
    let mut signers = b.signers.clone();
    let bag = BagSession::of(info);
    let selection = selection(info, &mut problems);
    let chains = check_chains(c, &bag, &selection, &mut problems);
    let signed = check_session_manifest(
        c,
        candidates,
        &bag,
        &chains.heads,
        &mut signers,
        &mut problems,
    );
    let checkpoints = check_checkpoints(c, candidates, &chains, signed.as_ref(), &mut problems);
    check_decisions(c, candidates, &bag, &chains, &mut problems);
    let timestamp = check_timestamp(c, signed.as_ref(), b.tsa_ca, &mut problems);
    let checkpoint_timestamps = check_checkpoint_timestamps(c, b.tsa_ca, &mut problems);
    check_audit_entries(c, &mut problems);
    let witness_record = check_witness_record(c, &bag, signed.as_ref(), &mut problems);
    let uncovered = uncovered(signed.as_ref(), &chains.entries);
    let signed_by = signing_keys(signers, b.trusted);
    let mut r = report(
        c,
        problems,
        uncovered,
        b.public_key.clone(),
        signed_by,
        b.trusted,
        bag,
        chains,
        timestamp,
        checkpoint_timestamps,
    );
    r.checkpoints = checkpoints;
    if let Some(line) = &witness_record
        && r.status != Verdict::Tampered
    {
        r.verdict.push_str(&format!("; {line}"));
    }
    r.witness_record = witness_record;
    r
}

fn signing_keys(signers: Vec<String>, trusted: &TrustedKeys) -> Vec<SigningKey> {
    signers
        .into_iter()
        .map(|k| SigningKey {
            key_id: keys::key_id(&k).unwrap_or_default(),
            fingerprint: keys::grouped(&keys::key_id(&k).unwrap_or_default()),
            trusted: trusted.trusts(&k),
            public_key: k,
        })
        .collect()
}

/// How bad a verdict is, for the worst of several: TAMPERED, then UNTRUSTED KEY, INCOMPLETE,
/// INTACT.
fn badness(v: Verdict) -> u8 {
    match v {
        Verdict::Intact => 0,
        Verdict::Incomplete => 1,
        Verdict::UntrustedKey => 2,
        Verdict::Tampered => 3,
    }
}

/// A project package (一项一档, `Witness-Package-Kind: project`): the bag's checks done, its
/// project audit extract, the sessions bag-info.txt lists against the folders under
/// `data/sessions/`, the catalogue against what is inside, then every session as a session
/// package is checked (its problems named with the session and the file's path in the bag). One
/// verdict, the worst of the bag's and the sessions', with each session's line.
fn verify_project(
    mut c: Contents,
    info: &BTreeMap<String, String>,
    mut problems: Vec<String>,
    b: &Bag<'_>,
) -> PackageReport {
    let project = info
        .get("Witness-Project-Code")
        .cloned()
        .unwrap_or_default();
    check_audit_entries(&c, &mut problems);
    let listed: Vec<String> = info
        .get("Witness-Project-Sessions")
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let found: BTreeSet<String> = c
        .size
        .keys()
        .filter_map(|p| p.strip_prefix("data/sessions/")?.split_once('/'))
        .map(|(id, _)| id.to_string())
        .collect();
    for id in listed.iter().filter(|id| !found.contains(*id)) {
        problems.push(format!(
            "session {id}: listed in bag-info.txt but data/sessions/{id}/ is missing (session removed)"
        ));
    }
    for id in found.iter().filter(|id| !listed.contains(id)) {
        problems.push(format!(
            "data/sessions/{id}/: not listed in bag-info.txt (session added)"
        ));
    }
    if found.is_empty() {
        problems.push("data/sessions/: no session in the project package".into());
    }
    let catalogue = check_catalogue(&c, &project, &found, &mut problems);
    let mut order: Vec<String> = listed
        .iter()
        .filter(|id| found.contains(*id))
        .cloned()
        .collect();
    order.extend(found.iter().filter(|id| !listed.contains(id)).cloned());
    let mut sessions = Vec::new();
    for id in order {
        let prefix = crate::evidence::export::project_session_prefix(&id);
        let sub = c.split_off(&prefix);
        let sub_info = bag_info(&sub.text("bag-info.txt").unwrap_or_default());
        let mut own = Vec::new();
        if sub.text("bag-info.txt").is_none() {
            own.push(format!("{prefix}session-info.txt missing"));
        }
        if sub_info.get("Witness-Session-Id") != Some(&id)
            || sub_info.get("Witness-Project-Code") != Some(&project)
        {
            own.push(format!(
                "{prefix}session-info.txt: names another session or project"
            ));
        }
        let mut r = check_session(&sub, &sub_info, Vec::new(), b);
        r.problems.splice(0..0, own);
        if !r.problems.is_empty() {
            r.status = Verdict::Tampered;
            r.intact = false;
            r.verdict = format!(
                "TAMPERED: {} (and {} more problems)",
                r.problems[0],
                r.problems.len() - 1
            );
        }
        relocate(&mut r, &prefix);
        problems.extend(r.problems.iter().map(|p| format!("session {id}: {p}")));
        sessions.push(r);
    }
    let signed_by = signing_keys(b.signers.clone(), b.trusted);
    let key_trusted = !signed_by.is_empty() && signed_by.iter().all(|k| k.trusted);
    let own = Verdict::of(!problems.is_empty(), false).trusting(key_trusted);
    let worst = sessions
        .iter()
        .map(|s| s.status)
        .chain(std::iter::once(own))
        .max_by_key(|v| badness(*v))
        .unwrap_or(own);
    let verdict = match (worst, problems.first()) {
        (Verdict::Tampered, Some(p)) => {
            format!(
                "TAMPERED: project {project}: {p} (and {} more problems)",
                problems.len() - 1
            )
        }
        (Verdict::Intact, _) => format!(
            "INTACT: project {project}: {} sessions, each INTACT; {}; signed by trusted key {}",
            sessions.len(),
            catalogue.as_deref().unwrap_or("no catalogue"),
            signed_by
                .iter()
                .map(|k| k.fingerprint.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (v, _) => match sessions.iter().find(|s| s.status == v) {
            Some(s) => format!("{}: project {project}: {}", v.as_str(), s.verdict),
            None => format!(
                "{}: project {project}: signed by a key you did not give ({}); obtain the server's fingerprint from a source you trust and verify again with --public-key HEX or --trust FILE",
                v.as_str(),
                signed_by
                    .iter()
                    .map(|k| k.fingerprint.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    PackageReport {
        status: worst,
        intact: worst == Verdict::Intact,
        verdict,
        uncovered: Vec::new(),
        problems,
        public_key: b.public_key.clone(),
        signed_by,
        trusted_keys_from: b.trusted.sources.clone(),
        project_code: project,
        session_id: String::new(),
        segments: Vec::new(),
        gaps: Vec::new(),
        destructions: Vec::new(),
        checkpoints: sessions.iter().map(|s| s.checkpoints).sum(),
        derived: Vec::new(),
        timestamp: None,
        checkpoint_timestamps: None,
        witness_record: None,
        sessions,
        catalogue,
    }
}

/// A session's report as seen from the project package: every `data/…` path it names is the one
/// inside the bag (`data/sessions/{id}/…`).
fn relocate(r: &mut PackageReport, prefix: &str) {
    let at = |s: &str| s.replace("data/", prefix);
    r.verdict = at(&r.verdict);
    for p in &mut r.problems {
        *p = at(p);
    }
    for seg in &mut r.segments {
        seg.file = at(&seg.file);
    }
}

/// The catalogue (`data/catalogue.json`) against what is inside: it names this project, its items
/// are numbered 1, 2, 3 …, every file or folder it names is in the package, and every session of
/// the package is an item. The line for the report when it holds.
fn check_catalogue(
    c: &Contents,
    project: &str,
    sessions: &BTreeSet<String>,
    problems: &mut Vec<String>,
) -> Option<String> {
    use crate::evidence::project_catalogue::{Catalogue, JSON_PATH};
    let Some(bytes) = c.small.get(JSON_PATH) else {
        problems.push(format!(
            "{JSON_PATH} missing: a project package carries its catalogue"
        ));
        return None;
    };
    let cat: Catalogue = match serde_json::from_slice(bytes) {
        Ok(cat) => cat,
        Err(e) => {
            problems.push(format!("{JSON_PATH}: malformed ({e})"));
            return None;
        }
    };
    let before = problems.len();
    if cat.project_code != project {
        problems.push(format!(
            "{JSON_PATH}: names project {:?}, the package holds {project:?}",
            cat.project_code
        ));
    }
    for (n, item) in cat.items.iter().enumerate() {
        if item.no != n + 1 {
            problems.push(format!(
                "{JSON_PATH}: item {} is numbered {} (items removed or reordered)",
                n + 1,
                item.no
            ));
        }
        if let Some(f) = &item.file {
            let there = if f.ends_with('/') {
                c.size.keys().any(|p| p.starts_with(f.as_str()))
            } else {
                c.size.contains_key(f)
            };
            if !there {
                problems.push(format!(
                    "{JSON_PATH}: item {} ({}) names {f}, which is not in the package",
                    item.no, item.title
                ));
            }
        }
    }
    for id in sessions {
        if !cat
            .items
            .iter()
            .any(|i| i.kind == "session" && &i.reference == id)
        {
            problems.push(format!(
                "data/sessions/{id}/: in the package but not in {JSON_PATH}"
            ));
        }
    }
    (problems.len() == before).then(|| {
        format!(
            "catalogue of {} items, every file it names in the package",
            cat.items.len()
        )
    })
}

/// Step 6, the witness record (`data/witness-record/record.json`): its entries' chain, its
/// signature, and the record hash against the one the signed manifest binds. A manifest that
/// binds a record needs the file; a package from before the record has neither.
fn check_witness_record(
    c: &Contents,
    bag: &BagSession,
    signed: Option<&Manifest>,
    problems: &mut Vec<String>,
) -> Option<String> {
    use crate::evidence::witness_record::{JSON_PATH, PackagedRecord};
    use crate::ledger::witness_record as record;
    let bound = signed.and_then(|m| m.witness_record.as_ref());
    let Some(text) = c.text(JSON_PATH) else {
        if bound.is_some() {
            problems.push(format!(
                "{JSON_PATH}: missing, yet the signed session manifest binds a witness record"
            ));
        }
        return None;
    };
    let r: PackagedRecord = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("{JSON_PATH}: malformed ({e})"));
            return None;
        }
    };
    if r.session_id != bag.session_id {
        problems.push(format!("{JSON_PATH}: belongs to another session"));
    }
    let computed = record::binding(&r.session_id, &r.entries, r.signature.as_ref());
    if r.sha256 != computed.sha256 {
        problems.push(format!(
            "{JSON_PATH}: states SHA-256 {}, its entries and signature give {}",
            r.sha256, computed.sha256
        ));
    }
    // Without a verified manifest the problem is already named; check the record alone.
    let own;
    let bound = match signed {
        Some(_) => bound,
        None => {
            own = record::binding(&r.session_id, &r.entries, r.signature.as_ref());
            Some(&own)
        }
    };
    match record::check(&bag.session_id, &r.entries, r.signature.as_ref(), bound) {
        Ok(line) => Some(line),
        Err(found) => {
            problems.extend(found.into_iter().map(|p| format!("{JSON_PATH}: {p}")));
            None
        }
    }
}

/// The keys a signature of the package may verify with: the exporting key, the other keys of
/// the server it lists (`server-keys.txt`: retired ones sign older sessions), and the public keys
/// the verifier was given. Which of them is trusted is decided after.
fn candidate_keys(c: &Contents, public_key: &str, trusted: &TrustedKeys) -> Vec<String> {
    let listed = c.text("server-keys.txt").unwrap_or_default();
    let mut keys: Vec<String> = std::iter::once(public_key.to_ascii_lowercase())
        .chain(
            listed
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_whitespace().next())
                .map(|k| k.to_ascii_lowercase()),
        )
        .chain(trusted.public_keys().iter().cloned())
        .filter(|k| keys::key_id(k).is_some())
        .collect();
    keys.dedup();
    keys
}

/// Step 1, BagIt structure, completeness and fixity: without them no file of the bag can be
/// trusted to be the one exported.
fn check_bag(c: &Contents, info: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    if !c
        .text("bagit.txt")
        .is_some_and(|t| t.contains("BagIt-Version:"))
    {
        problems.push("bagit.txt missing or invalid: not a BagIt bag".to_string());
    }
    for (algo, table) in [("sha256", &c.sha256), ("sm3", &c.sm3)] {
        check_payload_manifest(c, algo, table, problems);
    }
    check_payload_oxum(c, info, problems);
}

/// One payload manifest (SHA-256 or SM3): every file it lists is there with that hash, and
/// every payload file is listed, so that a file altered, removed or added shows.
fn check_payload_manifest(
    c: &Contents,
    algo: &str,
    table: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let name = format!("manifest-{algo}.txt");
    let Some(text) = c.text(&name) else {
        problems.push(format!("{name} missing"));
        return;
    };
    let lines = match parse_manifest(&text) {
        Ok(lines) => lines,
        Err(e) => {
            problems.push(format!("{name}: {e}"));
            return;
        }
    };
    let listed: BTreeSet<&str> = lines.iter().map(|(_, p)| p.as_str()).collect();
    for (hash, p) in &lines {
        match table.get(p) {
            None => problems.push(format!(
                "{p}: listed in {name} but missing from the package"
            )),
            Some(h) if h != hash => problems.push(format!("{p}: {algo} mismatch (file altered)")),
            _ => {}
        }
    }
    for p in table.keys().filter(|p| p.starts_with("data/")) {
        if !listed.contains(p.as_str()) {
            problems.push(format!(
                "{p}: in the package but not in {name} (file added)"
            ));
        }
    }
}

/// The Payload-Oxum of bag-info.txt (bytes.files) against the payload as read: BagIt's quick
/// completeness check.
fn check_payload_oxum(c: &Contents, info: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    let Some(oxum) = info.get("Payload-Oxum") else {
        return;
    };
    let (bytes, files) = c
        .size
        .iter()
        .filter(|(p, _)| p.starts_with("data/"))
        .fold((0u64, 0u64), |(b, f), (_, s)| (b + s, f + 1));
    if *oxum != format!("{bytes}.{files}") {
        problems.push(format!(
            "Payload-Oxum {oxum} but the payload is {bytes}.{files}"
        ));
    }
}

/// Step 2, the tag manifest and its signature: it vouches for every file outside the payload
/// (bag-info.txt with the session's identity, the payload manifests, the keys).
fn check_tag_manifest(
    c: &Contents,
    candidates: &[String],
    signers: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let Some((tm, sig)) = c.signed("tagmanifest-sha256.txt") else {
        problems.push("tagmanifest-sha256.txt or its .sig missing: the package is unsigned".into());
        return;
    };
    match manifest::verifying_key_of(Algorithm::Ed25519, candidates, tm, sig.trim()) {
        Some(k) => add_signer(signers, k),
        None => problems.push(
            "tagmanifest-sha256.txt: signature does not verify with server-public-key.txt".into(),
        ),
    }
    let sm2_current = c
        .text("server-keys.txt")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .is_some_and(|k| keys::algorithm(k) == Some(Algorithm::Sm2))
                && w.nth(1) == Some("current")
        });
    check_sm2(
        "tagmanifest-sha256.txt",
        tm,
        c.text("tagmanifest-sha256.txt.sm2.sig"),
        sm2_current,
        candidates,
        signers,
        problems,
    );
    let text = String::from_utf8_lossy(tm);
    match parse_manifest(&text) {
        Err(e) => problems.push(format!("tagmanifest-sha256.txt: {e}")),
        Ok(lines) => check_tag_files(c, &text, &lines, problems),
    }
}

/// The tag files against the signed tag manifest: each listed one unaltered, none unlisted, and
/// the ones the other checks rely on listed.
fn check_tag_files(
    c: &Contents,
    tag_manifest: &str,
    lines: &[(String, String)],
    problems: &mut Vec<String>,
) {
    for (hash, p) in lines {
        if c.sha256.get(p) != Some(hash) {
            problems.push(format!(
                "{p}: does not match tagmanifest-sha256.txt (tag file edited)"
            ));
        }
    }
    // Every file outside the payload is vouched for by the signed tag manifest.
    let listed: BTreeSet<&str> = lines.iter().map(|(_, p)| p.as_str()).collect();
    for p in c.size.keys().filter(|p| {
        !p.starts_with("data/")
            && !listed.contains(p.as_str())
            && !p.starts_with("tagmanifest-sha256.txt")
    }) {
        problems.push(format!(
            "{p}: not covered by the signed tag manifest (file added)"
        ));
    }
    for required in [
        "bag-info.txt",
        "manifest-sha256.txt",
        "manifest-sm3.txt",
        "server-public-key.txt",
    ] {
        if !tag_manifest.contains(&format!("  {required}\n")) {
            problems.push(format!(
                "{required}: not covered by the signed tag manifest"
            ));
        }
    }
}

/// The session the bag says it holds (bag-info.txt, vouched for by the tag manifest): what every
/// chain's genesis and the session manifest must name.
struct BagSession {
    project: String,
    session_id: String,
    session_code: String,
    room_id: String,
}

impl BagSession {
    fn of(info: &BTreeMap<String, String>) -> BagSession {
        let field = |name: &str| info.get(name).cloned().unwrap_or_default();
        BagSession {
            project: field("Witness-Project-Code"),
            session_id: field("Witness-Session-Id"),
            session_code: field("Witness-Session-Code"),
            room_id: field("Witness-Room-Id"),
        }
    }

    fn binding(&self) -> Binding<'_> {
        Binding {
            project_code: &self.project,
            session_id: &self.session_id,
            session_code: &self.session_code,
            room_id: &self.room_id,
        }
    }
}

/// The exporter's selection: segments it left out are expected absent. The selection itself is
/// covered by the signed tag manifest.
fn selection(info: &BTreeMap<String, String>, problems: &mut Vec<String>) -> Selection {
    match info.get("Witness-Selection") {
        None => Selection::default(),
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| {
            problems.push(format!(
                "bag-info.txt: Witness-Selection {text:?} is malformed"
            ));
            Selection::default()
        }),
    }
}

/// What the chains of a package hold: the report's lists, the heads for the session manifest
/// and the entries for coverage.
#[derive(Default)]
struct Chains {
    segments: Vec<SegmentCheck>,
    gaps: Vec<String>,
    destructions: Vec<String>,
    heads: BTreeMap<String, Head>,
    /// Each chain's entries, by source.
    entries: Vec<(String, Vec<Entry>)>,
}

/// Step 3, every chain in `data/chain/`: links, genesis binding, tombstones and segments, file
/// by file, so that the problems stand in the order of the files.
fn check_chains(
    c: &Contents,
    bag: &BagSession,
    selection: &Selection,
    problems: &mut Vec<String>,
) -> Chains {
    let chain_files: Vec<&String> = c
        .small
        .keys()
        .filter(|p| {
            p.starts_with("data/chain/") && p.ends_with(".json") && !p.ends_with("manifest.json")
        })
        .collect();
    if chain_files.is_empty() {
        problems.push("data/chain/: no chain in the package".into());
    }
    let mut chains = Chains::default();
    for p in chain_files {
        let Ok(pc) = serde_json::from_slice::<PackagedChain>(&c.small[p]) else {
            problems.push(format!("{p}: not a chain file"));
            continue;
        };
        check_chain(c, bag, selection, pc, &mut chains, problems);
    }
    chains
}

/// One chain file: the chain itself (checked as the online verifier checks a stored one), each
/// of its entries, and the head the session manifest must bind.
fn check_chain(
    c: &Contents,
    bag: &BagSession,
    selection: &Selection,
    pc: PackagedChain,
    chains: &mut Chains,
    problems: &mut Vec<String>,
) {
    let found =
        session_check::check_chain(&bag.binding(), &pc.recording_id, &pc.source, &pc.entries);
    if let Err(e) = found.links {
        problems.push(format!("source {}: chain broken: {e}", pc.source));
    }
    // Objects a tombstone accounts for were destroyed lawfully: expected absent.
    let destroyed = found.destroyed.unwrap_or_else(|why| {
        problems.push(format!("source {}: {why}", pc.source));
        Default::default()
    });
    for e in &pc.entries {
        check_entry(c, selection, &pc.source, e, &destroyed, chains, problems);
    }
    // The manifest signed at stop binds the head then; tombstones come after it.
    if let Some(head) = found.signed_head {
        chains.heads.insert(pc.recording_id.clone(), head);
    }
    chains.entries.push((pc.source, pc.entries));
}

/// One entry, listed where the report shows it: tombstones as lawful destructions, gaps, and
/// segments (destroyed, or checked against the package's file).
fn check_entry(
    c: &Contents,
    selection: &Selection,
    source: &str,
    e: &Entry,
    destroyed: &BTreeSet<i64>,
    chains: &mut Chains,
    problems: &mut Vec<String>,
) {
    match e.kind {
        EntryKind::Genesis => {}
        EntryKind::Tombstone => chains
            .destructions
            .push(format!("source {} seq {}: {}", source, e.seq, e.detail)),
        EntryKind::Media if destroyed.contains(&e.seq) => chains.segments.push(SegmentCheck {
            source: source.into(),
            seq: e.seq,
            kind: "destroyed".into(),
            file: String::new(),
            ok: true,
        }),
        EntryKind::Gap => chains.gaps.push(format!(
            "source {} seq {}: gap of {:.1} s from {}: {}",
            source,
            e.seq,
            e.duration_us as f64 / 1e6,
            crate::time::rfc3339(e.wall_start_us),
            e.detail
        )),
        EntryKind::Media => chains
            .segments
            .extend(check_segment(c, selection, source, e, problems)),
    }
}

/// A segment against its chain entry, as the online verifier checks a stored object. `None` for
/// one the exporter's selection left out (and that is indeed absent).
fn check_segment(
    c: &Contents,
    selection: &Selection,
    source: &str,
    e: &Entry,
    problems: &mut Vec<String>,
) -> Option<SegmentCheck> {
    let file = media_path(source, e);
    if !selection.includes(source, e) && !c.sha256.contains_key(&file) {
        return None;
    }
    let ok = match (c.sha256.get(&file), c.size.get(&file)) {
        (None, _) => {
            problems.push(format!(
                "source {} seq {} ({file}): segment missing",
                source, e.seq
            ));
            false
        }
        (Some(h), Some(&len)) if session_check::check_bytes(e, len, || h.clone()).is_ok() => true,
        _ => {
            problems.push(format!(
                "source {} seq {} ({file}): bytes differ from the chain entry (replaced or altered segment)",
                source, e.seq
            ));
            false
        }
    };
    Some(SegmentCheck {
        source: source.into(),
        seq: e.seq,
        kind: "media".into(),
        file,
        ok,
    })
}

/// Step 4, the session manifest signed at stop (checked as the online verifier checks it): it
/// names this bag's session and binds every chain head, so no entry was added, removed or
/// truncated. Returned when its signature verifies and it parses: coverage is judged against it.
fn check_session_manifest(
    c: &Contents,
    candidates: &[String],
    bag: &BagSession,
    heads: &BTreeMap<String, Head>,
    signers: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Option<Manifest> {
    let Some((body, sig)) = c.signed("data/chain/manifest.json") else {
        problems.push("data/chain/manifest.json or its signature missing".into());
        return None;
    };
    let m = match session_check::open_manifest(candidates, body, sig.trim()) {
        Ok((m, key)) => {
            add_signer(signers, &key);
            check_sm2(
                "data/chain/manifest.json",
                body,
                c.text("data/chain/manifest.json.sm2.sig"),
                false,
                candidates,
                signers,
                problems,
            );
            m
        }
        Err(ManifestProblem::BadSignature) => {
            problems.push("data/chain/manifest.json: signature does not verify (manifest signed by another key or edited)".into());
            return None;
        }
        Err(ManifestProblem::Malformed) => {
            problems.push("data/chain/manifest.json: malformed".into());
            return None;
        }
    };
    if m.session_id != bag.session_id || m.project_code != bag.project {
        problems.push("data/chain/manifest.json: belongs to another session or project".into());
    }
    let signed: BTreeMap<String, Head> = session_check::signed_heads(&m).collect();
    if signed != *heads {
        problems.push("chain heads differ from the signed session manifest (entries removed, added or truncated)".into());
    }
    Some(m)
}

/// The SM2 signature of `name` (`{name}.sm2.sig`), when there is one or `expected` (the signed
/// server-keys.txt names a current SM2 key): it must verify with an SM2 key.
fn check_sm2(
    name: &str,
    body: &[u8],
    signature: Option<String>,
    expected: bool,
    candidates: &[String],
    signers: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let Some(sig) = signature else {
        if expected {
            problems.push(format!(
                "{name}.sm2.sig missing: the server signed with SM2 too (server-keys.txt)"
            ));
        }
        return;
    };
    match manifest::verifying_key_of(Algorithm::Sm2, candidates, body, sig.trim()) {
        Some(k) => add_signer(signers, k),
        None => problems.push(format!(
            "{name}: SM2 signature does not verify (signed by another key or edited)"
        )),
    }
}

fn add_signer(signers: &mut Vec<String>, key: &str) {
    if !signers.iter().any(|k| k == key) {
        signers.push(key.to_string());
    }
}

/// Step 4b, the chain checkpoints signed while the session recorded
/// (`data/checkpoints/{source}/`): each signed by one of the candidate keys and holding against
/// its chain, and every one the signed manifest lists present. Returns how many hold.
fn check_checkpoints(
    c: &Contents,
    candidates: &[String],
    chains: &Chains,
    signed: Option<&Manifest>,
    problems: &mut Vec<String>,
) -> usize {
    let mut held = 0;
    for (source, entries) in &chains.entries {
        let recording_id = entries
            .first()
            .map(|e| e.recording_id.clone())
            .unwrap_or_default();
        let dir = format!("data/checkpoints/{source}/");
        let found: Vec<checkpoint::Found> = c
            .small
            .iter()
            .filter(|(p, _)| p.starts_with(&dir) && checkpoint::is_checkpoint_key(p))
            .map(|(p, bytes)| {
                let opened = checkpoint::open(bytes, candidates);
                checkpoint::Found {
                    key: p.clone(),
                    seq: opened.as_ref().ok().map(|cp| cp.seq),
                    checkpoint: opened,
                }
            })
            .collect();
        let listed: &[i64] = signed
            .and_then(|m| m.recordings.iter().find(|h| h.recording_id == recording_id))
            .map_or(&[], |h| h.checkpoints.as_slice());
        let bad = checkpoint::problems(&recording_id, entries, &found, listed);
        held += found.len().saturating_sub(bad.len());
        for (_, p) in bad {
            problems.push(format!("source {source}: checkpoint: {p}"));
        }
    }
    // A checkpoint of a source the package has no chain for was not checked: say so.
    for p in c
        .small
        .keys()
        .filter(|p| p.starts_with("data/checkpoints/"))
    {
        let source = p["data/checkpoints/".len()..]
            .split('/')
            .next()
            .unwrap_or("");
        if !chains.entries.iter().any(|(s, _)| s == source) {
            problems.push(format!(
                "{p}: checkpoint of a source with no chain in the package"
            ));
        }
    }
    held
}

/// Step 4c, every tombstone against the signed destruction decision it names
/// (`data/destruction/`): a tombstone nobody's decision warrants is no lawful destruction.
fn check_decisions(
    c: &Contents,
    candidates: &[String],
    bag: &BagSession,
    chains: &Chains,
    problems: &mut Vec<String>,
) {
    for (source, entries) in &chains.entries {
        let last_seq = entries.last().map_or(0, |e| e.seq);
        for t in entries.iter().filter(|e| e.kind == EntryKind::Tombstone) {
            let destroyed =
                crate::ledger::chain::tombstone_seqs(&t.detail, last_seq).unwrap_or_default();
            let checked = match decision::named_by(t) {
                None => Err(format!(
                    "seq {}: tombstone names no signed destruction decision",
                    t.seq
                )),
                Some((request, _)) => {
                    let name = format!("data/destruction/destruction-{request}.json");
                    match c.signed(&name) {
                        Some((body, sig)) => decision::check(
                            t,
                            &destroyed,
                            &bag.session_id,
                            body,
                            &sig,
                            c.text(&format!("{name}.sm2.sig")).as_deref(),
                            candidates,
                        )
                        .map(|_| ()),
                        None => Err(format!("seq {}: {name} or its signature missing", t.seq)),
                    }
                }
            };
            if let Err(p) = checked {
                problems.push(format!("source {source}: {p}"));
            }
        }
    }
}

/// Step 4b, the RFC 3161 timestamp token of the session manifest (`manifest.json.tsr`): its
/// message imprint is the SHA-256 of the manifest's exact bytes, the TSA signed it, and, with a
/// CA bundle, the TSA's certificate chains to it. A token that does not hold is a problem; a
/// TSA outside the bundle is untrusted (as an unpinned key is); a token the manifest asks for
/// but the package lacks is said, and changes no verdict (the TSA may not have answered before
/// the export, and the payload manifest would show one removed after).
fn check_timestamp(
    c: &Contents,
    signed: Option<&Manifest>,
    tsa_ca: Option<&CaBundle>,
    problems: &mut Vec<String>,
) -> Option<TimestampReport> {
    const NAME: &str = "data/chain/manifest.json.tsr";
    let body = c.small.get("data/chain/manifest.json")?;
    let report = |status, note: String| TimestampReport {
        status,
        tsa: None,
        time: None,
        ca: None,
        note,
    };
    let Some(token) = c.small.get(NAME) else {
        return signed.filter(|m| m.timestamp_requested).map(|_| {
            report(
                "missing",
                format!("not timestamped: the manifest asks for a timestamp token and the package has no {NAME} (the TSA had not answered when it was exported; export it again later); the manifest's time rests on the server's signature alone"),
            )
        });
    };
    Some(match timestamp::verify(token, body, tsa_ca) {
        Ok(stamp) => {
            let time = crate::time::rfc3339(stamp.gen_time_us);
            let (status, note) = match (&stamp.ca, tsa_ca) {
                (Some(ca), Some(bundle)) => (
                    "verified",
                    format!(
                        "timestamped by TSA {} at {time} (its certificate chains to {ca}, {})",
                        stamp.tsa, bundle.source
                    ),
                ),
                _ => (
                    "ca_not_checked",
                    format!(
                        "timestamped by TSA {} at {time}, but its certificate was NOT checked against a CA (give --tsa-ca FILE): the token shows the manifest unchanged since the holder of that certificate stamped it, not that a TSA you trust did",
                        stamp.tsa
                    ),
                ),
            };
            TimestampReport {
                status,
                tsa: Some(stamp.tsa),
                time: Some(time),
                ca: stamp.ca,
                note,
            }
        }
        Err(TokenError::Untrusted(why)) => report(
            "untrusted",
            format!("{NAME}: the timestamp token holds, but its {why}"),
        ),
        Err(e) => {
            let note = format!("{NAME}: timestamp token refused: {e}");
            problems.push(note.clone());
            report("invalid", note)
        }
    })
}

/// Step 4b, the RFC 3161 timestamp tokens of the chain checkpoints
/// (`data/checkpoints/{source}/{seq}.checkpoint.json.tsr`), as the manifest's: each one's
/// imprint is the SHA-256 of the exact bytes of the checkpoint beside it, the TSA signed it,
/// and, with a CA bundle, the TSA's certificate chains to it. A token that does not hold (or
/// whose checkpoint the package lacks) is a problem; a TSA outside the bundle is untrusted.
/// None when the package has no checkpoint token.
fn check_checkpoint_timestamps(
    c: &Contents,
    tsa_ca: Option<&CaBundle>,
    problems: &mut Vec<String>,
) -> Option<CheckpointTimestamps> {
    let tokens: Vec<(&String, &Vec<u8>)> = c
        .small
        .iter()
        .filter(|(p, _)| p.starts_with("data/checkpoints/") && checkpoint::is_token_key(p))
        .collect();
    if tokens.is_empty() {
        return None;
    }
    let checkpoints = c
        .small
        .keys()
        .filter(|p| p.starts_with("data/checkpoints/") && checkpoint::is_checkpoint_key(p))
        .count();
    let (mut stamps, mut untrusted, mut invalid) = (Vec::new(), None, 0usize);
    for (name, token) in tokens {
        let body = checkpoint::stamped_key(name).and_then(|k| c.small.get(k));
        let Some(body) = body else {
            problems.push(format!("{name}: {}", checkpoint::ORPHAN_TOKEN));
            invalid += 1;
            continue;
        };
        match timestamp::verify(token, body, tsa_ca) {
            Ok(stamp) => stamps.push(stamp),
            Err(TokenError::Untrusted(why)) => {
                untrusted
                    .get_or_insert(format!("{name}: the timestamp token holds, but its {why}"));
            }
            Err(e) => {
                problems.push(format!("{name}: timestamp token refused: {e}"));
                invalid += 1;
            }
        }
    }
    let mut tsa: Vec<String> = stamps.iter().map(|s| s.tsa.clone()).collect();
    tsa.sort();
    tsa.dedup();
    let from = stamps
        .iter()
        .map(|s| s.gen_time_us)
        .min()
        .map(crate::time::rfc3339);
    let to = stamps
        .iter()
        .map(|s| s.gen_time_us)
        .max()
        .map(crate::time::rfc3339);
    let held = format!(
        "{} of {checkpoints} chain checkpoints timestamped by TSA {} from {} to {}",
        stamps.len(),
        tsa.join(", "),
        from.as_deref().unwrap_or("-"),
        to.as_deref().unwrap_or("-"),
    );
    let (status, note) = if invalid > 0 {
        (
            "invalid",
            format!("{invalid} chain checkpoint timestamp tokens refused; {held}"),
        )
    } else if let Some(why) = untrusted {
        ("untrusted", why)
    } else if let Some(bundle) = tsa_ca {
        (
            "verified",
            format!(
                "{held} (its certificate chains to a CA of {})",
                bundle.source
            ),
        )
    } else {
        (
            "ca_not_checked",
            format!(
                "{held}, but the TSA's certificate was NOT checked against a CA (give --tsa-ca FILE)"
            ),
        )
    };
    Some(CheckpointTimestamps {
        status,
        timestamped: stamps.len(),
        checkpoints,
        tsa,
        from,
        to,
        note,
    })
}

/// Step 5, the session's audit entries: each one as it was chained (links are not checked, as
/// entries of other sessions sit between them in the full trail).
fn check_audit_entries(c: &Contents, problems: &mut Vec<String>) {
    let Some(text) = c.text("data/audit/audit.jsonl") else {
        return;
    };
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<crate::audit::AuditEntry>(line) {
            Ok(e) if e.compute_hash() == e.entry_hash => {}
            Ok(e) => problems.push(format!(
                "data/audit/audit.jsonl: entry {} does not match its hash (entry edited)",
                e.seq
            )),
            Err(err) => problems.push(format!(
                "data/audit/audit.jsonl line {}: not an audit entry ({err})",
                n + 1
            )),
        }
    }
}

/// Step 6, coverage: every moment from start to the signed stop is in a media or gap entry.
/// Judged only against a manifest that verifies, as nothing else in the package says when the
/// session stopped.
fn uncovered(signed: Option<&Manifest>, chains: &[(String, Vec<Entry>)]) -> Vec<UncoveredView> {
    let Some(m) = signed else {
        return Vec::new();
    };
    let tolerance = m.coverage_tolerance_us();
    let mut uncovered = Vec::new();
    for (source, entries) in chains {
        let c = coverage::check(entries, Some(m.stopped_at_us), tolerance);
        uncovered.extend(uncovered_views(source, &c));
    }
    uncovered
}

/// The verdict and the report: TAMPERED on any problem, else INCOMPLETE on any stretch no entry
/// covers, else INTACT.
#[allow(clippy::too_many_arguments)]
fn report(
    c: &Contents,
    problems: Vec<String>,
    uncovered: Vec<UncoveredView>,
    public_key: String,
    signed_by: Vec<SigningKey>,
    trusted: &TrustedKeys,
    bag: BagSession,
    chains: Chains,
    timestamp: Option<TimestampReport>,
    checkpoint_timestamps: Option<CheckpointTimestamps>,
) -> PackageReport {
    let key_trusted = !signed_by.is_empty() && signed_by.iter().all(|k| k.trusted);
    let tsa_untrusted = timestamp
        .as_ref()
        .filter(|t| t.status == "untrusted")
        .map(|t| t.note.clone())
        .or_else(|| {
            checkpoint_timestamps
                .as_ref()
                .filter(|t| t.status == "untrusted")
                .map(|t| t.note.clone())
        });
    let status = Verdict::of(!problems.is_empty(), !uncovered.is_empty())
        .trusting(key_trusted && tsa_untrusted.is_none());
    let fingerprints = signed_by
        .iter()
        .map(|k| k.fingerprint.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let verdict = match (problems.first(), uncovered.first()) {
        (None, _) if status == Verdict::UntrustedKey && !key_trusted => {
            untrusted_verdict(&bag, &signed_by, trusted, uncovered.len())
        }
        (None, _) if status == Verdict::UntrustedKey => format!(
            "UNTRUSTED KEY: project {} session {}: nothing found altered, signed by trusted key {fingerprints}, but {}. \
Obtain the CA certificate of the timestamp authority from a source you trust and verify again with --tsa-ca FILE.",
            bag.project,
            bag.session_id,
            tsa_untrusted.unwrap_or_default()
        ),
        (None, None) => format!(
            "INTACT: project {} session {}: {} segments, {} gaps, every moment covered, signed by trusted key {}{}{}",
            bag.project,
            bag.session_id,
            chains.segments.len(),
            chains.gaps.len(),
            fingerprints,
            timestamp
                .as_ref()
                .filter(|t| t.status == "verified")
                .map(|t| format!(
                    ", timestamped by TSA {} at {}",
                    t.tsa.as_deref().unwrap_or(""),
                    t.time.as_deref().unwrap_or("")
                ))
                .unwrap_or_default(),
            checkpoint_timestamps
                .as_ref()
                .filter(|t| t.status == "verified")
                .map(|t| format!(
                    ", {} of {} chain checkpoints timestamped from {} to {}",
                    t.timestamped,
                    t.checkpoints,
                    t.from.as_deref().unwrap_or(""),
                    t.to.as_deref().unwrap_or("")
                ))
                .unwrap_or_default()
        ),
        (Some(p), _) => format!("TAMPERED: {p} (and {} more problems)", problems.len() - 1),
        (None, Some(u)) => format!(
            "INCOMPLETE: source {} not covered from {} to {} ({:.1} s) (and {} more stretches)",
            u.source,
            u.from,
            u.to,
            u.seconds,
            uncovered.len() - 1
        ),
    };
    PackageReport {
        status,
        intact: status == Verdict::Intact,
        verdict,
        uncovered,
        problems,
        public_key,
        signed_by,
        trusted_keys_from: trusted.sources.clone(),
        project_code: bag.project,
        session_id: bag.session_id,
        segments: chains.segments,
        gaps: chains.gaps,
        destructions: chains.destructions,
        checkpoints: 0,
        derived: c
            .size
            .keys()
            .filter(|p| p.starts_with("derived/"))
            .cloned()
            .collect(),
        timestamp,
        checkpoint_timestamps,
        witness_record: None,
        sessions: Vec::new(),
        catalogue: None,
    }
}

/// The verdict line of a package signed by a key the verifier was not given, with how to
/// obtain the fingerprint to compare.
fn untrusted_verdict(
    bag: &BagSession,
    signed_by: &[SigningKey],
    trusted: &TrustedKeys,
    uncovered: usize,
) -> String {
    let keys = signed_by
        .iter()
        .filter(|k| !k.trusted)
        .map(|k| format!("{} (public key {})", k.fingerprint, k.public_key))
        .collect::<Vec<_>>()
        .join(", ");
    let given = if trusted.is_empty() {
        "you gave no trusted key".to_string()
    } else {
        format!(
            "not among the keys you trust ({})",
            trusted.sources.join(", ")
        )
    };
    let incomplete = if uncovered > 0 {
        format!("; besides, {uncovered} stretches are not covered")
    } else {
        String::new()
    };
    format!(
        "UNTRUSTED KEY: project {} session {}: nothing found altered, but signed by key {keys}, {given}{incomplete}. \
Anyone can sign a package with a key of their own. Obtain the fingerprint of the server that recorded it from a \
source you trust (GET /api/v1/keys on that server, the fingerprint shown at the foot of its console, or \
`witness keys` run on it), compare it with the one above, then verify again with --public-key HEX, \
--trust FILE or a line in $XDG_CONFIG_HOME/witness/trusted-keys (~/.config/witness/trusted-keys).",
        bag.project, bag.session_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../b"] {
            assert!(bag_path(Path::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(bag_path(Path::new("./a/b")).unwrap(), "a/b");
    }

    #[test]
    fn a_session_of_a_project_package_is_seen_from_its_folder() {
        let mut c = Contents::default();
        for (name, body) in [
            ("bag-info.txt", "Witness-Package-Kind: project\n"),
            ("data/catalogue.json", "{}"),
            (
                "data/sessions/S1/session-info.txt",
                "Witness-Session-Id: S1\n",
            ),
            ("data/sessions/S1/chain/cam1.json", "{}"),
            ("data/sessions/S1/media/cam1/00000001.ts", "media"),
            ("data/sessions/S2/chain/cam1.json", "{}"),
        ] {
            c.take(name, body.as_bytes(), body.len() as u64).unwrap();
        }
        c.settle().unwrap();
        // Parsed (kept) as a session package's would be: chains and identity, not media.
        assert!(c.small.contains_key("data/sessions/S1/chain/cam1.json"));
        assert!(c.small.contains_key("data/sessions/S1/session-info.txt"));
        assert!(
            !c.small
                .contains_key("data/sessions/S1/media/cam1/00000001.ts")
        );
        let kept = c.kept;
        let s1 = c.split_off("data/sessions/S1/");
        assert_eq!(
            s1.size.keys().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "bag-info.txt",
                "data/chain/cam1.json",
                "data/media/cam1/00000001.ts"
            ]
        );
        assert_eq!(s1.text("bag-info.txt").unwrap(), "Witness-Session-Id: S1\n");
        // Moved, not copied: the other session and the project's files stay.
        assert_eq!(c.kept + s1.kept, kept);
        assert!(c.size.contains_key("data/sessions/S2/chain/cam1.json"));
        assert!(!c.size.keys().any(|k| k.starts_with("data/sessions/S1/")));
    }

    #[test]
    fn manifests_parse() {
        let m = parse_manifest("ab  data/x\nCD *data/y\n").unwrap();
        assert_eq!(
            m,
            vec![
                ("ab".into(), "data/x".into()),
                ("cd".into(), "data/y".into())
            ]
        );
        assert!(parse_manifest("nohash\n").is_err());
    }
}
