//! Wall-clock time as Witness keeps it: Unix microseconds (UTC) in storage and chains, RFC 3339
//! in JSON and on input. Every conversion between the two is here.

/// Unix microseconds now: the one time unit stored in SQL.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Unix microseconds as RFC 3339 (UTC, milliseconds) for JSON.
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An RFC 3339 time as Unix microseconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_micros())
}

/// An optional RFC 3339 time given in field `field`, as Unix microseconds, or a message naming
/// the field and the value.
pub fn parse_wall_clock(field: &str, value: Option<&str>) -> Result<Option<i64>, String> {
    value
        .map(|s| {
            parse_rfc3339(s).map_err(|e| format!("{field} {s:?}: expected RFC 3339 time: {e}"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_bad_input() {
        let t = parse_wall_clock("from", Some("2026-11-30T08:00:00.250+08:00")).unwrap();
        assert_eq!(rfc3339(t.unwrap()), "2026-11-30T00:00:00.250Z");
        assert_eq!(parse_wall_clock("to", None), Ok(None));
        let e = parse_wall_clock("to", Some("yesterday")).unwrap_err();
        assert!(
            e.starts_with("to \"yesterday\": expected RFC 3339 time"),
            "{e}"
        );
    }
}
