//! Checking a room before a session (`POST /api/v1/rooms/{id}/probe`): the simulator's cameras
//! and microphone as a recording would see them; VLC, which only does UDP; a camera nothing
//! listens for, one that accepts and never answers, one that refuses the credentials, one with
//! a hostile stream description (small RTSP responders in this file) and one that never sends
//! media (from `peers`), each said in a plain sentence within a bounded time; room creation
//! with `"probe": true`; the audit entry.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

fn source<'a>(probe: &'a Value, name: &str) -> &'a Value {
    probe["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {probe:#}"))
}

fn codec<'a>(src: &'a Value, media: &str) -> &'a Value {
    src["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["media"] == media)
        .unwrap_or_else(|| panic!("no {media} stream in {src:#}"))
}

fn problems(src: &Value) -> String {
    src["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn room(server: &Server, name: &str, sources: Value) -> String {
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": name, "kind": "bid_opening", "sources": sources})),
        )
        .await;
    room["id"].as_str().unwrap().to_string()
}

/// What the camera does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Accepts and never answers.
    Silent,
    /// Answers DESCRIBE with 401 Unauthorized.
    Unauthorized,
    /// Describes a dozen hostile streams and refuses every SETUP (461).
    Hostile,
}

/// A minimal RTSP responder on a free port, one thread per connection, for the test's life.
fn fake_camera(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve(conn, behaviour, port));
        }
    });
    port
}

fn hostile_sdp(port: u16) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=\u{1}\u{7f}<script>\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:rtsp://127.0.0.1:{port}/x/\r\n\
         m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=%%%,,,\r\na=control:track1\r\n\
         m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMX/8000\r\na=control:track2\r\n\
         m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:track3\r\n\
         m=video 0 RTP/AVP 255\r\na=rtpmap:255 /\r\na=control:track4\r\n\
         m=audio 0 RTP/AVP 98\r\na=rtpmap:98 {}/0\r\na=control:track5\r\n",
        "Z".repeat(5000)
    );
    for i in 0..12 {
        sdp += &format!(
            "m=video 0 RTP/AVP {}\r\na=rtpmap:{} H264/90000\r\na=control:extra{i}\r\n",
            100 + i,
            100 + i
        );
    }
    sdp
}

fn serve(mut conn: TcpStream, behaviour: Behaviour, port: u16) {
    if matches!(behaviour, Behaviour::Silent) {
        // Hold the connection open without a word until the client gives up.
        let mut sink = [0u8; 1024];
        while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        return;
    }
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = conn.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let request = String::from_utf8_lossy(&pending[..end]).to_string();
            pending.drain(..end + 4);
            let method = request.split_whitespace().next().unwrap_or("").to_string();
            let cseq = request
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("cseq:")
                        .map(|v| v.trim().to_string())
                })
                .unwrap_or_else(|| "0".into());
            let reply = match (behaviour, method.as_str()) {
                (_, "OPTIONS") => format!(
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
                ),
                (Behaviour::Unauthorized, "DESCRIBE") => format!(
                    "RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: Basic realm=\"camera\"\r\n\r\n"
                ),
                (_, "DESCRIBE") => {
                    let sdp = hostile_sdp(port);
                    format!(
                        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\nContent-Base: rtsp://127.0.0.1:{port}/x/\r\nContent-Length: {}\r\n\r\n{sdp}",
                        sdp.len()
                    )
                }
                (_, "SETUP") => {
                    format!("RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n")
                }
                _ => format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n"),
            };
            if conn.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_the_simulated_room_as_a_recording_would() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;

    // Witness staff check a room before they start it; the probe is audited with its verdict.
    let t = Instant::now();
    let (status, probe) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/rooms/{room}/probe"),
            None,
        )
        .await;
    let took = t.elapsed();
    assert_eq!(status, 200, "{probe}");
    eprintln!("probe of the simulated room in {took:?}:\n{probe:#}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(probe["room_id"], room.as_str());
    assert_eq!(probe["recordable"], true, "{probe:#}");
    assert_eq!(probe["listen_seconds"], 4.0);

    for name in ["cam1", "cam2", "mic1"] {
        let s = source(&probe, name);
        assert_eq!(s["reachable"], true, "{name}: {s:#}");
        assert_eq!(s["recordable"], true, "{name}: {s:#}");
        assert_eq!(s["transport"], "tcp", "{name}: {s:#}");
        assert_eq!(s["transport_setting"], "auto");
        assert!(
            s["problems"].as_array().unwrap().is_empty(),
            "{name}: {s:#}"
        );
        assert!(s["bitrate_bps"].as_u64().unwrap() > 0, "{name}: {s:#}");
        // The simulator's RTCP sender reports carry this machine's clock.
        let offset = s["clock_offset_seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: no clock offset: {s:#}"));
        assert!(offset.abs() < 1.0, "{name}: offset {offset}");
        assert!(s["clock_note"].is_null());
        let audio = codec(s, "audio");
        assert_eq!(audio["encoding"], "MPEG4-GENERIC");
        assert_eq!(audio["codec"], "aac");
        assert_eq!(audio["recorded"], true);
        assert_eq!(audio["sample_rate"], 48000);
        assert!(audio["bitrate_bps"].as_u64().unwrap() > 0);
    }
    let cam = source(&probe, "cam1");
    let video = codec(cam, "video");
    assert_eq!(video["encoding"], "H264");
    assert_eq!(video["codec"], "h264");
    assert_eq!(video["recorded_codec"], "h264");
    assert_eq!(video["keyframe"], true);
    assert_eq!(cam["resolution"], json!({"width": 640, "height": 360}));
    let fps = cam["frame_rate"].as_f64().unwrap();
    assert!((fps - 25.0).abs() < 1.0, "frame rate {fps}");
    // 600 kbit/s of video and 64 kbit/s of audio, give or take the encoder's start.
    let bps = cam["bitrate_bps"].as_u64().unwrap();
    assert!((200_000..2_000_000).contains(&bps), "bitrate {bps}");
    assert_eq!(cam["attempts"][0]["transport"], "tcp");
    assert_eq!(cam["attempts"][0]["outcome"], "media");
    let mic = source(&probe, "mic1");
    assert_eq!(mic["codecs"].as_array().unwrap().len(), 1, "{mic:#}");
    assert!(mic["resolution"].is_null());

    // A shorter window on request; a number out of range is clamped, not refused.
    let short = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/probe?seconds=0"),
            None,
        )
        .await;
    assert_eq!(short["listen_seconds"], 1.0);
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/probe?seconds=abc"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = server
        .call("POST", "/api/v1/rooms/no-such-room/probe", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("room_not_found"))
    );

    let trail = crate::rbac::audit_trail(&server).await;
    let probes: Vec<&Value> = trail
        .iter()
        .filter(|e| e["action"] == "room_probe")
        .collect();
    assert_eq!(probes.len(), 4, "{probes:#?}");
    assert_eq!(probes[0]["actor"], "t-witness-staff/token:tests");
    assert_eq!(probes[0]["target"], room.as_str());
    assert_eq!(probes[0]["outcome"], "recordable");
    assert_eq!(probes[3]["outcome"], "failed: HTTP 404");
    // Regulators, archive clerks and discipline officers do not touch cameras.
    let (status, _) = server
        .call_as(
            Some("regulator"),
            "POST",
            &format!("/api/v1/rooms/{room}/probe"),
            None,
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn cameras_that_cannot_be_reached_are_said_plainly_and_quickly() {
    let server = Server::start().await;
    let refused = free_port();
    let silent = fake_camera(Behaviour::Silent);
    let locked = fake_camera(Behaviour::Unauthorized);
    let hostile = fake_camera(Behaviour::Hostile);
    let mute = crate::peers::NoMediaRtsp::start();
    let room = room(
        &server,
        "开标室 探测",
        json!([
            {"name": "refused", "url": format!("rtsp://127.0.0.1:{refused}/cam")},
            {"name": "silent", "url": format!("rtsp://127.0.0.1:{silent}/cam")},
            {"name": "locked", "url": format!("rtsp://127.0.0.1:{locked}/cam")},
            {"name": "hostile", "url": format!("rtsp://127.0.0.1:{hostile}/x")},
            {"name": "mute", "url": mute.url()},
        ]),
    )
    .await;

    let t = Instant::now();
    let probe = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/probe?seconds=2"),
            None,
        )
        .await;
    let took = t.elapsed();
    eprintln!("probe of the bad room in {took:?}:\n{probe:#}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert_eq!(probe["recordable"], false);

    let s = source(&probe, "refused");
    assert_eq!(
        (&s["reachable"], &s["recordable"]),
        (&json!(false), &json!(false))
    );
    assert!(s["transport"].is_null());
    assert!(
        problems(s).contains(&format!(
            "nothing listens on 127.0.0.1:{refused} (connection refused)"
        )),
        "{s:#}"
    );
    assert!(s["elapsed_seconds"].as_f64().unwrap() < 1.0, "{s:#}");

    let s = source(&probe, "silent");
    assert_eq!(
        (&s["reachable"], &s["recordable"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(
        problems(s),
        format!("127.0.0.1:{silent} accepts connections but did not answer RTSP within 2 s")
    );
    // One attempt: another transport cannot help a camera whose RTSP is silent.
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s:#}");

    let s = source(&probe, "locked");
    assert_eq!(
        (&s["reachable"], &s["recordable"]),
        (&json!(true), &json!(false))
    );
    assert!(
        problems(s).contains(
            "the camera answered 401 Unauthorized (check the source's user name and password)"
        ),
        "{s:#}"
    );

    // The hostile description is read without harm: at most 8 streams listed, camera text cut
    // short, the stream without a branch named, both transports refused.
    let s = source(&probe, "hostile");
    assert_eq!(
        (&s["reachable"], &s["recordable"]),
        (&json!(true), &json!(false))
    );
    let codecs = s["codecs"].as_array().unwrap();
    assert!(!codecs.is_empty() && codecs.len() <= 8, "{s:#}");
    assert!(
        codecs
            .iter()
            .all(|c| c["encoding"].as_str().unwrap().len() <= 80)
    );
    let said = problems(s);
    assert!(
        said.contains("audio PCMX: no branch in template default, it would not be recorded"),
        "{said}"
    );
    assert!(said.contains("camera refused TCP"), "{said}");
    assert!(said.contains("camera refused UDP"), "{said}");
    assert!(said.contains("streams more than the 8 checked"), "{said}");
    let attempts: Vec<&str> = s["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["transport"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, ["tcp", "udp"]);

    // A camera that answers everything and sends nothing: both transports tried, in time.
    let s = source(&probe, "mute");
    assert_eq!(
        (&s["reachable"], &s["recordable"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(
        problems(s),
        "no media over TCP within 2 s; no media over UDP within 2 s",
        "{s:#}"
    );
    assert_eq!(codec(s, "video")["codec"], "h264");

    // The server is still well.
    server.ok("GET", "/api/v1/rooms", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn room_creation_with_probe_refuses_a_room_that_cannot_be_recorded() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let dead = free_port();
    let bad = json!({
        "name": "开标室 坏", "kind": "bid_opening", "probe": true,
        "sources": [
            {"name": "cam1", "url": sim.url("cam1")},
            {"name": "door", "url": format!("rtsp://127.0.0.1:{dead}/cam")},
        ]
    });
    let (status, body) = server
        .call("POST", "/api/v1/rooms", Some(bad.clone()))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "source_not_recordable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"door\"") && message.contains("connection refused"),
        "{message}"
    );
    assert!(!message.contains("\"cam1\""), "{message}");
    let rooms = server.ok("GET", "/api/v1/rooms", None).await;
    assert!(rooms.as_array().unwrap().is_empty(), "{rooms}");

    // Invalid input is refused before any camera is called.
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "x", "kind": "bid_opening", "probe": "yes", "sources": []})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_body"))
    );

    // The good room is created, with its probe.
    let good = json!({
        "name": "开标室 好", "kind": "bid_opening", "probe": true,
        "sources": [
            {"name": "cam1", "url": sim.url("cam1")},
            {"name": "mic1", "url": sim.url("mic1"), "media": "audio"},
        ]
    });
    let (status, body) = server.call("POST", "/api/v1/rooms", Some(good)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].is_string());
    assert_eq!(body["probe"]["recordable"], true, "{body:#}");
    assert_eq!(source(&body["probe"], "cam1")["transport"], "tcp");

    // Without "probe" nothing changes: the bad room is created as before.
    let mut unprobed = bad;
    unprobed.as_object_mut().unwrap().remove("probe");
    let (status, body) = server.call("POST", "/api/v1/rooms", Some(unprobed)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("probe").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_a_vlc_camera_that_only_does_udp() {
    use crate::peers::{Profile, Vlc};
    let vlc = Vlc::start(Profile::H265Pcma);
    let server = Server::start().await;
    let room = room(
        &server,
        "评标室 VLC",
        json!([{"name": "vlc", "url": vlc.url()}]),
    )
    .await;
    let probe = server
        .ok("POST", &format!("/api/v1/rooms/{room}/probe"), None)
        .await;
    eprintln!("probe of VLC:\n{probe:#}");
    let s = source(&probe, "vlc");
    assert_eq!(s["reachable"], true, "{s:#}");
    assert_eq!(s["recordable"], true, "{s:#}");
    assert_eq!(s["transport"], "udp", "{s:#}");
    let video = codec(s, "video");
    assert_eq!(
        (&video["encoding"], &video["codec"]),
        (&json!("H265"), &json!("h265"))
    );
    assert_eq!(s["resolution"], json!({"width": 640, "height": 360}));
    let audio = codec(s, "audio");
    assert_eq!(
        (&audio["encoding"], &audio["codec"]),
        (&json!("PCMA"), &json!("pcma"))
    );
    // The default template keeps G.711 as AAC.
    assert_eq!(audio["recorded_codec"], "aac");
    assert!(
        problems(s).contains("camera refused TCP (every SETUP was refused); UDP works"),
        "{s:#}"
    );
    let attempts: Vec<(&str, &str)> = s["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["transport"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts[1], ("udp", "media"), "{attempts:?}");

    // What worked is remembered: the next probe (and session) tries UDP first.
    let again = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/probe?seconds=2"),
            None,
        )
        .await;
    let s = source(&again, "vlc");
    assert_eq!(s["attempts"][0]["transport"], "udp", "{s:#}");
    assert!(s["problems"].as_array().unwrap().is_empty(), "{s:#}");
}
