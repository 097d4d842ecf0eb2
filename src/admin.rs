//! What an operator tool (the `flow-omnium` CLI) reads and changes in a database that a
//! running POS holds. No extra dependencies: the CLI's argument parsing, tables and progress
//! bars live in `src/bin/flow-omnium.rs` behind the `cli` feature.
//!
//! Reading alongside: the POS holds `<db>-lock` (one client per database); a tool opens its
//! own read-only SQLite connection beside it, without the lock, without migrating or
//! recovering anything. WAL lets it read while the worker writes.
//!
//! Writing alongside (retry a dead job, forget a customer): each change is one SQLite write
//! transaction (`BEGIN IMMEDIATE`) on a connection of the tool's own, with the library's
//! pragmas (`synchronous=FULL`, `secure_delete`, `foreign_keys`, a busy timeout). SQLite lets
//! one writer at a time into the database, across processes, so the tool's transaction runs
//! entirely before or entirely after each of the worker's, never inside one. The writes are
//! chosen so that either order is correct:
//! - a retry only touches jobs in state `dead`. The worker never holds a dead job: it claims
//!   `pending` ones (committing them `in_flight` before any request) and finishes only those
//!   it claimed. A revived job is `pending` and due now; the worker claims it at its next wake
//!   (the next due job, fetch or pull, at most `sync.pull_interval_ms` away), exactly as if
//!   the POS had called `fo_job_retry`. No in-memory state of the worker is bypassed: it
//!   reads what is due from the database every time.
//! - forgetting a customer is [`Store::forget_customer`]: one transaction that erases the
//!   rows and records the id in `forgotten_customer`; the worker's own writes of customer data
//!   check that table inside their transactions, so a customer fetched from Omnium before
//!   the tool's commit and stored after it is not stored again.
//!
//! A database whose schema is not this build's is only read, never written.

use crate::error::{Error, Result};
use crate::store::{files, Store};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `events` prints: the database's story (these are not the POS's `fo_next_event`
/// types, which live in the POS's process).
const RECORDED: &str = "job.recorded";
const ORDER_STORED: &str = "order.stored";

/// Outbox states as stored.
pub const STATES: &[&str] = &["pending", "in_flight", "delivered", "dead"];

/// JSON keys whose values are never shown (payloads are the POS's events; a careless
/// integration may still put a token or a card number in a free-form field).
const MASKED_KEYS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "apikey",
    "pan",
    "card_number",
    "cvv",
    "cvc",
];

/// A database opened by a tool beside the POS.
pub struct Admin {
    store: Store,
    path: PathBuf,
    writable: bool,
}

/// One outbox job as a tool shows it.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub event_id: String,
    pub entity_id: String,
    pub state: String,
    pub attempts: i64,
    pub tries: i64,
    pub uncertain: bool,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub dead_at: Option<i64>,
    pub last_error: Option<String>,
    /// Pending behind an earlier job of the same order that is dead.
    pub blocked: bool,
}

impl JobRow {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "kind": self.kind,
            "event_id": self.event_id,
            "entity_id": self.entity_id,
            "state": self.state,
            "blocked": self.blocked,
            "attempts": self.attempts,
            "tries": self.tries,
            "uncertain": self.uncertain,
            "created_at": time(Some(self.created_at)),
            "last_attempt_at": time(self.last_attempt_at),
            "next_attempt_at": if self.state == "pending" { time(Some(self.next_attempt_at)) } else { Value::Null },
            "delivered_at": time(self.delivered_at),
            "dead_at": time(self.dead_at),
            "last_error": self.last_error.as_deref().map(crate::redact::redact),
        })
    }
}

/// RFC 3339 (UTC, milliseconds) or null.
pub fn time(ms: Option<i64>) -> Value {
    ms.map(crate::sync::rfc3339)
        .map(Value::from)
        .unwrap_or(Value::Null)
}

const JOB_ROW_SQL: &str = "SELECT id, kind, event_id, entity_id, state, attempts, tries, uncertain,
       created_at, last_attempt_at, next_attempt_at, delivered_at, dead_at, last_error,
       state IN ('pending', 'in_flight') AND EXISTS (SELECT 1 FROM outbox_job d
         WHERE d.entity_id = j.entity_id AND d.id < j.id AND d.state = 'dead'
           AND NOT (d.kind = j.kind AND j.kind IN ('customer', 'stock_push'))) AS blocked
     FROM outbox_job j";

fn job_row(r: &rusqlite::Row) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        event_id: r.get(2)?,
        entity_id: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        tries: r.get(6)?,
        uncertain: r.get(7)?,
        created_at: r.get(8)?,
        last_attempt_at: r.get(9)?,
        next_attempt_at: r.get(10)?,
        delivered_at: r.get(11)?,
        dead_at: r.get(12)?,
        last_error: r.get(13)?,
        blocked: r.get(14)?,
    })
}

impl Admin {
    /// Opens an existing flow-omnium database beside whoever holds it. `writable` opens a
    /// read-write connection (for retry and forget); otherwise every write fails.
    pub fn open(path: &Path, writable: bool) -> Result<Admin> {
        crate::store::prepare_sqlite();
        let path = files::checked_path(path)?;
        match files::inspect(&path)? {
            files::Existing::Ours | files::Existing::Untagged => {}
            _ => {
                return Err(Error::Storage(format!(
                    "{} is not an existing flow-omnium database",
                    path.display()
                )))
            }
        }
        // SQLite may create -wal and -shm beside the database: made by another account
        // (root, say), the POS could not open them afterwards.
        {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(&path)
                .map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?
                .uid();
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if owner != me {
                return Err(Error::Storage(format!(
                    "{} belongs to uid {owner}; run this as that account (uid {me} could leave \
                     files beside it that the POS cannot open)",
                    path.display()
                )));
            }
        }
        let base = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let flags = if writable {
            base | OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            base | OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let conn = Connection::open_with_flags(&path, flags)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if app != files::APPLICATION_ID {
            return Err(Error::Storage(format!(
                "{} is not a flow-omnium database (application_id {app:#x})",
                path.display()
            )));
        }
        if writable {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != crate::store::SCHEMA_VERSION {
                return Err(Error::Storage(format!(
                    "the database has schema version {version}, this tool writes version {}; \
                     open it with the POS's own flow-omnium version first",
                    crate::store::SCHEMA_VERSION
                )));
            }
            // The library's pragmas for a writer, read back (a refused one is an error).
            for (name, set, want) in [
                ("synchronous", "FULL", "2"),
                ("foreign_keys", "ON", "1"),
                ("secure_delete", "ON", "1"),
            ] {
                conn.execute_batch(&format!("PRAGMA {name} = {set}"))?;
                let got: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
                if got.to_string() != want {
                    return Err(Error::Storage(format!(
                        "PRAGMA {name} is {got}, not {want}"
                    )));
                }
            }
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Storage(format!(
                    "the database is in journal mode {mode}, not WAL; it was never opened by flow-omnium"
                )));
            }
        }
        Ok(Admin {
            store: Store::alongside(conn, path.clone()),
            path,
            writable,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether a client (a running POS) holds the database now. Read from `/proc/locks`
    /// without touching the lock: trying to take it, even for an instant, could make a POS
    /// starting at that moment fail with "in use". `None` when it cannot be told.
    pub fn held_by_client(&self) -> Option<bool> {
        use std::os::unix::fs::MetadataExt;
        let lock = files::side_file(&self.path, "-lock");
        let meta = match std::fs::metadata(&lock) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
            Err(_) => return None,
        };
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        let dev = meta.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        Some(locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (the client's lock is a
            // POSIX lock, so a forked child never inherits it; FLOCK from older versions)
            f.len() > 5
                && matches!(f[1], "POSIX" | "FLOCK")
                && f[3] == "WRITE"
                && f[5].eq_ignore_ascii_case(&want)
        }))
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// What the database says about sync: outbox counts, oldest pending, next due, last
    /// push and pull, per kind and state. (Whether Omnium is online now is known only inside
    /// the POS's process: `fo_status`.)
    pub fn status(&self) -> Result<Value> {
        let counts = self.store.counts()?;
        let next_due = if counts.pending > 0 {
            self.store.next_due_at()?
        } else {
            None
        };
        let state_ms = |key: &str| -> Result<Option<i64>> {
            Ok(self.store.get_state(key)?.and_then(|v| v.parse().ok()))
        };
        let conn = self.store.conn();
        let mut by_state = Map::new();
        for s in STATES {
            by_state.insert((*s).to_string(), json!(0));
        }
        let mut stmt =
            conn.prepare("SELECT state, kind, COUNT(*) FROM outbox_job GROUP BY state, kind")?;
        let mut by_kind: Map<String, Value> = Map::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (state, kind, n) = row?;
            let total = by_state.get(&state).and_then(Value::as_i64).unwrap_or(0) + n;
            by_state.insert(state.clone(), json!(total));
            let entry = by_kind.entry(kind).or_insert_with(|| json!({}));
            entry[state.as_str()] = json!(n);
        }
        drop(stmt);
        drop(conn);
        Ok(json!({
            "database": self.path.display().to_string(),
            "schema_version": self.schema_version()?,
            "held_by_client": self.held_by_client(),
            "outbox": {
                "pending": counts.pending,
                "blocked": counts.blocked,
                "dead": counts.dead,
                "oldest_pending_at": time(counts.oldest_pending_at),
                "pending_age_s": counts.oldest_pending_at.map(|t| (crate::sync::now_ms() - t).max(0) / 1000),
                "next_due_at": time(next_due),
                "by_state": by_state,
                "by_kind": by_kind,
            },
            "last_push_at": time(state_ms("last_push_at")?),
            "last_pull_at": time(self.store.last_pull_at()?),
        }))
    }

    /// Jobs, newest first, filtered by state and kind.
    pub fn jobs(
        &self,
        state: Option<&str>,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRow>> {
        if let Some(s) = state {
            if !STATES.contains(&s) {
                return Err(Error::invalid(
                    "state",
                    format!("must be one of {}, got {s:?}", STATES.join(", ")),
                ));
            }
        }
        let conn = self.store.conn();
        let mut stmt = conn.prepare(&format!(
            "{JOB_ROW_SQL} WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![state, kind, limit as i64], job_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn job(&self, id: i64) -> Result<Option<JobRow>> {
        Ok(self
            .store
            .conn()
            .query_row(&format!("{JOB_ROW_SQL} WHERE id = ?1"), [id], job_row)
            .optional()?)
    }

    /// One job in full: its row, its payload with secrets masked, what it is waiting for,
    /// and its timeline.
    pub fn job_detail(&self, id: i64) -> Result<Value> {
        let job = self
            .job(id)?
            .ok_or_else(|| Error::NotFound(format!("no outbox job with id {id}")))?;
        let conn = self.store.conn();
        let (content, extra, step): (String, Option<String>, i64) = conn.query_row(
            "SELECT content, extra, step FROM outbox_job WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let has_pdf: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM receipt_pdf WHERE job_id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        let waiting_for: Option<(i64, String, String)> = conn
            .query_row(
                "SELECT id, kind, state FROM outbox_job WHERE entity_id = ?1 AND id < ?2
                 AND state <> 'delivered' ORDER BY id LIMIT 1",
                params![job.entity_id, id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        drop(conn);
        let mut payload: Value =
            serde_json::from_str(&content).unwrap_or_else(|_| Value::String(content.clone()));
        mask(&mut payload);
        let mut timeline = vec![json!({"at": time(Some(job.created_at)), "what": "recorded"})];
        if let Some(t) = job.last_attempt_at {
            let what = match job.state.as_str() {
                "delivered" => "last try: delivered".to_string(),
                _ => format!(
                    "last try ({} tr{} so far, {} counted)",
                    job.tries,
                    if job.tries == 1 { "y" } else { "ies" },
                    job.attempts
                ),
            };
            timeline.push(json!({"at": time(Some(t)), "what": what, "error": job.last_error.as_deref().map(crate::redact::redact)}));
        }
        if let Some(t) = job.dead_at {
            timeline.push(
                json!({"at": time(Some(t)), "what": "dead (given up; `outbox retry` revives it)"}),
            );
        }
        if let Some(t) = job.delivered_at {
            timeline.push(json!({"at": time(Some(t)), "what": "delivered"}));
        }
        if job.state == "pending" {
            timeline.push(json!({"at": time(Some(job.next_attempt_at)), "what": "next try due"}));
        }
        timeline.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        let mut out = job.to_json();
        out["payload"] = payload;
        out["step"] = json!(step);
        out["receipt_pdf_held"] = json!(has_pdf);
        out["has_extra"] = json!(extra.is_some());
        out["waiting_for"] = match waiting_for {
            Some((wid, kind, state)) => {
                json!({"id": wid.to_string(), "kind": kind, "state": state})
            }
            None => Value::Null,
        };
        out["timeline"] = Value::Array(timeline);
        Ok(out)
    }

    fn require_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::Internal(
                "this database was opened read-only".to_string(),
            ))
        }
    }

    /// Revives one dead job or (with `None`) every dead job: a fresh set of attempts, due
    /// now. Returns how many. One write transaction; see the module doc for why it cannot
    /// race the worker.
    pub fn retry(&self, id: Option<i64>) -> Result<usize> {
        self.require_writable()?;
        if let Some(id) = id {
            match self.job(id)? {
                None => return Err(Error::NotFound(format!("no outbox job with id {id}"))),
                Some(j) if j.state != "dead" => {
                    return Err(Error::invalid(
                        "job_id",
                        format!(
                            "job {id} is {}, not dead; only dead jobs are retried",
                            j.state
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        let n = self.store.retry_dead(id, crate::sync::now_ms())?;
        if let (Some(id), 0) = (id, n) {
            // It left `dead` between the look and the update: another tool retried it.
            return Err(Error::NotFound(format!("job {id} is no longer dead")));
        }
        Ok(n)
    }

    /// Erases what the database holds about a customer (as `fo_forget_customer`). `false`
    /// when nothing was held.
    pub fn forget_customer(&self, customer_id: &str) -> Result<bool> {
        self.require_writable()?;
        if customer_id.trim().is_empty() || customer_id.len() > crate::model::fields::MAX_ID_BYTES {
            return Err(Error::invalid(
                "customer_id",
                format!(
                    "must be a non-empty id of at most {} bytes",
                    crate::model::fields::MAX_ID_BYTES
                ),
            ));
        }
        use crate::clock::Clock;
        self.store
            .forget_customer(customer_id, crate::clock::SystemClock.wall_ms())
    }

    /// The catalog the till reads offline: counts and when each data set was pulled.
    pub fn catalog_stats(&self) -> Result<Value> {
        // On a reader: the catalog file is attached there (its tables and its cursors).
        self.store.read(|conn| {
        let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
        let mut datasets = Vec::new();
        let catalog_cursors = if crate::store::catalog_file::attached(conn)? {
            " UNION ALL SELECT dataset, high_water_ms, last_pull_at, settled FROM catalog_cursor"
        } else {
            ""
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT dataset, high_water_ms, last_pull_at, settled FROM pull_cursor{catalog_cursors} ORDER BY dataset",
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(json!({
                "dataset": r.get::<_, String>(0)?,
                "high_water": time(r.get(1)?),
                "last_pull_at": time(r.get(2)?),
                "settled": r.get::<_, bool>(3)?,
            }))
        })?;
        for row in rows {
            datasets.push(row?);
        }
        Ok(json!({
            "skus": count("SELECT COUNT(*) FROM product")?,
            "active_skus": count("SELECT COUNT(*) FROM product WHERE active = 1")?,
            "products": count("SELECT COUNT(DISTINCT product_id) FROM product")?,
            "prices": count("SELECT COUNT(*) FROM price")?,
            "categories": count("SELECT COUNT(*) FROM category")?,
            "stores": count("SELECT COUNT(*) FROM store")?,
            "stock_levels": count("SELECT COUNT(*) FROM stock_level")?,
            "stock_movements_pending": count("SELECT COUNT(*) FROM stock_movement_all WHERE counted_after_ms IS NULL")?,
            "inbound_orders": count("SELECT COUNT(*) FROM inbound_order")?,
            "purchase_orders": count("SELECT COUNT(*) FROM purchase_order")?,
            "customers": count("SELECT COUNT(*) FROM customer")?,
            "datasets": datasets,
        }))
        })
    }

    /// Stock of a SKU in the given warehouses (every warehouse the database knows for it
    /// when empty), as `fo_stock_get` shows it.
    pub fn stock(&self, sku: &str, warehouses: &[String]) -> Result<Value> {
        let warehouses: Vec<String> = if warehouses.is_empty() {
            let conn = self.store.conn();
            let mut stmt = conn.prepare(
                "SELECT warehouse_id FROM stock_level WHERE sku = ?1
                 UNION SELECT warehouse_id FROM stock_movement_all WHERE sku = ?1 ORDER BY 1",
            )?;
            let rows = stmt.query_map([sku], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()?
        } else {
            warehouses.to_vec()
        };
        let view = self
            .store
            .stock(sku, &warehouses)?
            .ok_or_else(|| Error::NotFound(format!("no stock known for SKU {sku:?}")))?;
        Ok(crate::views::stock(&view))
    }

    /// `PRAGMA quick_check` (or the full `integrity_check`): `ok`, or what is wrong.
    pub fn integrity(&self, full: bool) -> Result<Vec<String>> {
        let pragma = if full {
            "PRAGMA integrity_check(20)"
        } else {
            "PRAGMA quick_check(20)"
        };
        // On a reader: the catalog file is attached there, and the check covers both files.
        let mut rows = self.store.read(|conn| {
            let mut stmt = conn.prepare(pragma)?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        // A catalog file the reader could not attach (damaged) is reported, not skipped.
        if let Some(why) = crate::store::catalog_file::unreadable(&self.path) {
            rows.retain(|r| r != "ok");
            rows.push(why);
        }
        // Damage the client met while running (a search or a pull failing as corrupt),
        // which the checks above may not see: moved aside at the client's next open.
        if let Some(why) = self.store.get_state(crate::store::catalog_file::SEEN_KEY)? {
            rows.retain(|r| r != "ok");
            rows.push(format!(
                "the catalog file was found corrupt while in use ({why}); the client's next open moves it aside and pulls the catalog again"
            ));
        }
        Ok(rows)
    }

    /// Changes since `since`: jobs recorded, delivered, retried or dead, inbound orders
    /// stored, pulls. Returns the changes (oldest first) and the new mark. The POS's own
    /// event queue lives in its process; this is the database's view of the same story.
    pub fn changes(&self, since: &Mark) -> Result<(Vec<Value>, Mark)> {
        let conn = self.store.conn();
        let mut out = Vec::new();
        let mut mark = since.clone();
        // New jobs.
        {
            let mut stmt = conn.prepare(&format!(
                "{JOB_ROW_SQL} WHERE id > ?1 ORDER BY id LIMIT 1000"
            ))?;
            let rows = stmt.query_map([since.max_job_id], job_row)?;
            for row in rows {
                let j = row?;
                mark.max_job_id = mark.max_job_id.max(j.id);
                out.push(
                    json!({"type": RECORDED, "at": time(Some(j.created_at)), "job": j.to_json()}),
                );
            }
        }
        // Jobs whose state changed (tries stamp last_attempt_at; retries reset dead_at).
        {
            let mut stmt = conn.prepare(&format!(
                "{JOB_ROW_SQL} WHERE id <= ?1 AND (COALESCE(last_attempt_at, 0) >= ?2
                   OR (state = 'pending' AND attempts = 0 AND tries = 0 AND last_attempt_at IS NOT NULL))
                 ORDER BY last_attempt_at LIMIT 1000"
            ))?;
            let rows = stmt.query_map(params![since.max_job_id, since.last_attempt_ms], job_row)?;
            for row in rows {
                let j = row?;
                let at = j.last_attempt_at.unwrap_or(0);
                let key = (j.id, j.state.clone(), j.tries);
                if since.seen.contains(&key) {
                    continue;
                }
                mark.last_attempt_ms = mark.last_attempt_ms.max(at);
                mark.seen.push(key);
                out.push(
                    json!({"type": state_event(&j), "at": time(Some(at)), "job": j.to_json()}),
                );
            }
            // Keep the memory bounded: only keys at the newest stamp can repeat.
            if mark.seen.len() > 4096 {
                mark.seen.drain(..2048);
            }
        }
        for key in ["last_push_at", "last_pull_at"] {
            let v: Option<String> = conn
                .query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?;
            let mut ms = v.and_then(|v| v.parse::<i64>().ok());
            if key == "last_pull_at" {
                // The catalog's pulls stamp the catalog file (read on a reader: `conn` is held).
                ms = ms.max(self.store.catalog_last_pull_at()?);
            }
            let old = if key == "last_push_at" {
                &mut mark.last_push_ms
            } else {
                &mut mark.last_pull_ms
            };
            if ms.is_some() && ms != *old {
                if old.is_some() {
                    let t = if key == "last_push_at" {
                        "sync.pushed"
                    } else {
                        "sync.pulled"
                    };
                    out.push(json!({"type": t, "at": time(ms)}));
                }
                *old = ms;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT id, order_type, status, rowid FROM inbound_order WHERE rowid > ?1 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([since.max_order_rowid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            for row in rows {
                let (id, order_type, status, rowid) = row?;
                mark.max_order_rowid = mark.max_order_rowid.max(rowid);
                if since.started {
                    out.push(json!({"type": ORDER_STORED, "order_id": id, "order_type": order_type, "status": status}));
                }
            }
        }
        mark.started = true;
        Ok((out, mark))
    }

    /// The latest `limit` job events the database shows (recorded, then each job's latest
    /// outcome), oldest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Value>> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare(&format!(
            "{JOB_ROW_SQL} ORDER BY MAX(created_at, COALESCE(last_attempt_at, 0)) DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], job_row)?;
        let mut out = Vec::new();
        for row in rows {
            let j = row?;
            out.push(json!({"type": RECORDED, "at": time(Some(j.created_at)), "job": j.to_json()}));
            if let Some(at) = j.last_attempt_at {
                out.push(
                    json!({"type": state_event(&j), "at": time(Some(at)), "job": j.to_json()}),
                );
            }
        }
        out.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }

    /// A mark at the current end of the database: `changes` from it shows only what happens
    /// next.
    pub fn mark_now(&self) -> Result<Mark> {
        let (_, mut mark) = self.changes(&Mark::default())?;
        let conn = self.store.conn();
        mark.last_attempt_ms = conn.query_row(
            "SELECT COALESCE(MAX(last_attempt_at), 0) FROM outbox_job",
            [],
            |r| r.get(0),
        )?;
        mark.max_job_id =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM outbox_job", [], |r| {
                r.get(0)
            })?;
        mark.seen.clear();
        // Jobs already revived and not tried since would be reported again: note them.
        let mut stmt = conn.prepare(
            "SELECT id, state, tries FROM outbox_job WHERE state = 'pending' AND tries = 0 AND last_attempt_at IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            mark.seen.push(row?);
        }
        Ok(mark)
    }
}

/// The event a job's state stands for after a try (or a retry).
fn state_event(j: &JobRow) -> &'static str {
    match j.state.as_str() {
        "delivered" => "job.delivered",
        "dead" => "job.dead",
        "in_flight" => "job.sending",
        "pending" if j.tries == 0 => "job.retried",
        _ => "job.retry_scheduled",
    }
}

/// Where `events --follow` has got to.
#[derive(Clone, Debug, Default)]
pub struct Mark {
    max_job_id: i64,
    last_attempt_ms: i64,
    last_push_ms: Option<i64>,
    last_pull_ms: Option<i64>,
    max_order_rowid: i64,
    started: bool,
    /// (job, state, tries) already reported at `last_attempt_ms`.
    seen: Vec<(i64, String, i64)>,
}

/// Replaces values under secret-looking keys with `"***"`, at any depth, and passes every
/// string through the redactor (the configured client secret, tokens seen).
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let key = k.to_ascii_lowercase();
                let secret = MASKED_KEYS.iter().any(|m| {
                    key == *m || key.ends_with(&format!("_{m}")) || (m.len() > 4 && key.contains(m))
                });
                if secret && !val.is_null() {
                    *val = Value::String("***".into());
                } else {
                    mask(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::String(s) => {
            let r = crate::redact::redact(&mask_url_credentials(s));
            if r != *s {
                *s = r;
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host…` becomes `scheme://***@host…` (a proxy URL, say).
fn mask_url_credentials(s: &str) -> String {
    if let Some(at) = s.find("://") {
        let rest = &s[at + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(user_end) = rest[..authority_end].rfind('@') {
            return format!("{}://***{}", &s[..at], &rest[user_end..]);
        }
    }
    s.to_string()
}

/// A config's JSON with its secrets removed (for a diagnostics archive).
pub fn config_without_secrets(config_json: &str) -> Value {
    match serde_json::from_str::<Value>(config_json) {
        Ok(mut v) => {
            if let Some(o) = v.get_mut("omnium").and_then(Value::as_object_mut) {
                if o.contains_key("client_secret") {
                    o.insert("client_secret".into(), json!("***"));
                }
            }
            mask(&mut v);
            v
        }
        Err(e) => json!({"unparsable": e.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_keys_are_masked_at_any_depth() {
        let mut v = json!({"id": "S-1", "payments": [{"method": "Card", "card_number": "4111", "transaction_id": "tx"}],
                           "meta": {"access_token": "abc", "Password": "p", "tokenizer": null}});
        mask(&mut v);
        assert_eq!(v["payments"][0]["card_number"], "***");
        assert_eq!(v["payments"][0]["transaction_id"], "tx");
        assert_eq!(v["meta"]["access_token"], "***");
        assert_eq!(v["meta"]["Password"], "***");
        assert_eq!(v["id"], "S-1");
    }

    #[test]
    fn a_config_loses_its_client_secret() {
        let v = config_without_secrets(
            r#"{"omnium": {"base_url": "http://x", "client_id": "c", "client_secret": "hunter2"}}"#,
        );
        assert_eq!(v["omnium"]["client_secret"], "***");
        assert_eq!(v["omnium"]["client_id"], "c");
        let v = config_without_secrets(r#"{"omnium": {"proxy": "http://bob:pw@proxy:3128/x"}}"#);
        assert_eq!(v["omnium"]["proxy"], "http://***@proxy:3128/x");
    }
}
