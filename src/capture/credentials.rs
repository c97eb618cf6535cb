//! Camera credentials: write-only. They come in as the user info of a source URL
//! (`rtsp://user:pw@cam/…`) or through the credentials endpoint, are split from the URL at once,
//! and are stored only sealed (XChaCha20-Poly1305) with a key kept in `data/keys/` beside the
//! signing key. Nothing shows them again: views carry the URL without user info and
//! `has_credentials`; the recorder and the probe get them back only in memory, as `rtspsrc`'s
//! `user-id` and `user-pw`, so that not even GStreamer's messages hold them in a URL.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use percent_encoding::percent_decode_str;

/// Sealed values start with this, so a future key or cipher can be told apart.
const SEALED_PREFIX: &str = "v1:";
const KEY_FILE: &str = "credentials.key";
/// Longest user name or password accepted.
pub const MAX_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("credentials key {path}: expected 64 hex characters")]
    MalformedKey { path: String },
    /// Sealed with another key (a node whose `data/keys/credentials.key` differs) or altered.
    #[error("stored camera credentials cannot be opened with this server's key")]
    Unreadable,
}

/// A camera's user name and password, in memory only. Never serialized; `Debug` hides both.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// Checks lengths and characters; the message never repeats the values.
    pub fn check(&self) -> Result<(), String> {
        if self.username.is_empty() {
            return Err("username: expected at least one character".into());
        }
        for (field, v) in [("username", &self.username), ("password", &self.password)] {
            if v.chars().count() > MAX_LEN || v.chars().any(char::is_control) {
                return Err(format!(
                    "{field}: expected at most {MAX_LEN} printable characters"
                ));
            }
        }
        if self.username.contains(':') {
            return Err("username: must not contain ':'".into());
        }
        Ok(())
    }

    /// `text` with every occurrence of the password (as typed and as percent-encoded in a URL)
    /// replaced by `***`: for error texts that come from a camera or from GStreamer.
    pub fn scrub(&self, text: &str) -> String {
        if self.password.is_empty() {
            return text.to_string();
        }
        let encoded = percent_encoding::utf8_percent_encode(
            &self.password,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let mut out = text.replace(&self.password, "***");
        if encoded != self.password {
            out = out.replace(&encoded, "***");
        }
        out
    }
}

/// `url` without its user info, and the credentials it carried (percent-decoded). A URL that
/// does not parse is returned as it is (validation refuses it later, naming it masked).
pub fn split_url(url: &str) -> (String, Option<Credentials>) {
    let Ok(mut u) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    if u.username().is_empty() && u.password().is_none() {
        return (url.to_string(), None);
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let creds = Credentials {
        username: decode(u.username()),
        password: u.password().map(decode).unwrap_or_default(),
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    (u.to_string(), Some(creds))
}

/// The URL as it may be shown: any user info replaced by `***`.
pub fn masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparsable: cut everything before an '@' that might be user info.
        Err(_) => match url.rsplit_once('@') {
            Some((head, tail)) => match head.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://***@{tail}"),
                None => format!("***@{tail}"),
            },
            None => url.to_string(),
        },
    }
}

/// The key that seals camera credentials: `keys/credentials.key`, created (mode 0600) on first
/// start. Nodes of a cluster share it as they share the signing key.
#[derive(Clone)]
pub struct CredentialKey {
    cipher: XChaCha20Poly1305,
}

impl CredentialKey {
    pub fn load_or_create(dir: &Path) -> Result<CredentialKey, CredentialError> {
        let path = dir.join(KEY_FILE);
        let io = |source| CredentialError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| CredentialError::MalformedKey {
                    path: path.display().to_string(),
                })?;
            return Ok(CredentialKey::from_bytes(&bytes));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let key = XChaCha20Poly1305::generate_key(&mut chacha20poly1305::aead::OsRng);
        write_private(&path, &hex::encode(key)).map_err(io)?;
        tracing::info!(path = %path.display(), "generated camera credentials key");
        Ok(CredentialKey::from_bytes(&key.into()))
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> CredentialKey {
        CredentialKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// `v1:` + base64(nonce ‖ ciphertext) of `username:password`.
    pub fn seal(&self, c: &Credentials) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut chacha20poly1305::aead::OsRng);
        let plain = format!("{}:{}", c.username, c.password);
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .expect("XChaCha20-Poly1305 encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Credentials, CredentialError> {
        let raw = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > 24)
            .ok_or(CredentialError::Unreadable)?;
        let (nonce, body) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| CredentialError::Unreadable)?;
        let text = String::from_utf8(plain).map_err(|_| CredentialError::Unreadable)?;
        let (username, password) = text.split_once(':').ok_or(CredentialError::Unreadable)?;
        Ok(Credentials {
            username: username.into(),
            password: password.into(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn split_and_mask() {
        let (url, c) = split_url("rtsp://camuser:S3cret%40Pw@10.0.0.5:554/ch1?x=1");
        assert_eq!(url, "rtsp://10.0.0.5:554/ch1?x=1");
        assert_eq!(c, Some(creds("camuser", "S3cret@Pw")));
        let (url, c) = split_url("rtsp://admin@cam/a");
        assert_eq!(url, "rtsp://cam/a");
        assert_eq!(c, Some(creds("admin", "")));
        assert_eq!(split_url("rtsp://cam/a"), ("rtsp://cam/a".into(), None));
        assert_eq!(split_url("not a url"), ("not a url".into(), None));
        assert_eq!(masked("rtsp://u:p@h/a"), "rtsp://***@h/a");
        assert_eq!(masked("rtsp://h/a"), "rtsp://h/a");
        assert_eq!(masked("rtsp://u:p w@h/a"), "rtsp://***@h/a");
    }

    #[test]
    fn seal_open_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = CredentialKey::load_or_create(dir.path()).unwrap();
        let c = creds("camuser", "S3cretPw:with:colons");
        let sealed = key.seal(&c);
        assert!(!sealed.contains("S3cret"));
        assert_ne!(sealed, key.seal(&c), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).unwrap(), c);
        // The same key after a restart.
        let again = CredentialKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = CredentialKey::from_bytes(&[7; 32]);
        assert!(matches!(
            other.open(&sealed),
            Err(CredentialError::Unreadable)
        ));
        let mut raw = STANDARD.decode(&sealed[3..]).unwrap();
        raw[30] ^= 1;
        let tampered = format!("v1:{}", STANDARD.encode(raw));
        assert!(matches!(
            key.open(&tampered),
            Err(CredentialError::Unreadable)
        ));
        assert!(key.open("v1:").is_err());
        assert!(key.open("plain").is_err());
    }

    #[test]
    fn scrub_and_debug() {
        let c = creds("camuser", "p@ss word");
        assert_eq!(
            c.scrub("auth p@ss word failed at rtsp://camuser:p%40ss%20word@h/"),
            "auth *** failed at rtsp://camuser:***@h/"
        );
        assert_eq!(format!("{c:?}"), "Credentials(***)");
        assert!(c.check().is_ok());
        assert!(creds("", "x").check().is_err());
        assert!(creds("a:b", "x").check().is_err());
        assert!(creds("a", "x\n").check().is_err());
    }
}
