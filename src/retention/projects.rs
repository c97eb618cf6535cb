//! Projects as retention sees them: the business events that start their clocks (closed,
//! procurement ended), recorded once and audited, and a project's clocks and holds for those
//! who may see it.

use serde::Serialize;
use sqlx::Row;

use super::RetentionError;
use super::holds::{self, Hold};
use super::project_code::ProjectCode;
use super::scope;
use crate::audit;
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::time::now_us;

/// Business events of a project that start retention clocks; None while they have not happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectEvents {
    pub closed_at_us: Option<i64>,
    pub procurement_ended_at_us: Option<i64>,
}

pub async fn events(pool: &Pool, project_code: &str) -> Result<ProjectEvents, sqlx::Error> {
    let row =
        sqlx::query("SELECT closed_at, procurement_ended_at FROM projects WHERE project_code = $1")
            .bind(project_code)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some(r) => ProjectEvents {
            closed_at_us: r.try_get("closed_at")?,
            procurement_ended_at_us: r.try_get("procurement_ended_at")?,
        },
        None => ProjectEvents::default(),
    })
}

/// A date of an event: when, and the text it was given as (which the audit trail quotes).
#[derive(Debug, Clone, Copy)]
pub struct EventDate<'a> {
    pub at_us: i64,
    pub given: &'a str,
}

/// Records that a project closed or its procurement ended (at least one of them; each at most
/// once: the first date stands, so that nobody can move a clock by re-sending an event).
/// Audited as `project_event`.
pub async fn record_events(
    pool: &Pool,
    actor: &audit::Actor,
    project: &ProjectCode,
    closed_at: Option<EventDate<'_>>,
    procurement_ended_at: Option<EventDate<'_>>,
) -> Result<ProjectEvents, RetentionError> {
    if closed_at.is_none() && procurement_ended_at.is_none() {
        return Err(RetentionError::invalid(
            "give closed_at, procurement_ended_at or both",
        ));
    }
    let code = project.as_str();
    let events = set_events(
        pool,
        code,
        closed_at.map(|d| d.at_us),
        procurement_ended_at.map(|d| d.at_us),
    )
    .await?;
    let given = |d: Option<EventDate<'_>>| d.map_or("-", |d| d.given).to_string();
    audit::Event::new(actor, "project_event")
        .about(None, Some(code))
        .target(code)
        .reason(format!(
            "closed_at {} procurement_ended_at {}",
            given(closed_at),
            given(procurement_ended_at)
        ))
        .append(pool)
        .await?;
    Ok(events)
}

/// Sets the dates not set yet, and returns the project's events as they now stand.
async fn set_events(
    pool: &Pool,
    project_code: &str,
    closed_at_us: Option<i64>,
    procurement_ended_at_us: Option<i64>,
) -> Result<ProjectEvents, sqlx::Error> {
    let now = now_us();
    // Two single statements rather than a read-then-write transaction: under SQLite's WAL a
    // read lock upgraded to a write lock can fail at once while another writer is busy.
    sqlx::query(
        "INSERT INTO projects (project_code, updated_at) VALUES ($1, $2) ON CONFLICT (project_code) DO NOTHING",
    )
    .bind(project_code)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE projects SET closed_at = COALESCE(closed_at, $1), procurement_ended_at = COALESCE(procurement_ended_at, $2), updated_at = $3 WHERE project_code = $4",
    )
    .bind(closed_at_us)
    .bind(procurement_ended_at_us)
    .bind(now)
    .bind(project_code)
    .execute(pool)
    .await?;
    events(pool, project_code).await
}

/// A project's clocks and its active holds.
#[derive(Debug, Clone)]
pub struct Project {
    pub events: ProjectEvents,
    pub holds: Vec<Hold>,
}

/// A project's clocks and active holds, for a caller whose scope sees it (else `out_of_scope`).
pub async fn view(
    pool: &Pool,
    scope: &Scope,
    project: &ProjectCode,
) -> Result<Project, RetentionError> {
    scope::check_project(pool, scope, project.as_str()).await?;
    Ok(Project {
        events: events(pool, project.as_str()).await?,
        holds: holds::on_project(pool, project.as_str()).await?,
    })
}
