//! Browser login sessions: a random id in an HttpOnly cookie (only its SHA-256 is stored), a
//! CSRF token the page sends back on every change, an idle timeout and an absolute lifetime.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::password::random_token;
use crate::db::Pool;
use crate::time::now_us;

pub const COOKIE: &str = "witness_session";

pub struct Login {
    pub user_id: String,
    pub csrf_token: String,
    pub expires_at_us: i64,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Starts a session; returns (cookie value, CSRF token).
pub async fn create(
    pool: &Pool,
    user_id: &str,
    address: &str,
    lifetime_us: i64,
) -> Result<(String, String), sqlx::Error> {
    let (id, csrf) = (random_token(), random_token());
    let now = now_us();
    sqlx::query(
        "INSERT INTO login_sessions (id_hash, user_id, csrf_token, address, created_at, last_seen, expires_at) VALUES ($1,$2,$3,$4,$5,$5,$6)",
    )
    .bind(digest(&id))
    .bind(user_id)
    .bind(&csrf)
    .bind(address)
    .bind(now)
    .bind(now + lifetime_us)
    .execute(pool)
    .await?;
    Ok((id, csrf))
}

/// The live session behind a cookie value, touched; None when unknown, revoked, expired or
/// idle for longer than `idle_us` (then it is revoked).
pub async fn resume(pool: &Pool, cookie: &str, idle_us: i64) -> Result<Option<Login>, sqlx::Error> {
    let id_hash = digest(cookie);
    let Some(r) = sqlx::query(
        "SELECT user_id, csrf_token, last_seen, expires_at FROM login_sessions WHERE id_hash = $1 AND revoked = 0",
    )
    .bind(&id_hash)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let now = now_us();
    let (last_seen, expires_at): (i64, i64) = (r.try_get("last_seen")?, r.try_get("expires_at")?);
    if now >= expires_at || now - last_seen > idle_us {
        revoke(pool, cookie).await?;
        return Ok(None);
    }
    sqlx::query("UPDATE login_sessions SET last_seen = $1 WHERE id_hash = $2")
        .bind(now)
        .bind(&id_hash)
        .execute(pool)
        .await?;
    Ok(Some(Login {
        user_id: r.try_get("user_id")?,
        csrf_token: r.try_get("csrf_token")?,
        expires_at_us: expires_at,
    }))
}

pub async fn revoke(pool: &Pool, cookie: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE login_sessions SET revoked = 1 WHERE id_hash = $1")
        .bind(digest(cookie))
        .execute(pool)
        .await?;
    Ok(())
}

/// Ends every session of a user (password reset, disabled, role changed).
pub async fn revoke_all(pool: &Pool, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE login_sessions SET revoked = 1 WHERE user_id = $1")
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}
