//! Logging in with a password (and a TOTP code where the account has one): throttling instead
//! of lockout (`throttle`), one use per TOTP step, the same answer and the same cost for an
//! unknown name, a wrong password and a throttled attempt, and the audit trail of attempts,
//! failures summarised so that a flood cannot grow it without bound.

use super::throttle::{self, Attempt, Keys, Summary};
use super::users::{self, User};
use super::{logins, password, totp};
use crate::audit::{self, Actor, Outcome};
use crate::config::IdentityConfig;
use crate::db::Pool;
use crate::time::now_us;

/// Why a login failed. The caller learns only what it may: an unknown name, a wrong password,
/// a disabled account and an attempt refused unchecked by the throttle read alike; the audit
/// trail has the detail.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// `retry_after_s`: when the next attempt of this name from this address will be checked
    /// (it depends only on counters kept alike for existing and unknown names).
    #[error("wrong user name or password")]
    Failed { retry_after_s: Option<u64> },
    #[error("this account needs its 6-digit TOTP code (field totp)")]
    TotpRequired,
    #[error("the TOTP code is wrong, expired or already used")]
    TotpInvalid { retry_after_s: Option<u64> },
    #[error(transparent)]
    Busy(#[from] password::Busy),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A successful login: the user and their new browser session.
pub struct LoggedIn {
    pub user: User,
    /// The session cookie's value (only its hash is stored).
    pub cookie: String,
    pub csrf_token: String,
}

pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub totp: Option<&'a str>,
    /// Where the attempt comes from: throttling and the audit trail.
    pub address: &'a str,
}

fn retry_after(until_us: i64) -> Option<u64> {
    let left = until_us - now_us();
    (left > 0).then(|| (left as u64).div_ceil(1_000_000))
}

/// Checks the credentials and opens a browser session. Successes are audited one by one,
/// failures and refusals summarised (`throttle::note`).
pub async fn log_in(
    pool: &Pool,
    cfg: &IdentityConfig,
    hasher: &password::Hasher,
    c: Credentials<'_>,
) -> Result<LoggedIn, LoginError> {
    let keys = Keys::new(c.username, c.address);
    let window = cfg.login_audit_window_us();
    // Refused unchecked: summarised per address, whatever the names tried.
    let refused = |why: &'static str| {
        let keys = &keys;
        async move {
            let a = Attempt {
                key: &keys.address,
                username: c.username,
                role: "",
                address: c.address,
                why,
            };
            if let Some(s) = throttle::note(pool, window, &a).await? {
                write_summary(pool, &s).await?;
            }
            Ok::<_, sqlx::Error>(())
        }
    };
    if c.username.chars().count() > 64 || c.password.chars().count() > 256 {
        refused("user name or password too long").await?;
        return Err(LoginError::Failed {
            retry_after_s: None,
        });
    }
    let known = throttle::known_address(pool, cfg, c.username, c.address).await?;
    let blocked = throttle::blocked_until(pool, cfg, &keys, known).await?;
    if blocked > 0 {
        refused("throttled after failed logins (not checked)").await?;
        return Err(LoginError::Failed {
            retry_after_s: retry_after(blocked),
        });
    }
    let user = users::by_username(pool, c.username).await?;
    // An unknown name costs an Argon2 check too (against a dummy hash).
    let right = match hasher
        .verify(c.password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
    {
        Ok(right) => right,
        Err(busy) => {
            refused("server busy checking other passwords (not checked)").await?;
            return Err(busy.into());
        }
    };
    let role = user.as_ref().map_or("", |u| u.role.as_str());
    let failed = |why: &'static str| {
        let keys = &keys;
        async move {
            let until = throttle::failed(pool, cfg, keys, known).await?;
            let a = Attempt {
                key: &keys.pair,
                username: c.username,
                role,
                address: c.address,
                why,
            };
            if let Some(s) = throttle::note(pool, window, &a).await? {
                write_summary(pool, &s).await?;
            }
            Ok::<_, sqlx::Error>(retry_after(until))
        }
    };
    let user = match (user, right) {
        (None, _) => {
            let retry_after_s = failed("unknown user").await?;
            return Err(LoginError::Failed { retry_after_s });
        }
        (Some(_), false) => {
            let retry_after_s = failed("wrong password").await?;
            return Err(LoginError::Failed { retry_after_s });
        }
        // Disabled: checked after the password, so that it costs the same and reads alike.
        (Some(u), true) if u.disabled => {
            let retry_after_s = failed("account disabled").await?;
            return Err(LoginError::Failed { retry_after_s });
        }
        (Some(u), true) => u,
    };
    let step = match second_factor(&user, c.totp) {
        Ok(step) => step,
        Err((why, LoginError::TotpRequired)) => {
            // The password was right: a trace of that, though the login is not complete.
            let a = Attempt {
                key: &keys.pair,
                username: c.username,
                role,
                address: c.address,
                why,
            };
            if let Some(s) = throttle::note(pool, window, &a).await? {
                write_summary(pool, &s).await?;
            }
            return Err(LoginError::TotpRequired);
        }
        Err((why, _)) => {
            let retry_after_s = failed(why).await?;
            return Err(LoginError::TotpInvalid { retry_after_s });
        }
    };
    throttle::succeeded(pool, &keys).await?;
    users::record_success(pool, &user.id, step).await?;
    let (cookie, csrf_token) = logins::create(pool, &user.id, c.address, cfg.session_us()).await?;
    // What is pending for this name and address goes in first, so the trail keeps the order.
    if let Some(s) = throttle::take_pending(pool, &keys.pair).await? {
        write_summary(pool, &s).await?;
    }
    audit::Event::new(&Actor::person(c.username, role, c.address), "login")
        .target(c.username)
        .outcome(Outcome::Allowed)
        .append(pool)
        .await?;
    Ok(LoggedIn {
        user,
        cookie,
        csrf_token,
    })
}

/// One audit entry for attempts summarised: the latest one's reason, and how many it stands
/// for when more than one.
async fn write_summary(pool: &Pool, s: &Summary) -> Result<(), sqlx::Error> {
    let why = if s.attempts == 1 {
        s.why.clone()
    } else {
        format!(
            "{}; {} attempts summarised in this entry",
            s.why, s.attempts
        )
    };
    let role = super::roles::Role::parse(&s.role).map_or("", |r| r.as_str());
    let actor = Actor::person(s.username.as_str(), role, s.address.as_str());
    audit::Event::new(&actor, "login")
        .target(s.username.as_str())
        .outcome(Outcome::Failed(why))
        .append(pool)
        .await?;
    Ok(())
}

/// Writes the summaries of attempts that waited out their window, and forgets old counters;
/// every `login_audit_window_seconds` (at least every second).
pub fn spawn_audit_flush(pool: Pool, cfg: IdentityConfig) {
    let every = std::time::Duration::from_secs_f64(cfg.login_audit_window_seconds.max(1.0));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let round = async {
                for s in throttle::pending(&pool, None, cfg.login_audit_window_us()).await? {
                    write_summary(&pool, &s).await?;
                }
                throttle::prune(&pool, &cfg).await?;
                Ok::<_, sqlx::Error>(())
            };
            if let Err(e) = round.await {
                tracing::warn!(error = %e, "summarising failed logins in the audit trail; next round soon");
            }
        }
    });
}

/// The TOTP step a code was accepted at, for accounts with a second factor; each step is
/// accepted once.
fn second_factor(
    user: &User,
    code: Option<&str>,
) -> Result<Option<i64>, (&'static str, LoginError)> {
    if !user.totp_enabled {
        return Ok(None);
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return Err(("TOTP code missing", LoginError::TotpRequired));
    };
    let secret = user.totp_secret.clone().unwrap_or_default();
    let now_s = (now_us() / 1_000_000) as u64;
    match totp::accept(&secret, code, now_s, user.totp_last_step) {
        Some(step) => Ok(Some(step)),
        None => Err((
            "wrong or reused TOTP code",
            LoginError::TotpInvalid {
                retry_after_s: None,
            },
        )),
    }
}
