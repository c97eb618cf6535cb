//! Camera credentials are write-only. Against the simulator asking for basic authentication
//! (`--auth`): a room whose camera URL carries credentials probes and records (so they reach
//! the camera), replacing them is audited without the secret and takes effect, an older
//! database whose URLs held them is migrated on start, and no password appears in any API
//! answer for any role, the server's log, `/metrics`, the audit trail, an evidence package, or
//! the bytes of the database and the data folder.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const USER: &str = "camuser";
/// What the simulator accepts.
const SECRET: &str = "S3cretPw-7f3a";
/// A wrong password set by a replacement; must not leak either.
const WRONG: &str = "Wr0ngPw-91c2";

/// Every password this test has used, none of which may show anywhere.
fn assert_no_secret(what: &str, text: &str) {
    for s in [SECRET, WRONG] {
        assert!(
            !text.contains(s),
            "{what} contains the password {s:?}:\n{text}"
        );
    }
}

fn assert_no_secret_bytes(what: &str, bytes: &[u8]) {
    for s in [SECRET, WRONG] {
        assert!(
            !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
            "{what} contains the password {s:?} in plaintext"
        );
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The room as every role sees it (list, one room, status), sessions list and the session;
/// all answers as raw text, checked for the secrets. Returns the administrator's room.
async fn check_views(server: &Server, room: &str, session: Option<&str>) -> Value {
    let mut paths = vec![
        "/api/v1/rooms".to_string(),
        format!("/api/v1/rooms/{room}"),
        "/api/v1/rooms/status".to_string(),
        "/api/v1/sessions".to_string(),
    ];
    if let Some(s) = session {
        paths.push(format!("/api/v1/sessions/{s}"));
        paths.push(format!("/api/v1/sessions/{s}/audit"));
    }
    let mut seen = 0;
    for role in ROLES {
        for p in &paths {
            let resp = server
                .request_as(Some(role), "GET", p)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_no_secret(&format!("GET {p} as {role} ({status})"), &text);
            if status == 200 {
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "the views answer: {seen}");
    server
        .ok("GET", &format!("/api/v1/rooms/{room}"), None)
        .await
}

fn source<'a>(room: &'a Value, name: &str) -> &'a Value {
    room["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {room}"))
}

async fn probe(server: &Server, room: &str) -> Value {
    let (status, v) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/probe?seconds=2"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_no_secret("probe answer", &v.to_string());
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn camera_credentials_are_write_only() {
    let sim = Simulator::start(&["--auth", &format!("{USER}:{SECRET}")]);
    let mut server = Server::start().await;
    let with_creds =
        |path: &str, pw: &str| format!("rtsp://{USER}:{pw}@127.0.0.1:{}/{path}", sim.port);

    // The simulator really asks: without credentials the camera is refused (401).
    let (status, v) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "评标室 no-auth", "kind": "evaluation", "probe": true,
                "sources": [{"name": "cam1", "url": sim.url("cam1")}]}),
            ),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("source_not_recordable")),
        "{v}"
    );
    assert!(v.to_string().contains("401"), "{v}");

    // With them in the URL: probed, created, and shown without them.
    let (status, created) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "评标室 1", "kind": "evaluation", "probe": true,
                "sources": [
                    {"name": "cam1", "url": with_creds("cam1", SECRET)},
                    {"name": "mic1", "url": with_creds("mic1", SECRET), "media": "audio"},
                ]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_no_secret("room creation answer", &created.to_string());
    assert_eq!(created["probe"]["recordable"], true, "{created}");
    let room = created["id"].as_str().unwrap().to_string();
    let cam1 = source(&created, "cam1");
    assert_eq!(cam1["url"], sim.url("cam1"), "{created}");
    assert_eq!(cam1["has_credentials"], true);
    assert!(
        !cam1.to_string().contains(USER),
        "no user info shown: {cam1}"
    );
    assert_eq!(source(&created, "mic1")["has_credentials"], true);

    // A recording is made: the credentials reach the camera from the recorder too.
    let session = server.start_recording(&room, "ZB-CRED-01").await;
    let view = server
        .wait_session(&session, "segments", Duration::from_secs(40), |s| {
            segments(s, "cam1") >= 2 && segments(s, "mic1") >= 2
        })
        .await;
    assert_eq!(recording(&view, "cam1")["url"], sim.url("cam1"));
    check_views(&server, &room, Some(&session)).await;

    // While it records, credentials cannot change (the session keeps those it began with).
    let creds_path = format!("/api/v1/rooms/{room}/sources/cam1/credentials");
    let (status, v) = server
        .call(
            "PUT",
            &creds_path,
            Some(json!({"username": USER, "password": WRONG})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("room_recording")),
        "{v}"
    );
    assert_no_secret("refusal", &v.to_string());
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let view = server
        .wait_session(&session, "stopped", Duration::from_secs(30), |s| {
            s["state"] == "stopped"
        })
        .await;
    assert_tiled(&view, "cam1");
    assert!(segments(&view, "cam1") >= 2, "{view}");
    check_views(&server, &room, Some(&session)).await;

    // Bad input, named plainly and never echoed.
    for (path, body, want) in [
        (
            creds_path.clone(),
            json!({"username": "", "password": WRONG}),
            (422, "invalid_credentials"),
        ),
        (
            creds_path.clone(),
            json!({"username": "a:b", "password": WRONG}),
            (422, "invalid_credentials"),
        ),
        (
            creds_path.clone(),
            json!({"user": USER, "password": WRONG}),
            (422, "invalid_body"),
        ),
        (
            format!("/api/v1/rooms/{room}/sources/nope/credentials"),
            json!({"username": USER, "password": WRONG}),
            (404, "source_not_found"),
        ),
    ] {
        let (status, v) = server.call("PUT", &path, Some(body)).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want.0, Some(want.1)),
            "{v}"
        );
        assert_no_secret("error answer", &v.to_string());
    }
    let (status, v) = server
        .call_as(
            Some("witness_staff"),
            "PUT",
            &creds_path,
            Some(json!({"username": USER, "password": WRONG})),
        )
        .await;
    assert_eq!(status, 403, "only administrators manage rooms: {v}");

    // Replaced with a wrong password: the camera refuses it, so the replacement took effect.
    let shown = server
        .ok(
            "PUT",
            &creds_path,
            Some(json!({"username": USER, "password": WRONG})),
        )
        .await;
    assert_no_secret("replacement answer", &shown.to_string());
    assert_eq!(source(&shown, "cam1")["has_credentials"], true);
    let p = probe(&server, &room).await;
    let cam1 = &p["sources"][0];
    assert_eq!(cam1["recordable"], false, "{p}");
    assert!(cam1["problems"].to_string().contains("401"), "{p}");
    // Removed: the same refusal; put back: recordable again.
    let shown = server.ok("DELETE", &creds_path, None).await;
    assert_eq!(source(&shown, "cam1")["has_credentials"], false);
    assert_eq!(
        probe(&server, &room).await["sources"][0]["recordable"],
        false
    );
    server
        .ok(
            "PUT",
            &creds_path,
            Some(json!({"username": USER, "password": SECRET})),
        )
        .await;
    assert_eq!(probe(&server, &room).await["recordable"], true);

    // A room read and sent back as it is keeps its credentials; a new address drops them; user
    // info in a changed URL replaces them (audited as such).
    let shown = server
        .ok("GET", &format!("/api/v1/rooms/{room}"), None)
        .await;
    let back = server
        .ok(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(json!({"sources": shown["sources"]})),
        )
        .await;
    assert_eq!(source(&back, "cam1")["has_credentials"], true, "{back}");
    assert_eq!(probe(&server, &room).await["recordable"], true);
    let moved = server
        .ok(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(json!({"sources": [
                {"name": "cam1", "url": format!("rtsp://localhost:{}/cam1", sim.port)},
                {"name": "mic1", "url": sim.url("mic1"), "media": "audio"},
            ]})),
        )
        .await;
    assert_eq!(source(&moved, "cam1")["has_credentials"], false, "{moved}");
    let patched = server
        .ok(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(json!({"sources": [
                {"name": "cam1", "url": with_creds("cam1", SECRET)},
                {"name": "mic1", "url": sim.url("mic1"), "media": "audio"},
            ]})),
        )
        .await;
    assert_no_secret("patch answer", &patched.to_string());
    assert_eq!(source(&patched, "cam1")["has_credentials"], true);
    assert_eq!(probe(&server, &room).await["recordable"], true);

    // The audit trail: each replacement named, by whom, without the secret.
    let audit = server.ok("GET", "/api/v1/audit?limit=1000", None).await;
    assert_no_secret("audit trail (json)", &audit.to_string());
    let entries = audit["entries"].as_array().expect("entries");
    let of = |action: &str, outcome: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .collect()
    };
    let replaced = of("room_credentials", "credentials replaced");
    assert_eq!(replaced.len(), 2, "{audit}");
    let removed = of("room_credentials_remove", "credentials removed");
    assert_eq!(removed.len(), 1, "{audit}");
    for e in replaced.iter().chain(&removed) {
        assert_eq!(e["target"], format!("{room}/cam1"), "{e}");
        assert!(
            e["actor"]
                .as_str()
                .unwrap()
                .starts_with("t-system-administrator"),
            "{e}"
        );
    }
    // Room changes carry their values before and after (the URL change here), then the
    // credentials clause.
    let changes_ending = |clause: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| {
                let o = e["outcome"].as_str().unwrap_or("");
                e["action"] == "room_change" && o.starts_with("changed; ") && o.ends_with(clause)
            })
            .collect()
    };
    assert_eq!(
        changes_ending("cam1: credentials replaced").len(),
        1,
        "{audit}"
    );
    let moved = changes_ending("cam1: credentials removed (the camera's address changed)");
    assert_eq!(moved.len(), 1, "{audit}");
    assert!(
        moved[0]["outcome"].as_str().unwrap().contains(&format!(
            "cam1: url: rtsp://127.0.0.1:{0}/cam1 → rtsp://localhost:{0}/cam1",
            sim.port
        )),
        "{}",
        moved[0]
    );
    // Refused and failed attempts are on the record too.
    assert_eq!(
        of("room_credentials", "denied: forbidden").len(),
        1,
        "{audit}"
    );
    assert_eq!(
        of("room_credentials", "failed: HTTP 409").len(),
        1,
        "{audit}"
    );
    let csv = server.text("/api/v1/audit?format=csv&limit=1000").await;
    assert!(csv.contains("room_credentials"), "{csv}");
    assert_no_secret("audit trail (csv)", &csv);

    // An evidence package of the session.
    let pkg = server.dir.path().join("package.tar");
    let out = std::process::Command::new(BIN)
        .args([
            "export",
            "--session",
            &session,
            "--reason",
            "credentials test",
            "--exporter",
            "clerk",
            "--out",
        ])
        .arg(&pkg)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&pkg).unwrap();
    assert!(bytes.len() > 10_000);
    assert_no_secret_bytes("evidence package", &bytes);

    // A database from before credentials were kept apart: the URL held them. The next start
    // seals them, strips the URL (of the room and of the session's recording) and compacts.
    server.kill();
    {
        let pool = witness::db::open(&server.db).await.unwrap();
        sqlx::query("UPDATE room_sources SET url = $1, credentials = NULL WHERE room_id = $2 AND name = 'cam1'")
            .bind(with_creds("cam1", SECRET))
            .bind(&room)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE recordings SET url = $1 WHERE session_id = $2")
            .bind(with_creds("cam1", SECRET))
            .bind(&session)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    server.restart().await;
    let migrated = check_views(&server, &room, Some(&session)).await;
    assert_eq!(
        source(&migrated, "cam1")["url"],
        sim.url("cam1"),
        "{migrated}"
    );
    assert_eq!(source(&migrated, "cam1")["has_credentials"], true);
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(recording(&view, "cam1")["url"], sim.url("cam1"));
    // The sealed credentials work.
    assert_eq!(probe(&server, &room).await["recordable"], true);
    assert!(
        server.log().contains("camera credentials moved"),
        "{}",
        server.log()
    );

    // Metrics, the server's whole log, and every byte it keeps.
    let metrics = server.text("/metrics").await;
    assert!(metrics.contains("witness_"), "{metrics}");
    assert_no_secret("/metrics", &metrics);
    server.kill();
    assert_no_secret("server log", &server.log());
    let data = server.dir.path().join("data");
    let kept = files(&data);
    assert!(
        kept.iter().any(|p| p.ends_with("keys/credentials.key")),
        "{kept:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("keys/credentials.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let db_files: Vec<_> = files(server.dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("witness.db"))
        .collect();
    if server.db.starts_with("sqlite:") {
        assert!(!db_files.is_empty(), "the SQLite file is where expected");
    }
    for p in kept.iter().chain(&db_files) {
        assert_no_secret_bytes(&p.display().to_string(), &std::fs::read(p).unwrap());
    }
}
