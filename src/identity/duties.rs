//! Separated duties (等保 三员分立): what no single account, of any role, may do alone. Roles
//! split the administrator's work (`roles`); two-person rules need a second person, and that
//! second person must be someone else in fact, not an account the first one made or could log
//! in as. This module says when two accounts are independent:
//!
//! - not the same person (`Actor::is_same_person`: a token of a person is that person);
//! - neither could hold the other's credentials: the person who received an account's last
//!   one-time password (the approver of its creation or reset, `users.credentials_by`) may have
//!   logged in with it before its holder did;
//! - no third person could hold both accounts' credentials.
//!
//! The host's authority (`cli`, `system`, `demo`: someone with the database and the keys on the
//! server) is not a person here: `witness user add` is how the first accounts are made, and is
//! audited as such. Destruction adds a stricter rule (`not_provisioned_by`): an approval does not
//! count when the proposer (or executor) created the approver's account or last set its role.

use super::users::User;

/// Actors that are the machine's authority rather than a person.
pub const HOST: [&str; 3] = ["cli", "system", "demo"];

fn people(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter()
        .map(String::as_str)
        .filter(|n| !HOST.contains(n))
}

/// Whether `person` could hold `account`'s credentials (received its last one-time password).
pub fn could_hold(person: &str, account: &User) -> bool {
    people(&account.credentials_by).any(|p| p == person)
}

/// Whether `a` and `b` are two independent people for a two-person rule; `Err` says why not.
pub fn independent(a: &User, b: &User) -> Result<(), String> {
    if a.id == b.id || a.username == b.username {
        return Err(format!("{} is one person", a.username));
    }
    if could_hold(&a.username, b) {
        return Err(format!(
            "{} received the one-time password of {}'s account",
            a.username, b.username
        ));
    }
    if could_hold(&b.username, a) {
        return Err(format!(
            "{} received the one-time password of {}'s account",
            b.username, a.username
        ));
    }
    if let Some(third) = people(&a.credentials_by).find(|p| could_hold(p, b)) {
        return Err(format!(
            "{third} received the one-time passwords of both {} and {}",
            a.username, b.username
        ));
    }
    Ok(())
}

/// Whether `account` was created, or last had its role or credentials set, by `person`: the
/// destruction rule ("nobody creates the approvers of their own destruction"). `Err` says how.
pub fn not_provisioned_by(person: &str, account: &User) -> Result<(), String> {
    if could_hold(person, account) {
        return Err(format!(
            "{person} received the one-time password of {}'s account",
            account.username
        ));
    }
    if people(&account.role_by).any(|p| p == person) {
        return Err(format!(
            "{person} created {}'s account or last set its role",
            account.username
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::roles::Role;

    fn user(name: &str, credentials_by: &[&str], role_by: &[&str]) -> User {
        User {
            id: name.into(),
            username: name.into(),
            display_name: name.into(),
            role: Role::Regulator,
            categories: vec![],
            password_hash: String::new(),
            must_change_password: false,
            password_changed_at_us: 0,
            totp_secret: None,
            totp_enabled: false,
            totp_last_step: 0,
            locked_until_us: 0,
            disabled: false,
            created_at_us: 0,
            credentials_by: credentials_by.iter().map(|s| s.to_string()).collect(),
            role_by: role_by.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn independence_of_two_accounts() {
        let a = user("a", &["cli"], &["cli"]);
        let b = user("b", &["cli"], &["cli"]);
        assert!(independent(&a, &b).is_ok(), "the host is nobody");
        assert!(independent(&a, &a).is_err());
        // b approved c's creation (and got its password): c is not independent of b.
        let c = user("c", &["b"], &["a", "b"]);
        assert!(independent(&c, &b).is_err());
        assert!(independent(&b, &c).is_err());
        // a only proposed it: a never saw the password.
        assert!(independent(&a, &c).is_ok());
        // Two accounts whose passwords went to the same third person.
        let d = user("d", &["b"], &["a", "b"]);
        let e = independent(&c, &d).unwrap_err();
        assert!(e.contains("b received"), "{e}");
        // Destruction: a proposed c's creation, so c's approval of a's proposal does not count.
        assert!(not_provisioned_by("a", &c).is_err());
        assert!(not_provisioned_by("b", &c).is_err());
        assert!(not_provisioned_by("x", &c).is_ok());
        assert!(not_provisioned_by("cli", &a).is_ok());
    }
}
