//! WORM enforced by the storage itself: S3 Object Lock on a real SeaweedFS (`weed mini`).
//!
//! The server runs with a real identity, so it checks every SigV4 signature (a wrong secret is
//! refused): what succeeds below was signed correctly by `witness::worm`, and what is refused is
//! refused by the server's Object Lock, not by Witness. An `anonymous` identity keeps the
//! unsigned set-up requests of `s3.rs` working.

use std::time::Duration;

use chrono::Utc;
use object_store::ObjectStore;
use object_store::path::Path;
use witness::config::StoreConfig;
use witness::worm::{self, WormError};

use crate::s3::SeaweedFs;

const SECRET: &str = "worm-test-secret-0d9f";

fn start() -> (SeaweedFs, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s3.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"identities":[
                {{"name":"witness","credentials":[{{"accessKey":"witness-test","secretKey":"{SECRET}"}}],
                  "actions":["Admin","Read","Write","List","Tagging"]}},
                {{"name":"anonymous","actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )
    .unwrap();
    let s3 = SeaweedFs::start_with(&[format!("-s3.config={}", config.display())]);
    (s3, dir)
}

fn config(s3: &SeaweedFs, bucket: &str, secret: &str) -> StoreConfig {
    StoreConfig::S3 {
        bucket: bucket.into(),
        endpoint: Some(format!("http://127.0.0.1:{}", s3.s3_port)),
        region: "us-east-1".into(),
        access_key_id: "witness-test".into(),
        secret_access_key: secret.into(),
        path_style: true,
        object_lock: true,
    }
}

async fn put(cfg: &StoreConfig, key: &str) -> String {
    let store = witness::store::open(cfg).unwrap();
    store
        .put(&Path::from(key), b"segment bytes".to_vec().into())
        .await
        .unwrap();
    worm::object_version(cfg, key)
        .await
        .unwrap()
        .expect("a locked bucket is versioned")
}

/// Refused by the server's Object Lock: 403 AccessDenied from SeaweedFS.
fn assert_refused(result: Result<(), WormError>, what: &str) {
    let err = result.expect_err(what);
    assert!(
        matches!(err, WormError::Refused { status: 403, .. }) && err.code() == Some("AccessDenied"),
        "{what}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worm_object_lock_is_enforced_by_the_server() {
    let (s3, _identities) = start();
    let cfg = config(&s3, "locked-evidence", SECRET);

    // The server verifies signatures: a wrong secret gets nowhere.
    let err = worm::create_locked_bucket(&config(&s3, "x", "wrong"), "locked-evidence", 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err}");
    assert!(
        err.to_string()
            .contains("create locked bucket locked-evidence"),
        "{err}"
    );

    // Object Lock, default COMPLIANCE retention of one day (the smallest S3 allows).
    worm::create_locked_bucket(&cfg, "locked-evidence", 1)
        .await
        .unwrap();
    let key = "ZB-WORM/cam1/000001.ts";
    let version = put(&cfg, key).await;
    let lock = worm::object_lock(&cfg, key, Some(&version)).await.unwrap();
    assert_eq!(lock.version.as_deref(), Some(version.as_str()));
    assert_eq!(lock.mode.as_deref(), Some("COMPLIANCE"), "{lock:?}");
    let default_until = lock.retain_until.expect("default retention applied");
    let day = (default_until - Utc::now()).num_seconds();
    assert!((86_000..=86_400).contains(&day), "{lock:?}");

    // Extending works (the policy date is later than the legal minimum).
    let until = Utc::now() + chrono::Duration::days(2);
    worm::retain_until(&cfg, key, &version, until)
        .await
        .unwrap();
    let lock = worm::object_lock(&cfg, key, Some(&version)).await.unwrap();
    let extended = lock.retain_until.unwrap();
    assert!((extended - until).num_seconds().abs() <= 1, "{lock:?}");

    // (a) A versioned delete before retain-until: refused by the server.
    assert_refused(
        worm::delete_version(&cfg, key, &version).await,
        "delete before retain-until",
    );
    // (b) Shortening the retention, even to a minute ahead: refused, the date unchanged.
    assert_refused(
        worm::retain_until(
            &cfg,
            key,
            &version,
            Utc::now() + chrono::Duration::minutes(1),
        )
        .await,
        "shorten retention",
    );
    let lock = worm::object_lock(&cfg, key, Some(&version)).await.unwrap();
    assert_eq!(lock.retain_until, Some(extended), "{lock:?}");

    // A plain delete through object_store only hides the object behind a delete marker; the
    // locked version is still there.
    let store = witness::store::open(&cfg).unwrap();
    store.delete(&Path::from(key)).await.unwrap();
    let lock = worm::object_lock(&cfg, key, Some(&version)).await.unwrap();
    assert_eq!(lock.version.as_deref(), Some(version.as_str()));
    assert_eq!(lock.retain_until, Some(extended), "{lock:?}");

    // (c) A legal hold alone, without any retention: in a locked bucket with no default rule.
    let scratch = config(&s3, "locked-scratch", SECRET);
    worm::create_bucket_with_object_lock(&scratch, "locked-scratch")
        .await
        .unwrap();
    let held = "ZB-WORM/held/000001.ts";
    let held_version = put(&scratch, held).await;
    let lock = worm::object_lock(&scratch, held, Some(&held_version))
        .await
        .unwrap();
    assert_eq!((lock.mode, lock.retain_until), (None, None), "no retention");
    worm::set_legal_hold(&scratch, held, &held_version, true)
        .await
        .unwrap();
    assert!(
        worm::object_lock(&scratch, held, Some(&held_version))
            .await
            .unwrap()
            .legal_hold
    );
    assert_refused(
        worm::delete_version(&scratch, held, &held_version).await,
        "delete under legal hold",
    );

    // A short retention, then the hold released: refused until retain-until, then deleted.
    let short = Utc::now() + chrono::Duration::seconds(4);
    worm::retain_until(&scratch, held, &held_version, short)
        .await
        .unwrap();
    worm::set_legal_hold(&scratch, held, &held_version, false)
        .await
        .unwrap();
    if Utc::now() + chrono::Duration::seconds(1) < short {
        assert_refused(
            worm::delete_version(&scratch, held, &held_version).await,
            "delete before a short retain-until",
        );
    }
    let wait = (short - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1500);
    tokio::time::sleep(wait).await;
    worm::delete_version(&scratch, held, &held_version)
        .await
        .unwrap();
    let gone = worm::object_lock(&scratch, held, Some(&held_version))
        .await
        .unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");
    assert!(gone.to_string().contains(held), "{gone}");
}

/// The whole application on Object Lock storage: versions recorded, retention set by the policy,
/// holds mirrored, and a destruction that the law allows but the bucket's retention does not is
/// refused by the server, with nothing registered as destroyed.
#[tokio::test(flavor = "multi_thread")]
async fn witness_keeps_evidence_under_object_lock() {
    let (s3, _identities) = start();
    let store = format!(
        "[store]\nkind = \"s3\"\nbucket = \"evidence-locked\"\nendpoint = \"http://127.0.0.1:{}\"\naccess_key_id = \"witness-test\"\nsecret_access_key = \"{SECRET}\"\nobject_lock = true\n",
        s3.s3_port
    );
    let sim = crate::harness::Simulator::start(&[]);
    let server = crate::harness::Server::start_with(&store).await;
    let out = server.cli(&["store-init"]);
    assert!(
        out.contains("default COMPLIANCE retention 5479 days"),
        "{out}"
    );
    let cfg = config(&s3, "evidence-locked", SECRET);

    let room = server.demo_room(&sim, "default").await;
    let started = server
        .ok(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(serde_json::json!({"project_code": "QT-2005-09", "reason": "test: unbooked", "session_code": "KB-01", "kind": "other", "category": "other"})),
        )
        .await;
    let session = started["id"].as_str().unwrap().to_string();
    server
        .wait_session(&session, "2 segments", Duration::from_secs(30), |s| {
            crate::harness::segments(s, "cam1") >= 2
        })
        .await;
    let stopped = server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;
    let key = crate::harness::recording(&stopped, "cam1")["segments"][0]["object_key"]
        .as_str()
        .unwrap()
        .to_string();

    // Every object is under COMPLIANCE retention for at least the legal minimum.
    let lock = worm::object_lock(&cfg, &key, None).await.unwrap();
    let version = lock.version.clone().expect("versioned");
    assert_eq!(lock.mode.as_deref(), Some("COMPLIANCE"), "{lock:?}");
    assert!(
        lock.retain_until.unwrap() > Utc::now() + chrono::Duration::days(5470),
        "{lock:?}"
    );

    // A complaint's hold reaches the object as an S3 legal hold.
    let (status, hold) = server
        .call_as(
            Some("regulator"),
            "POST",
            "/api/v1/projects/QT-2005-09/complaints",
            Some(serde_json::json!({"kind": "complaint", "reference": "投诉〔2026〕5号", "reason": "r"})),
        )
        .await;
    assert_eq!(status, 201, "{hold}");
    let t = std::time::Instant::now();
    while !worm::object_lock(&cfg, &key, Some(&version))
        .await
        .unwrap()
        .legal_hold
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "legal hold never mirrored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_refused(
        worm::delete_version(&cfg, &key, &version).await,
        "delete under hold",
    );
    let release = format!("/api/v1/holds/{}/release", hold["id"].as_str().unwrap());
    server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &release,
            Some(serde_json::json!({"reason": "撤回"})),
        )
        .await;
    let t = std::time::Instant::now();
    while worm::object_lock(&cfg, &key, Some(&version))
        .await
        .unwrap()
        .legal_hold
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "legal hold never released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Shortening is refused by the server.
    assert_refused(
        worm::retain_until(&cfg, &key, &version, Utc::now() + chrono::Duration::days(1)).await,
        "shorten retention",
    );

    // The law would allow destruction (project closed in 2005), the bucket's retention does not:
    // the server refuses the versioned delete, nothing is registered, the request can be retried.
    // A project closed long ago (the API refuses a date before its recordings).
    server
        .event_of_the_past("QT-2005-09", "closed", "2005-01-01T00:00:00Z")
        .await;
    let (status, req) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            "/api/v1/destructions",
            Some(serde_json::json!({"session_ids": [session], "appraisal": {"committee": "c", "conclusion": "销毁", "reference": "鉴〔2026〕1号"}})),
        )
        .await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap();
    let token = server.another_user("t-regulator-2", "regulator", &["other"]);
    let decision = format!("/api/v1/destructions/{id}/decision");
    let approve = serde_json::json!({"decision": "approve", "reason": "ok"});
    server
        .call_as(Some("regulator"), "POST", &decision, Some(approve.clone()))
        .await;
    server
        .http
        .post(server.url(&decision))
        .bearer_auth(&token)
        .json(&approve)
        .send()
        .await
        .unwrap();
    let (status, b) = server
        .call_as(
            Some("archive_clerk"),
            "POST",
            &format!("/api/v1/destructions/{id}/execute"),
            None,
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (502, Some("store_unavailable")),
        "{b}"
    );
    let register = server
        .ok(
            "GET",
            &format!("/api/v1/destruction-register?session={session}"),
            None,
        )
        .await;
    assert_eq!(register.as_array().unwrap().len(), 0, "{register}");
    assert!(
        worm::object_lock(&cfg, &key, Some(&version))
            .await
            .unwrap()
            .version
            .is_some(),
        "still there"
    );
    let again = server
        .call_as(
            Some("archive_clerk"),
            "GET",
            &format!("/api/v1/destructions/{id}"),
            None,
        )
        .await
        .1;
    assert_eq!(
        again["state"], "approved",
        "can be retried once the retention allows: {again}"
    );
    let report = server
        .ok("GET", &format!("/api/v1/sessions/{session}/verify"), None)
        .await;
    crate::harness::assert_report_intact(&report, "session");
}
