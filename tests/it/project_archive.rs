//! Issue 15, one archive per project (一项一档): the archive of a project gathers its sections,
//! bookings, sessions (verified now), witness records, holds and exports, with a catalogue and a
//! completeness check that names what is missing (a booking with no session, a session whose
//! witness record is unsigned, a session whose store object was altered); the project package
//! carries every session, the catalogue, the project and an audit extract, verifies offline, and
//! a file altered inside it is TAMPERED naming the session and the file. Who may read the
//! archive, who may export it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// The scheduler ticks once at start and then only every minute: the bookings of this test are
/// recorded by hand (a manual start inside a booked slot records that booking), or not at all.
const HANDS_ON: &str = "\n[bookings]\nlead_seconds = 0.0\ntick_seconds = 60.0\n";
const PROJECT: &str = "ZB-ARC-01";

fn at(offset_seconds: f64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds((offset_seconds * 1000.0) as i64);
    t.to_rfc3339()
}

async fn room(server: &Server, name: &str, url: &str) -> String {
    let r = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": name, "kind": "bid_opening",
                        "sources": [{"name": "cam1", "url": url, "media": "av", "template": "default"}]})),
        )
        .await;
    r["id"].as_str().unwrap().to_string()
}

async fn book(server: &Server, room: &str, section: &str, from: f64, to: f64) -> String {
    let b = server
        .ok(
            "POST",
            "/api/v1/bookings",
            Some(
                json!({"room_id": room, "project_code": PROJECT, "section_code": section,
                        "activity": "bid_opening", "category": "construction",
                        "starts_at": at(from), "ends_at": at(to)}),
            ),
        )
        .await;
    b["id"].as_str().unwrap().to_string()
}

/// Starts the room inside its booking (no reason needed), waits for media, adds a witness entry.
async fn record_booked(server: &Server, room: &str, booking: &str) -> String {
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": PROJECT, "session_code": "KB", "kind": "bid_opening"})),
        )
        .await;
    assert_eq!(s["booking_id"], booking, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    server
        .wait_session(&id, "two segments", Duration::from_secs(30), |v| {
            segments(v, "cam1") >= 2
        })
        .await;
    let (status, e) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/sessions/{id}/witness-entries"),
            Some(json!({"kind": "remark", "text": "开标会开始，投标人 3 家到场"})),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    id
}

async fn sign(server: &Server, session: &str) {
    let password = server.user("witness_staff").one_time_password.clone();
    let (status, body) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/sessions/{session}/witness-record/sign"),
            Some(json!({"password": password})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn stop(server: &Server, room: &str) {
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
}

async fn clerk(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    server
        .call_as(Some("archive_clerk"), method, path, body)
        .await
}

async fn archive(server: &Server) -> Value {
    let (status, a) = clerk(
        server,
        "GET",
        &format!("/api/v1/projects/{PROJECT}/archive"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    a
}

fn missing_codes(a: &Value) -> Vec<(String, String)> {
    a["completeness"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["code"].as_str().unwrap().to_string(),
                m["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn bin_verify(pkg: &Path, key: &str) -> (i32, String) {
    let o = Command::new(BIN)
        .arg("verify")
        .arg(pkg)
        .args(["--public-key", key])
        .env("RUST_LOG", "warn")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn set_writable(p: &Path) {
    if let Ok(md) = std::fs::metadata(p) {
        let mut perm = md.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        let _ = std::fs::set_permissions(p, perm);
    }
}

/// Starts a project export as the archive clerk, waits for it, downloads it.
async fn export_project(server: &Server, into: &Path) -> std::path::PathBuf {
    let (status, job) = clerk(
        server,
        "POST",
        &format!("/api/v1/projects/{PROJECT}/exports"),
        Some(json!({"reason": "一项一档 归档"})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["project_code"], PROJECT, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let ready = loop {
        let (_, j) = clerk(server, "GET", &format!("/api/v1/exports/{id}"), None).await;
        match j["state"].as_str() {
            Some("ready") => break j,
            Some("failed") => panic!("project export failed: {j}"),
            _ => {}
        }
        assert!(t.elapsed() < Duration::from_secs(60), "export: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["percent"], 100.0, "{ready}");
    let r = server
        .request_as(
            Some("archive_clerk"),
            "GET",
            ready["download"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.unwrap();
    let pkg = into.join("project.tar");
    std::fs::write(&pkg, &bytes).unwrap();
    pkg
}

#[tokio::test(flavor = "multi_thread")]
async fn the_project_archive_names_what_is_missing_and_its_package_verifies_offline() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with(HANDS_ON).await;
    server
        .register_project(PROJECT, &["BD-01", "BD-02", "BD-03", "BD-04"])
        .await;
    let room_a = room(&server, "开标室 A", &sim.url("cam1")).await;
    let room_b = room(&server, "开标室 B", &sim.url("cam2")).await;
    let room_c = room(&server, "开标室 C", &sim.url("cam1")).await;
    let booked_a = book(&server, &room_a, "BD-01", 0.0, 600.0).await;
    let booked_b = book(&server, &room_b, "BD-02", 0.0, 600.0).await;
    // Booked, never recorded: it ends in a few seconds.
    let booked_c = book(&server, &room_c, "BD-03", 2.0, 4.0).await;
    let ends_c = Instant::now() + Duration::from_secs(5);
    // A section whose state says its activity happened, with no booking.
    let (status, body) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/projects/{PROJECT}/sections/BD-04/state"),
            Some(json!({"state": "in_progress"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let a = record_booked(&server, &room_a, &booked_a).await;
    let b = record_booked(&server, &room_b, &booked_b).await;

    // Permissions: the archive is the clerks' and discipline officers'; exports the clerks'.
    let path = format!("/api/v1/projects/{PROJECT}/archive");
    for (role, want) in [
        ("archive_clerk", 200),
        ("discipline_officer", 200),
        ("witness_staff", 403),
        ("regulator", 403),
        ("system_administrator", 403),
    ] {
        let (status, body) = server.call_as(Some(role), "GET", &path, None).await;
        assert_eq!(status, want, "{role} reads the archive: {body}");
    }
    let exports = format!("/api/v1/projects/{PROJECT}/exports");
    for role in ["witness_staff", "discipline_officer", "regulator"] {
        let (status, body) = server
            .call_as(Some(role), "POST", &exports, Some(json!({"reason": "x"})))
            .await;
        assert_eq!(status, 403, "{role} exports: {body}");
    }
    // Bad requests: each a 4xx naming the problem.
    let (status, body) = clerk(&server, "GET", "/api/v1/projects/ZB-NOBODY-9/archive", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("project_not_found")),
        "{body}"
    );
    let (status, body) = clerk(&server, "POST", &exports, Some(json!({"reason": " "}))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("reason_required")),
        "{body}"
    );
    let (status, body) = clerk(&server, "POST", &exports, Some(json!({"reason": "归档"}))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("session_not_stopped")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&a)
            || body["error"]["message"].as_str().unwrap().contains(&b),
        "{body}"
    );

    // While they record: not yet judged complete.
    let live = archive(&server).await;
    assert_eq!(live["completeness"]["complete"], false);
    assert!(
        missing_codes(&live).contains(&("still_recording".into(), a.clone())),
        "{live}"
    );

    sign(&server, &a).await;
    stop(&server, &room_a).await;
    stop(&server, &room_b).await;
    tokio::time::sleep(ends_c.saturating_duration_since(Instant::now())).await;

    // A stored object of session A altered: the archive verifies now and says so.
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{a}"), None)
        .await;
    let key = recording(&view, "cam1")["segments"][0]["object_key"]
        .as_str()
        .unwrap()
        .to_string();
    let object = server.objects().join(&key);
    let original = std::fs::read(&object).unwrap();
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    set_writable(&object);
    std::fs::write(&object, &flipped).unwrap();

    let arc = archive(&server).await;
    let missing = missing_codes(&arc);
    assert_eq!(arc["completeness"]["complete"], false, "{arc}");
    for want in [
        ("no_session".to_string(), booked_c.clone()),
        ("witness_record_unsigned".to_string(), b.clone()),
        ("not_intact".to_string(), a.clone()),
        ("section_without_booking".to_string(), "BD-04".to_string()),
    ] {
        assert!(missing.contains(&want), "{want:?} in {missing:?}");
    }
    assert_eq!(missing.len(), 4, "nothing else is missing: {missing:?}");
    for m in arc["completeness"]["missing"].as_array().unwrap() {
        assert!(
            !m["zh"].as_str().unwrap().is_empty() && !m["en"].as_str().unwrap().is_empty(),
            "{m}"
        );
    }
    let tampered = arc["completeness"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code"] == "not_intact")
        .unwrap();
    assert!(
        tampered["en"].as_str().unwrap().contains("TAMPERED"),
        "{tampered}"
    );
    // The sessions with their verdicts and witness records; the bookings with their history.
    let sessions = arc["sessions"].as_array().unwrap();
    let sa = sessions.iter().find(|s| s["id"] == a.as_str()).unwrap();
    let sb = sessions.iter().find(|s| s["id"] == b.as_str()).unwrap();
    assert_eq!(sa["verification"], "TAMPERED", "{sa}");
    assert_eq!(sa["witness_record"]["signed"], true);
    assert_eq!(
        sa["witness_record"]["signed_by"],
        server.user("witness_staff").username.as_str()
    );
    assert_eq!(sb["verification"], "INTACT", "{sb}");
    assert_eq!(
        (
            sb["witness_record"]["signed"].as_bool(),
            sb["witness_record"]["entries"].as_i64()
        ),
        (Some(false), Some(1))
    );
    assert_eq!(arc["bookings"].as_array().unwrap().len(), 3);
    assert_eq!(
        arc["bookings"][0]["history"][0]["action"], "created",
        "{arc}"
    );
    assert_eq!(arc["registered"]["sections"].as_array().unwrap().len(), 4);
    // The catalogue: numbered, in archive order, each booking followed by its session.
    let items = arc["catalogue"]["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "registration");
    assert_eq!(&kinds[1..5], &["section"; 4]);
    let booking_a = items
        .iter()
        .position(|i| i["reference"] == booked_a.as_str())
        .unwrap();
    assert_eq!(items[booking_a + 1]["kind"], "session");
    assert_eq!(items[booking_a + 1]["reference"], a.as_str());
    assert!(
        kinds.contains(&"manifest")
            && kinds.contains(&"witness_record")
            && kinds.contains(&"recording")
    );
    for (n, i) in items.iter().enumerate() {
        assert_eq!(i["no"].as_u64(), Some(n as u64 + 1));
        assert!(!i["title"].as_str().unwrap().is_empty());
    }
    // Every view of the archive is audited (档案查询).
    let trail = server
        .ok(
            "GET",
            &format!("/api/v1/audit?action=archive_view&project={PROJECT}&limit=100"),
            None,
        )
        .await;
    let views = trail["entries"].as_array().unwrap();
    assert!(views.len() >= 3, "{trail}");
    let clerk_name = server.user("archive_clerk").username.clone();
    assert!(
        views.iter().any(|e| e["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with(clerk_name.as_str())),
        "{trail}"
    );

    // The project package refuses an object its chain does not vouch for: the job plans it
    // without reading the media; the download, which reads each object once, is cut off at
    // that object (never a whole package) and the job then fails naming it.
    let (status, job) = clerk(&server, "POST", &exports, Some(json!({"reason": "归档"}))).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let t = Instant::now();
    let ready = loop {
        let (_, j) = clerk(&server, "GET", &format!("/api/v1/exports/{id}"), None).await;
        if j["state"] != "preparing" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["state"], "ready", "{ready}");
    let download = ready["download"].as_str().unwrap();
    match server
        .request_as(Some("archive_clerk"), "GET", download)
        .send()
        .await
    {
        Err(_) => {}
        Ok(r) => assert!(
            r.bytes().await.is_err(),
            "the download must not end as if whole"
        ),
    }
    let t = Instant::now();
    let failed = loop {
        let (_, j) = clerk(&server, "GET", &format!("/api/v1/exports/{id}"), None).await;
        if j["state"] == "failed" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failed["error"].as_str().unwrap().contains(&key), "{failed}");

    // Restored: the package of every session, verified offline, INTACT.
    std::fs::write(&object, &original).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pkg = export_project(&server, work.path()).await;
    let pubkey = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = bin_verify(&pkg, &pubkey);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("INTACT: project {PROJECT}: 2 sessions")),
        "{out}"
    );
    assert!(
        out.contains(&format!("session {a}: INTACT"))
            && out.contains(&format!("session {b}: INTACT")),
        "{out}"
    );
    assert!(out.contains("catalogue of"), "{out}");

    // What is inside: each session as its own package holds it, the catalogue, the project, the
    // audit extract with this export.
    let unpacked = work.path().join("unpacked");
    tar::Archive::new(std::fs::File::open(&pkg).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let bag = unpacked.join(format!("witness-{PROJECT}-project"));
    for f in [
        "data/project.json".to_string(),
        "data/catalogue.json".to_string(),
        "data/catalogue.html".to_string(),
        "data/audit/audit.jsonl".to_string(),
        format!("data/sessions/{a}/session-info.txt"),
        format!("data/sessions/{a}/chain/manifest.json"),
        format!("data/sessions/{a}/chain/cam1.json"),
        format!("data/sessions/{a}/witness-record/record.json"),
        format!("data/sessions/{b}/witness-record/record.html"),
        format!("data/sessions/{b}/audit/audit.jsonl"),
    ] {
        assert!(bag.join(&f).is_file(), "{f} in the package");
    }
    let name0 = key.rsplit('/').next().unwrap();
    let media = bag
        .join(format!("data/sessions/{a}/media/cam1"))
        .join(name0);
    assert_eq!(
        std::fs::read(&media).unwrap(),
        original,
        "media byte-identical to the store"
    );
    let html = std::fs::read_to_string(bag.join("data/catalogue.html")).unwrap();
    assert!(
        html.contains("卷内目录") && html.contains(PROJECT),
        "{html}"
    );
    let extract = std::fs::read_to_string(bag.join("data/audit/audit.jsonl")).unwrap();
    assert!(
        extract.contains("\"action\":\"project_export\""),
        "{extract}"
    );
    assert!(
        extract.contains("\"action\":\"witness_record_sign\""),
        "{extract}"
    );
    let bag_info = std::fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    assert!(
        bag_info.contains("Witness-Package-Kind: project"),
        "{bag_info}"
    );

    // A file altered inside the package: TAMPERED, naming the session and the file.
    let mut bytes = std::fs::read(&media).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&media, &bytes).unwrap();
    let (code, out) = bin_verify(&bag, &pubkey);
    assert_eq!(code, 1, "{out}");
    let file = format!("data/sessions/{a}/media/cam1/{name0}");
    assert!(out.contains("TAMPERED") && out.contains(&file), "{out}");
    assert!(out.contains(&format!("session {a}: TAMPERED")), "{out}");
    assert!(out.contains(&format!("session {b}: INTACT")), "{out}");
    std::fs::write(&media, &original).unwrap();

    // The catalogue against what is inside: a session folder removed from it is named.
    let mut cat: Value =
        serde_json::from_slice(&std::fs::read(bag.join("data/catalogue.json")).unwrap()).unwrap();
    cat["items"]
        .as_array_mut()
        .unwrap()
        .retain(|i| i["reference"] != b.as_str());
    std::fs::write(
        bag.join("data/catalogue.json"),
        serde_json::to_vec_pretty(&cat).unwrap(),
    )
    .unwrap();
    let (code, out) = bin_verify(&bag, &pubkey);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("data/catalogue.json"), "{out}");

    // The exports show in the archive.
    let arc = archive(&server).await;
    let actions: Vec<&str> = arc["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"project_export") && actions.contains(&"export_download"),
        "{actions:?}"
    );
    assert!(
        arc["catalogue"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "export")
    );

    // The command line makes the same package, verified the same way.
    let cli_pkg = work.path().join("cli-project.tar");
    let o = Command::new(BIN)
        .args([
            "export",
            "--project",
            PROJECT,
            "--reason",
            "一项一档 CLI",
            "--out",
        ])
        .arg(&cli_pkg)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "export --project: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, out) = bin_verify(&cli_pkg, &pubkey);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("INTACT: project {PROJECT}: 2 sessions")),
        "{out}"
    );
    let o = Command::new(BIN)
        .args([
            "export",
            "--project",
            "ZB-NOBODY-9",
            "--reason",
            "x",
            "--out",
        ])
        .arg(work.path().join("none.tar"))
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("project_not_found")
            || String::from_utf8_lossy(&o.stderr).contains("ZB-NOBODY-9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
