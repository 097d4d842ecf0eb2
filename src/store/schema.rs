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
    // 2: the catalog, prices, stores and stock the till reads offline; pull cursors.
    "CREATE TABLE product (
        sku TEXT PRIMARY KEY,
        product_id TEXT NOT NULL,
        name TEXT NOT NULL,
        brand TEXT,
        ean TEXT,
        gtins TEXT NOT NULL,
        category_ids TEXT NOT NULL,
        image_urls TEXT NOT NULL,
        active INTEGER NOT NULL,
        language TEXT,
        cost_price INTEGER
    );
    CREATE INDEX product_by_product_id ON product (product_id);
    CREATE INDEX product_by_ean ON product (ean);
    CREATE VIRTUAL TABLE product_fts USING fts5 (
        sku, name, ean, brand, gtins,
        content = 'product', content_rowid = 'rowid',
        tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
    );
    -- Ranking: a hit in the SKU or EAN weighs most, then GTINs, the name, the brand.
    INSERT INTO product_fts (product_fts, rank) VALUES ('rank', 'bm25(10.0, 4.0, 10.0, 2.0, 6.0)');
    -- The index holds sellable (active) SKUs only, so a text search needs no join to filter.
    CREATE TRIGGER product_fts_insert AFTER INSERT ON product WHEN new.active = 1 BEGIN
        INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
        VALUES (new.rowid, new.sku, new.name, new.ean, new.brand, new.gtins);
    END;
    CREATE TRIGGER product_fts_delete AFTER DELETE ON product WHEN old.active = 1 BEGIN
        INSERT INTO product_fts (product_fts, rowid, sku, name, ean, brand, gtins)
        VALUES ('delete', old.rowid, old.sku, old.name, old.ean, old.brand, old.gtins);
    END;
    -- Only a real change touches the index (not a rewrite of the same values by a delta).
    CREATE TRIGGER product_fts_update AFTER UPDATE OF sku, name, ean, brand, gtins, active ON product
    WHEN (old.active = 1 OR new.active = 1)
      AND (old.active IS NOT new.active OR old.sku IS NOT new.sku OR old.name IS NOT new.name
        OR old.ean IS NOT new.ean OR old.brand IS NOT new.brand OR old.gtins IS NOT new.gtins) BEGIN
        INSERT INTO product_fts (product_fts, rowid, sku, name, ean, brand, gtins)
        SELECT 'delete', old.rowid, old.sku, old.name, old.ean, old.brand, old.gtins WHERE old.active = 1;
        INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
        SELECT new.rowid, new.sku, new.name, new.ean, new.brand, new.gtins WHERE new.active = 1;
    END;
    CREATE TABLE product_category (
        product_sku TEXT NOT NULL REFERENCES product (sku) ON DELETE CASCADE,
        category_id TEXT NOT NULL,
        PRIMARY KEY (product_sku, category_id)
    ) WITHOUT ROWID;
    CREATE INDEX product_category_by_category ON product_category (category_id, product_sku);
    CREATE INDEX product_by_brand_name ON product (brand, active, name);
    CREATE INDEX product_by_active_name ON product (active, name);
    CREATE TABLE price (
        sku TEXT NOT NULL REFERENCES product (sku) ON DELETE CASCADE,
        unit_price INTEGER NOT NULL,
        currency TEXT NOT NULL,
        store_specific INTEGER NOT NULL,
        variant_specific INTEGER NOT NULL,
        valid_from INTEGER,
        valid_until INTEGER
    );
    CREATE INDEX price_by_sku ON price (sku);
    CREATE TABLE category (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        parent_id TEXT,
        sort_index INTEGER NOT NULL
    );
    CREATE TABLE store (
        id TEXT PRIMARY KEY,
        json TEXT NOT NULL
    );
    CREATE TABLE stock_level (
        sku TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        reserved REAL NOT NULL,
        modified_ms INTEGER NOT NULL,
        PRIMARY KEY (sku, warehouse_id)
    ) WITHOUT ROWID;
    -- A local change to stock (sale −, restocked return +) until Omnium's level counts it.
    -- Keyed by job so recording a sale writes one b-tree row per line plus one index entry.
    CREATE TABLE stock_movement (
        job_id INTEGER NOT NULL,
        line INTEGER NOT NULL,
        sku TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        counted_after_ms INTEGER,
        PRIMARY KEY (job_id, line)
    ) WITHOUT ROWID;
    CREATE INDEX stock_movement_by_item ON stock_movement (sku, warehouse_id);
    -- `settled`: everything up to the high-water mark has been read at a time when
    -- Omnium's index had surely caught up, so the next delta starts just after it.
    CREATE TABLE pull_cursor (
        dataset TEXT PRIMARY KEY,
        high_water_ms INTEGER,
        last_pull_at INTEGER,
        settled INTEGER NOT NULL DEFAULT 0
    );",
    // 3: receipts, customers, inbound orders, purchase orders, stock pushed by a flow-master store.
    "ALTER TABLE outbox_job ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
    -- What the library worked out when recording (absolute targets and levels): sent, but
    -- not part of the content a repeated id is compared with.
    ALTER TABLE outbox_job ADD COLUMN extra TEXT;
    -- A receipt's PDF, kept out of the job row and streamed on upload.
    CREATE TABLE receipt_pdf (
        job_id INTEGER PRIMARY KEY,
        pdf BLOB NOT NULL
    );
    CREATE TABLE customer (
        id TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('pos', 'omnium'))
    );
    CREATE TABLE customer_fetch (
        customer_id TEXT PRIMARY KEY,
        tries INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL
    );
    CREATE TABLE inbound_order (
        id TEXT PRIMARY KEY,
        order_type TEXT NOT NULL,
        status TEXT NOT NULL,
        json TEXT NOT NULL,
        modified_ms INTEGER
    );
    CREATE INDEX inbound_order_by_type ON inbound_order (order_type, status);
    -- Orders announced by an event and not fetched yet: one row per order, so repeats coalesce.
    CREATE TABLE order_fetch (
        order_id TEXT PRIMARY KEY,
        tries INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL
    );
    CREATE TABLE purchase_order (
        id TEXT PRIMARY KEY,
        status TEXT,
        json TEXT NOT NULL,
        modified_ms INTEGER
    );
    -- Absolute levels to push (flow stock master, receptions without a PO): the newest per item.
    CREATE TABLE stock_push (
        sku TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity REAL NOT NULL,
        counted_at_ms INTEGER NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (sku, warehouse_id)
    ) WITHOUT ROWID;
    CREATE INDEX stock_push_unsent ON stock_push (sent);",
    // [storage] personal data has a lifetime (CONTRACT §9 rule 13). `stored_at` (the database's
    // wall clock, ms) starts each retention; NULL rows are stamped at the next maintenance.
    "ALTER TABLE customer ADD COLUMN stored_at INTEGER;
    ALTER TABLE inbound_order ADD COLUMN stored_at INTEGER;
    -- Customers the POS asked to forget: their undelivered jobs are erased once delivered,
    -- and nothing about them is fetched or stored again meanwhile.
    CREATE TABLE forgotten_customer (
        customer_id TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    );
    CREATE TRIGGER forgotten_customer_erased_on_delivery AFTER UPDATE OF state ON outbox_job
    WHEN new.state = 'delivered' AND new.kind = 'customer'
      AND EXISTS (SELECT 1 FROM forgotten_customer WHERE 'customer:' || customer_id = new.entity_id) BEGIN
        UPDATE outbox_job SET content = '{\"erased\":true}' WHERE id = new.id;
    END;",
    // [storage] a dead job whose payload was erased (retention, a forgotten customer) stays
    // dead: reviving it would send `{"erased":true}`, or a receipt without its PDF. The
    // update of such a row is skipped (RAISE(IGNORE)), so a retry of all dead jobs revives
    // the others.
    "CREATE TRIGGER erased_dead_job_stays_dead BEFORE UPDATE OF state ON outbox_job
    WHEN old.state = 'dead' AND new.state <> 'dead'
      AND (old.content = '{\"erased\":true}' OR (old.kind = 'receipt'
        AND NOT EXISTS (SELECT 1 FROM receipt_pdf WHERE job_id = old.id))) BEGIN
        SELECT RAISE(IGNORE);
    END;",
    // [storage] databases from before `secure_delete` (turned on with the retention
    // migration above) keep deleted receipt PDFs and customer data in free pages: one VACUUM
    // at the next open rewrites the file without them (`store::vacuum_if_owed` clears this).
    "INSERT INTO sync_state (key, value) VALUES ('storage.vacuum_owed', '1')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
    // [inbound] customer-club prices are kept apart from the shelf price (CONTRACT §9 rule
    // 15): `member` 1 is offered only as `member_price`.
    "ALTER TABLE price ADD COLUMN member INTEGER NOT NULL DEFAULT 0;",
    // [exactly] 8: exactly once without Omnium's help (CONTRACT §9 rules 2, 8). `claim`: the
    // token of the claim that put a job in flight; an outcome is recorded only under the same
    // token. `settle_from`: wall ms after which no request of this job can have left (set when
    // an outcome is recorded, and at recovery); an uncertain job is read back only a settle
    // time after it. `delivered_id`: the compact record of delivered events (id + content
    // hash), kept a year after the full job is purged, so a replayed event is never sent again.
    "ALTER TABLE outbox_job ADD COLUMN claim INTEGER;
    ALTER TABLE outbox_job ADD COLUMN settle_from INTEGER;
    CREATE TABLE delivered_id (
        kind TEXT NOT NULL,
        event_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        delivered_at INTEGER NOT NULL,
        PRIMARY KEY (kind, event_id)
    ) WITHOUT ROWID;
    CREATE INDEX delivered_id_by_time ON delivered_id (delivered_at);",
    // [exactly] 9: schedules on the monotonic clock (CONTRACT §9 rule 9). `sched_epoch`: the
    // store instance (one per process) whose monotonic clock `next_mono` and `settle_from`
    // are read on; a row of another epoch (recorded, recovered, revived, or written by an
    // earlier process) is re-armed from its wall-clock `next_attempt_at`, capped at 2 h,
    // when the worker next claims.
    "ALTER TABLE outbox_job ADD COLUMN sched_epoch INTEGER;
    ALTER TABLE outbox_job ADD COLUMN next_mono INTEGER;",
    // [search] 10: search at the till (issue 12). The index holds folded text (`fo_fold`,
    // store/fold.rs: `ø`/`o`, `æ`/`ae`, `ß`/`ss`, CJK characters one token each), so it keeps
    // no copy of the product's columns (contentless, deleted by rowid). `category_member`: a
    // category's sellable SKUs in name order, so a listing reads one index range instead of
    // walking every product.
    "DROP TRIGGER product_fts_insert;
    DROP TRIGGER product_fts_delete;
    DROP TRIGGER product_fts_update;
    DROP TABLE product_fts;
    CREATE VIRTUAL TABLE product_fts USING fts5 (
        sku, name, ean, brand, gtins,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
    );
    INSERT INTO product_fts (product_fts, rank) VALUES ('rank', 'bm25(10.0, 4.0, 10.0, 2.0, 6.0)');
    CREATE TRIGGER product_fts_insert AFTER INSERT ON product WHEN new.active = 1 BEGIN
        INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
        VALUES (new.rowid, fo_fold(new.sku), fo_fold(new.name), fo_fold(new.ean),
                fo_fold(new.brand), fo_fold(new.gtins));
    END;
    CREATE TRIGGER product_fts_delete AFTER DELETE ON product WHEN old.active = 1 BEGIN
        DELETE FROM product_fts WHERE rowid = old.rowid;
    END;
    CREATE TRIGGER product_fts_update AFTER UPDATE OF sku, name, ean, brand, gtins, active ON product
    WHEN (old.active = 1 OR new.active = 1)
      AND (old.active IS NOT new.active OR old.sku IS NOT new.sku OR old.name IS NOT new.name
        OR old.ean IS NOT new.ean OR old.brand IS NOT new.brand OR old.gtins IS NOT new.gtins) BEGIN
        DELETE FROM product_fts WHERE old.active = 1 AND rowid = old.rowid;
        INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
        SELECT new.rowid, fo_fold(new.sku), fo_fold(new.name), fo_fold(new.ean),
               fo_fold(new.brand), fo_fold(new.gtins) WHERE new.active = 1;
    END;
    INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
    SELECT rowid, fo_fold(sku), fo_fold(name), fo_fold(ean), fo_fold(brand), fo_fold(gtins)
    FROM product WHERE active = 1;
    CREATE TABLE category_member (
        category_id TEXT NOT NULL,
        name TEXT NOT NULL,
        sku TEXT NOT NULL,
        PRIMARY KEY (category_id, name, sku)
    ) WITHOUT ROWID;
    CREATE TRIGGER category_member_link AFTER INSERT ON product_category BEGIN
        INSERT OR IGNORE INTO category_member (category_id, name, sku)
        SELECT new.category_id, p.name, p.sku FROM product p WHERE p.sku = new.product_sku AND p.active = 1;
    END;
    CREATE TRIGGER category_member_unlink AFTER DELETE ON product_category BEGIN
        DELETE FROM category_member WHERE category_id = old.category_id AND sku = old.product_sku
          AND name = (SELECT name FROM product WHERE sku = old.product_sku);
    END;
    CREATE TRIGGER category_member_product AFTER UPDATE OF name, active ON product
    WHEN old.name IS NOT new.name OR old.active IS NOT new.active BEGIN
        DELETE FROM category_member WHERE sku = old.sku AND name = old.name AND category_id IN
            (SELECT category_id FROM product_category WHERE product_sku = old.sku);
        INSERT OR IGNORE INTO category_member (category_id, name, sku)
        SELECT pc.category_id, new.name, new.sku FROM product_category pc
        WHERE pc.product_sku = new.sku AND new.active = 1;
    END;
    -- Before the row goes (its links cascade after it, when its name can no longer be read).
    CREATE TRIGGER category_member_product_gone BEFORE DELETE ON product BEGIN
        DELETE FROM category_member WHERE sku = old.sku AND name = old.name AND category_id IN
            (SELECT category_id FROM product_category WHERE product_sku = old.sku);
    END;
    INSERT OR IGNORE INTO category_member (category_id, name, sku)
    SELECT pc.category_id, p.name, p.sku FROM product_category pc JOIN product p ON p.sku = pc.product_sku
    WHERE p.active = 1;",
    // [search] 11: category listings in the order a Norwegian cashier expects (case and marks
    // ignored, Æ Ø Å after Z): `sort_key` is `fo_sort_key(name)` (store/fold.rs), and the
    // index (category_id, sort_key) holds the rest of the key (name, sku), so a page is read
    // in order and never sorted. Existing rows get their key from the fold-version rebuild
    // that runs right after the migrations (`reindex_if_folded_otherwise`).
    "ALTER TABLE category_member ADD COLUMN sort_key BLOB NOT NULL DEFAULT x'';
    CREATE INDEX category_member_by_key ON category_member (category_id, sort_key);
    DROP TRIGGER category_member_link;
    CREATE TRIGGER category_member_link AFTER INSERT ON product_category BEGIN
        INSERT OR IGNORE INTO category_member (category_id, name, sku, sort_key)
        SELECT new.category_id, p.name, p.sku, fo_sort_key(p.name) FROM product p
        WHERE p.sku = new.product_sku AND p.active = 1;
    END;
    DROP TRIGGER category_member_product;
    CREATE TRIGGER category_member_product AFTER UPDATE OF name, active ON product
    WHEN old.name IS NOT new.name OR old.active IS NOT new.active BEGIN
        DELETE FROM category_member WHERE sku = old.sku AND name = old.name AND category_id IN
            (SELECT category_id FROM product_category WHERE product_sku = old.sku);
        INSERT OR IGNORE INTO category_member (category_id, name, sku, sort_key)
        SELECT pc.category_id, new.name, new.sku, fo_sort_key(new.name) FROM product_category pc
        WHERE pc.product_sku = new.sku AND new.active = 1;
    END;",
    // [rec] 12: outbox_job's CHECK on `state` as four comparisons instead of `IN (…)`: SQLite
    // builds a temporary b-tree for an IN list of more than two constants each time the
    // check runs, i.e. on every insert and every change of state (a twelfth of a recording
    // call). The same rule, so the stored rows need no rebuild: only the table's text in
    // the schema changes (SQLite's documented procedure for changing a CHECK), and RESET
    // reloads it on this connection.
    "PRAGMA writable_schema = ON;
    UPDATE sqlite_master SET sql = replace(sql,
        'CHECK (state IN (''pending'', ''in_flight'', ''delivered'', ''dead''))',
        'CHECK (state = ''pending'' OR state = ''in_flight'' OR state = ''delivered'' OR state = ''dead'')')
    WHERE type = 'table' AND name = 'outbox_job';
    PRAGMA writable_schema = RESET;",
    // [catfile] 13: the catalog lives in its own file, `<database>-catalog` (store/catalog_file.rs,
    // issue 10 target 4). `catalog_file::copy_from_main` copied it there before this runs
    // (a crash in between leaves this version unapplied and copies again). Dropped here with
    // `secure_delete` on (their pages zeroed), then the file is rewritten once (VACUUM) so it
    // does not keep the catalog's size in free pages.
    "-- [catfile] the catalog moved to <database>-catalog
    DROP TRIGGER IF EXISTS product_fts_insert;
    DROP TRIGGER IF EXISTS product_fts_delete;
    DROP TRIGGER IF EXISTS product_fts_update;
    DROP TRIGGER IF EXISTS category_member_link;
    DROP TRIGGER IF EXISTS category_member_unlink;
    DROP TRIGGER IF EXISTS category_member_product;
    DROP TRIGGER IF EXISTS category_member_product_gone;
    DROP TABLE IF EXISTS product_fts;
    DROP TABLE IF EXISTS category_member;
    DROP TABLE IF EXISTS product_category;
    DROP TABLE IF EXISTS price;
    DROP TABLE IF EXISTS product;
    DROP TABLE IF EXISTS category;
    DELETE FROM pull_cursor WHERE dataset IN ('products', 'categories');
    DELETE FROM sync_state WHERE key = 'search.fold_version';
    INSERT INTO sync_state (key, value) VALUES ('storage.vacuum_owed', '1')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
    // [recrows] 14: a job's stock movements are recorded as one row (its effects, a JSON
    // array of `[sku, warehouse_id, quantity]`, line = index) and expanded into
    // `stock_movement` rows later, in one transaction that also deletes the row (the
    // worker, or any writer transaction that changes movements). Readers see both through
    // `stock_movement_all`; a row here is never counted (counting expands it first).
    "CREATE TABLE stock_movement_todo (
        job_id INTEGER PRIMARY KEY,
        effects TEXT NOT NULL
    );
    CREATE VIEW stock_movement_all AS
        SELECT job_id, line, sku, warehouse_id, quantity, counted_after_ms FROM stock_movement
        UNION ALL
        SELECT t.job_id, e.key, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
               json_extract(e.value, '$[2]'), NULL
        FROM stock_movement_todo t, json_each(t.effects) e;",
];

/// The version that moved the catalog to its own file: a database below it (and at least
/// at 2, which created the catalog tables) has its catalog in the main file.
pub(crate) fn split_version() -> i64 {
    MIGRATIONS
        .iter()
        .position(|m| m.starts_with(super::catalog_file::SPLIT_MARK))
        .map(|i| i as i64 + 1)
        .expect("the split migration is in the list")
}

pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// The version a migration containing `sql` brings a database to (tests of upgrades).
#[cfg(test)]
pub(crate) fn version_with(sql: &str) -> i64 {
    MIGRATIONS
        .iter()
        .position(|m| m.contains(sql))
        .map(|i| i as i64 + 1)
        .expect("no such migration")
}

/// The `sync_state` key the VACUUM migration sets.
pub const VACUUM_OWED: &str = "storage.vacuum_owed";

pub fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, LATEST)
}

/// Migrates up to `target` (tests build older databases with it).
pub(crate) fn migrate_to(conn: &Connection, target: i64) -> Result<()> {
    // The search triggers of the catalog tables (migrations 10 and 11, before they moved
    // to their own file) call it.
    super::fold::register(conn)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > LATEST {
            return Err(Error::Storage(format!(
                "the database has schema version {version}, newer than this library's {LATEST}; \
                 it was written by a newer flow-omnium"
            )));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .take(target.clamp(0, LATEST) as usize)
            .skip(version as usize)
        {
            conn.execute_batch(sql)?;
            log::info!("database migrated to schema version {}", i + 1);
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = {}",
            version.max(target.clamp(0, LATEST))
        ))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn recording_a_job_builds_no_temporary_btree_and_the_state_check_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("s.db")).unwrap();
        let insert = "INSERT INTO outbox_job (kind, event_id, entity_id, content, next_attempt_at, created_at)
                      VALUES ('sale', 'S-1', 'S-1', '{}', 1, 1)";
        // Upgraded from the version before, as a till's database is.
        migrate_to(&conn, version_with("writable_schema") - 1).unwrap();
        assert!(ops(&conn, insert).iter().any(|o| o == "OpenEphemeral"));
        migrate(&conn).unwrap();
        assert!(!ops(&conn, insert).iter().any(|o| o == "OpenEphemeral"));
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'outbox_job'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("CHECK (state = 'pending' OR state = 'in_flight' OR state = 'delivered' OR state = 'dead')"), "{sql}");
        conn.execute_batch(insert).unwrap();
        for state in ["in_flight", "delivered", "dead", "pending"] {
            conn.execute("UPDATE outbox_job SET state = ?1", [state])
                .unwrap();
        }
        let err = conn
            .execute("UPDATE outbox_job SET state = 'lost'", [])
            .unwrap_err();
        assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        // A connection opened afterwards reads the new text too.
        drop(conn);
        let again = Connection::open(dir.path().join("s.db")).unwrap();
        assert!(!ops(&again, insert).iter().any(|o| o == "OpenEphemeral"));
    }
}
