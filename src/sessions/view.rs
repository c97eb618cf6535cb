//! Sessions as the API shows them: one session with its recordings, segments and gaps, or a
//! filtered list.

use crate::error::CoreError;
use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::index::{self, RecordingRow, SessionRow, existing_session};
use crate::ledger::late;
use crate::ledger::views::{
    ChainHead, GapView, LateView, RecordingView, SegmentView, SessionSummary, SessionView,
};
use crate::time::rfc3339;

use super::Core;

impl Core {
    pub async fn view(&self, session_id: &str) -> Result<SessionView, CoreError> {
        self.view_of(session_id, true).await
    }

    /// The view with each recording's segments left out (`segments_omitted`), read without
    /// reading them: counts and totals from SQL, the gaps and the head as they are.
    pub async fn view_without_segments(&self, session_id: &str) -> Result<SessionView, CoreError> {
        self.view_of(session_id, false).await
    }

    async fn view_of(&self, session_id: &str, segments: bool) -> Result<SessionView, CoreError> {
        let s = existing_session(&self.pool, session_id).await?;
        let mut recordings = Vec::new();
        for rec in index::recordings(&self.pool, &s.id).await? {
            let late = late::of_recording(&self.pool, &rec.id).await?;
            let mut view = if segments {
                let entries = index::entries(&self.pool, &rec.id).await?;
                self.recording_view(&s, rec, &entries)
            } else {
                let head = index::head(&self.pool, &rec.id).await?;
                let (others, count, bytes, duration_us) =
                    index::entries_but_media(&self.pool, &rec.id).await?;
                let mut v = self.recording_view(&s, rec, &others);
                v.segment_count = count as usize;
                v.bytes = bytes;
                v.duration_seconds = duration_us as f64 / 1e6;
                v.chain_head = head.map(|e| ChainHead {
                    seq: e.seq,
                    hash: e.entry_hash,
                });
                v.segments_omitted = true;
                v
            };
            view.late = late
                .into_iter()
                .map(|l| LateView {
                    start: rfc3339(l.wall_start_us),
                    duration_seconds: l.duration_us as f64 / 1e6,
                    published_at: rfc3339(l.published_at_us),
                    object_key: l.object_key,
                    bytes: l.bytes,
                    sha256: l.sha256,
                    node: l.node_id,
                    chained_seq: l.chained_seq,
                })
                .collect();
            recordings.push(view);
        }
        Ok(SessionView::new(s, recordings))
    }

    pub(super) fn recording_view(
        &self,
        s: &SessionRow,
        rec: RecordingRow,
        entries: &[Entry],
    ) -> RecordingView {
        let live = self.metrics.snapshot(&rec.id);
        let state = match (&live, s.state.as_str()) {
            (Some(st), _) => st.state().as_str().to_string(),
            (None, "recording") => "connecting".into(),
            (None, other) => other.to_string(),
        };
        let segments: Vec<SegmentView> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Media)
            .map(|e| SegmentView {
                seq: e.seq,
                object_key: e.object_key.clone(),
                start: rfc3339(e.wall_start_us),
                duration_seconds: e.duration_us as f64 / 1e6,
                bytes: e.bytes,
                sha256: e.sha256.clone(),
                clock: e.clock.clone(),
                note: e.detail.clone(),
            })
            .collect();
        let gaps: Vec<GapView> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Gap)
            .map(|e| GapView {
                seq: e.seq,
                start: rfc3339(e.wall_start_us),
                end: rfc3339(e.wall_start_us + e.duration_us),
                duration_seconds: e.duration_us as f64 / 1e6,
                reason: e.detail.clone(),
            })
            .collect();
        let head = entries.last();
        RecordingView {
            id: rec.id,
            source: rec.source_name,
            url: rec.url,
            media: rec.media,
            template: rec.template,
            state,
            bytes: segments.iter().map(|x| x.bytes).sum(),
            duration_seconds: segments.iter().map(|x| x.duration_seconds).sum(),
            segment_count: segments.len(),
            gap_count: gaps.len(),
            chain_head: head.map(|e| ChainHead {
                seq: e.seq,
                hash: e.entry_hash.clone(),
            }),
            segments,
            segments_omitted: false,
            gaps,
            late: Vec::new(),
        }
    }

    pub async fn list(
        &self,
        filter: &index::SessionFilter,
        limit: i64,
    ) -> Result<Vec<SessionSummary>, CoreError> {
        Ok(index::list_sessions(&self.pool, filter, limit)
            .await?
            .into_iter()
            .map(SessionSummary::from)
            .collect())
    }
}
