//! Black-box tests of the cluster (issue 4): real `hivecast` processes forming a Raft registry
//! over QUIC on loopback, real ffmpeg publishers, and chaos (SIGKILL, SIGSTOP/SIGCONT).
//!
//! Each test starts its own cluster on its own ports (nodes `node1..`, the first one the first
//! seed). Failure detection runs with `dead_after_ms = 1500`.

use std::time::{Duration, Instant};

use cluster_tests::*;
use serde_json::Value;

/// Publisher start + first keyframe + registry round trips, on a loaded 2-core machine.
const LIVE_DEADLINE: Duration = Duration::from_secs(20);
/// How long nodes may take to agree on membership after start.
const FORM_DEADLINE: Duration = Duration::from_secs(30);

fn status_of(v: &Value) -> String {
    v["status"].as_str().unwrap_or_default().to_owned()
}

/// Waits until every node in `on` reports `stream` in `status` with `epoch`; returns when.
async fn wait_all_status(
    c: &TestCluster,
    on: &[usize],
    stream: &str,
    status: &str,
    epoch: u64,
    deadline: Duration,
) -> Instant {
    wait_until(
        &format!("nodes {on:?} to report {stream} {status} (epoch {epoch})"),
        deadline,
        async || {
            for &i in on {
                let (code, v) = c.nodes[i].get_json(&format!("/v1/streams/{stream}")).await;
                if code != 200 || status_of(&v) != status || v["epoch"].as_u64() != Some(epoch) {
                    return None;
                }
            }
            Some(Instant::now())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_registry_and_any_key_works_on_any_node() {
    let c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    let leader = c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;

    // /v1/cluster: members with roles, regions, health, load; exactly one leader, voters all.
    let v = c.view(1).await;
    assert_eq!(v["mode"], "cluster", "{v}");
    let members = v["members"].as_array().expect("members");
    let leaders: Vec<_> = members.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{v}");
    assert_eq!(leaders[0]["name"], leader.as_str(), "{v}");
    let regions: Vec<_> = members
        .iter()
        .map(|m| m["region"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(regions, ["eu", "eu", "us"], "{v}");
    assert!(
        members
            .iter()
            .all(|m| m["voter"] == true && m["load"]["cpu_pct"].is_number()),
        "{v}"
    );

    // The CLI shows the same.
    let (st, out, err) = c.nodes[2]
        .cli(&["cluster", "status", "--url", &c.nodes[2].http_url()])
        .await;
    assert!(st.success(), "{err}");
    let cli: Value = serde_json::from_str(&out).expect("cluster status prints JSON");
    assert_eq!(cli["members"].as_array().map(Vec::len), Some(3), "{out}");

    // A key created on node2 publishes on node3; every node sees the same record.
    let key = c.nodes[1].create_key("demo").await;
    wait_until(
        "the key to reach node3",
        Duration::from_secs(5),
        async || {
            c.nodes[2]
                .list_keys()
                .await
                .iter()
                .any(|k| k["key_id"] == key.key_id.as_str())
                .then_some(())
        },
    )
    .await;
    let mut publisher = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
    c.nodes[2]
        .wait_stream_state("demo", "ACTIVE", LIVE_DEADLINE)
        .await;
    wait_all_status(&c, &[0, 1, 2], "demo", "ACTIVE", 1, Duration::from_secs(3)).await;
    for n in &c.nodes {
        let s = n.stream_status("demo").await;
        assert_eq!(s["origin"], "node3", "{s}");
    }
    // The registry also carries the session's renditions, so a node that holds no media of
    // the stream lists them too.
    wait_until(
        "node1 to list the renditions",
        Duration::from_secs(10),
        async || {
            let s = c.nodes[0].stream_status("demo").await;
            (s["renditions"] == serde_json::json!(["source"])).then_some(())
        },
    )
    .await;

    // A clean unpublish is ENDED_GRACEFULLY everywhere, and a WebSocket on another node hears it.
    let mut ws = WsClient::connect(&format!(
        "{}/v1/streams/demo/events",
        c.nodes[0].http_url().replace("http", "ws")
    ))
    .await
    .expect("ws");
    publisher.stop_gracefully().await.expect("ffmpeg stops");
    ws.wait_for("ENDED_GRACEFULLY on node1", Duration::from_secs(5), |m| {
        m["status"] == "ENDED_GRACEFULLY"
    })
    .await;
    wait_all_status(
        &c,
        &[0, 1, 2],
        "demo",
        "ENDED_GRACEFULLY",
        1,
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_on_two_nodes_exactly_one_wins() {
    let c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let key = c.nodes[0].create_key("race").await;
    wait_until(
        "the key on node2 and node3",
        Duration::from_secs(5),
        async || {
            for i in [1, 2] {
                if !c.nodes[i]
                    .list_keys()
                    .await
                    .iter()
                    .any(|k| k["key_id"] == key.key_id.as_str())
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let mut a = Publisher::ffmpeg(&c.nodes[1].rtmp_url(&key.key), PublishOpts::default());
    let mut b = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
    let s = c.nodes[0]
        .wait_stream_state("race", "ACTIVE", LIVE_DEADLINE)
        .await;
    let winner = s["origin"].as_str().expect("origin").to_owned();
    assert_eq!(s["epoch"], 1, "one claim only: {s}");
    // The loser is refused and exits; the winner keeps publishing.
    let (loser, winner_pub) = if winner == "node2" {
        (&mut b, &mut a)
    } else {
        (&mut a, &mut b)
    };
    let status = loser
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("loser exits");
    assert!(
        !status.success(),
        "the loser must be refused:\n{}",
        loser.log()
    );
    assert!(
        winner_pub.is_running(),
        "winner died:\n{}",
        winner_pub.log()
    );
    wait_all_status(&c, &[0, 1, 2], "race", "ACTIVE", 1, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_origin_fails_its_stream_everywhere_and_a_republish_elsewhere_continues() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let key = c.nodes[0].create_key("live").await;
    let _p = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2], "live", "ACTIVE", 1, LIVE_DEADLINE).await;
    let mut ws = WsClient::connect(&format!(
        "{}/v1/streams/live/events",
        c.nodes[0].http_url().replace("http", "ws")
    ))
    .await
    .expect("ws");
    // A viewer on node1 (an edge: it replicates from node3).
    let video = "/cmaf/live/source/index.m3u8";
    let before = playlist_past(&c, 0, video, 1).await;

    let killed = Instant::now();
    c.nodes[2].kill();
    let at = wait_all_status(&c, &[0, 1], "live", "ERROR", 1, Duration::from_secs(5)).await;
    let took = at.duration_since(killed);
    let m = ws
        .wait_for("ERROR on node1's WebSocket", Duration::from_secs(2), |m| {
            m["status"] == "ERROR"
        })
        .await;
    eprintln!(
        "origin kill -> ERROR on every node: {} ms ({m})",
        took.as_millis()
    );
    let s = c.nodes[0].stream_status("live").await;
    assert!(
        s["error"].as_str().unwrap_or("").contains("node3"),
        "the reason names the dead origin: {s}"
    );

    // The broadcaster reconnects to node1: same name, new epoch, ACTIVE everywhere alive, and
    // the WebSocket viewers on node1 are told.
    let _p2 = Publisher::ffmpeg(&c.nodes[0].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1], "live", "ACTIVE", 2, LIVE_DEADLINE).await;
    ws.wait_for(
        "ACTIVE epoch 2 on node1's WebSocket",
        Duration::from_secs(2),
        |m| m["status"] == "ACTIVE" && m["epoch"] == 2,
    )
    .await;
    assert_eq!(c.nodes[1].stream_status("live").await["origin"], "node1");
    // The viewer's URL continues: later media sequence numbers, one discontinuity further.
    let after = playlist_past(&c, 0, video, before.next_msn()).await;
    assert!(
        after.media_sequence >= before.next_msn(),
        "{} then {}",
        before.next_msn(),
        after.media_sequence
    );
    let (_, text) = c.nodes[0].get_text(video).await;
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_publishing_goes_on() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    let leader = c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let li = c.index_of(&leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    let killed = Instant::now();
    c.nodes[li].kill();
    let new_leader = wait_until(
        "a new leader on the survivors",
        Duration::from_secs(5),
        async || {
            let mut seen = None;
            for &i in &others {
                let v = c.view(i).await;
                let l = v["leader"].as_str()?.to_owned();
                if l == leader || seen.get_or_insert_with(|| l.clone()) != &l {
                    return None;
                }
            }
            seen
        },
    )
    .await;
    let took = killed.elapsed();
    eprintln!(
        "leader {leader} killed -> {new_leader} leads after {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(3), "new leader after {took:?}");

    // Keys and publishing work on the survivors.
    let key = c.nodes[others[0]].create_key("after").await;
    let _p = Publisher::ffmpeg(
        &c.nodes[others[1]].rtmp_url(&key.key),
        PublishOpts::default(),
    );
    wait_all_status(&c, &others, "after", "ACTIVE", 1, LIVE_DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_is_replaced_and_rejoins_as_a_follower_after_thaw() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    let leader = c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let li = c.index_of(&leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    // A stream that lives on a survivor keeps playing through the election.
    let key = c.nodes[others[0]].create_key("steady").await;
    let _p = Publisher::ffmpeg(
        &c.nodes[others[0]].rtmp_url(&key.key),
        PublishOpts::default(),
    );
    wait_all_status(&c, &[0, 1, 2], "steady", "ACTIVE", 1, LIVE_DEADLINE).await;
    let path = "/hls/steady/source/index.m3u8";
    let before = playlist_past(&c, others[1], path, 0).await.next_msn();

    let frozen = Instant::now();
    c.nodes[li].freeze().expect("SIGSTOP");
    let new_leader = wait_until(
        "a new leader while the old one is frozen",
        Duration::from_secs(5),
        async || {
            let mut seen = None;
            for &i in &others {
                let l = c.view(i).await["leader"].as_str()?.to_owned();
                if l == leader || seen.get_or_insert_with(|| l.clone()) != &l {
                    return None;
                }
            }
            seen
        },
    )
    .await;
    let took = frozen.elapsed();
    eprintln!(
        "leader {leader} frozen -> {new_leader} leads after {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(3), "new leader after {took:?}");
    // Playback on the survivors went on (the edge replicates from the stream's origin), and
    // a new key works.
    playlist_past(&c, others[1], path, before).await;
    let key2 = c.nodes[others[1]].create_key("during").await;
    assert!(!key2.key.is_empty());

    c.nodes[li].thaw().expect("SIGCONT");
    wait_until(
        "the thawed node to follow the new leader",
        Duration::from_secs(5),
        async || {
            let v = c.view(li).await;
            (v["leader"] == new_leader.as_str()).then_some(())
        },
    )
    .await;
    c.wait_converged(&[0, 1, 2], 3, Duration::from_secs(10))
        .await;
    assert_eq!(
        status_of(&c.nodes[li].stream_status("steady").await),
        "ACTIVE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_origin_does_not_serve_its_old_epoch_after_thaw() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let key = c.nodes[0].create_key("cold").await;
    let _p1 = Publisher::ffmpeg(&c.nodes[1].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2], "cold", "ACTIVE", 1, LIVE_DEADLINE).await;
    c.nodes[1].get_ok_text("/hls/cold/source/index.m3u8").await;

    c.nodes[1].freeze().expect("SIGSTOP");
    wait_all_status(&c, &[0, 2], "cold", "ERROR", 1, Duration::from_secs(5)).await;
    // The broadcaster starts again on node3 while node2 is frozen; the first publisher's
    // connection to node2 stays open (its frames wait in the socket buffers), so node2 thaws
    // with a live tree of epoch 1 that only the registry can stop.
    let _p2 = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 2], "cold", "ACTIVE", 2, LIVE_DEADLINE).await;

    c.nodes[1].thaw().expect("SIGCONT");
    // From the first request after the thaw, node2 never offers epoch 1 as live: each answer
    // is an error (503 while it catches up), an ended playlist, or epoch 2.
    wait_until(
        "node2 to catch up with epoch 2",
        Duration::from_secs(5),
        async || {
            let (code, body) = c.nodes[1].get_text("/hls/cold/source/index.m3u8").await;
            assert!(
                code != 200 || body.contains("#EXT-X-ENDLIST") || !body.contains("\n1-"),
                "node2 served epoch 1 as live after the thaw:\n{body}"
            );
            let s = c.nodes[1].get_json("/v1/streams/cold").await.1;
            (s["epoch"] == 2).then_some(())
        },
    )
    .await;
    // From then on node2 serves the current session (replicated from node3), never epoch 1:
    // every segment it lists is named `2-...`.
    let p = wait_until(
        "node2 to serve epoch 2 in place of epoch 1",
        Duration::from_secs(10),
        async || {
            fetch_playlist(&c.nodes[1], "/hls/cold/source/index.m3u8")
                .await
                .filter(|p| !p.segments.is_empty() && !p.endlist)
        },
    )
    .await;
    assert!(
        p.segments.iter().all(|s| s.uri.starts_with("2-")),
        "node2 lists a segment of another session: {:?}",
        p.segments.iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_later_joins_and_routing_prefers_the_viewers_region() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    c.add_node("ap").await;
    c.wait_converged(&[0, 1, 2, 3], 4, FORM_DEADLINE).await;
    let v = c.view(0).await;
    let n4 = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "node4")
        .cloned()
        .expect("node4 listed");
    assert_eq!(n4["role"], "learner", "voters are capped at 3: {v}");

    // A key created on the new node works on node1.
    let key = c.nodes[3].create_key("routed").await;
    let _p = Publisher::ffmpeg(&c.nodes[0].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2, 3], "routed", "ACTIVE", 1, LIVE_DEADLINE).await;

    // reqwest follows redirects by default; the harness client must not for this check.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let via = c.nodes[1].http_url();
    let get = async |region: &str, query: &str| {
        let resp = no_follow
            .get(format!("{via}/v1/route/routed{query}"))
            .header("X-Viewer-Region", region)
            .send()
            .await
            .expect("route");
        (
            resp.status().as_u16(),
            resp.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        )
    };
    let (code, loc) = get("us", "").await;
    assert_eq!(code, 302);
    assert_eq!(
        loc,
        format!("{}/cmaf/routed/master.m3u8", c.nodes[2].http_url()),
        "us viewers go to node3"
    );
    let (_, loc) = get("ap", "?format=ts").await;
    assert_eq!(
        loc,
        format!("{}/hls/routed/master.m3u8", c.nodes[3].http_url()),
        "ap viewers go to node4"
    );
    let (_, loc) = get("eu", "").await;
    assert!(
        loc.starts_with(&c.nodes[0].http_url()) || loc.starts_with(&c.nodes[1].http_url()),
        "eu viewers go to node1 or node2: {loc}"
    );

    // An edge killed: routing stops sending its region's viewers there within 3 s.
    let node3 = c.nodes[2].http_url();
    c.nodes[2].kill();
    let killed = Instant::now();
    wait_until(
        "routing to skip the dead node3",
        Duration::from_secs(3),
        async || {
            let (_, loc) = get("us", "").await;
            (!loc.is_empty() && !loc.starts_with(&node3)).then_some(())
        },
    )
    .await;
    eprintln!(
        "edge kill -> routed elsewhere after {} ms",
        killed.elapsed().as_millis()
    );
    // Other streams untouched.
    assert_eq!(
        status_of(&c.nodes[0].stream_status("routed").await),
        "ACTIVE"
    );
}

/// Waits until `path` on node `i` parses as a playlist whose next msn is beyond `msn`.
async fn playlist_past(c: &TestCluster, i: usize, path: &str, msn: u64) -> LlHlsPlaylist {
    wait_until(
        &format!("node{} {path} past msn {msn}", i + 1),
        Duration::from_secs(20),
        async || {
            fetch_playlist(&c.nodes[i], path)
                .await
                .filter(|p| p.next_msn() > msn && !p.segments.is_empty())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_the_origins_stream_with_the_same_numbers_and_bytes() {
    let mut c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let key = c.nodes[0].create_key("rep").await;
    let _p = Publisher::ffmpeg(&c.nodes[0].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2], "rep", "ACTIVE", 1, LIVE_DEADLINE).await;

    // node3 holds nothing of "rep" until a viewer asks; then it replicates from node1.
    let video = "/cmaf/rep/source/index.m3u8";
    let origin = playlist_past(&c, 0, video, 1).await;
    let edge = playlist_past(&c, 2, video, origin.segments.last().unwrap().msn).await;
    // The same numbering and names: segment N on the edge is segment N on the origin, byte
    // for byte, and so is its first part.
    let seg = edge
        .segments
        .iter()
        .find(|s| origin.segments.iter().any(|o| o.msn == s.msn))
        .expect("a segment both list");
    let o = origin.segments.iter().find(|o| o.msn == seg.msn).unwrap();
    assert_eq!(seg.uri, o.uri);
    assert_eq!(
        seg.parts.len(),
        o.parts.len(),
        "same parts of segment {}",
        seg.msn
    );
    assert_eq!(
        seg.parts.first().map(|p| &p.uri),
        o.parts.first().map(|p| &p.uri)
    );
    let base = "/cmaf/rep/source/";
    let from_origin = c.nodes[0]
        .get_ok_bytes(&format!("{base}{}", seg.uri))
        .await
        .expect("origin segment");
    let from_edge = c.nodes[2]
        .get_ok_bytes(&format!("{base}{}", seg.uri))
        .await
        .expect("edge segment");
    assert_eq!(
        from_origin, from_edge,
        "segment {} differs between origin and edge",
        seg.msn
    );

    // A blocking reload on the edge for the next part is answered as the part arrives.
    let next = edge.next_msn() + 1;
    let started = Instant::now();
    let (code, body) = c.nodes[2]
        .get_text(&format!("{video}?_HLS_msn={next}&_HLS_part=0"))
        .await;
    assert_eq!(code, 200, "{body}");
    let p = LlHlsPlaylist::parse(&body).unwrap();
    assert!(
        p.segments.iter().any(|s| s.msn >= next) || p.trailing_parts.iter().any(|x| x.msn == next),
        "part 0 of {next} listed: {body}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // Independent clients decode the edge's streams.
    let probe = ffprobe_ok(&format!("{}/hls/rep/master.m3u8", c.nodes[2].http_url()))
        .await
        .expect("ffprobe the edge's TS HLS");
    assert!(probe.video().is_some(), "{probe:?}");

    // The origin dies: once the registry says ERROR the edge stops announcing parts that will
    // not come (no preload hint), and keeps the playlist open (no ENDLIST) for a new session.
    c.nodes[0].kill();
    wait_until(
        "the edge to stop announcing parts",
        Duration::from_secs(6),
        async || {
            let (code, body) = c.nodes[2].get_text(video).await;
            (code == 200 && !body.contains("#EXT-X-PRELOAD-HINT")).then_some(body)
        },
    )
    .await;
    let (_, body) = c.nodes[2].get_text(video).await;
    assert!(!body.contains("#EXT-X-ENDLIST"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_stream_continues_its_timeline_with_a_discontinuity() {
    let c = TestCluster::start(&["eu", "eu", "us"], |_, _| {}).await;
    c.wait_converged(&[0, 1, 2], 3, FORM_DEADLINE).await;
    let key = c.nodes[0].create_key("again").await;
    let mut p1 = Publisher::ffmpeg(&c.nodes[1].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2], "again", "ACTIVE", 1, LIVE_DEADLINE).await;
    let path = "/hls/again/source/index.m3u8";
    let first = playlist_past(&c, 1, path, 1).await;
    let last_msn_1 = first.next_msn();
    // The broadcaster drops and reconnects to another node.
    p1.stop_gracefully().await.expect("ffmpeg stops");
    wait_all_status(
        &c,
        &[0, 1, 2],
        "again",
        "ENDED_GRACEFULLY",
        1,
        Duration::from_secs(5),
    )
    .await;
    let t = Instant::now();
    let _p2 = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
    wait_all_status(&c, &[0, 1, 2], "again", "ACTIVE", 2, LIVE_DEADLINE).await;
    eprintln!(
        "republish -> ACTIVE everywhere after {} ms (ffmpeg start included)",
        t.elapsed().as_millis()
    );
    // Same URL, on any node: the numbering continues past the first session's, and the new
    // session is a discontinuity.
    for i in [0, 2] {
        let p = playlist_past(&c, i, path, last_msn_1).await;
        assert!(
            p.media_sequence >= last_msn_1,
            "node{}: media sequence {} after {}",
            i + 1,
            p.media_sequence,
            last_msn_1
        );
        let (_, text) = c.nodes[i].get_text(path).await;
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
    }
}
