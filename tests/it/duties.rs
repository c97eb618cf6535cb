//! Separated duties (issue 12, item 7): one administrator cannot take over another person's
//! account (a reset waits for a second, different administrator), and account and room changes
//! reach the audit trail with their values before and after.

use serde_json::{Value, json};
use witness::identity::totp::code_at;

use crate::harness::*;
use crate::rbac::audit_trail;

const NEW_PASSWORD: &str = "correct horse battery staple 42";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A request with an API token of the caller's choosing (the harness's is one per role).
async fn as_token(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        )
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Logs in; the status, the answer and (on success) cookie and CSRF token.
async fn login(
    server: &Server,
    username: &str,
    password: &str,
    totp: Option<String>,
) -> (u16, Value, Option<(String, String)>) {
    let mut body = json!({"username": username, "password": password});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    let r = server
        .http
        .post(server.url("/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("witness_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let session = cookie.map(|c| (c, v["csrf_token"].as_str().unwrap_or("").to_string()));
    (status, v, session)
}

async fn in_session(
    server: &Server,
    (cookie, csrf): &(String, String),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        )
        .header("cookie", format!("witness_session={cookie}"))
        .header("x-csrf-token", csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The user's id, from the list.
async fn id_of(server: &Server, name: &str) -> String {
    let users = server.ok("GET", "/api/v1/users", None).await;
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap_or_else(|| panic!("no user {name} in {users}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn user(server: &Server, name: &str) -> Value {
    let users = server.ok("GET", "/api/v1/users", None).await;
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .cloned()
        .unwrap()
}

/// The entries of `action` about `target`.
fn entries<'a>(trail: &'a [Value], action: &str, target: &str) -> Vec<&'a Value> {
    trail
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_of_another_account_needs_a_second_administrator() {
    let server = Server::start().await;
    let admin_b = server.another_user("admin-b", "administrator", &[]);
    // The proposer's second token: the same person.
    let admin_a_other = server
        .cli(&[
            "token",
            "--user",
            "t-administrator",
            "--name",
            "second",
            "--days",
            "1",
        ])
        .trim()
        .to_string();

    // The target sets their own password first, as a new user does.
    let officer = server.user("discipline_officer");
    let (status, body, session) =
        login(&server, &officer.username, &officer.one_time_password, None).await;
    assert_eq!(status, 200, "{body}");
    let r = in_session(
        &server,
        session.as_ref().unwrap(),
        "POST",
        "/api/v1/auth/password",
        Some(json!({"current_password": officer.one_time_password, "new_password": NEW_PASSWORD})),
    )
    .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let officer_id = id_of(&server, &officer.username).await;

    // Administrator A resets the officer's password: proposed, nothing changes.
    let (status, proposed) = server
        .call(
            "POST",
            &format!("/api/v1/users/{officer_id}/reset"),
            Some(json!({"reason": "forgot the password"})),
        )
        .await;
    assert_eq!(status, 202, "{proposed}");
    assert_eq!(proposed["state"], "proposed");
    assert!(
        proposed.get("one_time_password").is_none(),
        "the proposer gets no password: {proposed}"
    );
    let reset_id = proposed["reset"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        proposed["reset"]["proposed_by"],
        "t-administrator/token:tests"
    );
    let (status, body, _) = login(&server, &officer.username, NEW_PASSWORD, None).await;
    assert_eq!(status, 200, "the old password still works: {body}");
    assert_eq!(
        user(&server, &officer.username).await["must_change_password"],
        false
    );
    // A second proposal while one waits is refused.
    let again = server
        .call("POST", &format!("/api/v1/users/{officer_id}/reset"), None)
        .await;
    assert_eq!(again.0, 409, "{}", again.1);
    assert_eq!(again.1["error"]["code"], "reset_pending");
    // Listed as waiting.
    let list = server.ok("GET", "/api/v1/user-resets", None).await;
    assert_eq!(list[0]["id"], reset_id.as_str(), "{list}");
    assert_eq!(list[0]["state"], "proposed");

    // The proposer approving, through either of their tokens: refused, audited, unchanged.
    let approve = format!("/api/v1/user-resets/{reset_id}/approve");
    let own = server.call("POST", &approve, None).await;
    assert_eq!(own.0, 409, "{}", own.1);
    assert_eq!(own.1["error"]["code"], "same_person");
    let other_token = as_token(&server, &admin_a_other, "POST", &approve, None).await;
    assert_eq!(other_token.0, 409, "{}", other_token.1);
    assert_eq!(other_token.1["error"]["code"], "same_person");
    let (status, _, _) = login(&server, &officer.username, NEW_PASSWORD, None).await;
    assert_eq!(
        status, 200,
        "still the old password after refused approvals"
    );

    // Administrator B approves: the one-time password goes to B and works; the old one not.
    let (status, approved) = as_token(&server, &admin_b, "POST", &approve, None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["reset"]["state"], "approved");
    assert_eq!(approved["reset"]["decided_by"], "admin-b/token:tests");
    let one_time = approved["one_time_password"].as_str().unwrap().to_string();
    let (status, body, _) = login(&server, &officer.username, &one_time, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restriction"], "password_change_required");
    let (status, _, _) = login(&server, &officer.username, NEW_PASSWORD, None).await;
    assert_eq!(status, 401, "the old password no longer works");
    // Decided once.
    let twice = as_token(&server, &admin_b, "POST", &approve, None).await;
    assert_eq!(twice.0, 409, "{}", twice.1);
    assert_eq!(twice.1["error"]["code"], "reset_decided");
    let missing = as_token(
        &server,
        &admin_b,
        "POST",
        &format!("/api/v1/user-resets/{}/approve", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(missing.0, 404, "{}", missing.1);
    assert_eq!(missing.1["error"]["code"], "reset_not_found");

    // The trail: proposed (by A, with the reason), two refusals, approved (by B, naming A).
    let trail = audit_trail(&server).await;
    let target = officer.username.as_str();
    let proposals = entries(&trail, "user_reset", target);
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    assert_eq!(proposals[0]["actor"], "t-administrator/token:tests");
    assert_eq!(proposals[0]["reason"], "forgot the password");
    assert_eq!(
        proposals[0]["outcome"],
        format!(
            "proposed; password: reset to a one-time password (to be changed at login); waits for a second administrator (reset {reset_id})"
        )
    );
    let decisions = entries(&trail, "user_reset_approve", target);
    let outcomes: Vec<(&str, &str)> = decisions
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("t-administrator/token:tests", "denied: same_person"),
            ("t-administrator/token:second", "denied: same_person"),
            (
                "admin-b/token:tests",
                "changed; password: reset to a one-time password (to be changed at login); proposed by t-administrator/token:tests, approved by admin-b/token:tests"
            ),
        ],
        "{decisions:?}"
    );
    // The second approval, refused as decided, is on the record too (generic entry).
    assert!(
        trail.iter().any(|e| e["action"] == "user_reset_approve"
            && e["target"] == approve.as_str()
            && e["outcome"] == "failed: HTTP 409"),
        "refused second approval audited"
    );
    assert_eq!(
        decisions[2]["reason"],
        format!("reset {reset_id}: forgot the password")
    );
    // Never the secret.
    assert!(
        !serde_json::to_string(&trail).unwrap().contains(&one_time),
        "the one-time password is in the trail"
    );

    // A rejected proposal changes nothing, and says who rejected it.
    let (status, proposed) = server
        .call("POST", &format!("/api/v1/users/{officer_id}/reset"), None)
        .await;
    assert_eq!(status, 202, "{proposed}");
    let reset_id = proposed["reset"]["id"].as_str().unwrap().to_string();
    let (status, rejected) = as_token(
        &server,
        &admin_b,
        "POST",
        &format!("/api/v1/user-resets/{reset_id}/reject"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["reset"]["state"], "rejected");
    let (status, body, _) = login(&server, &officer.username, &one_time, None).await;
    assert_eq!(status, 200, "unchanged after a rejection: {body}");
    let trail = audit_trail(&server).await;
    let rejections = entries(&trail, "user_reset_reject", target);
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["actor"], "admin-b/token:tests");
    assert_eq!(
        rejections[0]["outcome"],
        "rejected; unchanged; proposed by t-administrator/token:tests, rejected by admin-b/token:tests"
    );

    // One's own account: not a takeover, but not with an API token either.
    let admin_id = id_of(&server, "t-administrator").await;
    let own = server
        .call("POST", &format!("/api/v1/users/{admin_id}/reset"), None)
        .await;
    assert_eq!(own.0, 409, "{}", own.1);
    assert_eq!(own.1["error"]["code"], "own_account");

    // The machine's authority (`witness user reset`) resets at once, audited as `cli`.
    let out = server.cli(&["user", "reset", &officer.username]);
    let cli_password = out
        .lines()
        .find_map(|l| l.split_once(": ").map(|(_, p)| p.trim().to_string()))
        .unwrap();
    let (status, body, _) = login(&server, &officer.username, &cli_password, None).await;
    assert_eq!(status, 200, "{body}");
    let trail = audit_trail(&server).await;
    assert!(
        entries(&trail, "user_reset", target)
            .iter()
            .any(|e| e["actor"] == "cli"
                && e["outcome"]
                    == "changed; password: reset to a one-time password (to be changed at login)"),
        "cli reset audited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_totp_reset_needs_a_second_administrator() {
    let server = Server::start().await;
    let admin_b = server.another_user("admin-b", "administrator", &[]);
    // The regulator enrols TOTP.
    let reg = server.user("regulator");
    let (status, body, session) = login(&server, &reg.username, &reg.one_time_password, None).await;
    assert_eq!(status, 200, "{body}");
    let session = session.unwrap();
    let r = in_session(
        &server,
        &session,
        "POST",
        "/api/v1/auth/password",
        Some(json!({"current_password": reg.one_time_password, "new_password": NEW_PASSWORD})),
    )
    .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let setup = in_session(&server, &session, "POST", "/api/v1/auth/totp/setup", None).await;
    assert_eq!(setup.0, 200, "{}", setup.1);
    let secret = setup.1["secret"].as_str().unwrap().to_string();
    let r = in_session(
        &server,
        &session,
        "POST",
        "/api/v1/auth/totp/confirm",
        Some(json!({"code": code_at(&secret, now_s())})),
    )
    .await;
    assert_eq!(r.0, 204, "{}", r.1);
    let reg_id = id_of(&server, &reg.username).await;

    // Administrator A: password and TOTP, proposed; the account keeps its second factor.
    let (status, proposed) = server
        .call(
            "POST",
            &format!("/api/v1/users/{reg_id}/reset"),
            Some(json!({"totp": true, "reason": "lost phone"})),
        )
        .await;
    assert_eq!(status, 202, "{proposed}");
    assert_eq!(proposed["reset"]["totp"], true);
    let reset_id = proposed["reset"]["id"].as_str().unwrap().to_string();
    assert_eq!(user(&server, &reg.username).await["totp_enabled"], true);
    let (status, body, _) = login(&server, &reg.username, NEW_PASSWORD, None).await;
    assert_eq!(status, 401, "TOTP still required: {body}");
    assert_eq!(body["error"]["code"], "totp_required");

    // A approving: refused.
    let approve = format!("/api/v1/user-resets/{reset_id}/approve");
    let own = server.call("POST", &approve, None).await;
    assert_eq!(own.0, 409, "{}", own.1);
    assert_eq!(own.1["error"]["code"], "same_person");
    assert_eq!(user(&server, &reg.username).await["totp_enabled"], true);

    // B approving: the one-time password logs in without a code; TOTP is gone.
    let (status, approved) = as_token(&server, &admin_b, "POST", &approve, None).await;
    assert_eq!(status, 200, "{approved}");
    let one_time = approved["one_time_password"].as_str().unwrap();
    assert_eq!(user(&server, &reg.username).await["totp_enabled"], false);
    let (status, body, _) = login(&server, &reg.username, one_time, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restriction"], "password_change_required");

    let trail = audit_trail(&server).await;
    let proposals = entries(&trail, "user_reset", &reg.username);
    assert_eq!(proposals.len(), 1);
    assert_eq!(
        proposals[0]["outcome"],
        format!(
            "proposed; password: reset to a one-time password (to be changed at login); totp: enrolled → removed; waits for a second administrator (reset {reset_id})"
        )
    );
    let approvals: Vec<&Value> = entries(&trail, "user_reset_approve", &reg.username)
        .into_iter()
        .filter(|e| e["actor"] == "admin-b/token:tests")
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        approvals[0]["outcome"],
        "changed; password: reset to a one-time password (to be changed at login); totp: enrolled → removed; proposed by t-administrator/token:tests, approved by admin-b/token:tests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_changes_are_audited_before_and_after() {
    let server = Server::start().await;
    let staff = server.user("witness_staff").username.clone();
    let id = id_of(&server, &staff).await;
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"role": "archive_clerk", "disabled": true, "display_name": "Wang"})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"role": "regulator", "categories": ["land", "other"], "disabled": false})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = server
        .call("PATCH", &format!("/api/v1/users/{id}"), Some(json!({})))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);

    let trail = audit_trail(&server).await;
    let changes: Vec<&str> = entries(&trail, "user_change", &staff)
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "t-administrator/token:tests");
            e["outcome"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "changed; display_name: \"t-witness-staff\" → \"Wang\"; role: witness_staff → archive_clerk (sessions and tokens ended); disabled: false → true",
            "changed; role: archive_clerk → regulator (sessions and tokens ended); categories: none → land,other; disabled: true → false",
            "unchanged",
        ],
        "one entry per change, each with before → after"
    );
    // One entry per request: no generic second one.
    let path = format!("/api/v1/users/{id}");
    assert_eq!(
        trail
            .iter()
            .filter(|e| e["target"] == path.as_str())
            .count(),
        0,
        "a generic entry besides the domain's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_change_is_audited_before_and_after_credentials_masked() {
    const SECRET: &str = "s3cr3t-duties-pw";
    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "开标室 D", "kind": "bid_opening", "sources": [
                    {"name": "cam1", "url": "rtsp://10.0.0.5:554/main"},
                    {"name": "mic1", "url": "rtsp://10.0.0.6:554/audio", "media": "audio"},
                ]}),
            ),
        )
        .await;
    let id = room["id"].as_str().unwrap().to_string();
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"name": "开标室 E", "location": "3F", "sources": [
                {"name": "cam1", "url": format!("rtsp://admin:{SECRET}@10.0.0.7:554/main"), "transport": "tcp"},
                {"name": "cam2", "url": "rtsp://10.0.0.8/sub", "media": "video"},
            ]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // The address changes without new credentials: they are removed.
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"sources": [
                {"name": "cam1", "url": "rtsp://10.0.0.9:554/main", "transport": "tcp"},
                {"name": "cam2", "url": "rtsp://10.0.0.8/sub", "media": "video"},
            ]})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);

    let trail = audit_trail(&server).await;
    assert!(
        !serde_json::to_string(&trail).unwrap().contains(SECRET),
        "a camera secret in the trail"
    );
    let changes: Vec<&str> = entries(&trail, "room_change", &id)
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "t-administrator/token:tests");
            e["outcome"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "changed; name: \"开标室 D\" → \"开标室 E\"; location: \"\" → \"3F\"; cam1: url: rtsp://10.0.0.5:554/main → rtsp://10.0.0.7:554/main; cam1: transport: auto → tcp; mic1: removed (url rtsp://10.0.0.6:554/audio); cam2: added (url rtsp://10.0.0.8/sub, media video, template default, transport auto); cam1: credentials replaced",
            "changed; cam1: url: rtsp://10.0.0.7:554/main → rtsp://10.0.0.9:554/main; cam1: credentials removed (the camera's address changed)",
        ]
    );
}
