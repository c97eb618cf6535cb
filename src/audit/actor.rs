//! Who did something: a person (or the server itself), via which API token, in which role, from
//! which address. The audit trail stores an actor as `li` or `li/token:trading-system`; two-person
//! rules compare actors by person, so a token never counts as a second person.

/// Who acted.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user name; `system`, `cli`, `demo` or `anonymous` for actors that are not people.
    pub person: String,
    /// The API token the person acted through, if any.
    pub token: Option<String>,
    /// The role the person held when acting; empty for actors that are not people.
    pub role: &'static str,
    /// Where the request came from (`local` for the server's own jobs and the CLI).
    pub address: String,
}

const TOKEN_MARK: &str = "/token:";

impl Actor {
    pub fn person(
        person: impl Into<String>,
        role: &'static str,
        address: impl Into<String>,
    ) -> Actor {
        Actor {
            person: person.into(),
            token: None,
            role,
            address: address.into(),
        }
    }

    /// The same person acting through the API token `name`.
    pub fn via_token(self, name: impl Into<String>) -> Actor {
        Actor {
            token: Some(name.into()),
            ..self
        }
    }

    /// The server's own jobs (`system`), the command line (`cli`), the demo (`demo`).
    pub fn local(name: &str) -> Actor {
        Actor::person(name, "", "local")
    }

    /// A caller who has not logged in.
    pub fn anonymous(address: impl Into<String>) -> Actor {
        Actor::person("anonymous", "", address)
    }

    /// An actor as the trail names it (`li` or `li/token:x`); role and address unknown.
    pub fn parse(name: &str) -> Actor {
        match name.split_once(TOKEN_MARK) {
            Some((person, token)) => Actor::person(person, "", "").via_token(token),
            None => Actor::person(name, "", ""),
        }
    }

    /// The name the audit trail records: `li`, or `li/token:trading-system`.
    pub fn name(&self) -> String {
        match &self.token {
            None => self.person.clone(),
            Some(t) => format!("{}{TOKEN_MARK}{t}", self.person),
        }
    }

    /// Whether two actors are the same person, whatever token either acted through.
    pub fn is_same_person(&self, other: &Actor) -> bool {
        self.person == other.person
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_compare_by_person() {
        let li = Actor::person("li", "archive_clerk", "10.0.0.1");
        let li_token = li.clone().via_token("sync");
        assert_eq!(li.name(), "li");
        assert_eq!(li_token.name(), "li/token:sync");
        assert_eq!(Actor::parse("li/token:sync").name(), "li/token:sync");
        assert!(Actor::parse("li/token:sync").is_same_person(&li));
        assert!(!Actor::parse("wang").is_same_person(&li));
    }
}
