//! A bid section's lifecycle: registered → in_progress → closed, and suspended / terminated.
//! Only the transitions of `SectionState::may_become` happen (migration 0023 refuses the others
//! in the database too); each is kept in `project_section_history` (append-only: who, when, why)
//! and audited with before → after.
//!
//! Closing or terminating a section may end the project, which starts its retention clocks: so
//! those steps are taken only by callers who may report project events (`project_events`:
//! archive clerks, the trading system's token), and when no section of the project is left open
//! the end is reported as the project's `closed` event through
//! `retention::projects::record_events` (its rules on dates and corrections apply).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ProjectError;
use super::problems::Problems;
use super::view;
use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::identity::caller::Caller;
use crate::identity::roles::Permission;
use crate::retention::policy::Policies;
use crate::retention::project_code::ProjectCode;
use crate::retention::projects::{self as clocks, EventDate, Reported};
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// Where a bid section stands.
    pub enum SectionState as "section state" {
        Registered = "registered",
        InProgress = "in_progress",
        Closed = "closed",
        Suspended = "suspended",
        Terminated = "terminated",
    }
}

impl SectionState {
    /// The allowed transitions (the database's guard in 0023 says the same).
    pub fn may_become(self, to: SectionState) -> bool {
        use SectionState::*;
        matches!(
            (self, to),
            (Registered, InProgress | Suspended | Terminated)
                | (InProgress, Closed | Suspended | Terminated)
                | (Suspended, Registered | InProgress | Terminated)
        )
    }

    /// Closed or terminated: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, SectionState::Closed | SectionState::Terminated)
    }

    /// The states this one may become, for messages.
    pub fn next(self) -> Vec<&'static str> {
        SectionState::ALL
            .iter()
            .filter(|to| self.may_become(**to))
            .map(|s| s.as_str())
            .collect()
    }

    fn zh(self) -> &'static str {
        match self {
            SectionState::Registered => "已登记",
            SectionState::InProgress => "进行中",
            SectionState::Closed => "已结束",
            SectionState::Suspended => "暂停",
            SectionState::Terminated => "已终止",
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_history<'c, E>(
    ex: E,
    project: &str,
    section: &str,
    from: Option<SectionState>,
    to: SectionState,
    reason: &str,
    actor: &str,
    at: i64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO project_section_history (id, project_code, section_code, from_state, to_state, reason, actor, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(project)
    .bind(section)
    .bind(from.map(|s| s.as_str()))
    .bind(to)
    .bind(reason)
    .bind(actor)
    .bind(at)
    .execute(ex)
    .await?;
    Ok(())
}

/// A state change as asked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    pub state: Option<String>,
    /// Why: required to suspend, resume from suspension or terminate.
    pub reason: Option<String>,
}

/// What a state change did.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub project_code: String,
    pub section_code: String,
    pub from: SectionState,
    pub to: SectionState,
    /// True when no section of the project is left open: the project has ended.
    pub project_ended: bool,
    /// The project's `closed` event as reported to retention, when this change ended it.
    pub retention: Option<Reported>,
}

/// Audits a refused state change (who, what was asked, why) and returns the refusal.
async fn refused(
    pool: &Pool,
    actor: &Actor,
    project: &str,
    asked: &str,
    e: ProjectError,
) -> ProjectError {
    if let Err(db) = audit::Event::new(actor, "section_state")
        .project(project)
        .target(asked)
        .reason(format!("{asked}: {e}"))
        .outcome(Outcome::Failed(e.code().into()))
        .append(pool)
        .await
    {
        return db.into();
    }
    e
}

/// Moves section `section` of `project` to the state asked. Refusals: `invalid_state_change`
/// (422, every problem of the body), `project_not_found` / `section_not_found` (404),
/// `out_of_scope` and `forbidden` (403: closing or terminating without `project_events`),
/// `transition_refused` (409, naming from → to and what is allowed). Audited as `section_state`
/// with before → after and the reason, refusals too. When the change leaves no section of the
/// project open, the project's `closed` event is reported to retention (once).
pub async fn change_state(
    pool: &Pool,
    policies: &Policies,
    caller: &Caller,
    address: &str,
    project: &str,
    section: &str,
    req: &StateChange,
) -> Result<Changed, ProjectError> {
    let actor = caller.actor(address);
    let target = format!("{project}/{section}");
    let mut p = Problems::default();
    let to = match req.state.as_deref().map(str::trim) {
        None | Some("") => {
            p.add("state", "missing", "请选择新状态", "state is required");
            None
        }
        Some(s) => match s.parse::<SectionState>() {
            Ok(s) => Some(s),
            Err(e) => {
                p.add(
                    "state",
                    "unknown_state",
                    format!("状态 {s:?} 无效，可选：{}", SectionState::names()),
                    e.to_string(),
                );
                None
            }
        },
    };
    let reason = p
        .optional_text("reason", "原因", req.reason.as_deref().unwrap_or(""), 2000)
        .unwrap_or_default();
    if let Some(to) = to
        && matches!(to, SectionState::Suspended | SectionState::Terminated)
        && reason.is_empty()
    {
        p.add(
            "reason",
            "missing",
            format!("{}须说明原因", to.zh()),
            format!("reason is required to make a section {to}"),
        );
    }
    if !p.is_empty() {
        return Err(ProjectError::Invalid {
            code: "invalid_state_change",
            problems: p.0,
        });
    }
    let to = to.expect("a problem otherwise");
    let asked = format!("{target} → {to}");
    view::visible(pool, &caller.scope(), project).await?;
    let row = sqlx::query(
        "SELECT state FROM project_sections WHERE project_code = $1 AND section_code = $2",
    )
    .bind(project)
    .bind(section)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(ProjectError::not_found(
            "section_not_found",
            format!("project {project} has no section {section:?}"),
        ));
    };
    let from: SectionState = row.try_get("state")?;
    if to.is_final() && !caller.can(Permission::ProjectEvents) {
        let e = ProjectError::forbidden(
            "forbidden",
            format!(
                "making a section {to} may end the project and start its retention clocks: it needs the project_events permission (archive clerks, the trading system's token), which the {} role{} lacks",
                caller.role.as_str(),
                if matches!(caller.via, crate::identity::caller::Via::Token { .. }) {
                    " (or this token's scope)"
                } else {
                    ""
                }
            ),
        );
        return Err(refused(pool, &actor, project, &asked, e).await);
    }
    if !from.may_become(to) {
        let allowed = from.next();
        let e = ProjectError::conflict(
            "transition_refused",
            format!(
                "section {section} of project {project} is {from}: {from} → {to} is not allowed ({})",
                if allowed.is_empty() {
                    format!("{from} is final")
                } else {
                    format!("from {from}: {}", allowed.join(", "))
                }
            ),
        );
        return Err(refused(pool, &actor, project, &asked, e).await);
    }
    let now = now_us();
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE project_sections SET state = $1, updated_at = $2 WHERE project_code = $3 AND section_code = $4 AND state = $5",
    )
    .bind(to)
    .bind(now)
    .bind(project)
    .bind(section)
    .bind(from)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        drop(tx);
        let e = ProjectError::conflict(
            "transition_refused",
            format!("section {section} of project {project} changed a moment ago; read it again"),
        );
        return Err(refused(pool, &actor, project, &asked, e).await);
    }
    insert_history(
        &mut *tx,
        project,
        section,
        Some(from),
        to,
        &reason,
        &actor.name(),
        now,
    )
    .await?;
    tx.commit().await?;
    audit::Event::new(&actor, "section_state")
        .project(project)
        .target(&target)
        .reason(format!(
            "section {section} of {project}: {from} → {to}{}",
            if reason.is_empty() {
                String::new()
            } else {
                format!("; {reason}")
            }
        ))
        .append(pool)
        .await?;
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_sections WHERE project_code = $1 AND state NOT IN ('closed', 'terminated')",
    )
    .bind(project)
    .fetch_one(pool)
    .await?;
    let project_ended = to.is_final() && open == 0;
    let mut retention = None;
    if project_ended && clocks::events(pool, project).await?.closed_at_us.is_none() {
        let given = rfc3339(now);
        let code = ProjectCode::parse(project)?;
        let why = format!("every section of project {project} has ended (last: {section} {to})");
        retention = Some(
            clocks::record_events(
                pool,
                policies,
                &actor,
                &code,
                Some(EventDate {
                    at_us: now,
                    given: &given,
                }),
                None,
                Some(&why),
            )
            .await?,
        );
    }
    Ok(Changed {
        project_code: project.to_string(),
        section_code: section.to_string(),
        from,
        to,
        project_ended,
        retention,
    })
}

#[cfg(test)]
mod tests {
    use super::SectionState::*;

    #[test]
    fn only_the_lifecycle_transitions_are_allowed() {
        assert!(Registered.may_become(InProgress));
        assert!(InProgress.may_become(Closed));
        assert!(Suspended.may_become(InProgress));
        assert!(!Registered.may_become(Closed));
        assert!(!Closed.may_become(InProgress));
        assert!(!Terminated.may_become(Registered));
        assert!(!InProgress.may_become(InProgress));
        assert_eq!(Closed.next(), Vec::<&str>::new());
        assert_eq!(
            Registered.next(),
            ["in_progress", "suspended", "terminated"]
        );
    }
}
