//! Harness for the black-box tests of hivecast: real `hivecast` processes, real publishers, real players.
//!
//! What it owns:
//! - [`Node`]: one `hivecast run` process on free loopback ports with its own config file, data dir and log
//!   files in a temp dir. It waits for `/readyz`, is killed on drop, and prints the tail of its logs when the
//!   test that owns it panics.
//! - [`Publisher`]: an `ffmpeg` (lavfi `testsrc2` + `sine`, or a prepared file sent as is) or GStreamer
//!   (`rtmp2sink`) RTMP publisher, stopped cleanly ([`Publisher::stop_gracefully`]: the encoder
//!   unpublishes) or killed ([`Publisher::kill`]: the TCP connection drops without unpublish). Killed on drop.
//! - Independent clients: [`ffprobe_ok`], [`ffprobe_video_packets`], [`ffmpeg_decode`] and [`gst_play`]
//!   (external programs that must decode what the node serves), [`WsClient`] (tokio-tungstenite), playlist
//!   parsing with m3u8-rs plus a small LL-HLS tag reader ([`LlHlsPlaylist`]), and an MPD reader on roxmltree
//!   ([`MpdInfo`]).
//! - [`load`]: the viewer load generator (simulated players on keep-alive connections, looping RTMP
//!   publishers, `/proc` readings) behind `scripts/bench-viewers`, `scripts/bench-streams` and the scale test.
//! - [`wait_until`]: the only way tests wait. It polls a condition every [`POLL_INTERVAL`] and, past its
//!   deadline, panics saying what it was waiting for. There are no bare sleeps in the tests.
//!
//! What it does not do: it knows nothing of hivecast's crates. Everything goes through the process boundary
//! (CLI, config file, HTTP, WebSocket, RTMP), as `CONTRACT.md` describes it.
//!
//! Invariants: every child process started here is killed when its handle drops; every port comes from
//! binding `127.0.0.1:0`, so tests can run in parallel; every wait has a deadline.

pub mod browser;
pub mod delay;
pub mod edge;
pub mod load;
pub mod soak;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// How often [`wait_until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long [`Node::start`] waits for `/readyz`. Generous: a debug build on a loaded 2-core CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time limit of one external client run (ffprobe, ffmpeg decode, gst-launch).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Video frames GStreamer must play to call a live stream playable (one second at 30 fps).
///
/// The sinks run with `sync=true`, as a player's do: playback is paced by the clock, so these frames
/// take about a second of real time after playbin's start-up buffering (about 5 s for live DASH).
pub const GST_FRAMES: u64 = 30;
/// Deadline for [`GST_FRAMES`].
pub const GST_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------------------

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Some`, and returns that value.
///
/// Panics after `deadline` with a message naming `what`, so a failing test says what never happened.
pub async fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    match try_wait_until(deadline, &mut check).await {
        Ok(v) => v,
        Err(waited) => panic!("timed out after {waited:?} waiting for: {what}"),
    }
}

/// Like [`wait_until`] but returns `Err(elapsed)` instead of panicking, for tests that measure or that
/// expect a condition *not* to become true.
pub async fn try_wait_until<T>(
    deadline: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> std::result::Result<T, Duration> {
    try_wait_every(POLL_INTERVAL, deadline, check).await
}

/// [`try_wait_until`] polling every `interval` (benchmarks that time a condition finely).
pub async fn try_wait_every<T>(
    interval: Duration,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> std::result::Result<T, Duration> {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() >= deadline {
            return Err(start.elapsed());
        }
        tokio::time::sleep(interval).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ports, paths, logs
// ---------------------------------------------------------------------------------------------------------

/// Ports handed out by this process: binding port 0 twice in a row may return the same port once the first
/// listener is dropped, and tests in one binary run in parallel.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A free TCP port on 127.0.0.1: bind port 0, read the port, drop the listener.
///
/// The port is free when returned; another process could still take it before the node binds it (rare on
/// loopback, and the node then fails to start with a clear bind error in its log).
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

/// The workspace root: the parent of this crate's manifest dir.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cluster-tests has a parent dir")
        .to_path_buf()
}

/// The hivecast binary: `$HIVECAST_BIN`, else `$CARGO_TARGET_DIR/debug/hivecast`, else
/// `<workspace>/target/debug/hivecast` (built by `cargo build -p hivecast`, which `scripts/test` runs first).
pub fn hivecast_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HIVECAST_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join("hivecast")
}

/// The last `max_bytes` of a file, lossily decoded, or a note that it could not be read.
pub fn file_tail(path: &Path, max_bytes: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Quotes a string as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Kills a child (SIGKILL) and reaps it; ignores a child that already exited.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends a signal to a child process that has not been reaped yet.
fn signal_child(child: &Child, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Waits for a child to exit, for at most `deadline` (std's `Child` has no async wait, so this
/// is the one condition wait, [`try_wait_until`], over `try_wait`).
async fn wait_child(child: &mut Child, deadline: Duration) -> Result<ExitStatus> {
    let id = child.id();
    try_wait_until(deadline, async || child.try_wait().ok().flatten())
        .await
        .map_err(|_| anyhow!("process {id} still running after {deadline:?}"))
}

// ---------------------------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------------------------

/// How to configure a [`Node`]. `Default` gives the contract's defaults except where a test needs speed.
#[derive(Debug, Clone)]
pub struct NodeOpts {
    /// `node.id`.
    pub node_id: String,
    /// `auth.admin_token`.
    pub admin_token: String,
    /// `debug.fault_injection`: enables `POST /v1/debug/streams/{stream}/panic`.
    pub fault_injection: bool,
    /// `rtmp.handshake_timeout_ms`.
    pub handshake_timeout_ms: u64,
    /// `rtmp.idle_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// `rtmp.max_streams` (0: no limit).
    pub max_streams: usize,
    /// `media.segment_target_ms`.
    pub segment_target_ms: u64,
    /// `media.part_target_ms`.
    pub part_target_ms: u64,
    /// `media.window_segments`.
    pub window_segments: u64,
    /// `media.media_timeout_ms`.
    pub media_timeout_ms: u64,
    /// `media.ended_retention_ms`.
    pub ended_retention_ms: u64,
    /// Appended verbatim to the written config, after every section above: for sections the
    /// fields do not cover (`[transcode]` keys and its `[[transcode.ladder]]` rungs). The file is
    /// merged over the embedded default by figment, which replaces arrays: a `[[transcode.ladder]]`
    /// given here replaces the default ladder, it is not appended to it.
    pub extra_toml: String,
    /// Extra keys of the `[http]` section (TOML allows a table only once, and the harness writes
    /// `[http]` itself), e.g. `"header_read_timeout_ms = 1500\n"`.
    pub http_toml: String,
    /// Extra keys of the `[rtmp]` section, e.g. `"max_connections = 2010\n"`.
    pub rtmp_toml: String,
    /// `node.region`.
    pub region: String,
    /// The `[cluster]` section, when this node is part of a test cluster.
    pub cluster: Option<ClusterOpts>,
}

/// A node's `[cluster]` section in a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// `cluster.listen` port (UDP, 127.0.0.1).
    pub quic_port: u16,
    /// `cluster.seeds` ports (127.0.0.1); the first one starts the cluster.
    pub seeds: Vec<u16>,
    /// `cluster.tls_dir`, shared by the test cluster's nodes.
    pub tls_dir: PathBuf,
    /// `cluster.dead_after_ms`.
    pub dead_after_ms: u64,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            node_id: "node1".into(),
            admin_token: "test-admin-token-0123456789abcdef".into(),
            fault_injection: false,
            handshake_timeout_ms: 5000,
            idle_timeout_ms: 10000,
            max_streams: 0,
            segment_target_ms: 2000,
            part_target_ms: 200,
            window_segments: 6,
            media_timeout_ms: 5000,
            ended_retention_ms: 30000,
            extra_toml: String::new(),
            http_toml: String::new(),
            rtmp_toml: String::new(),
            region: "local".into(),
            cluster: None,
        }
    }
}

fn cluster_toml(c: &ClusterOpts) -> String {
    let seeds: Vec<String> = c
        .seeds
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    format!(
        "[cluster]\nlisten = \"127.0.0.1:{port}\"\nseeds = [{seeds}]\ntls_dir = {tls}\n\
         dead_after_ms = {dead}\n",
        port = c.quic_port,
        seeds = seeds.join(", "),
        tls = toml_str(&c.tls_dir.to_string_lossy()),
        dead = c.dead_after_ms,
    )
}

/// A free UDP port on 127.0.0.1 (for a node's QUIC listener).
pub fn free_udp_port() -> u16 {
    loop {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = sock.local_addr().expect("local_addr").port();
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

/// Several nodes forming one cluster on loopback, sharing a cluster certificate directory.
pub struct TestCluster {
    /// The nodes, in seed order (`nodes[0]` is the first seed).
    pub nodes: Vec<Node>,
    shared: tempfile::TempDir,
    seeds: Vec<u16>,
}

impl TestCluster {
    /// Starts `regions.len()` nodes (`node1`, `node2`, ... in those regions) at once; each is
    /// ready (`/readyz`) when this returns. `tweak` may adjust each node's options.
    pub async fn start(regions: &[&str], tweak: impl Fn(usize, &mut NodeOpts)) -> TestCluster {
        let shared = tempfile::Builder::new()
            .prefix("hivecast-cluster-")
            .tempdir()
            .expect("tempdir");
        let seeds: Vec<u16> = regions.iter().map(|_| free_udp_port()).collect();
        let starts = regions.iter().enumerate().map(|(i, region)| {
            let mut o = NodeOpts {
                node_id: format!("node{}", i + 1),
                region: (*region).to_owned(),
                cluster: Some(ClusterOpts {
                    quic_port: seeds[i],
                    seeds: seeds.clone(),
                    tls_dir: shared.path().join("tls"),
                    dead_after_ms: 1500,
                }),
                ..NodeOpts::default()
            };
            tweak(i, &mut o);
            Node::start(o)
        });
        let nodes = futures_util::future::join_all(starts).await;
        TestCluster {
            nodes,
            shared,
            seeds,
        }
    }

    /// Starts one more node with the same seeds; ready when this returns.
    pub async fn add_node(&mut self, region: &str) -> &mut Node {
        let i = self.nodes.len();
        let o = NodeOpts {
            node_id: format!("node{}", i + 1),
            region: region.to_owned(),
            cluster: Some(ClusterOpts {
                quic_port: free_udp_port(),
                seeds: self.seeds.clone(),
                tls_dir: self.shared.path().join("tls"),
                dead_after_ms: 1500,
            }),
            ..NodeOpts::default()
        };
        self.nodes.push(Node::start(o).await);
        &mut self.nodes[i]
    }

    /// `GET /v1/cluster` on node `i`.
    pub async fn view(&self, i: usize) -> Value {
        self.nodes[i].get_json("/v1/cluster").await.1
    }

    /// Waits until every running node listed in `on` sees `members` members, all up, and the same
    /// leader; returns the leader's name.
    pub async fn wait_converged(&self, on: &[usize], members: usize, deadline: Duration) -> String {
        wait_until(
            &format!("nodes {on:?} to agree on {members} healthy members and one leader"),
            deadline,
            async || {
                let mut leader = None;
                for &i in on {
                    let (code, v) = self.nodes[i].get_json("/v1/cluster").await;
                    if code != 200 {
                        return None;
                    }
                    let ms = v["members"].as_array()?;
                    let up = ms.iter().filter(|m| m["health"] == "up").count();
                    let l = v["leader"].as_str()?.to_owned();
                    if ms.len() != members || up != members {
                        return None;
                    }
                    if leader.get_or_insert_with(|| l.clone()) != &l {
                        return None;
                    }
                }
                leader
            },
        )
        .await
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.opts().node_id == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}

/// A stream key as `POST /v1/keys` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `key_id`: names the key in list/revoke; not a secret.
    pub key_id: String,
    /// `key`: the secret that goes into the RTMP URL.
    pub key: String,
    /// `stream`: the stream this key publishes to.
    pub stream: String,
}

impl Key {
    /// Reads a key from the JSON object `{"key_id","key","stream"}`.
    pub fn from_json(v: &Value) -> Result<Key> {
        let field = |name: &str| -> Result<String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("key JSON lacks string field {name:?}: {v}"))
        };
        Ok(Key {
            key_id: field("key_id")?,
            key: field("key")?,
            stream: field("stream")?,
        })
    }
}

/// One running `hivecast run --config <tempdir>/hivecast.toml`.
pub struct Node {
    /// Holds config, data dir and logs; deleted when the node drops.
    dir: tempfile::TempDir,
    opts: NodeOpts,
    http_port: u16,
    rtmp_port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Node {
    /// Writes the config, starts the binary and waits until `GET /readyz` answers 200.
    ///
    /// Panics (with the log tail) if the binary is missing, exits, or is not ready within [`READY_TIMEOUT`].
    pub async fn start(opts: NodeOpts) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("hivecast-node-")
            .tempdir()
            .expect("tempdir");
        let mut node = Node {
            dir,
            opts,
            http_port: free_port(),
            rtmp_port: free_port(),
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("reqwest client"),
        };
        node.write_config();
        node.spawn().await;
        node
    }

    /// Starts a node with [`NodeOpts::default`].
    pub async fn start_default() -> Node {
        Node::start(NodeOpts::default()).await
    }

    fn write_config(&self) {
        let o = &self.opts;
        let data_dir = self.data_dir();
        let config = format!(
            "# written by cluster-tests\n\
             [node]\nid = {id}\ndata_dir = {data}\nregion = {region}\n\n\
             [rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\nhandshake_timeout_ms = {hs}\nidle_timeout_ms = {idle}\n\
             max_streams = {max_streams}\nmax_chunk_size = 65536\nmax_message_len = 8388608\n{rtmp_extra}\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n{http_extra}\n\
             [auth]\nadmin_token = {token}\n\n\
             [media]\nsegment_target_ms = {seg}\npart_target_ms = {part}\nwindow_segments = {win}\n\
             media_timeout_ms = {mt}\nended_retention_ms = {er}\n\n\
             [debug]\nfault_injection = {fi}\n\n{cluster}\n{extra}\n",
            id = toml_str(&o.node_id),
            region = toml_str(&o.region),
            cluster = o.cluster.as_ref().map(cluster_toml).unwrap_or_default(),
            data = toml_str(&data_dir.to_string_lossy()),
            rtmp = self.rtmp_port,
            rtmp_extra = o.rtmp_toml,
            hs = o.handshake_timeout_ms,
            idle = o.idle_timeout_ms,
            max_streams = o.max_streams,
            http = self.http_port,
            http_extra = o.http_toml,
            token = toml_str(&o.admin_token),
            seg = o.segment_target_ms,
            part = o.part_target_ms,
            win = o.window_segments,
            mt = o.media_timeout_ms,
            er = o.ended_retention_ms,
            fi = o.fault_injection,
            extra = o.extra_toml,
        );
        std::fs::write(self.config_path(), config).expect("write config");
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the node freezes (its sockets stay open and silent).
    pub fn freeze(&mut self) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node not running"))?;
        signal_child(child, libc::SIGSTOP)
    }

    /// SIGCONT: undoes [`Node::freeze`].
    pub fn thaw(&mut self) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("node not running"))?;
        signal_child(child, libc::SIGCONT)
    }

    async fn spawn(&mut self) {
        let bin = hivecast_bin();
        assert!(
            bin.exists(),
            "hivecast binary not found at {} (run `cargo build -p hivecast`, or set HIVECAST_BIN)",
            bin.display()
        );
        // Append: a restart keeps the first run's log above the second's.
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("open log file")
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("--config").arg(self.config_path());
        // The test's own environment must not reconfigure the node (HIVECAST_HTTP__LISTEN etc.).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HIVECAST_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("RUST_BACKTRACE", "1")
            .env(
                "RUST_LOG",
                std::env::var("HIVECAST_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(open("stdout.log"))
            .stderr(open("stderr.log"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.http_url());
        let http = self.http.clone();
        let child = &mut self.child;
        let ready = try_wait_until(READY_TIMEOUT, async || {
            if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
                return Some(Err(status));
            }
            let resp = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            (resp.status() == reqwest::StatusCode::OK).then_some(Ok(()))
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(status)) => panic!(
                "hivecast exited before ready ({status})\n{}",
                self.logs_tail()
            ),
            Err(_) => panic!(
                "hivecast not ready after {READY_TIMEOUT:?} at {url}\n{}",
                self.logs_tail()
            ),
        }
    }

    /// `http://127.0.0.1:{http_port}`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `rtmp://127.0.0.1:{rtmp_port}/live/{key}`.
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port)
    }

    /// The RTMP listen address, for raw TCP tests.
    pub fn rtmp_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.rtmp_port))
    }

    /// The HTTP listen address, for the load generator's raw connections.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// The admin token from the config.
    pub fn admin_token(&self) -> &str {
        &self.opts.admin_token
    }

    /// The options the node was started with.
    pub fn opts(&self) -> &NodeOpts {
        &self.opts
    }

    /// The node's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hivecast.toml")
    }

    /// The node's data dir (kept across [`Node::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch dir that lives as long as the node (publisher logs etc.).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last 4 KiB of the node's stdout and stderr.
    pub fn logs_tail(&self) -> String {
        format!(
            "---- hivecast stdout (tail) ----\n{}\n---- hivecast stderr (tail) ----\n{}\n----",
            file_tail(&self.dir.path().join("stdout.log"), 4096),
            file_tail(&self.dir.path().join("stderr.log"), 4096)
        )
    }

    /// Everything the node has logged so far (stdout then stderr), for checks on its lines.
    pub fn log_text(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then waits up to `deadline` for the process to exit: its exit status and how long it
    /// took, or `Err` if it is still running (it is then left running; [`Node::kill`] ends it).
    pub async fn terminate(&mut self, deadline: Duration) -> Result<(ExitStatus, Duration)> {
        let start = Instant::now();
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("node not running"))?;
        signal_child(child, libc::SIGTERM)?;
        let exited = try_wait_every(Duration::from_millis(20), deadline, async || {
            child.try_wait().ok().flatten()
        })
        .await;
        match exited {
            Ok(status) => {
                self.child = None;
                Ok((status, start.elapsed()))
            }
            Err(waited) => Err(anyhow!("still running {waited:?} after SIGTERM")),
        }
    }

    /// Kills the process (SIGKILL). The data dir stays; [`Node::restart`] can start it again.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
    }

    /// Kills the process and starts it again on the same config, ports and data dir.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A plain HTTP client (20 s timeout per request).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET {http_url}{path}`; panics on transport errors (the node must answer).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.http_url());
        self.http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// `GET` with the admin token.
    pub async fn get_admin(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.http_url());
        self.http
            .get(&url)
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// `GET` returning status and body text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// `GET` returning status and the body parsed as JSON (`Value::Null` if it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET` with the admin token, returning status and the body parsed as JSON (`Value::Null` if not JSON).
    pub async fn get_json_admin(&self, path: &str) -> (u16, Value) {
        let resp = self.get_admin(path).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET` the body bytes of `path` if the status is 200 (segments, init segments).
    pub async fn get_ok_bytes(&self, path: &str) -> Option<Vec<u8>> {
        let resp = self.get(path).await;
        if resp.status() != reqwest::StatusCode::OK {
            return None;
        }
        resp.bytes().await.ok().map(|b| b.to_vec())
    }

    /// `GET` the body text of `path` if the status is 200.
    pub async fn get_ok_text(&self, path: &str) -> Option<String> {
        let (status, text) = self.get_text(path).await;
        (status == 200).then_some(text)
    }

    /// `POST /v1/keys {"stream": stream}` with the admin token; panics unless 201.
    pub async fn create_key(&self, stream: &str) -> Key {
        let url = format!("{}/v1/keys", self.http_url());
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.admin_token())
            .json(&serde_json::json!({ "stream": stream }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "POST /v1/keys for {stream:?}: body {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("key JSON {body:?}: {e}"));
        Key::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `DELETE /v1/keys/{key_id}` with the admin token; returns the status.
    pub async fn revoke_key(&self, key_id: &str) -> u16 {
        let url = format!("{}/v1/keys/{key_id}", self.http_url());
        self.http
            .delete(&url)
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"))
            .status()
            .as_u16()
    }

    /// `GET /v1/keys` with the admin token; panics unless 200 with a JSON array.
    pub async fn list_keys(&self) -> Vec<Value> {
        let resp = self.get_admin("/v1/keys").await;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET /v1/keys: {body}");
        match serde_json::from_str(&body) {
            Ok(Value::Array(a)) => a,
            _ => panic!("GET /v1/keys is not a JSON array: {body}"),
        }
    }

    /// `GET /v1/streams/{stream}`; panics unless 200 with a JSON object.
    pub async fn stream_status(&self, stream: &str) -> Value {
        let (status, v) = self.get_json(&format!("/v1/streams/{stream}")).await;
        assert_eq!(status, 200, "GET /v1/streams/{stream}: {v}");
        assert!(v.is_object(), "status of {stream} is not an object: {v}");
        v
    }

    /// The `status` field of the stream, or `None` if the stream is unknown (404).
    pub async fn stream_state(&self, stream: &str) -> Option<String> {
        let (status, v) = self.get_json(&format!("/v1/streams/{stream}")).await;
        if status != 200 {
            return None;
        }
        v.get("status").and_then(Value::as_str).map(str::to_owned)
    }

    /// Waits until the stream's status is `want`; returns the whole status object.
    pub async fn wait_stream_state(&self, stream: &str, want: &str, deadline: Duration) -> Value {
        let what = format!("stream {stream} to be {want}");
        wait_until(&what, deadline, async || {
            let (status, v) = self.get_json(&format!("/v1/streams/{stream}")).await;
            (status == 200 && v.get("status").and_then(Value::as_str) == Some(want)).then_some(v)
        })
        .await
    }

    /// `GET /v1/audit?stream=` with the admin token; panics unless 200 with a JSON array.
    pub async fn audit(&self, stream: &str) -> Vec<Value> {
        let resp = self.get_admin(&format!("/v1/audit?stream={stream}")).await;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET /v1/audit?stream={stream}: {body}");
        match serde_json::from_str(&body) {
            Ok(Value::Array(a)) => a,
            _ => panic!("audit is not a JSON array: {body}"),
        }
    }

    /// Runs the binary's CLI (`hivecast <args>`) against this node with `HIVECAST_ADMIN_TOKEN` set; returns
    /// (exit status, stdout, stderr). The CLI gets `--url` only if the caller passes it.
    pub async fn cli(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let mut cmd = tokio::process::Command::new(hivecast_bin());
        cmd.args(args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HIVECAST_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("HIVECAST_ADMIN_TOKEN", self.admin_token())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("hivecast {args:?} did not finish in {CLIENT_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("run hivecast {args:?}: {e}"));
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "node {} (http {}, rtmp {}):\n{}",
                self.opts.node_id,
                self.http_port,
                self.rtmp_port,
                self.logs_tail()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Publishers
// ---------------------------------------------------------------------------------------------------------

/// Options of an ffmpeg test publisher. `Default`: 320x180 at 30 fps, H.264 (x264 ultrafast, zerolatency,
/// GOP 30 frames) + AAC, no time limit.
#[derive(Debug, Clone)]
pub struct PublishOpts {
    /// Picture size.
    pub width: u32,
    /// Picture size.
    pub height: u32,
    /// Frames per second of the `testsrc2` source (the GOP stays 30 frames unless `extra_args` set `-g`).
    pub frame_rate: u32,
    /// `-t`: stop after this many seconds of media (a clean end: ffmpeg unpublishes).
    pub duration_s: Option<f64>,
    /// Replaces `libx264` and its options (e.g. `"flv1"`).
    pub video_codec: Option<String>,
    /// Replaces `aac` (e.g. `"libmp3lame"`).
    pub audio_codec: Option<String>,
    /// Inserted before `-f flv URL`.
    pub extra_args: Vec<String>,
}

impl Default for PublishOpts {
    fn default() -> Self {
        PublishOpts {
            width: 320,
            height: 180,
            frame_rate: 30,
            duration_s: None,
            video_codec: None,
            audio_codec: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running RTMP publisher process. Killed (SIGKILL) on drop.
pub struct Publisher {
    child: Option<Child>,
    kind: &'static str,
    log: PathBuf,
    /// Keeps the log dir alive.
    _dir: tempfile::TempDir,
    started_at: Instant,
}

impl Publisher {
    /// Starts `ffmpeg -re` publishing lavfi `testsrc2` + `sine` to `url`.
    pub fn ffmpeg(url: &str, opts: PublishOpts) -> Publisher {
        let mut args: Vec<String> = vec![
            "-hide_banner".into(),
            "-nostats".into(),
            "-loglevel".into(),
            "warning".into(),
        ];
        let src = format!(
            "testsrc2=size={}x{}:rate={}",
            opts.width, opts.height, opts.frame_rate
        );
        args.extend(
            [
                "-re",
                "-f",
                "lavfi",
                "-i",
                &src,
                "-re",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
            ]
            .map(String::from),
        );
        if let Some(t) = opts.duration_s {
            args.extend(["-t".to_string(), format!("{t}")]);
        }
        match &opts.video_codec {
            None => args.extend(
                [
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-tune",
                    "zerolatency",
                    "-g",
                    "30",
                    "-pix_fmt",
                    "yuv420p",
                ]
                .map(String::from),
            ),
            Some(c) => args.extend(["-c:v".to_string(), c.clone(), "-g".into(), "30".into()]),
        }
        match &opts.audio_codec {
            None => args.extend(["-c:a", "aac"].map(String::from)),
            Some(c) => args.extend(["-c:a".to_string(), c.clone()]),
        }
        args.extend(opts.extra_args.iter().cloned());
        args.extend(["-f".to_string(), "flv".into(), url.to_string()]);
        Publisher::spawn("ffmpeg", "ffmpeg", &args)
    }

    /// Starts `ffmpeg -re -i FILE -c copy -f flv URL`: publishes a prepared file as it is (its own
    /// encoder settings, GOP and bitrate), in real time. Ends by itself at the end of the file.
    pub fn ffmpeg_file(url: &str, file: &Path) -> Publisher {
        let file = file.to_string_lossy().into_owned();
        let args: Vec<String> = [
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "warning",
            "-re",
            "-i",
            &file,
            "-c",
            "copy",
            "-f",
            "flv",
            url,
        ]
        .map(String::from)
        .to_vec();
        Publisher::spawn("ffmpeg", "ffmpeg", &args)
    }

    /// Starts a GStreamer `rtmp2sink` publisher (x264enc + avenc_aac in FLV), as an OBS-like second encoder.
    /// `gst-launch-1.0 -e`: on SIGINT it sends EOS, and rtmp2sink then sends FCUnpublish + deleteStream.
    pub fn gstreamer(url: &str) -> Publisher {
        let pipeline = format!(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=180,framerate=30/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! h264parse \
             ! flvmux name=m streamable=true ! rtmp2sink location={url} \
             audiotestsrc is-live=true ! audioconvert ! avenc_aac ! aacparse ! m."
        );
        let mut args = vec!["-e".to_string()];
        args.extend(pipeline.split_whitespace().map(String::from));
        Publisher::spawn("gstreamer", "gst-launch-1.0", &args)
    }

    fn spawn(kind: &'static str, program: &str, args: &[String]) -> Publisher {
        let dir = tempfile::Builder::new()
            .prefix("hivecast-pub-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join(format!("{kind}.log"));
        let out = File::create(&log).expect("publisher log");
        let err = out.try_clone().expect("clone log fd");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Publisher {
            child: Some(child),
            kind,
            log,
            _dir: dir,
            started_at: Instant::now(),
        }
    }

    /// When the process was spawned (the "publisher start" that latency limits count from).
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The publisher's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        file_tail(&self.log, 16 * 1024)
    }

    /// Stops the publisher the way a user does: `q` on ffmpeg's stdin (then SIGINT if it does not listen),
    /// SIGINT for gst-launch (`-e` turns it into EOS). The encoder then flushes and unpublishes
    /// (FCUnpublish, deleteStream). Returns the exit status and the instant the exit was observed.
    pub async fn stop_gracefully(&mut self) -> Result<(ExitStatus, Instant)> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("publisher already gone"))?;
        if let Some(status) = child.try_wait()? {
            return Ok((status, Instant::now()));
        }
        if self.kind == "ffmpeg" {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"q");
                let _ = stdin.flush();
            }
            if let Ok(status) = wait_child(child, Duration::from_secs(5)).await {
                return Ok((status, Instant::now()));
            }
        }
        signal_child(child, libc::SIGINT)?;
        let status = wait_child(child, Duration::from_secs(10)).await?;
        Ok((status, Instant::now()))
    }

    /// SIGSTOP: the process freezes, its TCP connection stays open and silent (a stalled encoder).
    pub fn freeze(&mut self) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("publisher already gone"))?;
        signal_child(child, libc::SIGSTOP)
    }

    /// SIGCONT: undoes [`Publisher::freeze`].
    pub fn thaw(&mut self) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("publisher already gone"))?;
        signal_child(child, libc::SIGCONT)
    }

    /// SIGKILL: the TCP connection drops without an unpublish.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            kill_child(c);
        }
    }

    /// Waits for the process to exit on its own within `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("publisher already gone"))?;
        wait_child(child, deadline)
            .await
            .with_context(|| format!("{} log:\n{}", self.kind, self.log()))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} publisher log (tail) ----\n{}\n----",
                self.kind,
                file_tail(&self.log, 2048)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// External clients
// ---------------------------------------------------------------------------------------------------------

/// Runs a program to completion with a time limit; returns (status, stdout, stderr).
async fn run_program(
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<(ExitStatus, String, String)> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow!("{program} {args:?} did not finish within {limit:?}"))?
        .with_context(|| format!("spawn {program}"))?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// One stream as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStream {
    /// `video`, `audio`, ...
    pub codec_type: String,
    /// `h264`, `aac`, ...
    pub codec_name: String,
    /// Picture width (video only).
    pub width: Option<u64>,
    /// Picture height (video only).
    pub height: Option<u64>,
    /// ffprobe's profile name (`High`, `Main`, `Constrained Baseline`, `LC`).
    pub profile: Option<String>,
    /// ffprobe's `level` (H.264: `level_idc`, e.g. 31 for 3.1); absent when ffprobe reports none.
    pub level: Option<i64>,
}

/// What ffprobe found behind a URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInfo {
    /// ffprobe's `format.format_name` (`hls`, `dash`, ...).
    pub format_name: String,
    /// Every stream, in ffprobe's order (an HLS master lists each variant's streams).
    pub streams: Vec<ProbeStream>,
}

impl ProbeInfo {
    /// The first video stream.
    pub fn video(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == "video")
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&ProbeStream> {
        self.streams.iter().find(|s| s.codec_type == "audio")
    }
}

/// `ffprobe -v error -show_streams -show_format -of json URL`: Ok only if it exits 0, prints no error and
/// finds at least one stream.
pub async fn ffprobe_ok(url: &str) -> Result<ProbeInfo> {
    ffprobe_within(url, CLIENT_TIMEOUT).await
}

/// [`ffprobe_ok`] with its own time limit.
pub async fn ffprobe_within(url: &str, limit: Duration) -> Result<ProbeInfo> {
    let (status, stdout, stderr) = run_program(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            url,
        ],
        limit,
    )
    .await?;
    if !status.success() {
        bail!("ffprobe {url}: {status}: {}", stderr.trim());
    }
    if !stderr.trim().is_empty() {
        bail!("ffprobe {url} printed errors: {}", stderr.trim());
    }
    let v: Value =
        serde_json::from_str(&stdout).with_context(|| format!("ffprobe JSON: {stdout}"))?;
    let streams: Vec<ProbeStream> = v
        .get("streams")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| ProbeStream {
                    codec_type: s
                        .get("codec_type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    codec_name: s
                        .get("codec_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    width: s.get("width").and_then(Value::as_u64),
                    height: s.get("height").and_then(Value::as_u64),
                    profile: s.get("profile").and_then(Value::as_str).map(str::to_owned),
                    // ffprobe prints -99 (FF_LEVEL_UNKNOWN) when it has no level.
                    level: s.get("level").and_then(Value::as_i64).filter(|l| *l >= 0),
                })
                .collect()
        })
        .unwrap_or_default();
    if streams.is_empty() {
        bail!("ffprobe {url}: no streams: {stdout}");
    }
    let format_name = v
        .pointer("/format/format_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(ProbeInfo {
        format_name,
        streams,
    })
}

/// One video packet as ffprobe reads it (`-show_packets`), in file order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbePacket {
    /// `pts` in the stream's time base (90 kHz for MPEG-TS).
    pub pts: i64,
    /// `pts_time`, seconds.
    pub pts_time: f64,
    /// `flags` contains `K`.
    pub keyframe: bool,
    /// `size`, bytes.
    pub size: u64,
}

/// The video packets of a media file or URL (`ffprobe -select_streams v:0 -show_packets`), in file
/// order: for a segment, the first is the one it starts with. `Err` if ffprobe fails, prints an error,
/// or finds no video packet. To probe a CMAF segment, concatenate its init segment and it into a file.
pub async fn ffprobe_video_packets(input: &str) -> Result<Vec<ProbePacket>> {
    let (status, stdout, stderr) = run_program(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,pts_time,flags,size",
            "-of",
            "json",
            input,
        ],
        CLIENT_TIMEOUT,
    )
    .await?;
    if !status.success() {
        bail!("ffprobe packets {input}: {status}: {}", stderr.trim());
    }
    if !stderr.trim().is_empty() {
        bail!("ffprobe packets {input} printed errors: {}", stderr.trim());
    }
    let v: Value =
        serde_json::from_str(&stdout).with_context(|| format!("ffprobe JSON: {stdout}"))?;
    let mut out = Vec::new();
    for p in v
        .get("packets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        // ffprobe prints numbers as JSON numbers or strings depending on the field and version.
        let num = |name: &str| -> Option<f64> {
            let f = p.get(name)?;
            f.as_f64().or_else(|| f.as_str()?.parse().ok())
        };
        let pts = num("pts").ok_or_else(|| anyhow!("{input}: packet without pts: {p}"))?;
        out.push(ProbePacket {
            pts: pts as i64,
            pts_time: num("pts_time").unwrap_or(f64::NAN),
            keyframe: p
                .get("flags")
                .and_then(Value::as_str)
                .is_some_and(|f| f.contains('K')),
            size: num("size").unwrap_or(0.0) as u64,
        });
    }
    if out.is_empty() {
        bail!("ffprobe packets {input}: no video packet: {stdout}");
    }
    Ok(out)
}

/// What [`ffmpeg_decode`] decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeInfo {
    /// Video frames decoded (ffmpeg's `-progress` `frame=`).
    pub frames: u64,
}

/// `ffmpeg -v error -i URL -t SECONDS -f null -`: Ok only if it exits 0, prints no error line and decoded
/// at least one video frame (read from `-progress`).
pub async fn ffmpeg_decode(url: &str, seconds: u32) -> Result<DecodeInfo> {
    ffmpeg_decode_map(url, seconds, None).await
}

/// [`ffmpeg_decode`] restricted to the streams `-map` selects (e.g. `"0:v"`).
pub async fn ffmpeg_decode_map(url: &str, seconds: u32, map: Option<&str>) -> Result<DecodeInfo> {
    let secs = seconds.to_string();
    let limit = CLIENT_TIMEOUT + Duration::from_secs(u64::from(seconds) * 2);
    let mut args = vec!["-nostdin", "-v", "error", "-nostats", "-i", url];
    if let Some(m) = map {
        args.extend(["-map", m]);
    }
    args.extend(["-t", &secs, "-f", "null", "-progress", "pipe:1", "-"]);
    let (status, stdout, stderr) = run_program("ffmpeg", &args, limit).await?;
    if !status.success() {
        bail!("ffmpeg decode {url}: {status}: {}", stderr.trim());
    }
    if !stderr.trim().is_empty() {
        bail!("ffmpeg decode {url} printed errors: {}", stderr.trim());
    }
    let frames = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    if frames == 0 {
        bail!("ffmpeg decode {url}: no video frame decoded; progress: {stdout}");
    }
    Ok(DecodeInfo { frames })
}

/// What [`gst_play`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GstPlayInfo {
    /// Decoded video buffers that reached the video sink.
    pub video_buffers: u64,
    /// Time from start to the N-th buffer.
    pub elapsed: Duration,
}

/// Plays `url` with GStreamer's `playbin` (the element `gst-play-1.0` uses: souphttpsrc, typefind,
/// hlsdemux/dashdemux, decoders) into fakesinks and succeeds once `buffers` decoded video buffers reached
/// the video sink.
///
/// Why it counts instead of waiting for exit: on a live source a `fakesink num-buffers=N` posts EOS on its
/// branch only, the other branch never ends, and gst-launch also pauses whenever the demuxer reports
/// buffering below 100 %. So the pipeline runs with `-v`, the video sink reports each buffer
/// (`silent=false`, one `last-message = chain` line per buffer, line-buffered through `stdbuf -oL`), and the
/// process is killed once the count is reached. Fails if gst-launch exits or errors before that, or after
/// `limit`.
///
/// Sinks run with `sync=true`, paced by the pipeline clock as in a player. Unpaced sinks (`sync=false`)
/// cannot keep a live pipeline playing: the audio branch drains decodebin's 5 s multiqueue in an instant,
/// its buffering message pauses the whole pipeline until the queue refills in real time (about 5 s), and
/// the video branch gets only the frames it decoded in that instant; under CPU load that was a few frames
/// per 5 s cycle (30 frames not reached within 60 s), with nothing wrong in the stream.
pub async fn gst_play(url: &str, buffers: u64) -> Result<GstPlayInfo> {
    gst_play_within(url, buffers, CLIENT_TIMEOUT).await
}

/// [`gst_play`] with its own time limit.
pub async fn gst_play_within(url: &str, buffers: u64, limit: Duration) -> Result<GstPlayInfo> {
    gst_play_with("playbin", url, buffers, limit).await
}

/// [`gst_play_within`] with another player element: `playbin3` (decodebin3 and the adaptivedemux2
/// demuxers, hlsdemux2/dashdemux2; `GST_PLAY_USE_PLAYBIN3=1` makes gst-play-1.0 use it).
pub async fn gst_play_with(
    element: &str,
    url: &str,
    buffers: u64,
    limit: Duration,
) -> Result<GstPlayInfo> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new("stdbuf")
        .args([
            "-oL",
            "gst-launch-1.0",
            "-v",
            element,
            &format!("uri={url}"),
            "video-sink=fakesink name=vsink silent=false sync=true",
            "audio-sink=fakesink name=asink sync=true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn gst-launch-1.0")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut err_lines = tokio::io::BufReader::new(stderr).lines();
    let mut seen = 0u64;
    let mut tail: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut stderr_open = true;
    let outcome = tokio::time::timeout(limit, async {
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) => {
                        if l.contains("vsink: last-message = chain") {
                            seen += 1;
                            if seen >= buffers {
                                return Ok(());
                            }
                        } else if !l.contains("last-message") {
                            if l.starts_with("ERROR") || l.contains("error") {
                                errors.push(l.clone());
                            }
                            tail.push(l);
                            if tail.len() > 12 {
                                tail.remove(0);
                            }
                        }
                    }
                    _ => return Err(anyhow!("gst-launch exited")),
                },
                line = err_lines.next_line(), if stderr_open => match line {
                    Ok(Some(l)) => {
                        errors.push(l);
                    }
                    _ => stderr_open = false,
                },
            }
        }
    })
    .await;
    let _ = child.kill().await;
    match outcome {
        Ok(Ok(())) => Ok(GstPlayInfo { video_buffers: seen, elapsed: start.elapsed() }),
        Ok(Err(e)) => Err(anyhow!(
            "gst playbin {url}: {e} after {seen}/{buffers} video buffers; errors: {errors:?}; last lines: {tail:#?}"
        )),
        Err(_) => Err(anyhow!(
            "gst playbin {url}: only {seen}/{buffers} video buffers within {limit:?}; errors: {errors:?}; last lines: {tail:#?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------------------

/// A WebSocket client that yields the JSON text messages the server sends.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects to a `ws://` URL. A refused upgrade (e.g. 404) is an `Err`; see [`ws_upgrade_status`].
    pub async fn connect(
        url: &str,
    ) -> std::result::Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let (ws, _resp) = tokio_tungstenite::connect_async(url).await?;
        Ok(WsClient { ws })
    }

    /// The next JSON message, waiting at most `deadline`. Pings and pongs are skipped; a close, a
    /// non-JSON text, or the deadline is an `Err`.
    pub async fn next_json(&mut self, deadline: Duration) -> Result<Value> {
        use tokio_tungstenite::tungstenite::Message;
        let fut = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return serde_json::from_str::<Value>(t.as_str())
                            .with_context(|| format!("WebSocket message is not JSON: {t}"));
                    }
                    Some(Ok(Message::Binary(b))) => {
                        return serde_json::from_slice::<Value>(&b)
                            .context("binary WebSocket message is not JSON");
                    }
                    Some(Ok(Message::Close(c))) => bail!("WebSocket closed: {c:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => bail!("WebSocket error: {e}"),
                    None => bail!("WebSocket stream ended"),
                }
            }
        };
        tokio::time::timeout(deadline, fut)
            .await
            .map_err(|_| anyhow!("no WebSocket message within {deadline:?}"))?
    }

    /// Reads messages until one satisfies `pred` (returned) or `deadline` passes (panics naming `what` and
    /// listing what did arrive).
    pub async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.next_json(left).await {
                Ok(v) if pred(&v) => return v,
                Ok(v) => seen.push(v),
                Err(e) => {
                    panic!("waiting for WebSocket message {what}: {e}; received before: {seen:#?}")
                }
            }
        }
    }
}

/// The JSON messages of a WebSocket with their arrival times, collected by a background task, so a test
/// can measure when something became visible while it does other things. Keeps at most 100,000.
#[derive(Clone, Default)]
pub struct EventLog(std::sync::Arc<Mutex<Vec<(Instant, Value)>>>);

impl EventLog {
    /// Follows the WebSocket at `url` (panics if it cannot connect) until it closes.
    pub async fn follow(url: &str) -> EventLog {
        let mut ws = WsClient::connect(url)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {url}: {e}"));
        let log = EventLog::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(v) = ws.next_json(Duration::from_secs(3600)).await {
                let mut all = sink.0.lock().unwrap_or_else(|e| e.into_inner());
                if all.len() < 100_000 {
                    all.push((Instant::now(), v));
                }
            }
        });
        log
    }

    /// Follows a stream's events on `node` (`/v1/streams/{stream}/events`).
    pub async fn stream_events(node: &Node, stream: &str) -> EventLog {
        let host = node.http_url().trim_start_matches("http://").to_owned();
        Self::follow(&format!("ws://{host}/v1/streams/{stream}/events")).await
    }

    /// The first message that arrived at or after `since` and satisfies `pred`, waiting up to `deadline`
    /// (panics naming `what`).
    pub async fn first_since(
        &self,
        since: Instant,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        wait_until(what, deadline, async || {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(at, v)| *at >= since && pred(v))
                .cloned()
        })
        .await
    }
}

/// The HTTP status with which the server refused a WebSocket upgrade, or `None` if the upgrade succeeded
/// (or failed without an HTTP answer).
pub async fn ws_upgrade_status(url: &str) -> Option<u16> {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// HLS playlists
// ---------------------------------------------------------------------------------------------------------

/// Parses a master playlist with m3u8-rs (an independent parser); `Err` if it is not one.
pub fn parse_master(text: &str) -> Result<m3u8_rs::MasterPlaylist> {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => Ok(m),
        Ok(m3u8_rs::Playlist::MediaPlaylist(_)) => {
            bail!("expected a master playlist, got a media playlist:\n{text}")
        }
        Err(e) => bail!("m3u8-rs cannot parse playlist: {e:?}\n{text}"),
    }
}

/// Parses a media playlist with m3u8-rs (an independent parser); `Err` if it is not one.
pub fn parse_media(text: &str) -> Result<m3u8_rs::MediaPlaylist> {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => Ok(m),
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => {
            bail!("expected a media playlist, got a master playlist:\n{text}")
        }
        Err(e) => bail!("m3u8-rs cannot parse playlist: {e:?}\n{text}"),
    }
}

/// Parses an HLS attribute list (`A=1,B="x,y",C=YES`, RFC 8216 4.2) into name -> value, quotes removed.
pub fn parse_attributes(list: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_owned();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(stripped) = after.strip_prefix('"') {
            match stripped.find('"') {
                Some(end) => (stripped[..end].to_owned(), &stripped[end + 1..]),
                None => (stripped.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.insert(name, value);
        rest = next.trim_start_matches(',').trim_start();
    }
    out
}

/// One `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    /// Media sequence number of the parent segment.
    pub msn: u64,
    /// Index of the part within its parent segment.
    pub index: u64,
    /// `URI`.
    pub uri: String,
    /// `DURATION` in seconds.
    pub duration: f64,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// One complete segment (`EXTINF` + URI line).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    /// Media sequence number.
    pub msn: u64,
    /// The URI line.
    pub uri: String,
    /// `EXTINF` duration in seconds.
    pub duration: f64,
    /// The parts listed for this segment.
    pub parts: Vec<PartEntry>,
}

/// A media playlist read line by line for the Low-Latency HLS tags that m3u8-rs does not model
/// (RFC 8216bis: EXT-X-SERVER-CONTROL 4.4.3.8, EXT-X-PART-INF 4.4.3.7, EXT-X-PART 4.4.4.9,
/// EXT-X-PRELOAD-HINT 4.4.5.3, EXT-X-RENDITION-REPORT 4.4.5.4). Also works for plain media playlists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlHlsPlaylist {
    /// `EXT-X-VERSION`.
    pub version: Option<u64>,
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: Option<f64>,
    /// `EXT-X-MEDIA-SEQUENCE` (0 if absent).
    pub media_sequence: u64,
    /// `EXT-X-SERVER-CONTROL` attributes.
    pub server_control: Option<BTreeMap<String, String>>,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Option<f64>,
    /// Complete segments, in order.
    pub segments: Vec<SegmentEntry>,
    /// Parts after the last complete segment: the segment in progress, `msn = next_msn()`.
    pub trailing_parts: Vec<PartEntry>,
    /// `EXT-X-PRELOAD-HINT` attributes.
    pub preload_hints: Vec<BTreeMap<String, String>>,
    /// `EXT-X-RENDITION-REPORT` attributes.
    pub rendition_reports: Vec<BTreeMap<String, String>>,
    /// `EXT-X-MAP` URIs.
    pub map_uris: Vec<String>,
    /// Number of `EXT-X-PROGRAM-DATE-TIME` tags.
    pub program_date_times: usize,
    /// `EXT-X-ENDLIST` present.
    pub endlist: bool,
}

/// Number a segment's parts (`URI`, `DURATION`, `INDEPENDENT`) in playlist order.
fn numbered_parts(
    msn: u64,
    parts: impl IntoIterator<Item = (String, f64, bool)>,
) -> Vec<PartEntry> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (uri, duration, independent))| PartEntry {
            msn,
            index: i as u64,
            uri,
            duration,
            independent,
        })
        .collect()
}

impl LlHlsPlaylist {
    /// Reads a media playlist. `Err` if it does not start with `#EXTM3U` or a number does not parse.
    pub fn parse(text: &str) -> Result<LlHlsPlaylist> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            bail!("playlist does not start with #EXTM3U:\n{text}");
        }
        let mut p = LlHlsPlaylist::default();
        let mut pending_parts: Vec<(String, f64, bool)> = Vec::new();
        let mut pending_extinf: Option<f64> = None;
        let num = |s: &str| -> Result<f64> {
            s.trim()
                .parse::<f64>()
                .with_context(|| format!("not a number: {s:?}"))
        };
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
                p.version = Some(
                    v.trim()
                        .parse()
                        .with_context(|| format!("EXT-X-VERSION {v:?}"))?,
                );
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = Some(num(v)?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v
                    .trim()
                    .parse()
                    .with_context(|| format!("EXT-X-MEDIA-SEQUENCE {v:?}"))?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                p.server_control = Some(parse_attributes(v));
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                let a = parse_attributes(v);
                let t = a
                    .get("PART-TARGET")
                    .ok_or_else(|| anyhow!("PART-INF without PART-TARGET: {line}"))?;
                p.part_target = Some(num(t)?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                let a = parse_attributes(v);
                let uri = a
                    .get("URI")
                    .cloned()
                    .ok_or_else(|| anyhow!("PART without URI: {line}"))?;
                let d = num(a
                    .get("DURATION")
                    .ok_or_else(|| anyhow!("PART without DURATION: {line}"))?)?;
                pending_parts.push((
                    uri,
                    d,
                    a.get("INDEPENDENT").map(String::as_str) == Some("YES"),
                ));
            } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                p.preload_hints.push(parse_attributes(v));
            } else if let Some(v) = line.strip_prefix("#EXT-X-RENDITION-REPORT:") {
                p.rendition_reports.push(parse_attributes(v));
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                if let Some(u) = parse_attributes(v).get("URI") {
                    p.map_uris.push(u.clone());
                }
            } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
                p.program_date_times += 1;
            } else if line == "#EXT-X-ENDLIST" {
                p.endlist = true;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                pending_extinf = Some(num(v.split(',').next().unwrap_or_default())?);
            } else if !line.starts_with('#') {
                let msn = p.media_sequence + p.segments.len() as u64;
                let duration = pending_extinf
                    .take()
                    .ok_or_else(|| anyhow!("URI line without EXTINF: {line}"))?;
                let parts = numbered_parts(msn, pending_parts.drain(..));
                p.segments.push(SegmentEntry {
                    msn,
                    uri: line.to_owned(),
                    duration,
                    parts,
                });
            }
        }
        let msn = p.next_msn();
        p.trailing_parts = numbered_parts(msn, pending_parts);
        Ok(p)
    }

    /// The media sequence number of the segment after the last complete one.
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Every part, complete segments' first.
    pub fn parts(&self) -> impl Iterator<Item = &PartEntry> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .chain(self.trailing_parts.iter())
    }

    /// Whether part `index` of segment `msn` is listed.
    pub fn has_part(&self, msn: u64, index: u64) -> bool {
        self.parts().any(|p| p.msn == msn && p.index == index)
    }

    /// The part that does not exist yet and comes next: `(msn, part)` for a blocking reload.
    pub fn next_part(&self) -> (u64, u64) {
        match self.trailing_parts.last() {
            Some(p) => (p.msn, p.index + 1),
            None => (self.next_msn(), 0),
        }
    }

    /// Every URI the playlist references: map, segments, parts, preload hints.
    pub fn all_uris(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map_uris.clone();
        v.extend(self.segments.iter().map(|s| s.uri.clone()));
        v.extend(self.parts().map(|p| p.uri.clone()));
        v.extend(
            self.preload_hints
                .iter()
                .filter_map(|h| h.get("URI").cloned()),
        );
        v
    }
}

/// Resolves a playlist-relative URI against the playlist's URL path (`/hls/s/source/index.m3u8` +
/// `3-1.ts` -> `/hls/s/source/3-1.ts`). Absolute paths and URLs are returned as they are.
pub fn resolve(base_path: &str, uri: &str) -> String {
    if uri.starts_with('/') || uri.contains("://") {
        return uri.to_owned();
    }
    let dir = match base_path.rfind('/') {
        Some(i) => &base_path[..=i],
        None => "/",
    };
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in uri.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

// ---------------------------------------------------------------------------------------------------------
// DASH
// ---------------------------------------------------------------------------------------------------------

/// One `Representation` of an MPD; attributes missing on it are taken from its `AdaptationSet`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MpdRepresentation {
    /// `@id`.
    pub id: String,
    /// `@bandwidth`.
    pub bandwidth: Option<u64>,
    /// `@width`.
    pub width: Option<u64>,
    /// `@height`.
    pub height: Option<u64>,
    /// `@codecs`.
    pub codecs: Option<String>,
}

/// One `AdaptationSet` of an MPD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MpdAdaptationSet {
    /// `@contentType`, else derived from `@mimeType` (`video/mp4` -> `video`).
    pub content_type: String,
    /// `Representation@id`s.
    pub representation_ids: Vec<String>,
    /// The representations with their attributes.
    pub representations: Vec<MpdRepresentation>,
    /// `SegmentTemplate@media` (from the set or its first representation).
    pub media_template: Option<String>,
    /// `SegmentTemplate@initialization`.
    pub init_template: Option<String>,
    /// `SegmentTemplate@startNumber`.
    pub start_number: Option<u64>,
    /// Number of segments the `SegmentTimeline` describes (each `S` counts `1 + @r`).
    pub timeline_segments: u64,
}

/// The parts of an MPD the tests check, read with roxmltree (an independent XML parser).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MpdInfo {
    /// `MPD@type`.
    pub mpd_type: String,
    /// `MPD@availabilityStartTime`.
    pub availability_start_time: Option<String>,
    /// `UTCTiming` (`@schemeIdUri`, `@value`).
    pub utc_timing: Vec<(String, String)>,
    /// All adaptation sets of all periods.
    pub adaptation_sets: Vec<MpdAdaptationSet>,
}

impl MpdInfo {
    /// Parses an MPD; `Err` if it is not XML with an `MPD` root.
    pub fn parse(text: &str) -> Result<MpdInfo> {
        let doc =
            roxmltree::Document::parse(text).with_context(|| format!("MPD is not XML:\n{text}"))?;
        let root = doc.root_element();
        if root.tag_name().name() != "MPD" {
            bail!("root element is {:?}, not MPD", root.tag_name().name());
        }
        let mut info = MpdInfo {
            mpd_type: root.attribute("type").unwrap_or("static").to_owned(),
            availability_start_time: root.attribute("availabilityStartTime").map(str::to_owned),
            ..MpdInfo::default()
        };
        for n in root.children().filter(|n| n.has_tag_name("UTCTiming")) {
            info.utc_timing.push((
                n.attribute("schemeIdUri").unwrap_or_default().to_owned(),
                n.attribute("value").unwrap_or_default().to_owned(),
            ));
        }
        for set in root
            .descendants()
            .filter(|n| n.has_tag_name("AdaptationSet"))
        {
            let reps: Vec<roxmltree::Node> = set
                .children()
                .filter(|n| n.has_tag_name("Representation"))
                .collect();
            let mime = set
                .attribute("mimeType")
                .or_else(|| reps.first().and_then(|r| r.attribute("mimeType")))
                .unwrap_or_default();
            let content_type = set
                .attribute("contentType")
                .map(str::to_owned)
                .unwrap_or_else(|| mime.split('/').next().unwrap_or_default().to_owned());
            let template = set
                .children()
                .find(|n| n.has_tag_name("SegmentTemplate"))
                .or_else(|| {
                    reps.first()
                        .and_then(|r| r.children().find(|n| n.has_tag_name("SegmentTemplate")))
                });
            let mut a = MpdAdaptationSet {
                content_type,
                representation_ids: reps
                    .iter()
                    .filter_map(|r| r.attribute("id"))
                    .map(str::to_owned)
                    .collect(),
                representations: reps
                    .iter()
                    .map(|r| {
                        let attr = |name: &str| r.attribute(name).or_else(|| set.attribute(name));
                        let int = |name: &str| attr(name).and_then(|v| v.parse().ok());
                        MpdRepresentation {
                            id: r.attribute("id").unwrap_or_default().to_owned(),
                            bandwidth: int("bandwidth"),
                            width: int("width"),
                            height: int("height"),
                            codecs: attr("codecs").map(str::to_owned),
                        }
                    })
                    .collect(),
                ..MpdAdaptationSet::default()
            };
            if let Some(t) = template {
                a.media_template = t.attribute("media").map(str::to_owned);
                a.init_template = t.attribute("initialization").map(str::to_owned);
                a.start_number = t.attribute("startNumber").and_then(|s| s.parse().ok());
                for s in t.descendants().filter(|n| n.has_tag_name("S")) {
                    let r: i64 = s.attribute("r").and_then(|r| r.parse().ok()).unwrap_or(0);
                    a.timeline_segments += 1 + u64::try_from(r.max(0)).unwrap_or(0);
                }
            }
            info.adaptation_sets.push(a);
        }
        Ok(info)
    }

    /// The first adaptation set of a content type (`video`, `audio`).
    pub fn set(&self, content_type: &str) -> Option<&MpdAdaptationSet> {
        self.adaptation_sets
            .iter()
            .find(|a| a.content_type == content_type)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers for tests
// ---------------------------------------------------------------------------------------------------------

/// Fetches a media playlist (path relative to the node) and reads it with [`LlHlsPlaylist::parse`], if
/// the node answers 200.
pub async fn fetch_playlist(node: &Node, path: &str) -> Option<LlHlsPlaylist> {
    let text = node.get_ok_text(path).await?;
    LlHlsPlaylist::parse(&text).ok()
}

/// Collects the URIs of a set of playlists into `into` (paths resolved against each playlist's path).
pub async fn collect_uris(node: &Node, playlists: &[&str], into: &mut HashSet<String>) {
    for path in playlists {
        if let Some(p) = fetch_playlist(node, path).await {
            into.extend(p.all_uris().iter().map(|u| resolve(path, u)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
        #EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"init-3.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
        #EXT-X-PART:DURATION=0.2,URI=\"3-7.0.m4s\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"3-7.1.m4s\"\n\
        #EXTINF:2.0,\n3-7.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"3-8.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"3-8.1.m4s\"\n\
        #EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=8,LAST-PART=0\n";

    #[test]
    fn reads_ll_hls_tags() {
        let p = LlHlsPlaylist::parse(LL).unwrap();
        assert_eq!(p.media_sequence, 7);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(
            p.server_control.as_ref().unwrap()["CAN-BLOCK-RELOAD"],
            "YES"
        );
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 7);
        assert_eq!(p.segments[0].parts.len(), 2);
        assert_eq!(
            p.trailing_parts,
            vec![PartEntry {
                msn: 8,
                index: 0,
                uri: "3-8.0.m4s".into(),
                duration: 0.2,
                independent: true
            }]
        );
        assert_eq!(p.next_part(), (8, 1));
        assert!(p.has_part(7, 1) && !p.has_part(8, 1));
        assert_eq!(p.program_date_times, 1);
        assert_eq!(p.rendition_reports[0]["LAST-MSN"], "8");
        assert_eq!(p.preload_hints[0]["URI"], "3-8.1.m4s");
        assert!(!p.endlist);
        assert!(p.all_uris().contains(&"init-3.mp4".to_string()));
    }

    #[test]
    fn attributes_keep_commas_inside_quotes() {
        let a = parse_attributes("CODECS=\"avc1.64001f,mp4a.40.2\",BANDWIDTH=1000,AUDIO=\"aud\"");
        assert_eq!(a["CODECS"], "avc1.64001f,mp4a.40.2");
        assert_eq!(a["BANDWIDTH"], "1000");
        assert_eq!(a["AUDIO"], "aud");
    }

    #[test]
    fn resolves_relative_uris() {
        assert_eq!(
            resolve("/cmaf/s/source/index.m3u8", "3-1.m4s"),
            "/cmaf/s/source/3-1.m4s"
        );
        assert_eq!(
            resolve("/cmaf/s/source/index.m3u8", "../audio/index.m3u8"),
            "/cmaf/s/audio/index.m3u8"
        );
        assert_eq!(resolve("/hls/s/master.m3u8", "/x/y.ts"), "/x/y.ts");
    }

    #[test]
    fn plain_media_playlist_without_extinf_before_uri_is_rejected() {
        assert!(LlHlsPlaylist::parse("#EXTM3U\nseg.ts\n").is_err());
        assert!(LlHlsPlaylist::parse("not a playlist").is_err());
    }

    #[test]
    fn mpd_summary() {
        let mpd = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z">
          <Period id="0" start="PT0S">
            <AdaptationSet contentType="video" mimeType="video/mp4">
              <SegmentTemplate timescale="90000" media="$RepresentationID$/3-$Number$.m4s" initialization="init-3.mp4" startNumber="5">
                <SegmentTimeline><S t="0" d="180000" r="2"/><S d="90000"/></SegmentTimeline>
              </SegmentTemplate>
              <Representation id="source" bandwidth="1000"/>
            </AdaptationSet>
            <AdaptationSet mimeType="audio/mp4"><Representation id="audio" bandwidth="1"/></AdaptationSet>
          </Period>
          <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/v1/time"/>
        </MPD>"#;
        let m = MpdInfo::parse(mpd).unwrap();
        assert_eq!(m.mpd_type, "dynamic");
        let v = m.set("video").unwrap();
        assert_eq!(v.timeline_segments, 4);
        assert_eq!(v.start_number, Some(5));
        assert_eq!(v.representation_ids, vec!["source"]);
        assert_eq!(v.representations[0].bandwidth, Some(1000));
        assert_eq!(v.representations[0].width, None);
        assert!(m.set("audio").is_some());
        assert_eq!(m.utc_timing[0].1, "/v1/time");
        assert!(MpdInfo::parse("<x/>").is_err());
    }
}
