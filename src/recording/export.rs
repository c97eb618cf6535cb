//! Evidence packages: a session exported as a BagIt bag (RFC 8493) in a tar archive. The media
//! are the stored segment bytes, unchanged; beside them the full chains, the signed session
//! manifest, the session's audit entries, SHA-256 and SM3 manifests, a tag manifest signed with
//! the server key, and a README that says how to check it all by hand. `package` checks one
//! offline.

use std::io::Write;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sm3::Sm3;

use super::chain::{Entry, EntryKind};
use super::error::CoreError;
use super::index;
use super::manifest::{self, Signer};
use crate::audit;
use crate::db::{Pool, now_us, rfc3339};
use crate::store::Store;

/// The chain of one recording as it travels in a package: `data/chain/{source}.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PackagedChain {
    pub recording_id: String,
    pub source: String,
    pub room_id: String,
    pub template: String,
    pub entries: Vec<Entry>,
}

pub struct ExportRequest<'a> {
    pub session_id: &'a str,
    pub exporter: &'a str,
    pub reason: &'a str,
}

/// What was written, for the caller's report.
#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub package_id: String,
    pub files: usize,
    pub payload_bytes: u64,
}

/// Progress callback: bytes of media written so far, of the total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Writes the package of a session as a tar stream to `out`.
pub async fn export_session<W: Write>(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    req: ExportRequest<'_>,
    out: W,
    progress: Progress<'_>,
) -> Result<ExportSummary, CoreError> {
    let session =
        index::session(pool, req.session_id)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                what: "session",
                id: req.session_id.into(),
            })?;
    if session.state != "stopped" {
        return Err(CoreError::conflict(
            "session_not_stopped",
            format!(
                "session {} is {}; export it once it is stopped",
                session.id, session.state
            ),
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(CoreError::invalid(
            "reason_required",
            "an export needs a reason; it is recorded",
        ));
    }
    let package_id = uuid::Uuid::now_v7().to_string();
    let root = format!("witness-{}-{}", session.project_code, session.id);
    let mut tar = tar::Builder::new(out);
    let mut sha_lines = String::new();
    let mut sm3_lines = String::new();
    let mut payload_bytes: u64 = 0;
    let mut payload_files: u64 = 0;
    let add = |tar: &mut tar::Builder<W>,
               path: &str,
               data: &[u8],
               sha: &mut String,
               sm: &mut String|
     -> Result<(), CoreError> {
        append(tar, &format!("{root}/{path}"), data)?;
        sha.push_str(&format!("{}  {path}\n", hex::encode(Sha256::digest(data))));
        sm.push_str(&format!("{}  {path}\n", hex::encode(Sm3::digest(data))));
        Ok(())
    };

    let recordings = index::recordings(pool, &session.id).await?;
    let mut chains = Vec::new();
    let mut total: u64 = 0;
    for rec in &recordings {
        let entries = index::entries(pool, &rec.id).await?;
        total += entries.iter().map(|e| e.bytes as u64).sum::<u64>();
        chains.push((rec, entries));
    }
    for (rec, entries) in &chains {
        for e in entries.iter().filter(|e| e.kind == EntryKind::Media) {
            let key = object_store::path::Path::from(e.object_key.as_str());
            let data = store.get(&key).await?.bytes().await?;
            // Never package bytes the chain does not vouch for.
            if hex::encode(Sha256::digest(&data)) != e.sha256 {
                return Err(CoreError::conflict(
                    "store_tampered",
                    format!(
                        "object {} does not match its chain entry; run verify",
                        e.object_key
                    ),
                ));
            }
            let name = e.object_key.rsplit('/').next().unwrap_or_default();
            add(
                &mut tar,
                &format!("data/media/{}/{name}", rec.source_name),
                &data,
                &mut sha_lines,
                &mut sm3_lines,
            )?;
            payload_bytes += data.len() as u64;
            payload_files += 1;
            progress(payload_bytes, total);
        }
        let chain = PackagedChain {
            recording_id: rec.id.clone(),
            source: rec.source_name.clone(),
            room_id: session.room_id.clone(),
            template: rec.template.clone(),
            entries: entries.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&chain).map_err(|e| CoreError::Internal(e.to_string()))?;
        add(
            &mut tar,
            &format!("data/chain/{}.json", rec.source_name),
            &json,
            &mut sha_lines,
            &mut sm3_lines,
        )?;
        payload_bytes += json.len() as u64;
        payload_files += 1;
    }
    if let Some(key) = &session.manifest_key {
        for (k, name) in [
            (key.clone(), "manifest.json"),
            (manifest::signature_key(key), "manifest.json.sig"),
        ] {
            let data = store
                .get(&object_store::path::Path::from(k.as_str()))
                .await?
                .bytes()
                .await?;
            add(
                &mut tar,
                &format!("data/chain/{name}"),
                &data,
                &mut sha_lines,
                &mut sm3_lines,
            )?;
            payload_bytes += data.len() as u64;
            payload_files += 1;
        }
    }
    // The export is itself audited, and its own entry travels in the package.
    audit::append(
        pool,
        audit::NewEntry {
            actor: req.exporter,
            address: "local",
            action: "export",
            session_id: Some(&session.id),
            target: &package_id,
            reason: req.reason,
            outcome: "allowed",
        },
    )
    .await?;
    let mut audit_jsonl = Vec::new();
    for a in audit::for_session(pool, &session.id).await? {
        serde_json::to_writer(&mut audit_jsonl, &a)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        audit_jsonl.push(b'\n');
    }
    add(
        &mut tar,
        "data/audit/audit.jsonl",
        &audit_jsonl,
        &mut sha_lines,
        &mut sm3_lines,
    )?;
    payload_bytes += audit_jsonl.len() as u64;
    payload_files += 1;

    // Tag files.
    let bag_info = format!(
        "Source-Organization: Witness\nBagging-Date: {}\nPayload-Oxum: {payload_bytes}.{payload_files}\nWitness-Package-Id: {package_id}\nWitness-Project-Code: {}\nWitness-Session-Id: {}\nWitness-Session-Code: {}\nWitness-Session-Kind: {}\nWitness-Room-Id: {}\nWitness-Room-Name: {}\nWitness-Session-Start: {}\nWitness-Session-Stop: {}\nWitness-Exporter: {}\nWitness-Export-Reason: {}\nWitness-Exported-At: {}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        session.project_code,
        session.id,
        session.session_code,
        session.kind,
        session.room_id,
        one_line(&session.room_name),
        rfc3339(session.started_at_us),
        session.stopped_at_us.map(rfc3339).unwrap_or_default(),
        one_line(req.exporter),
        one_line(req.reason),
        rfc3339(now_us()),
    );
    let mut tag_lines = String::new();
    let tags: Vec<(&str, Vec<u8>)> = vec![
        (
            "bagit.txt",
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n".to_vec(),
        ),
        ("bag-info.txt", bag_info.into_bytes()),
        ("manifest-sha256.txt", sha_lines.into_bytes()),
        ("manifest-sm3.txt", sm3_lines.into_bytes()),
        (
            "server-public-key.txt",
            format!("{}\n", signer.public_key_hex()).into_bytes(),
        ),
        ("README.txt", README.as_bytes().to_vec()),
    ];
    for (name, data) in &tags {
        append(&mut tar, &format!("{root}/{name}"), data)?;
        tag_lines.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(data))));
    }
    append(
        &mut tar,
        &format!("{root}/tagmanifest-sha256.txt"),
        tag_lines.as_bytes(),
    )?;
    let signature = signer.sign_hex(tag_lines.as_bytes());
    append(
        &mut tar,
        &format!("{root}/tagmanifest-sha256.txt.sig"),
        format!("{signature}\n").as_bytes(),
    )?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| CoreError::Internal(format!("writing the package: {e}")))?;
    Ok(ExportSummary {
        package_id,
        files: payload_files as usize + tags.len() + 2,
        payload_bytes,
    })
}

fn one_line(s: &str) -> String {
    super::chain::one_line(s)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<(), CoreError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o444);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
        .map_err(|e| CoreError::Internal(format!("writing {path} into the package: {e}")))
}

const README: &str = "证据包说明 / About this evidence package\n\
\n\
本包为 BagIt (RFC 8493) 格式，由 Witness 公共资源交易见证录像系统导出。\n\
data/media/ 下为原始存储的录像分段，逐字节未改动；data/chain/ 为各路录像的哈希链及服务器签名的会话清单；\n\
data/audit/ 为该会话的审计记录。\n\
\n\
This package is a BagIt bag (RFC 8493) exported by Witness. data/media/ holds the recorded\n\
segments exactly as stored; data/chain/ the hash chain of every source and the session manifest\n\
signed by the server; data/audit/ the audit entries of the session.\n\
\n\
手工核验 / Check by hand:\n\
  sha256sum -c manifest-sha256.txt        # every payload file is intact\n\
  sha256sum -c tagmanifest-sha256.txt     # the tag files are intact\n\
  (gmssl sm3 or any SM3 tool for manifest-sm3.txt)\n\
Then check the Ed25519 signature in tagmanifest-sha256.txt.sig over tagmanifest-sha256.txt with\n\
the key in server-public-key.txt, and compare that key with the one the trading centre publishes\n\
(GET /api/v1/keys). The chain format is documented in docs/chain-format.md of Witness.\n\
\n\
用核验工具 / With the verifier (offline, no server or database):\n\
  witness verify <this package>\n";
