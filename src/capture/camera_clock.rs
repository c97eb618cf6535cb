//! The camera's own wall clock, learned from its RTCP sender reports: each jitterbuffer
//! announces (`handle-sync`) the SR's NTP time together with the pipeline running time of the
//! same RTP timestamp, which gives camera time = running time + offset.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// Seconds between the NTP (1900) and Unix (1970) epochs.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// What the latest sender report says: camera wall time (Unix ns) minus running time (ns).
#[derive(Debug, Default, Clone)]
pub struct CameraClock(Arc<Mutex<Option<i128>>>);

impl CameraClock {
    /// Starts learning from `rtspsrc`'s sender reports; call before the element plays.
    pub fn watch(rtspsrc: &gst::Element) -> CameraClock {
        let clock = CameraClock::default();
        let c = clock.clone();
        rtspsrc.connect("new-manager", false, move |args| {
            let manager = args[1].get::<gst::Element>().ok()?;
            let c = c.clone();
            manager.connect("new-jitterbuffer", false, move |args| {
                let jb = args[1].get::<gst::Element>().ok()?;
                let c = c.clone();
                jb.connect("handle-sync", false, move |args| {
                    if let Ok(s) = args[1].get::<gst::Structure>()
                        && let Some(offset) = sync_offset(&s)
                    {
                        *c.0.lock().expect("camera clock lock") = Some(offset);
                    }
                    None
                });
                None
            });
            None
        });
        clock
    }

    /// The camera's wall time (Unix ns) of a running time, once a sender report was seen.
    pub fn wall_ns(&self, running_ns: u64) -> Option<i128> {
        self.0
            .lock()
            .expect("camera clock lock")
            .map(|offset| running_ns as i128 + offset)
    }
}

fn sync_offset(s: &gst::StructureRef) -> Option<i128> {
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
    let sr_running = base_time as i128
        + (sr_rtptime as i128 - base_rtptime as i128) * 1_000_000_000 / clock_rate;
    Some(unix_ns - sr_running)
}
