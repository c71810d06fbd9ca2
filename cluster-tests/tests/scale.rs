//! Scale on one node, the short version CI runs (issue 7; the full run is
//! `scripts/bench-viewers` and `scripts/bench-streams`): 1,000 TS-HLS viewers of one stream and
//! ten LL-HLS viewers on each of ten streams for 10 s, all from the load generator in
//! `cluster_tests::load` (keep-alive connections, simulated player buffers), with the streams
//! published by its looping RTMP publishers. Fails on any request error, any viewer that never
//! started, any stall after start; and the node's stream limit refuses an eleventh publish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::load::procstat::raise_nofile_limit;
use cluster_tests::load::publish::{make_flv, read_flv, spawn_publisher, RtmpPublisher};
use cluster_tests::load::{run, LoadConfig, Mode};
use cluster_tests::{try_wait_until, Node, NodeOpts};

const STREAMS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_and_ten_streams_play_without_errors_or_stalls() {
    let nofile = raise_nofile_limit();
    assert!(
        nofile >= 4096,
        "open-files limit {nofile} is too low for 1,000 viewers"
    );
    let dir = tempfile::tempdir().unwrap();
    let tags = Arc::new(read_flv(&make_flv(dir.path(), "640x360", 6)).unwrap());
    let node = Node::start(NodeOpts {
        max_streams: STREAMS,
        segment_target_ms: 1000,
        part_target_ms: 250,
        extra_toml: "[transcode]\nenabled = false\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let mut keys = Vec::new();
    for i in 0..=STREAMS {
        keys.push(node.create_key(&format!("s{i:02}")).await.key);
    }
    let rtmp = node.rtmp_addr().to_string();
    let until = Instant::now() + Duration::from_secs(90);
    let publishers: Vec<_> = keys[..STREAMS]
        .iter()
        .map(|k| spawn_publisher(rtmp.clone(), k.clone(), tags.clone(), until))
        .collect();
    for i in 0..STREAMS {
        let path = format!("/cmaf/s{i:02}/source/index.m3u8");
        try_wait_until(Duration::from_secs(30), async || {
            let text = node.get_ok_text(&path).await?;
            (text.matches("#EXTINF").count() >= 3).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("{path} never listed 3 segments\n{}", node.logs_tail()));
    }

    // The stream limit: an eleventh publish is refused with a reason, and nothing else changes.
    let refused = RtmpPublisher::connect(&rtmp, &keys[STREAMS], Duration::from_secs(10)).await;
    let reason = refused.err().map(|e| format!("{e:#}"));
    assert!(
        reason.is_some(),
        "the 11th publish was accepted with rtmp.max_streams = 10"
    );
    let (status, _) = node.get_json(&format!("/v1/streams/s{STREAMS:02}")).await;
    assert_ne!(status, 200, "a refused publish created stream state");

    let addr = node.http_addr();
    let mut ts = LoadConfig::new(addr, "/hls/s00/master.m3u8", Mode::Ts, 1000);
    ts.ramp = Duration::from_secs(3);
    ts.duration = Duration::from_secs(13);
    let ts_run = tokio::spawn(run(ts));
    let mut ll_runs = Vec::new();
    for i in 0..STREAMS {
        let mut ll = LoadConfig::new(
            addr,
            &format!("/cmaf/s{i:02}/master.m3u8"),
            Mode::LowLatency,
            10,
        );
        ll.ramp = Duration::from_secs(3);
        ll.duration = Duration::from_secs(13);
        ll.cmcd = true;
        ll_runs.push(tokio::spawn(run(ll)));
    }
    let ts = ts_run.await.unwrap();
    eprintln!("TS: {}", ts.json);
    let mut bad = Vec::new();
    let mut check = |name: String, r: &cluster_tests::load::LoadReport| {
        if r.errors > 0 || r.viewers_with_stall > 0 || r.viewers_never_started > 0 {
            bad.push(format!("{name}: {}", r.json));
        }
    };
    check("TS s00".into(), &ts);
    for (i, h) in ll_runs.into_iter().enumerate() {
        let r = h.await.unwrap();
        eprintln!("LL s{i:02}: {}", r.json);
        check(format!("LL s{i:02}"), &r);
    }
    assert!(
        ts.requests > 10_000,
        "1,000 TS viewers made only {} requests",
        ts.requests
    );
    assert!(
        bad.is_empty(),
        "errors or stalls:\n{}\n{}",
        bad.join("\n"),
        node.logs_tail()
    );
    for p in publishers {
        assert!(!p.is_finished(), "a publisher stopped early: {:?}", p.await);
        p.abort();
    }
}
