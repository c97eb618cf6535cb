//! Completeness of a recording: every moment of [session start, stop] is inside a media or gap
//! entry, up to a small tolerance between one entry's end and the next one's start. The chain
//! writer enforces it as entries are appended; the verifiers check it here. Pure functions only;
//! the rule is specified in docs/chain-format.md ("Coverage").

use serde::Serialize;

use crate::ledger::chain::{Entry, EntryKind};

/// The largest tolerance a configuration may set, and what a verifier assumes for a chain
/// whose manifest does not name one.
pub const MAX_TOLERANCE_US: i64 = 500_000;
/// One frame period at 5 fps plus network jitter: what the writer allows by default between
/// one entry's end and the next one's start.
pub const DEFAULT_TOLERANCE_US: i64 = 250_000;
/// The `detail` marker of an entry that starts before the previous one ended.
pub const OVERLAP_MARK: &str = "overlaps the previous entry by";

/// A stretch of the session that no entry covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uncovered {
    pub from_us: i64,
    pub to_us: i64,
    /// The entry after which the hole opens (the genesis entry for a late first entry).
    pub after_seq: i64,
}

impl Uncovered {
    pub fn seconds(&self) -> f64 {
        (self.to_us - self.from_us) as f64 / 1e6
    }
}

/// An entry that starts earlier than the previous one ended by more than the tolerance without
/// saying so in its `detail`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UndeclaredOverlap {
    pub seq: i64,
    pub overlap_us: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coverage {
    pub uncovered: Vec<Uncovered>,
    pub undeclared_overlaps: Vec<UndeclaredOverlap>,
    /// Sum of media entries' durations, and of gap entries' durations (µs).
    pub media_us: i64,
    pub gap_us: i64,
    /// Where the entries reach: the latest end of any media or gap entry.
    pub end_us: i64,
}

impl Coverage {
    pub fn complete(&self) -> bool {
        self.uncovered.is_empty() && self.undeclared_overlaps.is_empty()
    }
}

/// Checks one chain (entries in `seq` order, genesis first). `stop_us` is the session's stop
/// time; `None` for a live session, whose tail is still being written and is not checked.
/// Tombstones are ignored: a lawfully destroyed segment still accounts for its time.
pub fn check(entries: &[Entry], stop_us: Option<i64>, tolerance_us: i64) -> Coverage {
    let mut c = Coverage::default();
    let Some(genesis) = entries.iter().find(|e| e.kind == EntryKind::Genesis) else {
        return c;
    };
    let mut end = genesis.wall_start_us;
    let mut last_seq = genesis.seq;
    for e in entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Media | EntryKind::Gap))
    {
        if e.wall_start_us > end + tolerance_us {
            c.uncovered.push(Uncovered {
                from_us: end,
                to_us: e.wall_start_us,
                after_seq: last_seq,
            });
        } else if e.wall_start_us < end - tolerance_us && !e.detail.contains(OVERLAP_MARK) {
            c.undeclared_overlaps.push(UndeclaredOverlap {
                seq: e.seq,
                overlap_us: end - e.wall_start_us,
            });
        }
        match e.kind {
            EntryKind::Media => c.media_us += e.duration_us,
            _ => c.gap_us += e.duration_us,
        }
        end = end.max(e.wall_start_us + e.duration_us.max(0));
        last_seq = e.seq;
    }
    if let Some(stop) = stop_us
        && stop > end + tolerance_us
    {
        c.uncovered.push(Uncovered {
            from_us: end,
            to_us: stop,
            after_seq: last_seq,
        });
    }
    c.end_us = end;
    c
}

/// The verdicts of every verifier, with their exit codes. UNTRUSTED KEY is the offline
/// verifier's alone: the server's own verification knows its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Every entry links and every object matches; every moment is covered.
    Intact,
    /// Nothing was altered, but part of the session is in no entry.
    Incomplete,
    /// An entry, object, manifest or signature does not match.
    Tampered,
    /// Nothing was found altered, but it is signed by a key the verifier was not given.
    #[serde(rename = "UNTRUSTED_KEY")]
    UntrustedKey,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Intact => "INTACT",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::Tampered => "TAMPERED",
            Verdict::UntrustedKey => "UNTRUSTED KEY",
        }
    }

    /// Exit code of `witness verify`: 0 intact, 1 tampered, 3 incomplete, 4 untrusted key (2 is
    /// a usage error or a refused package).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Intact => 0,
            Verdict::Tampered => 1,
            Verdict::Incomplete => 3,
            Verdict::UntrustedKey => 4,
        }
    }

    /// The verdict once the signing key is judged: TAMPERED stays TAMPERED whatever the key;
    /// otherwise a key the verifier does not trust outranks incompleteness (an unknown signer's
    /// account of what is missing proves nothing either).
    pub fn trusting(self, key_trusted: bool) -> Verdict {
        match self {
            Verdict::Tampered => Verdict::Tampered,
            _ if !key_trusted => Verdict::UntrustedKey,
            v => v,
        }
    }

    /// Tampering outranks incompleteness: a tampered chain's coverage proves nothing.
    pub fn of(tampered: bool, incomplete: bool) -> Verdict {
        if tampered {
            Verdict::Tampered
        } else if incomplete {
            Verdict::Incomplete
        } else {
            Verdict::Intact
        }
    }
}

/// One line per uncovered stretch, for people: `source cam1: 20:40:51.042 → 20:41:03.337 (12.3 s)`.
pub fn describe(source: &str, u: &Uncovered) -> String {
    format!(
        "source {source}: not covered from {} to {} ({:.1} s, after seq {})",
        crate::time::rfc3339(u.from_us),
        crate::time::rfc3339(u.to_us),
        u.seconds(),
        u.after_seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: EntryKind, start: i64, dur: i64, detail: &str) -> Entry {
        Entry {
            recording_id: "r".into(),
            seq,
            kind,
            object_key: String::new(),
            wall_start_us: start,
            duration_us: dur,
            bytes: 0,
            sha256: String::new(),
            clock: "server".into(),
            detail: detail.into(),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn tiled_chain_is_complete() {
        let e = vec![
            entry(0, EntryKind::Genesis, S, 0, ""),
            entry(1, EntryKind::Gap, S, 1_500_000, "connecting"),
            entry(2, EntryKind::Media, S + 1_500_000, 2_000_000, ""),
            // 40 ms late: one frame, within tolerance.
            entry(3, EntryKind::Media, S + 3_540_000, 2_000_000, ""),
        ];
        let c = check(&e, Some(S + 5_600_000), DEFAULT_TOLERANCE_US);
        assert!(c.complete(), "{c:?}");
        assert_eq!(c.media_us, 4_000_000);
        assert_eq!(c.gap_us, 1_500_000);
    }

    #[test]
    fn holes_at_start_middle_and_tail_are_found() {
        let e = vec![
            entry(0, EntryKind::Genesis, S, 0, ""),
            entry(1, EntryKind::Media, S + 2_000_000, 2_000_000, ""),
            entry(2, EntryKind::Media, S + 16_300_000, 2_000_000, ""),
        ];
        let c = check(&e, Some(S + 20_000_000), DEFAULT_TOLERANCE_US);
        assert_eq!(
            c.uncovered,
            vec![
                Uncovered {
                    from_us: S,
                    to_us: S + 2_000_000,
                    after_seq: 0
                },
                Uncovered {
                    from_us: S + 4_000_000,
                    to_us: S + 16_300_000,
                    after_seq: 1
                },
                Uncovered {
                    from_us: S + 18_300_000,
                    to_us: S + 20_000_000,
                    after_seq: 2
                },
            ]
        );
        assert!((c.uncovered[1].seconds() - 12.3).abs() < 1e-9);
        // A live session's tail is not judged.
        assert_eq!(check(&e, None, DEFAULT_TOLERANCE_US).uncovered.len(), 2);
    }

    #[test]
    fn overlaps_must_be_declared() {
        let e = vec![
            entry(0, EntryKind::Genesis, S, 0, ""),
            entry(1, EntryKind::Media, S, 2_000_000, ""),
            entry(2, EntryKind::Media, S + 1_000_000, 2_000_000, ""),
            entry(
                3,
                EntryKind::Media,
                S + 2_000_000,
                2_000_000,
                "overlaps the previous entry by 1.000 s",
            ),
        ];
        let c = check(&e, Some(S + 4_000_000), DEFAULT_TOLERANCE_US);
        assert_eq!(
            c.undeclared_overlaps,
            vec![UndeclaredOverlap {
                seq: 2,
                overlap_us: 1_000_000
            }]
        );
        assert!(c.uncovered.is_empty());
    }

    #[test]
    fn verdicts_rank_tampering_first() {
        assert_eq!(Verdict::of(true, true), Verdict::Tampered);
        assert_eq!(Verdict::of(false, true), Verdict::Incomplete);
        assert_eq!(Verdict::of(false, false).exit_code(), 0);
        assert_eq!(Verdict::Incomplete.exit_code(), 3);
        assert_eq!(Verdict::Tampered.trusting(false), Verdict::Tampered);
        assert_eq!(Verdict::Incomplete.trusting(false), Verdict::UntrustedKey);
        assert_eq!(Verdict::Intact.trusting(false).exit_code(), 4);
        assert_eq!(Verdict::Incomplete.trusting(true), Verdict::Incomplete);
    }
}
