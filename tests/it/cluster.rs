//! Two `witness serve` nodes on one database and one object store: a room is recorded by one
//! node at a time (its lease); when that node dies, the other takes the room over within
//! seconds, the outage is one gap in each chain, nothing is recorded twice, and any node
//! answers for any session, stop included.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_node_takes_over_a_room_whose_node_died() {
    let sim = Simulator::start(&[]);
    let mut a = Server::start().await;
    let mut b = a.second_node(3.0).await;
    let room = a.demo_room(&sim, "default").await;
    let asked = Instant::now();
    let session = a.start_recording(&room, "ZB-CLUSTER").await;
    a.wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
        segments(s, "cam1") >= 3
    })
    .await;
    // Any node answers for any session.
    let via_b = b
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(via_b["state"], "recording");
    // The room is node A's: node B cannot start it.
    let (status, body) = b
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(serde_json::json!({"project_code": "X", "reason": "test: unbooked", "session_code": "Y", "kind": "other"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Node A dies. Node B takes the room over within 10 s; the chain continues with one gap.
    let before = segments(&via_b, "cam1");
    let killed_at = unix_now();
    a.kill();
    let killed = Instant::now();
    let taken = b
        .wait_session(
            &session,
            "takeover and new segments",
            Duration::from_secs(30),
            |s| {
                gaps(s, "cam1")
                    .iter()
                    .any(|g| g.contains("taken over by node"))
                    && segments(s, "cam1") >= before + 3
            },
        )
        .await;
    let took = killed.elapsed();
    eprintln!("takeover observed after {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");

    // Stopped through node B (the recording node now), verified intact, nothing twice.
    let stop_asked = std::time::Instant::now();
    let stopped = b
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_lasted(&stopped, stop_asked - asked);
    for source in ["cam1", "cam2", "mic1"] {
        // One chain, tiled across the takeover: the gap runs from the last segment the dead
        // node stored (its open segment dies with it) to node B's first one.
        let tiled = assert_tiled(&stopped, source);
        let outages = outage_gaps(&tiled);
        assert_eq!(outages.len(), 1, "{source}: {tiled:#?}");
        let gap = outages[0];
        assert!(
            gap.start >= killed_at - 2.5 && gap.start <= killed_at + 0.5,
            "{source}: gap from {:.3}, node killed at {killed_at:.3}",
            gap.start
        );
        assert!(
            gap.end <= killed_at + took.as_secs_f64() + 1.0,
            "{source}: gap until {:.3}, takeover seen {took:?} after the kill at {killed_at:.3}",
            gap.end
        );
        let g = gaps(&stopped, source);
        assert_eq!(
            g.iter()
                .filter(|r| r.contains("taken over by node"))
                .count(),
            1,
            "{source}: one takeover gap: {g:?}"
        );
        let segs = recording(&stopped, source)["segments"].as_array().unwrap();
        let keys: BTreeSet<&str> = segs
            .iter()
            .map(|s| s["object_key"].as_str().unwrap())
            .collect();
        assert_eq!(keys.len(), segs.len(), "{source}: an object key twice");
        // Nothing recorded twice: segments follow one another in wall-clock time (a takeover
        // never replays what the dead node had stored). Video bytes are never identical twice;
        // a steady test tone can be, so audio is checked by time only.
        let starts: Vec<&str> = segs.iter().map(|s| s["start"].as_str().unwrap()).collect();
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "{source}: {starts:?}"
        );
        if source != "mic1" {
            let hashes: BTreeSet<&str> =
                segs.iter().map(|s| s["sha256"].as_str().unwrap()).collect();
            assert_eq!(
                hashes.len(),
                segs.len(),
                "{source}: a segment recorded twice"
            );
        }
    }
    let report = b
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    drop(taken);

    // A stop asked of the node that is not recording reaches the one that is.
    a.restart().await;
    let second = b.start_recording(&room, "ZB-CLUSTER-2").await;
    b.wait_session(&second, "2 segments", Duration::from_secs(30), |s| {
        segments(s, "cam1") >= 2
    })
    .await;
    let stopped = a
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let report = a
        .ok("GET", &format!("/api/v1/sessions/{second}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    assert!(
        gaps(&stopped, "cam1")
            .iter()
            .all(|g| !g.contains("taken over")),
        "no takeover when nobody died: {stopped}"
    );

    // A node that loses its lease while alive (a network partition, here a lease taken by hand)
    // stops writing at once; when the lease runs out, a node takes over with a gap, and the
    // chain stays one chain.
    let third = b.start_recording(&room, "ZB-CLUSTER-3").await;
    b.wait_session(&third, "2 segments", Duration::from_secs(30), |s| {
        segments(s, "cam1") >= 2
    })
    .await;
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.db)
        .await
        .unwrap();
    sqlx::query("UPDATE room_leases SET node_id = 'intruder', expires_at = $1 WHERE room_id = $2")
        .bind(witness::time::now_us() + 4_000_000)
        .bind(&room)
        .execute(&mut db)
        .await
        .unwrap();
    b.wait_session(
        &third,
        "takeover after the stolen lease ran out",
        Duration::from_secs(30),
        |s| {
            gaps(s, "cam1")
                .iter()
                .any(|g| g.contains("taken over by node"))
                && segments(s, "cam1") >= 4
        },
    )
    .await;
    let stopped = a
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let report = a
        .ok("GET", &format!("/api/v1/sessions/{third}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    for source in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, source);
        assert_eq!(outage_gaps(&tiled).len(), 1, "{source}: {tiled:#?}");
    }
    assert!(
        b.log().contains("another node holds this room's lease"),
        "the fenced node said so"
    );
    b.kill();
}

/// A node frozen whole past its lease: the other takes the room over; the frozen one, thawed,
/// finds the room taken, stops writing and stores its spool as late evidence, which the lease
/// holder chains as declared overlaps. Every source still tiles the session (overlaps counted
/// once), nothing stays in either spool, and both verifiers say INTACT.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_node_loses_nothing() {
    let sim = Simulator::start(&[]);
    let a = Server::start().await;
    let b = a.second_node(3.0).await;
    let room = a.demo_room(&sim, "default").await;
    let session = a.start_recording(&room, "ZB-FROZEN").await;
    a.wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
        segments(s, "cam1") >= 3
    })
    .await;

    // Node A freezes whole (recorders, writers, lease renewal) past its lease.
    a.signal("STOP");
    let frozen_at = unix_now();
    let at_freeze = a.spooled();
    b.wait_session(
        &session,
        "takeover by node B",
        Duration::from_secs(30),
        |s| {
            ["cam1", "cam2", "mic1"].iter().all(|src| {
                gaps(s, src)
                    .iter()
                    .any(|g| g.contains("taken over by node"))
            }) && segments(s, "cam1") >= 3
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.signal("CONT");
    eprintln!(
        "A frozen {:.1} s with {} files spooled: {at_freeze:#?}",
        unix_now() - frozen_at,
        at_freeze.len()
    );

    // A finds the room taken, stops writing, and stores what its spool holds as late evidence;
    // B, the lease holder, chains it. Nothing is left in A's spool.
    let started = Instant::now();
    while !a.spooled().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node A's spool still holds {:#?}\n{}",
            a.spooled(),
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let chained = b
        .wait_session(
            &session,
            "A's late segments chained by B",
            Duration::from_secs(30),
            |s| {
                let late: Vec<Value> = ["cam1", "cam2", "mic1"]
                    .iter()
                    .flat_map(|src| {
                        recording(s, src)["late"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                !late.is_empty() && late.iter().all(|x| x["chained_seq"].is_i64())
            },
        )
        .await;
    let late_count: usize = ["cam1", "cam2", "mic1"]
        .iter()
        .map(|src| {
            recording(&chained, src)["late"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    eprintln!(
        "late: {:#}",
        serde_json::json!(["cam1", "cam2", "mic1"].map(|src| &recording(&chained, src)["late"]))
    );
    // Every file A had spooled at the freeze is accounted for (the open ones grew after).
    assert!(
        late_count >= at_freeze.len(),
        "{late_count} late segments for {} spooled files",
        at_freeze.len()
    );
    assert!(
        a.log().contains("late segments stored and listed"),
        "{}",
        a.log()
    );

    let stopped = b
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    for source in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, source);
        for l in recording(&stopped, source)["late"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let seq = l["chained_seq"].as_i64().expect("chained");
            let t = tiled.iter().find(|t| t.seq == seq).expect("in the chain");
            assert!(
                !t.gap && t.text.starts_with("late: spooled by node"),
                "{t:?}"
            );
        }
    }
    assert!(b.spooled().is_empty(), "{:#?}", b.spooled());
    assert!(a.spooled().is_empty(), "{:#?}", a.spooled());
    let report = b
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_report_intact(&report, "session");
    let (code, out) = b.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
}
