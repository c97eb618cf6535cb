//! Media timestamps from the camera's RTP clock, anchored to arrival.
//!
//! rtspsrc's jitterbuffer (slave mode) stamps each packet with its arrival time, skew-corrected
//! against the RTP clock. When delivery stalls for more than a second and then catches up in a
//! burst (a congested link, a loaded machine) it resynchronises twice: timestamps jump forward
//! by the stall, then back by as much once the backlog is drained. Nothing was lost, yet the
//! stream looks like a camera that restarted, and a recorder that trusts those timestamps cuts
//! a gap. The camera's RTP timestamps say when each frame was captured; they only need an
//! anchor on the server's running time, and a new anchor when the camera really restarts its
//! clock.
//!
//! [`RtpTimeline`] gives each packet `anchor + (rtp − anchor_rtp) / rate`, against its arrival
//! (the pipeline's running time when the jitterbuffer hands it on):
//! - anchored on the first packet's arrival;
//! - anchored again, never earlier than the last output, when the RTP clock jumps back by more
//!   than [`RESTART_BACK`] or ahead of arrival by more than [`RESTART_AHEAD`] (a camera that
//!   restarted its stream on the same connection);
//! - anchored again on arrival when packets resume after a silence longer than the RTP clock
//!   advanced by more than [`LATE_LIMIT`], and keep arriving that late for [`LATE_HOLD`]: the
//!   camera paused without its RTP clock moving, so its media has a hole as long as the pause.
//!   A backlog delivered in a burst after a stall catches up (its lateness falls by half) well
//!   within [`LATE_HOLD`] and keeps its times; so does a machine falling behind under load,
//!   whose packets come late but without a silence;
//! - slewed toward arrival by at most [`SLEW_PER_WINDOW`] per [`WINDOW`] when the least lateness
//!   over a whole window drifts (a camera clock that runs fast or slow against the server's), so
//!   hours of recording keep the two clocks together without a step.
//!
//! Nothing else moves the anchor: a timeline pulled faster would squeeze the media's durations,
//! and a camera clock read from it would seem to jump. (A first packet that came late leaves
//! every timestamp that much after arrival, which the slew takes back slowly.)
//!
//! The output never goes back by more than the RTP clock does (B-frames).
//!
//! [`Timelines`] keeps a graph's timelines together: the camera's sender reports say which RTP
//! time of each stream was captured at which moment of its clock, and every other stream is
//! shifted (a quarter step at a time) until the same moment falls on the same running time as
//! on the picture's timeline: sound stays in step with the picture, as rtpbin's lip-sync kept
//! it. A stream kept in step follows the picture's anchoring instead of its own arrival.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// RTP time going back further than this is a restart, not B-frame reordering.
pub const RESTART_BACK: i64 = 1_000_000_000;
/// RTP time advancing this much further than arrival time is a restart, not a loss (a loss
/// advances both clocks alike).
pub const RESTART_AHEAD: i64 = 3_000_000_000;
/// The span over which the least lateness is taken.
pub const WINDOW: u64 = 10_000_000_000;
/// The most the anchor moves per window: 2 ms in 10 s (200 ppm), beyond any camera crystal's
/// drift and far below a frame's duration, so the output never steps.
pub const SLEW_PER_WINDOW: i64 = 2_000_000;
/// Lateness tolerated before slewing: the jitter of a healthy network.
const SLEW_DEADBAND: i64 = 20_000_000;
/// A silence this much longer than the RTP clock advanced, not caught up within [`LATE_HOLD`],
/// is a sender that paused.
pub const LATE_LIMIT: i64 = 1_000_000_000;
pub const LATE_HOLD: u64 = 1_000_000_000;
/// A difference between two streams' sender-report offsets below this is left alone; above
/// [`SYNC_MAX`] the camera's reports are not believed (a stream on another clock).
const SYNC_DEADBAND: i64 = 5_000_000;
const SYNC_MAX: i64 = 5_000_000_000;

#[derive(Debug, Clone)]
pub struct RtpTimeline {
    clock_rate: u32,
    anchor: Option<Anchor>,
    /// Extended RTP time of the last packet.
    last_ext: i64,
    /// The last output and the arrival it came with, for the restart checks.
    last_out: u64,
    last_arrival: u64,
    window_start: u64,
    /// Least (arrival − output) over the current window.
    window_min_lateness: i64,
    /// After a silence: since when (arrival), and how late the first packet after it was.
    late_since: Option<(u64, i64)>,
    /// What is still to be added to the anchor to keep this stream in step with the picture.
    pending_shift: i64,
    /// Kept in step with another stream by sender reports: no anchoring of its own on arrival.
    follows: bool,
    /// How often the camera's RTP clock restarted.
    pub restarts: u32,
    /// How often the camera resumed after a pause.
    pub resumes: u32,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    running_ns: i64,
    ext_rtp: i64,
}

impl RtpTimeline {
    pub fn new(clock_rate: u32) -> RtpTimeline {
        RtpTimeline {
            clock_rate: clock_rate.max(1),
            anchor: None,
            last_ext: 0,
            last_out: 0,
            last_arrival: 0,
            window_start: 0,
            window_min_lateness: i64::MAX,
            late_since: None,
            pending_shift: 0,
            follows: false,
            restarts: 0,
            resumes: 0,
        }
    }

    fn rtp_ns(&self, ticks: i64) -> i64 {
        (ticks as i128 * 1_000_000_000 / self.clock_rate as i128) as i64
    }

    fn extend(&self, rtp: u32) -> i64 {
        self.last_ext + (rtp.wrapping_sub(self.last_ext as u32) as i32) as i64
    }

    /// The running time (ns) of a packet with RTP timestamp `rtp` that arrived at `arrival`
    /// (running time, ns).
    pub fn stamp(&mut self, rtp: u32, arrival: u64) -> u64 {
        let Some(mut anchor) = self.anchor else {
            return self.anchor_at(arrival, rtp as i64, arrival);
        };
        let ext = self.extend(rtp);
        let rtp_step = self.rtp_ns(ext - self.last_ext);
        let arrival_step = (arrival as i64 - self.last_arrival as i64).max(0);
        if rtp_step < -RESTART_BACK || rtp_step - arrival_step > RESTART_AHEAD {
            self.restarts += 1;
            // Never before what was already sent: the stream stays monotonic.
            return self.anchor_at(arrival.max(self.last_out + 1), ext, arrival);
        }
        let mut out = anchor.running_ns + self.rtp_ns(ext - anchor.ext_rtp);
        let lateness = arrival as i64 - out;
        if arrival_step - rtp_step > LATE_LIMIT && lateness > LATE_LIMIT {
            self.late_since = Some((arrival, lateness));
        }
        if let Some((since, late)) = self.late_since {
            if lateness < late / 2 {
                // Caught up: a stall delivered in a burst.
                self.late_since = None;
            } else if arrival - since >= LATE_HOLD {
                self.resumes += 1;
                return self.anchor_at(arrival.max(self.last_out + 1), ext, arrival);
            }
        }
        if self.pending_shift != 0 && rtp_step > 0 {
            // Never back by more than a quarter of the step: the output stays monotonic.
            let d = self.pending_shift.signum() * self.pending_shift.abs().min(rtp_step / 4);
            anchor.running_ns += d;
            out += d;
            self.pending_shift -= d;
            self.anchor = Some(anchor);
        } else if !self.follows {
            // A stream kept in step with the picture has its place set by the sender reports.
            self.observe(arrival, lateness);
        }
        let out = out.max(0) as u64;
        if rtp_step >= 0 {
            self.last_ext = ext;
            self.last_out = out;
        }
        self.last_arrival = self.last_arrival.max(arrival);
        out
    }

    /// Puts RTP time `ext_rtp` at `running_ns` from now on; returns that running time.
    fn anchor_at(&mut self, running_ns: u64, ext_rtp: i64, arrival: u64) -> u64 {
        self.anchor = Some(Anchor {
            running_ns: running_ns as i64,
            ext_rtp,
        });
        self.last_ext = ext_rtp;
        self.last_out = running_ns;
        self.last_arrival = self.last_arrival.max(arrival);
        self.window_start = arrival;
        self.window_min_lateness = i64::MAX;
        self.late_since = None;
        running_ns
    }

    /// Tracks the least lateness over a window and slews the anchor toward it at its end.
    fn observe(&mut self, arrival: u64, lateness: i64) {
        self.window_min_lateness = self.window_min_lateness.min(lateness);
        if arrival < self.window_start + WINDOW {
            return;
        }
        let least = self.window_min_lateness;
        if least.abs() > SLEW_DEADBAND
            && let Some(a) = self.anchor.as_mut()
        {
            a.running_ns += least.clamp(-SLEW_PER_WINDOW, SLEW_PER_WINDOW);
        }
        self.window_start = arrival;
        self.window_min_lateness = i64::MAX;
    }

    /// The running time (ns) this timeline gives RTP timestamp `rtp` (a sender report's), taken
    /// as the nearest extension of it to the last packet's.
    pub fn running_of(&self, rtp: u32) -> Option<i128> {
        let anchor = self.anchor?;
        let ext = self.extend(rtp);
        Some(anchor.running_ns as i128 + self.rtp_ns(ext - anchor.ext_rtp) as i128)
    }
}

/// The timelines of one graph by SSRC, so a sender report can be placed on the running time
/// its stream's media was given, and the streams kept in step with the picture.
#[derive(Debug, Default, Clone)]
pub struct Timelines(Arc<Mutex<Streams>>);

#[derive(Debug, Default)]
struct Streams {
    by_ssrc: HashMap<u32, Arc<Mutex<RtpTimeline>>>,
    /// The picture's stream: the one the others are kept in step with.
    picture: Option<u32>,
    /// Per stream, its latest sender report: RTP time and the camera time it was captured at.
    reports: HashMap<u32, (u32, i128)>,
}

impl Streams {
    /// Camera time minus running time, by `ssrc`'s latest sender report placed on its timeline
    /// as it is now (shifts already applied included).
    fn offset(&self, ssrc: u32) -> Option<i128> {
        let (rtp, camera_ns) = *self.reports.get(&ssrc)?;
        let t = self.by_ssrc.get(&ssrc)?.lock().expect("timeline lock");
        Some(camera_ns - t.running_of(rtp)?)
    }
}

impl Timelines {
    /// The timeline of `ssrc`, made on first use; the first video stream is the picture.
    pub fn of(&self, ssrc: u32, clock_rate: u32, video: bool) -> Arc<Mutex<RtpTimeline>> {
        let mut streams = self.0.lock().expect("timelines lock");
        if video && streams.picture.is_none() {
            streams.picture = Some(ssrc);
        }
        streams
            .by_ssrc
            .entry(ssrc)
            .or_insert_with(|| Arc::new(Mutex::new(RtpTimeline::new(clock_rate))))
            .clone()
    }

    /// The running time of `rtp` on `ssrc`'s timeline, once that stream has had a packet.
    #[cfg(test)]
    fn running_of(&self, ssrc: u32, rtp: u32) -> Option<i128> {
        let t = self
            .0
            .lock()
            .expect("timelines lock")
            .by_ssrc
            .get(&ssrc)?
            .clone();
        t.lock().expect("timeline lock").running_of(rtp)
    }

    /// Camera time minus running time, by the picture's latest sender report (whose timeline
    /// no sender report shifts), else by any stream's; `None` before the first report.
    pub fn camera_offset(&self) -> Option<i128> {
        let streams = self.0.lock().expect("timelines lock");
        let ssrc = streams
            .picture
            .filter(|p| streams.reports.contains_key(p))
            .or_else(|| streams.reports.keys().next().copied())?;
        streams.offset(ssrc)
    }

    /// A sender report of `ssrc`: RTP time `rtp` was captured at camera time `camera_ns`. Shifts
    /// the stream (or, for the picture, every other stream) so that the camera's moments fall
    /// on the same running time in all of them.
    pub fn sender_report(&self, ssrc: u32, rtp: u32, camera_ns: i128) {
        let mut streams = self.0.lock().expect("timelines lock");
        if !streams.by_ssrc.contains_key(&ssrc) {
            return;
        }
        streams.reports.insert(ssrc, (rtp, camera_ns));
        let Some(picture) = streams.picture else {
            return;
        };
        let Some(reference) = streams.offset(picture) else {
            return;
        };
        for &other in streams.reports.keys().filter(|s| **s != picture) {
            let (Some(off), Some(t)) = (streams.offset(other), streams.by_ssrc.get(&other)) else {
                continue;
            };
            // A later offset means this stream's moments fall earlier than the picture's.
            let shift = (off - reference) as i64;
            let mut t = t.lock().expect("timeline lock");
            if shift.abs() > SYNC_MAX {
                t.follows = false;
                t.pending_shift = 0;
                continue;
            }
            t.follows = true;
            t.pending_shift = if shift.abs() > SYNC_DEADBAND {
                tracing::debug!(
                    ssrc = other,
                    shift_ms = shift / 1_000_000,
                    "sender reports: stream shifted into step with the picture"
                );
                shift
            } else {
                0
            };
        }
    }
}

/// RTP timestamp and SSRC of an RTP packet, if it is one.
pub fn rtp_header(packet: &[u8]) -> Option<(u32, u32)> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let ts = u32::from_be_bytes(packet[4..8].try_into().ok()?);
    let ssrc = u32::from_be_bytes(packet[8..12].try_into().ok()?);
    Some((ts, ssrc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// 90 kHz video, 25 frames a second: 3600 ticks a frame.
    const FRAME: u32 = 3600;

    #[test]
    fn follows_the_rtp_clock_from_the_first_arrival() {
        let mut t = RtpTimeline::new(90_000);
        let base = u32::MAX - 2 * FRAME; // wraps after two frames
        for i in 0..10u32 {
            let out = t.stamp(
                base.wrapping_add(i * FRAME),
                5_000 * MS + i as u64 * 40 * MS + 3 * MS,
            );
            assert_eq!(out, 5_000 * MS + 3 * MS + i as u64 * 40 * MS, "frame {i}");
        }
    }

    #[test]
    fn a_stall_that_catches_up_keeps_the_timeline() {
        let mut t = RtpTimeline::new(90_000);
        let mut outs = Vec::new();
        for i in 0..500u64 {
            // Frames 100..160 (due from 6 s) are held back until 8.5 s and arrive together.
            let due = 2_000 * MS + i * 40 * MS;
            let arrival = match i {
                100..160 => due.max(8_500 * MS),
                _ => due,
            };
            outs.push(t.stamp(i as u32 * FRAME, arrival));
        }
        for (i, w) in outs.windows(2).enumerate() {
            assert_eq!(w[1] - w[0], 40 * MS, "step after frame {i}");
        }
        assert_eq!(t.restarts, 0);
    }

    #[test]
    fn a_loss_leaves_a_hole_as_long_as_it() {
        let mut t = RtpTimeline::new(90_000);
        let a = t.stamp(0, 1_000 * MS);
        // 10 s of packets never came.
        let b = t.stamp(250 * FRAME, 11_000 * MS);
        assert_eq!(b - a, 10_000 * MS);
        assert_eq!(t.restarts, 0);
    }

    #[test]
    fn a_camera_restart_is_anchored_again_and_stays_monotonic() {
        let mut t = RtpTimeline::new(90_000);
        for i in 0..50u32 {
            t.stamp(7_000_000 + i * FRAME, 1_000 * MS + i as u64 * 40 * MS);
        }
        // The camera restarts its RTP clock from zero; packets keep arriving.
        let back = t.stamp(0, 3_000 * MS);
        assert_eq!(back, 3_000 * MS);
        assert_eq!(t.stamp(FRAME, 3_040 * MS), 3_040 * MS);
        // And jumps ahead by an hour without time passing.
        let ahead = t.stamp(FRAME + 90_000 * 3600, 3_080 * MS);
        assert_eq!(ahead, 3_080 * MS);
        assert_eq!(t.restarts, 2);
    }

    #[test]
    fn a_camera_that_pauses_leaves_a_hole_as_long_as_the_pause() {
        let mut t = RtpTimeline::new(90_000);
        for i in 0..50u32 {
            t.stamp(i * FRAME, 1_000 * MS + i as u64 * 40 * MS);
        }
        // 5 s without packets, then the camera goes on where its RTP clock stopped.
        let mut outs = Vec::new();
        for i in 50..150u32 {
            outs.push(t.stamp(i * FRAME, 8_000 * MS + (i - 50) as u64 * 40 * MS));
        }
        // For LATE_HOLD it keeps the camera's times; then it is back on arrival for good.
        let resumed = (LATE_HOLD / (40 * MS)) as usize;
        assert_eq!(outs[0], 1_000 * MS + 50 * 40 * MS);
        assert_eq!(outs[resumed], 8_000 * MS + resumed as u64 * 40 * MS);
        assert_eq!(outs[99], 8_000 * MS + 99 * 40 * MS);
        assert!(outs.windows(2).all(|w| w[1] > w[0]));
        assert_eq!((t.resumes, t.restarts), (1, 0));
    }

    #[test]
    fn a_machine_falling_behind_keeps_the_cameras_times() {
        let mut t = RtpTimeline::new(90_000);
        // Packets come without a silence but ever later: 1.5 s behind after 100 frames, for
        // 3 s, then it catches up. No anchoring again, no step.
        let mut last = 0;
        for i in 0..300u64 {
            let due = 1_000 * MS + i * 40 * MS;
            let behind = match i {
                0..100 => i * 15 * MS,
                100..175 => 1_500 * MS,
                _ => 1_500 * MS - ((i - 175) * 30 * MS).min(1_500 * MS),
            };
            let out = t.stamp(i as u32 * FRAME, due + behind);
            assert_eq!(out, 1_000 * MS + i * 40 * MS, "frame {i}");
            assert!(i == 0 || out > last);
            last = out;
        }
        assert_eq!((t.restarts, t.resumes), (0, 0));
    }

    #[test]
    fn a_first_packet_that_came_late_leaves_a_constant_offset() {
        let mut t = RtpTimeline::new(90_000);
        // The first frame waited 600 ms somewhere; the rest come on time. The timeline keeps
        // its steps (no squeezed durations); the slew takes the offset back 2 ms per 10 s.
        let first = t.stamp(0, 1_600 * MS);
        for i in 1..100u32 {
            let out = t.stamp(i * FRAME, 1_000 * MS + i as u64 * 40 * MS);
            assert_eq!(out - first, i as u64 * 40 * MS, "frame {i}");
        }
    }

    #[test]
    fn b_frames_going_back_a_little_are_not_a_restart() {
        let mut t = RtpTimeline::new(90_000);
        t.stamp(10 * FRAME, 1_000 * MS);
        let b = t.stamp(8 * FRAME, 1_040 * MS);
        assert_eq!(b, 1_000 * MS - 80 * MS);
        assert_eq!(t.stamp(11 * FRAME, 1_080 * MS), 1_040 * MS);
        assert_eq!(t.restarts, 0);
    }

    #[test]
    fn a_camera_clock_running_fast_is_slewed_without_steps() {
        let mut t = RtpTimeline::new(90_000);
        // The camera's clock runs 100 ppm fast: its RTP says 40.004 ms per 40 ms of ours.
        let mut last = 0;
        for i in 0..(25 * 3600u64) {
            let rtp = (i as f64 * 3600.0 * 1.0001) as u64 as u32;
            let arrival = 1_000 * MS + i * 40 * MS + 5 * MS;
            let out = t.stamp(rtp, arrival);
            if i > 0 {
                let step = out as i64 - last as i64;
                assert!(
                    (step - 40_004_000).abs() < 2_100_000,
                    "frame {i}: step {step}"
                );
            }
            last = out;
        }
        // An hour later output and arrival agree within the deadband and a window's slew.
        let lateness = (1_000 * MS + (25 * 3600 - 1) * 40 * MS + 5 * MS) as i64 - last as i64;
        assert!(
            lateness.abs() < SLEW_DEADBAND + SLEW_PER_WINDOW + 5_000_000,
            "{lateness}"
        );
    }

    #[test]
    fn a_sender_report_is_placed_on_the_same_timeline() {
        let timelines = Timelines::default();
        let t = timelines.of(42, 90_000, true);
        t.lock().unwrap().stamp(1_000, 2_000 * MS);
        assert_eq!(
            timelines.running_of(42, 1_000 + 90_000),
            Some((3_000 * MS) as i128)
        );
        assert_eq!(timelines.running_of(7, 1_000), None);
    }

    #[test]
    fn sound_is_kept_in_step_with_the_picture_by_sender_reports() {
        let timelines = Timelines::default();
        let video = timelines.of(1, 90_000, true);
        let audio = timelines.of(2, 48_000, false);
        // Both captured from camera time 100 s; the picture arrives 300 ms after capture, the
        // sound 20 ms after: anchored on arrival, sound runs 280 ms early against the picture.
        video.lock().unwrap().stamp(0, 1_300 * MS);
        audio.lock().unwrap().stamp(0, 1_020 * MS);
        let camera = |s: i128| (100 + s) * 1_000_000_000;
        timelines.sender_report(1, 90_000, camera(1));
        timelines.sender_report(2, 48_000, camera(1));
        // Audio frames of 20 ms (960 ticks) for 3 s: shifted at most 5 ms a frame, never back.
        let mut last = 0;
        for i in 1..150u32 {
            let out = audio
                .lock()
                .unwrap()
                .stamp(i * 960, 1_020 * MS + i as u64 * 20 * MS);
            assert!(out > last, "frame {i}: {last} → {out}");
            last = out;
            video
                .lock()
                .unwrap()
                .stamp(i * 1_800, 1_300 * MS + i as u64 * 20 * MS);
        }
        // The same camera moment, 2 s in, is at the same running time in both; and stays so
        // when the same reports come again (the shift is not applied twice).
        for again in [false, true] {
            if again {
                timelines.sender_report(1, 90_000, camera(1));
                for i in 150..300u32 {
                    audio
                        .lock()
                        .unwrap()
                        .stamp(i * 960, 1_020 * MS + i as u64 * 20 * MS);
                }
            }
            let v = timelines.running_of(1, 2 * 90_000).unwrap();
            let a = timelines.running_of(2, 2 * 48_000).unwrap();
            assert!(
                (v - a).abs() <= SYNC_DEADBAND as i128,
                "picture {v}, sound {a}"
            );
        }
    }

    #[test]
    fn rtp_headers_are_read_and_others_refused() {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[4..8].copy_from_slice(&1234u32.to_be_bytes());
        p[8..12].copy_from_slice(&42u32.to_be_bytes());
        assert_eq!(rtp_header(&p), Some((1234, 42)));
        assert_eq!(rtp_header(&p[..11]), None);
        p[0] = 0x40;
        assert_eq!(rtp_header(&p), None);
    }
}
