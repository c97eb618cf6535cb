//! The typed values of a session row: its state, kind and trading category, and the rule for
//! codes that go into object keys. Stored as text; states and kinds converted in `text_enum!`,
//! the category (an id of the trading catalogue, data) by its own newtype below.

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

/// Trading category (交易类别): an id of the trading catalogue (`catalogue/categories.toml`:
/// construction, procurement, land, state_assets, other and the others a centre lists). Scopes
/// which regulators see a session and which retention rule governs it. Parsed (`FromStr`,
/// serde) only if the process's catalogue lists it, the error naming the known ids; read back
/// from the database as stored, so that a row outlives its category's removal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(String);

impl Category {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The valid ids, comma-separated, for messages.
    pub fn names() -> String {
        crate::catalogue::current().category_ids()
    }
}

impl std::str::FromStr for Category {
    type Err = crate::db::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let catalogue = crate::catalogue::current();
        match catalogue.category(s) {
            Some(_) => Ok(Category(s.to_string())),
            None => Err(crate::db::UnknownValue {
                what: "category",
                value: s.to_string(),
                expected: catalogue.category_ids(),
            }),
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Category {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl sqlx::Type<sqlx::Any> for Category {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <str as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for Category {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Category {
    fn decode(
        value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        // As stored: validated when it came in.
        Ok(Category(<String as sqlx::Decode<'r, sqlx::Any>>::decode(
            value,
        )?))
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
        assert_eq!("land".parse::<Category>().unwrap().as_str(), "land");
        let e = "lands".parse::<Category>().unwrap_err().to_string();
        assert!(
            e.starts_with("category \"lands\" is not valid, expected one of: construction, land, "),
            "{e}"
        );
        assert!(valid_code("ZB-2025.01") && !valid_code("-x") && !valid_code("a/b"));
    }
}
