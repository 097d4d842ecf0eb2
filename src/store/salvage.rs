//! Carrying the outbox out of a damaged database (CONTRACT §9 rule 4): every job still
//! readable in the moved-aside file is copied, with its id, state and stock movements, into
//! the fresh one, so unsent sales are delivered as usual and delivered ones are not sent
//! again. The damaged file is only read, never changed.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::path::Path;

/// What `fo_client_open` reports in the `storage.damaged` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageReport {
    /// The file name (no directory) the damaged database was renamed to.
    pub moved_to: String,
    /// Outbox jobs carried into the fresh database.
    pub salvaged: u64,
    /// Outbox rows that could not be read; `None` when not even that can be known.
    pub lost: Option<u64>,
}

/// Beyond this many ids past the last readable row, rows are not probed one by one.
const MAX_PROBES: i64 = 5_000_000;

const COLUMNS: [&str; 17] = [
    "id",
    "kind",
    "event_id",
    "entity_id",
    "content",
    "state",
    "attempts",
    "tries",
    "uncertain",
    "next_attempt_at",
    "last_attempt_at",
    "last_error",
    "created_at",
    "delivered_at",
    "dead_at",
    "step",
    "extra",
];

struct Job {
    values: Vec<rusqlite::types::Value>,
    id: i64,
    kind: String,
    state: String,
}

/// Copies what can be read from `damaged` into `fresh` (already migrated, empty), and
/// stores the report there too, all in one transaction. An error means nothing was written
/// to `fresh` (a read error in `damaged` is not one: what cannot be read is counted lost).
pub fn carry_over(damaged: &Path, fresh: &Connection) -> crate::error::Result<DamageReport> {
    let moved_to = damaged
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tx = fresh.unchecked_transaction()?;
    let (salvaged, lost) = match Old::open(damaged) {
        Ok(old) => copy(&old, &tx)?,
        Err(e) => {
            log::error!("nothing could be read from the damaged database: {e}");
            (0, None)
        }
    };
    let report = DamageReport {
        moved_to,
        salvaged,
        lost,
    };
    tx.execute(
        "INSERT INTO sync_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![
            super::replace::REPORT_KEY,
            serde_json::json!({"moved_to": report.moved_to, "salvaged": report.salvaged, "lost": report.lost})
                .to_string()
        ],
    )?;
    super::crash_point("replace:salvaging");
    tx.commit()?;
    Ok(report)
}

/// The damaged database, opened read-only, with the SELECT list of its outbox.
struct Old {
    conn: Connection,
    /// `COLUMNS` as this file has them (a column an older schema lacks, as its default).
    select: Option<String>,
}

impl Old {
    fn open(damaged: &Path) -> rusqlite::Result<Old> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(damaged, flags)?;
        conn.execute_batch("PRAGMA query_only = ON")?;
        let present: Vec<String> = {
            let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('outbox_job')")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let select = (!present.is_empty()).then(|| {
            COLUMNS
                .iter()
                .map(|c| match (present.iter().any(|p| p == c), *c) {
                    (true, c) => c.to_string(),
                    (false, "step") => "0".into(),
                    (false, _) => "NULL".into(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        Ok(Old { conn, select })
    }
}

/// Reads every outbox row it can: a scan in id order as far as it gets, then, past a
/// damaged page, each remaining id on its own (a lookup avoids the damaged page unless
/// the row is in it). Returns the jobs read, how many ids could not be read (`None` when
/// that cannot be known), and the highest id the old file ever gave out.
fn read_jobs(old: &Old, select: &str) -> (Vec<Job>, Option<u64>, i64) {
    let conn = &old.conn;
    let mut jobs = Vec::new();
    let mut scan_failed = false;
    match conn.prepare(&format!("SELECT {select} FROM outbox_job ORDER BY id")) {
        Ok(mut stmt) => match stmt.query([]) {
            Ok(mut rows) => loop {
                match rows.next() {
                    Ok(Some(row)) => match job_of(row) {
                        Ok(job) => jobs.push(job),
                        Err(_) => {
                            scan_failed = true;
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(_) => {
                        scan_failed = true;
                        break;
                    }
                }
            },
            Err(_) => scan_failed = true,
        },
        Err(_) => scan_failed = true,
    }
    let sequence: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'outbox_job'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ok()
        .flatten();
    let max_id: Option<i64> = conn
        .query_row("SELECT MAX(id) FROM outbox_job", [], |r| r.get(0))
        .ok()
        .flatten();
    let last = jobs.last().map_or(0, |j| j.id);
    let upper = sequence.into_iter().chain(max_id).max();
    let high = upper.unwrap_or(0).max(last);
    if !scan_failed {
        return (jobs, Some(0), high);
    }
    let lost = match upper {
        Some(upper) if upper - last <= MAX_PROBES => {
            match conn.prepare(&format!("SELECT {select} FROM outbox_job WHERE id = ?1")) {
                Ok(mut stmt) => {
                    let mut unreadable = 0;
                    for id in last + 1..=upper {
                        match stmt.query_row([id], job_of).optional() {
                            Ok(Some(job)) => jobs.push(job),
                            Ok(None) => {}
                            Err(_) => unreadable += 1,
                        }
                    }
                    Some(unreadable)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    (jobs, lost, high)
}

fn copy(old: &Old, tx: &rusqlite::Transaction) -> rusqlite::Result<(u64, Option<u64>)> {
    let Some(select) = &old.select else {
        return Ok((0, None));
    };
    let (jobs, mut lost, high) = read_jobs(old, select);
    let mut salvaged = 0u64;
    let mut unsendable = 0u64;
    let placeholders = (1..=COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO outbox_job ({}) VALUES ({placeholders})",
        COLUMNS.join(", ")
    );
    for job in &jobs {
        let pdf: Option<Vec<u8>> = if job.kind == "receipt" && job.state != "delivered" {
            match old
                .conn
                .query_row(
                    "SELECT pdf FROM receipt_pdf WHERE job_id = ?1",
                    [job.id],
                    |r| r.get(0),
                )
                .optional()
            {
                Ok(Some(pdf)) => Some(pdf),
                // A receipt to send without its PDF cannot be delivered as recorded.
                _ => {
                    log::error!(
                        "receipt job {} lost its PDF with the damaged database",
                        job.id
                    );
                    unsendable += 1;
                    continue;
                }
            }
        } else {
            None
        };
        // One row at a time: a row the fresh schema refuses (a damaged value breaking a
        // constraint) is counted lost, and the others are still carried.
        tx.execute_batch("SAVEPOINT job")?;
        let written = (|| -> rusqlite::Result<()> {
            tx.prepare_cached(&insert)?
                .execute(rusqlite::params_from_iter(job.values.iter()))?;
            if let Some(pdf) = &pdf {
                tx.prepare_cached("INSERT INTO receipt_pdf (job_id, pdf) VALUES (?1, ?2)")?
                    .execute(params![job.id, pdf])?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => {
                tx.execute_batch("RELEASE job")?;
                copy_movements(&old.conn, tx, job.id);
                salvaged += 1;
            }
            Err(e) => {
                tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                log::error!("outbox job {} could not be carried over: {e}", job.id);
                lost = lost.map(|n| n + 1);
            }
        }
    }
    // Ids the damaged file gave out are never given out again (a lost job's id included):
    // the POS may have seen them in fo_dead_jobs.
    if high > 0 {
        let raised = tx.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'outbox_job'",
            [high],
        )?;
        if raised == 0 {
            tx.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox_job', ?1)",
                [high],
            )?;
        }
    }
    copy_stock_push(&old.conn, tx);
    // The compact record of delivered ids, where the schema has one: a sale re-recorded
    // after its job was purged is still recognised.
    copy_table(&old.conn, tx, "delivered_id");
    Ok((salvaged, lost.map(|n| n + unsendable)))
}

fn job_of(row: &Row) -> rusqlite::Result<Job> {
    let values = (0..COLUMNS.len())
        .map(|i| row.get::<_, rusqlite::types::Value>(i))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Job {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: row.get(5)?,
        values,
    })
}

/// line, SKU, warehouse, quantity, counted after.
type Movement = (i64, String, String, f64, Option<i64>);

/// A sale's or return's local stock change: best effort (without it, `pending` stock is
/// off until Omnium's next level; the job itself is what matters).
fn copy_movements(old: &Connection, tx: &Connection, job_id: i64) {
    let rows: rusqlite::Result<Vec<Movement>> = (|| {
        let mut stmt = old.prepare_cached(
            "SELECT line, sku, warehouse_id, quantity, counted_after_ms FROM stock_movement WHERE job_id = ?1",
        )?;
        let rows = stmt.query_map([job_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect()
    })();
    let Ok(rows) = rows else {
        return;
    };
    for (line, sku, warehouse, quantity, counted) in rows {
        let _ = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO stock_movement (job_id, line, sku, warehouse_id, quantity, counted_after_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![job_id, line, sku, warehouse, quantity, counted]));
    }
    // Recorded and not expanded yet (absent from a database of before schema 13).
    let todo: rusqlite::Result<Option<String>> = old
        .prepare_cached("SELECT effects FROM stock_movement_todo WHERE job_id = ?1")
        .and_then(|mut s| s.query_row([job_id], |r| r.get(0)).optional());
    if let Ok(Some(effects)) = todo {
        // Expanded here (what cannot be read is left out, as above): a damaged row kept
        // for later would stop every expansion after it.
        let _ = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO stock_movement (job_id, line, sku, warehouse_id, quantity)
                 SELECT ?1, e.key, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
                        json_extract(e.value, '$[2]')
                 FROM json_each(?2) e WHERE json_type(e.value, '$[2]') IN ('integer', 'real')",
            )
            .and_then(|mut s| s.execute(params![job_id, effects]));
    }
}

/// Levels a flow-master store has not pushed yet (the stock-push job sends these).
fn copy_stock_push(old: &Connection, tx: &Connection) {
    let rows: rusqlite::Result<Vec<(String, String, f64, i64)>> = (|| {
        let mut stmt = old.prepare(
            "SELECT sku, warehouse_id, quantity, counted_at_ms FROM stock_push WHERE sent = 0",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect()
    })();
    for (sku, warehouse, quantity, counted) in rows.unwrap_or_default() {
        let _ = tx.execute(
            "INSERT OR IGNORE INTO stock_push (sku, warehouse_id, quantity, counted_at_ms, sent)
             VALUES (?1, ?2, ?3, ?4, 0)",
            params![sku, warehouse, quantity, counted],
        );
    }
}

/// Copies every readable row of `table` (the columns both schemas have), if both have it.
fn copy_table(old: &Connection, tx: &Connection, table: &str) {
    let columns = |c: &Connection| -> Vec<String> {
        c.prepare("SELECT name FROM pragma_table_info(?1)")
            .and_then(|mut s| {
                s.query_map([table], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .unwrap_or_default()
    };
    let theirs = columns(old);
    let shared: Vec<String> = columns(tx)
        .into_iter()
        .filter(|c| theirs.contains(c))
        .collect();
    if shared.is_empty() {
        return;
    }
    let list = shared
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let placeholders = (1..=shared.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let Ok(mut select) = old.prepare(&format!("SELECT {list} FROM \"{table}\"")) else {
        return;
    };
    let Ok(mut rows) = select.query([]) else {
        return;
    };
    let insert = format!("INSERT OR IGNORE INTO \"{table}\" ({list}) VALUES ({placeholders})");
    // Stops at the first damaged page: what was read before it is kept.
    while let Ok(Some(row)) = rows.next() {
        let values: rusqlite::Result<Vec<rusqlite::types::Value>> =
            (0..shared.len()).map(|i| row.get(i)).collect();
        if let Ok(values) = values {
            let _ = tx
                .prepare_cached(&insert)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(values.iter())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_the_fresh_schema_refuses_is_counted_lost_and_the_others_are_carried() {
        let dir = tempfile::tempdir().unwrap();
        let damaged = dir.path().join("pos.db.damaged-x");
        // An outbox as a damaged file may hold it: job 2's state is garbage (the fresh
        // schema's CHECK refuses it), job 4's content is NULL; ids were given out up to 10.
        Connection::open(&damaged)
            .unwrap()
            .execute_batch(
                "CREATE TABLE outbox_job (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT,
                   event_id TEXT, entity_id TEXT, content TEXT, state TEXT, attempts INTEGER,
                   tries INTEGER, uncertain INTEGER, next_attempt_at INTEGER,
                   last_attempt_at INTEGER, last_error TEXT, created_at INTEGER,
                   delivered_at INTEGER, dead_at INTEGER);
                 INSERT INTO outbox_job VALUES
                   (1, 'sale', 'S-1', 'S-1', '{}', 'pending', 0, 0, 0, 0, NULL, NULL, 0, NULL, NULL),
                   (2, 'sale', 'S-2', 'S-2', '{}', 'gärbage', 0, 0, 0, 0, NULL, NULL, 0, NULL, NULL),
                   (3, 'sale', 'S-3', 'S-3', '{}', 'delivered', 1, 1, 0, 0, NULL, NULL, 0, 5, NULL),
                   (4, 'sale', 'S-4', 'S-4', NULL, 'pending', 0, 0, 0, 0, NULL, NULL, 0, NULL, NULL),
                   (5, 'sale', 'S-5', 'S-5', '{}', 'pending', 0, 0, 0, 0, NULL, NULL, 0, NULL, NULL);
                 UPDATE sqlite_sequence SET seq = 10 WHERE name = 'outbox_job';",
            )
            .unwrap();
        let fresh = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&fresh).unwrap();
        let report = carry_over(&damaged, &fresh).unwrap();
        assert_eq!((report.salvaged, report.lost), (3, Some(2)), "{report:?}");
        let ids: Vec<i64> = fresh
            .prepare("SELECT id FROM outbox_job ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, [1, 3, 5]);
        // Ids the damaged file gave out are not given out again.
        fresh
            .execute(
                "INSERT INTO outbox_job (kind, event_id, entity_id, content, next_attempt_at, created_at)
                 VALUES ('sale', 'S-NEW', 'S-NEW', '{}', 0, 0)",
                [],
            )
            .unwrap();
        assert_eq!(fresh.last_insert_rowid(), 11);
        let stored: String = fresh
            .query_row(
                "SELECT value FROM sync_state WHERE key = 'storage.damaged'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(stored.contains("\"salvaged\":3"), "{stored}");
    }

    #[test]
    fn a_table_both_schemas_have_is_copied_by_its_shared_columns() {
        let old = Connection::open_in_memory().unwrap();
        old.execute_batch(
            "CREATE TABLE delivered_id (kind TEXT, event_id TEXT, gone TEXT);
             INSERT INTO delivered_id VALUES ('sale', 'S-1', 'x'), ('sale', 'S-2', 'y');",
        )
        .unwrap();
        let fresh = Connection::open_in_memory().unwrap();
        copy_table(&old, &fresh, "delivered_id");
        fresh
            .execute_batch("CREATE TABLE delivered_id (kind TEXT, event_id TEXT PRIMARY KEY, added INTEGER DEFAULT 7)")
            .unwrap();
        copy_table(&old, &fresh, "delivered_id");
        let rows: Vec<(String, i64)> = fresh
            .prepare("SELECT event_id, added FROM delivered_id ORDER BY event_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [("S-1".to_string(), 7), ("S-2".to_string(), 7)]);
    }
}
