//! The witness staff console in a real browser (headless Debian Chromium via playwright-core,
//! web/tests/console.mjs): the first (security) administrator's one-time password, password
//! change and TOTP enrolment, password + TOTP login, a staff user proposed by them and approved by
//! a second security administrator, who probes the simulated room, starts,
//! watches and stops a recording of it and finds the session listed. Screenshots: target/tmp/console/.

use std::process::Command;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn staff_console_from_first_login_to_a_listed_session() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    server.demo_room(&sim, "default").await;
    // The one-time password printed once at first start, as an operator would read it.
    let log = server.log();
    let admin_password = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time password:"))
        .map(|p| p.trim().to_string())
        .expect("the first start prints the security administrator's one-time password");

    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/tests/console.mjs");
    let base = server.url("");
    // The second security administrator, made on the host: approves the account `admin` proposes.
    let second = server.user("security_administrator").token.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([script, &base, &admin_password])
            .arg(&artefacts)
            .arg(&second)
            .output()
            .expect("node runs (scripts/setup installs Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console check failed:\n{}\n{stdout}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    eprintln!("console summary: {summary}");

    // The fingerprint the console shows is the one GET /api/v1/keys publishes.
    let keys = server.ok("GET", "/api/v1/keys", None).await;
    assert_eq!(summary["key_id"], keys["current"], "{summary}");
    assert_eq!(
        summary["fingerprint"], keys["keys"][0]["fingerprint"],
        "{summary}"
    );

    // What the browser did is what the server recorded.
    let session = summary["session_id"].as_str().unwrap();
    let s = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(s["project_code"], "ZB-CONSOLE-01");
    assert_eq!(s["category"], "procurement");
    assert_eq!(s["state"], "stopped");
    assert!(segments(&s, "cam1") >= 1, "{s}");
    let audit = server
        .ok("GET", "/api/v1/audit?action=login&user=admin", None)
        .await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"failed: wrong password"), "{outcomes:?}");
    assert!(
        outcomes.iter().filter(|o| **o == "allowed").count() >= 2,
        "{outcomes:?}"
    );
    let starts = server
        .ok(
            "GET",
            "/api/v1/audit?action=room_start&user=console-staff",
            None,
        )
        .await;
    assert_eq!(starts["entries"].as_array().unwrap().len(), 1, "{starts}");
}
