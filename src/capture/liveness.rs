//! Liveness of a source's elementary streams, whichever graph receives them: when each last
//! reached the segment files, when the camera last sent it, and whether the camera answered at
//! all. The recorder's watchdog reads [`Liveness::stalled`]; both receive graphs
//! ([`crate::capture::pipeline`], [`crate::capture::rtsp_client`]) write it as media passes.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The elementary streams of a source, as the segment files see them.
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

/// RTP this recent means the camera is sending the stream now.
pub const RTP_FRESH_MS: u64 = 1000;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds on the process's monotonic clock (never 0 once the first stream is watched).
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Liveness of one elementary stream where it enters the segment files.
#[derive(Debug)]
pub struct StreamWatch {
    /// Whether the camera's SDP offers this stream and we record it.
    pub expected: AtomicBool,
    /// `now_ms()` of the last frame into the files; 0 = none yet. For our own MPEG-TS files,
    /// video counts at keyframes only (as splitmuxsink, which hands the muxer whole GOPs):
    /// frames that never come to a keyframe cannot start a segment.
    pub last_ms: AtomicU64,
    /// `now_ms()` of the last frame of any kind into the files.
    pub frame_ms: AtomicU64,
    /// Running time (ns) of the last frame into the files: a segment never closed reaches as
    /// far as the stream that stopped first.
    pub last_running_ns: AtomicU64,
    /// `now_ms()` of the last RTP of this stream from the camera; 0 = none.
    pub rtp_last_ms: AtomicU64,
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

/// Which elementary streams have stopped reaching the segment files, and for how long.
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

/// What a receive graph knows of its camera and streams, shared with its streaming threads.
#[derive(Debug)]
pub struct Liveness {
    pub video: StreamWatch,
    pub audio: StreamWatch,
    /// The graph told its end.
    pub ended: AtomicBool,
    /// Streams the camera offers that the template cannot record, for the chain to name.
    pub unsupported: Mutex<Vec<String>>,
    /// Set once any frame reached the files: the camera works over this transport.
    pub media_seen: AtomicBool,
    /// Set once any RTP came from the camera, even if nothing of it is recordable (yet).
    pub rtp_seen: AtomicBool,
    /// Set once the camera answered DESCRIBE with a session description.
    pub described: AtomicBool,
    /// `now_ms()` when it did (0 before): a camera that answers late (a frozen one thawing)
    /// gets the whole watchdog time from then to send its first media.
    pub described_ms: AtomicU64,
    /// `now_ms()` when the graph was started.
    pub started_ms: u64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Liveness {
    pub fn new() -> Liveness {
        Liveness {
            video: StreamWatch::new(),
            audio: StreamWatch::new(),
            ended: AtomicBool::new(false),
            unsupported: Mutex::new(Vec::new()),
            media_seen: AtomicBool::new(false),
            rtp_seen: AtomicBool::new(false),
            described: AtomicBool::new(false),
            described_ms: AtomicU64::new(0),
            started_ms: now_ms(),
        }
    }

    pub fn watch(&self, s: Stream) -> &StreamWatch {
        match s {
            Stream::Video => &self.video,
            Stream::Audio => &self.audio,
        }
    }

    /// The camera answered DESCRIBE.
    pub fn described_now(&self) {
        if !self.described.swap(true, Ordering::Relaxed) {
            self.described_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// RTP of `stream` came from the camera.
    pub fn rtp_in(&self, stream: Stream) {
        self.rtp_seen.store(true, Ordering::Relaxed);
        self.watch(stream)
            .rtp_last_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// A frame of `stream` reached the files at running time `running_ns`; with
    /// `video_by_keyframes`, the picture is alive while keyframes come.
    pub fn frame_in(
        &self,
        stream: Stream,
        running_ns: Option<u64>,
        keyframe: bool,
        video_by_keyframes: bool,
    ) {
        let w = self.watch(stream);
        let now = now_ms();
        w.frame_ms.store(now, Ordering::Relaxed);
        if let Some(rt) = running_ns {
            w.last_running_ns.fetch_max(rt, Ordering::Relaxed);
        }
        if stream == Stream::Audio || !video_by_keyframes || keyframe {
            w.last_ms.store(now, Ordering::Relaxed);
        }
        self.media_seen.store(true, Ordering::Relaxed);
    }

    /// The running time (ns) every recorded stream reached: the one that stopped first bounds
    /// a file never closed. 0 when none reached the files.
    pub fn reached_ns(&self) -> u64 {
        [Stream::Video, Stream::Audio]
            .iter()
            .map(|s| self.watch(*s))
            .filter(|w| w.expected.load(Ordering::Relaxed))
            .map(|w| w.last_running_ns.load(Ordering::Relaxed))
            .filter(|&ns| ns > 0)
            .min()
            .unwrap_or(0)
    }

    /// The expected streams that have not reached the files for longer than `limit` (counted
    /// from the camera's answer before their first frame), or `None` while all flow.
    pub fn stalled(&self, limit: Duration) -> Option<Stall> {
        let now = now_ms();
        let limit_ms = limit.as_millis() as u64;
        // Before its first frame, a stream is waited for from the camera's answer.
        let first_wait = self
            .started_ms
            .max(self.described_ms.load(Ordering::Relaxed));
        let since = |t: u64| now.saturating_sub(if t == 0 { first_wait } else { t });
        let mut stalled = Vec::new();
        let mut flowing = Vec::new();
        let mut idle_ms = 0;
        for s in [Stream::Video, Stream::Audio] {
            let w = self.watch(s);
            if !w.expected.load(Ordering::Relaxed) {
                continue;
            }
            let idle = since(w.last_ms.load(Ordering::Relaxed));
            if idle > limit_ms {
                stalled.push(s);
                idle_ms = idle_ms.max(idle);
            }
            // A stream the camera still sends, even if the files hold it back waiting for
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
            .any(|s| self.watch(*s).expected.load(Ordering::Relaxed));
        if !expecting {
            let idle = now.saturating_sub(self.started_ms);
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
        let video_frames = self.video.frame_ms.load(Ordering::Relaxed);
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

    /// Per expected stream, seconds since the instant `of` keeps; `None` before the first.
    pub fn ages(&self, of: fn(&StreamWatch) -> &AtomicU64) -> Vec<(Stream, Option<f64>)> {
        let now = now_ms();
        [Stream::Video, Stream::Audio]
            .into_iter()
            .filter(|s| self.watch(*s).expected.load(Ordering::Relaxed))
            .map(|s| {
                let t = of(self.watch(s)).load(Ordering::Relaxed);
                (s, (t != 0).then(|| now.saturating_sub(t) as f64 / 1000.0))
            })
            .collect()
    }

    /// What a closed file lacks, for its entry: the expected streams it holds no frame of
    /// (`held`: whether it holds video, audio, when the writer says), and the stretches a
    /// stream it holds left without frames (`silences`).
    pub fn missing_note(
        &self,
        video_held: Option<bool>,
        audio_held: Option<bool>,
        silences: Option<String>,
    ) -> Option<String> {
        let missing: Vec<&str> = [
            ("video", &self.video, video_held),
            ("audio", &self.audio, audio_held),
        ]
        .into_iter()
        .filter(|(_, w, held)| w.expected.load(Ordering::Relaxed) && *held == Some(false))
        .map(|(name, _, _)| name)
        .collect();
        let absent = (!missing.is_empty()).then(|| {
            format!(
                "no {} in this segment: the camera sent none",
                missing.join(" or ")
            )
        });
        match (absent, silences) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }
}
