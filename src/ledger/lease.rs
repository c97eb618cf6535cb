//! Room leases in SQL: which node records which room. Acquiring succeeds when the room has no
//! lease, the lease has run out, or it is already this node's; one statement, so two nodes can
//! never both win.

use sqlx::Row;

use crate::db::Pool;
use crate::time::now_us;

/// Takes (or keeps) the room's lease for `ttl_us`; false when another node holds it.
pub async fn acquire(
    pool: &Pool,
    room_id: &str,
    node: &str,
    ttl_us: i64,
) -> Result<bool, sqlx::Error> {
    let now = now_us();
    let done = sqlx::query(
        "INSERT INTO room_leases (room_id, node_id, expires_at, acquired_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id) DO UPDATE SET node_id = excluded.node_id, expires_at = excluded.expires_at, acquired_at = excluded.acquired_at
         WHERE room_leases.expires_at < $4 OR room_leases.node_id = excluded.node_id",
    )
    .bind(room_id)
    .bind(node)
    .bind(now + ttl_us)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends every lease this node holds; returns the rooms it still holds.
pub async fn renew(pool: &Pool, node: &str, ttl_us: i64) -> Result<Vec<String>, sqlx::Error> {
    let now = now_us();
    sqlx::query("UPDATE room_leases SET expires_at = $1 WHERE node_id = $2 AND expires_at >= $3")
        .bind(now + ttl_us)
        .bind(node)
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT room_id FROM room_leases WHERE node_id = $1 AND expires_at >= $2")
        .bind(node)
        .bind(now)
        .fetch_all(pool)
        .await
}

pub async fn release(pool: &Pool, room_id: &str, node: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM room_leases WHERE room_id = $1 AND node_id = $2")
        .bind(room_id)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// The node holding a live lease on the room, if any.
pub async fn holder(pool: &Pool, room_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT node_id FROM room_leases WHERE room_id = $1 AND expires_at >= $2")
            .bind(room_id)
            .bind(now_us())
            .fetch_optional(pool)
            .await?;
    row.map(|r| r.try_get("node_id")).transpose()
}

/// The node that last held the room's lease, live or not (for the takeover's gap reason).
pub async fn last_holder(pool: &Pool, room_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT node_id FROM room_leases WHERE room_id = $1")
        .bind(room_id)
        .fetch_optional(pool)
        .await
}
