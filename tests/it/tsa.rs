//! RFC 3161 trusted timestamps (`[signing] tsa_url`) against a real TSA: OpenSSL's `openssl ts
//! -reply` behind a tiny HTTP server, with a throw-away CA (EC P-256) and TSA certificate (RSA,
//! critical extendedKeyUsage timeStamping). Session manifests, audit checkpoints and chain
//! checkpoints get tokens; packages carry the manifest's and the chain checkpoints'; `openssl ts
//! -verify` (the third party) and `witness verify` accept them; a TSA that is down delays the token (alarm, retry), never the stop; tampered,
//! swapped and foreign tokens are caught.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use crate::harness::*;

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

/// A throw-away CA and TSA made with the openssl CLI, answering `application/timestamp-query`
/// POSTs with `openssl ts -reply`; `up` false drops every connection unanswered (a TSA down).
pub struct TestTsa {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub up: Arc<AtomicBool>,
}

impl TestTsa {
    pub fn start(name: &str) -> TestTsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        openssl(d, &[&["genpkey"][..], &ec, &["-out", "ca.key"]].concat());
        let rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        openssl(d, &[&["genpkey"][..], &rsa, &["-out", "tsa.key"]].concat());
        let ca_subject = format!("/CN={name} CA");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                &ca_subject,
                "-days",
                "2",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        let tsa_subject = format!("/CN={name} TSA");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "tsa.key",
                "-subj",
                &tsa_subject,
                "-out",
                "tsa.csr",
            ],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "tsa.pem",
            ],
        );
        std::fs::write(
            d.join("tsa.cnf"),
            "[tsa]\ndefault_tsa = tsa1\n[tsa1]\ndir = .\nserial = ./serial\nsigner_cert = ./tsa.pem\nsigner_key = ./tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n",
        )
        .unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/tsa", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (folder, answering) = (d.to_path_buf(), up.clone());
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                if answering.load(Ordering::SeqCst) {
                    let _ = answer(&folder, stream, n);
                }
            }
        });
        TestTsa { dir, url, up }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The `[signing]` section of a server that uses this TSA.
    pub fn config(&self) -> String {
        format!(
            "[signing]\ntsa_url = {:?}\ntsa_ca_file = {:?}\ntsa_retry_seconds = 0.5\ntsa_alarm_seconds = 2.0\n",
            self.url,
            self.ca()
        )
    }

    /// A reply of this TSA for other data, made directly with openssl.
    pub fn reply_for(&self, data: &[u8]) -> Vec<u8> {
        let d = self.dir.path();
        std::fs::write(d.join("other.bin"), data).unwrap();
        openssl(
            d,
            &[
                "ts",
                "-query",
                "-data",
                "other.bin",
                "-sha256",
                "-cert",
                "-out",
                "other.tsq",
            ],
        );
        openssl(
            d,
            &[
                "ts",
                "-reply",
                "-config",
                "tsa.cnf",
                "-queryfile",
                "other.tsq",
                "-out",
                "other.tsr",
            ],
        );
        std::fs::read(d.join("other.tsr")).unwrap()
    }
}

/// One HTTP/1.1 request: the body piped through `openssl ts -reply`, the reply answered.
fn answer(dir: &Path, mut stream: std::net::TcpStream, n: usize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (query, reply) = (format!("q{n}.tsq"), format!("r{n}.tsr"));
    std::fs::write(dir.join(&query), &body)?;
    let ok = Command::new("openssl")
        .args([
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            &query,
            "-out",
            &reply,
        ])
        .current_dir(dir)
        .output()?
        .status
        .success();
    let (status, data) = match ok {
        true => ("200 OK", std::fs::read(dir.join(&reply))?),
        false => ("500 Internal Server Error", Vec::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )?;
    stream.write_all(&data)?;
    stream.flush()
}

fn run(cmd: &mut Command) -> (i32, String) {
    let o = cmd.env("RUST_LOG", "warn").output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `witness verify PKG EXTRA…` with no default trust file or TSA CA in reach.
fn verify(pkg: &Path, extra: &[&str]) -> (i32, String) {
    run(Command::new(BIN)
        .arg("verify")
        .arg(pkg)
        .args(extra)
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME"))
}

/// OpenSSL, as the third party, on a token over `data`.
fn openssl_verifies(work: &Path, data: &[u8], token: &[u8], ca: &Path) -> String {
    std::fs::write(work.join("data.bin"), data).unwrap();
    std::fs::write(work.join("token.tsr"), token).unwrap();
    let (_, out) = run(Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-data",
            "data.bin",
            "-in",
            "token.tsr",
            "-CAfile",
        ])
        .arg(ca)
        .current_dir(work));
    out
}

/// Records a short session in a new room, stops it, and returns (room, session, seconds the
/// stop took).
async fn record_and_stop(server: &Server, sim: &Simulator, project: &str) -> (String, String, f64) {
    let room = server.demo_room(sim, "default").await;
    let session = server.start_recording(&room, project).await;
    server
        .wait_session(&session, "segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    let t = Instant::now();
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let took = t.elapsed().as_secs_f64();
    let s = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    assert_eq!(s["state"], "stopped", "{s}");
    (room, session, took)
}

fn token_path(server: &Server, project: &str, session: &str) -> PathBuf {
    server
        .objects()
        .join(project)
        .join(session)
        .join("manifest.json.tsr")
}

async fn wait_until(
    what: &str,
    server: &Server,
    timeout: Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    let t = Instant::now();
    while !done().await {
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn export(server: &Server, session: &str, out: &Path) {
    server.cli(&[
        "export",
        "--session",
        session,
        "--reason",
        "tsa test",
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn unpack(pkg: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let (code, out) = run(Command::new("tar").arg("-xf").arg(pkg).arg("-C").arg(into));
    assert_eq!(code, 0, "{out}");
    std::fs::read_dir(into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("bagit.txt").exists())
        .unwrap()
}

async fn ed25519_key(server: &Server) -> String {
    let keys = server.ok("GET", "/api/v1/keys", None).await;
    keys["keys"][0]["public_key"].as_str().unwrap().to_string()
}

async fn db(server: &Server) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&server.db).await.unwrap()
}

async fn audited(server: &Server, action: &str) -> i64 {
    let mut db = db(server).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn tsa_timestamps_manifests_and_checkpoints_and_openssl_agrees() {
    let tsa = TestTsa::start("Witness Test");
    let sim = Simulator::start(&[]);
    let server = Server::start_with(&tsa.config()).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let project = "ZB-TSA-1";
    let (_, session, _) = record_and_stop(&server, &sim, project).await;

    // The token arrives beside the manifest.
    let token = token_path(&server, project, &session);
    wait_until(
        "the manifest's token",
        &server,
        Duration::from_secs(30),
        async || token.exists(),
    )
    .await;

    // Online verification names the TSA time.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
    assert_eq!(report["timestamp"]["status"], "verified", "{report}");
    assert_eq!(
        report["timestamp"]["tsa"], "CN=Witness Test TSA",
        "{report}"
    );

    // Offline: INTACT with the TSA time, given the TSA's CA.
    let pkg = w.join("tsa.tar");
    export(&server, &session, &pkg);
    let ed = ed25519_key(&server).await;
    let ca = tsa.ca();
    let (code, out) = verify(
        &pkg,
        &["--public-key", &ed, "--tsa-ca", ca.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    assert!(
        out.contains("timestamped by TSA CN=Witness Test TSA at "),
        "{out}"
    );
    // Without a CA: still INTACT, saying the TSA was not checked against one.
    let (code, out) = verify(&pkg, &["--public-key", &ed]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT checked against a CA"), "{out}");
    let (_, json) = verify(&pkg, &["--json", "--public-key", &ed]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["timestamp"]["status"], "ca_not_checked", "{json}");

    // The third party: OpenSSL checks the packaged token against the packaged manifest.
    let bag = unpack(&pkg, &w.join("bag"));
    let chain = bag.join("data/chain");
    let (code, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-data"])
        .arg(chain.join("manifest.json"))
        .arg("-in")
        .arg(chain.join("manifest.json.tsr"))
        .arg("-CAfile")
        .arg(&ca));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Verification: OK"), "{out}");
    let manifest_bytes = std::fs::read(chain.join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["timestamp_requested"], true, "{manifest}");

    // Audit checkpoints get tokens too, over their signed text, which OpenSSL accepts.
    let mut conn = db(&server).await;
    let mut stamped: Vec<(i64, String, i64, String)> = Vec::new();
    let t = Instant::now();
    while stamped.is_empty() {
        stamped = sqlx::query_as(
            "SELECT c.seq, c.entry_hash, c.at, t.token FROM audit_checkpoints c JOIN timestamp_tokens t ON t.kind = 'audit_checkpoint' AND t.subject = CAST(c.seq AS TEXT) ORDER BY c.seq",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(30), "no checkpoint token");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (seq, hash, at, token) in stamped.iter().take(3) {
        let message =
            format!("witness-audit-checkpoint/1\nseq: {seq}\nhash: {hash}\nat_us: {at}\n");
        let token = hex::decode(token).unwrap();
        let out = openssl_verifies(w, message.as_bytes(), &token, &ca);
        assert!(out.contains("Verification: OK"), "checkpoint {seq}: {out}");
        let out = openssl_verifies(w, b"another text", &token, &ca);
        assert!(!out.contains("Verification: OK"), "checkpoint {seq}: {out}");
    }
    // `witness verify --audit` checks them.
    let out = server.cli(&["verify", "--audit"]);
    assert!(
        out.contains("audit trail intact") && !out.contains(" 0 timestamped"),
        "{out}"
    );
    // Rows of tokens are only inserted.
    let refused = sqlx::query("DELETE FROM timestamp_tokens")
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "timestamp_tokens rows deleted");
    conn.close().await.unwrap();

    // A token for other data swapped in: TAMPERED, naming the token.
    let swapped = w.join("swapped");
    copy_dir(&bag, &swapped);
    std::fs::write(
        swapped.join("data/chain/manifest.json.tsr"),
        tsa.reply_for(b"some other manifest"),
    )
    .unwrap();
    let (code, out) = verify(
        &swapped,
        &["--public-key", &ed, "--tsa-ca", ca.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED"), "{out}");
    assert!(
        out.contains("manifest.json.tsr: timestamp token refused: its message imprint"),
        "{out}"
    );
    // Bytes of the token flipped (its time): TAMPERED.
    let flipped = w.join("flipped");
    copy_dir(&bag, &flipped);
    let tsr = flipped.join("data/chain/manifest.json.tsr");
    let mut bytes = std::fs::read(&tsr).unwrap();
    let at = bytes
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("genTime")
        + 5;
    bytes[at] ^= 0x01;
    std::fs::write(&tsr, bytes).unwrap();
    let (code, out) = verify(
        &flipped,
        &["--public-key", &ed, "--tsa-ca", ca.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("manifest.json.tsr: timestamp token refused"),
        "{out}"
    );
    // A TSA that is not in the CA bundle given: refused, and said so (UNTRUSTED KEY, exit 4).
    let stranger = TestTsa::start("Stranger");
    let (code, out) = verify(
        &pkg,
        &[
            "--public-key",
            &ed,
            "--tsa-ca",
            stranger.ca().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("UNTRUSTED KEY"), "{out}");
    assert!(
        out.contains("TSA CN=Witness Test TSA") && out.contains("does not chain to a CA in"),
        "{out}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let (code, out) = run(Command::new("cp").arg("-r").arg(from).arg(to));
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tsa_down_delays_the_token_never_the_stop() {
    let tsa = TestTsa::start("Witness Test");
    tsa.up.store(false, Ordering::SeqCst);
    let sim = Simulator::start(&[]);
    let server = Server::start_with(&tsa.config()).await;
    let project = "ZB-TSA-2";
    let (room, session, took) = record_and_stop(&server, &sim, project).await;
    // Sealed without waiting for the TSA (the stop waits for the last segments only).
    assert!(took < 15.0, "the stop took {took:.1} s");

    // The alarm: /metrics, room status, one audit entry.
    wait_until("the alarm", &server, Duration::from_secs(30), async || {
        server
            .text("/metrics")
            .await
            .contains("witness_tsa_alarm 1")
    })
    .await;
    let rooms = server.ok("GET", "/api/v1/rooms/status", None).await;
    let status = rooms
        .as_array()
        .or(rooms["rooms"].as_array())
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .unwrap()
        .clone();
    assert!(
        status["timestamp_alarm"]
            .as_str()
            .is_some_and(|a| a.contains("timestamp tokens missing")),
        "{status}"
    );
    // A package exported meanwhile has no token: INTACT, saying it is not timestamped.
    let work = tempfile::tempdir().unwrap();
    let pkg = work.path().join("early.tar");
    export(&server, &session, &pkg);
    let ed = ed25519_key(&server).await;
    let ca = tsa.ca();
    let (code, out) = verify(
        &pkg,
        &["--public-key", &ed, "--tsa-ca", ca.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("not timestamped"), "{out}");
    // Retries do not repeat the alarm.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(audited(&server, "tsa_unavailable").await, 1);

    // The TSA comes back: the token arrives, the alarm clears (audited once).
    tsa.up.store(true, Ordering::SeqCst);
    let token = token_path(&server, project, &session);
    wait_until(
        "the token after the outage",
        &server,
        Duration::from_secs(30),
        async || token.exists(),
    )
    .await;
    wait_until(
        "the alarm to clear",
        &server,
        Duration::from_secs(30),
        async || {
            server
                .text("/metrics")
                .await
                .contains("witness_tsa_alarm 0")
        },
    )
    .await;
    assert_eq!(audited(&server, "tsa_unavailable").await, 1);
    assert_eq!(audited(&server, "tsa_recovered").await, 1);
    let pkg = work.path().join("late.tar");
    export(&server, &session, &pkg);
    let (code, out) = verify(
        &pkg,
        &["--public-key", &ed, "--tsa-ca", ca.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("timestamped by TSA CN=Witness Test TSA"),
        "{out}"
    );
}

/// The chain checkpoints stored for a recording (not their tokens), in seq order.
fn checkpoint_files(server: &Server, project: &str, session: &str, source: &str) -> Vec<PathBuf> {
    let dir = server.objects().join(project).join(session).join(source);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".checkpoint.json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn tsr(checkpoint: &Path) -> PathBuf {
    PathBuf::from(format!("{}.tsr", checkpoint.display()))
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tsa_timestamps_chain_checkpoints_beside_them() {
    let tsa = TestTsa::start("Witness Test");
    // Down at first: checkpoints are signed and stored on time all the same.
    tsa.up.store(false, Ordering::SeqCst);
    let sim = Simulator::start(&[]);
    // `[recording]` keys first (the harness appends them to that table), then `[signing]`.
    let server = Server::start_with(&format!("checkpoint_seconds = 1.0\n{}", tsa.config())).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let project = "ZB-TSA-3";
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, project).await;
    wait_until(
        "three chain checkpoints",
        &server,
        Duration::from_secs(40),
        async || checkpoint_files(&server, project, &session, "cam1").len() >= 3,
    )
    .await;
    let files = checkpoint_files(&server, project, &session, "cam1");
    assert!(files.iter().all(|f| !tsr(f).exists()), "{files:?}");
    wait_until("the alarm", &server, Duration::from_secs(30), async || {
        server
            .text("/metrics")
            .await
            .contains("witness_tsa_alarm 1")
    })
    .await;
    let mut conn = db(&server).await;
    let (listed, stamped): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM chain_checkpoints WHERE session_id = $1), (SELECT COUNT(*) FROM timestamp_tokens WHERE kind = 'chain_checkpoint')",
    )
    .bind(&session)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert!(
        listed >= 3 && stamped == 0,
        "{listed} listed, {stamped} stamped"
    );
    // The gauge is set by the background job's next pass, not by the checkpoint's writer.
    let pending = async || -> u64 {
        server
            .text("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix("witness_tsa_pending "))
            .unwrap()
            .parse()
            .unwrap()
    };
    wait_until(
        "3 tokens pending",
        &server,
        Duration::from_secs(30),
        async || pending().await >= 3,
    )
    .await;

    // The TSA comes back; the session stops.
    tsa.up.store(true, Ordering::SeqCst);
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;

    // Every checkpoint gets its token beside it, and nothing is left waiting.
    wait_until(
        "every chain checkpoint's token",
        &server,
        Duration::from_secs(30),
        async || {
            let files = checkpoint_files(&server, project, &session, "cam1");
            files.iter().all(|f| tsr(f).exists())
                && server
                    .text("/metrics")
                    .await
                    .contains("witness_tsa_pending 0\n")
        },
    )
    .await;
    let files = checkpoint_files(&server, project, &session, "cam1");
    assert!(files.len() >= 3, "{files:?}");

    // Listed in SQL (insert-only), each with its token row, subject the object key.
    let mut conn = db(&server).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.object_key, t.token FROM chain_checkpoints c JOIN timestamp_tokens t ON t.kind = 'chain_checkpoint' AND t.subject = c.object_key WHERE c.session_id = $1 ORDER BY c.object_key",
    )
    .bind(&session)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let cam1: Vec<&(String, String)> = rows.iter().filter(|r| r.0.contains("/cam1/")).collect();
    assert_eq!(cam1.len(), files.len(), "{rows:?}");
    for (key, token) in &cam1 {
        let stored = std::fs::read(tsr(&server.objects().join(key))).unwrap();
        assert_eq!(hex::decode(token).unwrap(), stored, "{key}");
    }
    for sql in [
        "DELETE FROM chain_checkpoints",
        "UPDATE chain_checkpoints SET sha256 = 'x'",
    ] {
        assert!(
            sqlx::query(sql).execute(&mut conn).await.is_err(),
            "{sql} accepted"
        );
    }
    conn.close().await.unwrap();

    // The third party: OpenSSL checks a token against the checkpoint's exact stored bytes.
    let ca = tsa.ca();
    let body = std::fs::read(&files[1]).unwrap();
    let token = std::fs::read(tsr(&files[1])).unwrap();
    let out = openssl_verifies(w, &body, &token, &ca);
    assert!(out.contains("Verification: OK"), "{out}");
    let other = std::fs::read(&files[2]).unwrap();
    let out = openssl_verifies(w, &other, &token, &ca);
    assert!(!out.contains("Verification: OK"), "{out}");

    // Online: INTACT, every checkpoint timestamped.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
    let rec = report["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "cam1")
        .unwrap();
    assert_eq!(rec["checkpoints"], files.len(), "{report}");
    assert_eq!(rec["timestamped_checkpoints"], files.len(), "{report}");
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("chain checkpoints timestamped"),
        "{report}"
    );

    // Offline: the package carries the tokens; INTACT with the count and the TSA time range.
    let pkg = w.join("cp.tar");
    export(&server, &session, &pkg);
    let ed = ed25519_key(&server).await;
    let ca_arg = ca.to_str().unwrap();
    let (code, out) = verify(&pkg, &["--public-key", &ed, "--tsa-ca", ca_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    let (_, json) = verify(&pkg, &["--json", "--public-key", &ed, "--tsa-ca", ca_arg]);
    let json: Value = serde_json::from_str(&json).unwrap();
    let stamps = &json["checkpoint_timestamps"];
    assert_eq!(stamps["status"], "verified", "{json}");
    assert_eq!(stamps["timestamped"], stamps["checkpoints"], "{json}");
    assert!(
        stamps["timestamped"].as_u64().unwrap() >= files.len() as u64,
        "{json}"
    );
    assert_eq!(stamps["tsa"][0], "CN=Witness Test TSA", "{json}");
    assert!(
        stamps["from"].is_string() && stamps["to"].is_string(),
        "{json}"
    );
    let n = stamps["timestamped"].as_u64().unwrap();
    assert!(
        out.contains(&format!(
            "{n} of {n} chain checkpoints timestamped by TSA CN=Witness Test TSA from "
        )),
        "{out}"
    );
    // Without a CA: a warning, the verdict unchanged.
    let (code, json) = verify(&pkg, &["--json", "--public-key", &ed]);
    assert_eq!(code, 0, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["checkpoint_timestamps"]["status"], "ca_not_checked",
        "{json}"
    );
    // A CA bundle the TSA does not chain to: UNTRUSTED KEY, as for the manifest's token.
    let stranger = TestTsa::start("Stranger");
    let (code, json) = verify(
        &pkg,
        &[
            "--json",
            "--public-key",
            &ed,
            "--tsa-ca",
            stranger.ca().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["checkpoint_timestamps"]["status"], "untrusted",
        "{json}"
    );

    // OpenSSL agrees on the packaged pair.
    let bag = unpack(&pkg, &w.join("bag"));
    let name = file_name(&files[1]);
    let packaged = bag.join("data/checkpoints/cam1").join(&name);
    let (code, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-data"])
        .arg(&packaged)
        .arg("-in")
        .arg(tsr(&packaged))
        .arg("-CAfile")
        .arg(&ca));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Verification: OK"), "{out}");

    // A byte of a packaged checkpoint token flipped (its time): TAMPERED, naming it.
    let flipped = w.join("flipped");
    copy_dir(&bag, &flipped);
    let token_file = tsr(&flipped.join("data/checkpoints/cam1").join(&name));
    let mut bytes = std::fs::read(&token_file).unwrap();
    let at = bytes
        .windows(2)
        .position(|w| w == [0x18, 0x0f])
        .expect("genTime")
        + 5;
    bytes[at] ^= 0x01;
    std::fs::write(&token_file, bytes).unwrap();
    let (code, out) = verify(&flipped, &["--public-key", &ed, "--tsa-ca", ca_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED"), "{out}");
    assert!(
        out.contains(&format!(
            "data/checkpoints/cam1/{name}.tsr: timestamp token refused"
        )),
        "{out}"
    );

    // Two checkpoints' tokens swapped in the store: every verifier names them.
    let (a, b) = (tsr(&files[0]), tsr(&files[1]));
    let (ta, tb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &tb).unwrap();
    std::fs::write(&b, &ta).unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["status"], "TAMPERED", "{report}");
    let named: Vec<&Value> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["problem"]
                .as_str()
                .unwrap()
                .contains("checkpoint timestamp token refused: its message imprint")
        })
        .collect();
    assert_eq!(named.len(), 2, "{report}");
    assert!(
        named[0]["object_key"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}.tsr", file_name(&files[0]))),
        "{report}"
    );
    let swapped = w.join("swapped.tar");
    export(&server, &session, &swapped);
    let (code, out) = verify(&swapped, &["--public-key", &ed, "--tsa-ca", ca_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "TAMPERED: data/checkpoints/cam1/{}.tsr: timestamp token refused: its message imprint",
            file_name(&files[0])
        )),
        "{out}"
    );

    // A token whose checkpoint was deleted: the deletion shows.
    std::fs::remove_file(&files[2]).unwrap();
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    assert!(
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["problem"]
                .as_str()
                .unwrap()
                .contains("checkpoint that is not there")),
        "{report}"
    );
}
