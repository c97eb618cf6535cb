//! Keys people can pin: the offline verifier says INTACT only for a package signed by a key it
//! was given (`--public-key`, `--trust FILE`, the default trust files); a package from another
//! server, consistent in itself, is UNTRUSTED KEY (exit 4) with how to obtain the fingerprint;
//! tampering stays TAMPERED whatever the key; a rotated key keeps verifying what it signed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;

use crate::harness::*;

/// Records a short session in `room` of `server` and stops it.
async fn record(server: &Server, room: &str, project: &str) -> String {
    let session = server.start_recording(room, project).await;
    server
        .wait_session(&session, "segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    session
}

fn export(server: &Server, session: &str, out: &Path) {
    server.cli(&[
        "export",
        "--session",
        session,
        "--reason",
        "pinned keys test",
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// `witness verify PKG EXTRA…` with the given home folders (None: an empty one, so no default
/// trust file is found).
fn verify_with_env(
    pkg: &Path,
    extra: &[&str],
    home: Option<&Path>,
    xdg: Option<&Path>,
) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("verify")
        .arg(pkg)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("HOME", home.unwrap_or(Path::new("/nonexistent")))
        .env_remove("XDG_CONFIG_HOME");
    if let Some(x) = xdg {
        cmd.env("XDG_CONFIG_HOME", x);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn verify(pkg: &Path, extra: &[&str]) -> (i32, String) {
    verify_with_env(pkg, extra, None, None)
}

/// The current key of a server as `GET /api/v1/keys` publishes it.
async fn current_key(server: &Server) -> (String, String, String) {
    let keys = server.ok("GET", "/api/v1/keys", None).await;
    let current = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "current")
        .unwrap_or_else(|| panic!("{keys}"))
        .clone();
    assert_eq!(keys["current"], current["key_id"], "{keys}");
    let s = |f: &str| current[f].as_str().unwrap().to_string();
    (s("key_id"), s("fingerprint"), s("public_key"))
}

fn assert_untrusted(code: i32, out: &str, fingerprint: &str) {
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("UNTRUSTED KEY"), "{out}");
    assert!(out.contains(fingerprint), "names the signing key: {out}");
    for how in ["GET /api/v1/keys", "console", "witness keys", "--trust"] {
        assert!(
            out.contains(how),
            "says how to obtain the fingerprint ({how}): {out}"
        );
    }
    assert!(!out.contains("INTACT"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_pinned_keys_make_a_package_intact() {
    let sim = Simulator::start(&[]);
    let mut first = Server::start().await;
    let second = Server::start().await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // GET /api/v1/keys: id = fingerprint = first 16 bytes of SHA-256 of the public key.
    let (id1, fp1, pk1) = current_key(&first).await;
    let (id2, fp2, _pk2) = current_key(&second).await;
    assert_ne!(id1, id2, "each server has its own key");
    let raw = hex::decode(&pk1).unwrap();
    assert_eq!(id1, hex::encode(&sha2::Sha256::digest(&raw)[..16]));
    assert_eq!(fp1.replace(' ', ""), id1);
    assert_eq!(fp1.split(' ').count(), 8, "{fp1}");
    // And the CLI on the server shows the same.
    let listed = first.cli(&["keys"]);
    assert!(listed.contains(&fp1) && listed.contains(&pk1), "{listed}");

    let room1 = first.demo_room(&sim, "default").await;
    let room2 = second.demo_room(&sim, "default").await;
    let s1 = record(&first, &room1, "ZB-PIN-1").await;
    let s2 = record(&second, &room2, "ZB-PIN-2").await;
    let pkg1 = w.join("first.tar");
    let pkg2 = w.join("second.tar");
    export(&first, &s1, &pkg1);
    export(&second, &s2, &pkg2);

    // No key given: even a genuine package is only UNTRUSTED KEY.
    let (code, out) = verify(&pkg1, &[]);
    assert_untrusted(code, &out, &fp1);
    assert!(out.contains("you gave no trusted key"), "{out}");
    // The second server's package, consistent in itself, checked against the first's key.
    let (code, out) = verify(&pkg2, &["--public-key", &pk1]);
    assert_untrusted(code, &out, &fp2);
    let (code, out) = verify(&pkg2, &["--public-key", &pk1, "--json"]);
    assert_eq!(code, 4, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "UNTRUSTED_KEY", "{report}");
    assert_eq!(report["intact"], false);
    assert_eq!(report["signed_by"][0]["key_id"], id2.as_str());
    assert_eq!(report["signed_by"][0]["trusted"], false);
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let (code, out) = verify(&pkg1, &["--public-key", &pk1]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT") && out.contains(&fp1), "{out}");

    // A trust file with the first server's fingerprint (grouped, with comments).
    let trust = w.join("trusted-keys");
    std::fs::write(
        &trust,
        format!("# 交易中心 key, read off GET /api/v1/keys\n\n{fp1}   # first server\n"),
    )
    .unwrap();
    let t = trust.to_str().unwrap();
    let (code, out) = verify(&pkg2, &["--trust", t]);
    assert_untrusted(code, &out, &fp2);
    assert!(out.contains(t), "names where trust came from: {out}");
    let (code, out) = verify(&pkg1, &["--trust", t]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");

    // The default places: $XDG_CONFIG_HOME/witness/trusted-keys, else ~/.config/witness/….
    let xdg = w.join("xdg");
    std::fs::create_dir_all(xdg.join("witness")).unwrap();
    std::fs::copy(&trust, xdg.join("witness/trusted-keys")).unwrap();
    let home = w.join("home");
    std::fs::create_dir_all(home.join(".config/witness")).unwrap();
    std::fs::copy(&trust, home.join(".config/witness/trusted-keys")).unwrap();
    let empty_home = w.join("empty-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    let (code, out) = verify_with_env(&pkg1, &[], Some(&empty_home), Some(&xdg));
    assert_eq!(code, 0, "XDG_CONFIG_HOME honoured: {out}");
    let (code, out) = verify_with_env(&pkg1, &[], Some(&home), None);
    assert_eq!(code, 0, "~/.config honoured: {out}");
    let (code, out) = verify_with_env(&pkg2, &[], Some(&home), None);
    assert_untrusted(code, &out, &fp2);
    // XDG_CONFIG_HOME, when set, is the user's folder: ~/.config is not read then.
    let (code, out) = verify_with_env(&pkg1, &[], Some(&home), Some(&empty_home));
    assert_eq!(code, 4, "{out}");
    // A malformed trust file is refused, not ignored.
    let bad = w.join("bad-keys");
    std::fs::write(&bad, "not a key\n").unwrap();
    let (code, out) = verify(&pkg1, &["--trust", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("line 1"), "{out}");

    // Tampering stays TAMPERED whatever the key.
    let bag = w.join("tampered");
    tar::Archive::new(std::fs::File::open(&pkg1).unwrap())
        .unpack(&bag)
        .unwrap();
    let top = std::fs::read_dir(&bag)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let media = top.join("data/media/cam1");
    let seg = std::fs::read_dir(&media)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    for extra in [vec!["--trust", t], vec![]] {
        let (code, out) = verify(&top, &extra);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("TAMPERED"), "{out}");
    }

    // A signature without key id (as written before key ids) is the enclosed key's.
    let legacy = w.join("legacy");
    tar::Archive::new(std::fs::File::open(&pkg1).unwrap())
        .unpack(&legacy)
        .unwrap();
    let top = std::fs::read_dir(&legacy)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sig = top.join("tagmanifest-sha256.txt.sig");
    let text = std::fs::read_to_string(&sig).unwrap();
    let (named, bare) = text.trim().split_once(':').unwrap();
    assert_eq!(named, id1, "the signature names its key");
    std::fs::write(&sig, format!("{bare}\n")).unwrap();
    let (code, out) = verify(&top, &["--trust", t]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&top, &[]);
    assert_untrusted(code, &out, &fp1);

    // Rotation: stop the server, rotate, start it again; the old key is kept as retired.
    first.kill();
    let rotated = first.cli(&["keys", "rotate"]);
    assert!(rotated.contains(&fp1), "{rotated}");
    first.restart().await;
    let (id3, fp3, pk3) = current_key(&first).await;
    assert_ne!(id3, id1);
    let keys = first.ok("GET", "/api/v1/keys", None).await;
    let listed: Vec<(String, String)> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (id3.clone(), "current".into()),
            (id1.clone(), "retired".into())
        ],
        "{keys}"
    );
    assert_eq!(keys["keys"][1]["public_key"], pk1.as_str());
    assert!(
        first
            .dir
            .path()
            .join(format!("data/keys/retired/{id1}.pub"))
            .exists()
    );

    let s3 = record(&first, &room1, "ZB-PIN-3").await;
    // Online, the server verifies old and new sessions with its own keys.
    for s in [&s1, &s3] {
        let report = first
            .ok("GET", &format!("/api/v1/sessions/{s}/verify"), None)
            .await;
        crate::harness::assert_report_intact(&report, "session");
        let (code, out) = first.verify_cli(s);
        assert_eq!(code, 0, "{out}");
    }
    // The audit trail's checkpoints signed by the retired key still count.
    let audit = first.cli(&["verify", "--audit"]);
    assert!(audit.contains("audit trail intact"), "{audit}");

    // Offline: the old session exported after rotation carries both signatures (session manifest
    // by the old key, tag manifest by the new); a trust file with both keys makes both INTACT.
    let old_after = w.join("old-after-rotation.tar");
    let new_pkg = w.join("new.tar");
    export(&first, &s1, &old_after);
    export(&first, &s3, &new_pkg);
    let both = w.join("both-keys");
    std::fs::write(&both, format!("{fp1}\n{pk3}\n")).unwrap();
    let b = both.to_str().unwrap();
    for p in [&old_after, &new_pkg, &pkg1] {
        let (code, out) = verify(p, &["--trust", b]);
        assert_eq!(code, 0, "{}: {out}", p.display());
        assert!(out.contains("INTACT"), "{out}");
    }
    // Only the new key pinned: the old session's manifest is by a key not given.
    let (code, out) = verify(&old_after, &["--public-key", &pk3]);
    assert_untrusted(code, &out, &fp1);
    let (code, out) = verify(&new_pkg, &["--public-key", &pk3]);
    assert_eq!(code, 0, "{out}");
    // Only the old key pinned: the package made before rotation stays INTACT.
    let (code, out) = verify(&pkg1, &["--trust", t]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&new_pkg, &["--trust", t]);
    assert_untrusted(code, &out, &fp3);
}
