//! The recording graph with Witness's own MPEG-TS writer in place of `mpegtsmux`: for each RTSP
//! URL, `rtspsrc` (TCP, jitterbuffer as the recorder sets it) → the default template's
//! depayloaders and parsers → one `appsink` per stream → `capture::ts_writer` into one file per
//! source. What `benches/recording_graph.sh` runs as its `own` variant, beside the same graph
//! with one long-lived `mpegtsmux` (`mux`), to measure what the muxer costs.
//!
//! Usage: ts_graph [--seconds N] OUT_DIR URL... (with `--seconds`, it stops after N seconds with
//! an end of stream, so every file ends on a whole packet; without, it runs until killed).

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_app::AppSink;
use witness::capture::ts_writer::{Codec, TsWriter, ticks};

type Writer = Arc<Mutex<Option<TsWriter<std::io::BufWriter<std::fs::File>>>>>;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut seconds = None;
    if args.first().map(String::as_str) == Some("--seconds") && args.len() > 1 {
        seconds = Some(args[1].parse::<u64>().expect("--seconds N"));
        args.drain(..2);
    }
    if args.len() < 2 {
        eprintln!("usage: ts_graph [--seconds N] OUT_DIR URL...");
        std::process::exit(2);
    }
    let writers: Arc<Mutex<Vec<Writer>>> = Arc::default();
    gst::init().expect("GStreamer");
    let out_dir = std::path::PathBuf::from(&args[0]);
    let pipeline = gst::Pipeline::new();
    for (i, url) in args[1..].iter().enumerate() {
        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", url.as_str())
            .property_from_str("protocols", "tcp")
            .property_from_str("buffer-mode", "slave")
            .property("latency", 200u32)
            .build()
            .expect("rtspsrc");
        pipeline.add(&src).unwrap();
        // Both streams of a camera go into one file, as into one segment.
        let file = out_dir.join(format!("own{i}.ts"));
        let writer: Writer = Arc::new(Mutex::new(None));
        writers.lock().unwrap().push(writer.clone());
        let pending: Arc<Mutex<Vec<Codec>>> = Arc::new(Mutex::new(Vec::new()));
        let pipeline_weak = pipeline.downgrade();
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap();
            let s = caps.structure(0).unwrap();
            let (desc, codec, sink_caps) = match s.get::<&str>("encoding-name").unwrap_or("") {
                "H264" => (
                    "rtph264depay ! h264timestamper ! h264parse config-interval=-1",
                    Codec::H264,
                    "video/x-h264,stream-format=byte-stream,alignment=au",
                ),
                "MPEG4-GENERIC" => (
                    "rtpmp4gdepay ! aacparse",
                    Codec::Aac,
                    "audio/mpeg,stream-format=adts",
                ),
                _ => return,
            };
            let bin = gst::parse::bin_from_description(desc, true).unwrap();
            let sink = AppSink::builder()
                .caps(&gst::Caps::from_str(sink_caps).unwrap())
                .sync(false)
                .async_(false)
                .build();
            pipeline
                .add_many([bin.upcast_ref::<gst::Element>(), sink.upcast_ref()])
                .unwrap();
            bin.link(&sink).unwrap();
            bin.sync_state_with_parent().unwrap();
            sink.sync_state_with_parent().unwrap();
            pad.link(&bin.static_pad("sink").unwrap()).unwrap();
            // The file starts once both streams are known (the PMT lists them).
            let index = {
                let mut p = pending.lock().unwrap();
                p.push(codec);
                p.len() - 1
            };
            let (writer, pending, file) = (writer.clone(), pending.clone(), file.clone());
            // Video from its first keyframe, so the file decodes from its start.
            let started = std::sync::atomic::AtomicBool::new(!codec.is_video());
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let Some(buffer) = sample.buffer() else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        let segment = sample
                            .segment()
                            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                        let rt = |t: Option<gst::ClockTime>| {
                            t.and_then(|t| segment.as_ref()?.to_running_time(t))
                                .map(|t| t.nseconds())
                        };
                        let (Some(pts), dts) = (rt(buffer.pts()), rt(buffer.dts())) else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        let mut w = writer.lock().unwrap();
                        if w.is_none() {
                            let codecs = pending.lock().unwrap().clone();
                            if codecs.len() < 2 {
                                return Ok(gst::FlowSuccess::Ok);
                            }
                            let f =
                                std::fs::File::create(&file).map_err(|_| gst::FlowError::Error)?;
                            let out = std::io::BufWriter::with_capacity(256 << 10, f);
                            *w = Some(
                                TsWriter::new(out, &codecs).map_err(|_| gst::FlowError::Error)?,
                            );
                        }
                        if !started.load(std::sync::atomic::Ordering::Relaxed) {
                            // A parser that has not seen the parameter sets yet leaves frames
                            // unflagged: start at a real IDR (as the recorder's clean_stream).
                            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                            let idr = map
                                .windows(4)
                                .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5);
                            if !(key && idr) {
                                return Ok(gst::FlowSuccess::Ok);
                            }
                            started.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                        let pts90 = ticks(pts);
                        w.as_mut()
                            .unwrap()
                            .write_frame(index, pts90, dts.map(ticks).unwrap_or(pts90), key, &map)
                            .map_err(|_| gst::FlowError::Error)?;
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        });
    }
    pipeline.set_state(gst::State::Playing).expect("playing");
    if let Some(s) = seconds {
        let p = pipeline.downgrade();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(s));
            if let Some(p) = p.upgrade() {
                p.send_event(gst::event::Eos::new());
            }
        });
    }
    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                eprintln!("error: {}", e.error());
                let _ = pipeline.set_state(gst::State::Null);
                std::process::exit(1);
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    for w in writers.lock().unwrap().iter() {
        if let Some(w) = w.lock().unwrap().take() {
            use std::io::Write;
            w.into_inner().flush().expect("flush");
        }
    }
}
