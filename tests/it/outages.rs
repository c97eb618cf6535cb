//! A camera that drops becomes a gap and recording resumes; a server killed mid-recording loses
//! no closed segment and resumes the session with a gap.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn camera_drop_is_a_gap_and_recording_resumes() {
    let mut sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
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

    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    for source in ["cam1", "cam2", "mic1"] {
        let rec = recording(&stopped, source);
        let gaps = rec["gaps"].as_array().unwrap();
        assert_eq!(gaps.len(), 1, "{source}: one outage, one gap: {rec}");
        let gap = &gaps[0];
        let secs = gap["duration_seconds"].as_f64().unwrap();
        assert!((1.0..30.0).contains(&secs), "{source}: gap of {secs} s");
        assert!(!gap["reason"].as_str().unwrap().is_empty());
        // Media on both sides of the gap, in one chain.
        let seqs: Vec<i64> = rec["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_i64().unwrap())
            .collect();
        let gap_seq = gap["seq"].as_i64().unwrap();
        assert!(
            seqs.iter().any(|&s| s < gap_seq) && seqs.iter().any(|&s| s > gap_seq),
            "{source}: {seqs:?} around {gap_seq}"
        );
    }
    let _ = after;
    let playlist = server
        .text(&format!(
            "/api/v1/sessions/{session}/sources/cam1/index.m3u8"
        ))
        .await;
    assert_eq!(
        playlist.matches("#EXT-X-DISCONTINUITY").count(),
        1,
        "the gap shows in replay: {playlist}"
    );
    assert!(playlist.contains("# gap seq"), "{playlist}");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 gaps"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_recording_loses_no_closed_segment() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
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

    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().await;

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
        let reason = recording(&resumed, src)["gaps"][0]["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(reason.contains("server"), "{src}: {reason}");
    }
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    let spool = server.dir.path().join("data/spool");
    let left: Vec<_> = walk(&spool);
    assert!(left.is_empty(), "spool empty after stop: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
