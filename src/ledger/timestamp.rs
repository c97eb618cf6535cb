//! RFC 3161 timestamp tokens, pure: the request for the SHA-256 of some bytes (a session
//! manifest, an audit checkpoint's signed text), and the check of a TSA's reply, the same online
//! (before a token is stored) and offline (in a package): status granted, the TSTInfo's message
//! imprint the digest of exactly those bytes, the signed attributes bound to the TSTInfo, the
//! SignerInfo's signature by the enclosed certificate (RSA PKCS#1 v1.5 or ECDSA P-256), that
//! certificate one for time-stamping (critical extendedKeyUsage timeStamping) valid at the TSA
//! time, and, when a CA bundle is given, its chain to one of the bundle's certificates.
//!
//! A token is stored as the whole `TimeStampResp` (DER), which `openssl ts -verify -in` reads.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Any, Int, ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode, Tagged};
use sha2::Digest;
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::spki::{AlgorithmIdentifier, SubjectPublicKeyInfoOwned};
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion};

const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
const TIME_STAMPING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.8");
const EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const RSA_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");

/// Why a token is not accepted. `Untrusted` alone says nothing was altered: the token holds,
/// but its TSA does not chain to a CA of the bundle.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("not a timestamp reply: {0}")]
    Malformed(String),
    #[error("the TSA refused the request: {0}")]
    Refused(String),
    #[error("its message imprint is not the SHA-256 of these bytes (a token for other data)")]
    Imprint,
    #[error("its nonce is not the request's (a replayed reply)")]
    Nonce,
    #[error("its policy {0} is not the one asked for")]
    Policy(String),
    #[error("{0}")]
    Signature(String),
    #[error("{0}")]
    Untrusted(String),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stamp {
    /// The TSA's time (genTime), Unix µs.
    pub gen_time_us: i64,
    /// The signer certificate's subject (RFC 4514).
    pub tsa: String,
    /// The TSA's policy OID.
    pub policy: String,
    /// The token's serial number, hex.
    pub serial: String,
    /// The CA bundle certificate the TSA's certificate chains to, when a bundle was given.
    pub ca: Option<String>,
}

/// The certificates a TSA's certificate must chain to (a PEM bundle).
#[derive(Debug, Clone)]
pub struct CaBundle {
    certs: Vec<Certificate>,
    /// Where it was read from, for messages.
    pub source: String,
}

impl CaBundle {
    pub fn from_pem(pem: &[u8], source: &str) -> Result<CaBundle, String> {
        let certs = Certificate::load_pem_chain(pem).map_err(|e| format!("{source}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{source}: no certificate"));
        }
        Ok(CaBundle {
            certs,
            source: source.to_string(),
        })
    }

    pub fn load(path: &std::path::Path) -> Result<CaBundle, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        CaBundle::from_pem(&pem, &path.display().to_string())
    }
}

/// A request ready to send, with the nonce its reply must carry.
pub struct Request {
    pub der: Vec<u8>,
    nonce: Vec<u8>,
    policy: Option<Oid>,
}

/// A `TimeStampReq` for the SHA-256 of `data`: certReq set (the reply encloses the TSA's
/// certificate, so a package can be checked offline), a random 64-bit nonce, and `policy` if
/// one is asked for.
pub fn request(data: &[u8], policy: Option<&str>) -> Result<Request, String> {
    let policy = policy
        .map(|p| Oid::new(p).map_err(|e| format!("TSA policy {p:?}: {e}")))
        .transpose()?;
    let mut nonce = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    // Positive and minimal: the first byte non-zero and below 0x80.
    nonce[0] = (nonce[0] & 0x7f) | 0x01;
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: SHA256,
                parameters: Some(Any::null()),
            },
            hashed_message: OctetString::new(sha2::Sha256::digest(data).to_vec())
                .map_err(|e| e.to_string())?,
        },
        req_policy: policy,
        nonce: Some(Int::new(&nonce).map_err(|e| e.to_string())?),
        cert_req: true,
        extensions: None,
    };
    Ok(Request {
        der: req.to_der().map_err(|e| e.to_string())?,
        nonce: nonce.to_vec(),
        policy,
    })
}

/// The TSA's reply to `req` for `data`, checked as [`verify`] checks a stored token, and
/// besides: it carries the request's nonce (and policy, when one was asked for).
pub fn accept(
    req: &Request,
    reply: &[u8],
    data: &[u8],
    ca: &CaBundle,
) -> Result<Stamp, TokenError> {
    let token = Token::parse(reply)?;
    if token.info.nonce.as_ref().map(|n| n.as_bytes()) != Some(&req.nonce[..]) {
        return Err(TokenError::Nonce);
    }
    if let Some(p) = req.policy
        && token.info.policy != p
    {
        return Err(TokenError::Policy(token.info.policy.to_string()));
    }
    token.check(data, Some(ca))
}

/// Checks a stored token (a `TimeStampResp`, DER) over `data`; with `ca`, the TSA's
/// certificate must chain to it, else the chain is not looked at (`Stamp::ca` is `None`).
pub fn verify(token: &[u8], data: &[u8], ca: Option<&CaBundle>) -> Result<Stamp, TokenError> {
    Token::parse(token)?.check(data, ca)
}

/// TSTInfo (RFC 3161 §2.4.2) as x509-tsp has it, but with genTime read leniently: a TSA may add
/// fractions of a second, which `der`'s GeneralizedTime refuses.
#[derive(Clone, Debug, der::Sequence)]
struct TstInfo {
    version: TspVersion,
    policy: Oid,
    message_imprint: MessageImprint,
    serial_number: Int,
    gen_time: Any,
    #[asn1(optional = "true")]
    accuracy: Option<x509_tsp::Accuracy>,
    #[asn1(default = "Default::default")]
    ordering: bool,
    #[asn1(optional = "true")]
    nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<Any>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Any>,
}

struct Token {
    signed: SignedData,
    /// The encapsulated TSTInfo's DER (what the message-digest attribute digests).
    content: Vec<u8>,
    info: TstInfo,
    gen_time_us: i64,
}

fn malformed(what: &str) -> impl Fn(der::Error) -> TokenError + '_ {
    move |e| TokenError::Malformed(format!("{what}: {e}"))
}

impl Token {
    fn parse(reply: &[u8]) -> Result<Token, TokenError> {
        let resp = TimeStampResp::from_der(reply).map_err(malformed("TimeStampResp"))?;
        use cmpv2::status::PkiStatus;
        if !matches!(
            resp.status.status,
            PkiStatus::Accepted | PkiStatus::GrantedWithMods
        ) {
            let text = resp
                .status
                .status_string
                .iter()
                .flat_map(|s| s.iter())
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(TokenError::Refused(format!(
                "status {:?} {text}",
                resp.status.status
            )));
        }
        let token: ContentInfo = resp
            .time_stamp_token
            .ok_or_else(|| TokenError::Malformed("granted, but no token".into()))?;
        if token.content_type != SIGNED_DATA {
            return Err(TokenError::Malformed("the token is not SignedData".into()));
        }
        let signed: SignedData = token.content.decode_as().map_err(malformed("SignedData"))?;
        let encap = &signed.encap_content_info;
        if encap.econtent_type != TST_INFO {
            return Err(TokenError::Malformed("the token holds no TSTInfo".into()));
        }
        let content = encap
            .econtent
            .as_ref()
            .ok_or_else(|| TokenError::Malformed("the token holds no TSTInfo".into()))?
            .value()
            .to_vec();
        let info = TstInfo::from_der(&content).map_err(malformed("TSTInfo"))?;
        let gen_time_us = generalized_time_us(&info.gen_time).ok_or_else(|| {
            TokenError::Malformed("TSTInfo: genTime is not a GeneralizedTime".into())
        })?;
        Ok(Token {
            signed,
            content,
            info,
            gen_time_us,
        })
    }

    fn check(&self, data: &[u8], ca: Option<&CaBundle>) -> Result<Stamp, TokenError> {
        let imprint = &self.info.message_imprint;
        let hash = Hash::of(&imprint.hash_algorithm.oid).ok_or(TokenError::Imprint)?;
        if imprint.hashed_message.as_bytes() != hash.digest(data) {
            return Err(TokenError::Imprint);
        }
        let [signer_info] = self.signed.signer_infos.0.as_slice() else {
            return Err(TokenError::Signature(
                "the token has not exactly one signer".into(),
            ));
        };
        let certs: Vec<&Certificate> = self
            .signed
            .certificates
            .iter()
            .flat_map(|s| s.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        let signer = certs
            .iter()
            .copied()
            .find(|c| identifies(&signer_info.sid, c))
            .ok_or_else(|| {
                TokenError::Signature("the token does not enclose its signer's certificate".into())
            })?;
        self.check_signature(signer_info, signer)?;
        let tsa = signer.tbs_certificate.subject.to_string();
        check_time_stamping(signer, &tsa)?;
        if !valid_at(signer, self.gen_time_us) {
            return Err(TokenError::Signature(format!(
                "the certificate of TSA {tsa} is not valid at the time it gives ({})",
                crate::time::rfc3339(self.gen_time_us)
            )));
        }
        let ca = match ca {
            None => None,
            Some(bundle) => Some(chain(signer, &certs, bundle, self.gen_time_us)?),
        };
        Ok(Stamp {
            gen_time_us: self.gen_time_us,
            tsa,
            policy: self.info.policy.to_string(),
            serial: hex::encode(self.info.serial_number.as_bytes()),
            ca,
        })
    }

    /// The signed attributes name the TSTInfo and digest it, and the signer's key signed them.
    fn check_signature(&self, si: &SignerInfo, signer: &Certificate) -> Result<(), TokenError> {
        let bad = |why: &str| TokenError::Signature(format!("the token's signature: {why}"));
        let hash = Hash::of(&si.digest_alg.oid).ok_or_else(|| bad("unsupported digest"))?;
        let attrs = si
            .signed_attrs
            .as_ref()
            .ok_or_else(|| bad("no signed attributes"))?;
        let single = |oid: Oid| {
            let found: Vec<_> = attrs.iter().filter(|a| a.oid == oid).collect();
            match found.as_slice() {
                [a] if a.values.len() == 1 => Ok(a.values.get(0).expect("one value").clone()),
                _ => Err(bad("signed attributes malformed")),
            }
        };
        let content_type: Oid = single(CONTENT_TYPE)?
            .decode_as()
            .map_err(|_| bad("content type malformed"))?;
        if content_type != TST_INFO {
            return Err(bad("it signs another content type"));
        }
        let digest: OctetString = single(MESSAGE_DIGEST)?
            .decode_as()
            .map_err(|_| bad("message digest malformed"))?;
        if digest.as_bytes() != hash.digest(&self.content) {
            return Err(bad(
                "its message digest is not the TSTInfo's (the TSTInfo was altered)",
            ));
        }
        let signed = attrs.to_der().map_err(|e| bad(&e.to_string()))?;
        verify_signature(
            &signer.tbs_certificate.subject_public_key_info,
            &si.signature_algorithm.oid,
            Some(hash),
            &signed,
            si.signature.as_bytes(),
        )
        .map_err(|why| {
            bad(&format!(
                "does not verify with the enclosed certificate ({why})"
            ))
        })
    }
}

/// genTime, `YYYYMMDDHHMMSS[.f…]Z`, as Unix µs.
fn generalized_time_us(any: &Any) -> Option<i64> {
    if any.tag() != der::Tag::GeneralizedTime {
        return None;
    }
    let text = std::str::from_utf8(any.value()).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let t = chrono::NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = format!("{fraction:0<6}")[..6].parse().ok()?;
    Some(t.and_utc().timestamp_micros() + micros)
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of(oid: &Oid) -> Option<Hash> {
        match *oid {
            SHA256 => Some(Hash::Sha256),
            SHA384 => Some(Hash::Sha384),
            SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1(self) -> rsa::Pkcs1v15Sign {
        match self {
            Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        }
    }
}

/// A signature by `key` over `message` with `algorithm`: RSA PKCS#1 v1.5 (`rsaEncryption` with
/// the SignerInfo's digest, or sha*WithRSAEncryption) or ECDSA on P-256.
fn verify_signature(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &Oid,
    digest: Option<Hash>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let hash = match *algorithm {
        RSA => digest,
        RSA_SHA256 | ECDSA_SHA256 => Some(Hash::Sha256),
        RSA_SHA384 | ECDSA_SHA384 => Some(Hash::Sha384),
        RSA_SHA512 | ECDSA_SHA512 => Some(Hash::Sha512),
        _ => None,
    }
    .ok_or_else(|| format!("unsupported signature algorithm {algorithm}"))?;
    let prehash = hash.digest(message);
    let key_bits = key.subject_public_key.raw_bytes();
    match (key.algorithm.oid, *algorithm) {
        (RSA, RSA | RSA_SHA256 | RSA_SHA384 | RSA_SHA512) => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let pk = rsa::RsaPublicKey::from_pkcs1_der(key_bits).map_err(|e| e.to_string())?;
            pk.verify(hash.pkcs1(), &prehash, signature)
                .map_err(|_| "bad signature".to_string())
        }
        (EC_PUBLIC_KEY, ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512) => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let curve: Option<Oid> = key
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok());
            if curve != Some(P256) {
                return Err("an EC key not on P-256".into());
            }
            let pk =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bits).map_err(|e| e.to_string())?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(|e| e.to_string())?;
            pk.verify_prehash(&prehash, &sig)
                .map_err(|_| "bad signature".to_string())
        }
        (k, a) => Err(format!("unsupported key {k} for signature algorithm {a}")),
    }
}

/// Whether `cert` is the one the SignerInfo names (issuer and serial, or subject key id).
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => {
            is.issuer == tbs.issuer && is.serial_number == tbs.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => matches!(
            cert.tbs_certificate.get::<SubjectKeyIdentifier>(),
            Ok(Some((_, own))) if own.0 == ski.0
        ),
    }
}

/// RFC 3161 §2.3: the TSA's certificate has exactly one extendedKeyUsage, timeStamping, critical.
fn check_time_stamping(cert: &Certificate, tsa: &str) -> Result<(), TokenError> {
    let eku = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == EXT_KEY_USAGE);
    let ok = eku.is_some_and(|e| {
        e.critical
            && ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .is_ok_and(|u| u.0 == [TIME_STAMPING])
    });
    if ok {
        Ok(())
    } else {
        Err(TokenError::Signature(format!(
            "the certificate of {tsa} is not a time-stamping certificate (critical extendedKeyUsage timeStamping)"
        )))
    }
}

fn valid_at(cert: &Certificate, at_us: i64) -> bool {
    let v = &cert.tbs_certificate.validity;
    let us = |t: x509_cert::time::Time| t.to_unix_duration().as_micros() as i64;
    us(v.not_before) <= at_us && at_us <= us(v.not_after)
}

fn is_ca(cert: &Certificate) -> bool {
    matches!(cert.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca)
}

/// `cert` was signed by `issuer`'s key.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
        && cert.tbs_certificate.to_der().is_ok_and(|tbs| {
            verify_signature(
                &issuer.tbs_certificate.subject_public_key_info,
                &cert.signature_algorithm.oid,
                None,
                &tbs,
                cert.signature.raw_bytes(),
            )
            .is_ok()
        })
}

/// The TSA's certificate up to a certificate of the bundle, through CA certificates the token
/// encloses, each signature checked and each certificate valid at the TSA time. Returns the
/// subject of the bundle's certificate reached.
fn chain(
    signer: &Certificate,
    enclosed: &[&Certificate],
    bundle: &CaBundle,
    at_us: i64,
) -> Result<String, TokenError> {
    let mut current = signer;
    for _ in 0..8 {
        if bundle.certs.iter().any(|c| c == current) {
            return Ok(current.tbs_certificate.subject.to_string());
        }
        if let Some(anchor) = bundle
            .certs
            .iter()
            .find(|a| is_ca(a) && valid_at(a, at_us) && signed_by(current, a))
        {
            return Ok(anchor.tbs_certificate.subject.to_string());
        }
        match enclosed
            .iter()
            .copied()
            .find(|c| *c != current && is_ca(c) && valid_at(c, at_us) && signed_by(current, c))
        {
            Some(next) => current = next,
            None => break,
        }
    }
    Err(TokenError::Untrusted(format!(
        "TSA {} (certificate issued by {}) does not chain to a CA in {}",
        signer.tbs_certificate.subject, current.tbs_certificate.issuer, bundle.source
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A throw-away CA and TSA made with the openssl CLI, answering requests with `openssl ts`.
    struct TestTsa {
        dir: tempfile::TempDir,
    }

    fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    impl TestTsa {
        /// `key`: `rsa` or `ec` (P-256) for the TSA; the CA is the other one, so that both
        /// signature kinds are exercised. `precision`: digits of genTime's fraction.
        fn new(key: &str, precision: u8) -> TestTsa {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let (ca_key, tsa_key) = match key {
                "rsa" => (
                    vec![
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                    ],
                    vec![
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ],
                ),
                _ => (
                    vec![
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ],
                    vec![
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                    ],
                ),
            };
            openssl(d, &[&ca_key[..], &["-out", "ca.key"]].concat());
            openssl(d, &[&tsa_key[..], &["-out", "tsa.key"]].concat());
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    "ca.key",
                    "-subj",
                    "/CN=Test CA",
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
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    "tsa.key",
                    "-subj",
                    "/CN=Test TSA",
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
                format!(
                    "[tsa]\ndefault_tsa = tsa1\n[tsa1]\ndir = .\nserial = ./serial\nsigner_cert = ./tsa.pem\nsigner_key = ./tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\ndigests = sha256\naccuracy = secs:1\nclock_precision_digits = {precision}\ness_cert_id_alg = sha256\n"
                ),
            )
            .unwrap();
            std::fs::write(d.join("serial"), "01\n").unwrap();
            TestTsa { dir }
        }

        fn reply(&self, request: &[u8]) -> Vec<u8> {
            let d = self.dir.path();
            std::fs::write(d.join("req.tsq"), request).unwrap();
            openssl(
                d,
                &[
                    "ts",
                    "-reply",
                    "-config",
                    "tsa.cnf",
                    "-queryfile",
                    "req.tsq",
                    "-out",
                    "reply.tsr",
                ],
            );
            std::fs::read(d.join("reply.tsr")).unwrap()
        }

        fn ca(&self) -> CaBundle {
            CaBundle::load(&self.dir.path().join("ca.pem")).unwrap()
        }
    }

    fn stamped(tsa: &TestTsa, data: &[u8]) -> (Request, Vec<u8>) {
        let req = request(data, None).unwrap();
        let reply = tsa.reply(&req.der);
        (req, reply)
    }

    #[test]
    fn rsa_tsa_under_an_ec_ca() {
        let tsa = TestTsa::new("rsa", 0);
        let data = b"{\"manifest\": 1}\n";
        let (req, reply) = stamped(&tsa, data);
        let stamp = accept(&req, &reply, data, &tsa.ca()).unwrap();
        assert_eq!(stamp.tsa, "CN=Test TSA");
        assert_eq!(stamp.ca.as_deref(), Some("CN=Test CA"));
        assert_eq!(stamp.policy, "1.2.3.4.1");
        assert!((stamp.gen_time_us - crate::time::now_us()).abs() < 60_000_000);
        // Offline, without a bundle: everything but the chain.
        let open = verify(&reply, data, None).unwrap();
        assert_eq!((open.ca, open.gen_time_us), (None, stamp.gen_time_us));
        // Other bytes: the imprint does not match.
        assert_eq!(verify(&reply, b"other", None), Err(TokenError::Imprint));
        // A reply to another request: its nonce differs.
        let other = request(data, None).unwrap();
        assert_eq!(
            accept(&other, &reply, data, &tsa.ca()),
            Err(TokenError::Nonce)
        );
        // Another CA: refused as untrusted, not as altered.
        let stranger = TestTsa::new("rsa", 0);
        match verify(&reply, data, Some(&stranger.ca())) {
            Err(TokenError::Untrusted(m)) => assert!(m.contains("CN=Test TSA"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ec_tsa_with_fractional_gen_time() {
        let tsa = TestTsa::new("ec", 3);
        let data = b"witness-audit-checkpoint/1\nseq: 1\n";
        let (req, reply) = stamped(&tsa, data);
        let stamp = accept(&req, &reply, data, &tsa.ca()).unwrap();
        assert_eq!(stamp.ca.as_deref(), Some("CN=Test CA"));
        assert!((stamp.gen_time_us - crate::time::now_us()).abs() < 60_000_000);
    }

    #[test]
    fn altered_tokens_are_caught() {
        let tsa = TestTsa::new("rsa", 0);
        let data = b"manifest bytes";
        let (_, reply) = stamped(&tsa, data);
        let good = verify(&reply, data, Some(&tsa.ca())).unwrap();
        // The TSTInfo (time, imprint, serial …) and the signature are where a forger works.
        let info = Token::parse(&reply).unwrap().content;
        let at = reply
            .windows(info.len())
            .position(|w| w == info.as_slice())
            .unwrap();
        // Every byte flipped in turn: refused, or (outside what is signed, e.g. the PKI status
        // or the list of digest algorithms) nothing the token asserts has changed.
        for i in 0..reply.len() {
            let mut bad = reply.clone();
            bad[i] ^= 0x01;
            if let Ok(s) = verify(&bad, data, Some(&tsa.ca())) {
                assert!(
                    !(at..at + info.len()).contains(&i),
                    "TSTInfo byte {i} flipped, accepted"
                );
                assert_eq!(s, good, "byte {i} flipped")
            }
        }
        // A refusal from the TSA is not a token.
        assert!(matches!(
            verify(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02], data, None),
            Err(TokenError::Refused(_))
        ));
    }

    #[test]
    fn only_a_critical_time_stamping_certificate_signs_tokens() {
        let tsa = TestTsa::new("rsa", 0);
        let d = tsa.dir.path();
        let cert = |ext: &str| {
            std::fs::write(d.join("ext.cnf"), ext).unwrap();
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
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    "other.pem",
                ],
            );
            let pem = std::fs::read(d.join("other.pem")).unwrap();
            Certificate::load_pem_chain(&pem).unwrap().remove(0)
        };
        // (OpenSSL will not sign a token with the others, so they are checked directly.)
        let good = cert("extendedKeyUsage=critical,timeStamping\n");
        assert!(check_time_stamping(&good, "t").is_ok());
        for ext in [
            "basicConstraints=CA:FALSE\n",
            "extendedKeyUsage=timeStamping\n",
            "extendedKeyUsage=critical,timeStamping,codeSigning\n",
        ] {
            assert!(
                matches!(check_time_stamping(&cert(ext), "t"), Err(TokenError::Signature(m)) if m.contains("time-stamping")),
                "{ext}"
            );
        }
        // A certificate the bundle's CA did not sign does not chain, whatever its name.
        let stranger = TestTsa::new("rsa", 0);
        let foreign = Certificate::load_pem_chain(
            &std::fs::read(stranger.dir.path().join("tsa.pem")).unwrap(),
        )
        .unwrap()
        .remove(0);
        assert!(matches!(
            chain(&foreign, &[], &tsa.ca(), crate::time::now_us()),
            Err(TokenError::Untrusted(_))
        ));
        assert!(chain(&good, &[], &tsa.ca(), crate::time::now_us()).is_ok());
    }

    #[test]
    fn gen_time_parses_with_and_without_fractions() {
        let any = |s: &str| Any::new(der::Tag::GeneralizedTime, s.as_bytes()).unwrap();
        assert_eq!(
            generalized_time_us(&any("19700101000001Z")),
            Some(1_000_000)
        );
        assert_eq!(
            generalized_time_us(&any("19700101000001.25Z")),
            Some(1_250_000)
        );
        assert_eq!(generalized_time_us(&any("19700101000001")), None);
    }
}
