//! Key ids, fingerprints and trust: what lets a person pin the server's key. A key's id is its
//! fingerprint, the first 16 bytes of SHA-256 over the 32-byte Ed25519 public key, in lowercase
//! hex (32 digits); people read it in groups of four (`7a18 3bc2 …`). Every signature the server
//! makes names its key: `{key_id}:{signature hex}` (docs/chain-format.md, "Keys").

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The key id (= fingerprint, 32 hex digits) of a hex public key; `None` if it is not one.
pub fn key_id(public_key_hex: &str) -> Option<String> {
    let bytes = hex::decode(public_key_hex.trim()).ok()?;
    if bytes.len() != 32 {
        return None;
    }
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
        "{place}: {line:?} is neither a public key (64 hex digits) nor a fingerprint (32 hex digits)"
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
    /// Adds one key: a public key (64 hex digits) or a fingerprint (32 hex digits); spaces,
    /// colons and dashes between the digits are ignored.
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
            64 => {
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
    let user = match (xdg_config_home, home) {
        (Some(x), _) if !x.is_empty() => Some(PathBuf::from(x)),
        (_, Some(h)) if !h.is_empty() => Some(Path::new(h).join(".config")),
        _ => None,
    };
    user.map(|u| u.join("witness").join("trusted-keys"))
        .into_iter()
        .chain([PathBuf::from("/etc/witness/trusted-keys")])
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
