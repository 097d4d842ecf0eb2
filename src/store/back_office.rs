//! Customers, inbound (web and click & collect) orders, purchase orders, receipt PDFs and
//! the absolute stock levels a flow-master store pushes.

use super::{Lookup, Store};
use crate::error::Result;
use rusqlite::{params, OptionalExtension, TransactionBehavior, MAIN_DB};
use std::io::Read;
use std::time::Duration;

pub use crate::model::store_events::PushLevel;

/// What happened to an inbound order when it was stored.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderChange {
    New,
    Changed { previous_status: String },
    Unchanged,
}

impl Lookup<'_> {
    /// A customer recorded at the till is readable at once.
    pub fn put_customer(&self, id: &str, json: &str) -> Result<()> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO customer (id, json, source, stored_at) VALUES (?1, ?2, 'pos', {SQL_NOW_MS})
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json, source = 'pos',
                   stored_at = excluded.stored_at"
            ))?
            .execute([id, json])?;
        self.tx
            .prepare_cached("DELETE FROM customer_fetch WHERE customer_id = ?1")?
            .execute([id])?;
        // Recorded again by the POS after a forget: the POS holds them again, by its choice.
        self.tx
            .prepare_cached("DELETE FROM forgotten_customer WHERE customer_id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Queues absolute levels; an older count never replaces a newer one. Makes sure one
    /// stock-push job is waiting to send them.
    pub fn push_levels(&self, levels: &[PushLevel], now_ms: i64) -> Result<()> {
        // The count marks movements by SKU (any job's): recorded ones are expanded first,
        // so none waiting to be expanded is ever counted.
        if !levels.is_empty() {
            super::Store::expand_all_movements(self.tx)?;
        }
        for l in levels {
            self.tx
                .prepare_cached(
                    "INSERT INTO stock_push (sku, warehouse_id, quantity, counted_at_ms, sent)
                     VALUES (?1, ?2, ?3, ?4, 0)
                     ON CONFLICT (sku, warehouse_id) DO UPDATE SET quantity = excluded.quantity,
                       counted_at_ms = excluded.counted_at_ms, sent = 0
                     WHERE excluded.counted_at_ms >= stock_push.counted_at_ms",
                )?
                .execute(params![l.sku, l.warehouse_id, l.quantity, l.counted_at_ms])?;
            // The count is the truth as of its time: Omnium's own level and local
            // movements before it are superseded.
            self.tx
                .prepare_cached(
                    "INSERT INTO stock_level (sku, warehouse_id, quantity, reserved, modified_ms)
                     VALUES (?1, ?2, ?3, 0, ?4)
                     ON CONFLICT (sku, warehouse_id) DO UPDATE SET quantity = excluded.quantity,
                       modified_ms = excluded.modified_ms
                     WHERE excluded.modified_ms >= stock_level.modified_ms",
                )?
                .execute(params![l.sku, l.warehouse_id, l.quantity, l.counted_at_ms])?;
            self.tx
                .prepare_cached(
                    "UPDATE stock_movement SET counted_after_ms = ?3
                     WHERE sku = ?1 AND warehouse_id = ?2 AND (counted_after_ms IS NULL OR counted_after_ms > ?3)
                       AND job_id IN (SELECT id FROM outbox_job WHERE created_at <= ?3)",
                )?
                .execute(params![l.sku, l.warehouse_id, l.counted_at_ms])?;
        }
        let waiting: bool = self
            .tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox_job WHERE kind = 'stock_push' AND state = 'pending')")?
            .query_row([], |r| r.get(0))?;
        if !waiting {
            self.tx
                .prepare_cached(
                    "INSERT INTO outbox_job (kind, event_id, entity_id, content, next_attempt_at, created_at)
                     VALUES ('stock_push', 'stock-push-' || ?1 || '-' || (SELECT COUNT(*) FROM outbox_job), 'stock_push', '{}', ?1, ?1)",
                )?
                .execute([now_ms])?;
        }
        Ok(())
    }

    /// The level known locally for a SKU: Omnium's (or the last count) plus local
    /// movements not counted in it.
    pub fn local_level(&self, sku: &str, warehouse_id: &str) -> Result<f64> {
        let (quantity, modified): (f64, Option<i64>) = self
            .tx
            .prepare_cached("SELECT quantity, modified_ms FROM stock_level WHERE sku = ?1 AND warehouse_id = ?2")?
            .query_row([sku, warehouse_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0.0, None));
        let pending: f64 = self
            .tx
            .prepare_cached(
                "SELECT COALESCE(SUM(quantity), 0) FROM stock_movement_all WHERE sku = ?1 AND warehouse_id = ?2
                 AND NOT (counted_after_ms IS NOT NULL AND ?3 IS NOT NULL AND counted_after_ms <= ?3)",
            )?
            .query_row(params![sku, warehouse_id, modified], |r| r.get(0))?;
        Ok(quantity + pending)
    }

    pub fn inbound_order(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT json FROM inbound_order WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    /// The till's own view of an order it is handling (shown at once, before Omnium has it).
    /// The till's own progress on an inbound order (a pickup being recorded). Its
    /// `modified_ms` becomes NULL: this version is the till's, not Omnium's, so whatever
    /// Omnium says next replaces it once no pickup is on its way (see `put_inbound_order`).
    pub fn set_inbound_order(&self, id: &str, status: &str, json: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE inbound_order SET status = ?2, json = ?3, modified_ms = NULL WHERE id = ?1",
            )?
            .execute([id, status, json])?;
        Ok(())
    }

    pub fn purchase_order(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT json FROM purchase_order WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }
}

impl Store {
    /// Streams a receipt's PDF to `upload` from a read connection (the writer stays free).
    pub fn with_receipt_pdf<T>(
        &self,
        job_id: i64,
        upload: impl FnOnce(&mut dyn Read, usize) -> T,
    ) -> Result<Option<T>> {
        self.read(|c| {
            let exists: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM receipt_pdf WHERE job_id = ?1)")?
                .query_row([job_id], |r| r.get(0))?;
            if !exists {
                return Ok(None);
            }
            let mut blob = c.blob_open(MAIN_DB, c"receipt_pdf", c"pdf", job_id, true)?;
            let len = blob.len();
            Ok(Some(upload(&mut blob, len)))
        })
    }

    pub fn customer(&self, id: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT json FROM customer WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?)
        })
    }

    /// Stores a customer read from Omnium, unless the till has its own newer version.
    pub fn put_omnium_customer(&self, id: &str, json: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(&format!(
            "INSERT INTO customer (id, json, source, stored_at)
             SELECT ?1, ?2, 'omnium', {SQL_NOW_MS}
             WHERE NOT EXISTS (SELECT 1 FROM forgotten_customer WHERE customer_id = ?1)
             ON CONFLICT (id) DO UPDATE SET json = excluded.json, stored_at = excluded.stored_at
               WHERE customer.source = 'omnium'"
        ))?
        .execute([id, json])?;
        tx.prepare_cached("DELETE FROM customer_fetch WHERE customer_id = ?1")?
            .execute([id])?;
        tx.commit()?;
        Ok(())
    }

    /// Asks for a customer to be fetched from Omnium, if it is not known here.
    pub fn queue_customer_fetch(&self, id: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO customer_fetch (customer_id, next_at)
             SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM customer WHERE id = ?1)
               AND NOT EXISTS (SELECT 1 FROM forgotten_customer WHERE customer_id = ?1)",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Orders announced by events: one row per order id, so repeats and bursts coalesce.
    /// A repeat of a due row (or one backing off after a failure) moves its `next_at` to
    /// 1 ms before the earlier of it and now: [`Store::fetch_done`] removes the row only if
    /// it still holds the `next_at` the fetch was due at, so an event that comes while its
    /// order is being fetched (the answer may predate the change it announces) is fetched
    /// again, never lost. A row already waiting for that second fetch (no failure, due
    /// later) stays as it is: the events of a burst share it.
    pub fn queue_order_fetch(&self, order_id: &str, now_ms: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "INSERT INTO order_fetch (order_id, next_at) VALUES (?1, ?2)
             ON CONFLICT (order_id) DO UPDATE SET next_at = CASE
               WHEN tries = 0 AND next_at > excluded.next_at THEN next_at
               ELSE MIN(next_at, excluded.next_at) - 1 END",
            params![order_id, now_ms],
        )? > 0)
    }

    /// Due fetches of one table (`order_fetch` or `customer_fetch`): id, tries and the
    /// `next_at` it was due at (for [`Store::fetch_done`]).
    pub fn due_fetches(
        &self,
        table: FetchQueue,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, u32, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {key}, tries, next_at FROM {table} WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2",
            key = table.key(),
            table = table.table()
        ))?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// A fetch that was due at `due_at` is done: its row goes, unless it was asked for
    /// again meanwhile (its `next_at` moved): then it is fetched once more, not before
    /// `refetch_at`, so a burst of events during one fetch costs one more fetch, not one
    /// per event.
    pub fn fetch_done(
        &self,
        table: FetchQueue,
        id: &str,
        due_at: i64,
        refetch_at: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (t, k) = (table.table(), table.key());
        tx.execute(
            &format!("DELETE FROM {t} WHERE {k} = ?1 AND next_at = ?2"),
            params![id, due_at],
        )?;
        tx.execute(
            &format!("UPDATE {t} SET next_at = MAX(next_at, ?2) WHERE {k} = ?1"),
            params![id, refetch_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn fetch_later(&self, table: FetchQueue, id: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            &format!(
                "UPDATE {} SET tries = tries + 1, next_at = ?2 WHERE {} = ?1",
                table.table(),
                table.key()
            ),
            params![id, at_ms],
        )?;
        Ok(())
    }

    pub fn next_fetch_at(&self) -> Result<Option<i64>> {
        Ok(self.conn().query_row(
            "SELECT MIN(t) FROM (SELECT MIN(next_at) AS t FROM order_fetch UNION ALL SELECT MIN(next_at) FROM customer_fetch)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Stores an inbound order as the till sees it. While the till has pickup progress on
    /// its way to Omnium, Omnium's status does not overwrite it, unless Omnium cancelled; a
    /// pickup held behind a dead job is not on its way, so Omnium's changes show again.
    /// A row the till changed itself (`modified_ms` NULL) takes Omnium's next version
    /// whatever its `modified`: a refused pickup shows Omnium's status again.
    pub fn put_inbound_order(
        &self,
        id: &str,
        order_type: &str,
        status: &str,
        json: &str,
        modified_ms: Option<i64>,
        omnium_cancelled: bool,
    ) -> Result<OrderChange> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let previous: Option<(String, Option<i64>)> = tx
            .prepare_cached("SELECT status, modified_ms FROM inbound_order WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let till_busy: bool = tx
            .prepare_cached(&format!("SELECT EXISTS ({PICKUP_ON_ITS_WAY})"))?
            .query_row([id], |r| r.get(0))?;
        let change = match &previous {
            None => OrderChange::New,
            Some((_, old)) if old.is_some() && modified_ms.is_some() && old >= &modified_ms => {
                OrderChange::Unchanged
            }
            Some((old_status, _)) => OrderChange::Changed {
                previous_status: old_status.clone(),
            },
        };
        if change != OrderChange::Unchanged
            && (!till_busy || omnium_cancelled || previous.is_none())
        {
            // A forgotten customer's contact fields are not stored again.
            tx.prepare_cached(&format!(
                "INSERT INTO inbound_order (id, order_type, status, json, modified_ms, stored_at)
                 VALUES (?1, ?2, ?3,
                   CASE WHEN EXISTS (SELECT 1 FROM forgotten_customer
                                     WHERE customer_id = json_extract(?4, '$.customer.id'))
                        THEN json_set(?4, {ERASE_CONTACT}) ELSE ?4 END,
                   COALESCE(?5, 0), {SQL_NOW_MS})
                 ON CONFLICT (id) DO UPDATE SET order_type = excluded.order_type, status = excluded.status,
                   json = excluded.json, modified_ms = excluded.modified_ms, stored_at = excluded.stored_at"
            ))?
            .execute(params![id, order_type, status, json, modified_ms])?;
        } else if change != OrderChange::Unchanged {
            // The till's pickup is on its way: its version stays, and stays marked as the
            // till's (NULL), so Omnium's next answer after it is applied.
            tx.commit()?;
            return Ok(OrderChange::Unchanged);
        }
        tx.commit()?;
        Ok(change)
    }

    /// Orders the till changed itself (a pickup) whose pickups are no longer on their way
    /// (delivered, dead, or held behind a dead job): Omnium's version must be read again,
    /// so the till shows what Omnium made of them.
    pub fn orders_awaiting_omnium(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT id FROM inbound_order o WHERE modified_ms IS NULL
                   AND NOT EXISTS ({})",
                PICKUP_ON_ITS_WAY.replace("?1", "o.id")
            ))?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Omnium's answer for an order the till changed was read: whatever became of it (stored,
    /// or refused as not an order of this store), the row no longer waits for Omnium, so a
    /// strange answer is not fetched again every round.
    pub fn settle_awaiting_order(&self, id: &str) -> Result<()> {
        self.conn().execute(
            &format!(
                "UPDATE inbound_order SET modified_ms = 0 WHERE id = ?1 AND modified_ms IS NULL
                   AND NOT EXISTS ({PICKUP_ON_ITS_WAY})"
            ),
            [id],
        )?;
        Ok(())
    }

    /// Queues a fetch of an order unless one is already queued (an earlier one's back-off
    /// after a failure is kept).
    pub fn queue_order_fetch_once(&self, order_id: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO order_fetch (order_id, next_at) VALUES (?1, ?2)
             ON CONFLICT (order_id) DO NOTHING",
            params![order_id, now_ms],
        )?;
        Ok(())
    }

    /// The full resync's sweep of inbound orders (CONTRACT §9 rule 14): removes the open
    /// orders Omnium's full read did not return (`returned` holds every id it did), except
    /// what that read could not have seen yet: an order modified at or after
    /// `visible_before_ms` (Omnium's clock less the index lag), stored by the till at or after
    /// `stored_before_ms` (an event's fetch during the read), or changed by the till itself
    /// (a pickup on its way). Finished orders stay for their retention. Returns the removed
    /// `(id, order_type, status)`.
    pub fn sweep_inbound_orders(
        &self,
        returned: &std::collections::HashSet<String>,
        visible_before_ms: i64,
        stored_before_ms: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: Vec<(String, String, String)> = tx
            .prepare_cached(&format!(
                "SELECT id, order_type, status FROM inbound_order
                 WHERE NOT {FINISHED_ORDER} AND modified_ms IS NOT NULL AND modified_ms < ?1
                   AND (stored_at IS NULL OR stored_at < ?2)"
            ))?
            .query_map(params![visible_before_ms, stored_before_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let gone: Vec<_> = candidates
            .into_iter()
            .filter(|(id, _, _)| !returned.contains(id))
            .collect();
        for (id, _, _) in &gone {
            tx.prepare_cached("DELETE FROM inbound_order WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        Ok(gone)
    }

    /// The full resync's sweep of purchase orders: removes those Omnium's full read did not
    /// return, unless modified at or after `visible_before_ms` (not surely visible to it).
    pub fn sweep_purchase_orders(
        &self,
        returned: &std::collections::HashSet<String>,
        visible_before_ms: i64,
    ) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM purchase_order WHERE modified_ms IS NULL OR modified_ms < ?1",
            )?
            .query_map([visible_before_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut gone = 0;
        for id in candidates.iter().filter(|id| !returned.contains(*id)) {
            gone += tx
                .prepare_cached("DELETE FROM purchase_order WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Notes that pulling `dataset` failed this run: its first failure time stays, the
    /// count of runs in a row grows, the last reason is kept (already cut short and
    /// redacted by the HTTP client; capped again here).
    pub fn note_pull_failure(&self, dataset: &str, now_ms: i64, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(200).collect();
        self.conn().execute(
            "INSERT INTO sync_state (key, value)
             VALUES ('pull_failure:' || ?1, json_object('since', ?2, 'runs', 1, 'error', ?3))
             ON CONFLICT (key) DO UPDATE SET value = json_set(value,
               '$.runs', COALESCE(json_extract(value, '$.runs'), 0) + 1, '$.error', ?3)",
            params![dataset, now_ms, reason],
        )?;
        Ok(())
    }

    /// `dataset` was pulled without failing: it is no longer reported.
    pub fn clear_pull_failure(&self, dataset: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sync_state WHERE key = 'pull_failure:' || ?1",
            [dataset],
        )?;
        Ok(())
    }

    /// Data sets whose last pull failed: `(dataset, since_ms, failed runs in a row, reason)`.
    pub fn pull_failures(&self) -> Result<Vec<(String, i64, i64, String)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT substr(key, 14), json_extract(value, '$.since'), json_extract(value, '$.runs'),
                        json_extract(value, '$.error')
                 FROM sync_state WHERE key LIKE 'pull_failure:%' ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Removes an inbound order from the till (moved to another store, or gone from
    /// Omnium); its `(order_type, status)` when it was held.
    pub fn remove_inbound_order(&self, id: &str) -> Result<Option<(String, String)>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Option<(String, String)> = tx
            .prepare_cached("SELECT order_type, status FROM inbound_order WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if held.is_some() {
            tx.prepare_cached("DELETE FROM inbound_order WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        Ok(held)
    }

    pub fn inbound_orders(
        &self,
        order_type: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT json FROM inbound_order WHERE (?1 IS NULL OR order_type = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![order_type, status], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    pub fn inbound_order(&self, id: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT json FROM inbound_order WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn put_purchase_orders(
        &self,
        orders: &[(String, Option<String>, String, Option<i64>)],
        cursor: Option<&super::CursorAdvance>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, status, json, modified) in orders {
            tx.prepare_cached(
                "INSERT INTO purchase_order (id, status, json, modified_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, json = excluded.json,
                   modified_ms = excluded.modified_ms",
            )?
            .execute(params![id, status, json, modified])?;
        }
        super::catalog::advance_in(&tx, cursor)?;
        tx.commit()?;
        Ok(())
    }

    pub fn purchase_order_json(&self, id: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT json FROM purchase_order WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub fn purchase_orders(&self, status: Option<&str>) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT json FROM purchase_order WHERE (?1 IS NULL OR status = ?1) ORDER BY id",
            )?;
            let rows = stmt.query_map([status], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Up to `limit` levels not yet pushed.
    pub fn unsent_levels(&self, limit: usize) -> Result<Vec<PushLevel>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sku, warehouse_id, quantity, counted_at_ms FROM stock_push WHERE sent = 0
             ORDER BY warehouse_id, sku LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(PushLevel {
                sku: r.get(0)?,
                warehouse_id: r.get(1)?,
                quantity: r.get(2)?,
                counted_at_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Marks levels pushed, unless a newer count replaced them meanwhile.
    pub fn mark_levels_sent(&self, levels: &[PushLevel]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for l in levels {
            tx.prepare_cached(
                "UPDATE stock_push SET sent = 1
                 WHERE sku = ?1 AND warehouse_id = ?2 AND counted_at_ms = ?3 AND quantity = ?4",
            )?
            .execute(params![l.sku, l.warehouse_id, l.counted_at_ms, l.quantity])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A pickup of order `?1` still on its way to Omnium: pending or in flight, and not held
/// behind a dead job of the same order (that one waits for `fo_job_retry`, maybe for ever).
const PICKUP_ON_ITS_WAY: &str = "SELECT 1 FROM outbox_job j WHERE j.kind = 'pickup'
    AND j.entity_id = ?1 AND j.state IN ('pending', 'in_flight')
    AND NOT EXISTS (SELECT 1 FROM outbox_job d WHERE d.entity_id = j.entity_id
                    AND d.id < j.id AND d.state = 'dead')";

/// The database's wall clock in ms: stamps `stored_at` where no caller passes a time.
const SQL_NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
/// `json_set` arguments that blank an inbound order's contact fields.
const ERASE_CONTACT: &str =
    "'$.customer.name', NULL, '$.customer.email', NULL, '$.customer.phone', NULL";
/// What an erased job's content becomes.
const ERASED: &str = r#"{"erased":true}"#;
/// Appended to a dead job's `last_error` when its payload is erased (`?2`): why it cannot
/// be retried any more.
const ERASED_NOTE: &str =
    "its personal data was erased (retention or a forgotten customer), so it cannot be retried";
const MARK_ERASED: &str = "last_error = CASE WHEN last_error IS NULL OR last_error = '' THEN ?2
    WHEN instr(last_error, ?2) > 0 THEN last_error ELSE last_error || '; ' || ?2 END";
/// Inbound order statuses after which the order is not handed over any more.
const FINISHED_ORDER: &str =
    "(status IN ('PickedUp', 'PickedUpAndPaid', 'Completed', 'Closed', 'Delivered',
    'Canceled', 'Cancelled', 'Expired', 'NotCollected') OR status LIKE 'OrderCanceled%')";

/// How long personal data the till no longer needs stays on the disk (CONTRACT §9 rule 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A customer record from its last store; a dead job's customer data and receipt PDF
    /// from its death; a forgotten customer's marker from the forget.
    pub customers_ms: u64,
    /// An inbound order from its last store, once it is finished (picked up, cancelled, …).
    pub finished_orders_ms: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            customers_ms: crate::config::DEFAULT_CUSTOMER_RETENTION_MS,
            finished_orders_ms: crate::config::DEFAULT_FINISHED_ORDER_RETENTION_MS,
        }
    }
}

/// What one maintenance pass erased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub customers: usize,
    pub finished_orders: usize,
    pub dead_job_payloads: usize,
}

impl Store {
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = retention;
    }

    /// Erases personal data past its retention, then truncates the WAL so no copy of it
    /// stays there either. The worker runs this with its hourly purge.
    pub fn erase_expired(&self, now_ms: i64) -> Result<Erased> {
        let r = *self.retention.lock().unwrap_or_else(|p| p.into_inner());
        let customers_before = now_ms.saturating_sub(r.customers_ms.min(i64::MAX as u64) as i64);
        let orders_before = now_ms.saturating_sub(r.finished_orders_ms.min(i64::MAX as u64) as i64);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Rows stored before retention existed start theirs now.
        tx.execute(
            "UPDATE customer SET stored_at = ?1 WHERE stored_at IS NULL",
            [now_ms],
        )?;
        tx.execute(
            "UPDATE inbound_order SET stored_at = ?1 WHERE stored_at IS NULL",
            [now_ms],
        )?;
        let customers = tx.execute(
            "DELETE FROM customer WHERE stored_at < ?1 AND NOT EXISTS (SELECT 1 FROM outbox_job
               WHERE kind = 'customer' AND entity_id = 'customer:' || customer.id AND state IN ('pending', 'in_flight'))",
            [customers_before],
        )?;
        let finished_orders = tx.execute(
            &format!("DELETE FROM inbound_order WHERE {FINISHED_ORDER} AND stored_at < ?1"),
            [orders_before],
        )?;
        // A dead job whose payload is erased stays dead for good (a trigger refuses to revive
        // it): retrying it would send `{"erased":true}` or a receipt without its PDF.
        tx.execute(
            &format!(
                "UPDATE outbox_job SET {MARK_ERASED} WHERE state = 'dead' AND dead_at < ?1
                   AND id IN (SELECT job_id FROM receipt_pdf)"
            ),
            params![customers_before, ERASED_NOTE],
        )?;
        let pdfs = tx.execute(
            "DELETE FROM receipt_pdf WHERE job_id IN
               (SELECT id FROM outbox_job WHERE state = 'dead' AND dead_at < ?1)",
            [customers_before],
        )?;
        let dead_customers = tx.execute(
            &format!(
                "UPDATE outbox_job SET content = ?3, {MARK_ERASED} WHERE state = 'dead'
                   AND kind = 'customer' AND dead_at < ?1 AND content <> ?3"
            ),
            params![customers_before, ERASED_NOTE, ERASED],
        )?;
        tx.execute(
            "DELETE FROM forgotten_customer WHERE at < ?1 AND NOT EXISTS (SELECT 1 FROM outbox_job
               WHERE kind = 'customer' AND entity_id = 'customer:' || customer_id AND state IN ('pending', 'in_flight'))",
            [customers_before],
        )?;
        tx.commit()?;
        drop(conn);
        self.truncate_wal()?;
        let erased = Erased {
            customers,
            finished_orders,
            dead_job_payloads: pdfs + dead_customers,
        };
        if erased != Erased::default() {
            log::info!(
                "erased past retention: {customers} customer(s), {finished_orders} finished order(s), \
                 {} dead job payload(s)",
                erased.dead_job_payloads
            );
        }
        Ok(erased)
    }

    /// Erases what the till holds about a customer: the record, the contact fields of
    /// inbound orders, delivered and dead jobs' payloads. A job still to be delivered keeps
    /// its payload until it is delivered, then it is erased. `false` when nothing was held.
    pub fn forget_customer(&self, customer_id: &str, now_ms: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut held = tx.execute("DELETE FROM customer WHERE id = ?1", [customer_id])? > 0;
        held |= tx.execute(
            "DELETE FROM customer_fetch WHERE customer_id = ?1",
            [customer_id],
        )? > 0;
        // Orders whose contact fields are already blank hold nothing more (a second forget
        // of the same customer is NOT_FOUND).
        held |= tx.execute(
            &format!(
                "UPDATE inbound_order SET json = json_set(json, {ERASE_CONTACT})
                 WHERE json_extract(json, '$.customer.id') = ?1
                   AND (json_extract(json, '$.customer.name') IS NOT NULL
                     OR json_extract(json, '$.customer.email') IS NOT NULL
                     OR json_extract(json, '$.customer.phone') IS NOT NULL)"
            ),
            [customer_id],
        )? > 0;
        // A job still holding the customer's data: one to deliver (erased on delivery), or a
        // delivered or dead one erased now.
        held |= tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox_job WHERE kind = 'customer'
                   AND entity_id = 'customer:' || ?1 AND content <> ?2)",
            )?
            .query_row(params![customer_id, ERASED], |r| r.get::<_, bool>(0))?;
        tx.execute(
            &format!(
                "UPDATE outbox_job SET content = ?3, {MARK_ERASED} WHERE kind = 'customer'
                   AND entity_id = 'customer:' || ?1 AND state = 'dead' AND content <> ?3"
            ),
            params![customer_id, ERASED_NOTE, ERASED],
        )?;
        tx.execute(
            "UPDATE outbox_job SET content = ?2 WHERE kind = 'customer' AND entity_id = 'customer:' || ?1
               AND state = 'delivered' AND content <> ?2",
            params![customer_id, ERASED],
        )?;
        if held {
            tx.execute(
                "INSERT INTO forgotten_customer (customer_id, at) VALUES (?1, ?2)
                 ON CONFLICT (customer_id) DO UPDATE SET at = excluded.at",
                params![customer_id, now_ms],
            )?;
        }
        tx.commit()?;
        drop(conn);
        if held {
            self.truncate_wal()?;
        }
        Ok(held)
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so erased rows
    /// leave no copy there. A reader in the way (an operator tool reading alongside) blocks
    /// it: each try waits at most [`CHECKPOINT_TRY`], then the writer connection is let go
    /// (recording goes on meanwhile) and it is tried again, for at most
    /// [`CHECKPOINT_BUDGET`] in all. Still blocked after that: logged, and tried again at the
    /// worker's next hourly maintenance. Returns whether the WAL is now empty.
    ///
    /// The WAL's pages are first copied into the database from the side connection, without
    /// the writer (PASSIVE: copying and the database's fsync do not stop recording), so the
    /// checkpoint on the writer has only what was committed since to copy, usually nothing,
    /// and then truncates. Before, the whole WAL (a day of sales, a sync's stock pages) was
    /// copied and synced with the writer held, and a record call waited for it (1-31 ms on
    /// a tmpfs in the traced runs of issue 10 target 4).
    pub fn truncate_wal(&self) -> Result<bool> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut tries = 0u32;
        loop {
            tries += 1;
            self.copy_wal_aside();
            let busy = {
                let conn = self.conn();
                conn.busy_timeout(CHECKPOINT_TRY)?;
                let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
                conn.busy_timeout(super::BUSY_TIMEOUT)?;
                match result {
                    Ok(busy) => busy != 0,
                    Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                        true
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if !busy {
                if tries > 1 {
                    log::info!(
                        "the WAL was truncated after {tries} tries (a reader was in the way)"
                    );
                }
                return Ok(true);
            }
            if start.elapsed() + pause > CHECKPOINT_BUDGET {
                log::warn!(
                    "the WAL could not be truncated in {tries} tries over {} ms (a reader was in \
                     the way); erased rows may stay in it until the next maintenance",
                    start.elapsed().as_millis()
                );
                return Ok(false);
            }
            log::debug!("WAL truncation blocked by a reader (try {tries}); trying again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether `job_id` is a dead job whose payload was erased (it cannot be retried).
    pub fn dead_job_erased(&self, job_id: i64) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox_job WHERE id = ?1 AND state = 'dead'
                   AND (content = ?2 OR (kind = 'receipt'
                     AND NOT EXISTS (SELECT 1 FROM receipt_pdf WHERE job_id = ?1))))",
            params![job_id, ERASED],
            |r| r.get(0),
        )?)
    }
}

/// How long one try to truncate the WAL waits for readers.
const CHECKPOINT_TRY: Duration = Duration::from_millis(250);
/// How long erasing tries to truncate the WAL before leaving it to the next maintenance.
const CHECKPOINT_BUDGET: Duration = Duration::from_secs(12);

/// The two fetch queues.
#[derive(Clone, Copy, Debug)]
pub enum FetchQueue {
    Orders,
    Customers,
}

impl FetchQueue {
    fn table(self) -> &'static str {
        match self {
            FetchQueue::Orders => "order_fetch",
            FetchQueue::Customers => "customer_fetch",
        }
    }

    fn key(self) -> &'static str {
        match self {
            FetchQueue::Orders => "order_id",
            FetchQueue::Customers => "customer_id",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FetchQueue;

    /// An order event that came while its order was being fetched was lost: the fetch's
    /// end deleted the row the event had just updated (`orders_e2e` failed about one run
    /// in two when the second event met the first fetch). It is now fetched again.
    #[test]
    fn an_event_during_its_orders_fetch_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(&dir.path().join("a.db")).unwrap();
        store.queue_order_fetch("O-1", 1_000).unwrap();
        let due = store.due_fetches(FetchQueue::Orders, 1_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        let (id, tries, due_at) = due[0].clone();
        assert_eq!((id.as_str(), tries), ("O-1", 0));
        // The event comes again (the same millisecond) while Omnium answers the fetch.
        store.queue_order_fetch("O-1", 1_000).unwrap();
        store
            .fetch_done(FetchQueue::Orders, "O-1", due_at, 2_000)
            .unwrap();
        // More events of the burst wait for that second fetch rather than hurry it.
        store.queue_order_fetch("O-1", 1_500).unwrap();
        assert!(store
            .due_fetches(FetchQueue::Orders, 1_999, 10)
            .unwrap()
            .is_empty());
        let again = store.due_fetches(FetchQueue::Orders, 2_000, 10).unwrap();
        assert_eq!(
            again.len(),
            1,
            "fetched again, once the events have gathered"
        );
        store
            .fetch_done(FetchQueue::Orders, "O-1", again[0].2, 3_000)
            .unwrap();
        assert!(store
            .due_fetches(FetchQueue::Orders, i64::MAX, 10)
            .unwrap()
            .is_empty());
    }
}
