//! An MPEG-TS writer for access units already parsed (H.264/H.265 byte-stream with parameter
//! sets before each keyframe, AAC in ADTS, Opus): PAT and PMT at the start of each file, one
//! PES per access unit, PCR on the first packet of each PES of the PCR stream, stuffing in the
//! adaptation field. No GStreamer: bytes in, bytes out.
//!
//! Why our own: GStreamer's `mpegtsmux` is an aggregator with a thread of its own that costs
//! about a third of a recorded stream's CPU (docs/performance.md, the stage table); packetising
//! is a few copies per 188 bytes. Timestamps are the running time on a 90 kHz clock plus a
//! constant, so consecutive files continue one another.

use std::io::{self, Write};

/// Elementary stream kinds the writer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
    /// AAC with ADTS headers.
    Aac,
    Opus {
        channels: u8,
    },
}

impl Codec {
    fn stream_type(self) -> u8 {
        match self {
            Codec::H264 => 0x1b,
            Codec::H265 => 0x24,
            Codec::Aac => 0x0f,
            Codec::Opus { .. } => 0x06,
        }
    }

    fn stream_id(self) -> u8 {
        match self {
            Codec::H264 | Codec::H265 => 0xe0,
            Codec::Aac => 0xc0,
            Codec::Opus { .. } => 0xbd,
        }
    }

    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265)
    }
}

const PACKET: usize = 188;
const PMT_PID: u16 = 0x1000;
const FIRST_ES_PID: u16 = 0x100;
/// Added to every timestamp, so a decoding time a little before the presentation time of the
/// first frame is never negative.
const TS_OFFSET_90K: u64 = 900_000;
/// PCR runs this far ahead of the decoding time of the frame that carries it.
const PCR_LEAD_90K: u64 = 9_000;
const WRAP_33: u64 = 1 << 33;

/// 90 kHz ticks of a running time in nanoseconds, offset, on 33 bits.
pub fn ticks(running_ns: u64) -> u64 {
    ((running_ns as u128 * 9 / 100_000) as u64 + TS_OFFSET_90K) % WRAP_33
}

struct Stream {
    codec: Codec,
    pid: u16,
    cc: u8,
}

/// Writes one MPEG-TS file (one program) to `out`.
pub struct TsWriter<W: Write> {
    out: W,
    streams: Vec<Stream>,
    pcr_stream: usize,
    pat_cc: u8,
    pmt_cc: u8,
    /// One packet being assembled, then written.
    packet: [u8; PACKET],
}

impl<W: Write> TsWriter<W> {
    /// A writer of `codecs` (in PID order); the first video stream, else the first stream,
    /// carries the PCR. Writes PAT and PMT at once.
    pub fn new(out: W, codecs: &[Codec]) -> io::Result<TsWriter<W>> {
        let streams: Vec<Stream> = codecs
            .iter()
            .enumerate()
            .map(|(i, &codec)| Stream {
                codec,
                pid: FIRST_ES_PID + i as u16,
                cc: 0,
            })
            .collect();
        let pcr_stream = streams.iter().position(|s| s.codec.is_video()).unwrap_or(0);
        let mut w = TsWriter {
            out,
            streams,
            pcr_stream,
            pat_cc: 0,
            pmt_cc: 0,
            packet: [0xff; PACKET],
        };
        w.write_tables()?;
        Ok(w)
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// PAT and PMT, as at the start of a file.
    pub fn write_tables(&mut self) -> io::Result<()> {
        // PAT: program 1 → PMT_PID.
        let mut pat = vec![0x00, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00];
        pat.extend_from_slice(&[0x00, 0x01, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        let cc = self.pat_cc;
        self.pat_cc = (cc + 1) & 0x0f;
        self.write_section(0, cc, pat)?;

        let pcr_pid = self.streams[self.pcr_stream].pid;
        let mut pmt = vec![0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00];
        pmt.extend_from_slice(&[0xe0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xf0, 0x00]);
        for s in &self.streams {
            let descriptors: Vec<u8> = match s.codec {
                // Registration 'Opus' and the DVB extension descriptor with the channel count
                // (ETSI TS 102 366 style, as mpegtsmux and ffmpeg write it).
                Codec::Opus { channels } => {
                    vec![0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, channels]
                }
                _ => vec![],
            };
            pmt.push(s.codec.stream_type());
            pmt.extend_from_slice(&[0xe0 | (s.pid >> 8) as u8, s.pid as u8]);
            pmt.extend_from_slice(&[
                0xf0 | (descriptors.len() >> 8) as u8,
                descriptors.len() as u8,
            ]);
            pmt.extend_from_slice(&descriptors);
        }
        let cc = self.pmt_cc;
        self.pmt_cc = (cc + 1) & 0x0f;
        self.write_section(PMT_PID, cc, pmt)
    }

    /// A PSI section (without its length and CRC, filled here) in one packet.
    fn write_section(&mut self, pid: u16, cc: u8, mut section: Vec<u8>) -> io::Result<()> {
        let len = section.len() - 3 + 4;
        section[1] = 0xb0 | (len >> 8) as u8;
        section[2] = len as u8;
        let crc = crc32_mpeg(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let p = &mut self.packet;
        p.fill(0xff);
        p[0] = 0x47;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | cc;
        p[4] = 0; // pointer field
        p[5..5 + section.len()].copy_from_slice(&section);
        self.out.write_all(&self.packet)
    }

    /// One access unit of stream `index`: presentation and decoding time in 90 kHz ticks
    /// ([`ticks`]), whether a decoder can start from it, its bytes as parsed.
    pub fn write_frame(
        &mut self,
        index: usize,
        pts: u64,
        dts: u64,
        keyframe: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let codec = self.streams[index].codec;
        let pcr = (index == self.pcr_stream).then(|| dts.wrapping_sub(PCR_LEAD_90K) % WRAP_33);
        // PES header: start code, stream id, length, flags, timestamps.
        let mut header = Vec::with_capacity(32);
        header.extend_from_slice(&[0, 0, 1, codec.stream_id(), 0, 0, 0x84]);
        let with_dts = dts != pts;
        header.push(if with_dts { 0xc0 } else { 0x80 });
        header.push(if with_dts { 10 } else { 5 });
        push_timestamp(&mut header, if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            push_timestamp(&mut header, 0x1, dts);
        }
        let mut opus_prefix = Vec::new();
        if let Codec::Opus { .. } = codec {
            // Opus access unit: control header 0x7fe0 then the size in 255-steps.
            opus_prefix.extend_from_slice(&[0x7f, 0xe0]);
            let mut n = data.len();
            while n >= 255 {
                opus_prefix.push(0xff);
                n -= 255;
            }
            opus_prefix.push(n as u8);
        }
        let pes_len = header.len() - 6 + opus_prefix.len() + data.len();
        // Video PES may be longer than 65535 bytes: length 0 (unbounded) is allowed for video.
        let field = if pes_len > 0xffff && codec.is_video() {
            0
        } else {
            pes_len.min(0xffff)
        };
        header[4] = (field >> 8) as u8;
        header[5] = field as u8;

        let mut parts: [&[u8]; 3] = [&header, &opus_prefix, data];
        let total = header.len() + opus_prefix.len() + data.len();
        let mut written = 0usize;
        let mut first = true;
        while written < total {
            let s = &mut self.streams[index];
            let cc = s.cc;
            s.cc = (cc + 1) & 0x0f;
            let pid = s.pid;
            // Adaptation field body (after its length byte): flags, then the PCR. Random access
            // and PCR on the first packet of the PES only.
            let mut af = [0u8; 7];
            let mut af_body = 0usize;
            if first && (keyframe || pcr.is_some()) {
                af[0] = if keyframe { 0x40 } else { 0 };
                af_body = 1;
                if let Some(base) = pcr {
                    af[0] |= 0x10;
                    af[1..7].copy_from_slice(&[
                        (base >> 25) as u8,
                        (base >> 17) as u8,
                        (base >> 9) as u8,
                        (base >> 1) as u8,
                        ((base & 1) << 7) as u8 | 0x7e,
                        0,
                    ]);
                    af_body = 7;
                }
            }
            let mut has_af = af_body > 0;
            let mut room = PACKET - 4 - if has_af { 1 + af_body } else { 0 };
            let left = total - written;
            // The last packet of a PES is stuffed through the adaptation field.
            let mut stuffing = 0usize;
            if left < room {
                let need = room - left;
                if has_af {
                    stuffing = need;
                } else if need == 1 {
                    has_af = true; // a length byte of zero
                } else {
                    has_af = true;
                    af[0] = 0;
                    af_body = 1;
                    stuffing = need - 2;
                }
                room = left;
            }
            let p = &mut self.packet;
            p[0] = 0x47;
            p[1] = (if first { 0x40 } else { 0 }) | (pid >> 8) as u8;
            p[2] = pid as u8;
            let payload_at = if has_af {
                p[3] = 0x30 | cc;
                p[4] = (af_body + stuffing) as u8;
                p[5..5 + af_body].copy_from_slice(&af[..af_body]);
                p[5 + af_body..5 + af_body + stuffing].fill(0xff);
                5 + af_body + stuffing
            } else {
                p[3] = 0x10 | cc;
                4
            };
            debug_assert_eq!(payload_at + room, PACKET);
            copy_parts(&mut parts, &mut p[payload_at..payload_at + room]);
            written += room;
            self.out.write_all(&self.packet)?;
            first = false;
        }
        Ok(())
    }
}

/// Fills `into` from the front of `parts`, consuming them.
fn copy_parts(parts: &mut [&[u8]; 3], into: &mut [u8]) {
    let mut at = 0;
    for part in parts.iter_mut() {
        if at == into.len() {
            break;
        }
        let n = part.len().min(into.len() - at);
        into[at..at + n].copy_from_slice(&part[..n]);
        *part = &part[n..];
        at += n;
    }
}

/// A PES timestamp: 4-bit prefix, 33 bits with marker bits.
fn push_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts % WRAP_33;
    out.push((prefix << 4) | (((ts >> 30) & 0x07) as u8) << 1 | 1);
    out.push((ts >> 22) as u8);
    out.push((((ts >> 15) & 0x7f) as u8) << 1 | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts & 0x7f) as u8) << 1 | 1);
}

/// CRC-32/MPEG-2 of a PSI section.
fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_mpeg2s() {
        // The check value of CRC-32/MPEG-2.
        assert_eq!(crc32_mpeg(b"123456789"), 0x0376_e6e7);
    }

    /// Every packet 188 bytes with a sync byte; continuity counters step per PID; each PES's
    /// payload comes back whole when the packets of its PID are joined.
    #[test]
    fn packets_carry_each_frame_whole() {
        let mut w = TsWriter::new(Vec::new(), &[Codec::H264, Codec::Aac]).unwrap();
        let sizes = [
            1usize, 150, 170, 171, 172, 173, 174, 175, 176, 183, 184, 185, 400, 70_000,
        ];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        for (i, f) in frames.iter().enumerate() {
            let t = ticks(i as u64 * 40_000_000);
            w.write_frame(i % 2, t + 3600, t, i % 5 == 0, f).unwrap();
        }
        let out = w.into_inner();
        assert_eq!(out.len() % PACKET, 0);
        let mut cc: std::collections::HashMap<u16, u8> = Default::default();
        let mut pes: std::collections::HashMap<u16, Vec<Vec<u8>>> = Default::default();
        for p in out.chunks(PACKET) {
            assert_eq!(p[0], 0x47);
            let pid = ((p[1] as u16 & 0x1f) << 8) | p[2] as u16;
            let start = p[1] & 0x40 != 0;
            let control = (p[3] >> 4) & 0x3;
            if let Some(prev) = cc.insert(pid, p[3] & 0x0f) {
                assert_eq!(p[3] & 0x0f, (prev + 1) & 0x0f, "pid {pid:#x}");
            }
            let payload_at = if control == 0x3 { 5 + p[4] as usize } else { 4 };
            assert!(payload_at <= PACKET);
            if pid >= FIRST_ES_PID {
                let list = pes.entry(pid).or_default();
                if start {
                    list.push(Vec::new());
                }
                list.last_mut().unwrap().extend_from_slice(&p[payload_at..]);
            }
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let (v, a) = (&pes[&FIRST_ES_PID], &pes[&(FIRST_ES_PID + 1)]);
        for i in 0..frames.len() {
            let p = if i % 2 == 0 { &v[i / 2] } else { &a[i / 2] };
            assert_eq!(&p[..3], &[0, 0, 1]);
            let header_len = 9 + p[8] as usize;
            got.push(p[header_len..].to_vec());
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn timestamps_round_trip_through_the_pes_encoding() {
        for ts in [0u64, 1, 900_000, WRAP_33 - 1, 0x1_2345_6789 % WRAP_33] {
            let mut v = Vec::new();
            push_timestamp(&mut v, 2, ts);
            let back = (((v[0] >> 1) & 0x07) as u64) << 30
                | (v[1] as u64) << 22
                | ((v[2] >> 1) as u64) << 15
                | (v[3] as u64) << 7
                | (v[4] >> 1) as u64;
            assert_eq!(back, ts);
        }
    }
}
