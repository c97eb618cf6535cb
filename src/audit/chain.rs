//! The audit chain's canonical form (`witness-audit/1`): the exact text hashed for each entry.
//! Like a recording's chain, every entry carries the hash of the one before it, so an entry
//! edited, inserted or removed breaks every link after it.

use sha2::{Digest, Sha256};

use super::AuditEntry;

pub const MAGIC: &str = "witness-audit/1";
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Values are kept on one line so that no field can forge another.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl AuditEntry {
    pub fn canonical(&self) -> String {
        format!(
            "{MAGIC}\nseq: {}\nid: {}\nat_us: {}\nactor: {}\nrole: {}\naddress: {}\naction: {}\nsession: {}\nproject: {}\ntarget: {}\nreason: {}\noutcome: {}\nflagged: {}\nprev: {}\n",
            self.seq,
            self.id,
            self.at_us,
            one_line(&self.actor),
            one_line(&self.actor_role),
            one_line(&self.address),
            one_line(&self.action),
            one_line(self.session_id.as_deref().unwrap_or("")),
            one_line(self.project_code.as_deref().unwrap_or("")),
            one_line(&self.target),
            one_line(&self.reason),
            one_line(&self.outcome),
            u8::from(self.flagged),
            self.prev_hash,
        )
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

/// The first break in a run of entries that should link one to the next from `prev`.
pub fn first_break(entries: &[AuditEntry], mut prev: String, mut seq: i64) -> Option<String> {
    for e in entries {
        if e.seq != seq {
            return Some(format!(
                "audit entry {}: expected sequence number {seq} (entries missing or inserted)",
                e.seq
            ));
        }
        if e.prev_hash != prev {
            return Some(format!(
                "audit entry {}: does not link to entry {} (entry removed or reordered)",
                e.seq,
                e.seq - 1
            ));
        }
        if e.compute_hash() != e.entry_hash {
            return Some(format!(
                "audit entry {}: content does not match its hash (entry edited)",
                e.seq
            ));
        }
        prev = e.entry_hash.clone();
        seq += 1;
    }
    None
}
