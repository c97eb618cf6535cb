//! Separated duties for resets: a reset of another person's password (and TOTP) proposed by one
//! security administrator changes nothing until a second, different and independent one
//! approves it (`Actor::is_same_person`: a token of the proposer is the proposer;
//! `duties::independent`: not an account whose one-time password the proposer received). The one-time password is
//! made at approval and answered to the approver only: the proposer never sees it, and the
//! approver cannot have started the reset, so no one person both chose the account and holds its
//! new password. Every step is audited with the account's state before and after.

use serde::Serialize;
use sqlx::Row;

use super::users::{self, User};
use super::{IdentityError, duties, logins, password};
use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// Where a proposed reset is: waiting, approved by a second person, or rejected.
    pub enum ResetState as "state" {
        Proposed = "proposed",
        Approved = "approved",
        Rejected = "rejected",
    }
}

/// A reset as the API shows it (never a password).
#[derive(Debug, Clone, Serialize)]
pub struct AccountReset {
    pub id: String,
    pub user_id: String,
    pub username: String,
    /// The TOTP second factor is cleared too.
    pub totp: bool,
    pub reason: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub state: ResetState,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

/// What a reset request led to.
pub enum ResetOutcome {
    /// Done at once (the caller's own account, or the machine's authority): the one-time
    /// password.
    Done { user: User, one_time: String },
    /// Waiting for a second security administrator.
    Proposed(AccountReset),
}

const COLUMNS: &str =
    "id, user_id, username, totp, reason, proposed_by, proposed_at, state, decided_by, decided_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<AccountReset, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(AccountReset {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        totp: r.try_get::<i64, _>("totp")? != 0,
        reason: r.try_get("reason")?,
        proposed_by: r.try_get("proposed_by")?,
        proposed_at: rfc3339(r.try_get("proposed_at")?),
        state: state
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(rfc3339),
    })
}

/// The reset `id`, or `NoReset`.
pub async fn get(pool: &Pool, id: &str) -> Result<AccountReset, IdentityError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM account_resets WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()?
    .ok_or_else(|| IdentityError::NoReset(id.into()))
}

/// Resets waiting for approval first, then the latest decided ones (at most 200), newest first.
pub async fn list(pool: &Pool) -> Result<Vec<AccountReset>, IdentityError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM account_resets ORDER BY CASE WHEN state = 'proposed' THEN 0 ELSE 1 END, proposed_at DESC LIMIT 200"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// The second factor as the trail names it.
fn totp_state(u: &User) -> &'static str {
    match (u.totp_enabled, u.totp_secret.is_some()) {
        (true, _) => "enrolled",
        (false, true) => "enrolment started",
        (false, false) => "not enrolled",
    }
}

/// Before → after of a reset, never a secret: `password: reset to a one-time password; totp:
/// enrolled → removed`.
pub fn describe_reset(u: &User, totp: bool) -> String {
    let mut text = String::from("password: reset to a one-time password (to be changed at login)");
    if totp {
        let before = totp_state(u);
        if before == "not enrolled" {
            text.push_str("; totp: not enrolled (nothing to remove)");
        } else {
            text.push_str(&format!("; totp: {before} → removed"));
        }
    }
    text
}

/// Applies a reset at once: a new one-time password (and, with `totp`, a cleared second factor);
/// every browser session of the user ends. API tokens live on.
pub(super) async fn apply(pool: &Pool, u: &User, totp: bool) -> Result<String, IdentityError> {
    let one_time = password::one_time();
    users::set_password(pool, &u.id, &password::hash(&one_time), true).await?;
    if totp {
        users::set_totp(pool, &u.id, None, false, 0).await?;
    }
    logins::revoke_all(pool, &u.id).await?;
    Ok(one_time)
}

/// A reset asked over the API by `by` (user id `by_user_id`). One's own account is reset at
/// once, but only from a browser session (a leaked API token must not obtain a password); any
/// other account gets a proposed reset that changes nothing until another person approves it.
pub async fn request(
    pool: &Pool,
    user_id: &str,
    totp: bool,
    reason: &str,
    by_user_id: &str,
    by: &Actor,
) -> Result<ResetOutcome, IdentityError> {
    let u = users::by_id(pool, user_id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(user_id.into()))?;
    if reason.chars().count() > 500 {
        return Err(IdentityError::invalid("reason: at most 500 characters"));
    }
    if u.id == by_user_id {
        if by.token.is_some() {
            return Err(IdentityError::Refused {
                code: "own_account",
                message:
                    "one's own password is reset from a browser session, not with an API token"
                        .into(),
            });
        }
        let change = describe_reset(&u, totp);
        let one_time = apply(pool, &u, totp).await?;
        users::set_provenance(pool, &u.id, Some(&[u.username.as_str()]), None).await?;
        audit::Event::new(by, "user_reset")
            .target(&u.username)
            .reason(reason)
            .outcome(Outcome::Result(format!("changed; {change}; own account")))
            .append(pool)
            .await?;
        return Ok(ResetOutcome::Done { user: u, one_time });
    }
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT id FROM account_resets WHERE user_id = $1 AND state = 'proposed'",
    )
    .bind(&u.id)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = pending {
        return Err(IdentityError::Refused {
            code: "reset_pending",
            message: format!(
                "a reset of {:?} already waits for approval (reset {id}); approve or reject it",
                u.username
            ),
        });
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO account_resets (id, user_id, username, totp, reason, proposed_by, proposed_at, state) VALUES ($1,$2,$3,$4,$5,$6,$7,'proposed')",
    )
    .bind(&id)
    .bind(&u.id)
    .bind(&u.username)
    .bind(i64::from(totp))
    .bind(reason)
    .bind(by.name())
    .bind(now_us())
    .execute(pool)
    .await?;
    audit::Event::new(by, "user_reset")
        .target(&u.username)
        .reason(reason)
        .outcome(Outcome::Result(format!(
            "proposed; {}; waits for a second security administrator (reset {id})",
            describe_reset(&u, totp)
        )))
        .append(pool)
        .await?;
    get(pool, &id).await.map(ResetOutcome::Proposed)
}

/// Approves reset `id`: refused (and audited) when `by` is the person who proposed it; applied
/// once (a decided reset is refused). Returns the reset and the one-time password, for the
/// approver to hand to the account's holder.
pub async fn approve(
    pool: &Pool,
    id: &str,
    by: &Actor,
) -> Result<(AccountReset, String), IdentityError> {
    let r = get(pool, id).await?;
    let refuse = |code: &'static str, message: String| {
        let r = &r;
        async move {
            if let Err(e) = audit::Event::new(by, "user_reset_approve")
                .target(&r.username)
                .reason(format!("reset {id}"))
                .outcome(Outcome::Denied(code.into()))
                .append(pool)
                .await
            {
                return IdentityError::Db(e);
            }
            IdentityError::Refused { code, message }
        }
    };
    let proposer = Actor::parse(&r.proposed_by);
    if by.is_same_person(&proposer) {
        return Err(refuse(
            "same_person",
            format!(
                "{} proposed this reset; another security administrator must approve it",
                r.proposed_by
            ),
        )
        .await);
    }
    if let (Some(me), Some(them)) = (
        users::by_username(pool, &by.person).await?,
        users::by_username(pool, &proposer.person).await?,
    ) && let Err(why) = duties::independent(&me, &them)
    {
        return Err(refuse(
            "not_independent",
            format!("the approver must be independent of the proposer: {why}"),
        )
        .await);
    }
    let u = users::by_id(pool, &r.user_id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(r.username.clone()))?;
    decide(pool, &r, ResetState::Approved, by).await?;
    let change = describe_reset(&u, r.totp);
    let one_time = apply(pool, &u, r.totp).await?;
    users::set_provenance(pool, &u.id, Some(&[by.person.as_str()]), None).await?;
    audit::Event::new(by, "user_reset_approve")
        .target(&r.username)
        .reason(format!("reset {id}: {}", r.reason))
        .outcome(Outcome::Result(format!(
            "changed; {change}; proposed by {}, approved by {}",
            r.proposed_by,
            by.name()
        )))
        .append(pool)
        .await?;
    Ok((get(pool, id).await?, one_time))
}

/// Rejects (or, by its proposer, withdraws) reset `id`; the account stays as it is.
pub async fn reject(pool: &Pool, id: &str, by: &Actor) -> Result<AccountReset, IdentityError> {
    let r = get(pool, id).await?;
    decide(pool, &r, ResetState::Rejected, by).await?;
    audit::Event::new(by, "user_reset_reject")
        .target(&r.username)
        .reason(format!("reset {id}: {}", r.reason))
        .outcome(Outcome::Result(format!(
            "rejected; unchanged; proposed by {}, rejected by {}",
            r.proposed_by,
            by.name()
        )))
        .append(pool)
        .await?;
    get(pool, id).await
}

/// Moves a proposed reset to `state`, once: of two deciding at the same time one wins.
async fn decide(
    pool: &Pool,
    r: &AccountReset,
    state: ResetState,
    by: &Actor,
) -> Result<(), IdentityError> {
    let done = sqlx::query(
        "UPDATE account_resets SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = 'proposed'",
    )
    .bind(state.as_str())
    .bind(by.name())
    .bind(now_us())
    .bind(&r.id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(IdentityError::Refused {
            code: "reset_decided",
            message: format!("reset {} was already decided", r.id),
        })
    }
}
