//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of clock skew either
//! way). Each accepted code's step is remembered, so a code works once.

use rand_core::{OsRng, RngCore};
use totp_rs::{Algorithm, Secret, TOTP};

const STEP: u64 = 30;

fn totp(secret_b32: &str, account: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        bytes,
        Some("Witness".into()),
        account.to_string(),
    )
    .ok()
}

/// A new 160-bit secret, base32 as authenticator apps expect.
pub fn new_secret() -> String {
    let mut b = [0u8; 20];
    OsRng.fill_bytes(&mut b);
    Secret::Raw(b.to_vec()).to_encoded().to_string()
}

/// The `otpauth://` URL an authenticator app reads (as a QR code or typed in).
pub fn provisioning_url(secret_b32: &str, username: &str) -> String {
    totp(secret_b32, username)
        .map(|t| t.get_url())
        .unwrap_or_default()
}

/// The code for `unix_seconds` (for tests and for people checking their clock).
pub fn code_at(secret_b32: &str, unix_seconds: u64) -> String {
    totp(secret_b32, "x")
        .map(|t| t.generate(unix_seconds))
        .unwrap_or_default()
}

/// The step `code` belongs to, if it is valid now and newer than `last_step`.
pub fn accept(secret_b32: &str, code: &str, unix_seconds: u64, last_step: i64) -> Option<i64> {
    let t = totp(secret_b32, "x")?;
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = (unix_seconds / STEP) as i64;
    (now - 1..=now + 1)
        .filter(|step| *step > last_step && *step >= 0)
        .find(|step| t.generate(*step as u64 * STEP) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_single_use() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) → 287082 with 6.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        assert_eq!(code_at(&secret, 59), "287082");
        let step = accept(&secret, "287082", 59, 0).expect("valid");
        assert_eq!(
            accept(&secret, "287082", 59, step),
            None,
            "a code works once"
        );
        assert_eq!(accept(&secret, "287082", 59 + 120, 0), None, "too old");
        assert_eq!(accept(&secret, "28708a", 59, 0), None);
        assert!(provisioning_url(&new_secret(), "li").starts_with("otpauth://totp/Witness:li?"));
    }
}
