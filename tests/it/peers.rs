//! Peers: RTSP servers that are not our own GStreamer simulator, each started by the test as a
//! real process on a free loopback port, and hostile fake servers (threads behind a
//! `TcpListener`) — so that the recorder is tested against more than the library it shares with
//! its simulator.
//!
//! Real servers, each looping a [`clip`] of a [`Profile`] (H.264 + AAC, or H.265 + A-law):
//! - [`Vlc`]: VLC 3.0 (Debian `vlc-bin`), `cvlc --sout '#rtp{sdp=rtsp://…}'`. UDP only: a TCP
//!   SETUP gets `461 Unsupported transport`. Both profiles.
//! - [`PerlRtsp`]: Debian `rtsp-server-perl` 0.06, a relay that ffmpeg publishes the clip to
//!   (ANNOUNCE/RECORD). UDP only: a TCP SETUP gets `400 Bad Request`. Both profiles.
//! - [`AioRtsp`]: PyPI `aio-rtsp-toolkit` 0.1.4 (Python, PyAV), serving the file itself. TCP
//!   (interleaved) only: a UDP SETUP gets `461 Unsupported Transport`. H264Aac, and of
//!   H265Pcma only the video (it skips A-law in files).
//!
//! Hostile fakes, threads in the test process:
//! - [`SilentRtsp`] accepts connections and never answers.
//! - [`NoMediaRtsp`] answers OPTIONS … PLAY (an H.264 SDP; TCP and UDP) and never sends RTP.
//! - [`UnsupportedCodecRtsp`]: the same with `X-UNKNOWN-CODEC/90000`, and RTP of noise.
//! - [`TcpRefusingRtsp`], a proxy in front of a real server, answers a TCP SETUP with 461.
//! - [`ControlCloser`], a proxy in front of a real server, closes the client's RTSP connection
//!   after PLAY while RTP over UDP flows on.
//! - [`LossyRtsp`], a proxy in front of a real server, drops and garbles interleaved RTP.
//!
//! Each process fixture has `url`, `pid`, `pause` (SIGSTOP), `resume` (SIGCONT), `kill` (SIGKILL)
//! and `restart` (same port), and kills its processes when dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, wait_for_port};

// ---------------------------------------------------------------------------------------------
// Media profiles and the clips the servers play

/// What a camera sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// H.264 (libx264) and AAC, 48 kHz mono.
    H264Aac,
    /// H.265 (libx265) and G.711 A-law, 8 kHz mono: the usual Hikvision / Dahua profile.
    H265Pcma,
}

impl Profile {
    /// The streams as ffprobe names them, (kind, codec), sorted.
    pub fn streams(self) -> Vec<(String, String)> {
        let s: &[(&str, &str)] = match self {
            Profile::H264Aac => &[("audio", "aac"), ("video", "h264")],
            Profile::H265Pcma => &[("audio", "pcm_alaw"), ("video", "hevc")],
        };
        s.iter()
            .map(|(k, c)| (k.to_string(), c.to_string()))
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Profile::H264Aac => "h264-aac",
            Profile::H265Pcma => "h265-pcma",
        }
    }
}

const CLIP_SECONDS: &str = "30";

/// A 30 s clip of `profile` in Matroska (which carries A-law, unlike MPEG-TS for VLC), 640×360
/// at 25 fps with a keyframe every second and no B-frames, like a camera: the moving test
/// pattern with its timestamp and frame number burned in, and a 440 Hz tone. Encoded once per
/// target directory (`-v1` in the name: count it up when the encoding changes).
pub fn clip(profile: Profile) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _once = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peers");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-v1.mkv", profile.name()));
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!("{}.{}.tmp.mkv", profile.name(), std::process::id()));
    let (rate, codecs): (&str, &[&str]) = match profile {
        Profile::H264Aac => ("48000", &["-c:v", "libx264", "-c:a", "aac", "-b:a", "64k"]),
        Profile::H265Pcma => (
            "8000",
            &[
                "-c:v",
                "libx265",
                "-x265-params",
                "log-level=error",
                "-c:a",
                "pcm_alaw",
            ],
        ),
    };
    let pattern = "testsrc2=size=640x360:rate=25";
    let clock = "drawtext=text='%{pts\\:hms} %{n}':fontsize=32:fontcolor=white\
                 :box=1:boxcolor=black@0.6:x=10:y=10";
    // drawtext needs a font; without one, the bare moving pattern will do.
    for video in [format!("{pattern},{clock}"), pattern.to_string()] {
        let ok = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(&video)
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:sample_rate={rate}"))
            .args([
                "-t",
                CLIP_SECONDS,
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-bf",
                "0",
            ])
            .args(["-pix_fmt", "yuv420p", "-ac", "1"])
            .args(codecs)
            .arg(&tmp)
            .status()
            .expect("ffmpeg runs (scripts/setup installs it)")
            .success();
        if ok {
            std::fs::rename(&tmp, &path).unwrap();
            return path;
        }
    }
    panic!("ffmpeg could not encode the {profile:?} clip");
}

// ---------------------------------------------------------------------------------------------
// Probing RTSP with ffprobe

/// How RTP travels: interleaved on the RTSP connection, or over UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The name ffmpeg's `-rtsp_transport` takes.
    pub fn ffmpeg(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// A `Transport:` header asking for this transport (UDP to `client_port`, `client_port`+1).
    pub fn header(self, client_port: u16) -> String {
        match self {
            Transport::Udp => format!(
                "RTP/AVP;unicast;client_port={client_port}-{}",
                client_port + 1
            ),
            Transport::Tcp => "RTP/AVP/TCP;unicast;interleaved=0-1".into(),
        }
    }
}

/// One stream as ffprobe read it off an RTSP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbedStream {
    pub kind: String,
    /// Empty when ffprobe does not know the codec.
    pub codec: String,
    pub packets: u64,
}

/// ffprobe reads `url` over `transport` for `read`: each stream's kind, codec and packet count.
/// Err with ffprobe's message when it fails: a server that does not answer fails it after 2 s
/// (its socket timeout). One that answers but sends no RTP gives its streams with 0 packets. A
/// hung ffprobe is killed after `read` + 10 s.
pub fn probe_rtsp(
    url: &str,
    transport: Transport,
    read: Duration,
) -> Result<Vec<ProbedStream>, String> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-rtsp_transport", transport.ffmpeg()])
        .args(["-timeout", "2000000", "-analyzeduration", "1000000"])
        .arg("-read_intervals")
        .arg(format!("%+{}", read.as_secs_f64()))
        .args(["-count_packets", "-show_entries"])
        .args([
            "stream=codec_type,codec_name,nb_read_packets",
            "-of",
            "json",
        ])
        .arg(url);
    let limit = read + Duration::from_secs(10);
    let out =
        run_for(cmd, limit).ok_or_else(|| format!("ffprobe still running after {limit:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {stderr}"))?;
    Ok(v["streams"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| ProbedStream {
            kind: s["codec_type"].as_str().unwrap_or("").into(),
            codec: s["codec_name"].as_str().unwrap_or("").into(),
            packets: s["nb_read_packets"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
        .collect())
}

/// (kind, codec) of each stream, sorted, to compare with [`Profile::streams`].
pub fn codecs(streams: &[ProbedStream]) -> Vec<(String, String)> {
    let mut v: Vec<_> = streams
        .iter()
        .map(|s| (s.kind.clone(), s.codec.clone()))
        .collect();
    v.sort();
    v
}

/// Runs `cmd` to its end, or kills it after `limit` (None then). Its output should be small:
/// the pipes are read only at the end.
pub fn run_for(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Sends `sig` (`STOP`, `CONT`, `KILL`…) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -s {sig} {pid}");
}

/// A child process that is killed (SIGKILL, even when stopped) when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?} (scripts/setup installs it): {e}"));
        Proc(child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pid_of(p: &Option<Proc>) -> u32 {
    p.as_ref().expect("the process runs").0.id()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits until `url` answers DESCRIBE with 200 (servers answer 404 or 5xx until their source
/// is up).
pub fn wait_described(url: &str, timeout: Duration) {
    let t = Instant::now();
    loop {
        let r = RtspClient::connect(url)
            .and_then(|mut c| c.request("DESCRIBE", url, &[("Accept", "application/sdp")]));
        match r {
            Ok(r) if r.status == 200 => return,
            r => assert!(
                t.elapsed() < timeout,
                "{url} not served after {timeout:?}: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A run of `n` free UDP ports on loopback below the ephemeral range, for a server that hands
/// out RTP ports counting up from a start port.
fn udp_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..200 {
        let slot = (std::process::id() as u16)
            .wrapping_mul(7)
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
            % 60;
        let base = 20_000 + slot * 200;
        if (base..base + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free UDP ports from 20000 up");
}

// ---------------------------------------------------------------------------------------------
// VLC

/// VLC's RTSP server (`cvlc --sout '#rtp{sdp=rtsp://…}'`) looping a [`clip`] at
/// `rtsp://127.0.0.1:PORT/room`. UDP only: VLC has no interleaved TCP and answers a TCP SETUP
/// with `461 Unsupported transport`, so a recorder must ask for UDP or fall back to it. VLC
/// refuses to run as root; as root it runs as `nobody`.
pub struct Vlc {
    port: u16,
    profile: Profile,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Vlc {
    pub fn start(profile: Profile) -> Vlc {
        // `nobody` must be able to read the clip.
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let file = dir.path().join("clip.mkv");
        std::fs::copy(clip(profile), &file).unwrap();
        set_mode(&file, 0o644);
        let mut vlc = Vlc {
            port: free_port(),
            profile,
            dir,
            proc: None,
        };
        vlc.restart();
        vlc
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/room", self.port)
    }

    /// The streams it serves, as [`codecs`] gives them.
    pub fn streams(&self) -> Vec<(String, String)> {
        self.profile.streams()
    }

    pub fn pid(&self) -> u32 {
        pid_of(&self.proc)
    }

    /// SIGSTOP: the server hangs, RTSP and RTP alike.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGKILL: the camera loses power.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Kills VLC if it runs and starts it again on the same port, serving from the start.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("cvlc");
        if is_root() {
            cmd = Command::new("setpriv");
            cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg("cvlc");
        }
        // setpriv and cvlc exec: the child's id is VLC's.
        cmd.args(["-I", "dummy"])
            .arg(self.dir.path().join("clip.mkv"))
            .arg(format!(
                "--sout=#rtp{{sdp=rtsp://127.0.0.1:{}/room}}",
                self.port
            ))
            .args(["--sout-keep", "--loop"])
            .env("HOME", self.dir.path());
        self.proc = Some(Proc::spawn(&mut cmd));
        wait_described(&self.url(), Duration::from_secs(20));
    }
}

// ---------------------------------------------------------------------------------------------
// rtsp-server-perl

/// Debian's `rtsp-server-perl` (RTSP::Server 0.06, AnyEvent), a relay: ffmpeg publishes a
/// looping [`clip`] to its source port (ANNOUNCE/RECORD, RTP over UDP) and clients read
/// `rtsp://127.0.0.1:PORT/room`. UDP only: a TCP SETUP gets `400 Bad Request`.
pub struct PerlRtsp {
    port: u16,
    source_port: u16,
    rtp_start: u16,
    profile: Profile,
    server: Option<Proc>,
    publisher: Option<Proc>,
}

impl PerlRtsp {
    pub fn start(profile: Profile) -> PerlRtsp {
        let mut s = PerlRtsp {
            port: free_port(),
            source_port: free_port(),
            rtp_start: udp_ports(200),
            profile,
            server: None,
            publisher: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/room", self.port)
    }

    pub fn streams(&self) -> Vec<(String, String)> {
        self.profile.streams()
    }

    /// The server's process.
    pub fn pid(&self) -> u32 {
        pid_of(&self.server)
    }

    /// The publishing ffmpeg's process.
    pub fn publisher_pid(&self) -> u32 {
        pid_of(&self.publisher)
    }

    /// SIGSTOP to the server: RTSP and RTP hang.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGSTOP to the publisher: the server still answers RTSP, but no RTP comes.
    pub fn pause_media(&self) {
        signal(self.publisher_pid(), "STOP");
    }

    /// SIGCONT to the publisher. `ffmpeg -re` then catches up: the time it was stopped comes
    /// as a burst.
    pub fn resume_media(&self) {
        signal(self.publisher_pid(), "CONT");
    }

    /// SIGKILL to both.
    pub fn kill(&mut self) {
        self.publisher = None;
        self.server = None;
    }

    /// Kills both if they run and starts them again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        // The packaged server, with its first RTP port set: it counts up from there, and goes
        // back to $RTP_START_PORT (20000 unless set here) whenever a connection ends while it
        // has no mount — so two servers would take the same ports.
        let start = self.rtp_start.to_string();
        self.server = Some(Proc::spawn(
            Command::new("perl")
                .arg("-e")
                .arg(
                    "require RTSP::Server; $RTSP::Server::RTP_START_PORT = shift @ARGV; \
                     do '/usr/bin/rtsp-server-perl'; die $@ if $@",
                )
                .args([&start, "--rtp_start_port", &start])
                .args(["--clientport", &self.port.to_string()])
                .args(["--serverport", &self.source_port.to_string()])
                .args(["--client_listen_address", "127.0.0.1"])
                .args(["--source_listen_address", "127.0.0.1"])
                .args(["--loglevel", "0"]),
        ));
        wait_for_port(self.source_port, Duration::from_secs(20));
        self.publisher = Some(Proc::spawn(
            Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-re",
                    "-stream_loop",
                    "-1",
                ])
                .arg("-i")
                .arg(clip(self.profile))
                .args(["-c", "copy", "-f", "rtsp"])
                .arg(format!("rtsp://127.0.0.1:{}/room", self.source_port)),
        ));
        wait_described(&self.url(), Duration::from_secs(20));
    }
}

// ---------------------------------------------------------------------------------------------
// aio-rtsp-toolkit

/// The file server of PyPI's `aio-rtsp-toolkit` (asyncio, PyAV), looping a [`clip`] at
/// `rtsp://127.0.0.1:PORT/room.mkv?play_count=0`. TCP only (RTP interleaved): a UDP SETUP gets
/// `461 Unsupported Transport`. It takes H.264/H.265 and AAC from files but skips A-law there,
/// so [`Profile::H265Pcma`] comes as H.265 video alone.
pub struct AioRtsp {
    port: u16,
    profile: Profile,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

const AIO_SERVER: &str = "import asyncio, sys
import aio_rtsp_toolkit.server as server
asyncio.run(server.serve(sys.argv[1], '127.0.0.1', int(sys.argv[2])))";

impl AioRtsp {
    pub fn start(profile: Profile) -> AioRtsp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(clip(profile), dir.path().join("room.mkv")).unwrap();
        let mut s = AioRtsp {
            port: free_port(),
            profile,
            dir,
            proc: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/room.mkv?play_count=0", self.port)
    }

    pub fn streams(&self) -> Vec<(String, String)> {
        match self.profile {
            Profile::H265Pcma => vec![("video".into(), "hevc".into())],
            p => p.streams(),
        }
    }

    pub fn pid(&self) -> u32 {
        pid_of(&self.proc)
    }

    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn kill(&mut self) {
        self.proc = None;
    }

    pub fn restart(&mut self) {
        self.kill();
        self.proc = Some(Proc::spawn(
            Command::new("python3")
                .args(["-c", AIO_SERVER])
                .arg(self.dir.path())
                .arg(self.port.to_string()),
        ));
        wait_described(&self.url(), Duration::from_secs(20));
    }
}

// ---------------------------------------------------------------------------------------------
// RTSP on the wire, for the fakes, the proxies and tests that talk RTSP themselves

/// One thing read off an RTSP connection.
#[derive(Debug)]
enum Msg {
    /// A request or a response: start line, headers, body.
    Rtsp {
        start: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// RTP or RTCP interleaved on the connection, whole (`$`, channel, length, data).
    Interleaved(Vec<u8>),
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Msg {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Msg::Interleaved(b) => b.clone(),
            Msg::Rtsp {
                start,
                headers,
                body,
            } => {
                let mut out = format!("{start}\r\n");
                for (k, v) in headers {
                    if !k.eq_ignore_ascii_case("content-length") {
                        out += &format!("{k}: {v}\r\n");
                    }
                }
                if !body.is_empty() || header(headers, "content-length").is_some() {
                    out += &format!("Content-Length: {}\r\n", body.len());
                }
                out += "\r\n";
                let mut out = out.into_bytes();
                out.extend_from_slice(body);
                out
            }
        }
    }

    /// With `from` replaced by `to` in the start line, the headers and the body.
    fn replace(self, from: &str, to: &str) -> Msg {
        match self {
            Msg::Rtsp {
                start,
                headers,
                body,
            } => Msg::Rtsp {
                start: start.replace(from, to),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k, v.replace(from, to)))
                    .collect(),
                body: match String::from_utf8(body) {
                    Ok(s) => s.replace(from, to).into_bytes(),
                    Err(e) => e.into_bytes(),
                },
            },
            m => m,
        }
    }
}

fn parse(buf: &mut Vec<u8>) -> io::Result<Option<Msg>> {
    if buf.first() == Some(&b'$') {
        if buf.len() < 4 {
            return Ok(None);
        }
        let n = 4 + u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < n {
            return Ok(None);
        }
        return Ok(Some(Msg::Interleaved(buf.drain(..n).collect())));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 << 10 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no RTSP head"));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + 4 + len {
        return Ok(None);
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    Ok(Some(Msg::Rtsp {
        start,
        headers,
        body,
    }))
}

/// Reads [`Msg`]s off a TCP stream.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next message; None at the end of the stream, or once `stop` is set. With `stop`,
    /// read timeouts (the socket's) only look at it; without, they are errors.
    fn read(&mut self, stop: Option<&AtomicBool>) -> io::Result<Option<Msg>> {
        let mut tmp = [0u8; 16 << 10];
        loop {
            if let Some(m) = parse(&mut self.buf)? {
                return Ok(Some(m));
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    match stop {
                        Some(s) if s.load(Ordering::Relaxed) => return Ok(None),
                        Some(_) => {}
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn host_port(url: &str) -> (String, u16) {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    (
        u.host_str().unwrap_or("127.0.0.1").to_string(),
        u.port().unwrap_or(554),
    )
}

/// An RTSP response.
#[derive(Debug)]
pub struct RtspResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RtspResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The control URL of each media in the SDP body, resolved against `Content-Base` (or
    /// `url`, the URL described).
    pub fn media_controls(&self, url: &str) -> Vec<String> {
        let base = self.header("content-base").unwrap_or(url);
        let mut out = Vec::new();
        let mut in_media = false;
        for line in self.body.lines() {
            if line.starts_with("m=") {
                in_media = true;
            } else if let Some(c) = line.strip_prefix("a=control:")
                && in_media
            {
                out.push(if c.starts_with("rtsp://") {
                    c.to_string()
                } else {
                    format!("{}/{c}", base.trim_end_matches('/'))
                });
            }
        }
        out
    }
}

/// A plain RTSP client on one TCP connection, for tests that look at what a server answers.
pub struct RtspClient {
    wire: Wire,
    cseq: u32,
    session: Option<String>,
}

impl RtspClient {
    /// Connects to the host and port of `url`; requests time out after 2 s.
    pub fn connect(url: &str) -> io::Result<RtspClient> {
        let (host, port) = host_port(url);
        let addr = (host.as_str(), port)
            .to_socket_addrs()?
            .next()
            .ok_or(io::ErrorKind::NotFound)?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(RtspClient {
            wire: Wire::new(stream),
            cseq: 0,
            session: None,
        })
    }

    /// Sends `method` for `url` with the next CSeq, the session once a SETUP gave one, and
    /// `headers`; its response (interleaved data before it is skipped).
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<RtspResponse> {
        self.cseq += 1;
        let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        req += "User-Agent: witness-tests\r\n";
        if let Some(s) = &self.session {
            req += &format!("Session: {s}\r\n");
        }
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        self.wire.stream.write_all(req.as_bytes())?;
        loop {
            match self.wire.read(None)? {
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some(Msg::Interleaved(_)) => {}
                Some(Msg::Rtsp {
                    start,
                    headers,
                    body,
                }) => {
                    let status = start
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, start.clone()))?;
                    if let Some(s) = header(&headers, "session") {
                        self.session = Some(s.split(';').next().unwrap_or(s).to_string());
                    }
                    return Ok(RtspResponse {
                        status,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
            }
        }
    }

    /// Whether the server closes this connection within `wait` (interleaved data is skipped).
    pub fn closed_by_server(&mut self, wait: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < wait {
            match self.wire.read(None) {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// The status a server answers to a SETUP of the first media of `url` over `transport`, after
/// a DESCRIBE on the same connection.
pub fn setup_status(url: &str, transport: Transport) -> u16 {
    let mut c = RtspClient::connect(url).unwrap();
    let d = c
        .request("DESCRIBE", url, &[("Accept", "application/sdp")])
        .unwrap();
    assert_eq!(d.status, 200, "{d:?}");
    let track = d.media_controls(url).into_iter().next().expect("a media");
    let port = udp_ports(2);
    c.request("SETUP", &track, &[("Transport", &transport.header(port))])
        .unwrap()
        .status
}

// ---------------------------------------------------------------------------------------------
// Hostile fakes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Silent,
    NoMedia,
    UnknownCodec,
}

type Log = Arc<Mutex<Vec<String>>>;

/// A fake RTSP server on threads in the test process, at `rtsp://127.0.0.1:PORT/room`. It
/// stops, closing its connections, when dropped.
pub struct FakeRtsp {
    port: u16,
    stop: Arc<AtomicBool>,
    log: Log,
    thread: Option<JoinHandle<()>>,
}

impl FakeRtsp {
    fn start(behaviour: Behaviour) -> FakeRtsp {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let (port, thread) = serve(stop.clone(), {
            let (stop, log) = (stop.clone(), log.clone());
            move |s| fake_connection(s, behaviour, &stop, &log)
        });
        FakeRtsp {
            port,
            stop,
            log,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/room", self.port)
    }

    /// The requests it got, in order: each its method, a SETUP with its Transport header
    /// (`SETUP RTP/AVP/TCP;unicast;interleaved=0-1`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeRtsp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections on a free loopback port until `stop`, each handled by `handle` on its
/// own thread (which must return soon after `stop`; reads time out every 100 ms).
fn serve(
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Clone + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    let handle = handle.clone();
                    conns.push(std::thread::spawn(move || handle(s)));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        for c in conns {
            let _ = c.join();
        }
    });
    (port, thread)
}

/// Accepts connections and never answers: DESCRIBE hangs.
pub struct SilentRtsp;

impl SilentRtsp {
    pub fn start() -> FakeRtsp {
        FakeRtsp::start(Behaviour::Silent)
    }
}

/// Answers OPTIONS, DESCRIBE (an H.264 video), SETUP (interleaved TCP or UDP), PLAY, keep-alives
/// and TEARDOWN correctly, and never sends a single RTP or RTCP packet.
pub struct NoMediaRtsp;

impl NoMediaRtsp {
    pub fn start() -> FakeRtsp {
        FakeRtsp::start(Behaviour::NoMedia)
    }
}

/// As [`NoMediaRtsp`], but the video is `X-UNKNOWN-CODEC/90000`, and after PLAY it sends an RTP
/// packet of noise every 40 ms (interleaved or over UDP, as SETUP asked).
pub struct UnsupportedCodecRtsp;

impl UnsupportedCodecRtsp {
    pub fn start() -> FakeRtsp {
        FakeRtsp::start(Behaviour::UnknownCodec)
    }
}

fn fake_sdp(behaviour: Behaviour) -> String {
    let media = if behaviour == Behaviour::UnknownCodec {
        "a=rtpmap:96 X-UNKNOWN-CODEC/90000\r\n".to_string()
    } else {
        // 640×360 constrained baseline, as VLC describes the H264Aac clip.
        "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42c01e;\
         sprop-parameter-sets=Z0LAHtoCgL/lwEQAAAMABAAAAwDIPFi6gA==,aM4PyA==\r\n"
            .to_string()
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Fake camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         a=control:*\r\na=range:npt=now-\r\nm=video 0 RTP/AVP 96\r\n{media}a=control:trackID=0\r\n"
    )
}

/// Where a fake sends its RTP.
enum MediaTo {
    Interleaved(u8),
    Udp(UdpSocket, SocketAddr),
}

fn fake_connection(stream: TcpStream, behaviour: Behaviour, stop: &Arc<AtomicBool>, log: &Log) {
    let peer = stream.peer_addr().unwrap();
    let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut wire = Wire::new(stream);
    let alive = Arc::new(AtomicBool::new(true));
    let mut media: Option<MediaTo> = None;
    let mut sender: Option<JoinHandle<()>> = None;
    while let Ok(Some(msg)) = wire.read(Some(stop)) {
        let Msg::Rtsp { start, headers, .. } = msg else {
            continue; // the client's RTCP
        };
        let mut words = start.split(' ');
        let method = words.next().unwrap_or_default().to_string();
        let url = words.next().unwrap_or_default().to_string();
        let transport = header(&headers, "transport").unwrap_or_default();
        log.lock().unwrap().push(if method == "SETUP" {
            format!("SETUP {transport}")
        } else {
            method.clone()
        });
        if behaviour == Behaviour::Silent {
            continue;
        }
        let session = "Session: 5E55104F;timeout=60\r\n";
        let (status, extra, body) = match method.as_str() {
            "OPTIONS" => (
                "200 OK",
                "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER\r\n"
                    .to_string(),
                String::new(),
            ),
            "DESCRIBE" => (
                "200 OK",
                format!(
                    "Content-Type: application/sdp\r\nContent-Base: {}/\r\n",
                    url.trim_end_matches('/')
                ),
                fake_sdp(behaviour),
            ),
            "SETUP" if transport.contains("/TCP") => {
                let channels = transport
                    .split(';')
                    .find_map(|p| p.strip_prefix("interleaved="))
                    .unwrap_or("0-1")
                    .to_string();
                let first = channels.split('-').next().and_then(|c| c.parse().ok());
                media = Some(MediaTo::Interleaved(first.unwrap_or(0)));
                (
                    "200 OK",
                    format!("Transport: RTP/AVP/TCP;unicast;interleaved={channels}\r\n{session}"),
                    String::new(),
                )
            }
            "SETUP" => {
                let client = transport
                    .split(';')
                    .find_map(|p| p.strip_prefix("client_port="))
                    .and_then(|p| p.split('-').next())
                    .and_then(|p| p.parse::<u16>().ok());
                match client {
                    None => ("461 Unsupported Transport", String::new(), String::new()),
                    Some(client) => {
                        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                        let server = sock.local_addr().unwrap().port();
                        media = Some(MediaTo::Udp(sock, SocketAddr::new(peer.ip(), client)));
                        (
                            "200 OK",
                            format!(
                                "Transport: RTP/AVP;unicast;client_port={}-{};\
                                 server_port={server}-{}\r\n{session}",
                                client,
                                client + 1,
                                server + 1
                            ),
                            String::new(),
                        )
                    }
                }
            }
            "PLAY" => {
                if behaviour == Behaviour::UnknownCodec
                    && sender.is_none()
                    && let Some(to) = media.take()
                {
                    let (writer, alive, stop) = (writer.clone(), alive.clone(), stop.clone());
                    sender = Some(std::thread::spawn(move || {
                        send_noise(to, &writer, &alive, &stop)
                    }));
                }
                (
                    "200 OK",
                    format!(
                        "{session}Range: npt=0.000-\r\n\
                         RTP-Info: url={}/trackID=0;seq=1;rtptime=0\r\n",
                        url.trim_end_matches('/')
                    ),
                    String::new(),
                )
            }
            "GET_PARAMETER" | "SET_PARAMETER" | "TEARDOWN" => {
                ("200 OK", session.to_string(), String::new())
            }
            _ => ("501 Not Implemented", String::new(), String::new()),
        };
        let cseq = header(&headers, "cseq").unwrap_or("0");
        let mut out =
            format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\nServer: fake-camera\r\n{extra}");
        if !body.is_empty() {
            out += &format!("Content-Length: {}\r\n", body.len());
        }
        out += "\r\n";
        out += &body;
        if writer.lock().unwrap().write_all(out.as_bytes()).is_err() || method == "TEARDOWN" {
            break;
        }
    }
    alive.store(false, Ordering::Relaxed);
    if let Some(s) = sender {
        let _ = s.join();
    }
}

/// An RTP packet (payload type 96, marker set) of noise every 40 ms until the connection ends.
fn send_noise(to: MediaTo, writer: &Mutex<TcpStream>, alive: &AtomicBool, stop: &AtomicBool) {
    let mut noise: u32 = 0x2545_f491;
    for seq in 1u16.. {
        if !alive.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            return;
        }
        let ts = u32::from(seq).wrapping_mul(3600);
        let mut pkt = vec![0x80, 0x80 | 96];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&0x5EED_CAFEu32.to_be_bytes());
        for _ in 0..200 {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            pkt.push(noise as u8);
        }
        let sent = match &to {
            MediaTo::Udp(sock, dest) => sock.send_to(&pkt, dest).map(|_| ()),
            MediaTo::Interleaved(channel) => {
                let mut frame = vec![b'$', *channel];
                frame.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
                frame.extend_from_slice(&pkt);
                writer.lock().unwrap().write_all(&frame)
            }
        };
        if sent.is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

// ---------------------------------------------------------------------------------------------
// Proxies in front of a real server

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyMode {
    RefuseTcp,
    CloseAfterPlay,
    /// Of the RTP packets interleaved on channel 0, drops every `drop_every`-th and garbles
    /// every `garble_every`-th (its RTP version set to 1), counting from PLAY.
    Lossy {
        drop_every: u64,
        garble_every: u64,
    },
}

/// An RTSP proxy on threads in the test process, in front of a real server at `upstream`: it
/// forwards RTSP (rewriting `127.0.0.1:PORT` between its own port and the server's, SDP and
/// `Content-Base` included) and interleaved data; UDP goes straight between server and client
/// (both on loopback). It stops, closing its connections, when dropped.
pub struct RtspProxy {
    port: u16,
    upstream: String,
    stop: Arc<AtomicBool>,
    log: Log,
    thread: Option<JoinHandle<()>>,
}

impl RtspProxy {
    fn start(upstream: &str, mode: ProxyMode) -> RtspProxy {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let (host, up_port) = host_port(upstream);
        let port_cell = Arc::new(Mutex::new(0u16));
        let (port, thread) = serve(stop.clone(), {
            let (stop, log, port_cell) = (stop.clone(), log.clone(), port_cell.clone());
            move |s| {
                let port = *port_cell.lock().unwrap();
                proxy_connection(s, (&host, up_port), port, mode, &stop, &log);
            }
        });
        *port_cell.lock().unwrap() = port;
        RtspProxy {
            port,
            upstream: upstream.to_string(),
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// The upstream URL with the proxy's port.
    pub fn url(&self) -> String {
        let mut u = url::Url::parse(&self.upstream).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.to_string()
    }

    /// The requests clients sent, as [`FakeRtsp::requests`], and what the proxy did on its own
    /// (`refused TCP`, `closed control after PLAY`, `dropped RTP`, `garbled RTP`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for RtspProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn proxy_connection(
    client: TcpStream,
    (host, up_port): (&str, u16),
    port: u16,
    mode: ProxyMode,
    stop: &Arc<AtomicBool>,
    log: &Log,
) {
    let Ok(up) = TcpStream::connect((host, up_port)) else {
        return;
    };
    up.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let ours = format!("127.0.0.1:{port}");
    let theirs = format!("{host}:{up_port}");
    let client_w = Arc::new(Mutex::new(client.try_clone().unwrap()));
    let mut up_w = up.try_clone().unwrap();
    let play_cseq: Arc<Mutex<Option<String>>> = Arc::default();
    let cut = Arc::new(AtomicBool::new(false));

    // Server to client.
    let down = {
        let (client_w, play_cseq, cut, stop, log) = (
            client_w.clone(),
            play_cseq.clone(),
            cut.clone(),
            stop.clone(),
            log.clone(),
        );
        let (ours, theirs) = (ours.clone(), theirs.clone());
        std::thread::spawn(move || {
            let mut wire = Wire::new(up);
            let mut rtp_packets = 0u64;
            while let Ok(Some(msg)) = wire.read(Some(&stop)) {
                if cut.load(Ordering::Relaxed) {
                    continue; // the client is cut off; the server's session lives on
                }
                let mut msg = msg.replace(&theirs, &ours);
                if let (
                    ProxyMode::Lossy {
                        drop_every,
                        garble_every,
                    },
                    Msg::Interleaved(b),
                ) = (mode, &mut msg)
                    && b.len() > 4
                    && b[1] == 0
                {
                    rtp_packets += 1;
                    if rtp_packets.is_multiple_of(drop_every) {
                        log.lock().unwrap().push("dropped RTP".into());
                        continue;
                    }
                    if rtp_packets.is_multiple_of(garble_every) {
                        b[4] = (b[4] & 0x3f) | 0x40;
                        log.lock().unwrap().push("garbled RTP".into());
                    }
                }
                let play_ok = match &msg {
                    Msg::Rtsp { start, headers, .. } => {
                        start.split(' ').nth(1).is_some_and(|s| s.starts_with('2'))
                            && header(headers, "cseq").is_some()
                            && play_cseq.lock().unwrap().as_deref() == header(headers, "cseq")
                    }
                    Msg::Interleaved(_) => false,
                };
                let mut w = client_w.lock().unwrap();
                if w.write_all(&msg.to_bytes()).is_err() {
                    break;
                }
                if play_ok {
                    let _ = w.shutdown(Shutdown::Both);
                    cut.store(true, Ordering::Relaxed);
                    log.lock().unwrap().push("closed control after PLAY".into());
                }
            }
            let _ = client_w.lock().unwrap().shutdown(Shutdown::Both);
        })
    };

    // Client to server.
    let mut wire = Wire::new(client);
    while let Ok(Some(msg)) = wire.read(Some(stop)) {
        if let Msg::Rtsp { start, headers, .. } = &msg {
            let method = start.split(' ').next().unwrap_or_default();
            let transport = header(headers, "transport").unwrap_or_default();
            log.lock().unwrap().push(if method == "SETUP" {
                format!("SETUP {transport}")
            } else {
                method.to_string()
            });
            let cseq = header(headers, "cseq").unwrap_or("0");
            if mode == ProxyMode::RefuseTcp && method == "SETUP" && transport.contains("/TCP") {
                log.lock().unwrap().push("refused TCP".into());
                let refusal = format!(
                    "RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\
                     Server: tcp-refusing-proxy\r\n\r\n"
                );
                if client_w
                    .lock()
                    .unwrap()
                    .write_all(refusal.as_bytes())
                    .is_err()
                {
                    break;
                }
                continue;
            }
            if mode == ProxyMode::CloseAfterPlay && method == "PLAY" {
                *play_cseq.lock().unwrap() = Some(cseq.to_string());
            }
        }
        if up_w
            .write_all(&msg.replace(&ours, &theirs).to_bytes())
            .is_err()
        {
            break;
        }
    }
    // The client left. If the proxy cut it off after PLAY, the server's connection stays open
    // (its session and its RTP over UDP go on) until the proxy is dropped.
    if !cut.load(Ordering::Relaxed) {
        let _ = up_w.shutdown(Shutdown::Both);
    }
    let _ = down.join();
}

/// A proxy that answers every SETUP asking for `RTP/AVP/TCP` with `461 Unsupported Transport`
/// itself and forwards everything else to `upstream`: a server a recorder can read only by
/// falling back to UDP. (VLC does this natively; this puts it in front of any server.)
pub struct TcpRefusingRtsp;

impl TcpRefusingRtsp {
    pub fn start(upstream: &str) -> RtspProxy {
        RtspProxy::start(upstream, ProxyMode::RefuseTcp)
    }
}

/// A proxy that closes the client's RTSP connection right after forwarding a successful PLAY
/// response, while keeping its own connection to `upstream` open: RTP over UDP keeps flowing
/// to a client that can no longer send keep-alives or TEARDOWN. (Over interleaved TCP the media
/// dies with the connection.)
pub struct ControlCloser;

impl ControlCloser {
    pub fn start(upstream: &str) -> RtspProxy {
        RtspProxy::start(upstream, ProxyMode::CloseAfterPlay)
    }
}

/// A proxy that forwards everything to `upstream` but loses RTP on the way, as a lossy link in
/// front of a camera over interleaved TCP would not, and a camera whose own sender skips and
/// mangles packets does: of the packets on interleaved channel 0 it drops every
/// `drop_every`-th and garbles every `garble_every`-th (an RTP version of 1).
pub struct LossyRtsp;

impl LossyRtsp {
    pub fn start(upstream: &str, drop_every: u64, garble_every: u64) -> RtspProxy {
        RtspProxy::start(
            upstream,
            ProxyMode::Lossy {
                drop_every,
                garble_every,
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Smoke tests: each fixture really serves ffmpeg, each fake fails it as it should

const READ: Duration = Duration::from_secs(2);

fn assert_serves(url: &str, transport: Transport, expected: &[(String, String)]) {
    let streams = probe_rtsp(url, transport, READ)
        .unwrap_or_else(|e| panic!("{url} over {transport:?}: {e}"));
    assert_eq!(codecs(&streams), expected, "{url} over {transport:?}");
    assert!(
        streams.iter().all(|s| s.packets > 0),
        "{url} over {transport:?}: media flows: {streams:?}"
    );
}

/// ffprobe gets nothing to count: it fails, or reads no packet.
fn assert_no_media(url: &str, transport: Transport) {
    if let Ok(streams) = probe_rtsp(url, transport, READ) {
        assert!(
            streams.iter().all(|s| s.packets == 0),
            "{url} over {transport:?}: {streams:?}"
        );
    }
}

#[test]
fn vlc_serves_h264_aac_over_udp_and_refuses_tcp_with_461() {
    let vlc = Vlc::start(Profile::H264Aac);
    assert_serves(&vlc.url(), Transport::Udp, &vlc.streams());
    assert_eq!(setup_status(&vlc.url(), Transport::Tcp), 461);
    assert!(probe_rtsp(&vlc.url(), Transport::Tcp, READ).is_err());
}

#[test]
fn vlc_serves_h265_pcma_over_udp_and_pauses_and_restarts() {
    let mut vlc = Vlc::start(Profile::H265Pcma);
    assert_serves(&vlc.url(), Transport::Udp, &vlc.streams());
    vlc.pause();
    assert!(probe_rtsp(&vlc.url(), Transport::Udp, READ).is_err());
    vlc.resume();
    let pid = vlc.pid();
    vlc.restart();
    assert_ne!(vlc.pid(), pid);
    assert_serves(&vlc.url(), Transport::Udp, &vlc.streams());
}

#[test]
fn perl_rtsp_server_serves_h264_aac_over_udp_refuses_tcp_with_400_and_pauses() {
    let perl = PerlRtsp::start(Profile::H264Aac);
    assert_serves(&perl.url(), Transport::Udp, &perl.streams());
    assert_eq!(setup_status(&perl.url(), Transport::Tcp), 400);
    assert_ne!(perl.pid(), perl.publisher_pid());
    perl.pause();
    assert!(
        RtspClient::connect(&perl.url())
            .and_then(|mut c| c.request("OPTIONS", &perl.url(), &[]))
            .is_err()
    );
    perl.resume();
    assert_serves(&perl.url(), Transport::Udp, &perl.streams());
}

#[test]
fn perl_rtsp_server_serves_h265_pcma_over_udp_until_the_publisher_stops() {
    let perl = PerlRtsp::start(Profile::H265Pcma);
    assert_serves(&perl.url(), Transport::Udp, &perl.streams());
    perl.pause_media();
    assert_no_media(&perl.url(), Transport::Udp);
    perl.resume_media();
}

#[test]
fn aio_rtsp_toolkit_serves_h264_aac_over_tcp_and_refuses_udp_with_461() {
    let aio = AioRtsp::start(Profile::H264Aac);
    assert_serves(&aio.url(), Transport::Tcp, &aio.streams());
    assert_eq!(setup_status(&aio.url(), Transport::Udp), 461);
}

#[test]
fn aio_rtsp_toolkit_serves_h265_video_over_tcp_and_pauses() {
    let aio = AioRtsp::start(Profile::H265Pcma);
    assert_serves(&aio.url(), Transport::Tcp, &aio.streams());
    aio.pause();
    assert!(
        RtspClient::connect(&aio.url())
            .and_then(|mut c| c.request("OPTIONS", &aio.url(), &[]))
            .is_err()
    );
    aio.resume();
    assert_ne!(aio.pid(), 0);
    assert_serves(&aio.url(), Transport::Tcp, &aio.streams());
}

#[test]
fn a_silent_server_times_ffprobe_out() {
    let fake = SilentRtsp::start();
    let t = Instant::now();
    assert!(probe_rtsp(&fake.url(), Transport::Tcp, READ).is_err());
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    let mut c = RtspClient::connect(&fake.url()).unwrap();
    let e = c.request("DESCRIBE", &fake.url(), &[]).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    assert_eq!(fake.requests().first().map(String::as_str), Some("OPTIONS"));
}

#[test]
fn a_server_without_media_gives_ffprobe_no_packets() {
    let fake = NoMediaRtsp::start();
    assert_eq!(setup_status(&fake.url(), Transport::Tcp), 200);
    assert_eq!(setup_status(&fake.url(), Transport::Udp), 200);
    for transport in [Transport::Tcp, Transport::Udp] {
        let streams = probe_rtsp(&fake.url(), transport, READ).unwrap();
        let expected = ProbedStream {
            kind: "video".into(),
            codec: "h264".into(),
            packets: 0,
        };
        assert_eq!(streams, [expected], "{transport:?}");
    }
    assert!(
        fake.requests().contains(&"PLAY".to_string()),
        "{:?}",
        fake.requests()
    );
}

#[test]
fn a_server_with_an_unknown_codec_gives_ffprobe_packets_of_no_codec() {
    let fake = UnsupportedCodecRtsp::start();
    for transport in [Transport::Tcp, Transport::Udp] {
        let streams = probe_rtsp(&fake.url(), transport, READ).unwrap();
        assert!(
            matches!(&streams[..], [s] if s.kind == "video" && s.codec.is_empty() && s.packets > 0),
            "{transport:?}: {streams:?}"
        );
    }
    let requests = fake.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("SETUP RTP/AVP/TCP"))
            && requests.iter().any(|r| r.starts_with("SETUP RTP/AVP/UDP")),
        "{requests:?}"
    );
}

#[test]
fn a_tcp_refusing_proxy_leaves_only_udp() {
    let perl = PerlRtsp::start(Profile::H264Aac);
    let proxy = TcpRefusingRtsp::start(&perl.url());
    assert_eq!(setup_status(&proxy.url(), Transport::Tcp), 461);
    assert!(probe_rtsp(&proxy.url(), Transport::Tcp, READ).is_err());
    assert_serves(&proxy.url(), Transport::Udp, &perl.streams());
    assert!(
        proxy.requests().contains(&"refused TCP".to_string()),
        "{:?}",
        proxy.requests()
    );
}

#[test]
fn a_control_closer_cuts_rtsp_after_play_while_rtp_flows() {
    let vlc = Vlc::start(Profile::H264Aac);
    let proxy = ControlCloser::start(&vlc.url());
    let url = proxy.url();
    let mut c = RtspClient::connect(&url).unwrap();
    let d = c
        .request("DESCRIBE", &url, &[("Accept", "application/sdp")])
        .unwrap();
    assert_eq!(d.status, 200, "{d:?}");
    let track = d.media_controls(&url).into_iter().next().unwrap();
    assert!(
        track.contains(&url),
        "the proxy's own URLs in the SDP: {track}"
    );
    let rtp = UdpSocket::bind(("127.0.0.1", udp_ports(2))).unwrap();
    let port = rtp.local_addr().unwrap().port();
    let s = c
        .request(
            "SETUP",
            &track,
            &[("Transport", &Transport::Udp.header(port))],
        )
        .unwrap();
    assert_eq!(s.status, 200, "{s:?}");
    let p = c.request("PLAY", &url, &[("Range", "npt=0.000-")]).unwrap();
    assert_eq!(p.status, 200, "{p:?}");
    assert!(c.closed_by_server(Duration::from_secs(2)));
    // RTP keeps coming for a client whose control connection is gone.
    std::thread::sleep(Duration::from_millis(500));
    rtp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let t = Instant::now();
    let mut packets = 0;
    while t.elapsed() < Duration::from_secs(1) {
        if rtp.recv(&mut buf).is_ok() {
            packets += 1;
        }
    }
    assert!(packets > 10, "{packets} RTP packets after the cut");
    assert!(
        proxy
            .requests()
            .contains(&"closed control after PLAY".to_string()),
        "{:?}",
        proxy.requests()
    );
}
