//! Recording from an RTSP server that is not ours: VLC (Debian `vlc-bin`) serving a clip that
//! ffmpeg encoded, so the recorder is not only tested against its own simulator. The fixture is
//! `peers::Vlc`.

use std::time::Duration;

use crate::harness::*;
use crate::peers::{Profile, Vlc};

#[tokio::test(flavor = "multi_thread")]
async fn records_from_a_vlc_rtsp_server() {
    let vlc = Vlc::start(Profile::H264Aac);

    // VLC's RTSP server has no interleaved TCP: media over UDP on loopback.
    let url = vlc.url().replacen("rtsp://", "rtspu://", 1);
    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(serde_json::json!({"name": "谈判室", "kind": "negotiation",
                "sources": [{"name": "vlc", "url": url}]})),
        )
        .await;
    let room = room["id"].as_str().unwrap().to_string();
    let session = server.start_recording(&room, "ZB-VLC").await;
    server
        .wait_session(
            &session,
            "4 segments from VLC",
            Duration::from_secs(40),
            |s| segments(s, "vlc") >= 4,
        )
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    drop(vlc);

    let rec = recording(&stopped, "vlc");
    let seg = &rec["segments"][1];
    let (streams, duration) = ffprobe(&server.objects().join(seg["object_key"].as_str().unwrap()));
    assert!(
        streams.contains(&("video".into(), "h264".into())),
        "{streams:?}"
    );
    assert!(
        streams.contains(&("audio".into(), "aac".into())),
        "{streams:?}"
    );
    assert!(duration > 0.5, "{duration}");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
}

/// Our own MPEG-TS writer (`capture::ts_writer`, measured against mpegtsmux by
/// `examples/ts_graph.rs`): what it writes from a camera's H.264 + AAC is read by ffprobe as both
/// streams for as long as it recorded, and ffmpeg decodes every frame without an error.
#[tokio::test(flavor = "multi_thread")]
async fn our_mpeg_ts_writer_is_read_by_ffprobe_and_decoded_by_ffmpeg() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .join("examples/ts_graph");
    assert!(
        example.exists(),
        "{} is built by `cargo test` (all targets) or `cargo build --examples`",
        example.display()
    );
    let out = std::process::Command::new(&example)
        .args(["--seconds", "5"])
        .arg(dir.path())
        .arg(sim.url("cam1"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("own0.ts");
    assert!(
        file.exists(),
        "nothing written: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (streams, seconds) = ffprobe(&file);
    assert!(
        streams.iter().any(|(t, c)| t == "video" && c == "h264")
            && streams.iter().any(|(t, c)| t == "audio" && c == "aac"),
        "{streams:?}"
    );
    assert!((3.0..=5.5).contains(&seconds), "{seconds} s");
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&decoded.stderr);
    assert!(decoded.status.success(), "{errors}");
    // The null muxer's note on equal timestamps of decoded frames is about arrival jitter in
    // the example's graph, not the file; anything else is.
    let problems: Vec<&str> = errors
        .lines()
        .filter(|l| !l.contains("non monotonically increasing dts"))
        .collect();
    assert!(problems.is_empty(), "{errors}");
    // Video from its first keyframe, a frame every 40 ms or so.
    let v = packets(&file, "v");
    assert!(v.len() >= 60, "{} video packets", v.len());
    assert!(
        v.first().is_some_and(|(_, key)| *key),
        "starts at a keyframe"
    );
}
