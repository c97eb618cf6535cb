//! Signed checkpoints of the audit chain's head, made periodically and at shutdown. Whoever
//! rewrites the trail and recomputes every hash still cannot produce the server's signature
//! over the head it had.

use sqlx::Row;

use crate::db::Pool;
use crate::ledger::manifest::Signer;
use crate::time::now_us;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub entry_hash: String,
    pub at_us: i64,
    pub public_key: String,
    pub signature: String,
    /// The SM2 key and signature over the same text, when SM2 signed too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm2_public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm2_signature: Option<String>,
}

impl Checkpoint {
    /// The signed text.
    pub fn message(seq: i64, entry_hash: &str, at_us: i64) -> String {
        format!("witness-audit-checkpoint/1\nseq: {seq}\nhash: {entry_hash}\nat_us: {at_us}\n")
    }
}

/// Signs the current head unless it is already signed. Returns the new checkpoint, if any.
pub async fn make(pool: &Pool, signer: &Signer) -> Result<Option<Checkpoint>, sqlx::Error> {
    let Some((seq, entry_hash)) = super::head(pool).await? else {
        return Ok(None);
    };
    let signed: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM audit_checkpoints WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await?;
    if signed.is_some() {
        return Ok(None);
    }
    let at_us = now_us();
    let message = Checkpoint::message(seq, &entry_hash, at_us);
    let c = Checkpoint {
        seq,
        signature: signer.sign_hex(message.as_bytes()),
        entry_hash,
        at_us,
        public_key: signer.public_key_hex(),
        sm2_public_key: signer.sm2_public_key_hex(),
        sm2_signature: signer.sign_sm2_hex(message.as_bytes()),
    };
    let inserted = sqlx::query(
        "INSERT INTO audit_checkpoints (seq, entry_hash, at, public_key, signature, sm2_public_key, sm2_signature) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(c.seq)
    .bind(&c.entry_hash)
    .bind(c.at_us)
    .bind(&c.public_key)
    .bind(&c.signature)
    .bind(&c.sm2_public_key)
    .bind(&c.sm2_signature)
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(Some(c)),
        // Another node signed the same head a moment ago.
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn all(pool: &Pool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, entry_hash, at, public_key, signature, sm2_public_key, sm2_signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Checkpoints with no timestamp token yet (`[signing] tsa_url`), oldest first.
pub async fn unstamped(pool: &Pool, limit: i64) -> Result<Vec<Checkpoint>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, entry_hash, at, public_key, signature, sm2_public_key, sm2_signature FROM audit_checkpoints c WHERE NOT EXISTS (SELECT 1 FROM timestamp_tokens t WHERE t.kind = 'audit_checkpoint' AND t.subject = CAST(c.seq AS TEXT)) ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(row)
    .collect()
}

fn row(r: &sqlx::any::AnyRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        seq: r.try_get("seq")?,
        entry_hash: r.try_get("entry_hash")?,
        at_us: r.try_get("at")?,
        public_key: r.try_get("public_key")?,
        signature: r.try_get("signature")?,
        sm2_public_key: r.try_get("sm2_public_key")?,
        sm2_signature: r.try_get("sm2_signature")?,
    })
}

/// Signs the head every `every` until the process ends.
pub fn spawn_periodic(pool: Pool, signer: Signer, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = make(&pool, &signer).await {
                tracing::warn!(error = %e, "audit checkpoint failed; will retry");
            }
        }
    });
}
