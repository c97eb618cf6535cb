//! HTTPS with rustls from a configured certificate; plain HTTP refused anywhere but loopback.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_configured_certificate_and_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a server certificate it signed, as a trading centre's own CA would issue.
    let d = dir.path();
    let (ca, cert, key) = (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=witness-test-ca -keyout ca.key -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem",
    ] {
        let made = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(d)
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let port = free_port();
    let config = dir.path().join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n[recording]\npipelines_dir = {:?}\n",
            dir.path().join("data"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        let last = match client.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => format!("{e:?}"),
        };
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no HTTPS ({last}): {log}"
        );
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "server exited: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plain HTTP on the HTTPS port gets nothing useful.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    // The port is listening (the connection is made), and plain HTTP gets no page.
    match plain {
        Ok(r) => assert!(
            !r.status().is_success(),
            "plain HTTP answered {}",
            r.status()
        ),
        Err(e) => assert!(
            !e.is_connect(),
            "the HTTPS port must accept the connection and refuse plain HTTP: {e:?}"
        ),
    }

    // The session cookie is Secure over HTTPS.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let password = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("one-time password:"))
        .unwrap()
        .trim()
        .to_string();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    drop(child);
}

/// The server process ends with the test, whether it passes or panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn plain_http_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("witness.toml");
    for (listen, tls, expect) in [
        (
            "0.0.0.0:18080",
            "",
            "plain HTTP is allowed only on a loopback address",
        ),
        (
            "127.0.0.1:18080",
            "tls_cert = \"/nonexistent.pem\"\n",
            "http.tls_cert and http.tls_key go together",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[http]\nlisten = \"{listen}\"\n{tls}",
                dir.path().join("data")
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains(expect), "{listen}: {stderr}");
    }
}
