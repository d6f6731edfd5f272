//! Key material in the data directory: the hashing secret and the daily visitor salts.
//!
//! The secret keys fingerprint ids, so it must be stable and shared by every instance that
//! should produce the same ids. Salts make visitor ids unlinkable across days: a new random salt
//! each UTC day, the previous day's kept so a visit across midnight keeps its id, older ones
//! destroyed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::clock::{day_number, SharedClock};

pub const SECRET_FILE: &str = "secret";
pub const SALTS_FILE: &str = "salts.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically with owner-only permissions (temp file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// The configured secret, or the one persisted in `data_dir`, or a new one persisted there.
pub fn load_or_create_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> Result<Vec<u8>, KeyError> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
            write_private(&path, hex::encode(&key).as_bytes())?;
            tracing::info!(path = %path.display(), "generated a new hashing secret");
            Ok(key)
        }
        Err(source) => Err(KeyError::Io { path, source }),
    }
}

/// A salt and the UTC day it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySalt {
    pub day: i64,
    pub salt: [u8; 32],
}

#[derive(Serialize, Deserialize, Default)]
struct SaltFile {
    /// Day number (days since the epoch, UTC) to hex salt.
    days: BTreeMap<i64, String>,
}

/// The salts an instance holds: today's, yesterday's (visits across midnight), and tomorrow's
/// when one was agreed in advance with other instances (`salts.store = "clickhouse"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    today: DaySalt,
    yesterday: Option<DaySalt>,
    tomorrow: Option<DaySalt>,
}

/// Today's and yesterday's salts, rotated on the first event of each UTC day.
pub struct Salts {
    path: PathBuf,
    clock: SharedClock,
    state: RwLock<Held>,
}

fn random_salt(day: i64) -> DaySalt {
    let mut salt = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    DaySalt { day, salt }
}

impl Salts {
    /// Loads the salts in `data_dir`, rotating if today has none yet.
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, KeyError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(SALTS_FILE);
        let file: SaltFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeyError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SaltFile::default(),
            Err(source) => return Err(KeyError::Io { path, source }),
        };
        let mut known = Vec::new();
        for (day, hex_salt) in &file.days {
            let salt = parse_salt(hex_salt).map_err(|reason| KeyError::Corrupt {
                path: path.clone(),
                reason,
            })?;
            known.push(DaySalt { day: *day, salt });
        }
        let today = day_number(clock.now_ms());
        let state = Self::state_for(today, &known);
        let salts = Self {
            path,
            clock,
            state: RwLock::new(state),
        };
        salts.persist(&state)?;
        Ok(salts)
    }

    /// The salts to hold on `today`, given the ones known: reuse today's (or the one prepared
    /// for it), keep yesterday's and a prepared tomorrow's, forget everything else.
    fn state_for(today: i64, known: &[DaySalt]) -> Held {
        let find = |day: i64| known.iter().find(|s| s.day == day).copied();
        Held {
            today: find(today).unwrap_or_else(|| random_salt(today)),
            yesterday: find(today - 1),
            tomorrow: find(today + 1),
        }
    }

    fn persist(&self, state: &Held) -> Result<(), KeyError> {
        let mut file = SaltFile::default();
        for s in [Some(state.today), state.yesterday, state.tomorrow]
            .into_iter()
            .flatten()
        {
            file.days.insert(s.day, hex::encode(s.salt));
        }
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&self.path, &json)
    }

    fn persist_or_log(&self, state: &Held) {
        if let Err(e) = self.persist(state) {
            // Keep serving with the in-memory salt: a restart today would start a new one,
            // which only splits visitor ids, it never links them.
            tracing::error!(error = %e, "could not persist the visitor salts");
        }
    }

    /// The held salts for the current day, rotating first if the day changed.
    fn held(&self) -> Held {
        let today = day_number(self.clock.now_ms());
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if state.today.day == today {
                return *state;
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.today.day != today {
            let known: Vec<DaySalt> = [Some(state.today), state.yesterday, state.tomorrow]
                .into_iter()
                .flatten()
                .collect();
            *state = Self::state_for(today, &known);
            self.persist_or_log(&state);
            tracing::info!(day = today, "rotated the daily visitor salt");
        }
        *state
    }

    /// Today's salt and yesterday's (if known), rotating first if the day changed.
    pub fn current(&self) -> (DaySalt, Option<DaySalt>) {
        let held = self.held();
        (held.today, held.yesterday)
    }

    /// This instance's salt for `day` (today or tomorrow), made and kept now if it has none:
    /// what it offers to the other instances when nobody has offered one yet.
    pub fn proposal(&self, day: i64) -> Option<DaySalt> {
        let held = self.held();
        if day == held.today.day {
            return Some(held.today);
        }
        if day != held.today.day + 1 {
            return None;
        }
        if let Some(t) = held.tomorrow {
            return Some(t);
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.today.day + 1 != day {
            return None; // the day turned meanwhile
        }
        let t = *state.tomorrow.get_or_insert_with(|| random_salt(day));
        self.persist_or_log(&state);
        Some(t)
    }

    /// Uses `agreed` for its day from now on (the salt every instance chose). Only yesterday,
    /// today and tomorrow are held; returns whether anything changed.
    pub fn adopt(&self, agreed: DaySalt) -> bool {
        let today = self.held().today.day;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.today.day != today {
            return false; // the day turned meanwhile; the next sync brings it up to date
        }
        let slot = match agreed.day - today {
            -1 => &mut state.yesterday,
            1 => &mut state.tomorrow,
            0 => {
                if state.today == agreed {
                    return false;
                }
                tracing::info!(
                    day = agreed.day,
                    "switching today's visitor salt to the one shared by the other instances"
                );
                state.today = agreed;
                self.persist_or_log(&state);
                return true;
            }
            _ => return false,
        };
        if *slot == Some(agreed) {
            return false;
        }
        *slot = Some(agreed);
        self.persist_or_log(&state);
        true
    }
}

/// A salt from its hex text.
pub fn parse_salt(hex_salt: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_salt.trim()).map_err(|e| e.to_string())?;
    bytes
        .try_into()
        .map_err(|_| "salt is not 32 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    const DAY: i64 = 86_400_000;

    #[test]
    fn secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        let b = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let c = load_or_create_secret(Some("configured"), dir.path()).unwrap();
        assert_eq!(c, b"configured");
    }

    #[test]
    fn salt_rotates_daily_and_keeps_only_yesterday() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(100 * DAY + 5);
        let salts = Salts::open(dir.path(), Arc::new(clock.clone())).unwrap();
        let (d100, prev) = salts.current();
        assert_eq!(d100.day, 100);
        assert!(prev.is_none());

        clock.advance(DAY);
        let (d101, prev) = salts.current();
        assert_eq!(d101.day, 101);
        assert_ne!(d101.salt, d100.salt);
        assert_eq!(prev, Some(d100));

        clock.advance(DAY);
        let (d102, prev) = salts.current();
        assert_eq!(prev, Some(d101));
        let text = std::fs::read_to_string(dir.path().join(SALTS_FILE)).unwrap();
        assert!(
            !text.contains(&hex::encode(d100.salt)),
            "day 100's salt must be destroyed"
        );
        assert!(text.contains(&hex::encode(d102.salt)));
    }

    #[test]
    fn salts_survive_a_restart_on_the_same_day() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(7 * DAY));
        let a = Salts::open(dir.path(), clock.clone()).unwrap().current();
        let b = Salts::open(dir.path(), clock).unwrap().current();
        assert_eq!(a, b);
    }

    #[test]
    fn a_long_gap_forgets_old_salts() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(7 * DAY);
        let first = Salts::open(dir.path(), Arc::new(clock.clone()))
            .unwrap()
            .current();
        clock.advance(5 * DAY);
        let later = Salts::open(dir.path(), Arc::new(clock)).unwrap().current();
        assert_eq!(later.0.day, 12);
        assert!(later.1.is_none());
        assert_ne!(later.0.salt, first.0.salt);
    }

    #[test]
    fn a_salt_agreed_for_tomorrow_is_used_at_midnight_and_others_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(50 * DAY + 3_600_000);
        let salts = Salts::open(dir.path(), Arc::new(clock.clone())).unwrap();
        let mine = salts.proposal(51).unwrap();
        assert_eq!(salts.proposal(51), Some(mine), "a proposal is kept");
        assert_eq!(salts.proposal(53), None, "only today and tomorrow");
        let agreed = DaySalt {
            day: 51,
            salt: [7; 32],
        };
        assert!(salts.adopt(agreed));
        assert!(!salts.adopt(agreed), "adopting twice changes nothing");
        assert!(!salts.adopt(DaySalt {
            day: 40,
            salt: [1; 32]
        }));
        // A restart before midnight keeps it.
        let salts = Salts::open(dir.path(), Arc::new(clock.clone())).unwrap();
        let today = salts.current().0;
        clock.advance(DAY);
        let (t, y) = salts.current();
        assert_eq!(t, agreed);
        assert_eq!(y, Some(today));
    }

    #[test]
    fn adopting_todays_shared_salt_replaces_the_local_one() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(9 * DAY);
        let salts = Salts::open(dir.path(), Arc::new(clock.clone())).unwrap();
        let local = salts.current().0;
        let shared = DaySalt {
            day: 9,
            salt: [9; 32],
        };
        assert_ne!(local, shared);
        assert!(salts.adopt(shared));
        assert_eq!(salts.current().0, shared);
        let reopened = Salts::open(dir.path(), Arc::new(clock)).unwrap();
        assert_eq!(reopened.current().0, shared, "persisted");
    }

    #[test]
    fn corrupt_salt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SALTS_FILE), "{not json").unwrap();
        let err = Salts::open(dir.path(), Arc::new(ManualClock::new(0)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
