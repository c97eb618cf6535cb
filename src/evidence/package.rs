//! The offline check of an evidence package (tar, zip or unpacked folder): no server, no database,
//! only the bytes. BagIt completeness and fixity (SHA-256 and SM3), the signed tag manifest,
//! every chain link, genesis bound to the bag's project and session, every segment against its
//! chain entry, the signed session manifest against the chain heads, and coverage of the
//! session from start to the signed stop (INTACT, INCOMPLETE or TAMPERED). Hostile archives (absolute
//! or `..` paths, links, oversized tag files, too many entries) are refused before use.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::evidence::export::{PackagedChain, Selection};
use crate::ledger::chain::{self, Entry, EntryKind};
use crate::ledger::coverage::{self, Verdict};
use crate::ledger::manifest::{self, Manifest};
use crate::ledger::verify::{UncoveredView, uncovered_views};

/// Limits that keep a hostile package from exhausting memory or time.
const MAX_ENTRIES: usize = 1_000_000;
const MAX_SMALL_FILE: u64 = 64 * 1024 * 1024;
/// Beyond this expansion a compressed member is taken for a zip bomb (media barely compresses).
const MAX_ZIP_RATIO: u64 = 200;

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
    pub public_key: String,
    pub project_code: String,
    pub session_id: String,
    pub segments: Vec<SegmentCheck>,
    pub gaps: Vec<String>,
    /// Lawful destructions (tombstones): what went, under which request and rule.
    pub destructions: Vec<String>,
    /// Playable copies under `derived/`: covered by the signed tag manifest, not evidence.
    pub derived: Vec<String>,
}

/// What was read: hashes of every file, and the bytes of the small (non-media) ones.
#[derive(Default)]
struct Contents {
    sha256: BTreeMap<String, String>,
    sm3: BTreeMap<String, String>,
    size: BTreeMap<String, u64>,
    small: BTreeMap<String, Vec<u8>>,
}

impl Contents {
    fn text(&self, name: &str) -> Option<String> {
        self.small
            .get(name)
            .map(|b| String::from_utf8_lossy(b).to_string())
    }

    fn take(&mut self, name: &str, mut r: impl Read, len: u64) -> Result<(), std::io::Error> {
        let keep = !name.starts_with("data/media/") && len <= MAX_SMALL_FILE;
        let mut sha = Sha256::new();
        let mut sm = Sm3::new();
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            sm.update(&buf[..n]);
            if keep {
                kept.extend_from_slice(&buf[..n]);
            }
            total += n as u64;
        }
        self.sha256.insert(name.into(), hex::encode(sha.finalize()));
        self.sm3.insert(name.into(), hex::encode(sm.finalize()));
        self.size.insert(name.into(), total);
        if keep {
            self.small.insert(name.into(), kept);
        }
        Ok(())
    }
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
                    c.take(&rel, f, len).map_err(io)?;
                }
            }
        }
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
        c.take(&rest, entry, len).map_err(io)?;
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
        if size > MAX_ZIP_RATIO * packed.max(1) && size > MAX_SMALL_FILE {
            return Err(PackageError::Hostile(format!(
                "{full}: expands {packed} bytes to {size} (a zip bomb?)"
            ))
            .into());
        }
        let start = member.data_start().unwrap_or(member.header_start());
        spans.push((start, start + packed, full.clone()));
        let rest = admit(c, &mut top, &full)?;
        // Never trust the declared size: read at most one byte more and compare.
        let mut limited = member.take(size + 1);
        c.take(&rest, &mut limited, size)
            .map_err(|e| PackageError::Io {
                path: full.clone(),
                source: e,
            })?;
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

/// Checks a package. `Err` only when it cannot be read or is refused as hostile.
pub fn verify_package(
    path: &Path,
    expected_key: Option<&str>,
) -> Result<PackageReport, PackageError> {
    let c = read(path)?;
    let mut problems = Vec::new();

    // 1. BagIt structure, completeness and fixity.
    if !c
        .text("bagit.txt")
        .is_some_and(|t| t.contains("BagIt-Version:"))
    {
        problems.push("bagit.txt missing or invalid: not a BagIt bag".to_string());
    }
    let info = bag_info(&c.text("bag-info.txt").unwrap_or_default());
    for (algo, table) in [("sha256", &c.sha256), ("sm3", &c.sm3)] {
        let name = format!("manifest-{algo}.txt");
        let Some(text) = c.text(&name) else {
            problems.push(format!("{name} missing"));
            continue;
        };
        match parse_manifest(&text) {
            Err(e) => problems.push(format!("{name}: {e}")),
            Ok(lines) => {
                let listed: BTreeSet<&str> = lines.iter().map(|(_, p)| p.as_str()).collect();
                for (hash, p) in &lines {
                    match table.get(p) {
                        None => problems.push(format!(
                            "{p}: listed in {name} but missing from the package"
                        )),
                        Some(h) if h != hash => {
                            problems.push(format!("{p}: {algo} mismatch (file altered)"))
                        }
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
        }
    }
    if let Some(oxum) = info.get("Payload-Oxum") {
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

    // 2. The tag manifest and its signature.
    let public_key = c
        .text("server-public-key.txt")
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Some(k) = expected_key
        && !k.eq_ignore_ascii_case(&public_key)
    {
        problems.push(format!("package signed by key {public_key}, expected {k}"));
    }
    match (
        c.small.get("tagmanifest-sha256.txt"),
        c.text("tagmanifest-sha256.txt.sig"),
    ) {
        (Some(tm), Some(sig)) => {
            if !manifest::verify_hex(&public_key, tm, sig.trim()) {
                problems.push(
                    "tagmanifest-sha256.txt: signature does not verify with server-public-key.txt"
                        .into(),
                );
            }
            match parse_manifest(&String::from_utf8_lossy(tm)) {
                Err(e) => problems.push(format!("tagmanifest-sha256.txt: {e}")),
                Ok(lines) => {
                    for (hash, p) in &lines {
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
                        if !String::from_utf8_lossy(tm).contains(&format!("  {required}\n")) {
                            problems.push(format!(
                                "{required}: not covered by the signed tag manifest"
                            ));
                        }
                    }
                }
            }
        }
        _ => problems
            .push("tagmanifest-sha256.txt or its .sig missing: the package is unsigned".into()),
    }

    // 3. Chains: links, genesis binding, segments.
    let project = info
        .get("Witness-Project-Code")
        .cloned()
        .unwrap_or_default();
    let session_id = info.get("Witness-Session-Id").cloned().unwrap_or_default();
    let session_code = info
        .get("Witness-Session-Code")
        .cloned()
        .unwrap_or_default();
    let room_id = info.get("Witness-Room-Id").cloned().unwrap_or_default();
    // Segments left out by the exporter's selection are expected absent; the selection itself is
    // covered by the signed tag manifest.
    let selection: Selection = match info.get("Witness-Selection") {
        None => Selection::default(),
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| {
            problems.push(format!(
                "bag-info.txt: Witness-Selection {text:?} is malformed"
            ));
            Selection::default()
        }),
    };
    let mut segments = Vec::new();
    let mut gaps = Vec::new();
    let mut destructions = Vec::new();
    let mut heads = BTreeMap::new();
    let mut chains: Vec<(String, Vec<Entry>)> = Vec::new();
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
    for p in chain_files {
        let Ok(pc) = serde_json::from_slice::<PackagedChain>(&c.small[p]) else {
            problems.push(format!("{p}: not a chain file"));
            continue;
        };
        let genesis =
            chain::genesis_detail(&project, &session_id, &session_code, &room_id, &pc.source);
        if let Err(e) = chain::check_links(&pc.recording_id, &genesis, &pc.entries) {
            problems.push(format!("source {}: chain broken: {e}", pc.source));
        }
        // Objects a tombstone accounts for were destroyed lawfully: expected absent.
        let destroyed = chain::destroyed_entries(&pc.entries).unwrap_or_else(|why| {
            problems.push(format!("source {}: {why}", pc.source));
            Default::default()
        });
        for e in &pc.entries {
            match e.kind {
                EntryKind::Genesis => {}
                EntryKind::Tombstone => {
                    destructions.push(format!("source {} seq {}: {}", pc.source, e.seq, e.detail))
                }
                EntryKind::Media if destroyed.contains(&e.seq) => segments.push(SegmentCheck {
                    source: pc.source.clone(),
                    seq: e.seq,
                    kind: "destroyed".into(),
                    file: String::new(),
                    ok: true,
                }),
                EntryKind::Gap => gaps.push(format!(
                    "source {} seq {}: gap of {:.1} s from {}: {}",
                    pc.source,
                    e.seq,
                    e.duration_us as f64 / 1e6,
                    crate::db::rfc3339(e.wall_start_us),
                    e.detail
                )),
                EntryKind::Media => {
                    let name = e.object_key.rsplit('/').next().unwrap_or_default();
                    let file = format!("data/media/{}/{name}", pc.source);
                    if !selection.includes(&pc.source, e) && !c.sha256.contains_key(&file) {
                        continue;
                    }
                    let ok = match c.sha256.get(&file) {
                        None => {
                            problems.push(format!(
                                "source {} seq {} ({file}): segment missing",
                                pc.source, e.seq
                            ));
                            false
                        }
                        Some(h)
                            if *h != e.sha256 || c.size.get(&file) != Some(&(e.bytes as u64)) =>
                        {
                            problems.push(format!(
                                "source {} seq {} ({file}): bytes differ from the chain entry (replaced or altered segment)",
                                pc.source, e.seq
                            ));
                            false
                        }
                        _ => true,
                    };
                    segments.push(SegmentCheck {
                        source: pc.source.clone(),
                        seq: e.seq,
                        kind: "media".into(),
                        file,
                        ok,
                    });
                }
            }
        }
        // The manifest signed at stop binds the head then; tombstones come after it.
        if let Some(last) = chain::signed_head(&pc.entries) {
            heads.insert(pc.recording_id.clone(), (last.seq, last.entry_hash.clone()));
        }
        chains.push((pc.source, pc.entries));
    }

    // 4. The session manifest signed at stop binds every chain head.
    let mut signed_manifest: Option<Manifest> = None;
    match (
        c.small.get("data/chain/manifest.json"),
        c.text("data/chain/manifest.json.sig"),
    ) {
        (Some(body), Some(sig)) => {
            if !manifest::verify_hex(&public_key, body, sig.trim()) {
                problems.push("data/chain/manifest.json: signature does not verify (manifest signed by another key or edited)".into());
            } else if let Ok(m) = serde_json::from_slice::<Manifest>(body) {
                if m.session_id != session_id || m.project_code != project {
                    problems.push(
                        "data/chain/manifest.json: belongs to another session or project".into(),
                    );
                }
                let signed: BTreeMap<String, (i64, String)> = m
                    .recordings
                    .iter()
                    .map(|h| (h.recording_id.clone(), (h.head_seq, h.head_hash.clone())))
                    .collect();
                if signed != heads {
                    problems.push("chain heads differ from the signed session manifest (entries removed, added or truncated)".into());
                }
                signed_manifest = Some(m);
            } else {
                problems.push("data/chain/manifest.json: malformed".into());
            }
        }
        _ => problems.push("data/chain/manifest.json or its signature missing".into()),
    }

    // 5. The session's audit entries: each one as it was chained (links are not checked, as
    // entries of other sessions sit between them in the full trail).
    if let Some(text) = c.text("data/audit/audit.jsonl") {
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
    // 6. Coverage: every moment from start to the signed stop is in a media or gap entry.
    let mut uncovered = Vec::new();
    if let Some(m) = &signed_manifest {
        let tolerance = m.coverage_tolerance_us();
        for (source, entries) in &chains {
            let c = coverage::check(entries, Some(m.stopped_at_us), tolerance);
            uncovered.extend(uncovered_views(source, &c));
        }
    }
    let status = Verdict::of(!problems.is_empty(), !uncovered.is_empty());
    let intact = status == Verdict::Intact;
    let verdict = match (problems.first(), uncovered.first()) {
        (None, None) => format!(
            "INTACT: project {project} session {session_id}: {} segments, {} gaps, every moment covered, signed by key {}",
            segments.len(),
            gaps.len(),
            public_key
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
    Ok(PackageReport {
        status,
        intact,
        verdict,
        uncovered,
        problems,
        public_key,
        project_code: project,
        session_id,
        segments,
        gaps,
        destructions,
        derived: c
            .size
            .keys()
            .filter(|p| p.starts_with("derived/"))
            .cloned()
            .collect(),
    })
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
