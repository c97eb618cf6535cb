//! One archive per project (一项一档, standard 5.6): everything the centre holds of a project in
//! one place, its catalogue (卷内目录) and a completeness check.
//!
//! - `mod.rs`: the archive of a project (registration and sections with their history, bookings
//!   with their history, sessions with their verification verdict and witness-record status,
//!   holds, exports, destruction requests), the catalogue in archive order, and the completeness
//!   check (what is missing, with a reason in Chinese and English). Every view is audited
//!   (`archive_view`, 5.8 档案查询).
//! - `package.rs`: the project's evidence package (every session, the catalogue, the project's
//!   registry, sections and bookings, an audit extract), planned by `evidence::export`.
//!
//! Above `bookings/`, `sessions/`, `evidence/` and `projects/`: it reads them all, changes none.

pub mod package;

use serde::Serialize;

use crate::audit::{self, Actor, AuditEntry};
use crate::bookings::{self, Booking, BookingFilter, BookingState, HistoryEntry};
use crate::error::CoreError;
use crate::evidence::export::project_session_prefix;
use crate::evidence::project_catalogue::Catalogue;
use crate::identity::caller::Scope;
use crate::ledger::coverage::Verdict;
use crate::ledger::index::{self, SessionRow};
use crate::ledger::witness_record as record;
use crate::projects::ProjectError;
use crate::projects::sections::SectionState;
use crate::projects::view::{self, ProjectDetail};
use crate::retention::RetentionError;
use crate::retention::destruction;
use crate::retention::holds::{self, Hold};
use crate::retention::project_code::ProjectCode;
use crate::sessions::Core;
use crate::time::{now_us, rfc3339};

/// What an archive operation refuses, by the module whose rule refused it.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Retention(#[from] RetentionError),
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> Self {
        ArchiveError::Core(CoreError::Db(e))
    }
}

/// A booking with its history and the sessions that recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct BookedActivity {
    #[serde(flatten)]
    pub booking: Booking,
    /// The activity's name in Chinese and English (the catalogue's).
    pub activity_zh: String,
    pub activity_en: String,
    pub history: Vec<HistoryEntry>,
    pub session_ids: Vec<String>,
}

/// The witness record of a session, as the archive shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WitnessRecordStatus {
    pub entries: usize,
    pub signed: bool,
    pub signed_by: Option<String>,
    pub signed_at: Option<String>,
    /// The signed session manifest binds the record as it is (checked by the verification).
    pub bound_in_manifest: bool,
}

/// A session of the project, with what the archive judges it by.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedSession {
    pub id: String,
    pub session_code: String,
    pub kind: String,
    pub state: String,
    pub room_id: String,
    pub room_name: String,
    pub started_at: String,
    pub stopped_at: Option<String>,
    pub started_by: Option<String>,
    pub booking_id: Option<String>,
    pub confidential: bool,
    /// `INTACT`, `INCOMPLETE`, `TAMPERED`, or `RECORDING` (not verified while it records).
    pub verification: String,
    /// The verifier's line.
    pub verdict: String,
    pub recordings: Vec<ArchivedRecording>,
    pub manifest_key: Option<String>,
    pub witness_record: WitnessRecordStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchivedRecording {
    pub id: String,
    pub source: String,
    pub segments: i64,
}

/// One thing the completeness check finds missing, with why (zh and en).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Missing {
    /// `booking`, `session` or `section`.
    pub item: &'static str,
    /// Its id (booking, session) or code (section).
    pub reference: String,
    /// Stable snake_case: `no_session`, `still_recording`, `not_intact`,
    /// `witness_record_unsigned`, `witness_record_not_bound`, `section_without_booking`.
    pub code: &'static str,
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completeness {
    /// Nothing missing.
    pub complete: bool,
    /// Booked activities judged (ended, or recorded).
    pub activities_checked: usize,
    /// Bookings still to come (not judged yet).
    pub pending: Vec<String>,
    pub missing: Vec<Missing>,
}

/// An export of the project or of one of its sessions, from the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedExport {
    pub action: String,
    pub at: String,
    pub actor: String,
    pub session_id: Option<String>,
    /// The package id (and what it was part of).
    pub target: String,
    pub reason: String,
    pub outcome: String,
}

/// The archive of one project, as `GET /api/v1/projects/{code}/archive` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectArchive {
    pub project_code: String,
    /// The registry entry with its sections and their history; `None` for a code only sessions
    /// know (recorded before the registry).
    pub registered: Option<ProjectDetail>,
    pub bookings: Vec<BookedActivity>,
    pub sessions: Vec<ArchivedSession>,
    pub holds: Vec<Hold>,
    pub exports: Vec<ArchivedExport>,
    pub destructions: Vec<destruction::Request>,
    pub catalogue: Catalogue,
    pub completeness: Completeness,
    pub checked_at: String,
}

/// The archive of `code` for a caller whose scope sees the project; the view is audited
/// (`archive_view`, with the completeness found). Its verifications count as one heavy read of
/// the caller's (`workload`, `Work::Verify`): 429 `too_busy` beyond the bound.
pub async fn view(
    core: &Core,
    scope: &Scope,
    by: &Actor,
    code: &str,
) -> Result<ProjectArchive, ArchiveError> {
    let _permit = core
        .workload
        .admit(crate::workload::Work::Verify, &by.person)
        .map_err(CoreError::from)?;
    let archive = gather(core, scope, code).await?;
    audit::Event::new(by, "archive_view")
        .project(&archive.project_code)
        .target(if archive.completeness.complete {
            "complete".to_string()
        } else {
            format!("{} missing", archive.completeness.missing.len())
        })
        .append(&core.pool)
        .await?;
    Ok(archive)
}

/// Gathers the archive (not audited: `view` and the package audit what they do with it).
///
/// Each stopped session is verified now (`ledger::verify`, which re-reads every object) rather
/// than trusted to its last recorded verdict: completeness is a statement about the evidence as
/// it is when asked, and an object altered after the last verification must show. A project has
/// a handful of sessions; the reads are those a verification of each would make.
pub async fn gather(
    core: &Core,
    scope: &Scope,
    code: &str,
) -> Result<ProjectArchive, ArchiveError> {
    let code = ProjectCode::parse(code)?;
    let p = view::view(&core.pool, scope, &code).await?;
    let code = code.as_str().to_string();
    let bookings = bookings::list(
        &core.pool,
        scope,
        &BookingFilter {
            project_code: Some(code.clone()),
            include_cancelled: true,
            ..BookingFilter::default()
        },
    )
    .await?;
    if p.registered.is_none() && p.sessions.is_empty() && bookings.is_empty() {
        return Err(ProjectError::not_found(
            "project_not_found",
            format!("project {code:?} is neither registered nor recorded"),
        )
        .into());
    }
    let mut rows = Vec::new();
    for s in &p.sessions {
        rows.push(index::existing_session(&core.pool, &s.id).await?);
    }
    rows.sort_by_key(|s| s.started_at_us);
    let mut sessions = Vec::new();
    for s in &rows {
        sessions.push(archived_session(core, s).await?);
    }
    let mut activities = Vec::new();
    for b in bookings {
        let (activity_zh, activity_en) = core
            .catalogue
            .activity(&b.activity)
            .map_or((b.activity.clone(), b.activity.clone()), |a| {
                (a.zh.clone(), a.en.clone())
            });
        activities.push(BookedActivity {
            history: bookings::history(&core.pool, &b.id).await?,
            session_ids: rows
                .iter()
                .filter(|s| s.booking_id.as_deref() == Some(b.id.as_str()))
                .map(|s| s.id.clone())
                .collect(),
            activity_zh,
            activity_en,
            booking: b,
        });
    }
    let ids: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
    let holds: Vec<Hold> = holds::list(&core.pool, false)
        .await?
        .into_iter()
        .filter(|h| {
            h.project_code.as_deref() == Some(code.as_str())
                || h.session_id.as_deref().is_some_and(|s| ids.contains(&s))
        })
        .collect();
    let destructions: Vec<destruction::Request> = destruction::list(&core.pool)
        .await?
        .into_iter()
        .filter(|r| r.session_ids.iter().any(|s| ids.contains(&s.as_str())))
        .collect();
    let exports = exports(core, &code).await?;
    let completeness = completeness(&p.registered, &activities, &sessions, now_us());
    let catalogue = catalogue(
        &code,
        &p.registered,
        &activities,
        &sessions,
        &holds,
        &exports,
        &destructions,
    );
    Ok(ProjectArchive {
        project_code: code,
        registered: p.registered,
        bookings: activities,
        sessions,
        holds,
        exports,
        destructions,
        catalogue,
        completeness,
        checked_at: rfc3339(now_us()),
    })
}

async fn archived_session(core: &Core, s: &SessionRow) -> Result<ArchivedSession, CoreError> {
    let (verification, verdict, bound) = if s.state.is_sealed() {
        let keys = core.signer.all_public_keys();
        let tsa = core.timestamps.tsa.as_ref().map(|t| &t.ca);
        let r = crate::ledger::verify::verify_session(&core.pool, &core.store, &keys, &s.id, tsa)
            .await?;
        (
            r.status.as_str().to_string(),
            r.verdict.clone(),
            r.witness_record.is_some(),
        )
    } else {
        (
            "RECORDING".to_string(),
            format!("session {} is {}; verified once stopped", s.id, s.state),
            false,
        )
    };
    let entries = record::entries(&core.pool, &s.id).await?;
    let signature = record::signature(&core.pool, &s.id).await?;
    let mut recordings = Vec::new();
    for r in index::recordings(&core.pool, &s.id).await? {
        let segments = index::entries(&core.pool, &r.id)
            .await?
            .iter()
            .filter(|e| e.kind == crate::ledger::chain::EntryKind::Media)
            .count() as i64;
        recordings.push(ArchivedRecording {
            id: r.id.clone(),
            source: r.source_name.clone(),
            segments,
        });
    }
    Ok(ArchivedSession {
        id: s.id.clone(),
        session_code: s.session_code.clone(),
        kind: s.kind.to_string(),
        state: s.state.to_string(),
        room_id: s.room_id.clone(),
        room_name: s.room_name.clone(),
        started_at: rfc3339(s.started_at_us),
        stopped_at: s.stopped_at_us.map(rfc3339),
        started_by: s.started_by.clone(),
        booking_id: s.booking_id.clone(),
        confidential: s.confidential,
        verification,
        verdict,
        recordings,
        manifest_key: s.manifest_key.clone(),
        witness_record: WitnessRecordStatus {
            entries: entries.len(),
            signed: signature.is_some(),
            signed_by: signature.as_ref().map(|g| g.signed_by.clone()),
            signed_at: signature.as_ref().map(|g| rfc3339(g.signed_at_us)),
            bound_in_manifest: bound,
        },
    })
}

/// The project's exports and package downloads, and those of its sessions, from the trail.
async fn exports(core: &Core, code: &str) -> Result<Vec<ArchivedExport>, sqlx::Error> {
    let mut out: Vec<AuditEntry> = Vec::new();
    for action in ["export", "project_export", "export_download"] {
        out.extend(
            audit::query(
                &core.pool,
                &audit::Filter {
                    project_code: Some(code.to_string()),
                    action: Some(action.into()),
                    limit: 1000,
                    ..audit::Filter::default()
                },
            )
            .await?,
        );
    }
    out.sort_by_key(|e| e.seq);
    Ok(out
        .into_iter()
        .map(|e| ArchivedExport {
            action: e.action,
            at: rfc3339(e.at_us),
            actor: e.actor,
            session_id: e.session_id,
            target: e.target,
            reason: e.reason,
            outcome: e.outcome,
        })
        .collect())
}

fn missing(
    item: &'static str,
    reference: &str,
    code: &'static str,
    zh: String,
    en: String,
) -> Missing {
    Missing {
        item,
        reference: reference.to_string(),
        code,
        zh,
        en,
    }
}

/// The completeness check: every booked activity that has ended (or was recorded) has a
/// recorded session tied to it, each of the project's sessions is stopped, verified INTACT and
/// has its witness record signed and bound in its manifest; a section whose state says an
/// activity happened (in progress, closed) has a booking. Cancelled bookings are not judged;
/// bookings still to come are `pending`.
pub fn completeness(
    registered: &Option<ProjectDetail>,
    activities: &[BookedActivity],
    sessions: &[ArchivedSession],
    now: i64,
) -> Completeness {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut checked = 0;
    for a in activities
        .iter()
        .filter(|a| a.booking.state == BookingState::Booked)
    {
        let b = &a.booking;
        let ended = b.ends_at_us <= now;
        if a.session_ids.is_empty() {
            if ended {
                checked += 1;
                out.push(missing(
                    "booking",
                    &b.id,
                    "no_session",
                    format!(
                        "标段 {} 的{}（{} 至 {}）已结束，但没有见证录像",
                        b.section_code, a.activity_zh, b.starts_at, b.ends_at
                    ),
                    format!(
                        "booking {}: {} of section {} ({} to {}) has ended with no recorded session",
                        b.id, a.activity_en, b.section_code, b.starts_at, b.ends_at
                    ),
                ));
            } else {
                pending.push(b.id.clone());
            }
        } else {
            checked += 1;
        }
    }
    for s in sessions {
        if s.verification == "RECORDING" {
            out.push(missing(
                "session",
                &s.id,
                "still_recording",
                format!(
                    "会话 {}（{}）仍在录制，停止后方可核验",
                    s.session_code, s.id
                ),
                format!(
                    "session {} ({}) is still recording; it is verified once stopped",
                    s.id, s.session_code
                ),
            ));
            continue;
        }
        if s.verification != Verdict::Intact.as_str() {
            out.push(missing(
                "session",
                &s.id,
                "not_intact",
                format!(
                    "会话 {}（{}）的哈希链核验结果为 {}，不完好",
                    s.session_code, s.id, s.verification
                ),
                format!("session {} ({}): {}", s.id, s.session_code, s.verdict),
            ));
        }
        if !s.witness_record.signed {
            out.push(missing(
                "session",
                &s.id,
                "witness_record_unsigned",
                format!(
                    "会话 {}（{}）的见证记录未经见证人签署（{} 条记录）",
                    s.session_code, s.id, s.witness_record.entries
                ),
                format!(
                    "session {} ({}): its witness record is not signed by its witness ({} entries)",
                    s.id, s.session_code, s.witness_record.entries
                ),
            ));
        } else if !s.witness_record.bound_in_manifest {
            out.push(missing(
                "session",
                &s.id,
                "witness_record_not_bound",
                format!(
                    "会话 {}（{}）的见证记录与签名的会话清单不符",
                    s.session_code, s.id
                ),
                format!(
                    "session {} ({}): its witness record does not hold against the signed session manifest",
                    s.id, s.session_code
                ),
            ));
        }
    }
    if let Some(detail) = registered {
        for sec in &detail.sections {
            let happened = matches!(sec.state, SectionState::InProgress | SectionState::Closed);
            let booked = activities.iter().any(|a| {
                a.booking.section_code == sec.section_code
                    && a.booking.state == BookingState::Booked
            });
            if happened && !booked {
                out.push(missing(
                    "section",
                    &sec.section_code,
                    "section_without_booking",
                    format!(
                        "标段 {}（{}）状态为{}，但没有场地预约：其开评标活动未经预约见证",
                        sec.section_code,
                        sec.name,
                        section_state_zh(sec.state)
                    ),
                    format!(
                        "section {} ({}) is {}, yet no activity of it was booked and witnessed",
                        sec.section_code, sec.name, sec.state
                    ),
                ));
            }
        }
    }
    Completeness {
        complete: out.is_empty(),
        activities_checked: checked,
        pending,
        missing: out,
    }
}

fn section_state_zh(s: SectionState) -> &'static str {
    match s {
        SectionState::InProgress => "进行中",
        SectionState::Closed => "已结束",
        _ => "其他",
    }
}

/// A time in a title, to the minute in Beijing time (UTC+8, the centre's): titles are read by
/// people; the item's `date` stays RFC 3339.
fn short(t: &str) -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    chrono::DateTime::parse_from_rfc3339(t).map_or_else(
        |_| t.to_string(),
        |d| {
            d.with_timezone(&beijing)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        },
    )
}

/// The catalogue in archive order: the registration, each section, each booking followed by
/// its session(s) and each session's recordings, manifest and witness record; sessions recorded
/// without a booking; then holds, exports and destruction requests. `file` says where an item is
/// inside the project package.
pub fn catalogue(
    code: &str,
    registered: &Option<ProjectDetail>,
    activities: &[BookedActivity],
    sessions: &[ArchivedSession],
    holds: &[Hold],
    exports: &[ArchivedExport],
    destructions: &[destruction::Request],
) -> Catalogue {
    let mut c = Catalogue {
        project_code: code.to_string(),
        items: Vec::new(),
    };
    if let Some(d) = registered {
        c.push(
            "registration",
            d.project.registered_at.clone(),
            format!(
                "项目登记：{}（{}，{}）",
                d.project.name, d.project.category_zh, d.project.method_zh
            ),
            code.to_string(),
            Some("data/project.json".into()),
        );
        for s in &d.sections {
            c.push(
                "section",
                s.created_at.clone(),
                format!("标段 {}：{}", s.section_code, s.name),
                s.section_code.clone(),
                Some("data/project.json".into()),
            );
        }
    }
    let session_items = |c: &mut Catalogue, s: &ArchivedSession| {
        let dir = project_session_prefix(&s.id);
        c.push(
            "session",
            s.started_at.clone(),
            format!(
                "见证录像 {}（{}，{} 至 {}）",
                s.session_code,
                s.room_name,
                short(&s.started_at),
                s.stopped_at
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "录制中".into())
            ),
            s.id.clone(),
            Some(dir.clone()),
        );
        for r in &s.recordings {
            c.push(
                "recording",
                s.started_at.clone(),
                format!("录像 {}（{} 个分段）及其哈希链", r.source, r.segments),
                r.id.clone(),
                Some(format!("{dir}chain/{}.json", r.source)),
            );
        }
        if let (Some(key), Some(at)) = (&s.manifest_key, &s.stopped_at) {
            c.push(
                "manifest",
                at.clone(),
                "会话清单（服务器签名）".into(),
                key.clone(),
                Some(format!("{dir}chain/manifest.json")),
            );
        }
        c.push(
            "witness_record",
            s.witness_record
                .signed_at
                .clone()
                .or_else(|| s.stopped_at.clone())
                .unwrap_or_else(|| s.started_at.clone()),
            match &s.witness_record.signed_by {
                Some(by) => format!(
                    "见证记录（{} 条，见证人 {} 签署）",
                    s.witness_record.entries, by
                ),
                None => format!("见证记录（{} 条，未签署）", s.witness_record.entries),
            },
            s.id.clone(),
            Some(format!("{dir}witness-record/record.json")),
        );
    };
    for a in activities {
        let b = &a.booking;
        let cancelled = if b.state == BookingState::Cancelled {
            "（已取消）"
        } else {
            ""
        };
        c.push(
            "booking",
            b.starts_at.clone(),
            format!(
                "场地预约：标段 {} {}，{} 至 {}{cancelled}",
                b.section_code,
                a.activity_zh,
                short(&b.starts_at),
                short(&b.ends_at)
            ),
            b.id.clone(),
            Some("data/project.json".into()),
        );
        for s in sessions.iter().filter(|s| a.session_ids.contains(&s.id)) {
            session_items(&mut c, s);
        }
    }
    for s in sessions
        .iter()
        .filter(|s| !activities.iter().any(|a| a.session_ids.contains(&s.id)))
    {
        session_items(&mut c, s);
    }
    for h in holds {
        c.push(
            "hold",
            h.placed_at.clone(),
            format!(
                "保全：{}（{}，{}）{}",
                h.reason,
                h.authority,
                h.reference,
                if h.released_at.is_some() {
                    "，已解除"
                } else {
                    ""
                }
            ),
            h.id.clone(),
            None,
        );
    }
    for e in exports {
        c.push(
            "export",
            e.at.clone(),
            format!(
                "{}：{}（{}）",
                match e.action.as_str() {
                    "project_export" => "项目证据包导出",
                    "export_download" => "证据包下载",
                    _ => "会话证据包导出",
                },
                e.reason,
                e.actor
            ),
            e.target.clone(),
            None,
        );
    }
    for d in destructions {
        c.push(
            "destruction",
            d.proposed_at.clone(),
            format!("销毁申请（{}，{}）", d.appraisal_conclusion, d.state),
            d.id.clone(),
            None,
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_say_beijing_time_to_the_minute() {
        assert_eq!(short("2026-11-30T08:04:59.123Z"), "2026-11-30 16:04");
        assert_eq!(short("not a time"), "not a time");
    }

    #[test]
    fn nothing_booked_nothing_recorded_nothing_missing() {
        let c = completeness(&None, &[], &[], now_us());
        assert!(c.complete && c.missing.is_empty() && c.pending.is_empty());
    }
}
