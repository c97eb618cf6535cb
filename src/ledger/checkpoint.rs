//! Chain checkpoints: while a session records, each chain writer signs its chain's head every
//! `[recording] checkpoint_seconds` and stores the signed checkpoint beside the segments, as
//! `{prefix}/{seq:08}.checkpoint.json`. Someone who later rewrites the chain in the database
//! (and recomputes every hash) cannot make the signed hash at that seq come out again: `finish`
//! and every resume compare before anything is signed, and every verifier compares too, so the
//! rewrite is TAMPERED instead of sealed. The session manifest lists each chain's checkpoints,
//! so one deleted after the stop is missed. (Audit-trail checkpoints are `audit::checkpoint`.)
//!
//! Each checkpoint stored is also listed in SQL (`chain_checkpoints`, insert-only, migration
//! 0022) with the SHA-256 of its bytes; with `[signing] tsa_url` the timestamp job
//! (`sessions::timestamps`) gets an RFC 3161 token over exactly those bytes and stores it beside
//! the checkpoint, `{seq:08}.checkpoint.json.tsr`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::db::Pool;
use crate::ledger::chain::Entry;
use crate::ledger::keys::Algorithm;
use crate::ledger::manifest::{self, Signer};
use crate::ledger::timestamp::{self, CaBundle};
use crate::ledger::tsa::Timestamps;
use crate::store::Store;

pub const FORMAT: &str = "witness-chain-checkpoint/1";

/// What a checkpoint attests: this recording's chain had `entry_hash` at `seq` at `at_us`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: String,
    pub session_id: String,
    pub recording_id: String,
    pub source: String,
    pub seq: i64,
    pub entry_hash: String,
    pub at_us: i64,
}

/// A checkpoint as stored: its fields, the Ed25519 signature (`{key_id}:{hex}`) over
/// [`Checkpoint::message`], and the SM2 one when SM2 signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_signature: Option<String>,
}

impl Checkpoint {
    /// The signed text: one field per line, so that no two checkpoints share it.
    pub fn message(&self) -> String {
        format!(
            "{FORMAT}\nsession: {}\nrecording: {}\nsource: {}\nseq: {}\nhash: {}\nat_us: {}\n",
            self.session_id, self.recording_id, self.source, self.seq, self.entry_hash, self.at_us
        )
    }

    pub fn sign(self, signer: &Signer) -> SignedCheckpoint {
        let message = self.message();
        SignedCheckpoint {
            signature: signer.sign_hex(message.as_bytes()),
            sm2_signature: signer.sign_sm2_hex(message.as_bytes()),
            checkpoint: self,
        }
    }
}

/// The object key of the checkpoint at `seq` of the recording under `prefix`.
pub fn object_key(prefix: &str, seq: i64) -> String {
    format!("{prefix}/{seq:08}.checkpoint.json")
}

/// Whether an object key under a recording's prefix is a checkpoint (not a segment, nor its
/// token).
pub fn is_checkpoint_key(key: &str) -> bool {
    key.ends_with(".checkpoint.json")
}

/// Whether an object key is a checkpoint's RFC 3161 timestamp token,
/// `{seq:08}.checkpoint.json.tsr`.
pub fn is_token_key(key: &str) -> bool {
    key.strip_suffix(".tsr").is_some_and(is_checkpoint_key)
}

/// Whether an object under a recording's prefix belongs to a checkpoint (the checkpoint or its
/// timestamp token): stored beside the segments, named by no chain entry.
pub fn is_checkpoint_object(key: &str) -> bool {
    is_checkpoint_key(key) || is_token_key(key)
}

/// Where a checkpoint's timestamp token is stored: `{checkpoint key}.tsr`.
pub fn token_key(checkpoint_key: &str) -> String {
    format!("{checkpoint_key}.tsr")
}

/// The checkpoint a token key stamps (`….checkpoint.json.tsr` → `….checkpoint.json`).
pub fn stamped_key(token_key: &str) -> Option<&str> {
    token_key
        .strip_suffix(".tsr")
        .filter(|k| is_checkpoint_key(k))
}

/// The seq in the name of a checkpoint or of its token (`00000042.checkpoint.json…` → 42).
pub fn seq_of_key(key: &str) -> Option<i64> {
    key.rsplit('/').next()?.split('.').next()?.parse().ok()
}

/// What a token beside a checkpoint is refused for when the checkpoint is not there.
pub const ORPHAN_TOKEN: &str =
    "timestamp token of a checkpoint that is not there (checkpoint deleted after it was stamped)";

/// A stored checkpoint's bytes, opened: parsed, of this format, its signature (and its SM2
/// signature, when it has one) verified with one of `keys`. Fails with the problem in words.
pub fn open(bytes: &[u8], keys: &[String]) -> Result<Checkpoint, String> {
    let s: SignedCheckpoint = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a signed chain checkpoint ({e})"))?;
    if s.checkpoint.format != FORMAT {
        return Err(format!(
            "unknown checkpoint format {:?}",
            s.checkpoint.format
        ));
    }
    let message = s.checkpoint.message();
    if manifest::verifying_key_of(Algorithm::Ed25519, keys, message.as_bytes(), &s.signature)
        .is_none()
    {
        return Err(
            "checkpoint signature does not verify with the server's keys (forged or edited)".into(),
        );
    }
    if let Some(sm2) = &s.sm2_signature
        && manifest::verifying_key_of(Algorithm::Sm2, keys, message.as_bytes(), sm2).is_none()
    {
        return Err("checkpoint SM2 signature does not verify (forged or edited)".into());
    }
    Ok(s.checkpoint)
}

/// A checkpoint against the chain it names: the entry at its seq must be there with the hash
/// it signed. Fails with the problem in words.
pub fn check(cp: &Checkpoint, recording_id: &str, entries: &[Entry]) -> Result<(), String> {
    if cp.recording_id != recording_id {
        return Err(format!(
            "checkpoint at seq {} belongs to recording {}, not {recording_id}",
            cp.seq, cp.recording_id
        ));
    }
    let signed_at = crate::time::rfc3339(cp.at_us);
    match entries.iter().find(|e| e.seq == cp.seq) {
        Some(e) if e.entry_hash == cp.entry_hash => Ok(()),
        Some(e) => Err(format!(
            "checkpoint signed at {signed_at} says seq {} had hash {}; the chain has {} (chain rewritten after it was signed)",
            cp.seq, cp.entry_hash, e.entry_hash
        )),
        None => Err(format!(
            "checkpoint signed at {signed_at} names seq {}, which the chain no longer has (chain truncated)",
            cp.seq
        )),
    }
}

/// One checkpoint object found in the store, opened or not.
pub struct Found {
    pub key: String,
    pub seq: Option<i64>,
    pub checkpoint: Result<Checkpoint, String>,
}

/// Every checkpoint stored under a recording's prefix, in seq order, each opened with `keys`.
pub async fn load(store: &Store, prefix: &str, keys: &[String]) -> Result<Vec<Found>, String> {
    let dir = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| format!("cannot list checkpoints: {e}"))?;
    let mut found = Vec::new();
    for o in objects {
        let key = o.location.to_string();
        if !is_checkpoint_key(&key) {
            continue;
        }
        let checkpoint = match store.get(&o.location).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => open(&b, keys),
                Err(e) => Err(format!("checkpoint unreadable: {e}")),
            },
            Err(e) => Err(format!("checkpoint unreadable: {e}")),
        };
        let seq = checkpoint.as_ref().ok().map(|c| c.seq);
        found.push(Found {
            key,
            seq,
            checkpoint,
        });
    }
    found.sort_by_key(|f| (f.seq, f.key.clone()));
    Ok(found)
}

/// A checkpoint's timestamp token found in the store, checked against the checkpoint's bytes.
pub struct FoundToken {
    pub key: String,
    pub seq: Option<i64>,
    /// What the token says, or why it is refused (an untrusted TSA included).
    pub stamp: Result<timestamp::Stamp, String>,
}

/// Every checkpoint timestamp token stored under a recording's prefix, in seq order, each
/// checked ([`timestamp::verify`]) against the exact bytes of the checkpoint beside it, and its
/// TSA against `ca` when given.
pub async fn load_tokens(
    store: &Store,
    prefix: &str,
    ca: Option<&CaBundle>,
) -> Result<Vec<FoundToken>, String> {
    let dir = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| format!("cannot list checkpoint tokens: {e}"))?;
    let read = |k: object_store::path::Path| async move {
        store.get(&k).await?.bytes().await.map(|b| b.to_vec())
    };
    let mut found = Vec::new();
    for o in objects {
        let key = o.location.to_string();
        let Some(stamped) = stamped_key(&key) else {
            continue;
        };
        let stamp = match (
            read(o.location.clone()).await,
            read(object_store::path::Path::from(stamped)).await,
        ) {
            (Ok(token), Ok(body)) => {
                timestamp::verify(&token, &body, ca).map_err(|e| e.to_string())
            }
            (_, Err(object_store::Error::NotFound { .. })) => Err(ORPHAN_TOKEN.to_string()),
            (Err(e), _) | (_, Err(e)) => Err(format!("unreadable: {e}")),
        };
        found.push(FoundToken {
            seq: seq_of_key(&key),
            key,
            stamp,
        });
    }
    found.sort_by_key(|f| (f.seq, f.key.clone()));
    Ok(found)
}

/// Every problem of a recording's checkpoints: each one found must open and hold against the
/// chain, and each seq in `listed` (what the signed manifest lists, once there is one) must
/// have been found. Empty when they all hold. Each problem names its seq when it has one.
pub fn problems(
    recording_id: &str,
    entries: &[Entry],
    found: &[Found],
    listed: &[i64],
) -> Vec<(Option<i64>, String)> {
    let mut out = Vec::new();
    for f in found {
        match &f.checkpoint {
            Ok(cp) => {
                if let Err(p) = check(cp, recording_id, entries) {
                    out.push((Some(cp.seq), p));
                }
            }
            Err(p) => out.push((None, format!("{}: {p}", f.key))),
        }
    }
    for seq in listed {
        if !found.iter().any(|f| f.seq == Some(*seq)) {
            out.push((
                Some(*seq),
                format!(
                    "checkpoint at seq {seq}, listed in the signed manifest, is missing (deleted)"
                ),
            ));
        }
    }
    out
}

/// The seqs of the checkpoints that hold (for the manifest to list).
pub fn seqs(found: &[Found]) -> Vec<i64> {
    let mut s: Vec<i64> = found.iter().filter_map(|f| f.seq).collect();
    s.dedup();
    s
}

/// A checkpoint as listed in SQL (`chain_checkpoints`): stored, with the SHA-256 of its bytes.
#[derive(Debug, Clone)]
pub struct Listed {
    pub recording_id: String,
    pub seq: i64,
    pub object_key: String,
    pub session_id: String,
    pub at_us: i64,
    pub sha256: String,
}

/// Lists a stored checkpoint; a row already there is kept. Rows are only inserted (0022).
pub async fn record(pool: &Pool, c: &Listed) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO chain_checkpoints (recording_id, seq, object_key, session_id, at_us, sha256) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&c.recording_id)
    .bind(c.seq)
    .bind(&c.object_key)
    .bind(&c.session_id)
    .bind(c.at_us)
    .bind(&c.sha256)
    .execute(pool)
    .await?;
    Ok(())
}

/// Listed checkpoints that have no timestamp token yet, the longest waiting first.
pub async fn unstamped(pool: &Pool, limit: i64) -> Result<Vec<Listed>, sqlx::Error> {
    use sqlx::Row;
    sqlx::query(
        "SELECT recording_id, seq, object_key, session_id, at_us, sha256 FROM chain_checkpoints c WHERE NOT EXISTS (SELECT 1 FROM timestamp_tokens t WHERE t.kind = 'chain_checkpoint' AND t.subject = c.object_key) ORDER BY c.at_us, c.object_key LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Listed {
            recording_id: r.try_get("recording_id")?,
            seq: r.try_get("seq")?,
            object_key: r.try_get("object_key")?,
            session_id: r.try_get("session_id")?,
            at_us: r.try_get("at_us")?,
            sha256: r.try_get("sha256")?,
        })
    })
    .collect()
}

/// A chain writer's checkpointing: signs the head every `every` once it has moved.
pub struct Checkpointer {
    signer: Signer,
    session_id: String,
    source: String,
    every: Duration,
    last: Instant,
    last_seq: i64,
    /// Woken once a checkpoint is stored and listed (the timestamp job, with a TSA).
    timestamps: Option<Arc<Timestamps>>,
}

impl Checkpointer {
    pub fn new(signer: Signer, session_id: &str, source: &str, every: Duration) -> Checkpointer {
        Checkpointer {
            signer,
            session_id: session_id.into(),
            source: source.into(),
            every,
            last: Instant::now(),
            last_seq: -1,
            timestamps: None,
        }
    }

    /// Wakes the timestamp job whenever a checkpoint has been stored and listed.
    pub fn waking(mut self, timestamps: Arc<Timestamps>) -> Checkpointer {
        self.timestamps = Some(timestamps);
        self
    }

    /// After `head` entered the chain: when a checkpoint is due, signs one over it and stores it
    /// (create-only, in the background: a store that is slow or down delays no segment; a
    /// checkpoint that could not be stored is followed by the next one), then lists it in
    /// `chain_checkpoints` for the timestamp job.
    pub fn after_commit(&mut self, store: &Store, pool: &Pool, prefix: &str, head: &Entry) {
        if self.last.elapsed() < self.every || head.seq <= self.last_seq {
            return;
        }
        self.last = Instant::now();
        self.last_seq = head.seq;
        let signed = Checkpoint {
            format: FORMAT.into(),
            session_id: self.session_id.clone(),
            recording_id: head.recording_id.clone(),
            source: self.source.clone(),
            seq: head.seq,
            entry_hash: head.entry_hash.clone(),
            at_us: crate::time::now_us(),
        }
        .sign(&self.signer);
        let Ok(body) = serde_json::to_vec_pretty(&signed) else {
            return;
        };
        let key = object_key(prefix, head.seq);
        let listed = Listed {
            recording_id: signed.checkpoint.recording_id.clone(),
            seq: signed.checkpoint.seq,
            object_key: key.clone(),
            session_id: signed.checkpoint.session_id.clone(),
            at_us: signed.checkpoint.at_us,
            sha256: hex::encode(sha2::Sha256::digest(&body)),
        };
        let (store, pool, wake) = (store.clone(), pool.clone(), self.timestamps.clone());
        tokio::spawn(async move {
            let path = object_store::path::Path::from(key.as_str());
            let put = store
                .put_opts(
                    &path,
                    PutPayload::from(body.clone()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            let put = match put {
                // The store cannot create only-if-absent: a plain put (the key is this seq's).
                Err(object_store::Error::NotImplemented) => {
                    store.put(&path, PutPayload::from(body)).await.map(|_| ())
                }
                other => other.map(|_| ()),
            };
            match put {
                Ok(()) => {}
                // Not these bytes (another writer's, or an earlier try's): not listed as ours.
                Err(object_store::Error::AlreadyExists { .. }) => return,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "chain checkpoint not stored; the next one follows");
                    return;
                }
            }
            let mut backoff = Duration::from_millis(500);
            for attempt in 1..=3 {
                match record(&pool, &listed).await {
                    Ok(()) => break,
                    Err(e) if attempt == 3 => {
                        tracing::warn!(%key, error = %e, "chain checkpoint stored but not listed: it gets no timestamp token");
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
            if let Some(t) = wake {
                t.wake.notify_one();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::{EntryKind, ZERO_HASH};

    fn entry(seq: i64, prev: &str) -> Entry {
        Entry {
            recording_id: "r".into(),
            seq,
            kind: if seq == 0 {
                EntryKind::Genesis
            } else {
                EntryKind::Media
            },
            object_key: String::new(),
            wall_start_us: seq,
            duration_us: 1,
            bytes: 1,
            sha256: "00".into(),
            clock: "server".into(),
            detail: String::new(),
            prev_hash: prev.into(),
            entry_hash: String::new(),
        }
        .seal()
    }

    fn chain(n: i64) -> Vec<Entry> {
        let mut v: Vec<Entry> = vec![entry(0, ZERO_HASH)];
        for s in 1..n {
            let prev = v.last().unwrap().entry_hash.clone();
            v.push(entry(s, &prev));
        }
        v
    }

    fn cp(e: &Entry) -> Checkpoint {
        Checkpoint {
            format: FORMAT.into(),
            session_id: "S".into(),
            recording_id: "r".into(),
            source: "cam1".into(),
            seq: e.seq,
            entry_hash: e.entry_hash.clone(),
            at_us: 1,
        }
    }

    #[test]
    fn a_checkpoint_holds_until_the_chain_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let keys = signer.all_public_keys();
        let entries = chain(4);
        let signed = cp(&entries[2]).sign(&signer);
        let bytes = serde_json::to_vec(&signed).unwrap();
        let opened = open(&bytes, &keys).unwrap();
        assert_eq!(check(&opened, "r", &entries), Ok(()));

        // The insider's rewrite: seq 2 changed and every hash recomputed.
        let mut forged = chain(2);
        let mut e2 = entries[2].clone();
        e2.detail = "rewritten".into();
        e2.prev_hash = forged[1].entry_hash.clone();
        forged.push(e2.seal());
        let err = check(&opened, "r", &forged).unwrap_err();
        assert!(err.contains("chain rewritten"), "{err}");
        assert!(
            check(&opened, "r", &chain(2))
                .unwrap_err()
                .contains("truncated")
        );

        // A checkpoint edited to match the forgery no longer verifies.
        let mut edited = signed.clone();
        edited.checkpoint.entry_hash = forged[2].entry_hash.clone();
        let err = open(&serde_json::to_vec(&edited).unwrap(), &keys).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        // Nor does one signed by a key that is not the server's.
        let other = tempfile::tempdir().unwrap();
        let stranger = Signer::load_or_create(other.path()).unwrap();
        let theirs = serde_json::to_vec(&cp(&forged[2]).sign(&stranger)).unwrap();
        assert!(open(&theirs, &keys).is_err());
    }

    #[test]
    fn a_token_belongs_to_its_checkpoint() {
        let k = object_key("P/S/cam1", 42);
        assert!(is_checkpoint_key(&k) && !is_token_key(&k) && is_checkpoint_object(&k));
        let t = token_key(&k);
        assert_eq!(t, "P/S/cam1/00000042.checkpoint.json.tsr");
        assert!(is_token_key(&t) && !is_checkpoint_key(&t) && is_checkpoint_object(&t));
        assert_eq!(stamped_key(&t), Some(k.as_str()));
        assert_eq!((seq_of_key(&k), seq_of_key(&t)), (Some(42), Some(42)));
        for other in [
            "P/S/cam1/00000042.ts",
            "P/S/manifest.json.tsr",
            "P/S/cam1/00000042.ts.tsr",
        ] {
            assert!(!is_checkpoint_object(other), "{other}");
            assert_eq!(stamped_key(other), None, "{other}");
        }
    }

    #[test]
    fn listed_checkpoints_must_be_found() {
        let entries = chain(3);
        let found = vec![Found {
            key: "p/00000001.checkpoint.json".into(),
            seq: Some(1),
            checkpoint: Ok(cp(&entries[1])),
        }];
        assert!(problems("r", &entries, &found, &[1]).is_empty());
        let missing = problems("r", &entries, &found, &[1, 2]);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].1.contains("missing"), "{:?}", missing);
        assert_eq!(seqs(&found), vec![1]);
    }
}
