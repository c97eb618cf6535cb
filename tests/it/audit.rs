//! The audit trail: hash-chained, refused UPDATE/DELETE by the database itself, signed
//! checkpoints, filters and CSV; an insider who edits it (dropping the guards first) is caught by
//! `witness verify --audit`, whether or not they recompute the hashes.

use std::process::Command;
use std::time::Duration;

use sqlx::any::install_default_drivers;
use sqlx::{Connection, Executor};

use crate::harness::*;

fn verify_audit(server: &Server) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["verify", "--audit", "--config"])
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn insider(server: &Server) -> sqlx::AnyConnection {
    install_default_drivers();
    sqlx::AnyConnection::connect(&server.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_trail_is_chained_guarded_and_verifiable() {
    let server = Server::start().await;
    // Reading the trail is itself audited: each read adds one entry.
    for _ in 0..5 {
        server.ok("GET", "/api/v1/audit?limit=1", None).await;
    }
    let page = server.ok("GET", "/api/v1/audit", None).await;
    let entries = page["entries"].as_array().unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], entries[i - 1]["entry_hash"], "linked");
        }
    }
    // The test users were made with the CLI: each creation and token is in the trail.
    assert_eq!(entries[0]["action"], "user_add");
    assert_eq!(
        entries[0]["actor"], "system",
        "the first security administrator: {page}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "token_issue" && e["actor"] == "cli")
    );
    let views: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "audit_view")
        .collect();
    assert_eq!(views.len(), 6, "{page}");
    for v in &views {
        assert_eq!(v["actor"], "t-audit-administrator/token:tests");
        assert_eq!(v["actor_role"], "audit_administrator");
        assert_eq!(v["address"], "127.0.0.1");
    }
    let first_view = views[0]["seq"].as_i64().unwrap();

    // Filters, paging and CSV.
    let p = server
        .ok(
            "GET",
            &format!("/api/v1/audit?action=audit_view&limit=2&after_seq={first_view}"),
            None,
        )
        .await;
    let seqs: Vec<i64> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![
            views[1]["seq"].as_i64().unwrap(),
            views[2]["seq"].as_i64().unwrap()
        ]
    );
    assert_eq!(p["next_after_seq"], views[2]["seq"]);
    let none = server
        .ok(
            "GET",
            "/api/v1/audit?action=export&from=2001-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(none["entries"].as_array().unwrap().len(), 0);
    let csv = server.text("/api/v1/audit?format=csv").await;
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("seq,time,actor,role,address,action"),
        "{csv}"
    );
    assert!(lines.count() >= 7, "{csv}");
    for (q, code) in [
        ("limit=0", "invalid_query"),
        ("limit=100000", "invalid_query"),
        ("format=xml", "invalid_query"),
        ("from=yesterday", "invalid_query"),
        ("after_seq=-1", "invalid_query"),
        ("colour=red", "invalid_query"),
        ("session=%27%20OR%201%3D1%20--", ""),
    ] {
        let (status, body) = server
            .call("GET", &format!("/api/v1/audit?{q}"), None)
            .await;
        if code.is_empty() {
            // SQL metacharacters are a value like any other: no match, no error.
            assert_eq!(status, 200, "{q}: {body}");
            assert_eq!(body["entries"].as_array().unwrap().len(), 0, "{q}: {body}");
        } else {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some(code)),
                "{q}: {body}"
            );
        }
    }

    // Signed checkpoints (every 0.6 s in tests) and an intact chain.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, out) = verify_audit(&server);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit trail intact"), "{out}");
    let report = server.ok("GET", "/api/v1/audit/verify", None).await;
    assert_report_intact(&report, "session");
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");

    // The database refuses to change or remove entries.
    let mut db = insider(&server).await;
    for sql in [
        "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = db.execute(sql).await.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    server.ok("GET", "/api/v1/audit?limit=1", None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the new head gets signed

    // An insider who drops the guards and edits an entry is caught...
    drop_guards(&mut db).await;
    db.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
        .await
        .unwrap();
    let (code, out) = verify_audit(&server);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("audit entry 2: content does not match its hash (entry edited)"),
        "{out}"
    );

    // ...and so is one who also recomputes every hash after it: the signed checkpoints differ.
    // (Every start of witness puts the guards back, the verifier's included: drop them again.)
    drop_guards(&mut db).await;
    rehash_from(&server, &mut db, 2).await;
    let (code, out) = verify_audit(&server);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("differs from the checkpoint signed at"),
        "{out}"
    );

    // Cutting off the tail is caught by the last checkpoint.
    drop_guards(&mut db).await;
    let head: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(&mut db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(head)
        .execute(&mut db)
        .await
        .unwrap();
    let (code, out) = verify_audit(&server);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "audit entry {head}: signed in a checkpoint but missing (trail truncated)"
        )),
        "{out}"
    );
}

async fn drop_guards(db: &mut sqlx::AnyConnection) {
    if db.backend_name().eq_ignore_ascii_case("postgresql") {
        for t in ["audit_log", "audit_checkpoints"] {
            db.execute(format!("DROP TRIGGER {t}_append_only ON {t}").as_str())
                .await
                .unwrap();
        }
    } else {
        for t in ["audit_log", "audit_checkpoints"] {
            for op in ["update", "delete"] {
                db.execute(format!("DROP TRIGGER {t}_no_{op}").as_str())
                    .await
                    .unwrap();
            }
        }
    }
}

/// What an insider who knows the format does: recompute every hash from `seq` on.
async fn rehash_from(server: &Server, db: &mut sqlx::AnyConnection, seq: i64) {
    let entries: Vec<witness::audit::AuditEntry> = {
        let mut all = Vec::new();
        let pool = sqlx::AnyPool::connect(&server.db).await.unwrap();
        let mut after = 0;
        loop {
            let page = witness::audit::page(&pool, after, 1000).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().unwrap().seq;
            all.extend(page);
        }
        all
    };
    let mut prev = entries[(seq - 2) as usize].entry_hash.clone();
    for mut e in entries.into_iter().filter(|e| e.seq >= seq) {
        e.prev_hash = prev;
        e.entry_hash = e.compute_hash();
        sqlx::query("UPDATE audit_log SET prev_hash = $1, entry_hash = $2 WHERE seq = $3")
            .bind(&e.prev_hash)
            .bind(&e.entry_hash)
            .bind(e.seq)
            .execute(&mut *db)
            .await
            .unwrap();
        prev = e.entry_hash;
    }
}
