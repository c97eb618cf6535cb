//! HTTP face of evidence packages: `POST /sessions/{id}/exports` starts a job that plans the
//! package (chains, checkpoints, manifest, audit entries; derived MP4s when asked for) without
//! reading the media (state, bytes, percent and ETA at `GET /exports/{id}`);
//! `GET /exports/{id}/download` then streams the tar or zip, reading each object once from the
//! store and checking it against its chain entry as it goes, in constant memory. An object that
//! does not match (or is missing) cuts the download off, so the client sees a failed transfer
//! and never a whole package, and fails the job with the reason. Jobs live in memory: after a
//! restart, ask again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::evidence::access::{MediaAccess, Read};
use crate::evidence::export::{self, Format, Plan, Selection};
use crate::http::access::{CurrentActor, audited_refusal};
use crate::http::{ApiError, ApiJson, ApiQuery, AppState, ClientAddr};
use crate::workload::Work;

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "export_start" => on(method, start),
        "project_export_start" => on(method, start_project),
        "export_status" => on(method, status),
        "export_download" => on(method, download),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum JobState {
    Preparing,
    Ready,
    Failed,
}

struct Job {
    /// The session of a session package; empty for a project package.
    session_id: String,
    /// The project of a project package.
    project_code: Option<String>,
    /// The exporter's reason, kept in the audit entry of every download of the package.
    reason: String,
    state: JobState,
    done: u64,
    total: u64,
    started: Instant,
    /// When it became ready or failed: it is kept `[workload] export_job_minutes` after that.
    finished: Option<Instant>,
    error: Option<String>,
    plan: Option<Arc<Plan>>,
}

/// The export jobs of this process.
#[derive(Default)]
pub struct ExportJobs {
    jobs: Mutex<HashMap<String, Arc<Mutex<Job>>>>,
}

impl ExportJobs {
    /// Forgets the jobs finished longer than `ttl` ago; their derived files go with their plan
    /// (once no download still streams them).
    fn expire(&self, ttl: std::time::Duration) {
        self.jobs.lock().expect("jobs lock").retain(|id, j| {
            let keep = j
                .lock()
                .expect("job lock")
                .finished
                .is_none_or(|f| f.elapsed() < ttl);
            if !keep {
                tracing::info!(export = %id, "export job expired; its scratch files deleted");
            }
            keep
        });
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartExport {
    #[serde(default)]
    sources: Vec<String>,
    /// RFC 3339 wall-clock bounds; segments overlapping [from, to) are included.
    from: Option<String>,
    to: Option<String>,
    reason: String,
    /// Also one concatenated playable MP4 per source under `derived/`, marked as not evidence.
    #[serde(default)]
    derived_mp4: bool,
}

#[derive(Debug, Serialize)]
struct JobView {
    id: String,
    session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_code: Option<String>,
    state: JobState,
    bytes_done: u64,
    bytes_total: u64,
    percent: f64,
    eta_seconds: Option<f64>,
    package_id: Option<String>,
    package_bytes_payload: Option<u64>,
    download: Option<String>,
    error: Option<String>,
}

fn view(id: &str, j: &Job) -> JobView {
    let percent = if j.total == 0 {
        if j.state == JobState::Ready {
            100.0
        } else {
            0.0
        }
    } else {
        j.done as f64 * 100.0 / j.total as f64
    };
    let elapsed = j.started.elapsed().as_secs_f64();
    let eta = (j.state == JobState::Preparing && j.done > 0)
        .then(|| (j.total.saturating_sub(j.done)) as f64 / (j.done as f64 / elapsed.max(1e-3)));
    JobView {
        id: id.into(),
        session_id: j.session_id.clone(),
        project_code: j.project_code.clone(),
        state: j.state,
        bytes_done: j.done,
        bytes_total: j.total,
        percent,
        eta_seconds: eta,
        package_id: j.plan.as_ref().map(|p| p.package_id.clone()),
        package_bytes_payload: j.plan.as_ref().map(|p| p.payload_bytes),
        download: (j.state == JobState::Ready).then(|| format!("/api/v1/exports/{id}/download")),
        error: j.error.clone(),
    }
}

async fn start(
    State(s): State<AppState>,
    Path(session_id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<StartExport>,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(req.sources, req.from.as_deref(), req.to.as_deref())
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", m))?;
    let core = s.sessions.clone();
    let exporter = actor.actor(&address);
    let caller = actor.0.clone();
    // Refuse what would fail at once (unknown or live session, no reason) and what the caller
    // may not have (`evidence::access`: audited) before starting a job.
    let asked = export::ExportRequest {
        derived_mp4_dir: req
            .derived_mp4
            .then_some(core.config.export_scratch_dir.as_path()),
        session_id: &session_id,
        by: &exporter,
        caller: caller.as_ref(),
        reason: &req.reason,
        selection: selection.clone(),
        disk: Some(&core.disk),
    };
    if let Err(e) = export::authorize(&core.pool, &asked).await {
        return Ok(audited_refusal(e));
    }
    // Held until the package is planned (every object read and hashed).
    let permit = core
        .workload
        .admit(Work::Export, &exporter.person)
        .map_err(CoreError::from)?;
    s.exports.expire(s.export_job_ttl);
    let id = uuid::Uuid::now_v7().to_string();
    let job = Arc::new(Mutex::new(Job {
        session_id: session_id.clone(),
        project_code: None,
        reason: req.reason.clone(),
        state: JobState::Preparing,
        done: 0,
        total: 0,
        started: Instant::now(),
        finished: None,
        error: None,
        plan: None,
    }));
    s.exports
        .jobs
        .lock()
        .expect("jobs lock")
        .insert(id.clone(), job.clone());
    let first = view(&id, &job.lock().expect("job lock"));
    let reason = req.reason;
    let derived_mp4 = req.derived_mp4;
    let job_id = id.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let req = export::ExportRequest {
            derived_mp4_dir: derived_mp4.then_some(core.config.export_scratch_dir.as_path()),
            session_id: &session_id,
            by: &exporter,
            caller: caller.as_ref(),
            reason: &reason,
            selection,
            disk: Some(&core.disk),
        };
        let result = export::plan(&core.pool, &core.store, &core.signer, req).await;
        let mut j = job.lock().expect("job lock");
        match result {
            Ok(plan) => {
                j.total = plan.payload_bytes;
                j.done = j.total;
                j.state = JobState::Ready;
                j.finished = Some(Instant::now());
                j.plan = Some(Arc::new(plan));
            }
            Err(e) => {
                tracing::warn!(export = %job_id, error = %e, "export failed");
                j.finished = Some(Instant::now());
                j.state = JobState::Failed;
                j.error = Some(e.to_string());
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(first)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartProjectExport {
    reason: String,
}

/// A project package (一项一档): every session of the project, its catalogue, registry and
/// bookings, and an audit extract; progress and download as a session package's.
async fn start_project(
    State(s): State<AppState>,
    Path(project): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiJson(req): ApiJson<StartProjectExport>,
) -> Result<Response, ApiError> {
    use crate::project_archive::package::{self, ProjectExport};
    let core = s.sessions.clone();
    let exporter = actor.actor(&address);
    let caller = actor.0.clone();
    let scope = actor.scope();
    let asked = ProjectExport {
        project_code: &project,
        by: &exporter,
        caller: caller.as_ref(),
        scope: &scope,
        reason: &req.reason,
        disk: Some(&core.disk),
    };
    package::check(&core, &asked).await?;
    let permit = core
        .workload
        .admit(Work::Export, &exporter.person)
        .map_err(CoreError::from)?;
    s.exports.expire(s.export_job_ttl);
    let id = uuid::Uuid::now_v7().to_string();
    let job = Arc::new(Mutex::new(Job {
        session_id: String::new(),
        project_code: Some(project.clone()),
        reason: req.reason.clone(),
        state: JobState::Preparing,
        done: 0,
        total: 0,
        started: Instant::now(),
        finished: None,
        error: None,
        plan: None,
    }));
    s.exports
        .jobs
        .lock()
        .expect("jobs lock")
        .insert(id.clone(), job.clone());
    let first = view(&id, &job.lock().expect("job lock"));
    let job_id = id.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let req = ProjectExport {
            project_code: &project,
            by: &exporter,
            caller: caller.as_ref(),
            scope: &scope,
            reason: &req.reason,
            disk: Some(&core.disk),
        };
        let result = package::plan(&core, req).await;
        let mut j = job.lock().expect("job lock");
        j.finished = Some(Instant::now());
        match result {
            Ok(plan) => {
                j.total = plan.payload_bytes;
                j.done = j.total;
                j.state = JobState::Ready;
                j.plan = Some(Arc::new(plan));
            }
            Err(e) => {
                tracing::warn!(export = %job_id, error = %e, "project export failed");
                j.state = JobState::Failed;
                j.error = Some(e.to_string());
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(first)).into_response())
}

fn job(s: &AppState, id: &str) -> Result<Arc<Mutex<Job>>, ApiError> {
    s.exports.expire(s.export_job_ttl);
    s.exports
        .jobs
        .lock()
        .expect("jobs lock")
        .get(id)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "export_not_found",
                format!(
                    "export {id:?} not found (jobs are kept {} minutes after they finish)",
                    s.export_job_ttl.as_secs() / 60
                ),
            )
        })
}

async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let j = job(&s, &id)?;
    let v = view(&id, &j.lock().expect("job lock"));
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadQuery {
    /// `tar` (default) or `zip`: the same package in either container.
    #[serde(default)]
    format: Format,
}

async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let j = job(&s, &id)?;
    let (plan, reason) = {
        let j = j.lock().expect("job lock");
        match (&j.plan, j.state) {
            (Some(p), JobState::Ready) => (p.clone(), j.reason.clone()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "export_not_ready",
                    format!("export {id} is {:?}", j.state).to_lowercase(),
                ));
            }
        }
    };
    let core = s.sessions.clone();
    let viewer = actor.actor(&address);
    // Every session the package holds, by the rule of `evidence::access`: all may be read, or
    // the download is refused (audited); then each read is recorded.
    let mut sessions = Vec::new();
    for session_id in &plan.session_ids {
        sessions.push(crate::ledger::index::existing_session(&core.pool, session_id).await?);
    }
    let accesses: Vec<MediaAccess> = sessions
        .iter()
        .map(|session| MediaAccess {
            actor: &viewer,
            caller: actor.0.as_ref(),
            read: Read::Package {
                derived_mp4: !plan.derived.is_empty(),
            },
            action: "export_download",
            session,
            source: "",
            target: plan.package_id.clone(),
            reason: &reason,
            supervision: false,
        })
        .collect();
    for access in &accesses {
        access.check(&core.pool).await?;
    }
    let permit = core
        .workload
        .admit(Work::Export, &viewer.person)
        .map_err(CoreError::from)?;
    for access in &accesses {
        access.record(&core.pool).await?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let writer_plan = plan.clone();
    tokio::spawn(async move {
        let sent = export::write(writer_plan, core.store.clone(), q.format, |chunk| {
            let tx = tx.clone();
            async move {
                tx.send(Ok(bytes::Bytes::from(chunk)))
                    .await
                    .map_err(|_| CoreError::Internal("download abandoned by the client".into()))
            }
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "export download ended early");
            // The stream ends in an error, not a last chunk: what the client has is no package.
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            if let CoreError::Conflict {
                code: "store_tampered",
                ..
            } = e
            {
                let mut j = j.lock().expect("job lock");
                j.state = JobState::Failed;
                j.finished = Some(Instant::now());
                j.error = Some(e.to_string());
            }
        }
    });
    // The permit travels with the body: held until the client has the package, or goes.
    let stream = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.recv().await.map(|item| (item, (rx, permit)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, q.format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.{}\"",
                    plan.root,
                    q.format.extension()
                ),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
