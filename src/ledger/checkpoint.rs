//! Chain checkpoints: while a session records, each chain writer signs its chain's head every
//! `[recording] checkpoint_seconds` and stores the signed checkpoint beside the segments, as
//! `{prefix}/{seq:08}.checkpoint.json`. Someone who later rewrites the chain in the database
//! (and recomputes every hash) cannot make the signed hash at that seq come out again: `finish`
//! and every resume compare before anything is signed, and every verifier compares too, so the
//! rewrite is TAMPERED instead of sealed. The session manifest lists each chain's checkpoints,
//! so one deleted after the stop is missed. (Audit-trail checkpoints are `audit::checkpoint`.)

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::ledger::chain::Entry;
use crate::ledger::keys::Algorithm;
use crate::ledger::manifest::{self, Signer};
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

/// Whether an object key under a recording's prefix is a checkpoint (not a segment).
pub fn is_checkpoint_key(key: &str) -> bool {
    key.ends_with(".checkpoint.json")
}

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

/// A chain writer's checkpointing: signs the head every `every` once it has moved.
pub struct Checkpointer {
    signer: Signer,
    session_id: String,
    source: String,
    every: Duration,
    last: Instant,
    last_seq: i64,
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
        }
    }

    /// After `head` entered the chain: when a checkpoint is due, signs one over it and stores it
    /// (create-only, in the background: a store that is slow or down delays no segment; a
    /// checkpoint that could not be stored is followed by the next one).
    pub fn after_commit(&mut self, store: &Store, prefix: &str, head: &Entry) {
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
        let store = store.clone();
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
                Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    tracing::warn!(%key, error = %e, "chain checkpoint not stored; the next one follows")
                }
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
