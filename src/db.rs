//! The SQL connection shared by every module: one `sqlx::AnyPool` over SQLite (default) or
//! PostgreSQL, migrated on open. SQL stays portable so one migration set serves both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Pool = AnyPool;

/// Connects, applies pending migrations and returns the pool.
pub async fn open(url: &str) -> Result<Pool, DbError> {
    install_default_drivers();
    let connect_err = |source| DbError::Connect {
        url: redact(url),
        source,
    };
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        // Create the parent folder so a fresh checkout starts with no manual step.
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(connect_err)?;
        if let Some(parent) = opts.get_filename().parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let pool = AnyPoolOptions::new()
        .max_connections(if is_sqlite { 4 } else { 10 })
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(connect_err)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Unix microseconds now: the one time unit stored in SQL.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Unix microseconds as RFC 3339 for JSON.
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
