//! Crash safety (issue 8 §4): `kill -9` in the middle of a burst of key operations loses nothing
//! that was acknowledged (a key created, a key revoked, their audit entries), and the restarted
//! node never serves a segment name it served before the crash.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_tests::*;
use serde_json::Value;

/// Media names (segments and parts) listed in an LL-HLS or TS playlist.
fn media_names(playlist: &str) -> HashSet<String> {
    playlist
        .lines()
        .filter_map(|l| {
            if l.starts_with("#EXT-X-PART:") {
                l.split("URI=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            } else if !l.starts_with('#') && !l.is_empty() {
                Some(l.to_owned())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_key_operations_loses_nothing_acknowledged() {
    let mut node = Node::start(NodeOpts {
        extra_toml: "[transcode]\nenabled = false\n".into(),
        ..NodeOpts::default()
    })
    .await;
    // A live stream, and the names of what it served before the crash.
    let live_key = node.create_key("live").await;
    let mut publisher = Publisher::ffmpeg(&node.rtmp_url(&live_key.key), PublishOpts::default());
    node.wait_stream_state("live", "ACTIVE", Duration::from_secs(20))
        .await;
    let before = wait_until("segments served", Duration::from_secs(20), async || {
        let ll = node.get_ok_text("/cmaf/live/source/index.m3u8").await?;
        let ts = node.get_ok_text("/hls/live/source/index.m3u8").await?;
        let names: HashSet<String> = media_names(&ll).union(&media_names(&ts)).cloned().collect();
        (names.iter().any(|n| n.ends_with(".ts")) && names.len() >= 3).then_some(names)
    })
    .await;

    // Keys to revoke during the burst.
    let mut to_revoke = Vec::new();
    for i in 0..40 {
        to_revoke.push(node.create_key(&format!("old{i}")).await.key_id);
    }
    let created: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (base, token, http) = (
        node.http_url(),
        node.admin_token().to_owned(),
        reqwest::Client::new(),
    );
    // Two workers: one creates keys, one revokes; each records what the server acknowledged.
    let creator = {
        let (created, base, token, http) =
            (created.clone(), base.clone(), token.clone(), http.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let stream = format!("new{i}");
                let Ok(r) = http
                    .post(format!("{base}/v1/keys"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "stream": stream }))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status().as_u16() != 201 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return; // the answer did not arrive whole: not acknowledged
                };
                let id = v["key_id"].as_str().unwrap_or_default().to_owned();
                created.lock().unwrap().push((id, stream));
            }
        })
    };
    let revoker = {
        let (revoked, base, token, http) =
            (revoked.clone(), base.clone(), token.clone(), http.clone());
        tokio::spawn(async move {
            for id in to_revoke {
                let Ok(r) = http
                    .delete(format!("{base}/v1/keys/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status().as_u16() != 204 {
                    return;
                }
                revoked.lock().unwrap().push(id);
            }
        })
    };
    wait_until("a burst under way", Duration::from_secs(30), async || {
        (created.lock().unwrap().len() >= 15 && revoked.lock().unwrap().len() >= 15).then_some(())
    })
    .await;
    node.kill(); // SIGKILL, mid-burst
    let _ = creator.await;
    let _ = revoker.await;
    publisher.kill();
    let created = created.lock().unwrap().clone();
    let revoked = revoked.lock().unwrap().clone();

    node.restart().await;
    let keys = node.list_keys().await;
    let by_id = |id: &str| keys.iter().find(|k| k["key_id"] == id).cloned();
    for (id, stream) in &created {
        let k = by_id(id).unwrap_or_else(|| panic!("acknowledged key {id} ({stream}) lost"));
        assert_eq!(k["stream"], stream.as_str(), "{k}");
        assert_eq!(k["revoked"], false, "{k}");
    }
    for id in &revoked {
        let revoked_now = by_id(id).is_none_or(|k| k["revoked"] == true);
        assert!(
            revoked_now,
            "acknowledged revocation of {id} lost: {:?}",
            by_id(id)
        );
    }
    let all_audit: Vec<Value> = {
        let (status, v) = node.get_json_admin("/v1/audit?limit=10000").await;
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    let has = |event: &str, id: &str| {
        all_audit
            .iter()
            .any(|e| e["event"] == event && e["detail"] == format!("key {id}").as_str())
    };
    for (id, _) in &created {
        assert!(has("key_created", id), "audit of the creation of {id} lost");
    }
    for id in &revoked {
        assert!(
            has("key_revoked", id),
            "audit of the revocation of {id} lost"
        );
    }

    // The stream again after the crash: no name it serves was served before.
    let _again = Publisher::ffmpeg(&node.rtmp_url(&live_key.key), PublishOpts::default());
    let after = wait_until(
        "segments served again",
        Duration::from_secs(30),
        async || {
            let st = node.stream_status("live").await;
            (st["status"] == "ACTIVE").then_some(())?;
            let ll = node.get_ok_text("/cmaf/live/source/index.m3u8").await?;
            let ts = node.get_ok_text("/hls/live/source/index.m3u8").await?;
            let names: HashSet<String> =
                media_names(&ll).union(&media_names(&ts)).cloned().collect();
            let fresh: HashSet<String> = names.difference(&before).cloned().collect();
            (fresh.iter().any(|n| n.ends_with(".ts"))).then_some(names)
        },
    )
    .await;
    let reused: Vec<&String> = after.intersection(&before).collect();
    assert!(
        reused.is_empty(),
        "names served before the crash served again: {reused:?}"
    );
    eprintln!(
        "{{\"acknowledged_creates\":{},\"acknowledged_revokes\":{}}}",
        created.len(),
        revoked.len()
    );
}
