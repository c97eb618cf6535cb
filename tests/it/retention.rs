//! Retention and holds: the rule and policy version recorded on each session, retain-until from
//! the business event (an open project never expires), holds from complaints and by hand,
//! release only by a different person, policy changes audited and never shortening, hostile
//! policy files refused at start.

use serde_json::{Value, json};

use crate::harness::*;

async fn session_of(
    server: &Server,
    room: &str,
    project: &str,
    kind: &str,
    category: &str,
) -> String {
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": project, "reason": "test: unbooked", "session_code": "S1", "kind": kind, "category": category})),
        )
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    s["id"].as_str().unwrap().to_string()
}

async fn retention(server: &Server, session: &str) -> Value {
    server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await["retention"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_follows_the_law_and_holds_freeze_it() {
    let mut server = Server::start().await;
    // A camera that is never reached: the session has a gap and no media, which is enough here.
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "评标室 2", "kind": "evaluation", "sources": [{"name": "cam1", "url": "rtsp://127.0.0.1:1/x"}]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let policies = server.ok("GET", "/api/v1/retention/policies", None).await;
    let version = policies["version"].as_str().unwrap().to_string();

    // Procurement: 15 years from the end of the procurement; open until it ends.
    let proc = session_of(&server, &room, "ZC-2026-01", "bid_opening", "procurement").await;
    let r = retention(&server, &proc).await;
    assert_eq!(r["rule"]["id"], "procurement-av", "{r}");
    assert_eq!(r["rule"]["basis"]["article"], "第四十二条 (Article 42)");
    assert_eq!(r["policy_version"], version);
    assert_eq!(r["state"], "open", "an open project never expires: {r}");
    assert_eq!(r["retain_until"], Value::Null);
    // The procurement ended after its last recording (reported by the archive clerk).
    let ended = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    server
        .ok(
            "POST",
            "/api/v1/projects/ZC-2026-01/events",
            Some(json!({ "procurement_ended_at": ended })),
        )
        .await;
    // Another date does not move the clock: the first one stands (the other is only a proposed
    // correction, see retention_clocks).
    let later = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let b = server
        .ok(
            "POST",
            "/api/v1/projects/ZC-2026-01/events",
            Some(json!({ "procurement_ended_at": later })),
        )
        .await;
    assert_eq!(b["outcomes"][0]["result"], "correction_proposed", "{b}");
    let r = retention(&server, &proc).await;
    let until = chrono::DateTime::parse_from_rfc3339(&ended)
        .unwrap()
        .checked_add_months(chrono::Months::new(15 * 12))
        .unwrap();
    assert_eq!(
        r["retain_until"],
        witness::time::rfc3339(until.timestamp_micros()),
        "{r}"
    );
    assert_eq!(r["state"], "retained");
    assert_eq!(r["disposable"], false);

    // Another category, elsewhere than Zhejiang: the default rule (15 years from closing, review).
    let old = session_of(&server, &room, "GC-2005-07", "other", "construction").await;
    let r = retention(&server, &old).await;
    assert_eq!(r["rule"]["id"], "default", "{r}");
    // A project closed long ago (the API refuses a date before its recordings).
    server
        .event_of_the_past("GC-2005-07", "closed", "2005-07-01T00:00:00Z")
        .await;
    let r = retention(&server, &old).await;
    assert_eq!(
        (r["state"].as_str(), r["disposable"].as_bool()),
        (Some("expired"), Some(true)),
        "{r}"
    );
    assert_eq!(r["disposition"], "review");

    // A complaint against the project places a hold at once; nothing is disposable under it.
    let (status, hold) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/projects/GC-2005-07/complaints",
            Some(json!({"kind": "complaint", "reference": "投诉〔2026〕12号", "reason": "投标人投诉评标程序"})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let r = retention(&server, &old).await;
    assert_eq!(r["disposable"], false, "{r}");
    assert_eq!(r["holds"][0]["reference"], "投诉〔2026〕12号");
    let project = server.ok("GET", "/api/v1/projects/GC-2005-07", None).await;
    assert_eq!(project["holds"].as_array().unwrap().len(), 1, "{project}");

    // Release: not by the person who placed it, not without a reason; then by someone else.
    let release = format!("/api/v1/holds/{}/release", hold["id"].as_str().unwrap());
    let (status, b) = server
        .call_as(
            Some("regulator"),
            "POST",
            &release,
            Some(json!({"reason": "撤诉"})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "{b}"
    );
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &release,
            Some(json!({"reason": " "})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{b}"
    );
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &release,
            Some(json!({"reason": "投诉已处理完毕 (complaint closed)"})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["released_by"], "t-archive-clerk/token:tests");
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &release,
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("hold_released")),
        "{b}"
    );
    assert_eq!(retention(&server, &old).await["disposable"], true);

    // Candidates and the dry-run report: the expired, unheld session, and nothing deleted.
    let c = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            "/api/v1/retention/candidates",
            None,
        )
        .await
        .1;
    let ids: Vec<&str> = c
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["session"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![old.as_str()], "{c}");
    let (status, dry) = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            "/api/v1/retention/dry-run",
            None,
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["candidates"][0]["retention"]["rule"]["id"], "default");
    assert!(dry["candidates"][0]["objects"].is_array(), "{dry}");
    assert_eq!(
        retention(&server, &old).await["disposable"],
        true,
        "still there"
    );
    let (status, _) = server
        .call_as(
            Some("witness_staff"),
            "GET",
            "/api/v1/retention/dry-run",
            None,
        )
        .await;
    assert_eq!(status, 403);

    // A range hold on the room covers the sessions it overlaps; hold scopes are checked.
    let (status, h) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/holds",
            Some(json!({"scope": "range", "room_id": room, "from": "2001-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z",
                        "reason": "纪检调查", "authority": "市纪委监委", "reference": "调〔2026〕3号"})),
        )
        .await;
    assert_eq!(status, 201, "{h}");
    assert_eq!(retention(&server, &old).await["holds"][0]["scope"], "range");
    for (bad, code) in [
        (
            json!({"scope": "galaxy", "reason": "r", "authority": "a", "reference": "x"}),
            "invalid_field",
        ),
        (
            json!({"scope": "project", "reason": "r", "authority": "a", "reference": "x"}),
            "invalid_field",
        ),
        (
            json!({"scope": "session", "session_id": "nope", "reason": "r", "authority": "a", "reference": "x"}),
            "session_not_found",
        ),
        (
            json!({"scope": "range", "room_id": room, "from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z", "reason": "r", "authority": "a", "reference": "x"}),
            "invalid_field",
        ),
        (
            json!({"scope": "project", "project_code": "P", "reason": "", "authority": "a", "reference": "x"}),
            "invalid_field",
        ),
    ] {
        let (status, b) = server
            .call_as(
                Some("regulator"),
                "POST",
                "/api/v1/holds",
                Some(bad.clone()),
            )
            .await;
        assert!((400..500).contains(&status), "{bad}: {status} {b}");
        assert_eq!(b["error"]["code"], code, "{bad}: {b}");
    }
    // Witness staff and administrators place no holds.
    for role in ["witness_staff", "system_administrator"] {
        let (status, _) = server
            .call_as(
                Some(role),
                "POST",
                "/api/v1/projects/GC-2005-07/complaints",
                Some(json!({"kind": "query", "reference": "x", "reason": "y"})),
            )
            .await;
        assert_eq!(status, 403, "{role}");
    }

    // A policy change is recorded and audited, and never shortens what is stored.
    let default = server.policies().join("default.toml");
    let text = std::fs::read_to_string(&default).unwrap();
    std::fs::write(
        &default,
        text.replace("minimum_months = 180", "minimum_months = 240"),
    )
    .unwrap();
    server.kill();
    server.restart().await;
    let r = retention(&server, &old).await;
    assert_eq!(r["retention_months"], 240, "{r}");
    assert_eq!(
        r["policy_version"], version,
        "the version in force at recording stays recorded"
    );
    assert_ne!(r["current_policy_version"], version);
    std::fs::write(&default, &text).unwrap();
    server.kill();
    server.restart().await;
    let r = retention(&server, &old).await;
    assert_eq!(
        r["retention_months"], 240,
        "going back to 180 months does not shorten it: {r}"
    );
    let changes = server
        .ok("GET", "/api/v1/audit?action=policy_change", None)
        .await;
    assert_eq!(
        changes["entries"].as_array().unwrap().len(),
        3,
        "first load and two changes: {changes}"
    );
    let holds = server
        .ok("GET", "/api/v1/audit?action=hold_place", None)
        .await;
    let placed = holds["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "allowed")
        .count();
    assert_eq!(
        placed, 2,
        "the complaint's hold and the range hold: {holds}"
    );
    assert!(
        holds["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "failed: HTTP 422"),
        "refused attempts are in the trail too: {holds}"
    );
    for action in ["retention_dry_run", "retention_candidates"] {
        let e = server
            .ok("GET", &format!("/api/v1/audit?action={action}"), None)
            .await;
        assert!(
            !e["entries"].as_array().unwrap().is_empty(),
            "{action}: {e}"
        );
    }
    let releases = server
        .ok("GET", "/api/v1/audit?action=hold_release", None)
        .await;
    assert!(
        releases["entries"].as_array().unwrap().iter().any(
            |e| e["outcome"] == "allowed" && e["reason"] == "投诉已处理完毕 (complaint closed)"
        ),
        "{releases}"
    );

    // A hostile policy file stops the server at start with a message naming it.
    std::fs::write(
        server.policies().join("short.toml"),
        text.replace("id = \"default\"", "id = \"short\"")
            .replace("minimum_months = 180", "minimum_months = 12")
            .replace(
                "record_classes = []",
                "record_classes = [\"evaluation_av\"]",
            )
            .replace("precedence = 0", "precedence = 500"),
    )
    .unwrap();
    server.kill();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("short.toml") && stderr.contains("less than the 15 years"),
        "{stderr}"
    );
}

/// A regulator scoped to some trading categories sees and holds only those projects.
#[tokio::test(flavor = "multi_thread")]
async fn regulators_see_and_hold_only_their_categories() {
    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "开标室 9", "kind": "bid_opening", "sources": [{"name": "cam1", "url": "rtsp://127.0.0.1:1/x"}]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let land = session_of(&server, &room, "TD-2026-01", "bid_opening", "land").await;
    // A project closed long ago (the API refuses a date before its recordings).
    server
        .event_of_the_past("TD-2026-01", "closed", "2005-01-01T00:00:00Z")
        .await;
    let token = server.another_user("t-reg-construction", "regulator", &["construction"]);
    let as_scoped = |method: &str, path: &str| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        server
            .http
            .request(m, server.url(path))
            .bearer_auth(token.clone())
    };
    let r = as_scoped("GET", "/api/v1/projects/TD-2026-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = as_scoped("POST", "/api/v1/projects/TD-2026-01/complaints")
        .json(&json!({"kind": "complaint", "reference": "x", "reason": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let c: Value = as_scoped("GET", "/api/v1/retention/candidates")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c.as_array().unwrap().len(), 0, "{c}");
    // The unscoped regulator of the harness sees it all.
    let c = server
        .call_as(
            Some("regulator"),
            "GET",
            "/api/v1/retention/candidates",
            None,
        )
        .await
        .1;
    assert_eq!(c[0]["session"]["id"], land.as_str(), "{c}");
    let (status, _) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/projects/TD-2026-01/complaints",
            Some(json!({"kind": "complaint", "reference": "x", "reason": "y"})),
        )
        .await;
    assert_eq!(status, 201);
    let holds: Value = as_scoped("GET", "/api/v1/holds")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(holds.as_array().unwrap().len(), 0, "{holds}");
}
