//! The subject block list: identifiers whose events are dropped at ingest.
//!
//! The list lives in ClickHouse (`subject_blocks`, shared by every instance) and in memory here;
//! `serve` refreshes it periodically and a change made through this instance's admin API applies
//! at once. A copy is kept in `<data_dir>/blocks.json` so a restart while ClickHouse is down still
//! blocks. Checking an event costs one relaxed atomic load while the list is empty.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::row::EventRow;

/// The kinds of identifier a subject request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// The site-assigned user id (stored as a keyed hash).
    UserId,
    /// The first-party client id from the tracker's storage (stored as a keyed hash).
    ClientId,
    /// The cookieless daily visitor id (hex).
    VisitorId,
    /// The device fingerprint id (hex).
    FingerprintId,
    /// The tracker's client session id.
    SessionId,
}

impl IdKind {
    pub const ALL: [IdKind; 5] = [
        IdKind::UserId,
        IdKind::ClientId,
        IdKind::VisitorId,
        IdKind::FingerprintId,
        IdKind::SessionId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::UserId => "user_id",
            IdKind::ClientId => "client_id",
            IdKind::VisitorId => "visitor_id",
            IdKind::FingerprintId => "fingerprint_id",
            IdKind::SessionId => "session_id",
        }
    }

    pub fn parse(s: &str) -> Option<IdKind> {
        IdKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The `events` column holding this identifier (same name).
    pub fn column(self) -> &'static str {
        self.as_str()
    }

    /// Whether the column is a `FixedString(16)` shown and matched as hex.
    pub fn is_binary(self) -> bool {
        matches!(self, IdKind::VisitorId | IdKind::FingerprintId)
    }

    /// This identifier of `row`, in its stored text representation.
    pub fn of_row(self, row: &EventRow) -> std::borrow::Cow<'_, str> {
        match self {
            IdKind::UserId => row.user_id.as_str().into(),
            IdKind::ClientId => row.client_id.as_str().into(),
            IdKind::SessionId => row.session_id.as_str().into(),
            IdKind::VisitorId => hex::encode(row.visitor_id).into(),
            IdKind::FingerprintId => {
                if row.fingerprint_id == [0; 16] {
                    "".into()
                } else {
                    hex::encode(row.fingerprint_id).into()
                }
            }
        }
    }
}

/// One blocked identifier of one site, in the stored representation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockKey {
    pub site: String,
    pub kind: IdKind,
    pub id: String,
}

pub struct BlockList {
    set: RwLock<Arc<HashSet<BlockKey>>>,
    nonempty: AtomicBool,
    file: Option<PathBuf>,
}

impl BlockList {
    /// An empty list that is not persisted (tests, tools).
    pub fn in_memory() -> Self {
        Self {
            set: RwLock::new(Arc::new(HashSet::new())),
            nonempty: AtomicBool::new(false),
            file: None,
        }
    }

    /// The list persisted in `file`, starting from its last saved contents.
    pub fn load(file: &Path) -> Self {
        let saved: Vec<BlockKey> = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let list = Self {
            file: Some(file.to_owned()),
            ..Self::in_memory()
        };
        list.install(saved.into_iter().collect(), false);
        list
    }

    fn install(&self, set: HashSet<BlockKey>, persist: bool) {
        self.nonempty.store(!set.is_empty(), Ordering::Relaxed);
        let changed = {
            let mut guard = self.set.write().unwrap_or_else(|p| p.into_inner());
            let changed = **guard != set;
            *guard = Arc::new(set);
            changed
        };
        if persist && changed {
            self.save();
        }
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let mut keys: Vec<BlockKey> = self.snapshot().iter().cloned().collect();
        keys.sort();
        let bytes = serde_json::to_vec_pretty(&keys).unwrap_or_default();
        if let Err(e) = crate::keys::write_private(file, &bytes) {
            tracing::warn!(error = %e, "cannot save the block list copy");
        }
    }

    /// Replaces the whole list (a refresh from ClickHouse).
    pub fn replace(&self, keys: impl IntoIterator<Item = BlockKey>) {
        self.install(keys.into_iter().collect(), true);
    }

    /// Adds or removes one key at once (a change made on this instance).
    pub fn set(&self, key: BlockKey, blocked: bool) {
        let mut set: HashSet<BlockKey> = (*self.snapshot()).clone();
        if blocked {
            set.insert(key);
        } else {
            set.remove(&key);
        }
        self.install(set, true);
    }

    pub fn snapshot(&self) -> Arc<HashSet<BlockKey>> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        !self.nonempty.load(Ordering::Relaxed)
    }

    /// Whether any identifier of `row` is blocked for its site.
    pub fn blocks(&self, row: &EventRow) -> bool {
        if self.is_empty() {
            return false;
        }
        let set = self.snapshot();
        IdKind::ALL.into_iter().any(|kind| {
            let id = kind.of_row(row);
            !id.is_empty()
                && set.contains(&BlockKey {
                    site: row.site.to_string(),
                    kind,
                    id: id.into_owned(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: IdKind, id: &str) -> BlockKey {
        BlockKey {
            site: "shop".into(),
            kind,
            id: id.into(),
        }
    }

    #[test]
    fn blocks_any_identifier_of_the_same_site_only() {
        let list = BlockList::in_memory();
        let row = EventRow {
            site: "shop".into(),
            user_id: "u1".into(),
            session_id: "s1".into(),
            visitor_id: [7; 16],
            ..EventRow::default()
        };
        assert!(!list.blocks(&row));
        list.set(key(IdKind::VisitorId, &hex::encode([7u8; 16])), true);
        assert!(list.blocks(&row));
        assert!(!list.blocks(&EventRow {
            site: "demo".into(),
            ..row.clone()
        }));
        list.set(key(IdKind::VisitorId, &hex::encode([7u8; 16])), false);
        assert!(!list.blocks(&row));
        list.set(key(IdKind::SessionId, "s1"), true);
        assert!(list.blocks(&row));
        // An empty identifier never matches, even if someone blocked "".
        list.replace([key(IdKind::ClientId, "")]);
        assert!(!list.blocks(&row));
    }

    #[test]
    fn the_saved_copy_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blocks.json");
        let list = BlockList::load(&file);
        list.set(key(IdKind::UserId, "abc"), true);
        let again = BlockList::load(&file);
        assert_eq!(again.len(), 1);
        assert!(!again.is_empty());
    }
}
