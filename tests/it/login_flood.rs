//! The server under hostile load, as the attacker: a login flood from many addresses, parallel
//! guesses, probing which names exist, and slow clients holding connections. Each attack runs
//! while a room records, and the recording must go on without a gap; the trail of the flood
//! stays bounded, and the owner of the attacked account still gets in.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// A room recording from the simulator, to be checked for gaps once the attack is over.
struct Recording<'a> {
    server: &'a Server,
    room: String,
    session: String,
}

impl<'a> Recording<'a> {
    async fn start(server: &'a Server, sim: &Simulator) -> Recording<'a> {
        let room = server.demo_room(sim, "default").await;
        let session = server.start_recording(&room, "ZB-FLOOD").await;
        server
            .wait_session(&session, "2 segments", Duration::from_secs(30), |s| {
                segments(s, "cam1") >= 2
            })
            .await;
        Recording {
            server,
            room,
            session,
        }
    }

    /// Waits for two more segments after the attack, stops, and checks every source's chain
    /// tiles the session with no outage.
    async fn assert_unbroken(self) {
        let now = segments(
            &self
                .server
                .ok("GET", &format!("/api/v1/sessions/{}", self.session), None)
                .await,
            "cam1",
        );
        self.server
            .wait_session(
                &self.session,
                "2 more segments",
                Duration::from_secs(30),
                |s| segments(s, "cam1") >= now + 2,
            )
            .await;
        let stopped = self
            .server
            .ok("POST", &format!("/api/v1/rooms/{}/stop", self.room), None)
            .await;
        for source in ["cam1", "cam2", "mic1"] {
            let tiled = assert_tiled(&stopped, source);
            let gaps = outage_gaps(&tiled);
            assert!(gaps.is_empty(), "{source}: a gap under attack: {gaps:#?}");
        }
    }
}

/// An HTTP client whose connections come from `127.0.0.{host}` (all of 127/8 is loopback).
fn client_from(host: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
        .build()
        .unwrap()
}

/// A login attempt: (status, Retry-After, body).
async fn attempt(
    client: &reqwest::Client,
    server: &Server,
    username: &str,
    password: &str,
) -> (u16, Option<u64>, Value) {
    let r = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, r.json().await.unwrap())
}

/// Logs in, trying again while the server answers 503 (busy hashing); the final status.
async fn log_in_patiently(client: &reqwest::Client, server: &Server, u: &str, p: &str) -> u16 {
    let t = Instant::now();
    loop {
        let (status, retry, body) = attempt(client, server, u, p).await;
        if status != 503 || t.elapsed() > Duration::from_secs(20) {
            return status;
        }
        assert_eq!(body["error"]["code"], "login_busy", "{body}");
        assert_eq!(retry, Some(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn db(server: &Server) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&server.db).await.unwrap()
}

async fn login_rows(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'login'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// How many attempts the failed-login entries from `addresses` stand for (an entry names its
/// count when it summarises more than one).
async fn attempts_in_trail(pool: &sqlx::AnyPool, addresses: &[String]) -> (i64, i64) {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT address, outcome FROM audit_log WHERE action = 'login' AND outcome LIKE 'failed:%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut entries = 0;
    let mut attempts = 0;
    for (address, outcome) in rows {
        if !addresses.contains(&address) {
            continue;
        }
        entries += 1;
        attempts += outcome
            .strip_suffix(" attempts summarised in this entry")
            .and_then(|s| s.rsplit("; ").next())
            .map_or(1, |n| n.parse::<i64>().unwrap());
    }
    (entries, attempts)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_leaves_a_bounded_trail_and_the_owner_gets_in() {
    let sim = Simulator::start(&[]);
    // Delays from 30 s, so that a name the flood made wait still waits when it is over.
    let server = Server::start_with(
        "[identity]\nlogin_audit_window_seconds = 5.0\nlogin_first_delay_seconds = 30.0\n",
    )
    .await;
    let admin = server.user("security_administrator");
    let (name, password) = (admin.username.clone(), admin.one_time_password.clone());
    // The owner has logged in from 127.0.0.1 before: that address is theirs.
    let owner = client_from(1);
    assert_eq!(
        log_in_patiently(&owner, &server, &name, &password).await,
        200
    );
    let pool = db(&server).await;
    let rows_before = login_rows(&pool).await;
    let recording = Recording::start(&server, &sim).await;

    // 300 wrong attempts from 30 addresses, 10 each, all at once; a third at a name no one
    // has. Meanwhile the owner logs in from their address.
    const HOSTS: u8 = 30;
    const EACH: usize = 10;
    let started = Instant::now();
    let attackers: Vec<_> = (0..HOSTS)
        .map(|h| {
            let (url, name) = (server.url("/api/v1/auth/login"), name.clone());
            let client = client_from(100 + h);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..EACH {
                    let target = if i % 3 == 0 { "ghost" } else { name.as_str() };
                    let r = client
                        .post(&url)
                        .json(&json!({"username": target, "password": format!("Guess-{h}-{i}")}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap();
                    answers.push((status, body["error"]["code"].as_str().unwrap().to_string()));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = log_in_patiently(&owner, &server, &name, &password).await;
    let mut answers = Vec::new();
    for a in attackers {
        answers.extend(a.await.unwrap());
    }
    let flood = started.elapsed();
    println!("flood of {} attempts: {flood:?}", answers.len());
    assert_eq!(
        during, 200,
        "the owner, from their address, during the flood"
    );
    assert_eq!(answers.len(), 300);
    for (status, code) in &answers {
        assert!(
            (*status, code.as_str()) == (401, "login_failed")
                || (*status, code.as_str()) == (503, "login_busy"),
            "{status} {code}"
        );
    }
    assert!(flood < Duration::from_secs(60), "{flood:?}");
    // And after it.
    assert_eq!(
        log_in_patiently(&owner, &server, &name, &password).await,
        200
    );

    // From an address it never used, the attacked name waits, as does the unknown one: the
    // same answer for both, so waiting tells nothing of which names exist.
    let stranger = client_from(250);
    let (s1, r1, b1) = attempt(&stranger, &server, &name, &password).await;
    let (s2, r2, b2) = attempt(&stranger, &server, "ghost", &password).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(s1, 401);
    assert_eq!(b1["error"]["code"], "login_failed");
    assert!(r1.is_some() && r2.is_some(), "{r1:?} {r2:?}");

    // The trail: at most one entry per name and address (checked) and per address (refused
    // unchecked) in each 5 s window, and together they count every attempt.
    let flood_addresses: Vec<String> = (0..HOSTS).map(|h| format!("127.0.0.{}", 100 + h)).collect();
    let grown = login_rows(&pool).await - rows_before;
    let windows = 1 + (flood.as_secs_f64() / 5.0).ceil() as i64;
    let bound = 3 * HOSTS as i64 * windows + 10;
    println!("login entries written during the flood: {grown} (bound {bound})");
    assert!(
        grown <= bound,
        "{grown} entries for 300 attempts, bound {bound}"
    );
    assert!(grown < 150, "{grown} entries for 300 attempts");
    // Once the window has passed, what was pending is written too, summarised.
    let t = Instant::now();
    loop {
        let (entries, attempts) = attempts_in_trail(&pool, &flood_addresses).await;
        if attempts == 300 {
            println!("300 attempts in {entries} entries");
            assert!(entries as f64 <= bound as f64 * 1.5, "{entries}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the trail accounts for {attempts} of 300 attempts"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report = server.ok("GET", "/api/v1/audit/verify", None).await;
    assert_report_intact(&report, "session");
    recording.assert_unbroken().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_all_count_and_unknown_names_read_alike() {
    let sim = Simulator::start(&[]);
    // No delays (free failures aplenty): every guess is checked, so every one must count.
    let server = Server::start_with(
        "[identity]\nlogin_free_failures = 1000\nlogin_address_free_failures = 100000\nlogin_concurrency = 4\n",
    )
    .await;
    let staff = server.user("witness_staff").username.clone();
    let pool = db(&server).await;
    let recording = Recording::start(&server, &sim).await;

    for target in [staff.as_str(), "ghost"] {
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (http, url, target) = (
                    server.http.clone(),
                    server.url("/api/v1/auth/login"),
                    target.to_string(),
                );
                tokio::spawn(async move {
                    http.post(url)
                        .json(&json!({"username": target, "password": format!("Wrong-{i}")}))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut checked = 0;
        for t in tasks {
            match t.await.unwrap() {
                401 => checked += 1,
                503 => {}
                other => panic!("{other}"),
            }
        }
        assert!(checked >= 4, "{target}: {checked} of 40 checked");
        for key in [
            format!("account:{target}"),
            format!("pair:127.0.0.1|{target}"),
        ] {
            let failures: i64 =
                sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = $1")
                    .bind(&key)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(failures, checked, "{key}: every checked guess counts");
        }
    }

    // An unknown name and a wrong password: the same status, body and headers, and the same
    // cost (an unknown name is checked against a dummy hash).
    let timed = |user: String| {
        let server = &server;
        async move {
            let mut took = Vec::new();
            let mut answer = None;
            for _ in 0..5 {
                let t = Instant::now();
                let r = attempt(&server.http, server, &user, "Wrong-password-1").await;
                took.push(t.elapsed());
                assert_eq!(r.0, 401, "{}", r.2);
                answer = Some((r.1, r.2));
            }
            took.sort();
            (took[2], answer.unwrap())
        }
    };
    let (unknown_took, unknown) = timed("nobody-here".into()).await;
    let (wrong_took, wrong) = timed(staff.clone()).await;
    assert_eq!(unknown, wrong);
    assert_eq!(wrong.1["error"]["code"], "login_failed");
    println!("median answer: unknown name {unknown_took:?}, wrong password {wrong_took:?}");
    assert!(
        unknown_took * 3 >= wrong_took,
        "an unknown name answers much faster: {unknown_took:?} vs {wrong_took:?}"
    );
    recording.assert_unbroken().await;
}

/// GET /api/v1/rooms/status on a new connection each time: the harness client's pooled
/// connection may be closed by the server's header timeout (2 s here) just as it is reused.
async fn status(server: &Server) -> u16 {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let path = "/api/v1/rooms/status";
    let token = &server.user(default_role("GET", path)).token;
    fresh
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Opens a connection and sends half a request head, then nothing.
async fn stall(port: u16) -> tokio::net::TcpStream {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(b"GET /api/v1/rooms/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    c
}

/// Waits until the server closes the connection (end of stream or reset); how long it took.
async fn closed_within(mut c: tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), c.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {} // a 408 or 400 before closing is fine
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_dropped_and_the_server_keeps_answering() {
    let sim = Simulator::start(&[]);
    let mut server = Server::start().await;
    // The harness writes [http]; the limits go into it, then the server starts again.
    let config = std::fs::read_to_string(&server.config).unwrap().replacen(
        "[http]\n",
        "[http]\nheader_timeout_seconds = 2.0\nrequest_timeout_seconds = 2.0\nmax_connections = 300\n",
        1,
    );
    std::fs::write(&server.config, config).unwrap();
    server.kill();
    server.restart().await;
    let recording = Recording::start(&server, &sim).await;

    // 200 connections send half a request head and stall.
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(stall(server.port).await);
    }
    // Meanwhile the server answers others, promptly.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(status(&server).await, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each is dropped after the header timeout (2 s), not before and not much after.
    let waits: Vec<_> = slow
        .into_iter()
        .map(|c| tokio::spawn(closed_within(c, Duration::from_secs(10))))
        .collect();
    let mut latest = Duration::ZERO;
    for w in waits {
        let took = w
            .await
            .unwrap()
            .expect("a stalled connection still open after 10 s");
        latest = latest.max(took);
    }
    let all_closed = opened.elapsed();
    println!("200 stalled connections all closed {all_closed:?} after opening");
    assert!(all_closed >= Duration::from_millis(1900), "{all_closed:?}");
    assert!(all_closed < Duration::from_secs(8), "{all_closed:?}");
    assert_eq!(status(&server).await, 200);

    // Beyond max_connections (300) a new connection is closed at once.
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(stall(server.port).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = stall(server.port).await;
    let took = closed_within(extra, Duration::from_secs(1)).await;
    assert!(took.is_some(), "the 301st connection stays open");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&server).await, 200);

    // A body that trickles in is refused at the request deadline.
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let t = Instant::now();
    c.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );

    recording.assert_unbroken().await;
}
