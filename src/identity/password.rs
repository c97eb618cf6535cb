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

/// Argon2 costs 19 MiB and tens of milliseconds of one core per check: checks run on the
/// blocking pool, never on the async workers that renew leases and write chains, and at most
/// `permits` at once. A check that finds no permit within `wait` is refused (`Busy`) rather than
/// queued without bound.
pub struct Hasher {
    permits: tokio::sync::Semaphore,
    wait: std::time::Duration,
}

/// Every permit to hash a password is taken: try again in a moment.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks at once; try again in a second")]
pub struct Busy;

impl Hasher {
    pub fn new(permits: usize, wait: std::time::Duration) -> Hasher {
        Hasher {
            permits: tokio::sync::Semaphore::new(permits.max(1)),
            wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let _permit = tokio::time::timeout(self.wait, self.permits.acquire())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        // The permit is held until the hash is done, even if the caller went away.
        tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
    }

    /// `verify` on the blocking pool; `None` checks against the dummy hash (an unknown user
    /// costs the same time).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Busy> {
        let (password, stored) = (password.to_owned(), stored.map(str::to_owned));
        self.run(move || match stored {
            Some(h) => verify(&password, &h),
            None => {
                verify(&password, dummy_hash());
                false
            }
        })
        .await
    }

    /// `hash` on the blocking pool.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let password = password.to_owned();
        self.run(move || hash(&password)).await
    }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hasher_checks_off_the_workers_and_refuses_beyond_its_permits() {
        let h = std::sync::Arc::new(Hasher::new(1, std::time::Duration::from_millis(1)));
        let stored = hash("Correct-Horse-9");
        assert!(h.verify("Correct-Horse-9", Some(&stored)).await.unwrap());
        assert!(!h.verify("Correct-Horse-9", None).await.unwrap());
        // One permit: of many checks started together, some find it taken and are refused
        // at once instead of waiting.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (h, s) = (h.clone(), stored.clone());
                tokio::spawn(async move { h.verify("wrong", Some(&s)).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(Busy) => busy += 1,
            }
        }
        assert!(busy >= 1, "one permit, eight checks at once: some refused");
    }
}
