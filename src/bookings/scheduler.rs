//! Scheduled witnessing (5.5.2, 6.4.2): bookings drive recording.
//!
//! - `[bookings] lead_seconds` before a booking's start, its room starts recording by itself,
//!   tied to the booking (project, section, activity, booking id on the session row), its
//!   confidentiality from the room's area; a room already recording is left alone.
//! - Past the booked end the recording goes on: it is never cut. The room shows a prompt to stop
//!   (`overrun`, and `witness_booking_overrun_seconds`) until staff stop it.
//! - `[bookings] alarm_after_seconds` after the booked start, a booked room that is not
//!   recording (no live session, or one whose cameras deliver nothing: camera down, server
//!   restarted, nobody pressed anything) raises the alarm: room status, `witness_booking_alarm`,
//!   and one `booking_not_recording` audit entry per booking. It clears when media flows.
//! - A booking whose recording staff stopped is done: it is not started again, nor alarmed.
//! - A manual start (`start_room`) inside a booked slot of the same project records that
//!   booking; any other start needs a reason.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sqlx::Row;

use super::{Booking, BookingState, COLS, booking_from};
use crate::audit::{self, Actor};
use crate::config::BookingsConfig;
use crate::error::CoreError;
use crate::ledger::index;
use crate::ledger::views::SessionView;
use crate::metrics::BookingAlarm;
use crate::sessions::{Core, StartRequest};
use crate::time::{now_us, rfc3339};

/// The scheduler's timing, from `[bookings]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lead_us: i64,
    pub alarm_after_us: i64,
}

impl Timing {
    pub fn of(c: &BookingsConfig) -> Timing {
        Timing {
            lead_us: (c.lead_seconds * 1e6) as i64,
            alarm_after_us: (c.alarm_after_seconds * 1e6) as i64,
        }
    }
}

/// Starts the background job: one round every `[bookings] tick_seconds`.
pub fn spawn(core: Arc<Core>, config: &BookingsConfig) {
    let timing = Timing::of(config);
    let every = std::time::Duration::from_secs_f64(config.tick_seconds);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut told = HashSet::new();
        loop {
            tick.tick().await;
            if let Err(e) = round(&core, timing, &mut told).await {
                tracing::warn!(error = %e, "booking scheduler round failed; next round soon");
            }
        }
    });
}

/// The session code of a booking's recording: its section and activity
/// (`BD-01.bid_opening`), within the 64 characters of a code.
fn session_code(b: &Booking) -> String {
    let suffix = format!(".{}", b.activity);
    let keep = 64usize.saturating_sub(suffix.len());
    let section: String = b.section_code.chars().take(keep).collect();
    format!("{section}{suffix}")
}

/// The start request of a booking's recording.
fn start_request(core: &Core, b: &Booking) -> StartRequest {
    let kind = core
        .catalogue
        .activity(&b.activity)
        .map(|a| a.session_kind.clone())
        .unwrap_or_else(|| "other".into());
    StartRequest {
        project_code: b.project_code.clone(),
        session_code: session_code(b),
        kind,
        note: format!(
            "booking {}: project {} section {}, {}",
            b.id, b.project_code, b.section_code, b.activity
        ),
        category: b.category.as_str().into(),
        reason: String::new(),
        booking_id: Some(b.id.clone()),
        // The staff member who booked it witnesses it: they write and sign its witness record.
        witness: Some(b.created_by.clone()),
    }
}

/// Starts a room's recording by hand. Inside a live booking's slot (from the lead before its
/// start to its end) for the same project, the session records that booking; otherwise a
/// `reason` is required (422 `reason_required`), which the `room_start` audit entry keeps.
pub async fn start_room(
    core: &Core,
    timing: Timing,
    room_id: &str,
    mut req: StartRequest,
    by: &Actor,
) -> Result<SessionView, CoreError> {
    req.booking_id = None;
    let covering = super::covering(&core.pool, room_id, now_us(), timing.lead_us).await?;
    match covering {
        Some(b) if b.project_code == req.project_code => req.booking_id = Some(b.id),
        _ if req.reason.trim().is_empty() => {
            return Err(CoreError::invalid(
                "reason_required",
                format!(
                    "reason: no booking of project {:?} covers room {room_id} now; say why it records without one",
                    req.project_code
                ),
            ));
        }
        _ => {}
    }
    core.start(room_id, req, by).await
}

/// Media reached the session's chains within this long: the room is recording.
fn fresh_us(core: &Core) -> i64 {
    let c = &core.config;
    ((3.0 * c.segment_seconds + c.watchdog_seconds + 10.0) * 1e6) as i64
}

/// Whether the room's live session records media now: its newest media entry ends within
/// `fresh_us`. Read from the chains, so every node of a cluster judges alike.
async fn media_flows(core: &Core, session_id: &str, now: i64) -> Result<bool, CoreError> {
    let newest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(c.wall_start_us + c.duration_us) FROM chain_entries c JOIN recordings r ON r.id = c.recording_id WHERE r.session_id = $1 AND c.kind = 'media'",
    )
    .bind(session_id)
    .fetch_one(&core.pool)
    .await?;
    Ok(newest.is_some_and(|t| t >= now - fresh_us(core)))
}

/// One round: start due bookings, raise and clear alarms, mark overruns.
pub async fn round(
    core: &Core,
    timing: Timing,
    told: &mut HashSet<String>,
) -> Result<(), CoreError> {
    let now = now_us();
    let due: Vec<Booking> = sqlx::query(&format!(
        "SELECT {COLS} FROM bookings WHERE state = $1 AND starts_at - $2 <= $3 AND ends_at > $3 ORDER BY starts_at"
    ))
    .bind(BookingState::Booked)
    .bind(timing.lead_us)
    .bind(now)
    .fetch_all(&core.pool)
    .await?
    .iter()
    .map(booking_from)
    .collect::<Result<_, _>>()?;
    let mut alarms = BTreeMap::new();
    let scheduler = Actor::local("scheduler");
    for b in &due {
        let Ok(room) = crate::capture::rooms::get(&core.pool, &b.room_id).await else {
            continue; // the room was removed; nothing to record
        };
        let mut live = index::live_session_of_room(&core.pool, &b.room_id).await?;
        if live.is_none() && stopped_by_staff(core, &b.id).await? {
            // Its recording was stopped on purpose (the business ended early): neither started
            // again nor an alarm.
            continue;
        }
        if live.is_none() {
            match core
                .start(&b.room_id, start_request(core, b), &scheduler)
                .await
            {
                Ok(view) => {
                    tracing::info!(room = %b.room_id, booking = %b.id, session = %view.summary.id, "booked recording started");
                    live = index::live_session_of_room(&core.pool, &b.room_id).await?;
                }
                Err(e) => {
                    if told.insert(b.id.clone()) {
                        tracing::warn!(room = %b.room_id, booking = %b.id, error = %e, "booked recording could not start; retrying every round");
                    }
                }
            }
        }
        if now < b.starts_at_us + timing.alarm_after_us {
            continue;
        }
        let recording = match &live {
            Some(s) => media_flows(core, &s.id, now).await?,
            None => false,
        };
        if recording {
            continue;
        }
        let why = match &live {
            None => "no recording".to_string(),
            Some(s) if s.booking_id.as_deref() == Some(b.id.as_str()) => {
                "the cameras deliver no media".to_string()
            }
            Some(s) => format!("the cameras deliver no media (session {})", s.id),
        };
        let message = format!(
            "booked from {} (booking {}, project {} section {}): {why}",
            b.starts_at, b.id, b.project_code, b.section_code
        );
        alarms.insert(
            b.room_id.clone(),
            BookingAlarm {
                booking_id: b.id.clone(),
                room_name: room.name.clone(),
                at_us: b.starts_at_us,
                message: message.clone(),
            },
        );
        // Once per booking, whatever the number of nodes or restarts: the first to set
        // alarmed_at audits it.
        let first =
            sqlx::query("UPDATE bookings SET alarmed_at = $2 WHERE id = $1 AND alarmed_at IS NULL")
                .bind(&b.id)
                .bind(now)
                .execute(&core.pool)
                .await?
                .rows_affected()
                == 1;
        if first {
            tracing::error!(room = %b.room_id, booking = %b.id, "{message}");
            audit::Event::new(&scheduler, "booking_not_recording")
                .target(format!("room/{}", b.room_id))
                .reason(message)
                .outcome(audit::Outcome::Result(format!("booking {}", b.id)))
                .flagged(true)
                .append(&core.pool)
                .await?;
        }
    }
    core.metrics.set_booking_alarms(alarms);
    core.metrics.set_overruns(overruns(core, now).await?);
    Ok(())
}

/// Whether a recording of the booking was already stopped (by staff: the stop is theirs).
async fn stopped_by_staff(core: &Core, booking_id: &str) -> Result<bool, CoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE booking_id = $1 AND state IN ('stopping', 'stopped', 'destroyed')",
    )
    .bind(booking_id)
    .fetch_one(&core.pool)
    .await?;
    Ok(n > 0)
}

/// Live sessions recording a booking whose booked end has passed, by room.
async fn overruns(core: &Core, now: i64) -> Result<BTreeMap<String, BookingAlarm>, CoreError> {
    let rows = sqlx::query(
        "SELECT s.room_id, s.room_name, b.id, b.ends_at FROM sessions s JOIN bookings b ON b.id = s.booking_id WHERE s.state IN ('recording', 'stopping') AND b.ends_at <= $1",
    )
    .bind(now)
    .fetch_all(&core.pool)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let ends: i64 = r.try_get("ends_at")?;
        let minutes = (now - ends) / 60_000_000;
        out.insert(
            r.try_get::<String, _>("room_id")?,
            BookingAlarm {
                booking_id: r.try_get("id")?,
                room_name: r.try_get("room_name")?,
                at_us: ends,
                message: format!(
                    "booked end {} passed {minutes} min ago: recording goes on until stopped",
                    rfc3339(ends)
                ),
            },
        );
    }
    Ok(out)
}
