//! Heavy reads are bounded: package downloads and exports, and MP4 remuxes, per person and in
//! total, answered 429 with `Retry-After` past the limit, and back once a stream ends. Finished
//! export jobs expire and their derived files go with them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const LIMITS: &str = "[workload]\nexports_per_person = 1\nexports_total = 2\nremuxes_per_person = 1\nremuxes_total = 1\nretry_after_seconds = 3\nexport_job_minutes = 0.05\n";

async fn ready_export(server: &Server, session: &str, role: &str, derived: bool) -> Value {
    let (status, job) = server
        .call_as(
            Some(role),
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(json!({"reason": "workload test", "derived_mp4": derived})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let t = std::time::Instant::now();
    loop {
        let (_, j) = server
            .call_as(Some(role), "GET", &format!("/api/v1/exports/{id}"), None)
            .await;
        if j["state"] == "ready" {
            return j;
        }
        assert_ne!(j["state"], "failed", "{j}");
        assert!(t.elapsed() < Duration::from_secs(30), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A GET as another archive clerk, made with the CLI on first use.
async fn clerk(server: &Server, name: &str, path: &str) -> reqwest::Response {
    let token_file = server.dir.path().join(format!("{name}.token"));
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) => t,
        Err(_) => {
            server.cli(&["user", "add", name, "--role", "archive_clerk"]);
            let t = server.cli(&["token", "--user", name, "--name", "t", "--days", "1"]);
            std::fs::write(&token_file, t.trim()).unwrap();
            t.trim().to_string()
        }
    };
    server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn assert_busy(what: &str, resp: &reqwest::Response) {
    assert_eq!(resp.status(), 429, "{what}: {:?}", resp.headers());
    assert_eq!(
        resp.headers()["retry-after"].to_str().unwrap(),
        "3",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn heavy_reads_are_bounded_and_export_jobs_expire() {
    // A package large enough that its download cannot end in the sockets' buffers (about
    // 3 MiB on loopback) while its client reads nothing: the permit is then held until it reads.
    let sim = Simulator::start(&[]);
    let server = Server::start_with(LIMITS).await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-LOAD").await;
    let recorded = server
        .wait_session(&session, "6 MiB of media", Duration::from_secs(90), |s| {
            s["bytes"].as_i64().unwrap() >= 6 << 20
        })
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    eprintln!(
        "cam1: {} bytes in {} segments",
        recording(&recorded, "cam1")["bytes"],
        segments(&recorded, "cam1")
    );

    // A package download holds an export permit while it streams: the clerk's second one is
    // refused (per person), another person's is admitted, a third person's is refused (total).
    let job = ready_export(&server, &session, "archive_clerk", false).await;
    let download = job["download"].as_str().unwrap().to_string();
    let held = server
        .request_as(Some("archive_clerk"), "GET", &download)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let again = server
        .request_as(Some("archive_clerk"), "GET", &download)
        .send()
        .await
        .unwrap();
    assert_busy("the clerk's second download", &again);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_busy", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of yours"),
        "{body}"
    );
    // A new export job by the same person waits too.
    let (status, body) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(json!({"reason": "second"})),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    let other = clerk(&server, "clerk2", &download).await;
    assert_eq!(other.status(), 200, "another person, within the total");
    let third = clerk(&server, "clerk3", &download).await;
    assert_busy("a third person's download: the total", &third);
    // Streams read to the end give their permits back.
    let a = held.bytes().await.unwrap();
    let b = other.bytes().await.unwrap();
    assert!(a.len() > 100_000 && a == b, "two whole packages");
    let t = std::time::Instant::now();
    loop {
        let r = server
            .request_as(Some("archive_clerk"), "GET", &download)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert!(r.bytes().await.unwrap().len() == a.len());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "permit never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // MP4 remuxes are admitted one at a time here; each gives its permit back when it ends
    // (its limits are checked like the exports' by the unit tests of `workload`).
    let mp4 = format!("/api/v1/sessions/{session}/sources/cam1/download.mp4?reason=load");
    for _ in 0..2 {
        let r = server
            .request_as(Some("regulator"), "GET", &mp4)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().len() > 10_000);
    }

    // A finished job is kept `export_job_minutes` (3 s here); then it and its derived MP4s go.
    let job = ready_export(&server, &session, "archive_clerk", true).await;
    let id = job["id"].as_str().unwrap();
    let scratch = server
        .dir
        .path()
        .join("data/exports")
        .join(job["package_id"].as_str().unwrap());
    assert!(scratch.is_dir(), "derived files while the job is kept");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            &format!("/api/v1/exports/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("kept"),
        "{body}"
    );
    assert!(!scratch.exists(), "derived files deleted with the job");
}
