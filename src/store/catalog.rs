//! The catalog, prices, stores and stock the till reads offline, applied page by page with
//! the pull cursor advanced in the same transaction, and read from the reader pool.

use super::catalog_file::is_catalog_dataset;
use super::Store;
use crate::error::Result;
use crate::model::catalog::{CatalogProduct, Category, StockLevel};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

/// Moves a data set's high-water mark in the transaction that applies the page it covers.
#[derive(Clone, Debug)]
pub struct CursorAdvance<'a> {
    pub dataset: &'a str,
    pub high_water_ms: Option<i64>,
    pub now_ms: i64,
}

/// A SKU as the till shows it, with the price valid at the moment of reading.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductView {
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub brand: Option<String>,
    pub ean: Option<String>,
    pub category_ids: Vec<String>,
    pub image_urls: Vec<String>,
    pub active: bool,
    pub cost_price: Option<i64>,
    /// The shelf price: what a walk-in customer pays now.
    pub price: Option<PriceView>,
    /// The customer-club price valid now, offered separately (CONTRACT §9 rule 15).
    pub member_price: Option<PriceView>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PriceView {
    pub unit_price: i64,
    pub currency: String,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    pub text: Option<String>,
    pub category_id: Option<String>,
    pub brand: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WarehouseStock {
    pub warehouse_id: String,
    pub quantity: f64,
    pub reserved: f64,
    pub pending: f64,
    /// Omnium's `modified` of the level, unix ms; `None` when no level was ever pulled
    /// (then `quantity` and `reserved` are 0 and mean "unknown", CONTRACT §9 rule 6).
    pub as_of: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StockView {
    pub sku: String,
    pub warehouses: Vec<WarehouseStock>,
}

/// A local change to stock recorded with its sale or return.
#[derive(Clone, Debug, PartialEq)]
pub struct StockEffect {
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: f64,
}

pub(crate) fn advance_in(tx: &Transaction, cursor: Option<&CursorAdvance>) -> Result<()> {
    advance_cursor(tx, cursor, "pull_cursor", "sync_state")
}

/// [`advance_in`] for the catalog file's data sets (products, categories): their cursor in
/// `catalog_cursor` and the time of the last pull in `catalog_state`, in the transaction of
/// the catalog file that applies the page.
pub(crate) fn advance_catalog_in(tx: &Transaction, cursor: Option<&CursorAdvance>) -> Result<()> {
    advance_cursor(tx, cursor, "catalog_cursor", "catalog_state")
}

/// Moves a data set's cursor in `cursors` and stamps `last_pull_at` in `state`: the main
/// file's tables or the catalog file's, which have the same shape.
fn advance_cursor(
    tx: &Transaction,
    cursor: Option<&CursorAdvance>,
    cursors: &str,
    state: &str,
) -> Result<()> {
    if let Some(c) = cursor {
        tx.prepare_cached(&format!(
            "INSERT INTO {cursors} (dataset, high_water_ms, last_pull_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (dataset) DO UPDATE SET
               settled = settled AND excluded.high_water_ms IS NOT NULL
                         AND excluded.high_water_ms <= {cursors}.high_water_ms
                         OR excluded.high_water_ms IS NULL AND settled,
               high_water_ms = COALESCE(MAX(excluded.high_water_ms, {cursors}.high_water_ms),
                                        excluded.high_water_ms, {cursors}.high_water_ms),
               last_pull_at = excluded.last_pull_at"
        ))?
        .execute(params![c.dataset, c.high_water_ms, c.now_ms])?;
        tx.prepare_cached(&format!(
            "INSERT INTO {state} (key, value) VALUES ('last_pull_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ))?
        .execute([c.now_ms.to_string()])?;
    }
    Ok(())
}

/// The longest a background write keeps one transaction open when nobody waits (it commits
/// at once when someone does). Long, because each commit writes every page it changed to
/// the WAL again: the search index and b-tree pages a page of products touches are shared.
const MAX_BACKGROUND_TX: std::time::Duration = std::time::Duration::from_millis(500);

/// What one batch of set-wise product statements should take: a caller that starts waiting
/// for the writer waits for the rest of one batch (and the commit). Products per batch are
/// adapted to it as the tables grow and the machine's load changes.
const BATCH_TARGET: std::time::Duration = std::time::Duration::from_millis(2);
/// Products in the first batch, and the bounds of the adapted size: at least a few, so the
/// search index is not flushed for every product; at most a few hundred.
pub(crate) const FIRST_BATCH: usize = 32;
const MIN_BATCH: usize = 4;
const MAX_BATCH: usize = 512;

/// The next batch's size after `took` for `size` products: towards `target`, at most
/// halved or doubled at a time (one slow batch, the thread preempted, is not a trend).
fn next_batch(size: usize, took: std::time::Duration, target: std::time::Duration) -> usize {
    let took = took.as_secs_f64().max(1e-6);
    let scaled = (size as f64 * target.as_secs_f64() / took).round() as usize;
    scaled.clamp(size / 2, size * 2).clamp(MIN_BATCH, MAX_BATCH)
}

/// Temporary tables the products of one batch are staged in (the temp schema: never in the
/// database file or its WAL).
const STAGE_SCHEMA: &str = "
    CREATE TEMP TABLE IF NOT EXISTS stage_sku (
        n INTEGER PRIMARY KEY, sku TEXT NOT NULL, product_id TEXT NOT NULL, name TEXT NOT NULL,
        brand TEXT, ean TEXT, gtins TEXT NOT NULL, category_ids TEXT NOT NULL,
        image_urls TEXT NOT NULL, active INTEGER NOT NULL, language TEXT, cost_price INTEGER
    );
    CREATE TEMP TABLE IF NOT EXISTS stage_product (product_id TEXT NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS stage_category (sku TEXT NOT NULL, category_id TEXT NOT NULL);
    CREATE TEMP TABLE IF NOT EXISTS stage_price (
        sku TEXT NOT NULL, unit_price INTEGER NOT NULL, currency TEXT NOT NULL,
        store_specific INTEGER NOT NULL, variant_specific INTEGER NOT NULL,
        valid_from INTEGER, valid_until INTEGER, member INTEGER NOT NULL
    );";

/// Products as [`upsert_product`] writes them one by one, in a few set-wise statements per
/// batch: every statement that fires the search index's triggers opens a statement
/// savepoint, and FTS5 writes its pending index data out at each savepoint, so row by row
/// the index was flushed (and its segments merged) once per SKU. Staged, it is flushed once
/// per batch. A batch naming a product or a SKU twice is written one by one, so the last
/// occurrence wins exactly as it does there.
fn upsert_products(tx: &Transaction, products: &[CatalogProduct]) -> Result<()> {
    if products.is_empty() {
        return Ok(());
    }
    let mut ids = std::collections::HashSet::new();
    let mut skus = std::collections::HashSet::new();
    let distinct = products.iter().all(|p| {
        ids.insert(p.product_id.as_str()) && p.skus.iter().all(|s| skus.insert(s.sku.as_str()))
    });
    if !distinct {
        for p in products {
            upsert_product(tx, p)?;
        }
        return Ok(());
    }
    tx.execute_batch(STAGE_SCHEMA)?;
    {
        let mut stage_product =
            tx.prepare_cached("INSERT INTO temp.stage_product (product_id) VALUES (?1)")?;
        let mut stage_sku = tx.prepare_cached(
            "INSERT INTO temp.stage_sku (sku, product_id, name, brand, ean, gtins, category_ids,
                                         image_urls, active, language, cost_price)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut stage_category = tx
            .prepare_cached("INSERT INTO temp.stage_category (sku, category_id) VALUES (?1, ?2)")?;
        let mut stage_price = tx.prepare_cached(
            "INSERT INTO temp.stage_price (sku, unit_price, currency, store_specific,
                                           variant_specific, valid_from, valid_until, member)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for p in products {
            stage_product.execute([&p.product_id])?;
            for s in &p.skus {
                execute_sku_row(&mut stage_sku, s)?;
                for c in &s.category_ids {
                    stage_category.execute([&s.sku, c])?;
                }
            }
            for pr in &p.prices {
                stage_price.execute(params![
                    pr.sku,
                    pr.unit_price,
                    pr.currency,
                    pr.store_specific,
                    pr.variant_specific,
                    pr.valid_from,
                    pr.valid_until,
                    pr.member
                ])?;
            }
        }
    }
    // SKUs that left their product stop being sellable (one that moved to another product
    // of this batch is upserted right after, as it would be one by one).
    tx.prepare_cached(
        "UPDATE product INDEXED BY product_by_product_id SET active = 0
         WHERE product_id IN (SELECT product_id FROM temp.stage_product) AND active = 1
           AND sku NOT IN (SELECT sku FROM temp.stage_sku)",
    )?
    .execute([])?;
    // `WHERE true`: the SELECT of an upsert needs a WHERE clause to parse as one.
    tx.prepare_cached(
        "INSERT INTO product (sku, product_id, name, brand, ean, gtins, category_ids, image_urls,
                              active, language, cost_price)
         SELECT sku, product_id, name, brand, ean, gtins, category_ids, image_urls, active,
                language, cost_price
         FROM temp.stage_sku WHERE true ORDER BY n
         ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id, name = excluded.name,
           brand = excluded.brand, ean = excluded.ean, gtins = excluded.gtins,
           category_ids = excluded.category_ids, image_urls = excluded.image_urls,
           active = excluded.active, language = excluded.language, cost_price = excluded.cost_price
         -- A delta re-reads many unchanged products: their rows are not written again.
         WHERE (product.product_id, product.name, product.brand, product.ean, product.gtins,
                product.category_ids, product.image_urls, product.active, product.language,
                product.cost_price)
           IS NOT (excluded.product_id, excluded.name, excluded.brand, excluded.ean,
                   excluded.gtins, excluded.category_ids, excluded.image_urls, excluded.active,
                   excluded.language, excluded.cost_price)",
    )?
    .execute([])?;
    // Links and prices set-wise, only what changed: the links and price rows a SKU keeps
    // stay as they are (no delete and insert again of the same rows).
    tx.prepare_cached(
        "DELETE FROM product_category WHERE product_sku IN (SELECT sku FROM temp.stage_sku)
           AND (product_sku, category_id) NOT IN (SELECT sku, category_id FROM temp.stage_category)",
    )?
    .execute([])?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO product_category (product_sku, category_id)
         SELECT sku, category_id FROM temp.stage_category ORDER BY rowid",
    )?
    .execute([])?;
    tx.prepare_cached(
        "DELETE FROM price WHERE sku IN (SELECT sku FROM temp.stage_sku) AND NOT EXISTS
           (SELECT 1 FROM temp.stage_price s WHERE s.sku = price.sku
              AND (s.unit_price, s.currency, s.store_specific, s.variant_specific, s.valid_from,
                   s.valid_until, s.member)
               IS (price.unit_price, price.currency, price.store_specific,
                   price.variant_specific, price.valid_from, price.valid_until, price.member))",
    )?
    .execute([])?;
    tx.prepare_cached(
        "INSERT INTO price (sku, unit_price, currency, store_specific, variant_specific,
                            valid_from, valid_until, member)
         SELECT sku, unit_price, currency, store_specific, variant_specific, valid_from,
                valid_until, member
         FROM temp.stage_price s WHERE NOT EXISTS
           (SELECT 1 FROM price p WHERE p.sku = s.sku
              AND (p.unit_price, p.currency, p.store_specific, p.variant_specific, p.valid_from,
                   p.valid_until, p.member)
               IS (s.unit_price, s.currency, s.store_specific, s.variant_specific, s.valid_from,
                   s.valid_until, s.member))
         ORDER BY s.rowid",
    )?
    .execute([])?;
    tx.execute_batch(
        "DELETE FROM temp.stage_sku; DELETE FROM temp.stage_product;
         DELETE FROM temp.stage_category; DELETE FROM temp.stage_price;",
    )?;
    Ok(())
}

/// One product's SKUs, category links and prices (see [`Store::apply_products`]).
fn upsert_product(tx: &Transaction, p: &CatalogProduct) -> Result<()> {
    // SKUs that left the product stop being sellable (the others are upserted below,
    // untouched if unchanged, so a delta re-read does not churn the search index).
    let skus = serde_json::to_string(&p.skus.iter().map(|s| &s.sku).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        // Without statistics SQLite would pick the (active, name) index and walk every
        // active SKU per product: the first 100k-SKU sync took minutes.
        "UPDATE product INDEXED BY product_by_product_id SET active = 0
         WHERE product_id = ?1 AND active = 1 AND sku NOT IN (SELECT value FROM json_each(?2))",
    )?
    .execute(params![p.product_id, skus])?;
    for s in &p.skus {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO product (sku, product_id, name, brand, ean, gtins, category_ids, image_urls,
                                  active, language, cost_price)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id, name = excluded.name,
               brand = excluded.brand, ean = excluded.ean, gtins = excluded.gtins,
               category_ids = excluded.category_ids, image_urls = excluded.image_urls,
               active = excluded.active, language = excluded.language, cost_price = excluded.cost_price",
        )?;
        execute_sku_row(&mut upsert, s)?;
        tx.prepare_cached("DELETE FROM product_category WHERE product_sku = ?1")?
            .execute([&s.sku])?;
        for c in &s.category_ids {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO product_category (product_sku, category_id) VALUES (?1, ?2)",
            )?
            .execute([&s.sku, c])?;
        }
        tx.prepare_cached("DELETE FROM price WHERE sku = ?1")?
            .execute([&s.sku])?;
    }
    for pr in &p.prices {
        tx.prepare_cached(
            "INSERT INTO price (sku, unit_price, currency, store_specific, variant_specific, valid_from, valid_until, member)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            pr.sku,
            pr.unit_price,
            pr.currency,
            pr.store_specific,
            pr.variant_specific,
            pr.valid_from,
            pr.valid_until,
            pr.member
        ])?;
    }
    Ok(())
}

/// One level (see [`Store::apply_stock`]): 1 when it changed the stored one.
fn apply_level(tx: &Transaction, l: &StockLevel) -> Result<usize> {
    let changed = tx
        .prepare_cached(
            "INSERT INTO stock_level (sku, warehouse_id, quantity, reserved, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sku, warehouse_id) DO UPDATE SET quantity = excluded.quantity,
               reserved = excluded.reserved, modified_ms = excluded.modified_ms
             WHERE excluded.modified_ms >= stock_level.modified_ms
               AND (excluded.quantity, excluded.reserved, excluded.modified_ms)
                   IS NOT (stock_level.quantity, stock_level.reserved, stock_level.modified_ms)",
        )?
        .execute(params![
            l.sku,
            l.warehouse_id,
            l.quantity,
            l.reserved,
            l.modified_ms
        ])?;
    tx.prepare_cached(
        "DELETE FROM stock_movement WHERE sku = ?1 AND warehouse_id = ?2
         AND counted_after_ms IS NOT NULL
         AND counted_after_ms <= (SELECT modified_ms FROM stock_level WHERE sku = ?1 AND warehouse_id = ?2)
         -- A goods reception without a PO that may be sent again adds what was delivered
         -- since its first try (sync/push.rs): counted movements stay until it is settled.
         AND NOT EXISTS (SELECT 1 FROM outbox_job r WHERE r.kind = 'goods_reception'
                         AND r.state IN ('pending', 'in_flight') AND r.extra IS NOT NULL)",
    )?
    .execute(params![l.sku, l.warehouse_id])?;
    Ok(changed)
}

/// Runs a statement whose 11 parameters are a SKU's `product` columns, in table order
/// (staged batch and single upsert alike).
fn execute_sku_row(
    stmt: &mut rusqlite::Statement<'_>,
    s: &crate::model::catalog::SkuRow,
) -> Result<()> {
    stmt.execute(params![
        s.sku,
        s.product_id,
        s.name,
        s.brand,
        s.ean,
        s.gtins.join(" "),
        json_list(&s.category_ids),
        json_list(&s.image_urls),
        s.active,
        s.language,
        s.cost_price
    ])?;
    Ok(())
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// A data set's high-water mark (Omnium's `modified`, unix ms), if it was ever pulled,
    /// and whether everything up to it is known to be read (see `mark_settled`).
    /// The catalog's data sets (products, categories) keep theirs in the catalog file.
    pub fn cursor(&self, dataset: &str) -> Result<(Option<i64>, bool)> {
        let read = |c: &Connection, table: &str| -> Result<(Option<i64>, bool)> {
            Ok(c.prepare_cached(&format!(
                "SELECT high_water_ms, settled FROM {table} WHERE dataset = ?1"
            ))?
            .query_row([dataset], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((None, false)))
        };
        if is_catalog_dataset(dataset) {
            // From a reader: the worker's catalog transaction is never waited for, and what
            // it committed (the cursor with its page) is what a reader sees.
            self.read(|c| read(c, "catalog_cursor"))
        } else {
            // Also on a reader: the cursors are committed with what they cover.
            self.read(|c| read(c, "pull_cursor"))
        }
    }

    /// Records that everything up to `high_water_ms` was re-read when Omnium's index had
    /// caught up with it, unless the cursor moved on meanwhile.
    pub fn mark_settled(&self, dataset: &str, high_water_ms: i64) -> Result<()> {
        if is_catalog_dataset(dataset) {
            self.catalog()?.execute(
                "UPDATE catalog_cursor SET settled = 1 WHERE dataset = ?1 AND high_water_ms = ?2",
                params![dataset, high_water_ms],
            )?;
        } else {
            self.conn().execute(
                "UPDATE pull_cursor SET settled = 1 WHERE dataset = ?1 AND high_water_ms = ?2",
                params![dataset, high_water_ms],
            )?;
        }
        Ok(())
    }

    /// Records that a data set was pulled (and, optionally, its new high-water mark).
    pub fn advance_cursor(&self, cursor: &CursorAdvance) -> Result<()> {
        if is_catalog_dataset(cursor.dataset) {
            return self.catalog_write(|tx, _| advance_catalog_in(tx, Some(cursor)));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        advance_in(&tx, Some(cursor))?;
        tx.commit()?;
        Ok(())
    }

    /// When anything was last pulled (unix ms): the later of the main file's and the
    /// catalog file's stamps.
    pub fn last_pull_at(&self) -> Result<Option<i64>> {
        let main: Option<i64> = self.get_state("last_pull_at")?.and_then(|v| v.parse().ok());
        Ok(main.max(self.catalog_last_pull_at()?))
    }

    /// When the catalog file's data sets were last pulled (unix ms), read on a reader.
    pub fn catalog_last_pull_at(&self) -> Result<Option<i64>> {
        self.read(|c| {
            if !super::catalog_file::attached(c)? {
                return Ok(None);
            }
            Ok(c.query_row(
                "SELECT value FROM catalog_state WHERE key = 'last_pull_at'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok()))
        })
    }

    /// Upserts products: their SKUs (a SKU that left the product becomes inactive), their
    /// category links and their price candidates, the cursor with the last of them. A
    /// background write (see [`Store::background_write`]): it commits between two batches
    /// of products (sized to take about `BATCH_TARGET`) as soon as another caller waits for
    /// the connection (or after `MAX_BACKGROUND_TX`), and goes on in a new transaction, so a
    /// long page never holds a record call up for more than a batch and a commit. The
    /// cursor commits only with the last product, so a crash between transactions
    /// re-fetches the page (upserts are idempotent).
    pub fn apply_products(
        &self,
        products: &[CatalogProduct],
        cursor: Option<&CursorAdvance>,
    ) -> Result<()> {
        // Product rows change: a background index build in progress stops (deferred.rs).
        self.pause_catalog_build();
        let mut rest = products;
        loop {
            let started = std::time::Instant::now();
            let applied = self.catalog_write(|tx, yield_now| {
                self.apply_products_in(tx, yield_now, rest, cursor, started)
            })?;
            rest = &rest[applied..];
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// One transaction of [`Store::apply_products`]: products of `rest` until a caller
    /// waits or `MAX_BACKGROUND_TX` passed since `started`, the cursor with the last.
    /// Returns how many were written.
    pub(super) fn apply_products_in(
        &self,
        tx: &rusqlite::Transaction,
        yield_now: &dyn Fn() -> bool,
        rest: &[CatalogProduct],
        cursor: Option<&CursorAdvance>,
        started: std::time::Instant,
    ) -> Result<usize> {
        use std::sync::atomic::Ordering;
        // Under the catalog's writer, as each of a page's transactions begins: a background
        // build that began after the mark made before the first one (between two of them)
        // stops at its next step too, instead of indexing rows this one changes after it
        // read them (review of cdb96fd).
        self.note_product_write();
        let mut n = 0;
        loop {
            let size = self.catalog_batch.load(Ordering::Relaxed);
            let take = size.min(rest.len() - n);
            let batch_started = std::time::Instant::now();
            upsert_products(tx, &rest[n..n + take])?;
            if take == size {
                let next = next_batch(size, batch_started.elapsed(), BATCH_TARGET);
                self.catalog_batch.store(next, Ordering::Relaxed);
            }
            n += take;
            if n == rest.len() || yield_now() || started.elapsed() >= MAX_BACKGROUND_TX {
                break;
            }
        }
        if n == rest.len() {
            advance_catalog_in(tx, cursor)?;
        }
        Ok(n)
    }

    /// After a full read of the catalog: every SKU of a product Omnium did not return (gone,
    /// deleted, out of this market or language) stops being sellable, and its prices and
    /// levels go with it (CONTRACT §9 rule 14). Returns how many SKUs left.
    ///
    /// Two transactions, one per file: the catalog's first (SKUs and prices), then the
    /// levels in the main file, in short background writes. A crash between them leaves
    /// levels of SKUs no longer sellable; the next full resync removes them (every SKU of
    /// an unreturned product is named again, sellable or not).
    ///
    /// The catalog's transaction is synced (FULL), unlike other catalog pages: nothing
    /// re-reads it after a power cut (no cursor), and the main file's "resync done" stamp
    /// follows it at FULL, so a lost sweep would keep removed products sellable until the
    /// next full resync.
    pub fn sweep_products(&self, seen: &std::collections::HashSet<String>) -> Result<usize> {
        self.pause_catalog_build();
        let (gone, unreturned) = self.catalog_write_synced(|tx, _| {
            // Again under the writer's lock (see `apply_products_in`).
            self.note_product_write();
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS seen_product (id TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.seen_product;
                 CREATE TEMP TABLE IF NOT EXISTS gone_sku (sku TEXT PRIMARY KEY) WITHOUT ROWID;
                 DELETE FROM temp.gone_sku;",
            )?;
            for id in seen {
                tx.prepare_cached("INSERT OR IGNORE INTO temp.seen_product (id) VALUES (?1)")?
                    .execute([id])?;
            }
            tx.execute(
                "INSERT INTO temp.gone_sku (sku) SELECT sku FROM product
                 WHERE product_id NOT IN (SELECT id FROM temp.seen_product)",
                [],
            )?;
            let gone = tx.execute(
                "UPDATE product SET active = 0 WHERE active = 1 AND sku IN (SELECT sku FROM temp.gone_sku)",
                [],
            )?;
            tx.execute(
                "DELETE FROM price WHERE sku IN (SELECT sku FROM temp.gone_sku)",
                [],
            )?;
            let unreturned: Vec<String> = tx
                .prepare("SELECT sku FROM temp.gone_sku")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            tx.execute_batch("DELETE FROM temp.seen_product; DELETE FROM temp.gone_sku;")?;
            Ok((gone, unreturned))
        })?;
        // Their levels, a few hundred SKUs per background write (a recording call waits
        // for one of them at most).
        for chunk in unreturned.chunks(256) {
            let skus = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
            self.background_write(|tx, _| {
                tx.prepare_cached(
                    "DELETE FROM stock_level WHERE sku IN (SELECT value FROM json_each(?1))",
                )?
                .execute([&skus])?;
                Ok(())
            })?;
        }
        Ok(gone)
    }

    /// After a full read of the levels of `warehouses`: a level Omnium no longer has is
    /// removed (it reads as unknown again). Returns how many.
    pub fn sweep_stock(
        &self,
        seen: &std::collections::HashSet<(String, String)>,
        warehouses: &[String],
    ) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS seen_level (sku TEXT, warehouse_id TEXT,
                 PRIMARY KEY (sku, warehouse_id)) WITHOUT ROWID;
             DELETE FROM temp.seen_level;",
        )?;
        for (sku, wh) in seen {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO temp.seen_level (sku, warehouse_id) VALUES (?1, ?2)",
            )?
            .execute([sku, wh])?;
        }
        let mut gone = 0;
        for wh in warehouses {
            gone += tx
                .prepare_cached(
                    "DELETE FROM stock_level WHERE warehouse_id = ?1 AND NOT EXISTS
                     (SELECT 1 FROM temp.seen_level s WHERE s.sku = stock_level.sku AND s.warehouse_id = ?1)",
                )?
                .execute([wh])?;
        }
        tx.execute("DELETE FROM temp.seen_level", [])?;
        tx.commit()?;
        Ok(gone)
    }

    /// After a full read of the configured stores: one Omnium no longer returns is removed.
    pub fn sweep_stores(&self, returned: &[String]) -> Result<usize> {
        let ids = serde_json::to_string(returned).unwrap_or_else(|_| "[]".into());
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let gone = tx.execute(
            "DELETE FROM store WHERE id NOT IN (SELECT value FROM json_each(?1))",
            [ids],
        )?;
        tx.commit()?;
        Ok(gone)
    }

    /// Replaces every category (Omnium offers no delta for them).
    pub fn replace_categories(
        &self,
        categories: &[Category],
        cursor: Option<&CursorAdvance>,
    ) -> Result<()> {
        self.catalog_write(|tx, _| {
            tx.execute("DELETE FROM category", [])?;
            for c in categories {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO category (id, name, parent_id, sort_index) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![c.id, c.name, c.parent_id, c.sort_index])?;
            }
            advance_catalog_in(tx, cursor)
        })
    }

    /// Upserts stores as Omnium's JSON, keyed by id.
    pub fn upsert_stores(
        &self,
        stores: &[(String, String)],
        cursor: Option<&CursorAdvance>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, json) in stores {
            tx.prepare_cached(
                "INSERT INTO store (id, json) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET json = excluded.json",
            )?
            .execute([id, json])?;
        }
        advance_in(&tx, cursor)?;
        tx.commit()?;
        Ok(())
    }

    /// Applies Omnium's levels. A level never goes back in time (an older page re-read
    /// through the overlap changes nothing), and local movements the new level has counted
    /// are dropped in the same transaction, so a sale is never counted twice.
    pub fn apply_stock(
        &self,
        levels: &[StockLevel],
        cursor: Option<&CursorAdvance>,
    ) -> Result<usize> {
        let mut rest = levels;
        let mut changed = 0;
        loop {
            let started = std::time::Instant::now();
            let (applied, n_changed) = self.background_write(|tx, yield_now| {
                let mut n = 0;
                let mut changed = 0;
                while let Some(l) = rest.get(n) {
                    changed += apply_level(tx, l)?;
                    n += 1;
                    if n < rest.len() && (yield_now() || started.elapsed() >= MAX_BACKGROUND_TX) {
                        break;
                    }
                }
                if n == rest.len() {
                    advance_in(tx, cursor)?;
                }
                Ok((n, changed))
            })?;
            changed += n_changed;
            rest = &rest[applied..];
            if rest.is_empty() {
                return Ok(changed);
            }
        }
    }

    pub fn product(&self, sku: &str, now_ms: i64) -> Result<Option<ProductView>> {
        let read = self.read(|c| snapshot(c, || product_view(c, sku, now_ms)));
        if let Err(e) = &read {
            // A corrupt catalog is moved aside and pulled again at the next open.
            self.note_catalog_damage(e);
        }
        read
    }

    /// Full-text search over SKU, name, EAN, GTINs and brand (prefix matching, ranked; an
    /// exact SKU or EAN first), among sellable products. Returns one page and the total.
    pub fn search_products(&self, q: &SearchQuery, now_ms: i64) -> Result<(Vec<ProductView>, u64)> {
        match self.read(|c| snapshot(c, || self.search_in(c, q, now_ms))) {
            Err(e) if super::catalog_file::looks_corrupt(&e) => {
                // The catalog is moved aside and pulled again at the next open; until then
                // the tables are searched without the index (damage in the index's own
                // tables leaves them readable), or the first error stands.
                self.note_catalog_damage(&e);
                let nothing_searchable = q
                    .text
                    .as_deref()
                    .is_some_and(|t| !t.trim().is_empty() && fts_query(t).is_empty());
                if nothing_searchable {
                    return Ok((Vec::new(), 0));
                }
                self.read(|c| snapshot(c, || super::deferred::search_unindexed(c, q, now_ms)))
                    .map_err(|_| e)
            }
            other => other,
        }
    }

    fn search_in(
        &self,
        c: &Connection,
        q: &SearchQuery,
        now_ms: i64,
    ) -> Result<(Vec<ProductView>, u64)> {
        {
            // Text with nothing searchable in it (`"`, `*`, `--`) finds nothing; it never
            // lists the whole catalog the way an empty text (browsing) does.
            if q.text
                .as_deref()
                .is_some_and(|t| !t.trim().is_empty() && fts_query(t).is_empty())
            {
                return Ok((Vec::new(), 0));
            }
            // Until the search index and listings are built after a first sync (or a
            // re-fold), the tables are searched directly (store/deferred.rs).
            if super::deferred::owed(c)?.is_some() {
                return super::deferred::search_unindexed(c, q, now_ms);
            }
            let fts = q.text.as_deref().map(fts_query).filter(|s| !s.is_empty());
            let mut filter = String::from("p.active = 1");
            if fts.is_some() {
                filter.push_str(" AND f.product_fts MATCH :fts");
            }
            if q.brand.is_some() {
                filter.push_str(" AND p.brand = :brand");
            }
            if q.category_id.is_some() {
                filter.push_str(" AND pc.category_id = :cat");
            }
            let from = match (fts.is_some(), q.category_id.is_some()) {
                (true, false) => "product_fts f JOIN product p ON p.rowid = f.rowid",
                (true, true) => {
                    "product_fts f JOIN product p ON p.rowid = f.rowid \
                     JOIN product_category pc ON pc.product_sku = p.sku"
                }
                (false, true) => "product_category pc JOIN product p ON p.sku = pc.product_sku",
                (false, false) => "product p",
            };
            let order = if fts.is_some() {
                "(p.sku = :exact OR p.ean = :exact) DESC, f.rank, p.name"
            } else {
                // The name indexes hold (…, name, rowid): a page is read in index order and
                // never sorted (a brand of 20,000 SKUs sorted by name and SKU took 20 ms).
                "p.name, p.rowid"
            };
            let exact = q.text.as_deref().map(str::trim).unwrap_or("");
            let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = Vec::new();
            if let Some(f) = &fts {
                named.push((":fts", f));
            }
            if let Some(b) = &q.brand {
                named.push((":brand", b));
            }
            if let Some(cat) = &q.category_id {
                named.push((":cat", cat));
            }
            let limit = i64::from(q.limit);
            let offset = i64::from(q.offset);
            let mut page_params = named.clone();
            if fts.is_some() {
                page_params.push((":exact", &exact));
            }
            page_params.push((":limit", &limit));
            page_params.push((":offset", &offset));
            // A text search ranks every match anyway, so the total comes with the page in
            // one pass; a filter-only listing walks an index in order and stops at the page,
            // so there a separate COUNT(*) is cheaper.
            let total_column = if fts.is_some() {
                "COUNT(*) OVER ()"
            } else {
                "-1"
            };
            if let (Some(fts), None, None) = (&fts, &q.brand, &q.category_id) {
                return text_search(c, fts, exact, q, now_ms);
            }
            if let (None, None, Some(category)) = (&fts, &q.brand, &q.category_id) {
                return category_listing(c, category, q, now_ms);
            }
            let rows: Vec<(String, i64)> = c
                .prepare_cached(&format!(
                    "SELECT p.sku, {total_column} FROM {from} WHERE {filter}
                     ORDER BY {order} LIMIT :limit OFFSET :offset"
                ))?
                .query_map(&page_params[..], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let total = match rows.first() {
                Some((_, total)) if *total >= 0 => *total,
                // Past the last page, or a listing: count on its own.
                _ => c
                    .prepare_cached(&format!("SELECT COUNT(*) FROM {from} WHERE {filter}"))?
                    .query_row(&named[..], |r| r.get(0))?,
            };
            let skus: Vec<String> = rows.into_iter().map(|(sku, _)| sku).collect();
            let mut items = Vec::with_capacity(skus.len());
            for sku in skus {
                if let Some(p) = product_view(c, &sku, now_ms)? {
                    items.push(p);
                }
            }
            Ok((items, total.max(0) as u64))
        }
    }

    pub fn categories(&self) -> Result<Vec<Category>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, name, parent_id, sort_index FROM category ORDER BY sort_index, name, id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Category {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    parent_id: r.get(2)?,
                    sort_index: r.get(3)?,
                })
            })?;
            let mut all = rows.collect::<rusqlite::Result<Vec<Category>>>()?;
            // Names in the cashier's order (store/fold.rs `sort_key`), not bytewise.
            all.sort_by_cached_key(|c| (c.sort_index, super::fold::sort_key(&c.name), c.id.clone()));
            Ok(all)
        })
    }

    /// The brands of sellable products (Omnium has no brand entity), in the cashier's order.
    pub fn brands(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT brand FROM product WHERE active = 1 AND brand IS NOT NULL ORDER BY brand",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            let mut all = rows.collect::<rusqlite::Result<Vec<String>>>()?;
            all.sort_by_cached_key(|b| super::fold::sort_key(b));
            Ok(all)
        })
    }

    pub fn store_json(&self, id: &str) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT json FROM store WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?)
        })
    }

    /// Omnium's levels in the given warehouses with the local movements it has not counted.
    /// `None` when the SKU is neither in the catalog nor in any level or movement.
    pub fn stock(&self, sku: &str, warehouses: &[String]) -> Result<Option<StockView>> {
        self.read(|c| {
            let known: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM product WHERE sku = ?1)
                         OR EXISTS (SELECT 1 FROM stock_level WHERE sku = ?1)
                         OR EXISTS (SELECT 1 FROM stock_movement_all WHERE sku = ?1)",
                )?
                .query_row([sku], |r| r.get(0))?;
            if !known {
                return Ok(None);
            }
            let mut out = Vec::with_capacity(warehouses.len());
            for wh in warehouses {
                let (quantity, reserved, modified): (f64, f64, Option<i64>) = c
                    .prepare_cached(
                        "SELECT quantity, reserved, modified_ms FROM stock_level WHERE sku = ?1 AND warehouse_id = ?2",
                    )?
                    .query_row([sku, wh], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?
                    .unwrap_or((0.0, 0.0, None));
                // Counted = delivered, and Omnium's level was stamped at or after Omnium
                // accepted the sale (see sync::push for why that is the test).
                let pending: f64 = c
                    .prepare_cached(
                        "SELECT COALESCE(SUM(quantity), 0) FROM stock_movement_all WHERE sku = ?1 AND warehouse_id = ?2
                         AND NOT (counted_after_ms IS NOT NULL AND ?3 IS NOT NULL AND counted_after_ms <= ?3)",
                    )?
                    .query_row(params![sku, wh, modified], |r| r.get(0))?;
                out.push(WarehouseStock {
                    warehouse_id: wh.clone(),
                    quantity,
                    reserved,
                    pending,
                    as_of: modified,
                });
            }
            Ok(Some(StockView {
                sku: sku.to_string(),
                warehouses: out,
            }))
        })
    }

    /// How many SKUs the catalog holds.
    pub fn sku_count(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM product", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }
}

/// How a price ranks among the candidates valid now (higher wins): store-specific, then
/// variant-specific, then the lower price.
type PriceRank = (bool, bool, i64);

/// Runs `f` in one read transaction: one snapshot for the page, its total and every price
/// (a sync committing halfway cannot mix two catalogs in one answer), and one lock taken
/// instead of one per statement.
fn snapshot<T>(c: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    c.execute_batch("BEGIN")?;
    let result = f();
    // Ending a read transaction cannot lose anything; the connection goes back to the pool
    // out of any transaction whatever happened.
    if c.execute_batch("COMMIT").is_err() {
        let _ = c.execute_batch("ROLLBACK");
    }
    result
}

/// Text searches with at most this many matches are ranked (bm25); broader ones are listed
/// in index order. Chosen from `benches/search.rs`: ranking costs about a microsecond a match.
const RANKED_MATCHES: i64 = 2_000;

/// A text search without filters, ranked in the FTS index alone (it holds sellable SKUs
/// only): the page's rowids, the count, and an exact SKU or EAN hit put first.
fn text_search(
    c: &Connection,
    fts: &str,
    exact: &str,
    q: &SearchQuery,
    now_ms: i64,
) -> Result<(Vec<ProductView>, u64)> {
    let mut exact_hit: Option<i64> = c
        .prepare_cached("SELECT rowid FROM product WHERE sku = ?1 AND active = 1")?
        .query_row([exact], |r| r.get(0))
        .optional()?;
    if exact_hit.is_none() && !exact.is_empty() {
        exact_hit = c
            .prepare_cached("SELECT rowid FROM product INDEXED BY product_by_ean WHERE ean = ?1 AND active = 1 LIMIT 1")?
            .query_row([exact], |r| r.get(0))
            .optional()?;
    }
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM product_fts WHERE product_fts MATCH ?1")?
        .query_row([fts], |r| r.get(0))?;
    // Ranking scores every match; past RANKED_MATCHES (a letter or two typed, a digit of an
    // EAN) that costs more than a keystroke may, and a ranking of thousands of hits for "u"
    // helps nobody: those pages come in index order, which FTS5 reads only up to the page.
    let order = if total <= RANKED_MATCHES {
        "ORDER BY rank"
    } else {
        "ORDER BY rowid"
    };
    let mut rowids: Vec<i64> = c
        .prepare_cached(&format!(
            "SELECT rowid FROM product_fts WHERE product_fts MATCH ?1 {order} LIMIT ?2 OFFSET ?3"
        ))?
        .query_map(params![fts, i64::from(q.limit), i64::from(q.offset)], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(hit) = exact_hit {
        if let Some(i) = rowids.iter().position(|r| *r == hit) {
            rowids.remove(i);
            rowids.insert(0, hit);
        } else if q.offset == 0 {
            rowids.insert(0, hit);
            rowids.truncate(q.limit as usize);
        }
    }
    let mut items = Vec::with_capacity(rowids.len());
    for rowid in rowids {
        let sku: Option<String> = c
            .prepare_cached("SELECT sku FROM product WHERE rowid = ?1")?
            .query_row([rowid], |r| r.get(0))
            .optional()?;
        if let Some(p) = sku
            .map(|s| product_view(c, &s, now_ms))
            .transpose()?
            .flatten()
        {
            items.push(p);
        }
    }
    Ok((items, total.max(0) as u64))
}

/// A category's sellable SKUs by name: one range of `category_member` (kept by triggers,
/// sellable SKUs only), read in the order of its sort key (store/fold.rs `sort_key`: case and
/// marks ignored, Æ Ø Å after Z) up to the page and counted on its own, so the cost follows
/// the page and the category's size, never the catalog's.
fn category_listing(
    c: &Connection,
    category: &str,
    q: &SearchQuery,
    now_ms: i64,
) -> Result<(Vec<ProductView>, u64)> {
    let skus: Vec<String> = c
        .prepare_cached(
            "SELECT sku FROM category_member INDEXED BY category_member_by_key
             WHERE category_id = ?1 ORDER BY sort_key, name, sku LIMIT ?2 OFFSET ?3",
        )?
        .query_map(
            params![category, i64::from(q.limit), i64::from(q.offset)],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM category_member WHERE category_id = ?1")?
        .query_row([category], |r| r.get(0))?;
    let mut items = Vec::with_capacity(skus.len());
    for sku in skus {
        if let Some(p) = product_view(c, &sku, now_ms)? {
            items.push(p);
        }
    }
    Ok((items, total.max(0) as u64))
}

use super::fold::fts_query;

pub(super) fn product_view(c: &Connection, sku: &str, now_ms: i64) -> Result<Option<ProductView>> {
    let row = c
        .prepare_cached(
            "SELECT sku, product_id, name, brand, ean, category_ids, image_urls, active, cost_price
             FROM product WHERE sku = ?1",
        )?
        .query_row([sku], |r| {
            Ok((
                ProductView {
                    sku: r.get(0)?,
                    product_id: r.get(1)?,
                    name: r.get(2)?,
                    brand: r.get(3)?,
                    ean: r.get(4)?,
                    category_ids: Vec::new(),
                    image_urls: Vec::new(),
                    active: r.get(7)?,
                    cost_price: r.get(8)?,
                    price: None,
                    member_price: None,
                },
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .optional()?;
    let Some((mut view, categories, images)) = row else {
        return Ok(None);
    };
    view.category_ids = serde_json::from_str(&categories).unwrap_or_default();
    view.image_urls = serde_json::from_str(&images).unwrap_or_default();
    // Store-specific beats market-wide, variant-specific beats product-level; among equals
    // the lowest (a campaign) wins. Windows are checked now, not at sync time. Club prices
    // are chosen the same way, among themselves. The SKU's few rows are read with one
    // statement and chosen here: with `now` in the WHERE clause (`valid_from IS NULL OR
    // valid_from <= ?`) SQLite recompiled the statement at every call (a bound value the plan
    // had looked at changed), which cost most of a search's time.
    let mut best: [Option<(PriceView, PriceRank)>; 2] = [None, None];
    let mut stmt = c.prepare_cached(
        "SELECT unit_price, currency, valid_from, valid_until, store_specific, variant_specific, member
         FROM price WHERE sku = ?1",
    )?;
    let mut rows = stmt.query([sku])?;
    while let Some(r) = rows.next()? {
        let (from, until): (Option<i64>, Option<i64>) = (r.get(2)?, r.get(3)?);
        if from.is_some_and(|f| f > now_ms) || until.is_some_and(|u| u <= now_ms) {
            continue;
        }
        let unit_price: i64 = r.get(0)?;
        // Higher is better: store-specific, then variant-specific, then the lower price.
        let key = (r.get::<_, bool>(4)?, r.get::<_, bool>(5)?, -unit_price);
        let slot = &mut best[usize::from(r.get::<_, bool>(6)?)];
        if slot.as_ref().is_none_or(|(_, k)| key > *k) {
            *slot = Some((
                PriceView {
                    unit_price,
                    currency: r.get(1)?,
                    valid_from: from,
                    valid_until: until,
                },
                key,
            ));
        }
    }
    let [shelf, member] = best;
    view.price = shelf.map(|(p, _)| p);
    view.member_price = member.map(|(p, _)| p);
    Ok(Some(view))
}

/// Expands recorded stock movements (`stock_movement_todo`, one row per job) into
/// `stock_movement` rows (one per line, `line` = index in the effects) and deletes the rows
/// expanded, for the jobs `WHERE` picks (`{}` in both: a condition on `job_id`). Both in the
/// caller's transaction: the movements are expanded whole or not at all, so a crash at any
/// point leaves each one counted once, in one table or the other.
///
/// The recorded rows are read, their effects parsed here and each movement inserted by one
/// cached statement ([`INSERT_MOVEMENT`]): an `INSERT … SELECT` over `json_each` with a
/// `json_extract` per field parsed each line's JSON three more times, 17,000 instructions a
/// movement (the drain's claim, issue 10 target 5).
const EXPAND_MOVEMENTS: [&str; 2] = [
    "SELECT job_id, effects FROM stock_movement_todo WHERE {}",
    "DELETE FROM stock_movement_todo WHERE {}",
];

const INSERT_MOVEMENT: &str =
    "INSERT INTO stock_movement (job_id, line, sku, warehouse_id, quantity) VALUES (?1, ?2, ?3, ?4, ?5)";

/// [`EXPAND_MOVEMENTS`] for jobs `?1..=?2`, and for the jobs of a JSON list of ids `?1`.
fn expand_sql(by_ids: bool) -> &'static [String; 2] {
    static SQL: std::sync::OnceLock<[[String; 2]; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [
            "job_id BETWEEN ?1 AND ?2",
            "job_id IN (SELECT value FROM json_each(?1))",
        ]
        .map(|cond| EXPAND_MOVEMENTS.map(|sql| sql.replace("{}", cond)))
    });
    &all[usize::from(by_ids)]
}

/// Runs [`EXPAND_MOVEMENTS`] (`sql`, bound to `p`); returns the movement rows written.
fn expand_with<P: rusqlite::Params + Copy>(
    tx: &rusqlite::Connection,
    sql: &[String; 2],
    p: P,
) -> Result<usize> {
    let [select, delete] = sql;
    let recorded: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached(select)?;
        let rows = stmt.query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut rows = 0;
    if !recorded.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_MOVEMENT)?;
        for (job_id, effects) in &recorded {
            // `[[sku, warehouse_id, quantity], …]`, as `StockEffects` wrote it. A quantity
            // is read from its text by `str::parse` (correctly rounded: the value written,
            // bit for bit; serde_json's own float reading can be a unit in the last place
            // off), and text is borrowed unless it has an escape.
            type Raw<'a> = &'a serde_json::value::RawValue;
            let mut insert_line = |line: usize, sku: &str, wh: &str, q: Raw| -> Result<()> {
                let quantity: f64 = q.get().parse().map_err(internal)?;
                insert.execute(params![job_id, line as i64, sku, wh, quantity])?;
                Ok(())
            };
            match serde_json::from_str::<Vec<(&str, &str, Raw)>>(effects) {
                Ok(lines) => {
                    for (line, (sku, wh, q)) in lines.iter().enumerate() {
                        insert_line(line, sku, wh, q)?;
                    }
                    rows += lines.len();
                }
                Err(_) => {
                    let lines: Vec<(String, String, Raw)> =
                        serde_json::from_str(effects).map_err(internal)?;
                    for (line, (sku, wh, q)) in lines.iter().enumerate() {
                        insert_line(line, sku, wh, q)?;
                    }
                    rows += lines.len();
                }
            }
        }
    }
    if rows > 0 {
        // Rows written, the recorded ones not deleted yet: a kill here rolls back both.
        crate::sync::kill_point("mid_expansion");
    }
    if !recorded.is_empty() {
        tx.prepare_cached(delete)?.execute(p)?;
    }
    Ok(rows)
}

/// Jobs whose movements one expansion takes at most (bounds how long it holds the writer).
pub(crate) const EXPAND_BATCH: i64 = 512;

/// A job's effects on local stock, held as they are stored until expanded: the JSON array
/// `[[sku, warehouse_id, quantity], …]`, a line's number its index. Written as each effect is
/// added, so recording builds no list of them (nor copies of their strings) first.
/// Quantities are written in their shortest exact form and read back to the same value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StockEffects {
    /// `[...]` once one effect is in, empty before.
    json: Vec<u8>,
    lines: usize,
    /// The SKU of a quantity that was not finite: refused when stored, as before (a NOT
    /// NULL column refused the NULL SQLite makes of a NaN).
    not_finite: Option<String>,
}

impl StockEffects {
    pub fn with_capacity(lines: usize) -> StockEffects {
        StockEffects {
            json: Vec::with_capacity(if lines == 0 { 0 } else { 2 + 48 * lines }),
            ..StockEffects::default()
        }
    }

    pub fn push(&mut self, sku: &str, warehouse_id: &str, quantity: f64) {
        if !quantity.is_finite() {
            self.not_finite.get_or_insert_with(|| sku.to_string());
            return;
        }
        let out = &mut self.json;
        if out.pop().is_some() {
            out.push(b',');
        } else {
            out.push(b'[');
        }
        out.push(b'[');
        // Writing into a Vec cannot fail, and a &str and a finite f64 always serialize.
        crate::model::raw::push_json_str(out, sku);
        out.push(b',');
        crate::model::raw::push_json_str(out, warehouse_id);
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, &quantity);
        out.extend_from_slice(b"]]");
        self.lines += 1;
    }

    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0 && self.not_finite.is_none()
    }

    /// The stored form (see [`StockEffects`]).
    pub(crate) fn json(&self) -> Result<&str> {
        if let Some(sku) = &self.not_finite {
            return Err(crate::error::Error::InvalidInput(format!(
                "a stock movement of {sku:?} has no finite quantity"
            )));
        }
        std::str::from_utf8(&self.json).map_err(internal)
    }
}

impl From<Vec<StockEffect>> for StockEffects {
    fn from(effects: Vec<StockEffect>) -> StockEffects {
        let mut out = StockEffects::with_capacity(effects.len());
        for e in &effects {
            out.push(&e.sku, &e.warehouse_id, e.quantity);
        }
        out
    }
}

fn internal(e: impl std::fmt::Display) -> crate::error::Error {
    crate::error::Error::Internal(format!("stock movements: {e}"))
}

impl Store {
    /// Records a job's stock effects on the recording path: one row, expanded later (see
    /// [`Store::expand_movements_of`]). Nothing is written for a job without effects.
    pub(crate) fn insert_movements(
        tx: &rusqlite::Connection,
        job_id: i64,
        effects: &StockEffects,
    ) -> Result<()> {
        if effects.is_empty() {
            return Ok(());
        }
        let json = effects.json()?;
        // OR ROLLBACK: no statement journal (see `outbox::record_in`).
        tx.prepare_cached(
            "INSERT OR ROLLBACK INTO stock_movement_todo (job_id, effects) VALUES (?1, ?2)",
        )?
        .execute(params![job_id, json])?;
        Ok(())
    }

    /// Expands the recorded movements of jobs `first..=last` (see [`EXPAND_MOVEMENTS`]) in
    /// the caller's transaction; returns the rows written.
    pub(crate) fn expand_movements_of(
        tx: &rusqlite::Connection,
        first: i64,
        last: i64,
    ) -> Result<usize> {
        expand_with(tx, expand_sql(false), params![first, last])
    }

    /// As [`Store::expand_movements_of`], for the jobs of a JSON list of ids (a claim).
    pub(crate) fn expand_movements_of_ids(tx: &rusqlite::Connection, ids: &str) -> Result<usize> {
        expand_with(tx, expand_sql(true), [ids])
    }

    /// Expands the oldest recorded movements, at most `EXPAND_BATCH` jobs, in the caller's
    /// transaction; returns whether any were left unexpanded.
    pub(crate) fn expand_movements_batch(tx: &rusqlite::Connection) -> Result<bool> {
        let last: Option<i64> = tx
            .prepare_cached(
                "SELECT job_id FROM stock_movement_todo ORDER BY job_id LIMIT 1 OFFSET ?1",
            )?
            .query_row([EXPAND_BATCH - 1], |r| r.get(0))
            .optional()?;
        Self::expand_movements_of(tx, i64::MIN, last.unwrap_or(i64::MAX))?;
        Ok(last.is_some()
            && tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM stock_movement_todo)")?
                .query_row([], |r| r.get(0))?)
    }

    /// Expands every recorded movement in the caller's transaction (before a change that
    /// counts movements by SKU rather than by job: an inventory count).
    pub(crate) fn expand_all_movements(tx: &rusqlite::Connection) -> Result<()> {
        Self::expand_movements_of(tx, i64::MIN, i64::MAX)?;
        Ok(())
    }

    /// Expands recorded movements in short transactions of their own, taken as background
    /// work (never ahead of a waiting recording call) at `synchronous = NORMAL`: an
    /// expansion changes no count, so losing the last ones to a power cut loses nothing
    /// (WAL commits are whole; a later FULL commit makes them durable). The worker runs it
    /// while it claims nothing, so readers have few rows to expand on the fly.
    pub fn expand_movements_aside(&self) -> Result<()> {
        let any = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT EXISTS (SELECT 1 FROM stock_movement_todo)")?
                    .query_row([], |r| r.get::<_, bool>(0))?,
            )
        })?;
        if !any {
            return Ok(());
        }
        while self.background_write(|tx, _| Self::expand_movements_batch(tx))? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobFate, JobUpdate, NewJob};

    fn level(modified_ms: i64, quantity: f64) -> StockLevel {
        StockLevel {
            sku: "SKU-1".into(),
            warehouse_id: "oslo-1".into(),
            quantity,
            reserved: 0.0,
            modified_ms,
        }
    }

    /// (quantity, pending) for SKU-1 in oslo-1.
    fn read(s: &Store) -> (f64, f64) {
        let v = s.stock("SKU-1", &["oslo-1".to_string()]).unwrap().unwrap();
        (v.warehouses[0].quantity, v.warehouses[0].pending)
    }

    fn sell(s: &Store, id: &str) -> i64 {
        let job = NewJob {
            kind: "sale",
            event_id: id,
            entity_id: id,
            content: "{}",
            blob: None,
        };
        let effect = StockEffect {
            sku: "SKU-1".into(),
            warehouse_id: "oslo-1".into(),
            quantity: -2.0,
        };
        s.record(&job, 0, |_| {
            Ok(crate::store::Extras {
                effects: vec![effect].into(),
                extra: None,
            })
        })
        .unwrap();
        s.claim_due(1, 10).unwrap()[0].id
    }

    fn deliver(s: &Store, job_id: i64, accepted_ms: i64) {
        let fate = JobFate::Delivered {
            accepted_ms: Some(accepted_ms),
        };
        let claim: i64 = s
            .conn()
            .query_row(
                "SELECT claim FROM outbox_job WHERE id = ?1",
                [job_id],
                |r| r.get(0),
            )
            .unwrap();
        s.finish(
            &[JobUpdate {
                job_id,
                claim,
                fate,
                step: None,
                sent: true,
            }],
            5,
        )
        .unwrap();
    }

    fn product(n: usize) -> CatalogProduct {
        let sku = format!("SKU-{n}");
        CatalogProduct {
            product_id: format!("P-{n}"),
            skus: vec![crate::model::catalog::SkuRow {
                sku: sku.clone(),
                product_id: format!("P-{n}"),
                name: format!("Product {n}"),
                brand: Some("Brand".into()),
                ean: None,
                gtins: vec![],
                category_ids: vec!["C-1".into()],
                image_urls: vec![],
                active: true,
                language: Some("no".into()),
                cost_price: None,
            }],
            prices: vec![crate::model::catalog::PriceRow {
                sku,
                unit_price: 100,
                currency: "NOK".into(),
                store_specific: false,
                variant_specific: false,
                member: false,
                valid_from: None,
                valid_until: None,
            }],
            modified_ms: Some(1),
        }
    }

    fn synchronous(s: &Store) -> i64 {
        s.conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    fn levels(n: usize) -> Vec<StockLevel> {
        (0..n)
            .map(|i| StockLevel {
                sku: format!("SKU-{i:03}"),
                ..level(1, 5.0)
            })
            .collect()
    }

    fn level_count(s: &Store) -> i64 {
        s.read(|c| Ok(c.query_row("SELECT count(*) FROM stock_level", [], |r| r.get(0))?))
            .unwrap()
    }

    /// Issue 10 target 4: a catalog page never takes the outbox's writer (it commits on the
    /// catalog file's own connection), so a page is applied whole while a recording call
    /// holds the writer. Before the catalog had its own file the page waited for the
    /// writer (and a record call for the page).
    #[test]
    fn a_catalog_page_commits_while_the_outbox_writer_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let products: Vec<CatalogProduct> = (0..50).map(product).collect();
        let held = s.conn();
        let (done, applied) = std::sync::mpsc::channel();
        let page = {
            let s = s.clone();
            std::thread::spawn(move || {
                let cursor = CursorAdvance {
                    dataset: "products",
                    high_water_ms: Some(5),
                    now_ms: 1,
                };
                s.apply_products(&products, Some(&cursor)).unwrap();
                s.replace_categories(&[], None).unwrap();
                s.mark_settled("products", 5).unwrap();
                let _ = done.send(());
            })
        };
        applied
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the page waited for the outbox's writer");
        assert_eq!(s.sku_count().unwrap(), 50);
        assert_eq!(s.cursor("products").unwrap(), (Some(5), true));
        drop(held);
        page.join().unwrap();
        // Nothing of it in the main file.
        let tables: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('product', 'price', 'product_fts')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }

    /// Issue 10 target 4: a record call that waits for the writer goes before a stock page
    /// queued for it. With a plain mutex the page (queued first) took the lock first and
    /// committed everything before the caller got in.
    #[test]
    fn a_caller_waiting_for_the_writer_goes_before_a_stock_page() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let page_levels = levels(50);
        let held = s.conn();
        let page = {
            let s = s.clone();
            std::thread::spawn(move || s.apply_stock(&page_levels, None).unwrap())
        };
        // The page is queued for the lock (not counted as a waiting caller).
        std::thread::sleep(std::time::Duration::from_millis(100));
        let caller = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.conn()
                    .query_row("SELECT count(*) FROM stock_level", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .unwrap()
            })
        };
        while !s.callers_waiting() {
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(caller.join().unwrap(), 0, "the caller went first");
        page.join().unwrap();
        assert_eq!(level_count(&s), 50);
        assert_eq!(synchronous(&s), 2, "FULL again after the page");
    }

    /// A stock page commits early when a caller starts waiting in the middle of it, and the
    /// rest follows in later transactions, with the cursor in the last.
    #[test]
    fn a_page_commits_early_for_a_caller_and_the_cursor_comes_with_the_last_level() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let cursor = CursorAdvance {
            dataset: "stock",
            high_water_ms: Some(77),
            now_ms: 1,
        };
        // As if a caller were waiting throughout: one transaction per level, each seeing
        // the cursor unmoved until the last.
        s.yield_always
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let page_levels = levels(25);
        let s = std::sync::Arc::new(s);
        let watcher = {
            let s = s.clone();
            std::thread::spawn(move || {
                // Reads (another connection) see no cursor before all levels.
                let mut seen = Vec::new();
                loop {
                    let (n, c) = s
                        .read(|c| {
                            // One statement: one snapshot.
                            Ok(c.query_row(
                                "SELECT (SELECT count(*) FROM stock_level),
                                        (SELECT high_water_ms FROM pull_cursor WHERE dataset = 'stock')",
                                [],
                                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
                            )?)
                        })
                        .unwrap();
                    assert!(c.is_none() || n == 25, "{n} levels with the cursor moved");
                    seen.push(n);
                    if n == 25 {
                        return seen;
                    }
                    std::thread::yield_now();
                }
            })
        };
        s.apply_stock(&page_levels, Some(&cursor)).unwrap();
        let seen = watcher.join().unwrap();
        assert!(seen.iter().all(|&n| (0..=25).contains(&n)));
        assert_eq!(s.cursor("stock").unwrap().0, Some(77));
        assert_eq!(level_count(&s), 25);
        assert_eq!(synchronous(&s), 2);
    }

    /// Batches follow their measured time towards the target, by at most a factor of two
    /// at a time, within bounds (a slow table grows; a preempted batch is not a trend).
    #[test]
    fn batch_size_follows_the_time_a_batch_took() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(next_batch(32, ms(2), ms(2)), 32);
        assert_eq!(next_batch(32, ms(3), ms(2)), 21);
        assert_eq!(next_batch(32, ms(40), ms(2)), 16, "at most halved");
        assert_eq!(next_batch(32, ms(1), ms(2)), 64);
        assert_eq!(
            next_batch(32, std::time::Duration::ZERO, ms(2)),
            64,
            "at most doubled"
        );
        assert_eq!(next_batch(MIN_BATCH, ms(100), ms(2)), MIN_BATCH);
        assert_eq!(next_batch(MAX_BATCH, ms(0), ms(2)), MAX_BATCH);
    }

    /// Everything a product batch writes, in a comparable form.
    fn dump(s: &Store) -> Vec<String> {
        let c = s.catalog().unwrap();
        let mut out = Vec::new();
        for sql in [
            "SELECT sku || '|' || product_id || '|' || name || '|' || IFNULL(brand, '-') || '|' ||
                    active || '|' || category_ids FROM product ORDER BY sku",
            "SELECT product_sku || '|' || category_id FROM product_category
             ORDER BY product_sku, category_id",
            "SELECT sku || '|' || unit_price || '|' || variant_specific FROM price
             ORDER BY sku, unit_price",
            "SELECT p.sku FROM product_fts f JOIN product p ON p.rowid = f.rowid
             WHERE product_fts MATCH 'brand OR product*' ORDER BY p.sku",
        ] {
            let mut stmt = c.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            out.extend(rows.map(Result::unwrap));
            out.push("--".into());
        }
        out
    }

    fn with_skus(id: &str, skus: &[&str], name: &str, price: i64) -> CatalogProduct {
        let mut p = product(0);
        p.product_id = id.into();
        let template = p.skus[0].clone();
        p.skus = skus
            .iter()
            .map(|sku| crate::model::catalog::SkuRow {
                sku: (*sku).into(),
                product_id: id.into(),
                name: format!("{name} {sku}"),
                category_ids: vec![format!("C-{name}")],
                ..template.clone()
            })
            .collect();
        let price_template = p.prices[0].clone();
        p.prices = skus
            .iter()
            .map(|sku| crate::model::catalog::PriceRow {
                sku: (*sku).into(),
                unit_price: price,
                ..price_template.clone()
            })
            .collect();
        p
    }

    /// The set-wise batch writes exactly what product-by-product upserts write: SKUs that
    /// move between products or leave one, changed categories and prices, and batches
    /// naming a product or a SKU twice (the last occurrence wins).
    #[test]
    fn a_batch_writes_what_one_product_at_a_time_writes() {
        let pages: Vec<Vec<CatalogProduct>> = vec![
            vec![
                with_skus("P-1", &["A", "B", "C"], "shirt", 100),
                with_skus("P-2", &["D"], "cap", 200),
            ],
            // B leaves P-1 for P-2, C leaves the catalog's P-1 altogether.
            vec![
                with_skus("P-2", &["D", "B"], "hat", 210),
                with_skus("P-1", &["A"], "shirt", 110),
            ],
            // The old owner after the new one, in one batch.
            vec![
                with_skus("P-3", &["A"], "sock", 5),
                with_skus("P-1", &["E"], "shirt", 120),
            ],
            // A product twice, and a SKU in two products: one by one, the last wins.
            vec![
                with_skus("P-4", &["F", "G"], "belt", 300),
                with_skus("P-4", &["F"], "belt", 310),
                with_skus("P-5", &["D"], "scarf", 400),
            ],
        ];
        let dir = tempfile::tempdir().unwrap();
        let one = Store::open(&dir.path().join("one.db")).unwrap();
        let batch = Store::open(&dir.path().join("batch.db")).unwrap();
        for page in &pages {
            one.catalog_write(|tx, _| {
                for p in page {
                    upsert_product(tx, p)?;
                }
                Ok(())
            })
            .unwrap();
            batch
                .catalog_write(|tx, _| upsert_products(tx, page))
                .unwrap();
            assert_eq!(dump(&one), dump(&batch));
        }
        let d = dump(&batch);
        assert!(
            d.contains(&"C|P-1|shirt C|Brand|0|[\"C-shirt\"]".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"G|P-4|belt G|Brand|0|[\"C-belt\"]".to_string()),
            "{d:?}"
        );
    }

    /// A background write that fails leaves the writer at synchronous=FULL.
    #[test]
    fn a_failed_background_write_leaves_the_writer_durable() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let r: Result<()> = s.background_write(|tx, _| {
            let sync: i64 = tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            assert_eq!(sync, 1, "NORMAL inside");
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(())
        });
        assert!(r.is_err());
        assert_eq!(synchronous(&s), 2);
        let auto: i64 = s
            .conn()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        // With the checkpoint thread, SQLite's automatic checkpoint stays off (the thread's
        // WAL hook replaces it, and the pragma reads 0 while that hook is on).
        assert_eq!(
            auto, 0,
            "the checkpoint thread's WAL hook is still on the writer"
        );
        // A background write that panics: the next use of the writer restores FULL.
        let s = std::sync::Arc::new(s);
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _: Result<()> = s2.background_write(|_, _| panic!("a bug in a page"));
        })
        .join();
        assert_eq!(synchronous(&s), 2);
    }

    /// Omnium stamps the order at 1000 when it accepts the sale; a level stamped at or
    /// after 1000 includes it, one stamped before does not. Every order of events.
    #[test]
    fn a_sale_is_counted_exactly_once_whatever_order_delivery_and_levels_arrive_in() {
        let dir = tempfile::tempdir().unwrap();
        // Old level, sale, delivery, the old level again (overlap), then the new level.
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        s.apply_stock(&[level(900, 10.0)], None).unwrap();
        let job = sell(&s, "S-1");
        assert_eq!(read(&s), (10.0, -2.0), "pending while it travels");
        deliver(&s, job, 1000);
        assert_eq!(
            read(&s),
            (10.0, -2.0),
            "delivered, but no level counts it yet"
        );
        s.apply_stock(&[level(900, 10.0)], None).unwrap();
        assert_eq!(
            read(&s),
            (10.0, -2.0),
            "a re-read of the old level changes nothing"
        );
        s.apply_stock(&[level(1000, 8.0)], None).unwrap();
        assert_eq!(read(&s), (8.0, 0.0), "counted once, in the level");
        s.apply_stock(&[level(900, 10.0)], None).unwrap();
        assert_eq!(read(&s), (8.0, 0.0), "a level never goes back in time");

        // Sale, then a level pulled before the delivery is known, then the delivery.
        let s = Store::open(&dir.path().join("b.db")).unwrap();
        let job = sell(&s, "S-2");
        s.apply_stock(&[level(800, 10.0)], None).unwrap();
        assert_eq!(read(&s), (10.0, -2.0));
        deliver(&s, job, 1000);
        assert_eq!(read(&s), (10.0, -2.0));
        s.apply_stock(&[level(1200, 8.0)], None).unwrap();
        assert_eq!(read(&s), (8.0, 0.0));

        // No level at all until after delivery.
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        let job = sell(&s, "S-3");
        assert_eq!(read(&s), (0.0, -2.0));
        deliver(&s, job, 1000);
        s.apply_stock(&[level(1001, -2.0)], None).unwrap();
        assert_eq!(read(&s), (-2.0, 0.0));

        // A level newer than the acceptance arrives before the worker records the
        // delivery (it crashed in between): the sale stays pending until the delivery is
        // confirmed, then counts once.
        let s = Store::open(&dir.path().join("d.db")).unwrap();
        let job = sell(&s, "S-4");
        s.apply_stock(&[level(1500, 8.0)], None).unwrap();
        assert_eq!(read(&s), (8.0, -2.0), "not yet known to be in the level");
        deliver(&s, job, 1000);
        assert_eq!(read(&s), (8.0, 0.0));
    }

    fn sku(sku: &str, name: &str, brand: &str, categories: &[&str]) -> CatalogProduct {
        CatalogProduct {
            product_id: format!("P-{sku}"),
            skus: vec![crate::model::catalog::SkuRow {
                sku: sku.into(),
                product_id: format!("P-{sku}"),
                name: name.into(),
                brand: Some(brand.into()),
                ean: None,
                gtins: Vec::new(),
                category_ids: categories.iter().map(|c| c.to_string()).collect(),
                image_urls: Vec::new(),
                active: true,
                language: Some("no".into()),
                cost_price: None,
            }],
            prices: Vec::new(),
            modified_ms: None,
        }
    }

    /// Issue 10 target 6: a delta re-reads products that did not change; their SKU rows,
    /// category links and prices are not written again (every one was deleted and inserted,
    /// or updated to the same values), and a change writes only what changed.
    #[test]
    fn a_delta_of_unchanged_products_writes_no_row_and_a_change_only_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let price = |unit_price, member, valid_from| crate::model::catalog::PriceRow {
            sku: "A-1".into(),
            unit_price,
            currency: "NOK".into(),
            store_specific: false,
            variant_specific: true,
            member,
            valid_from,
            valid_until: None,
        };
        let mut products = vec![
            sku("A-1", "Genser", "Nora", &["c1", "c2"]),
            sku("A-2", "Lue", "Nora", &["c1"]),
        ];
        products[0].prices = vec![price(100, false, None), price(80, true, Some(5))];
        s.apply_products(&products, None).unwrap();
        let writes = |s: &Store| -> i64 {
            s.catalog()
                .unwrap()
                .query_row("SELECT n FROM temp.writes", [], |r| r.get(0))
                .unwrap()
        };
        {
            let c = s.catalog().unwrap();
            let mut sql = String::from(
                "CREATE TEMP TABLE writes (n INTEGER NOT NULL); INSERT INTO temp.writes VALUES (0);",
            );
            for table in ["product", "product_category", "price"] {
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    sql.push_str(&format!(
                        "CREATE TEMP TRIGGER w_{table}_{event} AFTER {event} ON main.{table}
                         BEGIN UPDATE temp.writes SET n = n + 1; END;"
                    ));
                }
            }
            c.execute_batch(&sql).unwrap();
        }
        s.apply_products(&products, None).unwrap();
        assert_eq!(writes(&s), 0, "unchanged rows written again");
        products[0].skus[0].name = "Genser ull".into();
        products[0].prices[1].unit_price = 90;
        products[1].skus[0].category_ids = vec!["c3".into()];
        s.apply_products(&products, None).unwrap();
        // A-1's name, A-2's row (its category list), a price out and in, a link out and in.
        assert_eq!(writes(&s), 6);
        let a1 = s.product("A-1", 10).unwrap().unwrap();
        assert_eq!(a1.name, "Genser ull");
        assert_eq!(a1.price.map(|p| p.unit_price), Some(100));
        assert_eq!(a1.member_price.map(|p| p.unit_price), Some(90));
        assert_eq!(list(&s, "c1"), ["Genser ull"]);
        assert_eq!(list(&s, "c3"), ["Lue"]);
        assert_eq!(find(&s, "genser ull"), ["A-1"]);
    }

    fn find(s: &Store, text: &str) -> Vec<String> {
        let q = SearchQuery {
            text: Some(text.into()),
            limit: 50,
            ..SearchQuery::default()
        };
        let (items, total) = s.search_products(&q, 0).unwrap();
        assert_eq!(total as usize, items.len(), "{text:?}");
        let mut skus: Vec<String> = items.into_iter().map(|p| p.sku).collect();
        skus.sort();
        skus
    }

    /// Issue 12, search at the till: CJK words, `ß`, and the Nordic letters as a Norwegian
    /// cashier types them on any keyboard; index and query folded alike.
    #[test]
    fn search_finds_cjk_words_sharp_s_and_nordic_letters_typed_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        s.apply_products(
            &[
                sku("MATCHA", "抹茶ラテ 200g", "Uji", &["te"]),
                sku("KIMCHI", "김치 볶음밥", "Bibigo", &["mat"]),
                sku("KART-1", "Straßenkarte Oslo", "Kümmerly", &["kart"]),
                sku("SMOR", "Smørbrødpapir", "Fjord", &["kjokken"]),
                sku("BLAB", "Blåbærsyltetøy", "Nora", &["mat"]),
                sku("ERF", "Ærfugldyne", "Nordisk", &["tekstil"]),
                sku("OST", "Ost Gulost", "Tine", &["mat"]),
                sku("OST2", "Østlandsk flatbrød", "Bakehuset", &["mat"]),
            ],
            None,
        )
        .unwrap();
        // A word inside a CJK name, and a CJK run typed as it appears.
        assert_eq!(find(&s, "ラテ"), ["MATCHA"]);
        assert_eq!(find(&s, "茶"), ["MATCHA"]);
        assert_eq!(find(&s, "볶음"), ["KIMCHI"]);
        assert!(find(&s, "茶抹").is_empty(), "a CJK run matches in order");
        // ß and ss.
        assert_eq!(find(&s, "strasse"), ["KART-1"]);
        assert_eq!(find(&s, "straße"), ["KART-1"]);
        assert_eq!(find(&s, "kummerly"), ["KART-1"]);
        // ø, æ, å typed as themselves, as the letter a foreign keyboard has, or spelt out.
        for typed in ["smørbrød", "smorbrod", "smoerbroed", "SMØR"] {
            assert_eq!(find(&s, typed), ["SMOR"], "{typed}");
        }
        for typed in ["blåbær", "blabaer", "blaabaer", "blabar", "bla"] {
            assert_eq!(find(&s, typed), ["BLAB"], "{typed}");
        }
        for typed in ["ærfugl", "aerfugl", "arfugl", "Æ"] {
            assert_eq!(find(&s, typed), ["ERF"], "{typed}");
        }
        // "ø" never fails to find "ø", and "o" finds it too (the cashier may lack the key):
        // one folded index, so both spellings give the same answer.
        assert_eq!(find(&s, "øst"), ["OST", "OST2"]);
        assert_eq!(find(&s, "ost"), ["OST", "OST2"]);
        // Each keystroke of a word still finds it.
        let word: Vec<char> = "Smørbrødpapir".chars().collect();
        for n in 1..=word.len() {
            let typed: String = word[..n].iter().collect();
            assert!(find(&s, &typed).contains(&"SMOR".to_string()), "{typed}");
        }
        // A rename and a deactivation reach the folded index.
        s.apply_products(&[sku("KART-1", "Gatekart", "Kümmerly", &["kart"])], None)
            .unwrap();
        assert!(find(&s, "strasse").is_empty());
        assert_eq!(find(&s, "gatekart"), ["KART-1"]);
        let mut gone = sku("MATCHA", "抹茶ラテ 200g", "Uji", &["te"]);
        gone.skus[0].active = false;
        s.apply_products(&[gone], None).unwrap();
        assert!(find(&s, "ラテ").is_empty());
    }

    /// How many SQLite VM instructions (in thousands) `f` runs on `c`.
    fn vm_kilo_ops(c: &Connection, f: impl FnOnce()) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static OPS: AtomicUsize = AtomicUsize::new(0);
        extern "C" fn count(_: *mut std::ffi::c_void) -> std::ffi::c_int {
            OPS.fetch_add(1, Ordering::Relaxed);
            0
        }
        OPS.store(0, Ordering::Relaxed);
        // SAFETY: the handle is live for the call; the handler is removed before returning.
        unsafe {
            rusqlite::ffi::sqlite3_progress_handler(
                c.handle(),
                1000,
                Some(count),
                std::ptr::null_mut(),
            )
        };
        f();
        unsafe {
            rusqlite::ffi::sqlite3_progress_handler(c.handle(), 0, None, std::ptr::null_mut())
        };
        OPS.load(Ordering::Relaxed)
    }

    /// Issue 12: listing a small category costs the same at 300 and at 6,000 SKUs (it was a
    /// walk of every sellable SKU by name); renames, deactivations and relinks keep it right.
    #[test]
    fn a_category_listing_is_indexed_not_linear_in_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let q = SearchQuery {
            category_id: Some("small".into()),
            limit: 50,
            ..SearchQuery::default()
        };
        // On a reader, as the till reads it (the catalog file attached).
        let listing = |s: &Store| -> (Vec<String>, u64, usize) {
            s.read(|conn| {
                let mut out = None;
                let ops = vm_kilo_ops(conn, || {
                    out = Some(category_listing(conn, "small", &q, 0).unwrap())
                });
                let (items, total) = out.unwrap();
                Ok((items.into_iter().map(|p| p.sku).collect(), total, ops))
            })
            .unwrap()
        };
        let mut products = vec![
            sku("S-2", "Bukse", "A", &["small", "big"]),
            sku("S-1", "Anorakk", "A", &["small"]),
            sku("S-3", "Caps", "A", &["small"]),
        ];
        products.extend(
            (0..300).map(|i| sku(&format!("B-{i}"), &format!("Genser {i:05}"), "B", &["big"])),
        );
        s.apply_products(&products, None).unwrap();
        let (skus, total, small_ops) = listing(&s);
        assert_eq!(skus, ["S-1", "S-2", "S-3"]);
        assert_eq!(total, 3);
        let more: Vec<_> = (300..6000)
            .map(|i| sku(&format!("B-{i}"), &format!("Genser {i:05}"), "B", &["big"]))
            .collect();
        s.apply_products(&more, None).unwrap();
        let (skus, total, big_ops) = listing(&s);
        assert_eq!((skus.len(), total), (3, 3));
        assert!(
            big_ops <= small_ops + 2,
            "{big_ops}k VM instructions at 6,000 SKUs, {small_ops}k at 300"
        );
        // Kept right by the writes that touch it.
        s.apply_products(&[sku("S-1", "Zebra-anorakk", "A", &["small"])], None)
            .unwrap();
        let mut off = sku("S-3", "Caps", "A", &["small"]);
        off.skus[0].active = false;
        s.apply_products(&[off, sku("S-2", "Bukse", "A", &["big"])], None)
            .unwrap();
        s.apply_products(&[sku("B-7", "Alpakka", "B", &["big", "small"])], None)
            .unwrap();
        let (skus, total, _) = listing(&s);
        assert_eq!(skus, ["B-7", "S-1"]);
        assert_eq!(total, 2);
    }

    /// A database from before folded search is re-indexed by the migration: its products are
    /// found folded and its categories listed from the new index.
    #[test]
    fn an_older_database_is_reindexed_folded_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
            let before = super::super::schema::version_with("CREATE TABLE category_member") - 1;
            super::super::schema::migrate_to(&conn, before).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA application_id = {};
                 INSERT INTO product (sku, product_id, name, brand, ean, gtins, category_ids, image_urls, active)
                 VALUES ('G-1', 'P-1', 'Gløgg Straße', 'Ærlig', NULL, '', '[\"jul\"]', '[]', 1),
                        ('G-2', 'P-2', 'Gløgg alkoholfri', 'Ærlig', NULL, '', '[\"jul\"]', '[]', 0);
                 INSERT INTO product_category (product_sku, category_id) VALUES ('G-1', 'jul'), ('G-2', 'jul');",
                super::super::APPLICATION_ID
            ))
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(find(&s, "glogg strasse"), ["G-1"]);
        assert_eq!(
            find(&s, "aerlig"),
            ["G-1"],
            "inactive SKUs stay out of the index"
        );
        let q = SearchQuery {
            category_id: Some("jul".into()),
            limit: 10,
            ..SearchQuery::default()
        };
        let (items, total) = s.search_products(&q, 0).unwrap();
        assert_eq!((items.len(), total), (1, 1));
    }

    fn list(s: &Store, category: &str) -> Vec<String> {
        let q = SearchQuery {
            category_id: Some(category.into()),
            limit: 50,
            ..SearchQuery::default()
        };
        let (items, _) = s.search_products(&q, 0).unwrap();
        items.into_iter().map(|p| p.name).collect()
    }

    /// Issue 12: a category listed its names bytewise (upper case before lower, "Øl" and
    /// "Ål" before "banan"'s neighbours in the wrong order, "Épler" after "Zalo"). Now as a
    /// Norwegian cashier expects, from the index (the query plan sorts nothing).
    #[test]
    fn a_category_lists_names_in_norwegian_order_from_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let names = [
            "Ål", "øl", "Zalo", "banan", "Æble", "Épler", "eple", "Ärt", "Ørret", "Abc",
        ];
        let products: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| sku(&format!("N-{i}"), n, "B", &["frukt"]))
            .collect();
        s.apply_products(&products, None).unwrap();
        assert_eq!(
            list(&s, "frukt"),
            ["Abc", "banan", "eple", "Épler", "Zalo", "Æble", "Ärt", "øl", "Ørret", "Ål"]
        );
        // A rename moves the product to its new place.
        s.apply_products(&[sku("N-0", "Aprikos", "B", &["frukt"])], None)
            .unwrap();
        assert_eq!(list(&s, "frukt")[..2], ["Abc", "Aprikos"]);
        // Planned on a reader, where the catalog file is attached.
        let conn = super::super::open_reader(s.path()).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT sku FROM category_member INDEXED BY category_member_by_key
                 WHERE category_id = ?1 ORDER BY sort_key, name, sku LIMIT 10",
            )
            .unwrap()
            .query_map(["frukt"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().all(|p| !p.contains("TEMP B-TREE")),
            "the listing is sorted, not read in order: {plan:?}"
        );
        drop(conn);
        let cats = {
            let c = s.catalog().unwrap();
            c.execute_batch(
                "INSERT INTO category (id, name, parent_id, sort_index) VALUES
                 ('c1', 'Øl', NULL, 0), ('c2', 'brød', NULL, 0), ('c3', 'Ål', NULL, 0), ('c4', 'Zz', NULL, 0)",
            )
            .unwrap();
            drop(c);
            s.categories().unwrap()
        };
        let cat_names: Vec<_> = cats.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cat_names, ["brød", "Zz", "Øl", "Ål"]);
    }

    /// Issue 12 leftover: names folded by older rules (before decomposed marks were folded,
    /// "A\u{30A}lesund" was indexed as "a lesund" and never found as "ålesund") were never
    /// folded again. The fold version kept beside the index makes the next open set the
    /// index aside for the worker to fold again (the whole index and the listings' sort
    /// keys, once), searches reading the tables meanwhile.
    #[test]
    fn an_index_folded_by_older_rules_is_folded_again_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.apply_products(
                &[
                    sku("ALE", "A\u{30A}lesund kart", "Kart", &["kart"]),
                    sku("BER", "Bergen kart", "Kart", &["kart"]),
                ],
                None,
            )
            .unwrap();
            let c = s.catalog().unwrap();
            // What the rules of version 1 left: the mark split the word; no sort keys (the
            // column came later); no version kept.
            c.execute_batch(
                "DELETE FROM product_fts WHERE rowid = (SELECT rowid FROM product WHERE sku = 'ALE');
                 INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
                 SELECT rowid, 'ale', 'a lesund kart', NULL, 'kart', '' FROM product WHERE sku = 'ALE';
                 UPDATE category_member SET sort_key = x'';
                 DELETE FROM catalog_state WHERE key = 'search.fold_version';",
            )
            .unwrap();
            drop(c);
            assert!(find(&s, "ålesund").is_empty(), "the stale index as it was");
            drop(s);
        }
        let s = Store::open(&path).unwrap();
        // Not folded by the open (it took 6.6 s at 100,000 products): set aside for the
        // worker, and searched from the tables, folded by these rules, meanwhile.
        let stale = |s: &Store| -> i64 {
            s.catalog()
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM product_fts WHERE product_fts MATCH 'alesund'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(stale(&s), 0, "the open folded the index");
        assert!(s.catalog_build_owed().unwrap());
        for _ in 0..2 {
            assert_eq!(find(&s, "ålesund"), ["ALE"]);
            assert_eq!(find(&s, "alesund kart"), ["ALE"]);
            assert_eq!(list(&s, "kart"), ["Bergen kart", "A\u{30A}lesund kart"]);
            // Then built by the worker's step.
            s.finish_catalog_build().unwrap();
        }
        assert_eq!(stale(&s), 1);
        let kept: String = s
            .catalog()
            .unwrap()
            .query_row(
                "SELECT value FROM catalog_state WHERE key = 'search.fold_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, super::super::fold::FOLD_VERSION.to_string());
        // Once: an index already folded by these rules is left alone at the next open.
        {
            let c = s.catalog().unwrap();
            c.execute_batch("UPDATE category_member SET sort_key = x'00' WHERE sku = 'BER'")
                .unwrap();
        }
        drop(s);
        let s = Store::open(&path).unwrap();
        let untouched: Vec<u8> = s
            .catalog()
            .unwrap()
            .query_row(
                "SELECT sort_key FROM category_member WHERE sku = 'BER'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(untouched, [0u8]);
    }

    /// Every (line, SKU, warehouse, quantity bits) of a job's movements, through the view
    /// every reader uses.
    fn movement_rows(s: &Store, job_id: i64) -> Vec<(i64, String, String, u64)> {
        let conn = s.conn();
        let mut stmt = conn
            .prepare(
                "SELECT line, sku, warehouse_id, quantity FROM stock_movement_all
                 WHERE job_id = ?1 ORDER BY line",
            )
            .unwrap();
        let rows = stmt
            .query_map([job_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, f64>(3)?.to_bits(),
                ))
            })
            .unwrap();
        rows.collect::<rusqlite::Result<Vec<_>>>().unwrap()
    }

    /// Issue 10 target 1: movements recorded as one row read back exactly what was recorded
    /// (every quantity to the bit, any SKU text), before and after their expansion into
    /// rows, and an expansion rolled back (a crash) leaves them as they were.
    #[test]
    fn recorded_movements_read_back_exactly_before_and_after_expansion() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let mut quantities = vec![
            -1.0,
            2.0,
            -0.1,
            0.3,
            -1.0 / 3.0,
            1e-9,
            -123_456.789,
            2.675,
            1e15 + 0.5,
            0.1 + 0.2,
            f64::MIN_POSITIVE,
            5e-324,
            -f64::MAX,
            9_007_199_254_740_993.0,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while quantities.len() < 3_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let q = match quantities.len() % 3 {
                0 => f64::from_bits(x),
                1 => (x % 2_000_001) as f64 / 1_000.0 - 1_000.0,
                _ => (x % 10_000) as f64 / 7.0,
            };
            if q.is_finite() && q != 0.0 {
                quantities.push(q);
            }
        }
        let effects: Vec<StockEffect> = quantities
            .iter()
            .enumerate()
            .map(|(i, &q)| StockEffect {
                sku: format!("SKU \"{i}\" ø\u{1}\\"),
                warehouse_id: if i % 2 == 0 { "oslo-1" } else { "w\t2" }.into(),
                quantity: q,
            })
            .collect();
        let job = NewJob {
            kind: "sale",
            event_id: "S1",
            entity_id: "S1",
            content: "{}",
            blob: None,
        };
        let recorded = s
            .record(&job, 0, |_| {
                Ok(crate::store::Extras {
                    effects: effects.clone().into(),
                    extra: None,
                })
            })
            .unwrap();
        let crate::store::Recorded::New(id) = recorded else {
            panic!("{recorded:?}")
        };
        let expected: Vec<(i64, String, String, u64)> = effects
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    i as i64,
                    e.sku.clone(),
                    e.warehouse_id.clone(),
                    e.quantity.to_bits(),
                )
            })
            .collect();
        let count = |table: &str| -> i64 {
            s.conn()
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (count("stock_movement_todo"), count("stock_movement")),
            (1, 0)
        );
        assert_eq!(movement_rows(&s, id), expected);
        {
            // Expanded, then a crash before the commit: rolled back whole.
            let mut conn = s.conn();
            let tx = conn.transaction().unwrap();
            Store::expand_movements_of(&tx, id, id).unwrap();
            drop(tx);
        }
        assert_eq!(
            (count("stock_movement_todo"), count("stock_movement")),
            (1, 0)
        );
        assert_eq!(movement_rows(&s, id), expected);
        s.expand_movements_aside().unwrap();
        assert_eq!(
            (count("stock_movement_todo"), count("stock_movement")),
            (0, expected.len() as i64)
        );
        assert_eq!(movement_rows(&s, id), expected);
    }

    /// A job leaves `pending` with its movements expanded (delivery and read-backs count
    /// them by job), and the stock overlay reads the same before and after.
    #[test]
    fn a_claim_expands_the_movements_of_what_it_claims() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.db")).unwrap();
        let job = NewJob {
            kind: "sale",
            event_id: "S1",
            entity_id: "S1",
            content: "{}",
            blob: None,
        };
        s.record(&job, 0, |_| {
            Ok(crate::store::Extras {
                effects: vec![StockEffect {
                    sku: "SKU-1".into(),
                    warehouse_id: "oslo-1".into(),
                    quantity: -2.0,
                }]
                .into(),
                extra: None,
            })
        })
        .unwrap();
        assert_eq!(read(&s), (0.0, -2.0));
        let todo = |s: &Store| -> i64 {
            s.conn()
                .query_row("SELECT COUNT(*) FROM stock_movement_todo", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(todo(&s), 1);
        let claimed = s.claim_due(1, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(todo(&s), 0);
        assert_eq!(read(&s), (0.0, -2.0));
    }

    /// Expansion reads the stored effects back exactly: text with escapes (a quote, a
    /// newline, a letter outside ASCII), whole and fractional quantities, each line at its
    /// index, and the recorded row gone.
    #[test]
    fn expanded_movements_are_the_recorded_effects_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("x.db")).unwrap();
        let job = NewJob {
            kind: "sale",
            event_id: "S-1",
            entity_id: "S-1",
            content: r#"{"id":"S-1"}"#,
            blob: None,
        };
        s.record(&job, 0, |_| {
            let mut effects = StockEffects::with_capacity(3);
            effects.push("A\"1", "w\n", -1.5);
            effects.push("Blåbær", "oslo-1", 2.0);
            effects.push("C", "oslo-1", -0.125);
            Ok(crate::store::Extras {
                effects,
                extra: None,
            })
        })
        .unwrap();
        let id = s.claim_due(1, 10).unwrap()[0].id;
        let conn = s.conn();
        let rows: Vec<(i64, String, String, f64)> = conn
            .prepare("SELECT line, sku, warehouse_id, quantity FROM stock_movement WHERE job_id = ?1 ORDER BY line")
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [
                (0, "A\"1".to_string(), "w\n".to_string(), -1.5),
                (1, "Blåbær".to_string(), "oslo-1".to_string(), 2.0),
                (2, "C".to_string(), "oslo-1".to_string(), -0.125),
            ]
        );
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM stock_movement_todo", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// The stored form is the JSON array of `[sku, warehouse, quantity]` (any text escaped);
    /// a quantity that is not finite is refused when stored, never written as `null`.
    #[test]
    fn stock_effects_are_written_as_json_and_refuse_what_is_not_finite() {
        let mut e = StockEffects::with_capacity(2);
        assert!(e.is_empty());
        assert_eq!(e.json().unwrap(), "");
        e.push("A\"1", "w\n", -1.5);
        e.push("B", "w", 2.0);
        assert_eq!(e.len(), 2);
        let v: serde_json::Value = serde_json::from_str(e.json().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([["A\"1", "w\n", -1.5], ["B", "w", 2.0]])
        );
        e.push("C", "w", f64::NAN);
        assert!(!e.is_empty());
        assert!(
            matches!(e.json(), Err(crate::error::Error::InvalidInput(m)) if m.contains("\"C\""))
        );
        let mut only_nan = StockEffects::default();
        only_nan.push("D", "w", f64::INFINITY);
        assert!(!only_nan.is_empty() && only_nan.json().is_err());
    }
}
