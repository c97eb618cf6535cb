//! Retention: how long each record is kept and why (`policy`: the rules in
//! `storage-policies/`), the business events that start the clocks (`projects`: closed,
//! procurement ended), legal holds that freeze deletion (`holds`, `complaints`), what a
//! regulator may see of it (`scope`), and lawful destruction (`destruction`). Each operation
//! here is whole: validation, the rule, the SQL and its audit entry, whoever calls it.
//!
//! Expiry alone deletes nothing: it only makes a record a *candidate*; lawful destruction
//! (appraisal, two approvers, a permanent register) is a separate, later step.

pub mod candidates;
pub mod complaints;
pub mod destruction;
mod error;
pub mod fixity;
pub mod holds;
pub mod policy;
pub mod project_code;
pub mod projects;
pub mod scope;
pub mod worm_sync;

use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::audit;
use crate::db::Pool;
use crate::ledger::index::SessionRow;
use crate::time::{now_us, rfc3339};
pub use error::RetentionError;
use policy::{ClockStart, Policies, Rule, record_class_of_session};

/// A session's retention, as the API shows it.
#[derive(Debug, Serialize)]
pub struct RetentionView {
    pub record_class: String,
    pub rule: Rule,
    /// The policy version recorded with the session, and the one in force now.
    pub policy_version: String,
    pub current_policy_version: String,
    /// The longest minimum ever in force for this session (never shortened).
    pub retention_months: i64,
    pub clock_starts: ClockStart,
    pub clock_started_at: Option<String>,
    /// None while the clock has not started (e.g. the project is still open): never expires.
    pub retain_until: Option<String>,
    /// `open` (clock not started), `retained`, `expired` (a candidate for disposition).
    pub state: String,
    pub disposition: String,
    pub holds: Vec<holds::Hold>,
    /// Expired and not held: may be proposed for appraisal.
    pub disposable: bool,
}

fn add_months(us: i64, months: i64) -> Option<i64> {
    let t = DateTime::<Utc>::from_timestamp_micros(us)?;
    t.checked_add_months(Months::new(u32::try_from(months).ok()?))
        .map(|t| t.timestamp_micros())
}

/// Records the rule and policy version in force on a session, and raises (never lowers) its
/// retention to the current rule's minimum.
pub async fn stamp(pool: &Pool, policies: &Policies, s: &SessionRow) -> Result<(), sqlx::Error> {
    stamp_where(
        pool,
        policies,
        s.kind.as_str(),
        s.category.as_str(),
        Some(&s.id),
    )
    .await
}

/// The stamp of every session of one kind and category (the rule depends on nothing else), or
/// of one session of them.
async fn stamp_where(
    pool: &Pool,
    policies: &Policies,
    kind: &str,
    category: &str,
    session_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    let rule = policies.governing(record_class_of_session(kind), category);
    sqlx::query(
        "UPDATE sessions SET policy_version = CASE WHEN policy_version = '' THEN $1 ELSE policy_version END, retention_rule = CASE WHEN retention_rule = '' THEN $2 ELSE retention_rule END, retention_months = CASE WHEN retention_months < $3 THEN $3 ELSE retention_months END WHERE kind = $4 AND category = $5 AND ($6 = '' OR id = $6)",
    )
    .bind(&policies.version)
    .bind(&rule.id)
    .bind(i64::from(rule.minimum_months))
    .bind(kind)
    .bind(category)
    .bind(session_id.unwrap_or(""))
    .execute(pool)
    .await?;
    Ok(())
}

/// At start-up: stamp every session with the rules now in force (raising, never lowering), and
/// audit a change of the policy set.
pub async fn open(pool: &Pool, policies: &Policies) -> Result<(), sqlx::Error> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT version FROM policy_versions ORDER BY loaded_at DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    if previous.as_deref() != Some(policies.version.as_str()) {
        let rules = serde_json::to_string(&policies.rules).unwrap_or_default();
        sqlx::query(
            "INSERT INTO policy_versions (id, version, loaded_at, rules) VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&policies.version)
        .bind(now_us())
        .bind(&rules)
        .execute(pool)
        .await?;
        let ids: Vec<&str> = policies.rules.iter().map(|r| r.id.as_str()).collect();
        audit::Event::new(&audit::Actor::local("system"), "policy_change")
            .target(&policies.version)
            .reason(format!(
                "{} → {} ({}): {}",
                previous.as_deref().unwrap_or("none"),
                policies.version,
                policies.jurisdiction,
                ids.join(", ")
            ))
            .append(pool)
            .await?;
        tracing::info!(version = %policies.version, "storage policies changed; recorded and audited");
    }
    // One statement per kind and category, not per session: start-up stays short however many
    // sessions are stored.
    let pairs = sqlx::query("SELECT DISTINCT kind, category FROM sessions")
        .fetch_all(pool)
        .await?;
    for r in pairs {
        let (kind, category): (String, String) = (r.try_get("kind")?, r.try_get("category")?);
        stamp_where(pool, policies, &kind, &category, None).await?;
    }
    Ok(())
}

/// When a session's clock started and the retain-until it gives: `months` after the rule's
/// event.
fn computed_until(
    s: &SessionRow,
    rule: &Rule,
    months: i64,
    events: &projects::ProjectEvents,
) -> (Option<i64>, Option<i64>) {
    let started = match rule.clock_starts {
        ClockStart::SessionEnd | ClockStart::RecordCreated => s.stopped_at_us,
        ClockStart::ProjectClosed => events.closed_at_us,
        ClockStart::ProcurementEnd => events.procurement_ended_at_us.or(events.closed_at_us),
    };
    (started, started.and_then(|t| add_months(t, months)))
}

/// Remembers, for every session of a project, the retain-until its clocks give now when it is
/// later than any computed before (`sessions.retain_until_max`), so that no later correction
/// of a date, or change of rule, brings it earlier. Called before and after each change of a
/// project's dates.
pub async fn remember_retain_until(
    pool: &Pool,
    policies: &Policies,
    project_code: &str,
) -> Result<(), sqlx::Error> {
    let filter = crate::ledger::index::SessionFilter {
        project_code: Some(project_code.to_string()),
        ..Default::default()
    };
    let sessions = crate::ledger::index::list_sessions(pool, &filter, i64::MAX).await?;
    if sessions.is_empty() {
        return Ok(());
    }
    let events = projects::events(pool, project_code).await?;
    for s in sessions {
        let rule = policies.governing(
            record_class_of_session(s.kind.as_str()),
            s.category.as_str(),
        );
        let months: i64 = sqlx::query_scalar("SELECT retention_months FROM sessions WHERE id = $1")
            .bind(&s.id)
            .fetch_one(pool)
            .await?;
        let months = months.max(i64::from(rule.minimum_months));
        if let (_, Some(until)) = computed_until(&s, rule, months, &events) {
            sqlx::query(
                "UPDATE sessions SET retain_until_max = $1 WHERE id = $2 AND (retain_until_max IS NULL OR retain_until_max < $1)",
            )
            .bind(until)
            .bind(&s.id)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

pub async fn view(
    pool: &Pool,
    policies: &Policies,
    s: &SessionRow,
) -> Result<RetentionView, sqlx::Error> {
    let class = record_class_of_session(s.kind.as_str());
    let current = policies.governing(class, s.category.as_str()).clone();
    let row = sqlx::query(
        "SELECT policy_version, retention_rule, retention_months, retain_until_max FROM sessions WHERE id = $1",
    )
    .bind(&s.id)
    .fetch_one(pool)
    .await?;
    let recorded_version: String = row.try_get("policy_version")?;
    let months: i64 = row
        .try_get::<i64, _>("retention_months")?
        .max(i64::from(current.minimum_months));
    let events = projects::events(pool, &s.project_code).await?;
    let (started, computed) = computed_until(s, &current, months, &events);
    // Never earlier than the latest ever computed (`remember_retain_until`); None (the clock has
    // not started) keeps the record for good, which is later than any date.
    let remembered: Option<i64> = row.try_get("retain_until_max")?;
    let until = computed.map(|c| remembered.map_or(c, |r| r.max(c)));
    let holds = holds::active_for_session(pool, s).await?;
    let state = match until {
        None => "open",
        Some(u) if u > now_us() => "retained",
        Some(_) => "expired",
    };
    Ok(RetentionView {
        record_class: class.into(),
        policy_version: recorded_version,
        current_policy_version: policies.version.clone(),
        retention_months: months,
        clock_starts: current.clock_starts,
        clock_started_at: started.map(rfc3339),
        retain_until: until.map(rfc3339),
        state: state.into(),
        disposition: current.disposition.clone(),
        disposable: state == "expired" && holds.is_empty(),
        holds,
        rule: current,
    })
}
