//! The cluster: the Raft registry (openraft, log and state machine in redb), the QUIC transport
//! between nodes, membership (seeds, join), heartbeats and failure detection.
//!
//! Every node, standalone or not, runs the registry as a Raft group: a standalone node is a
//! one-voter group with no transport. So every stream state change, key and claim goes through
//! one code path ([`Cluster::write`]), and every node applies the same log in the same order.
//! Reads (keys, streams) come from the local state machine copy ([`StateReader`]).
//!
//! Liveness and load are not in the log: each node sends a heartbeat to every member every
//! `heartbeat_ms`; a member silent for `dead_after_ms` is down. The leader then writes
//! [`Command::NodeDown`], which moves the streams that node originates to ERROR on every node.

pub mod network;
pub mod replicate;
pub mod state;
pub mod store;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hivecast_actors::registry::{Registry, RegistryError};
use hivecast_actors::types::{unix_ms_now, Epoch, StreamName, StreamStatus};
use hivecast_proto::peer::{
    ErrorCode, NodeLoad, PeerRequest, PeerResponse, RaftRpc, RequestV1, ResponseV1, StreamAudience,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Raft, ServerState};
use serde::Serialize;
use tracing::{debug, info, warn};

use self::network::{call, from_body, to_body, Network};
use self::state::{
    raft_id, Command, KeyRecord, NodeId, Outcome, PeerNode, StatusChange, StreamRecord, TypeConfig,
};
use self::store::{ChangeObserver, StateReader};
use self::transport::{ClusterTls, Handler, Transport};
use crate::config::Config;

/// A gap this long between two 100 ms ticks means the process was stalled (frozen, starved).
const STALL: Duration = Duration::from_secs(1);

/// How long a registry write may look for a leader before it fails.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Raft store.
    #[error("registry store: {0}")]
    Store(String),
    /// The QUIC endpoint or its certificate.
    #[error("cluster transport: {0}")]
    Transport(String),
    /// Raft itself.
    #[error("raft: {0}")]
    Raft(String),
    /// Configuration.
    #[error("cluster configuration: {0}")]
    Config(String),
}

/// Timing and topology, from `[cluster]`.
#[derive(Debug, Clone)]
struct Settings {
    seeds: Vec<SocketAddr>,
    me_quic: Option<SocketAddr>,
    max_voters: usize,
    heartbeat: Duration,
    dead_after: Duration,
    rpc_timeout: Duration,
}

/// What this node last heard from a member.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    load: NodeLoad,
}

/// One member, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Raft id.
    pub id: String,
    /// Region.
    pub region: String,
    /// `leader`, `follower` or `learner`.
    pub role: &'static str,
    /// Raft voter.
    pub voter: bool,
    /// `up` or `down`, from heartbeats.
    pub health: &'static str,
    /// Milliseconds since its last heartbeat (None: never heard).
    pub last_seen_ms: Option<u64>,
    /// Its load.
    pub load: NodeLoad,
    /// Viewer base URL.
    pub http: String,
    /// RTMP address.
    pub rtmp: String,
    /// QUIC address.
    pub quic: String,
}

/// The whole view.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// Standalone or clustered.
    pub mode: &'static str,
    /// The leader's name, if known.
    pub leader: Option<String>,
    /// Raft term.
    pub term: u64,
    /// Last applied registry log index.
    pub applied_index: Option<u64>,
    /// Members.
    pub members: Vec<MemberView>,
}

/// The node's handle on the cluster.
pub struct Cluster {
    /// This node's Raft id.
    pub id: NodeId,
    /// This node as the others see it.
    pub me: PeerNode,
    raft: Raft<TypeConfig>,
    state: StateReader,
    transport: Option<Arc<Transport>>,
    settings: Settings,
    seen: Mutex<HashMap<String, Seen>>,
    load: Mutex<NodeLoad>,
    /// The latest viewers of each stream as every other node reported them.
    remote_audience: Mutex<HashMap<String, (Instant, Vec<StreamAudience>)>>,
    join_lock: tokio::sync::Mutex<()>,
    started: Instant,
    /// Set when this process was seen to stall; cleared once caught up.
    suspect_since: Mutex<Option<Instant>>,
    /// The stall detector's last tick.
    last_tick: Mutex<Instant>,
}

impl Cluster {
    /// Open the registry in `<data_dir>/raft`, bind the transport (if clustered) and start Raft.
    /// Returns once a standalone node's registry is ready; a clustered node joins in the
    /// background (see [`Cluster::wait_ready`]).
    pub async fn start(
        cfg: &Config,
        observer: ChangeObserver,
        store: Arc<hivecast_actors::store::SegmentStore>,
    ) -> Result<Arc<Self>, ClusterError> {
        let c = &cfg.cluster;
        let listen = c
            .listen_addr()
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        let seeds = c
            .seed_addrs()
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        let advertise: Option<SocketAddr> = if c.advertise.is_empty() {
            listen
        } else {
            c.advertise.parse().ok()
        };
        let host = advertise.map_or_else(|| "127.0.0.1".to_owned(), |a| a.ip().to_string());
        let me = PeerNode {
            name: cfg.node.id.clone(),
            region: cfg.node.region.clone(),
            quic: advertise.map(|a| a.to_string()).unwrap_or_default(),
            http: if c.public_http.is_empty() {
                format!("http://{host}:{}", cfg.http.listen.port())
            } else {
                c.public_http.trim_end_matches('/').to_owned()
            },
            rtmp: format!("{host}:{}", cfg.rtmp.listen.port()),
        };
        let id = raft_id(&me.name);
        let (log, sm) = store::open(&cfg.node.data_dir.join("raft"), observer)
            .map_err(|e| ClusterError::Store(e.to_string()))?;
        let state = sm.reader();
        let transport = match listen {
            Some(addr) => {
                let tls = load_tls(cfg, c.tls_dir.as_str())?;
                Some(
                    Transport::bind(addr, &tls)
                        .map_err(|e| ClusterError::Transport(format!("{addr}: {e}")))?,
                )
            }
            None => None,
        };
        let raft_cfg = openraft::Config {
            cluster_name: "hivecast".into(),
            heartbeat_interval: c.raft_heartbeat_ms,
            election_timeout_min: c.election_min_ms,
            election_timeout_max: c.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
            max_in_snapshot_log_to_keep: 500,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(e.to_string()))?;
        let raft = Raft::new(
            id,
            Arc::new(raft_cfg),
            Network {
                transport: transport.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let cluster = Arc::new(Self {
            id,
            me,
            raft,
            state,
            transport: transport.clone(),
            settings: Settings {
                seeds,
                me_quic: advertise,
                max_voters: c.max_voters,
                heartbeat: Duration::from_millis(c.heartbeat_ms),
                dead_after: Duration::from_millis(c.dead_after_ms),
                rpc_timeout: Duration::from_millis(c.rpc_timeout_ms),
            },
            seen: Mutex::new(HashMap::new()),
            load: Mutex::new(NodeLoad::default()),
            remote_audience: Mutex::new(HashMap::new()),
            join_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            suspect_since: Mutex::new(None),
            last_tick: Mutex::new(Instant::now()),
        });
        match transport {
            None => {
                if !cluster.initialized().await {
                    let mut members = BTreeMap::new();
                    members.insert(id, cluster.me.clone());
                    cluster
                        .raft
                        .initialize(members)
                        .await
                        .map_err(|e| ClusterError::Raft(e.to_string()))?;
                }
            }
            Some(t) => {
                tokio::spawn(t.serve(Arc::new(PeerHandler {
                    cluster: cluster.clone(),
                    store,
                })));
                tokio::spawn(cluster.clone().join_loop());
                tokio::spawn(cluster.clone().heartbeat_loop());
                tokio::spawn(cluster.clone().failure_detector());
                tokio::spawn(cluster.clone().stall_detector());
            }
        }
        Ok(cluster)
    }

    /// Whether this node is clustered (has a transport).
    pub fn clustered(&self) -> bool {
        self.transport.is_some()
    }

    /// The transport (clustered nodes).
    pub fn transport(&self) -> Option<&Arc<Transport>> {
        self.transport.as_ref()
    }

    /// A member by name.
    pub fn node_by_name(&self, name: &str) -> Option<PeerNode> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let found = m.membership().nodes().find(|(_, n)| n.name == name);
        found.map(|(_, n)| n.clone())
    }

    /// Set the load sent in the next heartbeats.
    pub fn set_load(&self, load: NodeLoad) {
        *self.load.lock().unwrap_or_else(|e| e.into_inner()) = load;
    }

    /// Send this node's viewers of each stream to every other member (analytics, once a
    /// second; fire and forget: a lost report is replaced by the next).
    pub fn set_audience(&self, streams: Vec<StreamAudience>) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        for addr in self.other_members() {
            let (t, req) = (
                t.clone(),
                RequestV1::Audience {
                    from: self.me.name.clone(),
                    streams: streams.clone(),
                },
            );
            let timeout = self.settings.heartbeat * 4;
            tokio::spawn(async move {
                let _ = call(&t, addr, req, timeout).await;
            });
        }
    }

    /// The QUIC addresses of every other member.
    fn other_members(&self) -> Vec<SocketAddr> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .filter_map(|(_, n)| n.quic.parse().ok())
            .collect()
    }

    /// The viewers of each stream reported by other nodes within `max_age`.
    pub fn remote_audience(&self, max_age: Duration) -> Vec<StreamAudience> {
        let mut all = self
            .remote_audience
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.retain(|_, (at, _)| at.elapsed() < max_age * 10);
        all.values()
            .filter(|(at, _)| at.elapsed() < max_age)
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }

    async fn initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Whether the registry has a leader and this node is a member.
    pub fn ready(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader.is_some()
            && m.membership_config
                .membership()
                .get_node(&self.id)
                .is_some()
    }

    /// Wait until the registry has a leader and this node has applied the log up to the point
    /// it joined (or `timeout`). `false` on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut m = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let v = m.borrow_and_update();
                if v.current_leader.is_some()
                    && v.membership_config
                        .membership()
                        .get_node(&self.id)
                        .is_some()
                {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, m.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }

    /// Whether this node may treat its registry view as current. False while this process is
    /// stalled or just was (a gap of over a second between two 100 ms ticks, e.g. SIGSTOP), until
    /// it has applied the log up to the index the leader confirmed with a quorum after the
    /// stall (a read index). So a thawed node does not serve what it held before the freeze as
    /// live while the cluster may have moved on; a leader election alone does not make a node
    /// stale.
    pub fn in_contact(&self) -> bool {
        if !self.clustered() {
            // Alone, this node's registry is the registry.
            return true;
        }
        let last_tick = *self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
        if last_tick.elapsed() > STALL {
            // Stalled right now, or thawed before the detector task ran again.
            return false;
        }
        self.suspect_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Notice stalls of this process (SIGSTOP, a starved machine) and catch up after one: see
    /// [`Cluster::in_contact`].
    async fn stall_detector(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = Instant::now();
            let gap = {
                let mut last = self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
                let gap = now.duration_since(*last);
                if gap > STALL {
                    // Suspect before the tick looks fresh again, under the tick's lock: a
                    // request on another thread between the two must not find this node in
                    // contact (it would serve what it held before the stall).
                    *self.suspect_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                }
                *last = now;
                gap
            };
            if gap > STALL {
                warn!(
                    gap_ms = gap.as_millis() as u64,
                    "process stalled: live media answers 503 until caught up with the cluster"
                );
                self.catch_up().await;
                *self.suspect_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                info!(
                    after_ms = now.elapsed().as_millis() as u64,
                    "caught up with the cluster after a stall"
                );
            }
        }
    }

    /// Get a read index from the leader (asked now, so it covers everything committed while
    /// this node was stalled) and wait until the local state machine has applied it.
    async fn catch_up(&self) {
        loop {
            if let Some(index) = self.read_index().await {
                let mut m = self.raft.metrics();
                let applied = m
                    .wait_for(|v| v.last_applied.is_some_and(|l| l.index >= index))
                    .await;
                if applied.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn read_index(&self) -> Option<u64> {
        if self.raft.metrics().borrow().state == ServerState::Leader {
            return self
                .raft
                .ensure_linearizable()
                .await
                .ok()
                .map(|l| l.map_or(0, |l| l.index));
        }
        let leader = {
            let m = self.raft.metrics().borrow().clone();
            m.current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned())?
        };
        let addr: SocketAddr = leader.quic.parse().ok()?;
        match call(
            self.transport.as_ref()?,
            addr,
            RequestV1::ReadIndex,
            self.settings.rpc_timeout,
        )
        .await
        {
            Ok(ResponseV1::ReadIndex { index }) => Some(index),
            _ => None,
        }
    }

    /// Propose a command and wait until it is applied; forwarded to the leader when this node
    /// is not it. Retries while there is no leader, for up to 5 s.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, RegistryError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut last_err = String::from("no leader");
        loop {
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let Some(addr) = f.leader_node.as_ref().and_then(|n| n.quic.parse().ok()) {
                        match self.forward(addr, &cmd).await {
                            Ok(Some(o)) => return Ok(o),
                            Ok(None) => last_err = "leader changed".into(),
                            Err(e) => last_err = e,
                        }
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(RegistryError::Storage(format!(
                    "registry unavailable (no leader reachable within {} s): {last_err}",
                    WRITE_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn forward(&self, leader: SocketAddr, cmd: &Command) -> Result<Option<Outcome>, String> {
        let Some(t) = &self.transport else {
            return Err("standalone node has no leader to forward to".into());
        };
        let body = to_body(cmd);
        match call(
            t,
            leader,
            RequestV1::Write { body },
            self.settings.rpc_timeout,
        )
        .await
        {
            Ok(ResponseV1::Write { body }) => {
                let r: Result<Outcome, String> = from_body(&body).map_err(|e| e.to_string())?;
                r.map(Some)
            }
            Ok(ResponseV1::NotLeader { .. }) => Ok(None),
            Ok(other) => Err(format!("leader answered {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Members with their roles, health and load.
    pub fn view(&self) -> ClusterView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let my_load = *self.load.lock().unwrap_or_else(|e| e.into_inner());
        let mut members: Vec<MemberView> = membership
            .nodes()
            .map(|(id, n)| {
                let me = *id == self.id;
                let s = seen.get(&n.name);
                let up = me || s.is_some_and(|s| s.at.elapsed() < self.settings.dead_after);
                MemberView {
                    name: n.name.clone(),
                    id: format!("{id:016x}"),
                    region: n.region.clone(),
                    role: if m.current_leader == Some(*id) {
                        "leader"
                    } else if voters.contains(id) {
                        "follower"
                    } else {
                        "learner"
                    },
                    voter: voters.contains(id),
                    health: if up { "up" } else { "down" },
                    last_seen_ms: if me {
                        Some(0)
                    } else {
                        s.map(|s| s.at.elapsed().as_millis() as u64)
                    },
                    load: if me {
                        my_load
                    } else {
                        s.map(|s| s.load).unwrap_or_default()
                    },
                    http: n.http.clone(),
                    rtmp: n.rtmp.clone(),
                    quic: n.quic.clone(),
                }
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let leader = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.name.clone()));
        ClusterView {
            node: self.me.name.clone(),
            mode: if self.clustered() {
                "cluster"
            } else {
                "standalone"
            },
            leader,
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index),
            members,
        }
    }

    /// Members that are up, with their load (this node included).
    pub fn live_members(&self) -> Vec<(PeerNode, NodeLoad)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let my_load = *self.load.lock().unwrap_or_else(|e| e.into_inner());
        m.membership()
            .nodes()
            .filter_map(|(id, n)| {
                if *id == self.id {
                    return Some((n.clone(), my_load));
                }
                let s = seen.get(&n.name)?;
                (s.at.elapsed() < self.settings.dead_after).then(|| (n.clone(), s.load))
            })
            .collect()
    }

    // ---- keys and streams ------------------------------------------------------------------

    /// A stream's record.
    pub fn stream(&self, name: &str) -> Option<StreamRecord> {
        self.state.read(|s| s.streams.get(name).cloned())
    }

    /// A stream's current session and status, without copying its record (the viewer path
    /// asks this on every request).
    pub fn session(&self, name: &str) -> Option<(u64, StreamStatus)> {
        self.state
            .read(|s| s.streams.get(name).map(|r| (r.epoch, r.status())))
    }

    /// All stream records.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.state.read(|s| s.streams.values().cloned().collect())
    }

    /// All keys, newest first.
    pub fn keys(&self) -> Vec<KeyRecord> {
        let mut v: Vec<KeyRecord> = self.state.read(|s| s.keys.values().cloned().collect());
        v.sort_by_key(|k| std::cmp::Reverse(k.created_at_ms));
        v
    }

    /// The stream a key publishes, if the key is valid (known, not revoked).
    pub fn check_key(&self, key: &str) -> Option<StreamName> {
        let hash = crate::keys::hash_key(key);
        self.state
            .read(|s| s.stream_for_key_hash(&hash).map(str::to_owned))
            .and_then(|n| StreamName::new(&n).ok())
    }

    /// Whether any key was ever issued for `stream`.
    pub fn stream_has_key(&self, stream: &str) -> bool {
        self.state
            .read(|s| s.keys.values().any(|k| k.stream == stream))
    }

    /// Store a new key (its hash) for `stream`.
    pub async fn create_key(
        &self,
        key_id: &str,
        key: &str,
        stream: &StreamName,
    ) -> Result<(), RegistryError> {
        let cmd = Command::CreateKey {
            key_id: key_id.to_owned(),
            stream: stream.to_string(),
            hash: hex::encode(crate::keys::hash_key(key)),
            at_ms: unix_ms_now(),
        };
        match self.write(cmd).await? {
            Outcome::Done => Ok(()),
            o => Err(outcome_error(stream, o)),
        }
    }

    /// Revoke a key; `false` if unknown.
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, RegistryError> {
        let cmd = Command::RevokeKey {
            key_id: key_id.to_owned(),
        };
        Ok(self.write(cmd).await? == Outcome::Done)
    }

    /// At start-up: the streams this node originated cannot be live any more (their
    /// publishers' connections died with the previous process).
    pub async fn fail_own_orphans(&self) -> Result<usize, RegistryError> {
        let n = self.state.read(|s| {
            s.streams
                .values()
                .filter(|r| r.origin == self.me.name && r.status().is_live())
                .count()
        });
        if n > 0 {
            self.write(Command::NodeDown {
                node: self.me.name.clone(),
                reason: "node restarted".into(),
                at_ms: unix_ms_now(),
            })
            .await?;
        }
        Ok(n)
    }

    // ---- membership -------------------------------------------------------------------------

    /// Until this node is in a cluster: ask the seeds; join the cluster one of them is in, or,
    /// as the first seed with no cluster anywhere, start one.
    async fn join_loop(self: Arc<Self>) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        let first_seed = self.settings.seeds.first().copied();
        let i_am_first = first_seed.is_some() && first_seed == self.settings.me_quic;
        loop {
            if self.initialized().await {
                info!(node = %self.me.name, "registry: member of the cluster");
                return;
            }
            let mut cluster_seen = false;
            for &seed in &self.settings.seeds {
                if Some(seed) == self.settings.me_quic {
                    continue;
                }
                let hello = RequestV1::Hello {
                    from: self.me.clone(),
                };
                let Ok(ResponseV1::Hello {
                    initialized,
                    leader,
                    ..
                }) = call(&t, seed, hello, Duration::from_millis(700)).await
                else {
                    continue;
                };
                if !initialized {
                    continue;
                }
                cluster_seen = true;
                let Some(addr) = leader.and_then(|l| l.quic.parse::<SocketAddr>().ok()) else {
                    continue;
                };
                let join = RequestV1::Join {
                    node: self.me.clone(),
                };
                match call(&t, addr, join, Duration::from_secs(10)).await {
                    Ok(ResponseV1::Joined) => {
                        info!(leader = %addr, "registry: joined");
                        break;
                    }
                    Ok(other) => debug!(?other, "join refused"),
                    Err(e) => debug!(error = %e, "join failed"),
                }
            }
            if !cluster_seen && i_am_first && !self.initialized().await {
                let mut members = BTreeMap::new();
                members.insert(self.id, self.me.clone());
                match self.raft.initialize(members).await {
                    Ok(()) => info!(node = %self.me.name, "registry: started a new cluster"),
                    Err(e) => warn!(error = %e, "registry: could not start a cluster"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// On the leader: add `node` as a learner, then as a voter while voters are missing.
    async fn admit(&self, node: PeerNode) -> ResponseV1 {
        let _g = self.join_lock.lock().await;
        let id = raft_id(&node.name);
        let m = self.raft.metrics().borrow().membership_config.clone();
        let known = m.membership().get_node(&id) == Some(&node);
        if !known {
            if let Err(e) = self.raft.add_learner(id, node.clone(), true).await {
                return self.refusal(e);
            }
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        if !voters.contains(&id) && voters.len() < self.settings.max_voters {
            let mut add = BTreeSet::new();
            add.insert(id);
            if let Err(e) = self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(add), true)
                .await
            {
                return self.refusal(e);
            }
            info!(node = %node.name, "registry: admitted as voter");
        } else if !known {
            info!(node = %node.name, "registry: admitted as learner");
        }
        ResponseV1::Joined
    }

    fn refusal(&self, e: RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>) -> ResponseV1 {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ResponseV1::NotLeader {
                leader: f.leader_node,
            },
            other => ResponseV1::Error {
                code: ErrorCode::Unavailable,
                message: other.to_string(),
            },
        }
    }

    // ---- liveness ---------------------------------------------------------------------------

    async fn heartbeat_loop(self: Arc<Self>) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let load = *self.load.lock().unwrap_or_else(|e| e.into_inner());
            for addr in self.other_members() {
                let t = t.clone();
                let req = RequestV1::Heartbeat {
                    from: self.me.name.clone(),
                    load,
                };
                let timeout = self.settings.heartbeat * 2;
                tokio::spawn(async move {
                    let _ = call(&t, addr, req, timeout).await;
                });
            }
        }
    }

    /// On the leader: a member silent for `dead_after` that originates live streams gets a
    /// `NodeDown`, which moves them to ERROR everywhere.
    async fn failure_detector(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A node that just stalled (frozen, starved) has stale observations of everyone:
            // it must not declare anyone down, and it may not be the leader any more.
            if self.raft.metrics().borrow().state != ServerState::Leader || !self.in_contact() {
                continue;
            }
            let m = self.raft.metrics().borrow().membership_config.clone();
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (id, n) in m.membership().nodes() {
                if *id == self.id {
                    continue;
                }
                let silent = seen
                    .get(&n.name)
                    .map_or(self.started.elapsed(), |s| s.at.elapsed());
                if silent < self.settings.dead_after {
                    continue;
                }
                let has_live = self.state.read(|s| {
                    s.streams
                        .values()
                        .any(|r| r.origin == n.name && r.status().is_live())
                });
                if !has_live {
                    continue;
                }
                warn!(node = %n.name, silent_ms = silent.as_millis() as u64, "member down: failing the streams it originates");
                let cmd = Command::NodeDown {
                    node: n.name.clone(),
                    reason: format!(
                        "origin node {} unreachable for {} ms",
                        n.name,
                        silent.as_millis()
                    ),
                    at_ms: unix_ms_now(),
                };
                // Only as the leader, never forwarded: a deposed leader's verdict is stale.
                if let Err(e) = self.raft.client_write(cmd).await {
                    warn!(error = %e, "could not record a node down");
                }
            }
        }
    }

    // ---- serving peers ----------------------------------------------------------------------

    async fn handle(&self, req: RequestV1) -> ResponseV1 {
        match req {
            RequestV1::Hello { from } => {
                debug!(peer = %from.name, "hello");
                let m = self.raft.metrics().borrow().clone();
                let leader = m
                    .current_leader
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
                ResponseV1::Hello {
                    node: self.me.clone(),
                    initialized: self.initialized().await,
                    leader,
                }
            }
            RequestV1::Join { node } => {
                if self.raft.metrics().borrow().state != ServerState::Leader {
                    let m = self.raft.metrics().borrow().clone();
                    return ResponseV1::NotLeader {
                        leader: m
                            .current_leader
                            .and_then(|l| m.membership_config.membership().get_node(&l).cloned()),
                    };
                }
                self.admit(node).await
            }
            RequestV1::Raft { rpc, body } => self.raft_rpc(rpc, &body).await,
            RequestV1::Write { body } => {
                let cmd: Command = match from_body(&body) {
                    Ok(c) => c,
                    Err(e) => return invalid(e.to_string()),
                };
                match self.raft.client_write(cmd).await {
                    Ok(r) => ResponseV1::Write {
                        body: to_body(&Ok::<Outcome, String>(r.data)),
                    },
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        ResponseV1::NotLeader {
                            leader: f.leader_node,
                        }
                    }
                    Err(e) => ResponseV1::Write {
                        body: to_body(&Err::<Outcome, String>(e.to_string())),
                    },
                }
            }
            RequestV1::Subscribe { .. } => invalid("Subscribe opens a stream".into()),
            RequestV1::ReadIndex => match self.raft.ensure_linearizable().await {
                Ok(l) => ResponseV1::ReadIndex {
                    index: l.map_or(0, |l| l.index),
                },
                Err(e) => ResponseV1::Error {
                    code: ErrorCode::Unavailable,
                    message: e.to_string(),
                },
            },
            RequestV1::Audience { from, mut streams } => {
                if from == self.me.name {
                    return invalid("an audience report from myself".into());
                }
                streams.truncate(crate::analytics::MAX_SHARED_STREAMS);
                for s in &mut streams {
                    s.quality.truncate(16);
                }
                self.remote_audience
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(from, (Instant::now(), streams));
                ResponseV1::Ack
            }
            RequestV1::Heartbeat { from, load } => {
                self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    from,
                    Seen {
                        at: Instant::now(),
                        load,
                    },
                );
                ResponseV1::Ack
            }
        }
    }

    async fn raft_rpc(&self, rpc: RaftRpc, body: &[u8]) -> ResponseV1 {
        let body = match rpc {
            RaftRpc::AppendEntries => {
                let req: openraft::raft::AppendEntriesRequest<TypeConfig> = match from_body(body) {
                    Ok(r) => r,
                    Err(e) => return invalid(e.to_string()),
                };
                to_body(&self.raft.append_entries(req).await)
            }
            RaftRpc::Vote => match from_body(body) {
                Ok(req) => to_body(&self.raft.vote(req).await),
                Err(e) => return invalid(e.to_string()),
            },
            RaftRpc::InstallSnapshot => match from_body(body) {
                Ok(req) => to_body(&self.raft.install_snapshot(req).await),
                Err(e) => return invalid(e.to_string()),
            },
        };
        ResponseV1::Raft { body }
    }

    /// Stop Raft and the transport (clean shutdown).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        if let Some(t) = &self.transport {
            t.close();
        }
    }
}

fn invalid(message: String) -> ResponseV1 {
    ResponseV1::Error {
        code: ErrorCode::Invalid,
        message,
    }
}

fn load_tls(cfg: &Config, tls_dir: &str) -> Result<ClusterTls, ClusterError> {
    let dir = if tls_dir.is_empty() {
        cfg.node.data_dir.join("cluster-tls")
    } else {
        Path::new(tls_dir).to_path_buf()
    };
    ClusterTls::load_or_generate(&dir)
        .map_err(|e| ClusterError::Transport(format!("certificate in {}: {e}", dir.display())))
}

/// The transport's handler: decode, dispatch, encode.
struct PeerHandler {
    cluster: Arc<Cluster>,
    store: Arc<hivecast_actors::store::SegmentStore>,
}

impl Handler for PeerHandler {
    fn open_stream(&self, from: SocketAddr, req: &Bytes) -> Option<transport::StreamTask> {
        let Ok(PeerRequest::V1(RequestV1::Subscribe { stream, epoch })) = PeerRequest::decode(req)
        else {
            return None;
        };
        let store = self.store.clone();
        Some(Box::new(move |send| {
            Box::pin(replicate::serve_subscription(
                store, from, stream, epoch, send,
            ))
        }))
    }

    fn handle(&self, from: SocketAddr, req: Bytes) -> BoxFuture<'static, Bytes> {
        let c = self.cluster.clone();
        Box::pin(async move {
            let resp = match PeerRequest::decode(&req) {
                Ok(PeerRequest::V1(r)) => c.handle(r).await,
                Err(e) => {
                    debug!(peer = %from, error = %e, "undecodable peer request");
                    ResponseV1::Error {
                        code: ErrorCode::Version,
                        message: e.to_string(),
                    }
                }
            };
            Bytes::from(PeerResponse::V1(resp).encode())
        })
    }
}

fn outcome_error(stream: &StreamName, o: Outcome) -> RegistryError {
    match o {
        Outcome::AlreadyLive { epoch, .. } => RegistryError::AlreadyLive {
            stream: stream.clone(),
            epoch: Epoch(epoch),
        },
        Outcome::StaleEpoch { current } => RegistryError::StaleEpoch {
            stream: stream.clone(),
            got: Epoch(0),
            current: Epoch(current),
        },
        Outcome::BadTransition { from, to } => RegistryError::BadTransition {
            stream: stream.clone(),
            from: StreamStatus::parse(&from).unwrap_or(StreamStatus::Error),
            to: StreamStatus::parse(&to).unwrap_or(StreamStatus::Error),
        },
        other => RegistryError::Storage(format!("registry refused: {other:?}")),
    }
}

impl Cluster {
    /// Claim `stream` for a new publish session here: its epoch and first media sequence
    /// number (see [`state::msn_base`]).
    pub async fn claim_session(
        &self,
        stream: &StreamName,
        segment_target_ms: u64,
    ) -> Result<(Epoch, u64), RegistryError> {
        let cmd = Command::Claim {
            stream: stream.to_string(),
            origin: self.me.name.clone(),
            at_ms: unix_ms_now(),
            segment_target_ms,
        };
        match self.write(cmd).await? {
            Outcome::Claimed { epoch, msn_base } => Ok((Epoch(epoch), msn_base)),
            o => Err(outcome_error(stream, o)),
        }
    }
}

impl Registry for Cluster {
    fn claim(&self, stream: StreamName) -> BoxFuture<'_, Result<Epoch, RegistryError>> {
        Box::pin(async move { Ok(self.claim_session(&stream, 2000).await?.0) })
    }

    fn set_status(
        &self,
        stream: StreamName,
        epoch: Epoch,
        status: StreamStatus,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let cmd = Command::SetStatus {
                stream: stream.to_string(),
                epoch: epoch.0,
                status: status.as_str().to_owned(),
                reason,
                at_ms: unix_ms_now(),
            };
            match self.write(cmd).await? {
                Outcome::Done => Ok(()),
                Outcome::StaleEpoch { current } => Err(RegistryError::StaleEpoch {
                    stream,
                    got: epoch,
                    current: Epoch(current),
                }),
                o => Err(outcome_error(&stream, o)),
            }
        })
    }
}

/// Turn applied status changes into hub events (and audit lines on the origin).
pub fn status_event(c: &StatusChange) -> Option<hivecast_actors::events::StreamEvent> {
    Some(hivecast_actors::events::StreamEvent::Status {
        stream: StreamName::new(&c.stream).ok()?,
        status: c.status,
        epoch: Epoch(c.epoch),
        at_ms: c.at_ms,
        reason: c.reason.clone(),
    })
}
