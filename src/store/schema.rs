//! Versioned migrations, applied in one `BEGIN IMMEDIATE` transaction with the version kept
//! in `PRAGMA user_version`.

use crate::error::{Error, Result};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the outbox and the sync bookkeeping.
    "CREATE TABLE outbox_job (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        event_id TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        content TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'in_flight', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        tries INTEGER NOT NULL DEFAULT 0,
        uncertain INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_attempt_at INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        delivered_at INTEGER,
        dead_at INTEGER,
        UNIQUE (kind, event_id)
    );
    CREATE INDEX outbox_job_due ON outbox_job (state, next_attempt_at);
    CREATE INDEX outbox_job_entity ON outbox_job (entity_id, id);
    CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > LATEST {
            return Err(Error::Storage(format!(
                "the database has schema version {version}, newer than this library's {LATEST}; \
                 it was written by a newer flow-omnium"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(sql)?;
            log::info!("database migrated to schema version {}", i + 1);
        }
        conn.execute_batch(&format!("PRAGMA user_version = {LATEST}"))?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
