//! Input layouts of the single-parser targets. Each `split_*` is what the target does with
//! its input; each `join_*` is its inverse, used by `fuzz-corpus` to write seeds.

/// `sps` target: `sps_len:u16 BE`, the SPS NAL unit, then the PPS NAL unit (the rest).
/// A length past the end takes everything as the SPS and leaves the PPS empty.
pub fn split_sps(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    rest.split_at(n)
}

/// Inverse of [`split_sps`].
pub fn join_sps(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let sps = &sps[..sps.len().min(0xffff)];
    let mut out = (sps.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(sps);
    out.extend_from_slice(pps);
    out
}

/// `h264_frames` target: `selector:u8` then an AVCC access unit. The NAL length size is
/// 1, 2, 4 for selectors 0..=2 (mod 8) and the invalid 0, 3, 5, 8 and 255 otherwise.
pub fn split_frames(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&sel, au) = data.split_first()?;
    let nls = [1, 2, 4, 4, 0, 3, 8, 255][usize::from(sel & 7)];
    Some((nls, au))
}

/// Inverse of [`split_frames`] for a valid NAL length size (1, 2 or 4).
pub fn join_frames(nal_length_size: u8, au: &[u8]) -> Vec<u8> {
    let sel = match nal_length_size {
        1 => 0,
        2 => 1,
        _ => 2,
    };
    [&[sel][..], au].concat()
}

/// `aac_config` target: `payload_len:u16 BE` (the raw frame an ADTS header is written for),
/// then the AudioSpecificConfig.
pub fn split_aac(data: &[u8]) -> Option<(usize, &[u8])> {
    let (len, asc) = data.split_first_chunk::<2>()?;
    Some((usize::from(u16::from_be_bytes(*len)), asc))
}

/// Inverse of [`split_aac`].
pub fn join_aac(payload_len: u16, asc: &[u8]) -> Vec<u8> {
    [&payload_len.to_be_bytes()[..], asc].concat()
}

/// `hls_query` target: 8 bytes describing the playlist the request is checked against
/// (see the target), then the query string.
pub const HLS_SHAPE_LEN: usize = 8;

/// Splits an `hls_query` input; `None` when shorter than the shape.
pub fn split_hls(data: &[u8]) -> Option<([u8; HLS_SHAPE_LEN], &[u8])> {
    let (shape, query) = data.split_first_chunk::<HLS_SHAPE_LEN>()?;
    Some((*shape, query))
}

/// Inverse of [`split_hls`].
pub fn join_hls(shape: [u8; HLS_SHAPE_LEN], query: &str) -> Vec<u8> {
    [&shape[..], query.as_bytes()].concat()
}

/// `amf0` target: `selector:u8` then the AMF0 body. Selector bits 0-1 pick the message type
/// (AMF0 command, AMF0 data, AMF3 command, AMF3 data), bit 2 sends it on the publish
/// stream instead of stream 0, bit 3 skips the publish (the message arrives on a connected
/// session that does not publish).
pub fn split_amf(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&sel, body) = data.split_first()?;
    Some((sel, body))
}

/// Inverse of [`split_amf`].
pub fn join_amf(selector: u8, body: &[u8]) -> Vec<u8> {
    [&[selector][..], body].concat()
}

/// `peer_wire` target: `cut:u8`, then node-to-node bytes. The bytes are decoded whole as a
/// request and as a response, and fed to a frame decoder in two pieces, split after
/// `len * cut / 255` bytes (0: everything in the second push, 255: everything in the first).
/// The selector is not part of the wire bytes: a frame stream starts with the high byte of a
/// length, which is 0 for every frame under the limit, so a cut taken from the stream's own
/// first byte would never move.
pub fn split_peer(data: &[u8]) -> Option<(usize, &[u8])> {
    let (&cut, wire) = data.split_first()?;
    Some((wire.len() * usize::from(cut) / 255, wire))
}

/// Inverse of [`split_peer`].
pub fn join_peer(cut: u8, wire: &[u8]) -> Vec<u8> {
    [&[cut][..], wire].concat()
}
