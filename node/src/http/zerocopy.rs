//! The viewer-facing TCP listener: sets TCP_NODELAY on every connection and sends sealed
//! segment bytes ([`hivecast_actors::store::sealed`]) with `sendfile(2)`.
//!
//! hyper hands a response to its connection's writer as a list of buffers (headers, then the
//! body's `Bytes`, never copied: its write strategy is "queue" because this writer is
//! vectored). [`ViewerStream::poll_write_vectored`] looks each buffer up: a buffer inside a
//! sealed segment goes out with `sendfile` from that segment's file (the kernel passes page
//! references to the socket, as nginx's `sendfile on` does); a run of other buffers goes out
//! with one `writev`. Each call makes one system call's worth of progress, and hyper calls again
//! for the rest, so partial writes and `EAGAIN` behave as with a plain socket.

use std::io;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::serve::Listener;
use hivecast_actors::store::sealed;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Largest `sendfile` in one call.
const MAX_SENDFILE: usize = 1 << 20;

/// The HTTP listener (see the module docs).
pub struct ViewerListener(pub TcpListener);

impl Listener for ViewerListener {
    type Io = ViewerStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        // A response's last packet must not wait for the ACK of the previous ones (Nagle with
        // the client's delayed ACK holds it up to 40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        (ViewerStream(tcp), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The client's address, for handlers (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// One viewer connection.
pub struct ViewerStream(TcpStream);

impl ViewerStream {
    /// `sendfile` up to `len` bytes of `fd` from `offset` once the socket is writable.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        fd: i32,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let sock = self.0.as_raw_fd();
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            let r = self.0.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: both descriptors are open for the duration of the call: the socket
                // is ours, and the segment's file lives as long as the `Bytes` hyper is writing,
                // which it holds until the write completes.
                let n = unsafe { libc::sendfile(sock, fd, &mut off, len.min(MAX_SENDFILE)) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl crate::http::server::Rehome for ViewerStream {
    fn rehome(self, rt: &tokio::runtime::Handle) -> Result<io::Result<Self>, Self> {
        let _in = rt.enter();
        Ok(self.0.into_std().and_then(TcpStream::from_std).map(Self))
    }
}

impl AsyncRead for ViewerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ViewerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if let Some((fd, offset)) = sealed::source_of(&bufs[first]) {
            let len = bufs[first].len();
            return self.poll_sendfile(cx, fd, offset, len);
        }
        // Heap buffers up to the next sealed one, in one writev.
        let end = bufs[first..]
            .iter()
            .position(|b| sealed::source_of(b).is_some())
            .map_or(bufs.len(), |i| first + i);
        Pin::new(&mut self.0).poll_write_vectored(cx, &bufs[first..end])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
