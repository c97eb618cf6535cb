//! Completeness: every moment of a session is a segment or a gap entry that says why, whatever
//! the cameras do; the camera's clock is used when it agrees with the server's and checked
//! against the time the simulator puts in each frame; verification says INTACT, INCOMPLETE or
//! TAMPERED with distinct exit codes.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// The camera's wall clock (Unix seconds) that the simulator put into the first frame of a
/// segment file (`witness::simulator::CLOCK_SEI_UUID` then ASCII microseconds).
fn frame_clock(segment: &std::path::Path) -> f64 {
    let bytes = std::fs::read(segment).unwrap();
    let uuid = witness::simulator::CLOCK_SEI_UUID;
    let at = bytes
        .windows(uuid.len())
        .position(|w| w == uuid)
        .unwrap_or_else(|| panic!("{}: no clock SEI in the segment", segment.display()));
    let digits: String = bytes[at + uuid.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse::<i64>().unwrap() as f64 / 1e6
}

/// A segment's recorded start is the time the camera put into its first frame (within 0.25 s).
fn assert_starts_at_its_first_frame(server: &Server, seg: &Value) {
    let picture = frame_clock(&server.objects().join(seg["object_key"].as_str().unwrap()));
    let recorded = unix_seconds(&seg["start"]);
    assert!(
        (recorded - picture).abs() < 0.25,
        "seq {}: recorded {recorded:.3}, the frame says {picture:.3}",
        seg["seq"]
    );
}

async fn one_camera_room(server: &Server, name: &str, url: &str) -> String {
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": name, "kind": "bid_opening",
                "sources": [{"name": "cam1", "url": url}]})),
        )
        .await;
    room["id"].as_str().unwrap().to_string()
}

async fn stop(server: &Server, room: &str) -> Value {
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await
}

async fn verify(server: &Server, session: &str) -> Value {
    server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn camera_clock_is_used_within_the_bound_and_matches_the_picture() {
    // The camera's clock runs 1.5 s ahead of this machine's: within the 2 s bound.
    let sim = Simulator::start(&["--clock-offset", "1.5"]);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 时钟", &sim.url("cam1")).await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-CLOCK").await;
    server
        .wait_session(&session, "6 segments", Duration::from_secs(40), |s| {
            segments(s, "cam1") >= 6
        })
        .await;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    let tiled = assert_tiled(&stopped, "cam1");
    assert!(outage_gaps(&tiled).is_empty(), "{tiled:#?}");
    let segs = recording(&stopped, "cam1")["segments"]
        .as_array()
        .unwrap()
        .clone();
    for seg in &segs {
        assert_eq!(seg["clock"], "rtcp-ntp", "the camera sends RTCP: {seg}");
        let note = seg["note"].as_str().unwrap();
        let offset: f64 = note
            .strip_prefix("camera clock ")
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("offset not in the note: {note}"));
        assert!(
            (offset - 1.5).abs() < 0.3,
            "camera clock offset {offset}: {seg}"
        );
        assert_starts_at_its_first_frame(&server, seg);
    }
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
    let metrics = server.text("/metrics").await;
    assert!(
        !metrics.contains("witness_clock_corrections_total{") || metrics.contains(" 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn camera_clock_beyond_the_bound_gives_way_to_the_server_clock() {
    // An hour ahead: the chain uses this server's clock and says why.
    let sim = Simulator::start(&["--clock-offset", "3600"]);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 钟快", &sim.url("cam1")).await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-SKEW").await;
    let live = server
        .wait_session(&session, "4 segments", Duration::from_secs(40), |s| {
            segments(s, "cam1") >= 4
        })
        .await;
    let metrics = server.text("/metrics").await;
    let corrections: f64 = metrics
        .lines()
        .find(|l| l.starts_with("witness_clock_corrections_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no clock corrections metric: {metrics}"));
    assert!(corrections >= 3.0, "{metrics}");
    let _ = live;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    let tiled = assert_tiled(&stopped, "cam1");
    assert!(outage_gaps(&tiled).is_empty(), "{tiled:#?}");
    let now = unix_now();
    for seg in recording(&stopped, "cam1")["segments"].as_array().unwrap() {
        assert_eq!(seg["clock"], "server", "{seg}");
        assert!(
            seg["note"]
                .as_str()
                .unwrap()
                .contains("beyond the 2.0 s bound"),
            "{seg}"
        );
        assert!(
            unix_seconds(&seg["start"]) < now,
            "no date from the future: {seg}"
        );
    }
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
}

/// The number of RTP packets a segment's note names as lost or unreadable (0 when none).
fn damaged_packets(seg: &Value) -> u64 {
    let note = seg["note"].as_str().unwrap_or("");
    note.split("; ")
        .find_map(|part| {
            let (n, rest) = part.split_once(' ')?;
            rest.starts_with("RTP packet").then(|| n.parse().ok())?
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn rtp_lost_or_garbled_over_tcp_is_named_in_the_segments_it_fell_in() {
    // A camera whose sender skips every 97th video packet and mangles every 89th (a wrong RTP
    // version), over interleaved TCP: frames are damaged, the recording goes on, and the
    // entry of each segment says how many packets were missing or unreadable in it.
    let sim = Simulator::start(&[]);
    let lossy = crate::peers::LossyRtsp::start(&sim.url("cam1"), 97, 89);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 丢包", &lossy.url()).await;
    let session = server.start_recording(&room, "ZB-LOSS").await;
    server
        .wait_session(&session, "5 segments", Duration::from_secs(40), |s| {
            segments(s, "cam1") >= 5
        })
        .await;
    let card = server.room_card(&room).await;
    let receiver = card["sources"][0]["receiver"].clone();
    let stopped = stop(&server, &room).await;
    let log = lossy.requests();
    let lost = log.iter().filter(|r| *r == "dropped RTP").count() as u64;
    let garbled = log.iter().filter(|r| *r == "garbled RTP").count() as u64;
    assert!(lost >= 5 && garbled >= 5, "the proxy did its part: {log:?}");
    // Damaged frames are not an outage: the segments tile the session.
    let tiled = assert_tiled(&stopped, "cam1");
    assert!(outage_gaps(&tiled).is_empty(), "{tiled:#?}");
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
    if receiver == "gstreamer" {
        // rtspsrc's graph (WITNESS_RECEIVER=gstreamer) records through loss without naming it.
        return;
    }
    assert_eq!(receiver, "direct", "{card}");
    let segs = recording(&stopped, "cam1")["segments"]
        .as_array()
        .unwrap()
        .clone();
    let named: Vec<u64> = segs.iter().map(damaged_packets).collect();
    // About 3 of each per 2 s segment: every whole segment names some.
    let whole = &named[..named.len() - 1];
    assert!(whole.iter().all(|&n| n > 0), "{named:?}\n{segs:#?}");
    // A garbled packet is counted once: unreadable, and not again as a gap in the sequence.
    let total: u64 = named.iter().sum();
    assert!(
        total <= lost + garbled,
        "{total} named, {lost} dropped and {garbled} garbled: {named:?}"
    );
    // Those of the last moments, after the last frame written, are named by no segment.
    assert!(
        total * 2 >= lost + garbled,
        "{total} named, {lost} dropped and {garbled} garbled: {named:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_frozen_camera_is_a_gap_of_its_own_and_the_others_go_on() {
    // Two cameras from two simulator processes: one is frozen (SIGSTOP) with its TCP
    // connection open for 10 s, then thawed.
    let steady = Simulator::start(&[]);
    let frozen = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "开标室 冻结", "kind": "bid_opening", "sources": [
                    {"name": "steady", "url": steady.url("cam1")},
                    {"name": "frozen", "url": frozen.url("cam1")},
                ]}),
            ),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-FREEZE").await;
    server
        .wait_session(&session, "3 segments each", Duration::from_secs(30), |s| {
            segments(s, "steady") >= 3 && segments(s, "frozen") >= 3
        })
        .await;
    let froze = unix_now();
    frozen.signal("STOP");
    // The room shows the frozen source as reconnecting within the watchdog time (3 s).
    let t = Instant::now();
    loop {
        let me = server.room_card(&room).await;
        let src = me["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "frozen")
            .unwrap()
            .clone();
        if src["state"] == "reconnecting" {
            assert!(
                src["problem"].as_str().is_some_and(|p| !p.is_empty()),
                "{src}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "not flagged: {me}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(t.elapsed())).await;
    frozen.signal("CONT");
    let thawed = unix_now();
    server
        .wait_session(
            &session,
            "frozen records again",
            Duration::from_secs(30),
            |s| {
                recording(s, "frozen")["state"] == "recording"
                    && tiles(s, "frozen")
                        .last()
                        .is_some_and(|t| !t.gap && t.start > thawed)
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);

    let steady_tiles = assert_tiled(&stopped, "steady");
    assert!(
        outage_gaps(&steady_tiles).is_empty(),
        "the other camera goes on: {steady_tiles:#?}"
    );
    let frozen_tiles = assert_tiled(&stopped, "frozen");
    let gaps = outage_gaps(&frozen_tiles);
    assert_eq!(gaps.len(), 1, "{frozen_tiles:#?}");
    let outage = thawed - froze;
    assert!(
        (gaps[0].seconds() - outage).abs() <= 1.0 && (gaps[0].start - froze).abs() <= 1.0,
        "gap {:.3} s from {:.3}; frozen {outage:.3} s from {froze:.3}",
        gaps[0].seconds(),
        gaps[0].start
    );
    assert!(gaps[0].text.contains("no media"), "{}", gaps[0].text);
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
}

/// An encoder that stops sending keyframes while its other frames flow: no segment can start,
/// so the watchdog ends the run; the hole is one gap that says so, and
/// recording resumes with the first keyframe once they come back. Never a silent hole.
#[tokio::test(flavor = "multi_thread")]
async fn an_encoder_without_keyframes_is_a_named_gap_not_a_silent_hole() {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold-keyframes");
    let sim = Simulator::start(&["--hold-keyframes-while", hold.to_str().unwrap()]);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 关键帧", &sim.url("cam1")).await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-NOKEY").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let held = unix_now();
    std::fs::write(&hold, b"").unwrap();
    // Past the watchdog (3 s), the run has ended and the source reconnects, again and again.
    tokio::time::sleep(Duration::from_secs(9)).await;
    std::fs::remove_file(&hold).unwrap();
    let released = unix_now();
    server
        .wait_session(&session, "segments again", Duration::from_secs(30), |s| {
            tiles(s, "cam1")
                .last()
                .is_some_and(|t| !t.gap && t.start > released)
        })
        .await;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    let tiled = assert_tiled(&stopped, "cam1");
    let gaps = outage_gaps(&tiled);
    assert_eq!(gaps.len(), 1, "{tiled:#?}");
    assert!(
        gaps[0].text.contains("no video keyframe"),
        "the gap says why: {}",
        gaps[0].text
    );
    // The hole starts where the last segment before the hold ends (a segment and a GOP at most
    // before it) and ends with the first keyframe after they came back (a reconnect later).
    assert!(
        (held - 1.5..=held + 6.5).contains(&gaps[0].start)
            && (released - 0.5..=released + 8.0).contains(&gaps[0].end),
        "gap {:.3}–{:.3}, keyframes held {held:.3}–{released:.3}",
        gaps[0].start,
        gaps[0].end
    );
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
}

/// Records one camera of a simulator started with `hold_flag` (`--hold-audio-while` …): once 3
/// segments are in, that stream is held for `held`, flows again for `after`, and the room is
/// stopped. Returns the simulator and server (alive), the session, how many tiles came before
/// the hold, and the stopped session's view.
async fn hold_one_stream_briefly(
    hold_flag: &str,
    room_name: &str,
    project: &str,
    held: Duration,
    after: Duration,
) -> (Simulator, Server, String, usize, Value) {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    let sim = Simulator::start(&[hold_flag, hold.to_str().unwrap()]);
    let server = Server::start().await;
    let room = one_camera_room(&server, room_name, &sim.url("cam1")).await;
    let session = server.start_recording(&room, project).await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let before = tiles(
        &server
            .ok("GET", &format!("/api/v1/sessions/{session}"), None)
            .await,
        "cam1",
    )
    .len();
    std::fs::write(&hold, b"").unwrap();
    tokio::time::sleep(held).await;
    std::fs::remove_file(&hold).unwrap();
    tokio::time::sleep(after).await;
    let stopped = stop(&server, &room).await;
    (sim, server, session, before, stopped)
}

/// A microphone that drops out for less than the watchdog time while the picture goes on: no
/// gap (the source never stopped), but every segment written meanwhile without any sound says
/// so in its chain entry, and the session still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn sound_that_drops_out_briefly_is_named_in_the_segments_without_it() {
    // Two and a half seconds without sound: at least one whole 1 s segment has none.
    let (_sim, server, session, before, stopped) = hold_one_stream_briefly(
        "--hold-audio-while",
        "开标室 话筒",
        "ZB-MIC",
        Duration::from_millis(2500),
        Duration::from_secs(3),
    )
    .await;
    let tiled = assert_tiled(&stopped, "cam1");
    let silent: Vec<&Tile> = tiled
        .iter()
        .filter(|t| {
            !t.gap
                && t.text
                    .contains("no audio in this segment: the camera sent none")
        })
        .collect();
    assert!(!silent.is_empty(), "{tiled:#?}");
    // Only segments written while the sound was held, none of the ones before.
    assert!(silent.iter().all(|t| t.seq as usize > before), "{tiled:#?}");
    assert!(
        tiled.iter().filter(|t| !t.gap).count() > silent.len() + 3,
        "segments with sound after it too: {tiled:#?}"
    );
    let report = verify(&server, &session).await;
    crate::harness::assert_report_intact(&report, "session");
}

/// A picture that pauses for less than the watchdog time (1.3 s, the sound flowing on) is no
/// gap, but the segment it fell in says where and for how long it had no picture.
#[tokio::test(flavor = "multi_thread")]
async fn a_picture_that_pauses_briefly_is_named_in_the_segment_it_fell_in() {
    let (_sim, server, session, before, stopped) = hold_one_stream_briefly(
        "--hold-video-while",
        "开标室 画面",
        "ZB-PAUSE",
        Duration::from_millis(1300),
        Duration::from_secs(4),
    )
    .await;
    let tiled = assert_tiled(&stopped, "cam1");
    assert!(outage_gaps(&tiled).is_empty(), "no gap: {tiled:#?}");
    let paused: Vec<&Tile> = tiled
        .iter()
        .filter(|t| !t.gap && t.text.contains("no video for 1."))
        .collect();
    assert_eq!(paused.len(), 1, "{tiled:#?}");
    assert!(paused[0].seq as usize > before, "{tiled:#?}");
    assert!(paused[0].text.contains("s into this segment"), "{tiled:#?}");
    let report = verify(&server, &session).await;
    crate::harness::assert_report_intact(&report, "session");
}

/// A recorder that fails (a defect: here a panic injected into the debug build) is started
/// again at once: its source goes on recording, the time it was down is a gap that names the
/// failure, and the other sources never notice.
#[tokio::test(flavor = "multi_thread")]
async fn a_recorder_that_fails_is_started_again_and_its_gap_says_why() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    server.kill();
    server
        .env
        .push(("WITNESS_FAULT_RECORDER_PANIC".into(), "cam2".into()));
    server.restart().await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-PANIC").await;
    server
        .wait_session(
            &session,
            "cam2 failed and records again",
            Duration::from_secs(30),
            |s| {
                gaps(s, "cam2")
                    .iter()
                    .any(|g| g.contains("the recorder failed"))
                    && segments(s, "cam2") >= 4
            },
        )
        .await;
    let stopped = stop(&server, &room).await;
    let tiled = assert_tiled(&stopped, "cam2");
    let failed: Vec<&Tile> = outage_gaps(&tiled)
        .into_iter()
        .filter(|g| g.text.contains("injected fault in the recorder of cam2"))
        .collect();
    assert_eq!(failed.len(), 1, "{tiled:#?}");
    assert!(
        tiled.iter().any(|t| !t.gap && t.seq > failed[0].seq),
        "recording went on after the failure: {tiled:#?}"
    );
    for other in ["cam1", "mic1"] {
        let tiled = assert_tiled(&stopped, other);
        assert!(outage_gaps(&tiled).is_empty(), "{other}: {tiled:#?}");
    }
    // What the failed run had written (its first segment, held back until the clock was known
    // or not, and the file it had open) is in the chain before the failure's gap; nothing is
    // left in the spool.
    assert!(
        tiled.iter().any(|t| !t.gap && t.seq < failed[0].seq),
        "{tiled:#?}"
    );
    let left: Vec<_> = files_under(&server.dir.path().join("data/spool"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    assert!(left.is_empty(), "left in the spool: {left:?}");
    let report = verify(&server, &session).await;
    crate::harness::assert_report_intact(&report, "session");
}

#[tokio::test(flavor = "multi_thread")]
async fn video_that_stalls_while_audio_flows_is_a_gap_naming_video() {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold-video");
    let sim = Simulator::start(&["--hold-video-while", hold.to_str().unwrap()]);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 视频", &sim.url("cam1")).await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-STALL").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let held = unix_now();
    std::fs::write(&hold, b"").unwrap();
    // Within the watchdog time (3 s) plus a poll, the video stream shows stalled.
    let t = Instant::now();
    loop {
        let metrics = server.text("/metrics").await;
        if metrics.lines().any(|l| {
            l.starts_with("witness_stream_stalled{")
                && l.contains("stream=\"video\"")
                && l.ends_with(" 1")
        }) || metrics.contains("witness_source_state{")
            && metrics.lines().any(|l| {
                l.starts_with("witness_source_state{")
                    && l.contains("state=\"reconnecting\"")
                    && l.ends_with(" 1")
            })
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stall not shown: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(t.elapsed())).await;
    std::fs::remove_file(&hold).unwrap();
    let released = unix_now();
    server
        .wait_session(&session, "video again", Duration::from_secs(30), |s| {
            tiles(s, "cam1")
                .last()
                .is_some_and(|t| !t.gap && t.start > released)
        })
        .await;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    let tiled = assert_tiled(&stopped, "cam1");
    let gaps = outage_gaps(&tiled);
    assert_eq!(gaps.len(), 1, "{tiled:#?}");
    assert!(
        gaps[0].text.contains("video"),
        "the gap names the stream: {}",
        gaps[0].text
    );
    let outage = released - held;
    assert!(
        (gaps[0].seconds() - outage).abs() <= 1.5,
        "gap {:.3} s, video held {outage:.3} s: {tiled:#?}\n{}",
        gaps[0].seconds(),
        server.log()
    );
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_client_joining_and_leaving_leaves_no_hole() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-SECOND").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            ["cam1", "cam2", "mic1"]
                .iter()
                .all(|src| segments(s, src) >= 3)
        })
        .await;
    // Another client (a VMS, a curious ffprobe) joins each camera and leaves.
    for path in ["cam1", "cam2", "mic1"] {
        let out = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
            ])
            .arg(sim.url(path))
            .args(["-t", "2", "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stop_asked = std::time::Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    for src in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, src);
        assert!(outage_gaps(&tiled).is_empty(), "{src}: {tiled:#?}");
    }
    let report = verify(&server, &session).await;
    crate::harness::assert_report_intact(&report, "session");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
}

/// A chain written before coverage was enforced: a hole of 12 s with no gap entry, every
/// link and the signed manifest in order. Verification must call it INCOMPLETE, name the hole,
/// and exit 3, online, on the CLI and offline in an exported package.
#[tokio::test(flavor = "multi_thread")]
async fn a_linked_chain_with_a_hole_is_incomplete_not_intact() {
    use witness::ledger::chain::{Entry, EntryKind};
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = one_camera_room(&server, "开标室 旧链", &sim.url("cam1")).await;
    let session = server.start_recording(&room, "ZB-HOLE").await;
    server
        .wait_session(&session, "5 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 5
        })
        .await;
    let stopped = stop(&server, &room).await;
    let recording_id = recording(&stopped, "cam1")["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The insider (or an older Witness) rewrites the chain: entries after seq 3 move 12 s
    // later, the links are recomputed and the manifest is signed again with the server key.
    // The chain's guard (migration 0016) refuses this to the application's role; the owner of
    // the tables drops it first.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db).await.unwrap();
    let guard = if server.db.starts_with("postgres") {
        "DROP TRIGGER chain_entries_guard ON chain_entries"
    } else {
        "DROP TRIGGER chain_entries_no_update"
    };
    sqlx::query(guard).execute(&pool).await.unwrap();
    let rows = sqlx::query_as::<_, (i64, String, String, i64, i64, i64, String, String, String)>(
        "SELECT seq, kind, object_key, wall_start_us, duration_us, bytes, sha256, clock, detail FROM chain_entries WHERE recording_id = $1 ORDER BY seq",
    )
    .bind(&recording_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut prev = witness::ledger::chain::ZERO_HASH.to_string();
    let mut head = (0, String::new());
    for (seq, kind, object_key, start, duration, bytes, sha256, clock, detail) in rows {
        let shifted = if seq > 3 { start + 12_000_000 } else { start };
        let e = Entry {
            recording_id: recording_id.clone(),
            seq,
            kind: EntryKind::parse(&kind).unwrap(),
            object_key,
            wall_start_us: shifted,
            duration_us: duration,
            bytes,
            sha256,
            clock,
            detail,
            prev_hash: prev.clone(),
            entry_hash: String::new(),
        }
        .seal();
        sqlx::query(
            "UPDATE chain_entries SET wall_start_us = $3, prev_hash = $4, entry_hash = $5 WHERE recording_id = $1 AND seq = $2",
        )
        .bind(&recording_id)
        .bind(seq)
        .bind(e.wall_start_us)
        .bind(&e.prev_hash)
        .bind(&e.entry_hash)
        .execute(&pool)
        .await
        .unwrap();
        prev = e.entry_hash.clone();
        head = (seq, e.entry_hash);
    }
    let key = stopped["manifest_key"].as_str().unwrap().to_string();
    let manifest_path = server.objects().join(&key);
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["recordings"][0]["head_seq"] = json!(head.0);
    manifest["recordings"][0]["head_hash"] = json!(head.1);
    manifest["stopped_at_us"] = json!(manifest["stopped_at_us"].as_i64().unwrap() + 12_000_000);
    let body = serde_json::to_vec_pretty(&manifest).unwrap();
    let signer =
        witness::ledger::manifest::Signer::load_or_create(&server.dir.path().join("data/keys"))
            .unwrap();
    let sig_path = server.objects().join(format!("{key}.sig"));
    for p in [&manifest_path, &sig_path] {
        let mut perm = std::fs::metadata(p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(p, perm).unwrap();
    }
    std::fs::write(&manifest_path, &body).unwrap();
    std::fs::write(&sig_path, signer.sign_hex(&body)).unwrap();

    let report = verify(&server, &session).await;
    assert_eq!(report["status"], "INCOMPLETE", "{report}");
    assert_eq!(report["intact"], false);
    let hole = &report["uncovered"][0];
    assert_eq!(hole["source"], "cam1");
    assert!(
        (hole["seconds"].as_f64().unwrap() - 12.0).abs() < 0.5,
        "{hole}"
    );
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("INCOMPLETE") && out.contains("not covered"),
        "{out}"
    );

    // Offline, in an evidence package, the same verdict and exit code.
    let pkg = server.dir.path().join("hole.tar");
    let exported = server.cli(&[
        "export",
        "--session",
        &session,
        "--out",
        pkg.to_str().unwrap(),
        "--reason",
        "completeness test",
    ]);
    let _ = exported;
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["verify", pkg.to_str().unwrap()])
            .args(extra)
            .env("HOME", "/nonexistent")
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = run(&["--public-key", &signer.public_key_hex()]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("INCOMPLETE"), "{text}");
    // Untrusted outranks incomplete: an unknown signer's account of what is missing proves
    // nothing; the stretch is still listed.
    let (code, text) = run(&[]);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("UNTRUSTED KEY") && text.contains("not covered"),
        "{text}"
    );
}

/// The stream shapes cameras send: Opus and G.711 µ-law audio, a camera without audio, a
/// microphone without video. Each is recorded, tiled and verified; the codecs are kept (µ-law
/// becomes AAC in the default MPEG-TS template, as A-law does).
#[tokio::test(flavor = "multi_thread")]
async fn opus_mulaw_video_only_and_audio_only_sources_are_recorded() {
    // Opus is not depayloaded by the direct RTSP client: that source is received by rtspsrc's
    // graph; µ-law is, and goes through the template's transcoding branch.
    for (audio, cam_codecs, mic_codec, mic_receiver) in [
        (
            "opus",
            vec![("video", "h264"), ("audio", "opus")],
            "opus",
            "gstreamer",
        ),
        (
            "pcmu",
            vec![("video", "h264"), ("audio", "aac")],
            "aac",
            "direct",
        ),
        ("none", vec![("video", "h264")], "aac", "direct"),
    ] {
        let sim = Simulator::start(&["--audio", audio]);
        let server = Server::start().await;
        let room = server.demo_room(&sim, "default").await;
        let asked = Instant::now();
        let session = server.start_recording(&room, "ZB-CODECS").await;
        server
            .wait_session(&session, "3 segments each", Duration::from_secs(30), |s| {
                ["cam1", "mic1"].iter().all(|src| segments(s, src) >= 3)
            })
            .await;
        let status = server.ok("GET", "/api/v1/rooms/status", None).await;
        let receiver = |src: &str| {
            status[0]["sources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == src)
                .map(|s| s["receiver"].clone())
        };
        assert_eq!(
            receiver("mic1"),
            Some(mic_receiver.into()),
            "--audio {audio}: {status}"
        );
        let stop_asked = std::time::Instant::now();
        let stopped = stop(&server, &room).await;
        assert_lasted(&stopped, stop_asked - asked);
        for (src, want) in [
            ("cam1", cam_codecs.clone()),
            ("mic1", vec![("audio", mic_codec)]),
        ] {
            let tiled = assert_tiled(&stopped, src);
            assert!(outage_gaps(&tiled).is_empty(), "{audio} {src}: {tiled:#?}");
            let seg = &recording(&stopped, src)["segments"][1];
            let (streams, _) = ffprobe(&server.objects().join(seg["object_key"].as_str().unwrap()));
            let mut got: Vec<(String, String)> = streams;
            got.sort();
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(k, c)| (k.to_string(), c.to_string()))
                .collect();
            want.sort();
            assert_eq!(got, want, "--audio {audio}, {src}");
        }
        assert_eq!(verify(&server, &session).await["status"], "INTACT");
    }
}

/// The recorder's network (or the recorder itself) stalls for two seconds and then catches up
/// with the backlog in a burst, as on a congested link or a machine under load: nothing was
/// lost, so the chain has no gap, and every segment still starts at the time its first frame
/// carries.
#[tokio::test(flavor = "multi_thread")]
async fn a_stall_that_catches_up_loses_nothing_and_is_no_gap() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let asked = Instant::now();
    let session = server.start_recording(&room, "ZB-STALL").await;
    let before = server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            ["cam1", "cam2", "mic1"]
                .iter()
                .all(|src| segments(s, src) >= 3)
        })
        .await;
    // The cameras keep sending into the connections' buffers meanwhile.
    server.signal("STOP");
    std::thread::sleep(Duration::from_secs(2));
    server.signal("CONT");
    let had = segments(&before, "cam1");
    server
        .wait_session(&session, "4 more segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= had + 4
        })
        .await;
    let stop_asked = Instant::now();
    let stopped = stop(&server, &room).await;
    assert_lasted(&stopped, stop_asked - asked);
    for src in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, src);
        assert!(
            outage_gaps(&tiled).is_empty(),
            "{src}: {tiled:#?}\n{}",
            server.log()
        );
    }
    for seg in recording(&stopped, "cam1")["segments"].as_array().unwrap() {
        assert_starts_at_its_first_frame(&server, seg);
    }
    assert_eq!(verify(&server, &session).await["status"], "INTACT");
}
