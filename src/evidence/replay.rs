//! Replay: the HLS playlist of one recording, built from its chain (program date-time from the
//! recorded wall clock, a discontinuity where a gap is). The segments themselves are served byte
//! for byte from the store by `http/replay.rs`.

use crate::ledger::chain::{Entry, EntryKind};
use crate::ledger::late::LATE_MARK;
use crate::time::rfc3339;

/// The HLS media playlist of one recording. `live` playlists have no end tag. `segment_query`
/// (e.g. `?reason=…`) is appended to each segment address: players resolve segment URIs against
/// the playlist's address without its query, and confidential segments need the reason too.
pub fn hls_playlist(entries: &[Entry], live: bool, segment_query: &str) -> String {
    let media: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Media)
        .collect();
    let target = media
        .iter()
        .map(|e| (e.duration_us as f64 / 1e6).ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        if live { "EVENT" } else { "VOD" }
    );
    let mut gap_pending = false;
    let destroyed = crate::ledger::chain::destroyed_entries(entries).unwrap_or_default();
    for e in entries {
        match e.kind {
            EntryKind::Genesis | EntryKind::Tombstone => {}
            // Lawfully destroyed media are no longer there to play: a discontinuity.
            EntryKind::Media if destroyed.contains(&e.seq) => gap_pending = true,
            EntryKind::Gap => {
                out.push_str(&format!(
                    "# gap seq {} from {} for {:.3} s: {}\n",
                    e.seq,
                    rfc3339(e.wall_start_us),
                    e.duration_us as f64 / 1e6,
                    e.detail
                ));
                gap_pending = true;
            }
            EntryKind::Media => {
                // Late evidence (from a node that lost the lease) goes back in time: a
                // discontinuity before it and after it.
                let late = e.detail.starts_with(LATE_MARK);
                if gap_pending || late {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                gap_pending = late;
                // Served as `{seq:08}.{ext}` whatever the object's key (late ones differ).
                let ext = e.object_key.rsplit('.').next().unwrap_or_default();
                let name = format!("{:08}.{ext}", e.seq);
                out.push_str(&format!(
                    "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\nsegments/{name}{segment_query}\n",
                    rfc3339(e.wall_start_us),
                    e.duration_us as f64 / 1e6
                ));
            }
        }
    }
    if !live {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: EntryKind, start_s: i64, dur_ms: i64) -> Entry {
        Entry {
            recording_id: "r".into(),
            seq,
            kind,
            object_key: if kind == EntryKind::Media {
                format!("p/s/cam1/{seq:08}.ts")
            } else {
                String::new()
            },
            wall_start_us: 1_764_000_000_000_000 + start_s * 1_000_000,
            duration_us: dur_ms * 1000,
            bytes: 1,
            sha256: String::new(),
            clock: "server".into(),
            detail: if kind == EntryKind::Gap {
                "camera dropped".into()
            } else {
                String::new()
            },
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    #[test]
    fn playlist_marks_gaps_and_wall_clock() {
        let entries = vec![
            entry(0, EntryKind::Genesis, 0, 0),
            entry(1, EntryKind::Media, 0, 2000),
            entry(2, EntryKind::Media, 2, 2040),
            entry(3, EntryKind::Gap, 4, 5000),
            entry(4, EntryKind::Media, 9, 1960),
        ];
        let p = hls_playlist(&entries, false, "");
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:00.000Z\n#EXTINF:2.000,\nsegments/00000001.ts\n\
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:02.000Z\n#EXTINF:2.040,\nsegments/00000002.ts\n\
# gap seq 3 from 2025-11-24T16:00:04.000Z for 5.000 s: camera dropped\n#EXT-X-DISCONTINUITY\n\
#EXT-X-PROGRAM-DATE-TIME:2025-11-24T16:00:09.000Z\n#EXTINF:1.960,\nsegments/00000004.ts\n#EXT-X-ENDLIST\n"
        );
        let live = hls_playlist(&entries, true, "?reason=a%20b");
        assert!(live.contains("PLAYLIST-TYPE:EVENT") && !live.contains("ENDLIST"));
        assert!(
            live.contains("segments/00000004.ts?reason=a%20b\n"),
            "{live}"
        );
    }
}
