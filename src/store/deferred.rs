//! The search index, the category listings and the secondary indexes, built once after a
//! first sync instead of row by row during it (issue 10 target 6).
//!
//! Row by row, every SKU a first sync writes goes into the FTS5 index (five columns, prefix
//! indexes 1–3), into `category_member` through one trigger program per category link, and
//! into three name/brand/EAN indexes at random places: together most of the apply time.
//! A first sync into an empty catalog ([`Store::begin_catalog_build`]) sets those triggers
//! and indexes aside, in one transaction with a mark (`catalog_state` [`BUILD_OWED_KEY`],
//! holding their SQL as `sqlite_master` had it), and writes the bare tables. At the end of
//! the pull's products step ([`Store::finish_catalog_build`]) the search index and
//! `category_member` are filled from the tables in one pass, the indexes are created (one
//! sort each) and the triggers put back, the mark cleared last. Later (delta) syncs write
//! through the incremental triggers again.
//!
//! Crash safety: the mark commits with the objects' removal and is cleared in the
//! transaction that puts the last of them back, so a crash anywhere leaves it set. While
//! it is set, readers that see it (in the same snapshot as the rows) search the tables
//! directly ([`search_unindexed`]: the same folding and matching, slower, unranked), and
//! the next products step of the worker builds again from the start. A re-fold of the
//! index by newer folding rules ([`super::fold::FOLD_VERSION`]) uses the same mark, so
//! opening a database never folds the catalog itself.
//!
//! When and where it runs: on a thread of its own ([`Store::run_catalog_builder`], started
//! by the client at open), never on the worker (queued sales never wait for it) nor inside
//! a POS call. It is kicked at open and at the end of each products step, and looks again
//! after [`QUIET`] without product writes (a products step that ended in an outage). Its
//! transactions are short and yield: a thread that waits for the catalog's writer interrupts
//! the statement in progress (`sqlite3_interrupt`: a big index sort is rolled back and
//! redone after), and a write of product rows ([`Store::pause_catalog_build`], a products
//! page or the resync's sweep) stops the build, which starts again from the mark once the
//! writes end (rows it had indexed may have changed under it). A close stops it the same
//! way and waits only for that rollback; the mark stays, so the next open builds again.
//! In the deterministic simulation (no builder thread) a kick builds on the caller's thread.

use super::catalog::{product_view, ProductView, SearchQuery};
use super::fold;
use super::Store;
use crate::error::Result;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// `catalog_state` key present while the build is owed. Its value: the JSON list of the schema
/// objects set aside, `[type, name, sql]` each, recreated by the build.
pub(crate) const BUILD_OWED_KEY: &str = "catalog.build_owed";

/// What row-by-row writes maintain and a first sync does without: the search index's and
/// the category listings' triggers, and the indexes no statement of the sync's writes reads
/// (`product_by_product_id` and `price_by_sku` stay: the upserts read them).
const DEFERRED: [&str; 12] = [
    "product_fts_insert",
    "product_fts_delete",
    "product_fts_update",
    "category_member_link",
    "category_member_unlink",
    "category_member_product",
    "category_member_product_gone",
    "product_by_ean",
    "product_by_brand_name",
    "product_by_active_name",
    "category_member_by_key",
    "product_category_by_category",
];

/// Products whose index entries one statement of the build writes.
const FILL_ROWS: i64 = 2_000;
/// The longest one transaction of the build runs when no caller waits for the writer.
const BUILD_TX: std::time::Duration = std::time::Duration::from_millis(500);

/// The builder looks for an owed build this long after the last product write even
/// without a kick (a products step cut short by an outage never kicks it).
const QUIET: Duration = Duration::from_secs(20);

type Object = (String, String, String);

/// The background build's controls (one per store; see the module doc).
#[derive(Default)]
pub(crate) struct BuildCtl {
    /// Bumped before every write of product rows: a build that sees it move stops.
    writes: AtomicU64,
    /// Threads blocked waiting for the catalog's writer: the build commits and steps aside.
    pub(crate) waiting: AtomicUsize,
    state: Mutex<BuildState>,
    wake: Condvar,
}

#[derive(Default)]
struct BuildState {
    /// A builder thread serves kicks (without one a kick builds on the caller's thread).
    thread: bool,
    kicked: bool,
    stop: bool,
    /// Set while the builder is inside a transaction of the catalog's writer: what
    /// interrupts its statement. Cleared (under this lock) before it commits.
    interrupt: Option<rusqlite::InterruptHandle>,
    /// The builder's transaction was interrupted since it began (its error is that).
    interrupted: bool,
}

impl BuildCtl {
    fn state(&self) -> std::sync::MutexGuard<'_, BuildState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Interrupts the builder's statement, if it is inside a transaction (under the lock
    /// that it clears the handle under, so nothing else's statement is ever interrupted).
    pub(crate) fn interrupt(&self) {
        let mut st = self.state();
        if let Some(h) = &st.interrupt {
            h.interrupt();
            st.interrupted = true;
        }
    }

    fn stopping(&self) -> bool {
        self.state().stop
    }
}

/// How a build in the background ended.
enum Built {
    Done,
    NotOwed,
    /// Product rows were written meanwhile: started again once those writes end.
    Paused,
    /// The client is closing.
    Stopped,
}

/// One step of the build: done, or the build must pause or stop first.
enum Step<T> {
    Done(T),
    Paused,
    Stopped,
}

/// The build's mark, if it is owed (read in the caller's snapshot).
pub(crate) fn owed(c: &Connection) -> Result<Option<String>> {
    Ok(
        c.prepare_cached("SELECT value FROM catalog_state WHERE key = ?1")?
            .query_row([BUILD_OWED_KEY], |r| r.get(0))
            .optional()?,
    )
}

fn objects(mark: &str) -> Result<Vec<Object>> {
    serde_json::from_str(mark).map_err(|e| {
        crate::error::Error::Storage(format!("the catalog build's mark cannot be read: {e}"))
    })
}

fn exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)")?
            .query_row([name], |r| r.get(0))?,
    )
}

/// Sets the deferred objects aside and writes the mark, in the caller's transaction.
pub(crate) fn defer_in(c: &Connection) -> Result<()> {
    let names = serde_json::to_string(&DEFERRED).unwrap_or_default();
    let objects: Vec<Object> = c
        .prepare(
            "SELECT type, name, sql FROM sqlite_master
             WHERE name IN (SELECT value FROM json_each(?1)) AND sql IS NOT NULL
             ORDER BY type = 'trigger', name",
        )?
        .query_map([names], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mark = serde_json::to_string(&objects).unwrap_or_default();
    c.execute(
        "INSERT INTO catalog_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [BUILD_OWED_KEY, &mark],
    )?;
    for (kind, name, _) in &objects {
        let kind = if kind == "trigger" {
            "TRIGGER"
        } else {
            "INDEX"
        };
        c.execute_batch(&format!("DROP {kind} \"{name}\""))?;
    }
    Ok(())
}

/// Empties what the build fills (a build cut short left part of it).
fn start_over(c: &Connection) -> Result<()> {
    c.execute_batch(
        "INSERT INTO product_fts (product_fts) VALUES ('delete-all');
         DELETE FROM category_member;",
    )?;
    Ok(())
}

/// Fills the search index for the products with rowids in `(after, upto]`.
fn fill(c: &Connection, after: i64, upto: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO product_fts (rowid, sku, name, ean, brand, gtins)
         SELECT rowid, fo_fold(sku), fo_fold(name), fo_fold(ean), fo_fold(brand), fo_fold(gtins)
         FROM product WHERE rowid > ?1 AND rowid <= ?2 AND active = 1",
    )?
    .execute([after, upto])?;
    Ok(())
}

/// Fills `category_member` for one category (`None`: all), in its key's order: appended
/// to the b-tree rather than inserted at random places (that took three times as long).
fn fill_members(c: &Connection, category: Option<&str>) -> Result<()> {
    const SELECT: &str = "INSERT OR IGNORE INTO category_member (category_id, name, sku, sort_key)
         SELECT pc.category_id, p.name, p.sku, fo_sort_key(p.name)
         FROM product_category pc {} CROSS JOIN product p ON p.sku = pc.product_sku
         WHERE p.active = 1";
    // The links drive the join (CROSS JOIN keeps that order): with the name index in
    // place, SQLite read all sellable products by name for each category instead.
    match category {
        Some(category) => c
            .prepare_cached(&format!(
                "{} AND pc.category_id = ?1 ORDER BY p.name, p.sku",
                SELECT.replace("{}", "INDEXED BY product_category_by_category")
            ))?
            .execute([category])?,
        None => c
            .prepare_cached(&format!(
                "{} ORDER BY pc.category_id, p.name, p.sku",
                SELECT.replace("{}", "")
            ))?
            .execute([])?,
    };
    Ok(())
}

/// The last rowid of the next `FILL_ROWS` products after `after`, if any.
fn next_upto(c: &Connection, after: i64) -> Result<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT MAX(rowid) FROM (SELECT rowid FROM product WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
    )?
    .query_row([after, FILL_ROWS], |r| r.get(0))?)
}

/// Puts back the objects of `kind` that are not there, in the mark's order.
fn restore(c: &Connection, objects: &[Object], kind: &str) -> Result<()> {
    for (k, name, sql) in objects.iter().filter(|o| o.0 == kind) {
        debug_assert_eq!(k, kind);
        if !exists(c, name)? {
            c.execute_batch(sql)?;
        }
    }
    Ok(())
}

/// The build's last step: the triggers back, the folding rules recorded, the mark cleared.
fn conclude(c: &Connection, objects: &[Object]) -> Result<()> {
    restore(c, objects, "trigger")?;
    c.execute(
        "INSERT OR REPLACE INTO catalog_state (key, value) VALUES (?1, ?2)",
        [fold::FOLD_VERSION_KEY, &fold::FOLD_VERSION.to_string()],
    )?;
    c.execute("DELETE FROM catalog_state WHERE key = ?1", [BUILD_OWED_KEY])?;
    Ok(())
}

/// The whole build in the caller's transaction (before migrations run on a database whose
/// build is owed: a migration may rewrite the objects set aside). `false`: none was owed.
pub(crate) fn build_in(c: &Connection) -> Result<bool> {
    let Some(mark) = owed(c)? else {
        return Ok(false);
    };
    let objects = objects(&mark)?;
    start_over(c)?;
    fill(c, i64::MIN, i64::MAX)?;
    fill_members(c, None)?;
    restore(c, &objects, "index")?;
    conclude(c, &objects)?;
    Ok(true)
}

impl Store {
    /// Before the first page of a products read: on an empty catalog, sets the search index,
    /// the listings and the secondary indexes aside until [`Store::finish_catalog_build`]
    /// (see the module doc). Returns whether the build is owed now (also when it already
    /// was); a catalog that holds products is left as it is.
    pub fn begin_catalog_build(&self) -> Result<bool> {
        let mut conn = self.catalog()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if owed(&tx)?.is_some() {
            return Ok(true);
        }
        let empty: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM product)", [], |r| {
            r.get(0)
        })?;
        if !empty {
            return Ok(false);
        }
        defer_in(&tx)?;
        tx.commit()?;
        log::info!("first sync: the search index and listings are built once it has ended");
        Ok(true)
    }

    /// Builds what [`Store::begin_catalog_build`] (or a re-fold) set aside, if anything,
    /// on the caller's thread: the search index and `category_member` filled from the
    /// tables in transactions of the catalog file, then the indexes, then the triggers with
    /// the mark cleared. Returns whether it built. Restarts from the start after a crash
    /// (the mark stays until the last step). The client builds on its own thread instead
    /// ([`Store::run_catalog_builder`]).
    pub fn finish_catalog_build(&self) -> Result<bool> {
        Ok(matches!(self.build_steps(false)?, Built::Done))
    }

    /// Whether the search index's build is owed (searches read the tables meanwhile).
    pub fn catalog_build_owed(&self) -> Result<bool> {
        Ok(self.read(owed)?.is_some())
    }

    /// Asks for the owed build (if any) to run now: on the builder thread when one runs,
    /// else here (the deterministic simulation).
    pub fn kick_catalog_build(&self) -> Result<()> {
        let mut st = self.build.state();
        if st.stop {
            // Closing: never built on the caller's thread (the worker's last step would
            // hold the close for the whole build); the mark waits for the next open.
            return Ok(());
        }
        if st.thread {
            st.kicked = true;
            drop(st);
            self.build.wake.notify_all();
            return Ok(());
        }
        drop(st);
        self.finish_catalog_build().map(|_| ())
    }

    /// Called before product rows are written (a products page, the resync's sweep): a
    /// build in progress stops (its statement interrupted, rolled back) and starts again
    /// once the writes end.
    pub(crate) fn pause_catalog_build(&self) {
        self.build.writes.fetch_add(1, Ordering::SeqCst);
        self.build.interrupt();
    }

    /// Called under the catalog's writer by each transaction that writes product rows: a
    /// build whose step runs next sees the count moved and stops, even one that began after
    /// [`Store::pause_catalog_build`] was called for the same write (which happens before
    /// the writer is taken, and only once for a page of several transactions).
    pub(crate) fn note_product_write(&self) {
        self.build.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops the builder thread (the client closes): its statement is interrupted, it
    /// leaves at its next check, the mark stays for the next open.
    pub(crate) fn stop_catalog_build(&self) {
        self.build.state().stop = true;
        self.build.interrupt();
        self.build.wake.notify_all();
    }

    /// The builder thread could not be started: kicks build on their caller's thread.
    pub(crate) fn catalog_builder_failed(&self) {
        let mut st = self.build.state();
        st.thread = false;
        st.kicked = false;
    }

    /// Marks a builder thread as serving kicks, with a first kick waiting (called before
    /// the thread starts, so no kick in between builds on its caller's thread).
    pub(crate) fn catalog_builder_starting(&self) {
        let mut st = self.build.state();
        st.thread = true;
        st.kicked = true;
    }

    /// The builder thread's body: builds when kicked (or after [`QUIET`] with no product
    /// write) while a build is owed, until the store stops it. Lowered to nice 10: it only
    /// catches searches up and must not take a core from recording on a small till.
    pub fn run_catalog_builder(&self) {
        // SAFETY: setpriority on this thread's own id (gettid) changes nothing else.
        #[cfg(target_os = "linux")]
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
        let mut seen = self.build.writes.load(Ordering::SeqCst);
        loop {
            {
                let mut st = self.build.state();
                loop {
                    if st.stop {
                        st.thread = false;
                        return;
                    }
                    if std::mem::take(&mut st.kicked) {
                        break;
                    }
                    let (next, waited) = self
                        .build
                        .wake
                        .wait_timeout(st, QUIET)
                        .unwrap_or_else(|p| p.into_inner());
                    st = next;
                    if waited.timed_out() {
                        let now = self.build.writes.load(Ordering::SeqCst);
                        if now == seen {
                            break;
                        }
                        seen = now;
                    }
                }
            }
            let started = std::time::Instant::now();
            // A bug in one build must not end the thread (kicks would go unserved until
            // the next open): logged, and the mark waits for the next kick.
            let built =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build_steps(true)))
                    .unwrap_or_else(|_| {
                        Err(crate::error::Error::Internal(
                            "a bug was caught in the catalog's index build".into(),
                        ))
                    });
            match built {
                Ok(Built::Done) => {
                    log::debug!(
                        target: crate::sync::pull::TIMING_TARGET,
                        "catalog build: built in {} us",
                        started.elapsed().as_micros()
                    );
                    log::info!(
                        "catalog search index and listings built in {} ms (in the background)",
                        started.elapsed().as_millis()
                    )
                }
                Ok(Built::NotOwed) => {}
                Ok(Built::Paused) => log::debug!(
                    "catalog index build paused by a products page; it starts again after the pull"
                ),
                Ok(Built::Stopped) => {}
                Err(_) if self.build.stopping() => {}
                Err(e) => log::error!("cannot build the catalog's search index: {e}"),
            }
            seen = self.build.writes.load(Ordering::SeqCst);
        }
    }

    /// Runs one step of the build in a transaction of the catalog file. In the background
    /// (`bg`), first lets waiting writers go and checks for product writes since the build
    /// began (`writes`, under the writer's lock) and for a stop; an interrupted statement
    /// is retried unless one of those is why. `f` gets "commit now" for its loop.
    fn build_step<T>(
        &self,
        bg: bool,
        writes: u64,
        mut f: impl FnMut(&rusqlite::Transaction, &dyn Fn() -> bool) -> Result<T>,
    ) -> Result<Step<T>> {
        let ctl = &self.build;
        let moved = || ctl.writes.load(Ordering::SeqCst) != writes;
        loop {
            if bg {
                while ctl.waiting.load(Ordering::SeqCst) > 0 && !ctl.stopping() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if ctl.stopping() {
                    return Ok(Step::Stopped);
                }
                if moved() {
                    return Ok(Step::Paused);
                }
            }
            let r = self.catalog_write(|tx, _| {
                if !bg {
                    return f(tx, &|| false).map(Some);
                }
                if moved() {
                    return Ok(None);
                }
                {
                    let mut st = ctl.state();
                    // A stop that came while this thread waited for the writer found no
                    // statement to interrupt (the handle was not set yet): checked under the
                    // lock it sets the handle under, so the step does not run in full after it.
                    if st.stop {
                        return Err(crate::error::Error::Internal(
                            "the catalog build was stopped".into(),
                        ));
                    }
                    st.interrupt = Some(tx.get_interrupt_handle());
                    st.interrupted = false;
                }
                // Cleared however `f` ends, a panic included (the builder survives one): a
                // handle left behind would interrupt whatever statement the catalog's writer
                // runs next whenever a thread waits for it.
                struct Disarm<'a>(&'a BuildCtl);
                impl Drop for Disarm<'_> {
                    fn drop(&mut self) {
                        self.0.state().interrupt = None;
                    }
                }
                let disarm = Disarm(ctl);
                let yield_now =
                    || moved() || ctl.waiting.load(Ordering::SeqCst) > 0 || ctl.stopping();
                let out = f(tx, &yield_now);
                drop(disarm);
                out.map(Some)
            });
            match r {
                Ok(Some(v)) => return Ok(Step::Done(v)),
                Ok(None) => return Ok(Step::Paused),
                Err(_) if bg && ctl.stopping() => return Ok(Step::Stopped),
                Err(_) if bg && moved() => return Ok(Step::Paused),
                // Interrupted for a thread that waited for the writer: once it is through.
                Err(_) if bg && std::mem::take(&mut ctl.state().interrupted) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn build_steps(&self, bg: bool) -> Result<Built> {
        let writes = self.build.writes.load(Ordering::SeqCst);
        // Read on the catalog's writer, not a reader: the builder opens no connection of
        // its own (a reader opened by it would be the main file's last connection to close
        // at times, and a read-only one neither checkpoints nor removes the WAL).
        let mark = owed(&*self.catalog()?)?;
        let Some(mark) = mark else {
            return Ok(Built::NotOwed);
        };
        let objects = objects(&mark)?;
        let started = std::time::Instant::now();
        let cpu = super::holds::thread_cpu;
        let timed = |what: &str, (since, cpu_since): (std::time::Instant, std::time::Duration)| {
            log::debug!(
                target: crate::sync::pull::TIMING_TARGET,
                "catalog build step: {what} in {} us (this thread's CPU {} us)",
                since.elapsed().as_micros(),
                cpu().saturating_sub(cpu_since).as_micros()
            );
            (std::time::Instant::now(), cpu())
        };
        macro_rules! step {
            ($f:expr) => {
                match self.build_step(bg, writes, $f)? {
                    Step::Done(v) => v,
                    Step::Paused => return Ok(Built::Paused),
                    Step::Stopped => return Ok(Built::Stopped),
                }
            };
        }
        let still_owed = step!(|tx, _| {
            // The mark is read again under the writer's lock: a build that ended meanwhile
            // (on another thread) is not redone.
            if owed(tx)?.is_none() {
                return Ok(false);
            }
            start_over(tx)?;
            Ok(true)
        });
        if !still_owed {
            return Ok(Built::NotOwed);
        }
        let mut since = (std::time::Instant::now(), cpu());
        let mut after = i64::MIN;
        loop {
            let (upto, done) = step!(|tx, yield_now| {
                let began = std::time::Instant::now();
                let mut after = after;
                loop {
                    let Some(upto) = next_upto(tx, after)? else {
                        return Ok((after, true));
                    };
                    fill(tx, after, upto)?;
                    after = upto;
                    if yield_now() || began.elapsed() >= BUILD_TX {
                        return Ok((after, false));
                    }
                }
            });
            after = upto;
            crate::sync::kill_point("mid_catalog_build");
            if done {
                break;
            }
        }
        since = timed("search index", since);
        // The indexes, one transaction each (one sort of its table), the listings' own
        // last: the listings are filled a category at a time through the links' index.
        let indexes: Vec<&Object> = objects.iter().filter(|o| o.0 == "index").collect();
        let (members_key, others): (Vec<&Object>, Vec<&Object>) = indexes
            .into_iter()
            .partition(|o| o.1 == "category_member_by_key");
        for index in others {
            step!(|tx, _| restore(tx, std::slice::from_ref(index), "index"));
            since = timed(&format!("index {}", index.1), since);
        }
        let categories: Vec<String> = step!(|tx, _| {
            Ok(tx
                .prepare("SELECT DISTINCT category_id FROM product_category")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        });
        let mut rest = &categories[..];
        while !rest.is_empty() {
            let n = step!(|tx, yield_now| {
                let began = std::time::Instant::now();
                let mut n = 0;
                while let Some(category) = rest.get(n) {
                    fill_members(tx, Some(category))?;
                    n += 1;
                    if yield_now() || began.elapsed() >= BUILD_TX {
                        break;
                    }
                }
                Ok(n)
            });
            rest = &rest[n..];
        }
        since = timed("listings", since);
        for index in members_key {
            step!(|tx, _| restore(tx, std::slice::from_ref(index), "index"));
            since = timed(&format!("index {}", index.1), since);
        }
        step!(|tx, _| conclude(tx, &objects));
        timed("triggers back", since);
        if !bg {
            log::info!(
                "catalog search index and listings built in {} ms",
                started.elapsed().as_millis()
            );
        }
        Ok(Built::Done)
    }
}

/// A search while the build is owed: the sellable products (of the category and brand
/// asked) scanned, their columns folded and matched as the FTS5 query would match the
/// index. Text hits come exact SKU or EAN first, then by name (not ranked); listings in the
/// order the indexed ones use. Slower than the index (a scan of the catalog per query), but
/// only during a first sync or a re-fold.
pub(crate) fn search_unindexed(
    c: &Connection,
    q: &SearchQuery,
    now_ms: i64,
) -> Result<(Vec<ProductView>, u64)> {
    let groups = q
        .text
        .as_deref()
        .map(fold::query_groups)
        .filter(|g| !g.is_empty());
    let exact = q.text.as_deref().map(str::trim).unwrap_or("");
    let mut sql =
        String::from("SELECT p.rowid, p.sku, p.name, p.ean, p.brand, p.gtins FROM product p");
    let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = Vec::new();
    if let Some(cat) = &q.category_id {
        sql.push_str(
            " JOIN product_category pc ON pc.product_sku = p.sku AND pc.category_id = :cat",
        );
        named.push((":cat", cat));
    }
    sql.push_str(" WHERE p.active = 1");
    if let Some(brand) = &q.brand {
        sql.push_str(" AND p.brand = :brand");
        named.push((":brand", brand));
    }
    struct Hit {
        rowid: i64,
        sku: String,
        name: String,
        exact: bool,
    }
    let mut hits = Vec::new();
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(&named[..])?;
    let folded = |v: Option<String>| -> Vec<String> {
        fold::tokens(v.as_deref().unwrap_or_default())
            .into_iter()
            .map(|t| t.text)
            .collect()
    };
    while let Some(r) = rows.next()? {
        let sku: String = r.get(1)?;
        let name: String = r.get(2)?;
        let ean: Option<String> = r.get(3)?;
        let mut is_exact = false;
        if let Some(g) = &groups {
            let columns = [
                folded(Some(sku.clone())),
                folded(Some(name.clone())),
                folded(ean.clone()),
                folded(r.get(4)?),
                folded(r.get(5)?),
            ];
            if !fold::groups_match(g, &columns) {
                continue;
            }
            is_exact = !exact.is_empty() && (sku == exact || ean.as_deref() == Some(exact));
        }
        hits.push(Hit {
            rowid: r.get(0)?,
            sku,
            name,
            exact: is_exact,
        });
    }
    if groups.is_some() {
        hits.sort_by(|a, b| (!a.exact, &a.name, a.rowid).cmp(&(!b.exact, &b.name, b.rowid)));
    } else if q.category_id.is_some() && q.brand.is_none() {
        hits.sort_by_cached_key(|h| (fold::sort_key(&h.name), h.name.clone(), h.sku.clone()));
    } else {
        hits.sort_by(|a, b| (&a.name, a.rowid).cmp(&(&b.name, b.rowid)));
    }
    let total = hits.len() as u64;
    let mut items = Vec::new();
    for h in hits.iter().skip(q.offset as usize).take(q.limit as usize) {
        if let Some(p) = product_view(c, &h.sku, now_ms)? {
            items.push(p);
        }
    }
    Ok((items, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::{CatalogProduct, SkuRow};

    const WORDS: [&str; 12] = [
        "Blåbær", "genser", "Ærfugl", "Straße", "ull", "jakke", "Øl", "sokker", "抹茶", "lue",
        "blabaer", "Gensere",
    ];

    fn products() -> Vec<CatalogProduct> {
        (0..240)
            .map(|i| {
                let id = format!("P-{i}");
                let skus = (0..1 + i % 3)
                    .map(|v| SkuRow {
                        sku: format!("SKU-{i}-{v}"),
                        product_id: id.clone(),
                        name: format!(
                            "{} {} {}",
                            WORDS[i % 12],
                            WORDS[(i / 12 + v) % 12],
                            ["S", "M", "XL"][v]
                        ),
                        brand: Some(["Nora", "Tine", "Fjord"][i % 3].into()),
                        ean: Some(format!("70{:011}", i * 10 + v)),
                        gtins: vec![format!("07{:011}", i * 10 + v)],
                        category_ids: vec![format!("c{}", i % 5), format!("c{}", i % 7 + 5)],
                        image_urls: Vec::new(),
                        active: (i + v) % 11 != 0,
                        language: Some("no".into()),
                        cost_price: None,
                    })
                    .collect();
                CatalogProduct {
                    product_id: id,
                    skus,
                    prices: Vec::new(),
                    modified_ms: None,
                }
            })
            .collect()
    }

    fn queries() -> Vec<SearchQuery> {
        let mut out = Vec::new();
        let q = |text: Option<&str>, cat: Option<&str>, brand: Option<&str>, offset| SearchQuery {
            text: text.map(str::to_string),
            category_id: cat.map(str::to_string),
            brand: brand.map(str::to_string),
            limit: 500,
            offset,
        };
        for t in [
            "b",
            "bl",
            "blå",
            "blabaer",
            "blaab",
            "gen",
            "genser s",
            "genser m",
            "ærf",
            "arfugl",
            "strasse",
            "抹",
            "抹茶",
            "sku",
            "SKU-17-1",
            "sku 17",
            "7000000000171",
            "0700000",
            "xl",
            "zzz",
            "nora",
        ] {
            out.push(q(Some(t), None, None, 0));
            out.push(q(Some(t), Some("c2"), None, 0));
            out.push(q(Some(t), None, Some("Tine"), 0));
        }
        for c in ["c0", "c3", "c9", "none"] {
            out.push(q(None, Some(c), None, 0));
            out.push(q(None, Some(c), None, 7));
            out.push(q(None, Some(c), Some("Fjord"), 0));
        }
        out.push(q(None, None, Some("Nora"), 0));
        out
    }

    /// Each query's hits (SKUs) and total; the order kept where it is not a ranking.
    fn answers(s: &Store) -> Vec<(Vec<String>, u64)> {
        queries()
            .iter()
            .map(|q| {
                let (items, total) = s.search_products(q, 0).unwrap();
                let mut skus: Vec<String> = items.into_iter().map(|p| p.sku).collect();
                if q.text.is_some() {
                    skus.sort();
                }
                (skus, total)
            })
            .collect()
    }

    fn schema(s: &Store) -> Vec<(String, String)> {
        let c = s.catalog().unwrap();
        let rows = c
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows
    }

    /// A first sync writes bare tables and builds once at its end; searches during it answer
    /// what the incremental index answers for the same rows, and after it the same schema
    /// and answers as an incremental sync, and later writes go through the triggers again.
    #[test]
    fn a_first_sync_builds_at_its_end_and_answers_alike_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let reference = Store::open(&dir.path().join("ref.db")).unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let schema_before = schema(&s);
        assert!(s.begin_catalog_build().unwrap());
        assert!(s
            .catalog()
            .unwrap()
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'product_fts_insert')",
                [],
                |r| r.get::<_, bool>(0)
            )
            .unwrap());
        let all = products();
        for (i, chunk) in all.chunks(60).enumerate() {
            s.apply_products(chunk, None).unwrap();
            reference.apply_products(chunk, None).unwrap();
            assert_eq!(answers(&s), answers(&reference), "after page {i}");
        }
        // Nothing of the index was written row by row.
        let indexed: i64 = s
            .catalog()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM category_member", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 0);
        assert!(s.begin_catalog_build().unwrap(), "still owed");
        assert!(s.finish_catalog_build().unwrap());
        assert!(owed(&s.catalog().unwrap()).unwrap().is_none());
        assert!(!s.finish_catalog_build().unwrap(), "built once");
        assert_eq!(schema(&s), schema_before);
        assert_eq!(answers(&s), answers(&reference));
        // Ranked text results in the same order as the incremental index's.
        for text in ["genser", "blå", "ull lue", "SKU-17-1"] {
            let q = SearchQuery {
                text: Some(text.into()),
                limit: 50,
                ..SearchQuery::default()
            };
            let a: Vec<_> = s.search_products(&q, 0).unwrap().0;
            let b: Vec<_> = reference.search_products(&q, 0).unwrap().0;
            assert_eq!(a, b, "{text}");
        }
        // A delta afterwards: renamed, deactivated, relinked, through the triggers.
        let mut delta = vec![all[17].clone(), all[18].clone()];
        delta[0].skus[0].name = "Votter Gråstein".into();
        delta[1].skus[0].active = false;
        delta[1].skus[0].category_ids = vec!["c9".into()];
        for st in [&s, &reference] {
            st.apply_products(&delta, None).unwrap();
        }
        assert!(s.begin_catalog_build().is_ok_and(|owed| !owed), "not empty");
        assert_eq!(answers(&s), answers(&reference));
        let q = SearchQuery {
            text: Some("grastein".into()),
            limit: 5,
            ..SearchQuery::default()
        };
        assert_eq!(s.search_products(&q, 0).unwrap().1, 1);
    }

    /// The build on its own thread while product rows are written beside it (deltas renaming,
    /// deactivating and relinking products, as a pull does): every write stops it, it starts
    /// again once they end, and what it builds answers as the incremental index does.
    #[test]
    fn a_background_build_beside_product_writes_ends_as_the_incremental_index() {
        let dir = tempfile::tempdir().unwrap();
        let reference = Store::open(&dir.path().join("ref.db")).unwrap();
        let s = std::sync::Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        assert!(s.begin_catalog_build().unwrap());
        let all: Vec<CatalogProduct> = (0..10)
            .flat_map(|_| products())
            .enumerate()
            .map(|(n, mut p)| {
                p.product_id = format!("P-{n}");
                for (v, sku) in p.skus.iter_mut().enumerate() {
                    sku.sku = format!("SKU-{n}-{v}");
                    sku.product_id = p.product_id.clone();
                }
                p
            })
            .collect();
        s.apply_products(&all, None).unwrap();
        reference.apply_products(&all, None).unwrap();
        s.catalog_builder_starting();
        let builder = s.clone();
        let thread = std::thread::spawn(move || builder.run_catalog_builder());
        for round in 0..40 {
            let mut delta: Vec<CatalogProduct> = all
                .iter()
                .skip(round * 37 % 2000)
                .take(25)
                .cloned()
                .collect();
            for (i, p) in delta.iter_mut().enumerate() {
                let sku = &mut p.skus[0];
                sku.name = format!("Votter {round} {i} {}", sku.name);
                sku.active = (round + i) % 5 != 0;
                sku.category_ids = vec![format!("c{}", (round + i) % 9)];
            }
            s.apply_products(&delta, None).unwrap();
            reference.apply_products(&delta, None).unwrap();
            if round % 10 == 0 {
                s.kick_catalog_build().unwrap();
            }
        }
        s.kick_catalog_build().unwrap();
        let start = std::time::Instant::now();
        while s.catalog_build_owed().unwrap() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "never built"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(schema(&s), schema(&reference));
        assert_eq!(answers(&s), answers(&reference));
        for text in ["votter 3", "votter 39 1", "genser", "blå"] {
            let q = SearchQuery {
                text: Some(text.into()),
                limit: 5000,
                ..SearchQuery::default()
            };
            let mut a: Vec<_> = s
                .search_products(&q, 0)
                .unwrap()
                .0
                .into_iter()
                .map(|p| p.sku)
                .collect();
            let mut b: Vec<_> = reference
                .search_products(&q, 0)
                .unwrap()
                .0
                .into_iter()
                .map(|p| p.sku)
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{text}");
        }
        s.stop_catalog_build();
        thread.join().unwrap();
    }

    /// Review of cdb96fd: `apply_products` marked its write once, before its first
    /// transaction; a build that began after that mark (between two transactions of one
    /// page) read the moved count as its own start, so the page's next transaction wrote
    /// product rows under it (the triggers set aside) and the build went on, leaving the
    /// rows it had already indexed with their old text. Each transaction marks the write
    /// under the writer's lock now: the build's next step pauses.
    #[test]
    fn a_products_transaction_during_a_background_build_pauses_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(s.begin_catalog_build().unwrap());
        s.apply_products(&products(), None).unwrap();
        // A page under way: its mark made, a build begins (reading the count), then the
        // page's next transaction.
        s.pause_catalog_build();
        let began = s.build.writes.load(Ordering::SeqCst);
        let mut renamed = products()[..1].to_vec();
        renamed[0].skus[0].name = "Zebraskjorte".into();
        let n = s
            .catalog_write(|tx, yield_now| {
                s.apply_products_in(tx, yield_now, &renamed, None, std::time::Instant::now())
            })
            .unwrap();
        assert_eq!(n, 1);
        let step = s.build_step(true, began, |_, _| Ok(())).unwrap();
        assert!(
            matches!(step, Step::Paused),
            "the build went on over a product write it did not see"
        );
    }

    /// Review of da34be6: a stop (a close) that came while the builder waited for the
    /// catalog's writer found no statement to interrupt, and the builder then ran its whole
    /// step (an index sort on a big catalog) after it, holding the close's `release_lock`.
    #[test]
    fn a_stop_while_the_builder_waits_for_the_writer_runs_no_step() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let began = s.build.writes.load(Ordering::SeqCst);
        let held = s.catalog().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let builder = {
            let (s, ran) = (s.clone(), ran.clone());
            std::thread::spawn(move || {
                let step = s.build_step(true, began, |_, _| {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                });
                matches!(step, Ok(Step::Stopped))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while s.build.waiting.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the builder never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        s.stop_catalog_build();
        drop(held);
        let stopped = builder.join().unwrap();
        assert!(!ran.load(Ordering::SeqCst), "the step ran after the stop");
        assert!(stopped);
    }

    /// Review of da34be6: the builder survives a panic in a step, but the step's interrupt
    /// handle stayed set, so any thread waiting for the catalog's writer afterwards
    /// interrupted whatever statement the writer's holder (the worker) was running.
    #[test]
    fn a_panic_in_a_build_step_leaves_no_interrupt_handle_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let began = s.build.writes.load(Ordering::SeqCst);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.build_step(true, began, |_, _| -> Result<()> {
                panic!("a bug in a build step")
            })
        }));
        assert!(r.is_err());
        assert!(
            s.build.state().interrupt.is_none(),
            "an interrupt handle was left set by the panicked step"
        );
        // The writer is usable after it.
        s.catalog_write(|tx, _| Ok(tx.execute_batch("SELECT 1")?))
            .unwrap();
    }

    /// A close stops a build in progress: it leaves the mark (built again by the next
    /// builder), never half an index with the mark cleared.
    #[test]
    fn a_stopped_background_build_leaves_the_mark_and_is_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let reference = Store::open(&dir.path().join("ref.db")).unwrap();
        reference.apply_products(&products(), None).unwrap();
        {
            let s = std::sync::Arc::new(Store::open(&path).unwrap());
            assert!(s.begin_catalog_build().unwrap());
            s.apply_products(&products(), None).unwrap();
            s.catalog_builder_starting();
            let builder = s.clone();
            let thread = std::thread::spawn(move || builder.run_catalog_builder());
            s.release_lock();
            thread.join().unwrap();
        }
        let s = std::sync::Arc::new(Store::open(&path).unwrap());
        let owed_now = s.catalog_build_owed().unwrap();
        if owed_now {
            assert_eq!(answers(&s), answers(&reference), "searched unindexed");
        }
        s.catalog_builder_starting();
        let builder = s.clone();
        let thread = std::thread::spawn(move || builder.run_catalog_builder());
        let start = std::time::Instant::now();
        while s.catalog_build_owed().unwrap() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "never built"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(answers(&s), answers(&reference));
        assert_eq!(schema(&s), schema(&reference));
        s.stop_catalog_build();
        thread.join().unwrap();
    }

    /// Review: damage the checks at open do not see (rows gone from the search index's own
    /// tables pass `quick_check` and `integrity_check`, and every ranked search then fails as
    /// corrupt) failed searches until someone deleted the file. A search that meets it
    /// answers from the tables, the damage is noted in the main file, and the next open
    /// moves the catalog aside (reported) and starts a fresh one, pulled again.
    #[test]
    fn a_catalog_found_corrupt_in_use_is_searched_from_its_tables_then_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let reference = Store::open(&dir.path().join("ref.db")).unwrap();
        reference.apply_products(&products(), None).unwrap();
        {
            let s = Store::open(&path).unwrap();
            s.apply_products(&products(), None).unwrap();
            let c = s.catalog().unwrap();
            c.execute_batch(
                "DELETE FROM product_fts_docsize WHERE id IN
                     (SELECT id FROM product_fts_docsize LIMIT 3)",
            )
            .unwrap();
            let check: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok", "the checks do not see it");
            drop(c);
            assert_eq!(answers(&s), answers(&reference), "searched from the tables");
            assert!(s
                .get_state(super::super::catalog_file::SEEN_KEY)
                .unwrap()
                .is_some());
            // The operator's integrity check says so (its own checks pass).
            let admin = crate::admin::Admin::open(&path, false).unwrap();
            let rows = admin.integrity(false).unwrap();
            assert!(
                rows.iter()
                    .any(|r| r.contains("found corrupt while in use")),
                "{rows:?}"
            );
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.catalog_damage().len(), 1, "moved aside at the next open");
        assert!(s.catalog_damage()[0].exists());
        assert_eq!(s.sku_count().unwrap(), 0, "a fresh catalog, pulled again");
        assert_eq!(
            s.get_state(super::super::catalog_file::SEEN_KEY).unwrap(),
            None
        );
        drop(s);
        let s = Store::open(&path).unwrap();
        assert!(s.catalog_damage().is_empty(), "once");
    }

    /// Damage inside the search index's segments is seen by the open's `quick_check` (the
    /// bundled SQLite checks FTS5 tables through their integrity method): moved aside.
    #[test]
    fn damage_inside_the_search_index_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.apply_products(&products(), None).unwrap();
            s.catalog()
                .unwrap()
                .execute_batch(
                    "UPDATE product_fts_data SET block = substr(block, 1, 20) || x'FF'
                         || substr(block, 22) WHERE id > 10",
                )
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.catalog_damage().len(), 1);
        assert_eq!(s.sku_count().unwrap(), 0);
    }

    /// A build cut short (the mark still set, part of the index written) is redone whole;
    /// the build in one transaction (run before a catalog migration) does the same.
    #[test]
    fn a_build_cut_short_is_redone_and_one_in_a_transaction_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let reference = Store::open(&dir.path().join("ref.db")).unwrap();
        reference.apply_products(&products(), None).unwrap();
        {
            let s = Store::open(&path).unwrap();
            assert!(s.begin_catalog_build().unwrap());
            s.apply_products(&products(), None).unwrap();
            // What a kill between two of the build's transactions leaves.
            let c = s.catalog().unwrap();
            start_over(&c).unwrap();
            fill(&c, i64::MIN, 100).unwrap();
            let objects = objects(&owed(&c).unwrap().unwrap()).unwrap();
            restore(&c, &objects[..1], "index").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(owed(&s.catalog().unwrap()).unwrap().is_some());
        assert_eq!(answers(&s), answers(&reference), "searched unindexed");
        assert!(s.finish_catalog_build().unwrap());
        assert_eq!(answers(&s), answers(&reference));
        assert_eq!(schema(&s), schema(&reference));
        drop(s);
        // Owed again, then built whole in one transaction (as before a migration).
        let s = Store::open(&path).unwrap();
        s.catalog()
            .unwrap()
            .execute_batch("DELETE FROM product")
            .unwrap();
        assert!(s.begin_catalog_build().unwrap());
        s.apply_products(&products(), None).unwrap();
        {
            let mut c = s.catalog().unwrap();
            let tx = c.transaction().unwrap();
            assert!(build_in(&tx).unwrap());
            assert!(!build_in(&tx).unwrap());
            tx.commit().unwrap();
        }
        assert!(owed(&s.catalog().unwrap()).unwrap().is_none());
        assert_eq!(schema(&s), schema(&reference));
        assert_eq!(answers(&s), answers(&reference));
    }
}
