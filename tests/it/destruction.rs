//! Lawful destruction end to end: an expired session, an appraisal record, two approvers who
//! are not the proposer, a hold that stops everything, then execution: objects gone, a
//! permanent register, tombstones in the chains, and verification (online and of an exported
//! package) that tells this lawful destruction from tampering.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn lawful_destruction_with_appraisal_two_approvers_and_tombstones() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": "QT-2005-01", "reason": "test: unbooked", "session_code": "KB-01", "kind": "other", "category": "other"})),
        )
        .await;
    let session = s["id"].as_str().unwrap().to_string();
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            ["cam1", "cam2", "mic1"]
                .iter()
                .all(|src| segments(s, src) >= 3)
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let media: usize = ["cam1", "cam2", "mic1"]
        .iter()
        .map(|src| segments(&stopped, src))
        .sum();

    // Not expired yet: nothing can be proposed.
    let appraisal = json!({"committee": "档案鉴定小组 (张, 李, 王)", "conclusion": "保管期满，无继续保存价值，同意销毁", "reference": "鉴〔2026〕7号"});
    let propose = json!({"session_ids": [session], "appraisal": appraisal});
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/destructions",
            Some(propose.clone()),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("not_disposable")),
        "{b}"
    );
    // A project closed long ago (the API refuses a date before its recordings).
    server
        .event_of_the_past("QT-2005-01", "closed", "2005-01-01T00:00:00Z")
        .await;
    // An appraisal record is required.
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/destructions",
            Some(json!({"session_ids": [session], "appraisal": {"committee": "x", "conclusion": " ", "reference": "y"}})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{b}"
    );
    let (status, req) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/destructions",
            Some(propose),
        )
        .await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap().to_string();
    let decision = format!("/api/v1/destructions/{id}/decision");
    let execute = format!("/api/v1/destructions/{id}/execute");
    let approve = json!({"decision": "approve", "reason": "鉴定意见属实"});

    // Two approvers, neither of them the proposer.
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &decision,
            Some(approve.clone()),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "{b}"
    );
    let (status, b) = server
        .call_as(Some("regulator"), "POST", &decision, Some(approve.clone()))
        .await;
    assert_eq!(
        (status, b["state"].as_str()),
        (200, Some("proposed")),
        "{b}"
    );
    let (status, b) = server
        .call_as(Some("regulator"), "POST", &decision, Some(approve.clone()))
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "{b}"
    );
    let (status, b) = server
        .call_as(Some("archive_clerk"), "POST", &execute, None)
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("destruction_not_approved")),
        "{b}"
    );
    for role in [
        "witness_staff",
        "discipline_officer",
        "system_administrator",
        "security_administrator",
        "audit_administrator",
    ] {
        let (status, _) = server
            .call_as(Some(role), "POST", &decision, Some(approve.clone()))
            .await;
        assert_eq!(status, 403, "{role} approves nothing");
    }
    // A second regulator approves.
    let token = server.another_user("t-regulator-2", "regulator", &["other"]);
    let r = server
        .http
        .post(server.url(&decision))
        .bearer_auth(&token)
        .json(&approve)
        .send()
        .await
        .unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["state"], "approved", "{b}");

    // A hold placed after the approval still wins.
    let (status, hold) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/projects/QT-2005-01/complaints",
            Some(json!({"kind": "complaint", "reference": "投诉〔2026〕99号", "reason": "迟到的投诉"})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let (status, b) = server
        .call_as(Some("archive_clerk"), "POST", &execute, None)
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("not_disposable")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("legal hold"),
        "{b}"
    );
    let release = format!("/api/v1/holds/{}/release", hold["id"].as_str().unwrap());
    let (status, _) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &release,
            Some(json!({"reason": "投诉已驳回"})),
        )
        .await;
    assert_eq!(status, 200);

    // Execution: every object gone, each one in the register, tombstones in the chains.
    let (status, done) = server
        .call_as(Some("archive_clerk"), "POST", &execute, None)
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["objects"].as_u64().unwrap() as usize, media, "{done}");
    for src in ["cam1", "cam2", "mic1"] {
        for seg in recording(&stopped, src)["segments"].as_array().unwrap() {
            let key = seg["object_key"].as_str().unwrap();
            assert!(!server.objects().join(key).exists(), "{key} destroyed");
        }
    }
    let after = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(after["state"], "destroyed");
    let register = server
        .ok(
            "GET",
            &format!("/api/v1/destruction-register?session={session}"),
            None,
        )
        .await;
    let register = register.as_array().unwrap();
    assert_eq!(register.len(), media);
    assert_eq!(register[0]["rule_id"], "default");
    assert!(
        register[0]["approvers"]
            .as_str()
            .unwrap()
            .contains("t-regulator-2")
    );
    // The decision that warrants the tombstones, signed, beside the manifest: who proposed,
    // who approved, which entries went.
    let request_id = execute.split('/').rev().nth(1).unwrap();
    let project = after["project_code"].as_str().unwrap();
    let record_path = server
        .objects()
        .join(project)
        .join(&session)
        .join(format!("destruction-{request_id}.json"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert_eq!(record["format"], "witness-destruction-decision/1");
    assert_eq!(record["approvals"].as_array().unwrap().len(), 2, "{record}");
    assert_eq!(
        record["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seqs"].as_array().unwrap().len())
            .sum::<usize>(),
        media,
        "{record}"
    );
    assert!(record_path.with_extension("json.sig").exists());
    // Each tombstone names the record by its SHA-256 (seen in the package verifier's report).
    let record_digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&record_path).unwrap()))
    };
    let (status, b) = server
        .call_as(Some("archive_clerk"), "POST", &execute, None)
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("destruction_not_approved")),
        "executed once: {b}"
    );

    // Verification distinguishes lawful destruction from tampering.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    // ...and so does an exported package, offline.
    let pkg = server.objects().parent().unwrap().join("destroyed.tar");
    let out = Command::new(BIN)
        .args([
            "export",
            "--session",
            &session,
            "--reason",
            "销毁后的证明 proof of destruction",
            "--config",
        ])
        .arg(&server.config)
        .arg("--out")
        .arg(&pkg)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let out = Command::new(BIN)
        .args(["verify", "--public-key", &key])
        .arg(&pkg)
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("lawfully destroyed: source cam1"), "{text}");
    assert_eq!(
        text.matches(&format!("decision: {record_digest}")).count(),
        3,
        "one tombstone per chain names the signed decision: {text}"
    );
    let out = Command::new(BIN)
        .args(["verify"])
        .arg(&pkg)
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("UNTRUSTED KEY"), "{text}");

    // The register is permanent.
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&server.db)
        .await
        .unwrap();
    let err = sqlx::Executor::execute(&mut db, "DELETE FROM destruction_register")
        .await
        .expect_err("the register is permanent")
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    let audit = server
        .ok("GET", "/api/v1/audit?action=destruction_execute", None)
        .await;
    let done: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "allowed")
        .collect();
    assert_eq!(done.len(), 1, "{audit}");
    assert_eq!(done[0]["session_id"], session.as_str(), "{audit}");
    assert_eq!(done[0]["project_code"], "QT-2005-01");
}
