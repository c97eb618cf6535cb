//! Login throttling (no lockout) and the summarised audit of failed logins, in SQL so that every
//! node of a cluster sees the same counters.
//!
//! The rule (docs/api.md, "Failed logins"): three counters of failures, kept for the name as
//! typed whether or not such an account exists: the name (`account`), the client address,
//! IPv6 by /64 (`address`), and the name from that address (`pair`). After
//! `login_free_failures` failures of the name or the pair, or `login_address_free_failures` of
//! the address, each further attempt waits `login_first_delay_seconds`, doubling with every
//! failure up to `login_max_delay_seconds`; an attempt before then is refused unchecked. A
//! counter with no failure for `login_forget_hours` starts again. An address the account logged
//! in from within `login_known_address_days` is its owner's: only the pair counts there, so
//! attackers elsewhere never keep the owner out. Counters are changed by single SQL statements
//! (`failures = failures + 1 … RETURNING`): parallel failures all count.

use std::net::IpAddr;

use sqlx::Row;

use crate::config::IdentityConfig;
use crate::db::Pool;
use crate::time::now_us;

/// The three counters an attempt touches.
#[derive(Debug, Clone)]
pub struct Keys {
    pub account: String,
    pub address: String,
    pub pair: String,
}

/// The part of a client address that identifies it for throttling: an IPv4 address, an IPv6
/// /64 (one subscriber's network), or the text as given when it is not an address.
pub fn client_net(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_string(),
    }
}

impl Keys {
    pub fn new(username: &str, address: &str) -> Keys {
        let net = client_net(address);
        Keys {
            account: format!("account:{username}"),
            pair: format!("pair:{net}|{username}"),
            address: format!("address:{net}"),
        }
    }

    /// The counters that apply: only the pair's at an address the account is known from.
    fn applying(&self, known: bool) -> Vec<&str> {
        if known {
            vec![&self.pair]
        } else {
            vec![&self.pair, &self.account, &self.address]
        }
    }
}

/// Whether `username` logged in from exactly `address` within `cfg.login_known_address_days`.
/// False for a name no account has, as for an address the account never used.
pub async fn known_address(
    pool: &Pool,
    cfg: &IdentityConfig,
    username: &str,
    address: &str,
) -> Result<bool, sqlx::Error> {
    if cfg.login_known_address_us() == 0 {
        return Ok(false);
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1 AND s.address = $2 AND s.created_at >= $3",
    )
    .bind(username)
    .bind(address)
    .bind(now_us() - cfg.login_known_address_us())
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// Until when (Unix µs) the next attempt of these keys is refused unchecked; 0: not refused.
pub async fn blocked_until(
    pool: &Pool,
    cfg: &IdentityConfig,
    keys: &Keys,
    known: bool,
) -> Result<i64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT key, blocked_until, last_failure FROM login_throttle WHERE key IN ($1, $2, $3)",
    )
    .bind(&keys.pair)
    .bind(&keys.account)
    .bind(&keys.address)
    .fetch_all(pool)
    .await?;
    let forgotten = now_us() - cfg.login_forget_us();
    let applying = keys.applying(known);
    let mut until = 0;
    for r in rows {
        let key: String = r.try_get("key")?;
        let (blocked, last): (i64, i64) = (r.try_get("blocked_until")?, r.try_get("last_failure")?);
        if applying.contains(&key.as_str()) && last >= forgotten {
            until = until.max(blocked);
        }
    }
    Ok(if until > now_us() { until } else { 0 })
}

/// A checked attempt failed: each counter counts it (atomically, so parallel failures all
/// count) and sets its wait. Returns until when the next attempt of these keys is refused
/// (0: not refused).
pub async fn failed(
    pool: &Pool,
    cfg: &IdentityConfig,
    keys: &Keys,
    known: bool,
) -> Result<i64, sqlx::Error> {
    let now = now_us();
    let forgotten = now - cfg.login_forget_us();
    let mut until = 0;
    for (key, free) in [
        (&keys.pair, cfg.login_free_failures),
        (&keys.account, cfg.login_free_failures),
        (&keys.address, cfg.login_address_free_failures),
    ] {
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO login_throttle (key, failures, last_failure) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.last_failure < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
               blocked_until = CASE WHEN login_throttle.last_failure < $3 THEN 0 ELSE login_throttle.blocked_until END, \
               last_failure = $2 \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(forgotten)
        .fetch_one(pool)
        .await?;
        let delay = cfg.login_delay_us(failures, free);
        if delay == 0 {
            continue;
        }
        // Only ever later: of parallel failures, the one that counted most sets the wait.
        sqlx::query(
            "UPDATE login_throttle SET blocked_until = $1 WHERE key = $2 AND blocked_until < $1",
        )
        .bind(now + delay)
        .bind(key)
        .execute(pool)
        .await?;
        if keys.applying(known).contains(&key.as_str()) {
            until = until.max(now + delay);
        }
    }
    Ok(until)
}

/// The right credentials: the name's failures from this address start again. The name's and
/// the address's counters stay (one good login must not buy an attacker new free guesses).
pub async fn succeeded(pool: &Pool, keys: &Keys) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE login_throttle SET failures = 0, blocked_until = 0 WHERE key = $1")
        .bind(&keys.pair)
        .execute(pool)
        .await?;
    Ok(())
}

/// A new password: the account-wide counter starts again (earlier guesses were at the old one).
pub async fn forget_account(pool: &Pool, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(Keys::new(username, "").account)
        .execute(pool)
        .await?;
    Ok(())
}

/// A failed or refused attempt, to be audited under `key` (the pair for checked failures, the
/// address for attempts refused unchecked).
pub struct Attempt<'a> {
    pub key: &'a str,
    pub username: &'a str,
    pub role: &'a str,
    pub address: &'a str,
    pub why: &'a str,
}

/// Attempts of one key that an audit entry is to stand for now.
#[derive(Debug)]
pub struct Summary {
    pub username: String,
    pub role: String,
    pub address: String,
    pub why: String,
    /// How many attempts the entry stands for (the latest one's reason is `why`).
    pub attempts: i64,
}

/// Counts an attempt as not yet audited; returns the summary to write now when the key had no
/// entry within `window_us` (or always with `window_us` 0).
pub async fn note(
    pool: &Pool,
    window_us: i64,
    a: &Attempt<'_>,
) -> Result<Option<Summary>, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO login_throttle (key, unaudited, username, role, address, why) VALUES ($1, 1, $2, $3, $4, $5) \
         ON CONFLICT (key) DO UPDATE SET unaudited = login_throttle.unaudited + 1, \
           username = $2, role = $3, address = $4, why = $5 \
         RETURNING unaudited, audited_at",
    )
    .bind(a.key)
    .bind(a.username)
    .bind(a.role)
    .bind(a.address)
    .bind(a.why)
    .fetch_one(pool)
    .await?;
    let (pending, audited_at): (i64, i64) = (r.try_get("unaudited")?, r.try_get("audited_at")?);
    if audited_at > now_us() - window_us {
        return Ok(None);
    }
    let claimed = claim(pool, a.key, audited_at, pending).await?;
    Ok(claimed.then(|| Summary {
        username: a.username.into(),
        role: a.role.into(),
        address: a.address.into(),
        why: a.why.into(),
        attempts: pending,
    }))
}

/// Takes `n` pending attempts of `key` for one entry, if no one else wrote its entry since
/// `audited_at` (compare and set: of two nodes or tasks, one writes it).
async fn claim(pool: &Pool, key: &str, audited_at: i64, n: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE login_throttle SET audited_at = $1, unaudited = unaudited - $2 WHERE key = $3 AND audited_at = $4 AND unaudited >= $2",
    )
    .bind(now_us().max(audited_at + 1))
    .bind(n)
    .bind(key)
    .bind(audited_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes whatever is pending for `key` now, window or not (before a success is audited, so
/// that the trail keeps the order).
pub async fn take_pending(pool: &Pool, key: &str) -> Result<Option<Summary>, sqlx::Error> {
    Ok(pending(pool, Some(key), i64::MAX).await?.pop())
}

/// Keys with attempts pending and no entry within `window_us` (all of them with `key`
/// `None`), each claimed for one entry.
pub async fn pending(
    pool: &Pool,
    key: Option<&str>,
    window_us: i64,
) -> Result<Vec<Summary>, sqlx::Error> {
    let cutoff = now_us().saturating_sub(window_us);
    let rows = sqlx::query(
        "SELECT key, unaudited, audited_at, username, role, address, why FROM login_throttle \
         WHERE unaudited > 0 AND audited_at <= $1 AND ($2 = '' OR key = $2) ORDER BY audited_at LIMIT 1000",
    )
    .bind(if key.is_some() { now_us() } else { cutoff })
    .bind(key.unwrap_or(""))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let (k, n, at): (String, i64, i64) = (
            r.try_get("key")?,
            r.try_get("unaudited")?,
            r.try_get("audited_at")?,
        );
        if claim(pool, &k, at, n).await? {
            out.push(Summary {
                username: r.try_get("username")?,
                role: r.try_get("role")?,
                address: r.try_get("address")?,
                why: r.try_get("why")?,
                attempts: n,
            });
        }
    }
    Ok(out)
}

/// Forgets counters with nothing left to say: no failure within `login_forget_hours`, no
/// wait running, nothing pending for the audit trail.
pub async fn prune(pool: &Pool, cfg: &IdentityConfig) -> Result<u64, sqlx::Error> {
    let now = now_us();
    Ok(sqlx::query(
        "DELETE FROM login_throttle WHERE unaudited = 0 AND last_failure < $1 AND blocked_until < $2 AND audited_at < $3",
    )
    .bind(now - cfg.login_forget_us())
    .bind(now)
    .bind(now - cfg.login_audit_window_us())
    .execute(pool)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grouped_by_subscriber() {
        assert_eq!(client_net("192.0.2.7"), "192.0.2.7");
        assert_eq!(client_net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(
            client_net("2001:db8:1:2:ffff::1"),
            client_net("2001:db8:1:2::9")
        );
        assert_eq!(client_net("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_net("unknown"), "unknown");
        let k = Keys::new("admin", "2001:db8:1:2::9");
        assert_eq!(k.pair, "pair:2001:db8:1:2::/64|admin");
        assert_eq!(k.applying(true), vec![k.pair.as_str()]);
        assert_eq!(k.applying(false).len(), 3);
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let cfg = IdentityConfig::default();
        let s = |f| cfg.login_delay_us(f, 5) as f64 / 1e6;
        assert_eq!((s(0), s(4)), (0.0, 0.0));
        assert_eq!((s(5), s(6), s(7)), (1.0, 2.0, 4.0));
        assert_eq!(s(14), 512.0);
        assert_eq!((s(15), s(1000)), (900.0, 900.0));
    }
}
