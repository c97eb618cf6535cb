//! Append-only where the law needs it: an insider with a direct database connection (the
//! application's rights, not the owner's) cannot rewrite a stopped session's chain, move it back
//! to `stopping` for the server to re-sign, change what it is, or slip in a tombstone; the
//! session still verifies INTACT. A tombstone inserted by someone who drops the guards (the
//! owner) with a wrong digest is TAMPERED.

use std::time::Duration;

use sqlx::any::install_default_drivers;
use sqlx::{Connection, Executor};
use witness::ledger::chain::{Entry, EntryKind};

use crate::harness::*;

pub async fn insider(server: &Server) -> sqlx::AnyConnection {
    install_default_drivers();
    sqlx::AnyConnection::connect(&server.db).await.unwrap()
}

/// Runs `sql` and expects the database to refuse it with a message containing `why`.
async fn refused(db: &mut sqlx::AnyConnection, sql: &str, why: &str) {
    let err = db.execute(sql).await.expect_err(sql).to_string();
    assert!(err.contains(why), "{sql}: {err}");
}

pub async fn chain(db: &mut sqlx::AnyConnection, recording_id: &str) -> Vec<Entry> {
    let rows = sqlx::query_as::<_, (i64, String, String, i64, i64, i64, String, String, String, String, String)>(
        "SELECT seq, kind, object_key, wall_start_us, duration_us, bytes, sha256, clock, detail, prev_hash, entry_hash FROM chain_entries WHERE recording_id = $1 ORDER BY seq",
    )
    .bind(recording_id)
    .fetch_all(&mut *db)
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(seq, kind, object_key, start, duration, bytes, sha256, clock, detail, prev, hash)| {
                Entry {
                    recording_id: recording_id.to_string(),
                    seq,
                    kind: EntryKind::parse(&kind).unwrap(),
                    object_key,
                    wall_start_us: start,
                    duration_us: duration,
                    bytes,
                    sha256,
                    clock,
                    detail,
                    prev_hash: prev,
                    entry_hash: hash,
                }
            },
        )
        .collect()
}

pub async fn insert_entry(db: &mut sqlx::AnyConnection, e: &Entry) -> Result<(), sqlx::Error> {
    witness::ledger::index::insert_entry_in(&mut *db, e).await
}

/// A tombstone after `last` naming media entry `seq`, as someone who read docs/chain-format.md would write
/// it; `digest` is what it claims the destroyed entries hash to.
fn tombstone(last: &Entry, seq: i64, digest: String) -> Entry {
    Entry {
        recording_id: last.recording_id.clone(),
        seq: last.seq + 1,
        kind: EntryKind::Tombstone,
        object_key: String::new(),
        wall_start_us: last.wall_start_us + last.duration_us,
        duration_us: 0,
        bytes: 0,
        sha256: digest,
        clock: "server".into(),
        detail: witness::ledger::chain::tombstone_detail(&[seq], "forged", "default", "", &[]),
        prev_hash: last.entry_hash.clone(),
        entry_hash: String::new(),
    }
    .seal()
}

async fn assert_intact(server: &Server, session: &str) {
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
    let (code, out) = server.verify_cli(session);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insider_cannot_rewrite_a_stopped_session() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-2026-0016").await;
    server
        .wait_session(&session, "3 s of cam1", Duration::from_secs(40), |s| {
            recording(s, "cam1")["duration_seconds"].as_f64().unwrap() >= 3.0
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let rec = recording(&stopped, "cam1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = std::fs::read(
        server
            .objects()
            .join(stopped["manifest_key"].as_str().unwrap()),
    )
    .unwrap();

    let mut db = insider(&server).await;
    let entries = chain(&mut db, &rec).await;
    let last = entries.last().unwrap().clone();
    assert!(entries.len() >= 3, "{entries:?}");

    // The chain: no UPDATE, no DELETE.
    refused(
        &mut db,
        &format!(
            "UPDATE chain_entries SET detail = 'edited' WHERE recording_id = '{rec}' AND seq = 1"
        ),
        "append-only",
    )
    .await;
    refused(
        &mut db,
        &format!(
            "DELETE FROM chain_entries WHERE recording_id = '{rec}' AND seq = {}",
            last.seq
        ),
        "append-only",
    )
    .await;
    refused(&mut db, "DELETE FROM chain_entries", "append-only").await;
    // Nothing but a lawful tombstone is appended to a stopped session's chain.
    let mut extra = last.clone();
    extra.seq += 1;
    extra.prev_hash = last.entry_hash.clone();
    extra.kind = EntryKind::Gap;
    let extra = Entry {
        entry_hash: String::new(),
        ..extra
    }
    .seal();
    let err = insert_entry(&mut db, &extra).await.unwrap_err().to_string();
    assert!(err.contains("only while the session is recording"), "{err}");

    // The session: never back to `stopping` (for the cluster tick to re-sign), never another
    // project, never deleted.
    for (sql, why) in [
        (
            format!("UPDATE sessions SET state = 'stopping' WHERE id = '{session}'"),
            "state change refused",
        ),
        (
            format!("UPDATE sessions SET state = 'recording' WHERE id = '{session}'"),
            "state change refused",
        ),
        (
            format!("UPDATE sessions SET project_code = 'ZB-2026-9999' WHERE id = '{session}'"),
            "immutable",
        ),
        (
            format!("UPDATE sessions SET stopped_at = stopped_at + 1 WHERE id = '{session}'"),
            "immutable",
        ),
        (
            format!("UPDATE sessions SET manifest_key = 'elsewhere' WHERE id = '{session}'"),
            "immutable",
        ),
        (
            format!("DELETE FROM sessions WHERE id = '{session}'"),
            "DELETE refused",
        ),
        (
            format!("UPDATE recordings SET source_name = 'cam9' WHERE id = '{rec}'"),
            "immutable",
        ),
        (
            format!("DELETE FROM recordings WHERE id = '{rec}'"),
            "DELETE refused",
        ),
        // A project's event history (one row added below): reports, corrections and decisions
        // are only ever added.
        (
            "UPDATE project_events SET at_us = 0 WHERE id = 'insider-1'".to_string(),
            "append-only",
        ),
        (
            "DELETE FROM project_events WHERE id = 'insider-1'".to_string(),
            "append-only",
        ),
    ] {
        if sql.contains("project_events") {
            db.execute(
                "INSERT INTO project_events (id, project_code, event, step, at_us, decides, reason, actor, recorded_at) \
                 SELECT 'insider-1', 'ZB-GUARD', 'closed', 'report', 1, NULL, '', 'insider', 1 \
                 WHERE NOT EXISTS (SELECT 1 FROM project_events WHERE id = 'insider-1')",
            )
            .await
            .unwrap();
        }
        refused(&mut db, &sql, why).await;
    }
    // A decided reset of someone's password stays decided, and stays: nobody turns an approval
    // back into a proposal to approve it again, or removes it.
    db.execute(
        "INSERT INTO account_resets (id, user_id, username, totp, reason, proposed_by, proposed_at, state, decided_by, decided_at) \
         SELECT 'insider-r', id, username, 0, 'forgot', 'insider', 1, 'approved', 'someone', 2 FROM users LIMIT 1",
    )
    .await
    .unwrap();
    refused(
        &mut db,
        "UPDATE account_resets SET state = 'proposed' WHERE id = 'insider-r'",
        "decided, once",
    )
    .await;
    refused(
        &mut db,
        "DELETE FROM account_resets WHERE id = 'insider-r'",
        "DELETE refused",
    )
    .await;
    // What the application itself updates stays updatable: the retention stamp, and the URL
    // (camera credentials are moved out of it at start-up).
    db.execute(format!("UPDATE recordings SET url = url WHERE id = '{rec}'").as_str())
        .await
        .unwrap();
    db.execute(
        format!(
            "UPDATE sessions SET retention_months = retention_months + 12 WHERE id = '{session}'"
        )
        .as_str(),
    )
    .await
    .unwrap();

    // A forged tombstone, even one whose digest and link are right, is refused: there is no
    // executed destruction request for it.
    let media = entries.iter().find(|e| e.kind == EntryKind::Media).unwrap();
    let good = tombstone(
        &last,
        media.seq,
        witness::ledger::chain::tombstone_digest(&[media]),
    );
    let err = insert_entry(&mut db, &good).await.unwrap_err().to_string();
    assert!(err.contains("tombstone needs"), "{err}");

    // Holds: released once, never deleted.
    let (status, hold) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/holds",
            Some(serde_json::json!({"scope": "session", "session_id": session, "reason": "complaint", "authority": "监管部门", "reference": "JG-1"})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let hold_id = hold["id"].as_str().expect("a hold id").to_string();
    refused(
        &mut db,
        &format!("DELETE FROM holds WHERE id = '{hold_id}'"),
        "DELETE refused",
    )
    .await;
    refused(
        &mut db,
        &format!("UPDATE holds SET reason = 'nothing' WHERE id = '{hold_id}'"),
        "released, once",
    )
    .await;

    // Nothing changed: the server and the command line both find the session INTACT, and the
    // signed manifest is the one written at stop.
    assert_intact(&server, &session).await;
    assert_eq!(
        std::fs::read(
            server
                .objects()
                .join(stopped["manifest_key"].as_str().unwrap())
        )
        .unwrap(),
        manifest
    );

    // The owner can drop the guards. A tombstone inserted then, digest and link right, still
    // makes nothing read as lawfully destroyed: no signed destruction decision warrants it.
    drop_chain_guard(&mut db).await;
    insert_entry(&mut db, &good).await.unwrap();
    std::fs::remove_file(server.objects().join(&media.object_key)).unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("destruction decision") && out.contains("missing from the store"),
        "{out}"
    );
    // One whose digest does not match what it names is caught too.
    let bad = tombstone(&good, media.seq, "0".repeat(64));
    insert_entry(&mut db, &bad).await.unwrap();
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tombstone digest does not match"), "{out}");
}

/// What the owner of the tables can do and the application's role cannot.
async fn drop_chain_guard(db: &mut sqlx::AnyConnection) {
    if db.backend_name().eq_ignore_ascii_case("postgresql") {
        db.execute("DROP TRIGGER chain_entries_guard ON chain_entries")
            .await
            .unwrap();
    } else {
        db.execute("DROP TRIGGER chain_entries_insert_tombstone")
            .await
            .unwrap();
    }
}
