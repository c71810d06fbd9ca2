//! What a publisher writes on the wire, built by hand so the targets can produce well-formed
//! RTMP around fuzzed bodies: the plain handshake (RTMP 5.2), chunked messages (RTMP 5.3)
//! and the few AMF0 values (AMF0 spec 2.x) that publish commands use.
//!
//! Deliberately independent of `hivecast_proto::rtmp` (which is what is under test) and of
//! rml_rtmp's client (which allocates per call and reads the clock).

/// C0 + C1 + C2 = 1 + 1536 + 1536 bytes (RTMP 5.2.2 - 5.2.4).
pub const HANDSHAKE_LEN: usize = 1 + 2 * 1536;

/// Chunk size every RTMP peer starts with (RTMP 5.4.1).
pub const INITIAL_CHUNK_SIZE: u32 = 128;

/// RTMP message type ids (RTMP 5.4, 7.1).
pub mod msg_type {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACK: u8 = 3;
    /// User control message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio (an FLV AUDIODATA body).
    pub const AUDIO: u8 = 8;
    /// Video (an FLV VIDEODATA body).
    pub const VIDEO: u8 = 9;
    /// AMF3 data (rml_rtmp decodes it as AMF0).
    pub const AMF3_DATA: u8 = 15;
    /// AMF3 command (one leading 0 byte, then AMF0 for rml_rtmp).
    pub const AMF3_COMMAND: u8 = 17;
    /// AMF0 data (`@setDataFrame`).
    pub const AMF0_DATA: u8 = 18;
    /// AMF0 command (`connect`, `publish`...).
    pub const AMF0_COMMAND: u8 = 20;
}

/// The client's C0 + C1 + C2 for the original (non-digest) handshake. C1 carries no Flash
/// digest, so the server echoes it as S2 and the handshake is deterministic on our side;
/// C2 is not checked by rml_rtmp 0.8 (see the module doc of `hivecast_proto::rtmp`).
pub fn client_handshake() -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_LEN);
    out.push(3); // C0: version 3
    out.extend_from_slice(&[0; 8]); // C1: time, zero
    out.extend((0..1528u32).map(|i| (i * 7 + 1) as u8)); // C1 random
    out.extend((0..1536u32).map(|i| (i * 13 + 5) as u8)); // C2
    out
}

/// The last header sent on a chunk stream, for compressed headers (RTMP 5.3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    msid: u32,
}

/// One message to chunk.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Requested header format (0..=3). Falls back to a fuller header when the chunk stream
    /// has no previous header or the omitted fields would differ, so the output stays valid.
    pub fmt: u8,
    /// Chunk stream id, 2..=65599.
    pub csid: u32,
    /// RTMP message type id.
    pub type_id: u8,
    /// Message stream id.
    pub msid: u32,
    /// The timestamp field: absolute for a type 0 header, a delta otherwise.
    pub timestamp: u32,
    /// The body.
    pub body: &'a [u8],
}

/// Serializes messages into chunks the way encoders do (first chunk with the requested
/// header, continuation chunks type 3), tracking the chunk size it announced.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    chunk_size: u32,
    streams: Vec<(u32, Sent)>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter {
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }
}

impl ChunkWriter {
    /// The chunk size used for the next message.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Appends a SetChunkSize message and uses `size` from then on (0 is written as is, and
    /// chunks of 1 byte are used: the server must reject it anyway).
    pub fn set_chunk_size(&mut self, size: u32, out: &mut Vec<u8>) {
        self.write(
            &Message {
                fmt: 0,
                csid: 2,
                type_id: msg_type::SET_CHUNK_SIZE,
                msid: 0,
                timestamp: 0,
                body: &size.to_be_bytes(),
            },
            out,
        );
        self.chunk_size = size.max(1);
    }

    /// Appends `m` as chunks.
    pub fn write(&mut self, m: &Message<'_>, out: &mut Vec<u8>) {
        let csid = m.csid.clamp(2, 65599);
        // Bodies come from fuzz inputs, far below the 24-bit length field.
        let length = m.body.len().min(0x00ff_ffff) as u32;
        let body = &m.body[..length as usize];
        let prev = self
            .streams
            .iter()
            .find(|(c, _)| *c == csid)
            .map(|(_, s)| *s);
        let ts_field = m.timestamp.min(0x00ff_ffff);
        let fmt = match (m.fmt & 3, prev) {
            (_, None) | (0, _) => 0,
            (1, Some(_)) => 1,
            (2, Some(p)) if p.length == length && p.type_id == m.type_id => 2,
            (3, Some(p))
                if p.length == length
                    && p.type_id == m.type_id
                    && p.timestamp_field == ts_field =>
            {
                3
            }
            (_, Some(p)) if p.msid == m.msid => 1,
            _ => 0,
        };
        let sent = Sent {
            timestamp_field: ts_field,
            length,
            type_id: m.type_id,
            msid: if fmt == 0 {
                m.msid
            } else {
                prev.map_or(m.msid, |p| p.msid)
            },
        };
        let extended = (ts_field == 0x00ff_ffff).then_some(m.timestamp);
        basic_header(fmt, csid, out);
        if fmt < 3 {
            out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
        }
        if fmt < 2 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.push(m.type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&m.msid.to_le_bytes());
        }
        if let Some(e) = extended {
            out.extend_from_slice(&e.to_be_bytes());
        }
        let size = self.chunk_size as usize;
        for (i, piece) in body.chunks(size).enumerate() {
            if i > 0 {
                basic_header(3, csid, out);
                // RTMP 5.3.1.3: type 3 chunks repeat the extended timestamp.
                if let Some(e) = extended {
                    out.extend_from_slice(&e.to_be_bytes());
                }
            }
            out.extend_from_slice(piece);
        }
        match self.streams.iter_mut().find(|(c, _)| *c == csid) {
            Some((_, s)) => *s = sent,
            None => self.streams.push((csid, sent)),
        }
    }
}

/// Basic header (RTMP 5.3.1.1) in its shortest form.
fn basic_header(fmt: u8, csid: u32, out: &mut Vec<u8>) {
    let f = fmt << 6;
    match csid {
        2..=63 => out.push(f | csid as u8),
        64..=319 => out.extend_from_slice(&[f, (csid - 64) as u8]),
        _ => {
            let v = csid - 64;
            out.extend_from_slice(&[f | 1, (v & 0xff) as u8, (v >> 8) as u8]);
        }
    }
}

/// AMF0 writers (AMF0 spec 2.2 - 2.5, 2.7).
pub mod amf {
    /// Number (2.2).
    pub fn number(v: f64, out: &mut Vec<u8>) {
        out.push(0x00);
        out.extend_from_slice(&v.to_be_bytes());
    }

    /// Boolean (2.3).
    pub fn boolean(v: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x01, u8::from(v)]);
    }

    /// String (2.4); longer input is cut at 65535 bytes.
    pub fn string(s: &[u8], out: &mut Vec<u8>) {
        out.push(0x02);
        name(s, out);
    }

    /// Null (2.7).
    pub fn null(out: &mut Vec<u8>) {
        out.push(0x05);
    }

    /// An object property name (UTF-8-empty form without marker).
    pub fn name(s: &[u8], out: &mut Vec<u8>) {
        let s = &s[..s.len().min(0xffff)];
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// Object start (2.5); close with [`object_end`].
    pub fn object_start(out: &mut Vec<u8>) {
        out.push(0x03);
    }

    /// ECMA array start (2.10) with its advisory count; close with [`object_end`].
    pub fn ecma_array_start(count: u32, out: &mut Vec<u8>) {
        out.push(0x08);
        out.extend_from_slice(&count.to_be_bytes());
    }

    /// The empty name and object-end marker closing an object or ECMA array.
    pub fn object_end(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, 0x09]);
    }
}

/// The AMF0 body of a command: name, transaction id, null command object, then `args`
/// (already encoded).
pub fn command(name: &str, txid: f64, args: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + args.len());
    amf::string(name.as_bytes(), &mut out);
    amf::number(txid, &mut out);
    amf::null(&mut out);
    out.extend_from_slice(args);
    out
}

/// The AMF0 body of `connect` as ffmpeg sends it (app, type, flashVer, tcUrl).
pub fn connect_command(app: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + 2 * app.len());
    amf::string(b"connect", &mut out);
    amf::number(1.0, &mut out);
    amf::object_start(&mut out);
    amf::name(b"app", &mut out);
    amf::string(app, &mut out);
    amf::name(b"type", &mut out);
    amf::string(b"nonprivate", &mut out);
    amf::name(b"flashVer", &mut out);
    amf::string(b"FMLE/3.0 (compatible; Lavf59.27.100)", &mut out);
    amf::name(b"tcUrl", &mut out);
    let mut url = b"rtmp://127.0.0.1:1935/".to_vec();
    url.extend_from_slice(app);
    amf::string(&url, &mut out);
    amf::object_end(&mut out);
    out
}

/// The AMF0 body of `publish` (RTMP 7.2.2.6): name, "live".
pub fn publish_command(key: &[u8]) -> Vec<u8> {
    let mut args = Vec::with_capacity(16 + key.len());
    amf::string(key, &mut args);
    amf::string(b"live", &mut args);
    command("publish", 5.0, &args)
}

/// `@setDataFrame onMetaData {..}` as ffmpeg writes it, with `extra` (raw AMF0 bytes) after
/// the ECMA array.
pub fn metadata(extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + extra.len());
    amf::string(b"@setDataFrame", &mut out);
    amf::string(b"onMetaData", &mut out);
    amf::ecma_array_start(6, &mut out);
    for (k, v) in [
        (&b"width"[..], 320.0),
        (b"height", 240.0),
        (b"framerate", 30.0),
        (b"videocodecid", 7.0),
        (b"audiocodecid", 10.0),
        (b"audiosamplerate", 44100.0),
    ] {
        amf::name(k, &mut out);
        amf::number(v, &mut out);
    }
    amf::name(b"stereo", &mut out);
    amf::boolean(false, &mut out);
    amf::name(b"encoder", &mut out);
    amf::string(b"Lavf59.27.100", &mut out);
    amf::object_end(&mut out);
    out.extend_from_slice(extra);
    out
}
