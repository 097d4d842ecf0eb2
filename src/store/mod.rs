//! The on-device SQLite database: opened with its durability pragmas read back, migrated in
//! one transaction, moved aside (never deleted) when damaged. One connection is the single
//! writer; every method takes it for one short transaction.

mod back_office;
mod catalog;
mod outbox;

pub use back_office::{FetchQueue, OrderChange, PushLevel};
mod schema;

pub use catalog::{
    CursorAdvance, PriceView, ProductView, SearchQuery, StockEffect, StockView, WarehouseStock,
};

pub use outbox::{
    DeadJob, Extras, JobFate, JobUpdate, Lookup, NewJob, OutboxCounts, OutboxJob, Recorded,
};

use crate::error::{Error, Result};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Store {
    conn: Mutex<Connection>,
    /// Read-only connections for the till's reads, so a sync page being applied never
    /// makes a product lookup wait (WAL lets readers run beside the writer).
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

/// Idle read connections kept open; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 4;

impl Store {
    /// Opens (creating if needed) and migrates the database. A file that is not a database
    /// or fails its integrity check is renamed aside and reported as `Error::Storage`.
    pub fn open(path: &Path) -> Result<Store> {
        match open_checked(path) {
            Ok(conn) => {
                let store = Store {
                    conn: Mutex::new(conn),
                    readers: Mutex::new(Vec::new()),
                    path: path.to_path_buf(),
                };
                store.recover_in_flight()?;
                Ok(store)
            }
            Err(Opened::Damaged(reason)) => {
                let moved = move_aside(path)?;
                log::error!(
                    "database {} is damaged ({reason}); moved to {}",
                    path.display(),
                    moved.display()
                );
                Err(Error::Storage(format!(
                    "database {} is damaged ({reason}); it was moved to {} and a new one is created on the next open",
                    path.display(),
                    moved.display()
                )))
            }
            Err(Opened::Failed(e)) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back
        // on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a read-only connection from the pool.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let c = Connection::open_with_flags(&self.path, flags)?;
                c.busy_timeout(BUSY_TIMEOUT)?;
                c.execute_batch("PRAGMA query_only = ON")?;
                c
            }
        };
        let result = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// Jobs that were being sent when the process died may have landed: send them again
    /// only after checking Omnium.
    fn recover_in_flight(&self) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE outbox_job SET state = 'pending', uncertain = 1 WHERE state = 'in_flight'",
            [],
        )?;
        if n > 0 {
            log::warn!("{n} job(s) were in flight at the last stop; each is checked in Omnium before it is sent again");
        }
        Ok(())
    }

    pub fn get_state(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn()
            .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_state(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sync_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

enum Opened {
    Damaged(String),
    Failed(Error),
}

impl From<rusqlite::Error> for Opened {
    fn from(e: rusqlite::Error) -> Opened {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                Opened::Damaged(e.to_string())
            }
            _ => Opened::Failed(e.into()),
        }
    }
}

impl From<Error> for Opened {
    fn from(e: Error) -> Opened {
        Opened::Failed(e)
    }
}

fn open_checked(path: &Path) -> std::result::Result<Connection, Opened> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Opened::Failed(Error::Storage(format!(
            "cannot open database {}: {e}",
            path.display()
        )))
    })?;
    apply_pragmas(&conn)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Opened::Damaged(format!("integrity check: {check}")));
    }
    schema::migrate(&conn)?;
    Ok(conn)
}

/// Sets each pragma and reads it back: a misspelt or refused pragma is an error, not a
/// silent downgrade of durability.
fn apply_pragmas(conn: &Connection) -> std::result::Result<(), Opened> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    expect_pragma("journal_mode", &mode.to_ascii_lowercase(), "wal")?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    expect_pragma("synchronous", &sync.to_string(), "2")?;
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    expect_pragma("foreign_keys", &fk.to_string(), "1")?;
    // A 16 MiB page cache (the default is 2 MiB) keeps a catalog sync's b-tree pages in memory.
    conn.execute_batch("PRAGMA cache_size = -16384")?;
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    expect_pragma("cache_size", &cache.to_string(), "-16384")?;
    let busy: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
    expect_pragma(
        "busy_timeout",
        &busy.to_string(),
        &BUSY_TIMEOUT.as_millis().to_string(),
    )?;
    Ok(())
}

fn expect_pragma(name: &str, got: &str, want: &str) -> std::result::Result<(), Opened> {
    if got == want {
        Ok(())
    } else {
        Err(Opened::Failed(Error::Storage(format!(
            "PRAGMA {name} is {got:?} after setting it to {want:?}; refusing to run without it"
        ))))
    }
}

/// Renames the database and its WAL/SHM files to `<name>.damaged-<unix ms>` so that any
/// unsent sales in it can still be recovered by hand.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let target = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    std::fs::rename(path, &target).map_err(|e| {
        Error::Storage(format!(
            "database {} is damaged and could not be moved aside: {e}",
            path.display()
        ))
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{suffix}", target.display()));
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pragmas_are_in_force_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        let conn = store.conn();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2));
        assert_eq!(version, schema::LATEST);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pos.db");
        std::fs::write(
            &path,
            b"this is not a database, but it holds sales someone wants",
        )
        .unwrap();
        let err = Store::open(&path).err().expect("open must fail");
        assert!(
            matches!(&err, Error::Storage(m) if m.contains("moved to")),
            "{err}"
        );
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("pos.db.damaged-"))
            .collect();
        assert_eq!(moved.len(), 1);
        let kept = std::fs::read(dir.path().join(&moved[0])).unwrap();
        assert!(kept.starts_with(b"this is not a database"));
        Store::open(&path).expect("a fresh database is created on the next open");
    }

    #[test]
    fn a_newer_schema_is_refused_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 999")
            .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(path.exists());
    }
}
