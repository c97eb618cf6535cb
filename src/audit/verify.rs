//! `witness verify --audit`: the whole audit chain from its first entry, and every signed
//! checkpoint against the entry it names.

use serde::Serialize;

use super::chain::{self, GENESIS_PREV};
use super::checkpoint::{self, Checkpoint};
use crate::db::Pool;
use crate::ledger::manifest::verify_hex;

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub intact: bool,
    pub verdict: String,
    pub entries: i64,
    pub head_seq: i64,
    pub head_hash: String,
    pub checkpoints: usize,
    /// Checkpoints with an RFC 3161 timestamp token that verifies (`[signing] tsa_url`).
    pub timestamped: usize,
    pub problems: Vec<String>,
}

/// Checks the trail against the server's keys (current and retired): a checkpoint signed by
/// any other key is a problem. A checkpoint's timestamp token must imprint its signed text (and
/// chain to `tsa_ca`, the configured TSA's CA bundle, when given).
pub async fn verify(
    pool: &Pool,
    keys: &[String],
    tsa_ca: Option<&crate::ledger::timestamp::CaBundle>,
) -> Result<AuditReport, sqlx::Error> {
    let mut problems = Vec::new();
    let checkpoints = checkpoint::all(pool).await?;
    let mut pending: std::collections::BTreeMap<i64, &Checkpoint> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    let (mut prev, mut next_seq, mut count) = (GENESIS_PREV.to_string(), 1i64, 0i64);
    loop {
        let page = super::page(pool, next_seq - 1, 5000).await?;
        if page.is_empty() {
            break;
        }
        if problems.is_empty()
            && let Some(p) = chain::first_break(&page, prev.clone(), next_seq)
        {
            problems.push(p);
        }
        for e in &page {
            if let Some(c) = pending.remove(&e.seq)
                && c.entry_hash != e.entry_hash
            {
                problems.push(format!(
                    "audit entry {}: differs from the checkpoint signed at {} (entries rewritten)",
                    e.seq,
                    crate::time::rfc3339(c.at_us)
                ));
            }
        }
        let last = page.last().expect("non-empty page");
        prev = last.entry_hash.clone();
        next_seq = last.seq + 1;
        count += page.len() as i64;
    }
    for c in pending.values() {
        problems.push(format!(
            "audit entry {}: signed in a checkpoint but missing (trail truncated)",
            c.seq
        ));
    }
    let mut timestamped = 0;
    for c in &checkpoints {
        let message = Checkpoint::message(c.seq, &c.entry_hash, c.at_us);
        use crate::ledger::tsa::{Subject, token_of};
        if let Some(t) = token_of(pool, Subject::AuditCheckpoint, &c.seq.to_string()).await? {
            match crate::ledger::timestamp::verify(&t.token, message.as_bytes(), tsa_ca) {
                Ok(_) => timestamped += 1,
                Err(e) => problems.push(format!(
                    "checkpoint at entry {}: timestamp token refused: {e}",
                    c.seq
                )),
            }
        }
        if !verify_hex(&c.public_key, message.as_bytes(), &c.signature) {
            problems.push(format!(
                "checkpoint at entry {}: signature does not verify",
                c.seq
            ));
        } else if !keys.iter().any(|k| c.public_key.eq_ignore_ascii_case(k)) {
            problems.push(format!(
                "checkpoint at entry {}: signed by key {}, not this server's",
                c.seq, c.public_key
            ));
        }
        // The SM2 signature, when SM2 signed too: the key must be an SM2 key of this server's
        // and the signature verify with it.
        match (&c.sm2_public_key, &c.sm2_signature) {
            (None, None) => {}
            (Some(pk), Some(sig))
                if crate::ledger::keys::algorithm(pk)
                    == Some(crate::ledger::keys::Algorithm::Sm2)
                    && verify_hex(pk, message.as_bytes(), sig) =>
            {
                if !keys.iter().any(|k| pk.eq_ignore_ascii_case(k)) {
                    problems.push(format!(
                        "checkpoint at entry {}: SM2 signature by key {pk}, not this server's",
                        c.seq
                    ));
                }
            }
            _ => problems.push(format!(
                "checkpoint at entry {}: SM2 signature does not verify",
                c.seq
            )),
        }
    }
    let intact = problems.is_empty();
    Ok(AuditReport {
        intact,
        verdict: if intact {
            format!(
                "audit trail intact: {count} entries, {} signed checkpoints, {timestamped} timestamped",
                checkpoints.len()
            )
        } else {
            format!("audit trail BROKEN: {}", problems[0])
        },
        entries: count,
        head_seq: next_seq - 1,
        head_hash: prev,
        checkpoints: checkpoints.len(),
        timestamped,
        problems,
    })
}
