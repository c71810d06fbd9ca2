//! Sealed in-memory files for finished segments, so the HTTP layer can send them with
//! `sendfile(2)` (page references handed to the socket) instead of copying every viewer's bytes
//! from user space into the kernel. That copy was 22 % of the node's CPU with 10,000 TS viewers;
//! nginx serving files does not pay it (see docs/BENCHMARKS.md).
//!
//! A finished segment's bytes are written once into a `memfd`, sealed against any change
//! (`F_SEAL_WRITE`, `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL`) and mapped read-only; the
//! mapping is the owner of an ordinary [`Bytes`], so the rest of the store (slices for parts,
//! clones for requests, replication) is unchanged. The mapping's address range is registered in
//! a process-wide table: the HTTP connection's writer looks each buffer hyper hands it up in
//! [`source_of`], and sends registered ones from the file. Sealing makes that safe: pages the
//! kernel still references after `sendfile` returns can never change.
//!
//! Linux only; elsewhere, when disabled ([`set_enabled`]), or when a call fails, [`seal`]
//! returns `None` and callers keep their heap bytes. Each sealed segment holds one descriptor
//! while it is in a ring (about 10 per track).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use bytes::Bytes;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Registered mappings: start address -> (length, descriptor).
static REGISTRY: RwLock<BTreeMap<usize, (usize, i32)>> = RwLock::new(BTreeMap::new());

/// Turn sealing of finished segments on or off (off by default; the node turns it on from
/// `http.zero_copy`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on && cfg!(target_os = "linux"), Ordering::Relaxed);
}

/// Whether [`seal`] is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The file behind `buf` if it lies inside a sealed mapping: (descriptor, offset of its first
/// byte). The mapping stays alive as long as the `Bytes` that `buf` points into.
pub fn source_of(buf: &[u8]) -> Option<(i32, u64)> {
    if buf.is_empty() {
        return None;
    }
    let start = buf.as_ptr() as usize;
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let (&base, &(len, fd)) = reg.range(..=start).next_back()?;
    (start + buf.len() <= base + len).then(|| (fd, (start - base) as u64))
}

/// `data` as sealed, read-only, file-backed [`Bytes`], or `None` (disabled, empty, or a
/// system call failed: the caller keeps its heap copy).
pub fn seal(data: &[u8]) -> Option<Bytes> {
    if !enabled() || data.is_empty() {
        return None;
    }
    imp::seal(data).map(Bytes::from_owner)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::REGISTRY;

    /// A read-only shared mapping of a sealed memfd; unregistered and unmapped on drop.
    pub(super) struct SealedMap {
        fd: OwnedFd,
        ptr: *const u8,
        len: usize,
    }

    // SAFETY: the mapping is read-only and never changes (sealed), and the descriptor is only
    // read; sharing or moving it between threads is as safe as for a `Box<[u8]>`.
    unsafe impl Send for SealedMap {}
    unsafe impl Sync for SealedMap {}

    impl AsRef<[u8]> for SealedMap {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: `ptr` maps `len` readable bytes until `drop` unmaps them.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    impl Drop for SealedMap {
        fn drop(&mut self) {
            // Unregister before unmapping, so the address is never looked up once it could be
            // reused by another mapping.
            REGISTRY
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(self.ptr as usize));
            // SAFETY: unmapping exactly what `seal` mapped; no `Bytes` points here any more.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.len);
            }
        }
    }

    pub(super) fn seal(data: &[u8]) -> Option<SealedMap> {
        // SAFETY: a NUL-terminated name and valid flags; the result is checked.
        let raw = unsafe {
            libc::memfd_create(
                c"hivecast-segment".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(fd);
        file.write_all(data).ok()?;
        let fd = OwnedFd::from(file);
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our descriptor.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return None;
        }
        // SAFETY: a new read-only shared mapping of `data.len()` bytes of our file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                data.len(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let map = SealedMap {
            ptr: ptr as *const u8,
            len: data.len(),
            fd,
        };
        REGISTRY
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(map.ptr as usize, (map.len, map.fd.as_raw_fd()));
        Some(map)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) struct SealedMap;
    impl AsRef<[u8]> for SealedMap {
        fn as_ref(&self) -> &[u8] {
            &[]
        }
    }
    pub(super) fn seal(_: &[u8]) -> Option<SealedMap> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_read_back_and_are_found_until_dropped() {
        set_enabled(true);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let b = seal(&data).expect("sealed");
        assert_eq!(&b[..], &data[..]);
        let (fd, off) = source_of(&b[1000..2000]).expect("registered");
        assert_eq!(off, 1000);
        // The file holds the bytes, at that offset.
        let mut got = vec![0u8; 1000];
        // SAFETY: pread into a buffer of the given length.
        let n = unsafe { libc::pread(fd, got.as_mut_ptr().cast(), 1000, 1000) };
        assert_eq!(n, 1000);
        assert_eq!(&got[..], &data[1000..2000]);
        // A slice is a view of the same mapping; heap bytes are not registered.
        let part = b.slice(50_000..60_000);
        assert_eq!(source_of(&part).map(|(_, o)| o), Some(50_000));
        assert_eq!(source_of(&data[..10]), None);
        // The seals hold: the file cannot be written.
        // SAFETY: pwrite on our descriptor; it must fail.
        let w = unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) };
        assert_eq!(w, -1, "a sealed segment accepted a write");
        let addr = b.as_ptr() as usize;
        drop(b);
        drop(part);
        assert!(
            !REGISTRY.read().unwrap().contains_key(&addr),
            "unregistered on drop"
        );
        assert!(seal(&[]).is_none());
    }
}
