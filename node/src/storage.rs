//! Node-local durable state in one redb file: the audit log. (Keys and streams are in the
//! replicated registry, `cluster`.)
//!
//! Values are JSON (this is the boundary crate; the records are small and rarely written).

use std::path::Path;
use std::sync::Arc;

use hivecast_actors::types::unix_ms_now;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

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
    /// Audit entries kept at most; the oldest go first.
    max_audit: u64,
}

/// Audit entries kept by default (`audit.max_entries`).
pub const DEFAULT_MAX_AUDIT: u64 = 100_000;

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
    /// Open (or create) `<dir>/hivecast.redb` with the default retention.
    #[cfg(test)]
    pub fn open(dir: &Path) -> Result<Arc<Self>, StorageError> {
        Self::open_with(dir, DEFAULT_MAX_AUDIT)
    }

    /// Open (or create) `<dir>/hivecast.redb`, keeping at most `max_audit` audit entries.
    pub fn open_with(dir: &Path, max_audit: u64) -> Result<Arc<Self>, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Db(format!("{}: {e}", dir.display())))?;
        let db = Database::create(dir.join("hivecast.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(AUDIT)?;
        tx.commit()?;
        Ok(Arc::new(Self {
            db,
            max_audit: max_audit.max(1),
        }))
    }

    /// Append an audit entry (failures are logged, never fatal), dropping the oldest beyond the
    /// retention; the entry is also a structured tracing event (target `audit`).
    pub fn audit(&self, stream: &str, event: &str, detail: &str, remote: Option<String>) {
        tracing::info!(target: "audit", stream, event, detail, remote = remote.as_deref().unwrap_or(""), "audit");
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
                // Keys are consecutive: everything below `next + 1 - max` goes.
                let keep_from = (next + 1).saturating_sub(self.max_audit);
                loop {
                    let first = match t.first()? {
                        Some((k, _)) => k.value(),
                        None => break,
                    };
                    if first >= keep_from {
                        break;
                    }
                    t.remove(first)?;
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_is_kept_in_order_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        s.audit("a", "publish_started", "", None);
        s.audit("b", "publish_started", "", Some("127.0.0.1:5".into()));
        s.audit("a", "publish_ended", "unpublished", None);
        let all = s.audit_log(None, 10).unwrap();
        assert_eq!(all.len(), 3);
        let a: Vec<_> = s
            .audit_log(Some("a"), 10)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(a, ["publish_started", "publish_ended"]);
        assert_eq!(s.audit_log(None, 1).unwrap()[0].stream, "a");
        drop(s);
        let s = Storage::open(dir.path()).unwrap();
        assert_eq!(s.audit_log(None, 10).unwrap().len(), 3);
    }

    #[test]
    fn audit_retention_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open_with(dir.path(), 3).unwrap();
        for i in 0..5 {
            s.audit("a", "e", &i.to_string(), None);
        }
        let all = s.audit_log(None, 10).unwrap();
        let details: Vec<&str> = all.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["2", "3", "4"]);
    }
}
