//! Registration of a project with its bid sections, and sections added later. Every problem of
//! the request is reported at once (`Problems`); nothing is written unless there are none, and
//! then everything in one transaction: the project, its sections, each section's first history
//! row. A project code already registered is a conflict (409). Audited with what was registered.

use serde::Deserialize;
use sqlx::Row;

use super::problems::Problems;
use super::sections::{SectionState, insert_history};
use super::view::{self, ProjectDetail};
use super::{Problem, ProjectError};
use crate::audit::{self, Actor};
use crate::catalogue::Catalogue;
use crate::db::Pool;
use crate::identity::roles::Role;
use crate::identity::users;
use crate::time::now_us;

/// At most this many sections in one request.
pub const MAX_SECTIONS: usize = 200;

/// A project as the trading system or the counter registers it. Every field is optional here
/// so that a missing one is a problem reported with the others, not a parse error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub project_code: Option<String>,
    pub name: Option<String>,
    /// An id of `catalogue/categories.toml`.
    pub category: Option<String>,
    /// An id of `catalogue/methods.toml` that applies to the category.
    pub method: Option<String>,
    /// 招标人 / 采购人 / 出让人: who puts the project to trade.
    pub tenderer: Option<String>,
    /// 代理机构 (optional).
    pub agent: Option<String>,
    /// The username of the responsible service person (服务责任人, 5.2.4): witness staff.
    pub service_person: Option<String>,
    #[serde(default)]
    pub sections: Vec<NewSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSection {
    pub code: Option<String>,
    pub name: Option<String>,
}

/// Sections added to a registered project.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSections {
    #[serde(default)]
    pub sections: Vec<NewSection>,
}

/// A checked project, ready to insert.
struct Checked {
    code: String,
    name: String,
    category: String,
    method: String,
    tenderer: String,
    agent: String,
    service_person_id: String,
    service_person: String,
    sections: Vec<(String, String)>,
}

/// The sections of a request: each code valid and not repeated (nor, in `existing`, already
/// registered), each with a name.
fn check_sections(
    p: &mut Problems,
    sections: &[NewSection],
    existing: &[String],
) -> Vec<(String, String)> {
    if sections.is_empty() {
        p.add(
            "sections",
            "missing",
            "请至少登记一个标段（包）",
            "sections: register at least one bid section",
        );
    }
    if sections.len() > MAX_SECTIONS {
        p.add(
            "sections",
            "too_many",
            format!("一次最多登记 {MAX_SECTIONS} 个标段（包）"),
            format!("sections: at most {MAX_SECTIONS} in one request"),
        );
    }
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let field = format!("sections[{i}].code");
        let code = p.code(&field, "标段（包）编号", s.code.as_deref());
        let name = p.text(
            &format!("sections[{i}].name"),
            "标段（包）名称",
            s.name.as_deref(),
            200,
        );
        if let Some(c) = &code {
            if seen.contains(c) {
                p.add(
                    &field,
                    "duplicate",
                    format!("标段（包）编号 {c} 重复"),
                    format!("section code {c:?} appears more than once"),
                );
            } else if existing.contains(c) {
                p.add(
                    &field,
                    "exists",
                    format!("标段（包）{c} 已登记"),
                    format!("section {c:?} is already registered for this project"),
                );
            }
            seen.push(c.clone());
        }
        if let (Some(c), Some(n)) = (code, name) {
            out.push((c, n));
        }
    }
    out
}

/// Category and method against the catalogue: known ids, and a method that applies to the
/// category.
fn check_catalogue(
    p: &mut Problems,
    catalogue: &Catalogue,
    category: Option<&str>,
    method: Option<&str>,
) -> (Option<String>, Option<String>) {
    let category = match category.map(str::trim) {
        None | Some("") => {
            p.add(
                "category",
                "missing",
                "请选择交易类别",
                "category is required",
            );
            None
        }
        Some(c) => match catalogue.category(c) {
            Some(_) => Some(c.to_string()),
            None => {
                p.add(
                    "category",
                    "unknown_category",
                    format!(
                        "交易类别 {c:?} 不在交易目录中，可选：{}",
                        catalogue.category_ids()
                    ),
                    format!(
                        "category {c:?} is not in the trading catalogue, expected one of: {}",
                        catalogue.category_ids()
                    ),
                );
                None
            }
        },
    };
    let method = match method.map(str::trim) {
        None | Some("") => {
            p.add("method", "missing", "请选择交易方式", "method is required");
            None
        }
        Some(m) => match catalogue.method(m) {
            None => {
                p.add(
                    "method",
                    "unknown_method",
                    format!(
                        "交易方式 {m:?} 不在交易目录中，可选：{}",
                        catalogue.method_ids()
                    ),
                    format!(
                        "method {m:?} is not in the trading catalogue, expected one of: {}",
                        catalogue.method_ids()
                    ),
                );
                None
            }
            Some(entry) => match &category {
                Some(c) if !entry.applies_to(c) => {
                    let zh_c = catalogue.category(c).map_or(c.as_str(), |e| e.zh.as_str());
                    p.add(
                        "method",
                        "method_not_for_category",
                        format!("交易方式“{}”不适用于交易类别“{zh_c}”", entry.zh),
                        format!(
                            "method {m:?} does not apply to category {c:?} (it applies to: {})",
                            entry.categories.join(", ")
                        ),
                    );
                    None
                }
                _ => Some(m.to_string()),
            },
        },
    };
    (category, method)
}

/// The responsible service person: an enabled witness staff account.
async fn check_service_person(
    pool: &Pool,
    p: &mut Problems,
    username: Option<&str>,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let Some(name) = username.map(str::trim).filter(|n| !n.is_empty()) else {
        p.add(
            "service_person",
            "missing",
            "请指定服务责任人",
            "service_person is required (the username of the responsible witness staff)",
        );
        return Ok(None);
    };
    let found = users::by_username(pool, name).await?;
    Ok(match found {
        None => {
            p.add(
                "service_person",
                "unknown_user",
                format!("服务责任人 {name:?} 不是本系统的用户"),
                format!("service_person {name:?} is not a user of this server"),
            );
            None
        }
        Some(u) if u.role != Role::WitnessStaff => {
            p.add(
                "service_person",
                "not_staff",
                format!("服务责任人 {name:?} 不是见证人员"),
                format!(
                    "service_person {name:?} is {}, not witness_staff",
                    u.role.as_str()
                ),
            );
            None
        }
        Some(u) if u.disabled => {
            p.add(
                "service_person",
                "disabled",
                format!("服务责任人 {name:?} 的账户已停用"),
                format!("service_person {name:?} is a disabled account"),
            );
            None
        }
        Some(u) => Some((u.id, u.username)),
    })
}

async fn check(
    pool: &Pool,
    req: &NewProject,
) -> Result<Result<Checked, Vec<Problem>>, sqlx::Error> {
    let catalogue = crate::catalogue::current();
    let mut p = Problems::default();
    let code = p.code("project_code", "项目编号", req.project_code.as_deref());
    let name = p.text("name", "项目名称", req.name.as_deref(), 200);
    let (category, method) = check_catalogue(
        &mut p,
        &catalogue,
        req.category.as_deref(),
        req.method.as_deref(),
    );
    let tenderer = p.text("tenderer", "招标人（采购人）", req.tenderer.as_deref(), 200);
    let agent = p.optional_text("agent", "代理机构", req.agent.as_deref().unwrap_or(""), 200);
    let person = check_service_person(pool, &mut p, req.service_person.as_deref()).await?;
    let sections = check_sections(&mut p, &req.sections, &[]);
    if !p.is_empty() {
        return Ok(Err(p.0));
    }
    let (
        Some(code),
        Some(name),
        Some(category),
        Some(method),
        Some(tenderer),
        Some(agent),
        Some((service_person_id, service_person)),
    ) = (code, name, category, method, tenderer, agent, person)
    else {
        unreachable!("every None above added a problem");
    };
    Ok(Ok(Checked {
        code,
        name,
        category,
        method,
        tenderer,
        agent,
        service_person_id,
        service_person,
        sections,
    }))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    crate::error::is_unique_violation(e)
}

/// Registers a project with its sections. Every problem at once (`invalid_project`, 422); a
/// code already registered is `project_exists` (409). Audited as `project_register`.
pub async fn register(
    pool: &Pool,
    actor: &Actor,
    req: &NewProject,
) -> Result<ProjectDetail, ProjectError> {
    let c = match check(pool, req).await? {
        Ok(c) => c,
        Err(problems) => {
            return Err(ProjectError::Invalid {
                code: "invalid_project",
                problems,
            });
        }
    };
    let exists = || {
        ProjectError::conflict(
            "project_exists",
            format!("project {:?} is already registered", c.code),
        )
    };
    if view::registered(pool, &c.code).await?.is_some() {
        return Err(exists());
    }
    let now = now_us();
    let by = actor.name();
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO project_registry (project_code, name, category, method, tenderer, agent, service_person_id, registered_by, registered_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    )
    .bind(&c.code)
    .bind(&c.name)
    .bind(&c.category)
    .bind(&c.method)
    .bind(&c.tenderer)
    .bind(&c.agent)
    .bind(&c.service_person_id)
    .bind(&by)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(exists()),
        Err(e) => return Err(e.into()),
    }
    for (section, name) in &c.sections {
        insert_section(&mut tx, &c.code, section, name, &by, now).await?;
    }
    tx.commit().await?;
    audit::Event::new(actor, "project_register")
        .project(&c.code)
        .target(&c.code)
        .reason(format!(
            "registered {:?}: category {}, method {}, tenderer {:?}, agent {:?}, service person {}, sections {}",
            c.name,
            c.category,
            c.method,
            c.tenderer,
            c.agent,
            c.service_person,
            c.sections
                .iter()
                .map(|(code, name)| format!("{code} {name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .append(pool)
        .await?;
    view::detail(pool, &c.code).await
}

async fn insert_section(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: &str,
    section: &str,
    name: &str,
    by: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO project_sections (project_code, section_code, name, state, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$5)",
    )
    .bind(project)
    .bind(section)
    .bind(name)
    .bind(SectionState::Registered)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    insert_history(
        &mut **tx,
        project,
        section,
        None,
        SectionState::Registered,
        "",
        by,
        now,
    )
    .await
}

/// Adds sections to a registered project whose sections are not all ended. Every problem at
/// once (`invalid_sections`, 422: a code repeated or already registered among them). Audited as
/// `project_sections_add`.
pub async fn add_sections(
    pool: &Pool,
    actor: &Actor,
    scope: &crate::identity::caller::Scope,
    project: &str,
    req: &NewSections,
) -> Result<ProjectDetail, ProjectError> {
    let registered = view::visible(pool, scope, project).await?;
    let existing: Vec<(String, SectionState)> =
        sqlx::query("SELECT section_code, state FROM project_sections WHERE project_code = $1")
            .bind(project)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("section_code")?, r.try_get("state")?)))
            .collect::<Result<_, sqlx::Error>>()?;
    if !existing.is_empty() && existing.iter().all(|(_, s)| s.is_final()) {
        return Err(ProjectError::conflict(
            "project_ended",
            format!(
                "every section of project {project} is closed or terminated: the project has ended"
            ),
        ));
    }
    let codes: Vec<String> = existing.into_iter().map(|(c, _)| c).collect();
    let mut p = Problems::default();
    let sections = check_sections(&mut p, &req.sections, &codes);
    if !p.is_empty() {
        return Err(ProjectError::Invalid {
            code: "invalid_sections",
            problems: p.0,
        });
    }
    let now = now_us();
    let by = actor.name();
    let mut tx = pool.begin().await?;
    for (section, name) in &sections {
        match insert_section(&mut tx, &registered.project_code, section, name, &by, now).await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(ProjectError::conflict(
                    "section_exists",
                    format!("section {section:?} of project {project} was registered a moment ago"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    audit::Event::new(actor, "project_sections_add")
        .project(project)
        .target(project)
        .reason(format!(
            "sections added: {}",
            sections
                .iter()
                .map(|(code, name)| format!("{code} {name:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .append(pool)
        .await?;
    view::detail(pool, project).await
}
