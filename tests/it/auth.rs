//! Authentication against the real server: no default credentials, a first-start one-time
//! password that must be changed, the password policy, TOTP enrolment and single-use codes,
//! throttling (never lockout) after failed logins, CSRF on browser sessions, the idle timeout, scoped / expiring /
//! revocable API tokens, disabled users; every login attempt is in the audit trail.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use witness::http::policy::{Access, POLICY};
use witness::identity::totp::code_at;

use crate::harness::*;
use crate::rbac::{example_body, example_path};

const NEW_PASSWORD: &str = "Bid-Opening-2026!";

fn expect(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST /api/v1/auth/login: (status, body, session cookie value, the whole Set-Cookie).
async fn login(
    server: &Server,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> (u16, Value, Option<String>, String) {
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
    let set_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("witness_session="))
        .unwrap_or_default()
        .to_string();
    let cookie = set_cookie
        .strip_prefix("witness_session=")
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        cookie,
        set_cookie,
    )
}

async fn login_status(server: &Server, username: &str, password: &str) -> (u16, Value) {
    let (status, body, _, _) = login(server, username, password, None).await;
    (status, body)
}

/// A browser: the session cookie and the CSRF token from the login answer.
struct Browser<'a> {
    server: &'a Server,
    cookie: String,
    csrf: String,
    login: Value,
}

impl<'a> Browser<'a> {
    async fn login(
        server: &'a Server,
        username: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Browser<'a> {
        let (status, body, cookie, _) = login(server, username, password, totp).await;
        assert_eq!(status, 200, "login {username}: {body}");
        Browser {
            server,
            cookie: cookie.expect("a session cookie"),
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            login: body,
        }
    }

    /// Logs in with the one-time password and changes it, as a new user does first.
    async fn first_login(server: &'a Server, role: &str) -> Browser<'a> {
        let u = server.user(role);
        let b = Browser::login(server, &u.username, &u.one_time_password, None).await;
        assert_eq!(b.login["restriction"], "password_change_required");
        let r = b
            .call(
                "POST",
                "/api/v1/auth/password",
                Some(
                    json!({"current_password": u.one_time_password, "new_password": NEW_PASSWORD}),
                ),
            )
            .await;
        assert_eq!(r.0, 204, "{}", r.1);
        b
    }

    /// A request with the cookie and, when `csrf` is given, the X-CSRF-Token header.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .server
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.server.url(path),
            )
            .header("cookie", format!("witness_session={}", self.cookie));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
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

    /// As the page does: with the CSRF token.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body, Some(&self.csrf)).await
    }
}

async fn with_token(server: &Server, token: &str, method: &str, path: &str) -> (u16, Value) {
    let r = server
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        )
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The outcomes of the login attempts as `username`, oldest first, read as the discipline
/// officer.
async fn login_outcomes(server: &Server, username: &str) -> Vec<String> {
    let page = server
        .ok(
            "GET",
            &format!("/api/v1/audit?action=login&user={username}"),
            None,
        )
        .await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["target"], username, "{e}");
            assert_eq!(e["address"], "127.0.0.1", "{e}");
            e["outcome"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `witness ARGS --config …` that may fail: (success, stdout + stderr).
fn cli_may_fail(server: &Server, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn first_administrator_has_a_one_time_password_then_a_new_one_and_totp() {
    // Room for the guesses below without delays (that is the throttling test's), and every
    // attempt in its own audit entry (summaries are login_flood's).
    let server = Server::start_with(
        "[identity]\nlogin_free_failures = 10\nlogin_audit_window_seconds = 0\n",
    )
    .await;

    // No default credentials.
    for guess in ["admin", "password", "123456", "admin123", ""] {
        let r = login_status(&server, "admin", guess).await;
        expect(&r, 401, "login_failed");
    }
    let r = login_status(&server, "nobody", "admin").await;
    expect(&r, 401, "login_failed");

    // The one-time password printed at first start logs in, restricted to changing it.
    let log = server.log();
    let one_time = log
        .lines()
        .find_map(|l| l.split_once("one-time password:").map(|(_, p)| p.trim()))
        .unwrap_or_else(|| panic!("no one-time password in the log:\n{log}"))
        .to_string();
    assert_eq!(one_time.len(), 20, "{one_time}");
    let admin = Browser::login(&server, "admin", &one_time, None).await;
    assert_eq!(admin.login["restriction"], "password_change_required");
    assert_eq!(admin.login["user"]["role"], "security_administrator");
    let me = admin.call("GET", "/api/v1/auth/me", None).await;
    assert_eq!(me.1["restriction"], "password_change_required", "{}", me.1);
    // Everything but the account's own essentials is refused until then.
    let essentials = [
        "logout",
        "me",
        "password_change",
        "totp_setup",
        "totp_confirm",
    ];
    for rule in POLICY
        .iter()
        .filter(|r| r.access != Access::Public && !essentials.contains(&r.action))
    {
        let r = admin
            .call(
                rule.method,
                &example_path(rule.path),
                example_body(rule.method),
            )
            .await;
        expect(&r, 403, "password_change_required");
    }

    // The password policy, and the current password to prove it is them.
    let change = |current: &str, new: &str| {
        admin.call(
            "POST",
            "/api/v1/auth/password",
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    expect(&change("wrong", NEW_PASSWORD).await, 403, "wrong_password");
    let too_long = "Aa1-".repeat(65);
    for weak in [
        "Short-1",                // under 12 characters
        "alllowercaseletters",    // one class
        "lowercase-and-symbols",  // two classes
        "My-Admin-Password-2026", // contains the user name
        one_time.as_str(),        // the same as now
        too_long.as_str(),        // over 256 characters
    ] {
        expect(&change(&one_time, weak).await, 422, "weak_password");
    }
    assert_eq!(change(&one_time, NEW_PASSWORD).await.0, 204);

    // The one-time password is gone; the new one logs in, restricted to enrolling TOTP.
    expect(
        &login_status(&server, "admin", &one_time).await,
        401,
        "login_failed",
    );
    let admin = Browser::login(&server, "admin", NEW_PASSWORD, None).await;
    assert_eq!(admin.login["restriction"], "totp_enrollment_required");
    expect(
        &admin.call("GET", "/api/v1/users", None).await,
        403,
        "totp_enrollment_required",
    );
    expect(
        &admin
            .call(
                "POST",
                "/api/v1/auth/totp/confirm",
                Some(json!({"code": "123456"})),
            )
            .await,
        409,
        "totp_not_pending",
    );
    let setup = admin.call("POST", "/api/v1/auth/totp/setup", None).await;
    assert_eq!(setup.0, 200, "{}", setup.1);
    let secret = setup.1["secret"].as_str().unwrap().to_string();
    assert!(
        setup.1["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Witness:admin?"),
        "{}",
        setup.1
    );
    let valid: Vec<String> = (0..5)
        .map(|k| code_at(&secret, now_s() + 30 * k - 60))
        .collect();
    let wrong = (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !valid.contains(c))
        .unwrap();
    expect(
        &admin
            .call(
                "POST",
                "/api/v1/auth/totp/confirm",
                Some(json!({"code": wrong})),
            )
            .await,
        422,
        "totp_invalid",
    );
    let r = admin
        .call(
            "POST",
            "/api/v1/auth/totp/confirm",
            Some(json!({"code": code_at(&secret, now_s())})),
        )
        .await;
    assert_eq!(r.0, 204, "{}", r.1);
    // The same session is now unrestricted.
    assert_eq!(admin.call("GET", "/api/v1/users", None).await.0, 200);
    expect(
        &admin.call("POST", "/api/v1/auth/totp/setup", None).await,
        409,
        "totp_already_enabled",
    );
    let r = admin.call("POST", "/api/v1/auth/logout", None).await;
    assert_eq!(r.0, 204, "{}", r.1);
    expect(
        &admin.call("GET", "/api/v1/auth/me", None).await,
        401,
        "unauthenticated",
    );

    // From now on a login needs the code: missing, wrong, right, then the same code again.
    let (status, body, cookie, _) = login(&server, "admin", NEW_PASSWORD, None).await;
    expect(&(status, body), 401, "totp_required");
    assert!(cookie.is_none());
    let (status, body, _, _) = login(&server, "admin", NEW_PASSWORD, Some(&wrong)).await;
    expect(&(status, body), 401, "totp_invalid");
    // The confirmation used this step's code: the next step's is the next one accepted.
    let code = code_at(&secret, now_s() + 30);
    let admin = Browser::login(&server, "admin", NEW_PASSWORD, Some(&code)).await;
    assert_eq!(admin.login["restriction"], Value::Null);
    assert_eq!(admin.call("GET", "/api/v1/users", None).await.0, 200);
    let (status, body, cookie, _) = login(&server, "admin", NEW_PASSWORD, Some(&code)).await;
    expect(&(status, body), 401, "totp_invalid");
    assert!(cookie.is_none(), "a used code opens nothing");
    // A wrong password with the right code is still a wrong password.
    let (status, body, _, _) = login(&server, "admin", "Wrong-Password-1", Some(&code)).await;
    expect(&(status, body), 401, "login_failed");

    // Every attempt is in the audit trail, in order.
    let wrong_password = "failed: wrong password";
    let wrong_code = "failed: wrong or reused TOTP code";
    assert_eq!(
        login_outcomes(&server, "admin").await,
        vec![
            wrong_password,
            wrong_password,
            wrong_password,
            wrong_password,
            wrong_password,
            "allowed",      // the one-time password
            wrong_password, // the one-time password once changed
            "allowed",      // the new password, before TOTP
            "failed: TOTP code missing",
            wrong_code,
            "allowed",
            wrong_code, // reused
            wrong_password,
        ]
    );
    assert_eq!(
        login_outcomes(&server, "nobody").await,
        vec!["failed: unknown user"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_make_the_next_attempts_wait_never_lock() {
    let server = Server::start_with(
        "[identity]\nlogin_free_failures = 3\nlogin_first_delay_seconds = 2.0\nlogin_max_delay_seconds = 4.0\nlogin_audit_window_seconds = 0\n",
    )
    .await;
    let staff = server.user("witness_staff");
    let (name, password) = (staff.username.as_str(), staff.one_time_password.as_str());

    // Failures from one address count; a success there starts that count again.
    for _ in 0..2 {
        expect(
            &login_status(&server, name, "Wrong-1").await,
            401,
            "login_failed",
        );
    }
    assert_eq!(login_status(&server, name, password).await.0, 200);
    for _ in 0..2 {
        expect(
            &login_status(&server, name, "Wrong-2").await,
            401,
            "login_failed",
        );
    }
    assert_eq!(login_status(&server, name, password).await.0, 200);

    // The third in a row: the next attempt must wait 2 s; before then it is refused unchecked,
    // with the same answer as a wrong password, and says when to come back.
    for _ in 0..3 {
        expect(
            &login_status(&server, name, "Wrong-3").await,
            401,
            "login_failed",
        );
    }
    let delayed_at = Instant::now();
    let wrong = login_status(&server, name, "Wrong-3").await;
    let r = server
        .http
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused, wrong.1, "throttled and wrong read alike");
    expect(&(401, refused), 401, "login_failed");
    // The account-wide counter (7 failures) delays it from addresses it has not logged in
    // from: the listing shows it.
    let users = server.ok("GET", "/api/v1/users", None).await;
    let view = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap();
    assert_eq!(view["locked"], true, "{view}");
    // Only that account: another logs in, and the delayed user's API token still works.
    let clerk = server.user("archive_clerk");
    assert_eq!(
        login_status(&server, &clerk.username, &clerk.one_time_password)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call_as(Some("witness_staff"), "GET", "/api/v1/rooms", None)
            .await
            .0,
        200
    );

    // After the wait the right password works again: nothing is locked.
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(delayed_at.elapsed())).await;
    let (status, body) = login_status(&server, name, password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restriction"], "password_change_required");

    let wrong = "failed: wrong password";
    let throttled = "failed: throttled after failed logins (not checked)";
    assert_eq!(
        login_outcomes(&server, name).await,
        vec![
            wrong, wrong, "allowed", wrong, wrong, "allowed", wrong, wrong, wrong, throttled,
            throttled, "allowed",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_changes_need_the_csrf_token() {
    let server = Server::start().await;
    let staff = server.user("witness_staff");
    let (status, body, cookie, set_cookie) =
        login(&server, &staff.username, &staff.one_time_password, None).await;
    assert_eq!(status, 200, "{body}");
    // The cookie is out of scripts' and other sites' reach (no Secure: plain HTTP on loopback).
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let b = Browser {
        server: &server,
        cookie: cookie.unwrap(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
        login: body,
    };
    assert_eq!(b.csrf.len(), 64);

    // Even the password change needs it.
    let change = json!({"current_password": staff.one_time_password, "new_password": NEW_PASSWORD});
    expect(
        &b.send("POST", "/api/v1/auth/password", Some(change.clone()), None)
            .await,
        403,
        "csrf_failed",
    );
    assert_eq!(
        b.call("POST", "/api/v1/auth/password", Some(change))
            .await
            .0,
        204
    );

    // Reading needs no header; the header's token is the login's (and /auth/me repeats it).
    let rooms = b.send("GET", "/api/v1/rooms", None, None).await;
    assert_eq!(rooms.0, 200, "{}", rooms.1);
    let me = b.send("GET", "/api/v1/auth/me", None, None).await;
    assert_eq!(me.1["csrf_token"], b.csrf.as_str());

    // A change: no header, an empty one, a wrong one, another session's — all refused.
    let room = crate::rbac::unreachable_room(&server, "开标室 2").await;
    let start = format!("/api/v1/rooms/{room}/start");
    let body = json!({"project_code": "P-CSRF", "reason": "test: unbooked", "session_code": "S1", "kind": "bid_opening"});
    let other = Browser::login(&server, &staff.username, NEW_PASSWORD, None).await;
    assert_ne!(other.csrf, b.csrf);
    let wrong = "f".repeat(64);
    for token in [
        None,
        Some(""),
        Some(wrong.as_str()),
        Some(other.csrf.as_str()),
    ] {
        expect(
            &b.send("POST", &start, Some(body.clone()), token).await,
            403,
            "csrf_failed",
        );
    }
    // With the right one it passes access control and does the job.
    let started = b.call("POST", &start, Some(body)).await;
    assert_eq!(started.0, 201, "{}", started.1);
    assert_eq!(started.1["state"], "recording");
    let stop = start.replace("/start", "/stop");
    expect(&b.send("POST", &stop, None, None).await, 403, "csrf_failed");
    assert_eq!(b.call("POST", &stop, None).await.0, 200);
    // A token needs no CSRF header: it is not sent by a browser on its own.
    let r = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &start,
            Some(json!({"project_code": "P-CSRF", "reason": "test: unbooked", "session_code": "S2", "kind": "bid_opening"})),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    server.ok("POST", &stop, None).await;

    // Logout is a change too; afterwards the cookie is dead.
    expect(
        &b.send("POST", "/api/v1/auth/logout", None, None).await,
        403,
        "csrf_failed",
    );
    assert_eq!(b.call("POST", "/api/v1/auth/logout", None).await.0, 204);
    expect(
        &b.send("GET", "/api/v1/rooms", None, None).await,
        401,
        "unauthenticated",
    );
    assert_eq!(other.send("GET", "/api/v1/rooms", None, None).await.0, 200);

    // Refusals are audited under the user's name; the recording was started by the browser user.
    let trail = crate::rbac::audit_trail(&server).await;
    let csrf_refusals = trail
        .iter()
        .filter(|e| e["actor"] == staff.username.as_str() && e["outcome"] == "denied: csrf_failed")
        .count();
    assert_eq!(csrf_refusals, 7);
    assert!(trail.iter().any(|e| e["action"] == "room_start"
        && e["actor"] == staff.username.as_str()
        && e["outcome"] == "allowed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_browser_session_ends() {
    let server = Server::start_with("[identity]\nidle_minutes = 0.05\n").await;
    let staff = server.user("witness_staff");
    let b = Browser::login(&server, &staff.username, &staff.one_time_password, None).await;
    assert_eq!(b.login["idle_timeout_seconds"], 3);
    // Activity keeps it alive past the idle time...
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let r = b.call("GET", "/api/v1/auth/me", None).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    // ...three idle seconds end it, for good.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    expect(
        &b.call("GET", "/api/v1/auth/me", None).await,
        401,
        "unauthenticated",
    );
    expect(
        &b.call("GET", "/api/v1/auth/me", None).await,
        401,
        "unauthenticated",
    );
    let again = Browser::login(&server, &staff.username, &staff.one_time_password, None).await;
    assert_eq!(again.call("GET", "/api/v1/auth/me", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_are_scoped_expire_and_can_be_revoked() {
    let server = Server::start().await;
    let staff = Browser::first_login(&server, "witness_staff").await;
    let issue = |body: Value| staff.call("POST", "/api/v1/tokens", Some(body));

    // Refused: a scope beyond the role, an unknown scope, no lifetime, too long, no name,
    // and no CSRF header.
    for bad in [
        json!({"name": "t", "scopes": ["export"], "expires_in_days": 30}),
        json!({"name": "t", "scopes": ["users_manage"], "expires_in_days": 30}),
        json!({"name": "t", "scopes": ["fly"], "expires_in_days": 30}),
        json!({"name": "t", "scopes": ["rooms_read"], "expires_in_days": 0}),
        json!({"name": "t", "scopes": ["rooms_read"], "expires_in_days": -1}),
        json!({"name": "t", "scopes": ["rooms_read"], "expires_in_days": 366}),
        json!({"name": "", "scopes": ["rooms_read"], "expires_in_days": 30}),
    ] {
        expect(&issue(bad).await, 422, "invalid_field");
    }
    let good = json!({"name": "trading-system", "scopes": ["rooms_read"], "expires_in_days": 30});
    expect(
        &staff
            .send("POST", "/api/v1/tokens", Some(good.clone()), None)
            .await,
        403,
        "csrf_failed",
    );

    // A token for reading rooms reads rooms, and nothing else the role could do.
    let (status, issued) = issue(good).await;
    assert_eq!(status, 201, "{issued}");
    let (id, token) = (
        issued["id"].as_str().unwrap().to_string(),
        issued["token"].as_str().unwrap().to_string(),
    );
    assert!(token.starts_with("wit_") && token.len() == 68, "{token}");
    assert_eq!(
        with_token(&server, &token, "GET", "/api/v1/rooms").await.0,
        200
    );
    expect(
        &with_token(&server, &token, "GET", "/api/v1/sessions").await,
        403,
        "forbidden",
    );
    let room = example_path("/api/v1/rooms/{id}/stop");
    expect(
        &with_token(&server, &token, "POST", &room).await,
        403,
        "forbidden",
    );
    let me = with_token(&server, &token, "GET", "/api/v1/auth/me").await;
    assert_eq!(me.1["permissions"], json!(["rooms_read"]), "{}", me.1);
    assert_eq!(me.1["csrf_token"], Value::Null);
    // The list shows it, never a secret.
    let (status, list) = staff.call("GET", "/api/v1/tokens", None).await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(&token[4..]), "{list}");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["tests", "trading-system"], "{list}");

    // Someone else cannot revoke it; its owner can, and then it is dead.
    let path = format!("/api/v1/tokens/{id}");
    expect(
        &server
            .call_as(Some("archive_clerk"), "DELETE", &path, None)
            .await,
        404,
        "token_not_found",
    );
    assert_eq!(
        with_token(&server, &token, "GET", "/api/v1/rooms").await.0,
        200
    );
    assert_eq!(staff.call("DELETE", &path, None).await.0, 204);
    expect(
        &with_token(&server, &token, "GET", "/api/v1/rooms").await,
        401,
        "invalid_token",
    );
    expect(
        &staff.call("DELETE", &path, None).await,
        404,
        "token_not_found",
    );
    let (_, list) = staff.call("GET", "/api/v1/tokens", None).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked"] == true),
        "{list}"
    );

    // The CLI keeps to the same rules.
    for args in [
        vec!["--days", "0"],
        vec!["--days", "366"],
        vec!["--days", "1", "--scope", "export"],
    ] {
        let mut all = vec!["token", "--user", "t-witness-staff", "--name", "cli"];
        all.extend(args.iter());
        let (ok, out) = cli_may_fail(&server, &all);
        assert!(!ok, "{all:?} should be refused: {out}");
    }

    // Expiry: a token issued (straight into the database) to live 1.5 s works, then not.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db).await.unwrap();
    let user = witness::identity::users::by_username(&pool, "t-witness-staff")
        .await
        .unwrap()
        .unwrap();
    let (_, short_lived) = witness::identity::tokens::issue(
        &pool,
        &user.id,
        "short-lived",
        &[witness::identity::roles::Permission::RoomsRead],
        1_500_000,
    )
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        with_token(&server, &short_lived, "GET", "/api/v1/rooms")
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    expect(
        &with_token(&server, &short_lived, "GET", "/api/v1/rooms").await,
        401,
        "invalid_token",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_is_out_at_once() {
    let server = Server::start().await;
    let clerk = server.user("archive_clerk");
    let b = Browser::login(&server, &clerk.username, &clerk.one_time_password, None).await;
    assert_eq!(b.call("GET", "/api/v1/auth/me", None).await.0, 200);
    assert_eq!(
        server
            .call_as(Some("archive_clerk"), "GET", "/api/v1/sessions", None)
            .await
            .0,
        200
    );

    let out = server.cli(&["user", "disable", &clerk.username]);
    assert!(out.contains("disabled"), "{out}");
    expect(
        &server
            .call_as(Some("archive_clerk"), "GET", "/api/v1/sessions", None)
            .await,
        401,
        "invalid_token",
    );
    expect(
        &b.call("GET", "/api/v1/auth/me", None).await,
        401,
        "unauthenticated",
    );
    expect(
        &login_status(&server, &clerk.username, &clerk.one_time_password).await,
        401,
        "login_failed",
    );

    // Enabled again: logging in works, but the old token stays revoked.
    server.cli(&["user", "enable", &clerk.username]);
    assert_eq!(
        login_status(&server, &clerk.username, &clerk.one_time_password)
            .await
            .0,
        200
    );
    expect(
        &server
            .call_as(Some("archive_clerk"), "GET", "/api/v1/sessions", None)
            .await,
        401,
        "invalid_token",
    );
    assert_eq!(
        login_outcomes(&server, &clerk.username).await,
        vec!["allowed", "failed: account disabled", "allowed"]
    );

    // Over HTTP too, by an administrator; not their own account.
    let users = server.ok("GET", "/api/v1/users", None).await;
    let id_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = server
        .call(
            "PATCH",
            &format!("/api/v1/users/{}", id_of("t-regulator")),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["disabled"], true);
    expect(
        &server
            .call_as(Some("regulator"), "GET", "/api/v1/sessions", None)
            .await,
        401,
        "invalid_token",
    );
    expect(
        &server
            .call(
                "PATCH",
                &format!("/api/v1/users/{}", id_of("t-security-administrator")),
                Some(json!({"disabled": true})),
            )
            .await,
        409,
        "own_account",
    );
    let trail = crate::rbac::audit_trail(&server).await;
    for (actor, action, target) in [
        ("cli", "user_disable", "t-archive-clerk"),
        ("cli", "user_enable", "t-archive-clerk"),
        (
            "t-security-administrator/token:tests",
            "user_change",
            "t-regulator",
        ),
    ] {
        assert!(
            trail
                .iter()
                .any(|e| e["actor"] == actor && e["action"] == action && e["target"] == target),
            "{actor} {action} {target}"
        );
    }
    // With the values before and after.
    assert!(
        trail.iter().any(|e| e["action"] == "user_change"
            && e["target"] == "t-regulator"
            && e["outcome"] == "changed; disabled: false → true"),
        "user_change t-regulator with before → after"
    );
}
