//! The timestamp authority of `[signing] tsa_url`: asks it for a token over some bytes (HTTP
//! POST, `application/timestamp-query`), checks the reply ([`timestamp::accept`]: imprint, nonce,
//! signature, chain to `tsa_ca_file`) before anything is stored, and keeps what the alarm and
//! `/metrics` show: tokens still missing, and since when.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::SigningConfig;
use crate::ledger::timestamp::{self, CaBundle, Stamp};

/// The configured TSA, and the state of its tokens.
pub struct Timestamps {
    pub tsa: Option<Tsa>,
    pub retry: Duration,
    /// A token missing this long raises the alarm.
    pub alarm_after: Duration,
    /// Wakes the background job (a session just stopped, a checkpoint was made).
    pub wake: tokio::sync::Notify,
    /// Tokens asked for and not yet obtained, at the last round.
    pub pending: AtomicU64,
    /// Of them, missing for longer than `alarm_after`.
    pub overdue: AtomicU64,
    pub obtained_total: AtomicU64,
    pub failures_total: AtomicU64,
    /// The alarm in plain words while one is raised.
    alarm: Mutex<Option<String>>,
}

impl Timestamps {
    /// From `[signing]`: no TSA without `tsa_url`; the CA bundle read now, so that a wrong path
    /// stops the start rather than every token.
    pub fn from_config(c: &SigningConfig) -> Result<Timestamps, String> {
        let tsa = match &c.tsa_url {
            None => None,
            Some(url) => {
                let ca_file = c
                    .tsa_ca_file
                    .as_ref()
                    .ok_or("signing.tsa_url needs signing.tsa_ca_file")?;
                Some(Tsa {
                    url: url.clone(),
                    ca: CaBundle::load(ca_file)?,
                    policy: c.tsa_policy.clone(),
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .map_err(|e| e.to_string())?,
                })
            }
        };
        Ok(Timestamps {
            tsa,
            retry: Duration::from_secs_f64(c.tsa_retry_seconds),
            alarm_after: Duration::from_secs_f64(c.tsa_alarm_seconds),
            wake: tokio::sync::Notify::new(),
            pending: AtomicU64::new(0),
            overdue: AtomicU64::new(0),
            obtained_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            alarm: Mutex::new(None),
        })
    }

    /// No TSA configured.
    pub fn off() -> Timestamps {
        Timestamps::from_config(&SigningConfig::default()).expect("no TSA, nothing to read")
    }

    /// The alarm while tokens are missing beyond the bound.
    pub fn alarm(&self) -> Option<String> {
        self.alarm.lock().expect("alarm lock").clone()
    }

    /// Sets or clears the alarm; returns whether that changed it from raised to clear or back.
    pub fn set_alarm(&self, alarm: Option<String>) -> bool {
        let mut a = self.alarm.lock().expect("alarm lock");
        let changed = a.is_some() != alarm.is_some();
        *a = alarm;
        changed
    }

    pub fn render_metrics(&self) -> String {
        if self.tsa.is_none() {
            return String::new();
        }
        format!(
            "# HELP witness_tsa_alarm 1 while a timestamp token has been missing longer than [signing] tsa_alarm_seconds.\n# TYPE witness_tsa_alarm gauge\nwitness_tsa_alarm {}\n# HELP witness_tsa_pending Session manifests, audit checkpoints and chain checkpoints still waiting for their timestamp token.\n# TYPE witness_tsa_pending gauge\nwitness_tsa_pending {}\n# HELP witness_tsa_tokens_total Timestamp tokens obtained and stored.\n# TYPE witness_tsa_tokens_total counter\nwitness_tsa_tokens_total {}\n# HELP witness_tsa_failures_total Requests to the TSA that failed or whose reply was refused.\n# TYPE witness_tsa_failures_total counter\nwitness_tsa_failures_total {}\n",
            u8::from(self.alarm().is_some()),
            self.pending.load(Relaxed),
            self.obtained_total.load(Relaxed),
            self.failures_total.load(Relaxed),
        )
    }
}

/// A timestamp authority and the CA bundle its replies are checked against.
pub struct Tsa {
    pub url: String,
    pub ca: CaBundle,
    policy: Option<String>,
    client: reqwest::Client,
}

impl Tsa {
    /// A token over `data` (the TimeStampResp, DER), checked before it is returned.
    pub async fn stamp(&self, data: &[u8]) -> Result<(Vec<u8>, Stamp), String> {
        let req = timestamp::request(data, self.policy.as_deref())?;
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/timestamp-query")
            .header("Accept", "application/timestamp-reply")
            .body(req.der.clone())
            .send()
            .await
            .map_err(|e| format!("TSA {}: {e}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("TSA {}: HTTP {status}", self.url));
        }
        let reply = resp
            .bytes()
            .await
            .map_err(|e| format!("TSA {}: {e}", self.url))?
            .to_vec();
        let stamp = timestamp::accept(&req, &reply, data, &self.ca)
            .map_err(|e| format!("TSA {}: reply refused: {e}", self.url))?;
        Ok((reply, stamp))
    }
}

/// Where a manifest's (or a chain checkpoint's) token is stored: `{key}.tsr`.
pub fn token_key(manifest_key: &str) -> String {
    format!("{manifest_key}.tsr")
}

/// What a token is the token of: a session's manifest (subject: the session id), an audit
/// checkpoint (its seq), or a chain checkpoint (its object key; the token also lies beside it,
/// `{key}.tsr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Manifest,
    AuditCheckpoint,
    ChainCheckpoint,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Manifest => "manifest",
            Subject::AuditCheckpoint => "audit_checkpoint",
            Subject::ChainCheckpoint => "chain_checkpoint",
        }
    }
}

/// A stored token, as checked when it was stored.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub token: Vec<u8>,
    pub gen_time_us: i64,
    pub tsa: String,
}

/// Records `token` for (`kind`, `subject`); a row already there (another node was quicker) is
/// kept. Rows are only inserted (migration 0021).
pub async fn insert_token(
    pool: &crate::db::Pool,
    kind: Subject,
    subject: &str,
    token: &[u8],
    stamp: &Stamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timestamp_tokens (kind, subject, token, gen_time, tsa, stamped_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(subject)
    .bind(hex::encode(token))
    .bind(stamp.gen_time_us)
    .bind(&stamp.tsa)
    .bind(crate::time::now_us())
    .execute(pool)
    .await?;
    Ok(())
}

/// The token stored for (`kind`, `subject`), if any.
pub async fn token_of(
    pool: &crate::db::Pool,
    kind: Subject,
    subject: &str,
) -> Result<Option<StoredToken>, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT token, gen_time, tsa FROM timestamp_tokens WHERE kind = $1 AND subject = $2",
    )
    .bind(kind.as_str())
    .bind(subject)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(StoredToken {
            token: hex::decode(r.try_get::<String, _>("token")?).unwrap_or_default(),
            gen_time_us: r.try_get("gen_time")?,
            tsa: r.try_get("tsa")?,
        })
    })
    .transpose()
}

/// A stopped session whose manifest has no token yet.
#[derive(Debug, Clone)]
pub struct UnstampedManifest {
    pub session_id: String,
    pub manifest_key: String,
    pub stopped_at_us: i64,
}

/// Stopped sessions whose manifest has no token yet, the longest waiting first.
pub async fn unstamped_manifests(
    pool: &crate::db::Pool,
    limit: i64,
) -> Result<Vec<UnstampedManifest>, sqlx::Error> {
    use sqlx::Row;
    sqlx::query(
        "SELECT id, manifest_key, stopped_at FROM sessions s WHERE s.state = 'stopped' AND s.manifest_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM timestamp_tokens t WHERE t.kind = 'manifest' AND t.subject = s.id) ORDER BY s.stopped_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(UnstampedManifest {
            session_id: r.try_get("id")?,
            manifest_key: r.try_get("manifest_key")?,
            stopped_at_us: r.try_get::<Option<i64>, _>("stopped_at")?.unwrap_or(0),
        })
    })
    .collect()
}
