//! The server's Ed25519 signing key and the signed session manifest: at stop, every chain head of
//! the session is written to `{project}/{session}/manifest.json`, with the detached signature in
//! `manifest.json.sig` (hex) beside it.

use std::path::Path;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {path}: not 32 bytes of hex")]
    Malformed { path: String },
}

/// The server's signing identity.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// Loads `dir/ed25519.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Signer, KeyError> {
        let path = dir.join("ed25519.key");
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Malformed {
                    path: path.display().to_string(),
                })?;
            return Ok(Signer {
                key: SigningKey::from_bytes(&bytes),
            });
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let key = SigningKey::generate(&mut rand_core::OsRng);
        write_private(&path, &hex::encode(key.to_bytes())).map_err(io)?;
        tracing::info!(path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()), "generated server signing key");
        Ok(Signer { key })
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
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

/// Checks a hex signature over `message` with a hex public key.
pub fn verify_hex(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let Some(pk) = hex::decode(public_key_hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    else {
        return false;
    };
    let Some(sig) = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    pk.verify(message, &Signature::from_bytes(&sig)).is_ok()
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestHead {
    pub recording_id: String,
    pub source: String,
    pub genesis_hash: String,
    pub head_seq: i64,
    pub head_hash: String,
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
        let other = Signer::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
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
}
