//! MPEG-TS segment files cut by Witness itself, for templates whose muxer is [`MUXER`]: each
//! stream's branch ends in an `appsink`, and its parsed access units are written with
//! [`crate::capture::ts_writer`] into one file per segment. A file is cut at the first picture
//! keyframe at least [`CUT_AFTER`] of a segment past its start (sound alone: at the first frame a
//! whole segment past it), so every file starts where a decoder can, and one file's end is the
//! next one's start.
//!
//! Why not `splitmuxsink` + `mpegtsmux`: the muxer is an aggregator with a thread and a queue per
//! input that cost about a third of a recorded stream's CPU (docs/performance.md). Here the
//! streams' own threads write under one lock.
//!
//! The graph's bus sees the same element messages as from `splitmuxsink` (`location`,
//! `running-time`): [`OPENED`] when a file starts, [`CLOSED`] once it is all written out, with
//! whether it holds any picture (`video`) and any sound (`audio`), and (`silences`) the
//! stretches inside it that a stream it holds left without frames.
//!
//! [`Segments`] is the cutting itself, without GStreamer; [`add_input`] feeds it from a branch.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use crate::capture::ts_writer::{Codec, TsWriter, ticks};

/// The template `muxer` value that selects this writer.
pub const MUXER: &str = "witness-ts";
pub const OPENED: &str = "witness-segment-opened";
pub const CLOSED: &str = "witness-segment-closed";
/// A picture keyframe this far into a segment (in twentieths) cuts it: keyframes stamped a
/// hair early by jitter still cut on time instead of a whole GOP later.
pub const CUT_AFTER: (u64, u64) = (19, 20);
/// Frames are held until every expected stream has sent one (the file's table lists them all),
/// but no longer than this span of media.
const WAIT_FOR_STREAMS_NS: u64 = 3_000_000_000;
/// A stream without a frame for longer than this inside a file is named in the file's entry
/// (a picture: some cameras send one frame a second in a still scene; sound frames never
/// pause).
const VIDEO_SILENCE_NS: u64 = 1_000_000_000;
const AUDIO_SILENCE_NS: u64 = 500_000_000;
/// Writes reach the disk at most this many bytes at a time (docs/performance.md: larger writes
/// were slower on this kernel).
const WRITE_BUFFER: usize = 256 << 10;

/// One access unit, as a branch's appsink hands it on.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub stream: usize,
    pub codec: Codec,
    /// Running times (ns).
    pub pts_ns: u64,
    pub dts_ns: Option<u64>,
    pub duration_ns: Option<u64>,
    /// A decoder can start here (picture keyframes; every sound frame).
    pub keyframe: bool,
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// The running time the frame counts at (decoding time first, as the graph's watch).
    fn at(&self) -> u64 {
        self.dts_ns.unwrap_or(self.pts_ns)
    }
}

/// A write that failed, and what had happened to the files before it (a file opened or closed
/// must still be told, or the recorder would never look at it again).
#[derive(Debug)]
pub struct Failed {
    pub error: io::Error,
    pub events: Vec<Event>,
}

/// What happened to the files, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        path: PathBuf,
        running_ns: u64,
    },
    /// `video` and `audio`: whether the file holds any frame of each; `silences`: where a
    /// stream it holds had no frame for longer than its silence bound.
    Closed {
        path: PathBuf,
        running_ns: u64,
        video: bool,
        audio: bool,
        silences: Vec<Silence>,
    },
}

/// A stretch of a file without frames of one stream that the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub video: bool,
    /// From the file's start.
    pub from_ns: u64,
    pub len_ns: u64,
}

/// The entry's words for a file's silences: "no video for 1.6 s from 0.4 s into this segment".
pub fn silence_note(silences: &[Silence]) -> Option<String> {
    let parts: Vec<String> = silences
        .iter()
        .map(|s| {
            format!(
                "no {} for {:.1} s from {:.1} s into this segment",
                if s.video { "video" } else { "audio" },
                s.len_ns as f64 / 1e9,
                s.from_ns as f64 / 1e9
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A frame held (its bytes copied) while the first file waits for every stream.
struct Queued {
    stream: usize,
    codec: Codec,
    pts_ns: u64,
    dts_ns: Option<u64>,
    duration_ns: Option<u64>,
    keyframe: bool,
    data: Vec<u8>,
}

impl Queued {
    fn of(f: &Frame<'_>) -> Queued {
        Queued {
            stream: f.stream,
            codec: f.codec,
            pts_ns: f.pts_ns,
            dts_ns: f.dts_ns,
            duration_ns: f.duration_ns,
            keyframe: f.keyframe,
            data: f.data.to_vec(),
        }
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            stream: self.stream,
            codec: self.codec,
            pts_ns: self.pts_ns,
            dts_ns: self.dts_ns,
            duration_ns: self.duration_ns,
            keyframe: self.keyframe,
            data: &self.data,
        }
    }
}

struct OpenFile {
    path: PathBuf,
    writer: TsWriter<BufWriter<File>>,
    start_ns: u64,
    /// The furthest any frame in it reaches.
    end_ns: u64,
    /// Per input stream, its place in this file's table (a stream that came too late for the
    /// table waits for the next file).
    index_of: Vec<Option<usize>>,
    codecs: Vec<Option<Codec>>,
    /// Whether a frame of picture, of sound, was written.
    video: bool,
    audio: bool,
    /// Per input stream, how far its frames written so far reach.
    reached: Vec<Option<u64>>,
    silences: Vec<Silence>,
}

impl OpenFile {
    /// Notes the time from `from_ns` to `to_ns` without frames of a stream, when longer than
    /// its bound.
    fn without_frames(&mut self, video: bool, from_ns: u64, to_ns: u64) {
        let bound = if video {
            VIDEO_SILENCE_NS
        } else {
            AUDIO_SILENCE_NS
        };
        if to_ns > from_ns + bound {
            self.silences.push(Silence {
                video,
                from_ns: from_ns.saturating_sub(self.start_ns),
                len_ns: to_ns - from_ns,
            });
        }
    }
}

/// The segment files of one graph.
pub struct Segments {
    dir: PathBuf,
    prefix: String,
    segment_ns: u64,
    /// Streams the camera was asked for: the first file waits for each of them.
    expected: usize,
    /// Per input stream: its codec once known, and whether it ended.
    codecs: Vec<Option<Codec>>,
    ended: Vec<bool>,
    queue: Vec<Queued>,
    file: Option<OpenFile>,
    next_number: u32,
    /// Torn down, or a write failed: nothing more is written (a graph whose disk refused a
    /// write is ending; a new file now would be one the recorder never hears of).
    abandoned: bool,
}

impl Segments {
    /// Files `{dir}/{prefix}-00000000.ts`, … of about `segment_ns` each.
    pub fn new(dir: &Path, prefix: &str, segment_ns: u64) -> Segments {
        Segments {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            segment_ns: segment_ns.max(1),
            expected: 1,
            codecs: Vec::new(),
            ended: Vec::new(),
            queue: Vec::new(),
            file: None,
            next_number: 0,
            abandoned: false,
        }
    }

    /// How many streams the camera was asked for: the first file waits for each of them.
    pub fn expect(&mut self, streams: usize) {
        self.expected = streams.max(1);
    }

    /// A new input stream; returns its number for [`Segments::frame`] and [`Segments::end`].
    pub fn add_stream(&mut self) -> usize {
        self.codecs.push(None);
        self.ended.push(false);
        self.codecs.len() - 1
    }

    fn has_video(&self) -> bool {
        self.codecs.iter().flatten().any(|c| c.is_video())
    }

    /// Writes one frame, cutting a new file first when it is time.
    pub fn frame(&mut self, f: Frame<'_>) -> Result<Vec<Event>, Failed> {
        let mut events = Vec::new();
        match self.frame_into(f, &mut events) {
            Ok(()) => Ok(events),
            Err(error) => Err(self.failed(error, events)),
        }
    }

    /// After a failed write nothing more is written; the open file stays as it is on disk.
    fn failed(&mut self, error: io::Error, events: Vec<Event>) -> Failed {
        self.abandoned = true;
        self.queue.clear();
        Failed { error, events }
    }

    fn frame_into(&mut self, f: Frame<'_>, events: &mut Vec<Event>) -> io::Result<()> {
        if self.abandoned || f.stream >= self.codecs.len() {
            return Ok(());
        }
        let changed = self.codecs[f.stream].is_some_and(|c| c != f.codec);
        self.codecs[f.stream] = Some(f.codec);
        if self.file.is_none() {
            self.queue.push(Queued::of(&f));
            let known = self.codecs.iter().flatten().count();
            let times = self.queue.iter().map(|q| q.frame().at());
            let span = times.clone().max().unwrap_or(0) - times.min().unwrap_or(0);
            if known >= self.expected || span >= WAIT_FOR_STREAMS_NS {
                self.flush_queue(events)?;
            }
            return Ok(());
        }
        let at = f.at();
        let open = self.file.as_ref().expect("open file");
        let (cut_point, cut_after) = if self.has_video() {
            (
                f.codec.is_video() && f.keyframe,
                self.segment_ns / CUT_AFTER.1 * CUT_AFTER.0,
            )
        } else {
            (true, self.segment_ns)
        };
        // A stream that came too late for this file's table joins at the next cut point.
        let missing = self
            .codecs
            .iter()
            .enumerate()
            .any(|(i, c)| c.is_some() && open.index_of.get(i).copied().flatten().is_none());
        if changed || (cut_point && (at >= open.start_ns + cut_after || missing)) {
            self.close(at, events)?;
            self.open(at, events)?;
        }
        self.write(f)
    }

    /// Writes the frames held while waiting for the streams, into the first file.
    fn flush_queue(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        let queue = std::mem::take(&mut self.queue);
        let has_video = self.has_video();
        // The file starts at its first cut point: the picture's first keyframe (the graph lets
        // no picture through before one), else the first frame.
        let start = queue
            .iter()
            .filter(|q| !has_video || (q.codec.is_video() && q.keyframe))
            .map(|q| q.frame().at())
            .next()
            .or_else(|| queue.iter().map(|q| q.frame().at()).min())
            .unwrap_or(0);
        self.open(start, events)?;
        for q in &queue {
            self.write(q.frame())?;
        }
        Ok(())
    }

    fn open(&mut self, start_ns: u64, events: &mut Vec<Event>) -> io::Result<()> {
        let path = self
            .dir
            .join(format!("{}-{:08}.ts", self.prefix, self.next_number));
        self.next_number += 1;
        let codecs: Vec<Codec> = self.codecs.iter().flatten().copied().collect();
        let mut at = 0;
        let index_of = self
            .codecs
            .iter()
            .map(|c| {
                c.map(|_| {
                    at += 1;
                    at - 1
                })
            })
            .collect();
        let file = File::create(&path).map_err(|e| in_file(&path, e))?;
        let writer =
            TsWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), &codecs).map_err(|e| {
                // Not yet told to anyone: leave no file behind.
                let _ = std::fs::remove_file(&path);
                in_file(&path, e)
            })?;
        events.push(Event::Opened {
            path: path.clone(),
            running_ns: start_ns,
        });
        self.file = Some(OpenFile {
            path,
            writer,
            start_ns,
            end_ns: start_ns,
            index_of,
            codecs: self.codecs.clone(),
            video: false,
            audio: false,
            reached: vec![None; self.codecs.len()],
            silences: Vec::new(),
        });
        Ok(())
    }

    fn write(&mut self, f: Frame<'_>) -> io::Result<()> {
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        let Some(index) = open.index_of.get(f.stream).copied().flatten() else {
            // Not in this file's table (it came too late): it joins at the next cut.
            return Ok(());
        };
        if open.codecs[f.stream] != Some(f.codec) {
            return Ok(());
        }
        let pts = ticks(f.pts_ns);
        let dts = f.dts_ns.map(ticks).unwrap_or(pts);
        open.writer
            .write_frame(index, pts, dts, f.keyframe && f.codec.is_video(), f.data)
            .map_err(|e| in_file(&open.path, e))?;
        if f.codec.is_video() {
            open.video = true;
        } else {
            open.audio = true;
        }
        let at = f.at();
        let reached = open.reached[f.stream].unwrap_or(open.start_ns);
        open.without_frames(f.codec.is_video(), reached, at);
        open.reached[f.stream] = Some(reached.max(at + f.duration_ns.unwrap_or(0)));
        open.end_ns = open
            .end_ns
            .max(f.pts_ns.max(f.at()) + f.duration_ns.unwrap_or(0));
        Ok(())
    }

    /// Completes the open file on disk, ending at `end_ns`.
    fn close(&mut self, end_ns: u64, events: &mut Vec<Event>) -> io::Result<()> {
        let Some(mut open) = self.file.take() else {
            return Ok(());
        };
        let end = end_ns.max(open.start_ns);
        for (stream, reached) in open.reached.clone().into_iter().enumerate() {
            if let (Some(reached), Some(codec)) = (reached, open.codecs[stream]) {
                open.without_frames(codec.is_video(), reached, end);
            }
        }
        let mut out = open.writer.into_inner();
        out.flush().map_err(|e| in_file(&open.path, e))?;
        // Closed means written out; the ledger's seal makes it durable (fsync) before hashing,
        // off this stream's thread.
        drop(out);
        events.push(Event::Closed {
            path: open.path,
            running_ns: end,
            video: open.video,
            audio: open.audio,
            silences: open.silences,
        });
        Ok(())
    }

    /// Stream `stream` reached its end; once every stream has, the last file is closed.
    pub fn end(&mut self, stream: usize) -> Result<Vec<Event>, Failed> {
        let mut events = Vec::new();
        match self.end_into(stream, &mut events) {
            Ok(()) => Ok(events),
            Err(error) => Err(self.failed(error, events)),
        }
    }

    fn end_into(&mut self, stream: usize, events: &mut Vec<Event>) -> io::Result<()> {
        if let Some(e) = self.ended.get_mut(stream) {
            *e = true;
        }
        if self.abandoned || !self.ended.iter().all(|e| *e) {
            return Ok(());
        }
        if self.file.is_none() && !self.queue.is_empty() {
            self.flush_queue(events)?;
        }
        let end = self.file.as_ref().map_or(0, |f| f.end_ns);
        self.close(end, events)
    }

    /// The graph is torn down without an end of stream: what is written stays on disk (the
    /// recorder measures it), and nothing more is written.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.queue.clear();
        if let Some(open) = self.file.take() {
            let mut out = open.writer.into_inner();
            if let Err(e) = out.flush() {
                tracing::error!(file = %open.path.display(), error = %e, "cannot flush an abandoned segment");
            }
        }
    }
}

fn in_file(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("segment file {}: {e}", path.display()))
}

/// Caps a branch must hand on: the codecs [`crate::capture::ts_writer`] carries, parsed into
/// access units.
pub(crate) const INPUT_CAPS: &str = "video/x-h264,stream-format=byte-stream,alignment=au; \
     video/x-h265,stream-format=byte-stream,alignment=au; \
     audio/mpeg,mpegversion=4,stream-format=adts; audio/x-opus";

/// The writer's codec for negotiated caps, if it carries them.
pub(crate) fn codec_of(caps: &gst::CapsRef) -> Option<Codec> {
    let s = caps.structure(0)?;
    Some(match s.name().as_str() {
        "video/x-h264" => Codec::H264,
        "video/x-h265" => Codec::H265,
        "audio/mpeg" => Codec::Aac,
        "audio/x-opus" => Codec::Opus {
            channels: s.get::<i32>("channels").unwrap_or(2).clamp(1, 255) as u8,
        },
        _ => return None,
    })
}

/// Sets `sink` to take what [`INPUT_CAPS`] allows and to hand samples on as media arrives: no
/// clock, no preroll, no sample kept.
pub(crate) fn input_sink(sink: &gst_app::AppSink) -> Result<(), String> {
    let caps: gst::Caps = INPUT_CAPS.parse().map_err(|e| format!("{e}"))?;
    sink.set_caps(Some(&caps));
    sink.set_sync(false);
    sink.set_async(false);
    sink.set_property("enable-last-sample", false);
    Ok(())
}

/// Why an appsink's sample cannot become a [`Frame`].
#[derive(Debug)]
pub(crate) enum NoFrame {
    /// Caps the writer does not carry (these).
    Codec(String),
    /// The buffer could not be mapped.
    Unreadable,
}

/// Hands `write` the frame `sample` holds, as input `stream`: its times in running time (by the
/// sample's segment, as a graph's clock sees them), its duration and its keyframe flag.
/// `Ok(None)`: nothing to write (no buffer, or no time on it).
pub(crate) fn with_frame<R>(
    sample: &gst::Sample,
    stream: usize,
    write: impl FnOnce(Frame<'_>) -> R,
) -> Result<Option<R>, NoFrame> {
    let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
        return Ok(None);
    };
    let codec = codec_of(caps).ok_or_else(|| NoFrame::Codec(caps.to_string()))?;
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
    let running = |t: Option<gst::ClockTime>| {
        t.and_then(|t| segment.as_ref()?.to_running_time(t))
            .map(|t| t.nseconds())
    };
    let Some(pts_ns) = running(buffer.pts()).or(running(buffer.dts())) else {
        return Ok(None);
    };
    let map = buffer.map_readable().map_err(|_| NoFrame::Unreadable)?;
    Ok(Some(write(Frame {
        stream,
        codec,
        pts_ns,
        dts_ns: running(buffer.dts()),
        duration_ns: buffer.duration().map(|d| d.nseconds()),
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        data: &map,
    })))
}

/// Ends `from` (a branch's src pad) in an appsink of `pipeline` that writes into `segments`.
/// Returns the appsink's sink pad, where the graph watches what reaches the files.
pub fn add_input(
    segments: &Arc<Mutex<Segments>>,
    pipeline: &gst::Pipeline,
    from: &gst::Pad,
) -> Result<gst::Pad, String> {
    let sink = gst_app::AppSink::builder().build();
    input_sink(&sink)?;
    let stream = segments.lock().expect("segments lock").add_stream();
    let on_sample = segments.clone();
    let on_eos = segments.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let written = with_frame(&sample, stream, |frame| {
                    on_sample.lock().expect("segments lock").frame(frame)
                });
                match written {
                    Ok(None) => Ok(gst::FlowSuccess::Ok),
                    Ok(Some(Ok(events))) => {
                        post_events(sink, events);
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Ok(Some(Err(Failed { error, events }))) => {
                        post_events(sink, events);
                        Err(post_error(sink, &error.to_string()))
                    }
                    Err(NoFrame::Codec(caps)) => {
                        Err(post_error(sink, &format!("cannot write {caps} to MPEG-TS")))
                    }
                    Err(NoFrame::Unreadable) => Err(post_error(sink, "cannot read a buffer")),
                }
            })
            .eos(move |sink| {
                let ended = on_eos.lock().expect("segments lock").end(stream);
                match ended {
                    Ok(events) => post_events(sink, events),
                    Err(Failed { error, events }) => {
                        post_events(sink, events);
                        let _ = post_error(sink, &error.to_string());
                    }
                }
            })
            .build(),
    );
    pipeline.add(&sink).map_err(|e| e.to_string())?;
    sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    let pad = sink.static_pad("sink").ok_or("appsink has no sink pad")?;
    from.link(&pad).map_err(|e| format!("{e:?}"))?;
    Ok(pad)
}

fn post_events(sink: &gst_app::AppSink, events: Vec<Event>) {
    for event in events {
        let s = match event {
            Event::Opened { path, running_ns } => gst::Structure::builder(OPENED)
                .field("location", path.to_string_lossy().as_ref())
                .field("running-time", running_ns)
                .build(),
            Event::Closed {
                path,
                running_ns,
                video,
                audio,
                silences,
            } => gst::Structure::builder(CLOSED)
                .field("location", path.to_string_lossy().as_ref())
                .field("running-time", running_ns)
                .field("video", video)
                .field("audio", audio)
                .field_if_some("silences", silence_note(&silences))
                .build(),
        };
        let _ = sink.post_message(gst::message::Element::builder(s).src(sink).build());
    }
}

fn post_error(sink: &gst_app::AppSink, message: &str) -> gst::FlowError {
    let _ = sink.post_message(
        gst::message::Error::builder(gst::ResourceError::Write, message)
            .src(sink)
            .build(),
    );
    gst::FlowError::Error
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn video(at: u64, keyframe: bool) -> Frame<'static> {
        Frame {
            stream: 0,
            codec: Codec::H264,
            pts_ns: at,
            dts_ns: Some(at),
            duration_ns: Some(S / 25),
            keyframe,
            data: &[0, 0, 0, 1, 0x65, 0x88],
        }
    }

    fn audio(stream: usize, at: u64) -> Frame<'static> {
        Frame {
            stream,
            codec: Codec::Aac,
            pts_ns: at,
            dts_ns: None,
            duration_ns: Some(S / 50),
            keyframe: true,
            data: &[0xff, 0xf1, 0x50, 0x80, 0x01, 0x7f, 0xfc, 0x21],
        }
    }

    fn opened(e: &[Event]) -> Vec<u64> {
        e.iter()
            .filter_map(|e| match e {
                Event::Opened { running_ns, .. } => Some(*running_ns),
                _ => None,
            })
            .collect()
    }

    fn closed(e: &[Event]) -> Vec<u64> {
        e.iter()
            .filter_map(|e| match e {
                Event::Closed { running_ns, .. } => Some(*running_ns),
                _ => None,
            })
            .collect()
    }

    /// Feeds 25 fps video with a keyframe every second and 50 fps sound, from `from` to `to`.
    fn feed(s: &mut Segments, from: u64, to: u64, events: &mut Vec<Event>) {
        let mut t = from;
        while t < to {
            events.extend(s.frame(video(t, t.is_multiple_of(S))).unwrap());
            events.extend(s.frame(audio(1, t)).unwrap());
            events.extend(s.frame(audio(1, t + S / 50)).unwrap());
            t += S / 25;
        }
    }

    #[test]
    fn files_are_cut_at_keyframes_and_tile() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(2);
        assert_eq!((s.add_stream(), s.add_stream()), (0, 1));
        let mut events = Vec::new();
        feed(&mut s, 10 * S, 16 * S + S / 2, &mut events);
        assert!(s.end(0).unwrap().is_empty(), "one stream still going");
        events.extend(s.end(1).unwrap());
        assert_eq!(opened(&events), [10 * S, 12 * S, 14 * S, 16 * S]);
        // Each file ends where the next starts; the last where its media ends.
        assert_eq!(
            closed(&events),
            [12 * S, 14 * S, 16 * S, 16 * S + S * 52 / 100]
        );
        // Closed before the next one opens, as splitmuxsink posts them.
        let order: Vec<bool> = events
            .iter()
            .map(|e| matches!(e, Event::Opened { .. }))
            .collect();
        assert_eq!(order, [true, false, true, false, true, false, true, false]);
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 4);
        assert!(files[0].ends_with("r-00000000.ts"), "{files:?}");
        for f in files {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len > 0 && len % 188 == 0, "{f:?}: {len}");
        }
    }

    #[test]
    fn a_keyframe_a_hair_early_still_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(1);
        s.add_stream();
        let mut events = s.frame(video(0, true)).unwrap();
        events.extend(s.frame(video(S * 199 / 100, true)).unwrap());
        events.extend(s.frame(video(3 * S, true)).unwrap());
        assert_eq!(opened(&events), [0, S * 199 / 100]);
    }

    #[test]
    fn the_first_file_waits_for_every_stream_and_starts_at_the_keyframe() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(2);
        s.add_stream();
        s.add_stream();
        let mut events = s.frame(video(5 * S, true)).unwrap();
        events.extend(s.frame(video(5 * S + S / 25, false)).unwrap());
        assert!(events.is_empty(), "sound not seen yet");
        events.extend(s.frame(audio(1, 5 * S - S / 100)).unwrap());
        assert_eq!(opened(&events), [5 * S]);
        // The table lists both, so both streams are in the file: PAT, PMT and three PES.
        events.extend(s.end(0).unwrap());
        events.extend(s.end(1).unwrap());
        let Event::Closed { path, .. } = events.last().unwrap() else {
            panic!("{events:?}")
        };
        let bytes = std::fs::read(path).unwrap();
        let pids: std::collections::BTreeSet<u16> = bytes
            .chunks(188)
            .map(|p| u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]))
            .collect();
        assert_eq!(pids, [0, 0x100, 0x101, 0x1000].into());
    }

    #[test]
    fn a_missing_stream_is_not_waited_for_forever() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 10 * S);
        s.expect(2);
        s.add_stream();
        let mut events = Vec::new();
        for i in 0..=75 {
            events.extend(s.frame(video(i * S / 25, i.is_multiple_of(25))).unwrap());
        }
        assert_eq!(opened(&events), [0], "3 s without sound");
        // Sound that comes later joins at the next keyframe, in a file whose table has it.
        s.add_stream();
        events.extend(s.frame(audio(1, 3 * S + S / 10)).unwrap());
        events.extend(s.frame(video(3 * S + S / 2, false)).unwrap());
        assert_eq!(opened(&events), [0]);
        events.extend(s.frame(video(4 * S, true)).unwrap());
        assert_eq!(opened(&events), [0, 4 * S]);
    }

    #[test]
    fn a_closed_file_says_which_kinds_of_media_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(2);
        s.add_stream();
        s.add_stream();
        let mut events = Vec::new();
        // Sound stops after the first second; the second file has picture only.
        for i in 0..100u64 {
            let t = i * S / 25;
            events.extend(s.frame(video(t, i.is_multiple_of(25))).unwrap());
            if t < S {
                events.extend(s.frame(audio(1, t)).unwrap());
            }
        }
        events.extend(s.end(0).unwrap());
        events.extend(s.end(1).unwrap());
        let kinds: Vec<(bool, bool)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Closed { video, audio, .. } => Some((*video, *audio)),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [(true, true), (true, false)]);
    }

    #[test]
    fn a_failure_at_a_cut_reports_the_file_closed_before_it_and_makes_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let mut s = Segments::new(&spool, "r", 2 * S);
        s.expect(1);
        s.add_stream();
        assert_eq!(opened(&s.frame(video(0, true)).unwrap()), [0]);
        // The spool folder goes away: the next file cannot be made.
        std::fs::remove_file(spool.join("r-00000000.ts")).unwrap();
        std::fs::remove_dir(&spool).unwrap();
        let failed = s.frame(video(2 * S, true)).unwrap_err();
        assert!(
            failed.error.to_string().contains("r-00000001.ts"),
            "{failed:?}"
        );
        assert_eq!(closed(&failed.events), [2 * S], "{failed:?}");
        // Space comes back, but this graph is ending: it makes no file nobody will hear of.
        std::fs::create_dir(&spool).unwrap();
        assert!(s.frame(video(4 * S, true)).unwrap().is_empty());
        assert!(s.end(0).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    }

    #[test]
    fn a_stream_that_pauses_inside_a_file_is_named_with_where_and_how_long() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 4 * S);
        s.expect(2);
        s.add_stream();
        s.add_stream();
        let mut events = Vec::new();
        // Picture every 40 ms with a keyframe each second, except from 1.0 s to 2.6 s; sound
        // every 20 ms throughout.
        for i in 0..250u64 {
            let at = i * S / 50;
            events.extend(s.frame(audio(1, at)).unwrap());
            if i.is_multiple_of(2) && !(S..S * 26 / 10).contains(&at) {
                events.extend(s.frame(video(at, at.is_multiple_of(S))).unwrap());
            }
        }
        events.extend(s.end(0).unwrap());
        events.extend(s.end(1).unwrap());
        let silences: Vec<&Vec<Silence>> = events
            .iter()
            .filter_map(|e| match e {
                Event::Closed { silences, .. } => Some(silences),
                _ => None,
            })
            .collect();
        assert_eq!(silences.len(), 2, "{events:?}");
        assert_eq!(silences[0].len(), 1, "{silences:?}");
        let gap = &silences[0][0];
        assert!(gap.video, "{gap:?}");
        // From the last picture before it (0.96 s, lasting 40 ms) to the next (2.6 s).
        assert_eq!((gap.from_ns, gap.len_ns), (S, S * 16 / 10), "{gap:?}");
        assert_eq!(
            silence_note(silences[0]).unwrap(),
            "no video for 1.6 s from 1.0 s into this segment"
        );
        assert!(silences[1].is_empty(), "{silences:?}");
    }

    #[test]
    fn sound_alone_is_cut_every_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(1);
        s.add_stream();
        let mut events = Vec::new();
        for i in 0..250 {
            events.extend(s.frame(audio(0, i * S / 50)).unwrap());
        }
        assert_eq!(opened(&events), [0, 2 * S, 4 * S]);
    }

    #[test]
    fn an_abandoned_graph_leaves_its_file_written_and_writes_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::new(dir.path(), "r", 2 * S);
        s.expect(1);
        s.add_stream();
        let events = s.frame(video(0, true)).unwrap();
        let Event::Opened { path, .. } = &events[0] else {
            panic!()
        };
        assert_eq!(std::fs::metadata(path).unwrap().len(), 0, "still buffered");
        s.abandon();
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len > 0 && len % 188 == 0, "{len}");
        assert!(s.frame(video(S / 25, false)).unwrap().is_empty());
        assert!(s.end(0).unwrap().is_empty());
        assert_eq!(std::fs::metadata(path).unwrap().len(), len);
    }

    #[test]
    fn a_file_that_cannot_be_made_is_an_error_naming_it() {
        let mut s = Segments::new(Path::new("/nonexistent/spool"), "r", 2 * S);
        s.expect(1);
        s.add_stream();
        let e = s.frame(video(0, true)).unwrap_err().error;
        assert!(
            e.to_string()
                .contains("segment file /nonexistent/spool/r-00000000.ts"),
            "{e}"
        );
    }
}
