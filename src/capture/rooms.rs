//! Rooms and their sources (cameras, microphones): configuration only, validated on the way in.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::capture::credentials::{self, CredentialKey, Credentials};
use crate::capture::template::Templates;
use crate::capture::transport::{self, Transport};
use crate::catalogue::rooms::{Area, Catalogue};
use crate::db::Pool;
use crate::error::{CoreError, is_unique_violation};
use crate::time::now_us;

pub const MEDIA: &[&str] = &["av", "video", "audio"];
const MAX_SOURCES: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short stable name, used in object keys: `[a-z0-9][a-z0-9_-]{0,31}`.
    pub name: String,
    /// The camera's URL. On the way in it may carry credentials as user info
    /// (`rtsp://user:pw@cam/…`); they are split off at once, and the URL is stored and shown
    /// without them.
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
    /// Shown: the source has camera credentials (they are never shown). Ignored on the way in,
    /// so a room read can be sent back as it is.
    #[serde(default)]
    pub has_credentials: bool,
    /// In memory only, never serialized: credentials just received, or opened for a
    /// connection (`with_credentials`).
    #[serde(skip)]
    pub credentials: Option<Credentials>,
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
    /// `public` or `confidential` (the evaluation area): a session started here is confidential
    /// when the room is.
    pub area: Area,
    pub location: String,
    pub sources: Vec<Source>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub name: String,
    /// One of the catalogue's room kinds (`catalogue/room-kinds.toml`).
    pub kind: String,
    /// The kind's default area when not given.
    #[serde(default)]
    pub area: Option<Area>,
    #[serde(default)]
    pub location: String,
    pub sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRoom {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub area: Option<Area>,
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

/// A kind of the catalogue, or `invalid_field` naming the valid ones.
fn check_kind(kind: &str, catalogue: &Catalogue) -> Result<(), CoreError> {
    if catalogue.kind(kind).is_some() {
        return Ok(());
    }
    Err(CoreError::invalid(
        "invalid_field",
        format!(
            "kind {kind:?} is not valid, expected one of: {}",
            catalogue.kind_ids()
        ),
    ))
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
/// `normalize_sources` turns into rtsp with a transport), a host, no whitespace. The message
/// names the URL with any user info masked.
pub fn check_rtsp_url(raw: &str) -> Result<(), CoreError> {
    let bad = |why: &str| {
        CoreError::invalid(
            "invalid_rtsp_url",
            format!(
                "url {:?} is not a valid RTSP URL: {why}",
                credentials::masked(raw)
            ),
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
/// transport and a `transport` field that says another is refused. Credentials in the URL's user
/// info move to `credentials`, and the URL keeps none.
fn normalize_sources(sources: &mut [Source]) -> Result<(), CoreError> {
    for s in sources {
        s.has_credentials = false;
        let (url, found) = credentials::split_url(&s.url);
        if let Some(c) = found {
            c.check().map_err(|why| {
                CoreError::invalid(
                    "invalid_credentials",
                    format!("source {:?}: credentials in the url: {why}", s.name),
                )
            })?;
            s.url = url;
            s.credentials = Some(c);
        }
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
pub fn prepare(
    req: &mut CreateRoom,
    templates: &Templates,
    catalogue: &Catalogue,
) -> Result<(), CoreError> {
    check_room_name(&req.name)?;
    check_kind(&req.kind, catalogue)?;
    if req.area.is_none() {
        req.area = catalogue.kind(&req.kind).map(|k| k.area);
    }
    check_location(&req.location)?;
    normalize_sources(&mut req.sources)?;
    check_sources(&req.sources, templates)
}

pub async fn create(
    pool: &Pool,
    templates: &Templates,
    key: &CredentialKey,
    catalogue: &Catalogue,
    req: CreateRoom,
) -> Result<Room, CoreError> {
    let mut req = req;
    prepare(&mut req, templates, catalogue)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_us();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO rooms (id, name, kind, location, created_at, updated_at, area) VALUES ($1,$2,$3,$4,$5,$5,$6)")
        .bind(&id)
        .bind(req.name.trim())
        .bind(&req.kind)
        .bind(&req.location)
        .bind(now)
        .bind(req.area.unwrap_or(Area::Public))
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e, &req.name))?;
    let sealed: Vec<Option<String>> = req
        .sources
        .iter()
        .map(|s| s.credentials.as_ref().map(|c| key.seal(c)))
        .collect();
    insert_sources(&mut tx, &id, &req.sources, &sealed).await?;
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

/// The sources in order, each with its sealed credentials (`sealed[i]`, or none).
async fn insert_sources(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    room_id: &str,
    sources: &[Source],
    sealed: &[Option<String>],
) -> Result<(), CoreError> {
    for (i, s) in sources.iter().enumerate() {
        sqlx::query("INSERT INTO room_sources (room_id, position, name, url, media, template, transport, credentials) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
            .bind(room_id)
            .bind(i as i32)
            .bind(&s.name)
            .bind(&s.url)
            .bind(&s.media)
            .bind(&s.template)
            .bind(s.transport.as_str())
            .bind(sealed.get(i).cloned().flatten())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn get(pool: &Pool, id: &str) -> Result<Room, CoreError> {
    let row = sqlx::query(
        "SELECT id, name, kind, area, location, created_at, updated_at FROM rooms WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| CoreError::NotFound {
        what: "room",
        id: id.into(),
    })?;
    let sources = sqlx::query(
        "SELECT name, url, media, template, transport, credentials FROM room_sources WHERE room_id = $1 ORDER BY position",
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
            has_credentials: r.try_get::<Option<String>, _>("credentials")?.is_some(),
            credentials: None,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Room {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        area: row.try_get("area")?,
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

/// A room after a change, and what happened to its sources' credentials (for the audit trail:
/// names only, never a secret).
#[derive(Debug)]
pub struct Patched {
    /// The room as it was shown before the change (URLs without credentials).
    pub before: Room,
    pub room: Room,
    /// One clause per source whose credentials were set or dropped, e.g. `cam1: credentials
    /// replaced`; empty when none changed.
    pub credential_changes: Vec<String>,
}

/// Changes a room. Refused while it records: the running session keeps the sources it began with.
///
/// Credentials: a source whose URL carries user info gets those credentials; a source sent
/// without them keeps the ones its namesake had, as long as the camera's address (scheme, host
/// and port) is the same, so a room read and sent back keeps its credentials but they never
/// follow a camera to another address.
pub async fn patch(
    pool: &Pool,
    templates: &Templates,
    key: &CredentialKey,
    catalogue: &Catalogue,
    id: &str,
    req: PatchRoom,
) -> Result<Patched, CoreError> {
    let current = get(pool, id).await?;
    let before = current.clone();
    refuse_while_live(pool, id, "changed").await?;
    let mut req = req;
    if let Some(sources) = &mut req.sources {
        normalize_sources(sources)?;
    }
    let name = req.name.unwrap_or(current.name);
    let kind = req.kind.unwrap_or(current.kind);
    let area = req.area.unwrap_or(current.area);
    let location = req.location.unwrap_or(current.location);
    check_room_name(&name)?;
    check_kind(&kind, catalogue)?;
    check_location(&location)?;
    if let Some(sources) = &req.sources {
        check_sources(sources, templates)?;
    }
    let mut changes = Vec::new();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE rooms SET name = $2, kind = $3, location = $4, updated_at = $5, area = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(name.trim())
    .bind(&kind)
    .bind(&location)
    .bind(now_us())
    .bind(area)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_taken(e, &name))?;
    if let Some(sources) = req.sources {
        let stored = sealed_of_room(&mut *tx, id).await?;
        let mut sealed = Vec::with_capacity(sources.len());
        for s in &sources {
            let before = stored.iter().find(|(n, _, _)| n == &s.name);
            sealed.push(match (&s.credentials, before) {
                (Some(c), _) => {
                    changes.push(format!("{}: credentials replaced", s.name));
                    Some(key.seal(c))
                }
                (None, Some((_, url, Some(old)))) if same_camera(url, &s.url) => Some(old.clone()),
                (None, Some((_, _, Some(_)))) => {
                    changes.push(format!(
                        "{}: credentials removed (the camera's address changed)",
                        s.name
                    ));
                    None
                }
                (None, _) => None,
            });
        }
        for (n, _, old) in &stored {
            if old.is_some() && !sources.iter().any(|s| &s.name == n) {
                changes.push(format!("{n}: credentials removed with the source"));
            }
        }
        sqlx::query("DELETE FROM room_sources WHERE room_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_sources(&mut tx, id, &sources, &sealed).await?;
    }
    tx.commit().await?;
    Ok(Patched {
        before,
        room: get(pool, id).await?,
        credential_changes: changes,
    })
}

/// A room before and after a change, as the audit trail says it: each changed field `name:
/// before → after`, sources added and removed, and per kept source its URL, media, template and
/// transport. Both rooms are as shown, so no URL carries credentials; whether credentials changed
/// is `Patched::credential_changes`.
pub fn describe_change(before: &Room, after: &Room) -> Vec<String> {
    let mut out = Vec::new();
    for (field, b, a) in [
        ("name", &before.name, &after.name),
        ("kind", &before.kind, &after.kind),
        ("area", &before.area.to_string(), &after.area.to_string()),
        ("location", &before.location, &after.location),
    ] {
        if b != a {
            out.push(format!("{field}: {b:?} → {a:?}"));
        }
    }
    for b in &before.sources {
        match after.sources.iter().find(|a| a.name == b.name) {
            None => out.push(format!("{}: removed (url {})", b.name, b.url)),
            Some(a) => {
                for (field, bv, av) in [
                    ("url", b.url.clone(), a.url.clone()),
                    ("media", b.media.clone(), a.media.clone()),
                    ("template", b.template.clone(), a.template.clone()),
                    (
                        "transport",
                        b.transport.as_str().to_string(),
                        a.transport.as_str().to_string(),
                    ),
                ] {
                    if bv != av {
                        out.push(format!("{}: {field}: {bv} → {av}", b.name));
                    }
                }
            }
        }
    }
    for a in &after.sources {
        if !before.sources.iter().any(|b| b.name == a.name) {
            out.push(format!(
                "{}: added (url {}, media {}, template {}, transport {})",
                a.name,
                a.url,
                a.media,
                a.template,
                a.transport.as_str()
            ));
        }
    }
    out
}

/// Name, URL and sealed credentials of each source of a room.
async fn sealed_of_room<'c, E>(
    ex: E,
    room_id: &str,
) -> Result<Vec<(String, String, Option<String>)>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query("SELECT name, url, credentials FROM room_sources WHERE room_id = $1")
        .bind(room_id)
        .fetch_all(ex)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("name")?,
                r.try_get("url")?,
                r.try_get("credentials")?,
            ))
        })
        .collect()
}

/// The same camera: scheme, host and port alike (credentials may stay with it).
fn same_camera(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// Replaces (or with `None` removes) the credentials of one source. Refused while the room
/// records. Returns the room as shown.
pub async fn set_credentials(
    pool: &Pool,
    key: &CredentialKey,
    room_id: &str,
    source: &str,
    creds: Option<Credentials>,
) -> Result<Room, CoreError> {
    let room = get(pool, room_id).await?;
    if !room.sources.iter().any(|s| s.name == source) {
        return Err(CoreError::NotFound {
            what: "source",
            id: format!("{room_id}/{source}"),
        });
    }
    refuse_while_live(pool, room_id, "changed").await?;
    if let Some(c) = &creds {
        c.check()
            .map_err(|why| CoreError::invalid("invalid_credentials", why))?;
    }
    sqlx::query("UPDATE room_sources SET credentials = $3 WHERE room_id = $1 AND name = $2")
        .bind(room_id)
        .bind(source)
        .bind(creds.as_ref().map(|c| key.seal(c)))
        .execute(pool)
        .await?;
    sqlx::query("UPDATE rooms SET updated_at = $2 WHERE id = $1")
        .bind(room_id)
        .bind(now_us())
        .execute(pool)
        .await?;
    get(pool, room_id).await
}

/// The room's sources with their credentials opened, in memory, for a connection (probe,
/// recorder). Credentials this server's key cannot open are left out, with a warning.
pub async fn with_credentials(
    pool: &Pool,
    key: &CredentialKey,
    mut room: Room,
) -> Result<Room, CoreError> {
    for (name, _, sealed) in sealed_of_room(pool, &room.id).await? {
        let Some(sealed) = sealed else { continue };
        let Some(s) = room.sources.iter_mut().find(|s| s.name == name) else {
            continue;
        };
        s.credentials = open_logged(key, &sealed, &room.id, &name);
    }
    Ok(room)
}

/// The opened credentials of one source, if it has any this server's key can open.
pub async fn source_credentials(
    pool: &Pool,
    key: &CredentialKey,
    room_id: &str,
    source: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    let sealed: Option<Option<String>> =
        sqlx::query_scalar("SELECT credentials FROM room_sources WHERE room_id = $1 AND name = $2")
            .bind(room_id)
            .bind(source)
            .fetch_optional(pool)
            .await?;
    Ok(sealed
        .flatten()
        .and_then(|s| open_logged(key, &s, room_id, source)))
}

fn open_logged(key: &CredentialKey, sealed: &str, room: &str, source: &str) -> Option<Credentials> {
    match key.open(sealed) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(room, source, error = %e, "camera credentials not used; connecting without (nodes of a cluster must share data/keys/credentials.key)");
            None
        }
    }
}

/// Databases from before credentials were kept apart held them in source URLs: each such URL
/// loses its user info, which is sealed into the source's `credentials`; recordings keep the
/// URL without it. Then the database is compacted so the old text is not left in free pages.
/// Runs at every start; returns how many URLs it changed.
pub async fn move_inline_credentials(pool: &Pool, key: &CredentialKey) -> Result<usize, CoreError> {
    let mut moved = 0;
    let rows = sqlx::query(
        "SELECT room_id, name, url, credentials FROM room_sources WHERE url LIKE '%@%'",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        let (room_id, name, url): (String, String, String) =
            (r.try_get("room_id")?, r.try_get("name")?, r.try_get("url")?);
        let existing: Option<String> = r.try_get("credentials")?;
        let (bare, found) = credentials::split_url(&url);
        let Some(found) = found else { continue };
        let sealed = existing.unwrap_or_else(|| key.seal(&found));
        sqlx::query(
            "UPDATE room_sources SET url = $3, credentials = $4 WHERE room_id = $1 AND name = $2",
        )
        .bind(&room_id)
        .bind(&name)
        .bind(&bare)
        .bind(&sealed)
        .execute(pool)
        .await?;
        tracing::info!(room = %room_id, source = %name, "camera credentials moved out of the source URL");
        moved += 1;
    }
    let rows = sqlx::query("SELECT id, url FROM recordings WHERE url LIKE '%@%'")
        .fetch_all(pool)
        .await?;
    for r in rows {
        let (id, url): (String, String) = (r.try_get("id")?, r.try_get("url")?);
        let (bare, found) = credentials::split_url(&url);
        if found.is_none() {
            continue;
        }
        sqlx::query("UPDATE recordings SET url = $2 WHERE id = $1")
            .bind(&id)
            .bind(&bare)
            .execute(pool)
            .await?;
        moved += 1;
    }
    if moved > 0 {
        compact(pool).await?;
    }
    Ok(moved)
}

/// Rewrites the database so replaced text does not stay readable in free space: SQLite is
/// vacuumed and its write-ahead log emptied; PostgreSQL rewrites the two tables.
async fn compact(pool: &Pool) -> Result<(), CoreError> {
    let mut conn = pool.acquire().await?;
    let backend = conn.backend_name().to_string();
    let statements: &[&str] = if backend.eq_ignore_ascii_case("postgresql") {
        &["VACUUM FULL room_sources", "VACUUM FULL recordings"]
    } else {
        &["VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"]
    };
    for sql in statements {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
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
