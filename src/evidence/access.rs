//! Who reads evidence, and the audit of every read. One rule, `may_read`, says who may read a
//! session's media and with what reason, on every path: replay playlists and segments, MP4
//! downloads, live views, exports and package downloads. Every read that serves evidence is
//! covered by an audit entry written before the first byte leaves:
//!
//! - Replay (HLS playlists and segments) is audited per **viewing**: one viewer's (the actor as
//!   the audit trail names it: a person, or a person through a named token) continuing read of
//!   one source of one session for one reason. The first read opens it and is audited
//!   (`replay_start`, with the reason); the reads that follow with no pause longer than
//!   `[evidence] viewing_idle_minutes` are covered by that entry. After a longer pause, or with
//!   another reason, the next read opens (and audits) a new viewing.
//! - A live view is opened only by `POST /rooms/{id}/live` (`live_view`, one viewing per source
//!   of the room's session). Live playlists and segments are served only while the same viewer's
//!   live viewing of that session is open, and they keep it open; otherwise they are refused.
//! - An MP4 download, an export and a package download are each a viewing of their own.
//!
//! Playing a confidential session also needs a grant (`evidence::grants`): asked by the viewer,
//! approved by a second person. Refusals are audited too, naming the session.

use sqlx::Row;

use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::error::CoreError;
use crate::identity::caller::Caller;
use crate::ledger::index::SessionRow;
use crate::time::now_us;

/// What is read of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// HLS playlists and stored segments (`/sessions/{id}/sources/{source}/…`).
    Replay,
    /// One playable MP4 of a range.
    Download,
    /// The live view of a room's recording session.
    Live,
    /// An evidence package; `derived_mp4`: with playable MP4 copies under `derived/`.
    Export { derived_mp4: bool },
    /// The download of a prepared package (`derived_mp4`: it holds playable MP4 copies).
    Package { derived_mp4: bool },
}

impl Read {
    /// Whether the read hands over a playable picture of the room: replay by another name.
    /// (A package's stored segments are evidence for the archive, not a player's copy.)
    fn plays(self) -> bool {
        match self {
            Read::Replay | Read::Download | Read::Live => true,
            Read::Export { derived_mp4 } | Read::Package { derived_mp4 } => derived_mp4,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Read::Replay => "replay",
            Read::Download => "a download",
            Read::Live => "a live view",
            Read::Export { .. } => "an export",
            Read::Package { .. } => "a package download",
        }
    }

    /// The kind of viewing the reads of this kind share (`None`: each read is its own).
    fn viewing_kind(self) -> Option<&'static str> {
        match self {
            Read::Replay => Some("replay"),
            Read::Live => Some("live"),
            _ => None,
        }
    }
}

/// Why a read is refused: a stable code and a sentence for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: &'static str,
    pub message: String,
}

impl Denial {
    fn new(code: &'static str, message: impl Into<String>) -> Denial {
        Denial {
            code,
            message: message.into(),
        }
    }
}

/// **The** rule of who reads a session's media. `caller` is `None` for the server's own command
/// line (`witness export`), which acts with the machine's authority.
///
/// 1. The session is within the caller's trading categories (`Caller::sees_session`).
/// 2. A confidential session is watched live only under live supervision (`supervision`: the
///    centre's `[evidence] confidential_live` policy, 6.2.3.3), and only by regulators and
///    discipline officers, each time with a reason; no grant is needed for it.
/// 3. A confidential session is seen played (replay, download, live, a package with derived
///    MP4 copies) only by roles that may see confidential sessions (regulators, discipline
///    officers); others may still export its evidence package, without derived MP4s.
/// 4. Even they play it only with a grant (`granted`): their request, with a reason, approved by
///    another, independent regulator or discipline officer (`evidence::grants`), for that
///    person and session, unexpired. The command line (no caller) needs none.
/// 5. Every read of a confidential session needs a reason, which the audit entry keeps.
pub fn may_read(
    caller: Option<&Caller>,
    session: &SessionRow,
    read: Read,
    reason: &str,
    granted: bool,
    supervision: bool,
) -> Result<(), Denial> {
    if let Some(c) = caller {
        c.sees_session(session)
            .map_err(|(code, message)| Denial::new(code, message))?;
    }
    if !session.confidential {
        return Ok(());
    }
    if read == Read::Live {
        if !supervision {
            return Err(Denial::new(
                "confidential",
                "confidential sessions have no live view (this centre's [evidence] confidential_live policy)",
            ));
        }
        if caller.is_none_or(|c| !c.role.may_see_confidential()) {
            return Err(Denial::new(
                "confidential",
                format!(
                    "session {} is confidential: only regulators and discipline officers supervise it live",
                    session.id
                ),
            ));
        }
    }
    if read.plays() && caller.is_some_and(|c| !c.role.may_see_confidential()) {
        let hint = match read {
            Read::Export { .. } => "; export its evidence package without derived_mp4",
            _ => "",
        };
        return Err(Denial::new(
            "confidential",
            format!(
                "session {} is a confidential evaluation session: only regulators and discipline officers may replay it or have a playable copy{hint}",
                session.id
            ),
        ));
    }
    if read.plays() && read != Read::Live && caller.is_some() && !granted {
        return Err(Denial::new(
            "grant_required",
            format!(
                "session {} is a confidential evaluation session: playing it takes two people. Ask with a reason (POST /api/v1/sessions/{}/confidential-access); another regulator or discipline officer approves (POST /api/v1/confidential-access/{{id}}/approve)",
                session.id, session.id
            ),
        ));
    }
    if reason.trim().is_empty() {
        return Err(Denial::new(
            "reason_required",
            format!(
                "session {} is a confidential {} session: {} of it needs ?reason=… (it is recorded)",
                session.id,
                session.kind,
                read.what()
            ),
        ));
    }
    Ok(())
}

/// One read of a session's media, about to happen.
pub struct MediaAccess<'a> {
    pub actor: &'a Actor,
    /// The authenticated caller; `None` for the server's own command line.
    pub caller: Option<&'a Caller>,
    pub read: Read,
    /// The audit action: `replay_start`, `download`, `live_view`, `live_segment`, `export` …
    pub action: &'a str,
    pub session: &'a SessionRow,
    /// The source read, or empty for the whole session.
    pub source: &'a str,
    /// What is looked at (`session/source`, with a range for downloads).
    pub target: String,
    /// Why, in the viewer's words; required for confidential sessions.
    pub reason: &'a str,
    /// Live supervision of confidential rooms is this centre's policy (`[evidence]
    /// confidential_live`); only a live read asks.
    pub supervision: bool,
}

/// One finder-or-opener of viewings at a time in this process, so that the parallel first reads
/// of one player open one viewing, not two.
static VIEWINGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl MediaAccess<'_> {
    fn event(&self) -> audit::Event<'_> {
        audit::Event::new(self.actor, self.action)
            .session(&self.session.id, &self.session.project_code)
            .target(&self.target)
            .reason(self.reason)
            .flagged(self.session.confidential)
    }

    async fn refuse(&self, pool: &Pool, d: Denial) -> CoreError {
        if let Err(e) = self
            .event()
            .outcome(Outcome::Denied(d.code.into()))
            .append(pool)
            .await
        {
            return e.into();
        }
        CoreError::forbidden(d.code, d.message)
    }

    /// Applies `may_read`, with the caller's confidential-access grant looked up when it matters;
    /// a refusal is audited and returned as `Forbidden`.
    pub async fn check(&self, pool: &Pool) -> Result<(), CoreError> {
        let granted = match self.caller {
            Some(c)
                if self.session.confidential && self.read.plays() && self.read != Read::Live =>
            {
                super::grants::active(pool, &c.username, &self.session.id).await?
            }
            _ => false,
        };
        match may_read(
            self.caller,
            self.session,
            self.read,
            self.reason,
            granted,
            self.supervision,
        ) {
            Ok(()) => Ok(()),
            Err(d) => Err(self.refuse(pool, d).await),
        }
    }

    /// The audit entry of an allowed read, written before the media leave.
    pub async fn record(&self, pool: &Pool) -> Result<audit::AuditEntry, CoreError> {
        Ok(self.event().append(pool).await?)
    }

    /// Before serving a replay or live read (after `check`): the read is covered by the
    /// viewer's open viewing, which it keeps open. With none open, a replay read opens one and
    /// audits it; a live read is refused (`live_view_not_open`, audited): live views are opened
    /// by `open_live` only.
    pub async fn view(&self, pool: &Pool, idle_us: i64) -> Result<(), CoreError> {
        let Some(kind) = self.read.viewing_kind() else {
            self.record(pool).await?;
            return Ok(());
        };
        let viewer = self.actor.name();
        let _one = VIEWINGS.lock().await;
        let now = now_us();
        let open = sqlx::query(
            "SELECT id, last_read_at FROM evidence_viewings \
             WHERE viewer = $1 AND session_id = $2 AND source = $3 AND kind = $4 AND reason = $5 \
             AND last_read_at >= $6 ORDER BY last_read_at DESC LIMIT 1",
        )
        .bind(&viewer)
        .bind(&self.session.id)
        .bind(self.source)
        .bind(kind)
        .bind(self.reason)
        .bind(now - idle_us)
        .fetch_optional(pool)
        .await?;
        if let Some(row) = open {
            let id: String = row.try_get("id")?;
            let last: i64 = row.try_get("last_read_at")?;
            // Kept open by every read; written at most about ten times per idle window. The
            // read does not wait for that write (a committed write waits for the disk, and the
            // parallel reads of a player would wait for it one after another here): the audit
            // entry covering the read exists already, and were the write lost, the next read
            // after the idle window would open, and audit, a new viewing.
            if now - last >= (idle_us / 10).min(1_000_000) {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let kept =
                        sqlx::query(
                        "UPDATE evidence_viewings SET last_read_at = $1 WHERE id = $2 AND last_read_at < $1",
                    )
                            .bind(now)
                            .bind(&id)
                            .execute(&pool)
                            .await;
                    if let Err(e) = kept {
                        tracing::warn!(viewing = %id, error = %e, "viewing not kept open");
                    }
                });
            }
            return Ok(());
        }
        if self.read == Read::Live {
            return Err(self
                .refuse(
                    pool,
                    Denial::new(
                        "live_view_not_open",
                        format!(
                            "no live view of session {} is open for {viewer}: open one first (POST /api/v1/rooms/{}/live); it closes after {} s without a read",
                            self.session.id,
                            self.session.room_id,
                            idle_us / 1_000_000
                        ),
                    ),
                )
                .await);
        }
        let entry = self.record(pool).await?;
        insert_viewing(
            pool,
            &viewer,
            kind,
            self,
            self.source,
            &entry.id,
            now,
            idle_us,
        )
        .await
    }

    /// Opens a live view of every source in `sources` (after `check`): one audit entry, one
    /// viewing per source.
    pub async fn open_live(
        &self,
        pool: &Pool,
        sources: &[&str],
        idle_us: i64,
    ) -> Result<(), CoreError> {
        let viewer = self.actor.name();
        let _one = VIEWINGS.lock().await;
        let entry = self.record(pool).await?;
        let now = now_us();
        for source in sources {
            insert_viewing(pool, &viewer, "live", self, source, &entry.id, now, idle_us).await?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_viewing(
    pool: &Pool,
    viewer: &str,
    kind: &str,
    access: &MediaAccess<'_>,
    source: &str,
    audit_id: &str,
    now: i64,
    idle_us: i64,
) -> Result<(), CoreError> {
    // Housekeeping: closed viewings are of no further use (their entries are in the trail).
    sqlx::query("DELETE FROM evidence_viewings WHERE last_read_at < $1")
        .bind(now - idle_us)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO evidence_viewings (id, viewer, kind, session_id, source, reason, audit_id, opened_at, last_read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(viewer)
    .bind(kind)
    .bind(&access.session.id)
    .bind(source)
    .bind(access.reason)
    .bind(audit_id)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::caller::Via;
    use crate::identity::roles::{ROLES, Role};
    use crate::ledger::values::{Category, SessionKind, SessionState};

    fn session(kind: SessionKind, category: Category) -> SessionRow {
        SessionRow {
            id: "s1".into(),
            room_id: "r1".into(),
            room_name: "评标室".into(),
            room_kind: "evaluation".into(),
            project_code: "ZB-1".into(),
            session_code: "PB-1".into(),
            kind,
            note: String::new(),
            state: SessionState::Stopped,
            started_at_us: 0,
            stopped_at_us: Some(1),
            manifest_key: None,
            error: None,
            category,
            started_by: None,
            confidential: kind.is_confidential(),
            booking_id: None,
        }
    }

    fn caller(role: Role, categories: &[&str]) -> Caller {
        Caller {
            user_id: "u".into(),
            username: "li".into(),
            role,
            categories: categories.iter().map(|c| c.to_string()).collect(),
            via: Via::Browser {
                csrf_token: String::new(),
            },
        }
    }

    fn code(r: Result<(), Denial>) -> &'static str {
        r.err().map_or("ok", |d| d.code)
    }

    #[test]
    fn confidential_sessions_by_role_read_and_reason() {
        let eval = session(
            SessionKind::Evaluation,
            "construction".parse::<Category>().unwrap(),
        );
        let all_reads = [
            Read::Replay,
            Read::Download,
            Read::Live,
            Read::Export { derived_mp4: false },
            Read::Export { derived_mp4: true },
            Read::Package { derived_mp4: false },
            Read::Package { derived_mp4: true },
        ];
        for role in ROLES {
            let c = caller(role, &["construction"]);
            for read in all_reads {
                let got = code(may_read(Some(&c), &eval, read, "complaint 17", true, false));
                // Written out, not derived from the rule: a playable picture (or any live
                // view) of an evaluation session only for regulators and discipline officers.
                let playable = matches!(
                    read,
                    Read::Replay
                        | Read::Download
                        | Read::Export { derived_mp4: true }
                        | Read::Package { derived_mp4: true }
                );
                let sees = matches!(role, Role::Regulator | Role::DisciplineOfficer);
                let want = if read == Read::Live || (playable && !sees) {
                    "confidential"
                } else {
                    "ok"
                };
                assert_eq!(got, want, "{role:?} {read:?}");
                if want == "ok" {
                    assert_eq!(
                        code(may_read(Some(&c), &eval, read, "  ", true, false)),
                        "reason_required",
                        "{role:?} {read:?} without a reason"
                    );
                    // Playing it needs a grant approved by a second person.
                    assert_eq!(
                        code(may_read(
                            Some(&c),
                            &eval,
                            read,
                            "complaint 17",
                            false,
                            false
                        )),
                        if playable { "grant_required" } else { "ok" },
                        "{role:?} {read:?} without a grant"
                    );
                }
            }
        }
        // The archive clerk's derived MP4 of an evaluation session: refused, with the way out.
        let clerk = caller(Role::ArchiveClerk, &[]);
        let d = may_read(
            Some(&clerk),
            &eval,
            Read::Export { derived_mp4: true },
            "r",
            true,
            false,
        )
        .unwrap_err();
        assert!(d.message.contains("without derived_mp4"), "{}", d.message);
        // The command line has the machine's authority, but still needs a reason.
        assert_eq!(
            code(may_read(
                None,
                &eval,
                Read::Export { derived_mp4: true },
                "r",
                false,
                false
            )),
            "ok"
        );
        assert_eq!(
            code(may_read(
                None,
                &eval,
                Read::Export { derived_mp4: true },
                "",
                false,
                false
            )),
            "reason_required"
        );
    }

    #[test]
    fn open_sessions_need_scope_only() {
        let open = session(SessionKind::BidOpening, "land".parse::<Category>().unwrap());
        let regulator = caller(Role::Regulator, &["construction"]);
        assert_eq!(
            code(may_read(
                Some(&regulator),
                &open,
                Read::Replay,
                "",
                false,
                false
            )),
            "out_of_scope"
        );
        let regulator = caller(Role::Regulator, &["land"]);
        for read in [Read::Replay, Read::Download, Read::Live] {
            assert_eq!(
                code(may_read(Some(&regulator), &open, read, "", false, false)),
                "ok"
            );
        }
    }

    #[test]
    fn live_supervision_of_confidential_rooms_by_policy_role_and_reason() {
        let eval = session(
            SessionKind::Evaluation,
            "construction".parse::<Category>().unwrap(),
        );
        for role in ROLES {
            let c = caller(role, &["construction"]);
            let supervises = matches!(role, Role::Regulator | Role::DisciplineOfficer);
            // Under the supervision policy: regulators and discipline officers, no grant, with
            // a reason; nobody else.
            assert_eq!(
                code(may_read(
                    Some(&c),
                    &eval,
                    Read::Live,
                    "监督 评标现场",
                    false,
                    true
                )),
                if supervises { "ok" } else { "confidential" },
                "{role:?}"
            );
            if supervises {
                assert_eq!(
                    code(may_read(Some(&c), &eval, Read::Live, " ", false, true)),
                    "reason_required"
                );
            }
            // Without it, nobody.
            assert_eq!(
                code(may_read(Some(&c), &eval, Read::Live, "监督", true, false)),
                "confidential",
                "{role:?}"
            );
            // Replay still takes the second person's grant.
            if supervises {
                assert_eq!(
                    code(may_read(Some(&c), &eval, Read::Replay, "r", false, true)),
                    "grant_required"
                );
            }
        }
    }
}
