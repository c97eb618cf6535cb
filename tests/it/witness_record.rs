//! The witness record (见证记录, issue 15): the session's witness adds time-coded entries while it
//! records and corrects them with new entries; anyone else, a stopped session, a bad kind, time
//! or correction is refused naming the problem; the database refuses UPDATE and DELETE; the
//! witness signs with their password; the manifest binds the record's hash; the package carries
//! it as JSON and a printable Chinese page; online and offline verifiers say INTACT with the
//! record's line, and TAMPERED once an insider edits an entry with the guards dropped.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, Executor};

use crate::harness::*;

/// A room of one camera of the simulator.
async fn one_camera_room(server: &Server, sim: &Simulator, name: &str, cam: &str) -> String {
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({
                "name": name, "kind": "bid_opening",
                "sources": [{"name": cam, "url": sim.url(cam), "media": "av", "template": "default"}]
            })),
        )
        .await;
    room["id"].as_str().unwrap().to_string()
}

/// A call with a raw API token.
async fn call_token(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = server.http.request(m, server.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn staff(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    server
        .call_as(Some("witness_staff"), method, path, body)
        .await
}

fn assert_error(what: &str, got: &(u16, Value), status: u16, code: &str, says: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{what}: {}", got.1);
    let message = got.1["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(says),
        "{what}: {message:?} should say {says:?}"
    );
}

fn bin_verify(pkg: &Path, key: &str) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_witness"))
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

fn export_cli(server: &Server, session: &str, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_witness"))
        .args([
            "export",
            "--session",
            session,
            "--reason",
            "见证记录 test",
            "--out",
        ])
        .arg(out)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn unpack(tar_path: &Path, into: &Path) -> std::path::PathBuf {
    tar::Archive::new(std::fs::File::open(tar_path).unwrap())
        .unpack(into)
        .unwrap();
    std::fs::read_dir(into)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

async fn insider(server: &Server) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&server.db).await.unwrap()
}

fn manifest_of(server: &Server, view: &Value) -> Value {
    let key = view["manifest_key"].as_str().expect("a signed manifest");
    serde_json::from_slice(&std::fs::read(server.objects().join(key)).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn witness_entries_corrections_signature_manifest_package_and_tampering() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room_a = one_camera_room(&server, &sim, "开标室 A", "cam1").await;
    let room_b = one_camera_room(&server, &sim, "开标室 B", "cam2").await;
    let a = server.start_recording(&room_a, "ZB-WR-A").await;
    let b = server.start_recording(&room_b, "ZB-WR-B").await;
    let witness = server.user("witness_staff").username.clone();
    let other_staff = server.another_user("t-other-staff", "witness_staff", &[]);
    let entries_a = format!("/api/v1/sessions/{a}/witness-entries");
    let entries_b = format!("/api/v1/sessions/{b}/witness-entries");

    // The session names its witness.
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{a}"), None)
        .await;
    assert_eq!(view["started_by"], witness.as_str());

    // Entries by the witness: default time now, a chosen time within the session.
    let (status, e1) = staff(
        &server,
        "POST",
        &entries_a,
        Some(json!({"kind": "remark", "text": "开标会开始，投标人 5 家到场"})),
    )
    .await;
    assert_eq!(status, 201, "{e1}");
    assert_eq!(
        (e1["seq"].as_i64(), e1["kind_zh"].as_str()),
        (Some(1), Some("备注"))
    );
    let (status, b1) = staff(
        &server,
        "POST",
        &entries_b,
        Some(json!({"kind": "device_problem", "text": "cam2 画面短暂中断"})),
    )
    .await;
    assert_eq!(status, 201, "{b1}");
    let e1_id = e1["id"].as_str().unwrap();
    let at = e1["at"].as_str().unwrap();
    let (status, e2) = staff(
        &server,
        "POST",
        &entries_a,
        Some(
            json!({"kind": "remark", "text": "更正：投标人 6 家到场", "corrects": e1_id, "at": at}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{e2}");
    assert_eq!(
        (e2["corrects_seq"].as_i64(), e2["at"].as_str()),
        (Some(1), Some(at))
    );

    // Bad input: each a 4xx naming the problem, nothing written.
    let b1_id = b1["id"].as_str().unwrap();
    let bad = [
        (
            json!({"kind": "remark", "text": "x", "corrects": b1_id}),
            422,
            "invalid_correction",
            "not an earlier entry of session",
        ),
        (
            json!({"kind": "remark", "text": "x", "corrects": "no-such-entry"}),
            422,
            "invalid_correction",
            "no-such-entry",
        ),
        (
            json!({"kind": "gossip", "text": "x"}),
            422,
            "invalid_field",
            "objection",
        ),
        (
            json!({"kind": "remark", "text": "   "}),
            422,
            "invalid_field",
            "text",
        ),
        (
            json!({"kind": "remark", "text": "x".repeat(2001)}),
            422,
            "invalid_field",
            "2000",
        ),
        (
            json!({"kind": "remark", "text": "x", "at": "2020-01-01T00:00:00Z"}),
            422,
            "invalid_field",
            "between its start",
        ),
        (
            json!({"kind": "remark", "text": "x", "at": "2999-01-01T00:00:00Z"}),
            422,
            "invalid_field",
            "between its start",
        ),
        (
            json!({"kind": "remark", "text": "x", "at": "yesterday"}),
            422,
            "invalid_field",
            "RFC 3339",
        ),
        (json!({"kind": "remark"}), 422, "", "text"),
    ];
    for (body, status, code, says) in bad {
        let got = staff(&server, "POST", &entries_a, Some(body.clone())).await;
        assert_eq!(got.0, status, "{body}: {}", got.1);
        if !code.is_empty() {
            assert_eq!(got.1["error"]["code"], code, "{body}: {}", got.1);
        }
        let message = got.1["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body}: {message}");
    }
    // Another staff member (not this session's witness), and a regulator: refused.
    let got = call_token(
        &server,
        &other_staff,
        "POST",
        &entries_a,
        Some(json!({"kind": "remark", "text": "x"})),
    )
    .await;
    assert_error("other staff", &got, 403, "not_session_witness", &witness);
    let got = server
        .call_as(
            Some("regulator"),
            "POST",
            &entries_a,
            Some(json!({"kind": "remark", "text": "x"})),
        )
        .await;
    assert_eq!(
        (got.0, got.1["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{}",
        got.1
    );

    // The room's convenience path reaches its live session.
    let (status, e3) = staff(
        &server,
        "POST",
        &format!("/api/v1/rooms/{room_a}/witness-entries"),
        Some(json!({"kind": "objection", "text": "投标人乙对唱标价格提出异议"})),
    )
    .await;
    assert_eq!(status, 201, "{e3}");
    assert_eq!(e3["seq"], 3);

    // Read by a regulator: corrections resolved, unsigned.
    let (status, rec) = server
        .call_as(
            Some("regulator"),
            "GET",
            &format!("/api/v1/sessions/{a}/witness-record"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["entries"].as_array().unwrap().len(), 3, "{rec}");
    assert_eq!(
        rec["entries"][0]["corrected_by"],
        json!([e2["id"]]),
        "{rec}"
    );
    assert_eq!(rec["signed_by"], Value::Null);
    assert_eq!(rec["witness"], witness.as_str());

    // The database refuses UPDATE and DELETE, even to someone with the application's access.
    let mut db = insider(&server).await;
    for sql in [
        "UPDATE witness_entries SET text = 'rewritten' WHERE seq = 1".to_string(),
        "DELETE FROM witness_entries".to_string(),
        format!("UPDATE sessions SET started_by = 'someone-else' WHERE id = '{a}'"),
    ] {
        let err = db.execute(sql.as_str()).await.expect_err(&sql).to_string();
        assert!(
            err.contains("append-only") || err.contains("immutable"),
            "{sql}: {err}"
        );
    }

    // Signing: only the witness, only with their own password.
    let sign_a = format!("/api/v1/sessions/{a}/witness-record/sign");
    let got = call_token(
        &server,
        &other_staff,
        "POST",
        &sign_a,
        Some(json!({"password": "whatever-it-is"})),
    )
    .await;
    assert_error(
        "other staff signs",
        &got,
        403,
        "not_session_witness",
        &witness,
    );
    let got = staff(
        &server,
        "POST",
        &sign_a,
        Some(json!({"password": "not-my-password"})),
    )
    .await;
    assert_error("wrong password", &got, 403, "wrong_password", "password");
    let password = server.user("witness_staff").one_time_password.clone();
    let (status, signed) = staff(
        &server,
        "POST",
        &sign_a,
        Some(json!({"password": password})),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["signed_by"], witness.as_str());
    let sha = signed["sha256"].as_str().unwrap().to_string();
    let got = staff(
        &server,
        "POST",
        &entries_a,
        Some(json!({"kind": "remark", "text": "late"})),
    )
    .await;
    assert_error("after signing", &got, 409, "record_signed", &witness);
    let got = staff(
        &server,
        "POST",
        &sign_a,
        Some(json!({"password": password})),
    )
    .await;
    assert_error("signed twice", &got, 409, "record_signed", "signed");
    // Audited: the entries, the signature, the refused password.
    let trail = server
        .ok("GET", &format!("/api/v1/sessions/{a}/audit"), None)
        .await;
    let actions: Vec<(String, String)> = trail["entries"]
        .as_array()
        .or(trail.as_array())
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("witness_entry", "allowed"),
        ("witness_record_sign", "allowed"),
        ("witness_record_sign", "denied: wrong_password"),
    ] {
        assert!(
            actions.iter().any(|(a, o)| a == want.0 && o == want.1),
            "{want:?} not in {actions:?}"
        );
    }

    // Stopped: A's manifest binds the signed record, B's the unsigned one.
    server
        .wait_session(&a, "a segment", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 1
        })
        .await;
    let stopped_a = server
        .ok("POST", &format!("/api/v1/rooms/{room_a}/stop"), None)
        .await;
    let stopped_b = server
        .ok("POST", &format!("/api/v1/rooms/{room_b}/stop"), None)
        .await;
    let m = manifest_of(&server, &stopped_a);
    assert_eq!(m["witness_record"]["sha256"], sha.as_str(), "{m}");
    assert_eq!(m["witness_record"]["entries"], 3);
    assert_eq!(m["witness_record"]["signed_by"], witness.as_str());
    let mb = manifest_of(&server, &stopped_b);
    assert_eq!(mb["witness_record"]["entries"], 1, "{mb}");
    assert_eq!(mb["witness_record"]["signed_by"], Value::Null, "{mb}");
    let got = staff(
        &server,
        "POST",
        &entries_b,
        Some(json!({"kind": "remark", "text": "after the stop"})),
    )
    .await;
    assert_error("after stop", &got, 409, "session_not_running", "stopped");
    let got = staff(
        &server,
        "POST",
        &format!("/api/v1/rooms/{room_b}/witness-entries"),
        Some(json!({"kind": "remark", "text": "x"})),
    )
    .await;
    assert_error(
        "room not recording",
        &got,
        409,
        "session_not_running",
        "not recording",
    );

    // Online verification names the record.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{a}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
    let line = report["witness_record"].as_str().unwrap();
    assert!(
        line.starts_with(&format!(
            "witness record: 3 entries, signed by {witness} at "
        )),
        "{line}"
    );
    let report_b = server
        .ok("GET", &format!("/api/v1/sessions/{b}/verify"), None)
        .await;
    assert_eq!(report_b["status"], "INTACT", "{report_b}");
    assert!(
        report_b["witness_record"]
            .as_str()
            .unwrap()
            .contains("1 entries, not signed"),
        "{report_b}"
    );

    // The package: record.json and a printable Chinese page, verified offline.
    let work = tempfile::tempdir().unwrap();
    let pkg = work.path().join("a.tar");
    export_cli(&server, &a, &pkg);
    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = bin_verify(&pkg, &key);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    assert!(
        out.contains(&format!(
            "witness record: 3 entries, signed by {witness} at "
        )),
        "{out}"
    );
    let bag = unpack(&pkg, &work.path().join("a"));
    let json: Value = serde_json::from_slice(
        &std::fs::read(bag.join("data/witness-record/record.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["sha256"], sha.as_str());
    assert_eq!(json["entries"].as_array().unwrap().len(), 3);
    let html = std::fs::read_to_string(bag.join("data/witness-record/record.html")).unwrap();
    for want in [
        "见证记录",
        "备注",
        "现场异议",
        "更正第",
        "投标人乙对唱标价格提出异议",
        sha.as_str(),
        witness.as_str(),
    ] {
        assert!(html.contains(want), "record.html lacks {want:?}:\n{html}");
    }
    let payload = std::fs::read_to_string(bag.join("manifest-sha256.txt")).unwrap();
    assert!(
        payload.contains("data/witness-record/record.json")
            && payload.contains("data/witness-record/record.html")
    );

    // The owner drops the guards and rewrites entry 2, hash recomputed: TAMPERED online and in
    // a package exported after.
    let postgres = server.db.starts_with("postgres");
    let drops: &[&str] = if postgres {
        &["DROP TRIGGER witness_entries_guard ON witness_entries"]
    } else {
        &["DROP TRIGGER witness_entries_no_update"]
    };
    for d in drops {
        db.execute(*d).await.unwrap();
    }
    let e2_id = e2["id"].as_str().unwrap();
    let row: (String, String, i64, i64, String, String, String, i64, String) = sqlx::query_as(
        "SELECT id, session_id, seq, at_us, kind, corrects, author, recorded_at, prev_hash FROM witness_entries WHERE id = $1",
    )
    .bind(e2_id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    let forged = witness::ledger::witness_record::WitnessEntry {
        id: row.0,
        session_id: row.1,
        seq: row.2,
        at_us: row.3,
        kind: row.4.parse().unwrap(),
        text: "更正：投标人 4 家到场".into(),
        corrects: Some(row.5),
        author: row.6,
        recorded_at_us: row.7,
        prev_hash: row.8,
        entry_hash: String::new(),
    }
    .seal();
    sqlx::query("UPDATE witness_entries SET text = $1, entry_hash = $2 WHERE id = $3")
        .bind(&forged.text)
        .bind(&forged.entry_hash)
        .bind(e2_id)
        .execute(&mut db)
        .await
        .unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{a}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("witness entry 3: does not link"),
        "{report}"
    );
    let tampered = work.path().join("tampered.tar");
    export_cli(&server, &a, &tampered);
    let (code, out) = bin_verify(&tampered, &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED") && out.contains("witness"), "{out}");
    db.close().await.unwrap();

    // A confidential (评标) session's record is read by the clerk, and the read is audited,
    // flagged for discipline officers.
    let evaluation = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room_a}/start"),
            Some(
                json!({"project_code": "ZB-WR-PB", "session_code": "PB-01", "kind": "evaluation", "reason": "test: unbooked"}),
            ),
        )
        .await;
    let pb = evaluation["id"].as_str().unwrap();
    let (status, rec) = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            &format!("/api/v1/sessions/{pb}/witness-record"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rec}");
    let trail = server
        .ok("GET", &format!("/api/v1/sessions/{pb}/audit"), None)
        .await;
    let clerk = server.user("archive_clerk").username.clone();
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "witness_record_view"
                && e["flagged"] == true
                && e["actor"].as_str().unwrap().starts_with(&clerk)),
        "{trail}"
    );
}

/// Issue 15: staff add witness entries in the console during a recording and sign and stop; the
/// replay page shows the entries as markers (headless Chromium, web/tests/witness.mjs).
#[tokio::test(flavor = "multi_thread")]
async fn staff_add_witness_entries_in_the_console_sign_and_stop() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = one_camera_room(&server, &sim, "开标室 C", "cam1").await;
    let session = server.start_recording(&room, "ZB-WR-CONSOLE").await;
    server
        .wait_session(&session, "2 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("witness");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/tests/witness.mjs");
    let base = server.url("");
    let staff = server.user("witness_staff");
    let officer = server.user("discipline_officer");
    let args = [
        base.trim_end_matches('/').to_string(),
        session.clone(),
        artefacts.display().to_string(),
        staff.username.clone(),
        staff.one_time_password.clone(),
        officer.username.clone(),
        officer.one_time_password.clone(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(&args)
            .output()
            .expect("node runs (scripts/setup installs Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed:\n{}\n{stdout}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    eprintln!("witness summary: {summary}");
    assert_eq!(summary["markers"].as_array().unwrap().len(), 2);

    // What the browser did is what the server recorded and signed.
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(view["state"], "stopped", "{view}");
    let record = server
        .ok(
            "GET",
            &format!("/api/v1/sessions/{session}/witness-record"),
            None,
        )
        .await;
    let entries = record["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{record}");
    assert_eq!(
        (
            entries[0]["kind"].as_str(),
            entries[1]["corrects_seq"].as_i64()
        ),
        (Some("objection"), Some(1)),
        "{record}"
    );
    assert_eq!(record["signed_by"], staff.username.as_str());
    let m = manifest_of(&server, &view);
    assert_eq!(m["witness_record"]["sha256"], record["sha256"], "{m}");
    assert_eq!(m["witness_record"]["signed_by"], staff.username.as_str());
}
