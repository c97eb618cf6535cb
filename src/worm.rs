//! WORM enforced by the storage: the few S3 Object Lock requests `object_store` cannot send.
//!
//! Buckets created with Object Lock and a default COMPLIANCE retention, per-object retain-until
//! extended to the policy date, legal holds mirrored as S3 legal holds, and versioned deletes
//! for the destruction job. In COMPLIANCE mode the server itself refuses to delete a version
//! before its retain-until date or while it is under a legal hold, and refuses to shorten a
//! retention — whoever asks, with whatever credentials.
//!
//! Each request is built here and signed with `object_store`'s own SigV4 signer
//! ([`AwsAuthorizer`]) and sent with its own HTTP client, configured like the store (see
//! `store.rs`): one small module instead of a second S3 SDK. Requests are sent once; callers
//! (the destruction job) retry.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use http::{HeaderMap, Method, Request};
use md5::{Digest, Md5};
use object_store::ClientOptions;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::StoreConfig;

const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// What S3 allows unencoded in a path segment and a query value (as `object_store` does).
const STRICT: AsciiSet = NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const STRICT_PATH: AsciiSet = STRICT.remove(b'/');

#[derive(Debug, thiserror::Error)]
pub enum WormError {
    #[error("object lock needs an S3 store; {0}")]
    Config(String),
    #[error("{op} {target}: {source}")]
    Transport {
        op: &'static str,
        target: String,
        source: object_store::client::HttpError,
    },
    #[error("{op} {target}: refused by the server: HTTP {status} {code}: {message}")]
    Refused {
        op: &'static str,
        target: String,
        status: u16,
        /// The S3 error code (`AccessDenied`, `InvalidRequest` …), or the HTTP reason when the
        /// response has no body (HEAD).
        code: String,
        message: String,
    },
}

impl WormError {
    /// The server's S3 error code, when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            WormError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            WormError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The lock state of one object version as the server reports it (HEAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    /// `None` in a bucket without versioning.
    pub version: Option<String>,
    /// `COMPLIANCE` or `GOVERNANCE`; `None` without a retention.
    pub mode: Option<String>,
    pub retain_until: Option<DateTime<Utc>>,
    pub legal_hold: bool,
}

/// Creates `bucket` with Object Lock (which also turns versioning on) and a default COMPLIANCE
/// retention of `default_days` for every object put into it.
pub async fn create_locked_bucket(
    cfg: &StoreConfig,
    bucket: &str,
    default_days: u32,
) -> Result<(), WormError> {
    create_bucket_with_object_lock(cfg, bucket).await?;
    set_default_retention(cfg, bucket, default_days).await
}

/// CreateBucket with `x-amz-bucket-object-lock-enabled: true`, without a default retention:
/// each object then needs its own [`retain_until`].
pub async fn create_bucket_with_object_lock(
    cfg: &StoreConfig,
    bucket: &str,
) -> Result<(), WormError> {
    let s3 = S3::new(cfg)?;
    send(
        &s3,
        s3.create_bucket(bucket)?,
        "create locked bucket",
        bucket,
    )
    .await?;
    Ok(())
}

/// PutObjectLockConfiguration: default COMPLIANCE retention of `days` for new objects. May be
/// raised later (a policy change); objects already stored keep their own retain-until.
pub async fn set_default_retention(
    cfg: &StoreConfig,
    bucket: &str,
    days: u32,
) -> Result<(), WormError> {
    let s3 = S3::new(cfg)?;
    let req = s3.default_retention(bucket, days)?;
    send(&s3, req, "set default retention", bucket).await?;
    Ok(())
}

/// The current version id of `key` (HEAD, `x-amz-version-id`); `None` in a bucket without
/// versioning. A missing object is an error (`Refused` with status 404).
pub async fn object_version(cfg: &StoreConfig, key: &str) -> Result<Option<String>, WormError> {
    Ok(object_lock(cfg, key, None).await?.version)
}

/// Version, retention and legal hold of `key` (its current version, or `version`), by HEAD.
pub async fn object_lock(
    cfg: &StoreConfig,
    key: &str,
    version: Option<&str>,
) -> Result<ObjectLock, WormError> {
    let s3 = S3::new(cfg)?;
    let req = s3.head(key, version)?;
    let headers = send(&s3, req, "head object", &s3.target(key, version)).await?;
    Ok(parse_lock_headers(&headers))
}

/// PutObjectRetention in COMPLIANCE mode until `until` (rounded up to the whole second). The
/// server only lets a COMPLIANCE retention grow: an earlier date is refused by the server.
pub async fn retain_until(
    cfg: &StoreConfig,
    key: &str,
    version: &str,
    until: DateTime<Utc>,
) -> Result<(), WormError> {
    let s3 = S3::new(cfg)?;
    let req = s3.retention(key, version, until)?;
    send(&s3, req, "retain until", &s3.target(key, Some(version))).await?;
    Ok(())
}

/// PutObjectLegalHold ON or OFF on one version.
pub async fn set_legal_hold(
    cfg: &StoreConfig,
    key: &str,
    version: &str,
    on: bool,
) -> Result<(), WormError> {
    let s3 = S3::new(cfg)?;
    let req = s3.legal_hold(key, version, on)?;
    let op = if on {
        "place legal hold"
    } else {
        "release legal hold"
    };
    send(&s3, req, op, &s3.target(key, Some(version))).await?;
    Ok(())
}

/// DELETE `?versionId=`: removes that version for good (no delete marker). Refused by the server
/// before retain-until and under a legal hold.
pub async fn delete_version(cfg: &StoreConfig, key: &str, version: &str) -> Result<(), WormError> {
    let s3 = S3::new(cfg)?;
    let req = s3.delete_version(key, version)?;
    send(&s3, req, "delete version", &s3.target(key, Some(version))).await?;
    Ok(())
}

/// The S3 settings of a store configuration, and how to address it.
#[derive(Debug)]
struct S3<'a> {
    bucket: &'a str,
    endpoint: Option<&'a str>,
    region: &'a str,
    path_style: bool,
    credential: AwsCredential,
}

type HttpRequest = Request<HttpRequestBody>;

impl<'a> S3<'a> {
    fn new(cfg: &'a StoreConfig) -> Result<S3<'a>, WormError> {
        match cfg {
            StoreConfig::Local { .. } => Err(WormError::Config(
                "the local filesystem store has no object lock".into(),
            )),
            StoreConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                path_style,
                ..
            } => Ok(S3 {
                bucket,
                endpoint: endpoint.as_deref().map(|e| e.trim_end_matches('/')),
                region,
                path_style: *path_style,
                credential: AwsCredential {
                    key_id: access_key_id.clone(),
                    secret_key: secret_access_key.clone(),
                    token: None,
                },
            }),
        }
    }

    /// The URL of `bucket`, addressed as `object_store` addresses the configured one: path
    /// style appends it to the endpoint; virtual-hosted style takes the endpoint as the
    /// bucket's own address, so only the configured bucket can be reached that way.
    fn bucket_url(&self, bucket: &str) -> Result<String, WormError> {
        match (self.endpoint, self.path_style) {
            (Some(endpoint), true) => Ok(format!(
                "{endpoint}/{}",
                utf8_percent_encode(bucket, &STRICT)
            )),
            (Some(endpoint), false) if bucket == self.bucket => Ok(endpoint.to_string()),
            (Some(endpoint), false) => Err(WormError::Config(format!(
                "with virtual-hosted requests the endpoint {endpoint} addresses bucket {}, not {bucket}",
                self.bucket
            ))),
            (None, true) => Ok(format!("https://s3.{}.amazonaws.com/{bucket}", self.region)),
            (None, false) => Ok(format!("https://{bucket}.s3.{}.amazonaws.com", self.region)),
        }
    }

    fn object_url(&self, key: &str) -> Result<String, WormError> {
        Ok(format!(
            "{}/{}",
            self.bucket_url(self.bucket)?,
            utf8_percent_encode(key.trim_start_matches('/'), &STRICT_PATH)
        ))
    }

    fn target(&self, key: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/{key} version {v}", self.bucket),
            None => format!("{}/{key}", self.bucket),
        }
    }

    fn create_bucket(&self, bucket: &str) -> Result<HttpRequest, WormError> {
        // Outside us-east-1, AWS wants the region in the body.
        let body = match self.region {
            "us-east-1" | "" => Bytes::new(),
            region => Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"{S3_XMLNS}\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                xml_escape(region)
            )),
        };
        let mut req = request(Method::PUT, &self.bucket_url(bucket)?, body)?;
        req.headers_mut().insert(
            "x-amz-bucket-object-lock-enabled",
            http::HeaderValue::from_static("true"),
        );
        Ok(req)
    }

    fn default_retention(&self, bucket: &str, days: u32) -> Result<HttpRequest, WormError> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"{S3_XMLNS}\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
        );
        let url = format!("{}?object-lock", self.bucket_url(bucket)?);
        request(Method::PUT, &url, Bytes::from(body))
    }

    fn head(&self, key: &str, version: Option<&str>) -> Result<HttpRequest, WormError> {
        let mut url = self.object_url(key)?;
        if let Some(v) = version {
            url = format!("{url}?versionId={}", utf8_percent_encode(v, &STRICT));
        }
        request(Method::HEAD, &url, Bytes::new())
    }

    fn retention(
        &self,
        key: &str,
        version: &str,
        until: DateTime<Utc>,
    ) -> Result<HttpRequest, WormError> {
        let body = format!(
            "<Retention xmlns=\"{S3_XMLNS}\"><Mode>COMPLIANCE</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            s3_date(until)
        );
        let url = format!(
            "{}?retention&versionId={}",
            self.object_url(key)?,
            utf8_percent_encode(version, &STRICT)
        );
        request(Method::PUT, &url, Bytes::from(body))
    }

    fn legal_hold(&self, key: &str, version: &str, on: bool) -> Result<HttpRequest, WormError> {
        let status = if on { "ON" } else { "OFF" };
        let body = format!("<LegalHold xmlns=\"{S3_XMLNS}\"><Status>{status}</Status></LegalHold>");
        let url = format!(
            "{}?legal-hold&versionId={}",
            self.object_url(key)?,
            utf8_percent_encode(version, &STRICT)
        );
        request(Method::PUT, &url, Bytes::from(body))
    }

    fn delete_version(&self, key: &str, version: &str) -> Result<HttpRequest, WormError> {
        let url = format!(
            "{}?versionId={}",
            self.object_url(key)?,
            utf8_percent_encode(version, &STRICT)
        );
        request(Method::DELETE, &url, Bytes::new())
    }

    fn client(&self) -> Result<HttpClient, WormError> {
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60))
            .with_allow_http(self.endpoint.is_some_and(|e| e.starts_with("http://")));
        ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| WormError::Config(format!("HTTP client: {e}")))
    }
}

/// A request with its body; XML bodies carry `Content-MD5`, which AWS requires on the Object
/// Lock configuration, retention and legal hold requests.
fn request(method: Method, url: &str, body: Bytes) -> Result<HttpRequest, WormError> {
    let mut builder = Request::builder().method(method).uri(url);
    if !body.is_empty() {
        builder = builder
            .header(http::header::CONTENT_TYPE, "application/xml")
            .header("content-md5", BASE64.encode(Md5::digest(&body)));
    }
    builder
        .body(HttpRequestBody::from(body))
        .map_err(|e| WormError::Config(format!("bad request address {url}: {e}")))
}

/// Signs and sends; a non-2xx answer becomes `Refused` with the server's code and message.
async fn send(
    s3: &S3<'_>,
    mut req: HttpRequest,
    op: &'static str,
    target: &str,
) -> Result<HeaderMap, WormError> {
    AwsAuthorizer::new(&s3.credential, "s3", s3.region).authorize(&mut req, None);
    let transport = |source| WormError::Transport {
        op,
        target: target.to_string(),
        source,
    };
    let response = s3.client()?.execute(req).await.map_err(transport)?;
    let (parts, body) = response.into_parts();
    if parts.status.is_success() {
        return Ok(parts.headers);
    }
    // HEAD has no body: the status is all there is.
    let body = body.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let reason = parts.status.canonical_reason().unwrap_or("error");
    Err(WormError::Refused {
        op,
        target: target.to_string(),
        status: parts.status.as_u16(),
        code: xml_field(&text, "Code").unwrap_or_else(|| reason.replace(' ', "")),
        message: xml_field(&text, "Message")
            .or_else(|| Some(text.trim().to_string()).filter(|t| !t.is_empty()))
            .unwrap_or_else(|| "no response body".into()),
    })
}

fn parse_lock_headers(headers: &HeaderMap) -> ObjectLock {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    ObjectLock {
        version: get("x-amz-version-id").filter(|v| !v.is_empty() && v != "null"),
        mode: get("x-amz-object-lock-mode"),
        retain_until: get("x-amz-object-lock-retain-until-date")
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map(|d| d.with_timezone(&Utc)),
        legal_hold: get("x-amz-object-lock-legal-hold").is_some_and(|s| s == "ON"),
    }
}

/// ISO 8601 in UTC, whole seconds, rounded up so that a retention is never shortened by the
/// rounding.
fn s3_date(t: DateTime<Utc>) -> String {
    let whole = t.trunc_subsecs(0);
    let up = if whole < t {
        whole + chrono::Duration::seconds(1)
    } else {
        whole
    };
    up.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The text of the first `<name>` element of an S3 error body.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: Option<&str>, path_style: bool, region: &str) -> StoreConfig {
        StoreConfig::S3 {
            bucket: "evidence".into(),
            endpoint: endpoint.map(str::to_string),
            region: region.into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            path_style,
            object_lock: true,
        }
    }

    fn local() -> StoreConfig {
        StoreConfig::Local {
            path: "/tmp/x".into(),
        }
    }

    fn body(req: &HttpRequest) -> String {
        String::from_utf8(req.body().as_bytes().unwrap().to_vec()).unwrap()
    }

    fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
        req.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn worm_create_bucket_sends_the_lock_header() {
        let c = cfg(Some("http://127.0.0.1:8333/"), true, "us-east-1");
        let s3 = S3::new(&c).unwrap();
        let req = s3.create_bucket("locked").unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:8333/locked");
        assert_eq!(
            header(&req, "x-amz-bucket-object-lock-enabled"),
            Some("true")
        );
        assert!(req.body().is_empty());

        // Elsewhere than us-east-1 the region goes in the body.
        let c = cfg(None, true, "eu-west-1");
        let req = S3::new(&c).unwrap().create_bucket("locked").unwrap();
        assert_eq!(
            req.uri().to_string(),
            "https://s3.eu-west-1.amazonaws.com/locked"
        );
        assert!(
            body(&req).contains("<LocationConstraint>eu-west-1</LocationConstraint>"),
            "{}",
            body(&req)
        );
    }

    #[test]
    fn worm_default_retention_is_compliance_with_md5() {
        let c = cfg(Some("http://s3.local:9000"), true, "us-east-1");
        let req = S3::new(&c)
            .unwrap()
            .default_retention("evidence", 5479)
            .unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(
            req.uri().to_string(),
            "http://s3.local:9000/evidence?object-lock"
        );
        assert_eq!(
            body(&req),
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>5479</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
        );
        let md5 = BASE64.encode(Md5::digest(body(&req).as_bytes()));
        assert_eq!(header(&req, "content-md5"), Some(md5.as_str()));
        assert_eq!(header(&req, "content-type"), Some("application/xml"));
    }

    #[test]
    fn worm_retention_legal_hold_and_delete_address_one_version() {
        let c = cfg(Some("http://127.0.0.1:8333"), true, "us-east-1");
        let s3 = S3::new(&c).unwrap();
        let until = DateTime::parse_from_rfc3339("2041-03-01T08:30:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let key = "ZB 2025/cam1/000001+x.ts";
        let version = "3/L4kqtJl40Nr8X8gdRQBpUMLUo";

        let req = s3.retention(key, version, until).unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(
            req.uri().to_string(),
            "http://127.0.0.1:8333/evidence/ZB%202025/cam1/000001%2Bx.ts?retention&versionId=3%2FL4kqtJl40Nr8X8gdRQBpUMLUo"
        );
        // Rounded up to the second: never shorter than asked.
        assert_eq!(
            body(&req),
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode><RetainUntilDate>2041-03-01T08:30:01Z</RetainUntilDate></Retention>"
        );
        assert!(header(&req, "content-md5").is_some());

        for (on, status) in [(true, "ON"), (false, "OFF")] {
            let req = s3.legal_hold(key, version, on).unwrap();
            assert_eq!(req.method(), Method::PUT);
            assert!(
                req.uri()
                    .to_string()
                    .ends_with("000001%2Bx.ts?legal-hold&versionId=3%2FL4kqtJl40Nr8X8gdRQBpUMLUo"),
                "{}",
                req.uri()
            );
            assert_eq!(
                body(&req),
                format!(
                    "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{status}</Status></LegalHold>"
                )
            );
            assert!(header(&req, "content-md5").is_some());
        }

        let req = s3.delete_version(key, version).unwrap();
        assert_eq!(req.method(), Method::DELETE);
        assert!(req.uri().to_string().ends_with(
            "/evidence/ZB%202025/cam1/000001%2Bx.ts?versionId=3%2FL4kqtJl40Nr8X8gdRQBpUMLUo"
        ));
        assert!(req.body().is_empty());

        let req = s3.head(key, None).unwrap();
        assert_eq!(req.method(), Method::HEAD);
        assert!(req.uri().query().is_none());
        let req = s3.head(key, Some(version)).unwrap();
        assert_eq!(
            req.uri().query(),
            Some("versionId=3%2FL4kqtJl40Nr8X8gdRQBpUMLUo")
        );
    }

    #[test]
    fn worm_addressing_follows_the_store_config() {
        // Virtual-hosted without endpoint: the bucket is in the host name.
        let c = cfg(None, false, "cn-north-1");
        let s3 = S3::new(&c).unwrap();
        assert_eq!(
            s3.object_url("a/b.ts").unwrap(),
            "https://evidence.s3.cn-north-1.amazonaws.com/a/b.ts"
        );
        // Virtual-hosted with an endpoint: the endpoint is the bucket's address (as in
        // object_store), so another bucket cannot be addressed.
        let c = cfg(Some("https://evidence.oss.example"), false, "us-east-1");
        let s3 = S3::new(&c).unwrap();
        assert_eq!(
            s3.object_url("a/b.ts").unwrap(),
            "https://evidence.oss.example/a/b.ts"
        );
        let err = s3.create_bucket("other").unwrap_err();
        assert!(err.to_string().contains("not other"), "{err}");

        let err = S3::new(&local()).unwrap_err();
        assert!(err.to_string().contains("no object lock"), "{err}");
    }

    #[test]
    fn worm_signing_covers_the_lock_headers_and_the_query() {
        let c = cfg(Some("http://127.0.0.1:8333"), true, "us-east-1");
        let s3 = S3::new(&c).unwrap();
        let mut req = s3.create_bucket("locked").unwrap();
        AwsAuthorizer::new(&s3.credential, "s3", s3.region).authorize(&mut req, None);
        let auth = header(&req, "authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && auth.contains("/us-east-1/s3/aws4_request")
                && auth.contains(
                    "SignedHeaders=host;x-amz-bucket-object-lock-enabled;x-amz-content-sha256;x-amz-date"
                ),
            "{auth}"
        );
        let mut req = s3.legal_hold("k", "v1", true).unwrap();
        AwsAuthorizer::new(&s3.credential, "s3", s3.region).authorize(&mut req, None);
        let auth = header(&req, "authorization").unwrap();
        assert!(
            auth.contains(
                "SignedHeaders=content-md5;content-type;host;x-amz-content-sha256;x-amz-date"
            ),
            "{auth}"
        );
        // The payload hash is of the XML body, not UNSIGNED-PAYLOAD.
        assert_eq!(
            header(&req, "x-amz-content-sha256"),
            Some(
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                    body(&req).as_bytes()
                ))
                .as_str()
            )
        );
    }

    #[test]
    fn worm_reads_lock_headers_and_error_bodies() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-version-id", "v9".parse().unwrap());
        h.insert("x-amz-object-lock-mode", "COMPLIANCE".parse().unwrap());
        h.insert(
            "x-amz-object-lock-retain-until-date",
            "2026-11-26T13:23:59Z".parse().unwrap(),
        );
        h.insert("x-amz-object-lock-legal-hold", "ON".parse().unwrap());
        let lock = parse_lock_headers(&h);
        assert_eq!(lock.version.as_deref(), Some("v9"));
        assert_eq!(lock.mode.as_deref(), Some("COMPLIANCE"));
        assert_eq!(
            lock.retain_until.unwrap().to_rfc3339(),
            "2026-11-26T13:23:59+00:00"
        );
        assert!(lock.legal_hold);

        let mut h = HeaderMap::new();
        h.insert("x-amz-version-id", "null".parse().unwrap());
        assert_eq!(
            parse_lock_headers(&h),
            ObjectLock {
                version: None,
                mode: None,
                retain_until: None,
                legal_hold: false
            }
        );

        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access &amp; Denied.</Message><Resource>/scratch/h.ts</Resource></Error>";
        assert_eq!(xml_field(xml, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_field(xml, "Message").as_deref(),
            Some("Access & Denied.")
        );
        assert_eq!(xml_field(xml, "Key"), None);
    }

    #[test]
    fn worm_dates_round_up_to_the_second() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(s3_date(t("2030-01-01T00:00:00Z")), "2030-01-01T00:00:00Z");
        assert_eq!(
            s3_date(t("2030-12-31T23:59:59.001Z")),
            "2031-01-01T00:00:00Z"
        );
    }
}
