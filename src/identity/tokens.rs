//! API tokens for integrations (the trading system starting recordings, say): `wit_` + 64 hex,
//! shown once; stored as SHA-256; scoped to a subset of the owner's permissions; expiring;
//! revocable.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::password::random_token;
use super::roles::Permission;
use crate::db::Pool;
use crate::time::{now_us, rfc3339};

pub const PREFIX: &str = "wit_";

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub scopes: Vec<Permission>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked: bool,
    pub last_used_at: Option<String>,
}

pub struct Token {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub scopes: Vec<Permission>,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn scopes_of(text: &str) -> Vec<Permission> {
    text.split(',').filter_map(Permission::parse).collect()
}

/// Issues a token; returns its id and the secret (shown once, never stored).
pub async fn issue(
    pool: &Pool,
    user_id: &str,
    name: &str,
    scopes: &[Permission],
    lifetime_us: i64,
) -> Result<(String, String), sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let secret = format!("{PREFIX}{}", random_token());
    let now = now_us();
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, secret_hash, scopes, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(name)
    .bind(digest(&secret))
    .bind(scopes.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","))
    .bind(now)
    .bind(now + lifetime_us)
    .execute(pool)
    .await?;
    Ok((id, secret))
}

/// The live token behind a secret, marked used; None when unknown, revoked or expired.
pub async fn resolve(pool: &Pool, secret: &str) -> Result<Option<Token>, sqlx::Error> {
    let now = now_us();
    let Some(r) = sqlx::query(
        "SELECT id, user_id, name, scopes FROM api_tokens WHERE secret_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(digest(secret))
    .bind(now)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let id: String = r.try_get("id")?;
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&id)
        .execute(pool)
        .await?;
    Ok(Some(Token {
        id,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        scopes: scopes_of(&r.try_get::<String, _>("scopes")?),
    }))
}

pub async fn list(pool: &Pool, user_id: &str) -> Result<Vec<TokenView>, sqlx::Error> {
    sqlx::query(
        "SELECT id, user_id, name, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(TokenView {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            name: r.try_get("name")?,
            scopes: scopes_of(&r.try_get::<String, _>("scopes")?),
            created_at: rfc3339(r.try_get("created_at")?),
            expires_at: rfc3339(r.try_get("expires_at")?),
            revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        })
    })
    .collect()
}

/// Revokes one of `user_id`'s tokens; false when there is no such token of theirs.
pub async fn revoke(pool: &Pool, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_us())
    .bind(id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_all(pool: &Pool, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now_us())
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}
