//! Queries, objections and complaints (质疑, 异议, 投诉) against a project: filing one places a
//! hold on all of the project at once, so that nothing of it can be destroyed while it is open.

use super::error::text;
use super::holds::{self, Hold, HoldScope, NewHold};
use super::project_code::ProjectCode;
use super::{RetentionError, scope};
use crate::audit::{self, Actor};
use crate::db::Pool;
use crate::identity::caller::Scope;

crate::text_enum! {
    /// What was filed against a project.
    pub enum ComplaintKind as "kind" {
        /// 质疑
        Query = "query",
        /// 异议
        Objection = "objection",
        /// 投诉
        Complaint = "complaint",
    }
}

/// The authority a hold names when the complaint names none: the trading centre itself.
const PLATFORM: &str = "公共资源交易中心 (platform)";

/// A complaint as filed.
#[derive(Debug, Clone, Copy)]
pub struct Complaint<'a> {
    /// `query`, `objection` or `complaint`, as given.
    pub kind: &'a str,
    pub reference: &'a str,
    pub reason: &'a str,
    /// Who handles it; blank for the trading centre.
    pub authority: &'a str,
}

/// Files a complaint against a project that `scope` sees: places a hold on the whole project,
/// audited as `hold_place`.
pub async fn file(
    pool: &Pool,
    actor: &Actor,
    scope: &Scope,
    project: &ProjectCode,
    c: Complaint<'_>,
) -> Result<Hold, RetentionError> {
    scope::check_project(pool, scope, project.as_str()).await?;
    let kind: ComplaintKind = c
        .kind
        .parse()
        .map_err(|e: crate::db::UnknownValue| RetentionError::invalid(e.to_string()))?;
    text("reference", c.reference, 200)?;
    text("reason", c.reason, 2000)?;
    let authority = if c.authority.trim().is_empty() {
        PLATFORM
    } else {
        c.authority
    };
    let hold = holds::insert(
        pool,
        actor,
        NewHold {
            scope: HoldScope::Project,
            project_code: Some(project.as_str()),
            session_id: None,
            room_id: None,
            from_us: None,
            to_us: None,
            reason: &format!("{kind}: {}", c.reason),
            authority,
            reference: c.reference,
        },
    )
    .await?;
    audit::Event::new(actor, "hold_place")
        .about(None, Some(project.as_str()))
        .target(&hold.id)
        .reason(&hold.reason)
        .append(pool)
        .await?;
    Ok(hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_is_refused_naming_the_valid_ones() {
        assert_eq!(
            "petition".parse::<ComplaintKind>().unwrap_err().to_string(),
            "kind \"petition\" is not valid, expected one of: query, objection, complaint"
        );
    }
}
