//! Signed checkpoints while recording (issue 12, item 4): every chain's head is signed and stored
//! beside its segments while it records. The insider's recipe — owner rights on the database,
//! guards dropped, a chain rewritten with every hash recomputed, the session set to `stopping`
//! for the server to sign — is caught: nothing is signed, an alarm and an audit entry say why,
//! and every verifier says TAMPERED. A checkpoint deleted from the store after the stop is
//! missed, since the signed manifest lists them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sqlx::Executor;
use witness::ledger::chain::Entry;

use crate::db_guards::{chain, insert_entry, insider};
use crate::harness::*;

const EVERY_SECOND: &str = "checkpoint_seconds = 1.0\n";

/// The checkpoint objects stored for a recording, in seq order.
fn checkpoint_files(server: &Server, project: &str, session: &str, source: &str) -> Vec<PathBuf> {
    let dir = server.objects().join(project).join(session).join(source);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".checkpoint.json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Records until cam1 has at least `n` checkpoints stored.
async fn record_checkpoints(server: &Server, room: &str, project: &str, n: usize) -> String {
    let session = server.start_recording(room, project).await;
    let t = std::time::Instant::now();
    while checkpoint_files(server, project, &session, "cam1").len() < n {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "no {n} checkpoints; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    session
}

/// The owner's recipe: the guards dropped, seq 1 of the chain edited and every later entry
/// re-linked and re-hashed as docs/chain-format.md describes, so the chain is consistent in
/// itself.
async fn rewrite_chain(db: &mut sqlx::AnyConnection, recording_id: &str) {
    let statements: &[&str] = if db.backend_name().eq_ignore_ascii_case("postgresql") {
        &[
            "DROP TRIGGER chain_entries_guard ON chain_entries",
            "DROP TRIGGER sessions_guard ON sessions",
        ]
    } else {
        &[
            "DROP TRIGGER chain_entries_no_update",
            "DROP TRIGGER chain_entries_no_delete",
            "DROP TRIGGER chain_entries_insert_live",
            "DROP TRIGGER chain_entries_insert_tombstone",
            "DROP TRIGGER sessions_state",
            "DROP TRIGGER sessions_immutable",
        ]
    };
    for s in statements {
        db.execute(*s).await.unwrap();
    }
    let entries = chain(db, recording_id).await;
    assert!(entries.len() >= 4, "{entries:?}");
    let mut forged: Vec<Entry> = vec![entries[0].clone()];
    for e in &entries[1..] {
        let mut f = e.clone();
        if f.seq == 1 {
            f.detail = "nothing happened here".into();
        }
        f.prev_hash = forged.last().unwrap().entry_hash.clone();
        f.entry_hash = String::new();
        forged.push(f.seal());
    }
    db.execute(
        format!("DELETE FROM chain_entries WHERE recording_id = '{recording_id}' AND seq >= 1")
            .as_str(),
    )
    .await
    .unwrap();
    for f in &forged[1..] {
        insert_entry(db, f).await.unwrap();
    }
    assert_ne!(
        forged.last().unwrap().entry_hash,
        entries.last().unwrap().entry_hash
    );
}

fn recording_id(session: &Value, source: &str) -> String {
    recording(session, source)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn export(server: &Server, session: &str, out: &Path) -> String {
    server.cli(&[
        "export",
        "--session",
        session,
        "--reason",
        "checkpoint test",
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `witness verify PKG --public-key KEY`: exit code and output.
fn verify_package(pkg: &Path, public_key: &str) -> (i32, String) {
    let o = std::process::Command::new(BIN)
        .arg("verify")
        .arg(pkg)
        .args(["--public-key", public_key])
        .env("RUST_LOG", "warn")
        .env("HOME", "/nonexistent")
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

async fn public_key(server: &Server) -> String {
    let keys = server.ok("GET", "/api/v1/keys", None).await;
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "current")
        .unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_rewritten_and_set_to_stopping_is_not_signed() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start_with(EVERY_SECOND).await;
    let room = server.demo_room(&sim, "default").await;
    let project = "ZB-2026-CP01";
    let session = record_checkpoints(&server, &room, project, 3).await;
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    let rec = recording_id(&view, "cam1");

    // The server dies; the insider rewrites the chain and asks for it to be signed.
    server.kill();
    let mut db = insider(&server).await;
    rewrite_chain(&mut db, &rec).await;
    let stop_us = (unix_now() * 1e6) as i64;
    db.execute(
        format!(
            "UPDATE sessions SET state = 'stopping', stopped_at = {stop_us} WHERE id = '{session}'"
        )
        .as_str(),
    )
    .await
    .unwrap();

    // The server comes back and resumes what was stopping: it starts, and signs nothing.
    server.restart().await;
    let manifest = server
        .objects()
        .join(project)
        .join(&session)
        .join("manifest.json");
    let t = std::time::Instant::now();
    let entry = loop {
        let trail = crate::rbac::audit_trail(&server).await;
        if let Some(e) = trail
            .iter()
            .find(|e| e["action"] == "chain_tampered" && e["session_id"] == session.as_str())
        {
            break e.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no chain_tampered audit entry; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("chain rewritten after it was signed"),
        "{entry}"
    );
    assert!(!manifest.exists(), "a manifest was signed over the forgery");
    let m = server.text("/metrics").await;
    assert!(
        m.contains(&format!(
            "witness_signing_halted{{session=\"{session}\"}} 1"
        )),
        "{m}"
    );
    // The room card shows the alarm, and staff pressing stop are told why nothing is signed.
    let card = server.room_card(&room).await;
    assert!(
        card["signing_alarm"]
            .as_str()
            .is_some_and(|a| a.contains("checkpoint")),
        "{card}"
    );
    let (status, body) = server
        .call("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "chain_tampered", "{body}");
    assert!(!manifest.exists());
    // Once only in the audit trail, however often it is tried.
    let trail = crate::rbac::audit_trail(&server).await;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["action"] == "chain_tampered" && e["session_id"] == session.as_str())
            .count(),
        1
    );

    // Every verifier: TAMPERED, naming the checkpoint.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    assert!(
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["problem"]
                .as_str()
                .unwrap()
                .contains("checkpoint signed at")),
        "{report}"
    );
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chain rewritten after it was signed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_travel_in_packages_and_a_deleted_one_is_missed() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with(EVERY_SECOND).await;
    let room = server.demo_room(&sim, "default").await;
    let project = "ZB-2026-CP02";
    let session = record_checkpoints(&server, &room, project, 3).await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let files = checkpoint_files(&server, project, &session, "cam1");
    assert!(files.len() >= 3, "{files:?}");

    // The signed manifest lists the checkpoints it checked.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            server
                .objects()
                .join(stopped["manifest_key"].as_str().unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    let cam1 = manifest["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "cam1")
        .unwrap();
    let listed = cam1["checkpoints"].as_array().unwrap();
    assert!(listed.len() >= 3, "{manifest}");
    // Each checkpoint names its recording, seq and hash, signed with the server's key id.
    let cp: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(cp["format"], "witness-chain-checkpoint/1");
    assert_eq!(cp["session_id"], session.as_str());
    let key = public_key(&server).await;
    assert!(cp["signature"].as_str().unwrap().contains(':'), "{cp}");

    // Whole: INTACT online and offline, the checkpoints counted.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg.tar");
    export(&server, &session, &pkg);
    let (code, out) = verify_package(&pkg, &key);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("chain checkpoints signed while recording hold"),
        "{out}"
    );

    // Someone with access to the store deletes a checkpoint: missed by both verifiers.
    std::fs::remove_file(&files[1]).unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("missing (deleted)"),
        "{report}"
    );
    let pkg2 = dir.path().join("pkg2.tar");
    export(&server, &session, &pkg2);
    let (code, out) = verify_package(&pkg2, &key);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("listed in the signed manifest, is missing"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_session_reopened_by_the_owner_is_not_signed_again() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let project = "ZB-2026-CP03";
    let session = server.start_recording(&room, project).await;
    server
        .wait_session(&session, "segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let manifest_path = server
        .objects()
        .join(stopped["manifest_key"].as_str().unwrap());
    let manifest = std::fs::read(&manifest_path).unwrap();

    // The owner drops the guards, appends an entry after the signed head and moves the session
    // back to `stopping` for the server to sign again.
    server.kill();
    let mut db = insider(&server).await;
    let rec = recording_id(&stopped, "cam1");
    rewrite_chain(&mut db, &rec).await;
    db.execute(format!("UPDATE sessions SET state = 'stopping' WHERE id = '{session}'").as_str())
        .await
        .unwrap();

    // The server starts all the same, signs nothing, and says so once.
    server.restart().await;
    let t = std::time::Instant::now();
    loop {
        let trail = crate::rbac::audit_trail(&server).await;
        let conflicts = trail
            .iter()
            .filter(|e| e["action"] == "manifest_conflict" && e["session_id"] == session.as_str())
            .count();
        if conflicts > 0 {
            assert_eq!(conflicts, 1, "audited once");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no manifest_conflict; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, body) = server
        .call("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "manifest_exists", "{body}");
    assert_eq!(
        std::fs::read(&manifest_path).unwrap(),
        manifest,
        "manifest untouched"
    );
    let m = server.text("/metrics").await;
    assert!(
        m.contains(&format!(
            "witness_signing_halted{{session=\"{session}\"}} 1"
        )),
        "{m}"
    );
    let trail = crate::rbac::audit_trail(&server).await;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["action"] == "manifest_conflict" && e["session_id"] == session.as_str())
            .count(),
        1
    );
    // The stored manifest is checked whatever state the database claims: heads differ.
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differ from the signed manifest"), "{out}");
}
