//! The users table: create, find, change, and the TOTP step of the last login.

use serde::Serialize;
use sqlx::Row;

use super::roles::Role;
use crate::db::Pool;
use crate::ledger::values::Category;
use crate::time::{now_us, rfc3339};

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub categories: Vec<String>,
    pub password_hash: String,
    pub must_change_password: bool,
    pub password_changed_at_us: i64,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: i64,
    /// Until when logins from addresses the account is not known from wait (throttled after
    /// failed logins; `throttle`).
    pub locked_until_us: i64,
    pub disabled: bool,
    pub created_at_us: i64,
    /// Who received this account's last one-time password (the approver of its creation or
    /// reset; `cli` or `system` for the host): people who could hold its credentials.
    pub credentials_by: Vec<String>,
    /// Who last set its role (proposer and approver of its creation or role change).
    pub role_by: Vec<String>,
}

impl User {
    /// What a browser session of this user may do until fixed: change the one-time password
    /// first, or (for roles that need one) enrol a second factor.
    pub fn restriction(&self) -> Option<&'static str> {
        if self.must_change_password {
            Some("password_change_required")
        } else if self.role.needs_totp() && !self.totp_enabled {
            Some("totp_enrollment_required")
        } else {
            None
        }
    }
}

/// What the API shows of a user: never a hash or a secret.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub categories: Vec<String>,
    pub totp_enabled: bool,
    pub must_change_password: bool,
    pub locked: bool,
    pub disabled: bool,
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            categories: u.categories.clone(),
            totp_enabled: u.totp_enabled,
            must_change_password: u.must_change_password,
            locked: u.locked_until_us > now_us(),
            disabled: u.disabled,
            created_at: rfc3339(u.created_at_us),
        }
    }
}

const COLUMNS: &str = "id, username, display_name, role, categories, password_hash, must_change_password, password_changed_at, totp_secret, totp_enabled, totp_last_step, disabled, created_at, credentials_by, role_by, COALESCE((SELECT t.blocked_until FROM login_throttle t WHERE t.key = 'account:' || users.username), 0) AS throttled_until";

fn from_row(r: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let role: String = r.try_get("role")?;
    let categories: String = r.try_get("categories")?;
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown role {role:?} in the users table").into())
        })?,
        categories: categories
            .split(',')
            .filter(|c| !c.is_empty())
            .map(Into::into)
            .collect(),
        password_hash: r.try_get("password_hash")?,
        must_change_password: r.try_get::<i64, _>("must_change_password")? != 0,
        password_changed_at_us: r.try_get("password_changed_at")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_enabled: r.try_get::<i64, _>("totp_enabled")? != 0,
        totp_last_step: r.try_get("totp_last_step")?,
        locked_until_us: r.try_get("throttled_until")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at_us: r.try_get("created_at")?,
        credentials_by: names(&r.try_get::<String, _>("credentials_by")?),
        role_by: names(&r.try_get::<String, _>("role_by")?),
    })
}

/// A comma-separated list of names, as the users table keeps `credentials_by` and `role_by`.
fn names(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|n| !n.is_empty())
        .map(Into::into)
        .collect()
}

/// Who holds an account's credentials and who gave it its role, after a creation, a role change
/// or a reset (`None` keeps what is).
pub async fn set_provenance(
    pool: &Pool,
    id: &str,
    credentials_by: Option<&[&str]>,
    role_by: Option<&[&str]>,
) -> Result<(), sqlx::Error> {
    if let Some(c) = credentials_by {
        sqlx::query("UPDATE users SET credentials_by = $1 WHERE id = $2")
            .bind(c.join(","))
            .bind(id)
            .execute(pool)
            .await?;
    }
    if let Some(r) = role_by {
        sqlx::query("UPDATE users SET role_by = $1 WHERE id = $2")
            .bind(r.join(","))
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(())
}

pub async fn by_username(pool: &Pool, username: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"))
        .bind(username)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn by_id(pool: &Pool, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn all(pool: &Pool) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
        .fetch_all(pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn count(pool: &Pool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
}

/// A user name: 2 to 64 of letters, digits, `.`, `_`, `-`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = (2..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "username {name:?}: 2 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

pub fn check_categories(role: Role, categories: &[String]) -> Result<(), String> {
    for c in categories {
        c.parse::<Category>().map_err(|e| e.to_string())?;
    }
    match (role, categories.is_empty()) {
        (Role::Regulator, true) => {
            Err("a regulator needs at least one trading category in scope".into())
        }
        (Role::Regulator, false) | (_, true) => Ok(()),
        (_, false) => Err("only regulators are scoped to trading categories".into()),
    }
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub categories: &'a [String],
    pub password_hash: &'a str,
}

pub async fn insert(pool: &Pool, u: NewUser<'_>) -> Result<User, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_us();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, role, categories, password_hash, must_change_password, password_changed_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,1,$7,$7)",
    )
    .bind(&id)
    .bind(u.username)
    .bind(u.display_name)
    .bind(u.role.as_str())
    .bind(u.categories.join(","))
    .bind(u.password_hash)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(by_id(pool, &id).await?.expect("just inserted"))
}

/// A new password. `one_time`: set by someone else, to be changed at the next login.
pub async fn set_password(
    pool: &Pool,
    id: &str,
    hash: &str,
    one_time: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = $2, password_changed_at = $3 WHERE id = $4",
    )
    .bind(hash)
    .bind(i64::from(one_time))
    .bind(now_us())
    .bind(id)
    .execute(pool)
    .await?;
    // A new password: guesses at the old one no longer hold the account back.
    if let Some(u) = by_id(pool, id).await? {
        super::throttle::forget_account(pool, &u.username).await?;
    }
    Ok(())
}

pub async fn set_disabled(pool: &Pool, id: &str, disabled: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
        .bind(i64::from(disabled))
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_profile(
    pool: &Pool,
    id: &str,
    display_name: &str,
    role: Role,
    categories: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET display_name = $1, role = $2, categories = $3 WHERE id = $4")
        .bind(display_name)
        .bind(role.as_str())
        .bind(categories.join(","))
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A successful login: the TOTP step its code was accepted at (each step is good once).
pub async fn record_success(
    pool: &Pool,
    id: &str,
    totp_step: Option<i64>,
) -> Result<(), sqlx::Error> {
    if let Some(step) = totp_step {
        sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2")
            .bind(step)
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(())
}

pub async fn set_totp(
    pool: &Pool,
    id: &str,
    secret: Option<&str>,
    enabled: bool,
    last_step: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET totp_secret = $1, totp_enabled = $2, totp_last_step = $3 WHERE id = $4",
    )
    .bind(secret)
    .bind(i64::from(enabled))
    .bind(last_step)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
