//! Node-to-node transport: QUIC (quinn) with mutual TLS over one UDP socket per node.
//!
//! * **One socket.** [`Transport::bind`] opens a single UDP socket that is at the same time a
//!   QUIC server (peers connect to it) and a QUIC client (this node connects out from it), so a
//!   node needs exactly one cluster port and peers see requests coming from that port.
//! * **Mutual TLS with a shared cluster certificate.** Every node of a cluster holds the same
//!   self-signed certificate and key ([`ClusterTls`], DNS name [`CLUSTER_SERVER_NAME`]). That
//!   certificate is the only trust anchor on both sides: a node accepts only clients presenting
//!   a certificate that chains to it, and connects only to servers that do. Anything else fails
//!   the handshake before any application data is exchanged. TLS 1.3 only, ALPN [`ALPN`], and the
//!   only crypto provider is rustls' `ring` provider (never the process-wide default).
//! * **One bidirectional stream per request.** [`Transport::request`] opens (or reuses) one
//!   cached connection per peer address, opens a bidi stream, writes the request, finishes the
//!   send side and reads the response to its end. The peer's [`Transport::serve`] loop hands the
//!   request to a [`Handler`] and writes back whatever it returns. There is no framing beyond the
//!   stream itself: a request or response is exactly the bytes of its stream, so a stream that is
//!   cut short is *reset*, never finished (see "Failure" below).
//! * **Unidirectional streams for pushes.** [`Transport::open_uni`] returns a raw
//!   [`quinn::SendStream`] for long-lived one-way traffic (e.g. media replication); the peer
//!   receives it in [`Handler::on_uni`].
//!
//! Limits and timeouts:
//!
//! * a request or response is at most [`MAX_MESSAGE`] bytes; larger requests are refused
//!   locally, and a peer that receives too much stops/resets the stream with an error code that
//!   maps to [`TransportError::TooLarge`];
//! * [`Transport::request`] is bounded as a whole (connect included) by the caller's timeout;
//! * the server gives a client [`SERVER_READ_TIMEOUT`] to deliver a request;
//! * at most [`MAX_CONNECTIONS`] incoming connections are served at once, extra ones are
//!   refused;
//! * connections send keep-alives every second and are considered dead after 5 s of silence,
//!   so a crashed peer is noticed quickly and the next request reconnects; each connection
//!   allows 1024 concurrent bidi and 256 concurrent uni streams per direction.
//!
//! Failure: a request whose future is dropped (timeout, cancellation) or a handler that panics
//! resets its stream, so the other side sees an error and never a truncated message. A cached
//! connection that has closed (idle timeout, peer restart, error) is never reused.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ConnectError, Connection, ConnectionError, Endpoint, Incoming, ReadError, ReadToEndError,
    RecvStream, SendStream, VarInt, WriteError,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tracing::{debug, info, warn};

/// Largest request or response, in bytes.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// ALPN protocol spoken between nodes.
pub const ALPN: &[u8] = b"hivecast/1";

/// The DNS name (SAN) carried by the cluster certificate; clients verify servers against it.
pub const CLUSTER_SERVER_NAME: &str = "hivecast-cluster";

/// Most incoming connections served at once; further ones are refused.
pub const MAX_CONNECTIONS: usize = 256;

/// How long the server waits for a client to deliver a whole request.
pub const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep-alive interval of every connection.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Idle timeout of every connection, in milliseconds.
const IDLE_TIMEOUT_MS: u32 = 5_000;
/// Concurrent bidirectional streams a peer may open on one connection.
const MAX_BIDI_STREAMS: u32 = 1024;
/// Concurrent unidirectional streams a peer may open on one connection.
const MAX_UNI_STREAMS: u32 = 256;

/// File names used by [`ClusterTls::load_or_generate`].
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
const LOCK_FILE: &str = ".lock";
/// How long [`ClusterTls::load_or_generate`] waits for another process to finish generating.
const GENERATE_WAIT: Duration = Duration::from_secs(10);
const GENERATE_POLL: Duration = Duration::from_millis(50);

/// Application error codes used on QUIC streams and connections.
mod code {
    /// Endpoint shut down normally.
    pub const CLOSED: u32 = 0;
    /// The message exceeds the receiver's limit.
    pub const TOO_LARGE: u32 = 1;
    /// The server did not receive the whole request in time.
    pub const READ_TIMEOUT: u32 = 2;
    /// The exchange was abandoned (caller gave up, handler panicked, ...).
    pub const ABORTED: u32 = 3;
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket or file-system failure.
    #[error("i/o error: {0}")]
    Io(String),
    /// Bad certificate or key, or TLS configuration failure.
    #[error("TLS error: {0}")]
    Tls(String),
    /// No connection could be established to the peer (unreachable, handshake or certificate
    /// rejected, ...).
    #[error("cannot connect to {peer}: {error}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// What went wrong.
        error: String,
    },
    /// The operation did not complete within its timeout.
    #[error("timed out ({what}) with {peer}")]
    Timeout {
        /// The peer.
        peer: SocketAddr,
        /// The phase that timed out: `"connect"`, `"request"` or `"open stream"`.
        what: &'static str,
    },
    /// A request or response exceeds the size limit.
    #[error("message exceeds the {limit} byte limit")]
    TooLarge {
        /// The limit in bytes (this node's; every node of a cluster uses [`MAX_MESSAGE`]).
        limit: usize,
    },
    /// A stream failed after the connection was established (reset, connection lost, ...).
    #[error("stream error: {0}")]
    Stream(String),
    /// The transport has been closed.
    #[error("transport closed")]
    Closed,
}

fn io_error(what: &str, path: &Path, e: io::Error) -> TransportError {
    TransportError::Io(format!("{what} {}: {e}", path.display()))
}

fn tls_error(what: &str, e: impl fmt::Display) -> TransportError {
    TransportError::Tls(format!("{what}: {e}"))
}

/// The rustls crypto provider used everywhere in this module.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The cluster certificate: one self-signed certificate + key shared by every node of a
/// cluster (mutual TLS: a node accepts only peers presenting this same certificate, and
/// connects only to servers presenting it).
///
/// The certificate must carry the DNS name [`CLUSTER_SERVER_NAME`], be currently valid and be
/// usable for both server and client authentication; all constructors check this, and that the
/// key matches the certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("cert_der", &format_args!("<{} bytes>", self.cert_der.len()))
            .field("key_der", &format_args!("<redacted>"))
            .finish()
    }
}

/// Distinguishes temp files of concurrent generations within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The `.lock` file of [`ClusterTls::load_or_generate`]; removed on drop.
struct LockFile(PathBuf);

impl LockFile {
    /// Create the lock file exclusively; `None` if it already exists.
    fn try_acquire(path: &Path) -> Result<Option<Self>, TransportError> {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => {
                // Informational only (who holds the lock).
                let _ = writeln!(f, "{}", std::process::id());
                Ok(Some(Self(path.to_path_buf())))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(io_error("cannot create lock file", path, e)),
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            warn!(path = %self.0.display(), error = %e, "cannot remove lock file");
        }
    }
}

/// Write `data` to a new file `path` (which must not exist) with permissions `mode`, durably.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TransportError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| io_error("cannot create", path, e))?;
    #[cfg(unix)]
    {
        // The umask may have removed bits; set exactly what was asked.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("cannot set permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("cannot write", path, e))
}

fn exists(path: &Path) -> Result<bool, TransportError> {
    path.try_exists()
        .map_err(|e| io_error("cannot check", path, e))
}

impl ClusterTls {
    /// Load `cert.pem` and `key.pem` from `dir`; if neither exists, generate a fresh
    /// self-signed pair (ECDSA P-256, DNS name [`CLUSTER_SERVER_NAME`]) and write it there.
    ///
    /// Safe when several nodes start at once against the same shared directory: only the
    /// process that creates `dir/.lock` (exclusively) generates; it writes both files to
    /// temporary names and renames them into place (key first), so readers never see partial
    /// files. The others poll every 50 ms, for up to 10 s, until both files exist and parse, so
    /// everybody ends up with the same pair. `key.pem` is written with mode 0600. `dir` is
    /// created if missing.
    ///
    /// Blocking (file I/O and sleeps): from async code call it via `spawn_blocking`.
    ///
    /// Errors: only one of the two files exists for more than 10 s, the files do not hold a
    /// valid pair (see [`ClusterTls::from_pem_files`]), the lock is held for more than 10 s
    /// (e.g. left behind by a process that crashed while generating: delete `dir/.lock`), or
    /// I/O failures.
    pub fn load_or_generate(dir: &Path) -> Result<Self, TransportError> {
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create directory", dir, e))?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let lock_path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + GENERATE_WAIT;
        loop {
            let cert_exists = exists(&cert_path)?;
            let key_exists = exists(&key_path)?;
            if cert_exists && key_exists {
                match Self::from_pem_files(&cert_path, &key_path) {
                    Ok(tls) => return Ok(tls),
                    // Files are renamed into place complete, so a pair that does not parse is
                    // final, unless a generation is still under way.
                    Err(e) if !exists(&lock_path)? || Instant::now() >= deadline => return Err(e),
                    Err(_) => {}
                }
            }
            if !cert_exists && !key_exists {
                if let Some(lock) = LockFile::try_acquire(&lock_path)? {
                    // Another process may have finished (and released the lock) between our
                    // check and taking the lock: never generate over an existing pair.
                    if !exists(&cert_path)? && !exists(&key_path)? {
                        let tls = Self::generate_into(dir, &cert_path, &key_path)?;
                        drop(lock);
                        info!(dir = %dir.display(), "generated a new cluster certificate");
                        return Ok(tls);
                    }
                    drop(lock);
                    continue;
                }
            }
            // Someone else is generating (lock held), or is between the two renames.
            if Instant::now() >= deadline {
                let detail = if exists(&lock_path)? {
                    format!(
                        "{} is still held (if no node is starting, a node crashed while \
                         generating: delete it)",
                        lock_path.display()
                    )
                } else {
                    format!(
                        "only one of {} and {} exists (provide both or neither)",
                        cert_path.display(),
                        key_path.display()
                    )
                };
                return Err(TransportError::Io(format!(
                    "timed out after {GENERATE_WAIT:?} waiting for the cluster certificate in {}: \
                     {detail}",
                    dir.display()
                )));
            }
            std::thread::sleep(GENERATE_POLL);
        }
    }

    /// Generate a pair and write it to `cert_path`/`key_path` (caller holds the lock and
    /// checked that neither exists).
    fn generate_into(
        dir: &Path,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, TransportError> {
        let (tls, cert_pem, key_pem) = Self::generate_pem()?;
        let unique = format!(
            "{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let key_tmp = dir.join(format!(".{KEY_FILE}.{unique}.tmp"));
        let cert_tmp = dir.join(format!(".{CERT_FILE}.{unique}.tmp"));
        let result = (|| {
            write_new_file(&key_tmp, key_pem.as_bytes(), 0o600)?;
            write_new_file(&cert_tmp, cert_pem.as_bytes(), 0o644)?;
            // Key first: a reader only loads once both exist.
            fs::rename(&key_tmp, key_path).map_err(|e| io_error("cannot create", key_path, e))?;
            fs::rename(&cert_tmp, cert_path).map_err(|e| io_error("cannot create", cert_path, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&key_tmp);
            let _ = fs::remove_file(&cert_tmp);
        }
        result?;
        // Make the renames durable; best effort (not every platform can fsync a directory).
        if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
            debug!(dir = %dir.display(), error = %e, "cannot fsync directory");
        }
        Ok(tls)
    }

    /// From PEM files given explicitly (configured certificate). The certificate file's first
    /// `CERTIFICATE` block is used; the key must be PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let cert_pem = fs::read(cert).map_err(|e| io_error("cannot read", cert, e))?;
        let key_pem = fs::read(key).map_err(|e| io_error("cannot read", key, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = fs::metadata(key) {
                if meta.permissions().mode() & 0o077 != 0 {
                    warn!(path = %key.display(), "cluster key is readable by group/others; chmod 600 it");
                }
            }
        }
        let cert_der = CertificateDer::from_pem_slice(&cert_pem)
            .map_err(|e| tls_error(&format!("no certificate in {}", cert.display()), e))?;
        let key_der = match PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| tls_error(&format!("no private key in {}", key.display()), e))?
        {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => {
                return Err(TransportError::Tls(format!(
                    "{}: the key must be PKCS#8 (\"BEGIN PRIVATE KEY\"); convert it with \
                     `openssl pkcs8 -topk8 -nocrypt`",
                    key.display()
                )))
            }
        };
        let tls = Self {
            cert_der: cert_der.to_vec(),
            key_der,
        };
        tls.validate().map_err(|e| match e {
            TransportError::Tls(m) => {
                TransportError::Tls(format!("{} / {}: {m}", cert.display(), key.display()))
            }
            other => other,
        })?;
        Ok(tls)
    }

    /// Generate a fresh pair in memory (tests, or callers that persist it themselves).
    #[allow(dead_code)] // public API; not every build of the node calls it yet
    pub fn generate() -> Result<Self, TransportError> {
        Self::generate_pem().map(|(tls, _, _)| tls)
    }

    /// Generate a pair; also returns the certificate and key as PEM.
    fn generate_pem() -> Result<(Self, String, String), TransportError> {
        let gen_err = |e: rcgen::Error| tls_error("cannot generate the cluster certificate", e);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_string()])
            .map_err(gen_err)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "hivecast cluster");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let tls = Self {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        Ok((tls, cert.pem(), key.serialize_pem()))
    }

    fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A root store whose only trust anchor is this certificate.
    fn roots(&self) -> Result<Arc<RootCertStore>, TransportError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert())
            .map_err(|e| tls_error("unusable cluster certificate", e))?;
        Ok(Arc::new(roots))
    }

    /// Check that the key matches the certificate and that the certificate verifies, against
    /// itself, as a server (for [`CLUSTER_SERVER_NAME`]) and as a client, right now.
    fn validate(&self) -> Result<(), TransportError> {
        let provider = provider();
        CertifiedKey::from_der(vec![self.cert()], self.key(), &provider)
            .map_err(|e| tls_error("certificate and key do not form a usable pair", e))?;
        let roots = self.roots()?;
        let name = ServerName::try_from(CLUSTER_SERVER_NAME)
            .map_err(|e| tls_error("invalid cluster server name", e))?;
        let now = UnixTime::now();
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error("cannot build server verifier", e))?
            .verify_server_cert(&self.cert(), &[], &name, &[], now)
            .map_err(|e| {
                tls_error(
                    &format!(
                        "the cluster certificate must be self-signed, currently valid and carry \
                         the DNS name {CLUSTER_SERVER_NAME}"
                    ),
                    e,
                )
            })?;
        WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| tls_error("cannot build client verifier", e))?
            .verify_client_cert(&self.cert(), &[], now)
            .map_err(|e| {
                tls_error(
                    "the cluster certificate must be usable for client authentication",
                    e,
                )
            })?;
        Ok(())
    }
}

/// What the node does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request from `from` (the peer's cluster socket address). Whatever is
    /// returned is sent back as the response (at most [`MAX_MESSAGE`] bytes, otherwise the
    /// stream is reset and the requester gets [`TransportError::TooLarge`]).
    fn handle(&self, from: SocketAddr, req: Bytes) -> BoxFuture<'static, Bytes>;

    /// A request that opens a long-lived push (see [`Transport::subscribe`]): return the task
    /// that writes it, given the stream's send side, or `None` to answer with
    /// [`Handler::handle`] as usual. The task owns the stream: it writes length-prefixed frames
    /// and finishes (or resets) it; the peer reads until the end.
    fn open_stream(&self, from: SocketAddr, req: &Bytes) -> Option<StreamTask> {
        let _ = (from, req);
        None
    }

    /// Consume a unidirectional stream opened by `from` (see [`Transport::open_uni`]).
    /// Runs in its own task. The default drops (stops) the stream.
    fn on_uni(&self, from: SocketAddr, stream: RecvStream) -> BoxFuture<'static, ()> {
        let _ = from;
        drop(stream);
        Box::pin(async {})
    }
}

/// Writes a long-lived push on a stream's send side (see [`Handler::open_stream`]).
pub type StreamTask = Box<dyn FnOnce(SendStream) -> BoxFuture<'static, ()> + Send>;

/// A send stream that is reset (not finished) if dropped before [`SendGuard::finish`], so the
/// peer never takes a truncated message for a complete one (quinn finishes streams on drop).
struct SendGuard {
    /// `None` only after [`SendGuard::into_stream`].
    inner: Option<SendStream>,
    armed: bool,
}

impl SendGuard {
    fn new(stream: SendStream) -> Self {
        Self {
            inner: Some(stream),
            armed: true,
        }
    }

    /// The stream, for writing.
    fn stream(&mut self) -> &mut SendStream {
        // Only `into_stream` (which consumes the guard) takes it out.
        self.inner
            .as_mut()
            .expect("stream present until into_stream")
    }

    /// Finish the stream (normal end of message).
    fn finish(mut self) -> Result<(), quinn::ClosedStream> {
        self.armed = false;
        self.stream().finish()
    }

    /// Hand the stream over to its new owner (who finishes or resets it).
    fn into_stream(mut self) -> SendStream {
        self.armed = false;
        self.inner.take().expect("stream present until into_stream")
    }

    /// Reset the stream with `code`.
    fn reset(mut self, code: u32) {
        self.armed = false;
        let _ = self.stream().reset(VarInt::from_u32(code));
    }
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        if let (true, Some(s)) = (self.armed, self.inner.as_mut()) {
            let _ = s.reset(VarInt::from_u32(code::ABORTED));
        }
    }
}

/// Per-peer connection slot: the lock is held while connecting, so concurrent requests to one
/// peer share one connection attempt, while different peers connect in parallel.
type Slot = Arc<AsyncMutex<Option<Connection>>>;

/// The node-to-node QUIC transport: one UDP socket, server and client at once.
pub struct Transport {
    endpoint: Endpoint,
    client_config: quinn::ClientConfig,
    conns: StdMutex<HashMap<SocketAddr, Slot>>,
    local_addr: SocketAddr,
    max_message: usize,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.local_addr)
            .field("open_connections", &self.endpoint.open_connections())
            .finish()
    }
}

fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(VarInt::from_u32(IDLE_TIMEOUT_MS).into()))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS));
    t
}

/// Build the quinn server and client configs: present `identity`, trust only `trust`.
fn quic_configs(
    identity: &ClusterTls,
    trust: &ClusterTls,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let provider = provider();
    let roots = trust.roots()?;

    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| tls_error("cannot build client verifier", e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("server config", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert()], identity.key())
        .map_err(|e| tls_error("server certificate", e))?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("client config", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.cert()], identity.key())
        .map_err(|e| tls_error("client certificate", e))?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let transport = Arc::new(transport_config());
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(|e| tls_error("QUIC server config", e))?,
    ));
    server_config.transport_config(transport.clone());
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).map_err(|e| tls_error("QUIC client config", e))?,
    ));
    client_config.transport_config(transport);
    Ok((server_config, client_config))
}

/// Map a stream read failure.
fn read_error(peer: SocketAddr, e: ReadToEndError, limit: usize) -> TransportError {
    match e {
        ReadToEndError::TooLong => TransportError::TooLarge { limit },
        ReadToEndError::Read(ReadError::Reset(c)) if c == VarInt::from_u32(code::TOO_LARGE) => {
            TransportError::TooLarge { limit }
        }
        ReadToEndError::Read(ReadError::Reset(c)) if c == VarInt::from_u32(code::READ_TIMEOUT) => {
            TransportError::Stream(format!("{peer} timed out reading our request"))
        }
        ReadToEndError::Read(ReadError::Reset(c)) if c == VarInt::from_u32(code::ABORTED) => {
            TransportError::Stream(format!("{peer} aborted the request (handler failed)"))
        }
        ReadToEndError::Read(ReadError::ConnectionLost(c)) => connection_lost(peer, c),
        other => TransportError::Stream(format!("reading response from {peer}: {other}")),
    }
}

/// Map a stream write failure.
fn write_error(peer: SocketAddr, e: WriteError, limit: usize) -> TransportError {
    match e {
        WriteError::Stopped(c) if c == VarInt::from_u32(code::TOO_LARGE) => {
            TransportError::TooLarge { limit }
        }
        WriteError::ConnectionLost(c) => connection_lost(peer, c),
        other => TransportError::Stream(format!("writing request to {peer}: {other}")),
    }
}

fn connection_lost(peer: SocketAddr, e: ConnectionError) -> TransportError {
    match e {
        ConnectionError::LocallyClosed => TransportError::Closed,
        other => TransportError::Stream(format!("connection to {peer} lost: {other}")),
    }
}

impl Transport {
    /// Bind one UDP socket at `listen` acting as QUIC server and client, with `tls` as both
    /// identity and sole trust anchor (see the module docs). Must be called within a Tokio
    /// runtime. Call [`Transport::serve`] to answer peers.
    pub fn bind(listen: SocketAddr, tls: &ClusterTls) -> Result<Arc<Self>, TransportError> {
        Self::bind_with(listen, tls, tls, MAX_MESSAGE)
    }

    /// [`Transport::bind`] with a separate trust anchor and message limit (tests).
    fn bind_with(
        listen: SocketAddr,
        identity: &ClusterTls,
        trust: &ClusterTls,
        max_message: usize,
    ) -> Result<Arc<Self>, TransportError> {
        identity.validate()?;
        let (server_config, client_config) = quic_configs(identity, trust)?;
        let endpoint = Endpoint::server(server_config, listen)
            .map_err(|e| TransportError::Io(format!("cannot bind UDP {listen}: {e}")))?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| TransportError::Io(format!("local address of UDP {listen}: {e}")))?;
        debug!(%local_addr, "cluster transport bound");
        Ok(Arc::new(Self {
            endpoint,
            client_config,
            conns: StdMutex::new(HashMap::new()),
            local_addr,
            max_message,
        }))
    }

    /// The bound address (useful when binding port 0 in tests).
    #[allow(dead_code)] // public API; not every build of the node calls it yet
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The cached connection to `peer` if still open, else a new one (cached).
    async fn connection(&self, peer: SocketAddr) -> Result<Connection, TransportError> {
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            conns.entry(peer).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref() {
            match conn.close_reason() {
                None => return Ok(conn.clone()),
                Some(reason) => {
                    debug!(%peer, %reason, "cached connection closed; reconnecting");
                    *cached = None;
                }
            }
        }
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), peer, CLUSTER_SERVER_NAME)
            .map_err(|e| match e {
                ConnectError::EndpointStopping => TransportError::Closed,
                other => TransportError::Connect {
                    peer,
                    error: other.to_string(),
                },
            })?;
        let conn = connecting.await.map_err(|e| match e {
            ConnectionError::LocallyClosed => TransportError::Closed,
            other => TransportError::Connect {
                peer,
                error: other.to_string(),
            },
        })?;
        debug!(%peer, "connected");
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// Drop `conn` from the cache if it is closed and still the cached one.
    fn evict_if_closed(&self, peer: SocketAddr, conn: &Connection) {
        if conn.close_reason().is_none() {
            return;
        }
        let slot = {
            let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            conns.get(&peer).cloned()
        };
        // If the slot is busy someone is using or replacing it; the reuse check covers it.
        let Some(slot) = slot else { return };
        let Ok(mut cached) = slot.try_lock() else {
            return;
        };
        if cached.as_ref().map(Connection::stable_id) == Some(conn.stable_id()) {
            *cached = None;
        }
    }

    /// One request/response exchange with `peer`: open (or reuse a cached) connection, open a
    /// bidi stream, write `req`, finish, and read the response to its end (at most
    /// [`MAX_MESSAGE`] bytes). The whole exchange, connecting included, is bounded by
    /// `timeout`. A connection that failed is dropped from the cache, so the next call
    /// reconnects. Not retried: if it fails, the peer may or may not have handled the request.
    pub async fn request(
        &self,
        peer: SocketAddr,
        req: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let limit = self.max_message;
        let deadline = tokio::time::Instant::now() + timeout;
        let (conn, mut recv) = self.send_request(peer, req, deadline).await?;
        let result = match tokio::time::timeout_at(deadline, recv.read_to_end(limit)).await {
            Ok(Ok(resp)) => Ok(Bytes::from(resp)),
            Ok(Err(e)) => Err(read_error(peer, e, limit)),
            Err(_) => Err(TransportError::Timeout {
                peer,
                what: "request",
            }),
        };
        if result.is_err() {
            self.evict_if_closed(peer, &conn);
        }
        result
    }

    /// Send `req` on a new bidi stream and return its receive side: the peer's
    /// [`Handler::open_stream`] task pushes frames on it until it ends. Connecting, opening and
    /// writing the request are bounded by `timeout`; reading is the caller's (with its own
    /// deadlines).
    pub async fn subscribe(
        &self,
        peer: SocketAddr,
        req: &[u8],
        timeout: Duration,
    ) -> Result<RecvStream, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        Ok(self.send_request(peer, req, deadline).await?.1)
    }

    /// Connect (or reuse the cached connection), open a bidi stream, write `req` and finish
    /// the send side, all by `deadline`. On failure a closed connection leaves the cache.
    async fn send_request(
        &self,
        peer: SocketAddr,
        req: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<(Connection, RecvStream), TransportError> {
        let limit = self.max_message;
        if req.len() > limit {
            return Err(TransportError::TooLarge { limit });
        }
        let conn = tokio::time::timeout_at(deadline, self.connection(peer))
            .await
            .map_err(|_| TransportError::Timeout {
                peer,
                what: "connect",
            })??;
        let open = async {
            let (send, recv) = conn.open_bi().await.map_err(|e| connection_lost(peer, e))?;
            let mut send = SendGuard::new(send);
            send.stream()
                .write_all(req)
                .await
                .map_err(|e| write_error(peer, e, limit))?;
            send.finish()
                .map_err(|e| TransportError::Stream(format!("finishing request to {peer}: {e}")))?;
            Ok(recv)
        };
        match tokio::time::timeout_at(deadline, open).await {
            Ok(Ok(recv)) => Ok((conn, recv)),
            Ok(Err(e)) => {
                self.evict_if_closed(peer, &conn);
                Err(e)
            }
            Err(_) => {
                self.evict_if_closed(peer, &conn);
                Err(TransportError::Timeout {
                    peer,
                    what: "request",
                })
            }
        }
    }

    /// Open a unidirectional stream to `peer` (for long-lived pushes, e.g. media
    /// replication), over the cached connection. Connecting and opening are bounded by
    /// `timeout`. The peer sees the stream (in [`Handler::on_uni`]) once data is written.
    /// Finish it with [`SendStream::finish`]; note that dropping it also finishes it, so call
    /// [`SendStream::reset`] to abandon a push.
    #[allow(dead_code)] // public API; not every build of the node calls it yet
    pub async fn open_uni(
        &self,
        peer: SocketAddr,
        timeout: Duration,
    ) -> Result<SendStream, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = tokio::time::timeout_at(deadline, self.connection(peer))
            .await
            .map_err(|_| TransportError::Timeout {
                peer,
                what: "connect",
            })??;
        let result = match tokio::time::timeout_at(deadline, conn.open_uni()).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(connection_lost(peer, e)),
            Err(_) => Err(TransportError::Timeout {
                peer,
                what: "open stream",
            }),
        };
        if result.is_err() {
            self.evict_if_closed(peer, &conn);
        }
        result
    }

    /// Accept loop: serve every incoming connection (at most [`MAX_CONNECTIONS`] at once,
    /// extra ones are refused) and every bidi stream on it (a task each): read the request
    /// (at most [`MAX_MESSAGE`] bytes, within [`SERVER_READ_TIMEOUT`]), call
    /// [`Handler::handle`], write the response and finish. Incoming uni streams go to
    /// [`Handler::on_uni`] (a task each). Errors are logged, never fatal. Returns once
    /// [`Transport::close`] has been called.
    pub async fn serve(self: Arc<Self>, handler: Arc<dyn Handler>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        while let Some(incoming) = self.endpoint.accept().await {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                warn!(
                    remote = %incoming.remote_address(),
                    limit = MAX_CONNECTIONS,
                    "too many cluster connections; refusing"
                );
                incoming.refuse();
                continue;
            };
            let handler = handler.clone();
            let max_message = self.max_message;
            tokio::spawn(async move {
                serve_connection(incoming, handler, max_message).await;
                drop(permit);
            });
        }
        debug!(local_addr = %self.local_addr, "cluster transport closed; accept loop ends");
    }

    /// Close the endpoint and all its connections immediately. In-flight requests fail,
    /// later ones return [`TransportError::Closed`], and [`Transport::serve`] returns.
    pub fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(code::CLOSED), b"node shutting down");
    }
}

fn log_connection_end(remote: SocketAddr, e: &ConnectionError) {
    match e {
        ConnectionError::ApplicationClosed(_)
        | ConnectionError::LocallyClosed
        | ConnectionError::TimedOut
        | ConnectionError::Reset => debug!(%remote, reason = %e, "peer connection ended"),
        other => debug!(%remote, error = %other, "peer connection failed"),
    }
}

/// Serve one incoming connection until it closes.
async fn serve_connection(incoming: Incoming, handler: Arc<dyn Handler>, max_message: usize) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Includes peers with the wrong certificate; they see the error on their side.
            debug!(%remote, error = %e, "incoming cluster handshake failed");
            return;
        }
    };
    debug!(%remote, "peer connected");
    let uni = {
        let conn = conn.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            // Ends when the connection closes (logged by the bidi loop).
            while let Ok(stream) = conn.accept_uni().await {
                tokio::spawn(handler.on_uni(remote, stream));
            }
        })
    };
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    remote,
                    send,
                    recv,
                    handler.clone(),
                    max_message,
                ));
            }
            Err(e) => {
                log_connection_end(remote, &e);
                break;
            }
        }
    }
    if let Err(e) = uni.await {
        warn!(%remote, error = %e, "uni-stream accept task failed");
    }
}

/// Serve one request stream.
async fn serve_stream(
    remote: SocketAddr,
    send: SendStream,
    mut recv: RecvStream,
    handler: Arc<dyn Handler>,
    max_message: usize,
) {
    // Reset (not finished) on any early return or handler panic.
    let mut send = SendGuard::new(send);
    let req = match tokio::time::timeout(SERVER_READ_TIMEOUT, recv.read_to_end(max_message)).await {
        Ok(Ok(req)) => Bytes::from(req),
        Ok(Err(ReadToEndError::TooLong)) => {
            warn!(%remote, limit = max_message, "cluster request too large; refused");
            let _ = recv.stop(VarInt::from_u32(code::TOO_LARGE));
            send.reset(code::TOO_LARGE);
            return;
        }
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "reading cluster request failed");
            return;
        }
        Err(_) => {
            debug!(%remote, "cluster request not received in time");
            let _ = recv.stop(VarInt::from_u32(code::READ_TIMEOUT));
            send.reset(code::READ_TIMEOUT);
            return;
        }
    };
    if let Some(task) = handler.open_stream(remote, &req) {
        task(send.into_stream()).await;
        return;
    }
    let resp = handler.handle(remote, req).await;
    if resp.len() > max_message {
        warn!(
            %remote,
            len = resp.len(),
            limit = max_message,
            "cluster response too large; stream reset"
        );
        send.reset(code::TOO_LARGE);
        return;
    }
    if let Err(e) = send.stream().write_all(&resp).await {
        debug!(%remote, error = %e, "writing cluster response failed");
        return;
    }
    if let Err(e) = send.finish() {
        debug!(%remote, error = %e, "finishing cluster response failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::mpsc;

    const T: Duration = Duration::from_secs(5);

    fn lo() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    type UniRx = mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>;

    /// Echo handler: returns the request reversed; `big:N` returns N bytes; uni streams are
    /// forwarded to a channel.
    struct Echo {
        calls: AtomicUsize,
        from: StdMutex<Vec<SocketAddr>>,
        uni: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    }

    impl Echo {
        fn new() -> (Arc<Self>, UniRx) {
            let (tx, rx) = mpsc::unbounded_channel();
            let echo = Arc::new(Self {
                calls: AtomicUsize::new(0),
                from: StdMutex::new(Vec::new()),
                uni: tx,
            });
            (echo, rx)
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Handler for Echo {
        fn handle(&self, from: SocketAddr, req: Bytes) -> BoxFuture<'static, Bytes> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.from.lock().unwrap().push(from);
            Box::pin(async move {
                if let Some(n) = req.strip_prefix(b"big:") {
                    let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
                    return Bytes::from(vec![7u8; n]);
                }
                if req.as_ref() == b"panic" {
                    panic!("handler panic (test)");
                }
                let mut v = req.to_vec();
                v.reverse();
                Bytes::from(v)
            })
        }

        fn on_uni(&self, from: SocketAddr, mut stream: RecvStream) -> BoxFuture<'static, ()> {
            let tx = self.uni.clone();
            Box::pin(async move {
                let data = stream.read_to_end(1 << 20).await.unwrap();
                tx.send((from, data)).unwrap();
            })
        }
    }

    /// A transport serving an [`Echo`].
    fn server(
        tls: &ClusterTls,
        limit: usize,
    ) -> (
        Arc<Transport>,
        Arc<Echo>,
        UniRx,
        tokio::task::JoinHandle<()>,
    ) {
        let t = Transport::bind_with(lo(), tls, tls, limit).unwrap();
        let (echo, rx) = Echo::new();
        let task = tokio::spawn(t.clone().serve(echo.clone()));
        (t, echo, rx, task)
    }

    #[tokio::test]
    async fn echo_round_trip_reuses_connection() {
        let tls = ClusterTls::generate().unwrap();
        let (a, echo, _rx, _task) = server(&tls, MAX_MESSAGE);
        let b = Transport::bind(lo(), &tls).unwrap();

        let r1 = b.request(a.local_addr(), b"hello", T).await.unwrap();
        assert_eq!(&r1[..], b"olleh");
        let r2 = b.request(a.local_addr(), b"abc", T).await.unwrap();
        assert_eq!(&r2[..], b"cba");
        let r3 = b.request(a.local_addr(), b"", T).await.unwrap();
        assert!(r3.is_empty());
        assert_eq!(echo.calls(), 3);
        // Requests come from B's one socket, over one connection.
        assert_eq!(*echo.from.lock().unwrap(), vec![b.local_addr(); 3]);
        assert_eq!(a.endpoint.open_connections(), 1);
        assert_eq!(b.endpoint.open_connections(), 1);

        // Many concurrent requests share it too.
        let futs = (0..50u32).map(|i| {
            let b = b.clone();
            let peer = a.local_addr();
            async move {
                let req = format!("req-{i}");
                let resp = b.request(peer, req.as_bytes(), T).await.unwrap();
                let mut expect = req.into_bytes();
                expect.reverse();
                assert_eq!(&resp[..], &expect[..]);
            }
        });
        futures_util::future::join_all(futs).await;
        assert_eq!(echo.calls(), 53);
        assert_eq!(b.endpoint.open_connections(), 1);
    }

    #[tokio::test]
    async fn reconnects_after_peer_restart() {
        let tls = ClusterTls::generate().unwrap();
        let (a, _echo, _rx, task) = server(&tls, MAX_MESSAGE);
        let addr = a.local_addr();
        let b = Transport::bind(lo(), &tls).unwrap();
        assert_eq!(&b.request(addr, b"ab", T).await.unwrap()[..], b"ba");

        a.close();
        tokio::time::timeout(T, task).await.unwrap().unwrap();
        drop(a);
        // Let the close reach B, then restart A on the same port.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a2 = Transport::bind(addr, &tls).unwrap();
        let (echo2, _rx2) = Echo::new();
        tokio::spawn(a2.clone().serve(echo2.clone()));
        assert_eq!(&b.request(addr, b"xy", T).await.unwrap()[..], b"yx");
        assert_eq!(echo2.calls(), 1);
    }

    #[tokio::test]
    async fn foreign_certificate_is_rejected() {
        let tls = ClusterTls::generate().unwrap();
        let (a, echo, _rx, _task) = server(&tls, MAX_MESSAGE);
        let other = ClusterTls::generate().unwrap();
        assert_ne!(tls.cert_der, other.cert_der);

        // Different cluster: the client rejects A's certificate.
        let c = Transport::bind(lo(), &other).unwrap();
        let start = Instant::now();
        let err = c
            .request(a.local_addr(), b"hi", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");

        // A client that trusts A but presents a foreign certificate: A rejects it.
        let d = Transport::bind_with(lo(), &other, &tls, MAX_MESSAGE).unwrap();
        let start = Instant::now();
        let err = d
            .request(a.local_addr(), b"hi", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");

        // And A, as a client, refuses to talk to a foreign server.
        let (e, echo_e, _rx_e, _task_e) = server(&other, MAX_MESSAGE);
        let err = a
            .request(e.local_addr(), b"hi", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");

        assert_eq!(echo.calls(), 0);
        assert_eq!(echo_e.calls(), 0);
    }

    #[tokio::test]
    async fn closed_port_fails_within_timeout() {
        let tls = ClusterTls::generate().unwrap();
        let b = Transport::bind(lo(), &tls).unwrap();
        let port = std::net::UdpSocket::bind(lo())
            .unwrap()
            .local_addr()
            .unwrap();
        let start = Instant::now();
        let err = b
            .request(port, b"hi", Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{err}");
        let start = Instant::now();
        let err = b
            .open_uni(port, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{err}");
    }

    #[tokio::test]
    async fn large_messages_and_limits() {
        let tls = ClusterTls::generate().unwrap();
        let (a, echo, _rx, _task) = server(&tls, MAX_MESSAGE);
        let b = Transport::bind(lo(), &tls).unwrap();

        // 2 MiB each way, intact.
        let req: Vec<u8> = (0..2 * 1024 * 1024u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let resp = b.request(a.local_addr(), &req, T).await.unwrap();
        let mut expect = req.clone();
        expect.reverse();
        assert_eq!(resp.len(), expect.len());
        assert!(resp[..] == expect[..]);

        // Over the local limit: refused before sending.
        let small = Transport::bind_with(lo(), &tls, &tls, 64 * 1024).unwrap();
        let err = small
            .request(a.local_addr(), &vec![0u8; 64 * 1024 + 1], T)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::TooLarge { limit: 65536 }),
            "{err}"
        );
        // A response over the local limit.
        let err = small
            .request(a.local_addr(), b"big:70000", T)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::TooLarge { limit: 65536 }),
            "{err}"
        );
        let calls = echo.calls();

        // Over the server's limit: the server refuses it without calling the handler.
        let (s, echo_s, _rx_s, _task_s) = server(&tls, 64 * 1024);
        let err = b
            .request(s.local_addr(), &vec![1u8; 200 * 1024], T)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::TooLarge { .. }), "{err}");
        assert_eq!(echo_s.calls(), 0);
        // The server's own response limit.
        let err = b
            .request(s.local_addr(), b"big:70000", T)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::TooLarge { .. }), "{err}");
        // The connection is still fine.
        assert_eq!(
            &b.request(s.local_addr(), b"ok", T).await.unwrap()[..],
            b"ko"
        );
        assert_eq!(echo.calls(), calls);
    }

    #[tokio::test]
    async fn handler_panic_resets_the_stream() {
        let tls = ClusterTls::generate().unwrap();
        let (a, _echo, _rx, _task) = server(&tls, MAX_MESSAGE);
        let b = Transport::bind(lo(), &tls).unwrap();
        let err = b.request(a.local_addr(), b"panic", T).await.unwrap_err();
        assert!(matches!(err, TransportError::Stream(_)), "{err}");
        assert_eq!(
            &b.request(a.local_addr(), b"12", T).await.unwrap()[..],
            b"21"
        );
    }

    #[tokio::test]
    async fn uni_stream_reaches_handler() {
        let tls = ClusterTls::generate().unwrap();
        let (a, _echo, mut rx, _task) = server(&tls, MAX_MESSAGE);
        let b = Transport::bind(lo(), &tls).unwrap();
        let mut s = b.open_uni(a.local_addr(), T).await.unwrap();
        s.write_all(b"segment-1 ").await.unwrap();
        s.write_all(b"segment-2").await.unwrap();
        s.finish().unwrap();
        let (from, data) = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        assert_eq!(from, b.local_addr());
        assert_eq!(data, b"segment-1 segment-2");
    }

    #[tokio::test]
    async fn close_ends_serve_and_fails_requests() {
        let tls = ClusterTls::generate().unwrap();
        let (a, _echo, _rx, task) = server(&tls, MAX_MESSAGE);
        let b = Transport::bind(lo(), &tls).unwrap();
        b.request(a.local_addr(), b"x", T).await.unwrap();
        a.close();
        tokio::time::timeout(T, task).await.unwrap().unwrap();
        b.close();
        let err = b.request(a.local_addr(), b"x", T).await.unwrap_err();
        assert!(matches!(err, TransportError::Closed), "{err}");
    }

    #[test]
    fn load_or_generate_is_race_free_and_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cluster-tls");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    ClusterTls::load_or_generate(&dir).unwrap()
                })
            })
            .collect();
        let pairs: Vec<ClusterTls> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for p in &pairs[1..] {
            assert!(p == &pairs[0]);
        }
        let again = ClusterTls::load_or_generate(&dir).unwrap();
        assert!(again == pairs[0]);
        let explicit =
            ClusterTls::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
        assert!(explicit == pairs[0]);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the pair is left behind (no lock, no temp files).
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cert.pem", "key.pem"]);
    }

    #[test]
    fn bad_pairs_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        ClusterTls::load_or_generate(&one).unwrap();
        ClusterTls::load_or_generate(&two).unwrap();
        // Key of another pair.
        let err =
            ClusterTls::from_pem_files(&one.join("cert.pem"), &two.join("key.pem")).unwrap_err();
        assert!(matches!(err, TransportError::Tls(_)), "{err}");
        // Not PEM.
        fs::write(tmp.path().join("junk.pem"), b"junk").unwrap();
        assert!(
            ClusterTls::from_pem_files(&tmp.path().join("junk.pem"), &one.join("key.pem")).is_err()
        );
        // A certificate without the cluster name.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.org".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bad = ClusterTls {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        assert!(matches!(bad.validate(), Err(TransportError::Tls(_))));
    }

    #[test]
    fn debug_redacts_key() {
        let tls = ClusterTls::generate().unwrap();
        let s = format!("{tls:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains(&format!("{:?}", &tls.key_der[..8])));
    }
}
