//! The camera's own wall clock, learned from its RTCP sender reports: each jitterbuffer
//! announces (`handle-sync`) the SR's NTP time together with the pipeline running time of the
//! same RTP timestamp, which gives camera time = running time + offset. A recording graph that
//! stamps media itself ([`crate::capture::rtp_timeline`]) places the report's RTP timestamp on
//! its own timeline instead, so the offset holds for the running times its segments carry.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use crate::capture::rtp_timeline::Timelines;

/// Seconds between the NTP (1900) and Unix (1970) epochs.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// What the latest sender report says, placed on the running time when asked.
#[derive(Debug, Default, Clone)]
pub struct CameraClock {
    latest: Arc<Mutex<Option<Report>>>,
    timelines: Option<Timelines>,
}

/// Camera wall time (Unix ns) minus running time (ns), by the jitterbuffer's mapping.
#[derive(Debug, Clone, Copy)]
struct Report(i128);

impl CameraClock {
    /// Starts learning from `rtspsrc`'s sender reports; call before the element plays.
    pub fn watch(rtspsrc: &gst::Element) -> CameraClock {
        CameraClock::watch_on(rtspsrc, None)
    }

    /// As [`CameraClock::watch`], for media stamped on `timelines`.
    pub fn watch_on(rtspsrc: &gst::Element, timelines: Option<Timelines>) -> CameraClock {
        let clock = CameraClock {
            latest: Arc::default(),
            timelines: timelines.clone(),
        };
        // The streams are kept in step by these reports too (`Timelines::sender_report`).
        let c = clock.latest.clone();
        rtspsrc.connect("new-manager", false, move |args| {
            let manager = args[1].get::<gst::Element>().ok()?;
            let c = c.clone();
            let timelines = timelines.clone();
            manager.connect("new-jitterbuffer", false, move |args| {
                let jb = args[1].get::<gst::Element>().ok()?;
                let c = c.clone();
                let timelines = timelines.clone();
                jb.connect("handle-sync", false, move |args| {
                    if let Ok(s) = args[1].get::<gst::Structure>()
                        && let Some(report) = sender_report(&s, timelines.as_ref())
                    {
                        *c.lock().expect("camera clock lock") = Some(report);
                    }
                    None
                });
                None
            });
            None
        });
        clock
    }

    /// A clock read from the sender reports that `timelines` are told of (by a graph that
    /// reads RTCP itself).
    pub fn on_timelines(timelines: Timelines) -> CameraClock {
        CameraClock {
            latest: Arc::default(),
            timelines: Some(timelines),
        }
    }

    /// The camera's wall time (Unix ns) of a running time, once a sender report was seen.
    pub fn wall_ns(&self, running_ns: u64) -> Option<i128> {
        if let Some(t) = &self.timelines {
            return t.camera_offset().map(|o| running_ns as i128 + o);
        }
        let Report(offset) = (*self.latest.lock().expect("camera clock lock"))?;
        Some(running_ns as i128 + offset)
    }
}

fn sender_report(s: &gst::StructureRef, timelines: Option<&Timelines>) -> Option<Report> {
    let base_rtptime = s.get::<u64>("base-rtptime").ok()?;
    let base_time = s.get::<u64>("base-time").ok()?;
    let clock_rate = s.get::<u32>("clock-rate").ok()? as i128;
    let sr_rtptime = s.get::<u64>("sr-ext-rtptime").ok()?;
    let sr = s.get::<gst::Buffer>("sr-buffer").ok()?;
    let map = sr.map_readable().ok()?;
    // RTCP SR: V/P/RC, PT=200, length, SSRC, NTP seconds, NTP fraction, RTP timestamp …
    if map.len() < 20 || map[1] != 200 || clock_rate == 0 {
        return None;
    }
    let ntp_s = u32::from_be_bytes(map[8..12].try_into().ok()?) as u64;
    let ntp_frac = u32::from_be_bytes(map[12..16].try_into().ok()?) as u64;
    let unix_ns = ((ntp_s.checked_sub(NTP_UNIX_OFFSET_S)?) as i128) * 1_000_000_000
        + ((ntp_frac as i128 * 1_000_000_000) >> 32);
    if let Some(t) = timelines {
        let ssrc = u32::from_be_bytes(map[4..8].try_into().ok()?);
        let rtp = u32::from_be_bytes(map[16..20].try_into().ok()?);
        // Kept by the timelines, read from them as they are when asked.
        t.sender_report(ssrc, rtp, unix_ns);
        return None;
    }
    let sr_running = base_time as i128
        + (sr_rtptime as i128 - base_rtptime as i128) * 1_000_000_000 / clock_rate;
    Some(Report(unix_ns - sr_running))
}
