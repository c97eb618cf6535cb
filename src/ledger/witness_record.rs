//! The witness record (见证记录) of a session as evidence: its entries' canonical encoding and
//! hash chain, the record's hash (entries + signer + signing time) that the session manifest
//! binds, the check every verifier runs, and the SQL that reads it. Specified in
//! `docs/chain-format.md`, "Witness record". Who may write and sign is `sessions::witness_record`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Pool;
use crate::ledger::chain::ZERO_HASH;

const ENTRY_MAGIC: &str = "witness-record/1";
const RECORD_MAGIC: &str = "witness-record/1 record";

/// The longest entry text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

crate::text_enum! {
    /// What an entry records.
    pub enum EntryKind as "witness entry kind" {
        /// 备注: a remark.
        Remark = "remark",
        /// 异常: something out of the ordinary.
        Anomaly = "anomaly",
        /// 异议: an objection raised on the spot (at bid opening).
        Objection = "objection",
        /// 程序偏差: a deviation from the procedure.
        Deviation = "deviation",
        /// 设备故障: a device problem.
        DeviceProblem = "device_problem",
    }
}

impl EntryKind {
    /// The kind as the printable record names it.
    pub fn chinese(self) -> &'static str {
        match self {
            EntryKind::Remark => "备注",
            EntryKind::Anomaly => "异常情况",
            EntryKind::Objection => "现场异议",
            EntryKind::Deviation => "程序偏差",
            EntryKind::DeviceProblem => "设备故障",
        }
    }
}

/// One entry of a session's witness record, as stored and as it travels in a package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WitnessEntry {
    pub id: String,
    pub session_id: String,
    /// 1, 2, … per session, without holes.
    pub seq: i64,
    /// The moment of the session the entry is about (Unix µs).
    pub at_us: i64,
    pub kind: EntryKind,
    pub text: String,
    /// The id of the earlier entry of the same session this one corrects.
    pub corrects: Option<String>,
    /// The person who wrote it.
    pub author: String,
    /// When it was written (Unix µs).
    pub recorded_at_us: i64,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl WitnessEntry {
    /// The exact bytes that are hashed: one `name: value` line per field, fixed order, UTF-8;
    /// the free text as a JSON string, so a line break in it cannot forge a field.
    pub fn canonical(&self) -> String {
        format!(
            "{ENTRY_MAGIC}\nsession: {}\nseq: {}\nid: {}\nat_us: {}\nkind: {}\ntext: {}\ncorrects: {}\nauthor: {}\nrecorded_at_us: {}\nprev: {}\n",
            self.session_id,
            self.seq,
            self.id,
            self.at_us,
            self.kind.as_str(),
            serde_json::to_string(&self.text).expect("a string serializes"),
            self.corrects.as_deref().unwrap_or(""),
            self.author,
            self.recorded_at_us,
            self.prev_hash,
        )
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// Fills `entry_hash` from the other fields.
    pub fn seal(mut self) -> WitnessEntry {
        self.entry_hash = self.compute_hash();
        self
    }
}

/// The witness's signature of a record: who, when, over how many entries, and the record hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signature {
    pub signed_by: String,
    pub signed_at_us: i64,
    pub entries: i64,
    pub sha256: String,
}

/// What a session manifest binds of its witness record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    /// The record hash (`record_hash`).
    pub sha256: String,
    /// How many entries it has.
    pub entries: i64,
    /// The witness who signed it; `null` when the session was stopped with the record unsigned.
    pub signed_by: Option<String>,
    pub signed_at_us: Option<i64>,
}

/// The record hash: over the session, the number of entries, the last entry's hash, the signer
/// and the signing time (empty when unsigned).
pub fn record_hash(
    session_id: &str,
    entries: &[WitnessEntry],
    signed: Option<(&str, i64)>,
) -> String {
    let head = entries.last().map_or(ZERO_HASH, |e| e.entry_hash.as_str());
    let (by, at) = match signed {
        Some((by, at)) => (by.to_string(), at.to_string()),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "{RECORD_MAGIC}\nsession: {session_id}\nentries: {}\nhead: {head}\nsigned_by: {by}\nsigned_at_us: {at}\n",
        entries.len()
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The binding of a record as it stands.
pub fn binding(
    session_id: &str,
    entries: &[WitnessEntry],
    signature: Option<&Signature>,
) -> Binding {
    let signed = signature.map(|s| (s.signed_by.as_str(), s.signed_at_us));
    Binding {
        sha256: record_hash(session_id, entries, signed),
        entries: entries.len() as i64,
        signed_by: signature.map(|s| s.signed_by.clone()),
        signed_at_us: signature.map(|s| s.signed_at_us),
    }
}

/// Checks a record's entries (seqs 1.., links, hashes, each correction pointing at an earlier
/// entry of the same session), its signature row if any, and, when the manifest binds it, the
/// binding. `Ok(summary line)` or `Err(problems)`, each naming the entry.
pub fn check(
    session_id: &str,
    entries: &[WitnessEntry],
    signature: Option<&Signature>,
    bound: Option<&Binding>,
) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let mut prev = ZERO_HASH.to_string();
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let n = e.seq;
        if e.session_id != session_id {
            problems.push(format!(
                "witness entry {n}: belongs to session {}",
                e.session_id
            ));
        }
        if e.seq != i as i64 + 1 {
            problems.push(format!(
                "witness entry {n}: expected seq {} (entries removed or reordered)",
                i + 1
            ));
        }
        if e.prev_hash != prev {
            problems.push(format!(
                "witness entry {n}: does not link to the entry before it"
            ));
        }
        if e.compute_hash() != e.entry_hash {
            problems.push(format!(
                "witness entry {n}: does not match its hash (entry edited)"
            ));
        }
        if let Some(c) = &e.corrects
            && !seen.contains(&c.as_str())
        {
            problems.push(format!(
                "witness entry {n}: corrects {c}, which is not an earlier entry of the session"
            ));
        }
        seen.push(&e.id);
        prev = e.entry_hash.clone();
    }
    let hash = binding(session_id, entries, signature);
    if let Some(s) = signature
        && (s.sha256 != hash.sha256 || s.entries != entries.len() as i64)
    {
        problems.push(format!(
            "witness record: signed by {} over {} entries with SHA-256 {}, but the entries give {} and {}",
            s.signed_by,
            s.entries,
            s.sha256,
            entries.len(),
            hash.sha256
        ));
    }
    match bound {
        Some(b) if *b != hash => problems.push(format!(
            "witness record: the signed session manifest binds SHA-256 {} ({} entries, signed by {}), the record gives {} ({} entries, signed by {})",
            b.sha256,
            b.entries,
            b.signed_by.as_deref().unwrap_or("nobody"),
            hash.sha256,
            hash.entries,
            hash.signed_by.as_deref().unwrap_or("nobody"),
        )),
        None if !entries.is_empty() || signature.is_some() => problems.push(
            "witness record: the signed session manifest binds no witness record, yet there is one"
                .into(),
        ),
        _ => {}
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(summary(&hash))
}

/// `witness record: N entries, signed by X at T` (or `not signed`), SHA-256 named.
pub fn summary(b: &Binding) -> String {
    let signed = match (&b.signed_by, b.signed_at_us) {
        (Some(by), Some(at)) => format!("signed by {by} at {}", crate::time::rfc3339(at)),
        _ => "not signed".into(),
    };
    format!(
        "witness record: {} entries, {signed}, SHA-256 {}",
        b.entries, b.sha256
    )
}

pub const ENTRY_COLS: &str =
    "id, session_id, seq, at_us, kind, text, corrects, author, recorded_at, prev_hash, entry_hash";

pub fn entry_from(r: &AnyRow) -> Result<WitnessEntry, sqlx::Error> {
    Ok(WitnessEntry {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        seq: r.try_get("seq")?,
        at_us: r.try_get("at_us")?,
        kind: r.try_get("kind")?,
        text: r.try_get("text")?,
        corrects: r.try_get("corrects")?,
        author: r.try_get("author")?,
        recorded_at_us: r.try_get("recorded_at")?,
        prev_hash: r.try_get("prev_hash")?,
        entry_hash: r.try_get("entry_hash")?,
    })
}

/// The session's entries in order.
pub async fn entries(pool: &Pool, session_id: &str) -> Result<Vec<WitnessEntry>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLS} FROM witness_entries WHERE session_id = $1 ORDER BY seq"
    ))
    .bind(session_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from).collect()
}

/// The record's signature, when it is signed.
pub async fn signature(pool: &Pool, session_id: &str) -> Result<Option<Signature>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT signed_by, signed_at, entries, sha256 FROM witness_signatures WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Signature {
            signed_by: r.try_get("signed_by")?,
            signed_at_us: r.try_get("signed_at")?,
            entries: r.try_get("entries")?,
            sha256: r.try_get("sha256")?,
        })
    })
    .transpose()
}

/// Appends one entry through any executor (a transaction, when the head was read in it).
pub async fn insert_entry_in<'c, E>(ex: E, e: &WitnessEntry) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "INSERT INTO witness_entries ({ENTRY_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
    ))
    .bind(&e.id)
    .bind(&e.session_id)
    .bind(e.seq)
    .bind(e.at_us)
    .bind(e.kind)
    .bind(&e.text)
    .bind(&e.corrects)
    .bind(&e.author)
    .bind(e.recorded_at_us)
    .bind(&e.prev_hash)
    .bind(&e.entry_hash)
    .execute(ex)
    .await?;
    Ok(())
}

/// Records the signature through any executor.
pub async fn insert_signature<'c, E>(
    ex: E,
    session_id: &str,
    s: &Signature,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO witness_signatures (session_id, signed_by, signed_at, entries, sha256) VALUES ($1,$2,$3,$4,$5)",
    )
    .bind(session_id)
    .bind(&s.signed_by)
    .bind(s.signed_at_us)
    .bind(s.entries)
    .bind(&s.sha256)
    .execute(ex)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Vec<WitnessEntry> {
        let mut prev = ZERO_HASH.to_string();
        let mut out = Vec::new();
        for i in 0..n {
            let e = WitnessEntry {
                id: format!("e{}", i + 1),
                session_id: "s1".into(),
                seq: i as i64 + 1,
                at_us: 1_700_000_000_000_000 + i as i64,
                kind: EntryKind::Remark,
                text: format!("line {i}\nkind: objection"),
                corrects: (i > 0).then(|| "e1".to_string()),
                author: "zhang".into(),
                recorded_at_us: 1_700_000_000_000_100,
                prev_hash: prev.clone(),
                entry_hash: String::new(),
            }
            .seal();
            prev = e.entry_hash.clone();
            out.push(e);
        }
        out
    }

    #[test]
    fn canonical_encoding_is_stable() {
        // Pinned: a change here breaks every record ever signed.
        let e = &record(1)[0];
        assert_eq!(
            e.canonical(),
            "witness-record/1\nsession: s1\nseq: 1\nid: e1\nat_us: 1700000000000000\nkind: remark\ntext: \"line 0\\nkind: objection\"\ncorrects: \nauthor: zhang\nrecorded_at_us: 1700000000000100\nprev: 0000000000000000000000000000000000000000000000000000000000000000\n"
        );
    }

    #[test]
    fn intact_record_checks_and_each_break_is_named() {
        let r = record(3);
        let sig = Signature {
            signed_by: "zhang".into(),
            signed_at_us: 1_700_000_001_000_000,
            entries: 3,
            sha256: record_hash("s1", &r, Some(("zhang", 1_700_000_001_000_000))),
        };
        let b = binding("s1", &r, Some(&sig));
        let line = check("s1", &r, Some(&sig), Some(&b)).unwrap();
        assert!(line.starts_with("witness record: 3 entries, signed by zhang at "));
        let mut edited = r.clone();
        edited[1].text = "changed".into();
        let p = check("s1", &edited, Some(&sig), Some(&b)).unwrap_err();
        assert!(
            p[0].contains("witness entry 2: does not match its hash"),
            "{p:?}"
        );
        // Resealed: the link of the next entry and the bound hash still give it away.
        edited[1] = edited[1].clone().seal();
        let p = check("s1", &edited, Some(&sig), Some(&b)).unwrap_err();
        assert!(
            p.iter()
                .any(|p| p.contains("witness entry 3: does not link")),
            "{p:?}"
        );
        let p = check("s1", &r[..2], Some(&sig), Some(&b)).unwrap_err();
        assert!(
            p.iter()
                .any(|p| p.contains("signed session manifest binds")),
            "{p:?}"
        );
        // Unsigned, bound as such.
        let unsigned = binding("s1", &r, None);
        assert!(
            check("s1", &r, None, Some(&unsigned))
                .unwrap()
                .contains("not signed")
        );
        assert!(check("s1", &r, None, None).is_err());
        assert!(check("s1", &[], None, None).is_ok());
    }
}
