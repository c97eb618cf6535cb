//! Capture: from a room's cameras to closed segment files. `rooms` says what a room records,
//! `template` and `transport` how a source is pulled. `graph` is a source's receive graph as
//! the recorder sees it, one of two: `rtsp_client` (the RTSP client `retina` straight into our
//! MPEG-TS writer, the default) or `pipeline` (GStreamer's `rtspsrc` and the template's
//! branches, for everything else). Both stamp media from the camera's RTP clock
//! (`rtp_timeline`, `camera_clock`), keep each stream's `liveness`, and cut MPEG-TS files with
//! `ts_segments` / `ts_writer`. `recorder` runs one graph after another (transport fallback,
//! reconnect, watchdog, gaps) and hands each closed segment to the ledger's writer. `probe` asks
//! a camera what it offers; `media_span` measures a segment file its writer never closed.
pub mod camera_clock;
pub mod credentials;
pub mod graph;
pub mod liveness;
pub mod media_span;
pub mod pipeline;
pub mod probe;
pub mod recorder;
pub mod rooms;
pub mod rtp_timeline;
pub mod rtsp_client;
pub mod rtsp_compat;
pub mod template;
pub mod transport;
pub mod ts_segments;
pub mod ts_writer;
