//! Recording from an RTSP server that is not ours: VLC (Debian `vlc-bin`) serving a clip that
//! ffmpeg encoded, so the recorder is not only tested against its own simulator.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn records_from_a_vlc_rtsp_server() {
    // VLC refuses to run as root; it runs as `nobody`, so its input must be world-readable.
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    let clip = dir.path().join("clip.ts");
    let ffmpeg = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs (scripts/setup installs it)");
    assert!(ffmpeg.success());
    set_mode(&clip, 0o644);

    let port = free_port();
    let mut vlc = Command::new("cvlc");
    if is_root() {
        vlc = Command::new("setpriv");
        vlc.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            "cvlc",
        ]);
    }
    let mut vlc = vlc
        .args(["-I", "dummy"])
        .arg(&clip)
        .arg(format!("--sout=#rtp{{sdp=rtsp://127.0.0.1:{port}/room}}"))
        .args(["--sout-keep", "--loop"])
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cvlc runs (scripts/setup installs vlc-bin)");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "VLC did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(serde_json::json!({"name": "谈判室", "kind": "negotiation",
                // VLC's RTSP server has no interleaved TCP: media over UDP on loopback.
                "sources": [{"name": "vlc", "url": format!("rtspu://127.0.0.1:{port}/room")}]})),
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
    let _ = vlc.kill();
    let _ = vlc.wait();

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

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}
