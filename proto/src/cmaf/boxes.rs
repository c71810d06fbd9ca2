//! `BoxWriter`: appends ISOBMFF boxes (14496-12 4.2) to a `BytesMut`, writing a placeholder
//! size when a box opens and patching it when the box's body is done.
//!
//! Does not: support boxes over 4 GiB through this API (`mdat` is written by hand in
//! `fragment.rs` with a 64-bit `largesize` when needed). Invariant: boxes nest strictly; a box
//! is closed by the same call that opened it, so a size can never be left unpatched.

use std::ops::{Deref, DerefMut};

use bytes::{BufMut, BytesMut};

/// Appends boxes to the caller's buffer. Derefs to the buffer for writing box bodies.
#[derive(Debug)]
pub(super) struct BoxWriter<'a> {
    buf: &'a mut BytesMut,
}

impl<'a> BoxWriter<'a> {
    pub(super) fn new(buf: &'a mut BytesMut) -> Self {
        BoxWriter { buf }
    }

    /// Writes box `kind` whose body is produced by `body`; returns the offset of its first
    /// byte (the size field) in the buffer.
    pub(super) fn boxed(&mut self, kind: &[u8; 4], body: impl FnOnce(&mut Self)) -> usize {
        let start = self.buf.len();
        self.buf.put_u32(0); // size placeholder, patched below
        self.buf.put_slice(kind);
        body(self);
        let size = self.buf.len() - start;
        // Our boxes other than mdat are small (a moof holds 16 bytes per sample).
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.patch_u32(start, size);
        start
    }

    /// Writes a FullBox (14496-12 4.2): `version` and 24-bit `flags` precede the body.
    pub(super) fn full_box(
        &mut self,
        kind: &[u8; 4],
        version: u8,
        flags: u32,
        body: impl FnOnce(&mut Self),
    ) -> usize {
        self.boxed(kind, |w| {
            w.buf
                .put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
            body(w);
        })
    }

    /// Overwrites four bytes at `pos` (an offset previously returned or observed via `len`).
    pub(super) fn patch_u32(&mut self, pos: usize, value: u32) {
        self.buf[pos..pos + 4].copy_from_slice(&value.to_be_bytes());
    }
}

impl Deref for BoxWriter<'_> {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        self.buf
    }
}

impl DerefMut for BoxWriter<'_> {
    fn deref_mut(&mut self) -> &mut BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes_are_patched() {
        let mut buf = BytesMut::from(&b"xx"[..]); // boxes may start mid-buffer
        let mut w = BoxWriter::new(&mut buf);
        let outer = w.boxed(b"moov", |w| {
            w.full_box(b"mvhd", 1, 0x00AB_CDEF, |w| w.put_u16(7));
            w.boxed(b"free", |_| {});
        });
        assert_eq!(outer, 2);
        assert_eq!(
            &buf[..],
            &[
                b'x', b'x', 0, 0, 0, 30, b'm', b'o', b'o', b'v', // moov: 8 + 14 + 8
                0, 0, 0, 14, b'm', b'v', b'h', b'd', 1, 0xAB, 0xCD, 0xEF, 0, 7, // full box
                0, 0, 0, 8, b'f', b'r', b'e', b'e',
            ][..]
        );
    }
}
