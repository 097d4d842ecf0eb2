//! The catalog in its own database file, `<database>-catalog` (issue 10 target 4): products,
//! SKUs, prices, categories, `category_member`, the search index and the catalog's own pull
//! cursors (`catalog_cursor`, committed with the data they cover). It has its own writer
//! connection (the worker's) and its own WAL at `synchronous = NORMAL`, so a catalog batch
//! never holds the outbox's writer lock and a recorded sale's fsync never carries catalog
//! pages. Readers `ATTACH` it read-only as `catalog`; table names are unique across the two
//! files, so unqualified names resolve in either.
//!
//! Stock levels and movements stay in the main file: a level and the deletion of the
//! movements it counted commit in one transaction (SQLite commits across attached WAL
//! databases atomically per file only).
//!
//! Storage rules, as for the main file: created owner-only (0600, `-wal` and `-shm` follow),
//! chmodded at open; a symlink at its name refuses the open (checked before anything is
//! changed, and SQLite opens it `NOFOLLOW`, the readers' `ATTACH` too); never a URI; opened
//! only under the main file's lock (`<database>-lock`), so no second client writes it; it
//! carries its own application id ("FOMC"), so naming it as a `database_path` is refused as
//! not a flow-omnium database; `secure_delete` on. Everything in it can be pulled again, so
//! a damaged one (it fails to open or its `quick_check`, or is not a SQLite file) is moved
//! aside to `<database>-catalog.damaged-<time>` (never deleted), a fresh one is created and
//! pulled from the start (its cursors went with it); the till keeps selling meanwhile.
//!
//! A database from before (the catalog in the main file) migrates once at open: the main
//! file is brought to the schema version before [`SPLIT_MARK`]'s migration, the catalog is
//! copied across in one transaction of the catalog file (its search index and listings
//! left for the worker to build, store/deferred.rs), then the main file's migration drops the tables. The
//! main file's `user_version` is the mark: a crash before the drop committed finds the old
//! version and the tables still there, and copies again (the copy first empties the catalog
//! file, so it is redone, never doubled).

use super::files::{self, side_file};
use super::{crash_point, expect_pragma, Opened, BASE_FLAGS, BUSY_TIMEOUT};
use crate::error::{Error, Result};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// `PRAGMA application_id` of a catalog file ("FOMC"): not the main file's, so the catalog
/// is never opened as a database of its own.
pub const CATALOG_APPLICATION_ID: i64 = 0x464F_4D43;

/// The data sets whose cursors live in the catalog file.
pub(crate) const CATALOG_DATASETS: [&str; 2] = ["products", "categories"];

/// Whether `dataset`'s cursor is in the catalog file.
pub(crate) fn is_catalog_dataset(dataset: &str) -> bool {
    CATALOG_DATASETS.contains(&dataset)
}

/// Text of the main file's migration that drops the catalog tables (its version is found by
/// it, so migrations added before it by others renumber nothing here).
pub(crate) const SPLIT_MARK: &str = "-- [catfile] the catalog moved to <database>-catalog";

/// `<database>-catalog`.
pub fn catalog_path(db: &Path) -> PathBuf {
    side_file(db, "-catalog")
}

/// The catalog file's schema: the catalog tables as the main file's migrations 2, 7, 10 and
/// 11 left them, plus its cursors and its own key/value state.
const CATALOG_MIGRATIONS: &[&str] = &[
    // 1
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
    CREATE INDEX product_by_brand_name ON product (brand, active, name);
    CREATE INDEX product_by_active_name ON product (active, name);
    CREATE TABLE product_category (
        product_sku TEXT NOT NULL REFERENCES product (sku) ON DELETE CASCADE,
        category_id TEXT NOT NULL,
        PRIMARY KEY (product_sku, category_id)
    ) WITHOUT ROWID;
    CREATE INDEX product_category_by_category ON product_category (category_id, product_sku);
    CREATE TABLE price (
        sku TEXT NOT NULL REFERENCES product (sku) ON DELETE CASCADE,
        unit_price INTEGER NOT NULL,
        currency TEXT NOT NULL,
        store_specific INTEGER NOT NULL,
        variant_specific INTEGER NOT NULL,
        valid_from INTEGER,
        valid_until INTEGER,
        member INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX price_by_sku ON price (sku);
    CREATE TABLE category (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        parent_id TEXT,
        sort_index INTEGER NOT NULL
    );
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
    CREATE TABLE category_member (
        category_id TEXT NOT NULL,
        name TEXT NOT NULL,
        sku TEXT NOT NULL,
        sort_key BLOB NOT NULL DEFAULT x'',
        PRIMARY KEY (category_id, name, sku)
    ) WITHOUT ROWID;
    CREATE INDEX category_member_by_key ON category_member (category_id, sort_key);
    CREATE TRIGGER category_member_link AFTER INSERT ON product_category BEGIN
        INSERT OR IGNORE INTO category_member (category_id, name, sku, sort_key)
        SELECT new.category_id, p.name, p.sku, fo_sort_key(p.name) FROM product p
        WHERE p.sku = new.product_sku AND p.active = 1;
    END;
    CREATE TRIGGER category_member_unlink AFTER DELETE ON product_category BEGIN
        DELETE FROM category_member WHERE category_id = old.category_id AND sku = old.product_sku
          AND name = (SELECT name FROM product WHERE sku = old.product_sku);
    END;
    CREATE TRIGGER category_member_product AFTER UPDATE OF name, active ON product
    WHEN old.name IS NOT new.name OR old.active IS NOT new.active BEGIN
        DELETE FROM category_member WHERE sku = old.sku AND name = old.name AND category_id IN
            (SELECT category_id FROM product_category WHERE product_sku = old.sku);
        INSERT OR IGNORE INTO category_member (category_id, name, sku, sort_key)
        SELECT pc.category_id, new.name, new.sku, fo_sort_key(new.name) FROM product_category pc
        WHERE pc.product_sku = new.sku AND new.active = 1;
    END;
    -- Before the row goes (its links cascade after it, when its name can no longer be read).
    CREATE TRIGGER category_member_product_gone BEFORE DELETE ON product BEGIN
        DELETE FROM category_member WHERE sku = old.sku AND name = old.name AND category_id IN
            (SELECT category_id FROM product_category WHERE product_sku = old.sku);
    END;
    -- The catalog's pull cursors (products, categories), committed with the pages they cover.
    CREATE TABLE catalog_cursor (
        dataset TEXT PRIMARY KEY,
        high_water_ms INTEGER,
        last_pull_at INTEGER,
        settled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE catalog_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

const CATALOG_LATEST: i64 = CATALOG_MIGRATIONS.len() as i64;

/// Refuses a symlink (or anything but a regular file) at the catalog's name, before the
/// open changes anything: rule 12 holds for the second file as for the first.
pub(super) fn check_path(db: &Path) -> Result<()> {
    let cat = catalog_path(db);
    match std::fs::symlink_metadata(&cat) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Storage(format!(
            "the catalog file {} is a symbolic link; refusing to follow it (remove it: the catalog is pulled again)",
            cat.display()
        ))),
        Ok(m) if !m.is_file() => Err(Error::Storage(format!(
            "the catalog file {} is not a regular file",
            cat.display()
        ))),
        // Another database at its name is refused before anything is made beside it (one
        // whose id is still only in its WAL is refused when the catalog is opened).
        Ok(_) => match inspect(&cat) {
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// `sync_state` key of the main file listing the names the catalog file was moved to (JSON
/// array), written before each move and taken by the open that queues their
/// `storage.damaged` events ([`take_moved`]): a kill right after a move, or a move made by
/// the one-time copy out of a single-file database, still reports it.
pub(crate) const MOVED_KEY: &str = "storage.damaged.catalog";

/// `sync_state` key of the main file set when a catalog read or write failed as corrupt
/// while the client ran ([`Store::note_catalog_damage`]): the next open moves the catalog
/// aside and pulls it again, whatever its checks say (damage can hide from them: rows gone
/// from the search index's own tables pass `integrity_check` and still fail a search).
pub(crate) const SEEN_KEY: &str = "catalog.damage_seen";

/// Whether `e` is SQLite saying a file is damaged (the library's errors carry SQLite's
/// message: `SQLITE_CORRUPT`, FTS5's own corruption reports, `SQLITE_NOTADB`).
pub(crate) fn looks_corrupt(e: &Error) -> bool {
    match e {
        Error::Storage(m) => {
            m.contains("database disk image is malformed")
                || m.contains("fts5: corruption")
                || m.contains("file is not a database")
        }
        _ => false,
    }
}

impl super::Store {
    /// A catalog read or write failed as corrupt: noted once in the main file (the next
    /// open moves the catalog file aside and pulls it again) and logged. Called with no
    /// connection held; it takes the writer once, the first time only.
    pub(crate) fn note_catalog_damage(&self, e: &Error) {
        use std::sync::atomic::Ordering;
        if !looks_corrupt(e) || self.catalog_damage_seen.swap(true, Ordering::SeqCst) {
            return;
        }
        log::error!(
            "the catalog file is damaged ({e}); searches read its tables without the index, \
             and the next open moves it aside and pulls the catalog again"
        );
        if let Err(w) = self.set_state(SEEN_KEY, &e.to_string()) {
            log::warn!("cannot note the catalog's damage: {w}");
            self.catalog_damage_seen.store(false, Ordering::SeqCst);
        }
    }
}

/// Opens (creating, or replacing when damaged) the catalog's writer. The caller holds the
/// database's lock; `main` is the database's writer, where each move aside is noted before
/// it is made ([`MOVED_KEY`]). Returns the connection.
pub(super) fn open_writer(db: &Path, main: &Connection) -> Result<Connection> {
    check_path(db)?;
    let cat = catalog_path(db);
    let seen: Option<String> = main
        .query_row(
            "SELECT value FROM sync_state WHERE key = ?1",
            [SEEN_KEY],
            |r| r.get(0),
        )
        .optional()?;
    let found = match inspect(&cat)? {
        Found::Usable if seen.is_some() && std::fs::symlink_metadata(&cat).is_ok() => {
            Some(format!(
                "found corrupt while in use: {}",
                seen.as_deref().unwrap_or_default()
            ))
        }
        Found::Usable => None,
        Found::Damaged(reason) => Some(reason),
    };
    if seen.is_some() && found.is_none() {
        main.execute("DELETE FROM sync_state WHERE key = ?1", [SEEN_KEY])?;
    }
    let moved = match found {
        Some(reason) => Some(replace(&cat, &reason, main)?),
        None => None,
    };
    if std::fs::symlink_metadata(&cat).is_err() {
        fresh(&cat, main)?;
    }
    match open_checked(&cat) {
        Ok(conn) => {
            files::make_private(&cat)?;
            Ok(conn)
        }
        Err(Opened::Damaged(reason)) if moved.is_none() => {
            replace(&cat, &reason, main)?;
            fresh(&cat, main)?;
            match open_checked(&cat) {
                Ok(conn) => {
                    files::make_private(&cat)?;
                    Ok(conn)
                }
                Err(Opened::Damaged(r)) => Err(Error::Storage(format!(
                    "the catalog file {} was damaged ({reason}) and moved aside, but a fresh one fails too: {r}",
                    cat.display()
                ))),
                Err(Opened::Failed(e)) => Err(e),
            }
        }
        Err(Opened::Damaged(r)) => Err(Error::Storage(format!(
            "a fresh catalog file {} fails to open: {r}",
            cat.display()
        ))),
        Err(Opened::Failed(e)) => Err(e),
    }
}

enum Found {
    Usable,
    Damaged(String),
}

/// What is at the catalog's name, read without changing it: nothing, or an empty file, or a
/// catalog, is usable; anything else there is a catalog file damaged beyond SQLite's own
/// checks (the name is ours: `<database>-catalog`).
fn inspect(cat: &Path) -> Result<Found> {
    let head = match files::read_head(cat) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Usable),
        Err(e) => {
            return Err(Error::Storage(format!(
                "cannot read the catalog file {}: {e}",
                cat.display()
            )))
        }
    };
    if head.is_empty() {
        return Ok(Found::Usable);
    }
    if !head.starts_with(files::SQLITE_HEADER) {
        return Ok(Found::Damaged("not a SQLite file".into()));
    }
    if head.len() >= 72 {
        let id = i64::from(u32::from_be_bytes([head[68], head[69], head[70], head[71]]));
        if id == files::APPLICATION_ID {
            return Err(a_database_at_the_name(cat));
        }
        if id != CATALOG_APPLICATION_ID && id != 0 {
            return Ok(Found::Damaged(format!("application id {id:#x}")));
        }
    }
    Ok(Found::Usable)
}

/// A flow-omnium database (another till's `database_path`, perhaps held by its client right
/// now) found at the catalog's name: its outbox is somebody's sales, never a damaged catalog
/// to move aside. Refused, left as it is (review: it was moved aside as damaged, and the other
/// till's undelivered sales with it).
fn a_database_at_the_name(cat: &Path) -> Error {
    Error::Storage(format!(
        "{} is a flow-omnium database, not this database's catalog file; it was left as it is \
         (two databases must not be named <name> and <name>-catalog)",
        cat.display()
    ))
}

/// Moves a damaged catalog file (with its `-wal` and `-shm`) to
/// `<database>-catalog.damaged-<UTC time>`, never deleting anything. The new name is noted
/// in the main file first (committed before the first rename), so the `storage.damaged`
/// event outlives a kill at any point of the move. Returns the new name.
fn replace(cat: &Path, reason: &str, main: &Connection) -> Result<PathBuf> {
    use crate::clock::Clock;
    let now = crate::clock::SystemClock.wall_ms();
    let stamp = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let target = files::aside_name(cat, &stamp);
    note_moved(main, &target)?;
    crash_point("catalog:noted");
    files::move_aside(cat, &target)?;
    crash_point("catalog:moved");
    log::error!(
        "the catalog file {} was damaged ({reason}); moved to {}, a fresh one is pulled from Omnium \
         (the till keeps selling meanwhile)",
        cat.display(),
        target.display()
    );
    Ok(target)
}

/// Appends `target`'s file name to the main file's list of catalog moves ([`MOVED_KEY`]),
/// and clears a damage seen while in use ([`SEEN_KEY`]: this move acts on it), in one
/// committed transaction.
fn note_moved(main: &Connection, target: &Path) -> Result<()> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    main.execute_batch("BEGIN IMMEDIATE")?;
    let noted = (|| -> Result<()> {
        main.execute(
            "INSERT INTO sync_state (key, value) VALUES (?1, json_array(?2))
             ON CONFLICT (key) DO UPDATE SET value = json_insert(
                 CASE WHEN json_valid(value) THEN value ELSE '[]' END, '$[#]', ?2)",
            [MOVED_KEY, &name],
        )?;
        main.execute("DELETE FROM sync_state WHERE key = ?1", [SEEN_KEY])?;
        Ok(())
    })();
    match noted {
        Ok(()) => Ok(main.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = main.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Takes (reads and deletes) the catalog moves noted in the main file: the files they name
/// that exist (a name noted by an open killed before its move is dropped), beside `db`.
pub(super) fn take_moved(main: &Connection, db: &Path) -> Result<Vec<PathBuf>> {
    let noted: Option<String> = main
        .query_row(
            "SELECT value FROM sync_state WHERE key = ?1",
            [MOVED_KEY],
            |r| r.get(0),
        )
        .optional()?;
    let Some(noted) = noted else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = serde_json::from_str(&noted).unwrap_or_default();
    let dir = db.parent().unwrap_or(Path::new("/"));
    let mut moved: Vec<PathBuf> = Vec::new();
    for name in names {
        // Only a name of ours, beside the database (the value is our own, but it is read
        // back from a file).
        if name.contains('/') || name.is_empty() {
            continue;
        }
        let path = dir.join(&name);
        let there = ["", "-wal", "-shm"]
            .iter()
            .any(|s| std::fs::symlink_metadata(side_file(&path, s)).is_ok());
        if there && !moved.contains(&path) {
            moved.push(path);
        }
    }
    main.execute("DELETE FROM sync_state WHERE key = ?1", [MOVED_KEY])?;
    Ok(moved)
}

/// Creates an empty catalog file (0600). A `-wal` or `-shm` left without their file (a
/// move aside cut short moves them first, so only foreign hands leave one) is moved aside
/// too: SQLite would otherwise replay that WAL into the fresh file.
fn fresh(cat: &Path, main: &Connection) -> Result<()> {
    let orphan = ["-wal", "-shm"]
        .iter()
        .any(|s| std::fs::symlink_metadata(side_file(cat, s)).is_ok());
    if orphan {
        replace(cat, "a -wal or -shm without its catalog file", main)?;
    }
    files::create_private(cat)?;
    files::sync_dir(cat.parent().unwrap_or(Path::new("/")))
}

/// Opens the catalog file read-write with its pragmas read back, checks it, migrates it.
fn open_checked(cat: &Path) -> std::result::Result<Connection, Opened> {
    let flags = BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_WRITE;
    let conn = Connection::open_with_flags(cat, flags).map_err(|e| {
        Opened::Failed(Error::Storage(format!(
            "cannot open the catalog file {}: {e}",
            cat.display()
        )))
    })?;
    // A damaged file is moved aside as found: no checkpoint of its WAL into it on close.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app == files::APPLICATION_ID {
        // Read through its WAL: a database just made has its id there, not yet in the file.
        return Err(Opened::Failed(a_database_at_the_name(cat)));
    }
    if app != CATALOG_APPLICATION_ID && app != 0 {
        return Err(Opened::Damaged(format!("application id {app:#x}")));
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    expect_pragma("journal_mode", &mode.to_ascii_lowercase(), "wal")?;
    // Data Omnium can send again: a power cut loses at most the last commits, and their
    // cursors with them (a WAL commit is atomic), so they are pulled again.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    expect_pragma("synchronous", &sync.to_string(), "1")?;
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    expect_pragma("foreign_keys", &fk.to_string(), "1")?;
    // A first sync's transactions grow the WAL; it is cut back to 8 MiB after the
    // checkpoints that reset it.
    conn.execute_batch(
        "PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = 8388608",
    )?;
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    let secure: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
    expect_pragma("secure_delete", &secure.to_string(), "1")?;
    if !conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)? {
        return Err(Opened::Failed(Error::Storage(
            "SQLite refused the query planner stability guarantee".into(),
        )));
    }
    // Never creates or writes another file through ATTACH (the copy from the main file
    // attaches it read-only).
    attach_config(&conn, ATTACH_CREATE, false)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Opened::Damaged(format!("integrity check: {check}")));
    }
    super::fold::register(&conn)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CATALOG_LATEST {
        // A newer flow-omnium's catalog: moved aside and pulled again (nothing is lost).
        return Err(Opened::Damaged(format!(
            "schema version {version}, newer than this library's {CATALOG_LATEST}"
        )));
    }
    migrate(&conn, version)?;
    reindex_if_folded_otherwise(&conn)?;
    if version != CATALOG_LATEST {
        // What the migration wrote goes into the file now: the WAL does not start out
        // holding a copy of the schema.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
    Ok(conn)
}

fn migrate(conn: &Connection, version: i64) -> Result<()> {
    if version == CATALOG_LATEST {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if version > 0 && super::deferred::build_in(conn)? {
            // A migration may rewrite what a first sync set aside: put it back first (a
            // catalog upgraded in the middle of its first sync; store/deferred.rs).
            log::info!("catalog search index built before migrating");
        }
        for sql in CATALOG_MIGRATIONS.iter().skip(version as usize) {
            conn.execute_batch(sql)?;
        }
        if version == 0 {
            // A new catalog is folded by this library's rules.
            conn.execute(
                "INSERT OR REPLACE INTO catalog_state (key, value) VALUES (?1, ?2)",
                rusqlite::params![
                    super::fold::FOLD_VERSION_KEY,
                    super::fold::FOLD_VERSION.to_string()
                ],
            )?;
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = {CATALOG_LATEST}; PRAGMA application_id = {CATALOG_APPLICATION_ID};"
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

/// Has the search index and the listings' sort keys folded again when another version's
/// rules made them (see `schema.rs`'s history): not here, but by the worker's build (the
/// same mark as a first sync's, store/deferred.rs), set in one transaction.
pub(super) fn reindex_if_folded_otherwise(conn: &Connection) -> Result<()> {
    use super::fold::{FOLD_VERSION, FOLD_VERSION_KEY};
    let kept: Option<String> = conn
        .query_row(
            "SELECT value FROM catalog_state WHERE key = ?1",
            [FOLD_VERSION_KEY],
            |r| r.get(0),
        )
        .optional()?;
    if kept.as_deref() == Some(FOLD_VERSION.to_string().as_str()) {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| -> Result<()> {
        if super::deferred::owed(conn)?.is_some() {
            // The build already owed folds by these rules and records their version.
            return Ok(());
        }
        let empty: bool = conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM product)", [], |r| {
            r.get(0)
        })?;
        if empty {
            conn.execute(
                "INSERT OR REPLACE INTO catalog_state (key, value) VALUES (?1, ?2)",
                rusqlite::params![FOLD_VERSION_KEY, FOLD_VERSION.to_string()],
            )?;
            return Ok(());
        }
        // Not in the open (folding 100,000 products took 6.6 s of it): the index is set
        // aside as for a first sync (store/deferred.rs), searches read the tables folded by
        // these rules, and the worker builds it again and records the version.
        super::deferred::defer_in(conn)?;
        log::info!(
            "search index to be folded again by the rules of version {FOLD_VERSION} (was {}) by the worker",
            kept.as_deref().unwrap_or("1")
        );
        Ok(())
    })()
    .and_then(|()| Ok(conn.execute_batch("COMMIT")?));
    if let Err(e) = done {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(())
}

/// Copies the catalog of a database from before the split (its tables in the main file,
/// `main` at the schema version just before [`SPLIT_MARK`]'s) into the catalog file, in one
/// transaction of the catalog file. The main file's migration that drops the tables comes
/// after; a crash before it commits copies again at the next open. The caller holds the
/// database's lock; `main` is its writer (a catalog file found damaged here is moved aside
/// and noted there, reported by the open: [`take_moved`]).
pub(super) fn copy_from_main(db: &Path, main: &Connection) -> Result<()> {
    let started = std::time::Instant::now();
    let cat = open_writer(db, main)?;
    // Read-only: nothing the copy does can write the main file.
    attach_config(&cat, ATTACH_WRITE, false)?;
    cat.execute(
        "ATTACH DATABASE CAST(?1 AS TEXT) AS old",
        [db.as_os_str().as_encoded_bytes()],
    )?;
    // This one commit is synced: the main file's copy is dropped right after it.
    cat.execute_batch("PRAGMA synchronous = FULL")?;
    let copied = (|| -> Result<i64> {
        cat.execute_batch("BEGIN IMMEDIATE")?;
        let r = (|| -> Result<i64> {
            // Redone after a crash: what an earlier copy left goes first.
            cat.execute_batch(
                "DELETE FROM main.product_category;
                 DELETE FROM main.price;
                 DELETE FROM main.product;
                 DELETE FROM main.category_member;
                 INSERT INTO main.product_fts (product_fts) VALUES ('delete-all');
                 DELETE FROM main.category;
                 DELETE FROM main.catalog_cursor;",
            )?;
            // Copied as a first sync writes (store/deferred.rs): without the search index,
            // listings and name indexes, which the worker builds once at its start, not
            // row by row inside this open. Searches read the tables until then.
            if super::deferred::owed(&cat)?.is_none() {
                super::deferred::defer_in(&cat)?;
            }
            cat.execute_batch(
                "INSERT INTO main.product (rowid, sku, product_id, name, brand, ean, gtins,
                                           category_ids, image_urls, active, language, cost_price)
                 SELECT rowid, sku, product_id, name, brand, ean, gtins, category_ids,
                        image_urls, active, language, cost_price
                 FROM old.product ORDER BY rowid;
                 INSERT OR IGNORE INTO main.product_category (product_sku, category_id)
                 SELECT product_sku, category_id FROM old.product_category
                 WHERE product_sku IN (SELECT sku FROM main.product);
                 INSERT INTO main.price (sku, unit_price, currency, store_specific,
                                         variant_specific, valid_from, valid_until, member)
                 SELECT sku, unit_price, currency, store_specific, variant_specific,
                        valid_from, valid_until, member
                 FROM old.price WHERE sku IN (SELECT sku FROM main.product);
                 INSERT INTO main.category (id, name, parent_id, sort_index)
                 SELECT id, name, parent_id, sort_index FROM old.category;
                 INSERT INTO main.catalog_cursor (dataset, high_water_ms, last_pull_at, settled)
                 SELECT dataset, high_water_ms, last_pull_at, settled FROM old.pull_cursor
                 WHERE dataset IN ('products', 'categories');",
            )?;
            cat.execute(
                "INSERT OR REPLACE INTO main.catalog_state (key, value) VALUES (?1, ?2)",
                rusqlite::params![
                    super::fold::FOLD_VERSION_KEY,
                    super::fold::FOLD_VERSION.to_string()
                ],
            )?;
            Ok(cat.query_row("SELECT COUNT(*) FROM main.product", [], |r| r.get(0))?)
        })();
        match r {
            Ok(n) => {
                cat.execute_batch("COMMIT")?;
                Ok(n)
            }
            Err(e) => {
                let _ = cat.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    })();
    let _ = cat.execute_batch("DETACH DATABASE old");
    let n = copied?;
    crash_point("catalog:copied");
    log::info!(
        "the catalog ({n} SKUs) moved to its own file {} ({} ms)",
        catalog_path(db).display(),
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Attaches the catalog file to a reader connection as `catalog`, read-only (never created:
/// a database whose catalog is still in the main file, as an operator tool may find one
/// before the client's first open after an upgrade, reads it there).
pub(super) fn attach(conn: &Connection, db: &Path) -> Result<()> {
    let cat = catalog_path(db);
    match std::fs::symlink_metadata(&cat) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(()),
    }
    attach_config(conn, ATTACH_CREATE, false)?;
    attach_config(conn, ATTACH_WRITE, false)?;
    // The path's bytes as text (a path need not be UTF-8); never read as a URI (the
    // connection has no SQLITE_OPEN_URI and SQLite is built without SQLITE_USE_URI), and
    // opened NOFOLLOW like the connection's own file.
    // SQLite loads every attached schema for any statement: a catalog file that cannot be
    // read (damaged; the client moves it aside at its next open) would fail the reads of
    // the main file too (outbox, stock, orders, the CLI's status). Left detached then:
    // catalog reads fail ("no such table"), the rest reads on.
    let attached = conn
        .execute(
            "ATTACH DATABASE CAST(?1 AS TEXT) AS catalog",
            [cat.as_os_str().as_encoded_bytes()],
        )
        .and_then(|_| conn.query_row("SELECT count(*) FROM catalog.sqlite_schema", [], |_| Ok(())));
    match attached {
        Ok(()) => Ok(()),
        Err(e) if damage(&e) => {
            log::warn!(
                "the catalog file {} cannot be read ({e}); read without it",
                cat.display()
            );
            if self::attached(conn)? {
                conn.execute_batch("DETACH DATABASE catalog")?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` says a file is damaged (not a database, or corrupt).
fn damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Why the catalog file beside `db` cannot be read, if it is there and cannot (what
/// [`attach`] leaves detached): for the operator's integrity check.
pub fn unreadable(db: &Path) -> Option<String> {
    let cat = catalog_path(db);
    match std::fs::symlink_metadata(&cat) {
        Ok(m) if m.is_file() => {}
        _ => return None,
    }
    let conn = Connection::open_with_flags(&cat, BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(c)
        });
    conn.err()
        .map(|e| format!("the catalog file {}: {e}", cat.display()))
}

/// Whether `conn` has the catalog file attached (a reader) as `catalog`.
pub(crate) fn attached(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM pragma_database_list WHERE name = 'catalog'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// `SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE` and `_WRITE` (SQLite 3.49; rusqlite names them
/// only with its `modern_sqlite` feature).
const ATTACH_CREATE: std::ffi::c_int = 1020;
const ATTACH_WRITE: std::ffi::c_int = 1021;

/// Sets one of the ATTACH switches and reads it back (the bundled SQLite has them; one
/// that does not is an error, never a silent write through ATTACH).
fn attach_config(conn: &Connection, op: std::ffi::c_int, on: bool) -> Result<()> {
    let mut now: std::ffi::c_int = -1;
    // SAFETY: the connection's handle is valid for the call; this op takes an int and an
    // int pointer, as passed.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(conn.handle(), op, std::ffi::c_int::from(on), &mut now)
    };
    if rc != rusqlite::ffi::SQLITE_OK || now != std::ffi::c_int::from(on) {
        return Err(Error::Storage(format!(
            "SQLite refused to set ATTACH option {op} (rc {rc}, now {now})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{schema, SearchQuery, Store, APPLICATION_ID};

    /// A database as the versions before the split left it: the catalog in the main file.
    fn single_file(db: &Path) {
        let conn = Connection::open(db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        schema::migrate_to(&conn, schema::split_version() - 1).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             INSERT INTO product (sku, product_id, name, brand, ean, gtins, category_ids, image_urls, active)
             VALUES ('G-1', 'P-1', 'Gløgg Straße', 'Ærlig', '7001', '', '[\"jul\"]', '[]', 1),
                    ('G-2', 'P-2', 'Gløgg alkoholfri', 'Ærlig', NULL, '', '[\"jul\"]', '[]', 0),
                    ('K-1', 'P-3', 'Kaffe', 'Friele', '7003', '', '[\"jul\"]', '[]', 1);
             INSERT INTO product_category (product_sku, category_id)
             VALUES ('G-1', 'jul'), ('G-2', 'jul'), ('K-1', 'jul');
             INSERT INTO price (sku, unit_price, currency, store_specific, variant_specific, member)
             VALUES ('G-1', 9900, 'NOK', 0, 0, 0), ('G-1', 8900, 'NOK', 0, 0, 1);
             INSERT INTO category (id, name, parent_id, sort_index) VALUES ('jul', 'Jul', NULL, 0);
             INSERT INTO pull_cursor (dataset, high_water_ms, last_pull_at, settled)
             VALUES ('products', 500, 600, 1), ('categories', NULL, 600, 0), ('stock', 700, 800, 1);
             INSERT INTO stock_level (sku, warehouse_id, quantity, reserved, modified_ms)
             VALUES ('G-1', 'oslo-1', 4, 0, 1);
             INSERT INTO sync_state (key, value) VALUES ('search.fold_version', '2');"
        ))
        .unwrap();
    }

    fn table_in_main(s: &Store, name: &str) -> bool {
        s.conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    }

    /// What the till reads after the move: the same catalog, prices, listings, cursors, and
    /// nothing of it left in the main file.
    fn moved_intact(s: &Store) {
        let p = s.product("G-1", 0).unwrap().expect("G-1");
        assert_eq!(p.price.map(|p| p.unit_price), Some(9900));
        assert_eq!(p.member_price.map(|p| p.unit_price), Some(8900));
        let text = SearchQuery {
            text: Some("glogg".into()),
            limit: 10,
            ..SearchQuery::default()
        };
        let (found, _) = s.search_products(&text, 0).unwrap();
        assert_eq!(
            found.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
            ["G-1"]
        );
        let listing = SearchQuery {
            category_id: Some("jul".into()),
            limit: 10,
            ..SearchQuery::default()
        };
        let (listed, total) = s.search_products(&listing, 0).unwrap();
        assert_eq!(total, 2);
        assert_eq!(
            listed.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
            ["G-1", "K-1"]
        );
        assert_eq!(s.categories().unwrap().len(), 1);
        assert_eq!(s.cursor("products").unwrap(), (Some(500), true));
        assert_eq!(s.cursor("categories").unwrap(), (None, false));
        assert_eq!(
            s.cursor("stock").unwrap(),
            (Some(700), true),
            "stays in main"
        );
        let stock = s.stock("G-1", &["oslo-1".to_string()]).unwrap().unwrap();
        assert_eq!(stock.warehouses[0].quantity, 4.0);
        let prices: i64 = s
            .catalog()
            .unwrap()
            .query_row("SELECT count(*) FROM price", [], |r| r.get(0))
            .unwrap();
        assert_eq!(prices, 2, "copied once");
        for t in [
            "product",
            "price",
            "product_fts",
            "category",
            "category_member",
        ] {
            assert!(!table_in_main(s, t), "{t} left in the main file");
        }
        let main_cursors: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM pull_cursor WHERE dataset IN ('products', 'categories')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(main_cursors, 0);
        let app: i64 = s
            .catalog()
            .unwrap()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, CATALOG_APPLICATION_ID);
    }

    /// Every catalog query of the till, planned on a reader (the catalog file attached, the
    /// names unqualified): each reads through its index, none scans a catalog table.
    #[test]
    fn catalog_queries_plan_with_their_indexes_through_attach() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        single_file(&db);
        let s = Store::open(&db).unwrap();
        // The copy leaves the search index and name indexes to the worker's build at its
        // start (store/deferred.rs); searches read the tables until then.
        assert!(s.catalog_build_owed().unwrap());
        assert!(s.finish_catalog_build().unwrap());
        let reader = crate::store::open_reader(&db).unwrap();
        assert!(attached(&reader).unwrap());
        for (sql, index) in [
            (
                "SELECT sku, product_id, name FROM product WHERE sku = 'G-1'",
                "sqlite_autoindex_product_1",
            ),
            (
                "SELECT rowid FROM product INDEXED BY product_by_ean WHERE ean = '7001' AND active = 1 LIMIT 1",
                "product_by_ean",
            ),
            (
                "SELECT unit_price FROM price WHERE sku = 'G-1'",
                "price_by_sku",
            ),
            (
                "SELECT p.sku FROM product p WHERE p.active = 1 AND p.brand = 'Ærlig' ORDER BY p.name, p.rowid LIMIT 10",
                "product_by_brand_name",
            ),
            (
                "SELECT p.sku FROM product p WHERE p.active = 1 ORDER BY p.name, p.rowid LIMIT 10",
                "product_by_active_name",
            ),
            (
                "SELECT sku FROM category_member INDEXED BY category_member_by_key
                 WHERE category_id = 'jul' ORDER BY sort_key, name, sku LIMIT 10",
                "category_member_by_key",
            ),
            (
                "SELECT p.sku FROM product_category pc JOIN product p ON p.sku = pc.product_sku
                 WHERE p.active = 1 AND pc.category_id = 'jul' AND p.brand = 'Ærlig' LIMIT 10",
                "product_by_brand_name",
            ),
            (
                "SELECT p.sku FROM product_fts f JOIN product p ON p.rowid = f.rowid
                 WHERE p.active = 1 AND f.product_fts MATCH 'glogg*' LIMIT 10",
                "INTEGER PRIMARY KEY",
            ),
            (
                "SELECT EXISTS (SELECT 1 FROM product WHERE sku = 'G-1')
                     OR EXISTS (SELECT 1 FROM stock_level WHERE sku = 'G-1')",
                "sqlite_autoindex_product_1",
            ),
        ] {
            let plan: Vec<String> = reader
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(
                plan.iter().any(|p| p.contains(index)),
                "{sql}: {plan:?} does not use {index}"
            );
            assert!(
                !plan.iter().any(|p| p.starts_with("SCAN")
                    && !p.contains("VIRTUAL TABLE")
                    && !p.contains("CONSTANT ROW")),
                "{sql}: a catalog table is scanned: {plan:?}"
            );
        }
        drop(s);
    }

    #[test]
    fn a_single_file_database_moves_its_catalog_to_its_own_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        single_file(&db);
        let s = Store::open(&db).unwrap();
        moved_intact(&s);
        assert_eq!(
            s.get_state(schema::VACUUM_OWED).unwrap(),
            None,
            "the main file was rewritten without the catalog's pages"
        );
        drop(s);
        // The next open copies nothing again (the main file has no catalog left).
        let s = Store::open(&db).unwrap();
        moved_intact(&s);
    }

    /// Review: a catalog file found damaged while a single-file database's catalog is
    /// copied out of it was moved aside by the copy without a word (the open that followed
    /// found a fresh file): the move is reported like any other, and the copy goes on into
    /// a fresh file.
    #[test]
    fn a_damaged_catalog_found_by_the_copy_out_of_a_single_file_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        single_file(&db);
        let garbage = b"not a catalog, not even SQLite: damaged beyond repair".repeat(100);
        std::fs::write(catalog_path(&db), &garbage).unwrap();
        let s = Store::open(&db).unwrap();
        let moved = s.catalog_damage().to_vec();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pos.db-catalog.damaged-"));
        assert_eq!(std::fs::read(&moved[0]).unwrap(), garbage, "moved as found");
        moved_intact(&s);
        drop(s);
        // Reported once: the next open has nothing to report.
        let s = Store::open(&db).unwrap();
        assert!(s.catalog_damage().is_empty());
    }

    /// Not a test on its own: opens the database named by `FO_CATFILE_DB` (the crash test
    /// below runs it with `FO_TEST_CRASH_AT` set).
    #[test]
    #[ignore = "run as a child process by the migration crash test"]
    fn child_opens_a_single_file_database() {
        let db = std::env::var_os("FO_CATFILE_DB").expect("FO_CATFILE_DB");
        let _ = Store::open(Path::new(&db));
    }

    fn open_and_crash_at(db: &Path, point: &str) -> Option<i32> {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--ignored",
            "--exact",
            "store::catalog_file::tests::child_opens_a_single_file_database",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FO_CATFILE_DB", db)
        .env("FO_TEST_CRASH_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        // SAFETY: only setrlimit (async-signal-safe) between fork and exec: no core file.
        unsafe {
            cmd.pre_exec(|| {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
        cmd.status().unwrap().signal()
    }

    /// Killed after the copy committed and before the main file dropped its tables: the
    /// main file's version is the mark, the next open copies again (not twice over) and
    /// drops. Killed twice in a row there: the same.
    #[test]
    fn a_crash_between_the_copy_and_the_drop_copies_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        single_file(&db);
        for _ in 0..2 {
            assert_eq!(
                open_and_crash_at(&db, "catalog:copied"),
                Some(libc::SIGABRT),
                "the child must abort at the crash point"
            );
            let main = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let (version, products): (i64, i64) = main
                .query_row(
                    "SELECT (SELECT user_version FROM pragma_user_version),
                            (SELECT count(*) FROM product)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((version, products), (schema::split_version() - 1, 3));
            let cat =
                Connection::open_with_flags(catalog_path(&db), OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .unwrap();
            let copied: i64 = cat
                .query_row("SELECT count(*) FROM price", [], |r| r.get(0))
                .unwrap();
            assert_eq!(copied, 2, "the copy committed before the crash");
        }
        let s = Store::open(&db).unwrap();
        moved_intact(&s);
    }
}
