//! The soak, the short version CI runs (issue 8 §3; the hour-long run is `scripts/soak`):
//! four passthrough streams whose publishers unpublish and publish again every 30 s, staggered,
//! with 200 simulated viewers (LL-HLS and TS HLS, CMCD on) that come and go with them, for
//! three minutes on the debug build. Fails on any viewer error or stall, any failed publish, a
//! panic in the node's log, or growth of the node's memory, open descriptors or tokio tasks
//! past the tolerances below between the first and the last 30 s after a 60 s warm-up.

use std::sync::Arc;
use std::time::Duration;

use cluster_tests::load::procstat::raise_nofile_limit;
use cluster_tests::load::publish::{make_flv, read_flv};
use cluster_tests::soak::{soak, SoakConfig};
use cluster_tests::{Node, NodeOpts};

/// Memory may grow this much between the windows (percent): the medians of six samples each
/// still carry some of the sawtooth of streams starting and ending (a stream's ring fills for
/// 12 s after each publish, and an ended stream's segments are kept for 10 s here).
const MEMORY_TOLERANCE_PCT: f64 = 10.0;
/// Descriptors and tasks follow the viewers and publishers in flight, which the stagger keeps
/// about constant; a leak of one per request or per publish would pass this within seconds.
const COUNT_TOLERANCE_PCT: f64 = 15.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_minutes_of_republishing_streams_and_viewers_do_not_grow() {
    raise_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let tags = Arc::new(read_flv(&make_flv(dir.path(), "320x180", 6)).unwrap());
    let node = Node::start(NodeOpts {
        segment_target_ms: 1000,
        part_target_ms: 250,
        ended_retention_ms: 10_000,
        extra_toml: "[transcode]\nenabled = false\n".into(),
        ..NodeOpts::default()
    })
    .await;
    let r = soak(SoakConfig {
        http: node.http_addr(),
        rtmp: node.rtmp_addr().to_string(),
        admin_token: node.admin_token().to_owned(),
        node_pid: node.pid().expect("node pid"),
        streams: 4,
        viewers: 200,
        duration: Duration::from_secs(180),
        republish_every: Duration::from_secs(30),
        sample_every: Duration::from_secs(5),
        warmup: Duration::from_secs(60),
        tags,
    })
    .await;
    let mut summary = r.json.clone();
    summary["samples"] = serde_json::Value::Null;
    println!("soak: {summary:#}");
    let log = node.log_text();
    assert!(
        !log.contains("panicked"),
        "the node panicked during the soak:\n{}",
        node.logs_tail()
    );
    assert!(r.cycles >= 16, "only {} publish cycles completed", r.cycles);
    assert_eq!(r.publish_failures, 0, "failed publishes: {summary}");
    assert_eq!(r.errors, 0, "viewer errors: {summary}");
    assert_eq!(
        r.viewers_never_started, 0,
        "viewers never started: {summary}"
    );
    assert_eq!(r.viewers_with_stall, 0, "viewers stalled: {summary}");
    assert!(
        r.memory_growth_pct <= MEMORY_TOLERANCE_PCT,
        "memory grew {} % (tolerance {MEMORY_TOLERANCE_PCT} %): {summary}",
        r.memory_growth_pct
    );
    for (what, g) in [
        ("open descriptors", r.fds_growth_pct),
        ("tokio tasks", r.tasks_growth_pct),
    ] {
        assert!(
            g <= COUNT_TOLERANCE_PCT,
            "{what} grew {g} % (tolerance {COUNT_TOLERANCE_PCT} %): {summary}"
        );
    }
}
