//! The GStreamer receive graph of a source (see [`crate::capture::graph`] for when it is used):
//! `rtspsrc` (over one transport) → per-stream branch from the template → segment files,
//! keyframe-aligned, no video transcoding: MPEG-TS by our own writer (`ts_segments`), any other
//! muxer through `splitmuxsink`. Emits segment open/close events with both clocks (the
//! camera's, from RTCP, and this server's), and watches each elementary stream where it reaches
//! the segment muxer. Knows nothing of hashes, stores or SQL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc;

use crate::capture::camera_clock::CameraClock;
use crate::capture::graph::{Graph, GraphError, GraphEvent, GraphSpec};
use crate::capture::liveness::{Liveness, Stream};
use crate::capture::rtp_timeline::{Timelines, rtp_header};
use crate::capture::template::Template;
use crate::capture::transport::Transport;
use crate::capture::ts_segments::{self, Segments};

/// What the graph's streaming threads share: the streams' liveness, and what the GStreamer
/// graph needs besides.
struct Shared {
    live: Liveness,
    /// Running time (ns) of the first video keyframe; `u64::MAX` until then.
    video_start_ns: AtomicU64,
    /// The SDP's stream numbers set up: a segment file's table waits for each of them.
    selected: Mutex<std::collections::BTreeSet<u32>>,
}

impl std::ops::Deref for Shared {
    type Target = Liveness;
    fn deref(&self) -> &Liveness {
        &self.live
    }
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
fn split_muxer(spec: &GraphSpec<'_>) -> Result<gst::Element, GraphError> {
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

impl RunningPipeline {
    /// Builds the graph, sets it playing and starts forwarding its events to `events`.
    pub fn start(
        spec: &GraphSpec<'_>,
        events: mpsc::UnboundedSender<GraphEvent>,
    ) -> Result<RunningPipeline, GraphError> {
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
            live: Liveness::new(),
            video_start_ns: AtomicU64::new(u64::MAX),
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
                .map_err(|e| GraphError::Build(e.to_string()))?
        };

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| GraphError::Build(format!("cannot start: {e}")))?;
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
}

impl Graph for RunningPipeline {
    fn kind(&self) -> &'static str {
        "gstreamer"
    }

    fn liveness(&self) -> &Liveness {
        &self.shared.live
    }

    fn camera_clock(&self) -> CameraClock {
        self.camera_clock.clone()
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn send_eos(&self) {
        self.pipeline.send_event(gst::event::Eos::new());
    }

    fn shutdown(mut self: Box<Self>) -> u64 {
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
        self.shared.reached_ns()
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
        shared.described_now();
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
                    shared.rtp_in(stream);
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
            // What reached the file, for the duration of a segment the muxer never closes.
            shared.frame_in(
                s,
                running_time(pad, buffer).map(|rt| rt.nseconds()),
                !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                video_by_keyframes,
            );
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
    events: &mpsc::UnboundedSender<GraphEvent>,
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
            let _ = events.send(GraphEvent::Ended {
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
    events: mpsc::UnboundedSender<GraphEvent>,
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
            let _ = events.send(GraphEvent::Ended { error });
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
                        let _ = events.send(GraphEvent::Opened {
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
                        let note = shared.missing_note(
                            s.get::<bool>("video").ok(),
                            s.get::<bool>("audio").ok(),
                            s.get::<String>("silences").ok(),
                        );
                        let _ = events.send(GraphEvent::Closed {
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
                    let _ = events.send(GraphEvent::ControlLost { error: text });
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
