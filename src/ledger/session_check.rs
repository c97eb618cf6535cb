//! The checks of a session's evidence that hold wherever its bytes were read from: each chain's
//! hashes, links, genesis binding and tombstones, each segment against its entry, and the signed
//! session manifest against the chain heads (steps 1, 2, 3 and 5 of "Checking a session by hand"
//! in docs/chain-format.md). `verify` feeds them from the store and the database, and
//! `evidence::package` from a package's files; each words the findings in its own report.

use std::collections::BTreeSet;

use crate::ledger::chain::{self, Entry, LinkError};
use crate::ledger::keys;
use crate::ledger::manifest::{self, Manifest};

/// What the genesis entry of every chain of a session must name.
pub struct Binding<'a> {
    pub project_code: &'a str,
    pub session_id: &'a str,
    pub session_code: &'a str,
    pub room_id: &'a str,
}

/// The end of a chain as a manifest binds it: `seq` and entry hash.
pub type Head = (i64, String);

/// What one chain says about itself, before any of its media is read.
pub struct ChainFindings {
    /// The first entry where a hash, a link, the seq order or the genesis binding fails.
    pub links: Result<(), LinkError>,
    /// The media entries that tombstones lawfully account for (their objects are expected
    /// absent), or the first tombstone that does not hold.
    pub destroyed: Result<BTreeSet<i64>, String>,
    /// The head the manifest signed at stop binds ([`chain::signed_head`]).
    pub signed_head: Option<Head>,
}

/// Checks one chain (entries in `seq` order) of the session `binding` names.
pub fn check_chain(
    binding: &Binding<'_>,
    recording_id: &str,
    source: &str,
    entries: &[Entry],
) -> ChainFindings {
    let genesis = chain::genesis_detail(
        binding.project_code,
        binding.session_id,
        binding.session_code,
        binding.room_id,
        source,
    );
    ChainFindings {
        links: chain::check_links(recording_id, &genesis, entries),
        destroyed: chain::destroyed_entries(entries),
        signed_head: chain::signed_head(entries).map(|e| (e.seq, e.entry_hash.clone())),
    }
}

/// How a segment's bytes differ from its chain entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BytesMismatch {
    #[error("object has {found} bytes, chain says {expected} (sha256 mismatch)")]
    Length { found: u64, expected: i64 },
    #[error("sha256 mismatch: object {found}, chain {expected}")]
    Sha256 { found: String, expected: String },
}

/// A segment against its chain entry: the length first, then the SHA-256 (computed by `sha256`
/// only when the length matches, as hashing costs a read of every byte).
pub fn check_bytes(
    e: &Entry,
    len: u64,
    sha256: impl FnOnce() -> String,
) -> Result<(), BytesMismatch> {
    if len as i64 != e.bytes {
        return Err(BytesMismatch::Length {
            found: len,
            expected: e.bytes,
        });
    }
    let found = sha256();
    if found != e.sha256 {
        return Err(BytesMismatch::Sha256 {
            found,
            expected: e.sha256.clone(),
        });
    }
    Ok(())
}

/// Why a signed session manifest cannot be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    #[error("the signature does not verify with the server key")]
    BadSignature,
    #[error("signed, but not valid JSON of format witness-manifest/1")]
    Malformed,
}

/// The session manifest, once its detached Ed25519 signature verifies with one of `keys` (hex
/// public keys: the one its key id names, or for a signature without one, any), with that key.
/// The SM2 signature beside it, if any, is checked by the caller ([`manifest::verifying_key_of`]).
pub fn open_manifest(
    keys: &[String],
    body: &[u8],
    signature: &str,
) -> Result<(Manifest, String), ManifestProblem> {
    let Some(key) = manifest::verifying_key_of(keys::Algorithm::Ed25519, keys, body, signature)
    else {
        return Err(ManifestProblem::BadSignature);
    };
    let m = serde_json::from_slice(body).map_err(|_| ManifestProblem::Malformed)?;
    Ok((m, key.to_string()))
}

/// The head the manifest signed for each recording, in the order it lists them.
pub fn signed_heads(m: &Manifest) -> impl Iterator<Item = (String, Head)> + '_ {
    m.recordings
        .iter()
        .map(|h| (h.recording_id.clone(), (h.head_seq, h.head_hash.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::EntryKind;

    fn entry(seq: i64, kind: EntryKind, detail: &str, prev: &str) -> Entry {
        Entry {
            recording_id: "r".into(),
            seq,
            kind,
            object_key: String::new(),
            wall_start_us: 0,
            duration_us: 0,
            bytes: 3,
            sha256: "abc".into(),
            clock: "server".into(),
            detail: detail.into(),
            prev_hash: prev.into(),
            entry_hash: String::new(),
        }
        .seal()
    }

    const BINDING: Binding<'static> = Binding {
        project_code: "P",
        session_id: "S",
        session_code: "C",
        room_id: "R",
    };

    #[test]
    fn a_chain_is_checked_against_its_binding() {
        let genesis = chain::genesis_detail("P", "S", "C", "R", "cam1");
        let g = entry(0, EntryKind::Genesis, &genesis, chain::ZERO_HASH);
        let m = entry(1, EntryKind::Media, "", &g.entry_hash);
        let entries = vec![g, m.clone()];
        let ok = check_chain(&BINDING, "r", "cam1", &entries);
        assert_eq!(ok.links, Ok(()));
        assert_eq!(ok.destroyed, Ok(BTreeSet::new()));
        assert_eq!(ok.signed_head, Some((1, m.entry_hash)));
        let other = check_chain(&BINDING, "r", "cam2", &entries);
        assert!(matches!(
            other.links,
            Err(LinkError::GenesisBinding { seq: 0, .. })
        ));
    }

    #[test]
    fn bytes_are_checked_length_first() {
        let e = entry(1, EntryKind::Media, "", chain::ZERO_HASH);
        assert_eq!(check_bytes(&e, 3, || "abc".into()), Ok(()));
        let short = check_bytes(&e, 2, || unreachable!("not hashed"));
        assert_eq!(
            short.unwrap_err().to_string(),
            "object has 2 bytes, chain says 3 (sha256 mismatch)"
        );
        assert_eq!(
            check_bytes(&e, 3, || "abd".into()).unwrap_err().to_string(),
            "sha256 mismatch: object abd, chain abc"
        );
    }
}
