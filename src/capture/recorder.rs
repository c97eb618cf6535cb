//! The camera supervisor of one source: keeps a pipeline running from start to stop. It picks
//! the transport (TCP first, then UDP, remembering what worked), watches each elementary stream
//! where it reaches the segment files, rebuilds a pipeline that ends, errs or stalls (with
//! backoff), and tells the chain writer why each hole opened. The writer decides where gaps
//! lie. One failing source never stops the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::capture::graph::{self, Graph, GraphEvent, GraphSpec, Receiver};
use crate::capture::template::Template;
use crate::capture::transport::Transport;
use crate::ledger::spool::{self, SegmentMeta};
use crate::ledger::writer::WriterMsg;
use crate::metrics::{SourceState, SourceStats, StreamStatus};

/// What the session asks of its recorders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// The session stops at this time (Unix µs): close the last segment, and the chain must
    /// reach this time.
    At(i64),
    /// The server shuts down or lost the room: close the last segment, leave the chain open
    /// (it resumes, with a gap, wherever the session continues).
    Abandon,
}

/// Told once a transport delivered media, so the next session of the room tries it first.
pub type LearnedTransport = Arc<dyn Fn(Transport) + Send + Sync>;

#[derive(Clone)]
pub struct RecorderSpec {
    pub recording_id: String,
    pub source_name: String,
    /// The camera's URL, without user info.
    pub url: String,
    /// The camera's credentials, opened in memory for this recorder only; every reason it
    /// reports is scrubbed of the password.
    pub credentials: Option<crate::capture::credentials::Credentials>,
    /// `av`, `video` or `audio`.
    pub media: String,
    pub transport: Transport,
    /// What worked last time for this source.
    pub learned: Option<Transport>,
    pub on_learned: LearnedTransport,
    pub template: Template,
    pub spool_dir: PathBuf,
    pub segment: Duration,
    pub watchdog: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Set when resuming after the server stopped: why the chain has a hole before now.
    pub resume_gap: Option<String>,
    /// Which graph receives the camera (the direct client unless configured otherwise, or
    /// GStreamer's once the camera offers what only it can take).
    pub receiver: Receiver,
}

/// How long a pipeline may take to finish its last segment after stop.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a run waits for the camera's first RTCP sender report before it stamps its
/// segments with the server's clock. A run keeps one clock, so the chain never shows the step
/// between the two clocks in the middle of a run.
const SENDER_REPORT_WAIT: Duration = Duration::from_secs(6);

/// Closed segments of a run held until the run knows which clock it uses.
struct ClockHold {
    /// `Some(true)`: camera clock (RTCP); `Some(false)`: no sender report came in time.
    camera: Option<bool>,
    held: Vec<(PathBuf, SegmentMeta, u64, bool)>,
}

impl ClockHold {
    fn new() -> ClockHold {
        ClockHold {
            camera: None,
            held: Vec::new(),
        }
    }

    /// Decides the run's clock if it can (or must, `force`), then sends what it held.
    fn settle(&mut self, pipe: &dyn Graph, force: bool, writer: &mpsc::UnboundedSender<WriterMsg>) {
        if self.camera.is_none() {
            if pipe.camera_wall_us(0).is_some() {
                self.camera = Some(true);
            } else if force || pipe.uptime() > SENDER_REPORT_WAIT {
                self.camera = Some(false);
            } else {
                return;
            }
        }
        for (path, mut meta, running_ns, recovered) in self.held.drain(..) {
            meta.camera_start_us = if self.camera == Some(true) {
                pipe.camera_wall_us(running_ns)
            } else {
                None
            };
            close_segment(path, meta, recovered, writer);
        }
    }

    fn push(
        &mut self,
        pipe: &dyn Graph,
        seg: (PathBuf, SegmentMeta, u64, bool),
        writer: &mpsc::UnboundedSender<WriterMsg>,
    ) {
        self.held.push(seg);
        self.settle(pipe, false, writer);
    }
}

/// Runs [`run`], and runs it again if it fails (a panic: a defect, never the camera's doing):
/// what the failed run left in the spool (segments held back, the file it had open) is chained
/// first, the time it was down is a gap naming the failure, and recording goes on. Without
/// this, a recorder that failed left its source "recording" with no segment and no gap until
/// the stop.
pub async fn supervise(
    mut spec: RecorderSpec,
    writer: mpsc::UnboundedSender<WriterMsg>,
    mut stop: watch::Receiver<Stop>,
    stats: Arc<SourceStats>,
) {
    let mut failures = 0u32;
    loop {
        let attempt = std::panic::AssertUnwindSafe(run(
            spec.clone(),
            writer.clone(),
            stop.clone(),
            stats.clone(),
        ));
        let Err(panic) = futures::FutureExt::catch_unwind(attempt).await else {
            return;
        };
        failures += 1;
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic")
            .to_string();
        tracing::error!(error = %what, failures, "recorder failed; starting it again");
        let (done, chained) = tokio::sync::oneshot::channel();
        let _ = writer.send(WriterMsg::Leftovers {
            dir: spec.spool_dir.clone(),
            measure: crate::capture::media_span::measure,
            done,
        });
        // Answered, or dropped if the writer is gone: either way no file of ours is pending.
        let _ = chained.await;
        let reason = format!("the recorder failed ({what}) and was started again");
        stats.set_state(SourceState::Reconnecting);
        stats.set_problem(Some(reason.clone()));
        let _ = writer.send(WriterMsg::Outage { reason });
        // The next run's hole is this failure's, not a resume's.
        spec.resume_gap = None;
        let pause = (spec.backoff_min * failures.min(8)).min(spec.backoff_max);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        let stopping = *stop.borrow();
        match stopping {
            Stop::Running => {}
            Stop::At(stop_us) => {
                let _ = writer.send(WriterMsg::Close { stop_us });
                stats.set_state(SourceState::Stopped);
                return;
            }
            Stop::Abandon => {
                stats.set_state(SourceState::Stopped);
                return;
            }
        }
    }
}

/// Debug builds only, for the tests: `WITNESS_FAULT_RECORDER_PANIC=cam2` makes the recorder of
/// source `cam2` panic once in the process, after its first segment, as a defect would.
#[cfg(debug_assertions)]
fn injected_fault(source: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("WITNESS_FAULT_RECORDER_PANIC").is_ok_and(|s| s == source)
        && !DONE.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        panic!("injected fault in the recorder of {source}");
    }
}

/// Records one source from start to stop: pipelines run one after another, each until it ends,
/// stalls or the stop closes its last segment.
pub async fn run(
    mut spec: RecorderSpec,
    writer: mpsc::UnboundedSender<WriterMsg>,
    mut stop: watch::Receiver<Stop>,
    stats: Arc<SourceStats>,
) {
    if let Err(e) = std::fs::create_dir_all(&spec.spool_dir) {
        tracing::error!(dir = %spec.spool_dir.display(), error = %e, "cannot create spool folder");
    }
    // Why the chain has a hole before its first media of this run.
    let _ = writer.send(WriterMsg::Outage {
        reason: spec
            .resume_gap
            .clone()
            .unwrap_or_else(|| crate::ledger::writer::CONNECTING.into()),
    });
    let transports = spec.transport.attempts(spec.learned);
    let mut which = 0usize;
    let mut backoff = spec.backoff_min;
    let mut attempt: u64 = 0;
    let mut any_media = false;
    loop {
        if *stop.borrow() != Stop::Running {
            break;
        }
        attempt += 1;
        let transport = transports[which % transports.len()];
        stats.set_state(if attempt == 1 {
            SourceState::Connecting
        } else {
            SourceState::Reconnecting
        });
        stats.set_transport(transport.as_str());
        let (tx, mut events) = mpsc::unbounded_channel();
        let prefix = format!("{:016}", chrono::Utc::now().timestamp_millis());
        let name = format!("rec-{}-{attempt}", spec.recording_id);
        let started = graph::start(
            &GraphSpec {
                name: &name,
                url: &spec.url,
                credentials: spec.credentials.as_ref(),
                transport,
                template: &spec.template,
                media: &spec.media,
                spool_dir: &spec.spool_dir,
                file_prefix: &prefix,
                segment: spec.segment,
            },
            spec.receiver,
            tx,
        );
        let ended = match started {
            Err(e) => Ended {
                reason: format!("pipeline did not start: {e}"),
                by_stop: false,
                recorded: false,
                needs_gstreamer: false,
            },
            Ok(pipe) => {
                stats.set_receiver(pipe.kind());
                drive(&spec, pipe, &mut events, &writer, &mut stop, &stats).await
            }
        };
        if ended.needs_gstreamer {
            // Nothing was recorded and no time lost waiting: the same attempt, on GStreamer.
            tracing::info!(source = %spec.source_name, why = %ended.reason, "receiving this source with GStreamer's graph");
            spec.receiver = Receiver::Gstreamer;
            attempt -= 1;
            continue;
        }
        if ended.recorded {
            backoff = spec.backoff_min;
            if !any_media || Some(transport) != spec.learned {
                (spec.on_learned)(transport);
            }
            any_media = true;
        }
        if ended.by_stop {
            break;
        }
        let reason = if ended.recorded || transports.len() == 1 {
            ended.reason
        } else {
            format!("{} (transport {})", ended.reason, transport.as_str())
        };
        // The reason becomes a gap entry of the chain, a log line and a status problem.
        let reason = match &spec.credentials {
            Some(c) => c.scrub(&reason),
            None => reason,
        };
        tracing::warn!(source = %spec.source_name, transport = transport.as_str(), %reason, "source dropped, reconnecting");
        stats
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats.set_state(SourceState::Reconnecting);
        stats.set_problem(Some(reason.clone()));
        stats.set_streams(Vec::new());
        let _ = writer.send(WriterMsg::Outage {
            reason: reason.clone(),
        });
        // A camera that will not do this transport gets the next one at once; a full round
        // without media waits, with backoff.
        if !ended.recorded && transports.len() > 1 {
            which += 1;
            if !which.is_multiple_of(transports.len()) {
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(spec.backoff_max);
    }
    if let Stop::At(stop_us) = *stop.borrow() {
        if !any_media {
            // Stopped before the first segment: the silence is still on the record. The writer
            // keeps a failed attempt's reason if one came; else this refines "connecting".
            let _ = writer.send(WriterMsg::Outage {
                reason: "no media received before stop (camera still connecting)".into(),
            });
        }
        let _ = writer.send(WriterMsg::Close { stop_us });
    }
    stats.set_state(SourceState::Stopped);
}

struct Ended {
    reason: String,
    by_stop: bool,
    /// Whether the camera sent RTP (recordable or not): it works over this transport.
    recorded: bool,
    /// The direct client cannot take what the camera offers (`reason` says what).
    needs_gstreamer: bool,
}

/// Runs one pipeline until it ends, a stream stalls, or stop is asked and the last segment is
/// closed.
async fn drive(
    spec: &RecorderSpec,
    pipe: Box<dyn Graph>,
    events: &mut mpsc::UnboundedReceiver<GraphEvent>,
    writer: &mpsc::UnboundedSender<WriterMsg>,
    stop: &mut watch::Receiver<Stop>,
    stats: &SourceStats,
) -> Ended {
    let mut open: Option<(PathBuf, u64, SegmentMeta)> = None;
    let mut hold = ClockHold::new();
    let mut stopping_since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let reason: String;
    let mut needs_gstreamer = false;
    if *stop.borrow() != Stop::Running {
        pipe.send_eos();
        stopping_since = Some(tokio::time::Instant::now());
    }
    loop {
        // Nothing reached the muxer, so no segment is open and no EOS will come back out of
        // it (rtspsrc has no pad to send one on): a stop ends the run at once.
        if stopping_since.is_some() && !pipe.media_seen() {
            reason = "stopped before any media".into();
            break;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(GraphEvent::Opened { path, running_ns, server_start_us, camera_start_us }) => {
                    stats.set_state(SourceState::Recording);
                    stats.set_problem(None);
                    let meta = opened_meta(&path, server_start_us, camera_start_us, &pipe.unsupported());
                    open = Some((path, running_ns, meta));
                }
                Some(GraphEvent::Closed { path, duration_us, missing }) => {
                    let (meta, running_ns) = match open.take() {
                        Some((p, running_ns, mut meta)) if p == path => {
                            meta.duration_us = Some(duration_us);
                            meta.add_note(missing);
                            (meta, running_ns)
                        }
                        other => { open = other; continue; }
                    };
                    hold.push(pipe.as_ref(), (path, meta, running_ns, false), writer);
                    #[cfg(debug_assertions)]
                    injected_fault(&spec.source_name);
                }
                Some(GraphEvent::ControlLost { error }) => {
                    let error = spec.credentials.as_ref().map_or(error.clone(), |c| c.scrub(&error));
                    tracing::warn!(source = %spec.source_name, %error, "camera closed the RTSP connection; media over UDP continues");
                }
                Some(GraphEvent::Ended { error }) => {
                    reason = match error {
                        Some(e) => explain(&e, pipe.as_ref()),
                        None => "camera ended the stream".into(),
                    };
                    break;
                }
                Some(GraphEvent::NeedsGstreamer { why }) => {
                    reason = why;
                    needs_gstreamer = true;
                    break;
                }
                None => { reason = "pipeline event channel closed".into(); break; }
            },
            changed = stop.changed(), if stopping_since.is_none() => {
                if changed.is_err() || *stop.borrow() != Stop::Running {
                    pipe.send_eos();
                    stopping_since = Some(tokio::time::Instant::now());
                }
                continue;
            }
            _ = tick.tick() => {
                hold.settle(pipe.as_ref(), false, writer);
                let stall = pipe.stalled(spec.watchdog);
                stats.set_streams(
                    pipe.stream_ages()
                        .into_iter()
                        .map(|(s, age)| StreamStatus {
                            stream: s.as_str(),
                            media_age_seconds: age,
                            stalled: stall.as_ref().is_some_and(|st| st.streams.contains(&s)),
                        })
                        .collect(),
                );
                if let Some(since) = stopping_since {
                    if since.elapsed() > STOP_GRACE {
                        reason = "stop: the muxer did not finish in time".into();
                        break;
                    }
                } else if let Some(stall) = stall {
                    tracing::debug!(?stall, rtp = ?pipe.rtp_ages(), media = pipe.media_seen(), "stream stalled");
                    reason = if pipe.media_seen() {
                        stall.reason()
                    } else if pipe.rtp_seen() {
                        format!(
                            "the camera sends RTP, but no {} reached the segment files for {:.1} s",
                            stall.streams.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or "),
                            stall.idle.as_secs_f64()
                        )
                    } else if !pipe.described() {
                        format!(
                            "the camera did not answer RTSP (no session description within {:.1} s)",
                            stall.idle.as_secs_f64()
                        )
                    } else {
                        explain(&format!("no media for {:.1} s after connecting", stall.idle.as_secs_f64()), pipe.as_ref())
                    };
                    break;
                }
            }
        }
    }
    // The camera answered over this transport if any RTP came, recordable or not.
    let recorded = pipe.rtp_seen() || pipe.media_seen();
    let unsupported = pipe.unsupported();
    hold.settle(pipe.as_ref(), true, writer);
    let camera_clock = (hold.camera == Some(true)).then(|| pipe.camera_clock());
    let camera_start = |running_ns: u64| {
        camera_clock
            .as_ref()
            .and_then(|c| c.wall_ns(running_ns))
            .map(|ns| (ns / 1000) as i64)
    };
    let mut last_segments = Vec::new();
    // Files opened and never closed: (path, start, entry, running time they end by at most).
    let mut unclosed = Vec::new();
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
    // What the graph told after the loop ended: files closed, and files opened (the graph may
    // have cut a file in the moment it failed; that file is kept or forgotten below, never
    // left in the spool unlisted).
    while let Ok(ev) = events.try_recv() {
        match ev {
            GraphEvent::Closed {
                path,
                duration_us,
                missing,
            } if open.as_ref().is_some_and(|(p, _, _)| *p == path) => {
                let Some((_, running_ns, mut meta)) = open.take() else {
                    continue;
                };
                meta.duration_us = Some(duration_us);
                meta.add_note(missing);
                meta.camera_start_us = camera_start(running_ns);
                last_segments.push((path, meta, false));
            }
            GraphEvent::Opened {
                path,
                running_ns,
                server_start_us,
                camera_start_us,
            } => {
                if let Some((earlier, start, meta)) = open.take() {
                    // Opened again without a close: the earlier file was never completed; it
                    // holds at most what came before this one.
                    tracing::warn!(file = %earlier.display(), "segment opened again before it was closed");
                    unclosed.push((earlier, start, meta, running_ns));
                }
                let meta = opened_meta(&path, server_start_us, camera_start_us, &unsupported);
                open = Some((path, running_ns, meta));
            }
            _ => {}
        }
    }
    if let Some((path, start_running, meta)) = open.take() {
        unclosed.push((path, start_running, meta, last_running));
    }
    for (path, start_running, mut meta, end_running) in unclosed {
        // The camera vanished mid-segment: keep what was written, as long as the media that
        // reached the file (the last buffer in may still have been queued in the muxer).
        if std::fs::metadata(&path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            let by_last_buffer = (end_running.saturating_sub(start_running) / 1000) as i64;
            let measured = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || crate::capture::media_span::measure(&path))
                    .await
                    .ok()
                    .flatten()
            };
            meta.duration_us = Some(measured.map_or(0, |m| m.min(by_last_buffer)));
            meta.camera_start_us = camera_start(start_running);
            last_segments.push((path, meta, true));
        } else {
            spool::forget(&path);
        }
    }
    for (path, meta, recovered) in last_segments {
        close_segment(path, meta, recovered, writer);
    }
    Ended {
        reason,
        by_stop: stopping_since.is_some(),
        recorded,
        needs_gstreamer,
    }
}

/// The entry of a segment file just opened, written beside it in the spool at once so that a
/// crash before it closes still leaves its wall-clock start.
fn opened_meta(
    path: &std::path::Path,
    server_start_us: i64,
    camera_start_us: Option<i64>,
    unsupported: &[String],
) -> SegmentMeta {
    let meta = SegmentMeta {
        wall_start_us: server_start_us,
        duration_us: None,
        clock: "server".into(),
        server_start_us: Some(server_start_us),
        camera_start_us,
        note: (!unsupported.is_empty())
            .then(|| format!("not recorded: {}", unsupported.join(", "))),
    };
    if let Err(e) = spool::write_sidecar(path, &meta) {
        tracing::error!(file = %path.display(), error = %e, "cannot write spool sidecar");
    }
    meta
}

/// A pipeline failure in words a user can act on: streams the template cannot record are named
/// when they are why nothing could be recorded.
fn explain(error: &str, pipe: &dyn Graph) -> String {
    let unsupported = pipe.unsupported();
    if !pipe.media_seen() && !unsupported.is_empty() {
        format!(
            "camera offers no stream that can be recorded: {} ({error})",
            unsupported.join(", ")
        )
    } else {
        error.to_string()
    }
}

fn close_segment(
    path: PathBuf,
    meta: SegmentMeta,
    recovered: bool,
    writer: &mpsc::UnboundedSender<WriterMsg>,
) {
    if let Err(e) = spool::write_sidecar(&path, &meta) {
        tracing::error!(file = %path.display(), error = %e, "cannot write spool sidecar");
    }
    let _ = writer.send(WriterMsg::Segment {
        path,
        meta,
        recovered,
        closed_at: std::time::Instant::now(),
    });
}
