//! HTTPS with HTTP/2, RTMPS, certificate reload and `tls.admin_https_only` (issue 9 §5), black-box:
//! a real node with `[tls]`, curl and ffprobe over HTTPS, an ffmpeg RTMPS publisher, a TLS client
//! (rustls, ring) that records the certificate the node presents, and hls.js in headless Chromium
//! over HTTPS.
//!
//! The node's certificate is either its self-signed development one (`tls.self_signed`, written
//! to `<data_dir>/tls/cert.pem`, which curl is given as its CA) or, for the reload test, files made
//! with the `openssl` CLI in the node's scratch dir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cluster_tests::browser::{Browser, LaunchOptions};
use cluster_tests::*;
use futures_util::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;

/// ffmpeg and ffprobe take any URL: `rtmps://` and `https://` go through their TLS (GnuTLS on
/// Debian), which does not verify certificates unless asked (`-tls_verify 1`).
const ACTIVE_WITHIN: Duration = Duration::from_secs(20);

/// A node with `[tls]` on free ports.
struct TlsNode {
    node: Node,
    https: u16,
    rtmps: u16,
}

impl TlsNode {
    /// Starts a node; `tls` is added to its `[tls]` section (after the listen addresses), `rest`
    /// is appended after it (other sections).
    async fn start(tls: &str, rest: &str, tweak: impl FnOnce(&mut NodeOpts)) -> TlsNode {
        let (https, rtmps) = (free_port(), free_port());
        let mut opts = NodeOpts {
            segment_target_ms: 1000,
            extra_toml: format!(
                "[tls]\nhttps_listen = \"127.0.0.1:{https}\"\nrtmps_listen = \"127.0.0.1:{rtmps}\"\n\
                 {tls}\n{rest}\n"
            ),
            ..NodeOpts::default()
        };
        tweak(&mut opts);
        let node = Node::start(opts).await;
        TlsNode { node, https, rtmps }
    }

    /// Self-signed development mode, no other settings.
    async fn self_signed() -> TlsNode {
        TlsNode::start("self_signed = true", "", |_| {}).await
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }

    fn rtmps_url(&self, key: &str) -> String {
        format!("rtmps://127.0.0.1:{}/live/{key}", self.rtmps)
    }

    /// The self-signed certificate the node generated.
    fn generated_cert(&self) -> PathBuf {
        self.node.data_dir().join("tls").join("cert.pem")
    }
}

// ---------------------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------------------

/// Runs `curl -sS` with `args`; its stdout if it exits 0.
async fn curl(args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.arg("-sS")
        .args(["--max-time", "15"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .map_err(|_| anyhow!("curl {args:?} did not finish"))?
        .context("spawn curl")?;
    if !out.status.success() {
        bail!(
            "curl {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `curl` printing the body, then on a last line `HTTP_VERSION STATUS`: (version, status, body).
async fn curl_with_status(args: &[&str]) -> Result<(String, u16, String)> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-w", "\n%{http_version} %{http_code}"]);
    let out = curl(&all).await?;
    let (body, last) = out
        .rsplit_once('\n')
        .ok_or_else(|| anyhow!("no status line in {out:?}"))?;
    let (version, status) = last
        .split_once(' ')
        .ok_or_else(|| anyhow!("bad status line {last:?}"))?;
    Ok((version.to_owned(), status.parse()?, body.to_owned()))
}

/// Accepts any server certificate: the tests look at the certificate rather than trust it.
/// Handshake signatures are still checked, so the server proved it holds the certificate's key.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to 127.0.0.1:`port` (SNI `localhost`) offering `alpn`.
async fn tls_connect(
    port: u16,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from("localhost")?, tcp),
    )
    .await
    .map_err(|_| anyhow!("TLS handshake with port {port} timed out"))??;
    Ok(tls)
}

/// The leaf certificate (DER) a new TLS connection to `port` is shown.
async fn presented_cert(port: u16) -> Result<Vec<u8>> {
    let tls = tls_connect(port, &[]).await?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow!("no certificate presented"))
}

/// The first certificate of a PEM file, DER.
fn pem_cert(path: &Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    CertificateDer::from_pem_slice(&pem)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_vec()
}

/// A self-signed certificate for localhost and 127.0.0.1 made by the `openssl` CLI (an issuer the
/// node has nothing in common with): `(cert.pem, key.pem)` in `dir`, named after `cn`.
fn openssl_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Replaces `to` by a copy of `from` atomically (write beside, then rename), as deployment tools do.
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, to).expect("rename");
}

fn sighup(node: &Node) {
    let pid = node.pid().expect("node running");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our live child's.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
    assert_eq!(r, 0, "kill -HUP {pid}");
}

/// The first media playlist of the stream's LL-HLS master (read over plain HTTP).
async fn media_playlist_path(node: &Node, stream: &str) -> String {
    let master_path = format!("/cmaf/{stream}/master.m3u8");
    let uri = wait_until(
        "the LL-HLS master lists a variant",
        ACTIVE_WITHIN,
        async || {
            let text = node.get_ok_text(&master_path).await?;
            let master = parse_master(&text).ok()?;
            master.variants.first().map(|v| v.uri.clone())
        },
    )
    .await;
    resolve(&master_path, &uri)
}

/// The playlist's next media sequence number once it lists at least `parts` parts.
async fn wait_parts(node: &Node, playlist: &str, parts: usize) -> u64 {
    wait_until(
        &format!("{playlist} to list {parts} parts"),
        ACTIVE_WITHIN,
        async || {
            let p = fetch_playlist(node, playlist).await?;
            (p.parts().count() >= parts).then(|| p.next_msn())
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

/// Self-signed mode: the certificate is generated into `<data_dir>/tls/` (key 0600), verifies
/// for `localhost` and `127.0.0.1`, HTTP/2 is negotiated by ALPN and HTTP/1.1 still works, and a
/// restart reuses the same certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_and_http11_with_the_generated_certificate() {
    let mut t = TlsNode::self_signed().await;
    let cert = t.generated_cert();
    let ca = cert.to_str().expect("utf-8 path");
    let first = pem_cert(&cert);
    {
        use std::os::unix::fs::PermissionsExt;
        let key = t.node.data_dir().join("tls").join("key.pem");
        let mode = std::fs::metadata(&key)
            .expect("key.pem")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem mode {mode:o}");
    }
    let by_name = format!("https://localhost:{}/healthz", t.https);
    let resolve = format!("localhost:{}:127.0.0.1", t.https);
    let (version, status, body) =
        curl_with_status(&["--http2", "--cacert", ca, "--resolve", &resolve, &by_name])
            .await
            .expect("curl --http2 over TLS");
    assert_eq!((version.as_str(), status), ("2", 200), "body {body}");
    // The certificate names 127.0.0.1 too (a browser opened on the IP verifies it).
    let (version, status, _) =
        curl_with_status(&["--http2", "--cacert", ca, &t.https_url("/healthz")])
            .await
            .expect("curl --http2 by IP");
    assert_eq!((version.as_str(), status), ("2", 200));
    let (version, status, _) =
        curl_with_status(&["--http1.1", "--cacert", ca, &t.https_url("/healthz")])
            .await
            .expect("curl --http1.1 over TLS");
    assert_eq!((version.as_str(), status), ("1.1", 200));
    // The same router: an API route and a 404 from the fallback, as JSON.
    let (_, status, body) = curl_with_status(&["--cacert", ca, &t.https_url("/v1/nope")])
        .await
        .expect("curl 404");
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["error"],
        "not_found"
    );
    // ALPN as a client sees it: h2 preferred, http/1.1 when that is all it offers.
    let h2 = tls_connect(t.https, &[b"h2", b"http/1.1"])
        .await
        .expect("tls");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = tls_connect(t.https, &[b"http/1.1"]).await.expect("tls");
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    t.node.restart().await;
    assert_eq!(
        pem_cert(&cert),
        first,
        "a restart reuses the generated certificate"
    );
    wait_until(
        "HTTPS after the restart",
        Duration::from_secs(10),
        async || (presented_cert(t.https).await.ok()? == first).then_some(()),
    )
    .await;
}

/// ffmpeg publishes over RTMPS: the stream goes ACTIVE, ffprobe finds H.264 behind the LL-HLS
/// master over HTTPS, and the stream's WebSocket works over wss:// (HTTP/1.1). RTMPS counts
/// against the same `rtmp.max_streams` as RTMP: with a limit of one, a second publish over plain
/// RTMP is denied while the RTMPS one lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_and_ffprobe_reads_it_over_https() {
    let t = TlsNode::start("self_signed = true", "", |o| o.max_streams = 1).await;
    let key = t.node.create_key("secure").await;
    let mut publisher = Publisher::ffmpeg(&t.rtmps_url(&key.key), PublishOpts::default());
    let status = t
        .node
        .wait_stream_state("secure", "ACTIVE", ACTIVE_WITHIN)
        .await;
    let audit = t.node.audit("secure").await;
    assert!(
        audit.iter().any(|e| e["event"] == "publish_accepted"),
        "the RTMPS publish is audited like an RTMP one: {audit:?}"
    );

    // The stream's WebSocket over TLS with HTTP/1.1: the current status arrives at once.
    let tls = tls_connect(t.https, &[b"http/1.1"]).await.expect("tls");
    let url = format!("wss://localhost:{}/v1/streams/secure/events", t.https);
    let (mut ws, resp) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("WebSocket upgrade over HTTPS");
    assert_eq!(resp.status().as_u16(), 101);
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message within 5 s")
        .expect("not closed")
        .expect("no error");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    assert_eq!(first["status"], "ACTIVE", "{first}");
    assert_eq!(first["epoch"], status["epoch"], "{first}");

    let playlist = media_playlist_path(&t.node, "secure").await;
    wait_parts(&t.node, &playlist, 6).await;
    let probe = ffprobe_ok(&t.https_url("/cmaf/secure/master.m3u8"))
        .await
        .expect("ffprobe over HTTPS");
    let video = probe.video().expect("a video stream");
    assert_eq!(video.codec_name, "h264", "{probe:?}");
    assert_eq!((video.width, video.height), (Some(320), Some(180)));

    // The node's one stream slot is taken by the RTMPS publish.
    let other = t.node.create_key("plain").await;
    let mut denied = Publisher::ffmpeg(&t.node.rtmp_url(&other.key), PublishOpts::default());
    denied
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the second publisher is refused and exits");
    assert_eq!(t.node.stream_state("plain").await, None);
    assert!(publisher.is_running(), "the RTMPS publisher is unaffected");
    assert_eq!(
        t.node.stream_state("secure").await.as_deref(),
        Some("ACTIVE")
    );
}

/// A certificate replaced on disk is served to new connections after SIGHUP, while an RTMPS
/// publisher (connected before) keeps publishing and its playlist keeps advancing; a broken
/// replacement is refused and the last good certificate stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_new_certificate_without_dropping_the_stream() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert_a, key_a) = openssl_cert(certs.path(), "first");
    let (cert_b, key_b) = openssl_cert(certs.path(), "second");
    let live_cert = certs.path().join("live.crt");
    let live_key = certs.path().join("live.key");
    std::fs::copy(&cert_a, &live_cert).expect("copy");
    std::fs::copy(&key_a, &live_key).expect("copy");
    let t = TlsNode::start(
        &format!(
            "cert = {:?}\nkey = {:?}",
            live_cert.to_str().expect("utf-8"),
            live_key.to_str().expect("utf-8")
        ),
        "",
        |_| {},
    )
    .await;
    let (der_a, der_b) = (pem_cert(&cert_a), pem_cert(&cert_b));
    assert_eq!(
        presented_cert(t.https).await.expect("HTTPS"),
        der_a,
        "the configured certificate is served"
    );
    assert_eq!(presented_cert(t.rtmps).await.expect("RTMPS"), der_a);

    let key = t.node.create_key("reload").await;
    let mut publisher = Publisher::ffmpeg(&t.rtmps_url(&key.key), PublishOpts::default());
    let before = t
        .node
        .wait_stream_state("reload", "ACTIVE", ACTIVE_WITHIN)
        .await;
    let playlist = media_playlist_path(&t.node, "reload").await;
    let msn = wait_parts(&t.node, &playlist, 1).await;

    // The key first, then the certificate: between the two a poll may see a mismatched pair,
    // which is refused (the old certificate stays) and retried at the next change.
    replace_file(&key_b, &live_key);
    replace_file(&cert_b, &live_cert);
    sighup(&t.node);
    wait_until(
        "new connections to be shown the new certificate",
        Duration::from_secs(10),
        async || {
            let https = presented_cert(t.https).await.ok()?;
            let rtmps = presented_cert(t.rtmps).await.ok()?;
            (https == der_b && rtmps == der_b).then_some(())
        },
    )
    .await;
    let ca_b = cert_b.to_str().expect("utf-8");
    let (version, code, _) =
        curl_with_status(&["--http2", "--cacert", ca_b, &t.https_url("/healthz")])
            .await
            .expect("curl verifies the new certificate");
    assert_eq!((version.as_str(), code), ("2", 200));

    // The stream lived through it: same epoch, the publisher still connected, parts still coming.
    wait_until(
        "the playlist to advance past the reload",
        ACTIVE_WITHIN,
        async || {
            let p = fetch_playlist(&t.node, &playlist).await?;
            (p.next_msn() >= msn + 2).then_some(())
        },
    )
    .await;
    let after = t.node.stream_status("reload").await;
    assert_eq!(after["status"], "ACTIVE", "{after}");
    assert_eq!(
        after["epoch"], before["epoch"],
        "the stream was not restarted"
    );
    assert!(
        publisher.is_running(),
        "the RTMPS publisher is still connected"
    );

    // A broken certificate file: the reload fails, loudly, and the last good one stays.
    std::fs::write(&live_cert, "not a certificate\n").expect("write");
    sighup(&t.node);
    wait_until(
        "the failed reload in the node's log",
        Duration::from_secs(10),
        async || {
            t.node
                .logs_tail()
                .contains("TLS certificate reload failed")
                .then_some(())
        },
    )
    .await;
    assert_eq!(presented_cert(t.https).await.expect("HTTPS"), der_b);
    assert!(publisher.is_running());
}

/// `tls.admin_https_only`: credentials over plain HTTP get 403 `https_required` before any
/// handler; the same request over HTTPS works; requests without credentials are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_https_only_when_configured() {
    let t = TlsNode::start("self_signed = true\nadmin_https_only = true", "", |_| {}).await;
    let (status, body) = t.node.get_json_admin("/v1/keys").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "https_required", "{body}");
    // A wrong token is refused the same way: credentials never reach a handler over plain HTTP.
    let resp = t
        .node
        .http()
        .get(format!("{}/v1/keys", t.node.http_url()))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 403);
    let (status, body) = t.node.get_json("/v1/keys").await;
    assert_eq!(status, 401, "no credentials: the usual 401: {body}");
    assert_eq!(t.node.get_json("/healthz").await.0, 200);

    let ca = t.generated_cert();
    let ca = ca.to_str().expect("utf-8");
    let bearer = format!("Authorization: Bearer {}", t.node.admin_token());
    let (_, status, body) = curl_with_status(&[
        "--cacert",
        ca,
        "-H",
        &bearer,
        "-H",
        "content-type: application/json",
        "--data",
        r#"{"stream":"over-tls"}"#,
        &t.https_url("/v1/keys"),
    ])
    .await
    .expect("POST /v1/keys over HTTPS");
    assert_eq!(status, 201, "{body}");
    let (version, status, body) =
        curl_with_status(&["--cacert", ca, "-H", &bearer, &t.https_url("/v1/keys")])
            .await
            .expect("GET /v1/keys over HTTPS");
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let keys: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        keys.as_array()
            .is_some_and(|a| a.iter().any(|k| k["stream"] == "over-tls")),
        "{keys}"
    );
}

/// hls.js in headless Chromium plays LL-HLS from the player page opened over HTTPS: the first
/// frame renders, the page's WebSocket (wss://) reports the stream live, and the playlist and
/// part requests went over HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_ll_hls_over_https_in_chromium() {
    let t = TlsNode::start("self_signed = true", "[transcode]\nenabled = false", |_| {}).await;
    let key = t.node.create_key("tlsplay").await;
    let _publisher = Publisher::ffmpeg(&t.rtmps_url(&key.key), PublishOpts::default());
    t.node
        .wait_stream_state("tlsplay", "ACTIVE", ACTIVE_WITHIN)
        .await;
    let playlist = media_playlist_path(&t.node, "tlsplay").await;
    wait_parts(&t.node, &playlist, 3).await;

    let browser = Browser::launch_with(LaunchOptions {
        ignore_certificate_errors: true,
    })
    .await
    .expect("chromium starts");
    let page = browser.new_page().await.expect("page");
    page.goto(&t.https_url("/watch/tlsplay"))
        .await
        .expect("the player page loads over HTTPS");
    page.wait_for(
        "window.hivecast && window.hivecast.firstFrameMs",
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|e| panic!("first frame over HTTPS: {e:#}\n{:?}", page.console()));
    page.wait_for("window.hivecast.state === 'live'", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the page's WebSocket says live: {e:#}\n{:?}",
                page.console()
            )
        });
    page.wait_for(
        "document.querySelector('video') && document.querySelector('video').currentTime > 1",
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|e| panic!("playback advances: {e:#}\n{:?}", page.console()));
    let protocols = page
        .eval(
            "JSON.stringify([...new Set(performance.getEntriesByType('resource')\
             .filter(e => e.name.includes('/cmaf/')).map(e => e.nextHopProtocol))])",
        )
        .await
        .expect("eval");
    assert_eq!(
        protocols.as_str(),
        Some(r#"["h2"]"#),
        "LL-HLS requests went over HTTP/2 only"
    );
}
