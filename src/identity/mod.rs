//! Identity: users with one role each (`roles`), Argon2id passwords (`password`), TOTP
//! (`totp`), browser sessions (`logins`) and API tokens (`tokens`); `access` decides every
//! request; `api` is the HTTP face. The account operations shared by the HTTP API and the CLI
//! (`witness user …`) are here.

pub mod caller;
pub mod changes;
pub mod duties;
pub mod login;
pub mod logins;
pub mod password;
pub mod resets;
pub mod roles;
pub mod throttle;
pub mod tokens;
pub mod totp;
pub mod users;

use crate::audit::{self, Actor};
use crate::db::Pool;
use roles::{Permission, Role};
use users::{NewUser, User};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    /// Valid input the rules refuse (a security administrator changing their own role …).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("no user {0:?}")]
    NoUser(String),
    #[error("no account reset {0:?}")]
    NoReset(String),
    #[error("no account change {0:?}")]
    NoChange(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl IdentityError {
    fn invalid(message: impl Into<String>) -> Self {
        IdentityError::Invalid {
            code: "invalid_field",
            message: message.into(),
        }
    }
}

pub struct AddUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub categories: &'a [String],
}

/// Checks a new account as asked: name, display name, scope, and a free name.
async fn check_new_user(pool: &Pool, req: &AddUser<'_>) -> Result<(), IdentityError> {
    users::check_username(req.username).map_err(IdentityError::invalid)?;
    if req.display_name.chars().count() > 100 {
        return Err(IdentityError::invalid(
            "display_name: at most 100 characters",
        ));
    }
    users::check_categories(req.role, req.categories).map_err(IdentityError::invalid)?;
    if users::by_username(pool, req.username).await?.is_some() {
        return Err(IdentityError::Conflict(format!(
            "user name {:?} is taken",
            req.username
        )));
    }
    Ok(())
}

/// Creates a user at once with a one-time password (returned once, to be changed at first
/// login): the host's authority (`witness user add`, the first start), audited as such. Over
/// the API an account is proposed instead (`propose_user`).
pub async fn add_user(
    pool: &Pool,
    req: AddUser<'_>,
    by: &Actor,
) -> Result<(User, String), IdentityError> {
    check_new_user(pool, &req).await?;
    let one_time = password::one_time();
    let user = users::insert(
        pool,
        NewUser {
            username: req.username,
            display_name: if req.display_name.is_empty() {
                req.username
            } else {
                req.display_name
            },
            role: req.role,
            categories: req.categories,
            password_hash: &password::hash(&one_time),
        },
    )
    .await
    .map_err(|e| {
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            IdentityError::Conflict(format!("user name {:?} is taken", req.username))
        } else {
            IdentityError::Db(e)
        }
    })?;
    let host = [by.person.as_str()];
    users::set_provenance(pool, &user.id, Some(&host), Some(&host)).await?;
    audit_account(
        pool,
        by,
        "user_add",
        &user.username,
        &format!("role {}", user.role.as_str()),
    )
    .await?;
    Ok((user, one_time))
}

/// What a new account would be, as the trail says it.
fn describe_new(req: &AddUser<'_>) -> String {
    let mut text = format!("role {}", req.role.as_str());
    if !req.categories.is_empty() {
        text.push_str(&format!("; categories {}", req.categories.join(",")));
    }
    text
}

/// An account asked over the API by a security administrator: proposed, created only when a
/// second, independent security administrator approves it (`changes::approve`).
pub async fn propose_user(
    pool: &Pool,
    req: AddUser<'_>,
    reason: &str,
    by: &Actor,
) -> Result<changes::AccountChange, IdentityError> {
    check_new_user(pool, &req).await?;
    let display_name = if req.display_name.is_empty() {
        req.username
    } else {
        req.display_name
    };
    changes::propose(
        pool,
        changes::Proposal {
            kind: changes::ChangeKind::Create,
            user_id: None,
            username: req.username,
            display_name,
            role: req.role,
            categories: req.categories,
            summary: format!("user {}: {}", req.username, describe_new(&req)),
            reason,
        },
        "user_add",
        by,
    )
    .await
}

/// A new one-time password (and, with `totp`, a cleared second factor), at once; every browser
/// session of the user ends. API tokens live on (an integration keeps working); disable the user
/// to end those too. For the machine's authority (`witness user reset`, actor `cli`); over the
/// API another person's reset waits for a second security administrator (`resets::request`).
pub async fn reset_user(
    pool: &Pool,
    username: &str,
    totp: bool,
    by: &Actor,
) -> Result<String, IdentityError> {
    let u = users::by_username(pool, username)
        .await?
        .ok_or_else(|| IdentityError::NoUser(username.into()))?;
    let change = resets::describe_reset(&u, totp);
    let one_time = resets::apply(pool, &u, totp).await?;
    users::set_provenance(pool, &u.id, Some(&[by.person.as_str()]), None).await?;
    audit::Event::new(by, "user_reset")
        .target(username)
        .outcome(audit::Outcome::Result(format!("changed; {change}")))
        .append(pool)
        .await?;
    Ok(one_time)
}

/// Disables (ending every session and token) or enables a user, audited with before and after.
pub async fn set_disabled(
    pool: &Pool,
    username: &str,
    disabled: bool,
    by: &Actor,
) -> Result<(), IdentityError> {
    let u = users::by_username(pool, username)
        .await?
        .ok_or_else(|| IdentityError::NoUser(username.into()))?;
    apply_disabled(pool, &u.id, disabled).await?;
    audit::Event::new(
        by,
        if disabled {
            "user_disable"
        } else {
            "user_enable"
        },
    )
    .target(username)
    .outcome(audit::Outcome::Result(format!(
        "changed; disabled: {} → {disabled}",
        u.disabled
    )))
    .append(pool)
    .await?;
    Ok(())
}

async fn apply_disabled(pool: &Pool, user_id: &str, disabled: bool) -> Result<(), sqlx::Error> {
    users::set_disabled(pool, user_id, disabled).await?;
    if disabled {
        logins::revoke_all(pool, user_id).await?;
        tokens::revoke_all(pool, user_id).await?;
    }
    Ok(())
}

/// Issues an API token for `username` with `scopes` (all of the role's when empty).
pub async fn issue_token(
    pool: &Pool,
    username: &str,
    name: &str,
    scopes: &[Permission],
    days: i64,
    max_days: i64,
    by: &Actor,
) -> Result<(String, String), IdentityError> {
    let u = users::by_username(pool, username)
        .await?
        .ok_or_else(|| IdentityError::NoUser(username.into()))?;
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(IdentityError::invalid("name: 1 to 64 characters"));
    }
    if !(1..=max_days).contains(&days) {
        return Err(IdentityError::invalid(format!(
            "expires_in_days: 1 to {max_days}"
        )));
    }
    if let Some(p) = scopes.iter().find(|p| !u.role.allows(**p)) {
        return Err(IdentityError::invalid(format!(
            "scope {:?} is beyond what the {} role may do",
            p.as_str(),
            u.role.as_str()
        )));
    }
    let scopes: Vec<Permission> = if scopes.is_empty() {
        roles::PERMISSIONS
            .into_iter()
            .filter(|p| u.role.allows(*p))
            .collect()
    } else {
        scopes.to_vec()
    };
    let issued = tokens::issue(pool, &u.id, name, &scopes, days * 86_400_000_000).await?;
    audit_account(pool, by, "token_issue", username, name).await?;
    Ok(issued)
}

async fn audit_account(
    pool: &Pool,
    by: &Actor,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    audit::Event::new(by, action)
        .target(target)
        .reason(detail)
        .append(pool)
        .await
        .map(|_| ())
}

/// First start: with no user at all, a security administrator `admin` with a one-time password
/// printed once on the console. There is no default password. `admin` then makes the other
/// accounts (each approved by a second security administrator, made on the host with
/// `witness user add`).
pub async fn bootstrap(pool: &Pool) -> Result<(), IdentityError> {
    if users::count(pool).await? > 0 {
        return Ok(());
    }
    let (_, one_time) = add_user(
        pool,
        AddUser {
            username: "admin",
            display_name: "安全管理员 Security administrator",
            role: Role::SecurityAdministrator,
            categories: &[],
        },
        &Actor::local("system"),
    )
    .await?;
    eprintln!(
        "\n================================================================\n\
         First start: security administrator account created.\n  user name:          admin\n  one-time password:  {one_time}\n\
         Shown only this once. Log in, change it, and enrol TOTP.\n\
         Create a second security administrator on this host (witness user add NAME\n\
         --role security_administrator): every other account needs their approval.\n\
         ================================================================\n"
    );
    Ok(())
}

/// A change to a user's profile; `None` keeps what is.
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub categories: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// Why, for the approver of a new role or scope and the audit trail.
    pub reason: String,
}

/// What a profile change led to: the account after the parts done at once (display name,
/// disabled), and the proposed new role or scope, if any, waiting for a second security
/// administrator.
pub struct ChangeOutcome {
    pub user: User,
    pub proposed: Option<changes::AccountChange>,
}

/// Changes user `id` for security administrator `by_user_id`. Nobody changes their own role or
/// disables themselves. The display name and disabling or enabling apply at once, audited as
/// `user_change` with each changed field before → after (`disabled: false → true`). A new role
/// or new trading categories are proposed (`changes`): they apply, ending every session and
/// token of the old role, when a second security administrator approves them.
pub async fn change_user(
    pool: &Pool,
    id: &str,
    change: ProfileChange,
    by_user_id: &str,
    by: &Actor,
) -> Result<ChangeOutcome, IdentityError> {
    let u = users::by_id(pool, id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(id.into()))?;
    if u.id == by_user_id && (change.role.is_some() || change.disabled == Some(true)) {
        return Err(IdentityError::Refused {
            code: "own_account",
            message: "nobody changes their own role or disables themselves".into(),
        });
    }
    let role = change.role.unwrap_or(u.role);
    let categories = change.categories.unwrap_or_else(|| {
        if role == Role::Regulator {
            u.categories.clone()
        } else {
            vec![]
        }
    });
    users::check_categories(role, &categories).map_err(IdentityError::invalid)?;
    let display_name = change
        .display_name
        .unwrap_or_else(|| u.display_name.clone());
    if display_name.trim().is_empty() || display_name.chars().count() > 100 {
        return Err(IdentityError::invalid("display_name: 1 to 100 characters"));
    }
    let grants_more = role != u.role || categories != u.categories;
    // The proposal first: a refused one (another change pending) changes nothing at all.
    let proposed = if grants_more {
        let mut wanted = u.clone();
        wanted.role = role;
        wanted.categories = categories.clone();
        let summary = describe_change(&u, &wanted);
        let summary = summary.strip_prefix("changed; ").unwrap_or(&summary);
        Some(
            changes::propose(
                pool,
                changes::Proposal {
                    kind: changes::ChangeKind::Change,
                    user_id: Some(&u.id),
                    username: &u.username,
                    display_name: &display_name,
                    role,
                    categories: &categories,
                    summary: summary.to_string(),
                    reason: &change.reason,
                },
                "user_change",
                by,
            )
            .await?,
        )
    } else {
        None
    };
    if display_name != u.display_name {
        users::set_profile(pool, &u.id, &display_name, u.role, &u.categories).await?;
    }
    if let Some(d) = change.disabled {
        apply_disabled(pool, &u.id, d).await?;
    }
    let after = users::by_id(pool, &u.id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(id.into()))?;
    let done = describe_change(&u, &after);
    if proposed.is_none() || done != "unchanged" {
        audit::Event::new(by, "user_change")
            .target(&u.username)
            .outcome(audit::Outcome::Result(done))
            .append(pool)
            .await?;
    }
    Ok(ChangeOutcome {
        user: after,
        proposed,
    })
}

/// An account before and after a change, as the trail says it: each changed field
/// `name: before → after`, never a secret; `unchanged` when nothing changed.
pub fn describe_change(before: &User, after: &User) -> String {
    let list = |c: &[String]| {
        if c.is_empty() {
            "none".to_string()
        } else {
            c.join(",")
        }
    };
    let mut changes = Vec::new();
    if before.display_name != after.display_name {
        changes.push(format!(
            "display_name: {:?} → {:?}",
            before.display_name, after.display_name
        ));
    }
    if before.role != after.role {
        changes.push(format!(
            "role: {} → {} (sessions and tokens ended)",
            before.role.as_str(),
            after.role.as_str()
        ));
    }
    if before.categories != after.categories {
        changes.push(format!(
            "categories: {} → {}",
            list(&before.categories),
            list(&after.categories)
        ));
    }
    if before.disabled != after.disabled {
        changes.push(format!(
            "disabled: {} → {}",
            before.disabled, after.disabled
        ));
    }
    if changes.is_empty() {
        "unchanged".into()
    } else {
        format!("changed; {}", changes.join("; "))
    }
}

/// A role by name, or a message naming the valid ones. The former `administrator` is refused
/// with the three roles it became.
pub fn parse_role(role: &str) -> Result<Role, IdentityError> {
    if role == "administrator" {
        return Err(IdentityError::Invalid {
            code: "role_split",
            message: "role \"administrator\" no longer exists: separated duties split it into \
                      system_administrator (rooms and their configuration), \
                      security_administrator (accounts and roles) and audit_administrator \
                      (reads the audit trail)"
                .into(),
        });
    }
    Role::parse(role).ok_or_else(|| {
        IdentityError::invalid(format!(
            "role {role:?} is not valid, expected one of: {}",
            roles::ROLES.map(|r| r.as_str()).join(", ")
        ))
    })
}
