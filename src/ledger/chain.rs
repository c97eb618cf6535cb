//! The hash chain of one recording: canonical encoding of an entry, its hash, and the link
//! check. Pure functions only; no I/O, no SQL. The format is specified in docs/chain-format.md.

use sha2::{Digest, Sha256};

/// The `prev` of a genesis entry.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MAGIC: &str = "witness-chain/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// seq 0: binds the chain to project, session, room, source and start time.
    Genesis,
    /// A stored segment.
    Media,
    /// A time with no media (camera down, server down), recorded rather than hidden.
    Gap,
    /// Lawful destruction: names the media entries whose objects were destroyed, the
    /// destruction request that authorised it, and (in `sha256`) a digest of exactly what went.
    Tombstone,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Genesis => "genesis",
            EntryKind::Media => "media",
            EntryKind::Gap => "gap",
            EntryKind::Tombstone => "tombstone",
        }
    }
    pub fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "genesis" => Some(EntryKind::Genesis),
            "media" => Some(EntryKind::Media),
            "gap" => Some(EntryKind::Gap),
            "tombstone" => Some(EntryKind::Tombstone),
            _ => None,
        }
    }
}

/// Where a wall-clock start came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClockSource {
    /// The camera's RTCP sender reports (NTP time of the camera).
    #[serde(rename = "rtcp-ntp")]
    RtcpNtp,
    /// This server's clock.
    #[serde(rename = "server")]
    Server,
}

impl ClockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::RtcpNtp => "rtcp-ntp",
            ClockSource::Server => "server",
        }
    }
}

/// One chain entry, everything that its hash covers plus the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub recording_id: String,
    pub seq: i64,
    pub kind: EntryKind,
    /// Object key of the segment; empty for genesis and gap.
    pub object_key: String,
    pub wall_start_us: i64,
    pub duration_us: i64,
    pub bytes: i64,
    /// SHA-256 of the stored bytes; empty for genesis and gap.
    pub sha256: String,
    /// `rtcp-ntp` or `server`.
    pub clock: String,
    /// Genesis: the binding fields; gap: the reason. Never contains a newline.
    pub detail: String,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// The fields of a genesis entry's `detail`, in this order.
pub fn genesis_detail(
    project_code: &str,
    session_id: &str,
    session_code: &str,
    room_id: &str,
    source: &str,
) -> String {
    format!(
        "project={project_code};session={session_id};session_code={session_code};room={room_id};source={source}"
    )
}

/// Free text made safe for a single-line field.
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl Entry {
    /// The exact bytes that are hashed: one `name: value` line per field, fixed order, UTF-8.
    pub fn canonical(&self) -> String {
        format!(
            "{MAGIC}\nrecording: {}\nseq: {}\nkind: {}\nobject: {}\nstart_us: {}\nduration_us: {}\nbytes: {}\nsha256: {}\nclock: {}\ndetail: {}\nprev: {}\n",
            self.recording_id,
            self.seq,
            self.kind.as_str(),
            self.object_key,
            self.wall_start_us,
            self.duration_us,
            self.bytes,
            self.sha256,
            self.clock,
            self.detail,
            self.prev_hash,
        )
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// Fills `entry_hash` from the other fields.
    pub fn seal(mut self) -> Entry {
        self.entry_hash = self.compute_hash();
        self
    }
}

/// The head a session manifest binds: the chain's last entry that is not a tombstone
/// (tombstones are appended after the manifest was signed).
pub fn signed_head(entries: &[Entry]) -> Option<&Entry> {
    entries
        .iter()
        .rev()
        .find(|e| e.kind != EntryKind::Tombstone)
}

/// A break in a chain, naming the first entry where it shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("seq {seq}: entry hash does not match its fields (entry edited)")]
    HashMismatch { seq: i64 },
    #[error("seq {seq}: prev hash does not match the entry before it (entry removed or reordered)")]
    BrokenLink { seq: i64 },
    #[error("seq {seq}: expected seq {expected} (entry missing or duplicated)")]
    SeqGap { seq: i64, expected: i64 },
    #[error("seq {seq}: the chain must start with a genesis entry")]
    NoGenesis { seq: i64 },
    #[error("seq {seq}: genesis binds {found:?}, expected {expected:?}")]
    GenesisBinding {
        seq: i64,
        found: String,
        expected: String,
    },
    #[error("seq {seq}: belongs to recording {found}, expected {expected}")]
    WrongRecording {
        seq: i64,
        found: String,
        expected: String,
    },
}

/// Checks hashes and links of `entries` (sorted by seq) and that genesis binds `expected_genesis`.
pub fn check_links(
    recording_id: &str,
    expected_genesis: &str,
    entries: &[Entry],
) -> Result<(), LinkError> {
    let mut prev = ZERO_HASH.to_string();
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64;
        if e.recording_id != recording_id {
            return Err(LinkError::WrongRecording {
                seq: e.seq,
                found: e.recording_id.clone(),
                expected: recording_id.into(),
            });
        }
        if e.seq != expected {
            return Err(LinkError::SeqGap {
                seq: e.seq,
                expected,
            });
        }
        if e.compute_hash() != e.entry_hash {
            return Err(LinkError::HashMismatch { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Err(LinkError::BrokenLink { seq: e.seq });
        }
        if i == 0 {
            if e.kind != EntryKind::Genesis {
                return Err(LinkError::NoGenesis { seq: e.seq });
            }
            if e.detail != expected_genesis {
                return Err(LinkError::GenesisBinding {
                    seq: e.seq,
                    found: e.detail.clone(),
                    expected: expected_genesis.into(),
                });
            }
        }
        prev = e.entry_hash.clone();
    }
    Ok(())
}

/// What a tombstone says was destroyed, and what warrants it: `destroyed: 3-7,9; request: …;
/// rule: …; decision: {sha256 of the signed decision record}; approved by: …`
/// (`ledger::decision`).
pub fn tombstone_detail(
    seqs: &[i64],
    request: &str,
    rule: &str,
    decision: &str,
    approvers: &[String],
) -> String {
    format!(
        "destroyed: {}; request: {request}; rule: {rule}; decision: {decision}; approved by: {}",
        seq_ranges(seqs),
        one_line(&approvers.join(", "))
    )
}

/// The digest a tombstone carries: SHA-256 over `seq sha256` lines of the destroyed entries.
pub fn tombstone_digest(destroyed: &[&Entry]) -> String {
    let mut h = Sha256::new();
    for e in destroyed {
        h.update(format!("{} {}\n", e.seq, e.sha256).as_bytes());
    }
    hex::encode(h.finalize())
}

/// `1-3,5` for [1, 2, 3, 5].
fn seq_ranges(seqs: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut end = start;
        while i + 1 < seqs.len() && seqs[i + 1] == end + 1 {
            i += 1;
            end = seqs[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The seqs a tombstone's detail names, or None when it does not parse or names more than a
/// chain whose last seq is `last_seq` can hold (so a hostile `1-9999999,1-9999999,…` costs
/// nothing): every seq lies in `1..=last_seq`, each at most once.
pub fn tombstone_seqs(detail: &str, last_seq: i64) -> Option<Vec<i64>> {
    let list = detail.strip_prefix("destroyed: ")?.split(';').next()?;
    let mut seqs = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b): (i64, i64) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a = part.parse().ok()?;
                (a, a)
            }
        };
        // Ranges come ascending and apart, as `seq_ranges` writes them.
        let after = seqs.last().copied().unwrap_or(0);
        if a <= after || b < a || b > last_seq {
            return None;
        }
        seqs.extend(a..=b);
    }
    Some(seqs)
}

/// The media entries that tombstones lawfully account for, checked: each tombstone must name
/// only earlier media entries and carry the digest of exactly those. Returns the destroyed seqs,
/// or the first problem. Linear in the chain: a tombstone can name no more than the chain holds.
pub fn destroyed_entries(entries: &[Entry]) -> Result<std::collections::BTreeSet<i64>, String> {
    let by_seq: std::collections::HashMap<i64, &Entry> =
        entries.iter().map(|e| (e.seq, e)).collect();
    let mut destroyed = std::collections::BTreeSet::new();
    for t in entries.iter().filter(|e| e.kind == EntryKind::Tombstone) {
        // The chain's own length bounds it too: a hostile seq of 10¹² names nothing more.
        let last = (t.seq - 1).min(entries.len() as i64);
        let seqs = tombstone_seqs(&t.detail, last)
            .ok_or_else(|| format!("seq {}: tombstone does not say what it destroyed", t.seq))?;
        let named: Vec<&Entry> = seqs.iter().filter_map(|s| by_seq.get(s).copied()).collect();
        if named.len() != seqs.len() || named.iter().any(|e| e.kind != EntryKind::Media) {
            return Err(format!(
                "seq {}: tombstone names entries that are not earlier media entries",
                t.seq
            ));
        }
        if tombstone_digest(&named) != t.sha256 {
            return Err(format!(
                "seq {}: tombstone digest does not match the entries it names",
                t.seq
            ));
        }
        destroyed.extend(seqs);
    }
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let prev = out
                .last()
                .map_or(ZERO_HASH.to_string(), |e| e.entry_hash.clone());
            out.push(
                Entry {
                    recording_id: "r1".into(),
                    seq: i as i64,
                    kind: if i == 0 {
                        EntryKind::Genesis
                    } else {
                        EntryKind::Media
                    },
                    object_key: if i == 0 {
                        String::new()
                    } else {
                        format!("p/s/cam1/{i:08}.ts")
                    },
                    wall_start_us: 1_700_000_000_000_000 + i as i64 * 2_000_000,
                    duration_us: 2_000_000,
                    bytes: 1000,
                    sha256: "ab".repeat(32),
                    clock: "server".into(),
                    detail: if i == 0 { "G".into() } else { String::new() },
                    prev_hash: prev,
                    entry_hash: String::new(),
                }
                .seal(),
            );
        }
        out
    }

    #[test]
    fn canonical_encoding_is_stable() {
        // Pinned: a change here breaks every chain ever written.
        let e = &chain(1)[0];
        assert_eq!(
            e.canonical(),
            "witness-chain/1\nrecording: r1\nseq: 0\nkind: genesis\nobject: \nstart_us: 1700000000000000\nduration_us: 2000000\nbytes: 1000\nsha256: abababababababababababababababababababababababababababababababab\nclock: server\ndetail: G\nprev: 0000000000000000000000000000000000000000000000000000000000000000\n"
        );
        assert_eq!(e.entry_hash.len(), 64);
    }

    #[test]
    fn intact_chain_passes() {
        assert_eq!(check_links("r1", "G", &chain(5)), Ok(()));
    }

    #[test]
    fn each_break_is_named() {
        let mut c = chain(5);
        c[3].bytes += 1;
        assert_eq!(
            check_links("r1", "G", &c),
            Err(LinkError::HashMismatch { seq: 3 })
        );

        let mut c = chain(5);
        c[3].bytes += 1;
        c[3] = c[3].clone().seal();
        assert_eq!(
            check_links("r1", "G", &c),
            Err(LinkError::BrokenLink { seq: 4 })
        );

        let mut c = chain(5);
        c.remove(2);
        assert_eq!(
            check_links("r1", "G", &c),
            Err(LinkError::SeqGap {
                seq: 3,
                expected: 2
            })
        );

        let c = chain(3);
        assert!(matches!(
            check_links("r1", "other", &c),
            Err(LinkError::GenesisBinding { seq: 0, .. })
        ));
        assert!(matches!(
            check_links("r2", "G", &c),
            Err(LinkError::WrongRecording { seq: 0, .. })
        ));
    }

    #[test]
    fn tombstones_name_what_went_and_bind_it() {
        assert_eq!(seq_ranges(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        let d = tombstone_detail(
            &[1, 2, 3, 5],
            "req",
            "default",
            "ab",
            &["a".into(), "b".into()],
        );
        assert_eq!(tombstone_seqs(&d, 9), Some(vec![1, 2, 3, 5]));
        assert_eq!(tombstone_seqs(&d, 4), None, "beyond the chain");
        assert_eq!(tombstone_seqs("destroyed: 9-1; x", 20), None);
        assert_eq!(tombstone_seqs("destroyed: 0-3; x", 20), None, "genesis");
        assert_eq!(tombstone_seqs("something else", 20), None);
        // The range bomb: repeated, overlapping or out of order, refused at once.
        let bomb = format!("destroyed: {}; x", vec!["1-9999999"; 1000].join(","));
        assert_eq!(tombstone_seqs(&bomb, i64::MAX), None);
        assert_eq!(tombstone_seqs("destroyed: 1-3,2-5; x", 20), None);
        assert_eq!(tombstone_seqs("destroyed: 5,3; x", 20), None);
    }
}
