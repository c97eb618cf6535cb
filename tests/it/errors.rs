//! Every bad input gets a 4xx with `{"error": {"code", "message"}}`, and nothing changes.

use serde_json::{Value, json};

use crate::harness::*;

fn expect(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_answers_4xx_with_a_named_problem() {
    let server = Server::start().await;
    let cam = |url: &str| json!({"name": "r", "kind": "bid_opening", "sources": [{"name": "cam1", "url": url}]});

    // Invalid RTSP URLs.
    for url in ["http://127.0.0.1/cam", "cam1", "rtsp://", "rtsp://host /x"] {
        let (s, b) = server.call("POST", "/api/v1/rooms", Some(cam(url))).await;
        expect(s, &b, 422, "invalid_rtsp_url");
        assert!(
            b["error"]["message"].as_str().unwrap().contains("RTSP"),
            "{b}"
        );
    }
    // Unknown fields, wrong types, malformed JSON, wrong content type.
    let (s, b) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "r", "kind": "bid_opening", "sources": [], "colour": 1})),
        )
        .await;
    expect(s, &b, 422, "invalid_body");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("colour"),
        "{b}"
    );
    let (s, b) = server
        .call("POST", "/api/v1/rooms", Some(json!({"name": 5})))
        .await;
    expect(s, &b, 422, "invalid_body");
    let r = server
        .request("POST", "/api/v1/rooms")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    expect(s, &r.json().await.unwrap(), 400, "malformed_json");
    let r = server
        .request("POST", "/api/v1/rooms")
        .body("name=x")
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    expect(s, &r.json().await.unwrap(), 415, "unsupported_media_type");

    // Bad field values.
    let (s, b) = server.call("POST", "/api/v1/rooms", Some(json!({"name": "r", "kind": "kitchen", "sources": [{"name": "cam1", "url": "rtsp://h/a"}]}))).await;
    expect(s, &b, 422, "invalid_field");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bid_opening"),
        "lists valid kinds: {b}"
    );
    let (s, b) = server.call("POST", "/api/v1/rooms", Some(json!({"name": "r", "kind": "other", "sources": [{"name": "../etc", "url": "rtsp://h/a"}]}))).await;
    expect(s, &b, 422, "invalid_field");
    let (s, b) = server.call("POST", "/api/v1/rooms", Some(json!({"name": "r", "kind": "other", "sources": [{"name": "cam1", "url": "rtsp://h/a", "template": "nope"}]}))).await;
    expect(s, &b, 422, "unknown_template");
    let (s, b) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "r", "kind": "other", "sources": []})),
        )
        .await;
    expect(s, &b, 422, "invalid_field");

    // Unknown room and session.
    for (m, p) in [
        ("GET", "/api/v1/rooms/nope"),
        ("DELETE", "/api/v1/rooms/nope"),
        ("POST", "/api/v1/rooms/nope/stop"),
    ] {
        let (s, b) = server.call(m, p, None).await;
        expect(s, &b, 404, "room_not_found");
    }
    let (s, b) = server
        .call(
            "POST",
            "/api/v1/rooms/nope/start",
            Some(json!({"project_code": "P1", "reason": "test: unbooked", "session_code": "S1", "kind": "bid_opening"})),
        )
        .await;
    expect(s, &b, 404, "room_not_found");
    for p in ["/api/v1/sessions/nope", "/api/v1/sessions/nope/verify"] {
        let (s, b) = server.call("GET", p, None).await;
        expect(s, &b, 404, "session_not_found");
    }
    let (s, b) = server.call("GET", "/api/v1/nothing", None).await;
    expect(s, &b, 404, "not_found");
    let (s, b) = server.call("PUT", "/api/v1/rooms", None).await;
    expect(s, &b, 405, "method_not_allowed");
    let (s, b) = server.call("GET", "/api/v1/sessions?limit=0", None).await;
    expect(s, &b, 400, "invalid_query");
    let (s, b) = server.call("GET", "/api/v1/sessions?bogus=1", None).await;
    expect(s, &b, 400, "invalid_query");

    // A room, then state errors: stop while idle, bad start bodies.
    let room = server
        .ok("POST", "/api/v1/rooms", Some(json!({"name": "竞价室", "kind": "auction", "sources": [{"name": "cam1", "url": "rtsp://127.0.0.1:9/none"}]})))
        .await;
    let id = room["id"].as_str().unwrap();
    let (s, b) = server.call("POST", "/api/v1/rooms", Some(json!({"name": "竞价室", "kind": "auction", "sources": [{"name": "cam1", "url": "rtsp://h/a"}]}))).await;
    expect(s, &b, 409, "room_name_taken");
    let (s, b) = server
        .call("POST", &format!("/api/v1/rooms/{id}/stop"), None)
        .await;
    expect(s, &b, 409, "not_recording");
    for bad in [
        json!({"project_code": "P/../1", "reason": "test: unbooked", "session_code": "S1", "kind": "bid_opening"}),
        json!({"project_code": "", "reason": "test: unbooked", "session_code": "S1", "kind": "bid_opening"}),
        json!({"project_code": "P1", "reason": "test: unbooked", "session_code": "S1", "kind": "party"}),
    ] {
        let (s, b) = server
            .call("POST", &format!("/api/v1/rooms/{id}/start"), Some(bad))
            .await;
        expect(s, &b, 422, "invalid_field");
    }
    let (s, b) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{id}/start"),
            Some(json!({"project_code": "P1"})),
        )
        .await;
    expect(s, &b, 422, "invalid_body");

    // Start while recording (the camera is unreachable: the session records a gap, not a 5xx).
    let session = server.start_recording(id, "P1").await;
    let (s, b) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{id}/start"),
            Some(json!({"project_code": "P2", "reason": "test: unbooked", "session_code": "S2", "kind": "bid_opening"})),
        )
        .await;
    expect(s, &b, 409, "already_recording");
    let (s, b) = server
        .call("DELETE", &format!("/api/v1/rooms/{id}"), None)
        .await;
    expect(s, &b, 409, "room_recording");
    let (s, b) = server
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"location": "2F"})),
        )
        .await;
    expect(s, &b, 409, "room_recording");
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{id}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped");
    let rec = recording(&stopped, "cam1");
    assert_eq!(rec["segment_count"], 0);
    assert_eq!(
        rec["gap_count"], 1,
        "an unreachable camera is a recorded gap: {rec}"
    );
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");

    // Nothing else changed: one room, one session.
    let rooms = server.ok("GET", "/api/v1/rooms", None).await;
    assert_eq!(rooms.as_array().unwrap().len(), 1);
    let sessions = server
        .ok("GET", "/api/v1/sessions?project_code=P1", None)
        .await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    let (s, _) = server
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"location": "2F"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = server
        .call("DELETE", &format!("/api/v1/rooms/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, b) = server.call("GET", "/healthz", None).await;
    assert_eq!((s, &b["status"]), (200, &json!("ok")));
}
