//! The camera supervisor of one source: keeps a pipeline running from start to stop. A camera
//! that closes, errors or goes silent (watchdog on buffer flow) is rebuilt with backoff, and the
//! time without media is handed to the chain writer as a gap. One failing source never stops
//! the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::metrics::{SourceState, SourceStats};
use super::pipeline::{PipelineEvent, PipelineSpec, RunningPipeline};
use super::spool::{self, SegmentMeta};
use super::template::Template;
use super::writer::WriterMsg;
use crate::db::now_us;

pub struct RecorderSpec {
    pub recording_id: String,
    pub source_name: String,
    pub url: String,
    pub template: Template,
    pub spool_dir: PathBuf,
    pub segment: Duration,
    pub watchdog: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where the chain ends now (session start, or the last entry's end when resuming).
    pub chain_end_us: i64,
    /// Set when resuming after the server stopped: the outage to record as a gap.
    pub resume_gap: Option<String>,
}

/// How long a pipeline may take to finish its last segment after stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub async fn run(
    spec: RecorderSpec,
    writer: mpsc::UnboundedSender<WriterMsg>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<SourceStats>,
) {
    if let Err(e) = std::fs::create_dir_all(&spec.spool_dir) {
        tracing::error!(dir = %spec.spool_dir.display(), error = %e, "cannot create spool folder");
    }
    let mut last_end_us = spec.chain_end_us;
    let mut outage: Option<(i64, String)> = spec.resume_gap.clone().map(|r| (last_end_us, r));
    let mut backoff = spec.backoff_min;
    let mut attempt: u64 = 0;
    let mut any_media = false;
    loop {
        if *stop.borrow() {
            break;
        }
        attempt += 1;
        stats.set_state(if attempt == 1 {
            SourceState::Connecting
        } else {
            SourceState::Reconnecting
        });
        let (tx, mut events) = mpsc::unbounded_channel();
        let prefix = format!("{:016}", chrono::Utc::now().timestamp_millis());
        let name = format!("rec-{}-{attempt}", spec.recording_id);
        let started = RunningPipeline::start(
            &PipelineSpec {
                name: &name,
                url: &spec.url,
                template: &spec.template,
                spool_dir: &spec.spool_dir,
                file_prefix: &prefix,
                segment: spec.segment,
            },
            tx,
        );
        let (end_reason, stopped) = match started {
            Err(e) => (format!("pipeline did not start: {e}"), false),
            Ok(pipe) => {
                let ended = drive(
                    &spec,
                    pipe,
                    &mut events,
                    &writer,
                    &mut stop,
                    &stats,
                    &mut outage,
                    &mut last_end_us,
                )
                .await;
                if ended.recorded {
                    backoff = spec.backoff_min;
                    any_media = true;
                }
                (ended.reason, ended.by_stop)
            }
        };
        if stopped {
            break;
        }
        tracing::warn!(source = %spec.source_name, reason = %end_reason, retry_in = ?backoff, "source dropped, reconnecting");
        stats
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats.set_state(SourceState::Reconnecting);
        outage.get_or_insert((last_end_us, end_reason));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(spec.backoff_max);
    }
    if !any_media && outage.is_none() {
        // Stopped before the first segment opened: the silence is still on the record.
        outage = Some((
            last_end_us,
            "no media received before stop (camera unreachable or still connecting)".into(),
        ));
    }
    if let Some((start_us, reason)) = outage.take() {
        let _ = writer.send(WriterMsg::Gap {
            start_us,
            end_us: now_us().max(start_us),
            reason: format!("{reason}; no media until stop"),
        });
    }
    stats.set_state(SourceState::Stopped);
}

struct Ended {
    reason: String,
    by_stop: bool,
    /// Whether any segment opened: the camera worked, so the next retry starts fast.
    recorded: bool,
}

/// Runs one pipeline until it ends, the watchdog fires, or stop is asked and the last segment is
/// closed.
#[allow(clippy::too_many_arguments)]
async fn drive(
    spec: &RecorderSpec,
    pipe: RunningPipeline,
    events: &mut mpsc::UnboundedReceiver<PipelineEvent>,
    writer: &mpsc::UnboundedSender<WriterMsg>,
    stop: &mut watch::Receiver<bool>,
    stats: &SourceStats,
    outage: &mut Option<(i64, String)>,
    last_end_us: &mut i64,
) -> Ended {
    let mut open: Option<(PathBuf, u64, SegmentMeta)> = None;
    let mut stopping_since: Option<tokio::time::Instant> = None;
    let mut opened_any = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let reason: String;
    if *stop.borrow() {
        pipe.send_eos();
        stopping_since = Some(tokio::time::Instant::now());
    }
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PipelineEvent::Opened { path, running_ns, wall_start_us, clock }) => {
                    if let Some((start_us, why)) = outage.take() {
                        let _ = writer.send(WriterMsg::Gap { start_us, end_us: wall_start_us.max(start_us), reason: why });
                    }
                    opened_any = true;
                    stats.set_state(SourceState::Recording);
                    let meta = SegmentMeta { wall_start_us, duration_us: None, clock: clock.as_str().into() };
                    if let Err(e) = spool::write_sidecar(&path, &meta) {
                        tracing::error!(file = %path.display(), error = %e, "cannot write spool sidecar");
                    }
                    open = Some((path, running_ns, meta));
                }
                Some(PipelineEvent::Closed { path, duration_us }) => {
                    let meta = match open.take() {
                        Some((p, _, mut meta)) if p == path => { meta.duration_us = Some(duration_us); meta }
                        other => { open = other; continue; }
                    };
                    close_segment(path, meta, false, writer, last_end_us);
                }
                Some(PipelineEvent::Ended { error }) => {
                    reason = error.unwrap_or_else(|| "camera ended the stream".into());
                    break;
                }
                None => { reason = "pipeline event channel closed".into(); break; }
            },
            changed = stop.changed(), if stopping_since.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    pipe.send_eos();
                    stopping_since = Some(tokio::time::Instant::now());
                }
            }
            _ = tick.tick() => {
                if let Some(since) = stopping_since {
                    if since.elapsed() > STOP_GRACE {
                        reason = "stop: the muxer did not finish in time".into();
                        break;
                    }
                } else if pipe.idle_for() > spec.watchdog {
                    reason = format!("no media for {:.0} s", pipe.idle_for().as_secs_f64());
                    break;
                }
            }
        }
    }
    // A wedged graph must not wedge stop: give teardown a bound, then abandon it.
    let last_running = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || pipe.shutdown()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_else(|| {
        tracing::error!("pipeline teardown did not finish within 5 s; abandoned");
        0
    });
    while let Ok(ev) = events.try_recv() {
        if let PipelineEvent::Closed { path, duration_us } = ev
            && open.as_ref().is_some_and(|(p, _, _)| *p == path)
            && let Some((_, _, mut meta)) = open.take()
        {
            meta.duration_us = Some(duration_us);
            close_segment(path, meta, false, writer, last_end_us);
        }
    }
    if let Some((path, start_running, mut meta)) = open.take() {
        // The camera vanished mid-segment: keep what was written, timing estimated.
        if std::fs::metadata(&path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            meta.duration_us = Some((last_running.saturating_sub(start_running) / 1000) as i64);
            let _ = spool::write_sidecar(&path, &meta);
            close_segment(path, meta, true, writer, last_end_us);
        } else {
            spool::forget(&path);
        }
    }
    Ended {
        reason,
        by_stop: stopping_since.is_some(),
        recorded: opened_any,
    }
}

fn close_segment(
    path: PathBuf,
    meta: SegmentMeta,
    recovered: bool,
    writer: &mpsc::UnboundedSender<WriterMsg>,
    last_end_us: &mut i64,
) {
    if let Err(e) = spool::write_sidecar(&path, &meta) {
        tracing::error!(file = %path.display(), error = %e, "cannot write spool sidecar");
    }
    *last_end_us = meta.wall_start_us + meta.duration_us.unwrap_or(0);
    let _ = writer.send(WriterMsg::Segment {
        path,
        meta,
        recovered,
        closed_at: std::time::Instant::now(),
    });
}
