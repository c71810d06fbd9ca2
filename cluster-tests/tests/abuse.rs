//! Abusive clients beside a legitimate stream (issue 8 §2), black-box against the real binary.
//!
//! A key-guessing flood from one address: every attempt is refused, attempts past
//! `rtmp.auth_failures_per_minute` are slowed and audited in aggregate (the audit log grows by a
//! few rows, not one per attempt), a publisher with the right key from the same address goes live
//! at once, and the running stream keeps serving its viewers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::load::procstat::{memory_bytes, raise_nofile_limit};
use cluster_tests::load::publish::{make_flv, read_flv, RtmpPublisher};
use cluster_tests::load::{run, LoadConfig, Mode};
use cluster_tests::*;
use hivecast_proto::flv::file::FlvTag;
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
    let _legit = legit_stream(&node).await;
    let quiet = llhls_quality(&node, "legit", 5, 6).await;
    let mem_quiet = node_memory_mb(&node);
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

    // The legitimate stream's viewers while the flood goes on (it has at least 8 s left: the
    // right key took under a second, after at most a few seconds of flood).
    let left = flood_for.saturating_sub(started.elapsed());
    assert!(
        left >= Duration::from_secs(7),
        "only {left:?} of flood left"
    );
    let attacked = llhls_quality(&node, "legit", 5, left.as_secs() - 1).await;
    let mem_attacked = node_memory_mb(&node);
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
    assert_within_2x("wrong-key flood", quiet, attacked);
    assert!(
        mem_attacked - mem_quiet < 50.0,
        "node memory grew from {mem_quiet:.1} MB to {mem_attacked:.1} MB under the flood"
    );
    assert_no_panic(&node);
    println!(
        "wrong-key flood: {attempts} attempts in 12 s, {single} audited one by one, {summed} in aggregate, audit rows +{grown}, right key published in {publish_ms} ms; memory {mem_quiet:.1} -> {mem_attacked:.1} MB"
    );
}

/// Slowloris: 1,000 connections that drip a request head a byte a second, each reconnecting once
/// the node closes it (as an attacker would), for 10 s: every one is closed once its head is
/// `http.header_read_timeout_ms` late, and the legitimate stream's viewers see no difference
/// beyond 2x.
#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNS: usize = 1000;
    const ATTACK: Duration = Duration::from_secs(10);
    let node = Node::start(NodeOpts {
        http_toml: "header_read_timeout_ms = 1500\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let _legit = legit_stream(&node).await;
    let quiet = llhls_quality(&node, "legit", 5, 6).await;
    let mem_quiet = node_memory_mb(&node);

    let addr = node.http_addr();
    let started = Instant::now();
    let connected = Arc::new(AtomicU64::new(0));
    let mut drippers = Vec::new();
    for _ in 0..CONNS {
        let connected = connected.clone();
        drippers.push(tokio::spawn(async move {
            // How long each connection lived; `None` if one outlived 10 s.
            let mut lives = Vec::new();
            while started.elapsed() < ATTACK {
                let Ok(mut sock) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await; // backoff
                    continue;
                };
                connected.fetch_add(1, Ordering::Relaxed);
                let opened = Instant::now();
                let head = b"GET /cmaf/legit/source/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                let mut buf = [0u8; 512];
                let mut closed = false;
                for (i, b) in head.iter().chain(std::iter::repeat(&b'a')).enumerate() {
                    if sock.write_all(&[*b]).await.is_err() {
                        closed = true;
                        break;
                    }
                    // A byte a second after the first line (the drip), the first line whole.
                    if i >= 16 {
                        tokio::select! {
                            r = sock.read(&mut buf) => {
                                if matches!(r, Ok(0) | Err(_)) {
                                    closed = true;
                                    break;
                                }
                            }
                            () = tokio::time::sleep(Duration::from_secs(1)) => {} // the drip
                        }
                    }
                    if opened.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                if !closed {
                    return None;
                }
                lives.push(opened.elapsed());
            }
            Some(lives)
        }));
    }
    // The viewers meanwhile, once every dripper is connected and waiting.
    wait_until(
        "every dripper connected",
        Duration::from_secs(10),
        async || (connected.load(Ordering::Relaxed) >= CONNS as u64).then_some(()),
    )
    .await;
    let attacked = llhls_quality(&node, "legit", 5, 6).await;
    let mem_attacked = node_memory_mb(&node);
    let mut lives = Vec::new();
    let mut never = 0;
    for d in drippers {
        match d.await.unwrap() {
            Some(l) => lives.extend(l),
            None => never += 1,
        }
    }
    assert_eq!(
        never, 0,
        "{never} of {CONNS} slow connections were never closed"
    );
    let longest = lives.iter().max().copied().unwrap();
    assert!(
        lives.len() >= 2 * CONNS,
        "only {} slow connections in {ATTACK:?}",
        lives.len()
    );
    assert!(
        longest < Duration::from_secs(5),
        "a slow connection lived {longest:?} (header timeout 1.5 s)"
    );
    assert_within_2x("slowloris", quiet, attacked);
    assert!(
        mem_attacked - mem_quiet < 100.0,
        "node memory grew from {mem_quiet:.1} MB to {mem_attacked:.1} MB under the slowloris"
    );
    assert_eq!(node.stream_state("legit").await.as_deref(), Some("ACTIVE"));
    assert_no_panic(&node);
    println!(
        "slowloris: {} slow connections from {CONNS} drippers in {ATTACK:?}, each closed within {longest:?} (header timeout 1.5 s); memory {mem_quiet:.1} -> {mem_attacked:.1} MB",
        lives.len()
    );
}

// ---------------------------------------------------------------------------------------------------------
// Beside a legitimate stream: what its viewers see, quiet and under attack
// ---------------------------------------------------------------------------------------------------------

/// What the legitimate stream's LL-HLS viewers saw over a window.
#[derive(Debug, Clone, Copy)]
struct Quality {
    /// Part latency p95: arrival minus the part's wall-clock end (ms).
    part_latency_p95: f64,
    /// Part fetch time p95 (ms).
    fetch_p95: f64,
}

/// Runs `viewers` simulated LL-HLS players of `stream` for `secs` and returns what they saw;
/// fails on any request error or stall.
async fn llhls_quality(node: &Node, stream: &str, viewers: usize, secs: u64) -> Quality {
    let mut c = LoadConfig::new(
        node.http_addr(),
        &format!("/cmaf/{stream}/master.m3u8"),
        Mode::LowLatency,
        viewers,
    );
    c.ramp = Duration::from_millis(500);
    c.duration = Duration::from_secs(secs);
    let r = run(c).await;
    assert_eq!(
        r.errors, 0,
        "the legitimate stream's viewers had errors: {}",
        r.json
    );
    assert_eq!(
        r.viewers_never_started, 0,
        "viewers never started: {}",
        r.json
    );
    assert_eq!(r.viewers_with_stall, 0, "viewers stalled: {}", r.json);
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(&r.json, |v, k| v.get(*k))
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no {path:?} in {}", r.json))
    };
    Quality {
        part_latency_p95: at(&["media_age_ms", "p95"]),
        fetch_p95: at(&["fetch_ms", "part", "p95"]),
    }
}

/// Issue 8 §2: the legitimate stream's part latency p95 and fetch p95 stay within 2x of the
/// quiet baseline. Loopback figures are small (tens of ms) and a 2-core machine's scheduler
/// noise is about 10-20 ms, so the bound is 2x or the baseline plus 50 ms, whichever is larger.
fn assert_within_2x(what: &str, quiet: Quality, attacked: Quality) {
    let bound = |b: f64| (2.0 * b).max(b + 50.0);
    println!("{what}: quiet {quiet:?}, under attack {attacked:?}");
    assert!(
        attacked.part_latency_p95 <= bound(quiet.part_latency_p95),
        "{what}: part latency p95 {} ms against {} ms quiet",
        attacked.part_latency_p95,
        quiet.part_latency_p95
    );
    assert!(
        attacked.fetch_p95 <= bound(quiet.fetch_p95),
        "{what}: part fetch p95 {} ms against {} ms quiet",
        attacked.fetch_p95,
        quiet.fetch_p95
    );
}

/// Lines of the node's log containing `needle`.
fn log_lines(node: &Node, needle: &str) -> usize {
    node.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn assert_no_panic(node: &Node) {
    assert_eq!(
        log_lines(node, "panicked"),
        0,
        "the node panicked:\n{}",
        node.logs_tail()
    );
}

/// Node memory (RSS without shmem, plus memfd segments), MB.
fn node_memory_mb(node: &Node) -> f64 {
    memory_bytes(node.pid().expect("node pid")) as f64 / 1e6
}

/// A live legitimate stream `legit` (ffmpeg) on `node`, its LL-HLS playlist serving.
async fn legit_stream(node: &Node) -> Publisher {
    let key = node.create_key("legit").await;
    let p = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state("legit", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_until("the legit stream's playlist", LIVE_DEADLINE, async || {
        let t = node.get_ok_text("/cmaf/legit/source/index.m3u8").await?;
        (t.matches("#EXTINF").count() >= 2).then_some(())
    })
    .await;
    p
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
async fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind((from, 0).into())?;
    s.connect(to).await
}

/// How long until the peer closes `sock` (reads and discards), or `None` past `limit`.
async fn closed_after(sock: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(t.elapsed())?;
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// 2,000 RTMP connections from 40 addresses that never finish the handshake (half silent, half
/// dripping C0 and C1 a byte a second) are held no longer than the handshake timeout, one more
/// from a full address and the ones past the node's cap are refused at once, the legitimate
/// stream's viewers see no difference beyond 2x, memory stays bounded and the log says it in a
/// few lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_handshake_flood_is_timed_out_capped_and_logged_once_per_cause() {
    use tokio::io::AsyncWriteExt;
    const ADDRESSES: u8 = 40;
    const PER_ADDRESS: usize = 50; // the default rtmp.max_connections_per_address
    const FLOOD: usize = ADDRESSES as usize * PER_ADDRESS;
    const NODE_CAP: usize = FLOOD + 10;
    const TIMEOUT_MS: u64 = 8000;
    raise_nofile_limit();
    let node = Node::start(NodeOpts {
        handshake_timeout_ms: TIMEOUT_MS,
        rtmp_toml: format!("max_connections = {NODE_CAP}\n"),
        ..NodeOpts::default()
    })
    .await;
    let _legit = legit_stream(&node).await;
    let quiet = llhls_quality(&node, "legit", 5, 6).await;
    let mem_quiet = node_memory_mb(&node);
    let rtmp = node.rtmp_addr();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", node.pid()?))
            .ok()
            .map(|d| d.count())
    };
    let fds_quiet = fds().expect("node descriptors");

    // The flood: each connection reports how long the node kept it open.
    let started = Instant::now();
    let mut flood = Vec::new();
    for a in 0..ADDRESSES {
        let from = std::net::Ipv4Addr::new(127, 0, 1, a + 1);
        for i in 0..PER_ADDRESS {
            let drip = i % 2 == 1;
            flood.push(tokio::spawn(async move {
                let mut sock = connect_from(from, rtmp).await.ok()?;
                let opened = Instant::now();
                let limit = Duration::from_millis(TIMEOUT_MS + 6000);
                if !drip {
                    return closed_after(&mut sock, limit)
                        .await
                        .map(|_| opened.elapsed());
                }
                // C0 (version 3), then C1 a byte a second.
                let _ = sock.write_all(&[3]).await;
                loop {
                    match closed_after(&mut sock, Duration::from_secs(1)).await {
                        Some(_) => return Some(opened.elapsed()),
                        None if opened.elapsed() > limit => return None,
                        None => {
                            if sock.write_all(&[0x5a]).await.is_err() {
                                return Some(opened.elapsed());
                            }
                        }
                    }
                }
            }));
        }
    }
    // Every flood connection accepted (and held) before the viewers measure.
    wait_until(
        "the flood to be connected",
        Duration::from_secs(20),
        async || (fds()? >= fds_quiet + FLOOD).then_some(()),
    )
    .await;
    let connected_after = started.elapsed();

    // One more from a full address, and past the node's cap from fresh addresses: refused at once.
    let mut full_address = connect_from(std::net::Ipv4Addr::new(127, 0, 1, 1), rtmp)
        .await
        .expect("connect");
    let refused_in = closed_after(&mut full_address, Duration::from_secs(2)).await;
    assert!(
        refused_in.is_some(),
        "a 51st connection from one address was kept open"
    );
    let probes: Vec<_> = (0..20u8)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = connect_from(std::net::Ipv4Addr::new(127, 0, 2, i + 1), rtmp)
                    .await
                    .expect("connect");
                closed_after(&mut s, Duration::from_millis(500))
                    .await
                    .is_some()
            })
        })
        .collect();
    let mut over_cap = 0;
    for p in probes {
        over_cap += usize::from(p.await.unwrap());
    }
    assert!(
        over_cap >= 10,
        "only {over_cap} of 20 connections past the node's cap of {NODE_CAP} were refused at once"
    );

    let attacked = llhls_quality(&node, "legit", 5, 6).await;
    let mem_attacked = node_memory_mb(&node);

    let mut lifetimes = Vec::new();
    for f in flood {
        lifetimes.push(f.await.unwrap());
    }
    let never = lifetimes.iter().filter(|l| l.is_none()).count();
    assert_eq!(never, 0, "{never} flood connections were never closed");
    let longest = lifetimes.iter().flatten().max().copied().unwrap();
    let timeout = Duration::from_millis(TIMEOUT_MS);
    assert!(
        longest < timeout + Duration::from_secs(3),
        "a flood connection was held {longest:?} (handshake timeout {timeout:?})"
    );
    assert_within_2x("RTMP handshake flood", quiet, attacked);
    assert!(
        mem_attacked - mem_quiet < 100.0,
        "node memory grew from {mem_quiet:.1} MB to {mem_attacked:.1} MB under the flood"
    );
    assert_eq!(node.stream_state("legit").await.as_deref(), Some("ACTIVE"));

    // Logged in a few lines: one per cause and 10 s, not one per connection.
    let dropped_lines = log_lines(&node, "connection dropped before publishing");
    let address_lines = log_lines(&node, "too many connections from one address");
    let cap_lines = log_lines(&node, "node connection limit reached");
    assert!(
        (1..=6).contains(&dropped_lines),
        "{dropped_lines} lines for {FLOOD} timed-out connections"
    );
    assert!(
        (1..=3).contains(&address_lines),
        "{address_lines} per-address refusal lines"
    );
    assert!(
        (1..=3).contains(&cap_lines),
        "{cap_lines} node-cap refusal lines"
    );
    assert_no_panic(&node);
    println!(
        "handshake flood: {FLOOD} connections held by {connected_after:?}, closed by {longest:?} (timeout {timeout:?}); \
         {over_cap}/20 refused at the node cap; memory {mem_quiet:.1} -> {mem_attacked:.1} MB; log lines: {dropped_lines} timeouts, {address_lines} per-address, {cap_lines} node cap"
    );
}

/// One RTMP message as chunks: a type-0 header on chunk stream `csid`, then type-3
/// continuation headers every `chunk` bytes.
fn chunked(csid: u8, type_id: u8, msid: u32, ts: u32, payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = vec![csid & 0x3f];
    out.extend_from_slice(&ts.min(0xff_ffff).to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&msid.to_le_bytes());
    for (i, part) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xc0 | (csid & 0x3f));
        }
        out.extend_from_slice(part);
    }
    out
}

/// Publishes `tags` with real-time pacing, each at `ts(tag timestamp)`.
async fn play(p: &mut RtmpPublisher, tags: &[FlvTag], ts: impl Fn(u32) -> u32) {
    let start = Instant::now();
    let first = tags.first().map_or(0, |t| t.timestamp_ms);
    for t in tags {
        let due = start + Duration::from_millis(u64::from(t.timestamp_ms - first));
        tokio::time::sleep_until(due.into()).await; // real-time pacing of the publisher
        p.send(t, ts(t.timestamp_ms)).await.expect("send a tag");
    }
}

/// Publishers that lie: a chunk size of 2^31-1, a 16 MiB message, AMF nested 200 deep, an
/// unknown message type, timestamps that jump by hours, an AVC sequence header whose SPS
/// length points past its end. Each is dropped with its reason in the log (or, for the unknown
/// type and the clock jumps, skipped or re-based while the stream goes on), beside a
/// legitimate stream whose viewers see no difference beyond 2x.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_rtmp_peers_are_dropped_or_corrected_with_the_reason() {
    const CHUNK: usize = 4096; // rml_rtmp's client announces 4096 after connect
    let dir = tempfile::tempdir().unwrap();
    let tags = read_flv(&make_flv(dir.path(), "320x180", 9)).unwrap();
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        extra_toml: "[transcode]\nenabled = false\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let _legit = legit_stream(&node).await;
    let quiet = llhls_quality(&node, "legit", 5, 6).await;
    let rtmp = node.rtmp_addr().to_string();
    let limit = Duration::from_secs(5);
    let publish = async |stream: &str| {
        let key = node.create_key(stream).await;
        RtmpPublisher::connect(&rtmp, &key.key, limit)
            .await
            .unwrap_or_else(|e| panic!("publish {stream}: {e:#}"))
    };

    let attacks = async {
        // Drops: each closes the connection, with its reason.
        let cases: [(&str, Vec<u8>, &str); 3] = [
            (
                "chunk-size",
                chunked(2, 1, 0, 0, &0x7fff_ffffu32.to_be_bytes(), CHUNK),
                "peer chunk size 2147483647 exceeds the limit",
            ),
            (
                "huge-message",
                {
                    let mut h = chunked(6, 9, 1, 0, &[], CHUNK);
                    h[4..7].copy_from_slice(&[0xff, 0xff, 0xff]); // announce 16 MiB - 1
                    h.extend_from_slice(&[0x17; 512]);
                    h
                },
                "message of 16777215 bytes exceeds the limit",
            ),
            (
                "deep-amf",
                {
                    let mut amf = vec![0x02, 0x00, 0x03, b'f', b'o', b'o', 0x00];
                    amf.extend_from_slice(&0f64.to_be_bytes());
                    for _ in 0..200 {
                        amf.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
                    }
                    chunked(3, 20, 0, 0, &amf, CHUNK)
                },
                "nests deeper than 16 levels",
            ),
        ];
        for (stream, bytes, reason) in cases {
            let mut p = publish(stream).await;
            p.send_raw(&bytes).await.expect("send");
            assert!(
                p.closed_within(limit).await,
                "{stream}: the connection was not closed"
            );
            wait_until(&format!("{stream}: the reason logged"), limit, async || {
                (log_lines(&node, reason) > 0).then_some(())
            })
            .await;
        }

        // An unknown message type mid-stream: skipped, said once, the stream goes on.
        let mut p = publish("skipper").await;
        play(&mut p, &tags[..tags.len() / 3], |t| t).await;
        for _ in 0..3 {
            p.send_raw(&chunked(7, 0x42, 1, 0, b"not a type", CHUNK))
                .await
                .expect("send");
        }
        play(&mut p, &tags[tags.len() / 3..tags.len() / 2], |t| t).await;
        assert!(
            !p.closed_within(Duration::from_millis(200)).await,
            "an unknown message type closed the connection"
        );
        assert_eq!(
            node.stream_state("skipper").await.as_deref(),
            Some("ACTIVE")
        );
        let skipped = log_lines(&node, "skipped an RTMP message of a type");
        assert_eq!(skipped, 1, "{skipped} lines for three skipped messages");
        let _ = p.stop().await;

        // A clock that jumps three hours forward, then back: re-based, the stream goes on with
        // ordinary segment durations.
        let mut p = publish("jumpy").await;
        let hours = 3 * 3_600_000;
        let third = |t: &FlvTag| t.timestamp_ms / 3000;
        let split = |k: u32| {
            tags.iter()
                .filter(|t| third(t) == k)
                .cloned()
                .collect::<Vec<_>>()
        };
        play(&mut p, &split(0), |t| t).await;
        play(&mut p, &split(1), |t| t + hours).await;
        play(&mut p, &split(2), |t| t).await;
        assert_eq!(node.stream_state("jumpy").await.as_deref(), Some("ACTIVE"));
        let playlist = node
            .get_ok_text("/hls/jumpy/source/index.m3u8")
            .await
            .expect("jumpy playlist");
        let longest = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
            .fold(0.0, f64::max);
        assert!(
            longest > 0.0 && longest < 2.5,
            "a segment of {longest} s after the clock jumps:\n{playlist}"
        );
        assert!(log_lines(&node, "publisher timestamps jumped") >= 1);
        let _ = p.stop().await;

        // An AVC sequence header whose SPS length (0xffff) points past its end: the stream
        // fails with the reason, its connection closes.
        let mut p = publish("liar").await;
        let mut record = vec![
            0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0xff, 0xff,
        ];
        record.extend_from_slice(&[0x67, 0x42, 0xc0, 0x1e, 0x95]);
        let liar = FlvTag {
            tag_type: 9,
            timestamp_ms: 0,
            data: record.into(),
        };
        p.send(&liar, 0).await.expect("send");
        let status = node
            .wait_stream_state("liar", "ERROR", Duration::from_secs(10))
            .await;
        let error = status["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains("H.264"), "the error says {error:?}");
        assert!(
            p.closed_within(limit).await,
            "the liar's connection stayed open"
        );
        error
    };
    let (attacked, liar_error) = tokio::join!(llhls_quality(&node, "legit", 5, 22), attacks);
    assert_within_2x("lying RTMP peers", quiet, attacked);
    assert_eq!(node.stream_state("legit").await.as_deref(), Some("ACTIVE"));
    assert_no_panic(&node);
    println!("lying peers: every case handled; the liar's stream error: {liar_error}");
}

/// Playlist abuse beside a live stream: a request far in the future is refused at once (400);
/// 5,000 requests a second for streams that do not exist get the cheap 404 while the
/// legitimate stream's viewers see no difference beyond 2x; 10,000 blocking reloads held at
/// once cost bounded memory and are all answered with the final playlist when the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_storms_and_ten_thousand_held_reloads_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HELD: usize = 10_000;
    raise_nofile_limit();
    let node = Node::start(NodeOpts {
        segment_target_ms: 4000,
        ..NodeOpts::default()
    })
    .await;
    let mut legit = legit_stream(&node).await;
    let quiet = llhls_quality(&node, "legit", 5, 6).await;

    // Far in the future: 400 at once.
    let t = Instant::now();
    let (status, body) = node
        .get_text("/cmaf/legit/source/index.m3u8?_HLS_msn=999999&_HLS_part=0")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the 400 took {:?}",
        t.elapsed()
    );

    // 5,000 requests a second for unknown streams' playlists, 6 s, beside the viewers.
    let storm_for = Duration::from_secs(6);
    let base = node.http_url();
    let storm = async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for w in 0..25u32 {
            let (client, base) = (client.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(5)); // 200/s per task
                let (start, mut n, mut not_found) = (Instant::now(), 0u64, 0u64);
                while start.elapsed() < storm_for {
                    tick.tick().await;
                    n += 1;
                    let url = format!("{base}/cmaf/nosuch-{w}-{}/source/index.m3u8", n % 100);
                    if let Ok(r) = client.get(url).send().await {
                        not_found += u64::from(r.status() == 404);
                        let _ = r.bytes().await;
                    }
                }
                (n, not_found)
            }));
        }
        let (mut sent, mut not_found) = (0, 0);
        for t in tasks {
            let (n, nf) = t.await.unwrap();
            sent += n;
            not_found += nf;
        }
        (sent, not_found)
    };
    let (attacked, (sent, not_found)) = tokio::join!(llhls_quality(&node, "legit", 5, 6), storm);
    assert_within_2x("unknown-playlist storm", quiet, attacked);
    assert_eq!(not_found, sent, "{sent} requests, {not_found} answered 404");
    let storm_rate = sent as f64 / storm_for.as_secs_f64();

    // 10,000 blocking reloads for the segment after next, held at once.
    let text = node
        .get_ok_text("/cmaf/legit/source/index.m3u8")
        .await
        .expect("playlist");
    let next = LlHlsPlaylist::parse(&text).expect("playlist").next_msn();
    let mem_before = node_memory_mb(&node);
    let addr = node.http_addr();
    let request = format!(
        "GET /cmaf/legit/source/index.m3u8?_HLS_msn={}&_HLS_part=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        next + 1
    );
    let mut held = Vec::new();
    for _ in 0..HELD {
        let request = request.clone();
        held.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
                .await
                .ok()?
                .ok()?;
            Some((
                Instant::now(),
                String::from_utf8_lossy(&answer).into_owned(),
            ))
        }));
    }
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", node.pid()?))
            .ok()
            .map(|d| d.count())
    };
    wait_until(
        "the reloads to be held",
        Duration::from_secs(20),
        async || (fds()? >= HELD).then_some(()),
    )
    .await;
    let mem_held = node_memory_mb(&node);
    let held_at = Instant::now();
    let (_, stopped_at) = legit.stop_gracefully().await.expect("stop the publisher");
    let mut answers = Vec::new();
    for h in held {
        answers.push(h.await.unwrap());
    }
    let failed = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(failed, 0, "{failed} of {HELD} held reloads got no answer");
    let answers: Vec<_> = answers.into_iter().flatten().collect();
    let not_final = answers
        .iter()
        .filter(|(_, a)| !(a.starts_with("HTTP/1.1 200") && a.contains("#EXT-X-ENDLIST")))
        .count();
    let last = answers.iter().map(|(t, _)| *t).max().unwrap();
    let after_stop = last.saturating_duration_since(stopped_at);
    println!(
        "playlist abuse: {sent} unknown-playlist requests at {storm_rate:.0}/s all 404; {HELD} held reloads: \
         memory {mem_before:.1} -> {mem_held:.1} MB ({:.1} KB each), held {:?} before the end, all answered {after_stop:?} after it ({not_final} not the final playlist)",
        (mem_held - mem_before) * 1000.0 / HELD as f64,
        stopped_at.saturating_duration_since(held_at),
    );
    // Some reloads are answered by the next segment before the end; the rest by the end.
    assert!(
        not_final < HELD / 2,
        "{not_final} of {HELD} held reloads were not answered with the final playlist"
    );
    assert!(
        after_stop < Duration::from_secs(5),
        "the last held reload was answered {after_stop:?} after the stream ended"
    );
    assert!(
        mem_held - mem_before < 500.0,
        "{HELD} held reloads took {:.1} MB",
        mem_held - mem_before
    );
    assert_no_panic(&node);
}
