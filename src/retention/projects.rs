//! Projects as retention sees them: the business events that start their clocks (closed,
//! procurement ended), and a project's clocks, event history and holds for those who may see it.
//!
//! Clocks nobody can backdate: an event date may not precede the project's last recording (the
//! latest stop, or the start of a live session, of any of its sessions) nor lie in the future
//! (beyond `CLOCK_TOLERANCE_US`). The first report of an event is in force at once; a different
//! date later is a *correction*, kept pending until a second person approves it. The history
//! (`project_events`) is append-only: reports, corrections and decisions are new rows, never
//! updates. Every step is audited with who acted and the old and new dates.

use serde::Serialize;
use sqlx::Row;

use super::RetentionError;
use super::destruction::Decision;
use super::error::text;
use super::holds::{self, Hold};
use super::policy::Policies;
use super::project_code::ProjectCode;
use super::scope;
use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::time::{now_us, rfc3339};

/// How far ahead of the server's clock a reported date may be (clocks of two systems differ).
pub const CLOCK_TOLERANCE_US: i64 = 5 * 60 * 1_000_000;

crate::text_enum! {
    /// A business event of a project that starts retention clocks.
    pub enum EventKind as "project event" {
        Closed = "closed",
        ProcurementEnded = "procurement_ended",
    }
}

impl EventKind {
    /// The request field that carries it.
    pub fn field(self) -> &'static str {
        match self {
            EventKind::Closed => "closed_at",
            EventKind::ProcurementEnded => "procurement_ended_at",
        }
    }
}

crate::text_enum! {
    /// One row of a project's event history.
    pub enum Step as "event step" {
        /// The first date of an event: in force at once.
        Report = "report",
        /// A different date for an event already reported: in force once approved.
        Correction = "correction",
        Approve = "approve",
        Reject = "reject",
    }
}

crate::text_enum! {
    /// Where a correction stands.
    pub enum CorrectionState as "correction state" {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
    }
}

/// Business events of a project that start retention clocks; None while they have not happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectEvents {
    pub closed_at_us: Option<i64>,
    pub procurement_ended_at_us: Option<i64>,
}

impl ProjectEvents {
    fn get(&self, kind: EventKind) -> Option<i64> {
        match kind {
            EventKind::Closed => self.closed_at_us,
            EventKind::ProcurementEnded => self.procurement_ended_at_us,
        }
    }

    fn set(&mut self, kind: EventKind, at: i64) {
        match kind {
            EventKind::Closed => self.closed_at_us = Some(at),
            EventKind::ProcurementEnded => self.procurement_ended_at_us = Some(at),
        }
    }
}

/// One row of the history, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: String,
    pub event: EventKind,
    pub step: Step,
    /// The date reported or proposed (report, correction).
    pub at: Option<String>,
    /// The correction a decision is about.
    pub decides: Option<String>,
    /// A correction's state (pending, approved, rejected).
    pub state: Option<CorrectionState>,
    pub reason: String,
    pub actor: String,
    pub recorded_at: String,
    #[serde(skip)]
    at_us: Option<i64>,
}

/// A project's history, oldest first, each correction with its state.
pub async fn history(pool: &Pool, project_code: &str) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, event, step, at_us, decides, reason, actor, recorded_at FROM project_events WHERE project_code = $1 ORDER BY recorded_at, id",
    )
    .bind(project_code)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let at_us: Option<i64> = r.try_get("at_us")?;
        let recorded_at_us: i64 = r.try_get("recorded_at")?;
        out.push(HistoryEntry {
            id: r.try_get("id")?,
            event: r.try_get("event")?,
            step: r.try_get("step")?,
            at: at_us.map(rfc3339),
            decides: r.try_get("decides")?,
            state: None,
            reason: r.try_get("reason")?,
            actor: r.try_get("actor")?,
            recorded_at: rfc3339(recorded_at_us),
            at_us,
        });
    }
    let decisions: Vec<(String, Step)> = out
        .iter()
        .filter_map(|e| e.decides.clone().map(|d| (d, e.step)))
        .collect();
    for e in out.iter_mut().filter(|e| e.step == Step::Correction) {
        e.state = Some(match decisions.iter().find(|(d, _)| *d == e.id) {
            Some((_, Step::Approve)) => CorrectionState::Approved,
            Some(_) => CorrectionState::Rejected,
            None => CorrectionState::Pending,
        });
    }
    Ok(out)
}

/// The dates in force: per event, the most recently approved correction's, else the report's.
fn in_force(history: &[HistoryEntry]) -> ProjectEvents {
    let mut events = ProjectEvents::default();
    for e in history.iter().filter(|e| e.step == Step::Report) {
        if let Some(at) = e.at_us {
            events.set(e.event, at);
        }
    }
    // Decisions in the order they were made: the last approval wins.
    for d in history.iter().filter(|e| e.step == Step::Approve) {
        if let Some(c) = history
            .iter()
            .find(|c| Some(&c.id) == d.decides.as_ref() && c.step == Step::Correction)
            && let Some(at) = c.at_us
        {
            events.set(c.event, at);
        }
    }
    events
}

pub async fn events(pool: &Pool, project_code: &str) -> Result<ProjectEvents, sqlx::Error> {
    Ok(in_force(&history(pool, project_code).await?))
}

/// A date of an event: when, and the text it was given as (which the audit trail quotes).
#[derive(Debug, Clone, Copy)]
pub struct EventDate<'a> {
    pub at_us: i64,
    pub given: &'a str,
}

/// The project's last recording: the latest stop, or start of a live session, of any of its
/// sessions; None when it has none.
pub async fn last_recording_us(
    pool: &Pool,
    project_code: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(CASE WHEN stopped_at IS NULL THEN started_at ELSE stopped_at END) FROM sessions WHERE project_code = $1",
    )
    .bind(project_code)
    .fetch_one(pool)
    .await
}

/// The rule of an event date: not before the project's last recording, not after now (give or
/// take `CLOCK_TOLERANCE_US`). Refusals name the rule in their code.
pub fn check_date(
    kind: EventKind,
    at_us: i64,
    last_recording_us: Option<i64>,
    now_us: i64,
) -> Result<(), RetentionError> {
    if at_us > now_us + CLOCK_TOLERANCE_US {
        return Err(RetentionError::Invalid {
            code: "event_in_future",
            message: format!(
                "{} {} is in the future (server time {}, tolerance {} s): an event is reported once it has happened",
                kind.field(),
                rfc3339(at_us),
                rfc3339(now_us),
                CLOCK_TOLERANCE_US / 1_000_000
            ),
        });
    }
    if let Some(last) = last_recording_us
        && at_us < last
    {
        return Err(RetentionError::Invalid {
            code: "event_before_last_recording",
            message: format!(
                "{} {} is before the project's last recording ({}): an event date may not precede a recording of the project",
                kind.field(),
                rfc3339(at_us),
                rfc3339(last)
            ),
        });
    }
    Ok(())
}

/// What happened to one event of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcomes {
    pub event: EventKind,
    /// `reported` (in force), `unchanged` (the date in force), `correction_proposed` (pending).
    pub result: &'static str,
    /// The correction to approve, when one was proposed.
    pub correction_id: Option<String>,
}

/// What a report did, and the dates now in force.
#[derive(Debug, Clone, Serialize)]
pub struct Reported {
    pub events: ProjectEvents,
    pub outcomes: Vec<Outcomes>,
}

/// A new row of the history.
struct NewRow<'a> {
    event: EventKind,
    step: Step,
    at_us: Option<i64>,
    decides: Option<&'a str>,
    reason: &'a str,
}

async fn insert_row(
    pool: &Pool,
    project_code: &str,
    row: NewRow<'_>,
    actor: &Actor,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO project_events (id, project_code, event, step, at_us, decides, reason, actor, recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    )
    .bind(&id)
    .bind(project_code)
    .bind(row.event)
    .bind(row.step)
    .bind(row.at_us)
    .bind(row.decides)
    .bind(row.reason)
    .bind(actor.name())
    .bind(now_us())
    .execute(pool)
    .await?;
    Ok(id)
}

/// Audits a refusal of a project-event step (who, what was asked, why not) and returns it.
async fn refused(
    pool: &Pool,
    actor: &Actor,
    action: &str,
    code: &str,
    asked: String,
    e: RetentionError,
) -> RetentionError {
    let why = match &e {
        RetentionError::Invalid { code, .. } | RetentionError::Conflict { code, .. } => *code,
        RetentionError::NotFound { code, .. } => *code,
        _ => "refused",
    };
    if let Err(db) = audit::Event::new(actor, action)
        .project(code)
        .target(code)
        .reason(format!("{asked}: {e}"))
        .outcome(Outcome::Failed(why.into()))
        .append(pool)
        .await
    {
        return db.into();
    }
    e
}

fn dates(d: Option<i64>) -> String {
    d.map_or_else(|| "none".to_string(), rfc3339)
}

/// Reports that a project closed or its procurement ended (at least one of them). The first
/// date of an event is in force at once; a different date for an event already reported is a
/// correction that waits for a second person's approval (`decide`). Each date is checked by
/// `check_date`. Audited as `project_event` (who, the date in force, the date given), refusals
/// too. `reason` is optional text kept with the history.
pub async fn record_events(
    pool: &Pool,
    policies: &Policies,
    actor: &Actor,
    project: &ProjectCode,
    closed_at: Option<EventDate<'_>>,
    procurement_ended_at: Option<EventDate<'_>>,
    reason: Option<&str>,
) -> Result<Reported, RetentionError> {
    let code = project.as_str();
    let given: Vec<(EventKind, EventDate<'_>)> = [
        (EventKind::Closed, closed_at),
        (EventKind::ProcurementEnded, procurement_ended_at),
    ]
    .into_iter()
    .filter_map(|(k, d)| d.map(|d| (k, d)))
    .collect();
    let asked = given
        .iter()
        .map(|(k, d)| format!("{} {}", k.field(), d.given))
        .collect::<Vec<_>>()
        .join(", ");
    let checked = async {
        if given.is_empty() {
            return Err(RetentionError::invalid(
                "give closed_at, procurement_ended_at or both",
            ));
        }
        if let Some(r) = reason {
            text("reason", r, 2000)?;
        }
        let last = last_recording_us(pool, code).await?;
        let now = now_us();
        for (kind, d) in &given {
            check_date(*kind, d.at_us, last, now)?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = checked {
        return Err(refused(pool, actor, "project_event", code, asked, e).await);
    }
    let before = events(pool, code).await?;
    // Whatever was computed from the dates in force is remembered before anything changes.
    super::remember_retain_until(pool, policies, code).await?;
    let mut outcomes = Vec::new();
    let mut trail = Vec::new();
    for (kind, d) in &given {
        let old = before.get(*kind);
        let (result, correction_id) = match old {
            None => {
                let step = insert_row(
                    pool,
                    code,
                    NewRow {
                        event: *kind,
                        step: Step::Report,
                        at_us: Some(d.at_us),
                        decides: None,
                        reason: reason.unwrap_or(""),
                    },
                    actor,
                )
                .await;
                match step {
                    Ok(_) => ("reported", None),
                    // Reported by someone else a moment ago: this date is a correction of it.
                    Err(e) if is_unique_violation(&e) => {
                        let id = insert_row(
                            pool,
                            code,
                            NewRow {
                                event: *kind,
                                step: Step::Correction,
                                at_us: Some(d.at_us),
                                decides: None,
                                reason: reason.unwrap_or(""),
                            },
                            actor,
                        )
                        .await?;
                        ("correction_proposed", Some(id))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(at) if at == d.at_us => ("unchanged", None),
            Some(_) => {
                let id = insert_row(
                    pool,
                    code,
                    NewRow {
                        event: *kind,
                        step: Step::Correction,
                        at_us: Some(d.at_us),
                        decides: None,
                        reason: reason.unwrap_or(""),
                    },
                    actor,
                )
                .await?;
                ("correction_proposed", Some(id))
            }
        };
        trail.push(format!(
            "{}: {} (in force {}, given {}{})",
            kind.field(),
            result,
            dates(old),
            d.given,
            correction_id
                .as_deref()
                .map(|id| format!(", correction {id}"))
                .unwrap_or_default()
        ));
        outcomes.push(Outcomes {
            event: *kind,
            result,
            correction_id,
        });
    }
    super::remember_retain_until(pool, policies, code).await?;
    audit::Event::new(actor, "project_event")
        .project(code)
        .target(code)
        .reason(trail.join("; "))
        .append(pool)
        .await?;
    Ok(Reported {
        events: events(pool, code).await?,
        outcomes,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Approves or rejects a pending correction of a project's event: by someone other than its
/// proposer (a token is its owner's person), with a reason. An approval puts the corrected date
/// in force, checked again by `check_date`; retain-until never moves earlier than it has been
/// (`remember_retain_until`). Audited as `project_event_approve` or `project_event_reject`
/// (who, the date in force before and after), refusals too.
pub async fn decide(
    pool: &Pool,
    policies: &Policies,
    actor: &Actor,
    project: &ProjectCode,
    correction_id: &str,
    decision: &str,
    reason: &str,
) -> Result<HistoryEntry, RetentionError> {
    let code = project.as_str();
    let parsed = decision.parse::<Decision>();
    let action = match parsed {
        Ok(Decision::Reject) => "project_event_reject",
        _ => "project_event_approve",
    };
    let asked = format!("{decision} correction {correction_id}");
    let history = history(pool, code).await?;
    let checked = (|| {
        let approve = match parsed {
            Ok(d) => d == Decision::Approve,
            Err(_) => {
                return Err(RetentionError::invalid(format!(
                    "decision {decision:?} is not valid, expected approve or reject"
                )));
            }
        };
        let Some(c) = history
            .iter()
            .find(|e| e.id == correction_id && e.step == Step::Correction)
        else {
            return Err(RetentionError::not_found(
                "correction_not_found",
                format!("project {code} has no correction {correction_id}"),
            ));
        };
        if c.state != Some(CorrectionState::Pending) {
            return Err(RetentionError::conflict(
                "correction_decided",
                format!(
                    "correction {correction_id} is {}",
                    c.state.map_or("decided", |s| s.as_str())
                ),
            ));
        }
        if Actor::parse(&c.actor).is_same_person(actor) {
            return Err(RetentionError::conflict(
                "same_person",
                "a correction needs a second person: the proposer cannot decide it",
            ));
        }
        text("reason", reason, 2000)?;
        Ok((approve, c.clone()))
    })();
    let (approve, correction) = match checked {
        Ok(v) => v,
        Err(e) => return Err(refused(pool, actor, action, code, asked, e).await),
    };
    let at = correction.at_us.unwrap_or_default();
    if approve {
        let last = last_recording_us(pool, code).await?;
        if let Err(e) = check_date(correction.event, at, last, now_us()) {
            return Err(refused(pool, actor, action, code, asked, e).await);
        }
    }
    let old = in_force(&history).get(correction.event);
    super::remember_retain_until(pool, policies, code).await?;
    let step = if approve { Step::Approve } else { Step::Reject };
    match insert_row(
        pool,
        code,
        NewRow {
            event: correction.event,
            step,
            at_us: None,
            decides: Some(correction_id),
            reason,
        },
        actor,
    )
    .await
    {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            let e = RetentionError::conflict(
                "correction_decided",
                format!("correction {correction_id} was decided a moment ago"),
            );
            return Err(refused(pool, actor, action, code, asked, e).await);
        }
        Err(e) => return Err(e.into()),
    }
    super::remember_retain_until(pool, policies, code).await?;
    let new = events(pool, code).await?.get(correction.event);
    audit::Event::new(actor, action)
        .project(code)
        .target(correction_id)
        .reason(format!(
            "{} of {}: in force {} → {} (proposed {} by {}); {reason}",
            correction.event.field(),
            code,
            dates(old),
            dates(new),
            dates(correction.at_us),
            correction.actor
        ))
        .append(pool)
        .await?;
    history_entry(pool, code, correction_id).await
}

async fn history_entry(pool: &Pool, code: &str, id: &str) -> Result<HistoryEntry, RetentionError> {
    history(pool, code)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| RetentionError::not_found("correction_not_found", id.to_string()))
}

/// A project's clocks, their history and its active holds.
#[derive(Debug, Clone)]
pub struct Project {
    pub events: ProjectEvents,
    pub history: Vec<HistoryEntry>,
    pub holds: Vec<Hold>,
}

/// A project's clocks and active holds, for a caller whose scope sees it (else `out_of_scope`).
pub async fn view(
    pool: &Pool,
    scope: &Scope,
    project: &ProjectCode,
) -> Result<Project, RetentionError> {
    scope::check_project(pool, scope, project.as_str()).await?;
    let history = history(pool, project.as_str()).await?;
    Ok(Project {
        events: in_force(&history),
        history,
        holds: holds::on_project(pool, project.as_str()).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn an_event_date_lies_between_the_last_recording_and_now() {
        let now = 1_800_000_000_000_000;
        let last = Some(now - 2 * HOUR);
        assert!(check_date(EventKind::Closed, now - HOUR, last, now).is_ok());
        assert!(check_date(EventKind::Closed, now + CLOCK_TOLERANCE_US, last, now).is_ok());
        let code = |r: Result<(), RetentionError>| match r {
            Err(RetentionError::Invalid { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(check_date(EventKind::Closed, now - 3 * HOUR, last, now)),
            "event_before_last_recording"
        );
        assert_eq!(
            code(check_date(
                EventKind::ProcurementEnded,
                now + CLOCK_TOLERANCE_US + 1,
                last,
                now
            )),
            "event_in_future"
        );
        // No recording yet: only the future is refused.
        assert!(check_date(EventKind::Closed, 0, None, now).is_ok());
    }

    fn entry(id: &str, step: Step, at: Option<i64>, decides: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            id: id.into(),
            event: EventKind::Closed,
            step,
            at: None,
            decides: decides.map(Into::into),
            state: None,
            reason: String::new(),
            actor: "li".into(),
            recorded_at: String::new(),
            at_us: at,
        }
    }

    #[test]
    fn the_original_stands_until_a_correction_is_approved() {
        let report = entry("a", Step::Report, Some(10), None);
        let corr = entry("b", Step::Correction, Some(20), None);
        let rejected = entry("c", Step::Correction, Some(30), None);
        let mut h = vec![report, corr, rejected];
        assert_eq!(in_force(&h).closed_at_us, Some(10));
        h.push(entry("d", Step::Reject, None, Some("c")));
        assert_eq!(in_force(&h).closed_at_us, Some(10));
        h.push(entry("e", Step::Approve, None, Some("b")));
        assert_eq!(in_force(&h).closed_at_us, Some(20));
        assert_eq!(in_force(&h).procurement_ended_at_us, None);
    }
}
