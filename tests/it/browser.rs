//! The replay page in a real browser: headless Debian Chromium, driven by playwright-core
//! (web/tests/replay.mjs), against a session recorded from the simulator. Screenshots are kept
//! under target/tmp/browser/ as test artefacts.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn replay_page_plays_every_camera_and_seeks_by_wall_clock() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    // An evaluation (评标) session: the page must ask for a reason before anything plays.
    let started = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(serde_json::json!({"project_code": "ZB-BROWSER", "reason": "test: unbooked", "session_code": "PB-01", "kind": "evaluation"})),
        )
        .await;
    let session = started["id"].as_str().unwrap().to_string();
    server
        .wait_session(
            &session,
            "6 segments per source",
            Duration::from_secs(40),
            |s| {
                ["cam1", "cam2", "mic1"]
                    .iter()
                    .all(|src| segments(s, src) >= 6)
            },
        )
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;

    // The page itself: an HTML shell with a restrictive content security policy.
    let page = server
        .http
        .get(server.url(&format!("/sessions/{session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/assets/replay.js"));

    // A complaint against the project: its hold shows on the page's timeline.
    let (status, hold) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/projects/ZB-BROWSER/complaints",
            Some(serde_json::json!({"kind": "objection", "reference": "异议〔2026〕8号", "reason": "评标过程异议"})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");

    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/tests/replay.mjs");
    let base = server.url("");
    let session_id = session.clone();
    // Playing it takes two people: the officer's grant, approved by a regulator.
    server
        .grant_confidential("discipline_officer", &session)
        .await;
    let officer = server.user("discipline_officer");
    let (username, password) = (officer.username.clone(), officer.one_time_password.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([script, base.trim_end_matches('/'), &session_id])
            .arg(&artefacts)
            .args([&username, &password])
            .output()
            .expect("node runs (scripts/setup installs Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser check failed:\n{stderr}\n{stdout}\nserver log:\n{}",
        server.log()
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    eprintln!("browser summary: {summary}");
    assert_eq!(summary["videos"], serde_json::json!(["cam1", "cam2"]));
    let audit = server
        .ok("GET", &format!("/api/v1/sessions/{session}/audit"), None)
        .await;
    let replays: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "replay_start" && e["outcome"] == "allowed")
        .collect();
    assert!(
        replays
            .iter()
            .any(|e| e["reason"] == "质疑复核 objection review"),
        "the reason typed on the page is in the audit trail: {audit}"
    );
    for cam in ["cam1", "cam2"] {
        assert!(summary["sources"][cam]["advanced"].as_f64().unwrap() > 0.5);
        assert!(
            summary["seek"]["landed"][cam]["off_s"]
                .as_f64()
                .unwrap()
                .abs()
                <= 3.0
        );
    }
}
