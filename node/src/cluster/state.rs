//! The registry's replicated state machine: stream keys (hashed), streams (status, origin,
//! epoch, renditions). Nodes (addresses, region) are the Raft membership itself; their load and
//! health travel in heartbeats, not in the log.
//!
//! Every change is a [`Command`] in the Raft log; [`StateData::apply`] is a pure, deterministic
//! function of the state and the command (timestamps are chosen by the proposer and carried in
//! the command), so every node that applies the same log holds the same state.
//!
//! Invariants: a stream's epoch only grows; status moves only
//! `PENDING_INGEST -> ACTIVE -> ENDED_GRACEFULLY | ERROR` (or `PENDING_INGEST -> ERROR`) within
//! one epoch; a change naming an older epoch is refused (fencing); keys are never stored in clear.

use std::collections::BTreeMap;

use std::io::Cursor;

use hivecast_actors::types::StreamStatus;
use serde::{Deserialize, Serialize};

/// Raft node id: derived from the node's configured name (see [`raft_id`]).
pub type NodeId = u64;

/// What the cluster knows about a member (kept in the Raft membership).
pub use hivecast_proto::peer::PeerNode;

openraft::declare_raft_types!(
    /// The registry's Raft types.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        Node = PeerNode,
);

/// The Raft id of a node name: the first 8 bytes of its SHA-256, so it is stable across restarts
/// and every node computes the same id for a name. (Never 0.)
pub fn raft_id(name: &str) -> NodeId {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b).max(1)
}

/// A stream key's record (the key itself is not in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public identifier.
    pub key_id: String,
    /// The stream it publishes.
    pub stream: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Revoked keys stay listed but no longer work.
    pub revoked: bool,
}

/// A stream's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Stream name.
    pub stream: String,
    /// Lifecycle status (wire spelling, e.g. `ACTIVE`).
    pub status: String,
    /// Current (latest) epoch.
    pub epoch: u64,
    /// The node that holds (held) the publisher.
    pub origin: String,
    /// When the current session started.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// The session's renditions, in playlist order (empty until decided).
    pub renditions: Vec<String>,
    /// When the stream's first session started (the timeline's origin), Unix ms.
    pub first_started_at_ms: i64,
    /// The first media sequence number of the current session (see [`msn_base`]).
    pub msn_base: u64,
}

impl StreamRecord {
    /// Parsed status.
    pub fn status(&self) -> StreamStatus {
        StreamStatus::parse(&self.status).unwrap_or(StreamStatus::Error)
    }
}

/// One change to the registry, as written in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store a new key (its hash only).
    CreateKey {
        /// Public id.
        key_id: String,
        /// Stream it publishes.
        stream: String,
        /// SHA-256 of the key, hex.
        hash: String,
        /// Creation time.
        at_ms: i64,
    },
    /// Revoke a key.
    RevokeKey {
        /// Public id.
        key_id: String,
    },
    /// A node claims a stream for a new publish session: bumps the epoch, sets PENDING_INGEST.
    Claim {
        /// Stream.
        stream: String,
        /// The claiming node's name.
        origin: String,
        /// When.
        at_ms: i64,
        /// The origin's segment target (for the session's first media sequence number).
        segment_target_ms: u64,
    },
    /// Move a session to a new status.
    SetStatus {
        /// Stream.
        stream: String,
        /// The session.
        epoch: u64,
        /// New status (wire spelling).
        status: String,
        /// Why (kept for ERROR).
        reason: Option<String>,
        /// When.
        at_ms: i64,
    },
    /// Record a session's renditions once decided.
    SetRenditions {
        /// Stream.
        stream: String,
        /// The session.
        epoch: u64,
        /// Names in playlist order.
        renditions: Vec<String>,
    },
    /// A node is gone: every live stream it originates moves to ERROR.
    NodeDown {
        /// The node's name.
        node: String,
        /// Why.
        reason: String,
        /// When.
        at_ms: i64,
    },
}

/// The result of applying a command (returned to the proposer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Outcome {
    /// Applied (or a no-op, e.g. the same status again, or a membership entry).
    #[default]
    Done,
    /// A claim succeeded with this epoch.
    Claimed {
        /// The new epoch.
        epoch: u64,
        /// The session's first media sequence number.
        msn_base: u64,
    },
    /// A claim was refused: the stream is live under this epoch.
    AlreadyLive {
        /// The live epoch.
        epoch: u64,
        /// Its origin.
        origin: String,
    },
    /// The command named an older session.
    StaleEpoch {
        /// The registry's epoch.
        current: u64,
    },
    /// The lifecycle does not allow the move.
    BadTransition {
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// No such stream or key.
    Unknown,
    /// A malformed command (unparseable status).
    Invalid(String),
}

/// A committed status change, announced on the node's event hub by whoever applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Stream.
    pub stream: String,
    /// Session.
    pub epoch: u64,
    /// New status.
    pub status: StreamStatus,
    /// When.
    pub at_ms: i64,
    /// Why.
    pub reason: Option<String>,
    /// The session's origin node.
    pub origin: String,
}

/// Which records an apply touched (what a persistent store must write back).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// A key record (by id) and its hash index.
    Key(String),
    /// A stream record (by name).
    Stream(String),
}

/// The replicated data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateData {
    /// Keys by id.
    pub keys: BTreeMap<String, KeyRecord>,
    /// Key id by hex hash.
    pub key_hashes: BTreeMap<String, String>,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamRecord>,
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The proposer's answer.
    pub outcome: Outcome,
    /// Records to persist.
    pub touched: Vec<Touched>,
    /// Status changes to announce.
    pub changes: Vec<StatusChange>,
}

impl StateData {
    /// Apply one command. Deterministic: the same state and command give the same result.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let mut a = Applied::default();
        match cmd {
            Command::CreateKey {
                key_id,
                stream,
                hash,
                at_ms,
            } => {
                if self.keys.contains_key(key_id) || self.key_hashes.contains_key(hash) {
                    // Ids and keys are random (64 and 160 bits): a repeat is a replayed or
                    // forged command, never a new key. Refusing keeps the hash index exact.
                    a.outcome = Outcome::Invalid("duplicate key id or key".into());
                    return a;
                }
                self.keys.insert(
                    key_id.clone(),
                    KeyRecord {
                        key_id: key_id.clone(),
                        stream: stream.clone(),
                        hash: hash.clone(),
                        created_at_ms: *at_ms,
                        revoked: false,
                    },
                );
                self.key_hashes.insert(hash.clone(), key_id.clone());
                a.touched.push(Touched::Key(key_id.clone()));
            }
            Command::RevokeKey { key_id } => match self.keys.get_mut(key_id) {
                Some(k) => {
                    k.revoked = true;
                    a.touched.push(Touched::Key(key_id.clone()));
                }
                None => a.outcome = Outcome::Unknown,
            },
            Command::Claim {
                stream,
                origin,
                at_ms,
                segment_target_ms,
            } => {
                let old = self.streams.get(stream);
                if let Some(old) = old.filter(|o| o.status().is_live()) {
                    a.outcome = Outcome::AlreadyLive {
                        epoch: old.epoch,
                        origin: old.origin.clone(),
                    };
                    return a;
                }
                let epoch = old.map_or(1, |o| o.epoch + 1);
                let first_started_at_ms = old.map_or(*at_ms, |o| o.first_started_at_ms);
                let base = old.map_or(0, |o| {
                    msn_base(
                        o.msn_base,
                        first_started_at_ms,
                        *at_ms,
                        *segment_target_ms,
                        epoch,
                    )
                });
                self.streams.insert(
                    stream.clone(),
                    StreamRecord {
                        stream: stream.clone(),
                        status: StreamStatus::PendingIngest.as_str().to_owned(),
                        epoch,
                        origin: origin.clone(),
                        started_at_ms: Some(*at_ms),
                        ended_at_ms: None,
                        error: None,
                        renditions: Vec::new(),
                        first_started_at_ms,
                        msn_base: base,
                    },
                );
                a.outcome = Outcome::Claimed {
                    epoch,
                    msn_base: base,
                };
                a.touched.push(Touched::Stream(stream.clone()));
                a.changes.push(StatusChange {
                    stream: stream.clone(),
                    epoch,
                    status: StreamStatus::PendingIngest,
                    at_ms: *at_ms,
                    reason: None,
                    origin: origin.clone(),
                });
            }
            Command::SetStatus {
                stream,
                epoch,
                status,
                reason,
                at_ms,
            } => {
                let Some(to) = StreamStatus::parse(status) else {
                    a.outcome = Outcome::Invalid(format!("unknown status {status:?}"));
                    return a;
                };
                let Some(rec) = self.streams.get_mut(stream) else {
                    a.outcome = Outcome::Unknown;
                    return a;
                };
                a.outcome = set_status(rec, *epoch, to, reason.clone(), *at_ms, &mut a.changes);
                if a.outcome == Outcome::Done && !a.changes.is_empty() {
                    a.touched.push(Touched::Stream(stream.clone()));
                }
            }
            Command::SetRenditions {
                stream,
                epoch,
                renditions,
            } => match self.streams.get_mut(stream) {
                Some(rec) if rec.epoch == *epoch => {
                    rec.renditions = renditions.clone();
                    a.touched.push(Touched::Stream(stream.clone()));
                }
                Some(rec) => {
                    a.outcome = Outcome::StaleEpoch { current: rec.epoch };
                }
                None => a.outcome = Outcome::Unknown,
            },
            Command::NodeDown {
                node,
                reason,
                at_ms,
            } => {
                for rec in self.streams.values_mut() {
                    if rec.origin == *node && rec.status().is_live() {
                        let epoch = rec.epoch;
                        set_status(
                            rec,
                            epoch,
                            StreamStatus::Error,
                            Some(reason.clone()),
                            *at_ms,
                            &mut a.changes,
                        );
                        a.touched.push(Touched::Stream(rec.stream.clone()));
                    }
                }
            }
        }
        a
    }

    /// The stream a key publishes, if the key (given as its SHA-256) is known and not revoked.
    pub fn stream_for_key_hash(&self, hash: &[u8; 32]) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let hex_hash = hex::encode(hash);
        let id = self.key_hashes.get(&hex_hash)?;
        let rec = self.keys.get(id)?;
        let stored = hex::decode(&rec.hash).ok()?;
        let same: bool = stored.ct_eq(hash.as_slice()).into();
        (same && !rec.revoked).then_some(rec.stream.as_str())
    }
}

/// The first media sequence number of session `epoch` (> 1) claimed at `at_ms`, so the
/// playlists at a stream's URLs keep growing across publish sessions (with a discontinuity).
///
/// Segments are at least the segment target long (they are cut at the first keyframe at or
/// after it), so a session that started at `t_k` with base `b_k` has, at any time `s`, an msn
/// of at most `b_k + (s - t_k) / target`. With `b_k = ceil((t_k - t0) / target) + k`, that is
/// below `(s - t0) / target + k + 1`, which every later claim's base exceeds. So a new session
/// never reuses a number of an older one, whichever node held it and even if nobody knows its
/// last number (the origin died). Assumes node clocks agree to within a segment (NTP).
pub fn msn_base(prev_base: u64, t0_ms: i64, at_ms: i64, target_ms: u64, epoch: u64) -> u64 {
    let target = target_ms.max(1) as i128;
    let elapsed = (i128::from(at_ms) - i128::from(t0_ms)).max(0);
    let slots = (elapsed + target - 1) / target;
    let by_clock = u64::try_from(slots)
        .unwrap_or(u64::MAX / 2)
        .saturating_add(epoch);
    by_clock.max(prev_base.saturating_add(1))
}

fn set_status(
    rec: &mut StreamRecord,
    epoch: u64,
    to: StreamStatus,
    reason: Option<String>,
    at_ms: i64,
    changes: &mut Vec<StatusChange>,
) -> Outcome {
    if rec.epoch != epoch {
        return Outcome::StaleEpoch { current: rec.epoch };
    }
    let from = rec.status();
    if from == to {
        return Outcome::Done;
    }
    if !from.can_move_to(to) {
        return Outcome::BadTransition {
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        };
    }
    rec.status = to.as_str().to_owned();
    if !to.is_live() {
        rec.ended_at_ms = Some(at_ms);
    }
    rec.error = reason.clone().filter(|_| to == StreamStatus::Error);
    changes.push(StatusChange {
        stream: rec.stream.clone(),
        epoch,
        status: to,
        at_ms,
        reason,
        origin: rec.origin.clone(),
    });
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(s: &mut StateData, stream: &str, origin: &str) -> Outcome {
        s.apply(&Command::Claim {
            stream: stream.into(),
            origin: origin.into(),
            at_ms: 1,
            segment_target_ms: 2000,
        })
        .outcome
    }

    fn status(s: &mut StateData, stream: &str, epoch: u64, st: StreamStatus) -> Outcome {
        s.apply(&Command::SetStatus {
            stream: stream.into(),
            epoch,
            status: st.as_str().into(),
            reason: Some("why".into()),
            at_ms: 2,
        })
        .outcome
    }

    #[test]
    fn claims_bump_epochs_and_refuse_live_streams() {
        let mut s = StateData::default();
        assert_eq!(
            claim(&mut s, "a", "n1"),
            Outcome::Claimed {
                epoch: 1,
                msn_base: 0
            }
        );
        assert_eq!(
            claim(&mut s, "a", "n2"),
            Outcome::AlreadyLive {
                epoch: 1,
                origin: "n1".into()
            }
        );
        assert_eq!(status(&mut s, "a", 1, StreamStatus::Active), Outcome::Done);
        assert_eq!(
            status(&mut s, "a", 1, StreamStatus::PendingIngest),
            Outcome::BadTransition {
                from: "ACTIVE".into(),
                to: "PENDING_INGEST".into()
            }
        );
        assert_eq!(status(&mut s, "a", 1, StreamStatus::Error), Outcome::Done);
        assert_eq!(s.streams["a"].error.as_deref(), Some("why"));
        assert_eq!(
            claim(&mut s, "a", "n2"),
            Outcome::Claimed {
                epoch: 2,
                msn_base: 2
            }
        );
        assert_eq!(
            status(&mut s, "a", 1, StreamStatus::Active),
            Outcome::StaleEpoch { current: 2 }
        );
        assert_eq!(s.streams["a"].origin, "n2");
    }

    #[test]
    fn node_down_fails_only_that_nodes_live_streams() {
        let mut s = StateData::default();
        claim(&mut s, "a", "n1");
        claim(&mut s, "b", "n2");
        claim(&mut s, "c", "n1");
        status(&mut s, "c", 1, StreamStatus::EndedGracefully);
        let a = s.apply(&Command::NodeDown {
            node: "n1".into(),
            reason: "gone".into(),
            at_ms: 9,
        });
        assert_eq!(a.changes.len(), 1);
        assert_eq!(a.changes[0].stream, "a");
        assert_eq!(s.streams["a"].status(), StreamStatus::Error);
        assert_eq!(s.streams["b"].status(), StreamStatus::PendingIngest);
        assert_eq!(s.streams["c"].status(), StreamStatus::EndedGracefully);
    }

    #[test]
    fn keys_are_found_by_hash_until_revoked() {
        let mut s = StateData::default();
        let h: [u8; 32] = [7; 32];
        s.apply(&Command::CreateKey {
            key_id: "k1".into(),
            stream: "demo".into(),
            hash: hex::encode(h),
            at_ms: 1,
        });
        assert_eq!(s.stream_for_key_hash(&h), Some("demo"));
        assert_eq!(s.stream_for_key_hash(&[8; 32]), None);
        s.apply(&Command::RevokeKey {
            key_id: "k1".into(),
        });
        assert_eq!(s.stream_for_key_hash(&h), None);
        assert_eq!(
            s.apply(&Command::RevokeKey {
                key_id: "nope".into()
            })
            .outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn session_timelines_never_overlap() {
        use proptest::prelude::*;
        // Sessions of segments >= the target, each claimed after the previous one's last
        // segment started: the next base is always above every msn used before.
        proptest!(|(sessions in proptest::collection::vec((0i64..30_000, 0u64..50, 2000u64..4000), 1..6))| {
            let target = 2000u64;
            let t0 = 1_000_000i64;
            let (mut t, mut base, mut last_msn) = (t0, 0u64, None::<u64>);
            for (k, (gap, segs, seg_ms)) in sessions.into_iter().enumerate() {
                let epoch = k as u64 + 1;
                if epoch > 1 {
                    base = msn_base(base, t0, t, target, epoch);
                }
                if let Some(l) = last_msn {
                    prop_assert!(base > l, "base {} after msn {}", base, l);
                }
                // `segs` segments of seg_ms each, starting at t.
                if segs > 0 {
                    last_msn = Some(base + segs - 1);
                    t += (segs - 1) as i64 * seg_ms as i64;
                }
                t += 1 + gap;
            }
        });
    }

    #[test]
    fn raft_ids_are_stable_and_distinct() {
        assert_eq!(raft_id("node1"), raft_id("node1"));
        assert_ne!(raft_id("node1"), raft_id("node2"));
    }
}
