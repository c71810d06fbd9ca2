//! A TCP proxy on loopback that adds a one-way delay (and optionally a bandwidth cap) to each
//! direction of every connection: the "far" and "near" links of the CDN benchmark and test
//! (`scripts/bench-cdn`, `tests/cdn.rs`), since these machines have no `tc netem`.
//!
//! How it works: per connection and per direction, one reader task reads whatever the socket has
//! (at most [`CHUNK`] bytes), stamps the chunk with its release time (arrival + one-way delay,
//! or later when the bandwidth cap says so) and puts it in a bounded channel; one writer task
//! sleeps until each chunk's release time and writes it. Chunks are in flight together, as
//! packets on a link are: N chunks sent back to back arrive one delay later, not N delays. The
//! end of a stream (FIN) is delayed the same way. The channel is bounded ([`DelayOpts::queue`]
//! chunks): when it is full the reader stops reading and TCP pushes back on the sender, which
//! then behaves like a receive window that caps throughput at about `queue x CHUNK / delay`.
//!
//! What it does not model: TCP slow start, loss, retransmission, reordering, jitter, or the
//! kernel's own buffers on either side (loopback sockets are fast and large). A new connection
//! pays one round trip for the handshake when [`DelayOpts::handshake`] is on: the first bytes
//! toward the target are not released before accept + 3 x delay (SYN, SYN-ACK, then the data's
//! own trip), which is when they would arrive on a real link.
//!
//! Invariants: it listens on 127.0.0.1 only; dropping the [`DelayProxy`] stops the listener and
//! every connection it relays.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest chunk read at once. Small enough that a bandwidth cap releases data smoothly.
pub const CHUNK: usize = 16 * 1024;

/// How a [`DelayProxy`] shapes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayOpts {
    /// Added to every chunk in each direction (half the round trip).
    pub one_way: Duration,
    /// Bandwidth cap per direction per connection, bytes per second (`None`: no cap).
    pub rate_bytes_per_s: Option<u64>,
    /// Chunks in flight per direction before the reader stops reading.
    pub queue: usize,
    /// Charge a new connection one round trip for the TCP handshake.
    pub handshake: bool,
}

impl DelayOpts {
    /// `one_way` in each direction, no bandwidth cap, a 512-chunk queue (8 MiB: a 1 Gbit/s link
    /// at 40 ms one way stays full), the handshake charged.
    pub fn new(one_way: Duration) -> DelayOpts {
        DelayOpts {
            one_way,
            rate_bytes_per_s: None,
            queue: 512,
            handshake: true,
        }
    }
}

/// Counters of a proxy.
#[derive(Debug, Default)]
pub struct DelayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes relayed toward the target.
    pub bytes_up: AtomicU64,
    /// Bytes relayed back from the target.
    pub bytes_down: AtomicU64,
}

/// A running delay proxy: `127.0.0.1:{port}` -> `target`.
pub struct DelayProxy {
    addr: SocketAddr,
    target: SocketAddr,
    stats: Arc<DelayStats>,
    /// The accept loop; it owns the connection tasks (a `JoinSet`), so aborting it ends them too.
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on `127.0.0.1:0` and relays every connection to `target` through `opts`.
    pub async fn start(target: SocketAddr, opts: DelayOpts) -> std::io::Result<DelayProxy> {
        DelayProxy::bind(0, target, opts).await
    }

    /// Listens on `127.0.0.1:{port}` (0: any free port).
    pub async fn bind(
        port: u16,
        target: SocketAddr,
        opts: DelayOpts,
    ) -> std::io::Result<DelayProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(DelayStats::default());
        let task = tokio::spawn(accept_loop(listener, target, opts, stats.clone()));
        Ok(DelayProxy {
            addr,
            target,
            stats,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it relays to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Its counters.
    pub fn stats(&self) -> &DelayStats {
        &self.stats
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    opts: DelayOpts,
    stats: Arc<DelayStats>,
) {
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    backoff = Duration::from_millis(5);
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(relay(client, target, opts, stats.clone()));
                }
                // Out of file descriptors and the like: back off, as mini-redis does.
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One client connection: connect to the target, then shape both directions until both end.
async fn relay(client: TcpStream, target: SocketAddr, opts: DelayOpts, stats: Arc<DelayStats>) {
    let accepted = Instant::now();
    let Ok(server) = TcpStream::connect(target).await else {
        return; // dropping `client` closes it, as a refused connection would
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Data toward the target waits for the handshake; answers cannot come earlier anyway.
    let gate = if opts.handshake {
        accepted + opts.one_way * 3
    } else {
        accepted
    };
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    tokio::join!(
        pipe(client_rd, server_wr, opts, gate, &stats.bytes_up),
        pipe(server_rd, client_wr, opts, accepted, &stats.bytes_down),
    );
}

/// One direction: a reader stamping chunks into a bounded channel, a writer releasing them.
async fn pipe(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    opts: DelayOpts,
    gate: Instant,
    bytes: &AtomicU64,
) {
    // `Bytes::new()` marks the end of the stream (the FIN, delayed like data).
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(opts.queue.max(1));
    let reader = async move {
        let mut buf = BytesMut::with_capacity(CHUNK);
        // When the capped link finishes sending what it has been given.
        let mut link_free = Instant::now();
        loop {
            buf.reserve(CHUNK);
            // An error ends the stream like an EOF does.
            let n: usize = (&mut rd)
                .take(CHUNK as u64)
                .read_buf(&mut buf)
                .await
                .unwrap_or_default();
            let now = Instant::now();
            let sent = match opts.rate_bytes_per_s {
                Some(rate) if n > 0 => {
                    let serialize = Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                    link_free = link_free.max(now) + serialize;
                    link_free
                }
                _ => now,
            };
            let release = (sent + opts.one_way).max(gate);
            let chunk = buf.split().freeze();
            if tx.send((release, chunk)).await.is_err() || n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((release, chunk)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            if chunk.is_empty() {
                break;
            }
            if wr.write_all(&chunk).await.is_err() {
                // The peer is gone: dropping `rx` stops the reader at its next chunk.
                return;
            }
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1:0.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `msg` and reads back as many bytes.
    async fn exchange(s: &mut TcpStream, msg: &[u8]) {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }

    const DELAY: Duration = Duration::from_millis(50);
    /// Scheduling slack on a loaded 2-core machine.
    const SLACK: Duration = Duration::from_millis(40);

    #[tokio::test]
    async fn a_round_trip_costs_two_delays_and_a_new_connection_one_more() {
        let proxy = DelayProxy::start(echo_server().await, DelayOpts::new(DELAY))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        exchange(&mut s, b"hello").await;
        let first = t.elapsed();
        assert!(
            first >= DELAY * 4 && first < DELAY * 4 + SLACK,
            "handshake + round trip took {first:?}"
        );
        for _ in 0..3 {
            let t = std::time::Instant::now();
            exchange(&mut s, b"ping").await;
            let rtt = t.elapsed();
            assert!(
                rtt >= DELAY * 2 && rtt < DELAY * 2 + SLACK,
                "round trip took {rtt:?}"
            );
        }
        assert_eq!(proxy.stats().connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn chunks_sent_back_to_back_are_in_flight_together() {
        let mut opts = DelayOpts::new(DELAY);
        opts.handshake = false;
        let proxy = DelayProxy::start(echo_server().await, opts).await.unwrap();
        let s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (mut r, mut w) = s.into_split();
        const N: usize = 40;
        let t = std::time::Instant::now();
        // One write per chunk, 2 ms apart: each is its own chunk at the proxy.
        let sender = tokio::spawn(async move {
            for i in 0..N {
                w.write_all(&[i as u8; 100]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w
        });
        let mut got = vec![0u8; N * 100];
        r.read_exact(&mut got).await.unwrap();
        let took = t.elapsed();
        let _w = sender.await.unwrap();
        // Sending takes ~N x 2 ms; each chunk then needs one round trip, not N of them.
        let sending = Duration::from_millis(2 * N as u64);
        assert!(
            took >= DELAY * 2 && took < sending + DELAY * 2 + SLACK * 2,
            "{N} chunks echoed in {took:?} (one round trip is {:?})",
            DELAY * 2
        );
        assert!(took < DELAY * 2 * 4, "not pipelined: {took:?}");
        assert_eq!(got[..100], [0u8; 100]);
        assert_eq!(got[N * 100 - 100..], [(N - 1) as u8; 100]);
    }

    #[tokio::test]
    async fn the_rate_limit_bounds_throughput() {
        // A sink that counts what it receives and reports when it has it all.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap();
        const TOTAL: usize = 600 * 1024;
        const RATE: u64 = 2 * 1024 * 1024;
        let sink = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0;
            while n < TOTAL {
                let k = s.read(&mut buf).await.unwrap();
                assert!(k > 0, "closed after {n} bytes");
                n += k;
            }
            std::time::Instant::now()
        });
        let mut opts = DelayOpts::new(Duration::from_millis(10));
        opts.handshake = false;
        opts.rate_bytes_per_s = Some(RATE);
        let proxy = DelayProxy::start(target, opts).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let t = std::time::Instant::now();
        s.write_all(&vec![7u8; TOTAL]).await.unwrap();
        let done = sink.await.unwrap();
        let took = done - t;
        let ideal = Duration::from_secs_f64(TOTAL as f64 / RATE as f64);
        assert!(
            took >= ideal && took < ideal + Duration::from_millis(10) + SLACK * 3,
            "{TOTAL} bytes at {RATE} B/s took {took:?} (ideal {ideal:?})"
        );
        assert_eq!(proxy.stats().bytes_up.load(Ordering::Relaxed), TOTAL as u64);
    }

    #[tokio::test]
    async fn end_of_stream_is_relayed_after_the_data() {
        let proxy = DelayProxy::start(echo_server().await, DelayOpts::new(DELAY))
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"bye");
    }
}
