//! Rooms and their sources (cameras, microphones): configuration only, validated on the way in.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::capture::template::Templates;
use crate::capture::transport::{self, Transport};
use crate::db::Pool;
use crate::error::{CoreError, is_unique_violation};
use crate::time::now_us;

/// Kinds of room in a trading centre.
pub const ROOM_KINDS: &[&str] = &[
    "bid_opening",
    "evaluation",
    "negotiation",
    "auction",
    "other",
];
pub const MEDIA: &[&str] = &["av", "video", "audio"];
const MAX_SOURCES: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short stable name, used in object keys: `[a-z0-9][a-z0-9_-]{0,31}`.
    pub name: String,
    pub url: String,
    /// `av`, `video` or `audio`.
    #[serde(default = "default_media")]
    pub media: String,
    /// Pipeline template (file stem in `pipelines/`).
    #[serde(default = "default_template")]
    pub template: String,
    /// How media travels: `auto` (TCP, then UDP), `tcp`, `udp` or `multicast`.
    #[serde(default)]
    pub transport: Transport,
}

fn default_media() -> String {
    "av".into()
}
fn default_template() -> String {
    "default".into()
}

#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub location: String,
    pub sources: Vec<Source>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub location: String,
    pub sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRoom {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub location: Option<String>,
    pub sources: Option<Vec<Source>>,
}

pub fn valid_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), CoreError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "invalid_field",
            format!(
                "{field} {value:?} is not valid, expected one of: {}",
                allowed.join(", ")
            ),
        ))
    }
}

fn check_location(location: &str) -> Result<(), CoreError> {
    if location.chars().count() > 200 || location.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "invalid_field",
            "location: expected at most 200 printable characters",
        ));
    }
    Ok(())
}

fn check_room_name(name: &str) -> Result<(), CoreError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "invalid_field",
            format!("name {name:?}: expected 1 to 100 printable characters"),
        ));
    }
    Ok(())
}

/// Checks an RTSP URL: scheme rtsp or rtsps (or the legacy aliases rtspt and rtspu, which
/// `normalize_sources` turns into rtsp with a transport), a host, no whitespace.
pub fn check_rtsp_url(raw: &str) -> Result<(), CoreError> {
    let bad = |why: &str| {
        CoreError::invalid(
            "invalid_rtsp_url",
            format!("url {raw:?} is not a valid RTSP URL: {why}"),
        )
    };
    let u = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "rtsp" | "rtsps" | "rtspt" | "rtspu") {
        return Err(bad(&format!(
            "scheme {:?}, expected rtsp, rtsps, rtspt or rtspu",
            u.scheme()
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    Ok(())
}

/// The legacy schemes become the camera's `rtsp://` URL plus a transport; a scheme that says one
/// transport and a `transport` field that says another is refused.
fn normalize_sources(sources: &mut [Source]) -> Result<(), CoreError> {
    for s in sources {
        let (url, implied) = transport::normalize_url(&s.url);
        if let Some(t) = implied {
            if s.transport != Transport::Auto && s.transport != t {
                return Err(CoreError::invalid(
                    "invalid_field",
                    format!(
                        "source {:?}: url scheme means transport {}, but transport is {}",
                        s.name,
                        t.as_str(),
                        s.transport.as_str()
                    ),
                ));
            }
            s.url = url;
            s.transport = t;
        }
    }
    Ok(())
}

fn check_sources(sources: &[Source], templates: &Templates) -> Result<(), CoreError> {
    if sources.is_empty() || sources.len() > MAX_SOURCES {
        return Err(CoreError::invalid(
            "invalid_field",
            format!(
                "sources: expected 1 to {MAX_SOURCES}, got {}",
                sources.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for s in sources {
        if !valid_name(&s.name, 32) {
            return Err(CoreError::invalid(
                "invalid_field",
                format!(
                    "source name {:?}: expected lowercase letters, digits, '-' or '_', at most 32",
                    s.name
                ),
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(CoreError::invalid(
                "invalid_field",
                format!("source name {:?} appears twice", s.name),
            ));
        }
        check_rtsp_url(&s.url)?;
        check_one_of("media", &s.media, MEDIA)?;
        if templates.get(&s.template).is_none() {
            return Err(CoreError::invalid(
                "unknown_template",
                format!(
                    "template {:?} not found, expected one of: {}",
                    s.template,
                    templates.names().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Validates a new room and turns legacy URL schemes into transports; `create` does it too,
/// this is for checking a room (e.g. probing its sources) before creating it.
pub fn prepare(req: &mut CreateRoom, templates: &Templates) -> Result<(), CoreError> {
    check_room_name(&req.name)?;
    check_one_of("kind", &req.kind, ROOM_KINDS)?;
    check_location(&req.location)?;
    normalize_sources(&mut req.sources)?;
    check_sources(&req.sources, templates)
}

pub async fn create(
    pool: &Pool,
    templates: &Templates,
    req: CreateRoom,
) -> Result<Room, CoreError> {
    let mut req = req;
    prepare(&mut req, templates)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_us();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO rooms (id, name, kind, location, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$5)")
        .bind(&id)
        .bind(req.name.trim())
        .bind(&req.kind)
        .bind(&req.location)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &req.name))?;
    insert_sources(&mut tx, &id, &req.sources).await?;
    tx.commit().await?;
    get(pool, &id).await
}

fn name_taken(e: sqlx::Error, name: &str) -> CoreError {
    if is_unique_violation(&e) {
        CoreError::conflict(
            "room_name_taken",
            format!("a room named {name:?} already exists"),
        )
    } else {
        e.into()
    }
}

async fn insert_sources(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    room_id: &str,
    sources: &[Source],
) -> Result<(), CoreError> {
    for (i, s) in sources.iter().enumerate() {
        sqlx::query("INSERT INTO room_sources (room_id, position, name, url, media, template, transport) VALUES ($1,$2,$3,$4,$5,$6,$7)")
            .bind(room_id)
            .bind(i as i32)
            .bind(&s.name)
            .bind(&s.url)
            .bind(&s.media)
            .bind(&s.template)
            .bind(s.transport.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn get(pool: &Pool, id: &str) -> Result<Room, CoreError> {
    let row = sqlx::query(
        "SELECT id, name, kind, location, created_at, updated_at FROM rooms WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| CoreError::NotFound {
        what: "room",
        id: id.into(),
    })?;
    let sources = sqlx::query(
        "SELECT name, url, media, template, transport FROM room_sources WHERE room_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Source {
            name: r.try_get("name")?,
            url: r.try_get("url")?,
            media: r.try_get("media")?,
            template: r.try_get("template")?,
            transport: Transport::parse(&r.try_get::<String, _>("transport")?).unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Room {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        location: row.try_get("location")?,
        sources,
        created_at: crate::time::rfc3339(row.try_get("created_at")?),
        updated_at: crate::time::rfc3339(row.try_get("updated_at")?),
    })
}

pub async fn list(pool: &Pool) -> Result<Vec<Room>, CoreError> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM rooms ORDER BY name")
        .fetch_all(pool)
        .await?;
    let mut rooms = Vec::with_capacity(ids.len());
    for id in ids {
        rooms.push(get(pool, &id).await?);
    }
    Ok(rooms)
}

/// What transport last delivered media for a room's source (`None` before the first success).
pub async fn learned_transport(
    pool: &Pool,
    room_id: &str,
    source: &str,
) -> Result<Option<Transport>, sqlx::Error> {
    let t: Option<Option<String>> = sqlx::query_scalar(
        "SELECT learned_transport FROM room_sources WHERE room_id = $1 AND name = $2",
    )
    .bind(room_id)
    .bind(source)
    .fetch_optional(pool)
    .await?;
    Ok(t.flatten().as_deref().and_then(Transport::parse))
}

/// Remembers the transport that delivered media, so the next session tries it first.
pub async fn remember_transport(
    pool: &Pool,
    room_id: &str,
    source: &str,
    t: Transport,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE room_sources SET learned_transport = $3 WHERE room_id = $1 AND name = $2")
        .bind(room_id)
        .bind(source)
        .bind(t.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Changes a room. Refused while it records: the running session keeps the sources it began with.
pub async fn patch(
    pool: &Pool,
    templates: &Templates,
    id: &str,
    req: PatchRoom,
) -> Result<Room, CoreError> {
    let current = get(pool, id).await?;
    refuse_while_live(pool, id, "changed").await?;
    let mut req = req;
    if let Some(sources) = &mut req.sources {
        normalize_sources(sources)?;
    }
    let name = req.name.unwrap_or(current.name);
    let kind = req.kind.unwrap_or(current.kind);
    let location = req.location.unwrap_or(current.location);
    check_room_name(&name)?;
    check_one_of("kind", &kind, ROOM_KINDS)?;
    check_location(&location)?;
    if let Some(sources) = &req.sources {
        check_sources(sources, templates)?;
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE rooms SET name = $2, kind = $3, location = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(name.trim())
    .bind(&kind)
    .bind(&location)
    .bind(now_us())
    .execute(&mut *tx)
    .await
    .map_err(|e| name_taken(e, &name))?;
    if let Some(sources) = req.sources {
        sqlx::query("DELETE FROM room_sources WHERE room_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_sources(&mut tx, id, &sources).await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

pub async fn delete(pool: &Pool, id: &str) -> Result<(), CoreError> {
    get(pool, id).await?;
    refuse_while_live(pool, id, "deleted").await?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM room_sources WHERE room_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM rooms WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn refuse_while_live(pool: &Pool, id: &str, verb: &str) -> Result<(), CoreError> {
    if let Some(s) = crate::ledger::index::live_session_of_room(pool, id).await? {
        return Err(CoreError::conflict(
            "room_recording",
            format!(
                "room {id} is recording session {} and cannot be {verb}; stop it first",
                s.id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_urls() {
        for ok in [
            "rtsp://127.0.0.1:8554/cam1",
            "rtsp://user:pw@cam.local/stream?x=1",
            "rtsps://h/a",
        ] {
            assert!(check_rtsp_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://h/a", "rtsp://", "cam1", "rtsp:// h/a", ""] {
            assert!(check_rtsp_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_names() {
        assert!(valid_name("cam1", 32));
        assert!(valid_name("mic-front_2", 32));
        for bad in ["", "Cam1", "-cam", "cam/1", "../x", &"a".repeat(33)] {
            assert!(!valid_name(bad, 32), "{bad}");
        }
    }
}
