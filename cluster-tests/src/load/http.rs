//! A minimal HTTP/1.1 keep-alive client for the load generator: one connection per simulated
//! viewer, `GET` only, `Content-Length` or chunked bodies (nginx chunks what it gzips).
//!
//! It exists because the load generator shares two cores with the server it measures: a
//! general client (connection pool, header maps, body streams) would spend more CPU per request
//! than the server does. Bodies that are not needed are read into a per-connection scratch
//! buffer and counted, not kept.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body kept in memory (playlists); larger bodies are refused when asked to be kept.
const MAX_KEPT_BODY: usize = 4 * 1024 * 1024;

/// Why a request failed, by kind (the JSON report counts errors by these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchError {
    /// The TCP connect failed.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The server closed the connection before the answer was complete.
    Closed,
    /// A malformed or unsupported answer (no length, oversized head, bad chunk).
    Protocol,
    /// An answer with a status other than 200 (or 304).
    Status(u16),
}

impl FetchError {
    /// A stable name for reports: `connect`, `timeout`, `closed`, `protocol`, `http_404`, ...
    pub fn name(&self) -> String {
        match self {
            FetchError::Connect => "connect".into(),
            FetchError::Timeout => "timeout".into(),
            FetchError::Closed => "closed".into(),
            FetchError::Protocol => "protocol".into(),
            FetchError::Status(s) => format!("http_{s}"),
        }
    }
}

/// A complete answer.
#[derive(Debug, Default)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, when it was asked to be kept (otherwise empty).
    pub body: Vec<u8>,
    /// Body length in bytes (kept or not).
    pub len: usize,
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// When the last byte of the answer was read (before any decoding or parsing by the caller).
    pub at: Option<std::time::Instant>,
    /// When the head was complete (the first body bytes arrive with it or right after).
    pub head_at: Option<std::time::Instant>,
    /// `X-Cache-Status` of a caching proxy (`HIT`, `MISS`, ...; see [`cache_status`]), if sent.
    pub cache: Option<&'static str>,
}

/// The `X-Cache-Status` values nginx's `$upstream_cache_status` takes, interned so that a
/// viewer stores no string per request; anything else is `OTHER`.
pub fn cache_status(value: &[u8]) -> &'static str {
    const KNOWN: [&str; 7] = [
        "HIT",
        "MISS",
        "EXPIRED",
        "STALE",
        "UPDATING",
        "REVALIDATED",
        "BYPASS",
    ];
    KNOWN
        .into_iter()
        .find(|k| value.eq_ignore_ascii_case(k.as_bytes()))
        .unwrap_or("OTHER")
}

/// One keep-alive connection to one server.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sock: Option<TcpStream>,
    buf: Box<[u8]>,
    /// Bytes of `buf` read but not consumed: `buf[start..end]`.
    start: usize,
    end: usize,
    req: String,
    /// TCP connects made (a keep-alive client makes one unless the server closes).
    pub connects: u64,
}

impl Conn {
    /// A connection to `addr` (connected on first use), sending `Host: host`.
    pub fn new(addr: SocketAddr, host: &str) -> Conn {
        Conn {
            addr,
            host: host.to_owned(),
            sock: None,
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            req: String::with_capacity(512),
            connects: 0,
        }
    }

    /// Drop the connection (the next request reconnects).
    pub fn reset(&mut self) {
        self.sock = None;
        self.start = 0;
        self.end = 0;
    }

    /// `GET path` with `extra` header lines (each ending in `\r\n`), within `timeout`.
    /// Non-200/304 statuses are errors; the connection is dropped on any error.
    pub async fn get(
        &mut self,
        path: &str,
        extra: &str,
        keep_body: bool,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        let r = match tokio::time::timeout(timeout, self.exchange(path, extra, keep_body)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        };
        match r {
            Ok(a) if a.status == 200 || a.status == 304 => Ok(a),
            Ok(a) => Err(FetchError::Status(a.status)),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        extra: &str,
        keep_body: bool,
    ) -> Result<Answer, FetchError> {
        use std::fmt::Write;
        if self.sock.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(|_| FetchError::Connect)?;
            let _ = s.set_nodelay(true);
            self.sock = Some(s);
            self.connects += 1;
            self.start = 0;
            self.end = 0;
        }
        self.req.clear();
        let _ = write!(
            self.req,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hivecast-viewers\r\n{extra}\r\n",
            self.host
        );
        let sock = self.sock.as_mut().ok_or(FetchError::Closed)?;
        sock.write_all(self.req.as_bytes())
            .await
            .map_err(|_| FetchError::Closed)?;

        // The head.
        let (status, body_len, gzip, close, head_len, chunked, cache) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut len = None;
                    let mut gzip = false;
                    let mut close = false;
                    let mut chunked = false;
                    let mut cache = None;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("content-encoding") {
                            gzip = h.value.eq_ignore_ascii_case(b"gzip");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                            if !chunked {
                                return Err(FetchError::Protocol);
                            }
                        } else if h.name.eq_ignore_ascii_case("x-cache-status") {
                            cache = Some(cache_status(h.value));
                        }
                    }
                    let status = resp.code.unwrap_or(0);
                    let len = match (len, status, chunked) {
                        (_, _, true) => 0,
                        (Some(l), _, _) => l,
                        (None, 304, _) => 0,
                        (None, _, _) => return Err(FetchError::Protocol),
                    };
                    break (status, len, gzip, close, n, chunked, cache);
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start >= MAX_HEAD {
                        return Err(FetchError::Protocol);
                    }
                    self.fill().await?;
                }
                Err(_) => return Err(FetchError::Protocol),
            }
        };
        self.start += head_len;
        let head_at = Some(std::time::Instant::now());

        // The body.
        let keep = keep_body || status != 200;
        if keep && body_len > MAX_KEPT_BODY {
            return Err(FetchError::Protocol);
        }
        let mut body = Vec::with_capacity(if keep { body_len } else { 0 });
        let body_len = if chunked {
            let mut total = 0;
            loop {
                let line = self.line().await?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| FetchError::Protocol)?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                total += size;
                if keep && total > MAX_KEPT_BODY {
                    return Err(FetchError::Protocol);
                }
                self.body(size, keep.then_some(&mut body)).await?;
                if !self.line().await?.is_empty() {
                    return Err(FetchError::Protocol);
                }
            }
            total
        } else {
            self.body(body_len, keep.then_some(&mut body)).await?;
            body_len
        };
        if close {
            self.reset();
        }
        Ok(Answer {
            status,
            body,
            len: body_len,
            gzip,
            at: Some(std::time::Instant::now()),
            head_at,
            cache,
        })
    }

    /// Consume `len` body bytes, appending them to `keep` if given.
    async fn body(&mut self, len: usize, mut keep: Option<&mut Vec<u8>>) -> Result<(), FetchError> {
        let mut left = len;
        while left > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let take = left.min(self.end - self.start);
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += take;
            left -= take;
        }
        Ok(())
    }

    /// One CRLF-terminated line (without the CRLF), at most 1 KiB.
    async fn line(&mut self) -> Result<String, FetchError> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = std::str::from_utf8(&self.buf[self.start..self.start + i])
                    .map_err(|_| FetchError::Protocol)?
                    .to_owned();
                self.start += i + 2;
                return Ok(line);
            }
            if self.end - self.start > 1024 {
                return Err(FetchError::Protocol);
            }
            self.fill().await?;
        }
    }

    /// Read more bytes into the buffer (compacting it first).
    async fn fill(&mut self) -> Result<(), FetchError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let sock = self.sock.as_mut().ok_or(FetchError::Closed)?;
        match sock.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err(FetchError::Closed),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(FetchError::Timeout),
            Err(_) => Err(FetchError::Closed),
        }
    }
}

/// The body as text, gunzipped when it came gzip-encoded.
pub fn body_text(a: &Answer) -> Result<String, FetchError> {
    if a.gzip {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(&a.body[..])
            .read_to_string(&mut s)
            .map_err(|_| FetchError::Protocol)?;
        Ok(s)
    } else {
        String::from_utf8(a.body.clone()).map_err(|_| FetchError::Protocol)
    }
}
