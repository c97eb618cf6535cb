//! The project's evidence package (一项一档): every session of the project as its own package
//! carries it (`data/sessions/{id}/…`), the catalogue (`data/catalogue.json`, the printable
//! `data/catalogue.html`), the registry entry with its sections and the bookings with their
//! history (`data/project.json`) and an audit extract of the project and its sessions
//! (`data/audit/audit.jsonl`), in the session package's BagIt format (`evidence::export`,
//! which plans and writes it) and checked offline by `witness verify` (`evidence::package`).

use std::sync::Arc;

use super::{ArchiveError, gather};
use crate::audit::Actor;
use crate::disk::DiskWatch;
use crate::error::CoreError;
use crate::evidence::archive::PackageSink;
use crate::evidence::export::{self, Format, Plan, Progress, ProjectExportRequest};
use crate::evidence::project_catalogue;
use crate::identity::caller::{Caller, Scope};
use crate::ledger::index::{SessionFilter, list_sessions};
use crate::retention::project_code::ProjectCode;
use crate::sessions::Core;

/// A project package as asked.
pub struct ProjectExport<'a> {
    pub project_code: &'a str,
    pub by: &'a Actor,
    /// The authenticated caller (`evidence::access` applies to each session); `None` for the
    /// server's own command line.
    pub caller: Option<&'a Caller>,
    pub scope: &'a Scope,
    pub reason: &'a str,
    pub disk: Option<&'a DiskWatch>,
}

/// What can be refused before a job starts, cheaply: the code, the caller's scope over the
/// project, the reason, a session still recording (named) or none at all. Every session's own
/// check (`evidence::export::authorize_project`, refusals audited) runs again in `plan`.
pub async fn check(core: &Core, req: &ProjectExport<'_>) -> Result<(), ArchiveError> {
    let code = ProjectCode::parse(req.project_code)?;
    crate::projects::view::view(&core.pool, req.scope, &code).await?;
    if req.reason.trim().is_empty() || req.reason.chars().count() > 500 {
        return Err(CoreError::invalid(
            "reason_required",
            "an export needs a reason (1 to 500 characters); it is recorded",
        )
        .into());
    }
    let sessions = list_sessions(
        &core.pool,
        &SessionFilter {
            project_code: Some(code.as_str().to_string()),
            ..SessionFilter::default()
        },
        1000,
    )
    .await?;
    if let Some(live) = sessions.iter().find(|s| !s.state.is_sealed()) {
        return Err(CoreError::conflict(
            "session_not_stopped",
            format!(
                "session {} ({}) of project {} is {}; export the project once every session is stopped",
                live.id,
                live.session_code,
                code.as_str(),
                live.state
            ),
        )
        .into());
    }
    if sessions.is_empty() {
        return Err(CoreError::conflict(
            "project_has_no_sessions",
            format!(
                "project {} has no recorded session to export",
                code.as_str()
            ),
        )
        .into());
    }
    if let Some(disk) = req.disk {
        disk.admit_export(0).map_err(CoreError::from)?;
    }
    Ok(())
}

/// Gathers the archive (each session verified), then plans the package with the project's own
/// files. Audited by `evidence::export::plan_project`.
pub async fn plan(core: &Core, req: ProjectExport<'_>) -> Result<Plan, ArchiveError> {
    check(core, &req).await?;
    let archive = gather(core, req.scope, req.project_code).await?;
    let project_json = serde_json::to_vec_pretty(&serde_json::json!({
        "project_code": archive.project_code,
        "registered": archive.registered,
        "bookings": archive.bookings,
        "holds": archive.holds,
        "completeness": archive.completeness,
        "checked_at": archive.checked_at,
    }))
    .map_err(|e| CoreError::Internal(e.to_string()))?;
    let catalogue_json = serde_json::to_vec_pretty(&archive.catalogue)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let name = archive
        .registered
        .as_ref()
        .map(|d| d.project.name.clone())
        .unwrap_or_default();
    let catalogue_html = archive.catalogue.html(&name).into_bytes();
    let files = vec![
        ("data/project.json".to_string(), project_json),
        (project_catalogue::JSON_PATH.to_string(), catalogue_json),
        (project_catalogue::HTML_PATH.to_string(), catalogue_html),
    ];
    Ok(export::plan_project(
        &core.pool,
        &core.store,
        &core.signer,
        ProjectExportRequest {
            project_code: &archive.project_code,
            session_ids: archive.sessions.iter().map(|s| s.id.clone()).collect(),
            project_files: files,
            by: req.by,
            caller: req.caller,
            reason: req.reason,
            disk: req.disk,
        },
    )
    .await?)
}

/// Plans and writes the project package to a file-like sink, handed back flushed:
/// `witness export --project`. On an error the sink holds part of a package, which the caller
/// discards.
pub async fn export_to<W: PackageSink + Send + 'static>(
    core: &Core,
    req: ProjectExport<'_>,
    format: Format,
    out: W,
    progress: Progress,
) -> Result<(Arc<Plan>, W), ArchiveError> {
    let plan = Arc::new(plan(core, req).await?);
    let out = export::write_to(plan.clone(), core.store.clone(), format, out, progress).await?;
    Ok((plan, out))
}
