//! Replay over HLS: the playlist parses with an independent parser (ffprobe), carries the
//! recorded wall clock, serves the stored bytes unchanged; confidential sessions need a reason,
//! and every replay start is in the audit trail.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn hls_replay_of_a_recorded_session() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": "ZB-HLS", "reason": "test: unbooked", "session_code": "PB-01", "kind": "evaluation"})),
        )
        .await;
    let session = s["id"].as_str().unwrap().to_string();
    server
        .wait_session(&session, "5 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 5
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let base = format!("/api/v1/sessions/{session}/sources/cam1");

    // The view without its segments (what the replay page starts its players from): counts,
    // gaps and all else as in the whole view, the segments left out and said to be.
    let whole = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    let light = server
        .ok(
            "GET",
            &format!("/api/v1/sessions/{session}?segments=none"),
            None,
        )
        .await;
    for source in ["cam1", "cam2", "mic1"] {
        let (w, l) = (recording(&whole, source), recording(&light, source));
        assert!(w["segments"].as_array().unwrap().len() >= 5 || source != "cam1");
        assert_eq!(l["segments"], json!([]), "{l}");
        assert_eq!(l["segments_omitted"], true);
        assert!(w.get("segments_omitted").is_none(), "{w}");
        for field in ["segment_count", "gap_count", "gaps", "chain_head", "bytes"] {
            assert_eq!(w[field], l[field], "{source} {field}");
        }
    }
    assert_eq!(whole["retention"], light["retention"]);
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/v1/sessions/{session}?segments=some"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");

    // Confidential: no grant, no replay; then with a grant another person approved, no reason,
    // no replay either; each refusal audited.
    let (status, body) = server
        .call("GET", &format!("{base}/index.m3u8?reason=r"), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "grant_required");
    server.grant_confidential("regulator", &session).await;
    let (status, body) = server
        .call("GET", &format!("{base}/index.m3u8"), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "reason_required");

    let path = format!("{base}/index.m3u8?reason=complaint%20ZB-HLS%20review");
    let url = server.url(&path);
    let playlist = server
        .request("GET", &path)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"));
    let rec = recording(&stopped, "cam1");
    let segs = rec["segments"].as_array().unwrap();
    assert_eq!(
        playlist.matches("#EXTINF:").count(),
        segs.len(),
        "{playlist}"
    );
    let first_start = segs[0]["start"].as_str().unwrap();
    assert!(
        playlist.contains(&format!("#EXT-X-PROGRAM-DATE-TIME:{first_start}")),
        "{playlist}"
    );

    // An independent parser reads the playlist and the segments it names.
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
            "-of",
            "json",
            // The playlist and every segment it names are fetched with the regulator's token.
            "-headers",
            &format!(
                "Authorization: Bearer {}\r\n",
                server.user("regulator").token
            ),
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let recorded = rec["duration_seconds"].as_f64().unwrap();
    assert!(
        (duration - recorded).abs() < 1.5,
        "ffprobe {duration} s vs recorded {recorded} s"
    );
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{kinds:?}"
    );

    // Served bytes are the stored bytes.
    let key = segs[1]["object_key"].as_str().unwrap();
    let name = key.rsplit('/').next().unwrap();
    let (status, body) = server
        .call("GET", &format!("{base}/segments/{name}"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("reason_required")),
        "a confidential segment needs the reason too"
    );
    assert!(
        playlist.contains(&format!(
            "segments/{name}?reason=complaint%20ZB%2DHLS%20review"
        )),
        "{playlist}"
    );
    let served = server
        .request("GET", &format!("{base}/segments/{name}?reason=r"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "video/mp2t");
    let served = served.bytes().await.unwrap();
    assert_eq!(
        served.as_ref(),
        std::fs::read(server.objects().join(key))
            .unwrap()
            .as_slice()
    );
    for bad in [
        "../../etc/passwd",
        "1.ts",
        "00000000.ts",
        "0000000x.ts",
        "99999999.ts",
    ] {
        let (status, body) = server
            .call("GET", &format!("{base}/segments/{bad}?reason=r"), None)
            .await;
        assert!(status == 404, "{bad}: {status} {body}");
    }
    let (status, body) = server
        .call(
            "GET",
            &format!("/api/v1/sessions/{session}/sources/nope/index.m3u8"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("source_not_found"))
    );

    // One playable MP4 over a wall-clock range: remuxed, not transcoded, and audited.
    let (from, to) = (
        segs[1]["start"].as_str().unwrap(),
        segs[4]["start"].as_str().unwrap(),
    );
    let q = |extra: &str| {
        format!(
            "{base}/download.mp4?from={}&to={}{extra}",
            from.replace('+', "%2B"),
            to.replace('+', "%2B")
        )
    };
    let (status, body) = server.call("GET", &q(""), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("reason_required"))
    );
    let (status, body) = server
        .call(
            "GET",
            &format!("{base}/download.mp4?from={to}&to={from}&reason=r"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    let (status, body) = server
        .call(
            "GET",
            &format!(
                "{base}/download.mp4?from=2001-01-01T00:00:00Z&to=2001-01-01T00:01:00Z&reason=r"
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_media_in_range")),
        "{body}"
    );
    let resp = server
        .request("GET", &q("&reason=court%20order"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    let mp4 = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
    std::fs::write(mp4.path(), resp.bytes().await.unwrap()).unwrap();
    let (streams, seconds) = ffprobe(mp4.path());
    assert!(
        streams.iter().any(|(t, c)| t == "video" && c == "h264"),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|(t, c)| t == "audio" && c == "aac"),
        "{streams:?}"
    );
    let want: f64 = segs[1..4]
        .iter()
        .map(|s| s["duration_seconds"].as_f64().unwrap())
        .sum();
    assert!(
        (seconds - want).abs() < 1.5,
        "MP4 lasts {seconds} s, the range {want} s"
    );

    let audit = server
        .ok("GET", &format!("/api/v1/sessions/{session}/audit"), None)
        .await;
    let entries = audit.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "download" && e["reason"] == "court order"),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "replay_start"
            && e["outcome"].as_str().unwrap().starts_with("denied")),
        "{audit}"
    );
    let allowed: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "replay_start" && e["outcome"] == "allowed")
        .collect();
    assert!(!allowed.is_empty(), "{audit}");
    assert_eq!(allowed[0]["reason"], "complaint ZB-HLS review");
    assert_eq!(allowed[0]["address"], "127.0.0.1");
}
