//! One GStreamer graph per source: `rtspsrc` (over one transport) → per-stream branch from the
//! template → segment files, keyframe-aligned, no video transcoding: MPEG-TS by our own writer
//! (`ts_segments`), any other muxer through `splitmuxsink`. Emits segment open/close
//! events with both clocks (the camera's, from RTCP, and this server's), and watches each
//! elementary stream where it reaches the segment muxer. Knows nothing of hashes, stores or SQL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc;

use crate::capture::camera_clock::CameraClock;
use crate::capture::rtp_timeline::{Timelines, rtp_header};
use crate::capture::template::Template;
use crate::capture::transport::Transport;
use crate::capture::ts_segments::{self, Segments};

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
    /// A segment file was opened; its wall-clock start is known now, on both clocks.
    Opened {
        path: PathBuf,
        /// Pipeline running time at the start, to estimate a segment the muxer never closed.
        running_ns: u64,
        /// This server's clock at the segment's first buffer (Unix µs).
        server_start_us: i64,
        /// The camera's clock (RTCP sender reports) at the same instant, once one was seen.
        camera_start_us: Option<i64>,
    },
    /// A segment file is complete and closed by the muxer. `missing`: what the file lacks, for
    /// the entry to say: the recorded streams it holds no frame of (the camera sent none while
    /// it was written), and the stretches a stream it holds left without frames.
    Closed {
        path: PathBuf,
        duration_us: i64,
        missing: Option<String>,
    },
    /// The RTSP control connection failed while UDP media went on: recording continues for as
    /// long as the media does (the per-stream watchdog ends it otherwise).
    ControlLost { error: String },
    /// The graph stopped: end of stream (camera closed or we asked) or an error.
    Ended { error: Option<String> },
}

/// The elementary streams of a source, as the segment muxer sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Video,
    Audio,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Video => "video",
            Stream::Audio => "audio",
        }
    }
}

/// Liveness of one elementary stream where it enters the segment muxer.
#[derive(Debug)]
struct StreamWatch {
    /// Whether the camera's SDP offers this stream and we record it.
    expected: AtomicBool,
    /// Milliseconds since `epoch()` of the last buffer into the muxer; 0 = none yet. For our
    /// own MPEG-TS files, video counts at keyframes only (as splitmuxsink, which hands the muxer
    /// whole GOPs): frames that never come to a keyframe cannot start a segment.
    last_ms: AtomicU64,
    /// Milliseconds since `epoch()` of the last buffer of any kind into the files.
    frame_ms: AtomicU64,
    /// Running time (ns) of the last buffer into the files: a segment never closed reaches as
    /// far as the stream that stopped first.
    last_running_ns: AtomicU64,
    /// Milliseconds since `epoch()` of the last RTP of this stream out of rtspsrc; 0 = none.
    rtp_last_ms: AtomicU64,
}

impl StreamWatch {
    fn new() -> StreamWatch {
        StreamWatch {
            expected: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            frame_ms: AtomicU64::new(0),
            last_running_ns: AtomicU64::new(0),
            rtp_last_ms: AtomicU64::new(0),
        }
    }
}

struct Shared {
    video: StreamWatch,
    audio: StreamWatch,
    ended: AtomicBool,
    /// Running time (ns) of the first video keyframe; `u64::MAX` until then.
    video_start_ns: AtomicU64,
    /// Streams the camera offers that the template cannot record, for the chain to name.
    unsupported: Mutex<Vec<String>>,
    /// Set once any buffer reached the muxer: the camera works over this transport.
    media_seen: AtomicBool,
    /// Set once any RTP came out of rtspsrc: the camera sends over this transport, even if
    /// nothing of it is recordable (yet).
    rtp_seen: AtomicBool,
    /// Set once the camera answered DESCRIBE with a session description.
    described: AtomicBool,
    /// Milliseconds since `epoch()` when it did (0 before): a camera that answers late (a
    /// frozen one thawing) gets the whole watchdog time from then to send its first media.
    described_ms: AtomicU64,
    /// Milliseconds since `epoch()` when the graph was started.
    started_ms: u64,
    /// The SDP's stream numbers set up: a segment file's table waits for each of them.
    selected: Mutex<std::collections::BTreeSet<u32>>,
}

impl Shared {
    fn watch(&self, s: Stream) -> &StreamWatch {
        match s {
            Stream::Video => &self.video,
            Stream::Audio => &self.audio,
        }
    }
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
    camera_clock: CameraClock,
    started: Instant,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    stop_bus: Arc<AtomicBool>,
    /// Our own MPEG-TS files, when the template asks for them.
    own_segments: Option<Arc<Mutex<Segments>>>,
}

/// Where the streams are cut into segment files.
enum SegmentSink {
    /// `splitmuxsink` around the template's muxer.
    Split(gst::Element),
    /// Witness's MPEG-TS writer, fed by an appsink per stream.
    Own(Arc<Mutex<Segments>>),
}

/// `splitmuxsink` around the template's muxer, writing `{prefix}-%08d.{extension}`.
fn split_muxer(spec: &PipelineSpec<'_>) -> Result<gst::Element, PipelineError> {
    let muxer = gst::ElementFactory::make(&spec.template.muxer).build()?;
    // MPEG-TS out in runs of 7 packets rather than one by one: a seventh of the pushes and
    // writes per segment (measured in docs/performance.md). A segment's last run is padded
    // with null packets, which every demuxer skips.
    if muxer.has_property_with_type("alignment", i32::static_type()) {
        muxer.set_property("alignment", 7i32);
    }
    let location = spec.spool_dir.join(format!(
        "{}-%08d.{}",
        spec.file_prefix, spec.template.extension
    ));
    Ok(gst::ElementFactory::make("splitmuxsink")
        .property("location", location.to_string_lossy().as_ref())
        // Timestamps follow arrival (jitter): a GOP that ends a hair past the target
        // length still belongs in the segment, or 1 s GOPs would make 1 s segments.
        .property("max-size-time", (spec.segment.as_nanos() * 21 / 20) as u64)
        .property("muxer", &muxer)
        .build()?)
}

pub struct PipelineSpec<'a> {
    pub name: &'a str,
    /// The camera's URL, without user info.
    pub url: &'a str,
    /// The camera's credentials, given to `rtspsrc` as `user-id` and `user-pw` so that no URL
    /// (and so no GStreamer message naming one) ever holds them.
    pub credentials: Option<&'a crate::capture::credentials::Credentials>,
    /// A concrete transport for this attempt (never `Auto`; the recorder chooses).
    pub transport: Transport,
    pub template: &'a Template,
    /// `av`, `video` or `audio`: which of the camera's streams to record.
    pub media: &'a str,
    /// Folder for this run's segment files.
    pub spool_dir: &'a Path,
    /// File name prefix, unique per run so files of successive runs sort in order.
    pub file_prefix: &'a str,
    pub segment: Duration,
}

/// Which elementary streams have stopped reaching the muxer, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    /// The stalled streams (never empty).
    pub streams: Vec<Stream>,
    pub idle: Duration,
    /// Streams still flowing meanwhile.
    pub flowing: Vec<Stream>,
    /// The picture's frames still came, but no keyframe among them.
    pub keyframeless: bool,
}

impl Stall {
    /// The gap reason: which stream, for how long, and whether the other one went on.
    pub fn reason(&self) -> String {
        let names = |v: &[Stream]| {
            v.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        };
        if self.keyframeless {
            format!(
                "no video keyframe for {:.1} s while its other frames flowed (a segment can only start at one)",
                self.idle.as_secs_f64()
            )
        } else if self.flowing.is_empty() {
            format!("no media for {:.1} s", self.idle.as_secs_f64())
        } else {
            format!(
                "{} stalled: no {} for {:.1} s while {} flowed",
                names(&self.streams),
                names(&self.streams),
                self.idle.as_secs_f64(),
                names(&self.flowing)
            )
        }
    }
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

        let mut src = gst::ElementFactory::make("rtspsrc")
            .property("location", spec.url)
            .property_from_str("protocols", spec.transport.rtspsrc_protocols())
            // The jitterbuffer's timestamps are replaced by the camera's RTP clock
            // (`stamp_from_rtp_clock`); slave mode keeps them close to arrival meanwhile.
            .property_from_str("buffer-mode", "slave")
            .property("latency", 200u32)
            .property("tcp-timeout", 5_000_000u64)
            // A camera that sends nothing over UDP is reported after 4 s, then TCP is tried.
            .property("timeout", 4_000_000u64);
        if let Some(c) = spec.credentials {
            src = src
                .property("user-id", c.username.as_str())
                .property("user-pw", c.password.as_str());
        }
        let src = src.build()?;
        crate::capture::rtsp_compat::append_controls(&src, spec.url);
        let sink = if spec.template.muxer == ts_segments::MUXER {
            SegmentSink::Own(Arc::new(Mutex::new(Segments::new(
                spec.spool_dir,
                spec.file_prefix,
                spec.segment.as_nanos() as u64,
            ))))
        } else {
            SegmentSink::Split(split_muxer(spec)?)
        };
        if let SegmentSink::Split(sink) = &sink {
            pipeline.add(sink)?;
        }
        pipeline.add(&src)?;

        let shared = Arc::new(Shared {
            video: StreamWatch::new(),
            audio: StreamWatch::new(),
            ended: AtomicBool::new(false),
            video_start_ns: AtomicU64::new(u64::MAX),
            unsupported: Mutex::new(Vec::new()),
            media_seen: AtomicBool::new(false),
            rtp_seen: AtomicBool::new(false),
            described: AtomicBool::new(false),
            described_ms: AtomicU64::new(0),
            started_ms: now_ms(),
            selected: Mutex::new(Default::default()),
        });

        select_streams_from_sdp(&src, spec.template, spec.media, &shared);
        watch_rtp_arrival(&src, &shared);
        if let SegmentSink::Split(sink) = &sink {
            watch_muxer_inputs(sink, &shared);
        }
        let timelines = Timelines::default();
        link_streams(
            &src,
            &pipeline,
            &sink,
            spec.template,
            &shared,
            &timelines,
            &events,
        );
        let camera_clock = CameraClock::watch_on(&src, Some(timelines));
        let camera_clock_for_bus = camera_clock.clone();

        let bus = pipeline.bus().expect("a pipeline has a bus");
        let stop_bus = Arc::new(AtomicBool::new(false));
        let media_over_udp = spec.transport != Transport::Tcp;
        let bus_thread = {
            let pipeline = pipeline.clone();
            let shared = shared.clone();
            let stop_bus = stop_bus.clone();
            std::thread::Builder::new()
                .name(format!("bus-{}", spec.name))
                .spawn(move || {
                    forward_bus(BusContext {
                        bus,
                        pipeline,
                        shared,
                        camera_clock: camera_clock_for_bus,
                        media_over_udp,
                        stop: stop_bus,
                        events,
                    })
                })
                .map_err(|e| PipelineError::Build(e.to_string()))?
        };

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| PipelineError::Build(format!("cannot start: {e}")))?;
        Ok(RunningPipeline {
            own_segments: match &sink {
                SegmentSink::Own(s) => Some(s.clone()),
                SegmentSink::Split(_) => None,
            },
            pipeline,
            shared,
            camera_clock,
            started: Instant::now(),
            bus_thread: Some(bus_thread),
            stop_bus,
        })
    }

    /// The expected streams that have not reached the muxer for longer than `limit` (counted
    /// from the start of the graph before their first buffer), or `None` while all flow.
    pub fn stalled(&self, limit: Duration) -> Option<Stall> {
        let now = now_ms();
        let limit_ms = limit.as_millis() as u64;
        // Before its first buffer, a stream is waited for from the camera's answer.
        let first_wait = self
            .shared
            .started_ms
            .max(self.shared.described_ms.load(Ordering::Relaxed));
        let since = |t: u64| now.saturating_sub(if t == 0 { first_wait } else { t });
        let mut stalled = Vec::new();
        let mut flowing = Vec::new();
        let mut idle_ms = 0;
        for s in [Stream::Video, Stream::Audio] {
            let w = self.shared.watch(s);
            if !w.expected.load(Ordering::Relaxed) {
                continue;
            }
            let idle = since(w.last_ms.load(Ordering::Relaxed));
            if idle > limit_ms {
                stalled.push(s);
                idle_ms = idle_ms.max(idle);
            }
            // A stream the camera still sends, even if the muxer holds it back waiting for
            // another one (audio waits for the picture). Packets come every few tens of ms.
            if since(w.rtp_last_ms.load(Ordering::Relaxed)) <= RTP_FRESH_MS {
                flowing.push(s);
            }
        }
        if !stalled.is_empty() && !flowing.is_empty() {
            // Name the streams the camera stopped sending; the others only waited for them.
            let silent: Vec<Stream> = stalled
                .iter()
                .copied()
                .filter(|s| !flowing.contains(s))
                .collect();
            if !silent.is_empty() {
                stalled = silent;
            }
        }
        let flowing: Vec<Stream> = flowing
            .into_iter()
            .filter(|s| !stalled.contains(s))
            .collect();
        // Nothing expected yet (no SDP): the graph as a whole must show life within the limit.
        // (Not when expected streams merely had no RTP for a moment: a stall of the network
        // or of this machine that they are catching up from.)
        let expecting = [Stream::Video, Stream::Audio]
            .iter()
            .any(|s| self.shared.watch(*s).expected.load(Ordering::Relaxed));
        if !expecting {
            let idle = now.saturating_sub(self.shared.started_ms);
            if idle > limit_ms {
                return Some(Stall {
                    streams: vec![Stream::Video],
                    idle: Duration::from_millis(idle),
                    flowing: vec![],
                    keyframeless: false,
                });
            }
            return None;
        }
        let video_frames = self.shared.video.frame_ms.load(Ordering::Relaxed);
        // Frames still arriving now, not merely the last ones before everything stopped.
        let keyframeless = stalled.contains(&Stream::Video)
            && video_frames != 0
            && now.saturating_sub(video_frames) <= RTP_FRESH_MS;
        (!stalled.is_empty()).then(|| Stall {
            streams: stalled,
            idle: Duration::from_millis(idle_ms),
            flowing,
            keyframeless,
        })
    }

    /// Per expected stream, seconds since its last buffer reached the muxer.
    pub fn stream_ages(&self) -> Vec<(Stream, Option<f64>)> {
        self.ages(|w| &w.last_ms)
    }

    /// Per expected stream, seconds since its last RTP arrived (diagnostics).
    pub fn rtp_ages(&self) -> Vec<(Stream, Option<f64>)> {
        self.ages(|w| &w.rtp_last_ms)
    }

    /// Seconds since the instant `of` keeps for each expected stream; `None` before the first.
    fn ages(&self, of: fn(&StreamWatch) -> &AtomicU64) -> Vec<(Stream, Option<f64>)> {
        let now = now_ms();
        [Stream::Video, Stream::Audio]
            .into_iter()
            .filter(|s| self.shared.watch(*s).expected.load(Ordering::Relaxed))
            .map(|s| {
                let t = of(self.shared.watch(s)).load(Ordering::Relaxed);
                (s, (t != 0).then(|| now.saturating_sub(t) as f64 / 1000.0))
            })
            .collect()
    }

    /// The camera's wall clock (Unix µs) at a running time, once its first sender report came.
    pub fn camera_wall_us(&self, running_ns: u64) -> Option<i64> {
        self.camera_clock
            .wall_ns(running_ns)
            .map(|ns| (ns / 1000) as i64)
    }

    /// The camera clock this graph learns, usable after the graph is gone.
    pub fn camera_clock(&self) -> CameraClock {
        self.camera_clock.clone()
    }

    /// Whether any media reached the muxer: the camera works over this transport.
    pub fn media_seen(&self) -> bool {
        self.shared.media_seen.load(Ordering::Relaxed)
    }

    /// Whether the camera answered DESCRIBE (its SDP was read).
    pub fn described(&self) -> bool {
        self.shared.described.load(Ordering::Relaxed)
    }

    /// Whether any RTP arrived: the camera sends over this transport.
    pub fn rtp_seen(&self) -> bool {
        self.shared.rtp_seen.load(Ordering::Relaxed)
    }

    /// Streams the camera offers that the template cannot record.
    pub fn unsupported(&self) -> Vec<String> {
        self.shared.unsupported.lock().expect("lock").clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks the graph to finish: the muxer closes the open segment, then `Ended` follows.
    pub fn send_eos(&self) {
        self.pipeline.send_event(gst::event::Eos::new());
    }

    /// Tears the graph down. Returns the running time (ns) every recorded stream reached.
    pub fn shutdown(mut self) -> u64 {
        if let Some(s) = &self.own_segments {
            // Whatever the open file holds is on disk before the recorder measures it, and no
            // file is opened from here on.
            s.lock().expect("segments lock").abandon();
        }
        // The bus is read to its end before the graph stops: going to NULL flushes it, and a
        // file message lost there would leave a spool file nobody hears of.
        self.stop_bus.store(true, Ordering::Relaxed);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        // As far as every stream reached: the one that stopped first bounds the file.
        [Stream::Video, Stream::Audio]
            .iter()
            .map(|s| self.shared.watch(*s))
            .filter(|w| w.expected.load(Ordering::Relaxed))
            .map(|w| w.last_running_ns.load(Ordering::Relaxed))
            .filter(|&ns| ns > 0)
            .min()
            .unwrap_or(0)
    }

    pub fn has_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Relaxed)
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        if self.bus_thread.is_some() {
            // Dropped without a shutdown (its recorder failed): the open file is written out
            // for whoever chains the spool's leftovers.
            if let Some(s) = &self.own_segments
                && let Ok(mut s) = s.lock()
            {
                s.abandon();
            }
            let _ = self.pipeline.set_state(gst::State::Null);
            self.stop_bus.store(true, Ordering::Relaxed);
            if let Some(t) = self.bus_thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Decides from the SDP (before any SETUP) which streams to record: those of the source's
/// `media` that the template has a branch for. The others are not set up, and the ones the
/// template cannot take are remembered so the chain can name them.
fn select_streams_from_sdp(
    src: &gst::Element,
    template: &Template,
    media_wanted: &str,
    shared: &Arc<Shared>,
) {
    let shared = shared.clone();
    let template = template.clone();
    let media_wanted = media_wanted.to_string();
    src.connect("select-stream", false, move |args| {
        if !shared.described.swap(true, Ordering::Relaxed) {
            shared.described_ms.store(now_ms(), Ordering::Relaxed);
        }
        let Ok(caps) = args[2].get::<gst::Caps>() else {
            return Some(false.to_value());
        };
        let Some(s) = caps.structure(0) else {
            return Some(false.to_value());
        };
        let media = s.get::<&str>("media").unwrap_or("");
        let encoding = s.get::<&str>("encoding-name").unwrap_or("");
        let stream = match media {
            "video" => Stream::Video,
            "audio" => Stream::Audio,
            _ => return Some(false.to_value()),
        };
        let wanted = media_wanted == "av" || media_wanted == media;
        if !wanted {
            return Some(false.to_value());
        }
        if template.branch(media, encoding).is_none() {
            shared.unsupported.lock().expect("lock").push(format!(
                "{media} {encoding:?} (template {:?} has no branch for it)",
                template.name
            ));
            return Some(false.to_value());
        }
        shared.watch(stream).expected.store(true, Ordering::Relaxed);
        if let Ok(num) = args[1].get::<u32>() {
            shared.selected.lock().expect("lock").insert(num);
        }
        Some(true.to_value())
    });
}

/// What the camera still sends, per stream: RTP as it enters the RTP session, before any
/// queue that a stalled sibling stream could block (audio waits for the picture downstream).
fn watch_rtp_arrival(src: &gst::Element, shared: &Arc<Shared>) {
    let shared = shared.clone();
    src.connect("new-manager", false, move |args| {
        let manager = args[1].get::<gst::Element>().ok()?;
        let shared = shared.clone();
        manager.connect_pad_added(move |_, pad| {
            if !pad.name().starts_with("recv_rtp_sink") {
                return;
            }
            let shared = shared.clone();
            // One pad per stream, whose media never changes: read from its caps once, not for
            // every packet.
            let kind = std::sync::OnceLock::new();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                move |pad, _| {
                    let stream = match kind.get() {
                        Some(known) => *known,
                        None => {
                            let Some(caps) = pad.current_caps() else {
                                return gst::PadProbeReturn::Ok;
                            };
                            let media = caps.structure(0).and_then(|s| s.get::<&str>("media").ok());
                            *kind.get_or_init(|| match media {
                                Some("video") => Some(Stream::Video),
                                Some("audio") => Some(Stream::Audio),
                                _ => None,
                            })
                        }
                    };
                    let Some(stream) = stream else {
                        return gst::PadProbeReturn::Ok;
                    };
                    shared.rtp_seen.store(true, Ordering::Relaxed);
                    shared
                        .watch(stream)
                        .rtp_last_ms
                        .store(now_ms(), Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                },
            );
        });
        None
    });
}

/// Liveness is measured where media enters the segment files (after the stream is cleaned),
/// per elementary stream, so a stream that stalls or whose buffers are all dropped shows as such.
fn watch_muxer_inputs(muxer: &gst::Element, shared: &Arc<Shared>) {
    let shared = shared.clone();
    muxer.connect_pad_added(move |_, pad| {
        if pad.direction() == gst::PadDirection::Sink {
            watch_input(pad, &shared, false);
        }
    });
}

/// Watches one input of the segment files (see [`watch_muxer_inputs`]); with
/// `video_by_keyframes`, video is alive while keyframes come.
fn watch_input(pad: &gst::Pad, shared: &Arc<Shared>, video_by_keyframes: bool) {
    let shared = shared.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let stream = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            .map(|n| {
                if n.starts_with("video/") {
                    Stream::Video
                } else {
                    Stream::Audio
                }
            });
        if let Some(s) = stream {
            let w = shared.watch(s);
            let now = now_ms();
            w.frame_ms.store(now, Ordering::Relaxed);
            // What reached the file, for the duration of a segment the muxer never closes.
            if let Some(rt) = running_time(pad, buffer) {
                w.last_running_ns
                    .fetch_max(rt.nseconds(), Ordering::Relaxed);
            }
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            if s == Stream::Audio || !video_by_keyframes || keyframe {
                w.last_ms.store(now, Ordering::Relaxed);
            }
            shared.media_seen.store(true, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Links each RTP stream rtspsrc sets up through its template branch to the segment files.
fn link_streams(
    src: &gst::Element,
    pipeline: &gst::Pipeline,
    sink: &SegmentSink,
    template: &Template,
    shared: &Arc<Shared>,
    timelines: &Timelines,
    events: &mpsc::UnboundedSender<PipelineEvent>,
) {
    let timelines = timelines.clone();
    let pipeline = pipeline.downgrade();
    let sink = match sink {
        SegmentSink::Split(e) => WeakSink::Split(e.downgrade()),
        SegmentSink::Own(s) => WeakSink::Own(Arc::downgrade(s)),
    };
    let template = template.clone();
    let shared = shared.clone();
    let events = events.clone();
    src.connect_pad_added(move |src, pad| {
        let Some(pipeline) = pipeline.upgrade() else {
            return;
        };
        let Some(caps) = pad.current_caps() else {
            return;
        };
        let Some(s) = caps.structure(0) else { return };
        let media = s.get::<&str>("media").unwrap_or("");
        let encoding = s.get::<&str>("encoding-name").unwrap_or("");
        let Some(desc) = template.branch(media, encoding) else {
            // select-stream refused it already; never link a stream we cannot keep.
            return;
        };

        let linked = (|| -> Result<(), String> {
            // No queue of our own: each stream already has its own thread from rtspsrc's
            // jitterbuffer, and splitmuxsink queues each input itself while it holds one stream
            // back for another. A third thread per stream cost a tenth of the CPU.
            let bin = gst::parse::bin_from_description(desc, true).map_err(|e| e.to_string())?;
            pipeline.add(&bin).map_err(|e| e.to_string())?;
            bin.sync_state_with_parent().map_err(|e| e.to_string())?;
            stamp_from_rtp_clock(src, pad, s, &timelines);
            let bin_sink = bin.static_pad("sink").ok_or("branch has no sink pad")?;
            pad.link(&bin_sink).map_err(|e| format!("{e:?}"))?;
            let bin_src = bin.static_pad("src").ok_or("branch has no src pad")?;
            clean_stream(&bin_src, media == "video", &shared);
            match &sink {
                WeakSink::Split(sink) => {
                    let sink = sink.upgrade().ok_or("graph torn down")?;
                    let mux_pad = sink
                        .request_pad_simple(if media == "video" {
                            "video"
                        } else {
                            "audio_%u"
                        })
                        .ok_or("splitmuxsink refused a pad")?;
                    bin_src.link(&mux_pad).map_err(|e| format!("{e:?}"))?;
                }
                WeakSink::Own(segments) => {
                    let segments = segments.upgrade().ok_or("graph torn down")?;
                    let streams = shared.selected.lock().expect("lock").len();
                    segments.lock().expect("segments lock").expect(streams);
                    let input = ts_segments::add_input(&segments, &pipeline, &bin_src)?;
                    watch_input(&input, &shared, true);
                }
            }
            Ok(())
        })();
        if let Err(e) = linked {
            let _ = events.send(PipelineEvent::Ended {
                error: Some(format!("linking {media} {encoding}: {e}")),
            });
        }
    });
}

/// What `link_streams` keeps of the segment sink: the graph owns it.
enum WeakSink {
    Split(gst::glib::WeakRef<gst::Element>),
    Own(std::sync::Weak<Mutex<Segments>>),
}

/// Restamps each RTP packet of `pad` (caps `caps`) from the camera's RTP clock, anchored to its
/// arrival ([`crate::capture::rtp_timeline`]): a delivery stall that catches up in a burst keeps
/// its timestamps, where the jitterbuffer's would jump forward and back.
fn stamp_from_rtp_clock(
    src: &gst::Element,
    pad: &gst::Pad,
    caps: &gst::StructureRef,
    timelines: &Timelines,
) {
    let (Ok(ssrc), Ok(rate)) = (caps.get::<u32>("ssrc"), caps.get::<i32>("clock-rate")) else {
        // Without them the jitterbuffer's timestamps stay as they are.
        return;
    };
    let video = caps.get::<&str>("media") == Ok("video");
    let timeline = timelines.of(ssrc, rate.max(1) as u32, video);
    let src = src.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(arrival) = src.upgrade().and_then(|s| s.current_running_time()) else {
            return gst::PadProbeReturn::Ok;
        };
        let Some((rtp, _)) = buffer.map_readable().ok().and_then(|m| rtp_header(&m)) else {
            return gst::PadProbeReturn::Ok;
        };
        let mut t = timeline.lock().expect("timeline lock");
        let before = (t.restarts, t.resumes);
        let out = t.stamp(rtp, arrival.nseconds());
        if (t.restarts, t.resumes) != before {
            tracing::info!(
                ssrc,
                restarts = t.restarts,
                resumes = t.resumes,
                arrival_s = arrival.nseconds() as f64 / 1e9,
                "camera's RTP clock restarted or resumed after a pause: timeline anchored on arrival"
            );
        }
        drop(t);
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(out));
        b.set_dts(gst::ClockTime::from_nseconds(out));
        gst::PadProbeReturn::Ok
    });
}

/// RTP this recent means the camera is sending the stream now.
const RTP_FRESH_MS: u64 = 1000;

/// A timestamp that goes back further than this is a broken stream, not jitter or B-frames.
/// (A camera restarting its RTP clock is anchored again by its `rtp_timeline` and never shows
/// here; this is the guard for what that misses.)
const RESTART_JUMP: Duration = Duration::from_secs(1);

/// Cleans the stream for the muxer: video starts at a keyframe so every segment is decodable,
/// and no buffer with an undefined or backwards timestamp gets through. A stream whose
/// timestamps jump back (camera restart) ends the graph, so the recorder reconnects and the
/// chain shows the break, instead of every later buffer being dropped.
fn clean_stream(pad: &gst::Pad, is_video: bool, shared: &Arc<Shared>) {
    let shared = shared.clone();
    let seen_keyframe = AtomicBool::new(!is_video);
    let last_ts = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if !seen_keyframe.load(Ordering::Relaxed) {
            // A parser that has not seen the parameter sets yet leaves frames unflagged: for
            // H.264/H.265 the first frame kept must really be one a decoder can start from.
            let random_access = match pad.current_caps().as_ref().and_then(|c| c.structure(0)) {
                Some(caps) => starts_decoding(caps, buffer),
                None => None,
            };
            if random_access == Some(false)
                || (random_access.is_none()
                    && buffer.flags().contains(gst::BufferFlags::DELTA_UNIT))
            {
                return gst::PadProbeReturn::Drop;
            }
            seen_keyframe.store(true, Ordering::Relaxed);
        }
        // splitmuxsink fails the whole graph on a buffer whose running time is undefined or
        // negative (seen at stream start); such a buffer cannot be placed in any segment.
        let Some(rt) = running_time(pad, buffer) else {
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
        } else if shared.video.expected.load(Ordering::Relaxed)
            && rt.nseconds() < shared.video_start_ns.load(Ordering::Relaxed)
        {
            return gst::PadProbeReturn::Drop;
        }
        // mpegtsmux also fails on a DTS that goes backwards (seen on the first frames after
        // h264timestamper): keep each stream monotonic.
        let last = last_ts.load(Ordering::Relaxed);
        if rt.nseconds() < last {
            if last - rt.nseconds() > RESTART_JUMP.as_nanos() as u64 {
                let msg = format!(
                    "{} timestamps went back {:.1} s",
                    if is_video { "video" } else { "audio" },
                    (last - rt.nseconds()) as f64 / 1e9
                );
                if let Some(parent) = pad.parent_element() {
                    parent
                        .post_message(
                            gst::message::Error::builder(gst::StreamError::Failed, &msg)
                                .src(&parent)
                                .build(),
                        )
                        .ok();
                }
            }
            return gst::PadProbeReturn::Drop;
        }
        last_ts.store(rt.nseconds(), Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
}

/// Whether an H.264 or H.265 access unit holds a random access point (IDR; for H.265 any IRAP:
/// BLA, IDR or CRA). `None` for other codecs, where the buffer flags must do.
fn starts_decoding(caps: &gst::StructureRef, buffer: &gst::BufferRef) -> Option<bool> {
    let hevc = match caps.name().as_str() {
        "video/x-h264" => false,
        "video/x-h265" => true,
        _ => return None,
    };
    let map = buffer.map_readable().ok()?;
    let random_access = |header: u8| {
        if hevc {
            (16..=23).contains(&((header >> 1) & 0x3f))
        } else {
            header & 0x1f == 5
        }
    };
    let format = caps.get::<&str>("stream-format").unwrap_or("byte-stream");
    Some(if format == "byte-stream" {
        map.windows(4)
            .any(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && random_access(w[3]))
    } else {
        // avc / hvc1: each NAL unit behind a 4-byte big-endian length.
        let mut at = 0usize;
        let mut found = false;
        while at + 5 <= map.len() {
            let len = u32::from_be_bytes([map[at], map[at + 1], map[at + 2], map[at + 3]]) as usize;
            if random_access(map[at + 4]) {
                found = true;
                break;
            }
            at = at.saturating_add(4).saturating_add(len);
        }
        found
    })
}

/// A buffer's running time on a pad (from its DTS, else PTS), if defined and not negative.
fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let ts = buffer.dts_or_pts()?;
    let ev = pad.sticky_event::<gst::event::Segment>(0)?;
    let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
    match seg.to_running_time_full(ts)? {
        gst::Signed::Positive(rt) => Some(rt),
        gst::Signed::Negative(_) => None,
    }
}

const SPLITMUX_OPENED: &str = "splitmuxsink-fragment-opened";
const SPLITMUX_CLOSED: &str = "splitmuxsink-fragment-closed";

struct BusContext {
    bus: gst::Bus,
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    camera_clock: CameraClock,
    /// Media over UDP keeps flowing when the RTSP control connection dies.
    media_over_udp: bool,
    stop: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<PipelineEvent>,
}

fn forward_bus(cx: BusContext) {
    let BusContext {
        bus,
        pipeline,
        shared,
        camera_clock,
        media_over_udp,
        stop,
        events,
    } = cx;
    let mut open: Option<(PathBuf, u64)> = None;
    // The end of the graph is told once; file messages after it are still forwarded (a file
    // opened just before an error must be heard of, or it would stay in the spool unlisted).
    let mut ended = false;
    let mut end = |error: Option<String>| {
        if !ended {
            ended = true;
            shared.ended.store(true, Ordering::Relaxed);
            let _ = events.send(PipelineEvent::Ended { error });
        }
    };
    // Once stop is asked, what is already on the bus is still read, within bounds.
    let mut left_after_stop = 1000;
    loop {
        let msg = if stop.load(Ordering::Relaxed) {
            match bus.pop() {
                Some(msg) if left_after_stop > 0 => {
                    left_after_stop -= 1;
                    msg
                }
                _ => return,
            }
        } else {
            match bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
                Some(msg) => msg,
                None => continue,
            }
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                let location = s.get::<String>("location").map(PathBuf::from);
                let running = s.get::<u64>("running-time");
                match (s.name().as_str(), location, running) {
                    (SPLITMUX_OPENED | ts_segments::OPENED, Ok(path), Ok(rt)) => {
                        open = Some((path.clone(), rt));
                        let _ = events.send(PipelineEvent::Opened {
                            path,
                            running_ns: rt,
                            server_start_us: (server_wall_ns(&pipeline, rt) / 1000) as i64,
                            camera_start_us: camera_clock.wall_ns(rt).map(|ns| (ns / 1000) as i64),
                        });
                    }
                    (SPLITMUX_CLOSED | ts_segments::CLOSED, Ok(path), Ok(rt)) => {
                        let start = match &open {
                            Some((p, start)) if *p == path => *start,
                            _ => rt,
                        };
                        open = None;
                        // Our own files say which kinds of media they hold; splitmuxsink's
                        // muxer waits for every stream, so its files hold all of them.
                        let missing: Vec<&str> = [
                            ("video", &shared.video, s.get::<bool>("video")),
                            ("audio", &shared.audio, s.get::<bool>("audio")),
                        ]
                        .into_iter()
                        .filter(|(_, w, held)| {
                            w.expected.load(Ordering::Relaxed) && *held == Ok(false)
                        })
                        .map(|(name, _, _)| name)
                        .collect();
                        let absent = (!missing.is_empty()).then(|| {
                            format!(
                                "no {} in this segment: the camera sent none",
                                missing.join(" or ")
                            )
                        });
                        // And the stretches a stream it holds left without frames.
                        let silences = s.get::<String>("silences").ok();
                        let note = match (absent, silences) {
                            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                            (a, b) => a.or(b),
                        };
                        let _ = events.send(PipelineEvent::Closed {
                            path,
                            duration_us: (rt.saturating_sub(start) / 1000) as i64,
                            missing: note,
                        });
                    }
                    _ => {}
                }
            }
            gst::MessageView::Eos(_) => end(None),
            gst::MessageView::Error(err) => {
                let from_rtspsrc = err
                    .src()
                    .and_then(|s| s.downcast_ref::<gst::Element>())
                    .and_then(|e| e.factory())
                    .is_some_and(|f| f.name() == "rtspsrc");
                let text = format!(
                    "{}: {}",
                    err.src().map(|s| s.name().to_string()).unwrap_or_default(),
                    err.error()
                );
                // The camera closed the RTSP connection after PLAY, but RTP over UDP does not
                // need it: keep recording while media flows (the watchdog ends it otherwise).
                if from_rtspsrc && media_over_udp && shared.media_seen.load(Ordering::Relaxed) {
                    let _ = events.send(PipelineEvent::ControlLost { error: text });
                    continue;
                }
                end(Some(text));
            }
            gst::MessageView::Warning(w) => {
                tracing::debug!(warning = %w.error(), "pipeline warning");
            }
            _ => {}
        }
    }
}

/// This server's wall clock (Unix ns) at a running time: the pipeline runs on the realtime
/// clock, so base time + running time is the moment the buffer was taken in.
fn server_wall_ns(pipeline: &gst::Pipeline, running_ns: u64) -> i128 {
    match pipeline.base_time().map(|t| t.nseconds()) {
        Some(base) if base != 0 => base as i128 + running_ns as i128,
        _ => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128,
    }
}
