//! Viewer analytics through the external contract (issue 5), with simple scripted viewers (HTTP
//! clients sending CMCD as hls.js does) rather than a browser (`browser.rs` has the real player):
//! a viewer joining, switching rendition and leaving shows up on the WebSocket within 2 s (SC-008);
//! the metrics history, the sessions, Prometheus and the beacon answer; quality switches are
//! audited in aggregate; and in a cluster a stream's viewers on every node are summed on every node.

use std::time::{Duration, Instant};

use cluster_tests::*;
use serde_json::{json, Value};
use tokio::sync::watch;

/// A source rendition plus one cheap rung.
const LADDER: &str = "\
[transcode]
preset = \"ultrafast\"

[[transcode.ladder]]
name = \"144p\"
height = 144
video_kbps = 100
profile = \"baseline\"
";

async fn follow(node: &Node, stream: &str) -> EventLog {
    EventLog::stream_events(node, stream).await
}

/// The first `metrics` message since `since` for which `pred` holds (10 s at most).
async fn first_metrics(
    seen: &EventLog,
    since: Instant,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> (Instant, Value) {
    seen.first_since(since, what, Duration::from_secs(10), |v| {
        v["type"] == "metrics" && pred(v)
    })
    .await
}

/// A scripted player: reloads its rendition's LL-HLS media playlist every 300 ms with CMCD
/// headers (`sid`, `br`, `bl`, as hls.js sends them); the rendition follows `rendition`; it stops
/// when `rendition` says "".
fn viewer(node: &Node, stream: &str, sid: &str, rendition: watch::Receiver<String>) {
    let (http, base, stream, sid) = (
        reqwest::Client::new(),
        node.http_url(),
        stream.to_owned(),
        sid.to_owned(),
    );
    tokio::spawn(async move {
        loop {
            let r = rendition.borrow().clone();
            if r.is_empty() {
                return;
            }
            let _ = http
                .get(format!("{base}/cmaf/{stream}/{r}/index.m3u8"))
                .header("CMCD-Session", format!("cid=\"{stream}\",sid=\"{sid}\""))
                .header("CMCD-Request", "bl=1200,mtp=5000")
                .header("CMCD-Object", "br=300,ot=v")
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await; // the scripted player's reload pace
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_switch_and_leave_show_within_two_seconds() {
    let stream = "metrics";
    let node = Node::start(NodeOpts {
        extra_toml: LADDER.into(),
        ..NodeOpts::default()
    })
    .await;
    let key = node.create_key(stream).await;
    let _publisher = Publisher::ffmpeg(&node.rtmp_url(&key.key), PublishOpts::default());
    node.wait_stream_state(stream, "ACTIVE", Duration::from_secs(20))
        .await;
    wait_until(
        "both renditions listed",
        Duration::from_secs(30),
        async || {
            for r in ["source", "144p"] {
                node.get_ok_text(&format!("/cmaf/{stream}/{r}/index.m3u8"))
                    .await
                    .filter(|t| t.contains("#EXT-X-PART:"))?;
            }
            Some(())
        },
    )
    .await;
    let seen = follow(&node, stream).await;
    // Quiet first: no viewer.
    first_metrics(&seen, Instant::now(), "a sample without viewers", |v| {
        v["concurrent_viewers"] == 0
    })
    .await;

    // Join.
    let (tx, rx) = watch::channel("source".to_owned());
    let joined = Instant::now();
    viewer(&node, stream, "viewer-one", rx);
    let (at, v) = first_metrics(&seen, joined, "the viewer joins", |v| {
        v["concurrent_viewers"] == 1 && v["quality"]["source"] == 1
    })
    .await;
    let join_ms = (at - joined).as_millis();
    assert!(join_ms <= 2000, "join visible after {join_ms} ms: {v}");
    assert!(v["total_viewers"].as_u64() >= Some(1), "{v}");
    assert!(
        v["health"]
            .as_f64()
            .is_some_and(|h| (0.0..=100.0).contains(&h)),
        "{v}"
    );

    // Switch.
    let switched = Instant::now();
    tx.send("144p".into()).unwrap();
    let (at, v) = first_metrics(&seen, switched, "the switch", |v| {
        v["quality"]["144p"] == 1 && v["quality"].get("source").is_none()
    })
    .await;
    let switch_ms = (at - switched).as_millis();
    assert!(
        switch_ms <= 2000,
        "switch visible after {switch_ms} ms: {v}"
    );
    assert!(v["quality_switches"].as_u64() >= Some(1), "{v}");

    // The session as the API shows it.
    let (status, sessions) = node
        .get_json_admin(&format!("/v1/streams/{stream}/sessions"))
        .await;
    assert_eq!(status, 200, "{sessions}");
    let me = sessions["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "viewer-one"))
        .unwrap_or_else(|| panic!("the CMCD session is listed: {sessions}"))
        .clone();
    assert_eq!(me["rendition"], "144p", "{me}");
    assert_eq!(me["quality_switches"], 1, "{me}");
    assert_eq!(me["buffer_ms"], 1200, "{me}");
    assert!(me["bytes"].as_u64() > Some(0), "{me}");
    assert!(me["left_ms"].is_null(), "{me}");
    let (status, _) = node
        .get_json(&format!("/v1/streams/{stream}/sessions"))
        .await;
    assert_eq!(status, 401, "sessions are admin-only");

    // Leave with a beacon (as the player page does on pagehide).
    let left = Instant::now();
    tx.send(String::new()).unwrap();
    let r = node
        .http()
        .post(format!("{}/v1/beacon", node.http_url()))
        .body(json!({"sid": "viewer-one", "stream": stream, "event": "end"}).to_string())
        .send()
        .await
        .expect("beacon");
    assert_eq!(r.status().as_u16(), 204);
    let (at, v) = first_metrics(&seen, left, "the viewer leaves", |v| {
        v["concurrent_viewers"] == 0
    })
    .await;
    let leave_ms = (at - left).as_millis();
    assert!(leave_ms <= 2000, "leave visible after {leave_ms} ms: {v}");

    // A viewer that just goes away leaves after the session timeout.
    let (tx2, rx2) = watch::channel("source".to_owned());
    viewer(&node, stream, "viewer-two", rx2);
    first_metrics(&seen, Instant::now(), "viewer two joins", |v| {
        v["concurrent_viewers"] == 1
    })
    .await;
    let gone = Instant::now();
    tx2.send(String::new()).unwrap();
    let (at, _) = first_metrics(&seen, gone, "viewer two times out", |v| {
        v["concurrent_viewers"] == 0
    })
    .await;
    let timeout_ms = (at - gone).as_millis();
    assert!(
        (2500..=5000).contains(&timeout_ms),
        "a silent viewer left after {timeout_ms} ms (session timeout 3 s)"
    );

    // A bad beacon is a clear 400; the history has 1 s samples; Prometheus has the stream.
    let r = node
        .http()
        .post(format!("{}/v1/beacon", node.http_url()))
        .body(r#"{"sid":"x","stream":"metrics","event":"explode"}"#)
        .send()
        .await
        .expect("beacon");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["message"].as_str().unwrap_or("").contains("explode"),
        "{body}"
    );
    let (status, h) = node
        .get_json(&format!("/v1/streams/{stream}/metrics?seconds=5"))
        .await;
    assert_eq!(status, 200, "{h}");
    let samples = h["samples"].as_array().expect("samples");
    assert!((4..=5).contains(&samples.len()), "{h}");
    let gaps: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1]["at_ms"].as_i64().unwrap() - w[0]["at_ms"].as_i64().unwrap())
        .collect();
    assert!(
        gaps.iter().all(|g| (800..=1300).contains(g)),
        "1 s samples: {gaps:?}"
    );
    let (status, text) = node.get_text("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        format!("hivecast_stream_viewers{{stream=\"{stream}\"}} 0"),
        "# TYPE hivecast_stream_health gauge".to_owned(),
        "hivecast_live_streams{node=\"node1\"} 1".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics lacks {line:?}:\n{text}"
        );
    }
    assert!(
        text.contains("hivecast_beacons_total{node=\"node1\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("hivecast_analytics_rejected_total{node=\"node1\"} 1\n"),
        "{text}"
    );

    // The switch is audited once, in aggregate, within 10 s.
    let audited = wait_until(
        "the quality switch audited",
        Duration::from_secs(15),
        async || {
            let log = node.audit(stream).await;
            let n = log
                .iter()
                .filter(|e| e["event"] == "quality_switch")
                .count();
            (n >= 1).then_some(log)
        },
    )
    .await;
    assert!(
        audited.iter().any(|e| e["event"] == "quality_switch"
            && e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("viewer-one: source -> 144p")),
        "{audited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_viewers_on_every_node_are_summed_on_every_node() {
    let stream = "everywhere";
    let c = TestCluster::start(&["eu", "eu"], |_, o| {
        o.extra_toml = "[transcode]\nenabled = false\n".into();
    })
    .await;
    c.wait_converged(&[0, 1], 2, Duration::from_secs(20)).await;
    let key = c.nodes[0].create_key(stream).await;
    let _publisher = Publisher::ffmpeg(&c.nodes[0].rtmp_url(&key.key), PublishOpts::default());
    c.nodes[0]
        .wait_stream_state(stream, "ACTIVE", Duration::from_secs(20))
        .await;
    // Node 2 serves the stream (replicated from node 1).
    wait_until(
        "the stream playable on node 2",
        Duration::from_secs(20),
        async || {
            c.nodes[1]
                .get_ok_text(&format!("/cmaf/{stream}/source/index.m3u8"))
                .await
                .filter(|t| t.contains("#EXT-X-PART:"))
        },
    )
    .await;
    let on_origin = follow(&c.nodes[0], stream).await;
    let on_edge = follow(&c.nodes[1], stream).await;
    let (_a, rx_a) = watch::channel("source".to_owned());
    let (_b, rx_b) = watch::channel("source".to_owned());
    let (_c, rx_c) = watch::channel("source".to_owned());
    let start = Instant::now();
    viewer(&c.nodes[0], stream, "on-origin", rx_a);
    viewer(&c.nodes[1], stream, "on-edge-1", rx_b);
    viewer(&c.nodes[1], stream, "on-edge-2", rx_c);
    for (name, seen) in [("origin", &on_origin), ("edge", &on_edge)] {
        let (_, v) = first_metrics(seen, start, &format!("3 viewers on the {name}"), |v| {
            // (The origin's first ingest sample may still be empty.)
            v["concurrent_viewers"] == 3
                && v["nodes"] == 2
                && v["ingress_bitrate_kbps"].as_f64() > Some(0.0)
        })
        .await;
        assert_eq!(v["quality"]["source"], 3, "{name}: {v}");
        assert!(
            v["ingress_bitrate_kbps"].as_f64() > Some(0.0),
            "{name}: the origin's ingest: {v}"
        );
        assert!(v["egress_bitrate_kbps"].as_f64() > Some(0.0), "{name}: {v}");
    }
    let (status, s) = c.nodes[1].get_json(&format!("/v1/streams/{stream}")).await;
    assert_eq!(status, 200);
    assert_eq!(s["metrics"]["concurrent_viewers"], 3, "{s}");
}
