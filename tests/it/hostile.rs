//! Hostile input on every endpoint that takes some: oversized bodies, wrong content types, NUL
//! characters, SQL and shell metacharacters in every string field, path traversal in every id.
//! Always a 4xx (or, for free text, a correct 2xx), never a 5xx; refused requests change nothing;
//! the audit trail is intact afterwards.

use serde_json::{Value, json};

use crate::harness::*;

const NASTY: &[&str] = &[
    "' OR '1'='1",
    "\"; DROP TABLE sessions; --",
    "1; DELETE FROM audit_log",
    "../../../../etc/passwd",
    "..\\..\\windows\\system32",
    "${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "\u{202e}evil\u{202d}",
    "\u{0000}",
    "%00",
];

/// What the server holds, to compare before and after refused requests.
async fn state(server: &Server) -> Value {
    json!({
        "rooms": server.ok("GET", "/api/v1/rooms", None).await,
        "sessions": server.ok("GET", "/api/v1/sessions", None).await,
        "users": server.ok("GET", "/api/v1/users", None).await,
    })
}

fn no_5xx(what: &str, status: u16, body: &Value) {
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: a JSON error naming the problem: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_is_refused_cleanly_and_changes_nothing() {
    let server = Server::start().await;
    let room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "测试室", "kind": "bid_opening", "sources": [{"name": "cam1", "url": "rtsp://127.0.0.1:1/none"}]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = state(&server).await;

    // Oversized bodies and wrong content types, on every endpoint that reads a JSON body.
    let bodies: Vec<(&str, String)> = vec![
        ("POST", "/api/v1/rooms".into()),
        ("PATCH", format!("/api/v1/rooms/{room}")),
        ("POST", format!("/api/v1/rooms/{room}/start")),
        ("POST", "/api/v1/users".into()),
        ("POST", "/api/v1/sessions/x/exports".into()),
        ("POST", "/api/v1/auth/login".into()),
    ];
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat((2 << 20) + (64 << 10)));
    for (method, path) in &bodies {
        // The server answers 413 without reading the rest and drops the connection: do not
        // let the client reuse it for the next request.
        let r = server
            .request(method, path)
            .header("content-type", "application/json")
            .header("connection", "close")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 413, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "body_too_large", "{method} {path}");
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let r = server
                .request(method, path)
                .header("content-type", content_type)
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (415, Some("unsupported_media_type")),
                "{method} {path} as {content_type}: {body}"
            );
        }
    }

    // Path traversal and junk in every id of every route (taken from the access table).
    // (A bare `..` or `%2e%2e` would be resolved away by the HTTP client itself, per the URL
    // standard, before reaching the server; encoded slashes are what reaches it.)
    let junk_ids = [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..%5C..%5Cwin.ini",
        "%00",
        "'%20OR%20'1'%3D'1",
        &"9".repeat(300),
    ];
    for rule in witness::http::policy::POLICY {
        if !rule.path.contains('{')
            || rule.path == "/sessions/{id}"
            || rule.path == "/assets/{name}"
        {
            continue;
        }
        for junk in junk_ids {
            let path = rule
                .path
                .replace("{id}", junk)
                .replace("{source}", junk)
                .replace("{file}", junk)
                .replace("{name}", junk)
                .replace("{code}", junk);
            let body = (rule.method != "GET").then(|| json!({}));
            let (status, b) = server.call(rule.method, &path, body).await;
            no_5xx(&format!("{} {path}", rule.method), status, &b);
            assert!(status >= 400, "{} {path}: {status} {b}", rule.method);
        }
    }
    // The page shells and assets are public; their junk gets a 4xx too, or the (empty) shell.
    for path in [
        "/assets/..%2F..%2FCargo.toml",
        "/assets/%2e%2e",
        "/sessions/..%2F..%2Fetc",
    ] {
        let (status, b) = server.call_as(None, "GET", path, None).await;
        assert!(status < 500, "{path}: {status} {b}");
        if let Value::String(text) = &b {
            assert!(!text.contains("[package]"), "{path} leaked a file");
        }
    }
    assert_eq!(
        state(&server).await,
        before,
        "refused requests changed nothing"
    );

    // SQL, shell and markup metacharacters in every string field: never a 5xx. Free text is
    // stored as text (a 2xx is correct); identifiers are refused (4xx).
    let mut started = 0;
    for nasty in NASTY {
        let n = *nasty;
        let cases: Vec<(&str, String, Value)> = vec![
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": n, "kind": "other", "sources": []}),
            ),
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": format!("r{}", n.len()), "kind": n, "sources": []}),
            ),
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": "r-loc", "kind": "other", "location": n, "sources": []}),
            ),
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": "r-src", "kind": "other", "sources": [{"name": n, "url": "rtsp://127.0.0.1:1/x"}]}),
            ),
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": "r-url", "kind": "other", "sources": [{"name": "c", "url": n}]}),
            ),
            (
                "POST",
                "/api/v1/rooms".into(),
                json!({"name": "r-tpl", "kind": "other", "sources": [{"name": "c", "url": "rtsp://127.0.0.1:1/x", "template": n}]}),
            ),
            (
                "PATCH",
                format!("/api/v1/rooms/{room}"),
                json!({"location": n}),
            ),
            (
                "POST",
                format!("/api/v1/rooms/{room}/start"),
                json!({"project_code": n, "reason": "test: unbooked", "session_code": "S", "kind": "other"}),
            ),
            (
                "POST",
                format!("/api/v1/rooms/{room}/start"),
                json!({"project_code": "P", "reason": "test: unbooked", "session_code": n, "kind": "other"}),
            ),
            (
                "POST",
                format!("/api/v1/rooms/{room}/start"),
                json!({"project_code": "P", "reason": "test: unbooked", "session_code": "S", "kind": n}),
            ),
            (
                "POST",
                format!("/api/v1/rooms/{room}/start"),
                json!({"project_code": "P", "reason": "test: unbooked", "session_code": "S", "kind": "other", "category": n}),
            ),
            (
                "POST",
                format!("/api/v1/rooms/{room}/start"),
                json!({"project_code": "P", "reason": "test: unbooked", "session_code": "S", "kind": "other", "note": n}),
            ),
            (
                "POST",
                "/api/v1/users".into(),
                json!({"username": n, "role": "witness_staff"}),
            ),
            (
                "POST",
                "/api/v1/users".into(),
                json!({"username": format!("u{}", n.len()), "display_name": n, "role": "witness_staff"}),
            ),
            (
                "POST",
                "/api/v1/users".into(),
                json!({"username": "u-role", "role": n}),
            ),
            (
                "POST",
                "/api/v1/users".into(),
                json!({"username": "u-cat", "role": "regulator", "categories": [n]}),
            ),
            (
                "POST",
                "/api/v1/auth/login".into(),
                json!({"username": n, "password": n}),
            ),
            (
                "POST",
                "/api/v1/auth/login".into(),
                json!({"username": "admin", "password": "x", "totp": n}),
            ),
        ];
        for (method, path, body) in cases {
            let (status, b) = server.call(method, &path, Some(body.clone())).await;
            no_5xx(&format!("{method} {path} {body}"), status, &b);
            if n.contains('\0') {
                assert!(status >= 400, "NUL accepted: {method} {path} {body}");
            }
            if status < 300 && path.ends_with("/start") {
                started += 1;
                server
                    .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
                    .await;
            }
        }
        for query in [
            format!("/api/v1/sessions?project_code={}", urlencode(n)),
            format!(
                "/api/v1/audit?user={}&action={}",
                urlencode(n),
                urlencode(n)
            ),
            format!(
                "/api/v1/audit?session={}&project={}",
                urlencode(n),
                urlencode(n)
            ),
        ] {
            let (status, b) = server.call("GET", &query, None).await;
            no_5xx(&query, status, &b);
        }
    }
    assert!(started > 0, "free-text notes are accepted as text");
    // Still all there, and the audit trail is unbroken.
    assert!(
        !server
            .ok("GET", "/api/v1/rooms", None)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        !server
            .ok("GET", "/api/v1/sessions", None)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let report = server.ok("GET", "/api/v1/audit/verify", None).await;
    assert_report_intact(&report, "session");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
