//! Checks a room before a session: connects to every source as a recording would (the same
//! transport order, the same template branches, ending in a fakesink instead of the segment
//! muxer), listens for a few seconds and says, per source, what the camera sends and whether it
//! can be recorded, with each problem as a plain sentence. Knows nothing of HTTP.
//!
//! GStreamer runs on blocking threads, one per source, all sources at once; every wait is
//! bounded, so a probe answers within [`OVERALL`] (plus teardown) whatever the cameras do.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde::Serialize;

use crate::capture::camera_clock::CameraClock;
use crate::capture::credentials::CredentialKey;
use crate::capture::rooms::{self, Source};
use crate::capture::template::{Template, Templates};
use crate::capture::transport::Transport;
use crate::db::Pool;
use crate::error::CoreError;

/// The listening window of one transport attempt when the caller names none.
pub const DEFAULT_LISTEN_SECONDS: u64 = 4;
/// The longest listening window a caller may ask for.
pub const MAX_LISTEN_SECONDS: u64 = 15;
/// Every source's probe ends within this, whatever the window and the number of attempts.
pub const OVERALL: Duration = Duration::from_secs(15);
/// Cameras send an RTCP sender report about every 5 s (randomised): after the first media,
/// wait this long for one before saying there is none.
const SENDER_REPORT_WAIT: Duration = Duration::from_secs(7);
/// A camera clock further off than this is worth a sentence.
const CLOCK_TOLERANCE_S: f64 = 1.0;
/// Streams checked per source; an SDP that lists more is hostile or broken.
const MAX_STREAMS: usize = 8;
/// Longest piece of camera-supplied text (encoding names, error texts) echoed in a report.
const MAX_ECHO: usize = 80;

/// The listening window for `?seconds=`: default 4 s, clamped to 1–15 s.
pub fn listen_window(seconds: Option<u64>) -> Duration {
    Duration::from_secs(
        seconds
            .unwrap_or(DEFAULT_LISTEN_SECONDS)
            .clamp(1, MAX_LISTEN_SECONDS),
    )
}

/// The probe of a room.
#[derive(Debug, Clone, Serialize)]
pub struct RoomProbe {
    pub room_id: String,
    pub room_name: String,
    pub probed_at: String,
    /// The listening window of each transport attempt.
    pub listen_seconds: f64,
    /// Every source can be recorded.
    pub recordable: bool,
    pub sources: Vec<SourceProbe>,
}

/// The probe of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceProbe {
    pub name: String,
    /// `av`, `video` or `audio`: which of the camera's streams a recording keeps.
    pub media: String,
    pub template: String,
    /// The source's transport setting (`auto` tries TCP, then UDP).
    pub transport_setting: Transport,
    /// The camera answered RTSP (with a stream description or an error status).
    pub reachable: bool,
    /// The transport media arrived over; `null` when none delivered any.
    pub transport: Option<Transport>,
    /// A recording of this source would keep media: every stream it would record delivered
    /// some within the window.
    pub recordable: bool,
    /// Every stream of the camera's SDP (at most 8).
    pub codecs: Vec<StreamProbe>,
    /// Of the first video stream.
    pub resolution: Option<Resolution>,
    /// Frames per second of the first video stream (from its caps, else measured).
    pub frame_rate: Option<f64>,
    /// All recorded streams together, as they would reach the segment muxer, measured from the
    /// first buffer to the end of the window.
    pub bitrate_bps: Option<u64>,
    /// The camera's wall clock (RTCP sender reports) minus this server's, in seconds.
    pub clock_offset_seconds: Option<f64>,
    /// Why `clock_offset_seconds` is `null`.
    pub clock_note: Option<String>,
    /// Each transport tried, in order.
    pub attempts: Vec<AttemptReport>,
    /// Plain-language sentences; empty when all is well.
    pub problems: Vec<String>,
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// One stream of the camera's SDP.
#[derive(Debug, Clone, Serialize)]
pub struct StreamProbe {
    /// `video`, `audio` (or what the SDP says, e.g. `application`).
    pub media: String,
    /// RTP encoding name from the SDP, e.g. `H264`, `MPEG4-GENERIC`, `PCMA`.
    pub encoding: String,
    pub payload: Option<i32>,
    pub clock_rate: Option<i32>,
    /// The camera's codec: `h264`, `h265`, `aac`, `pcma` …
    pub codec: String,
    /// A recording would keep this stream (the source's `media` wants it and the template has
    /// a branch for it).
    pub recorded: bool,
    /// The codec the recording would hold (G.711 becomes `aac` in the default template).
    pub recorded_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub bitrate_bps: Option<u64>,
    /// Buffers that came out of the template branch.
    pub buffers: u64,
    /// Video only: whether a keyframe arrived (a segment can only start at one).
    pub keyframe: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub transport: Transport,
    /// `media` when media arrived, else what went wrong.
    pub outcome: String,
    pub seconds: f64,
}

/// Probes a stored room's sources at once, and remembers per source the transport media
/// arrived over, so that the next session tries it first.
pub async fn probe_room(
    pool: &Pool,
    templates: &Templates,
    key: &CredentialKey,
    room_id: &str,
    listen: Duration,
) -> Result<RoomProbe, CoreError> {
    // The credentials are opened here, in memory, for the connections only.
    let room = rooms::with_credentials(pool, key, rooms::get(pool, room_id).await?).await?;
    let mut learned = Vec::with_capacity(room.sources.len());
    for s in &room.sources {
        learned.push(rooms::learned_transport(pool, &room.id, &s.name).await?);
    }
    let sources = probe_sources(&room.sources, &learned, templates, listen).await;
    remember_transports(pool, &room.id, &sources).await?;
    Ok(RoomProbe {
        recordable: sources.iter().all(|s| s.recordable),
        room_id: room.id,
        room_name: room.name,
        probed_at: crate::time::rfc3339(crate::time::now_us()),
        listen_seconds: listen.as_secs_f64(),
        sources,
    })
}

/// Stores what worked for each source of a room.
pub async fn remember_transports(
    pool: &Pool,
    room_id: &str,
    sources: &[SourceProbe],
) -> Result<(), CoreError> {
    for s in sources {
        if let Some(t) = s.transport {
            rooms::remember_transport(pool, room_id, &s.name, t).await?;
        }
    }
    Ok(())
}

/// Probes sources (stored or not yet) at once; `learned[i]` is what worked last for source i.
pub async fn probe_sources(
    sources: &[Source],
    learned: &[Option<Transport>],
    templates: &Templates,
    listen: Duration,
) -> Vec<SourceProbe> {
    let tasks: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.clone();
            let template = templates.get(&s.template).cloned();
            let learned = learned.get(i).copied().flatten();
            tokio::task::spawn_blocking(move || {
                probe_source(&s, template.as_ref(), learned, listen)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (task, s) in futures::future::join_all(tasks)
        .await
        .into_iter()
        .zip(sources)
    {
        out.push(task.unwrap_or_else(|e| {
            tracing::error!(source = %s.name, error = %e, "probe thread failed");
            failed(s, "the probe of this source failed; see the server log")
        }));
    }
    out
}

/// Creates a room only if every one of its sources can be recorded: probed first (with the
/// default window), refused (422 `source_not_recordable`, naming each source and why) before
/// anything is stored, and the transport that worked remembered per source.
pub async fn create_recordable_room(
    pool: &Pool,
    templates: &Templates,
    key: &CredentialKey,
    catalogue: &crate::catalogue::rooms::Catalogue,
    mut req: rooms::CreateRoom,
) -> Result<(rooms::Room, Vec<SourceProbe>, Duration), CoreError> {
    rooms::prepare(&mut req, templates, catalogue)?;
    let listen = listen_window(None);
    let learned = vec![None; req.sources.len()];
    let report = probe_sources(&req.sources, &learned, templates, listen).await;
    if let Some(message) = not_recordable_message(&report) {
        return Err(CoreError::invalid("source_not_recordable", message));
    }
    let room = rooms::create(pool, templates, key, catalogue, req).await?;
    remember_transports(pool, &room.id, &report).await?;
    Ok((room, report, listen))
}

impl RoomProbe {
    /// The probe's verdict in one line, for the audit trail.
    pub fn outcome(&self) -> String {
        if self.recordable {
            return "recordable".into();
        }
        let bad: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| !s.recordable)
            .map(|s| s.name.as_str())
            .collect();
        format!("not recordable: {}", bad.join(", "))
    }
}

/// One sentence on each source that cannot be recorded, for a refusal.
pub fn not_recordable_message(sources: &[SourceProbe]) -> Option<String> {
    let bad: Vec<String> = sources
        .iter()
        .filter(|s| !s.recordable)
        .map(|s| {
            let why = if s.problems.is_empty() {
                "no media".to_string()
            } else {
                s.problems.join("; ")
            };
            format!("source {:?} cannot be recorded: {why}", s.name)
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join(". "))
}

fn failed(s: &Source, problem: &str) -> SourceProbe {
    let mut report = blank(s);
    report.problems.push(problem.to_string());
    report
}

/// A source not (yet) reached: nothing known, nothing wrong said.
fn blank(s: &Source) -> SourceProbe {
    SourceProbe {
        name: s.name.clone(),
        media: s.media.clone(),
        template: s.template.clone(),
        transport_setting: s.transport,
        reachable: false,
        transport: None,
        recordable: false,
        codecs: Vec::new(),
        resolution: None,
        frame_rate: None,
        bitrate_bps: None,
        clock_offset_seconds: None,
        clock_note: Some("no media, so no camera clock".into()),
        attempts: Vec::new(),
        problems: Vec::new(),
        elapsed_seconds: 0.0,
    }
}

/// Probes one source on the calling (blocking) thread. Its credentials, if any, go to the
/// camera and nowhere else: every sentence of the report is scrubbed of the password.
pub fn probe_source(
    source: &Source,
    template: Option<&Template>,
    learned: Option<Transport>,
    listen: Duration,
) -> SourceProbe {
    let mut report = probe_source_unscrubbed(source, template, learned, listen);
    if let Some(c) = &source.credentials {
        for p in &mut report.problems {
            *p = c.scrub(p);
        }
        for a in &mut report.attempts {
            a.outcome = c.scrub(&a.outcome);
        }
        report.clock_note = report.clock_note.map(|n| c.scrub(&n));
    }
    report
}

fn probe_source_unscrubbed(
    source: &Source,
    template: Option<&Template>,
    learned: Option<Transport>,
    listen: Duration,
) -> SourceProbe {
    let started = Instant::now();
    let deadline = started + OVERALL;
    let mut report = blank(source);
    let window = listen.as_secs_f64();

    if template.is_none() {
        report.problems.push(format!(
            "template {:?} does not exist on this server",
            source.template
        ));
    }
    let endpoint = match connect_check(&source.url, listen.min(Duration::from_secs(5))) {
        Ok(endpoint) => endpoint,
        Err(problem) => {
            report.problems.push(problem);
            report.elapsed_seconds = secs(started.elapsed());
            return report;
        }
    };

    let attempts = source.transport.attempts(learned);
    let mut outcomes: Vec<Attempt> = Vec::new();
    for t in attempts {
        if Instant::now() + Duration::from_millis(500) >= deadline {
            break;
        }
        let a = attempt(source, template, t, listen, deadline);
        let stop = a.media_flowed() || !a.sdp || a.streams.iter().all(|s| s.not_recorded.is_some());
        outcomes.push(a);
        if stop {
            break;
        }
    }
    report.attempts = outcomes
        .iter()
        .map(|a| AttemptReport {
            transport: a.transport,
            outcome: a.outcome(window),
            seconds: secs(a.ended.saturating_duration_since(a.started)),
        })
        .collect();

    let Some(last) = outcomes.last() else {
        report.problems.push("no time was left to try".into());
        report.elapsed_seconds = secs(started.elapsed());
        return report;
    };
    report.reachable = outcomes.iter().any(|a| a.sdp || a.rtsp_status.is_some());
    if !outcomes.iter().any(|a| a.sdp) {
        report
            .problems
            .push(no_description(last, &endpoint, window));
        report.elapsed_seconds = secs(started.elapsed());
        return report;
    }

    // The attempt that tells the most: the one media arrived over, else the last one.
    let chosen = outcomes.iter().find(|a| a.media_flowed()).unwrap_or(last);
    if chosen.media_flowed() {
        report.transport = Some(chosen.transport);
        let failed_before: Vec<&Attempt> =
            outcomes.iter().take_while(|a| !a.media_flowed()).collect();
        for f in failed_before {
            report.problems.push(format!(
                "{}; {} works",
                transport_failure(f, window),
                upper(chosen.transport)
            ));
        }
        if let (Some(e), Some(first)) = (&chosen.error, chosen.first_media) {
            report.problems.push(format!(
                "the media stopped {:.1} s after it began: {e}",
                secs(chosen.ended.saturating_duration_since(first))
            ));
        }
    } else if chosen.streams.iter().any(|s| s.not_recorded.is_none()) {
        let tried: Vec<String> = outcomes
            .iter()
            .map(|a| transport_failure(a, window))
            .collect();
        report.problems.push(tried.join("; "));
    }

    let end = chosen.ended;
    for s in &chosen.streams {
        report.codecs.push(s.report(end));
    }
    stream_problems(&mut report, chosen, source, template, window);

    let recorded: Vec<&StreamState> = chosen
        .streams
        .iter()
        .filter(|s| s.not_recorded.is_none())
        .collect();
    report.recordable = template.is_some()
        && !recorded.is_empty()
        && recorded
            .iter()
            .all(|s| s.link_error.is_none() && s.m.buffers > 0);

    if let Some(v) = report
        .codecs
        .iter()
        .find(|c| c.media == "video" && c.recorded)
    {
        report.resolution = v
            .width
            .zip(v.height)
            .map(|(width, height)| Resolution { width, height });
        report.frame_rate = v.frame_rate;
    }
    let total: u64 = report
        .codecs
        .iter()
        .filter(|c| c.recorded)
        .filter_map(|c| c.bitrate_bps)
        .sum();
    report.bitrate_bps = chosen.media_flowed().then_some(total);

    match (chosen.clock_offset_s, chosen.media_flowed()) {
        (Some(offset), _) => {
            report.clock_offset_seconds = Some((offset * 1000.0).round() / 1000.0);
            report.clock_note = None;
            if offset.abs() > CLOCK_TOLERANCE_S {
                report.problems.push(clock_sentence(offset));
            }
        }
        (None, true) => {
            report.clock_note = Some(format!(
                "the camera sent no RTCP sender report within {:.0} s of its first media: \
                 segments would be timed by this server's clock alone",
                secs(
                    chosen
                        .ended
                        .saturating_duration_since(chosen.first_media.unwrap_or(chosen.started))
                )
            ));
        }
        (None, false) => {}
    }
    report.elapsed_seconds = secs(started.elapsed());
    report
}

fn stream_problems(
    report: &mut SourceProbe,
    chosen: &Attempt,
    source: &Source,
    template: Option<&Template>,
    window: f64,
) {
    let template_name = template
        .map(|t| t.name.as_str())
        .unwrap_or(&source.template);
    let wanted: Vec<&StreamState> = chosen
        .streams
        .iter()
        .filter(|s| !matches!(s.not_recorded, Some(NotRecorded::NotWanted)))
        .collect();
    if wanted.is_empty() {
        let offered: Vec<String> = chosen
            .streams
            .iter()
            .map(|s| format!("{} {}", s.media, s.encoding))
            .collect();
        report.problems.push(if offered.is_empty() {
            "the camera's stream description lists no stream".into()
        } else {
            format!(
                "the camera offers no {} stream (it offers {})",
                if source.media == "av" {
                    "video or audio"
                } else {
                    source.media.as_str()
                },
                offered.join(", ")
            )
        });
    }
    if chosen.extra_streams > 0 {
        report.problems.push(format!(
            "the camera lists {} streams more than the {MAX_STREAMS} checked; they would not be recorded",
            chosen.extra_streams
        ));
    }
    let flowed = chosen.media_flowed();
    for s in &chosen.streams {
        let name = match (s.encoding.is_empty(), s.payload) {
            (false, _) => format!("{} {}", s.media, s.encoding),
            (true, Some(pt)) => format!("{} (payload {pt}, no encoding named)", s.media),
            (true, None) => format!("{} (no encoding named)", s.media),
        };
        match s.not_recorded {
            Some(NotRecorded::NoBranch) => report.problems.push(format!(
                "{name}: no branch in template {template_name}, it would not be recorded"
            )),
            Some(NotRecorded::NotWanted) => {}
            None => {
                if let Some(e) = &s.link_error {
                    report.problems.push(format!(
                        "{name}: the branch of template {template_name} does not work: {e}"
                    ));
                } else if s.m.buffers == 0 && flowed {
                    report
                        .problems
                        .push(format!("{name}: no media within {window:.0} s"));
                } else if s.media == "video" && s.m.buffers > 0 && s.m.keyframes == 0 {
                    report.problems.push(format!(
                        "{name}: no keyframe within {window:.0} s (a segment can only start at \
                         one; the camera's keyframe interval may be longer)"
                    ));
                }
            }
        }
    }
}

fn clock_sentence(offset: f64) -> String {
    let way = if offset > 0.0 { "ahead of" } else { "behind" };
    let a = offset.abs();
    let amount = if a < 10.0 {
        format!("{a:.1} s")
    } else if a < 86_400.0 {
        format!("{a:.0} s")
    } else {
        format!("{a:.0} s (about {:.0} days)", a / 86_400.0)
    };
    format!("camera clock is {amount} {way} the server")
}

fn upper(t: Transport) -> String {
    t.as_str().to_ascii_uppercase()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Camera-supplied text, cut short and without control characters.
fn echo(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ECHO)
        .collect();
    clean.trim().to_string()
}

// ---- reaching the camera ---------------------------------------------------------------------

/// `host:port` of the URL, once a TCP connection to it succeeded; else why not, in a sentence.
fn connect_check(url: &str, budget: Duration) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("the URL cannot be read: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| "the URL names no host".to_string())?
        .to_string();
    let port = parsed
        .port()
        .unwrap_or(if parsed.scheme() == "rtsps" { 322 } else { 554 });
    let endpoint = format!("{host}:{port}");
    // Name resolution has no timeout of its own: it runs aside, and is waited for within budget.
    let (tx, rx) = std::sync::mpsc::channel();
    let to_resolve = endpoint.clone();
    std::thread::Builder::new()
        .name("probe-resolve".into())
        .spawn(move || {
            let _ = tx.send(to_resolve.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| format!("cannot resolve host {host}: {e}"))?;
    let started = Instant::now();
    let addrs = match rx.recv_timeout(budget) {
        Ok(Ok(a)) if !a.is_empty() => a,
        Ok(Ok(_)) => return Err(format!("host {host} has no address")),
        Ok(Err(e)) => return Err(format!("cannot resolve host {host}: {e}")),
        Err(_) => {
            return Err(format!(
                "resolving host {host} took longer than {:.0} s",
                budget.as_secs_f64()
            ));
        }
    };
    let mut last = None;
    for a in addrs {
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(_) => return Ok(endpoint),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing listens on {endpoint} (connection refused)")
        }
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => format!(
            "no answer from {endpoint} within {:.0} s (camera off, wrong address, or a firewall)",
            budget.as_secs_f64()
        ),
        Some(e) => format!("cannot connect to {endpoint}: {e}"),
        None => format!(
            "no answer from {endpoint} within {:.0} s (camera off, wrong address, or a firewall)",
            budget.as_secs_f64()
        ),
    })
}

/// Why no stream description came, in a sentence.
fn no_description(a: &Attempt, endpoint: &str, window: f64) -> String {
    if let Some((code, text)) = &a.rtsp_status {
        let hint = match code {
            401 | 403 => " (check the source's user name and password)",
            404 => " (check the path in the URL)",
            _ => "",
        };
        return format!("the camera answered {code} {text}{hint}");
    }
    match &a.error {
        Some(e) => format!("the RTSP exchange with {endpoint} failed: {e}"),
        None => {
            format!("{endpoint} accepts connections but did not answer RTSP within {window:.0} s")
        }
    }
}

/// What went wrong over one transport, in a clause.
fn transport_failure(a: &Attempt, window: f64) -> String {
    let t = upper(a.transport);
    if let Some((code, text)) = &a.rtsp_status {
        if *code == 461 {
            return format!("camera refused {t} (461)");
        }
        return format!("over {t} the camera answered {code} {text}");
    }
    if let Some(e) = &a.error {
        if crate::capture::transport::refused_transport(e) && !e.contains("UDP packets") {
            return format!("camera refused {t} (every SETUP was refused)");
        }
        if a.first_media.is_none() {
            return format!("no media over {t} ({e})");
        }
        return format!("{t} failed: {e}");
    }
    format!("no media over {t} within {window:.0} s")
}

// ---- one attempt -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotRecorded {
    /// The source's `media` does not want it (or it is neither video nor audio).
    NotWanted,
    NoBranch,
}

#[derive(Default)]
struct Measure {
    bytes: u64,
    buffers: u64,
    keyframes: u64,
    first_at: Option<Instant>,
    first_pts: Option<u64>,
    last_pts: Option<u64>,
    /// Caps out of the depayloader (the camera's codec) and out of the branch (what the muxer
    /// would get).
    depayloaded: Option<gst::Caps>,
    parsed: Option<gst::Caps>,
}

struct StreamState {
    /// rtspsrc's stream number (the SDP's media index).
    id: u32,
    media: String,
    encoding: String,
    payload: Option<i32>,
    clock_rate: Option<i32>,
    not_recorded: Option<NotRecorded>,
    link_error: Option<String>,
    /// Pads of rtspsrc linked for this stream (a new SSRC brings another).
    pads: usize,
    m: Measure,
}

impl StreamState {
    fn report(&self, end: Instant) -> StreamProbe {
        let parsed = self.m.parsed.as_ref().and_then(|c| c.structure(0));
        let depayloaded = self.m.depayloaded.as_ref().and_then(|c| c.structure(0));
        let int = |s: Option<&gst::StructureRef>, f: &str| {
            s.and_then(|s| s.get::<i32>(f).ok())
                .and_then(|v| u32::try_from(v).ok())
        };
        let caps_rate = parsed
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map(|f| f.numer() as f64 / f.denom() as f64);
        let measured_rate = match (self.m.first_pts, self.m.last_pts) {
            (Some(a), Some(b)) if b > a && self.m.buffers > 1 => {
                Some((self.m.buffers - 1) as f64 * 1e9 / (b - a) as f64)
            }
            _ => None,
        };
        let is_video = self.media == "video";
        let bitrate = self.m.first_at.map(|t| {
            let s = end.saturating_duration_since(t).as_secs_f64().max(0.5);
            (self.m.bytes as f64 * 8.0 / s).round() as u64
        });
        StreamProbe {
            media: self.media.clone(),
            encoding: self.encoding.clone(),
            payload: self.payload,
            clock_rate: self.clock_rate,
            codec: depayloaded
                .and_then(codec_of_caps)
                .unwrap_or_else(|| codec_of_encoding(&self.encoding)),
            recorded: self.not_recorded.is_none(),
            recorded_codec: parsed.and_then(codec_of_caps),
            width: if is_video { int(parsed, "width") } else { None },
            height: if is_video {
                int(parsed, "height")
            } else {
                None
            },
            frame_rate: if is_video {
                caps_rate
                    .or(measured_rate)
                    .map(|r| (r * 100.0).round() / 100.0)
            } else {
                None
            },
            sample_rate: if is_video {
                None
            } else {
                int(parsed, "rate").or(int(depayloaded, "rate"))
            },
            channels: if is_video {
                None
            } else {
                int(parsed, "channels").or(int(depayloaded, "channels"))
            },
            bitrate_bps: bitrate,
            buffers: self.m.buffers,
            keyframe: (is_video && self.not_recorded.is_none()).then_some(self.m.keyframes > 0),
        }
    }
}

/// The codec a caps name stands for: `video/x-h264` → `h264`, `audio/x-alaw` → `pcma` …
fn codec_of_caps(s: &gst::StructureRef) -> Option<String> {
    let name = s.name().as_str();
    Some(match name {
        "video/x-h264" => "h264".into(),
        "video/x-h265" => "h265".into(),
        "image/jpeg" => "mjpeg".into(),
        "audio/x-alaw" => "pcma".into(),
        "audio/x-mulaw" => "pcmu".into(),
        "audio/x-opus" => "opus".into(),
        "audio/x-raw" => "pcm".into(),
        "audio/mpeg" => match s.get::<i32>("mpegversion").unwrap_or(0) {
            2 | 4 => "aac".into(),
            1 if s.get::<i32>("layer").unwrap_or(0) == 3 => "mp3".into(),
            1 => "mp2".into(),
            _ => "mpeg-audio".into(),
        },
        "video/mpeg" => match s.get::<i32>("mpegversion").unwrap_or(0) {
            4 => "mpeg4".into(),
            2 => "mpeg2".into(),
            _ => "mpeg-video".into(),
        },
        other => {
            let tail = other.rsplit('/').next().unwrap_or(other);
            echo(tail.strip_prefix("x-").unwrap_or(tail))
        }
    })
}

/// The codec an RTP encoding name stands for, when no media arrived to tell.
fn codec_of_encoding(encoding: &str) -> String {
    match encoding.to_ascii_uppercase().as_str() {
        "H264" => "h264".into(),
        "H265" => "h265".into(),
        "JPEG" => "mjpeg".into(),
        "MPEG4-GENERIC" | "MP4A-LATM" => "aac".into(),
        "PCMA" => "pcma".into(),
        "PCMU" => "pcmu".into(),
        "OPUS" => "opus".into(),
        "MP4V-ES" => "mpeg4".into(),
        other => other.to_ascii_lowercase(),
    }
}

#[derive(Default)]
struct Shared {
    sdp: bool,
    streams: Vec<StreamState>,
    /// Streams beyond `MAX_STREAMS`, neither set up nor listed.
    extra_streams: usize,
    first_media: Option<Instant>,
}

struct Attempt {
    transport: Transport,
    sdp: bool,
    /// An RTSP error status the camera answered, e.g. (401, "Unauthorized").
    rtsp_status: Option<(u16, String)>,
    /// The error that ended the attempt, if any (plain, short).
    error: Option<String>,
    streams: Vec<StreamState>,
    extra_streams: usize,
    clock_offset_s: Option<f64>,
    started: Instant,
    ended: Instant,
    first_media: Option<Instant>,
}

impl Attempt {
    fn media_flowed(&self) -> bool {
        self.streams
            .iter()
            .any(|s| s.not_recorded.is_none() && s.m.buffers > 0)
    }

    fn outcome(&self, window: f64) -> String {
        if self.media_flowed() {
            "media".into()
        } else if !self.sdp {
            match (&self.rtsp_status, &self.error) {
                (Some((code, text)), _) => format!("answered {code} {text}"),
                (None, Some(e)) => e.clone(),
                (None, None) => format!("no answer to RTSP within {window:.0} s"),
            }
        } else if self.streams.iter().all(|s| s.not_recorded.is_some()) {
            "no stream to record".into()
        } else {
            transport_failure(self, window)
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connects over one transport and listens until the window ends (longer, within `deadline`,
/// while media flows but no sender report came yet), an error, or end of stream.
fn attempt(
    source: &Source,
    template: Option<&Template>,
    transport: Transport,
    listen: Duration,
    deadline: Instant,
) -> Attempt {
    let started = Instant::now();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut result = Attempt {
        transport,
        sdp: false,
        rtsp_status: None,
        error: None,
        streams: Vec::new(),
        extra_streams: 0,
        clock_offset_s: None,
        started,
        ended: started,
        first_media: None,
    };
    let built = build(source, template, transport, listen, &shared);
    let (pipeline, clock) = match built {
        Ok(p) => p,
        Err(e) => {
            result.error = Some(format!("cannot build the probe: {e}"));
            result.ended = Instant::now();
            return result;
        }
    };
    let bus = pipeline.bus().expect("a pipeline has a bus");
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        result.error = Some(format!("cannot start: {e}"));
    } else {
        let window_end = (started + listen).min(deadline);
        loop {
            let now = Instant::now();
            let first_media = lock(&shared).first_media;
            let end = match first_media {
                Some(t) if clock.wall_ns(0).is_none() => {
                    window_end.max((t + SENDER_REPORT_WAIT).min(deadline))
                }
                _ => window_end,
            };
            if now >= end {
                break;
            }
            let wait = (end - now).min(Duration::from_millis(100));
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(wait.as_nanos() as u64))
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(err) => {
                    let detail = err.debug().map(|d| d.to_string()).unwrap_or_default();
                    result.rtsp_status = rtsp_status(&detail);
                    // A silent camera is said plainly (see `no_description`), not as a timeout.
                    if !detail.contains("Timeout while waiting for server response") {
                        result.error = Some(echo(&err.error().to_string()));
                    }
                    tracing::debug!(
                        source = %source.name,
                        transport = transport.as_str(),
                        error = %err.error(),
                        %detail,
                        "probe attempt failed"
                    );
                    break;
                }
                gst::MessageView::Eos(_) => {
                    result.error = Some("the camera ended the stream".into());
                    break;
                }
                gst::MessageView::Warning(w) => {
                    let debug = w.debug().map(|d| d.to_string()).unwrap_or_default();
                    if let Some(status) = rtsp_status(&debug) {
                        result.rtsp_status = Some(status);
                    }
                }
                _ => {}
            }
        }
    }
    result.ended = Instant::now();
    // The camera's wall clock minus the server's at the same running time.
    if let (Some(camera_offset), Some(base)) = (clock.wall_ns(0), pipeline.base_time()) {
        result.clock_offset_s = Some((camera_offset - base.nseconds() as i128) as f64 / 1e9);
    }
    let _ = pipeline.set_state(gst::State::Null);
    let mut s = lock(&shared);
    result.sdp = s.sdp;
    result.first_media = s.first_media;
    result.streams = std::mem::take(&mut s.streams);
    result.extra_streams = s.extra_streams;
    result
}

/// The RTSP status in rtspsrc's debug text: `Unauthorized (401)` on its last line (GStreamer
/// 1.22 and later) or `Got error response: 401 (Unauthorized).` (older) → (401, "Unauthorized").
fn rtsp_status(debug: &str) -> Option<(u16, String)> {
    let status = |code: &str, text: &str| {
        let code: u16 = code.trim().parse().ok()?;
        (300..700).contains(&code).then(|| (code, echo(text)))
    };
    if let Some(at) = debug.find("error response: ") {
        let rest = &debug[at + "error response: ".len()..];
        let text = rest
            .get(3..)?
            .trim_start()
            .strip_prefix('(')
            .and_then(|t| t.split(')').next())
            .unwrap_or_default();
        return status(rest.get(..3)?, text);
    }
    let last = debug.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let inner = last.trim_end_matches('.').strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let code = &inner[open + 1..];
    (code.len() == 3).then_some(())?;
    status(code, inner[..open].trim())
}

fn build(
    source: &Source,
    template: Option<&Template>,
    transport: Transport,
    listen: Duration,
    shared: &Arc<Mutex<Shared>>,
) -> Result<(gst::Pipeline, CameraClock), gst::glib::BoolError> {
    let pipeline =
        gst::Pipeline::with_name(&format!("probe-{}-{}", source.name, transport.as_str()));
    // Running time maps to this server's wall clock by adding the base time (as in pipeline.rs).
    let clock = gst::SystemClock::obtain();
    clock.set_property("clock-type", gst::ClockType::Realtime);
    pipeline.use_clock(Some(&clock));
    let micros = listen.as_micros() as u64;
    let mut src = gst::ElementFactory::make("rtspsrc")
        .property("location", source.url.as_str())
        .property_from_str("protocols", transport.rtspsrc_protocols())
        // As a recording does (pipeline.rs), so the clock offset reads the same.
        .property_from_str("buffer-mode", "slave")
        .property("latency", 200u32)
        // Past the window, so a camera that never answers is told by the window, not rtspsrc.
        .property("tcp-timeout", micros + 1_000_000)
        .property("timeout", micros);
    // As a recording does: credentials as properties, never in the URL (pipeline.rs).
    if let Some(c) = &source.credentials {
        src = src
            .property("user-id", c.username.as_str())
            .property("user-pw", c.password.as_str());
    }
    let src = src.build()?;
    pipeline.add(&src)?;
    crate::capture::rtsp_compat::append_controls(&src, &source.url);
    let camera_clock = CameraClock::watch(&src);

    {
        let shared = shared.clone();
        src.connect("on-sdp", false, move |_| {
            lock(&shared).sdp = true;
            None
        });
    }
    {
        let shared = shared.clone();
        let template = template.cloned();
        let wanted = source.media.clone();
        src.connect("select-stream", false, move |args| {
            let id = args.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            let s = caps.as_ref().and_then(|c| c.structure(0));
            let field = |f: &str| s.and_then(|s| s.get::<&str>(f).ok()).map(echo);
            let media = field("media").unwrap_or_default();
            let encoding = field("encoding-name").unwrap_or_default();
            let mut shared = lock(&shared);
            shared.sdp = true;
            if shared.streams.len() >= MAX_STREAMS {
                shared.extra_streams += 1;
                return Some(false.to_value());
            }
            let not_recorded = if !matches!(media.as_str(), "video" | "audio")
                || !(wanted == "av" || wanted == media)
            {
                Some(NotRecorded::NotWanted)
            } else if template
                .as_ref()
                .and_then(|t| t.branch(&media, &encoding))
                .is_none()
            {
                Some(NotRecorded::NoBranch)
            } else {
                None
            };
            shared.streams.push(StreamState {
                id,
                media,
                encoding,
                payload: s.and_then(|s| s.get::<i32>("payload").ok()),
                clock_rate: s.and_then(|s| s.get::<i32>("clock-rate").ok()),
                not_recorded,
                link_error: None,
                pads: 0,
                m: Measure::default(),
            });
            Some(not_recorded.is_none().to_value())
        });
    }
    {
        let pipeline = pipeline.downgrade();
        let shared = shared.clone();
        let template = template.cloned();
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            link_pad(&pipeline, pad, template.as_ref(), &shared);
        });
    }
    Ok((pipeline, camera_clock))
}

/// rtspsrc's pads are `recv_rtp_src_{stream}_{ssrc}_{pt}`.
fn stream_of_pad(pad: &gst::Pad) -> Option<u32> {
    pad.name()
        .strip_prefix("recv_rtp_src_")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

/// Links one of rtspsrc's pads through its stream's template branch into a fakesink, measuring
/// what comes out; anything else goes straight to a fakesink.
fn link_pad(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    template: Option<&Template>,
    shared: &Arc<Mutex<Shared>>,
) {
    let caps = pad.current_caps();
    let caps_field = |f: &str| {
        caps.as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<&str>(f).ok())
            .map(echo)
            .unwrap_or_default()
    };
    let (media, encoding) = (caps_field("media"), caps_field("encoding-name"));
    let index = {
        let mut s = lock(shared);
        let by_id = stream_of_pad(pad).and_then(|id| s.streams.iter().position(|x| x.id == id));
        let index = by_id.or_else(|| {
            s.streams
                .iter()
                .position(|x| x.media == media && x.encoding == encoding)
        });
        match index {
            Some(i) if s.streams[i].not_recorded.is_none() && s.streams[i].pads < 4 => {
                s.streams[i].pads += 1;
                Some(i)
            }
            _ => None,
        }
    };
    let branch = index.and_then(|_| template.and_then(|t| t.branch(&media, &encoding)));
    let linked = (|| -> Result<(), String> {
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|e| e.to_string())?;
        let (Some(i), Some(desc)) = (index, branch) else {
            pipeline.add(&sink).map_err(|e| e.to_string())?;
            sink.sync_state_with_parent().map_err(|e| e.to_string())?;
            let sink_pad = sink.static_pad("sink").ok_or("fakesink has no pad")?;
            return pad
                .link(&sink_pad)
                .map(|_| ())
                .map_err(|e| format!("{e:?}"));
        };
        let bin = gst::parse::bin_from_description(desc, true).map_err(|e| e.to_string())?;
        pipeline
            .add_many([bin.upcast_ref::<gst::Element>(), &sink])
            .map_err(|e| e.to_string())?;
        bin.link(&sink).map_err(|e| e.to_string())?;
        let bin_src = bin.static_pad("src").ok_or("branch has no src pad")?;
        let bin_sink = bin.static_pad("sink").ok_or("branch has no sink pad")?;
        measure_parsed(&bin_src, i, shared);
        // The first element of the branch is the depayloader: its output names the codec.
        if let Some(depay_src) = bin_sink
            .downcast_ref::<gst::GhostPad>()
            .and_then(|g| g.target())
            .and_then(|p| p.parent_element())
            .and_then(|e| e.static_pad("src"))
        {
            note_depayloaded(&depay_src, i, shared);
        }
        sink.sync_state_with_parent().map_err(|e| e.to_string())?;
        bin.sync_state_with_parent().map_err(|e| e.to_string())?;
        pad.link(&bin_sink)
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    })();
    if let (Err(e), Some(i)) = (linked, index) {
        lock(shared).streams[i].link_error = Some(echo(&e));
    }
}

fn measure_parsed(pad: &gst::Pad, index: usize, shared: &Arc<Mutex<Shared>>) {
    let shared = shared.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let now = Instant::now();
        let caps = pad.current_caps();
        let mut s = lock(&shared);
        s.first_media.get_or_insert(now);
        if let Some(st) = s.streams.get_mut(index) {
            let m = &mut st.m;
            m.bytes += buffer.size() as u64;
            m.buffers += 1;
            if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                m.keyframes += 1;
            }
            m.first_at.get_or_insert(now);
            if let Some(ts) = buffer.pts().or(buffer.dts()) {
                m.first_pts.get_or_insert(ts.nseconds());
                m.last_pts = Some(ts.nseconds());
            }
            if caps.is_some() {
                m.parsed = caps;
            }
        }
        gst::PadProbeReturn::Ok
    });
}

fn note_depayloaded(pad: &gst::Pad, index: usize, shared: &Arc<Mutex<Shared>>) {
    let shared = shared.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        let caps = pad.current_caps();
        if let Some(st) = lock(&shared).streams.get_mut(index)
            && caps.is_some()
        {
            st.m.depayloaded = caps;
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_clamped() {
        assert_eq!(listen_window(None), Duration::from_secs(4));
        assert_eq!(listen_window(Some(0)), Duration::from_secs(1));
        assert_eq!(listen_window(Some(99)), Duration::from_secs(15));
    }

    #[test]
    fn rtsp_status_from_debug_text() {
        assert_eq!(
            rtsp_status(
                "gstrtspsrc.c(6641): gst_rtspsrc_send (): /GstPipeline:p/GstRTSPSrc:src:\nGot error response: 401 (Unauthorized)."
            ),
            Some((401, "Unauthorized".into()))
        );
        assert_eq!(
            rtsp_status(
                "../gst/rtsp/gstrtspsrc.c(6895): gst_rtspsrc_send (): /GstPipeline:p/GstRTSPSrc:src:\nNot Found (404)"
            ),
            Some((404, "Not Found".into()))
        );
        assert_eq!(rtsp_status("gstrtspsrc.c(6895): x\nTimeout (12)"), None);
        assert_eq!(rtsp_status("error response: 4"), None);
        assert_eq!(rtsp_status("error response: 9999"), None);
        assert_eq!(rtsp_status("nothing"), None);
    }

    #[test]
    fn clock_sentences() {
        assert_eq!(
            clock_sentence(1843.2),
            "camera clock is 1843 s ahead of the server"
        );
        assert_eq!(
            clock_sentence(-2.54),
            "camera clock is 2.5 s behind the server"
        );
    }

    #[test]
    fn echo_cuts_hostile_text() {
        let long = "A\u{0}B".repeat(100);
        let e = echo(&long);
        assert!(e.chars().count() <= MAX_ECHO && !e.contains('\0'));
    }

    #[test]
    fn refused_connection_is_a_sentence() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = connect_check(
            &format!("rtsp://127.0.0.1:{port}/x"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
    }
}
