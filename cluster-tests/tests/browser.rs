//! The player page and the operator dashboard in a real browser (issue 5): headless Debian Chromium
//! driven over the DevTools protocol (`cluster_tests::browser`), a real node transcoding a real ffmpeg
//! publisher to a two-rung ladder, hls.js from the npm lockfile on the LL-HLS playlist.
//!
//! One test walks a viewer's life, because each step needs the one before (and Chromium plus a
//! transcoder is a heavy pair on 2 cores): the dashboard lists the stream; the player page renders its
//! first frame and reports its live latency; the viewer shows up on the WebSocket within 2 s;
//! throttling the page's network makes hls.js switch down within 2 s and the switch shows up in the
//! analytics; closing the page takes the viewer count back down; stopping the publisher shows
//! "ended" on a player page within 2 s. Screenshots of both pages go to
//! `target/test-artifacts/browser/`. Measured figures are printed as one JSON line.

use std::time::{Duration, Instant};

use cluster_tests::browser::{Browser, Page};
use cluster_tests::*;
use serde_json::{json, Value};

const STREAM: &str = "browser";

/// Two rungs far apart in bitrate, so that a throttled network leaves hls.js one choice; no
/// `source` rendition (it would be a third, near the top one).
const LADDER: &str = "\
[transcode]
preset = \"ultrafast\"
offer_source = false

[[transcode.ladder]]
name = \"360p\"
height = 360
video_kbps = 900
profile = \"main\"

[[transcode.ladder]]
name = \"180p\"
height = 180
video_kbps = 150
profile = \"baseline\"
";

fn viewers(v: &Value) -> u64 {
    if v["type"] == "metrics" {
        v["concurrent_viewers"].as_u64().unwrap_or(0)
    } else {
        u64::MAX // not a metrics message
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Waits until the player page shows `rendition`; panics saying `what`, with the page's console.
async fn wait_rendition(player: &Page, rendition: &str, deadline: Duration, what: &str) {
    player
        .wait_for(
            &format!("window.hivecast.rendition === '{rendition}'"),
            deadline,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}\n{:?}", player.console()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_plays_switches_down_and_leaves_and_the_dashboard_follows() {
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        extra_toml: LADDER.into(),
        ..NodeOpts::default()
    })
    .await;
    let key = node.create_key(STREAM).await;
    let mut publisher = Publisher::ffmpeg(
        &node.rtmp_url(&key.key),
        PublishOpts {
            width: 640,
            height: 360,
            ..PublishOpts::default()
        },
    );
    node.wait_stream_state(STREAM, "ACTIVE", Duration::from_secs(20))
        .await;
    // Both renditions list a few parts before a player comes.
    wait_until(
        "both renditions playable",
        Duration::from_secs(30),
        async || {
            for r in ["360p", "180p"] {
                let t = node
                    .get_ok_text(&format!("/cmaf/{STREAM}/{r}/index.m3u8"))
                    .await?;
                (t.matches("#EXT-X-PART:").count() >= 3).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    let shots = workspace_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let events = EventLog::stream_events(&node, STREAM).await;

    let browser = Browser::launch().await.expect("chromium starts");
    let base = node.http_url();

    // The dashboard lists the stream, live, with no viewer yet.
    let dash = browser.new_page().await.expect("page");
    dash.goto(&format!("{base}/dashboard?stream={STREAM}"))
        .await
        .expect("dashboard loads");
    let row = format!("document.querySelector('[data-stream=\"{STREAM}\"]')");
    dash.wait_for(
        &format!("{row} && {row}.dataset.status === 'ACTIVE' && {row}.dataset.viewers === '0'"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "dashboard lists the live stream: {e:#}\n{:?}",
            dash.console()
        )
    });

    // The player: first frame, latency, and the viewer on the WebSocket.
    let player = browser.new_page().await.expect("page");
    let opened = Instant::now();
    player
        .goto(&format!("{base}/watch/{STREAM}"))
        .await
        .expect("player page loads");
    let first_frame_ms = player
        .wait_for(
            "window.hivecast && window.hivecast.firstFrameMs",
            Duration::from_secs(3),
        )
        .await
        .unwrap_or_else(|e| panic!("first frame within 3 s: {e:#}\n{:?}", player.console()))
        .as_f64()
        .expect("firstFrameMs is a number");
    assert!(
        first_frame_ms <= 3000.0,
        "first frame {first_frame_ms} ms after the page opened (limit 3 s, target 1 s)"
    );
    let (joined_at, _) = events
        .first_since(
            opened,
            "the viewer on the WebSocket",
            Duration::from_secs(5),
            |v| viewers(v) != u64::MAX && viewers(v) >= 1,
        )
        .await;
    let join_visible_ms = ms(joined_at - opened);
    assert!(
        join_visible_ms <= 2000 + first_frame_ms as u64,
        "a joining viewer took {join_visible_ms} ms to show on the WebSocket"
    );
    player
        .wait_for("window.hivecast.state === 'live'", Duration::from_secs(2))
        .await
        .expect("the player says live");
    // Live latency once playback settled (hls.js measures it against PROGRAM-DATE-TIME).
    let latency_ms = player
        .wait_for(
            "window.hivecast.latencyMs > 0 && window.hivecast.latencyMs",
            Duration::from_secs(10),
        )
        .await
        .expect("the player reports its live latency")
        .as_f64()
        .unwrap_or(f64::NAN);
    dash.wait_for(
        &format!("{row} && Number({row}.dataset.viewers) >= 1"),
        Duration::from_secs(3),
    )
    .await
    .expect("the dashboard counts the viewer");

    // Up to the top rendition (loopback is fast), then throttle: hls.js switches down.
    player
        .wait_for(
            "window.hivecast.rendition === '360p'",
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|e| panic!("hls.js reaches 360p: {e:#}\n{:?}", player.console()));
    let switches_before = player
        .eval("window.hivecast.switches.length")
        .await
        .expect("eval")
        .as_u64()
        .unwrap_or(0);
    // 50 kB/s = 400 kbit/s: above the 180p rung with its audio, far below 360p's.
    let page_throttled = player
        .eval("performance.now()")
        .await
        .expect("eval")
        .as_f64()
        .expect("a number");
    let throttled = Instant::now();
    player
        .emulate_network(20.0, 50_000.0, 50_000.0)
        .await
        .expect("throttle");
    wait_rendition(
        &player,
        "180p",
        Duration::from_secs(15),
        "hls.js switches down after the throttle",
    )
    .await;
    let switch_down_ms = ms(throttled.elapsed());
    let state = player
        .eval("JSON.stringify(window.hivecast)")
        .await
        .expect("eval");
    // hls.js decided (LEVEL_SWITCHING: it starts loading 180p, which the node sees) before the
    // switch reached the screen (LEVEL_SWITCHED).
    let decided_ms = player
        .eval(&format!(
            "window.hivecast.requested.filter(r => r.at >= {page_throttled} && r.to === '180p').map(r => r.at)[0]"
        ))
        .await
        .expect("eval")
        .as_f64()
        .map(|at| (at - page_throttled).max(0.0) as u64)
        .unwrap_or_else(|| panic!("no recorded decision to switch down: {state}"));
    // The page's own emergency switches to the lowest rung (watch.js, abrWithLowestRung), in
    // ms after the throttle, with the rate it saw and the buffer left.
    let emergencies = player
        .eval(&format!(
            "window.hivecast.emergencies.filter(e => e.at >= {page_throttled}).map(e => ({{ ...e, at: Math.round(e.at - {page_throttled}) }}))"
        ))
        .await
        .expect("eval");
    let switches = player.eval("window.hivecast.switches").await.expect("eval");
    assert!(
        switches.as_array().map_or(0, Vec::len) as u64 > switches_before,
        "the page recorded the switch: {switches}"
    );
    let (seen_at, _) = events
        .first_since(
            throttled,
            "the switch in the analytics",
            Duration::from_secs(15),
            |v| v["type"] == "metrics" && v["quality"]["180p"].as_u64() == Some(1),
        )
        .await;
    let switch_visible_ms = ms(seen_at - throttled).saturating_sub(decided_ms);
    assert!(
        switch_visible_ms <= 2000,
        "the switch took {switch_visible_ms} ms from the player's decision to the analytics"
    );
    // The target: the lower rendition on screen within 2 s of the throttle. hls.js's own
    // ABR takes 3.5-5 s here (it never emergency-switches to the lowest rung); the page's rule
    // for that case (watch.js, abrWithLowestRung) makes it about 1 s (docs/BENCHMARKS.md).
    assert!(
        switch_down_ms <= 2_000,
        "the lower rendition reached the screen {switch_down_ms} ms after the throttle \
         (decided after {decided_ms} ms; the page's emergency switches: {emergencies}): {state}"
    );
    player.clear_network_emulation().await.expect("unthrottle");
    // The emergency restarts the bandwidth estimate low; once the network is back, the ABR
    // climbs back to the top rendition.
    let unthrottled = Instant::now();
    wait_rendition(
        &player,
        "360p",
        Duration::from_secs(20),
        "hls.js back at 360p after the throttle lifts",
    )
    .await;
    let switch_up_ms = ms(unthrottled.elapsed());

    player
        .screenshot(&shots.join("player.png"))
        .await
        .expect("player screenshot");
    dash.wait_for(
        "document.querySelector('#viewers') && document.querySelector('#viewers').textContent.trim() === '1'",
        Duration::from_secs(3),
    )
    .await
    .expect("the dashboard shows one viewer");
    dash.screenshot(&shots.join("dashboard.png"))
        .await
        .expect("dashboard screenshot");

    // Closing the page (pagehide beacon) takes the count back down.
    let closed = Instant::now();
    player.close().await.expect("close the player");
    let (left_at, _) = events
        .first_since(
            closed,
            "the viewer leaving on the WebSocket",
            Duration::from_secs(5),
            |v| viewers(v) == 0,
        )
        .await;
    let leave_visible_ms = ms(left_at - closed);
    assert!(
        leave_visible_ms <= 2000,
        "a leaving viewer took {leave_visible_ms} ms to show on the WebSocket"
    );
    dash.wait_for(
        &format!("{row} && {row}.dataset.viewers === '0'"),
        Duration::from_secs(3),
    )
    .await
    .expect("the dashboard's count goes back down");

    // The broadcaster stops: a player page says "ended" within 2 s.
    let player2 = browser.new_page().await.expect("page");
    player2
        .goto(&format!("{base}/watch/{STREAM}"))
        .await
        .expect("player page loads");
    player2
        .wait_for(
            "window.hivecast && window.hivecast.state === 'live'",
            Duration::from_secs(5),
        )
        .await
        .expect("live again");
    let stopped = Instant::now();
    publisher.stop_gracefully().await.expect("stop ffmpeg");
    player2
        .wait_for("window.hivecast.state === 'ended'", Duration::from_secs(4))
        .await
        .expect("the page says ended");
    let ended_ms = ms(stopped.elapsed());
    assert!(
        ended_ms <= 2000,
        "the page said ended {ended_ms} ms after the publisher stopped"
    );
    player2
        .screenshot(&shots.join("player-ended.png"))
        .await
        .expect("screenshot");
    dash.wait_for(
        &format!("{row} && {row}.dataset.status === 'ENDED_GRACEFULLY'"),
        Duration::from_secs(3),
    )
    .await
    .expect("the dashboard shows the end");

    // The audit log saw the publish and the quality switch (aggregated, written within 10 s).
    wait_until(
        "quality switch audited",
        Duration::from_secs(15),
        async || {
            node.audit(STREAM)
                .await
                .iter()
                .any(|e| e["event"] == "quality_switch")
                .then_some(())
        },
    )
    .await;

    println!(
        "{}",
        json!({
            "first_frame_ms": first_frame_ms,
            "live_latency_ms": latency_ms,
            "join_visible_ms": join_visible_ms,
            "switch_decided_ms": decided_ms,
            "switch_down_ms": switch_down_ms,
            "switch_visible_ms": switch_visible_ms,
            "emergency_switches": emergencies,
            "switch_up_ms": switch_up_ms,
            "leave_visible_ms": leave_visible_ms,
            "ended_visible_ms": ended_ms,
        })
    );
}
