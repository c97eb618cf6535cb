//! Capture: from a room's cameras to closed segment files. `rooms` says what a room records,
//! `template` and `transport` how a source is pulled, `pipeline` is the GStreamer graph that
//! cuts segments without transcoding, `rtp_timeline` stamps media from the camera's RTP clock,
//! `ts_segments` cuts MPEG-TS files with `ts_writer`, `recorder` runs the graph (reconnect,
//! watchdog, gaps) and hands each closed segment to the ledger's writer. `probe` asks a camera
//! what it offers; `media_span` measures a segment file its muxer never closed.

pub mod camera_clock;
pub mod credentials;
pub mod media_span;
pub mod pipeline;
pub mod probe;
pub mod recorder;
pub mod rooms;
pub mod rtp_timeline;
pub mod rtsp_compat;
pub mod template;
pub mod transport;
pub mod ts_segments;
pub mod ts_writer;
