//! Clean shutdown (issue 8 §4): on SIGTERM every live stream ends as ENDED_GRACEFULLY (WebSocket
//! viewers told, a blocked LL-HLS reload answered with the final playlist and its EXT-X-ENDLIST), the
//! state is on disk, and the process exits within 5 s.

use std::time::{Duration, Instant};

use cluster_tests::*;

/// `{msn}` of the part named by the playlist's EXT-X-PRELOAD-HINT (`URI="{epoch}-{msn}.{part}.m4s"`).
fn hinted_msn(playlist: &str) -> Option<u64> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    uri.split('-').nth(1)?.split('.').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_live_stream_gracefully_and_exits_within_5_s() {
    let mut node = Node::start(NodeOpts {
        extra_toml: "[transcode]\nenabled = false\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let streams = ["first", "second"];
    let mut publishers = Vec::new();
    for s in streams {
        let key = node.create_key(s).await;
        publishers.push(Publisher::ffmpeg(
            &node.rtmp_url(&key.key),
            PublishOpts::default(),
        ));
    }
    for s in streams {
        node.wait_stream_state(s, "ACTIVE", Duration::from_secs(20))
            .await;
    }
    let playlist = "/cmaf/first/source/index.m3u8";
    let text = wait_until("parts listed", Duration::from_secs(20), async || {
        node.get_ok_text(playlist)
            .await
            .filter(|t| t.contains("#EXT-X-PART:") && hinted_msn(t).is_some())
    })
    .await;
    let events = EventLog::stream_events(&node, "second").await;

    // A viewer waits for the next segment's first part: it will never come.
    let msn = hinted_msn(&text).expect("hint") + 1;
    let blocked = {
        let (http, url) = (
            node.http().clone(),
            format!("{}{playlist}?_HLS_msn={msn}&_HLS_part=0", node.http_url()),
        );
        tokio::spawn(async move {
            let r = http.get(url).send().await.expect("blocked reload answered");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    // Signal only once the server holds the request: the node shows it in flight.
    wait_until(
        "the blocked reload held by the node",
        Duration::from_secs(5),
        async || {
            let (_, v) = node.get_json_admin("/v1/streams/first/sessions").await;
            v["sessions"]
                .as_array()?
                .iter()
                .any(|s| s["in_flight"].as_u64() >= Some(1))
                .then_some(())
        },
    )
    .await;

    let signalled = Instant::now();
    let (status, took) = node
        .terminate(Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.logs_tail()));
    assert!(
        status.success(),
        "exit status {status}\n{}",
        node.logs_tail()
    );
    assert!(took <= Duration::from_secs(5), "exited after {took:?}");

    let (code, body) = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the blocked reload is answered")
        .expect("task");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("#EXT-X-ENDLIST"),
        "the final playlist ends:\n{body}"
    );
    let (told_at, _) = events
        .first_since(
            signalled,
            "ENDED_GRACEFULLY on the WebSocket",
            Duration::from_secs(1),
            |v| v["type"] == "status" && v["status"] == "ENDED_GRACEFULLY",
        )
        .await;
    assert!(told_at <= signalled + took);

    // Durable: after a restart both streams are recorded as ended gracefully.
    node.restart().await;
    for s in streams {
        let st = node.stream_status(s).await;
        assert_eq!(st["status"], "ENDED_GRACEFULLY", "{s}: {st}");
    }
    eprintln!("{{\"sigterm_to_exit_ms\":{}}}", took.as_millis());
}
