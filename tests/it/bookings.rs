//! Issue 15: rooms with a kind and an area, bookings that drive recording. Validation (past,
//! overlap 409 naming the other, end before start, unknown room/activity), history of changes
//! and cancellation, permissions, concurrent bookings of one slot; the scheduler starting a
//! booked room's recording by itself (tied to project, section, activity, confidential in a
//! confidential room), the booked end passing without a cut (the overrun prompt), and a booked
//! room whose camera is down raising the alarm in room status, /metrics and the audit trail.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

fn at(offset_seconds: f64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::milliseconds((offset_seconds * 1000.0) as i64);
    t.to_rfc3339()
}

async fn room(server: &Server, name: &str, kind: &str, area: Option<&str>, url: &str) -> Value {
    let mut body = json!({"name": name, "kind": kind, "sources": [{"name": "cam1", "url": url}]});
    if let Some(a) = area {
        body["area"] = json!(a);
    }
    server.ok("POST", "/api/v1/rooms", Some(body)).await
}

fn booking(room: &str, from: f64, to: f64) -> Value {
    json!({"room_id": room, "project_code": "ZB-BOOK-01", "section_code": "BD-01",
           "activity": "bid_opening", "category": "construction",
           "starts_at": at(from), "ends_at": at(to)})
}

async fn audit_entries(server: &Server, action: &str) -> Vec<Value> {
    let v = server
        .ok(
            "GET",
            &format!("/api/v1/audit?action={action}&limit=100"),
            None,
        )
        .await;
    v["entries"].as_array().unwrap().clone()
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, words: &[&str]) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(message.contains(w), "{message:?} should name {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_have_a_kind_from_the_catalogue_and_an_area() {
    let server = Server::start().await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let eval = room(
        &server,
        "评标室 A",
        "evaluation",
        None,
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    assert_eq!(
        eval["area"], "confidential",
        "the kind's default area: {eval}"
    );
    let open = room(
        &server,
        "开标室 A",
        "bid_opening",
        None,
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    assert_eq!(open["area"], "public");
    let draw = room(
        &server,
        "专家抽取室",
        "expert_draw",
        Some("confidential"),
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    assert_eq!(draw["area"], "confidential", "an area given wins: {draw}");
    let (s, b) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "x", "kind": "party", "sources": [{"name": "cam1", "url": "rtsp://h/a"}]})),
        )
        .await;
    assert_error(
        s,
        &b,
        422,
        "invalid_field",
        &["kind", "party", "expert_draw"],
    );
    let (s, b) = server
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "x", "kind": "other", "area": "secret", "sources": [{"name": "cam1", "url": "rtsp://h/a"}]})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("area"),
        "{b}"
    );
    // A change of area is audited before → after.
    let id = open["id"].as_str().unwrap();
    let changed = server
        .ok(
            "PATCH",
            &format!("/api/v1/rooms/{id}"),
            Some(json!({"area": "confidential"})),
        )
        .await;
    assert_eq!(changed["area"], "confidential");
    let entries = audit_entries(&server, "room_change").await;
    assert!(
        entries.iter().any(|e| e["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("area: \"public\" → \"confidential\""))),
        "{entries:?}"
    );
    // The catalogue the console offers.
    let c = server.ok("GET", "/api/v1/catalogue", None).await;
    assert!(
        c["room_kinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == "clarification" && k["zh"] == "询标室")
    );
    assert!(
        c["activities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "expert_draw")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bookings_are_validated_never_overlap_and_keep_their_history() {
    let server = Server::start().await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let r = room(
        &server,
        "开标室 B",
        "bid_opening",
        None,
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    let rid = r["id"].as_str().unwrap();
    let post = |body: Value| {
        let server = &server;
        async move { server.call("POST", "/api/v1/bookings", Some(body)).await }
    };

    // Bad input: each a 4xx naming the problem; nothing written.
    let (s, b) = post(booking(rid, -7200.0, -3600.0)).await;
    assert_error(s, &b, 422, "booking_in_past", &["starts_at", "past"]);
    let (s, b) = post(booking(rid, 7200.0, 3600.0)).await;
    assert_error(
        s,
        &b,
        422,
        "booking_ends_before_start",
        &["ends_at", "starts_at"],
    );
    let (s, b) = post(booking("no-such-room", 3600.0, 7200.0)).await;
    assert_error(s, &b, 404, "room_not_found", &["no-such-room"]);
    let mut bad = booking(rid, 3600.0, 7200.0);
    bad["activity"] = json!("party");
    let (s, b) = post(bad).await;
    assert_error(s, &b, 422, "unknown_activity", &["party", "expert_draw"]);
    let mut bad = booking(rid, 3600.0, 7200.0);
    bad["section_code"] = json!("../x");
    let (s, b) = post(bad).await;
    assert_error(s, &b, 422, "invalid_field", &["section_code"]);
    let mut bad = booking(rid, 3600.0, 7200.0);
    bad["starts_at"] = json!("tomorrow");
    let (s, b) = post(bad).await;
    assert_error(s, &b, 422, "invalid_field", &["starts_at", "tomorrow"]);
    // A closed project is not booked (the check the projects registry will extend to sections).
    let (s, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/projects/ZB-CLOSED-01/events",
            Some(json!({"closed_at": at(-60.0)})),
        )
        .await;
    assert!((200..300).contains(&s), "{b}");
    let mut closed = booking(rid, 3600.0, 7200.0);
    closed["project_code"] = json!("ZB-CLOSED-01");
    let (s, b) = post(closed).await;
    assert_error(s, &b, 409, "project_closed", &["ZB-CLOSED-01"]);
    let listed = server.ok("GET", "/api/v1/bookings", None).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "nothing half-written: {listed}"
    );

    // One booking; an overlapping one is refused naming it; one that meets its end is fine.
    let first = server
        .ok(
            "POST",
            "/api/v1/bookings",
            Some(booking(rid, 3600.0, 7200.0)),
        )
        .await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(first["state"], "booked");
    assert_eq!(first["created_by"], "t-witness-staff/token:tests");
    let (s, b) = post(booking(rid, 5400.0, 9000.0)).await;
    assert_error(
        s,
        &b,
        409,
        "booking_overlap",
        &[first_id, "ZB-BOOK-01", "BD-01"],
    );
    let mut after = booking(rid, 0.0, 0.0);
    after["starts_at"] = first["ends_at"].clone();
    after["ends_at"] = json!(at(9000.0));
    let second = server.ok("POST", "/api/v1/bookings", Some(after)).await;
    let second_id = second["id"].as_str().unwrap();

    // A change needs a reason; moving into the other booking is refused; a move is kept.
    let path = format!("/api/v1/bookings/{first_id}");
    let (s, b) = server
        .call(
            "PATCH",
            &path,
            Some(json!({"ends_at": at(8000.0), "reason": " "})),
        )
        .await;
    assert_error(s, &b, 422, "reason_required", &["reason"]);
    let (s, b) = server
        .call(
            "PATCH",
            &path,
            Some(json!({"ends_at": at(8000.0), "reason": "longer"})),
        )
        .await;
    assert_error(s, &b, 409, "booking_overlap", &[second_id]);
    let moved = server
        .ok(
            "PATCH",
            &path,
            Some(json!({"starts_at": at(1800.0), "reason": "the agency asked to start earlier"})),
        )
        .await;
    assert_eq!(moved["ends_at"], first["ends_at"]);
    assert_ne!(moved["starts_at"], first["starts_at"]);

    // Cancelled with a reason: kept, with its history; the slot is free again.
    let (s, b) = server
        .call(
            "POST",
            &format!("{path}/cancel"),
            Some(json!({"reason": ""})),
        )
        .await;
    assert_error(s, &b, 422, "reason_required", &["reason"]);
    let cancelled = server
        .ok(
            "POST",
            &format!("{path}/cancel"),
            Some(json!({"reason": "bid opening postponed (公告)"})),
        )
        .await;
    assert_eq!(cancelled["state"], "cancelled");
    let (s, b) = server
        .call(
            "POST",
            &format!("{path}/cancel"),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_error(s, &b, 409, "booking_cancelled", &[first_id]);
    let (s, b) = server
        .call(
            "PATCH",
            &path,
            Some(json!({"ends_at": at(3000.0), "reason": "x"})),
        )
        .await;
    assert_error(s, &b, 409, "booking_cancelled", &[first_id]);
    let v = server.ok("GET", &path, None).await;
    let history = v["history"].as_array().unwrap();
    let actions: Vec<&str> = history
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "changed", "cancelled"], "{v}");
    assert_eq!(history[1]["reason"], "the agency asked to start earlier");
    assert!(
        history[1]["before"]
            .as_str()
            .unwrap()
            .contains(first["starts_at"].as_str().unwrap())
    );
    assert!(
        history[1]["after"]
            .as_str()
            .unwrap()
            .contains(moved["starts_at"].as_str().unwrap())
    );
    assert_eq!(history[2]["reason"], "bid opening postponed (公告)");
    assert!(
        history
            .iter()
            .all(|h| h["actor"] == "t-witness-staff/token:tests")
    );
    server
        .ok(
            "POST",
            "/api/v1/bookings",
            Some(booking(rid, 3600.0, 5400.0)),
        )
        .await;

    // Listing: live by default, cancelled on request; by room, project and window.
    let live = server
        .ok("GET", &format!("/api/v1/bookings?room_id={rid}"), None)
        .await;
    assert_eq!(live.as_array().unwrap().len(), 2, "{live}");
    let all = server
        .ok(
            "GET",
            &format!("/api/v1/bookings?room_id={rid}&include_cancelled=true"),
            None,
        )
        .await;
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let window = server
        .ok(
            "GET",
            &format!(
                "/api/v1/bookings?from={}&to={}",
                urlencode(&at(8000.0)),
                urlencode(&at(8500.0))
            ),
            None,
        )
        .await;
    assert_eq!(window.as_array().unwrap().len(), 1, "{window}");
    assert_eq!(window[0]["id"], second_id);
    let none = server
        .ok("GET", "/api/v1/bookings?project_code=ZB-OTHER", None)
        .await;
    assert_eq!(none.as_array().unwrap().len(), 0);

    // Every change audited.
    for (action, n) in [
        ("booking_add", 3),
        ("booking_change", 1),
        ("booking_cancel", 1),
    ] {
        let e = audit_entries(&server, action).await;
        let ok: Vec<_> = e
            .iter()
            .filter(|e| e["outcome"] != "denied: reason_required")
            .collect();
        assert!(ok.len() >= n, "{action}: {e:?}");
    }

    // Two requests for one slot at once: exactly one is booked.
    let r2 = room(&server, "竞价室 C", "bidding", None, "rtsp://127.0.0.1:1/x").await;
    let rid2 = r2["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let body = booking(&rid2, 3600.0, 7200.0);
        let req = server.request("POST", "/api/v1/bookings").json(&body);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [201, 409, 409, 409, 409, 409],
        "concurrent bookings of one slot"
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread")]
async fn who_books_and_who_reads_bookings() {
    let server = Server::start().await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let r = room(
        &server,
        "谈判室 D",
        "negotiation",
        None,
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    assert_eq!(r["area"], "confidential");
    let rid = r["id"].as_str().unwrap();
    for (i, role) in ROLES.into_iter().enumerate() {
        let hour = 3600.0 * (1 + i) as f64;
        let (s, b) = server
            .call_as(
                Some(role),
                "POST",
                "/api/v1/bookings",
                Some(booking(rid, hour, hour + 1800.0)),
            )
            .await;
        let want = if role == "witness_staff" { 201 } else { 403 };
        assert_eq!(s, want, "{role} books: {b}");
    }
    let listed = server.ok("GET", "/api/v1/bookings", None).await;
    let id = listed[0]["id"].as_str().unwrap();
    for role in ROLES {
        let reads = !matches!(role, "security_administrator" | "audit_administrator");
        let (s, b) = server
            .call_as(Some(role), "GET", &format!("/api/v1/bookings/{id}"), None)
            .await;
        assert_eq!(s, if reads { 200 } else { 403 }, "{role} reads: {b}");
        let (s, _) = server
            .call_as(
                Some(role),
                "POST",
                &format!("/api/v1/bookings/{id}/cancel"),
                Some(json!({"reason": "x"})),
            )
            .await;
        if role != "witness_staff" {
            assert_eq!(s, 403, "{role} cancels");
        }
    }
    let (s, b) = server
        .call("GET", "/api/v1/bookings/no-such-booking", None)
        .await;
    assert_error(s, &b, 404, "booking_not_found", &["no-such-booking"]);
    // A regulator sees the bookings of the categories in scope only.
    let token = server.another_user("reg-land", "regulator", &["land"]);
    let resp = http_client()
        .get(server.url("/api/v1/bookings"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        0,
        "construction bookings are out of a land regulator's scope: {v}"
    );

    // A manual start without a booking needs a reason.
    let (s, b) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{rid}/start"),
            Some(json!({"project_code": "P-MANUAL", "session_code": "S1", "kind": "other"})),
        )
        .await;
    assert_error(s, &b, 422, "reason_required", &["reason", "P-MANUAL"]);
}

/// Polls the room's status until `pred` holds.
async fn wait_room(
    server: &Server,
    room: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let t = Instant::now();
    loop {
        let all = server.ok("GET", "/api/v1/rooms/status", None).await;
        let r = all
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["room_id"] == room)
            .cloned()
            .unwrap();
        if pred(&r) {
            return r;
        }
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}: {r}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const FAST: &str =
    "\n[bookings]\nlead_seconds = 1.0\nalarm_after_seconds = 2.0\ntick_seconds = 0.25\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_booked_room_records_by_itself_confidential_and_is_never_cut_at_its_end() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with(FAST).await;
    server
        .register_project("ZB-BOOK-01", &["BD-01", "BD-07"])
        .await;
    // A bid-opening room placed in the confidential area: the area decides, not the kind.
    let r = room(
        &server,
        "开标室 E",
        "bid_opening",
        Some("confidential"),
        &sim.url("cam1"),
    )
    .await;
    let rid = r["id"].as_str().unwrap();
    let mut body = booking(rid, 3.0, 7.0);
    body["section_code"] = json!("BD-07");
    let b = server.ok("POST", "/api/v1/bookings", Some(body)).await;
    let bid = b["id"].as_str().unwrap();
    let starts = unix_seconds(&b["starts_at"]);

    let status = wait_room(
        &server,
        rid,
        "the booked recording",
        Duration::from_secs(15),
        |r| r["session"].is_object(),
    )
    .await;
    let started = unix_now();
    assert!(
        started >= starts - 1.0 - 1.0,
        "started by itself within the lead, not earlier: {started} vs {starts}"
    );
    let session = &status["session"];
    assert_eq!(session["booking_id"], bid, "{status}");
    assert_eq!(session["project_code"], "ZB-BOOK-01");
    assert_eq!(session["session_code"], "BD-07.bid_opening");
    assert_eq!(session["kind"], "bid_opening");
    assert_eq!(session["category"], "construction");
    assert_eq!(
        session["confidential"], true,
        "confidential by the room's area: {status}"
    );
    assert_eq!(status["live_view"], false, "{status}");
    let sid = session["id"].as_str().unwrap().to_string();
    let starts_entry = audit_entries(&server, "room_start").await;
    assert!(
        starts_entry
            .iter()
            .any(|e| e["actor"] == "scheduler"
                && e["reason"].as_str().unwrap_or_default().contains(bid)),
        "{starts_entry:?}"
    );

    // Media flows: no alarm. The end passes: the recording goes on, with the prompt to stop.
    let status = wait_room(
        &server,
        rid,
        "the overrun prompt",
        Duration::from_secs(20),
        |r| r["overrun"].is_object(),
    )
    .await;
    assert_eq!(status["state"], "recording", "never cut: {status}");
    assert_eq!(status["overrun"]["booking_id"], bid);
    assert!(
        status["overrun"]["message"]
            .as_str()
            .unwrap()
            .contains("passed"),
        "{status}"
    );
    assert!(
        status.get("booking_alarm").is_none(),
        "media flows, no alarm: {status}"
    );
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains(&format!("booking=\"{bid}\""))
            && metrics.contains("witness_booking_overrun_seconds{"),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = server
        .ok("GET", &format!("/api/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(
        v["state"], "recording",
        "still recording past the booked end"
    );

    // Staff stop it; the prompt goes.
    server
        .ok("POST", &format!("/api/v1/rooms/{rid}/stop"), None)
        .await;
    let v = server
        .ok("GET", &format!("/api/v1/sessions/{sid}"), None)
        .await;
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["booking_id"], bid);
    assert_eq!(v["confidential"], true);
    wait_room(
        &server,
        rid,
        "the prompt cleared",
        Duration::from_secs(5),
        |r| r.get("overrun").is_none(),
    )
    .await;
    let ended = unix_now();
    assert!(ended - unix_seconds(&b["ends_at"]) > 1.0);

    // A manual start inside another booking's slot of the same project records that booking.
    let b2 = server
        .ok("POST", "/api/v1/bookings", Some(booking(rid, 0.0, 600.0)))
        .await;
    let (s, v) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{rid}/start"),
            Some(json!({"project_code": "ZB-BOOK-01", "session_code": "MAN-1", "kind": "bid_opening"})),
        )
        .await;
    if s == 201 {
        assert_eq!(v["booking_id"], b2["id"], "{v}");
    } else {
        // The scheduler was first: it records the same booking.
        assert_error(s, &v, 409, "already_recording", &[]);
        let st = wait_room(&server, rid, "booked", Duration::from_secs(5), |r| {
            r["session"].is_object()
        })
        .await;
        assert_eq!(st["session"]["booking_id"], b2["id"]);
    }
    server
        .ok("POST", &format!("/api/v1/rooms/{rid}/stop"), None)
        .await;
    // Stopped by staff inside the slot (the business ended early): not started again, and no
    // alarm once the alarm time has passed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = wait_room(&server, rid, "idle", Duration::from_secs(1), |_| true).await;
    assert_eq!(st["state"], "idle", "not started again: {st}");
    assert!(st.get("booking_alarm").is_none(), "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_booked_room_whose_camera_is_down_raises_the_alarm() {
    let server = Server::start_with(FAST).await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let dead = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let r = room(&server, "拍卖室 F", "auction", None, &dead).await;
    let rid = r["id"].as_str().unwrap();
    let b = server
        .ok("POST", "/api/v1/bookings", Some(booking(rid, 2.0, 120.0)))
        .await;
    let bid = b["id"].as_str().unwrap();

    let status = wait_room(&server, rid, "the alarm", Duration::from_secs(20), |r| {
        r["booking_alarm"].is_object()
    })
    .await;
    assert_eq!(status["booking_alarm"]["booking_id"], bid, "{status}");
    let message = status["booking_alarm"]["message"].as_str().unwrap();
    assert!(
        message.contains(bid) && message.contains("no media"),
        "{message}"
    );
    assert_eq!(
        status["session"]["booking_id"], bid,
        "the scheduler started it: {status}"
    );
    let metrics = server.text("/metrics").await;
    let line =
        format!("witness_booking_alarm{{room=\"拍卖室 F\",room_id=\"{rid}\",booking=\"{bid}\"}} 1");
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    // One audit entry per booking, however many rounds see it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let entries = audit_entries(&server, "booking_not_recording").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"], "scheduler");
    assert_eq!(entries[0]["flagged"], true);
    assert!(entries[0]["reason"].as_str().unwrap().contains(bid));

    // Staff stop it (the booking is then done: no restart, no alarm), and cancel it.
    server
        .ok("POST", &format!("/api/v1/rooms/{rid}/stop"), None)
        .await;
    // Cancelled too: nothing alarms any more.
    server
        .ok(
            "POST",
            &format!("/api/v1/bookings/{bid}/cancel"),
            Some(json!({"reason": "camera broken, moved"})),
        )
        .await;
    wait_room(
        &server,
        rid,
        "the alarm cleared",
        Duration::from_secs(5),
        |r| r.get("booking_alarm").is_none(),
    )
    .await;
    assert!(
        !server
            .text("/metrics")
            .await
            .contains(&format!("booking=\"{bid}\""))
    );
    assert_eq!(
        audit_entries(&server, "booking_not_recording").await.len(),
        1
    );
}

/// The camera comes back: media flows, the alarm clears (room status and /metrics), and the
/// audit trail keeps its one entry.
#[tokio::test(flavor = "multi_thread")]
async fn the_alarm_clears_when_the_camera_comes_back() {
    let mut sim = Simulator::start(&[]);
    let server = Server::start_with(FAST).await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let r = room(&server, "竞价室 G", "bidding", None, &sim.url("cam1")).await;
    let rid = r["id"].as_str().unwrap();
    sim.kill();
    let b = server
        .ok("POST", "/api/v1/bookings", Some(booking(rid, 2.0, 300.0)))
        .await;
    let bid = b["id"].as_str().unwrap();
    wait_room(&server, rid, "the alarm", Duration::from_secs(20), |r| {
        r["booking_alarm"]["booking_id"] == bid
    })
    .await;
    sim.restart();
    let status = wait_room(
        &server,
        rid,
        "the alarm cleared",
        Duration::from_secs(30),
        |r| r.get("booking_alarm").is_none(),
    )
    .await;
    assert_eq!(status["session"]["booking_id"], bid, "{status}");
    assert!(
        !server
            .text("/metrics")
            .await
            .contains("witness_booking_alarm{room=\"竞价室 G\"")
    );
    assert_eq!(
        audit_entries(&server, "booking_not_recording").await.len(),
        1
    );
    server
        .ok("POST", &format!("/api/v1/rooms/{rid}/stop"), None)
        .await;
}

/// What was booked never changes, the history is only inserted into, and a session's
/// confidentiality and booking are fixed: the database refuses an insider's edits.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_guards_bookings_and_a_sessions_confidentiality() {
    use sqlx::Executor;
    let server = Server::start().await;
    server.register_project("ZB-BOOK-01", &["BD-01"]).await;
    let r = room(
        &server,
        "评标室 H",
        "evaluation",
        None,
        "rtsp://127.0.0.1:1/x",
    )
    .await;
    let rid = r["id"].as_str().unwrap();
    let b = server
        .ok(
            "POST",
            "/api/v1/bookings",
            Some(booking(rid, 3600.0, 7200.0)),
        )
        .await;
    let bid = b["id"].as_str().unwrap();
    server
        .ok(
            "POST",
            &format!("/api/v1/bookings/{bid}/cancel"),
            Some(json!({"reason": "moved"})),
        )
        .await;
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{rid}/start"),
            Some(json!({"project_code": "P-G", "session_code": "S1", "kind": "other", "reason": "test"})),
        )
        .await;
    assert_eq!(
        s["confidential"], true,
        "a confidential room's session: {s}"
    );
    let sid = s["id"].as_str().unwrap();
    let mut db = crate::db_guards::insider(&server).await;
    for (sql, why) in [
        (
            format!("UPDATE bookings SET project_code = 'X' WHERE id = '{bid}'"),
            "bookings",
        ),
        (
            format!("UPDATE bookings SET state = 'booked' WHERE id = '{bid}'"),
            "bookings",
        ),
        (
            format!("DELETE FROM bookings WHERE id = '{bid}'"),
            "bookings",
        ),
        (
            format!("UPDATE booking_history SET reason = 'x' WHERE booking_id = '{bid}'"),
            "booking_history",
        ),
        (
            format!("DELETE FROM booking_history WHERE booking_id = '{bid}'"),
            "booking_history",
        ),
        (
            format!("UPDATE sessions SET confidential = 0 WHERE id = '{sid}'"),
            "confidential",
        ),
        (
            format!("UPDATE sessions SET booking_id = '{bid}' WHERE id = '{sid}'"),
            "booking",
        ),
    ] {
        let err = db.execute(sql.as_str()).await.expect_err(&sql).to_string();
        assert!(err.contains(why), "{sql}: {err}");
    }
    server
        .ok("POST", &format!("/api/v1/rooms/{rid}/stop"), None)
        .await;
}
