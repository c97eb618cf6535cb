//! The typed values of a session row: its state, kind and trading category, and the rule for
//! codes that go into object keys. Stored as text; converted in `text_enum!` and nowhere else.

crate::text_enum! {
    /// Where a session is in its life. `recording` and `stopping` are live; `stopped` is sealed
    /// by its manifest; `destroyed` was lawfully destroyed (its chains and tombstones remain).
    pub enum SessionState as "state" {
        Recording = "recording",
        Stopping = "stopping",
        Stopped = "stopped",
        Failed = "failed",
        Destroyed = "destroyed",
    }
}

impl SessionState {
    /// Recorders may still be writing: no manifest yet.
    pub fn is_live(self) -> bool {
        matches!(self, SessionState::Recording | SessionState::Stopping)
    }

    /// Sealed by a signed manifest (whether or not its media has since been destroyed).
    pub fn is_sealed(self) -> bool {
        matches!(self, SessionState::Stopped | SessionState::Destroyed)
    }
}

crate::text_enum! {
    /// The business a session records (开标会, 评标会 …).
    pub enum SessionKind as "kind" {
        BidOpening = "bid_opening",
        /// 评标/评审: confidential.
        Evaluation = "evaluation",
        Negotiation = "negotiation",
        Auction = "auction",
        Other = "other",
    }
}

impl SessionKind {
    /// A session typed as an evaluation (评标/评审) is confidential wherever it is recorded;
    /// any other kind is confidential when its room's area is (`sessions::start` decides once,
    /// and the session row keeps it).
    pub fn is_confidential(self) -> bool {
        self == SessionKind::Evaluation
    }
}

crate::text_enum! {
    /// Trading category (交易类别): 工程建设, 政府采购, 土地矿业权, 国有产权, other. Scopes which
    /// regulators see a session and which retention rule governs it.
    pub enum Category as "category" {
        Construction = "construction",
        Procurement = "procurement",
        Land = "land",
        StateAssets = "state_assets",
        Other = "other",
    }
}

/// A code that goes into object keys: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn valid_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && code.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_unknown_names_are_explained() {
        for k in SessionKind::ALL {
            assert_eq!(k.as_str().parse::<SessionKind>().unwrap(), *k);
        }
        let e = "meeting".parse::<SessionKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "kind \"meeting\" is not valid, expected one of: bid_opening, evaluation, negotiation, auction, other"
        );
        assert!(SessionState::Stopping.is_live() && !SessionState::Stopped.is_live());
        assert!(valid_code("ZB-2025.01") && !valid_code("-x") && !valid_code("a/b"));
    }
}
