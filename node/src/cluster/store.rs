//! Durable Raft storage for the registry: openraft's storage-v2 traits
//! ([`RaftLogStorage`], [`RaftLogReader`], [`RaftStateMachine`], [`RaftSnapshotBuilder`]) on one
//! redb file, `<dir>/raft.redb`, shared by the log store and the state machine store.
//!
//! # Tables
//!
//! All values are postcard-encoded.
//!
//! | table        | key                 | value                                                    |
//! |--------------|---------------------|----------------------------------------------------------|
//! | `raft_log`   | log index (`u64`)   | `openraft::Entry<TypeConfig>`                            |
//! | `raft_meta`  | `vote`              | `Vote<NodeId>`                                           |
//! |              | `committed`         | `Option<LogId<NodeId>>`                                  |
//! |              | `last_purged`       | `LogId<NodeId>`                                          |
//! | `sm_keys`    | key id              | [`KeyRecord`]                                            |
//! | `sm_streams` | stream name         | [`StreamRecord`]                                         |
//! | `sm_meta`    | `last_applied`      | `Option<LogId<NodeId>>`                                  |
//! |              | `membership`        | `StoredMembership<NodeId, PeerNode>`                     |
//! |              | `snapshot_meta`     | `SnapshotMeta<NodeId, PeerNode>` of the current snapshot |
//! |              | `snapshot_data`     | the current snapshot's bytes (format below)              |
//!
//! # Durability
//!
//! Every write is one redb write transaction; redb commits are durable (fsynced) when
//! `commit()` returns, except `committed`, which is written with [`Durability::None`]: openraft
//! treats it as an optional hint, and it becomes durable with the next ordinary commit.
//!
//! - `append` writes all its entries in one transaction and reports the flush only after the
//!   commit; `truncate` and `purge` are one transaction each (`purge` records `last_purged` in the
//!   same transaction that deletes the entries).
//! - `apply` writes every record a batch touched, plus `last_applied` and the membership, in one
//!   transaction per batch. So the state on disk always corresponds exactly to `last_applied`, and
//!   on restart openraft re-applies only the committed entries after it.
//! - `install_snapshot` rewrites all `sm_*` tables (cleared, then filled) and the current
//!   snapshot in one transaction.
//!
//! # Memory
//!
//! The log lives only on disk (reads are redb read transactions, which are cheap and run
//! concurrently with the writer). The state machine ([`StateData`] plus `last_applied` and the
//! membership) is held in memory twice: the store's working copy, which `apply` mutates, and a
//! published copy behind an `Arc<RwLock<_>>` that [`StateReader`] and the snapshot builder read.
//! The published copy is updated only after the batch is durable, so a reader never sees state
//! the file does not have. At open the state machine is rebuilt from the `sm_*` tables (the key
//! hash index from `sm_keys`), not by replaying the log, so restart does not depend on log length.
//!
//! # Snapshots
//!
//! A snapshot is the postcard encoding of the tuple
//! `(StateData, Option<LogId<NodeId>> /* last applied */, StoredMembership<NodeId, PeerNode>)`,
//! carried as `Cursor<Vec<u8>>`. Its id is `"{term}-{index}-{counter}"` of the last applied log
//! id (`"none-{counter}"` before anything was applied). The current snapshot (meta and bytes) is
//! kept in `sm_meta` so [`RaftStateMachine::get_current_snapshot`] survives restarts.
//!
//! # Status changes
//!
//! Committed status changes are handed to a [`ChangeObserver`] after the batch that produced them
//! is durable, in log order. Installing a snapshot announces, for every stream whose status or
//! epoch differs from the previous state, its current status, so a node that catches up by
//! snapshot still tells its subscribers.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::{
    KeyRecord, NodeId, Outcome, PeerNode, StateData, StatusChange, StreamRecord, Touched,
    TypeConfig,
};

/// A Raft log entry of the registry.
type Entry = openraft::Entry<TypeConfig>;

const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const SM_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_keys");
const SM_STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_streams");
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
const META_LAST_PURGED: &str = "last_purged";
const SM_LAST_APPLIED: &str = "last_applied";
const SM_MEMBERSHIP: &str = "membership";
const SM_SNAPSHOT_META: &str = "snapshot_meta";
const SM_SNAPSHOT_DATA: &str = "snapshot_data";

/// Called with the status changes of each applied batch (or installed snapshot), in order, after
/// they are durable. It runs on the Raft state machine task and must not block (publish into a
/// channel and return).
pub type ChangeObserver = Arc<dyn Fn(&[StatusChange]) + Send + Sync>;

/// Failures of the Raft store. Returned by [`open`]; inside the openraft traits they are wrapped
/// in [`StorageError`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// redb failed.
    #[error("raft database: {0}")]
    Db(#[from] redb::Error),
    /// A value could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Encoder message.
        source: postcard::Error,
    },
    /// A stored value could not be decoded.
    #[error("corrupt {what}: {source}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Decoder message.
        source: postcard::Error,
    },
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
redb_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

fn encode<T: Serialize + ?Sized>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(b).map_err(|source| StoreError::Corrupt { what, source })
}

fn read_logs_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_logs_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn read_vote_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_vote(AnyError::new(&e)).into()
}

fn write_vote_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

fn read_sm_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn write_sm_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn read_snapshot_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn write_snapshot_err(
    meta: &SnapshotMeta<NodeId, PeerNode>,
    e: StoreError,
) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
}

/// Open (or create) `<dir>/raft.redb` and return the log store and the state machine store,
/// which share the database. The state machine is rebuilt from its tables; `observer` receives
/// the status changes of everything applied from now on.
pub fn open(
    dir: &Path,
    observer: ChangeObserver,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let db = Arc::new(Database::create(dir.join("raft.redb"))?);
    let tx = db.begin_write()?;
    {
        tx.open_table(RAFT_LOG)?;
        tx.open_table(RAFT_META)?;
        tx.open_table(SM_KEYS)?;
        tx.open_table(SM_STREAMS)?;
        tx.open_table(SM_META)?;
    }
    tx.commit()?;
    let sm = StateMachineStore::load(db.clone(), observer)?;
    Ok((LogStore { db }, sm))
}

// ---------------------------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------------------------

/// The Raft log and vote. Cloning is cheap (it shares the database); a clone is also the log
/// reader handed to replication tasks.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

/// `[start, end)` of a range of log indexes (`end == None`: unbounded), or `None` if empty.
fn index_bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if start >= end => None,
        _ => Some((start, end)),
    }
}

impl LogStore {
    fn meta_get<T: DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RAFT_META)?;
        let v = t.get(key)?;
        v.map(|v| decode(key, v.value())).transpose()
    }

    fn meta_put<T: Serialize>(
        &self,
        key: &'static str,
        v: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = encode(key, v)?;
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability)?;
        tx.open_table(RAFT_META)?.insert(key, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RAFT_LOG)?;
        let rows = match end {
            Some(end) => t.range(start..end)?,
            None => t.range(start..)?,
        };
        let mut out = Vec::new();
        for row in rows {
            let (_, v) = row?;
            out.push(decode::<Entry>("log entry", v.value())?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(RAFT_META)?;
        let last_purged: Option<LogId<NodeId>> = match meta.get(META_LAST_PURGED)? {
            Some(v) => Some(decode(META_LAST_PURGED, v.value())?),
            None => None,
        };
        let log = tx.open_table(RAFT_LOG)?;
        let last = match log.last()? {
            Some((_, v)) => Some(decode::<Entry>("log entry", v.value())?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(RAFT_LOG)?;
            for entry in entries {
                let bytes = encode("log entry", &entry)?;
                t.insert(entry.log_id.index, bytes.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(RAFT_LOG)?.retain_in(index.., |_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(RAFT_META)?;
            let old: Option<LogId<NodeId>> = match meta.get(META_LAST_PURGED)? {
                Some(v) => Some(decode(META_LAST_PURGED, v.value())?),
                None => None,
            };
            if old.is_none_or(|old| old < log_id) {
                let bytes = encode(META_LAST_PURGED, &log_id)?;
                meta.insert(META_LAST_PURGED, bytes.as_slice())?;
            }
            tx.open_table(RAFT_LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let Some((start, end)) = index_bounds(&range) else {
            return Ok(Vec::new());
        };
        self.read_entries(start, end).map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state().map_err(read_logs_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.meta_put(META_VOTE, vote, Durability::Immediate)
            .map_err(write_vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta_get(META_VOTE).map_err(read_vote_err)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // A hint only: durable with the next ordinary commit, no fsync of its own.
        self.meta_put(META_COMMITTED, &committed, Durability::None)
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.meta_get::<Option<LogId<NodeId>>>(META_COMMITTED)
            .map(Option::flatten)
            .map_err(read_logs_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(entries).map_err(write_logs_err)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.truncate_from(log_id.index).map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.purge_upto(log_id).map_err(write_logs_err)
    }
}

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// The state machine as of one applied log id.
#[derive(Debug, Clone, Default)]
struct Machine {
    data: StateData,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, PeerNode>,
}

type Shared = Arc<RwLock<Machine>>;

fn read_lock(s: &Shared) -> RwLockReadGuard<'_, Machine> {
    s.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(s: &Shared) -> RwLockWriteGuard<'_, Machine> {
    s.write().unwrap_or_else(PoisonError::into_inner)
}

/// A read-only view of the committed registry for the node: it sees only state that is durable,
/// and never waits for Raft (only, briefly, for an apply publishing its batch).
#[derive(Clone)]
pub struct StateReader(Shared);

impl StateReader {
    /// Run `f` on the current state (under a read lock: keep `f` short and do not block in it).
    pub fn read<R>(&self, f: impl FnOnce(&StateData) -> R) -> R {
        f(&read_lock(&self.0).data)
    }

    /// The log id of the last entry reflected in the state.
    #[cfg(test)]
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        read_lock(&self.0).last_applied
    }

    /// The index of [`Self::last_applied`].
    #[cfg(test)]
    pub fn last_applied_index(&self) -> Option<u64> {
        self.last_applied().map(|l| l.index)
    }
}

/// The registry's state machine store (see the module docs).
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Working copy: `apply` mutates it, then publishes the touched records to `shared`.
    work: Machine,
    /// The durable state, seen by readers and the snapshot builder.
    shared: Shared,
    observer: ChangeObserver,
    snapshot_counter: Arc<AtomicU64>,
}

/// Builds snapshots from the published state (runs concurrently with `apply`).
pub struct SnapshotBuilder {
    db: Arc<Database>,
    shared: Shared,
    counter: Arc<AtomicU64>,
}

fn put<T: Serialize + ?Sized>(
    t: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
    what: &'static str,
    v: &T,
) -> Result<(), StoreError> {
    let bytes = encode(what, v)?;
    t.insert(key, bytes.as_slice())?;
    Ok(())
}

/// The `counter` part of a snapshot id (`"{term}-{index}-{counter}"` or `"none-{counter}"`).
fn snapshot_counter(id: &str) -> Option<u64> {
    id.rsplit('-').next()?.parse().ok()
}

/// The status changes that make a subscriber who knew `old` know `new`: every stream whose
/// status or epoch changed (or that is new), in stream name order.
fn snapshot_changes(old: &StateData, new: &StateData) -> Vec<StatusChange> {
    new.streams
        .iter()
        .filter(|(name, rec)| {
            old.streams
                .get(*name)
                .is_none_or(|o| o.status != rec.status || o.epoch != rec.epoch)
        })
        .map(|(_, rec)| StatusChange {
            stream: rec.stream.clone(),
            epoch: rec.epoch,
            status: rec.status(),
            at_ms: rec.ended_at_ms.or(rec.started_at_ms).unwrap_or(0),
            reason: rec.error.clone(),
            origin: rec.origin.clone(),
        })
        .collect()
}

impl StateMachineStore {
    /// Rebuild the state machine from the `sm_*` tables.
    fn load(db: Arc<Database>, observer: ChangeObserver) -> Result<Self, StoreError> {
        let mut m = Machine::default();
        let mut counter = 0;
        {
            let tx = db.begin_read()?;
            for row in tx.open_table(SM_KEYS)?.iter()? {
                let (k, v) = row?;
                let rec: KeyRecord = decode("key record", v.value())?;
                m.data
                    .key_hashes
                    .insert(rec.hash.clone(), k.value().to_owned());
                m.data.keys.insert(k.value().to_owned(), rec);
            }
            for row in tx.open_table(SM_STREAMS)?.iter()? {
                let (k, v) = row?;
                let rec: StreamRecord = decode("stream record", v.value())?;
                m.data.streams.insert(k.value().to_owned(), rec);
            }
            let meta = tx.open_table(SM_META)?;
            if let Some(v) = meta.get(SM_LAST_APPLIED)? {
                m.last_applied = decode(SM_LAST_APPLIED, v.value())?;
            }
            if let Some(v) = meta.get(SM_MEMBERSHIP)? {
                m.membership = decode(SM_MEMBERSHIP, v.value())?;
            }
            if let Some(v) = meta.get(SM_SNAPSHOT_META)? {
                let sm: SnapshotMeta<NodeId, PeerNode> = decode(SM_SNAPSHOT_META, v.value())?;
                counter = snapshot_counter(&sm.snapshot_id).map_or(0, |c| c.saturating_add(1));
            }
        }
        Ok(Self {
            db,
            shared: Arc::new(RwLock::new(m.clone())),
            work: m,
            observer,
            snapshot_counter: Arc::new(AtomicU64::new(counter)),
        })
    }

    /// A reader of the committed state, for the node (take it before the store moves into Raft).
    pub fn reader(&self) -> StateReader {
        StateReader(self.shared.clone())
    }

    /// Write the records `touched` names (as they are in the working copy), `last_applied` and
    /// the membership, in one transaction.
    fn persist_batch(&self, touched: &BTreeSet<Touched>) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut keys = tx.open_table(SM_KEYS)?;
            let mut streams = tx.open_table(SM_STREAMS)?;
            for t in touched {
                match t {
                    Touched::Key(id) => match self.work.data.keys.get(id) {
                        Some(rec) => put(&mut keys, id, "key record", rec)?,
                        None => {
                            keys.remove(id.as_str())?;
                        }
                    },
                    Touched::Stream(name) => match self.work.data.streams.get(name) {
                        Some(rec) => put(&mut streams, name, "stream record", rec)?,
                        None => {
                            streams.remove(name.as_str())?;
                        }
                    },
                }
            }
            let mut meta = tx.open_table(SM_META)?;
            put(
                &mut meta,
                SM_LAST_APPLIED,
                SM_LAST_APPLIED,
                &self.work.last_applied,
            )?;
            put(
                &mut meta,
                SM_MEMBERSHIP,
                SM_MEMBERSHIP,
                &self.work.membership,
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Copy the touched records (and the key hash index entries of touched keys), `last_applied`
    /// and the membership from the working copy to the published state.
    fn publish(&self, touched: &BTreeSet<Touched>) {
        let mut pubd = write_lock(&self.shared);
        let work = &self.work;
        for t in touched {
            match t {
                Touched::Key(id) => match work.data.keys.get(id) {
                    Some(rec) => {
                        match work.data.key_hashes.get(&rec.hash) {
                            Some(owner) => {
                                pubd.data.key_hashes.insert(rec.hash.clone(), owner.clone())
                            }
                            None => pubd.data.key_hashes.remove(&rec.hash),
                        };
                        pubd.data.keys.insert(id.clone(), rec.clone());
                    }
                    None => {
                        pubd.data.keys.remove(id);
                    }
                },
                Touched::Stream(name) => match work.data.streams.get(name) {
                    Some(rec) => {
                        pubd.data.streams.insert(name.clone(), rec.clone());
                    }
                    None => {
                        pubd.data.streams.remove(name);
                    }
                },
            }
        }
        pubd.last_applied = work.last_applied;
        pubd.membership = work.membership.clone();
    }

    /// Replace all `sm_*` tables with `m` and record the current snapshot, in one transaction.
    fn persist_snapshot(
        &self,
        m: &Machine,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut keys = tx.open_table(SM_KEYS)?;
            keys.retain(|_, _| false)?;
            for (id, rec) in &m.data.keys {
                put(&mut keys, id, "key record", rec)?;
            }
            let mut streams = tx.open_table(SM_STREAMS)?;
            streams.retain(|_, _| false)?;
            for (name, rec) in &m.data.streams {
                put(&mut streams, name, "stream record", rec)?;
            }
            let mut t = tx.open_table(SM_META)?;
            put(&mut t, SM_LAST_APPLIED, SM_LAST_APPLIED, &m.last_applied)?;
            put(&mut t, SM_MEMBERSHIP, SM_MEMBERSHIP, &m.membership)?;
            put(&mut t, SM_SNAPSHOT_META, SM_SNAPSHOT_META, meta)?;
            t.insert(SM_SNAPSHOT_DATA, bytes)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SM_META)?;
        let Some(meta) = t.get(SM_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, PeerNode> = decode(SM_SNAPSHOT_META, meta.value())?;
        let Some(data) = t.get(SM_SNAPSHOT_DATA)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.value().to_vec())),
        }))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, PeerNode>), StorageError<NodeId>>
    {
        Ok((self.work.last_applied, self.work.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let mut touched = BTreeSet::new();
        let mut changes = Vec::new();
        for entry in entries {
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => {
                    let a = self.work.data.apply(&cmd);
                    touched.extend(a.touched);
                    changes.extend(a.changes);
                    a.outcome
                }
                EntryPayload::Membership(m) => {
                    self.work.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::Done
                }
            };
            self.work.last_applied = Some(entry.log_id);
            outcomes.push(outcome);
        }
        if outcomes.is_empty() {
            return Ok(outcomes);
        }
        if let Err(e) = self.persist_batch(&touched) {
            // Keep the working copy equal to what is on disk.
            self.work = read_lock(&self.shared).clone();
            return Err(write_sm_err(e));
        }
        self.publish(&touched);
        if !changes.is_empty() {
            (self.observer)(&changes);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            shared: self.shared.clone(),
            counter: self.snapshot_counter.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, PeerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let (data, _, _): (
            StateData,
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, PeerNode>,
        ) = decode("snapshot", &bytes).map_err(|e| write_snapshot_err(meta, e))?;
        // The meta is authoritative for what the state machine now reflects.
        let new = Machine {
            data,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let changes = snapshot_changes(&self.work.data, &new.data);
        self.persist_snapshot(&new, meta, &bytes)
            .map_err(|e| write_snapshot_err(meta, e))?;
        *write_lock(&self.shared) = new.clone();
        self.work = new;
        if !changes.is_empty() {
            (self.observer)(&changes);
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot().map_err(read_snapshot_err)
    }
}

impl SnapshotBuilder {
    /// Make `meta`/`bytes` the current snapshot unless a newer one is already stored (an install
    /// may have happened while this one was being built).
    fn store(&self, meta: &SnapshotMeta<NodeId, PeerNode>, bytes: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SM_META)?;
            let old: Option<SnapshotMeta<NodeId, PeerNode>> = match t.get(SM_SNAPSHOT_META)? {
                Some(v) => Some(decode(SM_SNAPSHOT_META, v.value())?),
                None => None,
            };
            if old.is_some_and(|old| old.last_log_id > meta.last_log_id) {
                return Ok(());
            }
            put(&mut t, SM_SNAPSHOT_META, SM_SNAPSHOT_META, meta)?;
            t.insert(SM_SNAPSHOT_DATA, bytes)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (bytes, last_applied, membership) = {
            let m = read_lock(&self.shared);
            let bytes = encode("snapshot", &(&m.data, &m.last_applied, &m.membership))
                .map_err(read_sm_err)?;
            (bytes, m.last_applied, m.membership.clone())
        };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id.term, id.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.store(&meta, &bytes)
            .map_err(|e| write_snapshot_err(&meta, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use hivecast_actors::types::StreamStatus;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership};
    use tempfile::TempDir;

    use super::*;
    use crate::cluster::state::Command;

    fn noop() -> ChangeObserver {
        Arc::new(|_: &[StatusChange]| {})
    }

    /// An observer that records every change it is given.
    fn recorder() -> (ChangeObserver, Arc<Mutex<Vec<StatusChange>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let obs: ChangeObserver = Arc::new(move |c: &[StatusChange]| {
            s.lock().unwrap().extend_from_slice(c);
        });
        (obs, seen)
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn normal(term: u64, index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn claim(stream: &str, origin: &str, at_ms: i64) -> Command {
        Command::Claim {
            stream: stream.into(),
            origin: origin.into(),
            at_ms,
            segment_target_ms: 2000,
        }
    }

    fn set_status(stream: &str, epoch: u64, status: StreamStatus, at_ms: i64) -> Command {
        Command::SetStatus {
            stream: stream.into(),
            epoch,
            status: status.as_str().into(),
            reason: None,
            at_ms,
        }
    }

    fn create_key(key_id: &str, stream: &str, hash: [u8; 32]) -> Command {
        Command::CreateKey {
            key_id: key_id.into(),
            stream: stream.into(),
            hash: hex::encode(hash),
            at_ms: 1,
        }
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
            let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            let (log, sm) = open(dir.path(), noop()).map_err(write_logs_err)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's conformance suite (it runs its own tokio runtimes, so a plain test).
    #[test]
    fn openraft_suite() {
        if let Err(e) = Suite::test_all(Builder) {
            panic!("openraft storage suite: {e}");
        }
    }

    #[tokio::test]
    async fn state_log_and_vote_survive_reopen() {
        let dir = TempDir::new().unwrap();
        let hash = [7u8; 32];
        let entries = vec![
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(Membership::new(
                    vec![[1u64].into_iter().collect()],
                    BTreeMap::from([(1u64, PeerNode::default())]),
                )),
            },
            normal(1, 2, create_key("k1", "demo", hash)),
            normal(1, 3, claim("demo", "n1", 10)),
            normal(1, 4, set_status("demo", 1, StreamStatus::Active, 20)),
        ];
        let vote = Vote::new_committed(1, 1);
        let (data_before, membership_before) = {
            let (mut log, mut sm) = open(dir.path(), noop()).unwrap();
            log.blocking_append(entries.clone()).await.unwrap();
            log.save_vote(&vote).await.unwrap();
            log.save_committed(Some(log_id(1, 4))).await.unwrap();
            let out = sm.apply(entries.clone()).await.unwrap();
            assert_eq!(
                out,
                vec![
                    Outcome::Done,
                    Outcome::Done,
                    Outcome::Claimed {
                        epoch: 1,
                        msn_base: 0
                    },
                    Outcome::Done
                ]
            );
            let reader = sm.reader();
            assert_eq!(reader.last_applied(), Some(log_id(1, 4)));
            let (_, membership) = sm.applied_state().await.unwrap();
            (reader.read(|d| d.clone()), membership)
        };

        let (mut log, mut sm) = open(dir.path(), noop()).unwrap();
        let reader = sm.reader();
        assert_eq!(reader.read(|d| d.clone()), data_before);
        assert_eq!(reader.last_applied(), Some(log_id(1, 4)));
        assert_eq!(reader.last_applied_index(), Some(4));
        reader.read(|d| {
            assert_eq!(d.streams["demo"].status(), StreamStatus::Active);
            assert_eq!(d.streams["demo"].epoch, 1);
            assert_eq!(d.stream_for_key_hash(&hash), Some("demo"));
        });
        let (last_applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(last_applied, Some(log_id(1, 4)));
        assert_eq!(membership, membership_before);
        assert_eq!(membership.log_id(), &Some(log_id(1, 1)));

        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 4)));
        assert_eq!(log.try_get_log_entries(..).await.unwrap(), entries);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_purged_log_id, None);

        // The log keeps working after a reopen: purge, then truncate.
        log.purge(log_id(1, 2)).await.unwrap();
        log.truncate(log_id(1, 4)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(1, 3)));
        assert_eq!(
            log.try_get_log_entries(0..10).await.unwrap(),
            entries[2..3].to_vec()
        );
    }

    #[tokio::test]
    async fn observer_gets_a_batchs_changes_in_order_after_it_is_durable() {
        let dir = TempDir::new().unwrap();
        let (obs, seen) = recorder();
        let (log, mut sm) = open(dir.path(), obs).unwrap();
        let out = sm
            .apply(vec![
                normal(1, 1, claim("a", "n1", 1)),
                normal(1, 2, claim("b", "n2", 2)),
                normal(1, 3, set_status("a", 1, StreamStatus::Active, 3)),
                normal(1, 4, claim("a", "n2", 4)), // refused: live
                normal(
                    1,
                    5,
                    Command::NodeDown {
                        node: "n2".into(),
                        reason: "gone".into(),
                        at_ms: 5,
                    },
                ),
                Entry {
                    log_id: log_id(1, 6),
                    payload: EntryPayload::Blank,
                },
            ])
            .await
            .unwrap();
        assert_eq!(out.len(), 6);
        assert_eq!(
            out[3],
            Outcome::AlreadyLive {
                epoch: 1,
                origin: "n1".into()
            }
        );
        let got: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.stream.clone(), c.status, c.at_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), StreamStatus::PendingIngest, 1),
                ("b".to_owned(), StreamStatus::PendingIngest, 2),
                ("a".to_owned(), StreamStatus::Active, 3),
                ("b".to_owned(), StreamStatus::Error, 5),
            ]
        );
        assert_eq!(sm.reader().last_applied(), Some(log_id(1, 6)));

        // What was announced is on disk.
        // Both stores share the database: drop both to close it.
        drop((log, sm));
        let (_log, sm) = open(dir.path(), noop()).unwrap();
        sm.reader().read(|d| {
            assert_eq!(d.streams["a"].status(), StreamStatus::Active);
            assert_eq!(d.streams["b"].status(), StreamStatus::Error);
            assert_eq!(d.streams["b"].error.as_deref(), Some("gone"));
        });
    }

    #[tokio::test]
    async fn snapshot_round_trip_announces_changes() {
        let dir_a = TempDir::new().unwrap();
        let dir_b = TempDir::new().unwrap();
        let (_log_a, mut a) = open(dir_a.path(), noop()).unwrap();
        a.apply(vec![
            normal(2, 1, create_key("k1", "x", [1; 32])),
            normal(2, 2, claim("x", "n1", 10)),
            normal(2, 3, set_status("x", 1, StreamStatus::Active, 11)),
            normal(2, 4, claim("y", "n2", 12)),
            normal(2, 5, set_status("y", 1, StreamStatus::EndedGracefully, 13)),
        ])
        .await
        .unwrap();
        let snap = a
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 5)));
        assert!(snap.meta.snapshot_id.starts_with("2-5-"));

        let (obs, seen) = recorder();
        let (log_b, mut b) = open(dir_b.path(), obs).unwrap();
        // B already knows "y" in its final state: only "x" is announced.
        b.apply(vec![
            normal(1, 1, claim("y", "n2", 12)),
            normal(1, 2, set_status("y", 1, StreamStatus::EndedGracefully, 13)),
        ])
        .await
        .unwrap();
        seen.lock().unwrap().clear();

        let mut rx = b.begin_receiving_snapshot().await.unwrap();
        assert!(rx.get_ref().is_empty());
        *rx = *snap.snapshot;
        b.install_snapshot(&snap.meta, rx).await.unwrap();

        let want = a.reader().read(|d| d.clone());
        assert_eq!(b.reader().read(|d| d.clone()), want);
        assert_eq!(b.reader().last_applied(), Some(log_id(2, 5)));
        assert_eq!(
            b.applied_state().await.unwrap(),
            a.applied_state().await.unwrap()
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![StatusChange {
                stream: "x".into(),
                epoch: 1,
                status: StreamStatus::Active,
                at_ms: 10,
                reason: None,
                origin: "n1".into(),
            }]
        );

        // The installed state and the current snapshot survive a restart of B.
        drop((log_b, b));
        let (_log_b, mut b) = open(dir_b.path(), noop()).unwrap();
        assert_eq!(b.reader().read(|d| d.clone()), want);
        let cur = b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(cur.meta, snap.meta);
        assert_eq!(b.applied_state().await.unwrap().0, Some(log_id(2, 5)));
    }

    #[test]
    fn index_bounds_handle_every_range_shape() {
        assert_eq!(index_bounds(&(..)), Some((0, None)));
        assert_eq!(index_bounds(&(3..7)), Some((3, Some(7))));
        assert_eq!(index_bounds(&(3..=7)), Some((3, Some(8))));
        assert_eq!(index_bounds(&(3..=u64::MAX)), Some((3, None)));
        assert_eq!(index_bounds(&(5..5)), None);
        assert_eq!(
            index_bounds(&(Bound::Included(7), Bound::Excluded(3))),
            None
        );
        assert_eq!(
            index_bounds(&(Bound::Excluded(u64::MAX), Bound::Unbounded)),
            None
        );
        assert_eq!(snapshot_counter("3-10-42"), Some(42));
        assert_eq!(snapshot_counter("none-7"), Some(7));
    }
}
