//! Passwords: Argon2id hashes (PHC strings), the password policy, and one-time passwords for
//! new and reset accounts.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::{OsRng, RngCore};

/// Argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's minimum), salt from the OS.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id with valid parameters")
        .to_string()
}

/// Constant-time check against a stored hash; a malformed hash never verifies.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that never verifies, checked against when the user does not exist, so that the
/// answer takes as long either way.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("no user has this password"))
}

/// The policy (GB/T 22239 等保三级 asks for complexity and regular change): at least 12
/// characters, three of lower case, upper case, digits and symbols, not containing the user name.
pub fn check_policy(username: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 12 {
        return Err("the password needs at least 12 characters".into());
    }
    if n > 256 {
        return Err("the password may have at most 256 characters".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if classes < 3 {
        return Err("the password needs three of: lower case, upper case, digits, symbols".into());
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("the password must not contain the user name".into());
    }
    Ok(())
}

/// A random one-time password that meets the policy: 20 characters from an alphabet without
/// look-alikes, always with all four classes.
pub fn one_time() -> String {
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"-_.+=";
    let pick = |set: &[u8]| set[(OsRng.next_u32() as usize) % set.len()] as char;
    let mut s: String = (0..16)
        .map(|i| match i % 3 {
            0 => pick(LOWER),
            1 => pick(UPPER),
            _ => pick(DIGIT),
        })
        .collect();
    s.insert(5, pick(SYMBOL));
    s.insert(11, pick(SYMBOL));
    s.push(pick(DIGIT));
    s.push(pick(LOWER));
    s
}

/// 32 random bytes as hex: session ids, CSRF tokens, API token secrets.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_policy_holds() {
        let h = hash("Correct-Horse-9");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Correct-Horse-9", &h));
        assert!(!verify("correct-horse-9", &h));
        assert!(!verify("x", "not a hash"));
        assert!(check_policy("li", "short1A").is_err());
        assert!(check_policy("li", "alllowercaseletters").is_err());
        assert!(check_policy("zhangwei", "Zhangwei-2026-x").is_err());
        assert!(check_policy("zhangwei", "Bid-Opening-2026").is_ok());
        for _ in 0..50 {
            let p = one_time();
            assert!(check_policy("admin", &p).is_ok(), "{p}");
        }
    }
}
