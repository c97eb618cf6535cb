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
