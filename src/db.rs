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
    #[error("database migration lock {path}: {source}")]
    MigrationLock {
        path: String,
        source: std::io::Error,
    },
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
    // `sqlite://PATH` creates its file, as the docs say; an explicit `mode=` is kept.
    let url = &if is_sqlite && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    };
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
    // Two nodes starting together must not both apply a migration: sqlx's migrator holds
    // `pg_advisory_lock` for the whole run on PostgreSQL, and takes no lock on SQLite, where an
    // exclusive lock on a file beside the database serialises the processes instead.
    let _lock = if is_sqlite {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(connect_err)?;
        migration_lock(opts.get_filename())?
    } else {
        None
    };
    migrator(if is_sqlite { "sqlite" } else { "postgres" })
        .run(&pool)
        .await?;
    Ok(pool)
}

/// The marker of a dialect section in a migration: `-- witness:dialect sqlite` or `postgres`.
const DIALECT_MARK: &str = "-- witness:dialect ";

/// The migrations as the given database runs them: a file with dialect sections keeps its common
/// part and the section for this database (the checksum sqlx records is of that text, the same
/// at every start); a file without sections is unchanged.
fn migrator(dialect: &str) -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations");
    let migrations: Vec<sqlx::migrate::Migration> = m
        .migrations
        .iter()
        .map(|mig| match dialect_section(&mig.sql, dialect) {
            Some(sql) => sqlx::migrate::Migration::new(
                mig.version,
                mig.description.clone(),
                mig.migration_type,
                sql.into(),
                mig.no_tx,
            ),
            None => mig.clone(),
        })
        .collect();
    m.migrations = migrations.into();
    m
}

/// The common part (before the first marker) and the `dialect` section of a migration, or None
/// when it has no sections.
fn dialect_section(sql: &str, dialect: &str) -> Option<String> {
    if !sql.lines().any(|l| l.starts_with(DIALECT_MARK)) {
        return None;
    }
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for line in sql.lines() {
        if let Some(name) = line.strip_prefix(DIALECT_MARK) {
            current = Some(name.trim());
            continue;
        }
        if current.is_none() || current == Some(dialect) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// An exclusive lock on `<database>.migrate.lock`, held while migrations run (None for an
/// in-memory database).
fn migration_lock(db: &std::path::Path) -> Result<Option<std::fs::File>, DbError> {
    let name = db.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return Ok(None);
    }
    let path = format!("{name}.migrate.lock");
    let err = |source| DbError::MigrationLock {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(Some(file))
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

/// A name outside a closed set: says which set and what it holds.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {value:?} is not valid, expected one of: {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

/// A closed set of names stored as SQL text. The one place where such a value becomes text and
/// back: `as_str`, `FromStr` (naming the valid values), `Display`, serde as the same string, and
/// sqlx encoding over `Any`, so rows hold the typed value and `.bind()` takes it.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The valid names, comma-separated, for messages.
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::db::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::db::UnknownValue {
                        what: $what,
                        value: s.to_string(),
                        expected: $name::names(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <str as sqlx::Type<sqlx::Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_with_dialect_sections_keeps_the_common_part_and_its_own_section() {
        let sql = "-- head\nCREATE TABLE t (a TEXT);\n-- witness:dialect sqlite\nLITE;\n-- witness:dialect postgres\nPG;\n";
        assert_eq!(
            dialect_section(sql, "sqlite").unwrap(),
            "-- head\nCREATE TABLE t (a TEXT);\nLITE;\n"
        );
        assert_eq!(
            dialect_section(sql, "postgres").unwrap(),
            "-- head\nCREATE TABLE t (a TEXT);\nPG;\n"
        );
        assert_eq!(dialect_section("CREATE TABLE t (a TEXT);", "sqlite"), None);
    }

    #[test]
    fn only_the_guard_migration_differs_between_databases() {
        let lite = migrator("sqlite");
        let pg = migrator("postgres");
        let plain = sqlx::migrate!("./migrations");
        for ((l, p), m) in lite.iter().zip(pg.iter()).zip(plain.iter()) {
            if m.sql.contains(DIALECT_MARK) {
                assert_ne!(l.checksum, p.checksum, "{}", m.description);
                assert!(l.sql.contains("RAISE(ABORT") && !l.sql.contains("plpgsql"));
                assert!(p.sql.contains("plpgsql") && !p.sql.contains("RAISE(ABORT"));
            } else {
                // Existing databases keep the checksums they recorded.
                assert_eq!(l.checksum, m.checksum, "{}", m.description);
                assert_eq!(p.checksum, m.checksum, "{}", m.description);
            }
        }
    }
}
