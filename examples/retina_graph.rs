//! A recording path without GStreamer, to measure before building it: for each RTSP URL, the
//! `retina` crate (the RTSP/RTP client Moonfire NVR uses) receives H.264 and AAC over TCP,
//! hands Annex B access units with parameter sets before each keyframe and ADTS sound
//! (`FrameFormat::SIMPLE`), and `capture::ts_segments` cuts them into 2 s MPEG-TS files, as the
//! recorder's own writer does. One tokio task per camera, all in one process, as in the server.
//! `benches/recording_graph.sh` runs it as its `retina` variant beside `rtp` (rtspsrc alone),
//! `own` (the recorder's graph into our writer) and ffmpeg.
//!
//! It keeps none of what the recorder adds around the graph (transport fallback, the camera
//! clock, liveness, the chain): it measures the receive-and-write path only.
//!
//! Usage: retina_graph OUT_DIR URL...

use std::path::PathBuf;

use futures::StreamExt;
use witness::capture::ts_segments::{Frame, Segments};
use witness::capture::ts_writer::Codec;

const SEGMENT_NS: u64 = 2_000_000_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: retina_graph OUT_DIR URL...");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[0]);
    let mut tasks = Vec::new();
    for (i, url) in args[1..].iter().enumerate() {
        let (out, url) = (out.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = record(&out, i, &url).await {
                eprintln!("{url}: {e}");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Receives one camera until it ends, writing its segment files under `out`.
async fn record(out: &std::path::Path, i: usize, url: &str) -> Result<(), String> {
    let url = url::Url::parse(url).map_err(|e| e.to_string())?;
    let mut session =
        retina::client::Session::describe(url, retina::client::SessionOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    // The streams recorded: their index in the session, and their codec in the files.
    let mut codecs: Vec<(usize, Codec)> = Vec::new();
    for (index, s) in session.streams().iter().enumerate() {
        let codec = match (s.media(), s.encoding_name()) {
            ("video", "h264") => Codec::H264,
            ("video", "h265") => Codec::H265,
            ("audio", "mpeg4-generic") => Codec::Aac,
            _ => continue,
        };
        codecs.push((index, codec));
    }
    for (index, _) in &codecs {
        session
            .setup(
                *index,
                retina::client::SetupOptions::default()
                    .transport(retina::client::Transport::Tcp(Default::default()))
                    .frame_format(retina::codec::FrameFormat::SIMPLE),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut session = session
        .play(retina::client::PlayOptions::default())
        .await
        .map_err(|e| e.to_string())?
        .demuxed()
        .map_err(|e| e.to_string())?;
    let mut segments = Segments::new(out, &format!("retina{i}"), SEGMENT_NS);
    segments.expect(codecs.len());
    let streams: Vec<usize> = codecs.iter().map(|_| segments.add_stream()).collect();
    let ns = |t: retina::Timestamp| {
        (t.elapsed().max(0) as u128 * 1_000_000_000 / t.clock_rate().get() as u128) as u64
    };
    while let Some(item) = session.next().await {
        let (at, codec, index, keyframe, duration_ns, data) =
            match item.map_err(|e| e.to_string())? {
                retina::codec::CodecItem::VideoFrame(f) => {
                    let at = ns(f.timestamp());
                    let Some(k) = codecs.iter().position(|(s, _)| *s == f.stream_id()) else {
                        continue;
                    };
                    (
                        at,
                        codecs[k].1,
                        k,
                        f.is_random_access_point(),
                        None,
                        f.into_data(),
                    )
                }
                retina::codec::CodecItem::AudioFrame(f) => {
                    let at = ns(f.timestamp());
                    let Some(k) = codecs.iter().position(|(s, _)| *s == f.stream_id()) else {
                        continue;
                    };
                    let clock = f.timestamp().clock_rate().get() as u64;
                    let duration = f.frame_length().get() as u64 * 1_000_000_000 / clock;
                    (at, codecs[k].1, k, true, Some(duration), f.data().to_vec())
                }
                _ => continue,
            };
        segments
            .frame(Frame {
                stream: streams[index],
                codec,
                pts_ns: at,
                dts_ns: None,
                duration_ns,
                keyframe,
                data: &data,
            })
            .map_err(|f| f.error.to_string())?;
    }
    Ok(())
}
