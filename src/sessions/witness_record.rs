//! The witness record (见证记录) of a session: the session's witness (the staff member who started
//! it, `sessions.started_by`) adds time-coded entries while it records and signs the record,
//! re-entering their password; signing closes it. Entries are only appended: a correction is a
//! new entry pointing at an earlier one. At stop the record's hash is bound into the signed
//! manifest (`stop.rs`). The encoding and the check are `ledger::witness_record`.

use serde::{Deserialize, Serialize};

use crate::audit::{self, Actor};
use crate::error::{CoreError, is_unique_violation};
use crate::identity::password::Hasher;
use crate::ledger::chain::ZERO_HASH;
use crate::ledger::index::{self, SessionRow, existing_session};
use crate::ledger::values::SessionState;
use crate::ledger::witness_record::{
    self as record, EntryKind, MAX_TEXT_CHARS, Signature, WitnessEntry,
};
use crate::time::{now_us, parse_wall_clock, rfc3339};

use super::Core;

/// A new entry, as asked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// `remark`, `anomaly`, `objection`, `deviation` or `device_problem`.
    pub kind: String,
    pub text: String,
    /// The moment of the session the entry is about (RFC 3339); now when absent.
    #[serde(default)]
    pub at: Option<String>,
    /// The id of an earlier entry of the same session that this one corrects.
    #[serde(default)]
    pub corrects: Option<String>,
}

/// The signature request: the witness's password, re-entered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub password: String,
}

/// One entry as the API and the console show it.
#[derive(Debug, Serialize)]
pub struct EntryView {
    pub id: String,
    pub seq: i64,
    pub at: String,
    pub at_us: i64,
    pub kind: EntryKind,
    /// The kind in Chinese, as the printable record names it.
    pub kind_zh: &'static str,
    pub text: String,
    pub corrects: Option<String>,
    /// The seq of the entry it corrects.
    pub corrects_seq: Option<i64>,
    /// The ids of later entries that correct this one.
    pub corrected_by: Vec<String>,
    pub author: String,
    pub recorded_at: String,
    pub entry_hash: String,
}

/// The record as the API shows it: entries with corrections resolved, signature, hash.
#[derive(Debug, Serialize)]
pub struct RecordView {
    pub session_id: String,
    pub room_id: String,
    pub state: SessionState,
    /// The session's witness: the one person who writes and signs the record.
    pub witness: Option<String>,
    pub entries: Vec<EntryView>,
    pub signed_by: Option<String>,
    pub signed_at: Option<String>,
    /// The record hash as it stands (what the manifest binds at stop).
    pub sha256: String,
}

/// The record of a session as the API shows it.
pub fn view_of(
    session: &SessionRow,
    entries: &[WitnessEntry],
    signature: Option<&Signature>,
) -> RecordView {
    let binding = record::binding(&session.id, entries, signature);
    let views = entries
        .iter()
        .map(|e| EntryView {
            id: e.id.clone(),
            seq: e.seq,
            at: rfc3339(e.at_us),
            at_us: e.at_us,
            kind: e.kind,
            kind_zh: e.kind.chinese(),
            text: e.text.clone(),
            corrects: e.corrects.clone(),
            corrects_seq: e
                .corrects
                .as_ref()
                .and_then(|c| entries.iter().find(|o| &o.id == c).map(|o| o.seq)),
            corrected_by: entries
                .iter()
                .filter(|o| o.corrects.as_deref() == Some(e.id.as_str()))
                .map(|o| o.id.clone())
                .collect(),
            author: e.author.clone(),
            recorded_at: rfc3339(e.recorded_at_us),
            entry_hash: e.entry_hash.clone(),
        })
        .collect();
    RecordView {
        session_id: session.id.clone(),
        room_id: session.room_id.clone(),
        state: session.state,
        witness: session.started_by.clone(),
        entries: views,
        signed_by: binding.signed_by,
        signed_at: binding.signed_at_us.map(rfc3339),
        sha256: binding.sha256,
    }
}

/// **The** rule of who writes a session's record, and when: the session records, `by` is its
/// witness (the person who started it), and the record is not signed yet.
async fn writable(core: &Core, session_id: &str, by: &Actor) -> Result<SessionRow, CoreError> {
    let session = existing_session(&core.pool, session_id).await?;
    if session.state != SessionState::Recording {
        return Err(CoreError::conflict(
            "session_not_running",
            format!(
                "session {} is {}: witness entries are added, and the record signed, only while it records",
                session.id, session.state
            ),
        ));
    }
    if session.started_by.as_deref() != Some(by.person.as_str()) {
        return Err(CoreError::forbidden(
            "not_session_witness",
            format!(
                "{} is not the witness of session {} (room {}): only {} who started it writes and signs its witness record",
                by.person,
                session.id,
                session.room_name,
                session.started_by.as_deref().unwrap_or("the staff member")
            ),
        ));
    }
    if let Some(s) = record::signature(&core.pool, &session.id).await? {
        return Err(CoreError::conflict(
            "record_signed",
            format!(
                "the witness record of session {} was signed by {} at {}: it takes no more entries",
                session.id,
                s.signed_by,
                rfc3339(s.signed_at_us)
            ),
        ));
    }
    Ok(session)
}

/// A database refusal of the append-only guards: the session stopped or the record was signed
/// between the check and the insert.
fn guard_refusal(e: sqlx::Error, session_id: &str) -> CoreError {
    if e.to_string().contains("witness_") && e.to_string().contains("only while") {
        return CoreError::conflict(
            "session_not_running",
            format!("session {session_id} stopped, or its record was signed, meanwhile"),
        );
    }
    e.into()
}

/// Holds the session's row for the rest of the transaction (a no-op update: a row lock on
/// PostgreSQL, the write lock on SQLite), so that entries, the signature and the stop's change
/// of state happen one after the other; `session_not_running` when it no longer records.
async fn hold_live_session(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    session_id: &str,
) -> Result<(), CoreError> {
    let held = sqlx::query("UPDATE sessions SET state = state WHERE id = $1 AND state = $2")
        .bind(session_id)
        .bind(SessionState::Recording)
        .execute(&mut **tx)
        .await?;
    if held.rows_affected() == 0 {
        return Err(CoreError::conflict(
            "session_not_running",
            format!("session {session_id} stopped meanwhile: its witness record is closed"),
        ));
    }
    Ok(())
}

struct Checked {
    kind: EntryKind,
    text: String,
    at_us: i64,
    corrects: Option<String>,
}

fn check(req: NewEntry, session: &SessionRow, now: i64) -> Result<Checked, CoreError> {
    let kind: EntryKind = req
        .kind
        .parse()
        .map_err(|e: crate::db::UnknownValue| CoreError::invalid("invalid_field", e.to_string()))?;
    let text = req.text.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(CoreError::invalid(
            "invalid_field",
            format!("text: expected 1 to {MAX_TEXT_CHARS} characters"),
        ));
    }
    let at_us = parse_wall_clock("at", req.at.as_deref())
        .map_err(|m| CoreError::invalid("invalid_field", m))?
        .unwrap_or(now);
    if at_us < session.started_at_us || at_us > now {
        return Err(CoreError::invalid(
            "invalid_field",
            format!(
                "at {}: expected a moment of the session, between its start {} and now {}",
                rfc3339(at_us),
                rfc3339(session.started_at_us),
                rfc3339(now)
            ),
        ));
    }
    Ok(Checked {
        kind,
        text,
        at_us,
        corrects: req.corrects.filter(|c| !c.is_empty()),
    })
}

impl Core {
    /// Adds an entry to the witness record of session `session_id`, written by `by`: checked
    /// (`writable`, kind, text, time, correction), chained onto the record in one transaction,
    /// audited (`witness_entry`).
    pub async fn add_witness_entry(
        &self,
        session_id: &str,
        req: NewEntry,
        by: &Actor,
    ) -> Result<EntryView, CoreError> {
        let session = writable(self, session_id, by).await?;
        let now = now_us();
        let c = check(req, &session, now)?;
        let mut attempts = 0;
        let entry = loop {
            attempts += 1;
            match self.append_entry(&session, &c, by, now).await {
                Ok(e) => break e,
                Err(CoreError::Db(e)) if is_unique_violation(&e) && attempts < 5 => continue,
                Err(CoreError::Db(e)) => return Err(guard_refusal(e, &session.id)),
                Err(e) => return Err(e),
            }
        };
        audit::Event::new(by, "witness_entry")
            .session(&session.id, &session.project_code)
            .target(format!("witness-entry/{}", entry.seq))
            .reason(match &entry.corrects {
                Some(c) => format!("{} (corrects {c})", entry.kind),
                None => entry.kind.to_string(),
            })
            .flagged(session.kind.is_confidential())
            .append(&self.pool)
            .await?;
        let all = record::entries(&self.pool, &session.id).await?;
        let view = view_of(&session, &all, None);
        Ok(view
            .entries
            .into_iter()
            .find(|e| e.id == entry.id)
            .expect("the entry just written"))
    }

    /// The signature over the entries as they stand, in one transaction that holds the session
    /// row, so no entry slips in between the read and the signature.
    async fn insert_signature(
        &self,
        session: &SessionRow,
        by: &Actor,
    ) -> Result<(Vec<WitnessEntry>, Signature), CoreError> {
        let mut tx = self.pool.begin().await?;
        hold_live_session(&mut tx, &session.id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM witness_entries WHERE session_id = $1 ORDER BY seq",
            record::ENTRY_COLS
        ))
        .bind(&session.id)
        .fetch_all(&mut *tx)
        .await?;
        let entries = rows
            .iter()
            .map(record::entry_from)
            .collect::<Result<Vec<_>, _>>()?;
        let signed_at_us = now_us();
        let signature = Signature {
            signed_by: by.person.clone(),
            signed_at_us,
            entries: entries.len() as i64,
            sha256: record::record_hash(&session.id, &entries, Some((&by.person, signed_at_us))),
        };
        record::insert_signature(&mut *tx, &session.id, &signature).await?;
        tx.commit().await?;
        Ok((entries, signature))
    }

    /// The entry written onto the record's head, read in the same transaction.
    async fn append_entry(
        &self,
        session: &SessionRow,
        c: &Checked,
        by: &Actor,
        now: i64,
    ) -> Result<WitnessEntry, CoreError> {
        let mut tx = self.pool.begin().await?;
        hold_live_session(&mut tx, &session.id).await?;
        let head = sqlx::query_as::<_, (i64, String)>(
            "SELECT seq, entry_hash FROM witness_entries WHERE session_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&session.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(target) = &c.corrects {
            let found = sqlx::query_as::<_, (String,)>(
                "SELECT session_id FROM witness_entries WHERE id = $1",
            )
            .bind(target)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none_or(|(s,)| s != session.id) {
                return Err(CoreError::invalid(
                    "invalid_correction",
                    format!(
                        "corrects {target}: not an earlier entry of session {}'s witness record",
                        session.id
                    ),
                ));
            }
        }
        let (seq, prev) = head.map_or((1, ZERO_HASH.to_string()), |(s, h)| (s + 1, h));
        let entry = WitnessEntry {
            id: uuid::Uuid::now_v7().to_string(),
            session_id: session.id.clone(),
            seq,
            at_us: c.at_us,
            kind: c.kind,
            text: c.text.clone(),
            corrects: c.corrects.clone(),
            author: by.person.clone(),
            recorded_at_us: now,
            prev_hash: prev,
            entry_hash: String::new(),
        }
        .seal();
        record::insert_entry_in(&mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Adds an entry to the record of the session room `room_id` is recording.
    pub async fn add_witness_entry_in_room(
        &self,
        room_id: &str,
        req: NewEntry,
        by: &Actor,
    ) -> Result<EntryView, CoreError> {
        crate::capture::rooms::get(&self.pool, room_id).await?;
        let Some(session) = index::live_session_of_room(&self.pool, room_id).await? else {
            return Err(CoreError::conflict(
                "session_not_running",
                format!(
                    "room {room_id} is not recording: witness entries belong to a running session"
                ),
            ));
        };
        self.add_witness_entry(&session.id, req, by).await
    }

    /// The session's witness signs its record with their password re-entered: a deliberate act
    /// of that account. Signing closes the record. Audited (`witness_record_sign`), a wrong
    /// password too (`denied: wrong_password`).
    pub async fn sign_witness_record(
        &self,
        session_id: &str,
        req: SignRequest,
        hasher: &Hasher,
        by: &Actor,
    ) -> Result<RecordView, CoreError> {
        let session = writable(self, session_id, by).await?;
        let user = crate::identity::users::by_username(&self.pool, &by.person).await?;
        let ok = hasher
            .verify(
                &req.password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await
            .map_err(|b| CoreError::Busy {
                message: b.to_string(),
                retry_after_seconds: 1,
            })?;
        if !ok {
            audit::Event::new(by, "witness_record_sign")
                .session(&session.id, &session.project_code)
                .target(format!("witness-record/{}", session.id))
                .outcome(audit::Outcome::Denied("wrong_password".into()))
                .flagged(session.kind.is_confidential())
                .append(&self.pool)
                .await?;
            return Err(CoreError::forbidden(
                "wrong_password",
                "the password is wrong: the record is signed with the witness's own password",
            ));
        }
        let (entries, signature) =
            self.insert_signature(&session, by)
                .await
                .map_err(|e| match e {
                    CoreError::Db(e) if is_unique_violation(&e) => CoreError::conflict(
                        "record_signed",
                        format!(
                            "the witness record of session {} is already signed",
                            session.id
                        ),
                    ),
                    CoreError::Db(e) => guard_refusal(e, &session.id),
                    e => e,
                })?;
        audit::Event::new(by, "witness_record_sign")
            .session(&session.id, &session.project_code)
            .target(format!("witness-record/{}", session.id))
            .reason(format!(
                "{} entries, SHA-256 {}",
                signature.entries, signature.sha256
            ))
            .flagged(session.kind.is_confidential())
            .append(&self.pool)
            .await?;
        Ok(view_of(&session, &entries, Some(&signature)))
    }
}

impl Core {
    /// The session's witness record as the API shows it. Reading a confidential (评标) session's
    /// record is audited (`witness_record_view`, flagged), as every read of its evidence is,
    /// except by its own witness (the author, whose console card shows it while it records).
    pub async fn witness_record(
        &self,
        session_id: &str,
        by: &Actor,
    ) -> Result<RecordView, CoreError> {
        let session = existing_session(&self.pool, session_id).await?;
        let entries = record::entries(&self.pool, &session.id).await?;
        let signature = record::signature(&self.pool, &session.id).await?;
        if session.kind.is_confidential() && session.started_by.as_deref() != Some(&by.person) {
            audit::Event::new(by, "witness_record_view")
                .session(&session.id, &session.project_code)
                .target(format!("witness-record/{}", session.id))
                .flagged(true)
                .append(&self.pool)
                .await?;
        }
        Ok(view_of(&session, &entries, signature.as_ref()))
    }
}
