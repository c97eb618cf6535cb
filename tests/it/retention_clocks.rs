//! Retention clocks nobody can backdate: project events reported by the trading system's
//! integration token or an archive clerk, never by witness staff; dates before the project's
//! last recording or in the future refused, naming the rule; a correction in force only once a
//! second person approves it, with its history shown; retain-until never earlier than it was.

use serde_json::{Value, json};

use crate::harness::*;

const PROJECT: &str = "ZB-SEC-1";

/// An evaluation session of `PROJECT`, started and stopped (a camera never reached: a gap is
/// enough here). Returns its id and its stop time.
async fn recorded_session(server: &Server) -> (String, String) {
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "评标室 7", "kind": "evaluation", "sources": [{"name": "cam1", "url": "rtsp://127.0.0.1:1/x"}]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": PROJECT, "reason": "test: unbooked", "session_code": "S1", "kind": "evaluation", "category": "construction"})),
        )
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    (
        s["id"].as_str().unwrap().to_string(),
        stopped["stopped_at"].as_str().unwrap().to_string(),
    )
}

async fn with_token(server: &Server, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = server
        .http
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn audit(server: &Server, action: &str) -> Vec<Value> {
    server
        .ok("GET", &format!("/api/v1/audit?action={action}"), None)
        .await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn retention(server: &Server, session: &str) -> Value {
    server
        .ok(
            "GET",
            &format!("/api/v1/sessions/{session}/retention"),
            None,
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_trading_system_or_a_clerk_report_and_never_a_backdated_date() {
    let server = Server::start().await;
    let (session, stopped_at) = recorded_session(&server).await;
    let events = format!("/api/v1/projects/{PROJECT}/events");

    // Witness staff, who record the sessions, may not start their clocks: refused and audited.
    let (status, b) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &events,
            Some(json!({"closed_at": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    let trail = audit(&server, "project_event").await;
    assert!(
        trail.iter().any(
            |e| e["actor"].as_str().unwrap().starts_with("t-witness-staff")
                && e["outcome"].as_str().unwrap().starts_with("denied")
        ),
        "{trail:?}"
    );
    let r = retention(&server, &session).await;
    assert_eq!(r["state"], "open", "nothing started the clock: {r}");

    // The trading system: an archive clerk account's token scoped to project events alone.
    server.cli(&["user", "add", "t-trading", "--role", "archive_clerk"]);
    let trading = server
        .cli(&[
            "token",
            "--user",
            "t-trading",
            "--name",
            "jyxt",
            "--days",
            "1",
            "--scope",
            "project_events",
        ])
        .trim()
        .to_string();

    // A date before the project's last recording: 422 naming the rule, audited with the date.
    let (status, b) = with_token(
        &server,
        &trading,
        &events,
        json!({"closed_at": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("event_before_last_recording")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last recording"),
        "{b}"
    );
    // The archive clerk alike, even a moment before the stop.
    let just_before = at(chrono::DateTime::parse_from_rfc3339(&stopped_at)
        .unwrap()
        .to_utc()
        - chrono::Duration::seconds(1));
    let (status, b) = server
        .call("POST", &events, Some(json!({ "closed_at": just_before })))
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("event_before_last_recording")),
        "{b}"
    );
    // A date in the future (beyond the clock tolerance of 5 minutes).
    let tomorrow = at(chrono::Utc::now() + chrono::Duration::hours(1));
    let (status, b) = with_token(
        &server,
        &trading,
        &events,
        json!({ "procurement_ended_at": tomorrow }),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("event_in_future")),
        "{b}"
    );
    let refusals = audit(&server, "project_event").await;
    assert!(
        refusals.iter().any(|e| e["actor"] == "t-trading/token:jyxt"
            && e["outcome"] == "failed: event_before_last_recording"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("2000-01-01T00:00:00Z")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|e| e["outcome"] == "failed: event_in_future"),
        "{refusals:?}"
    );
    let r = retention(&server, &session).await;
    assert_eq!(r["state"], "open", "no refused date started the clock: {r}");

    // A valid date: after the last recording, not in the future.
    let closed = at(chrono::Utc::now());
    let (status, b) = with_token(&server, &trading, &events, json!({ "closed_at": closed })).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["outcomes"][0]["result"], "reported", "{b}");
    let r = retention(&server, &session).await;
    assert_eq!(r["state"], "retained", "{r}");
    assert_eq!(
        r["clock_started_at"],
        witness::time::rfc3339(witness::time::parse_rfc3339(&closed).unwrap()),
        "{r}"
    );
    let reported = audit(&server, "project_event").await;
    assert!(
        reported.iter().any(|e| e["actor"] == "t-trading/token:jyxt"
            && e["outcome"] == "allowed"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("closed_at: reported (in force none")),
        "{reported:?}"
    );
    let (status, candidates) = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            "/api/v1/retention/candidates",
            None,
        )
        .await;
    assert_eq!(status, 200, "{candidates}");
    assert_eq!(candidates.as_array().unwrap().len(), 0, "{candidates}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correction_needs_a_second_person_and_never_shortens_retention() {
    let server = Server::start().await;
    let (session, stopped_at) = recorded_session(&server).await;
    let events = format!("/api/v1/projects/{PROJECT}/events");
    server.cli(&["user", "add", "t-trading", "--role", "archive_clerk"]);
    let trading = server
        .cli(&[
            "token",
            "--user",
            "t-trading",
            "--name",
            "jyxt",
            "--days",
            "1",
            "--scope",
            "project_events",
        ])
        .trim()
        .to_string();

    // The trading system reports the close; retain-until is computed from it.
    let closed = at(chrono::Utc::now());
    let (status, b) = with_token(&server, &trading, &events, json!({ "closed_at": closed })).await;
    assert_eq!(status, 200, "{b}");
    let before = retention(&server, &session).await;
    let until = before["retain_until"].as_str().unwrap().to_string();
    assert_eq!(before["state"], "retained", "{before}");

    // It then proposes an earlier date (still after the last recording): only a correction.
    let earlier = at(chrono::DateTime::parse_from_rfc3339(&stopped_at)
        .unwrap()
        .to_utc()
        + chrono::Duration::milliseconds(1));
    let (status, b) = with_token(
        &server,
        &trading,
        &events,
        json!({ "closed_at": earlier, "reason": "交易系统更正结项日期" }),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["outcomes"][0]["result"], "correction_proposed", "{b}");
    let correction = b["outcomes"][0]["correction_id"]
        .as_str()
        .unwrap()
        .to_string();
    let closed_shown = witness::time::rfc3339(witness::time::parse_rfc3339(&closed).unwrap());
    assert_eq!(
        b["closed_at"], closed_shown,
        "the original stands until approved: {b}"
    );
    let p = server
        .ok("GET", &format!("/api/v1/projects/{PROJECT}"), None)
        .await;
    assert_eq!(p["closed_at"], closed_shown, "{p}");
    let steps: Vec<(&str, Option<&str>)> = p["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_str().unwrap(), e["state"].as_str()))
        .collect();
    assert_eq!(
        steps,
        [("report", None), ("correction", Some("pending"))],
        "{p}"
    );

    // Not by the same person: neither through the token nor by logging in as them.
    let decide = format!("/api/v1/projects/{PROJECT}/events/{correction}/decide");
    let approve = json!({"decision": "approve", "reason": "核对交易系统记录"});
    let (status, b) = with_token(&server, &trading, &decide, approve.clone()).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "{b}"
    );
    let other_token = server
        .cli(&[
            "token",
            "--user",
            "t-trading",
            "--name",
            "second",
            "--days",
            "1",
        ])
        .trim()
        .to_string();
    let (status, b) = with_token(&server, &other_token, &decide, approve.clone()).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("same_person")),
        "a second token is not a second person: {b}"
    );
    let denied = audit(&server, "project_event_approve").await;
    assert!(
        denied
            .iter()
            .any(|e| e["actor"] == "t-trading/token:jyxt" && e["outcome"] == "failed: same_person"),
        "{denied:?}"
    );
    // Witness staff cannot approve either.
    let (status, _) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &decide,
            Some(approve.clone()),
        )
        .await;
    assert_eq!(status, 403);
    let p = server
        .ok("GET", &format!("/api/v1/projects/{PROJECT}"), None)
        .await;
    assert_eq!(p["closed_at"], closed_shown, "still the original: {p}");

    // A second person (the archive clerk) approves: in force, with the history kept.
    let (status, b) = server.call("POST", &decide, Some(approve.clone())).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["state"], "approved", "{b}");
    let earlier_shown = witness::time::rfc3339(witness::time::parse_rfc3339(&earlier).unwrap());
    let p = server
        .ok("GET", &format!("/api/v1/projects/{PROJECT}"), None)
        .await;
    assert_eq!(p["closed_at"], earlier_shown, "{p}");
    let history = p["history"].as_array().unwrap();
    let steps: Vec<(&str, Option<&str>, &str)> = history
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap(),
                e["state"].as_str(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("report", None, "t-trading/token:jyxt"),
            ("correction", Some("approved"), "t-trading/token:jyxt"),
            ("approve", None, "t-archive-clerk/token:tests"),
        ],
        "{p}"
    );
    assert_eq!(history[0]["at"], closed_shown, "the original is kept: {p}");
    assert_eq!(history[1]["at"], earlier_shown);
    assert_eq!(history[1]["reason"], "交易系统更正结项日期");
    assert_eq!(history[2]["decides"], correction.as_str());
    let approved = audit(&server, "project_event_approve").await;
    assert!(
        approved
            .iter()
            .any(|e| e["actor"] == "t-archive-clerk/token:tests"
                && e["outcome"] == "allowed"
                && e["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("in force {closed_shown} → {earlier_shown}"))),
        "who, the old and the new value: {approved:?}"
    );
    // Decided once.
    let (status, b) = server.call("POST", &decide, Some(approve)).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("correction_decided")),
        "{b}"
    );

    // The clock now starts at the earlier date, but retain-until never moves earlier than it was
    // computed: the session is no candidate sooner than before.
    let after = retention(&server, &session).await;
    assert_eq!(after["clock_started_at"], earlier_shown, "{after}");
    assert_eq!(
        after["retain_until"],
        until.as_str(),
        "never earlier: {after}"
    );
    assert_eq!(after["state"], "retained");
    let (status, candidates) = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            "/api/v1/retention/candidates",
            None,
        )
        .await;
    assert_eq!(status, 200, "{candidates}");
    assert_eq!(candidates.as_array().unwrap().len(), 0, "{candidates}");

    // A later correction, approved, does move it later.
    let later = at(chrono::Utc::now());
    let (status, b) = server
        .call("POST", &events, Some(json!({ "closed_at": later })))
        .await;
    assert_eq!(status, 200, "{b}");
    let id = b["outcomes"][0]["correction_id"].as_str().unwrap();
    let (status, b) = with_token(
        &server,
        &trading,
        &format!("/api/v1/projects/{PROJECT}/events/{id}/decide"),
        json!({"decision": "approve", "reason": "确认"}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let latest = retention(&server, &session).await;
    assert!(
        latest["retain_until"].as_str().unwrap() > until.as_str(),
        "{latest} vs {until}"
    );
}
