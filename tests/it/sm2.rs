//! SM2 with SM3 beside Ed25519 (`[signing] sm2 = true`): the SM2 key published by
//! `GET /api/v1/keys` and `witness keys sm2-pem`; a package verifies INTACT offline only with
//! both keys trusted; its SM2 signatures verify with OpenSSL (an independent implementation,
//! distinguishing ID 1234567812345678); a forged or removed SM2 signature is TAMPERED; audit
//! checkpoints carry SM2 signatures that `witness verify --audit` checks.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use sqlx::{Connection, Executor};

use crate::harness::*;

const DISTID: &str = "distid:1234567812345678";

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

/// `witness verify PKG EXTRA…` with no default trust file in reach.
fn verify(pkg: &Path, extra: &[&str]) -> (i32, String) {
    run(Command::new(BIN)
        .arg("verify")
        .arg(pkg)
        .args(extra)
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME"))
}

/// An SM2 signature as Witness writes it (`{key_id}:{r‖s hex}`) in DER, as OpenSSL reads it.
fn der(signature: &str) -> Vec<u8> {
    let raw = hex::decode(signature.trim().split_once(':').unwrap().1).unwrap();
    assert_eq!(raw.len(), 64, "r‖s: {signature}");
    let int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        if v.first().is_none_or(|&x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&raw[..32]), int(&raw[32..])].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// OpenSSL's verdict on an SM2 signature (Witness's form) over `message` with the PEM key.
fn openssl_verifies(pem: &Path, message: &[u8], signature: &str, work: &Path) -> bool {
    let msg = work.join("message");
    let sig = work.join("signature.der");
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, der(signature)).unwrap();
    let (code, out) = run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(pem)
        .args(["-rawin", "-digest", "sm3", "-pkeyopt", DISTID, "-in"])
        .arg(&msg)
        .arg("-sigfile")
        .arg(&sig));
    assert!(
        code == 0 || out.contains("Verification Failure") || out.contains("failure"),
        "openssl ran: {out}"
    );
    code == 0 && out.contains("Signature Verified Successfully")
}

#[tokio::test(flavor = "multi_thread")]
async fn sm2_signs_beside_ed25519_and_openssl_agrees() {
    let sim = Simulator::start(&[]);
    let server = Server::start_with("[signing]\nsm2 = true\n").await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // GET /api/v1/keys: the Ed25519 key and the SM2 key, both current.
    let keys = server.ok("GET", "/api/v1/keys", None).await;
    let find = |alg: &str| -> Value {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["algorithm"] == alg && k["status"] == "current")
            .unwrap_or_else(|| panic!("no current {alg} key: {keys}"))
            .clone()
    };
    let (ed, sm2) = (find("ed25519"), find("sm2"));
    let sm2_pk = sm2["public_key"].as_str().unwrap().to_string();
    let ed_pk = ed["public_key"].as_str().unwrap().to_string();
    assert_eq!(sm2_pk.len(), 130, "uncompressed point: {sm2}");
    assert!(sm2_pk.starts_with("04"), "{sm2}");
    let sm2_id = sm2["key_id"].as_str().unwrap().to_string();
    assert_eq!(
        sm2_id,
        hex::encode(&sha2::Sha256::digest(hex::decode(&sm2_pk).unwrap())[..16])
    );
    assert_eq!(
        sm2["fingerprint"].as_str().unwrap().replace(' ', ""),
        sm2_id
    );
    // The CLI lists it too, and exports its PEM: the same as data/keys/sm2-public.pem.
    let listed = server.cli(&["keys"]);
    assert!(
        listed.contains(&sm2_pk) && listed.contains("sm2"),
        "{listed}"
    );
    let pem_text = server.cli(&["keys", "sm2-pem"]);
    assert!(
        pem_text.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{pem_text}"
    );
    let pem = w.join("sm2.pem");
    std::fs::write(&pem, &pem_text).unwrap();
    // OpenSSL reads it as the same SM2 point.
    let (code, out) = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(&pem));
    assert_eq!(code, 0, "{out}");
    let digits: String = out
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect::<String>()
        .replace(':', "");
    assert!(digits.contains(&sm2_pk), "{out}");
    assert!(out.contains("SM2"), "{out}");

    // A recorded, stopped and exported session.
    let room = server.demo_room(&sim, "default").await;
    let session = server.start_recording(&room, "ZB-SM2-1").await;
    server
        .wait_session(&session, "segments", Duration::from_secs(30), |s| {
            segments(s, "cam1") >= 2
        })
        .await;
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let pkg = w.join("sm2.tar");
    server.cli(&[
        "export",
        "--session",
        &session,
        "--reason",
        "sm2 test",
        "--out",
        pkg.to_str().unwrap(),
    ]);

    // Online verification checks both signatures of the stored manifest.
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");

    // Offline: INTACT with both keys trusted; UNTRUSTED KEY (exit 4) naming the SM2 key with
    // only the Ed25519 key; fingerprints work as well as public keys.
    let (code, out) = verify(&pkg, &["--public-key", &ed_pk, "--public-key", &sm2_pk]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("INTACT"), "{out}");
    let (code, out) = verify(&pkg, &["--public-key", &ed_pk]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("UNTRUSTED KEY"), "{out}");
    assert!(out.contains(sm2["fingerprint"].as_str().unwrap()), "{out}");
    let trust = w.join("trusted-keys");
    std::fs::write(
        &trust,
        format!(
            "# ed25519\n{}\n# sm2\n{}\n",
            ed["fingerprint"].as_str().unwrap(),
            sm2["fingerprint"].as_str().unwrap()
        ),
    )
    .unwrap();
    let (code, out) = verify(&pkg, &["--trust", trust.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&pkg, &["--json", "--trust", trust.to_str().unwrap()]);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&sm2_id), "the SM2 key signed: {json}");

    // The package's SM2 signatures verify with OpenSSL; an altered message does not.
    let bag = w.join("bag");
    std::fs::create_dir_all(&bag).unwrap();
    let (code, out) = run(Command::new("tar").arg("-xf").arg(&pkg).arg("-C").arg(&bag));
    assert_eq!(code, 0, "{out}");
    let root = std::fs::read_dir(&bag)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("bagit.txt").exists())
        .unwrap_or(bag.clone());
    let tm = std::fs::read(root.join("tagmanifest-sha256.txt")).unwrap();
    let tm_sig = std::fs::read_to_string(root.join("tagmanifest-sha256.txt.sm2.sig")).unwrap();
    assert!(tm_sig.starts_with(&format!("{sm2_id}:")), "{tm_sig}");
    assert!(openssl_verifies(&pem, &tm, &tm_sig, w));
    let manifest = std::fs::read(root.join("data/chain/manifest.json")).unwrap();
    let m_sig = std::fs::read_to_string(root.join("data/chain/manifest.json.sm2.sig")).unwrap();
    assert!(openssl_verifies(&pem, &manifest, &m_sig, w));
    let mut altered = manifest.clone();
    altered[10] ^= 1;
    assert!(!openssl_verifies(&pem, &altered, &m_sig, w));
    let keys_txt = std::fs::read_to_string(root.join("server-keys.txt")).unwrap();
    assert!(
        keys_txt.contains(&format!("{sm2_pk}  {sm2_id}  current")),
        "{keys_txt}"
    );

    // A forged SM2 signature (a valid one over other bytes) is TAMPERED, whatever the trust.
    let both = [
        "--public-key",
        ed_pk.as_str(),
        "--public-key",
        sm2_pk.as_str(),
    ];
    let (code, out) = verify(&root, &both);
    assert_eq!(code, 0, "the unpacked folder is INTACT first: {out}");
    let forged = tm_sig.replace(
        tm_sig.trim().split_once(':').unwrap().1,
        m_sig.trim().split_once(':').unwrap().1,
    );
    std::fs::write(root.join("tagmanifest-sha256.txt.sm2.sig"), &forged).unwrap();
    let (code, out) = verify(&root, &both);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED"), "{out}");
    assert!(
        out.contains("tagmanifest-sha256.txt: SM2 signature does not verify"),
        "{out}"
    );
    // Removed: the signed server-keys.txt says SM2 signed, so it is missed.
    std::fs::remove_file(root.join("tagmanifest-sha256.txt.sm2.sig")).unwrap();
    let (code, out) = verify(&root, &both);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tagmanifest-sha256.txt.sm2.sig missing"),
        "{out}"
    );
    // An Ed25519 signature put where the SM2 one belongs is no SM2 signature.
    let ed_sig = std::fs::read_to_string(root.join("tagmanifest-sha256.txt.sig")).unwrap();
    std::fs::write(root.join("tagmanifest-sha256.txt.sm2.sig"), &ed_sig).unwrap();
    let (code, out) = verify(&root, &both);
    assert_eq!(code, 1, "{out}");
    std::fs::write(root.join("tagmanifest-sha256.txt.sm2.sig"), &tm_sig).unwrap();
    let (code, out) = verify(&root, &both);
    assert_eq!(code, 0, "restored: {out}");

    // Audit checkpoints (every 0.6 s in tests) carry SM2 signatures; OpenSSL agrees; the audit
    // verifier checks them and catches one an insider replaced.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, out) = run(Command::new(BIN)
        .args(["verify", "--audit", "--config"])
        .arg(&server.config));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit trail intact"), "{out}");
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&server.db).await.unwrap();
    let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
        "SELECT seq, entry_hash, at, sm2_public_key, sm2_signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    let (seq, hash, at, pk, sig) = rows.last().unwrap().clone();
    assert_eq!(pk, sm2_pk);
    let message = format!("witness-audit-checkpoint/1\nseq: {seq}\nhash: {hash}\nat_us: {at}\n");
    assert!(openssl_verifies(&pem, message.as_bytes(), &sig, w));
    drop_checkpoint_guards(&mut db).await;
    let other = &rows[0].4;
    sqlx::query("UPDATE audit_checkpoints SET sm2_signature = $1 WHERE seq = $2")
        .bind(if rows.len() > 1 {
            other.clone()
        } else {
            forged.clone()
        })
        .bind(seq)
        .execute(&mut db)
        .await
        .unwrap();
    let (code, out) = run(Command::new(BIN)
        .args(["verify", "--audit", "--config"])
        .arg(&server.config));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "checkpoint at entry {seq}: SM2 signature does not verify"
        )),
        "{out}"
    );
}

async fn drop_checkpoint_guards(db: &mut sqlx::AnyConnection) {
    if db.backend_name().eq_ignore_ascii_case("postgresql") {
        db.execute("DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints")
            .await
            .unwrap();
    } else {
        db.execute("DROP TRIGGER audit_checkpoints_no_update")
            .await
            .unwrap();
    }
}
