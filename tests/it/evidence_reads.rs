//! Every read of evidence is audited, once per viewing, and the one confidentiality rule
//! (`evidence::access::may_read`) holds on every path: replay playlists and segments, MP4
//! downloads, live views, exports and package downloads. A viewing here closes after 6 s
//! without a read (`[evidence] viewing_idle_minutes = 0.1`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const IDLE: &str = "[evidence]\nviewing_idle_minutes = 0.1\n";
/// Longer than the idle window: the next read opens a new viewing.
const PAST_IDLE: Duration = Duration::from_millis(6_500);

/// The session's audit entries of `action` by `role`'s API token.
async fn entries(server: &Server, session: &str, role: &str, action: &str) -> Vec<Value> {
    let actor = format!("{}/token:tests", server.user(role).username);
    server
        .ok("GET", &format!("/api/v1/sessions/{session}/audit"), None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == actor && e["action"] == action)
        .cloned()
        .collect()
}

fn allowed(es: &[Value]) -> Vec<&Value> {
    es.iter().filter(|e| e["outcome"] == "allowed").collect()
}

fn denied<'a>(es: &'a [Value], code: &str) -> Vec<&'a Value> {
    es.iter()
        .filter(|e| e["outcome"] == format!("denied: {code}"))
        .collect()
}

/// GET as `role`: status, and the body's bytes.
async fn get(server: &Server, role: &str, path: &str) -> (u16, bytes::Bytes) {
    let r = server
        .request_as(Some(role), "GET", path)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

/// A refusal: 403 with a JSON body naming `code`, and no evidence bytes.
fn assert_refused(got: &(u16, bytes::Bytes), code: &str, what: &str) {
    let body: Value = serde_json::from_slice(&got.1)
        .unwrap_or_else(|_| panic!("{what}: {} bytes that are not JSON", got.1.len()));
    assert_eq!(
        (got.0, body["error"]["code"].as_str()),
        (403, Some(code)),
        "{what}: {body}"
    );
}

fn segment_names(view: &Value, source: &str) -> Vec<String> {
    recording(view, source)["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["object_key"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn wait_export(server: &Server, id: &str) -> Value {
    let t = std::time::Instant::now();
    loop {
        let j = server
            .ok("GET", &format!("/api/v1/exports/{id}"), None)
            .await;
        if j["state"] != "preparing" {
            return j;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A confidential (评标) session: replay audited per viewing, the discipline officer's direct
/// segment fetch from the issue audited with its reason, refusals audited, no live view, and
/// the archive clerk's export without a playable MP4.
#[tokio::test(flavor = "multi_thread")]
async fn confidential_session_reads_are_audited_once_per_viewing() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with(IDLE).await;
    let room = server.demo_room(&sim, "default").await;
    let s = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(
                json!({"project_code": "ZB-READS", "reason": "test: unbooked", "session_code": "PB-01", "kind": "evaluation"}),
            ),
        )
        .await;
    let session = s["id"].as_str().unwrap().to_string();
    server
        .wait_session(&session, "5 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 5
        })
        .await;

    // A confidential room is watched live only in supervision (issue 15, 6.2.3.3): regulators and
    // discipline officers, with a reason; witness staff not at all. Each refusal audited once.
    for (role, code) in [
        ("witness_staff", "confidential"),
        ("regulator", "reason_required"),
        ("discipline_officer", "reason_required"),
    ] {
        let (status, body) = server
            .call_as(
                Some(role),
                "POST",
                &format!("/api/v1/rooms/{room}/live"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some(code)),
            "{role}: {body}"
        );
        let es = entries(&server, &session, role, "live_view").await;
        assert_eq!(es.len(), 1, "{role}: {es:#?}");
        assert_eq!(denied(&es, code).len(), 1, "{es:#?}");
    }
    let live = server
        .call_as(
            Some("discipline_officer"),
            "POST",
            &format!("/api/v1/rooms/{room}/live?reason=%E7%9B%91%E7%9D%A3"),
            None,
        )
        .await;
    assert_eq!(live.0, 200, "supervision with a reason: {}", live.1);
    let playlist = live.1["sources"][0]["playlist"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        playlist.ends_with("?reason=%E7%9B%91%E7%9D%A3"),
        "{playlist}"
    );
    let (status, text) = server
        .call_as(Some("discipline_officer"), "GET", &playlist, None)
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.as_str().unwrap_or_default().contains("?reason="),
        "segment URIs carry the reason: {text}"
    );
    let es = entries(&server, &session, "discipline_officer", "live_view").await;
    assert!(
        es.iter()
            .any(|e| e["outcome"] == "allowed" && e["reason"] == "监督" && e["flagged"] == true),
        "{es:#?}"
    );

    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let names = segment_names(&stopped, "cam1");
    assert!(names.len() >= 5, "{names:?}");
    let base = format!("/api/v1/sessions/{session}/sources/cam1");
    // Playing it takes two people: each viewer's grant, approved by the other.
    server
        .grant_confidential("discipline_officer", &session)
        .await;
    server.grant_confidential("regulator", &session).await;
    let stored = |name: &str| {
        let key = recording(&stopped, "cam1")["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["object_key"].as_str().unwrap().ends_with(name))
            .unwrap()["object_key"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::read(server.objects().join(key)).unwrap()
    };

    // The issue: a discipline officer fetches a segment directly, with a reason. Served, and
    // the viewing it opens is audited with that reason; further segments are covered by it.
    let got = get(
        &server,
        "discipline_officer",
        &format!("{base}/segments/{}?reason=x", names[0]),
    )
    .await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1.as_ref(), stored(&names[0]).as_slice());
    for name in &names[1..4] {
        let got = get(
            &server,
            "discipline_officer",
            &format!("{base}/segments/{name}?reason=x"),
        )
        .await;
        assert_eq!(got.0, 200, "{name}");
    }
    let es = entries(&server, &session, "discipline_officer", "replay_start").await;
    let opened = allowed(&es);
    assert_eq!(opened.len(), 1, "one viewing, one entry: {es:#?}");
    assert_eq!(opened[0]["reason"], "x");
    assert_eq!(opened[0]["flagged"], true);
    assert!(
        opened[0]["target"]
            .as_str()
            .unwrap()
            .ends_with(&format!("cam1/segments/{}", names[0])),
        "{}",
        opened[0]
    );
    // Without a reason: refused, audited, no bytes.
    let got = get(
        &server,
        "discipline_officer",
        &format!("{base}/segments/{}", names[1]),
    )
    .await;
    assert_refused(&got, "reason_required", "segment without a reason");
    let es = entries(&server, &session, "discipline_officer", "replay_start").await;
    assert_eq!(denied(&es, "reason_required").len(), 1, "{es:#?}");

    // The regulator's player: the playlist, then the segments it names (with the reason the
    // playlist carries in them): one viewing, one entry with the reason.
    let playlist_path = format!("{base}/index.m3u8?reason=complaint%2017");
    let (status, playlist) = get(&server, "regulator", &playlist_path).await;
    assert_eq!(status, 200);
    let playlist = String::from_utf8(playlist.to_vec()).unwrap();
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|l| l.starts_with("segments/"))
        .collect();
    assert_eq!(uris.len(), names.len(), "{playlist}");
    for uri in &uris[..4] {
        let got = get(&server, "regulator", &format!("{base}/{uri}")).await;
        assert_eq!(got.0, 200, "{uri}");
    }
    let (status, _) = get(&server, "regulator", &playlist_path).await;
    assert_eq!(status, 200, "the playlist again, within the viewing");
    let es = entries(&server, &session, "regulator", "replay_start").await;
    let opened = allowed(&es);
    assert_eq!(opened.len(), 1, "{es:#?}");
    assert_eq!(opened[0]["reason"], "complaint 17");
    assert_eq!(opened[0]["target"], format!("{session}/cam1"));

    // Another reason is another viewing; so is another source.
    let got = get(
        &server,
        "regulator",
        &format!("{base}/segments/{}?reason=court%20order", names[0]),
    )
    .await;
    assert_eq!(got.0, 200);
    let cam2 = segment_names(&stopped, "cam2");
    let got = get(
        &server,
        "regulator",
        &format!(
            "/api/v1/sessions/{session}/sources/cam2/segments/{}?reason=court%20order",
            cam2[0]
        ),
    )
    .await;
    assert_eq!(got.0, 200);
    let es = entries(&server, &session, "regulator", "replay_start").await;
    let reasons: Vec<&str> = allowed(&es)
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["complaint 17", "court order", "court order"],
        "{es:#?}"
    );

    // After a pause longer than the window, the next read opens (and audits) a new viewing.
    tokio::time::sleep(PAST_IDLE).await;
    let got = get(&server, "regulator", &format!("{base}/{}", uris[2])).await;
    assert_eq!(got.0, 200);
    let got = get(&server, "regulator", &format!("{base}/{}", uris[3])).await;
    assert_eq!(got.0, 200);
    let es = entries(&server, &session, "regulator", "replay_start").await;
    let complaint: Vec<_> = allowed(&es)
        .into_iter()
        .filter(|e| e["reason"] == "complaint 17")
        .collect();
    assert_eq!(complaint.len(), 2, "a new viewing after the pause: {es:#?}");

    // Roles without replay: 403 JSON, no bytes, audited as refused with the session.
    for role in [
        "archive_clerk",
        "witness_staff",
        "system_administrator",
        "security_administrator",
        "audit_administrator",
    ] {
        for path in [
            format!("{base}/segments/{}?reason=x", names[0]),
            format!("{base}/index.m3u8?reason=x"),
            format!("{base}/download.mp4?reason=x"),
        ] {
            let got = get(&server, role, &path).await;
            assert_refused(&got, "forbidden", &format!("{role} {path}"));
        }
        let audit = server
            .ok("GET", &format!("/api/v1/sessions/{session}/audit"), None)
            .await;
        let actor = format!("{}/token:tests", server.user(role).username);
        let refusals: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == actor && e["outcome"] == "denied: forbidden")
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(refusals, ["segment", "replay_start", "download"], "{role}");
    }

    // Each MP4 download is a viewing of its own, audited with its reason.
    for _ in 0..2 {
        let got = get(
            &server,
            "discipline_officer",
            &format!("{base}/download.mp4?reason=audit%20sample"),
        )
        .await;
        assert_eq!(got.0, 200);
        assert!(got.1.len() > 1000);
    }
    let got = get(
        &server,
        "discipline_officer",
        &format!("{base}/download.mp4"),
    )
    .await;
    assert_refused(&got, "reason_required", "download without a reason");
    let es = entries(&server, &session, "discipline_officer", "download").await;
    assert_eq!(
        allowed(&es)
            .iter()
            .filter(|e| e["reason"] == "audit sample")
            .count(),
        2,
        "{es:#?}"
    );
    assert_eq!(denied(&es, "reason_required").len(), 1, "{es:#?}");

    // The archive clerk: a derived MP4 of a confidential session is refused (403, audited once,
    // with the way out); the evidence package without it is made, and each download of it is
    // audited with the export's reason.
    let exports = format!("/api/v1/sessions/{session}/exports");
    let (status, body) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &exports,
            Some(json!({"reason": "archive transfer", "derived_mp4": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("confidential")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without derived_mp4"),
        "{body}"
    );
    let es = entries(&server, &session, "archive_clerk", "export").await;
    assert_eq!(denied(&es, "confidential").len(), 1, "{es:#?}");
    assert!(
        entries(&server, &session, "archive_clerk", "export_start")
            .await
            .is_empty(),
        "the refusal is audited once, by the rule, not again by the middleware"
    );
    let (status, job) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &exports,
            Some(json!({"reason": "archive transfer"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let done = wait_export(&server, job["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "ready", "{done}");
    let download = done["download"].as_str().unwrap();
    for _ in 0..2 {
        let got = get(&server, "archive_clerk", download).await;
        assert_eq!(got.0, 200);
        let tar = got.1;
        let mut archive = tar::Archive::new(tar.as_ref());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        assert!(
            paths.iter().any(|p| p.contains("/data/media/cam1/")),
            "{paths:?}"
        );
        assert!(!paths.iter().any(|p| p.contains("/derived/")), "{paths:?}");
    }
    let es = entries(&server, &session, "archive_clerk", "export").await;
    let made = allowed(&es);
    assert_eq!(made.len(), 1, "{es:#?}");
    assert_eq!(made[0]["reason"], "archive transfer");
    let es = entries(&server, &session, "archive_clerk", "export_download").await;
    let downloads = allowed(&es);
    assert_eq!(downloads.len(), 2, "{es:#?}");
    assert!(
        downloads
            .iter()
            .all(|e| e["reason"] == "archive transfer" && e["flagged"] == true),
        "{es:#?}"
    );
}

/// A live view: only after the audited `POST …/live` by the same caller, only for roles with
/// the permission, and only while the viewing stays open.
#[tokio::test(flavor = "multi_thread")]
async fn live_reads_need_an_open_live_view_of_the_same_caller() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with(IDLE).await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-LIVE").await;
    let view = server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    let names = segment_names(&view, "cam1");
    let live = format!("/api/v1/rooms/{room}/live/cam1");
    let playlist = format!("{live}/index.m3u8");
    let segment = |i: usize| format!("{live}/segments/{}", names[i]);

    // Without POST …/live: refused, audited, no bytes.
    for path in [playlist.clone(), segment(0)] {
        let got = get(&server, "witness_staff", &path).await;
        assert_refused(&got, "live_view_not_open", &path);
    }
    let refused = entries(&server, &session, "witness_staff", "live_playlist").await;
    assert_eq!(denied(&refused, "live_view_not_open").len(), 1);
    let refused = entries(&server, &session, "witness_staff", "live_segment").await;
    assert_eq!(denied(&refused, "live_view_not_open").len(), 1);

    // Opened: one entry; the playlist and its segments follow without more.
    let (status, opened) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/rooms/{room}/live"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["session_id"], session.as_str());
    for _ in 0..3 {
        let (status, body) = get(&server, "witness_staff", &playlist).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).starts_with("#EXTM3U"));
    }
    for i in 0..3 {
        let got = get(&server, "witness_staff", &segment(i)).await;
        assert_eq!(got.0, 200, "{}", segment(i));
    }
    // One opening covers every source of the room.
    let (status, _) = get(
        &server,
        "witness_staff",
        &format!("/api/v1/rooms/{room}/live/cam2/index.m3u8"),
    )
    .await;
    assert_eq!(status, 200);
    let es = entries(&server, &session, "witness_staff", "live_view").await;
    assert_eq!(allowed(&es).len(), 1, "{es:#?}");
    assert_eq!(
        allowed(&entries(&server, &session, "witness_staff", "live_playlist").await).len()
            + allowed(&entries(&server, &session, "witness_staff", "live_segment").await).len(),
        0
    );

    // Another caller is not covered by the staff's live view.
    let got = get(&server, "regulator", &playlist).await;
    assert_refused(
        &got,
        "live_view_not_open",
        "the regulator, without their own",
    );
    // A role without the permission: refused by the access check, audited (with the path).
    for role in [
        "archive_clerk",
        "system_administrator",
        "security_administrator",
        "audit_administrator",
    ] {
        let (status, body) = server
            .call_as(
                Some(role),
                "POST",
                &format!("/api/v1/rooms/{room}/live"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
        let got = get(&server, role, &segment(0)).await;
        assert_refused(&got, "forbidden", role);
    }
    let trail = crate::rbac::audit_trail(&server).await;
    for role in [
        "archive_clerk",
        "system_administrator",
        "security_administrator",
        "audit_administrator",
    ] {
        let actor = format!("{}/token:tests", server.user(role).username);
        let actions: Vec<&str> = trail
            .iter()
            .filter(|e| e["actor"] == actor && e["outcome"] == "denied: forbidden")
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["live_view", "live_segment"], "{role}");
    }

    // The discipline officer opens their own.
    let (status, _) = server
        .call_as(
            Some("discipline_officer"),
            "POST",
            &format!("/api/v1/rooms/{room}/live"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let got = get(&server, "discipline_officer", &segment(1)).await;
    assert_eq!(got.0, 200);
    assert_eq!(
        allowed(&entries(&server, &session, "discipline_officer", "live_view").await).len(),
        1
    );

    // After a pause longer than the window the live view is closed: open it again.
    tokio::time::sleep(PAST_IDLE).await;
    let got = get(&server, "witness_staff", &playlist).await;
    assert_refused(&got, "live_view_not_open", "after the pause");
    let (status, _) = server
        .call_as(
            Some("witness_staff"),
            "POST",
            &format!("/api/v1/rooms/{room}/live"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let got = get(&server, "witness_staff", &segment(2)).await;
    assert_eq!(got.0, 200);
    let es = entries(&server, &session, "witness_staff", "live_view").await;
    assert_eq!(allowed(&es).len(), 2, "{es:#?}");

    // A stopped session has no live view; its replay is a viewing of its own.
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let got = get(&server, "witness_staff", &playlist).await;
    assert_eq!(got.0, 409);
    // Not confidential: the archive clerk's derived MP4 is made.
    assert_eq!(stopped["state"], "stopped");
    let (status, job) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(json!({"reason": "transfer", "derived_mp4": true, "sources": ["cam1"]})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let done = wait_export(&server, job["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "ready", "{done}");
}
