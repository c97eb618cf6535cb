//! Integration tests: real GStreamer, real RTSP, real SQL, real HTTP. See `harness`.

mod audit;
mod auth;
mod browser;
mod cluster;
mod completeness;
mod console;
mod destruction;
mod errors;
mod export;
mod fixity;
mod harness;
mod hostile;
mod interop;
mod login_flood;
mod outages;
mod peers;
mod probe;
mod rbac;
mod recording;
mod replay;
mod retention;
mod s3;
mod third_party;
mod tls;
mod worm;
