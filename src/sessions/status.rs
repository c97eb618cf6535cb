//! What the staff console watches: every room's state, with per-source bitrate, last-segment
//! age and stream alarms, booking alarms and overruns (`bookings::scheduler`), and which live
//! session is open to a live view (a confidential one only to supervision: `evidence::access`).

use serde::Serialize;

use super::Core;
use crate::capture::rooms;
use crate::error::CoreError;
use crate::identity::caller::Scope;
use crate::ledger::index::{self, RecordingRow, SessionRow};
use crate::ledger::views::SessionSummary;
use crate::metrics::SourceStats;
use crate::time::now_us;

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub media: String,
    /// connecting, recording, reconnecting, stopped.
    pub state: String,
    pub bitrate_bps: u64,
    pub segments: u64,
    pub gaps: u64,
    pub reconnects: u64,
    pub last_segment_age_seconds: Option<f64>,
    /// Each elementary stream where it reaches the segment files: age of its last media and
    /// whether it has stalled (an alarm).
    pub streams: Vec<crate::metrics::StreamStatus>,
    /// Transport of the current attempt (`tcp`, `udp`, `multicast`); empty before the first.
    pub transport: String,
    /// The graph receiving the camera: `direct` (the RTSP client into the segment writer) or
    /// `gstreamer`; empty before the first attempt.
    pub receiver: &'static str,
    /// Why the source is not recording now, in plain words; `None` while it records.
    pub problem: Option<String>,
    pub clock_corrections: u64,
}

#[derive(Debug, Serialize)]
pub struct RoomStatus {
    pub room_id: String,
    pub name: String,
    pub kind: String,
    /// `public` or `confidential`: a session started here is confidential when the room is.
    pub area: crate::catalogue::rooms::Area,
    pub location: String,
    /// idle, recording, reconnecting (a source is down), error.
    pub state: String,
    pub session: Option<SessionSummary>,
    pub elapsed_seconds: Option<f64>,
    pub live_view: bool,
    pub sources: Vec<SourceStatus>,
    /// Storage running low (`disk`): shown on every room, since every room records to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_alarm: Option<String>,
    /// The live session's chains differ from what was signed while it recorded: nothing more is
    /// signed for it (`sessions::checkpoints`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_alarm: Option<String>,
    /// Timestamp tokens missing beyond `[signing] tsa_alarm_seconds` (the TSA down): recording
    /// goes on, the tokens come when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_alarm: Option<String>,
    /// Booked, but not recording past `[bookings] alarm_after_seconds` after the booked start
    /// (`bookings::scheduler`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking_alarm: Option<crate::metrics::BookingAlarm>,
    /// The booked end of the recording's booking has passed: a prompt to stop (it is never
    /// stopped by itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrun: Option<crate::metrics::BookingAlarm>,
}

impl Core {
    /// Every room's state as `scope` may see it: a regulator sees that a room is busy, but not
    /// the business of other trading categories.
    pub async fn room_status(&self, scope: &Scope) -> Result<Vec<RoomStatus>, CoreError> {
        let now = now_us();
        let mut out = Vec::new();
        for room in rooms::list(&self.pool).await? {
            let live = index::live_session_of_room(&self.pool, &room.id)
                .await?
                .filter(|sess| scope.sees(&sess.category));
            let mut sources = Vec::new();
            if let Some(session) = &live {
                for rec in index::recordings(&self.pool, &session.id).await? {
                    sources.push(self.source_status(&rec, now));
                }
            }
            let overrun = live.as_ref().and_then(|_| self.metrics.overrun(&room.id));
            out.push(RoomStatus {
                room_id: room.id.clone(),
                name: room.name.clone(),
                kind: room.kind.clone(),
                area: room.area,
                location: room.location.clone(),
                state: room_state(live.as_ref(), &sources).into(),
                elapsed_seconds: live
                    .as_ref()
                    .map(|sess| (now - sess.started_at_us) as f64 / 1e6),
                live_view: live.as_ref().is_some_and(|sess| !sess.confidential),
                signing_alarm: live
                    .as_ref()
                    .and_then(|sess| self.metrics.signing_halted(&sess.id)),
                session: live.map(SessionSummary::from),
                sources,
                storage_alarm: self.disk.problem(),
                timestamp_alarm: self.timestamps.alarm(),
                booking_alarm: self.metrics.booking_alarm(&room.id),
                overrun,
            });
        }
        Ok(out)
    }

    /// One source of a live session, from its recorder's counters (zero before the first).
    fn source_status(&self, rec: &RecordingRow, now: i64) -> SourceStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = self.metrics.snapshot(&rec.id);
        let read = |f: fn(&SourceStats) -> u64| stats.as_ref().map(|st| f(st)).unwrap_or(0);
        let last = read(|st| st.last_segment_at_us.load(Relaxed));
        SourceStatus {
            name: rec.source_name.clone(),
            media: rec.media.clone(),
            state: stats
                .as_ref()
                .map(|st| st.state().as_str())
                .unwrap_or("connecting")
                .into(),
            bitrate_bps: read(|st| st.bitrate_bps.load(Relaxed)),
            segments: read(|st| st.segments.load(Relaxed)),
            gaps: read(|st| st.gaps.load(Relaxed)),
            reconnects: read(|st| st.reconnects.load(Relaxed)),
            last_segment_age_seconds: (last > 0).then(|| (now - last as i64).max(0) as f64 / 1e6),
            streams: stats.as_ref().map(|st| st.streams()).unwrap_or_default(),
            transport: stats.as_ref().map(|st| st.transport()).unwrap_or_default(),
            receiver: stats.as_ref().map(|st| st.receiver()).unwrap_or_default(),
            problem: stats.as_ref().and_then(|st| st.problem()),
            clock_corrections: read(|st| st.clock_corrections.load(Relaxed)),
        }
    }
}

/// idle, error, reconnecting (a source is down or a stream stalled), or recording.
fn room_state(live: Option<&SessionRow>, sources: &[SourceStatus]) -> &'static str {
    match live {
        None => "idle",
        Some(sess) if sess.error.is_some() => "error",
        Some(_)
            if sources
                .iter()
                .any(|x| x.state == "reconnecting" || x.streams.iter().any(|st| st.stalled)) =>
        {
            "reconnecting"
        }
        Some(_) => "recording",
    }
}

/// The session a room is recording (`recording` or `stopping`), or 409 `room_idle`. Who may
/// watch it live is `evidence::access::may_read`.
pub async fn recording_session(
    pool: &crate::db::Pool,
    room_id: &str,
) -> Result<SessionRow, CoreError> {
    rooms::get(pool, room_id).await?; // not found for a room that does not exist
    index::live_session_of_room(pool, room_id)
        .await?
        .ok_or_else(|| CoreError::conflict("room_idle", format!("room {room_id} is not recording")))
}
