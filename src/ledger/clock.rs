//! Which clock a segment's start is told by: the camera's (from its RTCP sender reports, as
//! `capture::camera_clock` learns it) within a bound of the server's, else the server's, saying
//! why (`stamp`); and the server's own synchronisation state for the manifest.

/// The start time a segment enters the chain with, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub start_us: i64,
    pub clock: crate::ledger::chain::ClockSource,
    /// For the entry's detail: the other clock's offset, or why the camera's was not used.
    pub note: Option<String>,
    /// The camera's clock was known but not used (beyond the bound).
    pub corrected: bool,
}

/// Chooses between the camera's clock and this server's for a segment start: the camera's when
/// it has one within `max_offset_us` of the server's, else the server's, saying why.
pub fn stamp(server_us: i64, camera_us: Option<i64>, max_offset_us: i64) -> Stamp {
    use crate::ledger::chain::ClockSource;
    let Some(camera) = camera_us else {
        return Stamp {
            start_us: server_us,
            clock: ClockSource::Server,
            note: None,
            corrected: false,
        };
    };
    let offset = camera - server_us;
    if offset.abs() <= max_offset_us {
        Stamp {
            start_us: camera,
            clock: ClockSource::RtcpNtp,
            note: Some(format!(
                "camera clock {:+.3} s from server",
                offset as f64 / 1e6
            )),
            corrected: false,
        }
    } else {
        Stamp {
            start_us: server_us,
            clock: ClockSource::Server,
            note: Some(format!(
                "camera clock {:+.3} s from server (camera said {}), beyond the {:.1} s bound: server clock used",
                offset as f64 / 1e6,
                crate::time::rfc3339(camera),
                max_offset_us as f64 / 1e6
            )),
            corrected: true,
        }
    }
}

/// Whether this server's own clock is synchronised, as the system says (systemd-timesyncd via
/// `timedatectl`, or chrony via `chronyc`), recorded in the signed manifest at stop.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerClockSync {
    /// `true`/`false` when a tool answered, `null` when none could be asked.
    pub synchronized: Option<bool>,
    /// `timedatectl`, `chronyc` or `none`.
    pub source: String,
    /// What the tool printed (first lines), or why nothing could be read.
    pub detail: String,
}

/// Asks the system (blocking; a few hundred ms at most) whether the clock is synchronised.
pub fn server_clock_sync() -> ServerClockSync {
    let run = |cmd: &str, args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if let Some(text) = run("chronyc", &["-n", "tracking"]) {
        let synced = text
            .lines()
            .find(|l| l.starts_with("Leap status"))
            .map(|l| l.contains("Normal"));
        return ServerClockSync {
            synchronized: synced,
            source: "chronyc".into(),
            detail: one_line_excerpt(&text),
        };
    }
    if let Some(text) = run(
        "timedatectl",
        &["show", "-p", "NTPSynchronized", "-p", "NTP"],
    ) {
        let synced = text
            .lines()
            .find_map(|l| l.strip_prefix("NTPSynchronized="))
            .map(|v| v == "yes");
        return ServerClockSync {
            synchronized: synced,
            source: "timedatectl".into(),
            detail: one_line_excerpt(&text),
        };
    }
    ServerClockSync {
        synchronized: None,
        source: "none".into(),
        detail: "neither chronyc nor timedatectl answered: synchronisation unknown".into(),
    }
}

fn one_line_excerpt(text: &str) -> String {
    text.lines()
        .take(12)
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::ClockSource;

    #[test]
    fn camera_clock_within_bound_is_kept_with_its_offset() {
        let s = stamp(1_000_000_000, Some(999_800_000), 2_000_000);
        assert_eq!(s.start_us, 999_800_000);
        assert_eq!(s.clock, ClockSource::RtcpNtp);
        assert_eq!(s.note.as_deref(), Some("camera clock -0.200 s from server"));
        assert!(!s.corrected);
    }

    #[test]
    fn camera_clock_in_2611_is_replaced_by_the_server_clock() {
        // 2611-05-10, as one VLC server's sender reports said.
        let s = stamp(
            1_795_000_000_000_000,
            Some(20_239_113_600_000_000),
            2_000_000,
        );
        assert_eq!(s.start_us, 1_795_000_000_000_000);
        assert_eq!(s.clock, ClockSource::Server);
        assert!(s.corrected);
        assert!(s.note.unwrap().contains("2611-"));
    }

    #[test]
    fn no_sender_report_means_server_clock() {
        let s = stamp(5, None, 2_000_000);
        assert_eq!(
            (s.start_us, s.clock, s.corrected),
            (5, ClockSource::Server, false)
        );
    }
}
