//! The server's Ed25519 signing key and the signed session manifest: at stop, every chain head of
//! the session is written to `{project}/{session}/manifest.json`, with the detached signature in
//! `manifest.json.sig` (hex) beside it, and, with `[signing] sm2 = true`, the SM2 signature in
//! `manifest.json.sm2.sig`.

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ledger::keys;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {path}: not 32 bytes of hex")]
    Malformed { path: String },
    #[error("SM2 key {path}: {problem}")]
    Sm2 { path: String, problem: String },
}

/// The server's signing identity: the current key, and the public keys it signed with before
/// (retired by `witness keys rotate`, kept under `data/keys/retired/`), so that what they signed
/// still verifies.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    /// The SM2 key (`dir/sm2.key`), when there is one.
    sm2: Option<std::sync::Arc<Sm2Key>>,
    retired: std::sync::Arc<Vec<RetiredKey>>,
}

/// The SM2 key pair: it signs when `[signing] sm2 = true`; otherwise, if the file is there, its
/// public half still verifies what it signed.
struct Sm2Key {
    key: sm2::dsa::SigningKey,
    /// The uncompressed SEC1 point, hex (130 digits).
    public_key: String,
    signs: bool,
}

/// The SM2 private key file under the keys folder, and its public key in PEM (SubjectPublicKeyInfo,
/// for OpenSSL, gmssl and other SM2 tools).
pub const SM2_KEY_FILE: &str = "sm2.key";
pub const SM2_PEM_FILE: &str = "sm2-public.pem";

/// A key this server no longer signs with; its public half stays valid for what it signed.
#[derive(Debug, Clone, Serialize)]
pub struct RetiredKey {
    pub key_id: String,
    pub public_key: String,
}

/// A key as published.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// The key id: the fingerprint's 32 hex digits, as every signature names its key.
    pub key_id: String,
    /// The key id in groups of four, for people to compare.
    pub fingerprint: String,
    pub algorithm: &'static str,
    pub public_key: String,
    /// `current` (signs from now on) or `retired` (verifies what it signed).
    pub status: &'static str,
}

impl Signer {
    /// Loads `dir/ed25519.key`, creating it (mode 0600) on first start, and the retired public
    /// keys in `dir/retired/*.pub`.
    pub fn load_or_create(dir: &Path) -> Result<Signer, KeyError> {
        let path = dir.join("ed25519.key");
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let retired = std::sync::Arc::new(load_retired(dir)?);
        if path.exists() {
            let key = read_private(&path)?;
            let sm2 = load_sm2(dir, false)?;
            return Ok(Signer { key, sm2, retired });
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let key = SigningKey::generate(&mut rand_core::OsRng);
        write_private(&path, &hex::encode(key.to_bytes())).map_err(io)?;
        tracing::info!(path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()), "generated server signing key");
        let sm2 = load_sm2(dir, false)?;
        Ok(Signer { key, sm2, retired })
    }

    /// [`Signer::load_or_create`], then, with `sm2`, the SM2 key `dir/sm2.key` (created, mode
    /// 0600, on first start, with its public key in `dir/sm2-public.pem`) signs too.
    pub fn load(dir: &Path, sm2: bool) -> Result<Signer, KeyError> {
        let mut signer = Signer::load_or_create(dir)?;
        if sm2 {
            signer.sm2 = load_sm2(dir, true)?;
        }
        Ok(signer)
    }

    /// The SM2 public key (hex, uncompressed point) when SM2 signs.
    pub fn sm2_public_key_hex(&self) -> Option<String> {
        self.sm2
            .as_ref()
            .filter(|k| k.signs)
            .map(|k| k.public_key.clone())
    }

    /// The SM2 key id when SM2 signs.
    pub fn sm2_key_id(&self) -> Option<String> {
        keys::key_id(&self.sm2_public_key_hex()?)
    }

    /// The SM2 signature (`{key_id}:{r‖s hex}`, distinguishing ID [`keys::SM2_DISTID`], digest
    /// SM3) over `message`, when SM2 signs.
    pub fn sign_sm2_hex(&self, message: &[u8]) -> Option<String> {
        use sm2::dsa::signature::Signer as _;
        let k = self.sm2.as_ref().filter(|k| k.signs)?;
        let sig: sm2::dsa::Signature = k.key.sign(message);
        Some(format!(
            "{}:{}",
            keys::key_id(&k.public_key).unwrap_or_default(),
            hex::encode(sig.to_bytes())
        ))
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The current key's id (its fingerprint, [`keys::key_id`]).
    pub fn key_id(&self) -> String {
        keys::key_id(&self.public_key_hex()).unwrap_or_default()
    }

    /// The keys signing was ever done with: retired ones, oldest first.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// Every public key of this server, current first: what its own signatures verify with.
    pub fn all_public_keys(&self) -> Vec<String> {
        std::iter::once(self.public_key_hex())
            .chain(self.sm2.iter().map(|k| k.public_key.clone()))
            .chain(self.retired.iter().map(|r| r.public_key.clone()))
            .collect()
    }

    /// Every key as it is published (`GET /api/v1/keys`, `witness keys`): current first.
    pub fn views(&self) -> Vec<KeyView> {
        let view = |public_key: String, status| {
            let key_id = keys::key_id(&public_key).unwrap_or_default();
            KeyView {
                fingerprint: keys::grouped(&key_id),
                key_id,
                algorithm: keys::algorithm(&public_key).map_or("", |a| a.name()),
                public_key,
                status,
            }
        };
        std::iter::once(view(self.public_key_hex(), "current"))
            .chain(self.sm2.iter().map(|k| {
                view(
                    k.public_key.clone(),
                    if k.signs { "current" } else { "retired" },
                )
            }))
            .chain(
                self.retired
                    .iter()
                    .map(|r| view(r.public_key.clone(), "retired")),
            )
            .collect()
    }

    /// A signature with its key id: `{key_id}:{signature hex}` ([`keys::Signature`]).
    pub fn sign_hex(&self, message: &[u8]) -> String {
        format!(
            "{}:{}",
            self.key_id(),
            hex::encode(self.key.sign(message).to_bytes())
        )
    }
}

/// The SM2 key of `dir`: read when the file is there (signing only with `signs`), created with
/// `signs` when it is not; the PEM of its public key written when missing.
fn load_sm2(dir: &Path, signs: bool) -> Result<Option<std::sync::Arc<Sm2Key>>, KeyError> {
    let path = dir.join(SM2_KEY_FILE);
    let problem = |problem: String| KeyError::Sm2 {
        path: path.display().to_string(),
        problem,
    };
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let secret = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let bytes = hex::decode(text.trim()).map_err(|e| problem(e.to_string()))?;
        sm2::SecretKey::from_slice(&bytes).map_err(|e| problem(e.to_string()))?
    } else if signs {
        std::fs::create_dir_all(dir).map_err(io)?;
        let secret = sm2::SecretKey::random(&mut rand_core::OsRng);
        write_private(&path, &hex::encode(secret.to_bytes())).map_err(io)?;
        secret
    } else {
        return Ok(None);
    };
    let key =
        sm2::dsa::SigningKey::new(keys::SM2_DISTID, &secret).map_err(|e| problem(e.to_string()))?;
    let public_key = hex::encode(key.verifying_key().to_sec1_bytes());
    let pem_path = dir.join(SM2_PEM_FILE);
    if !pem_path.exists() {
        std::fs::write(&pem_path, sm2_public_pem(&secret.public_key())?).map_err(|source| {
            KeyError::Io {
                path: pem_path.display().to_string(),
                source,
            }
        })?;
        if signs {
            tracing::info!(path = %path.display(), %public_key, "generated server SM2 signing key");
        }
    }
    Ok(Some(std::sync::Arc::new(Sm2Key {
        key,
        public_key,
        signs,
    })))
}

/// An SM2 public key in PEM (SubjectPublicKeyInfo: id-ecPublicKey, curve SM2 1.2.156.10197.1.301).
fn sm2_public_pem(key: &sm2::PublicKey) -> Result<String, KeyError> {
    use sm2::pkcs8::EncodePublicKey as _;
    key.to_public_key_pem(sm2::pkcs8::LineEnding::LF)
        .map_err(|e| KeyError::Sm2 {
            path: SM2_PEM_FILE.into(),
            problem: e.to_string(),
        })
}

/// The PEM of a hex SM2 public key (uncompressed point); `None` if it is not one.
pub fn sm2_pem_of(public_key_hex: &str) -> Option<String> {
    let bytes = hex::decode(public_key_hex.trim()).ok()?;
    sm2_public_pem(&sm2::PublicKey::from_sec1_bytes(&bytes).ok()?).ok()
}

fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Malformed {
            path: path.display().to_string(),
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn load_retired(dir: &Path) -> Result<Vec<RetiredKey>, KeyError> {
    let folder = dir.join("retired");
    let io = |source| KeyError::Io {
        path: folder.display().to_string(),
        source,
    };
    if !folder.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(&folder).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().is_none_or(|x| x != "pub") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|source| KeyError::Io {
            path: p.display().to_string(),
            source,
        })?;
        let public_key = text.trim().to_ascii_lowercase();
        let key_id = keys::key_id(&public_key).ok_or_else(|| KeyError::Malformed {
            path: p.display().to_string(),
        })?;
        let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
        found.push((modified, RetiredKey { key_id, public_key }));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key_id.cmp(&b.1.key_id)));
    Ok(found.into_iter().map(|(_, k)| k).collect())
}

/// Retires the current key of `dir` and makes a new one: the old public key is written to
/// `dir/retired/{key_id}.pub` (so the server keeps verifying what it signed), then the new
/// private key replaces `ed25519.key` atomically; the old private key is not kept. Returns the
/// old and the new key ids. Run it with the server stopped (every node of a cluster shares
/// the folder and reads it at start).
pub fn rotate(dir: &Path) -> Result<(String, String), KeyError> {
    let path = dir.join("ed25519.key");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| KeyError::Io { path: p, source }
    };
    let old = read_private(&path)?;
    let old_pub = hex::encode(old.verifying_key().to_bytes());
    let old_id = keys::key_id(&old_pub).unwrap_or_default();
    let retired = dir.join("retired");
    std::fs::create_dir_all(&retired).map_err(io(&retired))?;
    let pub_path = retired.join(format!("{old_id}.pub"));
    std::fs::write(&pub_path, format!("{old_pub}\n")).map_err(io(&pub_path))?;
    let new = SigningKey::generate(&mut rand_core::OsRng);
    let tmp = dir.join("ed25519.key.new");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &hex::encode(new.to_bytes())).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let new_id = keys::key_id(&hex::encode(new.verifying_key().to_bytes())).unwrap_or_default();
    Ok((old_id, new_id))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Checks a signature (`{key_id}:{hex}`, or bare hex as written before key ids) over `message`
/// with a hex public key, Ed25519 or SM2 (by the key's form, [`keys::algorithm`]); a key id
/// that is not this key's fails.
pub fn verify_hex(public_key_hex: &str, message: &[u8], signature: &str) -> bool {
    let sig = keys::Signature::parse(signature);
    if let Some(id) = sig.key_id
        && keys::key_id(public_key_hex).as_deref() != Some(id)
    {
        return false;
    }
    if keys::algorithm(public_key_hex) == Some(keys::Algorithm::Sm2) {
        return verify_sm2(public_key_hex, message, sig.hex);
    }
    let Some(pk) = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    else {
        return false;
    };
    let Some(sig) = hex::decode(sig.hex)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    pk.verify(message, &Signature::from_bytes(&sig)).is_ok()
}

/// SM2 with SM3 and the distinguishing ID [`keys::SM2_DISTID`]; the signature is `r‖s`, 64
/// bytes in hex.
fn verify_sm2(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    use sm2::dsa::signature::Verifier as _;
    let Some(pk) = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|b| sm2::dsa::VerifyingKey::from_sec1_bytes(keys::SM2_DISTID, &b).ok())
    else {
        return false;
    };
    let Some(sig) = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| sm2::dsa::Signature::from_slice(&b).ok())
    else {
        return false;
    };
    pk.verify(message, &sig).is_ok()
}

/// The key of algorithm `algorithm` among `candidates` that `signature` over `message` verifies
/// with: an SM2 signature file is checked with SM2 keys only, the Ed25519 one with Ed25519 keys.
pub fn verifying_key_of<'a>(
    algorithm: keys::Algorithm,
    candidates: &'a [String],
    message: &[u8],
    signature: &str,
) -> Option<&'a str> {
    candidates
        .iter()
        .map(|k| k.as_str())
        .filter(|k| keys::algorithm(k) == Some(algorithm))
        .find(|k| verify_hex(k, message, signature))
}

/// The key among `candidates` (hex public keys) that `signature` over `message` verifies with:
/// the one its key id names, or, for a signature without one, the first that verifies.
pub fn verifying_key<'a>(
    candidates: &'a [String],
    message: &[u8],
    signature: &str,
) -> Option<&'a str> {
    candidates
        .iter()
        .map(|k| k.as_str())
        .find(|k| verify_hex(k, message, signature))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub session_id: String,
    pub project_code: String,
    pub session_code: String,
    pub kind: String,
    pub room_id: String,
    pub room_name: String,
    pub started_at_us: i64,
    pub stopped_at_us: i64,
    pub public_key: String,
    pub recordings: Vec<ManifestHead>,
    /// The coverage tolerance every chain of the session was written with (µs): consecutive
    /// entries meet within it, and the chains reach `stopped_at_us` within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_tolerance_us: Option<i64>,
    /// The synchronisation state of this server's clock at stop, as the system reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_clock: Option<crate::ledger::clock::ServerClockSync>,
    /// The server asks a timestamp authority for an RFC 3161 token over this manifest's bytes
    /// (`[signing] tsa_url`); the token comes later, beside it (`manifest.json.tsr`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timestamp_requested: bool,
    /// The session's witness record (见证记录) as it stood at stop: its hash, entries and
    /// signer (`signed_by: null` when stopped unsigned). Absent in manifests signed before
    /// the record existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_record: Option<crate::ledger::witness_record::Binding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestHead {
    pub recording_id: String,
    pub source: String,
    pub genesis_hash: String,
    pub head_seq: i64,
    pub head_hash: String,
    /// The seqs of the chain's checkpoints signed while it recorded (`ledger::checkpoint`), each
    /// checked before this manifest was signed: one missing later was deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<i64>,
}

pub const MANIFEST_FORMAT: &str = "witness-manifest/1";

impl Manifest {
    /// The coverage tolerance its chains are checked with: the one signed, never above the
    /// maximum, and the maximum for a manifest written before it was signed.
    pub fn coverage_tolerance_us(&self) -> i64 {
        self.coverage_tolerance_us
            .unwrap_or(crate::ledger::coverage::MAX_TOLERANCE_US)
            .min(crate::ledger::coverage::MAX_TOLERANCE_US)
    }
}

pub fn manifest_key(project_code: &str, session_id: &str) -> String {
    format!("{project_code}/{session_id}/manifest.json")
}

pub fn signature_key(manifest_key: &str) -> String {
    format!("{manifest_key}.sig")
}

/// Where the SM2 signature of a manifest is stored: `{manifest key}.sm2.sig`.
pub fn sm2_signature_key(manifest_key: &str) -> String {
    format!("{manifest_key}.sm2.sig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_persists_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path()).unwrap();
        let b = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        let sig = a.sign_hex(b"manifest");
        assert!(verify_hex(&b.public_key_hex(), b"manifest", &sig));
        assert!(!verify_hex(&b.public_key_hex(), b"manifesT", &sig));
        assert!(sig.starts_with(&format!("{}:", a.key_id())));
        // A signature written before key ids (bare hex) still verifies.
        let bare = sig.split_once(':').unwrap().1;
        assert!(verify_hex(&a.public_key_hex(), b"manifest", bare));
        let other = Signer::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        // A key id naming another key fails even if the signature bytes are right.
        let relabelled = format!("{}:{bare}", other.key_id());
        assert!(!verify_hex(&a.public_key_hex(), b"manifest", &relabelled));
        assert!(!verify_hex(&other.public_key_hex(), b"manifest", &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ed25519.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn sm2_signs_beside_ed25519() {
        let dir = tempfile::tempdir().unwrap();
        let off = Signer::load(dir.path(), false).unwrap();
        assert_eq!(off.sign_sm2_hex(b"m"), None);
        assert!(!dir.path().join(SM2_KEY_FILE).exists());
        let on = Signer::load(dir.path(), true).unwrap();
        let pk = on.sm2_public_key_hex().unwrap();
        assert_eq!(keys::algorithm(&pk), Some(keys::Algorithm::Sm2));
        let sig = on.sign_sm2_hex(b"manifest").unwrap();
        assert!(sig.starts_with(&format!("{}:", on.sm2_key_id().unwrap())));
        assert!(verify_hex(&pk, b"manifest", &sig));
        assert!(!verify_hex(&pk, b"manifesT", &sig));
        assert!(!verify_hex(&on.public_key_hex(), b"manifest", &sig));
        let all = on.all_public_keys();
        assert_eq!(
            verifying_key_of(keys::Algorithm::Sm2, &all, b"manifest", &sig),
            Some(pk.as_str())
        );
        let ed = on.sign_hex(b"manifest");
        assert_eq!(
            verifying_key_of(keys::Algorithm::Sm2, &all, b"manifest", &ed),
            None
        );
        assert!(
            std::fs::read_to_string(dir.path().join(SM2_PEM_FILE))
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(
            on.views().iter().map(|v| v.algorithm).collect::<Vec<_>>(),
            ["ed25519", "sm2"]
        );
        // Turned off again: the key still verifies what it signed, and no longer signs.
        let later = Signer::load(dir.path(), false).unwrap();
        assert_eq!(later.sign_sm2_hex(b"m"), None);
        assert!(later.all_public_keys().contains(&pk));
        assert_eq!(later.views()[1].status, "retired");
        assert_eq!(
            Signer::load(dir.path(), true).unwrap().sm2_public_key_hex(),
            Some(pk)
        );
    }

    #[test]
    fn rotation_keeps_the_old_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = Signer::load_or_create(dir.path()).unwrap();
        let sig = old.sign_hex(b"before");
        let (old_id, new_id) = rotate(dir.path()).unwrap();
        assert_eq!(old_id, old.key_id());
        let new = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(new.key_id(), new_id);
        assert_ne!(new_id, old_id);
        assert_eq!(new.retired()[0].public_key, old.public_key_hex());
        let all = new.all_public_keys();
        assert_eq!(
            verifying_key(&all, b"before", &sig),
            Some(old.public_key_hex().as_str())
        );
        let views = new.views();
        assert_eq!((views[0].status, views[1].status), ("current", "retired"));
        assert!(!dir.path().join("ed25519.key.new").exists());
    }
}
