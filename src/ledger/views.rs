//! The JSON views of sessions and recordings that the API returns.

use crate::ledger::values::{Category, SessionKind, SessionState};
use serde::Serialize;

use crate::ledger::index::SessionRow;
use crate::time::{now_us, rfc3339};

#[derive(Debug, Serialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Serialize)]
pub struct SegmentView {
    pub seq: i64,
    pub object_key: String,
    pub start: String,
    pub duration_seconds: f64,
    pub bytes: i64,
    pub sha256: String,
    /// `rtcp-ntp` (camera clock) or `server`.
    pub clock: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct GapView {
    pub seq: i64,
    pub start: String,
    pub end: String,
    pub duration_seconds: f64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct RecordingView {
    pub id: String,
    pub source: String,
    pub url: String,
    pub media: String,
    pub template: String,
    pub state: String,
    pub bytes: i64,
    pub duration_seconds: f64,
    pub segment_count: usize,
    pub gap_count: usize,
    pub chain_head: Option<ChainHead>,
    pub segments: Vec<SegmentView>,
    /// Set when the view was asked for without its segments (`?segments=none`): `segments` is
    /// then empty although `segment_count` is not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub segments_omitted: bool,
    pub gaps: Vec<GapView>,
    /// Segments a node spooled before it lost the room's lease, stored afterwards (`late`):
    /// chained (`chained_seq`) by the lease holder, or listed only when the session had stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<LateView>,
}

#[derive(Debug, Serialize)]
pub struct LateView {
    pub object_key: String,
    pub start: String,
    pub duration_seconds: f64,
    pub bytes: i64,
    pub sha256: String,
    /// The node that spooled it.
    pub node: String,
    pub published_at: String,
    pub chained_seq: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub room_id: String,
    pub room_name: String,
    pub project_code: String,
    pub session_code: String,
    pub kind: SessionKind,
    pub category: Category,
    /// Started in a confidential room (the evaluation area) or as an evaluation.
    pub confidential: bool,
    /// The booking it records, if any.
    pub booking_id: Option<String>,
    pub state: SessionState,
    pub started_at: String,
    pub stopped_at: Option<String>,
    /// The witness staff member who started it, who writes and signs its witness record.
    pub started_by: Option<String>,
}

impl From<SessionRow> for SessionSummary {
    fn from(s: SessionRow) -> Self {
        SessionSummary {
            id: s.id,
            room_id: s.room_id,
            room_name: s.room_name,
            project_code: s.project_code,
            session_code: s.session_code,
            kind: s.kind,
            category: s.category,
            confidential: s.confidential,
            booking_id: s.booking_id,
            state: s.state,
            started_at: rfc3339(s.started_at_us),
            stopped_at: s.stopped_at_us.map(rfc3339),
            started_by: s.started_by,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub summary: SessionSummary,
    pub room_kind: String,
    pub note: String,
    pub duration_seconds: f64,
    pub bytes: i64,
    pub manifest_key: Option<String>,
    pub error: Option<String>,
    pub recordings: Vec<RecordingView>,
}

impl SessionView {
    pub fn new(s: SessionRow, recordings: Vec<RecordingView>) -> SessionView {
        let end = s.stopped_at_us.unwrap_or_else(now_us);
        SessionView {
            room_kind: s.room_kind.clone(),
            note: s.note.clone(),
            duration_seconds: (end - s.started_at_us) as f64 / 1e6,
            bytes: recordings.iter().map(|r| r.bytes).sum(),
            manifest_key: s.manifest_key.clone(),
            error: s.error.clone(),
            recordings,
            summary: SessionSummary::from(s),
        }
    }
}
