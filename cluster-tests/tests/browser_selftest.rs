//! Proves the CDP client (`cluster_tests::browser`) against real headless Chromium and a tiny local HTTP
//! server, so that a failing browser test means the page misbehaves and not the harness: navigation and
//! the load event, in-page evaluation (values, promises, thrown errors), console capture, screenshots,
//! network throttling (measured in the page), and closing a tab (its `pagehide` beacon arrives). It also
//! logs what Chromium's MSE accepts (H.264 in fMP4 and MPEG-TS), which decides how the player tests can
//! play hivecast's streams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::browser::Browser;
use cluster_tests::wait_until;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The page: logs a marker line, sets `window.done`, and sends a beacon to `/bye` on `pagehide`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>browser selftest</title></head>
<body><h1>browser selftest</h1>
<script>
console.log("selftest-marker", 1 + 1);
window.done = 40 + 2;
addEventListener("pagehide", () => navigator.sendBeacon("/bye", "bye"));
</script>
</body></html>
"#;

/// Size of `/big`, fetched under throttling.
const BIG: usize = 200_000;
/// Throttled download rate: `BIG` takes two seconds.
const THROTTLE_BYTES_PER_S: f64 = 100_000.0;

/// Serves `/` (the page), `/big` (`BIG` bytes) and `/bye` (counted in the returned counter) on
/// 127.0.0.1, one request per connection.
async fn serve() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let byes = Arc::new(AtomicUsize::new(0));
    let counter = byes.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let byes = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.len() > 16 * 1024 {
                        return;
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let (status, ctype, body) = match path {
                    "/" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        PAGE.as_bytes().to_vec(),
                    ),
                    "/big" => ("200 OK", "application/octet-stream", vec![b'x'; BIG]),
                    "/bye" => {
                        byes.fetch_add(1, Ordering::SeqCst);
                        ("204 No Content", "text/plain", Vec::new())
                    }
                    _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, byes)
}

/// Fetches `/big` in the page and returns (milliseconds by `performance.now()`, bytes received).
const FETCH_BIG: &str = r#"(async () => {
    const t0 = performance.now();
    const r = await fetch('/big?' + Math.random(), { cache: 'no-store' });
    const b = await r.arrayBuffer();
    return { ms: performance.now() - t0, len: b.byteLength };
})()"#;

fn fetch_result(v: &Value) -> (f64, u64) {
    let ms = v["ms"].as_f64().unwrap_or_else(|| panic!("no ms in {v}"));
    let len = v["len"].as_u64().unwrap_or_else(|| panic!("no len in {v}"));
    (ms, len)
}

#[tokio::test]
async fn browser_drives_chromium() {
    let t0 = Instant::now();
    let (addr, byes) = serve().await;
    let browser = Browser::launch().await.expect("launch chromium");
    eprintln!("chromium up after {:?}", t0.elapsed());
    let page = browser.new_page().await.expect("new page");

    let url = format!("http://{addr}/");
    page.goto(&url).await.expect("goto");
    let done = page
        .wait_for("window.done", Duration::from_secs(10))
        .await
        .expect("window.done");
    assert_eq!(done, Value::from(42));
    let console = page.console();
    assert!(
        console
            .iter()
            .any(|l| l.contains("selftest-marker") && l.contains('2')),
        "console: {console:?}"
    );

    // Values, promises, thrown errors.
    assert_eq!(
        page.eval("Promise.resolve(6 * 7)").await.expect("eval"),
        Value::from(42)
    );
    assert_eq!(page.eval("undefined").await.expect("eval"), Value::Null);
    let err = page
        .eval("(() => { throw new Error('boom-selftest'); })()")
        .await
        .expect_err("a thrown error is an Err");
    assert!(format!("{err:#}").contains("boom-selftest"), "{err:#}");
    let err = page
        .wait_for("window.never", Duration::from_millis(300))
        .await
        .expect_err("wait_for times out");
    assert!(format!("{err:#}").contains("window.never"), "{err:#}");

    // Screenshot.
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("shot.png");
    page.screenshot(&shot).await.expect("screenshot");
    let png = std::fs::read(&shot).expect("read screenshot");
    assert!(png.len() > 100, "screenshot of {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");

    // What MSE accepts: logged, not asserted (it describes the Chromium build, not the client).
    let ua = page.eval("navigator.userAgent").await.expect("eval");
    eprintln!("userAgent: {ua}");
    for ty in [
        r#"video/mp4; codecs="avc1.64001f,mp4a.40.2""#,
        r#"video/mp4; codecs="avc1.4d401f""#,
        r#"video/mp4; codecs="avc1.42e01e""#,
        r#"audio/mp4; codecs="mp4a.40.2""#,
        r#"video/mp2t; codecs="avc1.64001f,mp4a.40.2""#,
        r#"video/mp2t"#,
        r#"video/webm; codecs="vp9,opus""#,
    ] {
        let supported = page
            .eval(&format!(
                "MediaSource.isTypeSupported({})",
                serde_json::to_string(ty).expect("json string")
            ))
            .await
            .expect("isTypeSupported");
        let can_play = page
            .eval(&format!(
                "document.createElement('video').canPlayType({})",
                serde_json::to_string(ty).expect("json string")
            ))
            .await
            .expect("canPlayType");
        eprintln!("MediaSource.isTypeSupported({ty}) = {supported}; canPlayType = {can_play}");
    }

    // Throttling, measured in the page: unthrottled is fast, throttled takes BIG / rate.
    let (ms, len) = fetch_result(&page.eval(FETCH_BIG).await.expect("fetch"));
    eprintln!("unthrottled fetch of {len} bytes: {ms:.0} ms");
    assert_eq!(len, BIG as u64);
    page.emulate_network(10.0, THROTTLE_BYTES_PER_S, THROTTLE_BYTES_PER_S)
        .await
        .expect("emulate_network");
    let (throttled_ms, len) = fetch_result(&page.eval(FETCH_BIG).await.expect("fetch"));
    eprintln!("throttled fetch of {len} bytes: {throttled_ms:.0} ms");
    assert_eq!(len, BIG as u64);
    assert!(
        throttled_ms >= 1500.0,
        "{BIG} bytes at {THROTTLE_BYTES_PER_S} B/s took only {throttled_ms:.0} ms"
    );
    page.clear_network_emulation()
        .await
        .expect("clear_network_emulation");
    let (ms, _) = fetch_result(&page.eval(FETCH_BIG).await.expect("fetch"));
    eprintln!("fetch after clearing the emulation: {ms:.0} ms");
    assert!(
        ms < throttled_ms / 2.0,
        "still throttled after clearing: {ms:.0} ms vs {throttled_ms:.0} ms"
    );

    page.close().await.expect("close");
    // Closing runs the page's pagehide handler: its beacon arrives.
    wait_until("the pagehide beacon", Duration::from_secs(10), async || {
        (byes.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // The closed target is gone: commands on its session fail (quickly, not by timeout).
    let t_closed = Instant::now();
    assert!(page.eval("1").await.is_err(), "eval on a closed page");
    assert!(t_closed.elapsed() < Duration::from_secs(5));

    // A second page on the same connection still works.
    let page2 = browser.new_page().await.expect("second page");
    page2.goto(&url).await.expect("goto on the second page");
    assert_eq!(
        page2
            .wait_for("window.done", Duration::from_secs(10))
            .await
            .expect("window.done"),
        Value::from(42)
    );
    // A failed navigation is an Err naming the error.
    let err = page2
        .goto("http://127.0.0.1:1/")
        .await
        .expect_err("navigation to a closed port fails");
    eprintln!("navigation to a closed port: {err:#}");
    drop(browser);
    eprintln!("browser self-test took {:?}", t0.elapsed());
}
