//! TLS for the HTTPS and RTMPS listeners (`[tls]`): certificates, their reload and the TLS
//! accept loop (the HTTP server over it is `crate::http::server`, shared with the plain port).
//!
//! What it owns:
//! - [`Tls::setup`]: finds the certificate and key (`tls.cert`/`tls.key`, or in development with
//!   `tls.self_signed` a certificate for `localhost`, `127.0.0.1` and `::1` generated once into
//!   `<data_dir>/tls/` with rcgen and reused after) and builds the two rustls server configs:
//!   HTTPS offers ALPN `h2` then `http/1.1`; RTMPS offers no ALPN (RTMP has no ALPN id, and
//!   encoders send none).
//! - [`CertStore`]: the certificate both configs present, behind a custom `ResolvesServerCert`,
//!   so that a reload swaps it for new handshakes without touching open connections.
//!   [`watch_reloads`] reloads on SIGHUP and when the cert or key file changes (polled every
//!   [`RELOAD_POLL`]); a failed reload is logged and the old certificate stays.
//! - [`TlsListener`]: TCP accept plus handshake, each handshake in its own task under
//!   [`HANDSHAKE_TIMEOUT`], finished streams handed over through a bounded queue, so a slow or
//!   silent client never holds up the others.
//! - [`https_only`]: the `tls.admin_https_only` middleware for the plain-HTTP listener.
//!
//! Invariants: one crypto provider, rustls's `ring`, passed explicitly to every config (no
//! process-wide default is installed or read; aws-lc-rs is not in the build). No certificate
//! material is logged, only the subject, expiry and SHA-256 fingerprint of the leaf.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::config::TlsSection;
use crate::http::error::ApiError;

/// How often the certificate and key files are checked for changes (mtime, length, inode).
pub const RELOAD_POLL: Duration = Duration::from_secs(2);
/// A TLS handshake on the HTTPS port must finish within this, or the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTPS handshakes in flight at once; past it the accept loop waits (connections then queue in
/// the kernel's backlog), so a flood of silent clients costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 128;
/// The `error` code of [`https_only`]'s 403.
pub const HTTPS_REQUIRED: &str = "https_required";

/// What can go wrong setting up TLS or reloading its certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A generated certificate or key could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The certificate file holds no usable PEM `CERTIFICATE`.
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key file holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{path}: no PEM private key found ({detail})")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// rustls refused the pair: an unsupported key type, or a key that does not belong to the
    /// certificate.
    #[error("certificate {cert} with key {key}: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The self-signed development certificate could not be generated.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the server configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    /// `[tls]` names no certificate and `self_signed` is off.
    #[error("TLS is not configured: set tls.cert and tls.key, or tls.self_signed = true")]
    NotConfigured,
}

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// The certificate and key files in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Everything the TLS listeners need, built once at start-up.
pub struct Tls {
    /// The certificate both listeners present; reloaded by [`watch_reloads`].
    pub store: Arc<CertStore>,
    /// HTTPS: ALPN `h2`, `http/1.1`.
    pub https: TlsAcceptor,
    /// RTMPS: no ALPN.
    pub rtmps: TlsAcceptor,
}

impl Tls {
    /// Finds or generates the certificate (see the module docs), loads it and builds the two
    /// server configs. Logs which files are used.
    pub fn setup(cfg: &TlsSection, data_dir: &Path) -> Result<Tls, TlsError> {
        let files = if !cfg.cert.is_empty() && !cfg.key.is_empty() {
            CertFiles {
                cert: PathBuf::from(&cfg.cert),
                key: PathBuf::from(&cfg.key),
            }
        } else if cfg.self_signed {
            self_signed(&data_dir.join("tls"))?
        } else {
            return Err(TlsError::NotConfigured);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let store = Arc::new(CertStore::load(files, provider.clone())?);
        let https = server_config(&provider, store.clone(), &[b"h2", b"http/1.1"])?;
        let rtmps = server_config(&provider, store.clone(), &[])?;
        Ok(Tls {
            store,
            https: TlsAcceptor::from(https),
            rtmps: TlsAcceptor::from(rtmps),
        })
    }
}

/// A server config on `provider` (TLS 1.3 and 1.2, no client certificates) presenting `store`'s
/// certificate and offering `alpn` in order of preference.
fn server_config(
    provider: &Arc<CryptoProvider>,
    store: Arc<CertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The development certificate in `dir` (`cert.pem`, `key.pem`): reused when both exist,
/// generated otherwise (the key file readable by its owner only).
fn self_signed(dir: &Path) -> Result<CertFiles, TlsError> {
    let files = CertFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if files.cert.is_file() && files.key.is_file() {
        info!(cert = %files.cert.display(), key = %files.key.display(),
            "TLS: using the self-signed development certificate (tls.self_signed)");
        return Ok(files);
    }
    let (cert_pem, key_pem) = generate_self_signed()?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    // The key first: a crash between the two writes leaves no certificate, so the next start
    // generates both again instead of pairing a certificate with a missing key.
    write_file(&files.key, key_pem.as_bytes(), 0o600)?;
    write_file(&files.cert, cert_pem.as_bytes(), 0o644)?;
    warn!(cert = %files.cert.display(), key = %files.key.display(),
        "TLS: generated a self-signed certificate for localhost, 127.0.0.1 and ::1 \
         (tls.self_signed: development only; browsers and encoders will not trust it)");
    Ok(files)
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1` (ECDSA P-256), valid from
/// the start of last year for ten years: `(certificate PEM, key PEM)`.
fn generate_self_signed() -> Result<(String, String), TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "hivecast development (self-signed)",
    );
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The current UTC year, near enough for a validity window that starts a year back.
fn current_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days: the Gregorian mean
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + i32::try_from(secs / SECONDS_PER_YEAR).unwrap_or(0)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    o.open(path)
        .and_then(|mut f| {
            // `mode` above applies only to a new file: an old one keeps its own otherwise.
            #[cfg(unix)]
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            f.write_all(contents)?;
            f.sync_all()
        })
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

// ---------------------------------------------------------------------------------------------
// The certificate and its reload
// ---------------------------------------------------------------------------------------------

/// What is logged about a loaded certificate (its leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name (empty if it has none; `(unparsed)` if the DER reader gave up).
    pub subject: String,
    /// `notAfter`, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    /// SHA-256 of the leaf's DER, lowercase hex (what `openssl x509 -fingerprint -sha256` shows).
    pub sha256: String,
}

impl CertInfo {
    fn of(leaf: &CertificateDer<'_>) -> CertInfo {
        let (subject, not_after) = der::summary(leaf.as_ref())
            .unwrap_or_else(|| ("(unparsed)".to_owned(), "(unparsed)".to_owned()));
        CertInfo {
            subject,
            not_after,
            sha256: hex::encode(Sha256::digest(leaf.as_ref())),
        }
    }
}

/// Identity of the two files as of a load attempt: a change of any field means "reload".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// `None` while a file is missing (being replaced): no reload is attempted then.
    fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode,
        })
    }
}

/// The certificate the TLS listeners present (`ResolvesServerCert`), swapped by [`Self::reload`].
pub struct CertStore {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    /// A std lock: held for a pointer copy or swap, never across an `.await`.
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps taken before the last load attempt, good or bad: the poll retries only
    /// after a further change, so a broken file is reported once, not every [`RELOAD_POLL`].
    seen: Mutex<Option<(FileStamp, FileStamp)>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl CertStore {
    /// Loads `files`; logs what was loaded.
    pub fn load(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<CertStore, TlsError> {
        let seen = Self::stamps(&files);
        let (key, info) = load_pair(&files, &provider)?;
        info!(cert = %files.cert.display(), subject = %info.subject, not_after = %info.not_after,
            sha256 = %info.sha256, "TLS certificate loaded");
        Ok(CertStore {
            files,
            provider,
            current: RwLock::new(key),
            seen: Mutex::new(seen),
        })
    }

    fn stamps(files: &CertFiles) -> Option<(FileStamp, FileStamp)> {
        Some((FileStamp::of(&files.cert)?, FileStamp::of(&files.key)?))
    }

    /// Whether either file changed since the last load attempt (and both exist now).
    fn changed(&self) -> bool {
        let now = Self::stamps(&self.files);
        now.is_some() && now != *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads both files again; on success new handshakes present the new certificate (open
    /// connections keep theirs), on failure the current one stays.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Self::stamps(&self.files);
        let (key, info) = load_pair(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(info)
    }

    /// The leaf certificate presented now.
    #[cfg(test)]
    fn current_info(&self) -> CertInfo {
        let key = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        key.cert
            .first()
            .map(CertInfo::of)
            .unwrap_or_else(|| CertInfo {
                subject: String::new(),
                not_after: String::new(),
                sha256: String::new(),
            })
    }
}

/// Reads and checks one certificate chain and key.
fn load_pair(
    files: &CertFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
            detail: "the file has no CERTIFICATE section".to_owned(),
        });
    };
    let info = CertInfo::of(leaf);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    Ok((Arc::new(certified), info))
}

/// Reloads `store`'s certificate on SIGHUP and whenever its files change; runs forever.
///
/// Without TLS (`store` is `None`) SIGHUP is still taken, and logged, so that it never stops the
/// node (its default action would).
pub async fn watch_reloads(store: Option<Arc<CertStore>>) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "could not listen for SIGHUP; certificate files are still polled");
            None
        }
    };
    #[cfg(unix)]
    let mut next_hup = async move || {
        if let Some(s) = hup.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    #[cfg(not(unix))]
    let mut next_hup = async || std::future::pending::<()>().await;
    let mut poll = tokio::time::interval(RELOAD_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let trigger = tokio::select! {
            () = next_hup() => "SIGHUP",
            _ = poll.tick() => {
                match &store {
                    Some(s) if s.changed() => "file change",
                    _ => continue,
                }
            }
        };
        let Some(store) = &store else {
            info!("SIGHUP: TLS is off, nothing to reload");
            continue;
        };
        match store.reload() {
            Ok(c) => info!(trigger, cert = %store.files.cert.display(), subject = %c.subject,
                not_after = %c.not_after, sha256 = %c.sha256, "TLS certificate reloaded"),
            Err(e) => error!(trigger, error = %e,
                "TLS certificate reload failed; still serving the previous certificate"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The TLS accept loop
// ---------------------------------------------------------------------------------------------

/// A listener whose `accept` yields finished TLS streams (see the module docs). Dropping it stops
/// the accept loop and closes the port.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts the accept loop on `tcp`.
    pub fn spawn(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener { ready, local })
    }
}

/// TLS connections stay on the runtime that accepted them (the session state would have to move
/// with the socket).
impl crate::http::server::Rehome for TlsStream<TcpStream> {
    fn rehome(self, _: &tokio::runtime::Handle) -> Result<std::io::Result<Self>, Self> {
        Err(self)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            () = tx.closed() => return,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed
            },
        };
        let (sock, peer) = tokio::select! {
            () = tx.closed() => return,
            r = tcp.accept() => match r {
                Ok(c) => {
                    backoff = Duration::from_millis(5);
                    c
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "https accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        // As on the plain port (http::zerocopy): no Nagle delay on a response's last packet.
        if let Err(e) = sock.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(stream)) => {
                    // Waits while the server is busy taking connections (bounded queue); fails
                    // only once the server has stopped, and the connection is then dropped.
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}"),
            }
        });
    }
}

/// `tls.admin_https_only`, on the plain-HTTP listener: a request that carries credentials
/// (`Authorization`) is refused with 403 before any handler sees it, so that the admin token is
/// never acted upon when sent in clear; requests without credentials pass (admin routes then
/// answer 401 as usual).
pub async fn https_only(req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            HTTPS_REQUIRED,
            "the admin API is served over HTTPS only (tls.admin_https_only)",
        )
        .into_response();
    }
    next.run(req).await
}

// ---------------------------------------------------------------------------------------------
// A minimal DER reader, for the log line only
// ---------------------------------------------------------------------------------------------

/// Reads the subject's common name and `notAfter` out of a certificate (RFC 5280 §4.1). `None`
/// on anything unexpected: it only feeds a log line, so it never fails a load.
mod der {
    /// One TLV: `(tag, contents, rest)`.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, b) = b.split_first()?;
        let (len, b) = if first < 0x80 {
            (usize::from(first), b)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let len = b[..n]
                .iter()
                .fold(0usize, |a, &x| (a << 8) | usize::from(x));
            (len, &b[n..])
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }

    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0; // [0] EXPLICIT
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    /// id-at-commonName, 2.5.4.3.
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

    /// `(subject CN, notAfter)`.
    pub(super) fn summary(cert: &[u8]) -> Option<(String, String)> {
        let (SEQUENCE, cert, _) = tlv(cert)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = tlv(cert)? else {
            return None;
        };
        let (tag, _, after_version) = tlv(tbs)?;
        let fields = if tag == VERSION { after_version } else { tbs };
        let (_serial, _, rest) = tlv(fields)?;
        let (_signature, _, rest) = tlv(rest)?;
        let (_issuer, _, rest) = tlv(rest)?;
        let (SEQUENCE, validity, rest) = tlv(rest)? else {
            return None;
        };
        let (SEQUENCE, subject, _) = tlv(rest)? else {
            return None;
        };
        let (_not_before, _, validity) = tlv(validity)?;
        let (tag, not_after, _) = tlv(validity)?;
        Some((common_name(subject)?, time(tag, not_after)?))
    }

    /// The first CN of a Name (SEQUENCE OF SET OF {OID, value}); "" when it has none.
    fn common_name(mut name: &[u8]) -> Option<String> {
        while !name.is_empty() {
            let (_, mut rdn, rest) = tlv(name)?;
            name = rest;
            while !rdn.is_empty() {
                let (_, attr, rest) = tlv(rdn)?;
                rdn = rest;
                let (_, oid, value) = tlv(attr)?;
                if oid == CN_OID {
                    let (_, text, _) = tlv(value)?;
                    return Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
        Some(String::new())
    }

    /// UTCTime (`YYMMDDHHMMSSZ`, RFC 5280 §4.1.2.5.1: YY < 50 is 20YY) or GeneralizedTime
    /// (`YYYYMMDDHHMMSSZ`) as `YYYY-MM-DD HH:MM:SS UTC`.
    fn time(tag: u8, t: &[u8]) -> Option<String> {
        let t = std::str::from_utf8(t).ok()?;
        let full = match tag {
            UTC_TIME => {
                let yy: u32 = t.get(..2)?.parse().ok()?;
                format!("{}{}", if yy < 50 { "20" } else { "19" }, t)
            }
            GENERALIZED_TIME => t.to_owned(),
            _ => return None,
        };
        if full.len() < 14 || !full.as_bytes()[..14].iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(format!(
            "{}-{}-{} {}:{}:{} UTC",
            &full[0..4],
            &full[4..6],
            &full[6..8],
            &full[8..10],
            &full[10..12],
            &full[12..14]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn write_pair(dir: &Path, name: &str) -> CertFiles {
        let (cert, key) = generate_self_signed().expect("generate");
        let files = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn self_signed_is_generated_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let first = self_signed(&tls_dir).expect("generated");
        let pem = std::fs::read(&first.cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
        }
        let again = self_signed(&tls_dir).expect("reused");
        assert_eq!(first, again);
        assert_eq!(
            std::fs::read(&again.cert).unwrap(),
            pem,
            "the second start reuses the certificate"
        );
        let store = CertStore::load(again, provider()).expect("loads");
        let info = store.current_info();
        assert_eq!(info.subject, "hivecast development (self-signed)");
        let year = current_year();
        assert!(
            info.not_after
                .starts_with(&format!("{}-01-01 00:00:00", year + 10)),
            "{info:?}"
        );
        assert_eq!(info.sha256.len(), 64);
    }

    #[test]
    fn a_bad_reload_keeps_the_certificate_and_a_good_one_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a");
        let store = CertStore::load(files.clone(), provider()).expect("loads");
        let before = store.current_info();
        assert!(!store.changed());

        // A key that belongs to another certificate, put in place by rename (a new inode: the
        // same length and a coarse mtime could otherwise look unchanged this soon after the load).
        let other = write_pair(dir.path(), "b");
        let tmp = dir.path().join("tmp.key");
        std::fs::copy(&other.key, &tmp).unwrap();
        std::fs::rename(&tmp, &files.key).unwrap();
        assert!(store.changed());
        let err = store.reload().expect_err("mismatched pair");
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert!(
            !store.changed(),
            "a failed attempt is not retried until a new change"
        );
        assert_eq!(store.current_info(), before);

        // Garbage in the certificate file.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let err = store.reload().expect_err("no PEM");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert_eq!(store.current_info(), before);

        // A matching pair.
        std::fs::copy(&other.cert, &files.cert).unwrap();
        let info = store.reload().expect("reloads");
        assert_ne!(info.sha256, before.sha256);
        assert_eq!(store.current_info(), info);
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("none.crt"),
            key: dir.path().join("none.key"),
        };
        let err = CertStore::load(files, provider()).expect_err("missing");
        assert!(err.to_string().contains("none.crt"), "{err}");
        let cfg = TlsSection::default();
        assert!(matches!(
            Tls::setup(&cfg, dir.path()),
            Err(TlsError::NotConfigured)
        ));
    }

    #[test]
    fn der_summary_never_panics_on_truncations() {
        let (pem, _) = generate_self_signed().unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert!(der::summary(der.as_ref()).is_some());
        for n in 0..der.len() {
            let _ = der::summary(&der[..n]);
        }
        let mut flipped = der.to_vec();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = der::summary(&flipped);
            flipped[i] ^= 0xff;
        }
    }

    #[tokio::test]
    async fn https_only_refuses_credentials_and_passes_the_rest() {
        use axum::body::Body;
        use axum::routing::get;
        use axum::Router;
        use tower::ServiceExt;
        let app: Router = Router::new()
            .route("/v1/keys", get(|| async { "keys" }))
            .layer(axum::middleware::from_fn(https_only));
        let with_auth = axum::http::Request::get("/v1/keys")
            .header(header::AUTHORIZATION, "Bearer x")
            .body(Body::empty())
            .unwrap();
        let r = app.clone().oneshot(with_auth).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], HTTPS_REQUIRED);
        let without = axum::http::Request::get("/v1/keys")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(without).await.unwrap().status(), StatusCode::OK);
    }
}
