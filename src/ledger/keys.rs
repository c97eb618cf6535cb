//! Key ids, fingerprints and trust: what lets a person pin the server's key. A key's id is its
//! fingerprint, the first 16 bytes of SHA-256 over the public key's bytes (32 for Ed25519, 65 for
//! SM2: the uncompressed SEC1 point `04‖x‖y`), in lowercase hex (32 digits); people read it in
//! groups of four (`7a18 3bc2 …`). Every signature the server makes names its key:
//! `{key_id}:{signature hex}` (docs/chain-format.md, "Keys"). The algorithm of a public key is
//! told by its length.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The SM2 distinguishing identifier (user ID) every SM2 signature of Witness is made and
/// checked with: the default of GB/T 35276-2017 and GM/T 0009-2012, which OpenSSL calls
/// `distid:1234567812345678` and gmssl uses too.
pub const SM2_DISTID: &str = "1234567812345678";

/// The signature algorithms of the server's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    /// SM2 with SM3 (GB/T 32918.2, GB/T 32905).
    Sm2,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Sm2 => "sm2",
        }
    }
}

/// The algorithm of a hex public key, by its form: 32 bytes is Ed25519, 65 bytes starting with
/// `04` (an uncompressed SEC1 point) is SM2; `None` otherwise.
pub fn algorithm(public_key_hex: &str) -> Option<Algorithm> {
    let bytes = hex::decode(public_key_hex.trim()).ok()?;
    match bytes.len() {
        32 => Some(Algorithm::Ed25519),
        65 if bytes[0] == 4 => Some(Algorithm::Sm2),
        _ => None,
    }
}

/// The key id (= fingerprint, 32 hex digits) of a hex public key; `None` if it is not one.
pub fn key_id(public_key_hex: &str) -> Option<String> {
    algorithm(public_key_hex)?;
    let bytes = hex::decode(public_key_hex.trim()).ok()?;
    Some(hex::encode(&Sha256::digest(&bytes)[..16]))
}

/// A fingerprint as people compare it: groups of four hex digits.
pub fn grouped(key_id: &str) -> String {
    key_id
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A signature as stored: `{key_id}:{hex}`, or bare hex (written before key ids).
#[derive(Debug, PartialEq)]
pub struct Signature<'a> {
    pub key_id: Option<&'a str>,
    pub hex: &'a str,
}

impl<'a> Signature<'a> {
    pub fn parse(text: &'a str) -> Signature<'a> {
        let text = text.trim();
        match text.split_once(':') {
            Some((id, hex)) => Signature {
                key_id: Some(id),
                hex,
            },
            None => Signature {
                key_id: None,
                hex: text,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trust file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{place}: {line:?} is neither a public key (Ed25519: 64 hex digits; SM2: 130 hex digits, 04…) nor a fingerprint (32 hex digits)"
    )]
    Malformed { place: String, line: String },
}

/// The keys a verifier was given: public keys and fingerprints.
#[derive(Debug, Default, Clone)]
pub struct TrustedKeys {
    /// Key ids (fingerprints) trusted, whether given as a fingerprint or a public key.
    ids: Vec<String>,
    /// Full public keys given, usable to check signatures a package's own key list lacks.
    public_keys: Vec<String>,
    /// Where they came from, for the report.
    pub sources: Vec<String>,
}

impl TrustedKeys {
    /// Adds one key: a public key (Ed25519: 64 hex digits; SM2: 130 hex digits, the
    /// uncompressed point) or a fingerprint (32 hex digits); spaces, colons and dashes between
    /// the digits are ignored.
    pub fn add(&mut self, text: &str, place: &str) -> Result<(), TrustError> {
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let malformed = || TrustError::Malformed {
            place: place.to_string(),
            line: text.trim().to_string(),
        };
        if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        match digits.len() {
            64 | 130 => {
                self.ids.push(key_id(&digits).ok_or_else(malformed)?);
                self.public_keys.push(digits);
            }
            32 => self.ids.push(digits),
            _ => return Err(malformed()),
        }
        Ok(())
    }

    /// Adds every key of a trust file: one public key or fingerprint per line; `#` starts a
    /// comment; blank lines are ignored.
    pub fn add_text(&mut self, text: &str, place: &str) -> Result<(), TrustError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            if line.trim().is_empty() {
                continue;
            }
            self.add(line, &format!("{place} line {}", n + 1))?;
        }
        Ok(())
    }

    pub fn add_file(&mut self, path: &Path) -> Result<(), TrustError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.add_text(&text, &path.display().to_string())?;
        self.sources.push(path.display().to_string());
        Ok(())
    }

    /// Whether the key (hex public key) is one of these.
    pub fn trusts(&self, public_key_hex: &str) -> bool {
        key_id(public_key_hex).is_some_and(|id| self.ids.contains(&id))
    }

    pub fn public_keys(&self) -> &[String] {
        &self.public_keys
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The default trust files, in the order read (each one that exists is read):
/// `$XDG_CONFIG_HOME/witness/trusted-keys` (`$HOME/.config/witness/trusted-keys` when
/// `XDG_CONFIG_HOME` is unset or empty), then `/etc/witness/trusted-keys`.
pub fn default_trust_files(xdg_config_home: Option<&str>, home: Option<&str>) -> Vec<PathBuf> {
    default_files("trusted-keys", xdg_config_home, home)
}

/// The default places of the CA bundle that timestamp tokens' TSAs must chain to, in the order
/// looked at (the first that exists is read): `$XDG_CONFIG_HOME/witness/tsa-ca.pem`
/// (`$HOME/.config/witness/tsa-ca.pem`), then `/etc/witness/tsa-ca.pem`.
pub fn default_tsa_ca_files(xdg_config_home: Option<&str>, home: Option<&str>) -> Vec<PathBuf> {
    default_files("tsa-ca.pem", xdg_config_home, home)
}

fn default_files(name: &str, xdg_config_home: Option<&str>, home: Option<&str>) -> Vec<PathBuf> {
    let user = match (xdg_config_home, home) {
        (Some(x), _) if !x.is_empty() => Some(PathBuf::from(x)),
        (_, Some(h)) if !h.is_empty() => Some(Path::new(h).join(".config")),
        _ => None,
    };
    user.map(|u| u.join("witness").join(name))
        .into_iter()
        .chain([Path::new("/etc/witness").join(name)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn fingerprints_and_signatures() {
        let id = key_id(PK).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            id,
            hex::encode(&Sha256::digest(hex::decode(PK).unwrap())[..16])
        );
        assert_eq!(grouped(&id).split(' ').count(), 8);
        assert_eq!(key_id("abcd"), None);
        let sm2 = format!("04{}", "ab".repeat(64));
        assert_eq!(algorithm(&sm2), Some(Algorithm::Sm2));
        assert_eq!(algorithm(PK), Some(Algorithm::Ed25519));
        assert_eq!(key_id(&format!("05{}", "ab".repeat(64))), None);
        let mut t = TrustedKeys::default();
        t.add(&sm2, "f").unwrap();
        assert!(t.trusts(&sm2) && !t.trusts(PK));
        assert_eq!(
            Signature::parse("ab:cd\n"),
            Signature {
                key_id: Some("ab"),
                hex: "cd"
            }
        );
        assert_eq!(Signature::parse("cd").key_id, None);
    }

    #[test]
    fn trust_files_parse() {
        let id = key_id(PK).unwrap();
        let mut t = TrustedKeys::default();
        t.add_text(
            &format!(
                "# our server\n\n{}  # grouped\n",
                grouped(&id).to_uppercase()
            ),
            "f",
        )
        .unwrap();
        assert!(t.trusts(PK));
        assert!(t.public_keys().is_empty());
        let mut t = TrustedKeys::default();
        t.add_text(PK, "f").unwrap();
        assert!(t.trusts(PK) && t.public_keys() == [PK.to_string()]);
        let e = TrustedKeys::default()
            .add_text("ok\nnot-a-key\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f line 1"), "{e}");
        assert!(!TrustedKeys::default().trusts(PK));
    }

    #[test]
    fn default_places() {
        let p = default_trust_files(Some("/x"), Some("/h"));
        assert_eq!(p[0], Path::new("/x/witness/trusted-keys"));
        assert_eq!(p[1], Path::new("/etc/witness/trusted-keys"));
        let p = default_trust_files(Some(""), Some("/h"));
        assert_eq!(p[0], Path::new("/h/.config/witness/trusted-keys"));
        assert_eq!(default_trust_files(None, None).len(), 1);
    }
}
