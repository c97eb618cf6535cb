//! Bookings: a room booked for one project section and activity over a time slot, and the
//! scheduled witnessing they drive (`scheduler`). A booking's times and room change, and it is
//! cancelled, only with a reason; every step is kept in `booking_history` (only inserted into)
//! and audited. Two live bookings of one room never overlap: the check runs inside a
//! transaction that first locks the room's row, so two concurrent requests are serialised.

pub mod scheduler;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, Actor};
use crate::capture::rooms;
use crate::catalogue::rooms::Catalogue;
use crate::db::Pool;
use crate::error::CoreError;
use crate::identity::caller::Scope;
use crate::ledger::values::{Category, valid_code};
use crate::time::{now_us, parse_rfc3339, rfc3339};

crate::text_enum! {
    /// Where a booking is: `booked` (live: it may start a recording), or `cancelled`.
    pub enum BookingState as "booking state" {
        Booked = "booked",
        Cancelled = "cancelled",
    }
}

/// At most this long a slot: a booking is one business event, not a standing reservation.
const MAX_SLOT_US: i64 = 7 * 24 * 3600 * 1_000_000;
/// A start this far in the past still counts as now (clocks, a form submitted slowly).
const PAST_TOLERANCE_US: i64 = 60 * 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    pub id: String,
    pub room_id: String,
    pub project_code: String,
    pub section_code: String,
    pub activity: String,
    pub category: Category,
    pub starts_at: String,
    pub ends_at: String,
    pub state: BookingState,
    pub note: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub starts_at_us: i64,
    #[serde(skip)]
    pub ends_at_us: i64,
}

/// One step of a booking's life: created, changed or cancelled, by whom, when, before → after.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub action: String,
    pub actor: String,
    pub at: String,
    pub before: String,
    pub after: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    pub room_id: String,
    pub project_code: String,
    pub section_code: String,
    /// One of the catalogue's activities (`catalogue/activities.toml`).
    pub activity: String,
    /// Trading category of the project (scopes which regulators see the booking and its
    /// recording); `other` when not given.
    #[serde(default)]
    pub category: Option<String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBooking {
    pub room_id: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBooking {
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingFilter {
    pub room_id: Option<String>,
    pub project_code: Option<String>,
    /// Bookings ending after this time (RFC 3339).
    pub from: Option<String>,
    /// Bookings starting before this time (RFC 3339).
    pub to: Option<String>,
    /// Also cancelled ones (default: only live bookings).
    #[serde(default)]
    pub include_cancelled: bool,
}

const COLS: &str = "id, room_id, project_code, section_code, activity, category, starts_at, ends_at, state, note, created_by, created_at, updated_at";

fn booking_from(r: &AnyRow) -> Result<Booking, sqlx::Error> {
    let starts: i64 = r.try_get("starts_at")?;
    let ends: i64 = r.try_get("ends_at")?;
    Ok(Booking {
        id: r.try_get("id")?,
        room_id: r.try_get("room_id")?,
        project_code: r.try_get("project_code")?,
        section_code: r.try_get("section_code")?,
        activity: r.try_get("activity")?,
        category: r.try_get("category")?,
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
        state: r.try_get("state")?,
        note: r.try_get("note")?,
        created_by: r.try_get("created_by")?,
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
        starts_at_us: starts,
        ends_at_us: ends,
    })
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::invalid("invalid_field", message)
}

/// A time of the schedule, kept to the millisecond it is shown with (`time::rfc3339`), so that a
/// slot starting at another's shown end meets it exactly.
fn time_of(field: &str, value: &str) -> Result<i64, CoreError> {
    parse_rfc3339(value)
        .map(|us| us.div_euclid(1000) * 1000)
        .map_err(|e| {
            invalid(format!(
                "{field} {value:?}: expected an RFC 3339 time (2026-03-01T09:00:00+08:00): {e}"
            ))
        })
}

fn check_reason(reason: &str) -> Result<String, CoreError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(CoreError::invalid(
            "reason_required",
            "reason: say why the booking changes (kept in its history)",
        ));
    }
    if r.chars().count() > 1000 || r.chars().any(char::is_control) {
        return Err(invalid("reason: at most 1000 printable characters"));
    }
    Ok(r.to_string())
}

/// A slot that may be booked now: the start not in the past, the end after the start, at most
/// a week long.
fn check_slot(starts: i64, ends: i64, now: i64) -> Result<(), CoreError> {
    if starts < now - PAST_TOLERANCE_US {
        return Err(CoreError::invalid(
            "booking_in_past",
            format!(
                "starts_at {} is in the past (now {}): a booking starts now or later",
                rfc3339(starts),
                rfc3339(now)
            ),
        ));
    }
    if ends <= starts {
        return Err(CoreError::invalid(
            "booking_ends_before_start",
            format!(
                "ends_at {} is not after starts_at {}",
                rfc3339(ends),
                rfc3339(starts)
            ),
        ));
    }
    if ends - starts > MAX_SLOT_US {
        return Err(invalid(format!(
            "the slot {} to {} is longer than 7 days",
            rfc3339(starts),
            rfc3339(ends)
        )));
    }
    Ok(())
}

/// **The** check that a project section may be booked: the project is not closed (its closed
/// event, `retention::projects`), and the projects registry (`projects`) has the section,
/// registered or in progress (404 `project_section_not_found`, 409 `section_not_open`).
pub async fn check_project_section(
    pool: &Pool,
    project_code: &str,
    section_code: &str,
) -> Result<(), CoreError> {
    for (field, value) in [
        ("project_code", project_code),
        ("section_code", section_code),
    ] {
        if !valid_code(value) {
            return Err(invalid(format!(
                "{field} {value:?}: expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )));
        }
    }
    let events = crate::retention::projects::events(pool, project_code).await?;
    if let Some(closed) = events.closed_at_us {
        return Err(CoreError::conflict(
            "project_closed",
            format!(
                "project {project_code} was closed at {}: nothing more is booked for it",
                rfc3339(closed)
            ),
        ));
    }
    let section = sqlx::query_scalar::<_, String>(
        "SELECT state FROM project_sections WHERE project_code = $1 AND section_code = $2",
    )
    .bind(project_code)
    .bind(section_code)
    .fetch_optional(pool)
    .await;
    match section {
        // Registered or under way: its activities are yet to happen (`projects::sections`).
        Ok(Some(state)) if state == "registered" || state == "in_progress" => Ok(()),
        Ok(Some(state)) => Err(CoreError::conflict(
            "section_not_open",
            format!(
                "section {section_code} of project {project_code} is {state}: it cannot be booked"
            ),
        )),
        Ok(None) => Err(CoreError::NotFound {
            what: "project section",
            id: format!("{project_code}/{section_code}"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Locks the room's row for the rest of the transaction (PostgreSQL: a row lock; SQLite: the
/// write lock), so that two bookings of one room are checked and written one after the other.
async fn lock_room(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    room_id: &str,
) -> Result<(), CoreError> {
    let locked = sqlx::query("UPDATE rooms SET updated_at = updated_at WHERE id = $1")
        .bind(room_id)
        .execute(&mut **tx)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(CoreError::NotFound {
            what: "room",
            id: room_id.into(),
        });
    }
    Ok(())
}

/// 409 `booking_overlap` naming the other live booking of the room whose slot meets this one.
async fn refuse_overlap(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    room_id: &str,
    starts: i64,
    ends: i64,
    except: Option<&str>,
) -> Result<(), CoreError> {
    let other = sqlx::query(&format!(
        "SELECT {COLS} FROM bookings WHERE room_id = $1 AND state = $2 AND starts_at < $3 AND ends_at > $4 AND id <> $5 ORDER BY starts_at LIMIT 1"
    ))
    .bind(room_id)
    .bind(BookingState::Booked)
    .bind(ends)
    .bind(starts)
    .bind(except.unwrap_or(""))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = other {
        let b = booking_from(&row)?;
        return Err(CoreError::conflict(
            "booking_overlap",
            format!(
                "room {room_id} is already booked from {} to {} by booking {} (project {}, section {}, {})",
                b.starts_at, b.ends_at, b.id, b.project_code, b.section_code, b.activity
            ),
        ));
    }
    Ok(())
}

/// The booking as its history records it.
fn describe(b: &Booking) -> String {
    format!(
        "room {}; {} to {}; project {} section {}; {}; {}",
        b.room_id, b.starts_at, b.ends_at, b.project_code, b.section_code, b.activity, b.state
    )
}

async fn append_history(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    booking_id: &str,
    action: &str,
    by: &Actor,
    before: &str,
    after: &str,
    reason: &str,
) -> Result<(), CoreError> {
    sqlx::query("INSERT INTO booking_history (id, booking_id, action, actor, at, before, after, reason) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(booking_id)
        .bind(action)
        .bind(by.name())
        .bind(now_us())
        .bind(before)
        .bind(after)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Books a room: the slot checked (not in the past, end after start), the room and activity
/// known, the project section bookable (`check_project_section`), no overlap with another live
/// booking of the room; written with its first history entry in one transaction, audited.
pub async fn create(
    pool: &Pool,
    catalogue: &Catalogue,
    req: NewBooking,
    by: &Actor,
) -> Result<Booking, CoreError> {
    let now = now_us();
    let starts = time_of("starts_at", &req.starts_at)?;
    let ends = time_of("ends_at", &req.ends_at)?;
    check_slot(starts, ends, now)?;
    if catalogue.activity(&req.activity).is_none() {
        return Err(CoreError::invalid(
            "unknown_activity",
            format!(
                "activity {:?} is not valid, expected one of: {}",
                req.activity,
                catalogue.activity_ids()
            ),
        ));
    }
    let category: Category = req
        .category
        .as_deref()
        .unwrap_or("other")
        .parse()
        .map_err(|e: crate::db::UnknownValue| invalid(e.to_string()))?;
    if req.note.chars().count() > 1000 || req.note.chars().any(char::is_control) {
        return Err(invalid("note: at most 1000 printable characters"));
    }
    rooms::get(pool, &req.room_id).await?;
    check_project_section(pool, &req.project_code, &req.section_code).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = pool.begin().await?;
    lock_room(&mut tx, &req.room_id).await?;
    refuse_overlap(&mut tx, &req.room_id, starts, ends, None).await?;
    sqlx::query(&format!(
        "INSERT INTO bookings ({COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12)"
    ))
    .bind(&id)
    .bind(&req.room_id)
    .bind(&req.project_code)
    .bind(&req.section_code)
    .bind(&req.activity)
    .bind(category)
    .bind(starts)
    .bind(ends)
    .bind(BookingState::Booked)
    .bind(req.note.trim())
    .bind(by.name())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let booking = one(&mut tx, &id).await?;
    append_history(&mut tx, &id, "created", by, "", &describe(&booking), "").await?;
    tx.commit().await?;
    audit::Event::new(by, "booking_add")
        .target(format!("booking/{id}"))
        .outcome(audit::Outcome::Result(describe(&booking)))
        .append(pool)
        .await?;
    Ok(booking)
}

async fn one(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> Result<Booking, CoreError> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM bookings WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| CoreError::NotFound {
            what: "booking",
            id: id.into(),
        })?;
    Ok(booking_from(&row)?)
}

/// The booking, or 404 (also for one outside a regulator's trading categories).
pub async fn get(pool: &Pool, scope: &Scope, id: &str) -> Result<Booking, CoreError> {
    let b = sqlx::query(&format!("SELECT {COLS} FROM bookings WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(booking_from)
        .transpose()?
        .filter(|b| scope.sees(&b.category));
    b.ok_or_else(|| CoreError::NotFound {
        what: "booking",
        id: id.into(),
    })
}

/// The booking's history, oldest first.
pub async fn history(pool: &Pool, id: &str) -> Result<Vec<HistoryEntry>, CoreError> {
    let rows = sqlx::query(
        "SELECT action, actor, at, before, after, reason FROM booking_history WHERE booking_id = $1 ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                action: r.try_get("action")?,
                actor: r.try_get("actor")?,
                at: rfc3339(r.try_get("at")?),
                before: r.try_get("before")?,
                after: r.try_get("after")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(CoreError::from)
}

/// Bookings by room, project and time window, in start order; a regulator sees those of the
/// trading categories in scope.
pub async fn list(
    pool: &Pool,
    scope: &Scope,
    f: &BookingFilter,
) -> Result<Vec<Booking>, CoreError> {
    let from = match &f.from {
        Some(v) => time_of("from", v)?,
        None => i64::MIN,
    };
    let to = match &f.to {
        Some(v) => time_of("to", v)?,
        None => i64::MAX,
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM bookings WHERE ends_at > $1 AND starts_at < $2 \
         AND ($3 = '' OR room_id = $3) AND ($4 = '' OR project_code = $4) \
         AND ($5 = 1 OR state = $6) ORDER BY starts_at, id LIMIT 2000"
    ))
    .bind(from)
    .bind(to)
    .bind(f.room_id.clone().unwrap_or_default())
    .bind(f.project_code.clone().unwrap_or_default())
    .bind(i64::from(f.include_cancelled))
    .bind(BookingState::Booked)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(booking_from)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|b| scope.sees(&b.category))
        .collect())
}

/// Moves a live booking (times and/or room) with a reason: the new slot checked like a new one
/// (a start already passed may stay as it was), no overlap in the target room; the change and its
/// reason kept in the history and audited before → after.
pub async fn change(
    pool: &Pool,
    id: &str,
    req: ChangeBooking,
    by: &Actor,
) -> Result<Booking, CoreError> {
    let reason = check_reason(&req.reason)?;
    let before = get(pool, &Scope::All, id).await?;
    refuse_cancelled(&before)?;
    let now = now_us();
    let starts = match &req.starts_at {
        Some(v) => time_of("starts_at", v)?,
        None => before.starts_at_us,
    };
    let ends = match &req.ends_at {
        Some(v) => time_of("ends_at", v)?,
        None => before.ends_at_us,
    };
    let room_id = req.room_id.clone().unwrap_or(before.room_id.clone());
    if starts != before.starts_at_us || room_id != before.room_id {
        check_slot(starts, ends, now)?;
    } else {
        // The start stays (it may have passed): the new end must still lie ahead.
        check_slot(now, ends.max(now + 1), now)?;
        check_slot(starts.max(now), ends, now).map_err(|_| {
            CoreError::invalid(
                "booking_ends_before_start",
                format!(
                    "ends_at {} is not after both the start ({}) and now",
                    rfc3339(ends),
                    before.starts_at
                ),
            )
        })?;
    }
    rooms::get(pool, &room_id).await?;
    let mut tx = pool.begin().await?;
    lock_room(&mut tx, &room_id).await?;
    refuse_overlap(&mut tx, &room_id, starts, ends, Some(id)).await?;
    sqlx::query(
        "UPDATE bookings SET room_id = $2, starts_at = $3, ends_at = $4, updated_at = $5 WHERE id = $1 AND state = $6",
    )
    .bind(id)
    .bind(&room_id)
    .bind(starts)
    .bind(ends)
    .bind(now)
    .bind(BookingState::Booked)
    .execute(&mut *tx)
    .await?;
    let after = one(&mut tx, id).await?;
    append_history(
        &mut tx,
        id,
        "changed",
        by,
        &describe(&before),
        &describe(&after),
        &reason,
    )
    .await?;
    tx.commit().await?;
    audit::Event::new(by, "booking_change")
        .target(format!("booking/{id}"))
        .reason(reason)
        .outcome(audit::Outcome::Result(format!(
            "changed; {} → {}",
            describe(&before),
            describe(&after)
        )))
        .append(pool)
        .await?;
    Ok(after)
}

fn refuse_cancelled(b: &Booking) -> Result<(), CoreError> {
    if b.state == BookingState::Cancelled {
        return Err(CoreError::conflict(
            "booking_cancelled",
            format!("booking {} is cancelled", b.id),
        ));
    }
    Ok(())
}

/// Cancels a live booking with a reason (kept in its history, audited). A recording it started
/// goes on until staff stop it.
pub async fn cancel(
    pool: &Pool,
    id: &str,
    req: CancelBooking,
    by: &Actor,
) -> Result<Booking, CoreError> {
    let reason = check_reason(&req.reason)?;
    let before = get(pool, &Scope::All, id).await?;
    refuse_cancelled(&before)?;
    let mut tx = pool.begin().await?;
    let done =
        sqlx::query("UPDATE bookings SET state = $2, updated_at = $3 WHERE id = $1 AND state = $4")
            .bind(id)
            .bind(BookingState::Cancelled)
            .bind(now_us())
            .bind(BookingState::Booked)
            .execute(&mut *tx)
            .await?;
    if done.rows_affected() == 0 {
        return Err(CoreError::conflict(
            "booking_cancelled",
            format!("booking {id} is cancelled"),
        ));
    }
    let after = one(&mut tx, id).await?;
    append_history(
        &mut tx,
        id,
        "cancelled",
        by,
        &describe(&before),
        &describe(&after),
        &reason,
    )
    .await?;
    tx.commit().await?;
    audit::Event::new(by, "booking_cancel")
        .target(format!("booking/{id}"))
        .reason(reason)
        .outcome(audit::Outcome::Result(format!(
            "cancelled; was {}",
            describe(&before)
        )))
        .append(pool)
        .await?;
    Ok(after)
}

/// The live booking of a room whose slot (from `lead_us` before its start to its end) covers
/// `at`.
pub async fn covering(
    pool: &Pool,
    room_id: &str,
    at: i64,
    lead_us: i64,
) -> Result<Option<Booking>, CoreError> {
    Ok(sqlx::query(&format!(
        "SELECT {COLS} FROM bookings WHERE room_id = $1 AND state = $2 AND starts_at - $3 <= $4 AND ends_at > $4 ORDER BY starts_at LIMIT 1"
    ))
    .bind(room_id)
    .bind(BookingState::Booked)
    .bind(lead_us)
    .bind(at)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(booking_from)
    .transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_in_the_past_backwards_or_too_long_are_refused() {
        let now = 1_000_000_000_000;
        let code = |r: Result<(), CoreError>| match r {
            Err(CoreError::Invalid { code, .. }) => code,
            Ok(()) => "ok",
            Err(e) => panic!("{e}"),
        };
        assert_eq!(code(check_slot(now, now + 1, now)), "ok");
        assert_eq!(
            code(check_slot(now - 3_600_000_000, now, now)),
            "booking_in_past"
        );
        assert_eq!(
            code(check_slot(now + 10, now + 10, now)),
            "booking_ends_before_start"
        );
        assert_eq!(
            code(check_slot(now, now + MAX_SLOT_US + 1, now)),
            "invalid_field"
        );
    }
}
