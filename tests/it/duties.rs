//! Separated duties (issue 12, item 7; 等保 三员分立): the administrator is three roles (system,
//! security, audit), and no single account of any role may alone take over another account,
//! make accounts or roles (four eyes), read a confidential replay (a grant another person
//! approved), or make the approvers of its own destruction, or execute one alone. Every
//! refusal is asserted by status, code and audit entry. Account and room changes reach the
//! audit trail with their values before and after.

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
async fn a_reset_of_another_account_needs_a_second_security_administrator() {
    let server = Server::start().await;
    let admin_b = server.another_user("admin-b", "security_administrator", &[]);
    // The proposer's second token: the same person.
    let admin_a_other = server
        .cli(&[
            "token",
            "--user",
            "t-security-administrator",
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
        "t-security-administrator/token:tests"
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
    assert_eq!(
        proposals[0]["actor"],
        "t-security-administrator/token:tests"
    );
    assert_eq!(proposals[0]["reason"], "forgot the password");
    assert_eq!(
        proposals[0]["outcome"],
        format!(
            "proposed; password: reset to a one-time password (to be changed at login); waits for a second security administrator (reset {reset_id})"
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
            (
                "t-security-administrator/token:tests",
                "denied: same_person"
            ),
            (
                "t-security-administrator/token:second",
                "denied: same_person"
            ),
            (
                "admin-b/token:tests",
                "changed; password: reset to a one-time password (to be changed at login); proposed by t-security-administrator/token:tests, approved by admin-b/token:tests"
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
        "rejected; unchanged; proposed by t-security-administrator/token:tests, rejected by admin-b/token:tests"
    );

    // One's own account: not a takeover, but not with an API token either.
    let admin_id = id_of(&server, "t-security-administrator").await;
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
async fn a_totp_reset_needs_a_second_security_administrator() {
    let server = Server::start().await;
    let admin_b = server.another_user("admin-b", "security_administrator", &[]);
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
            "proposed; password: reset to a one-time password (to be changed at login); totp: enrolled → removed; waits for a second security administrator (reset {reset_id})"
        )
    );
    let approvals: Vec<&Value> = entries(&trail, "user_reset_approve", &reg.username)
        .into_iter()
        .filter(|e| e["actor"] == "admin-b/token:tests")
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        approvals[0]["outcome"],
        "changed; password: reset to a one-time password (to be changed at login); totp: enrolled → removed; proposed by t-security-administrator/token:tests, approved by admin-b/token:tests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_changes_are_audited_before_and_after() {
    let server = Server::start().await;
    let admin_b = server.another_user("admin-b", "security_administrator", &[]);
    let staff = server.user("witness_staff").username.clone();
    let id = id_of(&server, &staff).await;
    // A new name and disabling apply at once; the new role waits for a second person.
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"role": "archive_clerk", "disabled": true, "display_name": "Wang", "reason": "moved to the archive"})),
        )
        .await;
    assert_eq!(r.0, 202, "{}", r.1);
    assert_eq!(r.1["state"], "proposed");
    assert_eq!(r.1["user"]["role"], "witness_staff", "not yet: {}", r.1);
    assert_eq!(r.1["user"]["disabled"], true);
    let change = r.1["change"]["id"].as_str().unwrap().to_string();
    let (status, approved) = as_token(
        &server,
        &admin_b,
        "POST",
        &format!("/api/v1/account-changes/{change}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["user"]["role"], "archive_clerk");
    assert!(approved.get("one_time_password").is_none(), "{approved}");
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = server
        .call("PATCH", &format!("/api/v1/users/{id}"), Some(json!({})))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);

    let trail = audit_trail(&server).await;
    let changes: Vec<(&str, &str)> = entries(&trail, "user_change", &staff)
        .iter()
        .chain(entries(&trail, "account_change_approve", &staff).iter())
        .map(|e| (e["actor"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    let a = "t-security-administrator/token:tests";
    assert_eq!(
        changes,
        vec![
            (a, format!("proposed; role: witness_staff → archive_clerk (sessions and tokens ended); waits for a second security administrator (change {change})").as_str()),
            (a, "changed; display_name: \"t-witness-staff\" → \"Wang\"; disabled: false → true"),
            (a, "changed; disabled: true → false"),
            (a, "unchanged"),
            ("admin-b/token:tests", format!("changed; role: witness_staff → archive_clerk (sessions and tokens ended); proposed by {a}, approved by admin-b/token:tests").as_str()),
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
            assert_eq!(e["actor"], "t-system-administrator/token:tests");
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

/// The refusal entries of `action` whose outcome is `denied: <code>`.
fn denials<'a>(trail: &'a [Value], action: &str, code: &str) -> Vec<&'a Value> {
    let outcome = format!("denied: {code}");
    trail
        .iter()
        .filter(|e| e["action"] == action && e["outcome"] == outcome.as_str())
        .collect()
}

fn assert_refused(got: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
}

/// A token for a user made over the API (the host issues it, as `witness token` does).
fn token_of(server: &Server, name: &str) -> String {
    server
        .cli(&["token", "--user", name, "--name", "tests", "--days", "1"])
        .trim()
        .to_string()
}

/// Proposes an account as `proposer` (a token); returns the change's id.
async fn propose_account(
    server: &Server,
    proposer: &str,
    name: &str,
    role: &str,
    categories: &[&str],
) -> String {
    let (status, body) = as_token(
        server,
        proposer,
        "POST",
        "/api/v1/users",
        Some(json!({"username": name, "role": role, "categories": categories, "reason": "new colleague"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "proposed");
    assert!(body.get("one_time_password").is_none(), "{body}");
    body["change"]["id"].as_str().unwrap().to_string()
}

/// One security administrator alone: every account they make or re-role waits for a second
/// one; they cannot approve it themselves (by any token), nor approve a change of their own
/// account, nor use an account whose password they received to approve their own proposals.
#[tokio::test(flavor = "multi_thread")]
async fn one_security_administrator_cannot_make_accounts_alone() {
    let server = Server::start().await;
    let a = server.user("security_administrator").token.clone();
    let a_other = server
        .cli(&[
            "token",
            "--user",
            "t-security-administrator",
            "--name",
            "second",
            "--days",
            "1",
        ])
        .trim()
        .to_string();
    // The second security administrator is made on the host, as the bootstrap path.
    let b = server.another_user("admin-b", "security_administrator", &[]);

    // A makes a second security administrator, a regulator and two archive clerks: proposed,
    // none of them exists.
    let sa2 = propose_account(&server, &a, "sa-2", "security_administrator", &[]).await;
    let reg = propose_account(&server, &a, "reg-x", "regulator", &["land"]).await;
    let clerk1 = propose_account(&server, &a, "clerk-x1", "archive_clerk", &[]).await;
    let clerk2 = propose_account(&server, &a, "clerk-x2", "archive_clerk", &[]).await;
    let users = server.ok("GET", "/api/v1/users", None).await;
    for name in ["sa-2", "reg-x", "clerk-x1", "clerk-x2"] {
        assert!(
            !users
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["username"] == name),
            "{name} exists before approval"
        );
        let (status, body, _) = login(&server, name, "anything at all 1234", None).await;
        assert_eq!(status, 401, "{body}");
    }
    // The same name again while one waits: refused.
    let again = as_token(
        &server,
        &a,
        "POST",
        "/api/v1/users",
        Some(json!({"username": "sa-2", "role": "witness_staff"})),
    )
    .await;
    assert_refused(&again, 409, "change_pending", "a second proposal");
    let list = server.ok("GET", "/api/v1/account-changes", None).await;
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "proposed")
            .count(),
        4,
        "{list}"
    );

    // A approving their own proposals, through either token: refused, audited.
    for (change, token) in [
        (&sa2, &a),
        (&sa2, &a_other),
        (&reg, &a),
        (&clerk1, &a),
        (&clerk2, &a_other),
    ] {
        let got = as_token(
            &server,
            token,
            "POST",
            &format!("/api/v1/account-changes/{change}/approve"),
            None,
        )
        .await;
        assert_refused(&got, 409, "same_person", "the proposer approving");
    }
    // A re-roling themselves: refused at once.
    let a_id = id_of(&server, "t-security-administrator").await;
    let own = as_token(
        &server,
        &a,
        "PATCH",
        &format!("/api/v1/users/{a_id}"),
        Some(json!({"role": "regulator", "categories": ["land"]})),
    )
    .await;
    assert_refused(&own, 409, "own_account", "one's own role");
    // A re-roling B: proposed; B cannot approve a change of their own account.
    let b_id = id_of(&server, "admin-b").await;
    let (status, proposed) = as_token(
        &server,
        &a,
        "PATCH",
        &format!("/api/v1/users/{b_id}"),
        Some(json!({"role": "witness_staff"})),
    )
    .await;
    assert_eq!(status, 202, "{proposed}");
    let demote = proposed["change"]["id"].as_str().unwrap().to_string();
    let got = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/account-changes/{demote}/approve"),
        None,
    )
    .await;
    assert_refused(&got, 409, "own_account", "B approving their own demotion");
    assert_eq!(
        user(&server, "admin-b").await["role"],
        "security_administrator"
    );

    // B approves the second security administrator: the one-time password goes to B only.
    let (status, approved) = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/account-changes/{sa2}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["user"]["role"], "security_administrator");
    let one_time = approved["one_time_password"].as_str().unwrap().to_string();
    let (status, body, _) = login(&server, "sa-2", &one_time, None).await;
    assert_eq!(status, 200, "{body}");
    // B received sa-2's password: sa-2 is not a second person for B. B's proposal approved as
    // sa-2 is refused, and so is sa-2's approved by B.
    let sa2_token = token_of(&server, "sa-2");
    let b_prop = propose_account(&server, &b, "staff-b", "witness_staff", &[]).await;
    let got = as_token(
        &server,
        &sa2_token,
        "POST",
        &format!("/api/v1/account-changes/{b_prop}/approve"),
        None,
    )
    .await;
    assert_refused(&got, 409, "not_independent", "sa-2 approving B's proposal");
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin-b received the one-time password of sa-2"),
        "{}",
        got.1
    );
    let sa2_prop = propose_account(&server, &sa2_token, "staff-s", "witness_staff", &[]).await;
    let got = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/account-changes/{sa2_prop}/approve"),
        None,
    )
    .await;
    assert_refused(&got, 409, "not_independent", "B approving sa-2's proposal");
    // Nor may sa-2 reset an account for B: the reset rule is the same.
    let staff_id = id_of(&server, "t-witness-staff").await;
    let (status, reset) = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/users/{staff_id}/reset"),
        Some(json!({"reason": "forgot"})),
    )
    .await;
    assert_eq!(status, 202, "{reset}");
    let reset_id = reset["reset"]["id"].as_str().unwrap();
    let got = as_token(
        &server,
        &sa2_token,
        "POST",
        &format!("/api/v1/user-resets/{reset_id}/approve"),
        None,
    )
    .await;
    assert_refused(&got, 409, "not_independent", "sa-2 approving B's reset");
    // A, who never saw sa-2's password, is a second person for both.
    let (status, body) = as_token(
        &server,
        &a,
        "POST",
        &format!("/api/v1/account-changes/{b_prop}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Rejected: nothing made.
    let (status, body) = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/account-changes/{clerk2}/reject"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change"]["state"], "rejected");
    let twice = as_token(
        &server,
        &b,
        "POST",
        &format!("/api/v1/account-changes/{clerk2}/approve"),
        None,
    )
    .await;
    assert_refused(&twice, 409, "change_decided", "a decided change");

    // The trail: each proposal, each refusal (denied: code), each decision.
    let trail = audit_trail(&server).await;
    let proposals: Vec<&Value> = trail
        .iter()
        .filter(|e| {
            e["action"] == "user_add"
                && e["actor"] == "t-security-administrator/token:tests"
                && e["outcome"]
                    .as_str()
                    .unwrap()
                    .starts_with("proposed; user ")
        })
        .collect();
    assert_eq!(proposals.len(), 4, "{proposals:#?}");
    assert_eq!(
        proposals[0]["outcome"],
        format!(
            "proposed; user sa-2: role security_administrator; waits for a second security administrator (change {sa2})"
        )
    );
    let same = denials(&trail, "account_change_approve", "same_person");
    assert_eq!(same.len(), 5, "{same:#?}");
    assert!(
        same.iter()
            .any(|e| e["actor"] == "t-security-administrator/token:second" && e["target"] == "sa-2")
    );
    assert_eq!(
        denials(&trail, "account_change_approve", "own_account").len(),
        1
    );
    let ind = denials(&trail, "account_change_approve", "not_independent");
    assert_eq!(ind.len(), 2, "{ind:#?}");
    assert_eq!(ind[0]["actor"], "sa-2/token:tests");
    assert_eq!(ind[1]["actor"], "admin-b/token:tests");
    assert_eq!(
        denials(&trail, "user_reset_approve", "not_independent").len(),
        1
    );
    let created: Vec<&Value> = entries(&trail, "account_change_approve", "sa-2")
        .into_iter()
        .filter(|e| e["outcome"].as_str().unwrap().starts_with("changed"))
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["outcome"],
        "changed; created: user sa-2: role security_administrator; proposed by t-security-administrator/token:tests, approved by admin-b/token:tests"
    );
    assert!(
        !serde_json::to_string(&trail).unwrap().contains(&one_time),
        "a one-time password in the trail"
    );
    // The generic `own_account` of A's own role is on the record too.
    assert!(trail.iter().any(|e| e["action"] == "user_change"
        && e["actor"] == "t-security-administrator/token:tests"
        && e["outcome"] == "failed: HTTP 409"));
}

/// Each administrator does their own duty only, and each refusal is audited; the former
/// `administrator` role is refused with the three it became.
#[tokio::test(flavor = "multi_thread")]
async fn each_administrator_does_only_their_duty() {
    let server = Server::start().await;
    let room = crate::rbac::unreachable_room(&server, "开标室 duties").await;
    let staff_id = id_of(&server, "t-witness-staff").await;
    let session = crate::rbac::stopped_session(&server, &room, "evaluation", "land").await;
    let cases: &[(&str, &str, String, Option<Value>)] = &[
        // The system administrator: rooms, nothing of accounts, evidence or the trail.
        ("system_administrator", "GET", "/api/v1/users".into(), None),
        (
            "system_administrator",
            "POST",
            "/api/v1/users".into(),
            Some(json!({"username": "x1", "role": "witness_staff"})),
        ),
        (
            "system_administrator",
            "POST",
            format!("/api/v1/users/{staff_id}/reset"),
            None,
        ),
        ("system_administrator", "GET", "/api/v1/audit".into(), None),
        (
            "system_administrator",
            "GET",
            format!("/api/v1/sessions/{session}"),
            None,
        ),
        // The security administrator: accounts, nothing of rooms, evidence or the trail.
        (
            "security_administrator",
            "POST",
            "/api/v1/rooms".into(),
            Some(json!({"name": "x", "kind": "bid_opening", "sources": []})),
        ),
        (
            "security_administrator",
            "PATCH",
            format!("/api/v1/rooms/{room}"),
            Some(json!({"name": "y"})),
        ),
        (
            "security_administrator",
            "GET",
            "/api/v1/audit".into(),
            None,
        ),
        (
            "security_administrator",
            "GET",
            format!("/api/v1/sessions/{session}/sources/cam1/index.m3u8?reason=x"),
            None,
        ),
        // The audit administrator: reads the trail, changes nothing, plays nothing.
        (
            "audit_administrator",
            "POST",
            "/api/v1/users".into(),
            Some(json!({"username": "x2", "role": "witness_staff"})),
        ),
        (
            "audit_administrator",
            "PATCH",
            format!("/api/v1/users/{staff_id}"),
            Some(json!({"disabled": true})),
        ),
        (
            "audit_administrator",
            "PATCH",
            format!("/api/v1/rooms/{room}"),
            Some(json!({"name": "z"})),
        ),
        (
            "audit_administrator",
            "POST",
            format!("/api/v1/rooms/{room}/start"),
            Some(
                json!({"project_code": "P", "reason": "test: unbooked", "session_code": "S", "kind": "other"}),
            ),
        ),
        (
            "audit_administrator",
            "GET",
            format!("/api/v1/sessions/{session}/sources/cam1/index.m3u8?reason=x"),
            None,
        ),
        (
            "audit_administrator",
            "POST",
            format!("/api/v1/sessions/{session}/confidential-access"),
            Some(json!({"reason": "x"})),
        ),
    ];
    for (role, method, path, body) in cases {
        let got = server.call_as(Some(role), method, path, body.clone()).await;
        assert_refused(&got, 403, "forbidden", &format!("{role} {method} {path}"));
    }
    // What each may do.
    assert_eq!(
        server
            .call_as(
                Some("audit_administrator"),
                "GET",
                "/api/v1/audit?limit=1",
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call_as(
                Some("audit_administrator"),
                "GET",
                "/api/v1/audit/verify",
                None
            )
            .await
            .0,
        200
    );
    let trail = audit_trail(&server).await;
    for (role, _, path, _) in cases {
        let actor = format!("{}/token:tests", server.user(role).username);
        let target = path.split('?').next().unwrap();
        assert!(
            trail.iter().any(|e| e["actor"] == actor.as_str()
                && e["target"] == target
                && e["outcome"] == "denied: forbidden"),
            "{role} {path}: no refusal entry"
        );
    }
    // The audit administrator sees what administrators did (and who was refused).
    assert!(
        trail
            .iter()
            .any(|e| e["actor_role"] == "security_administrator")
    );

    // The former role: a clear error naming the three.
    let got = server
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "old-admin", "role": "administrator"})),
        )
        .await;
    assert_refused(&got, 422, "role_split", "the old role over HTTP");
    let message = got.1["error"]["message"].as_str().unwrap();
    for r in [
        "system_administrator",
        "security_administrator",
        "audit_administrator",
    ] {
        assert!(message.contains(r), "{message}");
    }
    let out = std::process::Command::new(BIN)
        .args([
            "user",
            "add",
            "old-admin",
            "--role",
            "administrator",
            "--config",
        ])
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("system_administrator")
            && stderr.contains("security_administrator")
            && stderr.contains("audit_administrator"),
        "{stderr}"
    );
}

/// Playing a confidential session takes two people: the viewer's request, approved by another,
/// independent regulator or discipline officer; until then, and with one's own approval, no.
#[tokio::test(flavor = "multi_thread")]
async fn confidential_replay_takes_a_grant_from_another_person() {
    let server = Server::start().await;
    let room = crate::rbac::unreachable_room(&server, "评标室 duties").await;
    let session = crate::rbac::stopped_session(&server, &room, "evaluation", "land").await;
    let open = crate::rbac::stopped_session(&server, &room, "bid_opening", "other").await;
    let playlist =
        format!("/api/v1/sessions/{session}/sources/cam1/index.m3u8?reason=complaint%2017");
    let reg = server.user("regulator").token.clone();
    let reg_other = server
        .cli(&[
            "token",
            "--user",
            "t-regulator",
            "--name",
            "second",
            "--days",
            "1",
        ])
        .trim()
        .to_string();

    // No grant: refused, audited with the session.
    let got = server
        .call_as(Some("regulator"), "GET", &playlist, None)
        .await;
    assert_refused(&got, 403, "grant_required", "without a grant");
    // Ask; approve it oneself (by either token): refused, audited; still no replay.
    let asked = as_token(
        &server,
        &reg,
        "POST",
        &format!("/api/v1/sessions/{session}/confidential-access"),
        Some(json!({"reason": "complaint 17"})),
    )
    .await;
    assert_eq!(asked.0, 201, "{}", asked.1);
    assert_eq!(asked.1["state"], "requested");
    assert_eq!(asked.1["grantee"], "t-regulator");
    let grant = asked.1["id"].as_str().unwrap().to_string();
    let approve = format!("/api/v1/confidential-access/{grant}/approve");
    for token in [&reg, &reg_other] {
        let got = as_token(&server, token, "POST", &approve, None).await;
        assert_refused(&got, 403, "same_person", "approving one's own grant");
    }
    let got = server
        .call_as(Some("regulator"), "GET", &playlist, None)
        .await;
    assert_refused(&got, 403, "grant_required", "with a self-approved grant");
    // Other roles neither ask nor approve; an open session needs no grant.
    for role in ["witness_staff", "archive_clerk", "security_administrator"] {
        let got = server.call_as(Some(role), "POST", &approve, None).await;
        assert_refused(&got, 403, "forbidden", role);
    }
    let got = server
        .call_as(
            Some("regulator"),
            "POST",
            &format!("/api/v1/sessions/{open}/confidential-access"),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_refused(&got, 409, "not_confidential", "an open session");
    // A regulator out of the session's scope cannot approve it.
    let construction = server.another_user("reg-c", "regulator", &["construction"]);
    let got = as_token(&server, &construction, "POST", &approve, None).await;
    assert_refused(&got, 403, "out_of_scope", "an approver out of scope");

    // The discipline officer approves: for the regulator, for a bounded time.
    let (status, approved) = server
        .call_as(Some("discipline_officer"), "POST", &approve, None)
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["active"], true);
    let expires = unix_seconds(&approved["expires_at"]);
    assert!(
        (expires - unix_now() - 24.0 * 3600.0).abs() < 120.0,
        "24 h by default: {approved}"
    );
    let twice = server
        .call_as(Some("discipline_officer"), "POST", &approve, None)
        .await;
    assert_refused(&twice, 409, "grant_decided", "approved twice");
    // Now the regulator replays (with a reason, audited); the officer, without a grant, not.
    let (status, body) = server
        .call_as(Some("regulator"), "GET", &playlist, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let got = server
        .call_as(Some("discipline_officer"), "GET", &playlist, None)
        .await;
    assert_refused(&got, 403, "grant_required", "the approver has no grant");

    // Two regulators whose passwords went to one security administrator are one person here.
    let a = server.user("security_administrator").token.clone();
    let b = server.another_user("admin-b", "security_administrator", &[]);
    for name in ["reg-1", "reg-2"] {
        let change = propose_account(&server, &a, name, "regulator", &["land"]).await;
        let (status, body) = as_token(
            &server,
            &b,
            "POST",
            &format!("/api/v1/account-changes/{change}/approve"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (r1, r2) = (token_of(&server, "reg-1"), token_of(&server, "reg-2"));
    let asked = as_token(
        &server,
        &r1,
        "POST",
        &format!("/api/v1/sessions/{session}/confidential-access"),
        Some(json!({"reason": "complaint 18"})),
    )
    .await;
    assert_eq!(asked.0, 201, "{}", asked.1);
    let other = asked.1["id"].as_str().unwrap().to_string();
    let got = as_token(
        &server,
        &r2,
        "POST",
        &format!("/api/v1/confidential-access/{other}/approve"),
        None,
    )
    .await;
    assert_refused(
        &got,
        403,
        "not_independent",
        "two accounts of one password holder",
    );

    let trail = audit_trail(&server).await;
    let of_session: Vec<&Value> = trail
        .iter()
        .filter(|e| e["session_id"] == session.as_str())
        .collect();
    let outcomes = |action: &str| -> Vec<String> {
        of_session
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| {
                format!(
                    "{} {}",
                    e["actor"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        outcomes("replay_start"),
        vec![
            "t-regulator/token:tests denied: grant_required".to_string(),
            "t-regulator/token:tests denied: grant_required".to_string(),
            "t-regulator/token:tests allowed".to_string(),
            "t-discipline-officer/token:tests denied: grant_required".to_string(),
        ]
    );
    assert!(
        of_session
            .iter()
            .filter(|e| {
                let a = e["action"].as_str().unwrap();
                a == "replay_start" || a.starts_with("confidential_access")
            })
            .all(|e| e["flagged"] == true),
        "{of_session:#?}"
    );
    let approvals = outcomes("confidential_access_approve");
    assert_eq!(approvals.len(), 5, "{approvals:#?}");
    assert_eq!(approvals[0], "t-regulator/token:tests denied: same_person");
    assert_eq!(approvals[1], "t-regulator/token:second denied: same_person");
    assert!(approvals.contains(&"reg-c/token:tests denied: out_of_scope".to_string()));
    assert!(approvals.iter().any(|a| {
        a.starts_with("t-discipline-officer/token:tests approved for t-regulator until")
            && a.ends_with("requested by t-regulator, approved by t-discipline-officer/token:tests")
    }));
    assert_eq!(
        approvals.last().unwrap(),
        "reg-2/token:tests denied: not_independent"
    );
    let requests = outcomes("confidential_access_request");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        requests[0].ends_with(
            "requested for t-regulator; waits for another regulator or discipline officer"
        )
    );
}

/// Nobody makes the approvers of their own destruction, nor executes one with approvers they
/// made: a former security administrator, now an archive clerk, proposes with regulators whose
/// accounts they proposed (refused), and executes another's proposal that one of them approved
/// (refused); two independent approvers, and the proposer executing, work.
#[tokio::test(flavor = "multi_thread")]
async fn nobody_destroys_with_approvers_they_made() {
    let server = Server::start().await;
    let room = crate::rbac::unreachable_room(&server, "开标室 销毁").await;
    let s1 = crate::rbac::stopped_session(&server, &room, "other", "other").await;
    let s2 = crate::rbac::stopped_session(&server, &room, "other", "other").await;
    server
        .event_of_the_past("P-other", "closed", "2005-01-01T00:00:00Z")
        .await;
    let a = server.user("security_administrator").token.clone();
    let b = server.another_user("admin-b", "security_administrator", &[]);
    let p = server.another_user("p-sec", "security_administrator", &[]);
    // p-sec proposes two regulators; A approves them.
    for name in ["g-1", "g-2"] {
        let change = propose_account(&server, &p, name, "regulator", &["other"]).await;
        let (status, body) = as_token(
            &server,
            &a,
            "POST",
            &format!("/api/v1/account-changes/{change}/approve"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // p-sec becomes an archive clerk (B proposes, A approves).
    let p_id = id_of(&server, "p-sec").await;
    let (status, body) = as_token(
        &server,
        &b,
        "PATCH",
        &format!("/api/v1/users/{p_id}"),
        Some(json!({"role": "archive_clerk"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let change = body["change"]["id"].as_str().unwrap();
    let (status, body) = as_token(
        &server,
        &a,
        "POST",
        &format!("/api/v1/account-changes/{change}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let p = token_of(&server, "p-sec");
    let (g1, g2) = (token_of(&server, "g-1"), token_of(&server, "g-2"));
    let h = server.another_user("reg-h", "regulator", &["other"]);

    let appraisal =
        json!({"committee": "鉴定小组", "conclusion": "同意销毁", "reference": "鉴〔2026〕9号"});
    let propose = |session: &str| json!({"session_ids": [session], "appraisal": appraisal});
    let approve = json!({"decision": "approve", "reason": "属实"});
    // 1. p-sec proposes; the regulators p-sec made may not approve.
    let (status, req1) = as_token(
        &server,
        &p,
        "POST",
        "/api/v1/destructions",
        Some(propose(&s1)),
    )
    .await;
    assert_eq!(status, 201, "{req1}");
    let id1 = req1["id"].as_str().unwrap().to_string();
    let decide1 = format!("/api/v1/destructions/{id1}/decision");
    for (token, who) in [(&g1, "g-1"), (&g2, "g-2")] {
        let got = as_token(&server, token, "POST", &decide1, Some(approve.clone())).await;
        assert_refused(&got, 409, "not_independent", who);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("p-sec created"),
            "{}",
            got.1
        );
    }
    let got = as_token(&server, &p, "POST", &decide1, Some(approve.clone())).await;
    assert_refused(&got, 409, "same_person", "the proposer approving");
    // Two independent approvers: approved, and the proposer executes.
    let (status, body) = server
        .call_as(Some("regulator"), "POST", &decide1, Some(approve.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let got = as_token(&server, &h, "POST", &decide1, Some(approve.clone())).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["state"], "approved");
    let got = as_token(
        &server,
        &p,
        "POST",
        &format!("/api/v1/destructions/{id1}/execute"),
        None,
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);

    // 2. Another clerk proposes; g-1 approves (p-sec did not propose this one) with the test
    // regulator. p-sec, who made g-1, may not execute it; the proposer may.
    let (status, req2) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/destructions",
            Some(propose(&s2)),
        )
        .await;
    assert_eq!(status, 201, "{req2}");
    let id2 = req2["id"].as_str().unwrap().to_string();
    let decide2 = format!("/api/v1/destructions/{id2}/decision");
    let got = as_token(&server, &g1, "POST", &decide2, Some(approve.clone())).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let (status, body) = server
        .call_as(Some("regulator"), "POST", &decide2, Some(approve.clone()))
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    let execute2 = format!("/api/v1/destructions/{id2}/execute");
    let got = as_token(&server, &p, "POST", &execute2, None).await;
    assert_refused(
        &got,
        409,
        "not_independent",
        "p-sec executing with g-1's approval",
    );
    let got = server
        .call_as(Some("archive_clerk"), "POST", &execute2, None)
        .await;
    assert_eq!(got.0, 200, "{}", got.1);

    let trail = audit_trail(&server).await;
    let refused = denials(&trail, "destruction_approve", "not_independent");
    assert_eq!(
        refused
            .iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["g-1/token:tests", "g-2/token:tests"]
    );
    assert!(refused.iter().all(|e| e["target"] == id1.as_str()));
    assert_eq!(
        denials(&trail, "destruction_approve", "same_person").len(),
        1
    );
    let refused = denials(&trail, "destruction_execute", "not_independent");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["actor"], "p-sec/token:tests");
    assert_eq!(refused[0]["target"], id2.as_str());
}
