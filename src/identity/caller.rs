//! The authenticated caller of a request: a user, their role and scope, and whether they came
//! with a browser session or an API token. What they may do is decided here, by permission and
//! trading category; `http/access.rs` finds the caller and applies the route table.

use super::roles::{Permission, Role};
use crate::audit::Actor;
use crate::ledger::index::SessionRow;
use crate::ledger::values::Category;

/// The authenticated caller, in the request's extensions for handlers to read.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    pub categories: Vec<String>,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    Browser {
        csrf_token: String,
    },
    Token {
        name: String,
        scopes: Vec<Permission>,
    },
}

impl Caller {
    /// The caller as the audit trail records them, acting from `address`.
    pub fn actor(&self, address: &str) -> Actor {
        let person = Actor::person(&self.username, self.role.as_str(), address);
        match &self.via {
            Via::Browser { .. } => person,
            Via::Token { name, .. } => person.via_token(name),
        }
    }

    /// How the audit trail names the caller: `li`, or `li/token:trading-system`.
    pub fn name(&self) -> String {
        self.actor("").name()
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
            && match &self.via {
                Via::Browser { .. } => true,
                Via::Token { scopes, .. } => scopes.contains(&p),
            }
    }

    /// The trading categories the caller may see.
    pub fn scope(&self) -> Scope {
        if self.role != Role::Regulator {
            return Scope::All;
        }
        Scope::Categories(
            self.categories
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
        )
    }

    pub fn sees_category(&self, category: &Category) -> bool {
        self.scope().sees(category)
    }

    /// Whether `session` is within the caller's trading categories. Who may see a confidential
    /// session's media, and with what reason, is `evidence::access::may_read`, which asks this
    /// first. A refusal is a stable code and a sentence.
    pub fn sees_session(&self, session: &SessionRow) -> Result<(), (&'static str, String)> {
        if !self.sees_category(&session.category) {
            return Err((
                "out_of_scope",
                format!(
                    "session {} is in trading category {:?}, outside this regulator's scope",
                    session.id,
                    session.category.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// Which trading categories someone may see: regulators only those in their scope, other roles
/// all of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    All,
    Categories(Vec<Category>),
}

impl Scope {
    pub fn sees(&self, category: &Category) -> bool {
        match self {
            Scope::All => true,
            Scope::Categories(cs) => cs.contains(category),
        }
    }

    /// A project is seen when one of its sessions is in scope; a project with nothing recorded
    /// yet has nothing to hide.
    pub fn sees_project(&self, categories_of_sessions: &[Category]) -> bool {
        categories_of_sessions.is_empty() || categories_of_sessions.iter().any(|c| self.sees(c))
    }
}
