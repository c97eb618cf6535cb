//! Fixity: every stored object re-hashed against its chain entry on request (and on a schedule);
//! an altered or missing object is named in a kept report, counted in /metrics and audited.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

async fn run_and_wait(server: &Server, previous: usize) -> Value {
    let (status, b) = server
        .call_as(Some("archive_clerk"), "POST", "/api/v1/fixity/run", None)
        .await;
    assert_eq!(status, 202, "{b}");
    let t = Instant::now();
    loop {
        let reports = server
            .call_as(Some("archive_clerk"), "GET", "/api/v1/fixity/reports", None)
            .await
            .1;
        if reports.as_array().unwrap().len() > previous {
            return reports[0].clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no fixity report: {reports}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fixity_finds_altered_and_missing_objects() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-FIXITY").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;

    let report = run_and_wait(&server, 0).await;
    assert_report_intact(&report, "session");
    assert!(report["objects"].as_i64().unwrap() >= 9, "{report}");
    assert_eq!(report["requested_by"], "t-archive-clerk/token:tests");

    // An insider alters one object and removes another.
    let segs = recording(&stopped, "cam1")["segments"].as_array().unwrap();
    let altered = segs[0]["object_key"].as_str().unwrap();
    let removed = segs[1]["object_key"].as_str().unwrap();
    let path = server.objects().join(altered);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    std::fs::remove_file(server.objects().join(removed)).unwrap();

    let report = run_and_wait(&server, 1).await;
    assert_eq!(report["intact"], false, "{report}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{report}");
    let problem = |key: &str| {
        failures
            .iter()
            .find(|f| f["object_key"] == key)
            .map(|f| f["problem"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(problem(altered).contains("sha256 mismatch"), "{report}");
    assert!(problem(removed).contains("missing"), "{report}");
    let metrics = server.text("/metrics").await;
    assert!(metrics.contains("witness_fixity_failures 2"), "{metrics}");
    let audit = server
        .ok("GET", "/api/v1/audit?action=fixity_check", None)
        .await;
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec!["intact", "failed: 2 objects missing or altered"]
    );

    // Reports are kept: the database refuses to remove them.
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&server.db)
        .await
        .unwrap();
    let err = sqlx::Executor::execute(&mut db, "DELETE FROM fixity_reports")
        .await
        .expect_err("reports are append-only")
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    // Witness staff do not run or read fixity checks.
    let (status, _) = server
        .call_as(Some("witness_staff"), "POST", "/api/v1/fixity/run", None)
        .await;
    assert_eq!(status, 403);
}
