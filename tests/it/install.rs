//! An installed binary runs anywhere: copied out of the build tree and started in an empty
//! folder, it finds its pipeline templates and storage policies inside itself, creates its
//! SQLite file from a plain `sqlite://PATH`, and records a room.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_installed_binary_starts_in_an_empty_folder_and_records() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin/witness");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &bin).unwrap();
    let run = root.path().join("var/lib/witness");
    std::fs::create_dir_all(&run).unwrap();
    let port = free_port();
    // No templates, no policies, no data folder: only where to listen and a database URL as the
    // docs write it (no `?mode=rwc`), in a folder that does not exist yet.
    let db = run.join("db/witness.sqlite");
    let config = root.path().join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://{}\"\n[recording]\nsegment_seconds = 1.0\n",
            db.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(root.path().join("server.log")).unwrap();
    let mut server = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(&run)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = server.try_wait() {
            panic!(
                "witness serve exited with {status} in an empty folder:\n{}",
                std::fs::read_to_string(root.path().join("server.log")).unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer on /healthz:\n{}",
            std::fs::read_to_string(root.path().join("server.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log_text = std::fs::read_to_string(root.path().join("server.log")).unwrap();
    assert!(
        log_text.contains("pipeline templates: the shipped ones")
            && log_text.contains("storage policies: the shipped ones"),
        "{log_text}"
    );
    assert!(db.is_file(), "sqlite://PATH creates its file");
    assert!(
        run.join("data/keys").is_dir(),
        "data under the working folder"
    );

    // A system administrator made with the installed CLI records a room with the built-in templates.
    let cli = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(&run)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "witness {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["user", "add", "installer", "--role", "system_administrator"]);
    cli(&["user", "add", "operator", "--role", "witness_staff"]);
    let admin = cli(&["token", "--user", "installer", "--name", "t", "--days", "1"]);
    let staff = cli(&["token", "--user", "operator", "--name", "t", "--days", "1"]);
    let (admin, staff) = (admin.trim(), staff.trim());
    let sim = Simulator::start(&[]);
    let call = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let path = path.to_string();
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{path} → {status}: {v}");
            v
        }
    };
    let room = call(
        admin,
        reqwest::Method::POST,
        "/api/v1/rooms",
        Some(json!({"name": "开标室", "kind": "bid_opening", "sources": [
            {"name": "cam1", "url": sim.url("cam1"), "media": "av", "template": "default"},
            {"name": "mic1", "url": sim.url("mic1"), "media": "audio", "template": "matroska"},
        ]})),
    )
    .await;
    let room = room["id"].as_str().unwrap().to_string();
    let session = call(
        staff,
        reqwest::Method::POST,
        &format!("/api/v1/rooms/{room}/start"),
        Some(json!({"project_code": "ZB-INSTALL", "reason": "test: unbooked", "session_code": "KB-01", "kind": "bid_opening", "note": "installed"})),
    )
    .await;
    let session = session["id"].as_str().unwrap().to_string();
    let waited = std::time::Instant::now();
    loop {
        let s = call(
            staff,
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{session}"),
            None,
        )
        .await;
        if ["cam1", "mic1"].iter().all(|src| segments(&s, src) >= 2) {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(30), "{s:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stopped = call(
        staff,
        reqwest::Method::POST,
        &format!("/api/v1/rooms/{room}/stop"),
        None,
    )
    .await;
    for src in ["cam1", "mic1"] {
        assert_tiled(&stopped, src);
    }
    let _ = server.kill();
    let _ = server.wait();
}
