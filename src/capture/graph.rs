//! The receive graph of one source, as the recorder sees it: started for one transport, it
//! writes segment files into the spool and tells their opening and closing ([`GraphEvent`]),
//! and it keeps the streams' [`Liveness`]. Two graphs do this:
//! - [`crate::capture::rtsp_client`]: the RTSP/RTP client `retina` straight into our MPEG-TS
//!   writer, with no GStreamer in the path of a frame (a fifth of rtspsrc's CPU per stream,
//!   docs/performance.md). Chosen for MPEG-TS templates (the default) over TCP; streams whose
//!   branch transcodes G.711 go through that branch's GStreamer elements.
//! - [`crate::capture::pipeline`]: GStreamer's `rtspsrc` and the template's branches, for
//!   everything else (other muxers, UDP and multicast, branches that transform the picture,
//!   codecs retina does not depayload such as Opus).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::capture::camera_clock::CameraClock;
use crate::capture::liveness::{Liveness, Stall, Stream};
use crate::capture::template::Template;
use crate::capture::transport::Transport;

/// What a running graph reports, in order.
#[derive(Debug)]
pub enum GraphEvent {
    /// A segment file was opened; its wall-clock start is known now, on both clocks.
    Opened {
        path: PathBuf,
        /// Running time at the start, to estimate a segment the writer never closed.
        running_ns: u64,
        /// This server's clock at the segment's first frame (Unix µs).
        server_start_us: i64,
        /// The camera's clock (RTCP sender reports) at the same instant, once one was seen.
        camera_start_us: Option<i64>,
    },
    /// A segment file is complete and closed. `missing`: what the file lacks, for the entry to
    /// say: the recorded streams it holds no frame of (the camera sent none while it was
    /// written), and the stretches a stream it holds left without frames.
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
    /// The camera offers a stream this graph cannot receive but the other can: nothing was
    /// recorded, and the source is to be received by GStreamer's graph from now on.
    NeedsGstreamer { why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("gstreamer: {0}")]
    Build(String),
}

impl From<gst::glib::BoolError> for GraphError {
    fn from(e: gst::glib::BoolError) -> Self {
        GraphError::Build(e.to_string())
    }
}

pub struct GraphSpec<'a> {
    pub name: &'a str,
    /// The camera's URL, without user info.
    pub url: &'a str,
    /// The camera's credentials, kept out of every URL (and so of every message naming one).
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

/// A running receive graph. Its streaming work runs on its own threads or tasks; these calls
/// only read what it shares, except `shutdown`.
pub trait Graph: Send + Sync {
    /// `direct` or `gstreamer`, for the source's status.
    fn kind(&self) -> &'static str;
    fn liveness(&self) -> &Liveness;
    /// The camera clock this graph learns, usable after the graph is gone.
    fn camera_clock(&self) -> CameraClock;
    fn uptime(&self) -> Duration;
    /// Asks the graph to finish: the open segment is closed, then `Ended` follows.
    fn send_eos(&self);
    /// Tears the graph down (blocking). Returns the running time (ns) every recorded stream
    /// reached. Whatever the open file holds is on disk, and no file is opened from here on.
    fn shutdown(self: Box<Self>) -> u64;

    /// The expected streams that have not reached the files for longer than `limit`.
    fn stalled(&self, limit: Duration) -> Option<Stall> {
        self.liveness().stalled(limit)
    }

    /// Per expected stream, seconds since its last frame reached the files.
    fn stream_ages(&self) -> Vec<(Stream, Option<f64>)> {
        self.liveness().ages(|w| &w.last_ms)
    }

    /// Per expected stream, seconds since its last RTP arrived (diagnostics).
    fn rtp_ages(&self) -> Vec<(Stream, Option<f64>)> {
        self.liveness().ages(|w| &w.rtp_last_ms)
    }

    /// The camera's wall clock (Unix µs) at a running time, once its first sender report came.
    fn camera_wall_us(&self, running_ns: u64) -> Option<i64> {
        self.camera_clock()
            .wall_ns(running_ns)
            .map(|ns| (ns / 1000) as i64)
    }

    /// Whether any media reached the files: the camera works over this transport.
    fn media_seen(&self) -> bool {
        self.liveness()
            .media_seen
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the camera answered DESCRIBE (its SDP was read).
    fn described(&self) -> bool {
        self.liveness()
            .described
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether any RTP arrived: the camera sends over this transport.
    fn rtp_seen(&self) -> bool {
        self.liveness()
            .rtp_seen
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Streams the camera offers that the template cannot record.
    fn unsupported(&self) -> Vec<String> {
        self.liveness().unsupported.lock().expect("lock").clone()
    }
}

pub use crate::config::Receiver;

/// Starts the graph that receives `spec`: the direct client when `receiver` allows it and it
/// can take the template and transport, else GStreamer's.
pub fn start(
    spec: &GraphSpec<'_>,
    receiver: Receiver,
    events: mpsc::UnboundedSender<GraphEvent>,
) -> Result<Box<dyn Graph>, GraphError> {
    if receiver == Receiver::Direct && crate::capture::rtsp_client::can_receive(spec) {
        return Ok(Box::new(crate::capture::rtsp_client::DirectGraph::start(
            spec, events,
        )));
    }
    Ok(Box::new(crate::capture::pipeline::RunningPipeline::start(
        spec, events,
    )?))
}
