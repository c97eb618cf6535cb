//! How much media a segment file holds, by its own timestamps: for a file whose muxer never
//! closed it (a crash, or a node frozen or fenced mid-segment), so its sidecar has no duration.
//! The file's times cannot stand in for it: they move whenever the process last touched the
//! file, seconds after the last media when a node was frozen, and a chain entry must never
//! claim more time than its object holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// A file is read as fast as the disk allows; this bounds a file the demuxer chokes on.
const WITHIN: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// The first timestamp seen and the latest end, over every stream, in nanoseconds.
#[derive(Default)]
struct Span {
    first: Option<u64>,
    end: Option<u64>,
}

/// The time from the file's first media timestamp to the end of its last buffer, over all
/// its streams, in microseconds; `None` when no timestamped media could be read from it.
/// A truncated file counts up to its last whole buffer.
pub fn measure(path: &Path) -> Option<i64> {
    gst::init().ok()?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_str()?)
        .build()
        .ok()?;
    let parse = gst::ElementFactory::make("parsebin").build().ok()?;
    pipeline.add_many([&src, &parse]).ok()?;
    src.link(&parse).ok()?;
    let span = Arc::new(Mutex::new(Span::default()));
    let weak = pipeline.downgrade();
    let seen = span.clone();
    parse.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        // Neither clocked nor prerolled: sinks added to a pipeline already playing would
        // otherwise lose its state and leave it paused.
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        let seen = seen.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Some(pts) = buffer.pts()
            {
                let start = pts.nseconds();
                let end = start + buffer.duration().map_or(0, |d| d.nseconds());
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                s.first = Some(s.first.map_or(start, |f| f.min(start)));
                s.end = Some(s.end.map_or(end, |e| e.max(end)));
            }
            gst::PadProbeReturn::Ok
        });
        if let Some(sinkpad) = sink.static_pad("sink") {
            let _ = pad.link(&sinkpad);
        }
    });
    let ran = pipeline.set_state(gst::State::Playing).is_ok();
    if ran && let Some(bus) = pipeline.bus() {
        // End of stream or an error (a truncated last packet): what was read counts either way.
        let _ = bus.timed_pop_filtered(WITHIN, &[gst::MessageType::Eos, gst::MessageType::Error]);
    }
    let _ = pipeline.set_state(gst::State::Null);
    let s = span.lock().unwrap_or_else(|p| p.into_inner());
    match (s.first, s.end) {
        (Some(first), Some(end)) if end > first => Some(((end - first) / 1000) as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real segment file of `seconds` of AAC audio and H.264 video, as the recorder writes
    /// with either profile's muxer.
    fn segment_file(dir: &Path, seconds: u32, muxer: &str, extension: &str) -> std::path::PathBuf {
        gst::init().unwrap();
        let path = dir.join(format!("segment.{extension}"));
        let launch = format!(
            "videotestsrc num-buffers={v} ! video/x-raw,framerate=25/1,width=160,height=120 ! x264enc tune=zerolatency key-int-max=25 ! h264parse ! {muxer} name=m ! filesink location={p} \
             audiotestsrc num-buffers={a} samplesperbuffer=1024 ! audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! m.",
            v = seconds * 25,
            a = seconds * 48000 / 1024,
            p = path.display()
        );
        let pipeline = gst::parse::launch(&launch).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("the test file was written");
        assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
        pipeline.set_state(gst::State::Null).unwrap();
        path
    }

    #[test]
    fn a_whole_file_and_a_truncated_one_are_measured_by_their_media() {
        for (muxer, extension) in [("mpegtsmux", "ts"), ("matroskamux", "mkv")] {
            let dir = tempfile::tempdir().unwrap();
            let path = segment_file(dir.path(), 4, muxer, extension);
            let whole = measure(&path).expect("measured") as f64 / 1e6;
            assert!(
                (whole - 4.0).abs() < 0.2,
                "{muxer}: whole file: {whole:.3} s"
            );

            // Cut mid-packet at a third of its bytes, as a muxer that never closed it leaves it.
            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join(format!("cut.{extension}"));
            std::fs::write(&cut, &bytes[..bytes.len() / 3 + 77]).unwrap();
            let part_us = measure(&cut).expect("measured");
            let part = part_us as f64 / 1e6;
            assert!(
                part > 0.5 && part < 2.5,
                "{muxer}: a third of the file: {part:.3} s"
            );

            // Whatever the file's times say.
            let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(&cut)
                .unwrap()
                .set_modified(later)
                .unwrap();
            assert_eq!(measure(&cut), Some(part_us), "{muxer}");
        }

        let dir = tempfile::tempdir().unwrap();
        // Not media at all: nothing to claim.
        let junk = dir.path().join("junk.ts");
        std::fs::write(&junk, b"not a transport stream").unwrap();
        assert_eq!(measure(&junk), None);
    }
}
