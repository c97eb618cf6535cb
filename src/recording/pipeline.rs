//! One GStreamer graph per source: `rtspsrc` (TCP) → per-stream branch from the template →
//! `splitmuxsink`, keyframe-aligned, no video transcoding. Emits segment open/close events with
//! wall-clock times; knows nothing of hashes, stores or SQL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc;

use super::chain::ClockSource;
use super::template::Template;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("gstreamer: {0}")]
    Build(String),
}

impl From<gst::glib::BoolError> for PipelineError {
    fn from(e: gst::glib::BoolError) -> Self {
        PipelineError::Build(e.to_string())
    }
}

/// What a running pipeline reports, in order.
#[derive(Debug)]
pub enum PipelineEvent {
    /// A segment file was opened; its wall-clock start is known now.
    Opened {
        path: PathBuf,
        /// Pipeline running time at the start, to estimate a segment the muxer never closed.
        running_ns: u64,
        wall_start_us: i64,
        clock: ClockSource,
    },
    /// A segment file is complete and closed by the muxer.
    Closed { path: PathBuf, duration_us: i64 },
    /// The graph stopped: end of stream (camera closed or we asked) or an error.
    Ended { error: Option<String> },
}

/// Seconds between Unix and NTP epochs.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Mapping from pipeline running time to the camera's wall clock, learned from RTCP SR.
#[derive(Debug, Default, Clone, Copy)]
struct NtpMapping {
    /// camera wall time (Unix ns) minus running time (ns)
    offset_ns: i128,
}

struct Shared {
    /// Milliseconds since `epoch()` at the last buffer seen on any branch (watchdog).
    last_buffer_ms: AtomicU64,
    /// Running time (ns) of the last buffer, to close a fragment the muxer never closed.
    last_running_ns: AtomicU64,
    ntp: Mutex<Option<NtpMapping>>,
    ended: AtomicBool,
    /// Whether the camera's SDP has a video stream (known before data flows).
    has_video: AtomicBool,
    /// Running time (ns) of the first video keyframe; `u64::MAX` until then.
    video_start_ns: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

pub struct RunningPipeline {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    started: Instant,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    stop_bus: Arc<AtomicBool>,
}

pub struct PipelineSpec<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub template: &'a Template,
    /// Folder for this run's segment files.
    pub spool_dir: &'a Path,
    /// File name prefix, unique per run so files of successive runs sort in order.
    pub file_prefix: &'a str,
    pub segment: Duration,
}

impl RunningPipeline {
    /// Builds the graph, sets it playing and starts forwarding its events to `events`.
    pub fn start(
        spec: &PipelineSpec<'_>,
        events: mpsc::UnboundedSender<PipelineEvent>,
    ) -> Result<RunningPipeline, PipelineError> {
        let pipeline = gst::Pipeline::with_name(spec.name);
        // Running time then maps to the server's wall clock by adding the base time.
        let clock = gst::SystemClock::obtain();
        clock.set_property("clock-type", gst::ClockType::Realtime);
        pipeline.use_clock(Some(&clock));

        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", spec.url)
            // TCP unless the URL asks for UDP (`rtspu://`, RFC 2326): some servers offer no
            // interleaved transport.
            .property_from_str(
                "protocols",
                if spec.url.starts_with("rtspu://") {
                    "udp"
                } else {
                    "tcp"
                },
            )
            .property_from_str("buffer-mode", "none")
            .property("latency", 200u32)
            .property("tcp-timeout", 5_000_000u64)
            .build()?;
        let muxer = gst::ElementFactory::make(&spec.template.muxer).build()?;
        let location = spec.spool_dir.join(format!(
            "{}-%08d.{}",
            spec.file_prefix, spec.template.extension
        ));
        let sink = gst::ElementFactory::make("splitmuxsink")
            .property("location", location.to_string_lossy().as_ref())
            .property("max-size-time", spec.segment.as_nanos() as u64)
            .property("muxer", &muxer)
            .build()?;
        pipeline.add_many([&src, &sink])?;

        let shared = Arc::new(Shared {
            last_buffer_ms: AtomicU64::new(now_ms()),
            last_running_ns: AtomicU64::new(0),
            ntp: Mutex::new(None),
            ended: AtomicBool::new(false),
            has_video: AtomicBool::new(false),
            video_start_ns: AtomicU64::new(u64::MAX),
        });

        note_video_in_sdp(&src, &shared);
        link_streams_from_sdp(&src, &pipeline, &sink, spec.template, &shared, &events);
        learn_camera_clock(&src, &shared);

        let bus = pipeline.bus().expect("a pipeline has a bus");
        let stop_bus = Arc::new(AtomicBool::new(false));
        let bus_thread = {
            let pipeline = pipeline.clone();
            let shared = shared.clone();
            let stop_bus = stop_bus.clone();
            std::thread::Builder::new()
                .name(format!("bus-{}", spec.name))
                .spawn(move || forward_bus(bus, pipeline, shared, stop_bus, events))
                .map_err(|e| PipelineError::Build(e.to_string()))?
        };

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| PipelineError::Build(format!("cannot start: {e}")))?;
        Ok(RunningPipeline {
            pipeline,
            shared,
            started: Instant::now(),
            bus_thread: Some(bus_thread),
            stop_bus,
        })
    }

    /// Time since the last media buffer (or since start, before the first one).
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(
            now_ms().saturating_sub(self.shared.last_buffer_ms.load(Ordering::Relaxed)),
        )
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks the graph to finish: the muxer closes the open segment, then `Ended` follows.
    pub fn send_eos(&self) {
        self.pipeline.send_event(gst::event::Eos::new());
    }

    /// Tears the graph down. Returns the running time (ns) of the last buffer seen.
    pub fn shutdown(mut self) -> u64 {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.stop_bus.store(true, Ordering::Relaxed);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        self.shared.last_running_ns.load(Ordering::Relaxed)
    }

    pub fn has_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Relaxed)
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        if self.bus_thread.is_some() {
            let _ = self.pipeline.set_state(gst::State::Null);
            self.stop_bus.store(true, Ordering::Relaxed);
            if let Some(t) = self.bus_thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// rtspsrc adds a pad only when a stream's first packet arrives, so audio may flow before the
/// video pad exists; the SDP (`select-stream`, before any setup) says whether video will come.
fn note_video_in_sdp(src: &gst::Element, shared: &Arc<Shared>) {
    let shared = shared.clone();
    src.connect("select-stream", false, move |args| {
        if let Ok(caps) = args[2].get::<gst::Caps>()
            && caps
                .structure(0)
                .and_then(|s| s.get::<&str>("media").ok())
                .is_some_and(|m| m == "video")
        {
            shared.has_video.store(true, Ordering::Relaxed);
        }
        Some(true.to_value())
    });
}

/// Links each RTP stream rtspsrc announces (from the SDP) through its template branch.
fn link_streams_from_sdp(
    src: &gst::Element,
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    template: &Template,
    shared: &Arc<Shared>,
    events: &mpsc::UnboundedSender<PipelineEvent>,
) {
    let pipeline = pipeline.downgrade();
    let sink = sink.downgrade();
    let template = template.clone();
    let shared = shared.clone();
    let events = events.clone();
    src.connect_pad_added(move |_src, pad| {
        let (Some(pipeline), Some(sink)) = (pipeline.upgrade(), sink.upgrade()) else {
            return;
        };
        let Some(caps) = pad.current_caps() else {
            return;
        };
        let Some(s) = caps.structure(0) else { return };
        let media = s.get::<&str>("media").unwrap_or("");
        let encoding = s.get::<&str>("encoding-name").unwrap_or("");
        let Some(desc) = template.branch(media, encoding) else {
            // Never drop a stream silently: the session must say what it could not keep.
            let _ = events.send(PipelineEvent::Ended {
                error: Some(format!(
                    "template {:?} has no branch for {media} encoding {encoding:?}",
                    template.name
                )),
            });
            return;
        };
        let linked = (|| -> Result<(), String> {
            // rtspsrc over TCP delivers every stream from one thread; the queue lets splitmuxsink
            // hold one stream back while it waits for another without blocking them all.
            let desc = format!(
                "{desc} ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=5000000000"
            );
            let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| e.to_string())?;
            pipeline.add(&bin).map_err(|e| e.to_string())?;
            bin.sync_state_with_parent().map_err(|e| e.to_string())?;
            let bin_sink = bin.static_pad("sink").ok_or("branch has no sink pad")?;
            pad.link(&bin_sink).map_err(|e| format!("{e:?}"))?;
            let bin_src = bin.static_pad("src").ok_or("branch has no src pad")?;
            let mux_pad = sink
                .request_pad_simple(if media == "video" {
                    "video"
                } else {
                    "audio_%u"
                })
                .ok_or("splitmuxsink refused a pad")?;
            watch_buffers(&bin_src, media == "video", &shared);
            bin_src.link(&mux_pad).map_err(|e| format!("{e:?}"))?;
            Ok(())
        })();
        if let Err(e) = linked {
            let _ = events.send(PipelineEvent::Ended {
                error: Some(format!("linking {media} {encoding}: {e}")),
            });
        }
    });
}

/// Feeds the watchdog and cleans the stream for the muxer: video starts at a keyframe so every
/// segment is decodable, and no buffer with an undefined or backwards timestamp gets through.
fn watch_buffers(pad: &gst::Pad, is_video: bool, shared: &Arc<Shared>) {
    let shared = shared.clone();
    let seen_keyframe = AtomicBool::new(!is_video);
    let last_ts = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        shared.last_buffer_ms.store(now_ms(), Ordering::Relaxed);
        if !seen_keyframe.load(Ordering::Relaxed) {
            if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                return gst::PadProbeReturn::Drop;
            }
            seen_keyframe.store(true, Ordering::Relaxed);
        }
        // splitmuxsink fails the whole graph on a buffer whose running time is undefined or
        // negative (seen at stream start); such a buffer cannot be placed in any segment.
        let running = buffer.dts_or_pts().and_then(|ts| {
            let ev = pad.sticky_event::<gst::event::Segment>(0)?;
            let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
            match seg.to_running_time_full(ts)? {
                gst::Signed::Positive(rt) => Some(rt),
                gst::Signed::Negative(_) => None,
            }
        });
        let Some(rt) = running else {
            return gst::PadProbeReturn::Drop;
        };
        // splitmuxsink fails on audio older than the first video keyframe ("queued GOP time is
        // negative"): audio starts with the picture.
        if is_video {
            let _ = shared.video_start_ns.compare_exchange(
                u64::MAX,
                rt.nseconds(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else if shared.has_video.load(Ordering::Relaxed)
            && rt.nseconds() < shared.video_start_ns.load(Ordering::Relaxed)
        {
            return gst::PadProbeReturn::Drop;
        }
        // mpegtsmux also fails on a DTS that goes backwards (seen on the first frames after
        // h264timestamper): keep each stream monotonic.
        if rt.nseconds() < last_ts.load(Ordering::Relaxed) {
            return gst::PadProbeReturn::Drop;
        }
        last_ts.store(rt.nseconds(), Ordering::Relaxed);
        shared
            .last_running_ns
            .fetch_max(rt.nseconds(), Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
}

/// Learns the camera's wall clock from RTCP sender reports: each jitterbuffer announces
/// (`handle-sync`) the SR's NTP time with the running time of the same RTP timestamp.
fn learn_camera_clock(src: &gst::Element, shared: &Arc<Shared>) {
    let shared = shared.clone();
    src.connect("new-manager", false, move |args| {
        let manager = args[1].get::<gst::Element>().ok()?;
        let shared = shared.clone();
        manager.connect("new-jitterbuffer", false, move |args| {
            let jb = args[1].get::<gst::Element>().ok()?;
            let shared = shared.clone();
            jb.connect("handle-sync", false, move |args| {
                if let Ok(s) = args[1].get::<gst::Structure>()
                    && let Some(m) = sync_mapping(&s)
                {
                    *shared.ntp.lock().expect("ntp lock") = Some(m);
                }
                None
            });
            None
        });
        None
    });
}

fn sync_mapping(s: &gst::StructureRef) -> Option<NtpMapping> {
    let base_rtptime = s.get::<u64>("base-rtptime").ok()?;
    let base_time = s.get::<u64>("base-time").ok()?;
    let clock_rate = s.get::<u32>("clock-rate").ok()? as i128;
    let sr_rtptime = s.get::<u64>("sr-ext-rtptime").ok()?;
    let sr = s.get::<gst::Buffer>("sr-buffer").ok()?;
    let map = sr.map_readable().ok()?;
    // RTCP SR: V/P/RC, PT=200, length, SSRC, NTP seconds, NTP fraction, RTP timestamp …
    if map.len() < 20 || map[1] != 200 || clock_rate == 0 {
        return None;
    }
    let ntp_s = u32::from_be_bytes(map[8..12].try_into().ok()?) as u64;
    let ntp_frac = u32::from_be_bytes(map[12..16].try_into().ok()?) as u64;
    let unix_ns = ((ntp_s.checked_sub(NTP_UNIX_OFFSET_S)?) as i128) * 1_000_000_000
        + ((ntp_frac as i128 * 1_000_000_000) >> 32);
    let sr_running = base_time as i128
        + (sr_rtptime as i128 - base_rtptime as i128) * 1_000_000_000 / clock_rate;
    Some(NtpMapping {
        offset_ns: unix_ns - sr_running,
    })
}

fn forward_bus(
    bus: gst::Bus,
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<PipelineEvent>,
) {
    let mut open: Option<(PathBuf, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                let location = s.get::<String>("location").map(PathBuf::from);
                let running = s.get::<u64>("running-time");
                match (s.name().as_str(), location, running) {
                    ("splitmuxsink-fragment-opened", Ok(path), Ok(rt)) => {
                        let (wall_ns, clock) = wall_clock(&pipeline, &shared, rt);
                        open = Some((path.clone(), rt));
                        let _ = events.send(PipelineEvent::Opened {
                            path,
                            running_ns: rt,
                            wall_start_us: (wall_ns / 1000) as i64,
                            clock,
                        });
                    }
                    ("splitmuxsink-fragment-closed", Ok(path), Ok(rt)) => {
                        let start = match &open {
                            Some((p, start)) if *p == path => *start,
                            _ => rt,
                        };
                        open = None;
                        let _ = events.send(PipelineEvent::Closed {
                            path,
                            duration_us: (rt.saturating_sub(start) / 1000) as i64,
                        });
                    }
                    _ => {}
                }
            }
            gst::MessageView::Eos(_) => {
                shared.ended.store(true, Ordering::Relaxed);
                let _ = events.send(PipelineEvent::Ended { error: None });
                return;
            }
            gst::MessageView::Error(err) => {
                shared.ended.store(true, Ordering::Relaxed);
                let _ = events.send(PipelineEvent::Ended {
                    error: Some(format!(
                        "{}: {}",
                        err.src().map(|s| s.name().to_string()).unwrap_or_default(),
                        err.error()
                    )),
                });
                return;
            }
            gst::MessageView::Warning(w) => {
                tracing::debug!(warning = %w.error(), "pipeline warning");
            }
            _ => {}
        }
    }
}

/// Wall-clock time (Unix ns) of a running time: the camera's clock when an RTCP SR has been
/// seen, else this server's clock.
fn wall_clock(pipeline: &gst::Pipeline, shared: &Shared, running_ns: u64) -> (i128, ClockSource) {
    if let Some(m) = *shared.ntp.lock().expect("ntp lock") {
        return (running_ns as i128 + m.offset_ns, ClockSource::RtcpNtp);
    }
    let base = pipeline.base_time().map(|t| t.nseconds()).unwrap_or(0);
    let wall = if base == 0 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128
    } else {
        base as i128 + running_ns as i128
    };
    (wall, ClockSource::Server)
}
