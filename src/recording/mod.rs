//! The recording core: rooms with cameras and microphones are recorded into short segments,
//! each hashed and linked into a chain, stored in object storage and indexed in SQL.
//!
//! A segment travels through the files in this order:
//! `pipeline` (GStreamer graph, segment opened/closed) → `recorder` (reconnect, watchdog,
//! gaps) → `spool` (fsync, hash) → `writer` (store, then index via `index`, linked by `chain`)
//! → `sessions` (manifest at stop) → `verify`, `replay` (HLS), `export` (evidence package) and `package` (its
//! offline check). `rooms` and `template` are configuration;
//! `views` are the JSON shapes and `api` the HTTP face.

pub mod api;
pub mod archive;
pub mod chain;
pub mod clock;
pub mod coverage;
pub mod error;
pub mod export;
pub mod export_api;
pub mod index;
pub mod lease;
pub mod live;
pub mod manifest;
pub mod metrics;
pub mod package;
pub mod pipeline;
pub mod probe;
pub mod recorder;
pub mod remux;
pub mod replay;
pub mod rooms;
pub mod rtsp_compat;
pub mod sessions;
pub mod spool;
pub mod template;
pub mod transport;
pub mod verify;
pub mod views;
pub mod writer;
