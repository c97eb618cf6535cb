//! The audit trail shared by every module: who did what, when, from where, with what outcome.
//! Append-only and hash-chained (`chain`): the application only inserts, the database refuses
//! UPDATE and DELETE (`guard`), signed checkpoints pin the head (`checkpoint`), and `verify`
//! re-checks it all. `api` serves it to discipline officers, filtered, as JSON or CSV.

pub mod actor;
pub mod chain;
pub mod checkpoint;
pub mod guard;
pub mod verify;

use sqlx::Row;

use crate::db::Pool;
use crate::time::now_us;

pub use actor::Actor;

/// One audited action, as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub id: String,
    pub at_us: i64,
    /// The user name, `user/token:<name>` for an API token, `cli`, `system`, `demo` or
    /// `anonymous`.
    pub actor: String,
    /// The actor's role when it acted (empty for system and anonymous actors).
    pub actor_role: String,
    pub address: String,
    /// Stable snake_case, e.g. `replay_start`, `login`, `room_start`.
    pub action: String,
    pub session_id: Option<String>,
    pub project_code: Option<String>,
    pub target: String,
    pub reason: String,
    /// `allowed`, `denied: …`, `failed: …` or an HTTP status for generic entries.
    pub outcome: String,
    /// Access to confidential material (评标), to be looked at by discipline officers.
    pub flagged: bool,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// How an audited action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done as asked.
    Allowed,
    /// Refused; the text says why (`denied: forbidden`).
    Denied(String),
    /// Tried and failed; the text says how (`failed: HTTP 409`).
    Failed(String),
    /// A check's result in its own words (`intact`, `recordable`).
    Result(String),
}

impl Outcome {
    /// The text the trail stores.
    pub fn text(&self) -> String {
        match self {
            Outcome::Allowed => "allowed".into(),
            Outcome::Denied(why) => format!("denied: {why}"),
            Outcome::Failed(how) => format!("failed: {how}"),
            Outcome::Result(r) => r.clone(),
        }
    }
}

/// One action about to enter the trail. Every module builds its entries with this:
/// `Event::new(&actor, "replay_start").session(id, project).reason(r).append(pool)`.
#[derive(Debug, Clone)]
#[must_use = "an audit event is written only by `append`"]
pub struct Event<'a> {
    actor: &'a Actor,
    action: &'a str,
    session_id: Option<&'a str>,
    project_code: Option<&'a str>,
    target: String,
    reason: String,
    outcome: Outcome,
    flagged: bool,
}

impl<'a> Event<'a> {
    /// `action` is stable snake_case, e.g. `replay_start`, `login`, `room_start`.
    pub fn new(actor: &'a Actor, action: &'a str) -> Event<'a> {
        Event {
            actor,
            action,
            session_id: None,
            project_code: None,
            target: String::new(),
            reason: String::new(),
            outcome: Outcome::Allowed,
            flagged: false,
        }
    }

    /// The session the action concerns, and its project.
    pub fn session(mut self, id: &'a str, project_code: &'a str) -> Self {
        self.session_id = Some(id);
        self.project_code = Some(project_code);
        self
    }

    /// The session and project the action concerns, where known.
    pub fn about(mut self, session_id: Option<&'a str>, project_code: Option<&'a str>) -> Self {
        self.session_id = session_id;
        self.project_code = project_code;
        self
    }

    /// A project the action concerns without a session.
    pub fn project(mut self, code: &'a str) -> Self {
        self.project_code = Some(code);
        self
    }

    /// What was acted on (a room, a user, a hold …).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Why, in the actor's words (one line).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Access to confidential material (评标), for discipline officers to look at.
    pub fn flagged(mut self, flagged: bool) -> Self {
        self.flagged = flagged;
        self
    }

    /// Appends the entry at the head of the chain and returns it.
    pub async fn append(self, pool: &Pool) -> Result<AuditEntry, sqlx::Error> {
        append(pool, self).await
    }
}

/// One writer per process at a time; across processes the unique sequence number decides.
static APPEND: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const COLUMNS: &str = "seq, id, at, actor, actor_role, address, action, session_id, project_code, target, reason, outcome, flagged, prev_hash, entry_hash";

async fn append(pool: &Pool, e: Event<'_>) -> Result<AuditEntry, sqlx::Error> {
    let _one_writer = APPEND.lock().await;
    let mut attempt = 0;
    loop {
        let (seq, prev_hash) = head(pool)
            .await?
            .map(|(s, h)| (s + 1, h))
            .unwrap_or((1, chain::GENESIS_PREV.to_string()));
        let mut entry = AuditEntry {
            seq,
            id: uuid::Uuid::now_v7().to_string(),
            at_us: now_us(),
            actor: e.actor.name(),
            actor_role: e.actor.role.into(),
            address: e.actor.address.clone(),
            action: e.action.into(),
            session_id: e.session_id.map(Into::into),
            project_code: e.project_code.map(Into::into),
            target: e.target.clone(),
            reason: e.reason.replace(['\n', '\r'], " "),
            outcome: e.outcome.text(),
            flagged: e.flagged,
            prev_hash,
            entry_hash: String::new(),
        };
        entry.entry_hash = entry.compute_hash();
        match insert(pool, &entry).await {
            Ok(()) => return Ok(entry),
            // Another node appended the same sequence number first: link to its entry instead.
            Err(err)
                if attempt < 50
                    && err
                        .as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn insert(pool: &Pool, e: &AuditEntry) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
    ))
    .bind(e.seq)
    .bind(&e.id)
    .bind(e.at_us)
    .bind(&e.actor)
    .bind(&e.actor_role)
    .bind(&e.address)
    .bind(&e.action)
    .bind(&e.session_id)
    .bind(&e.project_code)
    .bind(&e.target)
    .bind(&e.reason)
    .bind(&e.outcome)
    .bind(i64::from(e.flagged))
    .bind(&e.prev_hash)
    .bind(&e.entry_hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// The last entry's sequence number and hash.
pub async fn head(pool: &Pool) -> Result<Option<(i64, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT seq, entry_hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get("seq")?, r.try_get("entry_hash")?)))
        .transpose()
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        at_us: r.try_get("at")?,
        actor: r.try_get("actor")?,
        actor_role: r.try_get("actor_role")?,
        address: r.try_get("address")?,
        action: r.try_get("action")?,
        session_id: r.try_get("session_id")?,
        project_code: r.try_get("project_code")?,
        target: r.try_get("target")?,
        reason: r.try_get("reason")?,
        outcome: r.try_get("outcome")?,
        flagged: r.try_get::<i64, _>("flagged")? != 0,
        prev_hash: r.try_get("prev_hash")?,
        entry_hash: r.try_get("entry_hash")?,
    })
}

pub async fn for_session(pool: &Pool, session_id: &str) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE session_id = $1 ORDER BY seq"
    ))
    .bind(session_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Filters of `GET /api/v1/audit`; all optional, combined with AND.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub actor: Option<String>,
    pub session_id: Option<String>,
    pub project_code: Option<String>,
    pub action: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub flagged: Option<bool>,
    /// Entries after this sequence number (paging).
    pub after_seq: i64,
    pub limit: i64,
}

pub async fn query(pool: &Pool, f: &Filter) -> Result<Vec<AuditEntry>, sqlx::Error> {
    // Every value is bound; only the fixed clauses are formatted in.
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1");
    let mut n = 1;
    let mut clause = |sql: &mut String, text: &str| {
        n += 1;
        sql.push_str(&text.replace('?', &format!("${n}")));
    };
    if f.actor.is_some() {
        clause(&mut sql, " AND actor = ?");
    }
    if f.session_id.is_some() {
        clause(&mut sql, " AND session_id = ?");
    }
    if f.project_code.is_some() {
        clause(&mut sql, " AND project_code = ?");
    }
    if f.action.is_some() {
        clause(&mut sql, " AND action = ?");
    }
    if f.from_us.is_some() {
        clause(&mut sql, " AND at >= ?");
    }
    if f.to_us.is_some() {
        clause(&mut sql, " AND at < ?");
    }
    if f.flagged.is_some() {
        clause(&mut sql, " AND flagged = ?");
    }
    clause(&mut sql, " ORDER BY seq LIMIT ?");
    let mut q = sqlx::query(&sql).bind(f.after_seq);
    for v in [&f.actor, &f.session_id, &f.project_code, &f.action]
        .into_iter()
        .flatten()
    {
        q = q.bind(v.clone());
    }
    for v in [f.from_us, f.to_us].into_iter().flatten() {
        q = q.bind(v);
    }
    if let Some(flagged) = f.flagged {
        q = q.bind(i64::from(flagged));
    }
    q.bind(f.limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Every entry in chain order, a page at a time (for verification and CSV export).
pub async fn page(pool: &Pool, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, sqlx::Error> {
    query(
        pool,
        &Filter {
            after_seq,
            limit,
            ..Filter::default()
        },
    )
    .await
}

/// Prepares the trail at start-up: entries written before the chain existed are chained (in
/// the order they were written), then the database guards go in.
pub async fn open(pool: &Pool) -> Result<(), sqlx::Error> {
    let legacy = sqlx::query(
        "SELECT id, at, actor, address, action, session_id, target, reason, outcome FROM audit_log WHERE seq IS NULL ORDER BY at, id",
    )
    .fetch_all(pool)
    .await?;
    if !legacy.is_empty() {
        let _one_writer = APPEND.lock().await;
        let (mut seq, mut prev) = head(pool)
            .await?
            .unwrap_or((0, chain::GENESIS_PREV.to_string()));
        for r in &legacy {
            seq += 1;
            let mut e = AuditEntry {
                seq,
                id: r.try_get("id")?,
                at_us: r.try_get("at")?,
                actor: r.try_get("actor")?,
                actor_role: String::new(),
                address: r.try_get("address")?,
                action: r.try_get("action")?,
                session_id: r.try_get("session_id")?,
                project_code: None,
                target: r.try_get("target")?,
                reason: r.try_get("reason")?,
                outcome: r.try_get("outcome")?,
                flagged: false,
                prev_hash: prev.clone(),
                entry_hash: String::new(),
            };
            e.entry_hash = e.compute_hash();
            sqlx::query(
                "UPDATE audit_log SET seq = $1, prev_hash = $2, entry_hash = $3 WHERE id = $4 AND seq IS NULL",
            )
            .bind(e.seq)
            .bind(&e.prev_hash)
            .bind(&e.entry_hash)
            .bind(&e.id)
            .execute(pool)
            .await?;
            prev = e.entry_hash;
        }
        tracing::info!(
            entries = legacy.len(),
            "audit entries from before the chain were chained"
        );
    }
    guard::install(pool).await
}
