//! Record a room from the simulator, check every segment with ffprobe, verify the chain and the
//! signed manifest, then tamper with the store and watch verify name the segment.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn records_two_cameras_and_a_microphone_into_a_verified_chain() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let asked = std::time::Instant::now();
    let session = server.start_recording(&room, "ZB-2026-0001").await;
    server
        .wait_session(
            &session,
            "8 s of every source",
            Duration::from_secs(40),
            |s| {
                ["cam1", "cam2", "mic1"]
                    .iter()
                    .all(|src| recording(s, src)["duration_seconds"].as_f64().unwrap() >= 8.0)
            },
        )
        .await;
    // The default template's sources are received by the direct RTSP client, no rtspsrc.
    let status = server.ok("GET", "/api/v1/rooms/status", None).await;
    let receivers: Vec<&Value> = status[0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["receiver"])
        .collect();
    assert_eq!(receivers, ["direct", "direct", "direct"], "{status}");
    // From asking start to asking stop: the stop call itself waits for the last segments.
    let measured = asked.elapsed();
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_lasted(&stopped, measured);
    assert!(
        stopped["manifest_key"]
            .as_str()
            .unwrap()
            .ends_with("/manifest.json")
    );

    for (source, want) in [
        ("cam1", vec!["video", "audio"]),
        ("cam2", vec!["video", "audio"]),
        ("mic1", vec!["audio"]),
    ] {
        let rec = recording(&stopped, source);
        // Every moment is a segment, but for the camera being reached at the start.
        let tiled = assert_tiled(&stopped, source);
        assert!(outage_gaps(&tiled).is_empty(), "{source}: {tiled:#?}");
        assert!(
            tiled.iter().filter(|t| t.gap).all(|t| t.seconds() < 3.0),
            "{source}: {tiled:#?}"
        );
        let segs = rec["segments"].as_array().unwrap();
        assert!(segs.len() >= 5, "{source}: {} segments", segs.len());
        let mut total = 0.0;
        for (i, seg) in segs.iter().enumerate() {
            let key = seg["object_key"].as_str().unwrap();
            assert_eq!(
                key,
                format!(
                    "ZB-2026-0001/{session}/{source}/{:08}.ts",
                    seg["seq"].as_i64().unwrap()
                )
            );
            let path = server.objects().join(key);
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as i64,
                seg["bytes"].as_i64().unwrap()
            );
            let (streams, duration) = ffprobe(&path);
            let kinds: Vec<&str> = streams.iter().map(|(k, _)| k.as_str()).collect();
            for w in &want {
                assert!(
                    kinds.contains(w),
                    "{key}: streams {streams:?}, want {want:?}"
                );
            }
            if source != "mic1" {
                assert!(
                    streams.contains(&("video".into(), "h264".into())),
                    "{key}: {streams:?}"
                );
                assert!(
                    streams.contains(&("audio".into(), "aac".into())),
                    "{key}: {streams:?}"
                );
            }
            let indexed = seg["duration_seconds"].as_f64().unwrap();
            // The last segment may be cut short by stop; the others are ~1 s (a GOP past target).
            if i + 1 < segs.len() {
                assert!(
                    (0.5..=3.0).contains(&indexed),
                    "{key}: indexed duration {indexed}"
                );
            }
            assert!(
                (duration - indexed).abs() < 0.6,
                "{key}: ffprobe {duration} s vs indexed {indexed} s"
            );
            total += indexed;
            assert!(["server", "rtcp-ntp"].contains(&seg["clock"].as_str().unwrap()));
        }
        assert!(total >= 7.5, "{source}: {total} s recorded");
    }

    no_frame_lost_at_a_segment_boundary(&server, &stopped);

    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    assert_eq!(report["uncovered"], serde_json::json!([]), "{report}");
    assert_eq!(report["manifest"]["status"], "verified");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("INTACT") && out.contains("every moment covered"),
        "{out}"
    );

    let key = server.ok("GET", "/api/v1/keys", None).await;
    assert_eq!(key["keys"][0]["public_key"].as_str().unwrap().len(), 64);

    tamper_is_named(&server, &session, &stopped).await;
}

/// Consecutive segments continue one another frame for frame: each starts with a keyframe (it
/// plays alone), and the step from one segment's last frame to the next one's first is an
/// ordinary frame step (within half a frame of the median step), so the cut neither drops nor
/// repeats a frame, in the picture or in the sound.
fn no_frame_lost_at_a_segment_boundary(server: &Server, stopped: &serde_json::Value) {
    let segs = recording(stopped, "cam1")["segments"].as_array().unwrap();
    let files: Vec<_> = segs
        .iter()
        .map(|s| server.objects().join(s["object_key"].as_str().unwrap()))
        .collect();
    for (stream, name) in [("v", "video"), ("a", "audio")] {
        let per_file: Vec<Vec<(f64, bool)>> = files.iter().map(|f| packets(f, stream)).collect();
        if stream == "v" {
            for (f, p) in files.iter().zip(&per_file) {
                assert!(
                    p.first().is_some_and(|(_, key)| *key),
                    "{}: does not start with a keyframe",
                    f.display()
                );
            }
        }
        let mut steps: Vec<f64> = per_file
            .iter()
            .flat_map(|p| p.windows(2).map(|w| w[1].0 - w[0].0).collect::<Vec<_>>())
            .collect();
        steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = steps[steps.len() / 2];
        // Only between segments the chain says are contiguous (consecutive seqs, no gap).
        for (i, pair) in per_file.windows(2).enumerate() {
            if segs[i + 1]["seq"].as_i64() != segs[i]["seq"].as_i64().map(|s| s + 1) {
                continue;
            }
            let (last, first) = (pair[0].last().unwrap().0, pair[1].first().unwrap().0);
            let step = first - last;
            assert!(
                (step - median).abs() <= median / 2.0,
                "{name}: {} ends at {last:.3} s and {} starts at {first:.3} s: a step of {step:.3} s where frames come every {median:.3} s",
                files[i].display(),
                files[i + 1].display()
            );
        }
    }
}

async fn tamper_is_named(server: &Server, session: &str, stopped: &serde_json::Value) {
    let segs = recording(stopped, "cam2")["segments"]
        .as_array()
        .unwrap()
        .clone();
    let key = |i: usize| segs[i]["object_key"].as_str().unwrap().to_string();
    let path = |i: usize| server.objects().join(key(i));
    let broken = |expect_key: String| {
        let (code, out) = server.verify_cli(session);
        assert_eq!(code, 1, "verify must fail: {out}");
        assert!(
            out.contains("TAMPERED") && out.contains(&expect_key),
            "verdict must name {expect_key}: {out}"
        );
    };

    // One flipped byte.
    let original = std::fs::read(path(2)).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    set_writable(&path(2));
    std::fs::write(path(2), &flipped).unwrap();
    broken(key(2));
    std::fs::write(path(2), &original).unwrap();
    assert_eq!(
        server.verify_cli(session).0,
        0,
        "restored store verifies again"
    );

    // A deleted segment.
    std::fs::remove_file(path(3)).unwrap();
    broken(key(3));
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_failure"]["seq"], segs[3]["seq"]);
    assert!(
        report["first_failure"]["problem"]
            .as_str()
            .unwrap()
            .contains("missing")
    );

    // Two objects swapped (segment 3 stays deleted; 1 comes first in the chain, so it is named).
    let (a, b) = (
        std::fs::read(path(1)).unwrap(),
        std::fs::read(path(4)).unwrap(),
    );
    set_writable(&path(1));
    set_writable(&path(4));
    std::fs::write(path(1), &b).unwrap();
    std::fs::write(path(4), &a).unwrap();
    broken(key(1));
}

fn set_writable(p: &std::path::Path) {
    if let Ok(md) = std::fs::metadata(p) {
        let mut perm = md.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        let _ = std::fs::set_permissions(p, perm);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn g711_audio_is_never_dropped() {
    let sim = Simulator::start(&["--audio", "pcma"]);
    let server = Server::start().await;
    // default: G.711 transcoded to AAC in MPEG-TS; matroska: G.711 kept bit-exact.
    for (template, ext, codec) in [("default", "ts", "aac"), ("matroska", "mkv", "pcm_alaw")] {
        let (_, room) = server
            .call(
                "POST",
                "/api/v1/rooms",
                Some(
                    serde_json::json!({"name": format!("评标室 {template}"), "kind": "evaluation",
                    "sources": [{"name": "cam1", "url": sim.url("cam1"), "template": template}]}),
                ),
            )
            .await;
        let room = room["id"].as_str().unwrap().to_string();
        let session = server.start_recording(&room, "ZB-G711").await;
        server
            .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
                segments(s, "cam1") >= 3
            })
            .await;
        let stopped = server
            .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
            .await;
        let seg = &recording(&stopped, "cam1")["segments"][1];
        let key = seg["object_key"].as_str().unwrap();
        assert!(key.ends_with(ext), "{key}");
        let (streams, _) = ffprobe(&server.objects().join(key));
        assert!(
            streams.contains(&("audio".into(), codec.into())),
            "{template}: {streams:?}"
        );
        assert!(
            streams.contains(&("video".into(), "h264".into())),
            "{template}: {streams:?}"
        );
        let (code, out) = server.verify_cli(&session);
        assert_eq!(code, 0, "{out}");
    }
}
