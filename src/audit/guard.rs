//! The database itself refuses to change or remove audit entries and checkpoints: triggers that
//! abort every UPDATE and DELETE (and TRUNCATE on PostgreSQL). Installed at every start-up, so a
//! guard dropped by hand comes back. Someone with the database owner's rights can still drop
//! them; the hash chain and the signed checkpoints then show what they did.

use sqlx::Connection;

use crate::db::Pool;

/// The audit trail, its checkpoints, the fixity reports and the destruction register: kept for
/// good, whatever the application asks.
const TABLES: [&str; 5] = [
    "audit_log",
    "audit_checkpoints",
    "fixity_reports",
    "destruction_register",
    "destruction_approvals",
];

pub async fn install(pool: &Pool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let backend = conn.backend_name().to_string();
    let mut statements = Vec::new();
    if backend.eq_ignore_ascii_case("postgresql") {
        statements.push(
            "CREATE OR REPLACE FUNCTION witness_append_only() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
                .to_string(),
        );
        for t in TABLES {
            statements.push(format!(
                "CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION witness_append_only()"
            ));
            statements.push(format!(
                "CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} \
                 FOR EACH STATEMENT EXECUTE FUNCTION witness_append_only()"
            ));
        }
    } else {
        for t in TABLES {
            for op in ["UPDATE", "DELETE"] {
                statements.push(format!(
                    "CREATE TRIGGER IF NOT EXISTS {t}_no_{} BEFORE {op} ON {t} \
                     BEGIN SELECT RAISE(ABORT, '{t} is append-only: {op} refused'); END",
                    op.to_lowercase()
                ));
            }
        }
    }
    for s in statements {
        sqlx::query(&s).execute(&mut *conn).await?;
    }
    // Make sure the connection is usable by the pool afterwards.
    conn.ping().await
}
