//! Four eyes on accounts: over the API, creating an account or changing its role or trading
//! categories is proposed by one security administrator and takes effect only when a second,
//! different and independent one (`duties::independent`) approves it. The proposer cannot
//! approve their own proposal, nor can anyone approve a change of their own account. A new
//! account's one-time password is made at approval and answered to the approver only, so no
//! one person both chose the account and holds its password; the users table remembers who did
//! (`credentials_by`, `role_by`). Every step is audited, with the account before and after.
//!
//! Why every role: each one touches the evidence or its guard. Witness staff stop recordings,
//! system administrators point the cameras, regulators and discipline officers replay, archive
//! clerks export and destroy, audit administrators read who did what, security administrators
//! make all of these. The host's `witness user add` (database and keys on the server) stays the
//! way the first accounts are made, audited as `cli`.

use serde::Serialize;
use sqlx::Row;

use super::roles::Role;
use super::users::{self, NewUser, User};
use super::{IdentityError, duties, logins, password, tokens};
use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// Where a proposed account change is.
    pub enum ChangeState as "state" {
        Proposed = "proposed",
        Approved = "approved",
        Rejected = "rejected",
    }
}

crate::text_enum! {
    /// A new account, or a new role or scope for an existing one.
    pub enum ChangeKind as "kind" {
        Create = "create",
        Change = "change",
    }
}

/// A proposed account change as the API shows it (never a password).
#[derive(Debug, Clone, Serialize)]
pub struct AccountChange {
    pub id: String,
    pub kind: ChangeKind,
    pub user_id: Option<String>,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub categories: Vec<String>,
    /// What changes, before → after.
    pub summary: String,
    pub reason: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub state: ChangeState,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

const COLUMNS: &str = "id, kind, user_id, username, display_name, role, categories, summary, reason, proposed_by, proposed_at, state, decided_by, decided_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<AccountChange, sqlx::Error> {
    let decode = |e: crate::db::UnknownValue| sqlx::Error::Decode(Box::new(e));
    let role: String = r.try_get("role")?;
    let categories: String = r.try_get("categories")?;
    Ok(AccountChange {
        id: r.try_get("id")?,
        kind: r.try_get::<String, _>("kind")?.parse().map_err(decode)?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        role: Role::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        categories: categories
            .split(',')
            .filter(|c| !c.is_empty())
            .map(Into::into)
            .collect(),
        summary: r.try_get("summary")?,
        reason: r.try_get("reason")?,
        proposed_by: r.try_get("proposed_by")?,
        proposed_at: rfc3339(r.try_get("proposed_at")?),
        state: r.try_get::<String, _>("state")?.parse().map_err(decode)?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(rfc3339),
    })
}

/// The change `id`, or `NoChange`.
pub async fn get(pool: &Pool, id: &str) -> Result<AccountChange, IdentityError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM account_changes WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()?
    .ok_or_else(|| IdentityError::NoChange(id.into()))
}

/// Changes waiting for approval first, then the latest decided ones (at most 200).
pub async fn list(pool: &Pool) -> Result<Vec<AccountChange>, IdentityError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM account_changes ORDER BY CASE WHEN state = 'proposed' THEN 0 ELSE 1 END, proposed_at DESC LIMIT 200"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// What a proposal asks.
pub struct Proposal<'a> {
    pub kind: ChangeKind,
    pub user_id: Option<&'a str>,
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub categories: &'a [String],
    pub summary: String,
    pub reason: &'a str,
}

/// Records a proposal (checked by the caller) and audits it as `action` (`user_add`,
/// `user_change`).
pub(super) async fn propose(
    pool: &Pool,
    p: Proposal<'_>,
    action: &str,
    by: &Actor,
) -> Result<AccountChange, IdentityError> {
    if p.reason.chars().count() > 500 {
        return Err(IdentityError::invalid("reason: at most 500 characters"));
    }
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT id FROM account_changes WHERE username = $1 AND state = 'proposed'",
    )
    .bind(p.username)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = pending {
        return Err(IdentityError::Refused {
            code: "change_pending",
            message: format!(
                "a change of account {:?} already waits for approval (change {id}); approve or reject it",
                p.username
            ),
        });
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO account_changes (id, kind, user_id, username, display_name, role, categories, summary, reason, proposed_by, proposed_at, state) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'proposed')",
    )
    .bind(&id)
    .bind(p.kind.as_str())
    .bind(p.user_id)
    .bind(p.username)
    .bind(p.display_name)
    .bind(p.role.as_str())
    .bind(p.categories.join(","))
    .bind(&p.summary)
    .bind(p.reason)
    .bind(by.name())
    .bind(now_us())
    .execute(pool)
    .await?;
    audit::Event::new(by, action)
        .target(p.username)
        .reason(p.reason)
        .outcome(Outcome::Result(format!(
            "proposed; {}; waits for a second security administrator (change {id})",
            p.summary
        )))
        .append(pool)
        .await?;
    get(pool, &id).await
}

/// A refusal of a decision, audited as `action` (`denied: <code>`) before it is returned.
async fn refuse(
    pool: &Pool,
    by: &Actor,
    action: &str,
    c: &AccountChange,
    code: &'static str,
    message: String,
) -> IdentityError {
    if let Err(e) = audit::Event::new(by, action)
        .target(&c.username)
        .reason(format!("change {}", c.id))
        .outcome(Outcome::Denied(code.into()))
        .append(pool)
        .await
    {
        return e.into();
    }
    IdentityError::Refused { code, message }
}

/// The person behind an actor's name, if they have an account.
async fn account_of(pool: &Pool, actor: &Actor) -> Result<Option<User>, sqlx::Error> {
    users::by_username(pool, &actor.person).await
}

/// Checks that `by` may decide `c` at all: not its proposer, not about their own account, and
/// independent of the proposer (`duties::independent`). Refusals are audited.
async fn check_second_person(
    pool: &Pool,
    c: &AccountChange,
    by: &Actor,
    action: &str,
) -> Result<(), IdentityError> {
    let proposer = Actor::parse(&c.proposed_by);
    if by.is_same_person(&proposer) {
        return Err(refuse(
            pool,
            by,
            action,
            c,
            "same_person",
            format!(
                "{} proposed this change; another security administrator must approve it",
                c.proposed_by
            ),
        )
        .await);
    }
    if by.person == c.username {
        return Err(refuse(
            pool,
            by,
            action,
            c,
            "own_account",
            "nobody approves a change of their own account".into(),
        )
        .await);
    }
    if let (Some(me), Some(them)) = (
        account_of(pool, by).await?,
        account_of(pool, &proposer).await?,
    ) && let Err(why) = duties::independent(&me, &them)
    {
        return Err(refuse(
            pool,
            by,
            action,
            c,
            "not_independent",
            format!("the approver must be independent of the proposer: {why}"),
        )
        .await);
    }
    Ok(())
}

/// Approves change `id` and applies it. Returns the change, the account after it and, for a
/// new account, its one-time password (for the approver to hand to the holder).
pub async fn approve(
    pool: &Pool,
    id: &str,
    by: &Actor,
) -> Result<(AccountChange, User, Option<String>), IdentityError> {
    let c = get(pool, id).await?;
    check_second_person(pool, &c, by, "account_change_approve").await?;
    let proposer = Actor::parse(&c.proposed_by).person;
    let role_by = [proposer.as_str(), by.person.as_str()];
    let (user, one_time, outcome) = match c.kind {
        ChangeKind::Create => {
            if users::by_username(pool, &c.username).await?.is_some() {
                return Err(IdentityError::Conflict(format!(
                    "user name {:?} is taken",
                    c.username
                )));
            }
            decide(pool, &c, ChangeState::Approved, by).await?;
            let one_time = password::one_time();
            let u = users::insert(
                pool,
                NewUser {
                    username: &c.username,
                    display_name: &c.display_name,
                    role: c.role,
                    categories: &c.categories,
                    password_hash: &password::hash(&one_time),
                },
            )
            .await?;
            users::set_provenance(pool, &u.id, Some(&[by.person.as_str()]), Some(&role_by)).await?;
            sqlx::query("UPDATE account_changes SET user_id = $1 WHERE id = $2")
                .bind(&u.id)
                .bind(&c.id)
                .execute(pool)
                .await?;
            let outcome = format!("changed; created: {}", c.summary);
            (u, Some(one_time), outcome)
        }
        ChangeKind::Change => {
            let user_id = c.user_id.clone().unwrap_or_default();
            let before = users::by_id(pool, &user_id)
                .await?
                .ok_or_else(|| IdentityError::NoUser(c.username.clone()))?;
            decide(pool, &c, ChangeState::Approved, by).await?;
            users::set_profile(
                pool,
                &before.id,
                &before.display_name,
                c.role,
                &c.categories,
            )
            .await?;
            if c.role != before.role {
                logins::revoke_all(pool, &before.id).await?;
                tokens::revoke_all(pool, &before.id).await?;
            }
            users::set_provenance(pool, &before.id, None, Some(&role_by)).await?;
            let after = users::by_id(pool, &before.id)
                .await?
                .ok_or_else(|| IdentityError::NoUser(c.username.clone()))?;
            let outcome = super::describe_change(&before, &after);
            (after, None, outcome)
        }
    };
    audit::Event::new(by, "account_change_approve")
        .target(&c.username)
        .reason(format!("change {}: {}", c.id, c.reason))
        .outcome(Outcome::Result(format!(
            "{outcome}; proposed by {}, approved by {}",
            c.proposed_by,
            by.name()
        )))
        .append(pool)
        .await?;
    Ok((get(pool, id).await?, user, one_time))
}

/// Rejects (or, by its proposer, withdraws) change `id`; nothing changes.
pub async fn reject(pool: &Pool, id: &str, by: &Actor) -> Result<AccountChange, IdentityError> {
    let c = get(pool, id).await?;
    decide(pool, &c, ChangeState::Rejected, by).await?;
    audit::Event::new(by, "account_change_reject")
        .target(&c.username)
        .reason(format!("change {}: {}", c.id, c.reason))
        .outcome(Outcome::Result(format!(
            "rejected; unchanged; proposed by {}, rejected by {}",
            c.proposed_by,
            by.name()
        )))
        .append(pool)
        .await?;
    get(pool, id).await
}

/// Moves a proposed change to `state`, once: of two deciding at the same time one wins.
async fn decide(
    pool: &Pool,
    c: &AccountChange,
    state: ChangeState,
    by: &Actor,
) -> Result<(), IdentityError> {
    let done = sqlx::query(
        "UPDATE account_changes SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = 'proposed'",
    )
    .bind(state.as_str())
    .bind(by.name())
    .bind(now_us())
    .bind(&c.id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(IdentityError::Refused {
            code: "change_decided",
            message: format!("account change {} was already decided", c.id),
        })
    }
}
