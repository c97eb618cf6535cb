//! Logging in with a password (and a TOTP code where the account has one): the rules of
//! lockout, one use per TOTP step and constant-time refusal of unknown users, and an audit entry
//! for every attempt, successful or not. What it returns is a new browser session.

use super::users::{self, User};
use super::{logins, password, totp};
use crate::audit::{self, Actor, Outcome};
use crate::config::IdentityConfig;
use crate::db::Pool;
use crate::time::{now_us, rfc3339};

/// Why a login failed. The caller learns only what it may (a wrong name and a wrong password
/// read alike); the audit trail has the detail.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Failed,
    #[error("too many failed logins: the account is locked until {0}")]
    Locked(String),
    #[error("this account needs its 6-digit TOTP code (field totp)")]
    TotpRequired,
    #[error("the TOTP code is wrong, expired or already used")]
    TotpInvalid,
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
    /// Where the attempt comes from, for the audit trail.
    pub address: &'a str,
}

/// Checks the credentials and opens a browser session; every attempt is audited.
pub async fn log_in(
    pool: &Pool,
    cfg: &IdentityConfig,
    c: Credentials<'_>,
) -> Result<LoggedIn, LoginError> {
    let attempt = |role: &'static str| Actor::person(c.username, role, c.address);
    let audit = |role: &'static str, outcome: Outcome| {
        let actor = attempt(role);
        async move {
            audit::Event::new(&actor, "login")
                .target(c.username)
                .outcome(outcome)
                .append(pool)
                .await
        }
    };
    if c.username.chars().count() > 64 || c.password.chars().count() > 256 {
        return Err(LoginError::Failed);
    }
    let Some(user) = users::by_username(pool, c.username).await? else {
        password::verify(c.password, password::dummy_hash()); // same time either way
        audit("", Outcome::Failed("unknown user".into())).await?;
        return Err(LoginError::Failed);
    };
    let role = user.role.as_str();
    if let Err((why, refusal)) = check_account(&user) {
        audit(role, Outcome::Failed(why.into())).await?;
        return Err(refusal);
    }
    if !password::verify(c.password, &user.password_hash) {
        let locked =
            users::record_failure(pool, &user, cfg.max_failed_logins, cfg.lockout_us()).await?;
        let why = format!(
            "wrong password{}",
            if locked { "; account locked" } else { "" }
        );
        audit(role, Outcome::Failed(why)).await?;
        return Err(LoginError::Failed);
    }
    let step = match second_factor(&user, c.totp) {
        Ok(step) => step,
        Err((why, refusal)) => {
            if matches!(refusal, LoginError::TotpInvalid) {
                users::record_failure(pool, &user, cfg.max_failed_logins, cfg.lockout_us()).await?;
            }
            // The password was right: a trace of that, though the login is not complete.
            audit(role, Outcome::Failed(why.into())).await?;
            return Err(refusal);
        }
    };
    users::record_success(pool, &user.id, step).await?;
    let (cookie, csrf_token) = logins::create(pool, &user.id, c.address, cfg.session_us()).await?;
    audit(role, Outcome::Allowed).await?;
    Ok(LoggedIn {
        user,
        cookie,
        csrf_token,
    })
}

/// A disabled or locked account is refused whatever the password.
fn check_account(user: &User) -> Result<(), (&'static str, LoginError)> {
    if user.disabled {
        return Err(("account disabled", LoginError::Failed));
    }
    if user.locked_until_us > now_us() {
        return Err((
            "account locked",
            LoginError::Locked(rfc3339(user.locked_until_us)),
        ));
    }
    Ok(())
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
        None => Err(("wrong or reused TOTP code", LoginError::TotpInvalid)),
    }
}
