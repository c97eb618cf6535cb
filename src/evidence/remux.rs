//! One playable MP4 from consecutive MPEG-TS segments, without transcoding: the stored bytes are
//! fed in order to `tsdemux`, parsed, and muxed as fragmented MP4 that is streamed out as it is
//! produced. Memory stays bounded (the source blocks when the pipeline is full).

use std::sync::mpsc as std_mpsc;

use gst::prelude::*;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::ledger::chain::Entry;
use crate::store::Store;

/// Streams present in the recording, decided from its `media` (`av`, `video`, `audio`).
pub fn launch_for(media: &str) -> Option<&'static str> {
    Some(match media {
        "av" => {
            "appsrc name=src format=bytes block=true max-bytes=8388608 caps=video/mpegts,systemstream=(boolean)true,packetsize=188 ! tsdemux name=d \
             d. ! h264parse ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=10000000000 ! m.video_0 \
             d. ! aacparse ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=10000000000 ! m.audio_0 \
             mp4mux name=m fragment-duration=1000 streamable=true ! appsink name=sink sync=false"
        }
        "video" => {
            "appsrc name=src format=bytes block=true max-bytes=8388608 caps=video/mpegts,systemstream=(boolean)true,packetsize=188 ! tsdemux name=d \
             d. ! h264parse ! queue ! m.video_0 mp4mux name=m fragment-duration=1000 streamable=true ! appsink name=sink sync=false"
        }
        "audio" => {
            "appsrc name=src format=bytes block=true max-bytes=8388608 caps=video/mpegts,systemstream=(boolean)true,packetsize=188 ! tsdemux name=d \
             d. ! aacparse ! queue ! m.audio_0 mp4mux name=m fragment-duration=1000 streamable=true ! appsink name=sink sync=false"
        }
        _ => return None,
    })
}

/// Starts the remux; MP4 bytes arrive on the returned channel, an `Err` item ends it early.
pub fn start(
    media: &str,
    segments: Vec<Entry>,
    store: Store,
) -> Result<mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>, String> {
    let launch = launch_for(media).ok_or_else(|| format!("media {media:?} cannot be remuxed"))?;
    // A command that reads evidence starts GStreamer only when it remuxes (idempotent).
    gst::init().map_err(|e| format!("initialising GStreamer: {e}"))?;
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline.by_name("src").ok_or("no appsrc")?;
    let sink = pipeline.by_name("sink").ok_or("no appsink")?;
    let (tx, rx) = mpsc::channel(8);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let handle = tokio::runtime::Handle::current();

    // Feeder: stored bytes in chain order, each checked against its entry.
    let (fail_tx, fail_rx) = std_mpsc::channel::<String>();
    std::thread::spawn(move || {
        for e in segments {
            let key = object_store::path::Path::from(e.object_key.as_str());
            let data = match handle.block_on(async { store.get(&key).await?.bytes().await }) {
                Ok(d) => d,
                Err(err) => {
                    let _ = fail_tx.send(format!("{}: {err}", e.object_key));
                    break;
                }
            };
            if hex::encode(Sha256::digest(&data)) != e.sha256 {
                let _ = fail_tx.send(format!("{}: does not match its chain entry", e.object_key));
                break;
            }
            let flow = src
                .emit_by_name::<gst::FlowReturn>("push-buffer", &[&gst::Buffer::from_slice(data)]);
            if flow != gst::FlowReturn::Ok {
                break;
            }
        }
        let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    });

    // Drain: MP4 fragments to the channel until end of stream or error.
    std::thread::spawn(move || {
        let bus = pipeline.bus().expect("pipeline bus");
        loop {
            if let Ok(why) = fail_rx.try_recv() {
                let _ = tx.blocking_send(Err(std::io::Error::other(why)));
                break;
            }
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(err) = msg.view()
            {
                let _ = tx.blocking_send(Err(std::io::Error::other(err.error().to_string())));
                break;
            }
            let sample = sink.emit_by_name::<Option<gst::Sample>>(
                "try-pull-sample",
                &[&gst::ClockTime::from_mseconds(200)],
            );
            match sample {
                Some(s) => {
                    let Some(buf) = s.buffer() else { continue };
                    let Ok(map) = buf.map_readable() else {
                        continue;
                    };
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&map)))
                        .is_err()
                    {
                        break; // client went away
                    }
                }
                None => {
                    if sink.property::<bool>("eos") {
                        break;
                    }
                }
            }
        }
        let _ = pipeline.set_state(gst::State::Null);
    });
    Ok(rx)
}
