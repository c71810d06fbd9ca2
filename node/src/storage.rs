//! Node-local durable state in one redb file: stream keys (hashed), streams (status, epoch),
//! and the audit log. Implements the actors' [`Registry`] for a single node.
//!
//! Values are JSON (this is the boundary crate; the records are small and rarely written).
//! Every status change is committed before it is published on the event hub, so subscribers
//! never see a state the file does not have.
//!
//! Invariants: a stream's epoch only grows (it survives restarts, so segment names never
//! repeat); a key is never stored in clear, only its SHA-256.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hivecast_actors::events::{EventHub, StreamEvent};
use hivecast_actors::registry::{Registry, RegistryError};
use hivecast_actors::types::{unix_ms_now, Epoch, StreamName, StreamStatus};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const KEY_HASHES: TableDefinition<&[u8], &str> = TableDefinition::new("key_hashes");
const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb failed.
    #[error("database: {0}")]
    Db(String),
    /// A record could not be decoded.
    #[error("corrupt record in {table}: {error}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Decoder message.
        error: String,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A stream key's record (the key itself is not in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public identifier.
    pub key_id: String,
    /// The stream it publishes.
    pub stream: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
    /// Creation time.
    pub created_at_ms: i64,
    /// Revoked keys stay listed but no longer work.
    pub revoked: bool,
}

/// A stream's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Stream name.
    pub stream: String,
    /// Lifecycle status (wire spelling).
    pub status: String,
    /// Current (latest) epoch.
    pub epoch: u64,
    /// The node that holds the publisher.
    pub origin: String,
    /// When the current session started.
    pub started_at_ms: Option<i64>,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl StreamRecord {
    /// Parsed status.
    pub fn status(&self) -> StreamStatus {
        StreamStatus::parse(&self.status).unwrap_or(StreamStatus::Error)
    }
}

/// An audit entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at_ms: i64,
    /// Which stream (or "" for node-wide).
    pub stream: String,
    /// What: `publish_rejected`, `publish_started`, `publish_ended`, `key_created`, `key_revoked`.
    pub event: String,
    /// Details for humans.
    pub detail: String,
    /// Peer address, if any.
    pub remote: Option<String>,
}

/// The node's database.
pub struct Storage {
    db: Database,
    node_id: String,
    hub: EventHub,
}

/// SHA-256 of a key. Keys are >= 128 random bits, so a fast hash is enough (no password
/// stretching needed), and it makes lookups possible without storing the key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn decode<T: for<'de> Deserialize<'de>>(table: &'static str, v: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(v).map_err(|e| StorageError::Corrupt {
        table,
        error: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Storage {
    /// Open (or create) `<dir>/hivecast.redb`.
    pub fn open(dir: &Path, node_id: &str, hub: EventHub) -> Result<Arc<Self>, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Db(format!("{}: {e}", dir.display())))?;
        let db = Database::create(dir.join("hivecast.redb"))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(KEYS)?;
            tx.open_table(KEY_HASHES)?;
            tx.open_table(STREAMS)?;
            tx.open_table(AUDIT)?;
        }
        tx.commit()?;
        Ok(Arc::new(Self {
            db,
            node_id: node_id.to_owned(),
            hub,
        }))
    }

    /// Store a new key for `stream`.
    pub fn create_key(
        &self,
        key_id: &str,
        key: &str,
        stream: &StreamName,
    ) -> Result<KeyRecord, StorageError> {
        let hash = hash_key(key);
        let rec = KeyRecord {
            key_id: key_id.to_owned(),
            stream: stream.to_string(),
            hash: hex::encode(hash),
            created_at_ms: unix_ms_now(),
            revoked: false,
        };
        let tx = self.db.begin_write()?;
        {
            tx.open_table(KEYS)?
                .insert(key_id, encode(&rec).as_slice())?;
            tx.open_table(KEY_HASHES)?.insert(hash.as_slice(), key_id)?;
        }
        tx.commit()?;
        self.audit(
            stream.as_str(),
            "key_created",
            &format!("key {key_id}"),
            None,
        );
        Ok(rec)
    }

    /// All keys, newest first.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StorageError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(KEYS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(decode::<KeyRecord>("keys", v.value())?);
        }
        out.sort_by_key(|k| std::cmp::Reverse(k.created_at_ms));
        Ok(out)
    }

    /// Revoke a key; `false` if unknown.
    pub fn revoke_key(&self, key_id: &str) -> Result<bool, StorageError> {
        let tx = self.db.begin_write()?;
        let rec = {
            let mut t = tx.open_table(KEYS)?;
            let rec = match t.get(key_id)? {
                Some(v) => decode::<KeyRecord>("keys", v.value())?,
                None => return Ok(false),
            };
            let mut rec = rec;
            rec.revoked = true;
            t.insert(key_id, encode(&rec).as_slice())?;
            rec
        };
        tx.commit()?;
        self.audit(&rec.stream, "key_revoked", &format!("key {key_id}"), None);
        Ok(true)
    }

    /// The stream a key publishes, if the key is valid (known, not revoked). The stored hash is
    /// compared in constant time.
    pub fn check_key(&self, key: &str) -> Result<Option<StreamName>, StorageError> {
        let hash = hash_key(key);
        let tx = self.db.begin_read()?;
        let Some(id) = tx
            .open_table(KEY_HASHES)?
            .get(hash.as_slice())?
            .map(|v| v.value().to_owned())
        else {
            return Ok(None);
        };
        let Some(rec) = tx
            .open_table(KEYS)?
            .get(id.as_str())?
            .map(|v| v.value().to_vec())
        else {
            return Ok(None);
        };
        let rec: KeyRecord = decode("keys", &rec)?;
        let stored = hex::decode(&rec.hash).unwrap_or_default();
        let same: bool = stored.ct_eq(hash.as_slice()).into();
        if !same || rec.revoked {
            return Ok(None);
        }
        Ok(StreamName::new(&rec.stream).ok())
    }

    /// Whether any key was ever issued for `stream`.
    pub fn stream_has_key(&self, stream: &str) -> Result<bool, StorageError> {
        Ok(self.list_keys()?.iter().any(|k| k.stream == stream))
    }

    /// A stream's record.
    pub fn stream(&self, name: &str) -> Result<Option<StreamRecord>, StorageError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STREAMS)?;
        let v = t.get(name)?;
        v.map(|v| decode("streams", v.value())).transpose()
    }

    /// All stream records.
    pub fn streams(&self) -> Result<Vec<StreamRecord>, StorageError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STREAMS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(decode::<StreamRecord>("streams", v.value())?);
        }
        Ok(out)
    }

    /// Append an audit entry (failures are logged, never fatal).
    pub fn audit(&self, stream: &str, event: &str, detail: &str, remote: Option<String>) {
        let entry = AuditEntry {
            at_ms: unix_ms_now(),
            stream: stream.to_owned(),
            event: event.to_owned(),
            detail: detail.to_owned(),
            remote,
        };
        let r = (|| -> Result<(), StorageError> {
            let tx = self.db.begin_write()?;
            {
                let mut t = tx.open_table(AUDIT)?;
                let next = t.last()?.map_or(0, |(k, _)| k.value() + 1);
                t.insert(next, encode(&entry).as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = r {
            tracing::error!(error = %e, "audit write failed");
        }
    }

    /// Audit entries, optionally for one stream, oldest first (at most `limit`, the newest).
    pub fn audit_log(
        &self,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev() {
            let (_, v) = row?;
            let e: AuditEntry = decode("audit", v.value())?;
            if stream.is_none_or(|s| s == e.stream) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// At start-up: streams this node held as live cannot be live any more (their publishers'
    /// connections died with the previous process). Move them to ERROR.
    pub fn fail_orphans(&self) -> Result<usize, StorageError> {
        let mut n = 0;
        for rec in self.streams()? {
            if rec.status().is_live() && rec.origin == self.node_id {
                if let Ok(name) = StreamName::new(&rec.stream) {
                    self.write_status(
                        &name,
                        Epoch(rec.epoch),
                        StreamStatus::Error,
                        Some("node restarted".into()),
                    )?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn claim_sync(&self, stream: &StreamName) -> Result<Epoch, RegistryError> {
        let se = |e: StorageError| RegistryError::Storage(e.to_string());
        let now = unix_ms_now();
        let tx = self.db.begin_write().map_err(|e| se(e.into()))?;
        let epoch = {
            let mut t = tx.open_table(STREAMS).map_err(|e| se(e.into()))?;
            let old = match t.get(stream.as_str()).map_err(|e| se(e.into()))? {
                Some(v) => Some(decode::<StreamRecord>("streams", v.value()).map_err(se)?),
                None => None,
            };
            if let Some(old) = &old {
                if old.status().is_live() {
                    return Err(RegistryError::AlreadyLive {
                        stream: stream.clone(),
                        epoch: Epoch(old.epoch),
                    });
                }
            }
            let epoch = old.as_ref().map_or(1, |o| o.epoch + 1);
            let rec = StreamRecord {
                stream: stream.to_string(),
                status: StreamStatus::PendingIngest.as_str().to_owned(),
                epoch,
                origin: self.node_id.clone(),
                started_at_ms: Some(now),
                ended_at_ms: None,
                error: None,
            };
            t.insert(stream.as_str(), encode(&rec).as_slice())
                .map_err(|e| se(e.into()))?;
            epoch
        };
        tx.commit().map_err(|e| se(e.into()))?;
        self.hub.publish(StreamEvent::Status {
            stream: stream.clone(),
            status: StreamStatus::PendingIngest,
            epoch: Epoch(epoch),
            at_ms: now,
            reason: None,
        });
        Ok(Epoch(epoch))
    }

    fn write_status(
        &self,
        stream: &StreamName,
        epoch: Epoch,
        status: StreamStatus,
        reason: Option<String>,
    ) -> Result<(), StorageError> {
        match self.set_status_sync(stream, epoch, status, reason) {
            Ok(()) => Ok(()),
            Err(RegistryError::Storage(e)) => Err(StorageError::Db(e)),
            Err(_) => Ok(()),
        }
    }

    fn set_status_sync(
        &self,
        stream: &StreamName,
        epoch: Epoch,
        status: StreamStatus,
        reason: Option<String>,
    ) -> Result<(), RegistryError> {
        let se = |e: StorageError| RegistryError::Storage(e.to_string());
        let now = unix_ms_now();
        let tx = self.db.begin_write().map_err(|e| se(e.into()))?;
        {
            let mut t = tx.open_table(STREAMS).map_err(|e| se(e.into()))?;
            let mut rec = match t.get(stream.as_str()).map_err(|e| se(e.into()))? {
                Some(v) => decode::<StreamRecord>("streams", v.value()).map_err(se)?,
                None => {
                    return Err(RegistryError::Storage(format!("unknown stream {stream}")));
                }
            };
            if rec.epoch != epoch.0 {
                return Err(RegistryError::StaleEpoch {
                    stream: stream.clone(),
                    got: epoch,
                    current: Epoch(rec.epoch),
                });
            }
            let from = rec.status();
            if from == status {
                return Ok(());
            }
            if !from.can_move_to(status) {
                return Err(RegistryError::BadTransition {
                    stream: stream.clone(),
                    from,
                    to: status,
                });
            }
            rec.status = status.as_str().to_owned();
            if !status.is_live() {
                rec.ended_at_ms = Some(now);
            }
            rec.error = reason.clone().filter(|_| status == StreamStatus::Error);
            t.insert(stream.as_str(), encode(&rec).as_slice())
                .map_err(|e| se(e.into()))?;
        }
        tx.commit().map_err(|e| se(e.into()))?;
        let event = match status {
            StreamStatus::Active => Some(("publish_started", String::new())),
            StreamStatus::EndedGracefully => Some(("publish_ended", "unpublished".to_owned())),
            StreamStatus::Error => Some((
                "publish_ended",
                format!("error: {}", reason.clone().unwrap_or_default()),
            )),
            StreamStatus::PendingIngest => None,
        };
        if let Some((ev, detail)) = event {
            self.audit(stream.as_str(), ev, &detail, None);
        }
        self.hub.publish(StreamEvent::Status {
            stream: stream.clone(),
            status,
            epoch,
            at_ms: now,
            reason,
        });
        Ok(())
    }
}

/// The single-node registry: redb writes on the blocking pool.
#[derive(Clone)]
pub struct LocalRegistry(pub Arc<Storage>);

impl Registry for LocalRegistry {
    fn claim(&self, stream: StreamName) -> BoxFuture<'_, Result<Epoch, RegistryError>> {
        let s = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || s.claim_sync(&stream))
                .await
                .map_err(|e| RegistryError::Storage(e.to_string()))?
        })
    }

    fn set_status(
        &self,
        stream: StreamName,
        epoch: Epoch,
        status: StreamStatus,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), RegistryError>> {
        let s = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || s.set_status_sync(&stream, epoch, status, reason))
                .await
                .map_err(|e| RegistryError::Storage(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Arc<Storage>) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), "n1", EventHub::new(16)).unwrap();
        (dir, s)
    }

    #[test]
    fn keys_are_checked_by_hash_and_revocable() {
        let (_d, s) = open();
        let name = StreamName::new("demo").unwrap();
        s.create_key("k1", "secret-key-1", &name).unwrap();
        assert_eq!(s.check_key("secret-key-1").unwrap(), Some(name.clone()));
        assert_eq!(s.check_key("secret-key-2").unwrap(), None);
        let listed = s.list_keys().unwrap();
        assert_eq!(listed.len(), 1);
        assert_ne!(listed[0].hash, "secret-key-1");
        assert!(s.revoke_key("k1").unwrap());
        assert!(!s.revoke_key("nope").unwrap());
        assert_eq!(s.check_key("secret-key-1").unwrap(), None);
    }

    #[test]
    fn epochs_grow_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let name = StreamName::new("demo").unwrap();
        {
            let s = Storage::open(dir.path(), "n1", EventHub::new(16)).unwrap();
            assert_eq!(s.claim_sync(&name).unwrap(), Epoch(1));
            assert!(matches!(
                s.claim_sync(&name),
                Err(RegistryError::AlreadyLive { .. })
            ));
            s.set_status_sync(&name, Epoch(1), StreamStatus::Active, None)
                .unwrap();
            assert!(matches!(
                s.set_status_sync(&name, Epoch(1), StreamStatus::PendingIngest, None),
                Err(RegistryError::BadTransition { .. })
            ));
        }
        let s = Storage::open(dir.path(), "n1", EventHub::new(16)).unwrap();
        assert_eq!(s.fail_orphans().unwrap(), 1);
        assert_eq!(
            s.stream("demo").unwrap().unwrap().status(),
            StreamStatus::Error
        );
        assert_eq!(s.claim_sync(&name).unwrap(), Epoch(2));
        assert!(matches!(
            s.set_status_sync(&name, Epoch(1), StreamStatus::Active, None),
            Err(RegistryError::StaleEpoch { .. })
        ));
    }
}
