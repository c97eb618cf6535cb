//! Retention over HTTP: a session's retention (rule, basis, retain-until, holds), the policies
//! in force, project events that start clocks, complaints that place holds, and holds
//! themselves (place; release by a different person). Every change is audited by its handler.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::audit;
use crate::audit::Actor;
use crate::evidence::export::parse_wall_clock;
use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};
use crate::ledger::index::existing_session;
use crate::ledger::values::valid_code;
use crate::retention::holds::{self, NewHold};

/// This resource's handlers, by the action of their rule in `routes::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "policies_view" => on(method, policies),
        "retention_candidates" => on(method, candidates),
        "retention_dry_run" => on(method, dry_run),
        "fixity_reports" => on(method, fixity_reports),
        "fixity_run" => on(method, fixity_run),
        "destructions_list" => on(method, list_destructions),
        "destruction_propose" => on(method, propose_destruction),
        "destruction_view" => on(method, get_destruction),
        "destruction_decide" => on(method, decide_destruction),
        "destruction_execute" => on(method, execute_destruction),
        "destruction_register" => on(method, destruction_register),
        "session_retention" => on(method, session_retention),
        "project_view" => on(method, project),
        "project_event" => on(method, project_events),
        "complaint_file" => on(method, file_complaint),
        "holds_list" => on(method, list_holds),
        "hold_place" => on(method, place_hold),
        "hold_release" => on(method, release_hold),
        _ => return None,
    })
}

fn internal(e: sqlx::Error) -> ApiError {
    crate::error::CoreError::from(e).into()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
}

fn text(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.trim().is_empty() || v.chars().count() > max {
        return Err(invalid(format!("{field}: 1 to {max} characters")));
    }
    Ok(())
}

fn code(project: &str) -> Result<(), ApiError> {
    if !valid_code(project) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "project_not_found",
            format!("{project:?} is not a project code"),
        ));
    }
    Ok(())
}

/// Appends an allowed change to the trail.
async fn audit_change(s: &AppState, event: audit::Event<'_>) -> Result<(), ApiError> {
    event.append(&s.pool).await.map_err(internal)?;
    Ok(())
}

/// A regulator sees (and holds) only projects with a session in a trading category of their
/// scope; everyone else sees all. Refused as `out_of_scope`.
async fn project_in_scope(
    s: &AppState,
    actor: &CurrentActor,
    project: &str,
) -> Result<(), ApiError> {
    let Some(a) = &actor.0 else { return Ok(()) };
    if a.role != crate::identity::roles::Role::Regulator {
        return Ok(());
    }
    let categories: Vec<crate::ledger::values::Category> =
        sqlx::query_scalar("SELECT DISTINCT category FROM sessions WHERE project_code = $1")
            .bind(project)
            .fetch_all(&s.pool)
            .await
            .map_err(internal)?;
    // A project with nothing recorded yet has nothing to hide: a hold on it is harmless.
    if categories.is_empty() || categories.iter().any(|c| a.sees_category(*c)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            format!("project {project} has no session in this regulator's trading categories"),
        ))
    }
}

async fn policies(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": s.policies.version,
        "jurisdiction": s.policies.jurisdiction,
        "rules": s.policies.rules,
    }))
}

/// Sessions that are expired and not held: candidates for appraisal, nothing more.
async fn candidates(
    State(s): State<AppState>,
    actor: CurrentActor,
) -> Result<Json<Vec<crate::retention::candidates::Candidate>>, ApiError> {
    let found = crate::retention::candidates::list(&s.pool, &s.policies, false)
        .await
        .map_err(internal)?;
    Ok(Json(in_scope(&actor, found)))
}

/// A regulator's view of candidates: their trading categories only.
fn in_scope(
    actor: &CurrentActor,
    found: Vec<crate::retention::candidates::Candidate>,
) -> Vec<crate::retention::candidates::Candidate> {
    found
        .into_iter()
        .filter(|c| {
            actor
                .0
                .as_ref()
                .is_none_or(|a| a.sees_category(c.session.category))
        })
        .collect()
}

/// What a lawful destruction of every candidate would remove, object by object, and why. Deletes
/// nothing; the report itself is audited.
async fn dry_run(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Json<serde_json::Value>, ApiError> {
    let found = in_scope(
        &actor,
        crate::retention::candidates::list(&s.pool, &s.policies, true)
            .await
            .map_err(internal)?,
    );
    let bytes: i64 = found.iter().map(|c| c.bytes).sum();
    let objects: usize = found.iter().map(|c| c.segments).sum();
    let summary = format!("{} sessions, {objects} objects, {bytes} bytes", found.len());
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "retention_dry_run")
            .target(&s.policies.version)
            .reason(&summary),
    )
    .await?;
    Ok(Json(serde_json::json!({
        "dry_run": true,
        "policy_version": s.policies.version,
        "sessions": found.len(),
        "objects": objects,
        "bytes": bytes,
        "note": "nothing was deleted; destruction needs an appraisal record and two approvers",
        "candidates": found,
    })))
}

async fn fixity_reports(
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::retention::fixity::FixityReport>>, ApiError> {
    Ok(Json(
        crate::retention::fixity::reports(&s.pool, 100)
            .await
            .map_err(internal)?,
    ))
}

/// Starts a fixity run now (in the background; its report appears under /fixity/reports).
async fn fixity_run(
    State(s): State<AppState>,
    actor: CurrentActor,
) -> (StatusCode, Json<serde_json::Value>) {
    let who = actor.actor("").name();
    let (pool, store, state, rate) = (
        s.pool.clone(),
        s.store.clone(),
        s.fixity.clone(),
        s.fixity_bytes_per_second,
    );
    tokio::spawn(async move {
        match crate::retention::fixity::run(&pool, &store, &state, rate, &who).await {
            Ok(Some(r)) => tracing::info!(report = %r.id, intact = r.intact, "fixity run finished"),
            Ok(None) => tracing::info!("fixity run already under way"),
            Err(e) => tracing::warn!(error = %e, "fixity run failed"),
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "started": true, "reports": "/api/v1/fixity/reports" })),
    )
}

async fn session_retention(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::retention::RetentionView>, ApiError> {
    let session = existing_session(&s.pool, &id).await?;
    Ok(Json(
        crate::retention::view(&s.pool, &s.policies, &session)
            .await
            .map_err(internal)?,
    ))
}

async fn project(
    State(s): State<AppState>,
    Path(project): Path<String>,
    actor: CurrentActor,
) -> Result<Json<serde_json::Value>, ApiError> {
    code(&project)?;
    project_in_scope(&s, &actor, &project).await?;
    let pool = &s.pool;
    let events = crate::retention::project_events(pool, &project)
        .await
        .map_err(internal)?;
    let holds: Vec<holds::Hold> = holds::list(pool, true)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|h| h.project_code.as_deref() == Some(project.as_str()))
        .collect();
    Ok(Json(serde_json::json!({
        "project_code": project,
        "closed_at": events.closed_at_us.map(crate::db::rfc3339),
        "procurement_ended_at": events.procurement_ended_at_us.map(crate::db::rfc3339),
        "open": events.closed_at_us.is_none(),
        "holds": holds,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsRequest {
    /// RFC 3339; the first date given stands.
    closed_at: Option<String>,
    procurement_ended_at: Option<String>,
}

async fn project_events(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<EventsRequest>,
) -> Result<Response, ApiError> {
    code(&project)?;
    let closed = parse_wall_clock("closed_at", req.closed_at.as_deref()).map_err(invalid)?;
    let ended = parse_wall_clock("procurement_ended_at", req.procurement_ended_at.as_deref())
        .map_err(invalid)?;
    if closed.is_none() && ended.is_none() {
        return Err(invalid("give closed_at, procurement_ended_at or both"));
    }
    let events = crate::retention::set_project_events(&s.pool, &project, closed, ended)
        .await
        .map_err(internal)?;
    let detail = format!(
        "closed_at {} procurement_ended_at {}",
        req.closed_at.as_deref().unwrap_or("-"),
        req.procurement_ended_at.as_deref().unwrap_or("-")
    );
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "project_event")
            .about(None, Some(&project))
            .target(&project)
            .reason(&detail),
    )
    .await?;
    Ok((
        Extension(Audited),
        Json(serde_json::json!({
            "project_code": project,
            "closed_at": events.closed_at_us.map(crate::db::rfc3339),
            "procurement_ended_at": events.procurement_ended_at_us.map(crate::db::rfc3339),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplaintRequest {
    /// `query` (质疑), `objection` (异议) or `complaint` (投诉).
    kind: String,
    reference: String,
    reason: String,
    #[serde(default)]
    authority: String,
}

/// Filing an objection or complaint against a project places a hold on all of it at once.
async fn file_complaint(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<ComplaintRequest>,
) -> Result<Response, ApiError> {
    code(&project)?;
    project_in_scope(&s, &actor, &project).await?;
    if !["query", "objection", "complaint"].contains(&req.kind.as_str()) {
        return Err(invalid(format!(
            "kind {:?} is not valid, expected one of: query, objection, complaint",
            req.kind
        )));
    }
    text("reference", &req.reference, 200)?;
    text("reason", &req.reason, 2000)?;
    let authority = if req.authority.trim().is_empty() {
        "公共资源交易中心 (platform)".to_string()
    } else {
        req.authority.clone()
    };
    let who = actor.actor("").name();
    let hold = holds::place(
        &s.pool,
        NewHold {
            scope: "project",
            project_code: Some(&project),
            session_id: None,
            room_id: None,
            from_us: None,
            to_us: None,
            reason: &format!("{}: {}", req.kind, req.reason),
            authority: &authority,
            reference: &req.reference,
            placed_by: &who,
        },
    )
    .await
    .map_err(internal)?;
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "hold_place")
            .about(None, Some(&project))
            .target(&hold.id)
            .reason(&hold.reason),
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(hold)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsQuery {
    #[serde(default)]
    all: bool,
}

async fn list_holds(
    State(s): State<AppState>,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<HoldsQuery>,
) -> Result<Json<Vec<holds::Hold>>, ApiError> {
    let mut visible = Vec::new();
    for h in holds::list(&s.pool, !q.all).await.map_err(internal)? {
        let seen = match &h.project_code {
            Some(p) => project_in_scope(&s, &actor, p).await.is_ok(),
            None => actor
                .0
                .as_ref()
                .is_none_or(|a| a.role != crate::identity::roles::Role::Regulator),
        };
        if seen {
            visible.push(h);
        }
    }
    Ok(Json(visible))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    scope: String,
    project_code: Option<String>,
    session_id: Option<String>,
    room_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    reason: String,
    authority: String,
    reference: String,
}

async fn place_hold(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<HoldRequest>,
) -> Result<Response, ApiError> {
    let pool = &s.pool;
    text("reason", &req.reason, 2000)?;
    text("authority", &req.authority, 200)?;
    text("reference", &req.reference, 200)?;
    let (from_us, to_us) = (
        parse_wall_clock("from", req.from.as_deref()).map_err(invalid)?,
        parse_wall_clock("to", req.to.as_deref()).map_err(invalid)?,
    );
    let mut project = req.project_code.clone();
    match req.scope.as_str() {
        "project" => {
            let p = req
                .project_code
                .as_deref()
                .ok_or_else(|| invalid("a project hold needs project_code"))?;
            code(p)?;
            project_in_scope(&s, &actor, p).await?;
        }
        "session" => {
            let id = req
                .session_id
                .as_deref()
                .ok_or_else(|| invalid("a session hold needs session_id"))?;
            let session = existing_session(pool, id).await?;
            project_in_scope(&s, &actor, &session.project_code).await?;
            project = Some(session.project_code);
        }
        "range" => {
            let room = req
                .room_id
                .as_deref()
                .ok_or_else(|| invalid("a range hold needs room_id"))?;
            crate::capture::rooms::get(pool, room).await?;
            match (from_us, to_us) {
                (Some(f), Some(t)) if f < t => {}
                _ => return Err(invalid("a range hold needs from before to")),
            }
        }
        other => {
            return Err(invalid(format!(
                "scope {other:?} is not valid, expected one of: project, session, range"
            )));
        }
    }
    let who = actor.actor("").name();
    let hold = holds::place(
        pool,
        NewHold {
            scope: &req.scope,
            project_code: project.as_deref(),
            session_id: req.session_id.as_deref(),
            room_id: req.room_id.as_deref(),
            from_us,
            to_us,
            reason: &req.reason,
            authority: &req.authority,
            reference: &req.reference,
            placed_by: &who,
        },
    )
    .await
    .map_err(internal)?;
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "hold_place")
            .about(req.session_id.as_deref(), project.as_deref())
            .target(&hold.id)
            .reason(&req.reason),
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(hold)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    reason: String,
}

async fn release_hold(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Response, ApiError> {
    let pool = &s.pool;
    text("reason", &req.reason, 2000)?;
    let hold = holds::get(pool, &id)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "hold_not_found",
                format!("hold {id:?} not found"),
            )
        })?;
    let who = actor.actor("").name();
    // The same person, however they sign in (browser or one of their tokens).
    if Actor::parse(&hold.placed_by).is_same_person(&Actor::parse(&who)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "same_person",
            "a hold is released by a different person from the one who placed it",
        ));
    }
    if !holds::release(pool, &id, &who, &req.reason)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "hold_released",
            format!("hold {id} is already released"),
        ));
    }
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "hold_release")
            .about(hold.session_id.as_deref(), hold.project_code.as_deref())
            .target(&id)
            .reason(&req.reason),
    )
    .await?;
    let after = holds::get(pool, &id)
        .await
        .map_err(internal)?
        .expect("exists");
    Ok((Extension(Audited), Json(after)).into_response())
}

// ---- lawful destruction ------------------------------------------------------------------------

use crate::retention::destruction::{self, DestructionError};

impl From<DestructionError> for ApiError {
    fn from(e: DestructionError) -> Self {
        match e {
            DestructionError::Refused(code, message) => {
                let status = match code {
                    "invalid_field" => StatusCode::UNPROCESSABLE_ENTITY,
                    "session_not_found" | "destruction_not_found" => StatusCode::NOT_FOUND,
                    _ => StatusCode::CONFLICT,
                };
                ApiError::new(status, code, message)
            }
            DestructionError::Db(e) => internal(e),
            DestructionError::Store(m) => {
                tracing::error!(error = %m, "destruction: object store");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "store_unavailable",
                    "the object store refused a deletion; nothing more was destroyed, see the server log",
                )
            }
        }
    }
}

async fn list_destructions(
    State(s): State<AppState>,
) -> Result<Json<Vec<destruction::Request>>, ApiError> {
    Ok(Json(destruction::list(&s.pool).await.map_err(internal)?))
}

async fn get_destruction(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<destruction::Request>, ApiError> {
    destruction::get(&s.pool, &id)
        .await
        .map_err(internal)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "destruction_not_found",
                format!("destruction request {id:?} not found"),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppraisalBody {
    committee: String,
    conclusion: String,
    reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeRequest {
    session_ids: Vec<String>,
    appraisal: AppraisalBody,
}

async fn propose_destruction(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<ProposeRequest>,
) -> Result<Response, ApiError> {
    let who = actor.actor("").name();
    let proposal = destruction::propose(
        &s.pool,
        &s.policies,
        &req.session_ids,
        destruction::Appraisal {
            committee: &req.appraisal.committee,
            conclusion: &req.appraisal.conclusion,
            reference: &req.appraisal.reference,
        },
        &who,
    )
    .await?;
    audit_change(
        &s,
        audit::Event::new(&actor.actor(&address), "destruction_propose")
            .target(&proposal.id)
            .reason(format!(
                "{} sessions; appraisal {}: {}",
                proposal.session_ids.len(),
                proposal.appraisal_reference,
                proposal.appraisal_conclusion
            )),
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(Audited), Json(proposal)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    /// `approve` or `reject`.
    decision: String,
    reason: String,
}

async fn decide_destruction(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Response, ApiError> {
    let approve = match req.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(invalid(format!(
                "decision {other:?} is not valid, expected approve or reject"
            )));
        }
    };
    let (who, role) = (actor.actor("").name(), actor.actor("").role);
    let after = destruction::decide(&s.pool, &id, approve, &req.reason, &who, role).await?;
    audit_change(
        &s,
        audit::Event::new(
            &actor.actor(&address),
            if approve {
                "destruction_approve"
            } else {
                "destruction_reject"
            },
        )
        .target(&id)
        .reason(&req.reason),
    )
    .await?;
    Ok((Extension(Audited), Json(after)).into_response())
}

async fn execute_destruction(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Response, ApiError> {
    let who = actor.actor("").name();
    let register =
        destruction::execute(&s.pool, &s.store, s.worm.as_deref(), &s.policies, &id, &who).await?;
    let bytes: i64 = register.iter().map(|r| r.bytes).sum();
    let mut sessions: Vec<&str> = register.iter().map(|r| r.session_id.as_str()).collect();
    sessions.dedup();
    for session in &sessions {
        let project = register
            .iter()
            .find(|r| r.session_id == *session)
            .map(|r| r.project_code.as_str());
        audit_change(
            &s,
            audit::Event::new(&actor.actor(&address), "destruction_execute")
                .about(Some(session), project)
                .target(&id)
                .reason(format!(
                    "{} objects destroyed",
                    register.iter().filter(|r| r.session_id == *session).count()
                )),
        )
        .await?;
    }
    Ok((
        Extension(Audited),
        Json(serde_json::json!({
            "request": id,
            "objects": register.len(),
            "bytes": bytes,
            "register": register,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterQuery {
    session: Option<String>,
}

async fn destruction_register(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<RegisterQuery>,
) -> Result<Json<Vec<destruction::RegisterEntry>>, ApiError> {
    Ok(Json(
        destruction::register(&s.pool, q.session.as_deref())
            .await
            .map_err(internal)?,
    ))
}
