//! Abusive clients beside a legitimate stream (issue 8 §2), black-box against the real binary.
//!
//! A key-guessing flood from one address: every attempt is refused, attempts past
//! `rtmp.auth_failures_per_minute` are slowed and audited in aggregate (the audit log grows by a
//! few rows, not one per attempt), a publisher with the right key from the same address goes live
//! at once, and the running stream keeps serving its viewers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::load::publish::RtmpPublisher;
use cluster_tests::*;
use serde_json::Value;

const LIVE_DEADLINE: Duration = Duration::from_secs(15);

/// Every audit entry the node holds (at most 10,000).
async fn audit_all(node: &Node) -> Vec<Value> {
    let (status, v) = node.get_json_admin("/v1/audit?limit=10000").await;
    assert_eq!(status, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_wrong_key_flood_is_refused_slowed_and_audited_in_aggregate() {
    let node = Node::start(NodeOpts::default()).await;
    let key = node.create_key("legit").await;
    let _legit = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state("legit", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_until("the legit stream's playlist", LIVE_DEADLINE, async || {
        node.get_ok_text("/cmaf/legit/source/index.m3u8").await
    })
    .await;
    let rows_before = audit_all(&node).await.len();

    // 30 workers (under the per-address cap of 50) guessing keys for 12 s.
    let addr = node.rtmp_addr().to_string();
    let attempts = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let flood_for = Duration::from_secs(12);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..30u32 {
        let (addr, attempts, accepted) = (addr.clone(), attempts.clone(), accepted.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while started.elapsed() < flood_for {
                i += 1;
                let guess = format!("guess-{w}-{i}");
                attempts.fetch_add(1, Ordering::Relaxed);
                if RtmpPublisher::connect(&addr, &guess, Duration::from_secs(5))
                    .await
                    .is_ok()
                {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Meanwhile the right key, from the same address, publishes at once.
    wait_until(
        "the flood to be under way",
        Duration::from_secs(10),
        async || (attempts.load(Ordering::Relaxed) >= 40).then_some(()),
    )
    .await;
    let key2 = node.create_key("second").await;
    let t = Instant::now();
    let mut second = RtmpPublisher::connect(&addr, &key2.key, Duration::from_secs(5))
        .await
        .expect("the right key publishes during the flood");
    let publish_ms = t.elapsed().as_millis();
    assert!(
        publish_ms < 1000,
        "right key took {publish_ms} ms during the flood"
    );
    let _ = second.stop().await;

    // The legitimate stream keeps serving while the flood goes on.
    let mut playlist_seqs = Vec::new();
    while started.elapsed() < flood_for {
        let (status, body) = node.get_text("/cmaf/legit/source/index.m3u8").await;
        assert_eq!(status, 200, "{body}");
        playlist_seqs.push(body.len());
        tokio::time::sleep(Duration::from_millis(500)).await; // pacing of the viewer
    }
    for w in workers {
        w.await.unwrap();
    }
    let attempts = attempts.load(Ordering::Relaxed);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        0,
        "a guessed key was accepted"
    );
    // Unthrottled, 30 workers make thousands of attempts in 12 s; throttled (1 s per failure
    // past the first 10 per minute), about 30 x 12.
    assert!(attempts >= 100, "only {attempts} attempts were made");
    assert!(
        attempts <= 30 * 14 + 10,
        "{attempts} attempts in 12 s: failures were not slowed"
    );
    assert_eq!(node.stream_state("legit").await.as_deref(), Some("ACTIVE"));

    // Audited in aggregate (summaries are written every few seconds): the count of single and
    // summed-up rows covers the attempts, and the log grew by far fewer rows than attempts.
    let counted = |entries: &[Value]| {
        let summed: u64 = entries
            .iter()
            .filter(|e| e["event"] == "publish_rejected_aggregate")
            .filter_map(|e| {
                e["detail"]
                    .as_str()?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        let single = entries
            .iter()
            .filter(|e| e["event"] == "publish_rejected" && e["stream"] == "")
            .count() as u64;
        (single, summed)
    };
    let (entries, single, summed) = wait_until(
        "every attempt audited, alone or in aggregate",
        Duration::from_secs(20),
        async || {
            let all = audit_all(&node).await;
            let (single, summed) = counted(&all);
            (summed > 0 && single + summed >= attempts).then_some((all, single, summed))
        },
    )
    .await;
    let grown = entries.len() - rows_before;
    assert!(
        grown < 80,
        "the audit log grew by {grown} rows for {attempts} attempts"
    );
    println!(
        "wrong-key flood: {attempts} attempts in 12 s, {single} audited one by one, {summed} in aggregate, audit rows +{grown}, right key published in {publish_ms} ms"
    );
}

/// Slowloris: 1,000 connections that drip a request head a byte at a time are closed once the
/// head is `http.header_read_timeout_ms` late, while a viewer of a live stream keeps getting its
/// playlist promptly.
#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNS: usize = 1000;
    let node = Node::start(NodeOpts {
        http_toml: "header_read_timeout_ms = 1500\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let key = node.create_key("legit").await;
    let _legit = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state("legit", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_until("the legit stream's playlist", LIVE_DEADLINE, async || {
        node.get_ok_text("/cmaf/legit/source/index.m3u8").await
    })
    .await;

    let addr = node.http_addr();
    let started = Instant::now();
    let mut drippers = Vec::new();
    for _ in 0..CONNS {
        drippers.push(tokio::spawn(async move {
            let mut sock = tokio::net::TcpStream::connect(addr).await.ok()?;
            let head = b"GET /cmaf/legit/source/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            let mut buf = [0u8; 512];
            for (i, b) in head.iter().chain(std::iter::repeat(&b'a')).enumerate() {
                if sock.write_all(&[*b]).await.is_err() {
                    return Some(started.elapsed());
                }
                // A byte a second after the first line (the drip), with the first line sent whole.
                if i >= 16 {
                    tokio::select! {
                        r = sock.read(&mut buf) => {
                            if matches!(r, Ok(0) | Err(_)) {
                                return Some(started.elapsed());
                            }
                        }
                        () = tokio::time::sleep(Duration::from_secs(1)) => {} // pacing: the drip
                    }
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return None;
                }
            }
            None
        }));
    }
    // The viewer meanwhile.
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let (status, body) = node.get_text("/cmaf/legit/source/index.m3u8").await;
        assert_eq!(status, 200, "{body}");
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await; // pacing of the viewer
    }
    let mut closed = Vec::new();
    for d in drippers {
        closed.push(d.await.unwrap());
    }
    let never = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        never, 0,
        "{never} of {CONNS} slow connections were never closed"
    );
    let latest = closed.iter().flatten().max().copied().unwrap();
    assert!(
        latest < Duration::from_secs(8),
        "the last slow connection was closed after {latest:?} (timeout 1.5 s)"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a viewer's playlist took {worst:?} during the slowloris"
    );
    assert_eq!(node.stream_state("legit").await.as_deref(), Some("ACTIVE"));
    println!(
        "slowloris: {CONNS} connections closed by {latest:?} (header timeout 1.5 s); viewer playlist worst {worst:?}"
    );
}
