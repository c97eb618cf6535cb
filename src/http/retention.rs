//! Retention over HTTP: a session's retention (rule, basis, retain-until, holds), the policies
//! in force, project events that start clocks, complaints that place holds, holds themselves,
//! fixity and lawful destruction. Each handler parses the request, calls one operation of
//! `crate::retention` (which checks, acts and audits) and shapes the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::http::access::{Audited, CurrentActor};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};
use crate::ledger::index::existing_session;
use crate::retention::candidates::{self, Candidate};
use crate::retention::complaints::{self, Complaint};
use crate::retention::destruction;
use crate::retention::holds::{self, HoldRequest};
use crate::retention::project_code::ProjectCode;
use crate::retention::projects::{self, EventDate};
use crate::retention::{RetentionError, fixity};
use crate::time::parse_wall_clock;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "policies_view" => on(method, policies),
        "retention_candidates" => on(method, list_candidates),
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
        "project_event" => on(method, project_events),
        "project_event_decide" => on(method, decide_project_event),
        "complaint_file" => on(method, file_complaint),
        "holds_list" => on(method, list_holds),
        "hold_place" => on(method, place_hold),
        "hold_release" => on(method, release_hold),
        _ => return None,
    })
}

/// A time given in RFC 3339, refused as `invalid_field`.
fn wall_clock(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    parse_wall_clock(field, value).map_err(|m| RetentionError::invalid(m).into())
}

/// A date of a project event, as understood and as given.
fn event_date<'a>(field: &str, given: Option<&'a str>) -> Result<Option<EventDate<'a>>, ApiError> {
    let at = wall_clock(field, given)?;
    Ok(at
        .zip(given)
        .map(|(at_us, given)| EventDate { at_us, given }))
}

async fn policies(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": s.policies.version,
        "jurisdiction": s.policies.jurisdiction,
        "rules": s.policies.rules,
    }))
}

/// Sessions that are expired and not held: candidates for appraisal, nothing more.
async fn list_candidates(
    State(s): State<AppState>,
    actor: CurrentActor,
) -> Result<Json<Vec<Candidate>>, ApiError> {
    Ok(Json(
        candidates::visible(&s.pool, &s.policies, &actor.scope(), false).await?,
    ))
}

/// What a lawful destruction of every candidate would remove, object by object, and why. Deletes
/// nothing; the report itself is audited.
async fn dry_run(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report =
        candidates::dry_run(&s.pool, &s.policies, &actor.actor(&address), &actor.scope()).await?;
    Ok(Json(serde_json::json!({
        "dry_run": true,
        "policy_version": s.policies.version,
        "sessions": report.sessions,
        "objects": report.objects,
        "bytes": report.bytes,
        "note": "nothing was deleted; destruction needs an appraisal record and two approvers",
        "candidates": report.candidates,
    })))
}

async fn fixity_reports(
    State(s): State<AppState>,
) -> Result<Json<Vec<fixity::FixityReport>>, ApiError> {
    Ok(Json(
        fixity::reports(&s.pool, 100)
            .await
            .map_err(RetentionError::from)?,
    ))
}

/// Starts a fixity run now (in the background; its report appears under /fixity/reports).
async fn fixity_run(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> (StatusCode, Json<serde_json::Value>) {
    fixity::start(
        s.pool.clone(),
        s.store.clone(),
        s.fixity.clone(),
        s.fixity_bytes_per_second,
        actor.actor(&address),
    );
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
            .map_err(RetentionError::from)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsRequest {
    /// RFC 3339; the first date given is in force, a different one later is a correction.
    closed_at: Option<String>,
    procurement_ended_at: Option<String>,
    reason: Option<String>,
}

/// A refusal of a destruction by the separated-duties rules, which the domain audited
/// (`same_person`, `not_independent`, `sole_actor`), answered with `Audited`; others as they are.
fn duties_refusal(e: RetentionError) -> Response {
    let audited = matches!(
        e,
        RetentionError::Conflict {
            code: "same_person" | "not_independent" | "sole_actor",
            ..
        }
    );
    let mut response = ApiError::from(e).into_response();
    if audited {
        response.extensions_mut().insert(Audited);
    }
    response
}

/// A refusal of the domain, which audited it (all but a database failure).
fn audited(e: RetentionError) -> Response {
    let is_db = matches!(e, RetentionError::Db(_));
    let mut response = ApiError::from(e).into_response();
    if !is_db {
        response.extensions_mut().insert(Audited);
    }
    response
}

async fn project_events(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<EventsRequest>,
) -> Result<Response, ApiError> {
    let code = ProjectCode::parse(&project)?;
    let closed = event_date("closed_at", req.closed_at.as_deref())?;
    let ended = event_date("procurement_ended_at", req.procurement_ended_at.as_deref())?;
    let reported = match projects::record_events(
        &s.pool,
        &s.policies,
        &actor.actor(&address),
        &code,
        closed,
        ended,
        req.reason.as_deref(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return Ok(audited(e)),
    };
    Ok((
        Extension(Audited),
        Json(serde_json::json!({
            "project_code": project,
            "closed_at": reported.events.closed_at_us.map(crate::time::rfc3339),
            "procurement_ended_at": reported.events.procurement_ended_at_us.map(crate::time::rfc3339),
            "outcomes": reported.outcomes,
        })),
    )
        .into_response())
}

async fn decide_project_event(
    State(s): State<AppState>,
    Path((project, id)): Path<(String, String)>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Response, ApiError> {
    let code = ProjectCode::parse(&project)?;
    match projects::decide(
        &s.pool,
        &s.policies,
        &actor.actor(&address),
        &code,
        &id,
        &req.decision,
        &req.reason,
    )
    .await
    {
        Ok(c) => Ok((Extension(Audited), Json(c)).into_response()),
        Err(e) => Ok(audited(e)),
    }
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
    let code = ProjectCode::parse(&project)?;
    let hold = complaints::file(
        &s.pool,
        &actor.actor(&address),
        &actor.scope(),
        &code,
        Complaint {
            kind: &req.kind,
            reference: &req.reference,
            reason: &req.reason,
            authority: &req.authority,
        },
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
    Ok(Json(holds::visible(&s.pool, &actor.scope(), !q.all).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceHoldRequest {
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
    ApiJson(req): ApiJson<PlaceHoldRequest>,
) -> Result<Response, ApiError> {
    let from_us = wall_clock("from", req.from.as_deref())?;
    let to_us = wall_clock("to", req.to.as_deref())?;
    let hold = holds::place(
        &s.pool,
        &actor.actor(&address),
        &actor.scope(),
        HoldRequest {
            scope: &req.scope,
            project_code: req.project_code.as_deref(),
            session_id: req.session_id.as_deref(),
            room_id: req.room_id.as_deref(),
            from_us,
            to_us,
            reason: &req.reason,
            authority: &req.authority,
            reference: &req.reference,
        },
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
    let after = holds::release(&s.pool, &actor.actor(&address), &id, &req.reason).await?;
    Ok((Extension(Audited), Json(after)).into_response())
}

// ---- lawful destruction ------------------------------------------------------------------------

async fn list_destructions(
    State(s): State<AppState>,
) -> Result<Json<Vec<destruction::Request>>, ApiError> {
    Ok(Json(
        destruction::list(&s.pool)
            .await
            .map_err(RetentionError::from)?,
    ))
}

async fn get_destruction(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<destruction::Request>, ApiError> {
    Ok(Json(destruction::find(&s.pool, &id).await?))
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
    let proposal = destruction::propose(
        &s.pool,
        &s.policies,
        &actor.actor(&address),
        &req.session_ids,
        destruction::Appraisal {
            committee: &req.appraisal.committee,
            conclusion: &req.appraisal.conclusion,
            reference: &req.appraisal.reference,
        },
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
) -> Result<Response, Response> {
    let after = destruction::decide(
        &s.pool,
        &actor.actor(&address),
        &id,
        &req.decision,
        &req.reason,
    )
    .await
    .map_err(duties_refusal)?;
    Ok((Extension(Audited), Json(after)).into_response())
}

async fn execute_destruction(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
) -> Result<Response, Response> {
    let register = destruction::execute(
        &s.pool,
        &s.store,
        &s.signer,
        s.worm.as_deref(),
        &s.policies,
        &actor.actor(&address),
        &id,
    )
    .await
    .map_err(duties_refusal)?;
    let bytes: i64 = register.iter().map(|r| r.bytes).sum();
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
            .map_err(RetentionError::from)?,
    ))
}
