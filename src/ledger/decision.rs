//! Destruction decision records: what warrants a tombstone. When an approved destruction is
//! carried out, the server writes, for each session, the decision as it stands — who proposed,
//! who approved and why, under which rule, which entries of which chain go — signs it, and
//! stores it beside the session manifest as `{project}/{session}/destruction-{request}.json`
//! (`.sig`, `.sm2.sig` beside it). Each tombstone names the record's SHA-256. A verifier
//! accepts a tombstone only with a record that verifies with the server's key, names two
//! approvers other than the proposer, and lists every entry the tombstone says went: a
//! tombstone slipped into the database by hand makes nothing read as lawfully destroyed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ledger::chain::Entry;
use crate::ledger::keys::Algorithm;
use crate::ledger::manifest;

pub const FORMAT: &str = "witness-destruction-decision/1";

/// One approver's decision, as the destruction request recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub role: String,
    pub decision: String,
    pub reason: String,
    pub at: String,
}

/// The entries of one chain that the decision lets go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doomed {
    pub recording_id: String,
    pub source: String,
    pub seqs: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub format: String,
    pub request_id: String,
    pub session_id: String,
    pub project_code: String,
    pub rule_id: String,
    pub policy_version: String,
    pub basis: String,
    pub appraisal_committee: String,
    pub appraisal_conclusion: String,
    pub appraisal_reference: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub approvals: Vec<Approval>,
    pub executed_by: String,
    pub executed_at: String,
    pub recordings: Vec<Doomed>,
}

/// Where a session's decision record for `request_id` is stored.
pub fn object_key(project_code: &str, session_id: &str, request_id: &str) -> String {
    format!("{project_code}/{session_id}/destruction-{request_id}.json")
}

/// The SHA-256 (hex) a tombstone names its record by.
pub fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The record a tombstone names (`request: …` and `decision: …` of its detail).
pub fn named_by(tombstone: &Entry) -> Option<(String, String)> {
    let field = |name: &str| {
        tombstone
            .detail
            .split("; ")
            .find_map(|part| part.strip_prefix(name))
            .map(str::to_string)
    };
    Some((field("request: ")?, field("decision: ")?))
}

/// A tombstone of session `session_id` against the record it names (`body`, signed by
/// `signature`, and `sm2_signature` when there is one), checked with `keys`: signed by the
/// server, its digest the one the tombstone names, this session's, approved by two people
/// other than the proposer, and listing every entry the tombstone destroyed (`destroyed`).
pub fn check(
    tombstone: &Entry,
    destroyed: &[i64],
    session_id: &str,
    body: &[u8],
    signature: &str,
    sm2_signature: Option<&str>,
    keys: &[String],
) -> Result<DecisionRecord, String> {
    let seq = tombstone.seq;
    let Some((request, named)) = named_by(tombstone) else {
        return Err(format!(
            "seq {seq}: tombstone names no signed destruction decision"
        ));
    };
    if digest(body) != named {
        return Err(format!(
            "seq {seq}: destruction decision for request {request} is not the one the tombstone names (edited or replaced)"
        ));
    }
    if manifest::verifying_key_of(Algorithm::Ed25519, keys, body, signature.trim()).is_none() {
        return Err(format!(
            "seq {seq}: destruction decision for request {request} is not signed by the server's key"
        ));
    }
    if let Some(sm2) = sm2_signature
        && manifest::verifying_key_of(Algorithm::Sm2, keys, body, sm2.trim()).is_none()
    {
        return Err(format!(
            "seq {seq}: destruction decision for request {request}: SM2 signature does not verify"
        ));
    }
    let r: DecisionRecord = serde_json::from_slice(body)
        .map_err(|e| format!("seq {seq}: destruction decision is malformed ({e})"))?;
    if r.format != FORMAT || r.request_id != request || r.session_id != session_id {
        return Err(format!(
            "seq {seq}: destruction decision belongs to another request or session"
        ));
    }
    let mut approvers: Vec<&str> = r
        .approvals
        .iter()
        .filter(|a| a.decision == "approve" && a.approver != r.proposed_by)
        .map(|a| a.approver.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    if approvers.len() < 2 {
        return Err(format!(
            "seq {seq}: destruction decision for request {request} lacks two approvers other than the proposer"
        ));
    }
    let listed = r
        .recordings
        .iter()
        .find(|d| d.recording_id == tombstone.recording_id)
        .map_or(&[][..], |d| d.seqs.as_slice());
    if let Some(s) = destroyed.iter().find(|s| !listed.contains(s)) {
        return Err(format!(
            "seq {seq}: tombstone destroys seq {s}, which its destruction decision does not list"
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::{self, EntryKind, ZERO_HASH};
    use crate::ledger::manifest::Signer;

    fn record() -> DecisionRecord {
        let approval = |who: &str| Approval {
            approver: who.into(),
            role: "archive_clerk".into(),
            decision: "approve".into(),
            reason: "expired".into(),
            at: "2026-01-01T00:00:00Z".into(),
        };
        DecisionRecord {
            format: FORMAT.into(),
            request_id: "req1".into(),
            session_id: "S".into(),
            project_code: "P".into(),
            rule_id: "default".into(),
            policy_version: "1".into(),
            basis: "law 1".into(),
            appraisal_committee: "c".into(),
            appraisal_conclusion: "destroy".into(),
            appraisal_reference: "ref".into(),
            proposed_by: "a".into(),
            proposed_at: "2026-01-01T00:00:00Z".into(),
            approvals: vec![approval("b"), approval("c")],
            executed_by: "a".into(),
            executed_at: "2026-01-02T00:00:00Z".into(),
            recordings: vec![Doomed {
                recording_id: "r".into(),
                source: "cam1".into(),
                seqs: vec![1, 2],
            }],
        }
    }

    fn tombstone(detail: String) -> Entry {
        Entry {
            recording_id: "r".into(),
            seq: 3,
            kind: EntryKind::Tombstone,
            object_key: String::new(),
            wall_start_us: 0,
            duration_us: 0,
            bytes: 0,
            sha256: String::new(),
            clock: "server".into(),
            detail,
            prev_hash: ZERO_HASH.into(),
            entry_hash: String::new(),
        }
        .seal()
    }

    #[test]
    fn a_tombstone_holds_only_with_its_signed_decision() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let keys = signer.all_public_keys();
        let body = serde_json::to_vec_pretty(&record()).unwrap();
        let sig = signer.sign_hex(&body);
        let d = digest(&body);
        let t = tombstone(chain::tombstone_detail(
            &[1, 2],
            "req1",
            "default",
            &d,
            &["b".into(), "c".into()],
        ));
        assert_eq!(named_by(&t), Some(("req1".into(), d.clone())));
        assert!(check(&t, &[1, 2], "S", &body, &sig, None, &keys).is_ok());

        let err = |r: Result<DecisionRecord, String>| r.unwrap_err();
        assert!(err(check(&t, &[1, 2], "other", &body, &sig, None, &keys)).contains("another"));
        assert!(
            err(check(&t, &[1, 2, 4], "S", &body, &sig, None, &keys)).contains("does not list")
        );
        // Unsigned, or signed by someone else.
        let other = tempfile::tempdir().unwrap();
        let stranger = Signer::load_or_create(other.path()).unwrap();
        let theirs = stranger.sign_hex(&body);
        assert!(err(check(&t, &[1, 2], "S", &body, &theirs, None, &keys)).contains("not signed"));
        // Edited after signing.
        let mut edited = record();
        edited.approvals.pop();
        let edited = serde_json::to_vec_pretty(&edited).unwrap();
        assert!(
            err(check(
                &t,
                &[1, 2],
                "S",
                &edited,
                &signer.sign_hex(&edited),
                None,
                &keys
            ))
            .contains("not the one")
        );
        // One approver (or the proposer approving) is not two.
        let mut alone = record();
        alone.approvals[1].approver = "a".into();
        let alone = serde_json::to_vec_pretty(&alone).unwrap();
        let t2 = tombstone(chain::tombstone_detail(
            &[1, 2],
            "req1",
            "default",
            &digest(&alone),
            &[],
        ));
        assert!(
            err(check(
                &t2,
                &[1, 2],
                "S",
                &alone,
                &signer.sign_hex(&alone),
                None,
                &keys
            ))
            .contains("two approvers")
        );
        // A tombstone that names no decision at all.
        let bare = tombstone("destroyed: 1-2; request: req1; rule: default; approved by: b".into());
        assert!(err(check(&bare, &[1, 2], "S", &body, &sig, None, &keys)).contains("names no"));
    }
}
