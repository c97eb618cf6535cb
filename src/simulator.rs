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
    /// Loop a pre-encoded clip instead of encoding live (video only, ~free per stream).
    #[arg(long)]
    pub looped: bool,
}

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

/// A pre-encoded clip: H.264 access units in order, with keyframe flags.
struct Clip {
    frames: Vec<(gst::Buffer, bool)>,
}

fn encode_clip(o: &SimOptions) -> Result<Clip, SimError> {
    let seconds = 10;
    let desc = format!(
        // Noise, so the encoder spends the whole bitrate: benchmarks see real 1080p streams.
        "videotestsrc num-buffers={} pattern=snow ! video/x-raw,width={},height={},framerate={}/1 ! clockoverlay text=\"looped clip\" font-desc=\"Sans 28\" ! {} ! appsink name=sink sync=false",
        seconds * o.fps,
        o.width,
        o.height,
        o.fps,
        encoder(o)
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| SimError::Gst(e.to_string()))?;
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
    Ok(Clip { frames })
}

/// Feeds a looped clip into one media's appsrc at the frame rate until the media goes away.
fn feed_loop(appsrc: gst::Element, clip: Arc<Clip>, fps: u32) {
    std::thread::spawn(move || {
        let frame = Duration::from_secs_f64(1.0 / fps as f64);
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
        Some(Arc::new(encode_clip(o)?))
    } else {
        None
    };

    for i in 1..=o.cameras {
        let label = format!("cam{i}");
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        let launch = match &clip {
            Some(_) => "( appsrc name=clip is-live=true format=time do-timestamp=true caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
                .to_string(),
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
        if let Some(clip) = &clip {
            let clip = clip.clone();
            let fps = o.fps;
            factory.connect_media_configure(move |_, media| {
                let element = media.element();
                if let Some(src) = element
                    .downcast_ref::<gst::Bin>()
                    .and_then(|b| b.by_name("clip"))
                {
                    feed_loop(src, clip.clone(), fps);
                }
            });
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
        mounts.add_factory(&format!("/mic{i}"), factory);
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
    for i in 1..=o.cameras {
        println!("camera     rtsp://{}:{}/cam{i}", o.address, o.port);
    }
    for i in 1..=o.microphones {
        println!("microphone rtsp://{}:{}/mic{i}", o.address, o.port);
    }
    glib::MainLoop::new(None, false).run();
    Ok(())
}
