//! Live counters of the recorders, rendered in the Prometheus text format at `/metrics`.
//! Written with atomics by the recorder and chain writer; read only by the HTTP handler.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Connecting,
    Recording,
    Reconnecting,
    Stopped,
}

impl SourceState {
    const ALL: [SourceState; 4] = [
        SourceState::Connecting,
        SourceState::Recording,
        SourceState::Reconnecting,
        SourceState::Stopped,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Recording => "recording",
            SourceState::Reconnecting => "reconnecting",
            SourceState::Stopped => "stopped",
        }
    }
}

/// Counters of one live recording (one source of one session).
#[derive(Debug)]
pub struct SourceStats {
    pub room: String,
    pub session_id: String,
    pub source: String,
    state: Mutex<SourceState>,
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    pub gaps: AtomicU64,
    pub reconnects: AtomicU64,
    pub store_retries: AtomicU64,
    pub bitrate_bps: AtomicU64,
    pub last_segment_at_us: AtomicU64,
    /// Segments whose camera clock was beyond the bound or outside the session.
    pub clock_corrections: AtomicU64,
    /// Late segments (spooled by a node that lost the lease) this writer chained.
    pub late_chained: AtomicU64,
    /// Inserts refused because another writer had taken the seq: each one stopped the writer.
    pub chain_conflicts: AtomicU64,
    /// Each elementary stream as the segment muxer sees it, refreshed by the recorder.
    streams: Mutex<Vec<StreamStatus>>,
    /// The transport the current (or last) attempt uses: `tcp`, `udp`, `multicast`.
    transport: Mutex<String>,
    /// The graph receiving the camera: `direct` or `gstreamer` (`capture::graph`).
    receiver: Mutex<&'static str>,
    /// Why the source is not recording right now, in plain words (for the console's alarm).
    problem: Mutex<Option<String>>,
}

/// One elementary stream of a live source.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamStatus {
    /// `video` or `audio`.
    pub stream: &'static str,
    /// Seconds since its last buffer reached the segment muxer; `None` before the first.
    pub media_age_seconds: Option<f64>,
    /// No media for longer than the watchdog allows.
    pub stalled: bool,
}

impl SourceStats {
    pub fn set_streams(&self, streams: Vec<StreamStatus>) {
        *self.streams.lock().expect("streams lock") = streams;
    }
    pub fn streams(&self) -> Vec<StreamStatus> {
        self.streams.lock().expect("streams lock").clone()
    }
    pub fn set_transport(&self, t: &str) {
        *self.transport.lock().expect("transport lock") = t.into();
    }
    pub fn transport(&self) -> String {
        self.transport.lock().expect("transport lock").clone()
    }
    pub fn set_receiver(&self, r: &'static str) {
        *self.receiver.lock().expect("receiver lock") = r;
    }
    pub fn receiver(&self) -> &'static str {
        *self.receiver.lock().expect("receiver lock")
    }
    pub fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().expect("problem lock") = p;
    }
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem lock").clone()
    }
    pub fn set_state(&self, s: SourceState) {
        *self.state.lock().expect("state lock") = s;
    }
    pub fn state(&self) -> SourceState {
        *self.state.lock().expect("state lock")
    }
}

/// name, Prometheus type, help text, reader.
type Counter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SourceStats) -> u64,
);

/// Upper bounds (seconds) of the store-latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    sources: Mutex<BTreeMap<String, Arc<SourceStats>>>,
    latency: Mutex<Histogram>,
    /// Sessions whose chains no longer match their signed checkpoints, with the problem: nothing
    /// more is signed for them (an alarm until someone looks).
    signing_halted: Mutex<BTreeMap<String, String>>,
    /// Booked rooms not recording past `[bookings] alarm_after_seconds`, by room id.
    booking_alarms: Mutex<BTreeMap<String, BookingAlarm>>,
    /// Booked recordings going on past their booked end, by room id.
    overruns: Mutex<BTreeMap<String, BookingAlarm>>,
}

/// A booking's alarm or prompt on a room: which booking, the room's name, and what to say.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BookingAlarm {
    pub booking_id: String,
    #[serde(skip)]
    pub room_name: String,
    /// The booked start (for an alarm) or end (for an overrun), Unix µs.
    #[serde(skip)]
    pub at_us: i64,
    pub message: String,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Halts signing for a session; true the first time (so the caller audits it once).
    pub fn halt_signing(&self, session_id: &str, problem: &str) -> bool {
        self.signing_halted
            .lock()
            .expect("metrics lock")
            .insert(session_id.into(), problem.into())
            .is_none()
    }

    /// The booked rooms not recording now (replaces the previous set).
    pub fn set_booking_alarms(&self, alarms: BTreeMap<String, BookingAlarm>) {
        *self.booking_alarms.lock().expect("metrics lock") = alarms;
    }

    pub fn booking_alarm(&self, room_id: &str) -> Option<BookingAlarm> {
        self.booking_alarms
            .lock()
            .expect("metrics lock")
            .get(room_id)
            .cloned()
    }

    /// The booked recordings past their booked end now (replaces the previous set).
    pub fn set_overruns(&self, overruns: BTreeMap<String, BookingAlarm>) {
        *self.overruns.lock().expect("metrics lock") = overruns;
    }

    pub fn overrun(&self, room_id: &str) -> Option<BookingAlarm> {
        self.overruns
            .lock()
            .expect("metrics lock")
            .get(room_id)
            .cloned()
    }

    /// Why signing is halted for a session, if it is.
    pub fn signing_halted(&self, session_id: &str) -> Option<String> {
        self.signing_halted
            .lock()
            .expect("metrics lock")
            .get(session_id)
            .cloned()
    }

    pub fn source(
        &self,
        recording_id: &str,
        room: &str,
        session_id: &str,
        source: &str,
    ) -> Arc<SourceStats> {
        let mut m = self.sources.lock().expect("metrics lock");
        m.entry(recording_id.to_string())
            .or_insert_with(|| {
                Arc::new(SourceStats {
                    room: room.into(),
                    session_id: session_id.into(),
                    source: source.into(),
                    state: Mutex::new(SourceState::Connecting),
                    segments: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    gaps: AtomicU64::new(0),
                    reconnects: AtomicU64::new(0),
                    store_retries: AtomicU64::new(0),
                    bitrate_bps: AtomicU64::new(0),
                    last_segment_at_us: AtomicU64::new(0),
                    clock_corrections: AtomicU64::new(0),
                    late_chained: AtomicU64::new(0),
                    chain_conflicts: AtomicU64::new(0),
                    streams: Mutex::new(Vec::new()),
                    transport: Mutex::new(String::new()),
                    receiver: Mutex::new(""),
                    problem: Mutex::new(None),
                })
            })
            .clone()
    }

    pub fn forget(&self, recording_id: &str) {
        self.sources
            .lock()
            .expect("metrics lock")
            .remove(recording_id);
    }

    pub fn snapshot(&self, recording_id: &str) -> Option<Arc<SourceStats>> {
        self.sources
            .lock()
            .expect("metrics lock")
            .get(recording_id)
            .cloned()
    }

    /// Time from segment closed to stored and indexed.
    pub fn observe_store_latency(&self, seconds: f64) {
        let mut h = self.latency.lock().expect("metrics lock");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let sources = self.sources.lock().expect("metrics lock").clone();
        let labels = |s: &SourceStats| {
            format!(
                "room=\"{}\",session=\"{}\",source=\"{}\"",
                escape(&s.room),
                escape(&s.session_id),
                escape(&s.source)
            )
        };
        out.push_str("# HELP witness_source_state 1 for the current state of each live source.\n# TYPE witness_source_state gauge\n");
        for s in sources.values() {
            let now = s.state();
            for st in SourceState::ALL {
                let _ = writeln!(
                    out,
                    "witness_source_state{{{},state=\"{}\"}} {}",
                    labels(s),
                    st.as_str(),
                    u8::from(st == now)
                );
            }
        }
        out.push_str("# HELP witness_stream_media_age_seconds Seconds since each elementary stream last reached the segment muxer.\n# TYPE witness_stream_media_age_seconds gauge\n");
        out.push_str("# HELP witness_stream_stalled 1 while an elementary stream has sent nothing for longer than the watchdog.\n# TYPE witness_stream_stalled gauge\n");
        for s in sources.values() {
            for st in s.streams() {
                if let Some(age) = st.media_age_seconds {
                    let _ = writeln!(
                        out,
                        "witness_stream_media_age_seconds{{{},stream=\"{}\"}} {age:.3}",
                        labels(s),
                        st.stream
                    );
                }
                let _ = writeln!(
                    out,
                    "witness_stream_stalled{{{},stream=\"{}\"}} {}",
                    labels(s),
                    st.stream,
                    u8::from(st.stalled)
                );
            }
        }
        let counters: [Counter; 9] = [
            (
                "witness_segments_written_total",
                "counter",
                "Segments stored and indexed.",
                |s| s.segments.load(Ordering::Relaxed),
            ),
            (
                "witness_bytes_written_total",
                "counter",
                "Segment bytes stored.",
                |s| s.bytes.load(Ordering::Relaxed),
            ),
            (
                "witness_gaps_total",
                "counter",
                "Gap entries written.",
                |s| s.gaps.load(Ordering::Relaxed),
            ),
            (
                "witness_reconnects_total",
                "counter",
                "Pipeline rebuilds after a camera dropped.",
                |s| s.reconnects.load(Ordering::Relaxed),
            ),
            (
                "witness_store_retries_total",
                "counter",
                "Failed object store or index writes, retried.",
                |s| s.store_retries.load(Ordering::Relaxed),
            ),
            (
                "witness_clock_corrections_total",
                "counter",
                "Segments whose camera clock was rejected (beyond the bound or outside the session); the server clock was used.",
                |s| s.clock_corrections.load(Ordering::Relaxed),
            ),
            (
                "witness_late_segments_chained_total",
                "counter",
                "Segments another node spooled before it lost the room's lease, chained here.",
                |s| s.late_chained.load(Ordering::Relaxed),
            ),
            (
                "witness_chain_conflicts_total",
                "counter",
                "Chain inserts refused because the seq was taken by another writer (an alarm: the writer stopped).",
                |s| s.chain_conflicts.load(Ordering::Relaxed),
            ),
            (
                "witness_source_bitrate_bps",
                "gauge",
                "Bitrate of the last segment.",
                |s| s.bitrate_bps.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in sources.values() {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(s), get(s));
            }
        }
        let h = self.latency.lock().expect("metrics lock");
        out.push_str("# HELP witness_store_latency_seconds Segment closed to stored and indexed.\n# TYPE witness_store_latency_seconds histogram\n");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "witness_store_latency_seconds_bucket{{le=\"{le}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "witness_store_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "witness_store_latency_seconds_sum {}", h.sum);
        let _ = writeln!(out, "witness_store_latency_seconds_count {}", h.count);
        out.push_str("# HELP witness_signing_halted 1 for each session whose chains differ from their signed checkpoints: nothing more is signed for it.\n# TYPE witness_signing_halted gauge\n");
        for session in self.signing_halted.lock().expect("metrics lock").keys() {
            let _ = writeln!(
                out,
                "witness_signing_halted{{session=\"{}\"}} 1",
                escape(session)
            );
        }
        out.push_str("# HELP witness_booking_alarm 1 for each booked room not recording past its booked start plus [bookings] alarm_after_seconds.\n# TYPE witness_booking_alarm gauge\n");
        for (room_id, a) in self.booking_alarms.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "witness_booking_alarm{{room=\"{}\",room_id=\"{}\",booking=\"{}\"}} 1",
                escape(&a.room_name),
                escape(room_id),
                escape(&a.booking_id)
            );
        }
        out.push_str("# HELP witness_booking_overrun_seconds How long a booked recording has gone on past its booked end (it is never stopped by itself).\n# TYPE witness_booking_overrun_seconds gauge\n");
        let now = crate::time::now_us();
        for (room_id, a) in self.overruns.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "witness_booking_overrun_seconds{{room=\"{}\",room_id=\"{}\",booking=\"{}\"}} {}",
                escape(&a.room_name),
                escape(room_id),
                escape(&a.booking_id),
                ((now - a.at_us).max(0) as f64 / 1e6).round()
            );
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
