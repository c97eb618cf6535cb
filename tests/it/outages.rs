//! A camera that drops becomes a gap and recording resumes; a server killed mid-recording loses
//! no closed segment and resumes the session with a gap.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn camera_drop_is_a_gap_and_recording_resumes() {
    let mut sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let asked = std::time::Instant::now();
    let session = server.start_recording(&room, "ZB-OUTAGE").await;
    let before = server
        .wait_session(
            &session,
            "3 segments per camera",
            Duration::from_secs(30),
            |s| segments(s, "cam1") >= 3,
        )
        .await;
    let had = segments(&before, "cam1");

    let killed = unix_now();
    sim.kill();
    server
        .wait_session(
            &session,
            "cam1 reconnecting",
            Duration::from_secs(20),
            |s| recording(s, "cam1")["state"] == "reconnecting",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.restart();
    let back = unix_now();

    let after = server
        .wait_session(
            &session,
            "a gap, then new segments",
            Duration::from_secs(40),
            |s| {
                let r = recording(s, "cam1");
                r["gap_count"].as_u64().unwrap() >= 1
                    && segments(s, "cam1") >= had + 3
                    && r["state"] == "recording"
            },
        )
        .await;
    let metrics = server.text("/metrics").await;
    assert!(metrics.contains("witness_reconnects_total{"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("witness_gaps_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );

    let stop_asked = std::time::Instant::now();
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_lasted(&stopped, stop_asked - asked);
    for source in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, source);
        let gaps = outage_gaps(&tiled);
        assert_eq!(gaps.len(), 1, "{source}: one outage, one gap: {tiled:#?}");
        let gap = gaps[0];
        // The gap is the outage the test caused: from the kill to the camera's return. Its end
        // may trail the return by the reconnect backoff (0.5 s here), the camera's set-up and its
        // first keyframe (GOP 1 s): 2.5 s in all on a loaded 2-core machine. Never earlier.
        assert!(
            (gap.start - killed).abs() <= 1.0 && gap.end >= back - 0.5 && gap.end - back <= 2.5,
            "{source}: gap {:.3}–{:.3}, camera killed at {killed:.3}, back at {back:.3}",
            gap.start,
            gap.end
        );
        assert!(!gap.text.is_empty());
        // Media on both sides of the gap, in one chain.
        assert!(
            tiled.iter().any(|t| !t.gap && t.seq < gap.seq)
                && tiled.iter().any(|t| !t.gap && t.seq > gap.seq),
            "{source}: {tiled:#?}"
        );
    }
    let _ = after;
    let playlist = server
        .text(&format!(
            "/api/v1/sessions/{session}/sources/cam1/index.m3u8"
        ))
        .await;
    // Every gap of the chain shows in replay and in the verdict: the outage, and the first
    // connection when it took longer than the tolerance (it may not, on a fast machine).
    let gap_count = |source: &str| recording(&stopped, source)["gap_count"].as_u64().unwrap();
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count() as u64,
        gap_count("cam1"),
        "every gap (connecting, outage) shows in replay: {playlist}"
    );
    assert!(playlist.contains("# gap seq"), "{playlist}");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    let gaps: u64 = ["cam1", "cam2", "mic1"].iter().map(|s| gap_count(s)).sum();
    assert!(
        out.contains(&format!("{gaps} gaps")) && out.contains("INTACT"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_recording_loses_no_closed_segment() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let asked = std::time::Instant::now();
    let session = server.start_recording(&room, "ZB-CRASH").await;
    let before = server
        .wait_session(
            &session,
            "4 segments per camera",
            Duration::from_secs(30),
            |s| {
                ["cam1", "cam2", "mic1"]
                    .iter()
                    .all(|src| segments(s, src) >= 4)
            },
        )
        .await;

    let killed = unix_now();
    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().await;
    let back = unix_now();

    let resumed = server
        .wait_session(
            &session,
            "resumed with a gap and new segments",
            Duration::from_secs(40),
            |s| {
                s["state"] == "recording"
                    && ["cam1", "cam2", "mic1"].iter().all(|src| {
                        let r = recording(s, src);
                        r["gap_count"].as_u64().unwrap() >= 1
                            && segments(s, src) >= segments(&before, src) + 2
                    })
            },
        )
        .await;
    // Every segment indexed before the kill is still there, byte for byte.
    for src in ["cam1", "cam2", "mic1"] {
        let after: Vec<(i64, String)> = recording(&resumed, src)["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["seq"].as_i64().unwrap(),
                    s["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for s in recording(&before, src)["segments"].as_array().unwrap() {
            let want = (
                s["seq"].as_i64().unwrap(),
                s["sha256"].as_str().unwrap().to_string(),
            );
            assert!(
                after.contains(&want),
                "{src}: segment {want:?} lost after the crash"
            );
        }
    }
    let stop_asked = std::time::Instant::now();
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_lasted(&stopped, stop_asked - asked);
    for src in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, src);
        let gaps = outage_gaps(&tiled);
        assert_eq!(gaps.len(), 1, "{src}: {tiled:#?}");
        assert!(gaps[0].text.contains("server"), "{src}: {}", gaps[0].text);
        // From the last segment the killed server stored to the first after its return: the
        // segment open at the kill is recovered from the spool, so the gap starts near it.
        assert!(
            gaps[0].start <= killed + 1.0 && gaps[0].start >= killed - 2.0,
            "{src}: gap starts {:.3}, server killed at {killed:.3}",
            gaps[0].start
        );
        // As for a camera: the end may trail the return by the backoff, set-up and a keyframe.
        assert!(
            gaps[0].end >= back - 0.5 && gaps[0].end - back <= 2.5,
            "{src}: gap ends {:.3}, server back at {back:.3}",
            gaps[0].end
        );
    }
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    let spool = server.dir.path().join("data/spool");
    // The walk finds nothing in a folder that does not exist: check it is the real spool.
    assert!(spool.is_dir(), "no spool at {}", spool.display());
    let left: Vec<_> = files_under(&spool);
    assert!(left.is_empty(), "spool empty after stop: {left:?}");
}

/// A segment left in the spool when its session stopped (a node so loaded its last segment was
/// not handed to the writer in time) is stored and listed as late evidence at the next start:
/// the session stays INTACT, the late segment is listed beside its chain with its hash, and
/// bytes altered in it afterwards are named.
#[tokio::test(flavor = "multi_thread")]
async fn a_segment_left_in_the_spool_after_stop_is_listed_late_evidence_not_tamper() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-LATE-STOP").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");

    // A real segment of cam1, as the muxer left it in the spool (its sidecar never finished).
    let rec = recording(&stopped, "cam1");
    let first = rec["segments"][0]["object_key"].as_str().unwrap();
    let bytes = std::fs::read(server.objects().join(first)).unwrap();
    let spool = server
        .dir
        .path()
        .join("data/spool")
        .join(rec["id"].as_str().unwrap());
    server.kill();
    std::fs::create_dir_all(&spool).unwrap();
    // Half a segment, cut mid-packet, as a muxer that never closed it leaves it.
    std::fs::write(
        spool.join("late-0001-00000099.ts"),
        &bytes[..bytes.len() / 2 + 77],
    )
    .unwrap();
    server.restart().await;

    let view = server
        .wait_session(
            &session,
            "the late segment listed",
            Duration::from_secs(30),
            |s| {
                recording(s, "cam1")["late"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            },
        )
        .await;
    let late = &recording(&view, "cam1")["late"][0];
    assert!(late["chained_seq"].is_null(), "{late}");
    let key = late["object_key"].as_str().unwrap().to_string();
    assert!(key.contains("/late/"), "{key}");
    // Its duration is what its media spans, not the file's times (written seconds ago).
    let seconds = late["duration_seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds < 3.0, "{late}");
    assert!(server.spooled().is_empty(), "{:?}", server.spooled());

    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");

    // Altered afterwards: named, as any stored object would be.
    let path = server.objects().join(&key);
    let mut altered = std::fs::read(&path).unwrap();
    altered[400] ^= 0x01;
    std::fs::write(&path, altered).unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    assert!(report.to_string().contains(&key), "{report}");
}
