//! The direct receive graph: the `retina` crate's RTSP/RTP client (the one Moonfire NVR uses)
//! hands each camera's access units to our MPEG-TS writer ([`crate::capture::ts_segments`]) on
//! one tokio task per source, with no GStreamer element in a frame's path. rtspsrc alone cost
//! more CPU per stream than ffmpeg's whole recording; this path costs a fifth of it
//! (docs/performance.md, `benches/recording_graph.sh`).
//!
//! What rtspsrc and the template's branches did, done here:
//! - transport: RTP interleaved in the RTSP connection (TCP; the recorder's fallback to UDP
//!   goes to GStreamer's graph, see [`can_receive`]); digest or basic authentication from the
//!   source's credentials;
//! - depayloading: H.264 and H.265 as Annex B access units with their parameter sets before
//!   each keyframe, AAC with ADTS headers (`FrameFormat::SIMPLE`); G.711 through the template's
//!   branch after its depayloader (a small GStreamer graph: decoder and AAC encoder, as the
//!   template says), since MPEG-TS cannot carry G.711;
//! - timestamps from the camera's RTP clock anchored on arrival ([`RtpTimeline`]), the streams
//!   kept in step and the camera's wall clock learned from its RTCP sender reports;
//! - cleaning: the picture starts at a keyframe, sound not before the picture, no stream goes
//!   back in time (a jump back of more than [`RESTART_JUMP`] ends the run: the chain shows it);
//! - liveness per stream, as the watchdog reads it ([`Liveness`]).
//!
//! A camera offering a stream the template records but this client cannot take (Opus, LATM
//! AAC, a branch that transforms the picture) ends the run before PLAY with
//! [`GraphEvent::NeedsGstreamer`]: the recorder receives that source with GStreamer's graph.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use tokio::sync::{Notify, mpsc};

use crate::capture::camera_clock::CameraClock;
use crate::capture::graph::{Graph, GraphEvent, GraphSpec};
use crate::capture::liveness::{Liveness, Stream};
use crate::capture::rtp_timeline::{RtpTimeline, Timelines};
use crate::capture::template::Template;
use crate::capture::transport::Transport;
use crate::capture::ts_segments::{self, Event, Failed, Frame, NoFrame, Segments};
use crate::capture::ts_writer::Codec;

/// A timestamp that goes back further than this is a broken stream, not jitter or B-frames.
/// (A camera restarting its RTP clock is anchored again by its timeline and never shows here.)
const RESTART_JUMP: u64 = 1_000_000_000;

/// Seconds between the NTP (1900) and Unix (1970) epochs.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Whether this client may receive `spec` at all (its streams are checked after DESCRIBE):
/// our MPEG-TS writer, media interleaved over TCP. Over UDP, retina ends the session when the
/// camera closes the RTSP connection, though media over UDP does not need it (some cameras do
/// that after PLAY), and it has no reordering buffer: rtspsrc keeps UDP sources.
pub fn can_receive(spec: &GraphSpec<'_>) -> bool {
    spec.template.muxer == ts_segments::MUXER && spec.transport == Transport::Tcp
}

/// How a stream the template records is taken.
#[derive(Debug, Clone, PartialEq)]
enum Take {
    /// Access units straight into the files.
    Direct(Codec),
    /// Raw G.711 samples into the template's branch after its depayloader (`tail`), whose
    /// input caps are `caps`.
    Transcode { tail: String, caps: String },
}

/// Elements a branch may hold for its stream to be taken directly: what they do (depayload,
/// timestamp, parse into access units) this client does itself.
fn only_depayloads_and_parses(branch: &str) -> bool {
    branch.split('!').all(|element| {
        let name = element.split_whitespace().next().unwrap_or("");
        (name.starts_with("rtp") && name.ends_with("depay"))
            || name.ends_with("timestamper")
            || name.ends_with("parse")
    })
}

/// How the stream `media`/`encoding` (upper case, as in the SDP) is taken, by the template's
/// branch for it: `Ok(None)` when the template has none (not recorded), `Err(why)` when this
/// client cannot do what the branch asks.
fn take(template: &Template, media: &str, encoding: &str) -> Result<Option<Take>, String> {
    let Some(branch) = template.branch(media, encoding) else {
        return Ok(None);
    };
    let direct = match (media, encoding) {
        ("video", "H264") => Some(Codec::H264),
        ("video", "H265") => Some(Codec::H265),
        ("audio", "MPEG4-GENERIC") => Some(Codec::Aac),
        _ => None,
    };
    if let Some(codec) = direct
        && only_depayloads_and_parses(branch)
    {
        return Ok(Some(Take::Direct(codec)));
    }
    let raw = match encoding {
        "PCMA" => Some(("rtppcmadepay", "audio/x-alaw")),
        "PCMU" => Some(("rtppcmudepay", "audio/x-mulaw")),
        _ => None,
    };
    if let Some((depay, caps)) = raw
        && let Some((first, tail)) = branch.split_once('!')
        && first.trim() == depay
    {
        return Ok(Some(Take::Transcode {
            tail: tail.trim().to_string(),
            caps: caps.to_string(),
        }));
    }
    Err(format!(
        "{media} {encoding} (branch \"{branch}\") needs GStreamer's receive graph"
    ))
}

/// The segment files of one run, written from the receive task and from a transcoder's
/// thread, and the events they give.
struct Files {
    segments: Mutex<Segments>,
    live: Arc<Liveness>,
    events: mpsc::UnboundedSender<GraphEvent>,
    camera_clock: CameraClock,
    /// This server's wall clock (Unix ns) at running time 0.
    wall_at_zero_ns: i128,
    /// The open file and its start (running ns), for the duration of its close.
    open: Mutex<Option<(PathBuf, u64)>>,
    /// RTP packets the camera's sequence numbers say were lost, or that could not be read,
    /// since the last file closed: the file's entry names them.
    damaged: std::sync::atomic::AtomicU64,
}

impl Files {
    /// Writes one frame of `kind`; an error is a write the disk refused.
    fn write(&self, kind: Stream, frame: Frame<'_>) -> Result<(), String> {
        self.live
            .frame_in(kind, Some(frame.pts_ns), frame.keyframe, true);
        let mut segments = self.segments.lock().expect("segments lock");
        match segments.frame(frame) {
            Ok(events) => {
                self.tell(events);
                Ok(())
            }
            Err(Failed { error, events }) => {
                self.tell(events);
                Err(error.to_string())
            }
        }
    }

    /// `n` packets lost or unreadable before the next frame.
    fn damaged(&self, n: u64) {
        self.damaged.fetch_add(n, Ordering::Relaxed);
    }

    /// Closes the open file (every stream ended) and writes nothing more.
    fn finish(&self, inputs: usize) -> Result<(), String> {
        let mut segments = self.segments.lock().expect("segments lock");
        let mut result = Ok(());
        for input in 0..inputs {
            match segments.end(input) {
                Ok(events) => self.tell(events),
                Err(Failed { error, events }) => {
                    self.tell(events);
                    result = Err(error.to_string());
                    break;
                }
            }
        }
        segments.abandon();
        result
    }

    /// Tells the recorder what happened to the files, on both clocks. Called under the
    /// segments' lock, so the events keep the files' order.
    fn tell(&self, events: Vec<Event>) {
        for event in events {
            let ev = match event {
                Event::Opened { path, running_ns } => {
                    *self.open.lock().expect("open lock") = Some((path.clone(), running_ns));
                    GraphEvent::Opened {
                        path,
                        running_ns,
                        server_start_us: ((self.wall_at_zero_ns + running_ns as i128) / 1000)
                            as i64,
                        camera_start_us: self
                            .camera_clock
                            .wall_ns(running_ns)
                            .map(|ns| (ns / 1000) as i64),
                    }
                }
                Event::Closed {
                    path,
                    running_ns,
                    video,
                    audio,
                    silences,
                } => {
                    let start = match self.open.lock().expect("open lock").take() {
                        Some((p, start)) if p == path => start,
                        _ => running_ns,
                    };
                    GraphEvent::Closed {
                        duration_us: (running_ns.saturating_sub(start) / 1000) as i64,
                        missing: join_notes(
                            self.live.missing_note(
                                Some(video),
                                Some(audio),
                                ts_segments::silence_note(&silences),
                            ),
                            damaged_note(self.damaged.swap(0, Ordering::Relaxed)),
                        ),
                        path,
                    }
                }
            };
            let _ = self.events.send(ev);
        }
    }
}

/// The entry's words for packets lost or unreadable while a file was written.
fn damaged_note(packets: u64) -> Option<String> {
    (packets > 0).then(|| {
        format!(
            "{packets} RTP packet{} lost or unreadable while this segment was written: frames around {} may be damaged",
            if packets == 1 { "" } else { "s" },
            if packets == 1 { "it" } else { "them" }
        )
    })
}

fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// G.711 to what the template's branch makes of it (AAC), in a small GStreamer graph whose
/// output is written into the files from its streaming thread.
struct Transcoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// Told when the last of the sound handed in has reached the files.
    drained: Arc<Notify>,
}

/// How long a stop waits for a transcoder to hand out what it still holds (its encoder's
/// frame, a few tens of ms of sound).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

impl Transcoder {
    fn start(
        tail: &str,
        caps: &str,
        rate: u32,
        channels: u16,
        input: usize,
        files: &Arc<Files>,
    ) -> Result<Transcoder, String> {
        let description = format!("appsrc name=src ! {tail} ! appsink name=sink");
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| format!("the template's branch \"{tail}\": {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| format!("no {name} in the transcoder"))
        };
        let src = by_name("src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| "src is no appsrc".to_string())?;
        let caps: gst::Caps = format!("{caps},rate={rate},channels={channels}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        src.set_caps(Some(&caps));
        src.set_format(gst::Format::Time);
        src.set_property("is-live", true);
        let sink = by_name("sink")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| "sink is no appsink".to_string())?;
        ts_segments::input_sink(&sink)?;
        let files = files.clone();
        let drained = Arc::new(Notify::new());
        let on_eos = drained.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    // The appsrc's segment starts at 0: running time is the timeline's time.
                    match ts_segments::with_frame(&sample, input, |frame| {
                        files.write(Stream::Audio, frame)
                    }) {
                        Ok(None) | Ok(Some(Ok(_))) => Ok(gst::FlowSuccess::Ok),
                        Ok(Some(Err(_))) | Err(NoFrame::Unreadable) => Err(gst::FlowError::Error),
                        Err(NoFrame::Codec(_)) => Err(gst::FlowError::NotNegotiated),
                    }
                })
                .eos(move |_| on_eos.notify_one())
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the transcoder did not start: {e}"))?;
        Ok(Transcoder {
            pipeline,
            src,
            drained,
        })
    }

    /// Ends its input and waits (within [`DRAIN_WAIT`]) until its output reached the files.
    async fn drain(&self) {
        if self.src.end_of_stream().is_ok() {
            let _ = tokio::time::timeout(DRAIN_WAIT, self.drained.notified()).await;
        }
    }

    fn push(&self, pts_ns: u64, duration_ns: u64, data: &[u8]) {
        let mut buffer = gst::Buffer::from_slice(data.to_vec());
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            b.set_duration(gst::ClockTime::from_nseconds(duration_ns));
        }
        let _ = self.src.push_buffer(buffer);
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// One stream of the camera being recorded.
struct Recorded {
    /// Its index in the camera's session description.
    index: usize,
    kind: Stream,
    /// Its number in the segment files.
    input: usize,
    codec: Option<Codec>,
    transcoder: Option<Transcoder>,
    timeline: Arc<Mutex<RtpTimeline>>,
    seen_keyframe: bool,
    last_ns: u64,
}

pub struct DirectGraph {
    live: Arc<Liveness>,
    files: Arc<Files>,
    camera_clock: CameraClock,
    started: Instant,
    eos: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// What the receive task needs.
struct Run {
    url: String,
    credentials: Option<retina::client::Credentials>,
    template: Template,
    media: String,
    files: Arc<Files>,
    timelines: Timelines,
    started: Instant,
    eos: Arc<Notify>,
}

impl DirectGraph {
    /// Starts receiving on a task of the current tokio runtime.
    pub fn start(spec: &GraphSpec<'_>, events: mpsc::UnboundedSender<GraphEvent>) -> DirectGraph {
        let live = Arc::new(Liveness::new());
        let timelines = Timelines::default();
        let camera_clock = CameraClock::on_timelines(timelines.clone());
        let started = Instant::now();
        let wall_at_zero_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        let files = Arc::new(Files {
            segments: Mutex::new(Segments::new(
                spec.spool_dir,
                spec.file_prefix,
                spec.segment.as_nanos() as u64,
            )),
            live: live.clone(),
            events: events.clone(),
            camera_clock: camera_clock.clone(),
            wall_at_zero_ns,
            open: Mutex::new(None),
            damaged: Default::default(),
        });
        let eos = Arc::new(Notify::new());
        let run = Run {
            url: spec.url.to_string(),
            credentials: spec.credentials.map(|c| retina::client::Credentials {
                username: c.username.clone(),
                password: c.password.clone(),
            }),
            template: spec.template.clone(),
            media: spec.media.to_string(),
            files: files.clone(),
            timelines,
            started,
            eos: eos.clone(),
        };
        let task = tokio::spawn(async move {
            let live = run.files.live.clone();
            let end = receive(run).await;
            live.ended.store(true, Ordering::Relaxed);
            let _ = events.send(end);
        });
        DirectGraph {
            live,
            files,
            camera_clock,
            started,
            eos,
            task,
        }
    }

    fn stop_writing(&self) {
        // Whatever the open file holds is on disk, and no file is opened from here on.
        self.files.segments.lock().expect("segments lock").abandon();
        self.task.abort();
    }
}

impl Graph for DirectGraph {
    fn kind(&self) -> &'static str {
        "direct"
    }

    fn liveness(&self) -> &Liveness {
        &self.live
    }

    fn camera_clock(&self) -> CameraClock {
        self.camera_clock.clone()
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn send_eos(&self) {
        self.eos.notify_one();
    }

    fn shutdown(self: Box<Self>) -> u64 {
        self.stop_writing();
        self.live.reached_ns()
    }
}

impl Drop for DirectGraph {
    fn drop(&mut self) {
        self.stop_writing();
    }
}

/// Receives until the camera ends, an error, or `eos`; returns how it ended.
async fn receive(run: Run) -> GraphEvent {
    let mut recorded = Vec::new();
    let outcome = tokio::select! {
        r = session(&run, &mut recorded) => r,
        _ = run.eos.notified() => Ok(None),
    };
    match outcome {
        Err(event) => event,
        Ok(error) => {
            // The files hold everything received: close the open one properly, once the
            // transcoders handed out what they held (and are gone, so nothing is written
            // behind the close).
            for t in recorded.iter().filter_map(|r| r.transcoder.as_ref()) {
                t.drain().await;
            }
            let inputs = recorded.len();
            recorded.clear();
            let written = run.files.finish(inputs);
            GraphEvent::Ended {
                error: error.or(written.err()),
            }
        }
    }
}

/// The RTSP session: DESCRIBE, SETUP of the streams recorded, PLAY, then frames into the files
/// until the camera ends (`Ok(None)`) or fails (`Ok(Some(error))`). `Err` ends the run with
/// that event at once.
async fn session(run: &Run, recorded: &mut Vec<Recorded>) -> Result<Option<String>, GraphEvent> {
    let failed = |e: String| Ok(Some(e));
    let url = match url::Url::parse(&run.url) {
        Ok(u) => u,
        Err(e) => return failed(format!("camera URL: {e}")),
    };
    let options = retina::client::SessionOptions::default()
        .creds(run.credentials.clone())
        .user_agent(format!("Witness/{}", env!("CARGO_PKG_VERSION")));
    let mut described = match retina::client::Session::describe(url, options).await {
        Ok(s) => s,
        Err(e) => return failed(said(&e)),
    };
    let live = &run.files.live;
    live.described_now();
    let mut transcode = Vec::new();
    for (index, s) in described.streams().iter().enumerate() {
        let kind = match s.media() {
            "video" => Stream::Video,
            "audio" => Stream::Audio,
            _ => continue,
        };
        if run.media != "av" && run.media != s.media() {
            continue;
        }
        let encoding = s.encoding_name().to_ascii_uppercase();
        let how = take(&run.template, s.media(), &encoding)
            .map_err(|why| GraphEvent::NeedsGstreamer { why })?;
        let Some(how) = how else {
            live.unsupported.lock().expect("lock").push(format!(
                "{} {encoding:?} (template {:?} has no branch for it)",
                s.media(),
                run.template.name
            ));
            continue;
        };
        live.watch(kind).expected.store(true, Ordering::Relaxed);
        let rate = s.clock_rate_hz();
        let channels = s.channels().map_or(1, |c| c.get());
        let timeline = run.timelines.of(index as u32, rate, kind == Stream::Video);
        recorded.push(Recorded {
            index,
            kind,
            input: 0,
            codec: match &how {
                Take::Direct(c) => Some(*c),
                Take::Transcode { .. } => None,
            },
            transcoder: None,
            timeline,
            seen_keyframe: kind != Stream::Video,
            last_ns: 0,
        });
        if let Take::Transcode { tail, caps } = how {
            transcode.push((recorded.len() - 1, tail, caps, rate, channels));
        }
    }
    {
        let mut segments = run.files.segments.lock().expect("segments lock");
        segments.expect(recorded.len());
        for r in recorded.iter_mut() {
            r.input = segments.add_stream();
        }
    }
    for (at, tail, caps, rate, channels) in transcode {
        let input = recorded[at].input;
        match Transcoder::start(&tail, &caps, rate, channels, input, &run.files) {
            Ok(t) => recorded[at].transcoder = Some(t),
            Err(e) => return failed(format!("audio transcoder: {e}")),
        }
    }
    if recorded.is_empty() {
        return failed("no supported stream to record".into());
    }
    let transport = retina::client::Transport::Tcp(Default::default());
    for r in recorded.iter() {
        let setup = described
            .setup(
                r.index,
                retina::client::SetupOptions::default()
                    .transport(transport.clone())
                    .frame_format(retina::codec::FrameFormat::SIMPLE),
            )
            .await;
        if let Err(e) = setup {
            return failed(said(&e));
        }
    }
    let playing = match described
        .play(
            retina::client::PlayOptions::default()
                .initial_timestamp(retina::client::InitialTimestampPolicy::Permissive),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return failed(said(&e)),
    };
    let mut frames = match playing.demuxed() {
        Ok(d) => d,
        Err(e) => return failed(said(&e)),
    };
    let mut video_start: Option<u64> = None;
    let video_expected = recorded.iter().any(|r| r.kind == Stream::Video);
    let mut bad_packets = 0u32;
    // Frames of sound dropped because the picture had not started, for the log.
    let mut held_back = 0u64;
    while let Some(item) = frames.next().await {
        let item = match item {
            Ok(i) => i,
            // One malformed packet loses its frame, as a depayloader would drop it; a stream
            // that sends nothing else is broken.
            Err(e) => match packet_error(&e) {
                Some(unreadable) if bad_packets < BAD_PACKETS_IN_A_ROW => {
                    bad_packets += 1;
                    run.files.damaged(unreadable);
                    tracing::warn!(error = %said(&e), bad_packets, "camera sent a packet that cannot be read or depayloaded; its frame is lost");
                    continue;
                }
                _ => return failed(said(&e)),
            },
        };
        bad_packets = 0;
        let arrival = run.started.elapsed().as_nanos() as u64;
        match item {
            retina::codec::CodecItem::VideoFrame(f) => {
                let Some(r) = recorded.iter_mut().find(|r| r.index == f.stream_id()) else {
                    continue;
                };
                live.rtp_in(r.kind);
                run.files.damaged(f.loss() as u64);
                let keyframe = f.is_random_access_point();
                let at = stamp(r, f.timestamp(), arrival);
                if !r.seen_keyframe {
                    if !keyframe {
                        continue;
                    }
                    r.seen_keyframe = true;
                }
                if let Some(error) = forward_only(r, at) {
                    return failed(error);
                }
                if r.last_ns > at {
                    continue;
                }
                r.last_ns = at;
                if video_start.is_none() {
                    tracing::debug!(
                        at_s = at as f64 / 1e9,
                        arrival_s = arrival as f64 / 1e9,
                        "the picture starts"
                    );
                }
                video_start.get_or_insert(at);
                let frame = Frame {
                    stream: r.input,
                    codec: r.codec.unwrap_or(Codec::H264),
                    pts_ns: at,
                    dts_ns: None,
                    duration_ns: None,
                    keyframe,
                    data: f.data(),
                };
                if let Err(e) = run.files.write(Stream::Video, frame) {
                    return Err(GraphEvent::Ended { error: Some(e) });
                }
            }
            retina::codec::CodecItem::AudioFrame(f) => {
                let Some(r) = recorded.iter_mut().find(|r| r.index == f.stream_id()) else {
                    continue;
                };
                live.rtp_in(r.kind);
                run.files.damaged(f.loss() as u64);
                let at = stamp(r, f.timestamp(), arrival);
                let clock = f.timestamp().clock_rate().get() as u64;
                let duration = f.frame_length().get() as u64 * 1_000_000_000 / clock.max(1);
                // Sound starts with the picture, as in every segment after the first.
                if video_expected && video_start.is_none_or(|v| at < v) {
                    held_back += 1;
                    continue;
                }
                if held_back > 0 {
                    tracing::debug!(
                        held_back,
                        at_s = at as f64 / 1e9,
                        arrival_s = arrival as f64 / 1e9,
                        video_start_s = video_start.unwrap_or(0) as f64 / 1e9,
                        "first sound after the picture's start"
                    );
                    held_back = 0;
                }
                if let Some(error) = forward_only(r, at) {
                    return failed(error);
                }
                if r.last_ns > at {
                    continue;
                }
                r.last_ns = at;
                if let Some(t) = &r.transcoder {
                    t.push(at, duration, f.data());
                    continue;
                }
                let frame = Frame {
                    stream: r.input,
                    codec: r.codec.unwrap_or(Codec::Aac),
                    pts_ns: at,
                    dts_ns: None,
                    duration_ns: Some(duration),
                    keyframe: true,
                    data: f.data(),
                };
                if let Err(e) = run.files.write(Stream::Audio, frame) {
                    return Err(GraphEvent::Ended { error: Some(e) });
                }
            }
            retina::codec::CodecItem::Rtcp(rtcp) => {
                sender_reports(&rtcp, &run.timelines);
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Malformed packets in a row (with no frame between) that end the run.
const BAD_PACKETS_IN_A_ROW: u32 = 50;

/// When retina's error is about one RTP or RTCP packet (a header that does not parse, a bad
/// payload, a wrong SSRC), after which the session can go on, rather than about the connection:
/// how many packets to count as unreadable now. A packet whose header does not parse never
/// reaches retina's sequence check, so it shows later as a gap in the next frame's `loss()`
/// and is not counted here too.
fn packet_error(e: &retina::Error) -> Option<u64> {
    let e = format!("{e:?}");
    if e.starts_with("RtpPacketError") {
        Some(1)
    } else if e.starts_with("PacketError") {
        Some(0)
    } else {
        None
    }
}

/// retina's error in the words a gap reason keeps: its first paragraph (the rest is connection
/// context: addresses, times, sequence numbers, logged instead).
fn said(e: &retina::Error) -> String {
    let full = e.to_string();
    let first = full
        .split("\n\n")
        .next()
        .unwrap_or(&full)
        .trim()
        .to_string();
    if first != full.trim() {
        tracing::debug!(error = %full, "RTSP client error");
    }
    first
}

/// The running time (ns) of a frame: its RTP time on the stream's timeline, anchored on
/// arrival.
fn stamp(r: &Recorded, ts: retina::Timestamp, arrival: u64) -> u64 {
    let mut t = r.timeline.lock().expect("timeline lock");
    let before = (t.restarts, t.resumes);
    let out = t.stamp(ts.timestamp() as u32, arrival);
    if (t.restarts, t.resumes) != before {
        tracing::info!(
            stream = r.kind.as_str(),
            restarts = t.restarts,
            resumes = t.resumes,
            arrival_s = arrival as f64 / 1e9,
            "camera's RTP clock restarted or resumed after a pause: timeline anchored on arrival"
        );
    }
    out
}

/// A stream whose time jumps back by more than [`RESTART_JUMP`] is broken: the error that ends
/// the run, so the recorder reconnects and the chain shows the break.
fn forward_only(r: &Recorded, at: u64) -> Option<String> {
    (r.last_ns > at && r.last_ns - at > RESTART_JUMP).then(|| {
        format!(
            "{} timestamps went back {:.1} s",
            r.kind.as_str(),
            (r.last_ns - at) as f64 / 1e9
        )
    })
}

/// The camera's sender reports: which RTP time of a stream was captured at which moment of its
/// clock, placed on the stream's timeline.
fn sender_reports(rtcp: &retina::rtcp::ReceivedCompoundPacket, timelines: &Timelines) {
    for pkt in rtcp.pkts() {
        let Ok(Some(sr)) = pkt.as_sender_report() else {
            continue;
        };
        let ntp = sr.ntp_timestamp().0;
        let Some(seconds) = (ntp >> 32).checked_sub(NTP_UNIX_OFFSET_S) else {
            continue;
        };
        let unix_ns =
            seconds as i128 * 1_000_000_000 + (((ntp & 0xffff_ffff) as i128 * 1_000_000_000) >> 32);
        timelines.sender_report(rtcp.stream_id() as u32, sr.rtp_timestamp(), unix_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(video: &str, audio: &[(&str, &str)]) -> Template {
        let mut t = crate::capture::template::Templates::shipped()
            .expect("shipped templates")
            .get("default")
            .expect("default template")
            .clone();
        t.video.insert("H264".into(), video.into());
        for (enc, branch) in audio {
            t.audio.insert((*enc).into(), (*branch).into());
        }
        t
    }

    #[test]
    fn plain_branches_are_taken_directly_and_g711_through_the_rest_of_its_branch() {
        let t = template(
            "rtph264depay ! h264timestamper ! h264parse config-interval=-1",
            &[],
        );
        assert_eq!(
            take(&t, "video", "H264"),
            Ok(Some(Take::Direct(Codec::H264)))
        );
        assert_eq!(
            take(&t, "audio", "MPEG4-GENERIC"),
            Ok(Some(Take::Direct(Codec::Aac)))
        );
        match take(&t, "audio", "PCMA") {
            Ok(Some(Take::Transcode { tail, caps })) => {
                assert!(tail.starts_with("alawdec"), "{tail}");
                assert!(!tail.contains("depay"), "{tail}");
                assert_eq!(caps, "audio/x-alaw");
            }
            other => panic!("PCMA: {other:?}"),
        }
        assert_eq!(take(&t, "video", "VP8"), Ok(None));
        // What this client does not depayload goes to GStreamer's graph, named.
        let opus = take(&t, "audio", "OPUS").unwrap_err();
        assert!(opus.contains("OPUS"), "{opus}");
    }

    #[test]
    fn packets_lost_are_named_in_the_entry() {
        assert_eq!(damaged_note(0), None);
        assert_eq!(
            damaged_note(1).as_deref(),
            Some(
                "1 RTP packet lost or unreadable while this segment was written: frames around it may be damaged"
            )
        );
        assert_eq!(
            join_notes(Some("no audio in this segment: the camera sent none".into()), damaged_note(3)),
            Some("no audio in this segment: the camera sent none; 3 RTP packets lost or unreadable while this segment was written: frames around them may be damaged".into())
        );
    }

    #[test]
    fn a_branch_that_transforms_the_picture_is_left_to_gstreamer() {
        let t = template("rtph264depay ! avdec_h264 ! x264enc ! h264parse", &[]);
        assert!(take(&t, "video", "H264").is_err());
    }
}
