//! Projects as the API and the console show them: the list (by category and section state, in
//! pages) and one project with its sections, each section's history, its sessions and its
//! retention clocks.
//!
//! Scope: a regulator sees a registered project when its trading category is in their scope
//! (`Scope::sees`), or, for a code nobody registered, as retention decides
//! (`retention::scope`: a session of the project in scope). Others see every project.

use serde::Serialize;
use sqlx::Row;

use super::ProjectError;
use super::sections::SectionState;
use crate::catalogue;
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::ledger::index::{SessionFilter, list_sessions};
use crate::ledger::values::Category;
use crate::ledger::views::SessionSummary;
use crate::retention::project_code::ProjectCode;
use crate::retention::projects as clocks;
use crate::time::rfc3339;

/// A registered project (without its sections).
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub project_code: String,
    pub name: String,
    pub category: String,
    pub category_zh: String,
    pub category_en: String,
    pub method: String,
    pub method_zh: String,
    pub method_en: String,
    pub tenderer: String,
    pub agent: String,
    /// The responsible service person's username (服务责任人).
    pub service_person: String,
    pub registered_by: String,
    pub registered_at: String,
    /// Every section closed or terminated.
    pub ended: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionHistory {
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub actor: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub section_code: String,
    pub name: String,
    pub state: SectionState,
    /// The states it may become next.
    pub next: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
    pub history: Vec<SectionHistory>,
}

/// A registered project with its sections.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectDetail {
    #[serde(flatten)]
    pub project: Registered,
    pub sections: Vec<Section>,
}

const REGISTRY_COLS: &str = "r.project_code, r.name, r.category, r.method, r.tenderer, r.agent, r.registered_by, r.registered_at, COALESCE(u.username, r.service_person_id) AS service_person, (SELECT COUNT(*) FROM project_sections s WHERE s.project_code = r.project_code AND s.state NOT IN ('closed', 'terminated')) AS open_sections, (SELECT COUNT(*) FROM project_sections s WHERE s.project_code = r.project_code) AS all_sections";

fn registered_from(r: &sqlx::any::AnyRow) -> Result<Registered, sqlx::Error> {
    let c = catalogue::current();
    let category: String = r.try_get("category")?;
    let method: String = r.try_get("method")?;
    let (category_zh, category_en) = c
        .category(&category)
        .map_or((category.clone(), category.clone()), |e| {
            (e.zh.clone(), e.en.clone())
        });
    let (method_zh, method_en) = c
        .method(&method)
        .map_or((method.clone(), method.clone()), |e| {
            (e.zh.clone(), e.en.clone())
        });
    let at: i64 = r.try_get("registered_at")?;
    let open: i64 = r.try_get("open_sections")?;
    let all: i64 = r.try_get("all_sections")?;
    Ok(Registered {
        project_code: r.try_get("project_code")?,
        name: r.try_get("name")?,
        category,
        category_zh,
        category_en,
        method,
        method_zh,
        method_en,
        tenderer: r.try_get("tenderer")?,
        agent: r.try_get("agent")?,
        service_person: r.try_get("service_person")?,
        registered_by: r.try_get("registered_by")?,
        registered_at: rfc3339(at),
        ended: all > 0 && open == 0,
    })
}

/// The registered project `code`, if any.
pub async fn registered(pool: &Pool, code: &str) -> Result<Option<Registered>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {REGISTRY_COLS} FROM project_registry r LEFT JOIN users u ON u.id = r.service_person_id WHERE r.project_code = $1"
    ))
    .bind(code)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(registered_from)
    .transpose()
}

/// The registered project `code` if the caller's scope sees it: `project_not_found` (404) or
/// `out_of_scope` (403).
pub async fn visible(pool: &Pool, scope: &Scope, code: &str) -> Result<Registered, ProjectError> {
    let Some(r) = registered(pool, code).await? else {
        return Err(ProjectError::not_found(
            "project_not_found",
            format!("project {code:?} is not registered"),
        ));
    };
    if !sees(scope, &r.category) {
        return Err(ProjectError::forbidden(
            "out_of_scope",
            format!(
                "project {code} is in trading category {:?}, outside this regulator's scope",
                r.category
            ),
        ));
    }
    Ok(r)
}

/// A registered project's category is in `scope` (a category no longer in the catalogue is seen
/// only by unscoped callers).
fn sees(scope: &Scope, category: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Categories(_) => category.parse::<Category>().is_ok_and(|c| scope.sees(&c)),
    }
}

/// The sections of `code` with their history, oldest first.
pub async fn sections(pool: &Pool, code: &str) -> Result<Vec<Section>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT section_code, name, state, created_at, updated_at FROM project_sections WHERE project_code = $1 ORDER BY created_at, section_code",
    )
    .bind(code)
    .fetch_all(pool)
    .await?;
    let history = sqlx::query(
        "SELECT section_code, from_state, to_state, reason, actor, at FROM project_section_history WHERE project_code = $1 ORDER BY at, id",
    )
    .bind(code)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let section_code: String = r.try_get("section_code")?;
        let state: SectionState = r.try_get("state")?;
        let mut h = Vec::new();
        for e in history.iter() {
            if e.try_get::<String, _>("section_code")? == section_code {
                h.push(SectionHistory {
                    from: e.try_get("from_state")?,
                    to: e.try_get("to_state")?,
                    reason: e.try_get("reason")?,
                    actor: e.try_get("actor")?,
                    at: rfc3339(e.try_get("at")?),
                });
            }
        }
        out.push(Section {
            name: r.try_get("name")?,
            next: state.next(),
            state,
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
            history: h,
            section_code,
        });
    }
    Ok(out)
}

/// A registered project with its sections (no scope check: for the caller who just changed it).
pub async fn detail(pool: &Pool, code: &str) -> Result<ProjectDetail, ProjectError> {
    let project = registered(pool, code).await?.ok_or_else(|| {
        ProjectError::not_found(
            "project_not_found",
            format!("project {code:?} is not registered"),
        )
    })?;
    Ok(ProjectDetail {
        sections: sections(pool, code).await?,
        project,
    })
}

/// One project as `GET /api/v1/projects/{code}` shows it: the registration and sections (None
/// for a code only sessions and retention know), its sessions within scope, and its retention
/// clocks, their history and its holds.
#[derive(Debug)]
pub struct ProjectView {
    pub registered: Option<ProjectDetail>,
    pub sessions: Vec<SessionSummary>,
    pub clocks: clocks::Project,
}

/// One project for a caller whose scope sees it.
pub async fn view(
    pool: &Pool,
    scope: &Scope,
    code: &ProjectCode,
) -> Result<ProjectView, ProjectError> {
    let registered = match registered(pool, code.as_str()).await? {
        Some(_) => {
            visible(pool, scope, code.as_str()).await?;
            Some(detail(pool, code.as_str()).await?)
        }
        None => {
            crate::retention::scope::check_project(pool, scope, code.as_str()).await?;
            None
        }
    };
    let filter = SessionFilter {
        project_code: Some(code.as_str().to_string()),
        categories: match scope {
            Scope::All => None,
            Scope::Categories(cs) => Some(cs.iter().map(|c| c.as_str().to_string()).collect()),
        },
        ..SessionFilter::default()
    };
    let sessions = list_sessions(pool, &filter, 1000)
        .await?
        .into_iter()
        .map(SessionSummary::from)
        .collect();
    // The project's scope was checked above (a registered project by its own category).
    let clocks = clocks::view(pool, &Scope::All, code).await?;
    Ok(ProjectView {
        registered,
        sessions,
        clocks,
    })
}

/// What the list asks.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub category: Option<String>,
    /// Projects with at least one section in this state.
    pub state: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A page of registered projects, newest first, within `scope`. Unknown filter values are
/// refused naming the known ones.
pub async fn list(
    pool: &Pool,
    scope: &Scope,
    f: &ListFilter,
) -> Result<Vec<Registered>, ProjectError> {
    let mut p = super::problems::Problems::default();
    if let Some(c) = &f.category
        && let Err(e) = c.parse::<Category>()
    {
        p.add(
            "category",
            "unknown_category",
            format!("交易类别 {c:?} 不在交易目录中，可选：{}", e.expected),
            e.to_string(),
        );
    }
    if let Some(s) = &f.state
        && let Err(e) = s.parse::<SectionState>()
    {
        p.add(
            "state",
            "unknown_state",
            format!("状态 {s:?} 无效，可选：{}", e.expected),
            e.to_string(),
        );
    }
    if !p.is_empty() {
        return Err(ProjectError::Invalid {
            code: "invalid_query",
            problems: p.0,
        });
    }
    let in_scope = match scope {
        Scope::All => String::new(),
        Scope::Categories(cs) if cs.is_empty() => " AND 1 = 0".to_string(),
        Scope::Categories(cs) => format!(
            " AND r.category IN ({})",
            (0..cs.len())
                .map(|i| format!("${}", i + 5))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let sql = format!(
        "SELECT {REGISTRY_COLS} FROM project_registry r LEFT JOIN users u ON u.id = r.service_person_id
         WHERE ($1 = '' OR r.category = $1)
           AND ($2 = '' OR EXISTS (SELECT 1 FROM project_sections s WHERE s.project_code = r.project_code AND s.state = $2)){in_scope}
         ORDER BY r.registered_at DESC, r.project_code LIMIT $3 OFFSET $4"
    );
    let mut q = sqlx::query(&sql)
        .bind(f.category.clone().unwrap_or_default())
        .bind(f.state.clone().unwrap_or_default())
        .bind(f.limit)
        .bind(f.offset);
    if let Scope::Categories(cs) = scope {
        for c in cs {
            q = q.bind(c.as_str().to_string());
        }
    }
    Ok(q.fetch_all(pool)
        .await?
        .iter()
        .map(registered_from)
        .collect::<Result<_, _>>()?)
}
