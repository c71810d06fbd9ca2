//! PES packets (ISO/IEC 13818-1 2.4.3.6) and their packetisation into transport packets
//! (2.4.3.2), including the adaptation field (2.4.3.4) that carries the PCR, the
//! random_access_indicator and the stuffing that ends every PES exactly on a packet boundary.
//!
//! Does not: know about codecs. The muxer decides what goes into the payload and streams it
//! through [`PesWriter::write`] piece by piece, so no intermediate buffer is needed.
//!
//! Invariants: a `PesWriter` is created with the exact PES length and emits exactly
//! `ceil`-many 188-byte packets for it; only the last packet is stuffed, and stuffing is always
//! in the adaptation field (payload bytes are never padded).

use bytes::{BufMut, BytesMut};

use super::{PACKET_SIZE, SYNC_BYTE};

/// Bytes of a TS packet after the 4-byte header.
const PACKET_BODY: usize = PACKET_SIZE - 4;

/// stream_id for the first MPEG video stream (13818-1 table 2-22), used for H.264.
pub(super) const STREAM_ID_VIDEO: u8 = 0xE0;
/// stream_id for the first MPEG audio stream, used for AAC.
pub(super) const STREAM_ID_AUDIO: u8 = 0xC0;

/// The optional PES header fields we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PesHeader {
    /// `STREAM_ID_VIDEO` or `STREAM_ID_AUDIO`.
    pub(super) stream_id: u8,
    /// PTS, already wrapped to 33 bits.
    pub(super) pts: u64,
    /// DTS (33 bits), only when it differs from the PTS (13818-1 2.4.3.7 allows omitting it).
    pub(super) dts: Option<u64>,
}

impl PesHeader {
    /// Serialises the header for a PES whose elementary-stream payload is `payload_len` bytes.
    /// Returns the bytes in a stack buffer and the used length.
    pub(super) fn encode(&self, payload_len: usize) -> ([u8; 19], usize) {
        let mut b = [0u8; 19];
        let header_data_len = if self.dts.is_some() { 10 } else { 5 };
        b[..4].copy_from_slice(&[0, 0, 1, self.stream_id]);
        // PES_packet_length counts the bytes after itself. A value of 0 (unbounded) is only
        // allowed for video in transport streams (2.4.3.7); the muxer caps audio so it fits.
        let after_len = 3 + header_data_len + payload_len;
        let pes_len = u16::try_from(after_len).unwrap_or(0);
        b[4..6].copy_from_slice(&pes_len.to_be_bytes());
        // '10' marker, not scrambled, priority 0, data_alignment_indicator = 1: the payload
        // starts with an AUD start code or an ADTS syncword (2.4.3.7).
        b[6] = 0x84;
        b[7] = if self.dts.is_some() { 0xC0 } else { 0x80 }; // PTS_DTS_flags
        b[8] = header_data_len as u8;
        match self.dts {
            Some(dts) => {
                encode_timestamp(0b0011, self.pts, &mut b[9..14]);
                encode_timestamp(0b0001, dts, &mut b[14..19]);
            }
            None => encode_timestamp(0b0010, self.pts, &mut b[9..14]),
        }
        (b, 9 + header_data_len)
    }
}

/// PTS/DTS field layout of 13818-1 2.4.3.7: 4-bit prefix, then 3 + 15 + 15 bits, each group
/// followed by a marker bit.
fn encode_timestamp(prefix: u8, ts: u64, b: &mut [u8]) {
    b[0] = (prefix << 4) | ((((ts >> 30) & 0x07) as u8) << 1) | 1;
    b[1] = (ts >> 22) as u8;
    b[2] = ((((ts >> 15) & 0x7F) as u8) << 1) | 1;
    b[3] = (ts >> 7) as u8;
    b[4] = (((ts & 0x7F) as u8) << 1) | 1;
}

/// PCR field (2.4.3.5): 33-bit base, 6 reserved bits, 9-bit extension (always 0: our clock is
/// the 90 kHz media clock, the 27 MHz remainder is unknown and irrelevant).
fn encode_pcr(base: u64, b: &mut [u8]) {
    b[0] = (base >> 25) as u8;
    b[1] = (base >> 17) as u8;
    b[2] = (base >> 9) as u8;
    b[3] = (base >> 1) as u8;
    b[4] = (((base & 1) as u8) << 7) | 0x7E;
    b[5] = 0;
}

/// Adaptation-field flags (2.4.3.4).
const AF_RANDOM_ACCESS: u8 = 0x40;
const AF_PCR: u8 = 0x10;

/// Streams one PES packet into 188-byte transport packets.
#[derive(Debug)]
pub(super) struct PesWriter<'a> {
    out: &'a mut BytesMut,
    pid: u16,
    cc: &'a mut u8,
    /// PES bytes (header + payload) not yet written.
    remaining: usize,
    /// Payload bytes that still fit in the current packet.
    room: usize,
    /// Whether the first packet (PUSI, PCR, RAI) is still to be started.
    first: bool,
    pcr: Option<u64>,
    random_access: bool,
}

impl<'a> PesWriter<'a> {
    /// Starts a PES of `total_len` bytes (PES header + payload) on `pid`. The first packet
    /// carries `pcr` (33-bit base) and the random_access_indicator if asked.
    pub(super) fn new(
        out: &'a mut BytesMut,
        pid: u16,
        cc: &'a mut u8,
        total_len: usize,
        pcr: Option<u64>,
        random_access: bool,
    ) -> Self {
        // Reserve once for all packets, so appending never reallocates midway.
        let packets = total_len.div_ceil(PACKET_BODY - 8).max(1);
        out.reserve(packets * PACKET_SIZE);
        PesWriter {
            out,
            pid,
            cc,
            remaining: total_len,
            room: 0,
            first: true,
            pcr,
            random_access,
        }
    }

    /// Appends PES bytes, opening new transport packets as needed.
    pub(super) fn write(&mut self, mut data: &[u8]) {
        debug_assert!(data.len() <= self.remaining, "PES longer than announced");
        while !data.is_empty() {
            if self.room == 0 {
                self.start_packet();
            }
            let n = self.room.min(data.len());
            self.out.put_slice(&data[..n]);
            data = &data[n..];
            self.room -= n;
            self.remaining -= n;
        }
    }

    /// Checks (in debug builds) that exactly the announced number of bytes was written.
    pub(super) fn finish(self) {
        debug_assert_eq!(self.remaining, 0, "PES shorter than announced");
        debug_assert_eq!(self.room, 0);
    }

    /// Writes a packet header and adaptation field, sized so that the packet ends exactly at
    /// the end of the PES if this is its last packet.
    fn start_packet(&mut self) {
        let first = std::mem::take(&mut self.first);
        let mut flags = 0u8;
        let mut pcr = None;
        if first {
            if self.random_access {
                flags |= AF_RANDOM_ACCESS;
            }
            if let Some(p) = self.pcr {
                flags |= AF_PCR;
                pcr = Some(p);
            }
        }
        // Adaptation field bytes needed for the flags: length byte + flags byte + PCR.
        let af_min = if flags != 0 {
            2 + if pcr.is_some() { 6 } else { 0 }
        } else {
            0
        };
        let capacity = PACKET_BODY - af_min;
        let (af_len, room) = if self.remaining < capacity {
            // Last packet: grow the adaptation field so the payload ends the packet.
            (PACKET_BODY - self.remaining, self.remaining)
        } else {
            (af_min, capacity)
        };

        self.out.put_u8(SYNC_BYTE);
        self.out
            .put_u8(if first { 0x40 } else { 0 } | (self.pid >> 8) as u8);
        self.out.put_u8(self.pid as u8);
        let afc = if af_len > 0 { 0x30 } else { 0x10 };
        self.out.put_u8(afc | (*self.cc & 0x0F));
        // The counter advances on every packet with payload (2.4.3.3); all of ours have one.
        *self.cc = (*self.cc + 1) & 0x0F;

        match af_len {
            0 => {}
            // A single stuffing byte: adaptation_field_length = 0, no flags byte (2.4.3.5).
            1 => self.out.put_u8(0),
            _ => {
                self.out.put_u8((af_len - 1) as u8);
                self.out.put_u8(flags);
                let mut used = 2;
                if let Some(base) = pcr {
                    let mut b = [0u8; 6];
                    encode_pcr(base, &mut b);
                    self.out.put_slice(&b);
                    used += 6;
                }
                self.out.put_bytes(0xFF, af_len - used);
            }
        }
        self.room = room;
    }
}

/// Writes a packet with an adaptation field only (no payload) that carries a PCR
/// (2.4.3.4: adaptation_field_control = '10'). Its continuity counter repeats the previous
/// packet's, because the counter does not advance without payload (2.4.3.3).
pub(super) fn write_pcr_only(out: &mut BytesMut, pid: u16, cc: u8, pcr_base: u64) {
    out.put_u8(SYNC_BYTE);
    out.put_u8((pid >> 8) as u8);
    out.put_u8(pid as u8);
    out.put_u8(0x20 | (cc.wrapping_sub(1) & 0x0F));
    out.put_u8((PACKET_BODY - 1) as u8); // adaptation_field_length: the rest of the packet
    out.put_u8(AF_PCR);
    let mut b = [0u8; 6];
    encode_pcr(pcr_base, &mut b);
    out.put_slice(&b);
    out.put_bytes(0xFF, PACKET_BODY - 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_timestamp(b: &[u8]) -> u64 {
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1)
    }

    #[test]
    fn timestamps_round_trip_with_markers() {
        for ts in [0u64, 1, 90_000, (1 << 32) + 12345, (1 << 33) - 1] {
            let mut b = [0u8; 5];
            encode_timestamp(0b0010, ts, &mut b);
            assert_eq!(b[0] >> 4, 0b0010);
            assert_eq!(b[0] & 1, 1);
            assert_eq!(b[2] & 1, 1);
            assert_eq!(b[4] & 1, 1);
            assert_eq!(decode_timestamp(&b), ts);
        }
    }

    #[test]
    fn pcr_round_trips() {
        for base in [0u64, 1, 123_456_789, (1 << 33) - 1] {
            let mut b = [0u8; 6];
            encode_pcr(base, &mut b);
            let decoded = u64::from(b[0]) << 25
                | u64::from(b[1]) << 17
                | u64::from(b[2]) << 9
                | u64::from(b[3]) << 1
                | u64::from(b[4] >> 7);
            assert_eq!(decoded, base);
            assert_eq!(b[4] & 0x7E, 0x7E, "reserved bits are ones");
        }
    }

    #[test]
    fn header_with_and_without_dts() {
        let h = PesHeader {
            stream_id: STREAM_ID_AUDIO,
            pts: 900,
            dts: None,
        };
        let (b, n) = h.encode(100);
        assert_eq!(n, 14);
        assert_eq!(&b[..4], &[0, 0, 1, 0xC0]);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 3 + 5 + 100);
        assert_eq!(b[7], 0x80);
        assert_eq!(decode_timestamp(&b[9..14]), 900);

        let h = PesHeader {
            stream_id: STREAM_ID_VIDEO,
            pts: 1800,
            dts: Some(900),
        };
        let (b, n) = h.encode(70_000);
        assert_eq!(n, 19);
        assert_eq!(
            u16::from_be_bytes([b[4], b[5]]),
            0,
            "too long: unbounded length"
        );
        assert_eq!(b[7], 0xC0);
        assert_eq!(b[9] >> 4, 0b0011);
        assert_eq!(b[14] >> 4, 0b0001);
        assert_eq!(decode_timestamp(&b[9..14]), 1800);
        assert_eq!(decode_timestamp(&b[14..19]), 900);
    }

    /// Every PES length from tiny to several packets ends exactly on a packet boundary, with
    /// the payload intact and the counter advancing once per packet.
    #[test]
    fn every_length_is_packetised_exactly() {
        for len in (1..=400).chain([183, 184, 185, 366, 367, 368, 552, 10_000]) {
            for (pcr, rai) in [(None, false), (Some(77u64), true), (None, true)] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut out = BytesMut::new();
                let mut cc = 14;
                let mut w = PesWriter::new(&mut out, 0x100, &mut cc, len, pcr, rai);
                // Write in uneven pieces to exercise packet boundaries inside a write.
                for chunk in data.chunks(97) {
                    w.write(chunk);
                }
                w.finish();
                assert_eq!(out.len() % PACKET_SIZE, 0, "len {len}");
                let packets = out.len() / PACKET_SIZE;
                assert_eq!(usize::from(cc), (14 + packets) % 16);
                let mut payload = Vec::new();
                for (i, p) in out.chunks(PACKET_SIZE).enumerate() {
                    assert_eq!(p[0], SYNC_BYTE);
                    assert_eq!(p[1] & 0x40 != 0, i == 0, "PUSI only on the first packet");
                    assert_eq!(usize::from(p[3] & 0x0F), (14 + i) % 16);
                    let afc = (p[3] >> 4) & 3;
                    let body = &p[4..];
                    let start = if afc == 3 {
                        let af_len = usize::from(body[0]);
                        if i == 0 && (pcr.is_some() || rai) {
                            assert_eq!(body[1] & AF_RANDOM_ACCESS != 0, rai);
                            assert_eq!(body[1] & AF_PCR != 0, pcr.is_some());
                        }
                        1 + af_len
                    } else {
                        assert_eq!(afc, 1);
                        0
                    };
                    payload.extend_from_slice(&body[start..]);
                }
                assert_eq!(payload, data, "len {len}");
            }
        }
    }

    #[test]
    fn pcr_only_packet_repeats_counter() {
        let mut out = BytesMut::new();
        write_pcr_only(&mut out, 0x100, 5, 12345);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(out[3], 0x24, "afc '10', counter of the previous packet");
        assert_eq!(usize::from(out[4]), PACKET_BODY - 1);
        assert_eq!(out[5], AF_PCR);
    }
}
