//! Disk pressure on a real small filesystem: the spool on an 8 MiB tmpfs that a ballast file
//! fills step by step. Storage low is an alarm (room status, /metrics, audit); critically low
//! refuses new sessions with a clear error while the running one goes on; a full disk is a gap
//! that says so, and recording resumes once space is freed. Nothing is deleted to make room.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

/// `program` as root: directly when the tests run as root (CI), else through `sudo -n`.
fn privileged(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// A tmpfs of `mib` MiB mounted on a fresh folder, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = privileged("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=1777"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs needs root or password-less sudo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free_mib(&self) -> f64 {
        witness::disk::free_bytes(self.path()).unwrap() as f64 / 1048576.0
    }

    /// Grows the ballast until `leave_mib` remain free.
    fn leave_free(&self, leave_mib: f64) {
        let ballast = self.path().join("ballast");
        let have = std::fs::metadata(&ballast).map(|m| m.len()).unwrap_or(0);
        let add = ((self.free_mib() - leave_mib) * 1048576.0).max(0.0) as u64;
        // Real blocks, not a sparse file: tmpfs counts what is written.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ballast)
            .unwrap();
        let _ = rustix_fallocate(&f, have, add);
    }

    fn free_ballast(&self) {
        let _ = std::fs::remove_file(self.path().join("ballast"));
    }
}

/// Writes `len` zero bytes at `offset` (a full disk stops it early, which is the point).
fn rustix_fallocate(f: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = f;
    f.seek(SeekFrom::Start(offset))?;
    let block = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn disk_state(server: &Server) -> u8 {
    let m = server.text("/metrics").await;
    m.lines()
        .find_map(|l| l.strip_prefix("witness_disk_state "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no witness_disk_state in {m}"))
}

async fn wait_state(server: &Server, want: u8, disk: &SmallDisk) {
    let t = std::time::Instant::now();
    while disk_state(server).await != want {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "disk state never became {want} ({:.1} MiB free)",
            disk.free_mib()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn storage_audit(server: &Server) -> Vec<String> {
    server
        .ok("GET", "/api/v1/audit?action=storage_state", None)
        .await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filling_disk_alarms_refuses_new_work_and_loses_nothing() {
    let disk = SmallDisk::mount(8);
    let spool: PathBuf = disk.path().join("spool");
    let sim = Simulator::start(&[]);
    let server = Server::start_with(&format!(
        "spool_dir = {spool:?}\n[disk]\nwarning_free_mib = 5\ncritical_free_mib = 3\nexport_reserve_mib = 1\ncheck_seconds = 0.2\n"
    ))
    .await;
    let room = server.demo_room(&sim, "default").await;
    let second_room = server
        .ok(
            "POST",
            "/api/v1/rooms",
            Some(
                json!({"name": "评标室 2", "kind": "bid_opening", "sources": [
                    {"name": "cam1", "url": sim.url("cam1"), "media": "av"},
                ]}),
            ),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A stopped session to export later, while the disk is critically low.
    let earlier = server.start_recording(&second_room, "ZB-DISK-0").await;
    server
        .wait_session(&earlier, "2 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{second_room}/stop"), None)
        .await;
    let session = server.start_recording(&room, "ZB-DISK").await;
    server
        .wait_session(&session, "3 segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 3
        })
        .await;
    assert_eq!(disk_state(&server).await, 0);

    // Warning: an alarm on every room, in /metrics and in the audit trail; work goes on.
    disk.leave_free(4.0);
    wait_state(&server, 1, &disk).await;
    let rooms = server.ok("GET", "/api/v1/rooms/status", None).await;
    let alarm = rooms
        .as_array()
        .map(|a| a[0]["storage_alarm"].clone())
        .unwrap_or_else(|| rooms["rooms"][0]["storage_alarm"].clone());
    assert!(
        alarm.as_str().is_some_and(|a| a.starts_with("storage low")),
        "{rooms}"
    );
    assert!(
        storage_audit(&server)
            .await
            .iter()
            .any(|r| r.starts_with("ok → warning")),
        "audited"
    );

    // Critical: the running session goes on; a new one is refused, saying why.
    disk.leave_free(2.0);
    wait_state(&server, 2, &disk).await;
    let before = segments(
        &server
            .ok("GET", &format!("/api/v1/sessions/{session}"), None)
            .await,
        "cam1",
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{second_room}/start"),
            Some(json!({"project_code": "ZB-DISK-2", "reason": "test: unbooked", "session_code": "KB-01", "kind": "bid_opening"})),
        )
        .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MiB free on the spool disk"),
        "{body}"
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{earlier}/exports"),
            Some(json!({"reason": "while the disk is full"})),
        )
        .await;
    assert_eq!(status, 507, "exports wait too: {body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    server
        .wait_session(
            &session,
            "recording goes on while critical",
            Duration::from_secs(30),
            |s| segments(s, "cam1") >= before + 3,
        )
        .await;

    // Full: the spool cannot take a segment. The time is a gap that says why, nothing already
    // spooled is deleted, and recording resumes once space is freed.
    disk.leave_free(0.0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    disk.free_ballast();
    wait_state(&server, 0, &disk).await;
    let resumed_from = segments(
        &server
            .ok("GET", &format!("/api/v1/sessions/{session}"), None)
            .await,
        "cam1",
    );
    server
        .wait_session(
            &session,
            "recording after space was freed",
            Duration::from_secs(30),
            |s| {
                segments(s, "cam1") >= resumed_from + 3
                    && recording(s, "cam1")["state"] == "recording"
            },
        )
        .await;
    assert!(
        storage_audit(&server)
            .await
            .iter()
            .any(|r| r.contains("→ ok")),
        "the return to normal is audited too"
    );
    // With space again, a new session starts.
    let second = server.start_recording(&second_room, "ZB-DISK-3").await;
    server
        .ok("POST", &format!("/api/v1/rooms/{second_room}/stop"), None)
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    for source in ["cam1", "cam2", "mic1"] {
        let tiled = assert_tiled(&stopped, source);
        for g in outage_gaps(&tiled) {
            assert!(!g.text.is_empty(), "{source}: a gap without a reason");
        }
    }
    eprintln!(
        "cam1 gaps while the disk was full: {:#?}",
        outage_gaps(&assert_tiled(&stopped, "cam1"))
    );
    let (code, out) = server.verify_cli(&session);
    assert_eq!(code, 0, "{out}");
    let left: Vec<(PathBuf, u64)> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| (f.path(), f.metadata().unwrap().len()))
        .collect();
    assert!(left.is_empty(), "everything spooled was stored: {left:#?}");
    let _ = (second, Value::Null);
}
