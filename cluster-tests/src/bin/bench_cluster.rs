//! `bench_cluster`: the cluster's numbers (issue 4), on real node processes over loopback.
//!
//! - registry convergence: a key created on one node (the API answers once the Raft leader
//!   applied it), until every node lists it; polled every 2 ms on all nodes at once;
//! - failover: origin `kill -9` until every other node reports the stream ERROR; Raft leader
//!   `kill -9` until the survivors agree on a new leader (fresh cluster per run);
//! - origin -> edge added latency: the same LL-HLS blocking reload (`_HLS_msn`/`_HLS_part` of
//!   the next part) sent to the origin and to an edge at once; the difference of the times
//!   they are answered, per part;
//! - edge CPU: process CPU of the replicating edge vs. an idle member over the same window,
//!   per replicated video rendition.
//!
//! Prints one JSON object. Run by `scripts/bench-cluster` (release build, `HIVECAST_BIN`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cluster_tests::*;
use serde_json::{json, Value};

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn summary(mut v: Vec<f64>) -> Value {
    let n = v.len();
    json!({
        "samples": n,
        "p50": pct(&mut v, 0.5),
        "p95": pct(&mut v, 0.95),
        "max": v.iter().copied().fold(f64::NAN, f64::max),
    })
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

async fn status(node: &Node, stream: &str) -> Option<(String, u64)> {
    let (code, v) = node.get_json(&format!("/v1/streams/{stream}")).await;
    (code == 200).then(|| {
        (
            v["status"].as_str().unwrap_or_default().to_owned(),
            v["epoch"].as_u64().unwrap_or(0),
        )
    })
}

async fn cluster() -> TestCluster {
    let c = TestCluster::start(&["eu", "eu", "us"], |_, o| {
        o.extra_toml = "[transcode]\nenabled = false\n".into();
    })
    .await;
    c.wait_converged(&[0, 1, 2], 3, Duration::from_secs(30))
        .await;
    c
}

async fn registry_convergence(c: &TestCluster, samples: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for i in 0..samples {
        let on = i % c.nodes.len();
        let key = c.nodes[on].create_key(&format!("conv{i}")).await;
        let t0 = Instant::now();
        let seen = futures_util::future::join_all(c.nodes.iter().map(|n| {
            let id = key.key_id.clone();
            async move {
                try_wait_every(
                    Duration::from_millis(2),
                    Duration::from_secs(10),
                    async || {
                        let keys = n.list_keys().await;
                        keys.iter()
                            .any(|k| k["key_id"] == id.as_str())
                            .then(|| t0.elapsed())
                    },
                )
                .await
            }
        }))
        .await;
        let seen: Vec<Duration> = seen
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|waited| {
                anyhow::anyhow!("key {} not on every node after {waited:?}", key.key_id)
            })?;
        let worst = seen.into_iter().max().unwrap_or_default();
        out.push(worst.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

async fn origin_kill(runs: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let mut c = cluster().await;
        let key = c.nodes[0].create_key("fo").await;
        let _p = Publisher::ffmpeg(&c.nodes[2].rtmp_url(&key.key), PublishOpts::default());
        wait_until("ACTIVE everywhere", Duration::from_secs(20), async || {
            for n in &c.nodes {
                if status(n, "fo").await.map(|s| s.0) != Some("ACTIVE".into()) {
                    return None;
                }
            }
            Some(())
        })
        .await;
        let t0 = Instant::now();
        c.nodes[2].kill();
        let took = wait_until(
            "ERROR on the survivors",
            Duration::from_secs(10),
            async || {
                for n in &c.nodes[..2] {
                    if status(n, "fo").await.map(|s| s.0) != Some("ERROR".into()) {
                        return None;
                    }
                }
                Some(t0.elapsed())
            },
        )
        .await;
        out.push(took.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

async fn leader_kill(runs: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let mut c = cluster().await;
        let leader = c
            .wait_converged(&[0, 1, 2], 3, Duration::from_secs(30))
            .await;
        let li = c.index_of(&leader);
        let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
        let t0 = Instant::now();
        c.nodes[li].kill();
        let took = wait_until("a new leader", Duration::from_secs(10), async || {
            let mut seen: Option<String> = None;
            for &i in &others {
                let v = c.view(i).await;
                let l = v["leader"].as_str()?.to_owned();
                if l == leader || seen.get_or_insert_with(|| l.clone()) != &l {
                    return None;
                }
            }
            Some(t0.elapsed())
        })
        .await;
        out.push(took.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// The next part after what `path` lists: (msn, part).
async fn next_part(node: &Node, path: &str) -> Option<(u64, u64)> {
    let p = fetch_playlist(node, path).await?;
    match p.trailing_parts.last() {
        Some(last) => Some((last.msn, last.index + 1)),
        None => Some((p.next_msn(), 0)),
    }
}

async fn edge_latency_and_cpu(samples: usize) -> Result<(Vec<f64>, Value)> {
    let c = cluster().await;
    let key = c.nodes[0].create_key("edge").await;
    let _p = Publisher::ffmpeg(
        &c.nodes[0].rtmp_url(&key.key),
        PublishOpts {
            width: 1280,
            height: 720,
            ..PublishOpts::default()
        },
    );
    let path = "/cmaf/edge/source/index.m3u8";
    wait_until(
        "the edge replicating",
        Duration::from_secs(30),
        async || {
            fetch_playlist(&c.nodes[2], path)
                .await
                .filter(|p| !p.segments.is_empty())
        },
    )
    .await;
    // CPU window: the edge (node3) replicates and answers one viewer's blocking reloads; node2
    // is an idle member. Latency samples are taken in the same window.
    let (edge_pid, idle_pid) = (
        c.nodes[2].pid().context("edge pid")?,
        c.nodes[1].pid().context("idle pid")?,
    );
    let (e0, i0, t0) = (cpu_ticks(edge_pid)?, cpu_ticks(idle_pid)?, Instant::now());
    let mut diffs = Vec::new();
    while diffs.len() < samples {
        let Some((msn, part)) = next_part(&c.nodes[0], path).await else {
            bail!("origin playlist unreadable");
        };
        let q = format!("{path}?_HLS_msn={msn}&_HLS_part={part}");
        let start = Instant::now();
        let (o, e) = tokio::join!(
            async {
                let r = c.nodes[0].get_text(&q).await;
                (r.0, start.elapsed())
            },
            async {
                let r = c.nodes[2].get_text(&q).await;
                (r.0, start.elapsed())
            }
        );
        if o.0 == 200 && e.0 == 200 {
            diffs.push((e.1.as_secs_f64() - o.1.as_secs_f64()) * 1000.0);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (e1, i1) = (cpu_ticks(edge_pid)?, cpu_ticks(idle_pid)?);
    let edge_pct = (e1 - e0) as f64 / 100.0 / secs * 100.0;
    let idle_pct = (i1 - i0) as f64 / 100.0 / secs * 100.0;
    let renditions = c.nodes[2].get_json("/v1/streams/edge").await.1["renditions"]
        .as_array()
        .map_or(1, Vec::len)
        .max(1);
    let cpu = json!({
        "window_s": secs,
        "source": "1280x720 30 fps x264 (ffmpeg testsrc2), passthrough: 1 video rendition + audio, CMAF and TS",
        "edge_cpu_pct": edge_pct,
        "idle_member_cpu_pct": idle_pct,
        "video_renditions": renditions,
        "cpu_pct_per_rendition": (edge_pct - idle_pct) / renditions as f64,
    });
    Ok((diffs, cpu))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let conv = {
        let c = cluster().await;
        registry_convergence(&c, 30).await?
    };
    let origin = origin_kill(runs).await?;
    let leader = leader_kill(runs).await?;
    let (edge, cpu) = edge_latency_and_cpu(50).await?;
    let out = json!({
        "nodes": 3,
        "registry_convergence_ms": summary(conv),
        "origin_kill_to_error_everywhere_ms": summary(origin),
        "leader_kill_to_new_leader_ms": summary(leader),
        "origin_to_edge_added_latency_ms": summary(edge),
        "edge_cpu": cpu,
        "settings": {"dead_after_ms": 1500, "heartbeat_ms": 250, "raft_heartbeat_ms": 100, "election_ms": [500, 1000]},
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
