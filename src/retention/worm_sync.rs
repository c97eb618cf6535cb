//! Retention enforced by the storage itself (S3 Object Lock, `[store] object_lock = true`): every
//! stored object's version id is recorded in SQL; its COMPLIANCE retain-until is extended to
//! the date its session's policy requires (for an open project, the rule's minimum from now,
//! extended as time passes); legal holds are mirrored as S3 legal holds. The bucket's own
//! default retention protects each object from the moment it is written; this job only ever
//! lengthens that, and the server refuses anything shorter.

use chrono::{DateTime, Months, Utc};
use sqlx::Row;

use super::RetentionView;
use super::policy::Policies;
use crate::config::StoreConfig;
use crate::db::Pool;
use crate::ledger::chain::{self, Entry, EntryKind};
use crate::ledger::index;
use crate::ledger::values::SessionState;

/// What one round changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct SyncReport {
    pub versions_recorded: usize,
    pub retention_extended: usize,
    pub holds_placed: usize,
    pub holds_released: usize,
    pub errors: Vec<String>,
}

/// The default retention of a locked bucket, which protects every object from the moment it
/// is written: the shortest minimum any rule for recordings sets (rules for every record class
/// included), so that no recording is kept longer by default than its own rule asks; `sync`
/// lengthens each object's retention from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRetention {
    pub months: u32,
    /// `months` in the whole days Object Lock counts, rounded up so that it is never short.
    pub days: u32,
}

/// The floor when no rule governs recordings (validated policies always have a default rule):
/// the 15 years of 政府采购法 Art 42.
const FALLBACK_MINIMUM_MONTHS: u32 = 180;

/// The default retention `witness store-init` gives a new locked bucket.
pub fn bucket_default_retention(policies: &Policies) -> BucketRetention {
    let months = policies
        .rules
        .iter()
        .filter(|r| {
            r.record_classes.is_empty() || r.record_classes.iter().any(|c| c.ends_with("_av"))
        })
        .map(|r| r.minimum_months)
        .min()
        .unwrap_or(FALLBACK_MINIMUM_MONTHS);
    let days = (f64::from(months) * 365.25 / 12.0).ceil() as u32;
    BucketRetention { months, days }
}

/// An open project's objects are kept this much longer than needed before being extended again,
/// so that they are not touched on every round.
const EXTEND_STEP_DAYS: i64 = 30;

struct Recorded {
    version: String,
    retain_until_us: i64,
    legal_hold: bool,
}

async fn recorded(pool: &Pool, key: &str) -> Result<Option<Recorded>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT version_id, retain_until, legal_hold FROM object_versions WHERE object_key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Recorded {
            version: r.try_get("version_id")?,
            retain_until_us: r.try_get("retain_until")?,
            legal_hold: r.try_get::<i64, _>("legal_hold")? != 0,
        })
    })
    .transpose()
}

/// The recorded version of an object, read from the server (and recorded) when not yet known.
pub async fn version_of(
    pool: &Pool,
    cfg: &StoreConfig,
    session_id: &str,
    key: &str,
) -> Result<String, String> {
    if let Some(r) = recorded(pool, key).await.map_err(|e| e.to_string())? {
        return Ok(r.version);
    }
    let lock = crate::worm::object_lock(cfg, key, None)
        .await
        .map_err(|e| e.to_string())?;
    let version = lock
        .version
        .ok_or_else(|| format!("{key}: the store returned no version id (is Object Lock on?)"))?;
    let until = lock.retain_until.map(|t| t.timestamp_micros()).unwrap_or(0);
    sqlx::query(
        "INSERT INTO object_versions (object_key, session_id, version_id, retain_until, legal_hold) VALUES ($1,$2,$3,$4,$5) ON CONFLICT (object_key) DO NOTHING",
    )
    .bind(key)
    .bind(session_id)
    .bind(&version)
    .bind(until)
    .bind(i64::from(lock.legal_hold))
    .execute(pool)
    .await
    .map_err(|e| e.to_string())?;
    Ok(version)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// One round over every session that still has objects.
pub async fn sync(
    pool: &Pool,
    cfg: &StoreConfig,
    policies: &Policies,
) -> Result<SyncReport, sqlx::Error> {
    let mut report = SyncReport::default();
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE state <> $1 ORDER BY started_at")
            .bind(SessionState::Destroyed)
            .fetch_all(pool)
            .await?;
    let now = Utc::now();
    for id in ids {
        let Some(s) = index::session(pool, &id).await? else {
            continue;
        };
        let want = Wanted::of(&super::view(pool, policies, &s).await?, now);
        for rec in index::recordings(pool, &s.id).await? {
            let entries = index::entries(pool, &rec.id).await?;
            let destroyed = chain::destroyed_entries(&entries).unwrap_or_default();
            for e in entries
                .iter()
                .filter(|e| e.kind == EntryKind::Media && !destroyed.contains(&e.seq))
            {
                sync_object(pool, cfg, &s.id, e, &want, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// What a session's objects should carry: a retain-until (extended when theirs is below
/// `refresh_below`), and whether they are held.
struct Wanted {
    until: DateTime<Utc>,
    refresh_below: DateTime<Utc>,
    held: bool,
}

impl Wanted {
    /// From a session's retention: a known end, that date; an open project, the minimum from
    /// now, in steps.
    fn of(view: &RetentionView, now: DateTime<Utc>) -> Wanted {
        let months = u32::try_from(view.retention_months).unwrap_or(u32::MAX);
        let (until, refresh_below) = match view
            .retain_until
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            Some(t) => (t.with_timezone(&Utc), t.with_timezone(&Utc)),
            None => {
                let full = now.checked_add_months(Months::new(months)).unwrap_or(now);
                (full, full - chrono::Duration::days(EXTEND_STEP_DAYS))
            }
        };
        Wanted {
            until,
            refresh_below,
            held: !view.holds.is_empty(),
        }
    }
}

/// Brings one object's lock in line with what its session wants: its version recorded, its
/// retention extended, its legal hold mirrored. What the store refuses goes into the report.
async fn sync_object(
    pool: &Pool,
    cfg: &StoreConfig,
    session_id: &str,
    e: &Entry,
    want: &Wanted,
    report: &mut SyncReport,
) -> Result<(), sqlx::Error> {
    let version = match version_of(pool, cfg, session_id, &e.object_key).await {
        Ok(v) => v,
        Err(err) => {
            report.errors.push(err);
            return Ok(());
        }
    };
    let Some(r) = recorded(pool, &e.object_key).await? else {
        return Ok(());
    };
    if r.retain_until_us == 0 {
        report.versions_recorded += 1;
    }
    if r.retain_until_us < micros(want.refresh_below) && micros(want.until) > r.retain_until_us {
        match crate::worm::retain_until(cfg, &e.object_key, &version, want.until).await {
            Ok(()) => {
                sqlx::query("UPDATE object_versions SET retain_until = $1 WHERE object_key = $2")
                    .bind(micros(want.until))
                    .bind(&e.object_key)
                    .execute(pool)
                    .await?;
                report.retention_extended += 1;
            }
            Err(err) => report.errors.push(err.to_string()),
        }
    }
    if r.legal_hold != want.held {
        match crate::worm::set_legal_hold(cfg, &e.object_key, &version, want.held).await {
            Ok(()) => {
                sqlx::query("UPDATE object_versions SET legal_hold = $1 WHERE object_key = $2")
                    .bind(i64::from(want.held))
                    .bind(&e.object_key)
                    .execute(pool)
                    .await?;
                if want.held {
                    report.holds_placed += 1;
                } else {
                    report.holds_released += 1;
                }
            }
            Err(err) => report.errors.push(err.to_string()),
        }
    }
    Ok(())
}

/// Runs `sync` every `every` while the server runs.
pub fn spawn_periodic(
    pool: Pool,
    cfg: StoreConfig,
    policies: std::sync::Arc<Policies>,
    every: std::time::Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sync(&pool, &cfg, &policies).await {
                Ok(r) => {
                    for e in &r.errors {
                        tracing::error!(error = %e, "object lock: could not apply retention or hold");
                    }
                    if r.retention_extended + r.holds_placed + r.holds_released > 0 {
                        tracing::info!(
                            extended = r.retention_extended,
                            held = r.holds_placed,
                            released = r.holds_released,
                            "object lock synchronised"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "object lock synchronisation failed; next round soon")
                }
            }
        }
    });
}

/// The local filesystem has no WORM: the application never deletes but by lawful destruction,
/// and stored files are made read-only, so that a slip of the hand does not rewrite evidence.
/// (Production evidence belongs on Object Lock storage: see storage-policies/README.md.)
pub fn spawn_local_read_only(root: std::path::PathBuf, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let root = root.clone();
            let sealed = tokio::task::spawn_blocking(move || seal_tree(&root)).await;
            if let Ok(Err(e)) = sealed {
                tracing::warn!(error = %e, "could not make stored files read-only");
            }
        }
    });
}

fn seal_tree(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            seal_tree(&e.path())?;
        } else if ft.is_file() {
            let mut perms = e.metadata()?.permissions();
            if perms.mode() & 0o222 != 0 {
                perms.set_mode(0o444);
                std::fs::set_permissions(e.path(), perms)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;

    fn rule(id: &str, classes: &str, months: u32) -> String {
        format!(
            "id = \"{id}\"\ntitle = \"{id}\"\nrecord_classes = [{classes}]\njurisdiction = \"CN\"\nminimum_months = {months}\nclock_starts = \"session_end\"\ndisposition = \"review\"\nprecedence = 100\n[basis]\nlaw = \"law\"\narticle = \"1\"\ntext = \"text\"\n"
        )
    }

    #[test]
    fn bucket_default_is_the_shortest_recording_minimum_in_whole_days() {
        // The shipped rules keep every recording 15 years; the audit log's 6 months is no floor
        // for recordings.
        for jurisdiction in ["CN", "CN-ZJ"] {
            let policies =
                Policies::from_files(&super::super::policy::shipped_files(), jurisdiction).unwrap();
            assert_eq!(
                bucket_default_retention(&policies),
                BucketRetention {
                    months: 180,
                    days: 5479
                },
                "{jurisdiction}"
            );
        }
        // A shorter rule for other rooms lowers the floor; one for announcements does not.
        let mut files = super::super::policy::shipped_files();
        files.insert("rooms.toml".into(), rule("rooms", "\"other_room_av\"", 120));
        files.insert("notes.toml".into(), rule("notes", "\"announcements\"", 12));
        let policies = Policies::from_files(&files, "CN").unwrap();
        assert_eq!(
            bucket_default_retention(&policies),
            BucketRetention {
                months: 120,
                days: 3653
            }
        );
    }
}
