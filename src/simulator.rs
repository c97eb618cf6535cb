//! Camera simulator on gst-rtsp-server: `rtsp://HOST:PORT/cam1..N` (H.264 with a burned-in
//! wall clock, plus an audio tone) and `/mic1..M` (audio only). In `--looped` mode every camera
//! replays one pre-encoded clip, so load tests measure the recorder, not the encoder.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AudioCodec {
    Aac,
    Opus,
    /// G.711 A-law, common on Chinese IP cameras.
    Pcma,
    /// G.711 µ-law.
    Pcmu,
    None,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimOptions {
    /// Number of cameras: /cam1 … /camN
    #[arg(long, default_value_t = 2)]
    pub cameras: u32,
    /// Number of audio-only microphones: /mic1 … /micM
    #[arg(long, default_value_t = 1)]
    pub microphones: u32,
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    #[arg(long, default_value_t = 8554)]
    pub port: u16,
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 2000)]
    pub bitrate: u32,
    /// Audio codec of cameras and microphones.
    #[arg(long, value_enum, default_value_t = AudioCodec::Aac)]
    pub audio: AudioCodec,
    /// Loop a pre-encoded clip instead of encoding live (~free per stream): H.264, with AAC
    /// audio unless `--audio none`.
    #[arg(long)]
    pub looped: bool,
    /// The cameras' own clock runs this many seconds ahead of real time (negative: behind): in
    /// their RTCP sender reports and in the time each frame carries.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub clock_offset: f64,
    /// While this file exists, every camera's video is held back (audio goes on): a camera
    /// whose encoder hangs while its microphone works.
    #[arg(long)]
    pub hold_video_while: Option<std::path::PathBuf>,
    /// While this file exists, every camera's sound is held back (video goes on): a camera
    /// whose microphone drops out.
    #[arg(long)]
    pub hold_audio_while: Option<std::path::PathBuf>,
    /// While this file exists, every camera's keyframes are dropped (other frames go on): an
    /// encoder that stops sending IDR frames, so a recorder has nowhere to cut.
    #[arg(long)]
    pub hold_keyframes_while: Option<std::path::PathBuf>,
    /// `USER:PASSWORD`: every stream asks for HTTP basic authentication (401 without it), as
    /// most IP cameras do.
    #[arg(long, value_parser = parse_auth)]
    pub auth: Option<(String, String)>,
}

fn parse_auth(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err("expected USER:PASSWORD".into()),
    }
}

/// The role the simulator's one account has, and the permissions each stream grants it.
const AUTH_ROLE: &str = "camera-user";

/// Requires `user:password` (basic) for every stream of `server`; `factories` get the role.
fn require_auth(server: &gst_rtsp_server::RTSPServer, user: &str, password: &str) {
    let auth = gst_rtsp_server::RTSPAuth::new();
    let token = gst_rtsp_server::RTSPToken::builder()
        .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, AUTH_ROLE)
        .build();
    auth.add_basic(
        gst_rtsp_server::RTSPAuth::make_basic(user, password).as_str(),
        &token,
    );
    server.set_auth(Some(&auth));
}

fn grant_role(factory: &gst_rtsp_server::RTSPMediaFactory) {
    let role = gst::Structure::builder(AUTH_ROLE)
        .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
        .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
        .build();
    factory.add_role_from_structure(&role);
}

/// Every live camera frame carries the camera's wall clock at capture in an H.264 SEI message
/// (user data unregistered) with this UUID, followed by the time as ASCII Unix microseconds,
/// so tests can compare recorded times with the picture's own.
pub const CLOCK_SEI_UUID: [u8; 16] = *b"WITNESS-SIMCLOCK";

/// Set while `--hold-video-while`'s file exists.
static VIDEO_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set while `--hold-audio-while`'s file exists.
static AUDIO_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set while `--hold-keyframes-while`'s file exists.
static KEYFRAMES_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: {0}")]
    Gst(String),
    #[error("simulator: cannot listen on {address}:{port} (port in use?)")]
    Listen { address: String, port: u16 },
}

fn audio_branch(codec: AudioCodec, pay: &str) -> Option<String> {
    let src =
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! audioresample";
    Some(match codec {
        AudioCodec::Aac => format!(
            "{src} ! audio/x-raw,rate=48000,channels=1 ! avenc_aac bitrate=64000 ! aacparse ! rtpmp4gpay name={pay} pt=97"
        ),
        AudioCodec::Opus => format!(
            "{src} ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=32000 ! rtpopuspay name={pay} pt=97"
        ),
        AudioCodec::Pcma => format!(
            "{src} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name={pay} pt=8"
        ),
        AudioCodec::Pcmu => format!(
            "{src} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name={pay} pt=0"
        ),
        AudioCodec::None => return None,
    })
}

fn encoder(o: &SimOptions) -> String {
    format!(
        "x264enc tune=zerolatency sliced-threads=false speed-preset=ultrafast bitrate={} key-int-max={} ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au",
        o.bitrate, o.fps
    )
}

fn raw_video(o: &SimOptions, label: &str) -> String {
    format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width={},height={},framerate={}/1 ! clockoverlay text=\"{label}\" time-format=\"%Y-%m-%d %H:%M:%S\" font-desc=\"Sans 28\" shaded-background=true",
        o.width, o.height, o.fps
    )
}

/// A pre-encoded clip: access units in order, with keyframe flags, and how long each lasts.
struct Clip {
    frames: Vec<(gst::Buffer, bool)>,
    frame: Duration,
}

/// How long a looped clip lasts before it starts again.
const CLIP_SECONDS: u32 = 10;

/// The looped camera's picture: H.264 noise at the whole bitrate, so benchmarks see real
/// 1080p streams.
fn encode_video_clip(o: &SimOptions) -> Result<Clip, SimError> {
    let desc = format!(
        "videotestsrc num-buffers={} pattern=snow ! video/x-raw,width={},height={},framerate={}/1 ! clockoverlay text=\"looped clip\" font-desc=\"Sans 28\" ! {} ! appsink name=sink sync=false",
        CLIP_SECONDS * o.fps,
        o.width,
        o.height,
        o.fps,
        encoder(o)
    );
    encode_clip(&desc, Duration::from_secs_f64(1.0 / o.fps as f64))
}

/// The looped camera's sound: AAC frames (ADTS, 1024 samples at 48 kHz) of the test tone.
fn encode_audio_clip() -> Result<Clip, SimError> {
    let desc = format!(
        "audiotestsrc num-buffers={} samplesperbuffer=1024 wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=48000,channels=1 ! avenc_aac bitrate=64000 ! aacparse ! audio/mpeg,stream-format=adts ! appsink name=sink sync=false",
        CLIP_SECONDS * 48000 / 1024
    );
    encode_clip(&desc, Duration::from_secs_f64(1024.0 / 48000.0))
}

fn encode_clip(desc: &str, frame: Duration) -> Result<Clip, SimError> {
    let pipeline = gst::parse::launch(desc).map_err(|e| SimError::Gst(e.to_string()))?;
    let pipeline = pipeline
        .downcast::<gst::Pipeline>()
        .map_err(|_| SimError::Gst("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("sink")
        .ok_or_else(|| SimError::Gst("no appsink".into()))?;
    let frames = Arc::new(Mutex::new(Vec::new()));
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| SimError::Gst(e.to_string()))?;
    loop {
        let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]);
        let Some(sample) = sample else { break };
        if let Some(buf) = sample.buffer_owned() {
            let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
            frames.lock().expect("frames").push((buf, key));
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let frames = std::mem::take(&mut *frames.lock().expect("frames"));
    if frames.is_empty() {
        return Err(SimError::Gst("pre-encoding produced no frames".into()));
    }
    Ok(Clip { frames, frame })
}

/// Feeds a looped clip into one media's appsrc at its frame rate until the media goes away.
///
/// It waits for the appsrc to play first. The media is configured before its pipeline has a
/// base time, and `do-timestamp` stamps a buffer pushed before then with the clock's absolute
/// time (hours, as running time); gst-rtsp-server's rate-controlled sink then holds that stream
/// back for as long, while the other stream of the camera flows. Under load (64 cameras
/// starting at once) one feeder in a few lost that race, and the recorder rightly saw a camera
/// that sent no sound.
fn feed_loop(appsrc: gst::Element, clip: Arc<Clip>) {
    std::thread::spawn(move || {
        let frame = clip.frame;
        let deadline = Instant::now() + Duration::from_secs(30);
        while appsrc.current_state() != gst::State::Playing {
            if Instant::now() > deadline {
                tracing::warn!(element = %appsrc.name(), "media never started playing; its clip is not fed");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let start = Instant::now();
        // Start on a keyframe so the first client can decode at once.
        for (n, (buf, _)) in clip.frames.iter().cycle().enumerate() {
            let mut b = buf.copy();
            {
                let b = b.make_mut();
                b.set_pts(gst::ClockTime::NONE);
                b.set_dts(gst::ClockTime::NONE);
            }
            let flow = appsrc.emit_by_name::<gst::FlowReturn>("push-buffer", &[&b]);
            if flow != gst::FlowReturn::Ok {
                return;
            }
            let due = start + frame * (n as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
}

/// Swallows a camera's sound while `--hold-audio-while` says so, as a microphone that drops out.
fn hold_audio(pad: &gst::Pad) {
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if AUDIO_HELD.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = info.data.take();
            return gst::PadProbeReturn::Handled;
        }
        gst::PadProbeReturn::Ok
    });
}

/// Puts the camera's wall clock at capture into each access unit (SEI before the first NAL
/// unit); holds video back, or only its keyframes, while the test says so.
fn stamp_frames(pad: &gst::Pad, offset_us: i64) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if VIDEO_HELD.load(std::sync::atomic::Ordering::Relaxed) {
            // Swallowed here, as if the encoder had hung.
            let _ = info.data.take();
            return gst::PadProbeReturn::Handled;
        }
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if KEYFRAMES_HELD.load(std::sync::atomic::Ordering::Relaxed)
            && !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
        {
            let _ = info.data.take();
            return gst::PadProbeReturn::Handled;
        }
        let now = chrono::Utc::now().timestamp_micros() + offset_us;
        let mut payload = CLOCK_SEI_UUID.to_vec();
        payload.extend_from_slice(now.to_string().as_bytes());
        // NAL type 6 (SEI), payload type 5 (user data unregistered), size, payload, stop bit.
        let mut sei = vec![0, 0, 0, 1, 0x06, 0x05, payload.len() as u8];
        sei.extend_from_slice(&payload);
        sei.push(0x80);
        let mut stamped = gst::Buffer::from_mut_slice(sei);
        {
            let b = stamped.get_mut().expect("new buffer");
            let _ = buffer.copy_into(
                b,
                gst::BufferCopyFlags::FLAGS
                    | gst::BufferCopyFlags::TIMESTAMPS
                    | gst::BufferCopyFlags::META,
                ..,
            );
        }
        stamped.append(buffer.clone());
        info.data = Some(gst::PadProbeData::Buffer(stamped));
        gst::PadProbeReturn::Ok
    });
}

/// Shifts the NTP time of the media's RTCP sender reports by `offset_us`: rtpbin takes NTP time
/// from the pipeline clock, which runs ahead of (or behind) real time by the offset. (Only the
/// difference matters, as with a real camera whose clock is off.)
fn skew_sender_reports(media: &gst_rtsp_server::RTSPMedia, offset_us: i64) {
    let skewed: gst::Clock = glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build()
        .upcast();
    // rtpbin's `clock-time` source takes the clock as NTP time: the clock runs on the NTP
    // epoch (1900), shifted by the offset.
    const NTP_UNIX_OFFSET_US: i64 = 2_208_988_800 * 1_000_000;
    let internal = skewed.internal_time();
    let shift = NTP_UNIX_OFFSET_US + offset_us;
    let external = internal + gst::ClockTime::from_useconds(shift as u64);
    skewed.set_calibration(internal, external, 1, 1);
    media.set_clock(Some(&skewed));
    media.connect_prepared(|media| {
        let Some(pipeline) = media.element().parent() else {
            return;
        };
        let Some(bin) = pipeline.downcast_ref::<gst::Bin>() else {
            return;
        };
        for e in bin.iterate_recurse().into_iter().flatten() {
            if e.factory().is_some_and(|f| f.name() == "rtpbin") {
                e.set_property_from_str("ntp-time-source", "clock-time");
            }
        }
    });
}

/// Starts the RTSP server on the default main context. Run a `glib::MainLoop` to serve.
pub fn start(o: &SimOptions) -> Result<gst_rtsp_server::RTSPServer, SimError> {
    gst::init().map_err(|e| SimError::Gst(e.to_string()))?;
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&o.address);
    server.set_service(&o.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| SimError::Gst("no mount points".into()))?;
    let clip = if o.looped {
        Some(Arc::new(encode_video_clip(o)?))
    } else {
        None
    };
    // Looped cameras carry AAC sound as most IP cameras do, or none with `--audio none`.
    let audio_clip = match (o.looped, o.audio) {
        (true, AudioCodec::Aac) => Some(Arc::new(encode_audio_clip()?)),
        (true, AudioCodec::None) | (false, _) => None,
        (true, other) => {
            return Err(SimError::Gst(format!(
                "--looped cameras carry AAC audio or none, not {other:?}: use --audio aac or --audio none"
            )));
        }
    };

    for i in 1..=o.cameras {
        let label = format!("cam{i}");
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        let launch = match &clip {
            Some(_) => format!(
                "( appsrc name=clip is-live=true format=time do-timestamp=true caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 {} )",
                if audio_clip.is_some() {
                    "appsrc name=aclip is-live=true format=time do-timestamp=true caps=audio/mpeg,mpegversion=4,stream-format=adts,rate=48000,channels=1,framed=true ! aacparse ! rtpmp4gpay name=pay1 pt=97"
                } else {
                    ""
                }
            ),
            None => {
                let audio = audio_branch(o.audio, "pay1").unwrap_or_default();
                format!(
                    "( {} ! {} ! rtph264pay name=pay0 pt=96 config-interval=-1 {audio} )",
                    raw_video(o, &label),
                    encoder(o)
                )
            }
        };
        factory.set_launch(&launch);
        factory.set_shared(true);
        if clip.is_none() {
            let offset_us = (o.clock_offset * 1e6) as i64;
            factory.connect_media_configure(move |_, media| {
                let element = media.element();
                let Some(bin) = element.downcast_ref::<gst::Bin>() else {
                    return;
                };
                if let Some(pay) = bin.by_name("pay0")
                    && let Some(pad) = pay.static_pad("sink")
                {
                    stamp_frames(&pad, offset_us);
                }
                if let Some(pay) = bin.by_name("pay1")
                    && let Some(pad) = pay.static_pad("sink")
                {
                    hold_audio(&pad);
                }
                if offset_us != 0 {
                    skew_sender_reports(media, offset_us);
                }
            });
        }
        if let Some(clip) = &clip {
            let clips = [("clip", Some(clip.clone())), ("aclip", audio_clip.clone())];
            factory.connect_media_configure(move |_, media| {
                let element = media.element();
                for (name, clip) in &clips {
                    if let (Some(clip), Some(src)) = (
                        clip,
                        element
                            .downcast_ref::<gst::Bin>()
                            .and_then(|b| b.by_name(name)),
                    ) {
                        feed_loop(src, clip.clone());
                    }
                }
            });
        }
        if o.auth.is_some() {
            grant_role(&factory);
        }
        mounts.add_factory(&format!("/{label}"), factory);
    }
    let mic_codec = if o.audio == AudioCodec::None {
        AudioCodec::Aac
    } else {
        o.audio
    };
    for i in 1..=o.microphones {
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        let audio = audio_branch(mic_codec, "pay0").expect("a codec");
        factory.set_launch(&format!("( {audio} )"));
        factory.set_shared(true);
        if o.auth.is_some() {
            grant_role(&factory);
        }
        mounts.add_factory(&format!("/mic{i}"), factory);
    }
    if let Some((user, password)) = &o.auth {
        require_auth(&server, user, password);
    }
    server.attach(None).map_err(|_| SimError::Listen {
        address: o.address.clone(),
        port: o.port,
    })?;
    Ok(server)
}

/// Serves until the process ends.
pub fn run(o: &SimOptions) -> Result<(), SimError> {
    let _server = start(o)?;
    for (path, flag, what) in [
        (o.hold_video_while.clone(), &VIDEO_HELD, "video"),
        (o.hold_audio_while.clone(), &AUDIO_HELD, "audio"),
        (o.hold_keyframes_while.clone(), &KEYFRAMES_HELD, "keyframes"),
    ] {
        let Some(path) = path else { continue };
        std::thread::spawn(move || {
            loop {
                let held = path.exists();
                if flag.swap(held, std::sync::atomic::Ordering::Relaxed) != held {
                    eprintln!(
                        "simulator: {what} {}",
                        if held { "held" } else { "flowing" }
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    for i in 1..=o.cameras {
        println!("camera     rtsp://{}:{}/cam{i}", o.address, o.port);
    }
    for i in 1..=o.microphones {
        println!("microphone rtsp://{}:{}/mic{i}", o.address, o.port);
    }
    glib::MainLoop::new(None, false).run();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race behind the 64-camera start-up gaps (docs/performance.md): a buffer pushed
    /// before the media's pipeline plays is stamped with the clock's absolute time, and
    /// gst-rtsp-server then holds that stream back by hours. The feeder waits until it plays.
    #[test]
    fn a_looped_feeder_pushes_nothing_before_its_pipeline_plays() {
        gst::init().expect("gstreamer");
        let pipeline = gst::parse::launch(
            "appsrc name=src is-live=true format=time do-timestamp=true ! appsink name=sink sync=false",
        )
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let src = pipeline.by_name("src").expect("appsrc");
        let sink = pipeline
            .by_name("sink")
            .expect("appsink")
            .downcast::<gst_app::AppSink>()
            .expect("an appsink");
        let clip = Arc::new(Clip {
            frames: (0..4)
                .map(|_| (gst::Buffer::from_slice(vec![0u8; 16]), true))
                .collect(),
            frame: Duration::from_millis(10),
        });
        // As gst-rtsp-server's media: the pipeline's clock is set on its elements from the
        // start, and the media is paused between its configuration and its start, when the
        // appsrc is started and no base time is set yet.
        let clock = gst::SystemClock::obtain();
        pipeline.use_clock(Some(&clock));
        let _ = pipeline.set_clock(Some(&clock));
        let _ = pipeline.set_state(gst::State::Paused);
        feed_loop(src, clip);
        std::thread::sleep(Duration::from_millis(200));
        pipeline.set_state(gst::State::Playing).expect("playing");
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .expect("the clip is fed once the pipeline plays");
        let pts = sample.buffer().and_then(|b| b.pts());
        pipeline.set_state(gst::State::Null).expect("stopped");
        let pts = pts.expect("the first buffer is stamped");
        assert!(
            pts < gst::ClockTime::from_seconds(1),
            "the first buffer is stamped at running time {pts}, not near 0"
        );
    }
}
