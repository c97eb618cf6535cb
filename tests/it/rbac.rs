//! The RBAC matrix, asked of the real server: every role × every endpoint in
//! `witness::http::access::POLICY`, with that role's API token, is allowed or refused exactly
//! as the table and `Role::allows` say, and every refusal leaves one audit entry. Without
//! credentials (or with bad ones) nothing but the public endpoints answers. Regulators see only
//! the trading categories in their scope.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use witness::http::policy::{Access, POLICY, Rule};
use witness::identity::roles::Role;

use crate::harness::*;

/// A concrete path for a route template. The ids exist nowhere: a handler that is reached
/// answers 404 (or 422 for the `{}` body), which proves the request got past access control.
pub fn example_path(template: &str) -> String {
    let path = template
        .replace("{id}", &uuid::Uuid::now_v7().to_string())
        .replace("{source}", "cam1")
        .replace("{file}", "00000001.ts")
        .replace("{name}", "witness.css")
        .replace("{code}", "ZB-RBAC-0001")
        .replace("{section}", "S1");
    assert!(
        !path.contains('{'),
        "{template}: a path parameter this test does not know; add a dummy value"
    );
    path
}

/// The minimal body for a method that takes one.
pub fn example_body(method: &str) -> Option<Value> {
    matches!(method, "POST" | "PUT" | "PATCH").then(|| json!({}))
}

/// Where an answer to an API token differs from the table on purpose.
struct Exception {
    method: &'static str,
    path: &'static str,
    /// A valid body, so that the handler (not the body's parser) answers.
    body: &'static str,
    status: u16,
    code: &'static str,
    /// In the message, to tell the handler's answer from the middleware's.
    message: &'static str,
    why: &'static str,
}

const TOKEN_EXCEPTIONS: &[Exception] = &[
    Exception {
        method: "POST",
        path: "/api/v1/tokens",
        body: r#"{"name": "from-a-token", "expires_in_days": 1}"#,
        status: 403,
        code: "forbidden",
        message: "API tokens cannot issue tokens",
        why: "the table lets any account issue its own tokens, but only from a login: the handler \
          refuses a token, so that a leaked token cannot mint more (or outlive its revocation)",
    },
    Exception {
        method: "POST",
        path: "/api/v1/auth/password",
        body: r#"{"current_password": "x", "new_password": "y"}"#,
        status: 403,
        code: "forbidden",
        message: "not with an API token",
        why: "credentials are changed by the person in a browser session: a leaked token must not \
          set the account's password",
    },
    Exception {
        method: "POST",
        path: "/api/v1/auth/totp/setup",
        body: "{}",
        status: 403,
        code: "forbidden",
        message: "not with an API token",
        why: "a leaked token must not enrol an attacker's second factor on an account that has none",
    },
    Exception {
        method: "POST",
        path: "/api/v1/auth/totp/confirm",
        body: r#"{"code": "123456"}"#,
        status: 403,
        code: "forbidden",
        message: "not with an API token",
        why: "as for setup",
    },
];

fn exception(rule: &Rule) -> Option<&'static Exception> {
    TOKEN_EXCEPTIONS
        .iter()
        .find(|e| e.method == rule.method && e.path == rule.path)
}

fn table_allows(rule: &Rule, role: Role) -> bool {
    match rule.access {
        Access::Public | Access::Account => true,
        Access::Needs(p) => role.allows(p),
    }
}

/// A column heading for the matrix.
fn short(role: &str) -> &str {
    match role {
        "system_administrator" => "sysadmin",
        "security_administrator" => "secadmin",
        "audit_administrator" => "auditadmin",
        "witness_staff" => "staff",
        "archive_clerk" => "clerk",
        "discipline_officer" => "discipline",
        other => other,
    }
}

fn unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The whole audit trail, read as the discipline officer.
pub async fn audit_trail(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = server
            .ok(
                "GET",
                &format!("/api/v1/audit?after_seq={after}&limit=1000"),
                None,
            )
            .await;
        let entries = page["entries"].as_array().unwrap();
        all.extend(entries.iter().cloned());
        match page["next_after_seq"].as_i64() {
            Some(n) => after = n,
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_and_endpoint_answers_as_the_policy_table_says() {
    let server = Server::start().await;
    let actions: BTreeSet<&str> = POLICY.iter().map(|r| r.action).collect();
    assert_eq!(
        actions.len(),
        POLICY.len(),
        "audit actions name one rule each"
    );
    let mut report = format!(
        "RBAC matrix ({} endpoints × {} roles; A allowed, - refused, * see below):\n{:<64}",
        POLICY.len(),
        ROLES.len(),
        "endpoint"
    );
    for role in ROLES {
        report += &format!(" {:>10}", short(role));
    }
    report.push('\n');
    let mut failures = Vec::new();
    // What the middleware refused, and every change asked (whatever the answer).
    let mut refused: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut changes: Vec<(&str, &Rule)> = Vec::new();

    for rule in POLICY {
        report += &format!("{:<64}", format!("{} {}", rule.method, rule.path));
        for role_name in ROLES {
            let role = Role::parse(role_name).unwrap();
            let path = example_path(rule.path);
            let request_body = match exception(rule) {
                Some(e) => Some(serde_json::from_str(e.body).unwrap()),
                None => example_body(rule.method),
            };
            let (status, body) = server
                .call_as(Some(role_name), rule.method, &path, request_body)
                .await;
            let code = body["error"]["code"].as_str().unwrap_or("");
            let message = body["error"]["message"].as_str().unwrap_or("");
            let cell = if let Some(e) = exception(rule) {
                if (status, code) != (e.status, e.code) || !message.contains(e.message) {
                    failures.push(format!(
                        "{role_name} {} {path}: expected {} {} ({}), got {status} {body}",
                        rule.method, e.status, e.code, e.message
                    ));
                }
                "*"
            } else if table_allows(rule, role) {
                // Past access control the handler may answer 404 or 422 to the dummy request,
                // but it must not fail.
                if status == 401 || status == 403 || status >= 500 {
                    failures.push(format!(
                        "{role_name} {} {path}: the table allows it, got {status} {body}",
                        rule.method
                    ));
                }
                "A"
            } else {
                if (status, code) != (403, "forbidden") {
                    failures.push(format!(
                        "{role_name} {} {path}: the table refuses it, got {status} {body}",
                        rule.method
                    ));
                }
                refused.insert((role_name, rule.action));
                "-"
            };
            if rule.access != Access::Public && unsafe_method(rule.method) {
                changes.push((role_name, rule));
            }
            report += &format!(" {cell:>10}");
        }
        report.push('\n');
    }
    for e in TOKEN_EXCEPTIONS {
        report += &format!("* {} {}: {}\n", e.method, e.path, e.why);
    }
    eprintln!("{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));

    // Every refusal is in the audit trail once, and nothing else was refused; every change
    // (allowed or not) left exactly one entry.
    let trail = audit_trail(&server).await;
    let by = |role: &str| format!("{}/token:tests", server.user(role).username);
    for (role, action) in &refused {
        let n = trail
            .iter()
            .filter(|e| {
                e["actor"] == by(role)
                    && e["action"] == *action
                    && e["outcome"] == "denied: forbidden"
            })
            .count();
        assert_eq!(n, 1, "{role} {action}: {n} refusal entries");
    }
    let denied: Vec<_> = trail
        .iter()
        .filter(|e| e["outcome"].as_str().unwrap().starts_with("denied"))
        .collect();
    assert_eq!(denied.len(), refused.len(), "{denied:#?}");
    for (role, rule) in changes {
        let n = trail
            .iter()
            .filter(|e| e["actor"] == by(role) && e["action"] == rule.action)
            .count();
        assert_eq!(
            n, 1,
            "{role} {} {}: {n} audit entries for one change",
            rule.method, rule.path
        );
    }

    // No credentials, a bad token, an unknown session cookie: only the public endpoints answer.
    let garbage_token = format!("wit_{}", "0".repeat(64));
    for rule in POLICY {
        let path = example_path(rule.path);
        let method = reqwest::Method::from_bytes(rule.method.as_bytes()).unwrap();
        let attempts = [
            ("no credentials", None, None, "unauthenticated"),
            (
                "unknown token",
                Some(garbage_token.as_str()),
                None,
                "invalid_token",
            ),
            ("malformed token", Some("garbage"), None, "invalid_token"),
            (
                "unknown session",
                None,
                Some("witness_session=00ff"),
                "unauthenticated",
            ),
        ];
        for (what, token, cookie, want) in attempts {
            let mut req = server.http.request(method.clone(), server.url(&path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            if let Some(b) = example_body(rule.method) {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if rule.access == Access::Public {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{what}: {} {path} is public, got {status} {body}",
                    rule.method
                );
            } else {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (401, Some(want)),
                    "{what}: {} {path}: {body}",
                    rule.method
                );
            }
        }
    }
}

/// A room whose camera is unreachable: sessions start and stop at once, no simulator needed.
pub async fn unreachable_room(server: &Server, name: &str) -> String {
    let camera = json!({"name": "cam1", "url": "rtsp://127.0.0.1:9/none"});
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": name, "kind": "bid_opening", "sources": [camera]})),
        )
        .await;
    room["id"].as_str().unwrap().to_string()
}

pub async fn stopped_session(server: &Server, room: &str, kind: &str, category: &str) -> String {
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({
                "project_code": format!("P-{category}"), "reason": "test: unbooked", "session_code": "S1",
                "kind": kind, "category": category,
            })),
        )
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    s["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn regulators_see_only_their_trading_categories() {
    let server = Server::start().await;
    let room = unreachable_room(&server, "开标室 9").await;
    let construction = stopped_session(&server, &room, "bid_opening", "construction").await;
    let land = stopped_session(&server, &room, "evaluation", "land").await;

    // A regulator for land only (the test regulator has every category).
    server.cli(&[
        "user",
        "add",
        "t-land",
        "--role",
        "regulator",
        "--category",
        "land",
    ]);
    let token = server
        .cli(&[
            "token", "--user", "t-land", "--name", "tests", "--days", "1",
        ])
        .trim()
        .to_string();
    let as_land = |method: &str, path: String| {
        let req = server
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&path),
            )
            .bearer_auth(&token);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };

    let (status, list) = as_land("GET", "/api/v1/sessions".into()).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![land.as_str()], "the list holds only land: {list}");
    for suffix in [
        "",
        "/verify",
        "/sources/cam1/index.m3u8?reason=review",
        "/sources/cam1/download.mp4?reason=review",
    ] {
        let (status, body) =
            as_land("GET", format!("/api/v1/sessions/{construction}{suffix}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("out_of_scope")),
            "{suffix}: {body}"
        );
    }
    let (status, body) = as_land("GET", format!("/api/v1/sessions/{land}")).await;
    assert_eq!(status, 200, "{body}");
    // The land session is an evaluation (confidential): a regulator may replay it (with a
    // grant another person approved), so the handler answers, not the middleware.
    let (status, body) = as_land(
        "GET",
        format!("/api/v1/sessions/{land}/sources/cam1/index.m3u8"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("grant_required")),
        "{body}"
    );
    // The regulator with every category sees the construction session too.
    let (status, body) = server
        .call_as(
            Some("regulator"),
            "GET",
            &format!("/api/v1/sessions/{construction}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Other roles are not scoped by category.
    for role in ["witness_staff", "archive_clerk", "discipline_officer"] {
        let (status, body) = server
            .call_as(Some(role), "GET", &format!("/api/v1/sessions/{land}"), None)
            .await;
        assert_eq!(status, 200, "{role}: {body}");
    }
    // The refusals are audited, naming the regulator.
    let trail = audit_trail(&server).await;
    let scoped: Vec<_> = trail
        .iter()
        .filter(|e| e["outcome"] == "denied: out_of_scope")
        .collect();
    assert_eq!(scoped.len(), 4, "{scoped:#?}");
    assert!(
        scoped
            .iter()
            .all(|e| e["actor"] == "t-land/token:tests" && e["actor_role"] == "regulator")
    );
}
