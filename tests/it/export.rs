//! Evidence packages: exported from a recorded session, validated by a third-party BagIt
//! validator and by `sha256sum -c`, verified offline; then every kind of tampering and every
//! hostile archive is caught with a specific message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use witness::evidence::export::PackagedChain;
use witness::ledger::manifest::Signer;

fn export(server: &Server, session: &str, out: &Path) {
    let o = Command::new(BIN)
        .args([
            "export",
            "--session",
            session,
            "--reason",
            "投诉调查 complaint 2026-17",
            "--exporter",
            "archive clerk",
            "--out",
        ])
        .arg(out)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `witness verify PKG EXTRA…`, with no default trust file (an empty home), so only the keys
/// the test passes are trusted.
fn verify(pkg: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(BIN)
        .arg("verify")
        .arg(pkg)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn unpack(tar_path: &Path, into: &Path) -> PathBuf {
    tar::Archive::new(std::fs::File::open(tar_path).unwrap())
        .unpack(into)
        .unwrap();
    std::fs::read_dir(into)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
            let mut perm = std::fs::metadata(&t).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&t, perm).unwrap();
        }
    }
}

fn media(bag: &Path, source: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(bag.join("data/media").join(source))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Each case: a fresh copy of the bag, one tampering, one expected phrase in the verdict.
fn case(
    name: &str,
    bag: &Path,
    work: &Path,
    tamper: impl FnOnce(&Path),
    expect: &str,
    extra: &[&str],
) {
    let dir = work.join(name);
    copy_dir(bag, &dir);
    tamper(&dir);
    let (code, out) = verify(&dir, extra);
    assert_eq!(code, 1, "{name}: verify must fail:\n{out}");
    assert!(
        out.contains(expect),
        "{name}: expected {expect:?} in:\n{out}"
    );
}

async fn record(server: &Server, room: &str, project: &str, n: usize) -> String {
    let session = server.start_recording(room, project).await;
    server
        .wait_session(&session, "segments", Duration::from_secs(30), |s| {
            ["cam1", "cam2", "mic1"]
                .iter()
                .all(|src| segments(s, src) >= n)
        })
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    session
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_package_verifies_offline_and_catches_tampering() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = record(&server, &room, "ZB-EXP", 4).await;
    let other = record(&server, &room, "ZB-OTHER", 2).await;
    let work = tempfile::tempdir().unwrap();
    let pkg = work.path().join("evidence.tar");
    export(&server, &session, &pkg);
    let other_pkg = work.path().join("other.tar");
    export(&server, &other, &other_pkg);
    // The command line starts GStreamer only to remux: a derived MP4 from it plays.
    let derived_pkg = work.path().join("derived.tar");
    let o = Command::new(BIN)
        .args(["export", "--session", &other, "--reason", "derived copy"])
        .args(["--derived-mp4", "--out"])
        .arg(&derived_pkg)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let derived = unpack(&derived_pkg, &work.path().join("derived"));
    let (streams, _) = ffprobe(&derived.join("derived/cam1.mp4"));
    assert!(
        streams.iter().any(|(t, c)| t == "video" && c == "h264"),
        "{streams:?}"
    );

    // Offline, as a tar and unpacked.
    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = verify(&pkg, &["--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    let bag = unpack(&pkg, &work.path().join("unpacked"));
    let other_bag = unpack(&other_pkg, &work.path().join("other"));
    assert_eq!(verify(&bag, &["--public-key", &key]).0, 0);
    // The same package, with no key given: its own enclosed key proves nothing.
    let (code, out) = verify(&pkg, &[]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("UNTRUSTED KEY") && out.contains("GET /api/v1/keys"),
        "{out}"
    );

    // Media byte-identical to the store; audit entries of the session travel with it.
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    let seg = &recording(&view, "cam1")["segments"][0];
    let key0 = seg["object_key"].as_str().unwrap();
    let name0 = key0.rsplit('/').next().unwrap();
    assert_eq!(
        std::fs::read(bag.join("data/media/cam1").join(name0)).unwrap(),
        std::fs::read(server.objects().join(key0)).unwrap()
    );
    let audit = std::fs::read_to_string(bag.join("data/audit/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"action\":\"export\"") && audit.contains("complaint 2026-17"),
        "{audit}"
    );
    let info = std::fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    for field in [
        "Witness-Project-Code: ZB-EXP",
        "Witness-Exporter: archive clerk",
        "Payload-Oxum:",
        "Witness-Package-Id:",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }

    // Third parties: bagit-python validates the bag; sha256sum -c checks both manifests.
    let o = Command::new("python3")
        .args(["-m", "bagit", "--validate"])
        .arg(&bag)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bagit: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for m in ["manifest-sha256.txt", "tagmanifest-sha256.txt"] {
        let o = Command::new("sha256sum")
            .args(["--quiet", "-c", m])
            .current_dir(&bag)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sha256sum -c {m}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    let w = work.path();
    let cam1 = media(&bag, "cam1");
    let n1 = cam1[1].file_name().unwrap().to_str().unwrap().to_string();
    case(
        "flipped byte",
        &bag,
        w,
        |d| flip_byte(&d.join("data/media/cam1").join(&n1)),
        &format!("data/media/cam1/{n1}: sha256 mismatch"),
        &[],
    );
    case(
        "deleted segment",
        &bag,
        w,
        |d| std::fs::remove_file(d.join("data/media/cam1").join(&n1)).unwrap(),
        "segment missing",
        &[],
    );
    case(
        "swapped segments",
        &bag,
        w,
        |d| {
            let (a, b) = (
                d.join("data/media/cam1").join(&n1),
                media(d, "cam1")[2].clone(),
            );
            let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            std::fs::write(&a, y).unwrap();
            std::fs::write(&b, x).unwrap();
        },
        "sha256 mismatch",
        &[],
    );
    // A valid segment of another session, with the payload manifests rewritten to match: the
    // chain still names the original bytes.
    case(
        "segment from another session",
        &bag,
        w,
        |d| {
            let foreign = std::fs::read(&media(&other_bag, "cam1")[1]).unwrap();
            std::fs::write(d.join("data/media/cam1").join(&n1), &foreign).unwrap();
            rewrite_manifests(d);
        },
        "bytes differ from the chain entry",
        &[],
    );
    case(
        "chain entry edited, hash recomputed",
        &bag,
        w,
        |d| {
            edit_chain(d, |c| {
                c.entries[2].duration_us += 1_000_000;
                c.entries[2] = c.entries[2].clone().seal();
            });
            rewrite_manifests(d);
        },
        "chain broken: seq 3: prev hash does not match",
        &[],
    );
    case(
        "audit entry in the package edited",
        &bag,
        w,
        |d| {
            let p = d.join("data/audit/audit.jsonl");
            let text = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            lines[0]["address"] = "10.0.0.66".into();
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, text).unwrap();
            rewrite_manifests(d);
        },
        "does not match its hash (entry edited)",
        &[],
    );
    case(
        "truncated chain tail",
        &bag,
        w,
        |d| {
            edit_chain(d, |c| {
                c.entries.pop();
            });
            rewrite_manifests(d);
        },
        "chain heads differ from the signed session manifest",
        &[],
    );
    case(
        "bag-info edited",
        &bag,
        w,
        |d| {
            let p = d.join("bag-info.txt");
            let t = std::fs::read_to_string(&p)
                .unwrap()
                .replace("ZB-EXP", "ZB-FAKE");
            std::fs::write(p, t).unwrap();
        },
        "bag-info.txt: does not match tagmanifest-sha256.txt",
        &[],
    );
    // Everything re-signed by another key: consistent in itself, caught by the key trusted.
    let attacker = Signer::load_or_create(&w.join("attacker-key")).unwrap();
    let resigned = w.join("signed by another key");
    copy_dir(&bag, &resigned);
    resign_session_manifest(&resigned, &attacker);
    std::fs::write(
        resigned.join("server-public-key.txt"),
        format!("{}\n", attacker.public_key_hex()),
    )
    .unwrap();
    rewrite_manifests(&resigned);
    let tm = std::fs::read(resigned.join("tagmanifest-sha256.txt")).unwrap();
    std::fs::write(
        resigned.join("tagmanifest-sha256.txt.sig"),
        attacker.sign_hex(&tm),
    )
    .unwrap();
    let (code, out) = verify(&resigned, &["--public-key", &key]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("UNTRUSTED KEY") && out.contains(&attacker.public_key_hex()),
        "{out}"
    );
    case(
        "manifest signature from another key",
        &bag,
        w,
        |d| {
            resign_session_manifest(d, &attacker);
            rewrite_manifests(d);
        },
        "manifest.json: signature does not verify",
        &[],
    );
    case(
        "tag manifest unsigned",
        &bag,
        w,
        |d| std::fs::remove_file(d.join("tagmanifest-sha256.txt.sig")).unwrap(),
        "unsigned",
        &[],
    );

    // Hostile archives are refused before anything is used.
    for (name, path, link) in [
        ("traversal", "bag/../../etc/x", false),
        ("absolute", "/etc/witness-x", false),
        ("symlink", "bag/data/link", true),
    ] {
        let p = w.join(format!("{name}.tar"));
        hostile_tar(&p, path, link);
        let (code, out) = verify(&p, &[]);
        assert_eq!(code, 2, "{name}: {out}");
        assert!(out.contains("package refused"), "{name}: {out}");
    }
    // The same for zips, written with Python's zipfile (which writes whatever it is told).
    for (name, why) in [
        ("traversal", "climbs out"),
        ("absolute", "absolute path"),
        ("symlink", "symbolic link"),
        ("bomb", "zip bomb"),
    ] {
        let p = w.join(format!("{name}.zip"));
        hostile_zip(&p, name);
        let (code, out) = verify(&p, &[]);
        assert_eq!(code, 2, "{name}.zip: {out}");
        assert!(
            out.contains("package refused") && out.contains(why),
            "{name}.zip: {out}"
        );
    }
    let (code, out) = verify(&w.join("does-not-exist.tar"), &[]);
    assert_eq!(code, 2, "{out}");
    // A header that promises a terabyte it does not carry (the tar cousin of a zip bomb): read
    // as a stream, it ends in a clean error, not an allocation or a hang.
    let p = w.join("bomb.tar");
    hostile_tar(&p, "bag/bag-info.txt", false);
    let mut bytes = std::fs::read(&p).unwrap();
    let mut header = tar::Header::from_byte_slice(&bytes[..512]).clone();
    header.set_size(1 << 40);
    header.set_cksum();
    bytes[..512].copy_from_slice(header.as_bytes());
    std::fs::write(&p, bytes).unwrap();
    let t = std::time::Instant::now();
    let (code, out) = verify(&p, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(t.elapsed() < Duration::from_secs(10), "refused quickly");

    http_export_of_a_selection(&server, &session, &view, w).await;
}

/// Over HTTP: a job with progress, then a streamed download of one source over a time range.
async fn http_export_of_a_selection(
    server: &Server,
    session: &str,
    view: &serde_json::Value,
    w: &Path,
) {
    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let segs = recording(view, "cam1")["segments"].as_array().unwrap();
    let (from, to) = (
        segs[1]["start"].as_str().unwrap(),
        segs[3]["start"].as_str().unwrap(),
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(serde_json::json!({"sources": ["cam1"], "from": from, "to": to})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_body")),
        "{body}"
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(serde_json::json!({"reason": " "})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("reason_required")),
        "{body}"
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(serde_json::json!({"reason": "r", "sources": ["nope"]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let failed = body["id"].as_str().unwrap().to_string();
    let (status, body) = server.call("GET", "/api/v1/exports/nope", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("export_not_found"))
    );

    let (status, job) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(serde_json::json!({"sources": ["cam1"], "from": from, "to": to, "reason": "监管调阅 regulator request", "derived_mp4": true})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let t = std::time::Instant::now();
    let done = loop {
        let j = server
            .ok("GET", &format!("/api/v1/exports/{id}"), None)
            .await;
        if j["state"] != "preparing" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "ready", "{done}");
    assert_eq!(done["percent"], 100.0);
    assert!(done["bytes_total"].as_u64().unwrap() > 0);
    let failed = server
        .ok("GET", &format!("/api/v1/exports/{failed}"), None)
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("nope"),
        "{failed}"
    );

    // The same package as a zip: our verifier, Python's zip reader, then bagit on its contents.
    let download = done["download"].as_str().unwrap().to_string();
    let resp = server
        .request("GET", &format!("{download}?format=zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let zip_path = w.join("selection.zip");
    std::fs::write(&zip_path, resp.bytes().await.unwrap()).unwrap();
    let (code, out) = verify(&zip_path, &["--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    let unzipped = w.join("selection-unzipped");
    let py = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip_path)
        .arg(&unzipped)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let bag_dir = std::fs::read_dir(&unzipped)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bagit = Command::new("python3")
        .args(["-m", "bagit", "--validate"])
        .arg(&bag_dir)
        .output()
        .unwrap();
    assert!(
        bagit.status.success(),
        "bagit on the unzipped package: {}",
        String::from_utf8_lossy(&bagit.stderr)
    );
    let (status, body) = server
        .call(
            "GET",
            &format!("{}?format=rar", done["download"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );

    let resp = server.request("GET", &download).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let tar_path = w.join("selection.tar");
    std::fs::write(&tar_path, resp.bytes().await.unwrap()).unwrap();
    let (code, out) = verify(&tar_path, &["--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    let bag = unpack(&tar_path, &w.join("selection"));
    assert!(
        !bag.join("data/media/cam2").exists(),
        "only the selected source"
    );
    let names: Vec<_> = media(&bag, "cam1")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let want: Vec<_> = [&segs[1], &segs[2]]
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
        .collect();
    assert!(
        want.iter().all(|n| names.contains(n)),
        "{names:?} ⊇ {want:?}"
    );
    assert!(
        names.len() <= 3,
        "only segments overlapping the range: {names:?}"
    );
    // The derived MP4: playable, as long as the selection, signed, and not mistaken for evidence.
    let mp4 = bag.join("derived/cam1.mp4");
    let (streams, seconds) = ffprobe(&mp4);
    assert!(
        streams.iter().any(|(t, c)| t == "video" && c == "h264"),
        "{streams:?}"
    );
    let selected: f64 = names.len() as f64 * 1.0;
    assert!(
        (seconds - selected).abs() < selected * 0.5 + 0.5,
        "derived MP4 of {} segments lasts {seconds} s",
        names.len()
    );
    let (code, out) = verify(&tar_path, &["--public-key", &key]);
    assert!(
        out.contains("derived (not evidence, signed): derived/cam1.mp4"),
        "{out}"
    );
    assert_eq!(code, 0, "{out}");
    case(
        "derived MP4 altered",
        &bag,
        w,
        |d| flip_byte(&d.join("derived/cam1.mp4")),
        "derived/cam1.mp4: does not match tagmanifest-sha256.txt",
        &[],
    );
    case(
        "unlisted file added beside the payload",
        &bag,
        w,
        |d| std::fs::write(d.join("derived/cam2.mp4"), b"not a video").unwrap(),
        "derived/cam2.mp4: not covered by the signed tag manifest",
        &[],
    );

    let audit = server
        .ok("GET", &format!("/api/v1/sessions/{session}/audit"), None)
        .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "export_download"),
        "{audit}"
    );
}

/// Signs the session manifest with another key, as an attacker holding one would.
fn resign_session_manifest(d: &Path, key: &Signer) {
    let body = std::fs::read(d.join("data/chain/manifest.json")).unwrap();
    std::fs::write(d.join("data/chain/manifest.json.sig"), key.sign_hex(&body)).unwrap();
}

/// Rewrites payload and tag manifests as an attacker would (the signature cannot follow).
fn rewrite_manifests(d: &Path) {
    use sha2::Digest;
    let mut files = Vec::new();
    let mut stack = vec![d.join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let mut sha = String::new();
    let mut sm = String::new();
    for f in &files {
        let b = std::fs::read(f).unwrap();
        let rel = f.strip_prefix(d).unwrap().to_str().unwrap();
        sha.push_str(&format!(
            "{}  {rel}\n",
            hex::encode(sha2::Sha256::digest(&b))
        ));
        sm.push_str(&format!("{}  {rel}\n", hex::encode(sm3::Sm3::digest(&b))));
    }
    std::fs::write(d.join("manifest-sha256.txt"), sha).unwrap();
    std::fs::write(d.join("manifest-sm3.txt"), sm).unwrap();
    let mut tm = String::new();
    for t in [
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "manifest-sm3.txt",
        "server-public-key.txt",
        "server-keys.txt",
        "README.txt",
    ] {
        let Ok(b) = std::fs::read(d.join(t)) else {
            continue;
        };
        tm.push_str(&format!("{}  {t}\n", hex::encode(sha2::Sha256::digest(&b))));
    }
    std::fs::write(d.join("tagmanifest-sha256.txt"), tm).unwrap();
}

fn edit_chain(d: &Path, f: impl FnOnce(&mut PackagedChain)) {
    let p = d.join("data/chain/cam1.json");
    let mut c: PackagedChain = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

fn hostile_tar(out: &Path, path: &str, link: bool) {
    // Raw headers: the tar crate's safe builders refuse these names, an attacker's tools do not.
    let mut header = tar::Header::new_gnu();
    let name = path.as_bytes();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_mode(0o644);
    if link {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.as_old_mut().linkname[..11].copy_from_slice(b"/etc/passwd");
    } else {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(4);
    }
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    if !link {
        let mut data = b"evil".to_vec();
        data.resize(512, 0);
        bytes.extend(data);
    }
    bytes.extend(vec![0u8; 1024]);
    std::fs::write(out, bytes).unwrap();
}

fn flip_byte(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    b[100] ^= 1;
    std::fs::write(p, b).unwrap();
}

fn hostile_zip(out: &Path, kind: &str) {
    let script = r#"
import sys, zipfile
out, kind = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    if kind == "traversal":
        z.writestr(zipfile.ZipInfo("bag/../../etc/x"), b"evil")
    elif kind == "absolute":
        z.writestr(zipfile.ZipInfo("/etc/witness-x"), b"evil")
    elif kind == "symlink":
        info = zipfile.ZipInfo("bag/data/link")
        info.external_attr = 0o120777 << 16
        z.writestr(info, b"/etc/passwd")
    elif kind == "bomb":
        info = zipfile.ZipInfo("bag/data/media/cam1/00000001.ts")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(256):
                f.write(block)
"#;
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(out)
        .arg(kind)
        .status()
        .unwrap();
    assert!(st.success(), "building {kind}.zip");
}

/// `witness export --session S --out OUT --reason R`: (success, stderr).
fn try_export(server: &Server, session: &str, out: &Path) -> (bool, String) {
    let o = Command::new(BIN)
        .args(["export", "--session", session, "--reason", "tamper test"])
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(&server.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// The stored object of the `i`th segment of `source`: (key, path in the local store), made
/// writable so the test can alter it as an insider with the disk would.
fn stored(server: &Server, view: &serde_json::Value, source: &str, i: usize) -> (String, PathBuf) {
    let key = recording(view, source)["segments"][i]["object_key"]
        .as_str()
        .unwrap()
        .to_string();
    let path = server.objects().join(&key);
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    (key, path)
}

/// An export reads each object once, checking it as it is written into the package: an object
/// altered in the store, or gone, found after other media were already written, fails the
/// export with the object named; the command line leaves no file (neither the package nor its
/// partial), and a download already prepared is cut off and its job failed.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_altered_or_missing_in_the_store_fails_the_export_midway() {
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = record(&server, &room, "ZB-MIDWAY", 3).await;
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Prepared before the store is touched: the job reads no media, the download will.
    let (status, job) = server
        .call(
            "POST",
            &format!("/api/v1/sessions/{session}/exports"),
            Some(serde_json::json!({"reason": "tamper test"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let t = std::time::Instant::now();
    let ready = loop {
        let j = server
            .ok("GET", &format!("/api/v1/exports/{id}"), None)
            .await;
        if j["state"] != "preparing" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready["state"], "ready", "{ready}");

    // cam2's second segment, same length, one bit changed: cam1's media go out before it.
    let (altered, path) = stored(&server, &view, "cam2", 1);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    for name in ["altered.tar", "altered.zip"] {
        let out = w.join(name);
        let (ok, err) = try_export(&server, &session, &out);
        assert!(!ok, "{name}: export of an altered object must fail");
        assert!(
            err.contains(&altered) && err.contains("does not match its chain entry"),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}: no package by the asked name");
        assert!(
            !out.with_extension("partial").exists(),
            "{name}: the partial file is removed"
        );
    }

    // The download of the job prepared before: the transfer fails, the job says why.
    let download = ready["download"].as_str().unwrap().to_string();
    match server.request("GET", &download).send().await {
        Err(_) => {}
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            let body = resp.bytes().await;
            assert!(
                body.is_err(),
                "the download must not end as if whole ({} bytes)",
                body.map(|b| b.len()).unwrap_or_default()
            );
        }
    }
    let t = std::time::Instant::now();
    let failed = loop {
        let j = server
            .ok("GET", &format!("/api/v1/exports/{id}"), None)
            .await;
        if j["state"] == "failed" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed["error"].as_str().unwrap().contains(&altered),
        "{failed}"
    );
    let (status, body) = server.call("GET", &download, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("export_not_ready")),
        "{body}"
    );

    // Put back, the same export succeeds and verifies; then an object gone is named too.
    std::fs::write(&path, &original).unwrap();
    let out = w.join("whole.tar");
    let (ok, err) = try_export(&server, &session, &out);
    assert!(ok, "{err}");
    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, text) = verify(&out, &["--public-key", &key]);
    assert_eq!(code, 0, "{text}");
    let (gone, path) = stored(&server, &view, "cam2", 2);
    std::fs::remove_file(&path).unwrap();
    let out = w.join("missing.tar");
    let (ok, err) = try_export(&server, &session, &out);
    assert!(!ok, "export with an object missing must fail");
    assert!(
        err.contains(&gone) && err.contains("missing from the store"),
        "{err}"
    );
    assert!(!out.exists() && !out.with_extension("partial").exists());
}

/// A segment's SM3 is computed when the chain writer seals it, from the same bytes as its
/// SHA-256, and kept beside its chain entry (`media_digests`), so that an export reads each
/// object once and checks only its SHA-256. Every media segment has its digest, equal to what
/// OpenSSL computes of the stored object; the package lists it; and a digest changed behind the
/// guards (the owner's rights) gives a package the offline verifier fails, naming the file:
/// caught, never certified.
#[tokio::test(flavor = "multi_thread")]
async fn sm3_is_kept_when_sealed_and_a_forged_digest_fails_the_package() {
    use sqlx::Executor;
    let sim = Simulator::start(&[]);
    let server = Server::start().await;
    let room = server.demo_room(&sim, "default").await;
    let session = record(&server, &room, "ZB-SM3", 2).await;
    let view = server
        .ok("GET", &format!("/api/v1/sessions/{session}"), None)
        .await;
    let mut db = crate::db_guards::insider(&server).await;
    let digest_of = |rec: &str, seq: i64| {
        sqlx::query_scalar::<_, String>(
            "SELECT sm3 FROM media_digests WHERE recording_id = $1 AND seq = $2",
        )
        .bind(rec.to_string())
        .bind(seq)
    };
    let mut checked = 0;
    for source in ["cam1", "cam2", "mic1"] {
        let rec = recording(&view, source);
        let rec_id = rec["id"].as_str().unwrap();
        for seg in rec["segments"].as_array().unwrap() {
            let seq = seg["seq"].as_i64().unwrap();
            let kept = digest_of(rec_id, seq).fetch_one(&mut db).await.unwrap();
            let path = server.objects().join(seg["object_key"].as_str().unwrap());
            let o = Command::new("openssl")
                .args(["dgst", "-sm3", "-r"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(o.status.success(), "openssl dgst -sm3");
            let openssl = String::from_utf8_lossy(&o.stdout);
            assert_eq!(
                openssl.split_whitespace().next(),
                Some(kept.as_str()),
                "{source} seq {seq}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} segments checked");

    let key = server.ok("GET", "/api/v1/keys", None).await["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.tar");
    export(&server, &session, &good);
    let (code, out) = verify(&good, &["--public-key", &key]);
    assert_eq!(code, 0, "{out}");
    let bag = unpack(&good, &work.path().join("good"));
    let first = &media(&bag, "cam1")[0];
    let listed = std::fs::read_to_string(bag.join("manifest-sm3.txt")).unwrap();
    let name = first.file_name().unwrap().to_string_lossy().to_string();
    let cam1 = recording(&view, "cam1");
    let seg = cam1["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["object_key"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{name}"))
        })
        .unwrap_or_else(|| panic!("no segment for {name}"));
    let seq = seg["seq"].as_i64().unwrap();
    let rec_id = cam1["id"].as_str().unwrap();
    let kept = digest_of(rec_id, seq).fetch_one(&mut db).await.unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&kept) && l.ends_with(&name)),
        "{name} with {kept} in manifest-sm3.txt:\n{listed}"
    );

    // The guard holds against the application's rights; the owner drops it and forges.
    let forged = "0".repeat(64);
    let update = format!(
        "UPDATE media_digests SET sm3 = '{forged}' WHERE recording_id = '{rec_id}' AND seq = {seq}"
    );
    let refused = db.execute(update.as_str()).await.unwrap_err().to_string();
    assert!(refused.contains("append-only"), "{refused}");
    if server.db.starts_with("postgres") {
        db.execute("DROP TRIGGER media_digests_guard ON media_digests")
            .await
            .unwrap();
    } else {
        db.execute("DROP TRIGGER media_digests_no_update")
            .await
            .unwrap();
    }
    db.execute(update.as_str()).await.unwrap();
    let bad = work.path().join("bad.tar");
    export(&server, &session, &bad);
    let (code, out) = verify(&bad, &["--public-key", &key]);
    assert_eq!(code, 1, "a forged SM3 must fail the package:\n{out}");
    assert!(
        out.contains(&name) && out.contains("sm3 mismatch"),
        "the file and the digest named:\n{out}"
    );
}
