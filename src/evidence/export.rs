//! Evidence packages: a session exported as a BagIt bag (RFC 8493) in a tar stream. The media
//! are the stored segment bytes, unchanged; beside them the full chains, the signed session
//! manifest, the session's audit entries, SHA-256 and SM3 manifests, a tag manifest signed with
//! the server key, and a README that says how to check it all by hand.
//!
//! Two phases keep memory constant and make no temporary copy of the media: `plan` reads no
//! media: it takes the chains, checkpoints, manifest, witness record and audit entries, and
//! plans the payload with each object's SHA-256 and length from its chain entry; `write`
//! streams the tar or zip, payload first, reading each object once (`objects`): SHA-256 checked
//! against the chain entry as it goes, SM3 computed on the other cores. The payload manifests,
//! the other tag files and the signed tag manifest follow the payload, made from the hashes of
//! that one read. An object that does not match its entry, or is missing, fails the write: the
//! command line removes its partial file, a download is cut off (the client sees an error, not
//! a whole package) and its job fails. `package` checks a package offline.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::audit;
use crate::db::Pool;
use crate::disk::DiskWatch;
use crate::error::CoreError;
use crate::evidence::access::{MediaAccess, Read};
pub use crate::evidence::archive::Format;
use crate::evidence::archive::{ArchiveWriter, ChannelSink, PackageSink};
use crate::evidence::objects::ObjectCopier;
use crate::identity::caller::Caller;
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::checkpoint;
use crate::ledger::decision;
use crate::ledger::index;
use crate::ledger::manifest::{self, Signer};
use crate::ledger::writer::recording_prefix;
use crate::store::Store;
use crate::time::parse_wall_clock;
use crate::time::{now_us, rfc3339};

/// The chain of one recording as it travels in a package: `data/chain/{source}.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PackagedChain {
    pub recording_id: String,
    pub source: String,
    pub room_id: String,
    pub template: String,
    pub entries: Vec<Entry>,
}

/// Where a segment travels in a package: `data/media/{source}/{the object's file name}`.
pub fn media_path(source: &str, e: &Entry) -> String {
    let name = e.object_key.rsplit('/').next().unwrap_or_default();
    format!("data/media/{source}/{name}")
}

/// Which media go into a package. Chains always travel whole, so the verifier can tell a segment
/// left out by selection from one removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Source names; empty means all.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Wall-clock range (Unix µs): segments overlapping it are included.
    #[serde(default)]
    pub from_us: Option<i64>,
    #[serde(default)]
    pub to_us: Option<i64>,
}

impl Selection {
    /// The selection of `sources` (empty: all) over the RFC 3339 range `from`..`to`, or a
    /// message naming what is wrong.
    pub fn parse(
        sources: Vec<String>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Selection, String> {
        let selection = Selection {
            sources,
            from_us: parse_wall_clock("from", from)?,
            to_us: parse_wall_clock("to", to)?,
        };
        if let (Some(f), Some(t)) = (selection.from_us, selection.to_us)
            && f >= t
        {
            return Err("from must be before to".into());
        }
        Ok(selection)
    }

    pub fn includes(&self, source: &str, e: &Entry) -> bool {
        (self.sources.is_empty() || self.sources.iter().any(|s| s == source))
            && self
                .from_us
                .is_none_or(|f| e.wall_start_us + e.duration_us > f)
            && self.to_us.is_none_or(|t| e.wall_start_us < t)
    }

    /// The `Witness-Selection` line of bag-info.txt; parsed back by the verifier.
    pub fn to_bag_info(&self) -> String {
        serde_json::to_string(self).expect("selection serializes")
    }
}

pub struct ExportRequest<'a> {
    /// When set: also one concatenated playable MP4 per selected source, remuxed into this
    /// scratch folder first and packaged under `derived/` as a convenience, not as evidence.
    pub derived_mp4_dir: Option<&'a std::path::Path>,
    pub session_id: &'a str,
    /// Who exports, from where: in the audit trail and the package's bag-info.
    pub by: &'a audit::Actor,
    /// The authenticated caller the rule of `evidence::access` is applied to; `None` for the
    /// server's own command line.
    pub caller: Option<&'a Caller>,
    pub reason: &'a str,
    pub selection: Selection,
    /// The server's disks: an export is refused while they are critically low, and derived
    /// MP4s only made if they leave the reserve (`disk`). `None` for the command line, which
    /// writes where it is told.
    pub disk: Option<&'a DiskWatch>,
}

enum Content {
    /// A stored object of `len` bytes, read while writing and checked against the file's
    /// SHA-256 (its chain entry's).
    Object {
        key: String,
        len: u64,
    },
    Bytes(Vec<u8>),
}

/// A payload file: listed in both payload manifests.
struct PlannedFile {
    path: String,
    content: Content,
    sha256: String,
    /// Known for the small files; a stored object's is computed as it is written.
    sm3: Option<String>,
}

/// A playable copy under `derived/`, remuxed into the plan's scratch folder.
struct DerivedFile {
    path: String,
    file: std::path::PathBuf,
    len: u64,
    sha256: String,
}

/// The tag files (bagit.txt … README.txt) and the signed tag manifest (with its signatures),
/// made once the payload has been read.
struct Tags {
    files: Vec<(String, Vec<u8>)>,
    signed: Vec<(String, Vec<u8>)>,
}

/// Everything needed to write a package, with the media still in the store.
pub struct Plan {
    pub package_id: String,
    pub project_code: String,
    pub root: String,
    pub payload_bytes: u64,
    pub files: usize,
    /// `derived/{source}.mp4` files, when asked for.
    pub derived: Vec<String>,
    /// The sessions it holds: one for a session package, every one of a project package.
    pub session_ids: Vec<String>,
    /// The payload in the order it is written: each session's media first.
    payload: Vec<PlannedFile>,
    bag_info: String,
    readme: &'static str,
    derived_files: Vec<DerivedFile>,
    signer: Signer,
    /// Made by the first write that read the whole payload; every later write of the plan
    /// (another download of the job) sends the same tag files, checking each object's SHA-256
    /// again but not recomputing SM3.
    tags: OnceLock<Tags>,
    /// Deleted with the plan: the derived files live only as long as the package can be fetched.
    scratch: Option<std::path::PathBuf>,
}

impl Drop for Plan {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Progress callback, called as the payload is written: bytes done, bytes total.
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

/// The session, if it can be exported with this reason: it exists, it is stopped, and the
/// reason is 1 to 500 characters.
pub async fn exportable(
    pool: &Pool,
    session_id: &str,
    reason: &str,
) -> Result<index::SessionRow, CoreError> {
    let session = crate::ledger::index::existing_session(pool, session_id).await?;
    // A destroyed session still exports: its chains, tombstones and audit entries are the proof
    // of what was destroyed, lawfully.
    if !session.state.is_sealed() {
        return Err(CoreError::conflict(
            "session_not_stopped",
            format!(
                "session {} is {}; export it once it is stopped",
                session.id, session.state
            ),
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > 500 {
        return Err(CoreError::invalid(
            "reason_required",
            "an export needs a reason (1 to 500 characters); it is recorded",
        ));
    }
    Ok(session)
}

/// The session, if `req.caller` may export it as asked: `exportable`, then the rule of
/// `evidence::access` (scope; a confidential session's package with derived MP4s only for a role
/// that may replay it). A refusal is audited (`export`, outcome `denied: …`).
pub async fn authorize(
    pool: &Pool,
    req: &ExportRequest<'_>,
) -> Result<index::SessionRow, CoreError> {
    let session = exportable(pool, req.session_id, req.reason).await?;
    if let Some(disk) = req.disk {
        disk.admit_export(0)?;
    }
    MediaAccess {
        actor: req.by,
        caller: req.caller,
        read: Read::Export {
            derived_mp4: req.derived_mp4_dir.is_some(),
        },
        action: "export",
        session: &session,
        source: "",
        target: format!(
            "{}{}",
            session.id,
            if req.derived_mp4_dir.is_some() {
                " with derived MP4"
            } else {
                ""
            }
        ),
        reason: req.reason,
        supervision: false,
    }
    .check(pool)
    .await?;
    Ok(session)
}

/// Reads the session's chains and prepares all small files; the media stay in the store until
/// `write` reads them. Records the export in the audit trail (and that entry travels in the
/// package).
pub async fn plan(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    req: ExportRequest<'_>,
) -> Result<Plan, CoreError> {
    let session = authorize(pool, &req).await?;
    let recordings = index::recordings(pool, &session.id).await?;
    check_selected_sources(&recordings, &req.selection)?;
    let package_id = uuid::Uuid::now_v7().to_string();
    let chains = read_chains(pool, &recordings).await?;
    let mut payload = Payload::default();
    add_session_files(
        pool,
        store,
        signer,
        &session,
        &chains,
        &req.selection,
        &mut payload,
    )
    .await?;
    audit::Event::new(req.by, "export")
        .session(&session.id, &session.project_code)
        .target(&package_id)
        .reason(req.reason)
        .flagged(session.confidential)
        .append(pool)
        .await?;
    add_audit_entries(pool, &session, &mut payload).await?;
    tag_and_sign(store, signer, &req, &session, package_id, &chains, payload).await
}

/// One session's evidence, as a session package and a project package carry it (under
/// `payload.prefix`): its selected media and whole chains, checkpoints, destruction decisions,
/// the signed manifest and the witness record (见证记录: what the verifier checks, and the page
/// to print). Its audit entries go last, once the export is audited.
#[allow(clippy::too_many_arguments)]
async fn add_session_files(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    session: &index::SessionRow,
    chains: &[SessionChain<'_>],
    selection: &Selection,
    payload: &mut Payload,
) -> Result<(), CoreError> {
    add_media_and_chains(session, chains, selection, payload)?;
    add_checkpoints(store, signer, session, chains, payload).await?;
    add_decisions(store, session, chains, payload).await?;
    add_session_manifest(store, session, payload).await?;
    let (record_json, record_html) = super::witness_record::files(pool, session).await?;
    payload.add_bytes(super::witness_record::JSON_PATH.into(), record_json);
    payload.add_bytes(super::witness_record::HTML_PATH.into(), record_html);
    Ok(())
}

/// Around the planned payload: bag-info.txt and the derived copies when asked for. The other
/// tag files and the signed tag manifest are made once the payload is read (`Plan::make_tags`).
async fn tag_and_sign(
    store: &Store,
    signer: &Signer,
    req: &ExportRequest<'_>,
    session: &index::SessionRow,
    package_id: String,
    chains: &[SessionChain<'_>],
    payload: Payload,
) -> Result<Plan, CoreError> {
    let info = bag_info(
        session,
        req,
        &package_id,
        payload.bytes,
        payload.files.len(),
    );
    let scratch = req.derived_mp4_dir.map(|dir| dir.join(&package_id));
    let derived_files = match &scratch {
        None => Vec::new(),
        Some(scratch) => {
            // Remuxed copies take about what the media take: not at the recorders' expense.
            if let Some(disk) = req.disk {
                disk.admit_export(payload.bytes)?;
            }
            add_derived(store, scratch, chains, &req.selection).await?
        }
    };
    Ok(Plan::new(
        package_id,
        session.project_code.clone(),
        format!("witness-{}-{}", session.project_code, session.id),
        vec![session.id.clone()],
        payload,
        info,
        README,
        derived_files,
        signer,
        scratch,
    ))
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        package_id: String,
        project_code: String,
        root: String,
        session_ids: Vec<String>,
        payload: Payload,
        bag_info: String,
        readme: &'static str,
        derived_files: Vec<DerivedFile>,
        signer: &Signer,
        scratch: Option<std::path::PathBuf>,
    ) -> Plan {
        // Payload, 7 tag files, derived copies, the tag manifest and its signature(s).
        let sm2 = usize::from(signer.sm2_public_key_hex().is_some());
        let files = payload.files.len() + TAG_FILES + derived_files.len() + 2 + sm2;
        Plan {
            package_id,
            project_code,
            root,
            payload_bytes: payload.bytes,
            files,
            derived: derived_files.iter().map(|d| d.path.clone()).collect(),
            session_ids,
            payload: payload.files,
            bag_info,
            readme,
            derived_files,
            signer: signer.clone(),
            tags: OnceLock::new(),
            scratch,
        }
    }
}

/// An export of sources the session does not have is refused rather than silently empty.
fn check_selected_sources(
    recordings: &[index::RecordingRow],
    selection: &Selection,
) -> Result<(), CoreError> {
    for s in &selection.sources {
        if !recordings.iter().any(|r| &r.source_name == s) {
            return Err(CoreError::invalid(
                "invalid_field",
                format!("sources: session has no source {s:?}"),
            ));
        }
    }
    Ok(())
}

/// One recording's chain, with the media entries tombstones account for.
struct SessionChain<'a> {
    rec: &'a index::RecordingRow,
    entries: Vec<Entry>,
    destroyed: BTreeSet<i64>,
    /// SM3 of media segments computed when they were sealed (`media_digests`), by seq.
    sm3: std::collections::HashMap<i64, String>,
}

impl SessionChain<'_> {
    /// The media entries whose segments go into the package: selected, and not destroyed.
    fn packaged<'s>(&'s self, selection: &'s Selection) -> impl Iterator<Item = &'s Entry> + 's {
        self.entries.iter().filter(move |e| {
            e.kind == EntryKind::Media
                && !self.destroyed.contains(&e.seq)
                && selection.includes(&self.rec.source_name, e)
        })
    }
}

/// Every recording's chain, whole (chains always travel whole). Lawfully destroyed media are
/// gone, their tombstones travel in the chain; a tombstone that does not hold stops the export.
async fn read_chains<'a>(
    pool: &Pool,
    recordings: &'a [index::RecordingRow],
) -> Result<Vec<SessionChain<'a>>, CoreError> {
    let mut chains = Vec::new();
    for rec in recordings {
        let entries = index::entries(pool, &rec.id).await?;
        let destroyed = crate::ledger::chain::destroyed_entries(&entries).map_err(|why| {
            CoreError::conflict("store_tampered", format!("{}: {why}", rec.source_name))
        })?;
        let sm3 = index::media_sm3(pool, &rec.id).await?;
        chains.push(SessionChain {
            rec,
            entries,
            destroyed,
            sm3,
        });
    }
    Ok(chains)
}

/// The payload as it is planned: its files in order, with their hashes, and its size.
#[derive(Default)]
struct Payload {
    files: Vec<PlannedFile>,
    bytes: u64,
    /// Where a session's `data/…` files go: empty for a session package, `data/sessions/{id}/`
    /// (in place of `data/`) for a session inside a project package.
    prefix: String,
}

impl Payload {
    /// A file of `len` bytes and this SHA-256 (and SM3, when known), listed in both manifests.
    fn add(
        &mut self,
        path: String,
        content: Content,
        len: u64,
        sha256: String,
        sm3: Option<String>,
    ) {
        let path = match path.strip_prefix("data/") {
            Some(rest) if !self.prefix.is_empty() => format!("{}{rest}", self.prefix),
            _ => path,
        };
        self.bytes += len;
        self.files.push(PlannedFile {
            path,
            content,
            sha256,
            sm3,
        });
    }

    /// A small file held in memory, hashed here.
    fn add_bytes(&mut self, path: String, data: Vec<u8>) {
        let sha = hex::encode(Sha256::digest(&data));
        let sm = hex::encode(Sm3::digest(&data));
        let len = data.len() as u64;
        self.add(path, Content::Bytes(data), len, sha, Some(sm));
    }
}

/// Each recording's selected segments, as their chain entries describe them (read and checked
/// against those entries when written: never package bytes the chain does not vouch for), then
/// its whole chain.
fn add_media_and_chains(
    session: &index::SessionRow,
    chains: &[SessionChain<'_>],
    selection: &Selection,
    payload: &mut Payload,
) -> Result<(), CoreError> {
    for chain in chains {
        let rec = chain.rec;
        for e in chain.packaged(selection) {
            let len = u64::try_from(e.bytes).map_err(|_| {
                CoreError::conflict(
                    "store_tampered",
                    format!("{}: entry {} has a negative length", rec.source_name, e.seq),
                )
            })?;
            payload.add(
                media_path(&rec.source_name, e),
                Content::Object {
                    key: e.object_key.clone(),
                    len,
                },
                len,
                e.sha256.clone(),
                chain.sm3.get(&e.seq).cloned(),
            );
        }
        let packaged = PackagedChain {
            recording_id: rec.id.clone(),
            source: rec.source_name.clone(),
            room_id: session.room_id.clone(),
            template: rec.template.clone(),
            entries: chain.entries.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&packaged).map_err(|e| CoreError::Internal(e.to_string()))?;
        payload.add_bytes(format!("data/chain/{}.json", rec.source_name), json);
    }
    Ok(())
}

/// Every chain checkpoint signed while the session recorded, as stored
/// (`data/checkpoints/{source}/{seq}.checkpoint.json`), each checked first: a package never
/// carries a checkpoint that does not hold against its chain. Their RFC 3161 timestamp tokens
/// (`{seq}.checkpoint.json.tsr`) go beside them as stored, as the manifest's does: the verifier
/// judges them.
async fn add_checkpoints(
    store: &Store,
    signer: &Signer,
    session: &index::SessionRow,
    chains: &[SessionChain<'_>],
    payload: &mut Payload,
) -> Result<(), CoreError> {
    let keys = signer.all_public_keys();
    // One folder per recording, read side by side (a store answers each listing in its own
    // time), and not below it: checkpoints lie beside the segments.
    let folders: Vec<object_store::path::Path> = chains
        .iter()
        .map(|c| {
            let prefix = recording_prefix(&session.project_code, &session.id, &c.rec.source_name);
            object_store::path::Path::from(prefix.as_str())
        })
        .collect();
    let listings: Vec<Vec<object_store::ObjectMeta>> = futures::stream::iter(folders)
        .map(|folder| {
            let store = store.clone();
            async move {
                store
                    .list_with_delimiter(Some(&folder))
                    .await
                    .map(|l| l.objects)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    for (chain, objects) in chains.iter().zip(listings) {
        let source = &chain.rec.source_name;
        for o in objects {
            let key = o.location.to_string();
            let name = key.rsplit('/').next().unwrap_or(&key);
            if checkpoint::is_token_key(&key) {
                let data = store.get(&o.location).await?.bytes().await?.to_vec();
                payload.add_bytes(format!("data/checkpoints/{source}/{name}"), data);
                continue;
            }
            if !checkpoint::is_checkpoint_key(&key) {
                continue;
            }
            let data = store.get(&o.location).await?.bytes().await?.to_vec();
            checkpoint::open(&data, &keys)
                .and_then(|cp| checkpoint::check(&cp, &chain.rec.id, &chain.entries))
                .map_err(|why| {
                    CoreError::conflict("store_tampered", format!("{source}: {key}: {why}"))
                })?;
            payload.add_bytes(format!("data/checkpoints/{source}/{name}"), data);
        }
    }
    Ok(())
}

/// The signed destruction decision records the chains' tombstones name
/// (`data/destruction/destruction-{request}.json`, with their signatures), as stored.
async fn add_decisions(
    store: &Store,
    session: &index::SessionRow,
    chains: &[SessionChain<'_>],
    payload: &mut Payload,
) -> Result<(), CoreError> {
    let requests: BTreeSet<String> = chains
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| e.kind == EntryKind::Tombstone)
        .filter_map(|t| decision::named_by(t).map(|(request, _)| request))
        .collect();
    for request in requests {
        let key = decision::object_key(&session.project_code, &session.id, &request);
        for k in [
            key.clone(),
            manifest::signature_key(&key),
            manifest::sm2_signature_key(&key),
        ] {
            match store.get(&object_store::path::Path::from(k.as_str())).await {
                Ok(r) => {
                    let name = k.rsplit('/').next().unwrap_or(&k).to_string();
                    payload.add_bytes(
                        format!("data/destruction/{name}"),
                        r.bytes().await?.to_vec(),
                    );
                }
                // The verifier says what is missing; an SM2 signature exists only with SM2 on.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The session manifest signed at stop and its signature, as stored: they bind every chain head.
async fn add_session_manifest(
    store: &Store,
    session: &index::SessionRow,
    payload: &mut Payload,
) -> Result<(), CoreError> {
    let Some(key) = &session.manifest_key else {
        return Ok(());
    };
    for (k, name) in [
        (key.clone(), "manifest.json"),
        (manifest::signature_key(key), "manifest.json.sig"),
    ] {
        let data = store
            .get(&object_store::path::Path::from(k.as_str()))
            .await?
            .bytes()
            .await?
            .to_vec();
        payload.add_bytes(format!("data/chain/{name}"), data);
    }
    // The SM2 signature, when the session was stopped with SM2 on, and the RFC 3161 timestamp
    // token, once the TSA has answered ([signing] tsa_url).
    for (k, name) in [
        (manifest::sm2_signature_key(key), "manifest.json.sm2.sig"),
        (crate::ledger::tsa::token_key(key), "manifest.json.tsr"),
    ] {
        match store.get(&object_store::path::Path::from(k)).await {
            Ok(r) => payload.add_bytes(format!("data/chain/{name}"), r.bytes().await?.to_vec()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The session's audit entries, this export's included: who accessed the evidence, and why.
async fn add_audit_entries(
    pool: &Pool,
    session: &index::SessionRow,
    payload: &mut Payload,
) -> Result<(), CoreError> {
    let mut audit_jsonl = Vec::new();
    for a in audit::for_session(pool, &session.id).await? {
        serde_json::to_writer(&mut audit_jsonl, &a)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        audit_jsonl.push(b'\n');
    }
    payload.add_bytes("data/audit/audit.jsonl".into(), audit_jsonl);
    Ok(())
}

/// bag-info.txt: the session, the selection, who exported it and why; the verifier reads the
/// session's identity and the selection from it.
fn bag_info(
    session: &index::SessionRow,
    req: &ExportRequest<'_>,
    package_id: &str,
    payload_bytes: u64,
    payload_files: usize,
) -> String {
    let mut bag_info = format!(
        "Source-Organization: Witness\nBagging-Date: {}\nPayload-Oxum: {payload_bytes}.{payload_files}\nWitness-Package-Id: {package_id}\nWitness-Project-Code: {}\nWitness-Session-Id: {}\nWitness-Session-Code: {}\nWitness-Session-Kind: {}\nWitness-Room-Id: {}\nWitness-Room-Name: {}\nWitness-Session-Start: {}\nWitness-Session-Stop: {}\nWitness-Selection: {}\nWitness-Exporter: {}\nWitness-Export-Reason: {}\nWitness-Exported-At: {}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        session.project_code,
        session.id,
        session.session_code,
        session.kind,
        session.room_id,
        one_line(&session.room_name),
        rfc3339(session.started_at_us),
        session.stopped_at_us.map(rfc3339).unwrap_or_default(),
        req.selection.to_bag_info(),
        one_line(&req.by.name()),
        one_line(req.reason),
        rfc3339(now_us()),
    );
    if req.derived_mp4_dir.is_some() {
        bag_info.push_str(
            "Witness-Derived: derived/{source}.mp4 are playable copies remuxed from the selected segments, not evidence; the evidence is data/media/\n",
        );
    }
    bag_info
}

/// The tag files at the top of the bag, in the order they are written after the payload.
const TAG_FILES: usize = 7;

impl Plan {
    /// The tag files and the signed tag manifest, from the payload's hashes: `sm3` holds the SM3
    /// of each stored object read (by payload index). The tag manifest lists the tag files,
    /// then the derived copies; the server key signs it last, vouching for all of them and,
    /// through the payload manifests, for every payload file.
    fn make_tags(&self, sm3: Vec<(usize, String)>) -> Result<Tags, CoreError> {
        let mut sm3_of: Vec<Option<&str>> = self.payload.iter().map(|f| f.sm3.as_deref()).collect();
        for (i, h) in &sm3 {
            sm3_of[*i] = Some(h);
        }
        let mut sha_lines = String::new();
        let mut sm3_lines = String::new();
        for (f, sm) in self.payload.iter().zip(sm3_of) {
            let sm = sm.ok_or_else(|| {
                CoreError::Internal(format!("package: no SM3 of {} was computed", f.path))
            })?;
            sha_lines.push_str(&format!("{}  {}\n", f.sha256, f.path));
            sm3_lines.push_str(&format!("{sm}  {}\n", f.path));
        }
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "bagit.txt".into(),
                b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n".to_vec(),
            ),
            ("bag-info.txt".into(), self.bag_info.clone().into_bytes()),
            ("manifest-sha256.txt".into(), sha_lines.into_bytes()),
            ("manifest-sm3.txt".into(), sm3_lines.into_bytes()),
            (
                "server-public-key.txt".into(),
                format!("{}\n", self.signer.public_key_hex()).into_bytes(),
            ),
            (
                "server-keys.txt".into(),
                server_keys(&self.signer).into_bytes(),
            ),
            ("README.txt".into(), self.readme.as_bytes().to_vec()),
        ];
        debug_assert_eq!(files.len(), TAG_FILES);
        let mut tag_lines = String::new();
        for (name, data) in &files {
            tag_lines.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(data))));
        }
        for d in &self.derived_files {
            tag_lines.push_str(&format!("{}  {}\n", d.sha256, d.path));
        }
        let signature = format!("{}\n", self.signer.sign_hex(tag_lines.as_bytes()));
        let sm2 = self.signer.sign_sm2_hex(tag_lines.as_bytes());
        let mut signed = vec![
            ("tagmanifest-sha256.txt".to_string(), tag_lines.into_bytes()),
            (
                "tagmanifest-sha256.txt.sig".to_string(),
                signature.into_bytes(),
            ),
        ];
        if let Some(sm2) = sm2 {
            signed.push((
                "tagmanifest-sha256.txt.sm2.sig".into(),
                format!("{sm2}\n").into_bytes(),
            ));
        }
        Ok(Tags { files, signed })
    }
}

/// Every key of the server, current and retired (`{public key}  {key id}  {current|retired}`;
/// Ed25519 first, then SM2 if there is one, the algorithm told by the key's length): a session
/// recorded before a rotation is signed by a retired key.
fn server_keys(signer: &Signer) -> String {
    signer
        .views()
        .iter()
        .map(|k| format!("{}  {}  {}\n", k.public_key, k.key_id, k.status))
        .collect()
}

/// Playable MP4 copies of each source's selected segments, remuxed into `scratch` (deleted with
/// the plan, or here on failure), to be listed in the tag manifest: signed, but not evidence.
async fn add_derived(
    store: &Store,
    scratch: &std::path::Path,
    chains: &[SessionChain<'_>],
    selection: &Selection,
) -> Result<Vec<DerivedFile>, CoreError> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| CoreError::Internal(format!("scratch folder {}: {e}", scratch.display())))?;
    let mut derived = Vec::new();
    for chain in chains {
        let segments: Vec<Entry> = chain.packaged(selection).cloned().collect();
        let media = &chain.rec.media;
        if segments.is_empty()
            || segments.iter().any(|e| !e.object_key.ends_with(".ts"))
            || crate::evidence::remux::launch_for(media).is_none()
        {
            continue; // nothing selected, or a container the remuxer does not read
        }
        let source = &chain.rec.source_name;
        let file = scratch.join(format!("{source}.mp4"));
        let (len, sha256) = match derive_mp4(media, segments, store, &file).await {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_dir_all(scratch);
                return Err(e);
            }
        };
        derived.push(DerivedFile {
            path: format!("derived/{source}.mp4"),
            file,
            len,
            sha256,
        });
    }
    Ok(derived)
}

/// Writes the planned package as a tar or zip into `sink` on a blocking thread, and hands the
/// sink back flushed. The payload first, each stored object read once (`objects`): its
/// SHA-256 checked against its chain entry, its SM3 computed on the other cores; then the tag
/// files with both payload manifests, the derived copies, and the signed tag manifest. A
/// missing or altered object fails the write after its bytes have gone into `sink`: the caller
/// discards what was written (never a package that looks whole). `progress` gets the payload
/// bytes written.
pub async fn write_to<W: PackageSink + Send + 'static>(
    plan: Arc<Plan>,
    store: Store,
    format: Format,
    sink: W,
    progress: Progress,
) -> Result<W, CoreError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        write_blocking(&plan, store, handle, format, sink, progress)
    })
    .await
    .map_err(|e| CoreError::Internal(format!("package writer: {e}")))?
}

fn write_blocking<W: PackageSink>(
    plan: &Plan,
    store: Store,
    handle: tokio::runtime::Handle,
    format: Format,
    sink: W,
    mut progress: Progress,
) -> Result<W, CoreError> {
    let mut archive = ArchiveWriter::new(format, sink);
    // SM3 only while the tag files are still to be made: a later write of the same plan sends
    // the ones the first made (the SHA-256 check vouches that the bytes are the same).
    let mut objects = ObjectCopier::new(handle, store, plan.tags.get().is_none());
    let mut done = 0u64;
    for (i, f) in plan.payload.iter().enumerate() {
        let path = format!("{}/{}", plan.root, f.path);
        match &f.content {
            Content::Bytes(b) => {
                archive.add(&path, b.len() as u64, &b[..])?;
                done += b.len() as u64;
            }
            Content::Object { key, len } => {
                archive.begin(&path, *len)?;
                let sm3 = f.sm3.is_none();
                objects.copy(i, key, &f.sha256, *len, sm3, &mut archive)?;
                archive.end()?;
                done += len;
            }
        }
        progress(done, plan.payload_bytes);
    }
    let sm3 = objects.finish()?;
    let tags = match plan.tags.get() {
        Some(tags) => tags,
        None => {
            let made = plan.make_tags(sm3)?;
            // Two first downloads at once: both send the tags of whichever finished first.
            plan.tags.get_or_init(|| made)
        }
    };
    for (name, data) in &tags.files {
        archive.add(
            &format!("{}/{name}", plan.root),
            data.len() as u64,
            &data[..],
        )?;
    }
    for d in &plan.derived_files {
        let file = std::fs::File::open(&d.file)
            .map_err(|e| CoreError::Internal(format!("derived file {}: {e}", d.file.display())))?;
        archive.add(&format!("{}/{}", plan.root, d.path), d.len, file)?;
    }
    for (name, data) in &tags.signed {
        archive.add(
            &format!("{}/{name}", plan.root),
            data.len() as u64,
            &data[..],
        )?;
    }
    archive.finish()
}

/// Writes the planned package as a tar or zip stream. `flush` receives the archive in pieces of
/// about a megabyte as it is written, so memory stays constant whatever the session's size. An
/// error (an object that does not match its chain entry, the reader gone) ends the stream
/// early: the receiver must not take what it got for a package.
pub async fn write<F, Fut>(
    plan: Arc<Plan>,
    store: Store,
    format: Format,
    mut flush: F,
) -> Result<u64, CoreError>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<(), CoreError>>,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let sink = ChannelSink::new(tx);
    // The sink handed back holds the sender: dropped here, so that the loop below sees the end.
    let writer = tokio::spawn(async move {
        write_to(plan, store, format, sink, Box::new(|_, _| {}))
            .await
            .map(drop)
    });
    let mut written = 0u64;
    while let Some(piece) = rx.recv().await {
        written += piece.len() as u64;
        if let Err(e) = flush(piece).await {
            drop(rx); // the writer's next send fails and it stops
            let _ = writer.await;
            return Err(e);
        }
    }
    writer
        .await
        .map_err(|e| CoreError::Internal(format!("package writer: {e}")))??;
    Ok(written)
}

/// Remuxes the selected segments of one recording into `out`; returns (bytes, SHA-256).
async fn derive_mp4(
    media: &str,
    segments: Vec<Entry>,
    store: &Store,
    out: &std::path::Path,
) -> Result<(u64, String), CoreError> {
    use tokio::io::AsyncWriteExt;
    let failed = |e: &dyn std::fmt::Display| {
        CoreError::Internal(format!("derived MP4 {}: {e}", out.display()))
    };
    let mut rx =
        crate::evidence::remux::start(media, segments, store.clone()).map_err(|e| failed(&e))?;
    let mut file = tokio::fs::File::create(out).await.map_err(|e| failed(&e))?;
    let mut sha = Sha256::new();
    let mut len = 0u64;
    while let Some(piece) = rx.recv().await {
        let piece = piece.map_err(|e| failed(&e))?;
        sha.update(&piece);
        len += piece.len() as u64;
        file.write_all(&piece).await.map_err(|e| failed(&e))?;
    }
    file.sync_all().await.map_err(|e| failed(&e))?;
    Ok((len, hex::encode(sha.finalize())))
}

/// Plan and write to a file-like sink, handed back flushed: what `witness export` does. On an
/// error the sink holds part of a package, which the caller discards.
pub async fn export_to<W: PackageSink + Send + 'static>(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    req: ExportRequest<'_>,
    format: Format,
    out: W,
    progress: Progress,
) -> Result<(Arc<Plan>, W), CoreError> {
    let plan = Arc::new(plan(pool, store, signer, req).await?);
    let out = write_to(plan.clone(), store.clone(), format, out, progress).await?;
    Ok((plan, out))
}

/// A project package (一项一档) as asked: the project's stopped sessions, and the project's own
/// files (`data/project.json`, `data/catalogue.json`, `data/catalogue.html`), made by the
/// archive above.
pub struct ProjectExportRequest<'a> {
    pub project_code: &'a str,
    /// The project's sessions, in archive order.
    pub session_ids: Vec<String>,
    /// Files of the project itself: (path inside the bag, bytes).
    pub project_files: Vec<(String, Vec<u8>)>,
    pub by: &'a audit::Actor,
    pub caller: Option<&'a Caller>,
    pub reason: &'a str,
    pub disk: Option<&'a DiskWatch>,
}

/// Where a session travels in a project package: `data/sessions/{id}/` holds what a session
/// package holds under `data/` (media, chain, checkpoints, destruction, witness-record, audit),
/// and `session-info.txt`, the session's identity as a session package's bag-info.txt says it.
pub fn project_session_prefix(session_id: &str) -> String {
    format!("data/sessions/{session_id}/")
}

/// The identity of a session inside a project package (`data/sessions/{id}/session-info.txt`):
/// the lines of a session package's bag-info.txt the verifier reads.
fn session_info(session: &index::SessionRow) -> String {
    format!(
        "Witness-Project-Code: {}\nWitness-Session-Id: {}\nWitness-Session-Code: {}\nWitness-Session-Kind: {}\nWitness-Room-Id: {}\nWitness-Room-Name: {}\nWitness-Session-Start: {}\nWitness-Session-Stop: {}\nWitness-Selection: {}\n",
        session.project_code,
        session.id,
        session.session_code,
        session.kind,
        session.room_id,
        one_line(&session.room_name),
        rfc3339(session.started_at_us),
        session.stopped_at_us.map(rfc3339).unwrap_or_default(),
        Selection::default().to_bag_info(),
    )
}

/// Every session of a project package, checked as a session export checks it: it exists, belongs
/// to the project, is stopped, and the caller may export it (`evidence::access`, refusals
/// audited). A project whose session still records is refused, naming it.
pub async fn authorize_project(
    pool: &Pool,
    req: &ProjectExportRequest<'_>,
) -> Result<Vec<index::SessionRow>, CoreError> {
    if let Some(disk) = req.disk {
        disk.admit_export(0)?;
    }
    if req.session_ids.is_empty() {
        return Err(CoreError::conflict(
            "project_has_no_sessions",
            format!(
                "project {} has no recorded session to export",
                req.project_code
            ),
        ));
    }
    let mut sessions = Vec::new();
    for id in &req.session_ids {
        let session = exportable(pool, id, req.reason).await?;
        if session.project_code != req.project_code {
            return Err(CoreError::invalid(
                "invalid_field",
                format!("session {id} is not of project {}", req.project_code),
            ));
        }
        MediaAccess {
            actor: req.by,
            caller: req.caller,
            read: Read::Export { derived_mp4: false },
            action: "export",
            session: &session,
            source: "",
            target: format!("{} in project package", session.id),
            reason: req.reason,
            supervision: false,
        }
        .check(pool)
        .await?;
        sessions.push(session);
    }
    Ok(sessions)
}

/// Plans a project package: every session under `data/sessions/{id}/` exactly as its own
/// package would carry it (each object checked against its chain entry as it is written), the
/// project's files,
/// and an audit extract of the project and its sessions (`data/audit/audit.jsonl`). Audited as
/// one `export` per session and one `project_export`; the same tag files and signed tag
/// manifest as a session package, `Witness-Package-Kind: project` in bag-info.txt.
pub async fn plan_project(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    req: ProjectExportRequest<'_>,
) -> Result<Plan, CoreError> {
    let sessions = authorize_project(pool, &req).await?;
    let package_id = uuid::Uuid::now_v7().to_string();
    let mut recordings = Vec::new();
    for s in &sessions {
        recordings.push(index::recordings(pool, &s.id).await?);
    }
    let mut chains = Vec::new();
    for r in &recordings {
        chains.push(read_chains(pool, r).await?);
    }
    let selection = Selection::default();
    let mut payload = Payload::default();
    for (session, chains) in sessions.iter().zip(&chains) {
        payload.prefix = project_session_prefix(&session.id);
        add_session_files(
            pool,
            store,
            signer,
            session,
            chains,
            &selection,
            &mut payload,
        )
        .await?;
        payload.add_bytes(
            "data/session-info.txt".into(),
            session_info(session).into_bytes(),
        );
        payload.prefix.clear();
    }
    for session in &sessions {
        audit::Event::new(req.by, "export")
            .session(&session.id, &session.project_code)
            .target(format!("{package_id} (project package)"))
            .reason(req.reason)
            .flagged(session.confidential)
            .append(pool)
            .await?;
    }
    audit::Event::new(req.by, "project_export")
        .project(req.project_code)
        .target(&package_id)
        .reason(req.reason)
        .flagged(sessions.iter().any(|s| s.confidential))
        .append(pool)
        .await?;
    for session in &sessions {
        payload.prefix = project_session_prefix(&session.id);
        add_audit_entries(pool, session, &mut payload).await?;
        payload.prefix.clear();
    }
    add_project_audit_extract(pool, req.project_code, &mut payload).await?;
    for (path, data) in req.project_files {
        payload.add_bytes(path, data);
    }
    let info = format!(
        "Source-Organization: Witness\nBagging-Date: {}\nPayload-Oxum: {}.{}\nWitness-Package-Kind: project\nWitness-Package-Id: {package_id}\nWitness-Project-Code: {}\nWitness-Project-Sessions: {}\nWitness-Exporter: {}\nWitness-Export-Reason: {}\nWitness-Exported-At: {}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        payload.bytes,
        payload.files.len(),
        req.project_code,
        sessions
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        one_line(&req.by.name()),
        one_line(req.reason),
        rfc3339(now_us()),
    );
    Ok(Plan::new(
        package_id,
        req.project_code.to_string(),
        format!("witness-{}-project", req.project_code),
        sessions.iter().map(|s| s.id.clone()).collect(),
        payload,
        info,
        PROJECT_README,
        Vec::new(),
        signer,
        None,
    ))
}

/// The audit entries of the project and of its sessions (every entry that names the project),
/// in chain order, read a page at a time.
async fn add_project_audit_extract(
    pool: &Pool,
    project_code: &str,
    payload: &mut Payload,
) -> Result<(), CoreError> {
    let mut out = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = audit::query(
            pool,
            &audit::Filter {
                project_code: Some(project_code.to_string()),
                after_seq,
                limit: 1000,
                ..audit::Filter::default()
            },
        )
        .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for a in &page {
            serde_json::to_writer(&mut out, a).map_err(|e| CoreError::Internal(e.to_string()))?;
            out.push(b'\n');
        }
    }
    payload.add_bytes("data/audit/audit.jsonl".into(), out);
    Ok(())
}

fn one_line(s: &str) -> String {
    crate::ledger::chain::one_line(s)
}

const README: &str = "证据包说明 / About this evidence package\n\
\n\
本包为 BagIt (RFC 8493) 格式，由 Witness 公共资源交易见证录像系统导出。\n\
data/media/ 下为原始存储的录像分段，逐字节未改动；data/chain/ 为各路录像的哈希链及服务器签名的会话清单；\n\
data/audit/ 为该会话的审计记录；data/witness-record/ 为见证记录（record.json 供核验，record.html 供打印）。bag-info.txt 的 Witness-Selection 说明本包包含哪些分段。\n\
\n\
This package is a BagIt bag (RFC 8493) exported by Witness. data/media/ holds the recorded\n\
segments exactly as stored; data/chain/ the hash chain of every source and the session manifest\n\
signed by the server; data/audit/ the audit entries of the session; data/witness-record/ the\n\
witness record (record.json, checked against the signed manifest; record.html, to print).\n\
Witness-Selection in\n\
bag-info.txt says which segments were selected; chains are always complete.\n\
\n\
手工核验 / Check by hand:\n\
  sha256sum -c manifest-sha256.txt        # every payload file is intact\n\
  sha256sum -c tagmanifest-sha256.txt     # the tag files are intact\n\
  (any SM3 tool, e.g. gmssl sm3, for manifest-sm3.txt)\n\
Then check the Ed25519 signature in tagmanifest-sha256.txt.sig (key id, colon, signature) over\n\
tagmanifest-sha256.txt with the key in server-public-key.txt, and compare that key's fingerprint\n\
(first 16 bytes of its SHA-256) with the one the trading centre publishes (GET /api/v1/keys).\n\
server-keys.txt lists the server's earlier keys, which sign sessions recorded before a rotation.\n\
With SM2 on, tagmanifest-sha256.txt.sm2.sig and data/chain/manifest.json.sm2.sig hold SM2\n\
signatures (SM3, ID 1234567812345678, r||s hex) by the SM2 key (130 hex digits) in server-keys.txt.\n\
启用国密时另有 SM2 签名（SM3 杂凑，用户标识 1234567812345678），公钥见 server-keys.txt。\n\
\n\
可信时间戳 / Trusted timestamp (RFC 3161), when data/chain/manifest.json.tsr is present:\n\
  openssl ts -verify -data data/chain/manifest.json -in data/chain/manifest.json.tsr -CAfile <TSA CA>\n\
prints \"Verification: OK\" when a timestamp authority certified, at the time it states, that the\n\
signed session manifest existed exactly as it is (openssl ts -reply -in … -text shows the time).\n\
时间戳令牌证明会话清单在令牌所载时间已按原样存在；<TSA CA> 为时间戳机构的 CA 证书。\n\
Each chain checkpoint signed while recording (data/checkpoints/<source>/<seq>.checkpoint.json)\n\
may have its own token beside it, checked the same way:\n\
  openssl ts -verify -data data/checkpoints/<source>/<seq>.checkpoint.json -in data/checkpoints/<source>/<seq>.checkpoint.json.tsr -CAfile <TSA CA>\n\
录制期间的链检查点（data/checkpoints/）各有时间戳令牌（.tsr）时，按同样方法核验。\n\
The chain format is documented in docs/chain-format.md of Witness.\n\
\n\
derived/（如有）中的 MP4 是由所选分段重新封装的便于播放的副本，不是证据；证据是 data/media/ 中的原始分段。\n\
derived/ (if present) holds playable MP4 copies remuxed from the selected segments for\n\
convenience. They are not evidence; the evidence is the original segments in data/media/.\n\
\n\
用核验工具 / With the verifier (offline, no server or database):\n\
  witness verify <this package> --public-key <published key>   (or --trust <file of fingerprints>)\n\
未经核对的密钥签名的包判为 UNTRUSTED KEY（退出码 4）/ signed by a key you did not give: UNTRUSTED KEY (exit 4)\n";

const PROJECT_README: &str = "项目证据包说明（一项一档）/ About this project evidence package\n\
\n\
本包为 BagIt (RFC 8493) 格式，由 Witness 导出，收录一个项目的全部见证录像会话。\n\
data/project.json 为项目登记、标段及其历史、场地预约及其历史；data/catalogue.json 与 catalogue.html 为卷内目录；\n\
data/audit/audit.jsonl 为该项目及其会话的审计记录摘录；data/sessions/<会话>/ 下为每个会话的证据，\n\
与单个会话证据包 data/ 下的内容相同（media、chain、checkpoints、witness-record、audit），另有 session-info.txt 说明会话身份。\n\
\n\
This package is a BagIt bag (RFC 8493) exported by Witness with every session of one project.\n\
data/project.json: the registration, sections and bookings with their history; data/catalogue.json\n\
and catalogue.html: the catalogue (卷内目录); data/audit/audit.jsonl: the audit entries of the\n\
project and its sessions; data/sessions/<session>/: each session as a session package holds it\n\
under data/, with session-info.txt naming the session.\n\
\n\
手工核验 / Check by hand:\n\
  sha256sum -c manifest-sha256.txt        # every payload file is intact\n\
  sha256sum -c tagmanifest-sha256.txt     # the tag files are intact\n\
Then check the Ed25519 signature in tagmanifest-sha256.txt.sig over tagmanifest-sha256.txt with the\n\
key in server-public-key.txt, and compare its fingerprint with the one the trading centre publishes.\n\
\n\
用核验工具 / With the verifier (offline, no server or database):\n\
  witness verify <this package> --public-key <published key>\n\
每个会话按单个会话证据包的方法核验，总结论取最差者 / every session is checked as a session package is; the verdict is the worst of theirs.\n";
