//! Program Specific Information: the PAT and the PMT (ISO/IEC 13818-1 2.4.4), each written as
//! a single section in a single transport packet.
//!
//! Does not: parse PSI, write SDT/NIT (HLS clients do not need them), or split sections over
//! packets (ours are at most 36 bytes). Invariants: `version_number` is always 0 (the program
//! never changes for the lifetime of a muxer); every section ends with its CRC-32/MPEG-2.

use bytes::{BufMut, BytesMut};

use super::{PACKET_SIZE, PMT_PID, SYNC_BYTE};

/// PID of the Program Association Table (13818-1 table 2-3).
const PAT_PID: u16 = 0x0000;
/// table_id of a program_association_section (13818-1 table 2-31).
const PAT_TABLE_ID: u8 = 0x00;
/// table_id of a TS_program_map_section.
const PMT_TABLE_ID: u8 = 0x02;
/// transport_stream_id and program_number: one program per stream, numbered 1 like ffmpeg.
const TRANSPORT_STREAM_ID: u16 = 1;
const PROGRAM_NUMBER: u16 = 1;
/// The PCR_PID value meaning "no PCR in this program" (13818-1 2.4.4.9).
pub(super) const NO_PCR_PID: u16 = 0x1FFF;

/// stream_type for H.264 video (13818-1 table 2-34, "AVC video stream").
pub(super) const STREAM_TYPE_H264: u8 = 0x1B;
/// stream_type for AAC audio with ADTS transport syntax (ISO/IEC 13818-7).
pub(super) const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;

/// One elementary stream entry of the PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EsEntry {
    pub(super) stream_type: u8,
    pub(super) pid: u16,
}

/// Writes one TS packet carrying the PAT (program 1 -> [`PMT_PID`]).
pub(super) fn write_pat(cc: &mut u8, out: &mut BytesMut) {
    let start = out.len();
    write_psi_header(PAT_PID, cc, out);
    let section = out.len();
    // section_length counts the bytes after itself: 5 fixed + 4 per program + 4 CRC.
    let section_length: u16 = 5 + 4 + 4;
    write_section_start(PAT_TABLE_ID, section_length, TRANSPORT_STREAM_ID, out);
    out.put_u16(PROGRAM_NUMBER);
    out.put_u16(0xE000 | PMT_PID); // 3 reserved bits set, then program_map_PID
    finish_section(start, section, out);
}

/// Writes one TS packet carrying the PMT for program 1.
///
/// `pcr_pid` names the PID whose adaptation fields carry the PCR ([`NO_PCR_PID`] if none).
pub(super) fn write_pmt(cc: &mut u8, pcr_pid: u16, streams: &[EsEntry], out: &mut BytesMut) {
    let start = out.len();
    write_psi_header(PMT_PID, cc, out);
    let section = out.len();
    // 5 fixed + PCR_PID (2) + program_info_length (2) + 5 per stream + 4 CRC. At most two
    // streams here, so the section always fits one packet.
    let section_length = 5 + 2 + 2 + 5 * streams.len() as u16 + 4;
    write_section_start(PMT_TABLE_ID, section_length, PROGRAM_NUMBER, out);
    out.put_u16(0xE000 | pcr_pid); // 3 reserved bits, PCR_PID
    out.put_u16(0xF000); // 4 reserved bits, program_info_length = 0
    for es in streams {
        out.put_u8(es.stream_type);
        out.put_u16(0xE000 | es.pid); // 3 reserved bits, elementary_PID
        out.put_u16(0xF000); // 4 reserved bits, ES_info_length = 0
    }
    finish_section(start, section, out);
}

/// TS header with payload_unit_start_indicator set, payload only, then pointer_field = 0.
fn write_psi_header(pid: u16, cc: &mut u8, out: &mut BytesMut) {
    out.put_u8(SYNC_BYTE);
    out.put_u8(0x40 | (pid >> 8) as u8); // PUSI = 1
    out.put_u8(pid as u8);
    out.put_u8(0x10 | (*cc & 0x0F)); // adaptation_field_control = 01 (payload only)
    *cc = (*cc + 1) & 0x0F;
    out.put_u8(0); // pointer_field: the section starts right here (13818-1 2.4.4.2)
}

/// table_id .. last_section_number, common to PAT and PMT (13818-1 2.4.4.3 / 2.4.4.8).
fn write_section_start(table_id: u8, section_length: u16, id: u16, out: &mut BytesMut) {
    out.put_u8(table_id);
    // section_syntax_indicator = 1, '0', 2 reserved bits, 12-bit section_length.
    out.put_u16(0xB000 | (section_length & 0x0FFF));
    out.put_u16(id);
    out.put_u8(0xC1); // 2 reserved bits, version_number = 0, current_next_indicator = 1
    out.put_u8(0); // section_number
    out.put_u8(0); // last_section_number
}

/// Appends the CRC over the section and pads the packet with 0xFF (13818-1 2.4.4.1).
fn finish_section(packet_start: usize, section_start: usize, out: &mut BytesMut) {
    let crc = crc32_mpeg2(&out[section_start..]);
    out.put_u32(crc);
    let used = out.len() - packet_start;
    out.put_bytes(0xFF, PACKET_SIZE - used);
}

/// CRC-32/MPEG-2 (13818-1 Annex A): polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no
/// reflection, no final XOR. A section followed by its CRC checksums to zero.
pub(super) fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

static CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference implementation, independent of the table.
    fn crc_bitwise(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            for i in (0..8).rev() {
                let bit = ((b >> i) & 1) as u32;
                let top = crc >> 31;
                crc <<= 1;
                if top ^ bit == 1 {
                    crc ^= 0x04C1_1DB7;
                }
            }
        }
        crc
    }

    #[test]
    fn crc_matches_check_value() {
        // The catalogued check value of CRC-32/MPEG-2 for "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        assert_eq!(crc_bitwise(b"123456789"), 0x0376_E6E7);
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(crc32_mpeg2(&data), crc_bitwise(&data));
    }

    #[test]
    fn pat_is_one_packet_with_valid_crc() {
        let mut out = BytesMut::new();
        let mut cc = 15;
        write_pat(&mut cc, &mut out);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(cc, 0, "continuity counter wraps mod 16");
        assert_eq!(&out[..5], &[0x47, 0x40, 0x00, 0x1F, 0x00]);
        let section_length = usize::from(u16::from_be_bytes([out[6], out[7]]) & 0x0FFF);
        let section = &out[5..5 + 3 + section_length];
        // Running the CRC over the section including its CRC yields 0 (13818-1 Annex A).
        assert_eq!(crc32_mpeg2(section), 0);
        // program 1 -> PMT PID
        assert_eq!(
            &section[8..12],
            &[0x00, 0x01, 0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8]
        );
        assert!(out[5 + 3 + section_length..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn pmt_lists_streams_and_pcr_pid() {
        let mut out = BytesMut::new();
        let mut cc = 3;
        let streams = [
            EsEntry {
                stream_type: STREAM_TYPE_H264,
                pid: 0x100,
            },
            EsEntry {
                stream_type: STREAM_TYPE_AAC_ADTS,
                pid: 0x101,
            },
        ];
        write_pmt(&mut cc, 0x100, &streams, &mut out);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(cc, 4);
        assert_eq!(u16::from_be_bytes([out[1], out[2]]) & 0x1FFF, PMT_PID);
        let section_length = usize::from(u16::from_be_bytes([out[6], out[7]]) & 0x0FFF);
        assert_eq!(section_length, 9 + 10 + 4);
        let section = &out[5..5 + 3 + section_length];
        assert_eq!(crc32_mpeg2(section), 0);
        assert_eq!(u16::from_be_bytes([section[8], section[9]]) & 0x1FFF, 0x100);
        assert_eq!(section[12], STREAM_TYPE_H264);
        assert_eq!(
            u16::from_be_bytes([section[13], section[14]]) & 0x1FFF,
            0x100
        );
        assert_eq!(section[17], STREAM_TYPE_AAC_ADTS);
        assert_eq!(
            u16::from_be_bytes([section[18], section[19]]) & 0x1FFF,
            0x101
        );
    }
}
