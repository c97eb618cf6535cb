//! Identity: users with one role each (`roles`), Argon2id passwords (`password`), TOTP
//! (`totp`), browser sessions (`logins`) and API tokens (`tokens`); `access` decides every
//! request; `api` is the HTTP face. The account operations shared by the HTTP API and the CLI
//! (`witness user …`) are here.

pub mod caller;
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
    /// Valid input the rules refuse (an administrator changing their own role …).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("no user {0:?}")]
    NoUser(String),
    #[error("no account reset {0:?}")]
    NoReset(String),
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

/// Creates a user with a one-time password (returned once, to be changed at first login).
pub async fn add_user(
    pool: &Pool,
    req: AddUser<'_>,
    by: &Actor,
) -> Result<(User, String), IdentityError> {
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

/// A new one-time password (and, with `totp`, a cleared second factor), at once; every browser
/// session of the user ends. API tokens live on (an integration keeps working); disable the user
/// to end those too. For the machine's authority (`witness user reset`, actor `cli`); over the
/// API another person's reset waits for a second administrator (`resets::request`).
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

/// First start: with no user at all, an administrator `admin` with a one-time password printed
/// once on the console. There is no default password.
pub async fn bootstrap(pool: &Pool) -> Result<(), IdentityError> {
    if users::count(pool).await? > 0 {
        return Ok(());
    }
    let (_, one_time) = add_user(
        pool,
        AddUser {
            username: "admin",
            display_name: "系统管理员 Administrator",
            role: Role::Administrator,
            categories: &[],
        },
        &Actor::local("system"),
    )
    .await?;
    eprintln!(
        "\n================================================================\n\
         First start: administrator account created.\n  user name:          admin\n  one-time password:  {one_time}\n\
         Shown only this once. Log in, change it, and enrol TOTP.\n\
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
}

/// Changes user `id` for administrator `by_user_id`. Administrators cannot change their own
/// role or disable themselves; a new role ends every session and token of the old one. Audited
/// once, as `user_change`, with each changed field before → after (`role: witness_staff →
/// archive_clerk; disabled: false → true`).
pub async fn change_user(
    pool: &Pool,
    id: &str,
    change: ProfileChange,
    by_user_id: &str,
    by: &Actor,
) -> Result<User, IdentityError> {
    let u = users::by_id(pool, id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(id.into()))?;
    if u.id == by_user_id && (change.role.is_some() || change.disabled == Some(true)) {
        return Err(IdentityError::Refused {
            code: "own_account",
            message: "administrators cannot change their own role or disable themselves".into(),
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
    users::set_profile(pool, &u.id, &display_name, role, &categories).await?;
    if role != u.role {
        // New duties, new credentials: nothing issued under the old role lives on.
        logins::revoke_all(pool, &u.id).await?;
        tokens::revoke_all(pool, &u.id).await?;
    }
    if let Some(d) = change.disabled {
        apply_disabled(pool, &u.id, d).await?;
    }
    let after = users::by_id(pool, &u.id)
        .await?
        .ok_or_else(|| IdentityError::NoUser(id.into()))?;
    audit::Event::new(by, "user_change")
        .target(&u.username)
        .outcome(audit::Outcome::Result(describe_change(&u, &after)))
        .append(pool)
        .await?;
    Ok(after)
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

/// A role by name, or a message naming the valid ones.
pub fn parse_role(role: &str) -> Result<Role, IdentityError> {
    Role::parse(role).ok_or_else(|| {
        IdentityError::invalid(format!(
            "role {role:?} is not valid, expected one of: {}",
            roles::ROLES.map(|r| r.as_str()).join(", ")
        ))
    })
}
