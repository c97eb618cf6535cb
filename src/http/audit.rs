//! `GET /api/v1/audit`: the trail, filtered, as JSON pages or one CSV download;
//! `GET /api/v1/audit/verify`: the chain and checkpoints checked now. Reading the trail is
//! itself audited.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::Deserialize;

use crate::audit::{AuditEntry, Filter};
use crate::http::access::CurrentActor;
use crate::http::{ApiError, ApiQuery, AppState, ClientAddr};

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "audit_view" => on(method, list),
        "audit_verify" => on(method, verify),
        _ => return None,
    })
}

const MAX_PAGE: i64 = 1000;
const MAX_CSV_ROWS: i64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    user: Option<String>,
    session: Option<String>,
    project: Option<String>,
    action: Option<String>,
    /// RFC 3339 bounds on the entry time: [from, to).
    from: Option<String>,
    to: Option<String>,
    flagged: Option<bool>,
    #[serde(default)]
    after_seq: i64,
    limit: Option<i64>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

async fn list(
    State(s): State<AppState>,
    ClientAddr(address): ClientAddr,
    actor: CurrentActor,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let time = |field: &str, v: &Option<String>| {
        crate::time::parse_wall_clock(field, v.as_deref()).map_err(bad)
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(bad(format!("format {other:?}: expected json or csv"))),
    };
    let limit = match q.limit {
        None => MAX_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => return Err(bad(format!("limit {n}: expected 1 to {MAX_PAGE}"))),
    };
    if q.after_seq < 0 {
        return Err(bad("after_seq: expected 0 or more"));
    }
    let mut filter = Filter {
        actor: q.user,
        session_id: q.session,
        project_code: q.project,
        action: q.action,
        from_us: time("from", &q.from)?,
        to_us: time("to", &q.to)?,
        flagged: q.flagged,
        after_seq: q.after_seq,
        limit,
    };
    let pool = &s.pool;
    crate::audit::Event::new(&actor.actor(&address), "audit_view")
        .target(if csv { "csv" } else { "json" })
        .append(pool)
        .await
        .map_err(ApiError::internal)?;
    if !csv {
        let entries = crate::audit::query(pool, &filter)
            .await
            .map_err(ApiError::internal)?;
        let next = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.seq));
        return Ok(Json(serde_json::json!({
            "entries": entries,
            "next_after_seq": next.flatten(),
        }))
        .into_response());
    }
    // CSV: the whole filtered trail, a page at a time into one body.
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER).map_err(ApiError::internal)?;
    let mut rows = 0;
    loop {
        let entries = crate::audit::query(pool, &filter)
            .await
            .map_err(ApiError::internal)?;
        for e in &entries {
            out.write_record(csv_row(e)).map_err(ApiError::internal)?;
        }
        rows += entries.len() as i64;
        match entries.last() {
            Some(last) if entries.len() as i64 == limit && rows < MAX_CSV_ROWS => {
                filter.after_seq = last.seq
            }
            _ => break,
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(e.into_error()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"witness-audit.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

const CSV_HEADER: [&str; 15] = [
    "seq",
    "time",
    "actor",
    "role",
    "address",
    "action",
    "session",
    "project",
    "target",
    "reason",
    "outcome",
    "flagged",
    "id",
    "prev_hash",
    "entry_hash",
];

/// Cells a spreadsheet would run as formulas are prefixed with `'` (CSV injection).
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn csv_row(e: &AuditEntry) -> Vec<String> {
    vec![
        e.seq.to_string(),
        crate::time::rfc3339(e.at_us),
        cell(&e.actor),
        cell(&e.actor_role),
        cell(&e.address),
        cell(&e.action),
        cell(e.session_id.as_deref().unwrap_or("")),
        cell(e.project_code.as_deref().unwrap_or("")),
        cell(&e.target),
        cell(&e.reason),
        cell(&e.outcome),
        e.flagged.to_string(),
        e.id.clone(),
        e.prev_hash.clone(),
        e.entry_hash.clone(),
    ]
}

async fn verify(
    State(s): State<AppState>,
) -> Result<Json<crate::audit::verify::AuditReport>, ApiError> {
    let core = &s.sessions;
    Ok(Json(
        crate::audit::verify::verify(
            &core.pool,
            &core.signer.all_public_keys(),
            core.timestamps.tsa.as_ref().map(|t| &t.ca),
        )
        .await
        .map_err(ApiError::internal)?,
    ))
}
