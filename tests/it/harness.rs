//! Real parts for the integration tests: the `witness` binary as camera simulator and as server,
//! each on a free loopback port, over a SQLite file or a fresh PostgreSQL database
//! (`WITNESS_TEST_DATABASE_URL`), talking real HTTP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_witness");

/// A port for a server a test starts, free now. Taken below the kernel's ephemeral range
/// (32768–60999 on Linux): a port from `bind(:0)` comes from that range, and before the server
/// binds it an outgoing connection of any test may take it as its local port ("Address already
/// in use"); ports below it are never handed out that way. Each is given once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        LOW + std::process::id() % (HIGH - LOW),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in LOW..HIGH {
        let port = (LOW + (NEXT.fetch_add(1, Ordering::SeqCst) - LOW) % (HIGH - LOW)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port between {LOW} and {HIGH}");
}

/// An HTTP client that never reuses a connection the server may be closing: the server closes a
/// keep-alive connection idle past its header timeout (`[http]`, 10 s), and a request sent on
/// it at that moment fails with IncompleteMessage.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < timeout, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The camera simulator as its own process, so a test can kill it like a camera dropping off.
pub struct Simulator {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Simulator {
    pub fn start(extra: &[&str]) -> Simulator {
        let mut s = Simulator {
            port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new(BIN)
            .args([
                "simulate",
                "--cameras",
                "2",
                "--microphones",
                "1",
                "--width",
                "640",
                "--height",
                "360",
                "--bitrate",
                "600",
            ])
            .args(["--port", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulator starts");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// Sends a signal (`STOP`, `CONT` …) to the simulator process: `STOP` freezes every camera
    /// with its connections open.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("simulator running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// SIGKILL: the camera vanishes without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    /// The server's database, for tests that play an insider with database access.
    pub db: String,
    /// Whether this node made `db` (and drops it, on PostgreSQL, when the test ends).
    owns_db: bool,
    /// One user per role (`t-staff` …), each with an API token, made with the CLI.
    pub users: Vec<TestUser>,
    child: Option<Child>,
    pub http: reqwest::Client,
    /// Environment the server process gets at its next (re)start, beside `RUST_LOG`.
    pub env: Vec<(String, String)>,
}

/// A database URL for one test: a SQLite file in `dir`, or a fresh PostgreSQL database.
async fn database_url(dir: &Path) -> String {
    match std::env::var("WITNESS_TEST_DATABASE_URL") {
        Ok(admin) if admin.starts_with("postgres") => {
            use sqlx::Connection;
            let name = format!("witness_test_{}", uuid::Uuid::now_v7().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("admin connection to PostgreSQL");
            sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            url.to_string()
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("witness.db").display()),
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with("").await
    }

    /// Starts a server whose config has `extra` TOML appended (e.g. a `[store]` table).
    pub async fn start_with(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("witness.toml");
        let db = database_url(dir.path()).await;
        // Short leases, so that the cluster test sees a takeover quickly.
        let cluster = "[cluster]\nlease_seconds = 3.0\n";
        // A copy of the shipped storage policies that a test may edit before a restart.
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("storage-policies"))
            .unwrap()
        {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {db:?}\n[audit]\ncheckpoint_minutes = 0.01\n[retention]\npolicies_dir = {policies:?}\nworm_sync_seconds = 0.5\n{cluster}[recording]\nsegment_seconds = 1.0\nwatchdog_seconds = 3.0\nreconnect_min_seconds = 0.25\nreconnect_max_seconds = 0.5\npipelines_dir = {:?}\n{extra}",
                dir.path().join("data"),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
            ),
        )
        .unwrap();
        let mut s = Server {
            dir,
            port,
            config,
            db,
            owns_db: true,
            users: Vec::new(),
            child: None,
            http: http_client(),
            env: Vec::new(),
        };
        s.restart().await;
        for role in ROLES {
            let name = format!("t-{}", role.replace('_', "-"));
            let mut args = vec!["user", "add", &name, "--role", role];
            if role == "regulator" {
                for c in [
                    "construction",
                    "procurement",
                    "land",
                    "state_assets",
                    "other",
                ] {
                    args.extend(["--category", c]);
                }
            }
            let out = s.cli(&args);
            let password = out
                .lines()
                .find_map(|l| l.strip_prefix("one-time password: "))
                .unwrap_or_else(|| panic!("no one-time password in {out}"))
                .to_string();
            let token = s.cli(&["token", "--user", &name, "--name", "tests", "--days", "1"]);
            s.users.push(TestUser {
                role,
                username: name,
                one_time_password: password,
                token: token.trim().to_string(),
            });
        }
        s
    }

    /// A second node of the same cluster: its own data folder, spool and port; the same
    /// database, object store, keys (signing, camera credentials) and policies. Leases of
    /// `lease_seconds`.
    pub async fn second_node(&self, lease_seconds: f64) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let keys = dir.path().join("data").join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        // Nodes share data/keys/: the signing key and the camera credentials key.
        for key in ["ed25519.key", "credentials.key"] {
            std::fs::copy(self.dir.path().join("data/keys").join(key), keys.join(key)).unwrap();
        }
        // And the SM2 key, when the first node signs with SM2 too.
        let sm2 = self.dir.path().join("data/keys/sm2.key");
        if sm2.exists() {
            std::fs::copy(&sm2, keys.join("sm2.key")).unwrap();
        }
        let config = dir.path().join("witness.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {:?}\n[store]\nkind = \"local\"\npath = {:?}\n[audit]\ncheckpoint_minutes = 0.01\n[retention]\npolicies_dir = {:?}\n[cluster]\nlease_seconds = {lease_seconds}\n[recording]\nsegment_seconds = 1.0\nwatchdog_seconds = 3.0\nreconnect_min_seconds = 0.25\nreconnect_max_seconds = 0.5\npipelines_dir = {:?}\n",
                dir.path().join("data"),
                self.db,
                self.objects(),
                self.policies(),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
            ),
        )
        .unwrap();
        let mut s = Server {
            dir,
            port,
            config,
            db: self.db.clone(),
            owns_db: false,
            users: self
                .users
                .iter()
                .map(|u| TestUser {
                    role: u.role,
                    username: u.username.clone(),
                    one_time_password: u.one_time_password.clone(),
                    token: u.token.clone(),
                })
                .collect(),
            child: None,
            http: http_client(),
            env: Vec::new(),
        };
        s.restart().await;
        s
    }

    /// Runs a `witness` subcommand against this server's config; panics unless it succeeds.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "witness {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Another user of `role` (regulators scoped to `categories`), made with the CLI; returns
    /// its API token.
    pub fn another_user(&self, name: &str, role: &str, categories: &[&str]) -> String {
        let mut args = vec!["user", "add", name, "--role", role];
        for c in categories {
            args.extend(["--category", c]);
        }
        self.cli(&args);
        self.cli(&["token", "--user", name, "--name", "tests", "--days", "1"])
            .trim()
            .to_string()
    }

    /// Plays history as an insider with database access: a project event reported years ago
    /// (as migration 0015 carries over dates recorded before clocks were checked). The API itself
    /// refuses a date before the project's recordings, so a session recorded by a test can only
    /// be expired by such a fixture.
    pub async fn event_of_the_past(&self, project: &str, event: &str, date: &str) {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&self.db).await.unwrap();
        let at = witness::time::parse_rfc3339(date).unwrap();
        sqlx::query(
            "INSERT INTO project_events (id, project_code, event, step, at_us, decides, reason, actor, recorded_at) VALUES ($1, $2, $3, 'report', $4, NULL, 'a test fixture: reported long ago', 'system', $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(project)
        .bind(event)
        .bind(at)
        .bind(at)
        .execute(&mut db)
        .await
        .unwrap();
        db.close().await.unwrap();
    }

    /// Lets `role` (a regulator or discipline officer) play confidential session `session`: its
    /// request, approved by the other of the two (two people, as the rule wants). Returns the
    /// grant.
    pub async fn grant_confidential(&self, role: &str, session: &str) -> Value {
        let approver = if role == "regulator" {
            "discipline_officer"
        } else {
            "regulator"
        };
        let (status, g) = self
            .call_as(
                Some(role),
                "POST",
                &format!("/api/v1/sessions/{session}/confidential-access"),
                Some(json!({"reason": "test: review of the evaluation"})),
            )
            .await;
        assert_eq!(status, 201, "confidential access request: {g}");
        let id = g["id"].as_str().unwrap();
        let (status, g) = self
            .call_as(
                Some(approver),
                "POST",
                &format!("/api/v1/confidential-access/{id}/approve"),
                None,
            )
            .await;
        assert_eq!(status, 200, "confidential access approval: {g}");
        assert_eq!(g["active"], true, "{g}");
        g
    }

    pub fn user(&self, role: &str) -> &TestUser {
        self.users
            .iter()
            .find(|u| u.role == role)
            .unwrap_or_else(|| panic!("no test user with role {role}"))
    }

    /// A request as `role` (by its API token); `None` sends no credentials.
    pub fn request_as(
        &self,
        role: Option<&str>,
        method: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self.http.request(m, self.url(path));
        match role {
            Some(r) => req.bearer_auth(&self.user(r).token),
            None => req,
        }
    }

    /// A request as the role that does this in real life (see `default_role`).
    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        self.request_as(Some(default_role(method, path)), method, path)
    }

    pub async fn call_as(
        &self,
        role: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let send = || {
            let mut req = self.request_as(role, method, path);
            if let Some(b) = &body {
                req = req.json(b);
            }
            req.send()
        };
        let resp = match send().await {
            // A GET is safe to repeat: a connection the server dropped is said, then retried
            // once on a fresh one, as a browser does. Anything else is the test's failure.
            Err(e) if method == "GET" && (e.is_request() || e.is_connect()) => {
                eprintln!("GET {path}: {e:?}; retried once");
                send().await.expect("request sent (retried)")
            }
            other => other.expect("request sent"),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,witness=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("server starts");
        self.child = Some(child);
        let t = Instant::now();
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}; log:\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "server not healthy; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT` …) to the server process: `STOP` freezes the node whole,
    /// recorders, writers and lease renewal, with its connections open.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// The segment files in this node's spool, by recording (sidecars, temporary files and
    /// empty files left out).
    pub fn spooled(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.dir.path().join("data/spool")) else {
            return files;
        };
        for d in dirs.flatten() {
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let p = f.path();
                // An empty file is a segment the muxer opened and wrote nothing to yet: it holds
                // no media, and the spool drops it (`spool::leftovers`).
                let empty = std::fs::metadata(&p).is_ok_and(|m| m.len() == 0);
                if !empty && !p.extension().is_some_and(|e| e == "json" || e == "tmp") {
                    files.push(p);
                }
            }
        }
        files.sort();
        files
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The storage policies this server loads at start (a copy of the shipped ones).
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub fn objects(&self) -> PathBuf {
        self.dir.path().join("data").join("objects")
    }

    /// A request as the role that does this in real life (see `default_role`).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some(default_role(method, path)), method, path, body)
            .await
    }

    /// GET a non-JSON body (metrics, playlists).
    pub async fn text(&self, path: &str) -> String {
        self.request("GET", path)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The `GET /api/v1/rooms/status` card of `room`; `Null` while the list shows none.
    pub async fn room_card(&self, room: &str) -> Value {
        let all = self.ok("GET", "/api/v1/rooms/status", None).await;
        all.as_array()
            .and_then(|cards| cards.iter().find(|r| r["room_id"] == room))
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} → {status}: {v}\nlog:\n{}",
            self.log()
        );
        v
    }

    /// Creates a room with the simulator's two cameras and its microphone.
    pub async fn demo_room(&self, sim: &Simulator, template: &str) -> String {
        let room = self
            .ok(
                "POST",
                "/api/v1/rooms",
                Some(json!({
                    "name": "开标室 1", "kind": "bid_opening",
                    "sources": [
                        {"name": "cam1", "url": sim.url("cam1"), "media": "av", "template": template},
                        {"name": "cam2", "url": sim.url("cam2"), "media": "av", "template": template},
                        {"name": "mic1", "url": sim.url("mic1"), "media": "audio", "template": template},
                    ]
                })),
            )
            .await;
        room["id"].as_str().unwrap().to_string()
    }

    /// Registers `project` (category construction, open tender) with `sections`, as witness
    /// staff at the counter would: bookings name a registered project section.
    pub async fn register_project(&self, project: &str, sections: &[&str]) {
        let sections: Vec<Value> = sections
            .iter()
            .map(|s| json!({"code": s, "name": format!("{s} 标段")}))
            .collect();
        let (status, body) = self
            .call_as(
                Some("witness_staff"),
                "POST",
                "/api/v1/projects",
                Some(json!({
                    "project_code": project,
                    "name": format!("{project} 测试项目"),
                    "category": "construction",
                    "method": "open_tender",
                    "tenderer": "某市交通局",
                    "agent": "某招标代理有限公司",
                    "service_person": self.user("witness_staff").username,
                    "sections": sections,
                })),
            )
            .await;
        assert_eq!(status, 201, "register {project}: {body}");
    }

    pub async fn start_recording(&self, room: &str, project: &str) -> String {
        let s = self
            .ok(
                "POST",
                &format!("/api/v1/rooms/{room}/start"),
                Some(json!({"project_code": project, "reason": "test: unbooked", "session_code": "KB-01", "kind": "bid_opening", "note": "test"})),
            )
            .await;
        assert_eq!(s["state"], "recording");
        s["id"].as_str().unwrap().to_string()
    }

    /// Polls the session until `pred` holds.
    pub async fn wait_session(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let t = Instant::now();
        loop {
            let v = self
                .ok("GET", &format!("/api/v1/sessions/{id}"), None)
                .await;
            if pred(&v) {
                return v;
            }
            assert!(
                t.elapsed() < timeout,
                "timed out waiting for {what}: {v}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn verify_cli(&self, session: &str) -> (i32, String) {
        let out = Command::new(BIN)
            .args(["verify", "--session", session, "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // A PostgreSQL test database goes with its test: hundreds left behind slow the
        // cluster (autovacuum) and with it every later timing-bound test.
        if self.owns_db
            && self.db.starts_with("postgres")
            && let Ok(admin) = std::env::var("WITNESS_TEST_DATABASE_URL")
            && let Some(name) = self.db.rsplit('/').next()
        {
            let _ = Command::new("psql")
                .arg(&admin)
                .args([
                    "-qAtc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub const ROLES: [&str; 7] = [
    "system_administrator",
    "security_administrator",
    "audit_administrator",
    "witness_staff",
    "regulator",
    "archive_clerk",
    "discipline_officer",
];

pub struct TestUser {
    pub role: &'static str,
    pub username: String,
    pub one_time_password: String,
    pub token: String,
}

/// Who does this in real life: system administrators set rooms up, security administrators
/// manage accounts, witness staff start and stop and watch, regulators replay, archive clerks
/// export and report project events (closed, procurement ended), audit administrators read the
/// audit trail, discipline officers a session's.
pub fn default_role(method: &str, path: &str) -> &'static str {
    let p = path.split('?').next().unwrap_or(path);
    if p.starts_with("/api/v1/rooms")
        && !p.ends_with("/start")
        && !p.ends_with("/stop")
        && method != "GET"
    {
        "system_administrator"
    } else if p.contains("/index.m3u8") || p.contains("/segments/") || p.ends_with("/download.mp4")
    {
        "regulator"
    } else if p.contains("/exports")
        || (p.starts_with("/api/v1/projects/") && p.contains("/events"))
    {
        "archive_clerk"
    } else if p.starts_with("/api/v1/audit") {
        "audit_administrator"
    } else if p.starts_with("/api/v1/sessions/") && p.ends_with("/audit") {
        "discipline_officer"
    } else if p.starts_with("/api/v1/users")
        || p.starts_with("/api/v1/user-resets")
        || p.starts_with("/api/v1/account-changes")
    {
        "security_administrator"
    } else if p.contains("/confidential-access") {
        "regulator"
    } else {
        "witness_staff"
    }
}

/// A session verification report says INTACT; if not, the panic names why in a few lines (the
/// verdict, failures and uncovered stretches) rather than the whole report, so a CI log that
/// keeps only part of the output still shows the cause.
pub fn assert_report_intact(report: &Value, label: &str) {
    if report["intact"] == true {
        return;
    }
    let list = |key: &str| -> String {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .take(6)
                    .map(|v| format!("\n  {v}"))
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    panic!(
        "{label}: not intact: {}\nfailures:{}\nuncovered:{}",
        report["verdict"],
        list("failures"),
        list("uncovered")
    );
}

/// Every file under `dir`, in its subfolders too (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The reasons of a source's gaps, as the session view lists them.
pub fn gaps(session: &Value, source: &str) -> Vec<String> {
    recording(session, source)["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["reason"].as_str().unwrap().to_string())
        .collect()
}

pub fn recording<'a>(session: &'a Value, source: &str) -> &'a Value {
    session["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == source)
        .unwrap_or_else(|| panic!("no recording for {source}"))
}

pub fn segments(session: &Value, source: &str) -> usize {
    recording(session, source)["segment_count"]
        .as_u64()
        .unwrap() as usize
}

/// ffprobe's standard output for `args` on `path`, which it must read without error.
fn run_ffprobe(args: &[&str], path: &Path) -> Vec<u8> {
    let out = Command::new("ffprobe")
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Streams of a media file per ffprobe: codec_type → codec_name.
pub fn ffprobe(path: &Path) -> (Vec<(String, String)>, f64) {
    let out = run_ffprobe(
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name:format=duration",
            "-of",
            "json",
        ],
        path,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_string(),
                s["codec_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (streams, duration)
}

/// One stream's packets of a media file per ffprobe (`v` video, `a` audio): presentation time
/// in seconds and whether it is a keyframe, in file order.
pub fn packets(path: &Path, stream: &str) -> Vec<(f64, bool)> {
    let out = run_ffprobe(
        &[
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ],
        path,
    );
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let (pts, flags) = l.split_once(',')?;
            Some((pts.parse().ok()?, flags.contains('K')))
        })
        .collect()
}

/// The coverage tolerance the test servers run with (the default, `coverage_tolerance_ms`).
pub const TOLERANCE_S: f64 = 0.25;
/// Session views carry times to the millisecond.
const VIEW_ROUNDING_S: f64 = 0.002;

/// RFC 3339 (as the API writes it) to Unix seconds.
pub fn unix_seconds(v: &Value) -> f64 {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_micros() as f64
        / 1e6
}

/// One media or gap entry of a chain, as the session view shows it.
#[derive(Debug, Clone)]
pub struct Tile {
    pub seq: i64,
    pub gap: bool,
    pub start: f64,
    pub end: f64,
    /// A gap's reason, a segment's note.
    pub text: String,
}

impl Tile {
    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

/// The media and gap entries of one source, in chain order.
pub fn tiles(session: &Value, source: &str) -> Vec<Tile> {
    let rec = recording(session, source);
    let mut out: Vec<Tile> = rec["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let start = unix_seconds(&s["start"]);
            Tile {
                seq: s["seq"].as_i64().unwrap(),
                gap: false,
                start,
                end: start + s["duration_seconds"].as_f64().unwrap(),
                text: s["note"].as_str().unwrap_or("").to_string(),
            }
        })
        .chain(rec["gaps"].as_array().unwrap().iter().map(|g| {
            let start = unix_seconds(&g["start"]);
            Tile {
                seq: g["seq"].as_i64().unwrap(),
                gap: true,
                start,
                end: start + g["duration_seconds"].as_f64().unwrap(),
                text: g["reason"].as_str().unwrap_or("").to_string(),
            }
        }))
        .collect();
    out.sort_by_key(|t| t.seq);
    out
}

/// Asserts that one source's chain tiles its stopped session: the first entry begins at the
/// session start, each entry begins where the one before ends (within the tolerance), the last
/// reaches the stop, and entries' durations add up to stop − start. Returns the entries.
pub fn assert_tiled(session: &Value, source: &str) -> Vec<Tile> {
    let start = unix_seconds(&session["started_at"]);
    let stop = unix_seconds(&session["stopped_at"]);
    let t = tiles(session, source);
    assert!(!t.is_empty(), "{source}: no entries: {session}");
    let slack = TOLERANCE_S + VIEW_ROUNDING_S;
    let mut end = start;
    // What the entries cover together: a declared overlap (late evidence, a camera clock
    // stepping back) counts once.
    let mut total = 0.0;
    for e in &t {
        assert!(
            (e.start - end).abs() <= slack || (e.start < end && e.text.contains("overlaps")),
            "{source}: seq {} starts at {:.3}, {:+.3} s from the end of the entry before ({:.3}): {t:#?}",
            e.seq,
            e.start,
            e.start - end,
            end
        );
        // Entries meeting within the tolerance count whole; a declared overlap (late evidence
        // inside time the chain already covers) only for what it adds: counting up to the
        // tolerance of each of several late segments once made a chain look a second longer
        // than its session.
        let declared = e.text.contains("overlaps");
        let meeting = if declared {
            0.0
        } else {
            (end - e.start).clamp(0.0, slack)
        };
        total += (e.end - e.start.max(end)).max(0.0) + meeting;
        end = end.max(e.end);
    }
    assert!(
        end >= stop - slack,
        "{source}: chain ends at {end:.3}, {:.3} s before the stop: {t:#?}",
        stop - end
    );
    // A camera clock ahead of the server's (within the bound) may carry the last segment past
    // the stop: the entries then add up to the span they reach.
    assert!(
        (total - (end.max(stop) - start)).abs() <= 1.0,
        "{source}: segments + gaps = {total:.3} s, session lasted {:.3} s",
        stop - start
    );
    t
}

/// The gaps of a tiling, less the one at the very start while the camera was being reached and
/// those of the camera's clock stepping.
pub fn outage_gaps(t: &[Tile]) -> Vec<&Tile> {
    t.iter()
        .enumerate()
        .filter(|(i, e)| e.gap && !(*i == 0 && e.text.starts_with("connecting to the camera")))
        // The camera's clock stepping while media arrived without a break (a starved simulator
        // on a loaded machine does this) is a gap on the record, but not an outage.
        .filter(|(_, e)| !e.text.starts_with("camera clock jumped"))
        .map(|(_, e)| e)
        .collect()
}

/// Asserts the session lasted what the test itself measured between asking start and asking
/// stop (not the stop's answer, which waits for the last segments), within one second.
pub fn assert_lasted(session: &Value, measured: Duration) {
    let span = unix_seconds(&session["stopped_at"]) - unix_seconds(&session["started_at"]);
    assert!(
        (span - measured.as_secs_f64()).abs() <= 1.0,
        "session lasted {span:.3} s by its own times, {:.3} s by the test's clock",
        measured.as_secs_f64()
    );
}

/// Now, as Unix seconds, to compare the test's own clock with the chain's times.
pub fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}
