//! The on-device SQLite database: opened with its durability pragmas read back, migrated in
//! one transaction, moved aside (never deleted) when damaged. One connection is the single
//! writer; every method takes it for one short transaction.

mod back_office;
mod catalog;
pub mod catalog_file;
mod checkpoint;
mod deferred;
pub mod files;
mod fold;
mod group;
pub use group::Coming;
mod holds;
mod outbox;
mod replace;
mod salvage;

pub use back_office::{Erased, FetchQueue, OrderChange, PushLevel, Retention};
mod schema;
#[cfg(feature = "wipe-heap")]
pub mod sqlite_heap;
/// The schema version this build writes (`PRAGMA user_version`).
pub use schema::LATEST as SCHEMA_VERSION;

pub use catalog::{
    CursorAdvance, PriceView, ProductView, SearchQuery, StockEffect, StockEffects, StockView,
    WarehouseStock,
};

pub use outbox::{
    DeadJob, Extras, JobFate, JobUpdate, Lookup, NewJob, OutboxCounts, OutboxJob, OutboxRow,
    Recorded, DELIVERED_ID_RETENTION_MS, MAX_WAIT_MS,
};

use crate::error::{Error, Result};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use catalog_file::{catalog_path, CATALOG_APPLICATION_ID};
pub use files::{DbLock, APPLICATION_ID};

pub use salvage::DamageReport;

use holds::WriterGuard;
pub use holds::{take_writer_holds, trace_writer_holds, WriterHold};

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a background write steps aside for other callers before queueing with them.
const BACKGROUND_MAX_DEFER: Duration = Duration::from_secs(1);

pub struct Store {
    /// A second read-write connection that only checkpoints the WAL, after background
    /// writes and without the writer's lock (see [`Store::checkpoint_aside`]); opened when
    /// first needed. Declared first: dropped before the writer.
    checkpointer: Mutex<Checkpointer>,
    /// Products per batch of a catalog page, adapted so that one batch takes about
    /// `catalog::BATCH_TARGET` (see [`Store::apply_products`]).
    catalog_batch: std::sync::atomic::AtomicUsize,
    conn: Mutex<Connection>,
    /// The catalog file's writer (`<database>-catalog`, see [`catalog_file`]): the worker's
    /// catalog pages commit on it, never on `conn`. `None` for a store opened alongside (a
    /// tool), which only reads the catalog.
    catalog: Mutex<Option<Connection>>,
    /// Set when the catalog file found at open was damaged: where it was moved.
    catalog_damage: Vec<PathBuf>,
    /// The owed search index build's controls (store/deferred.rs: its own thread).
    build: deferred::BuildCtl,
    /// A catalog read or write failed as corrupt (noted once: see
    /// [`Store::note_catalog_damage`]).
    catalog_damage_seen: std::sync::atomic::AtomicBool,
    /// Threads blocked waiting for `conn` (the till's record calls, the worker's outbox
    /// writes). Background writes (catalog and stock pages) step aside while any wait, and
    /// commit early when one starts waiting, so a record call never queues behind a page
    /// (issue 10 target 4: a std `Mutex` is not fair, and back-to-back page transactions
    /// kept a recorder waiting 193 ms).
    waiting: std::sync::atomic::AtomicUsize,
    /// Set while the writer may be at `synchronous = NORMAL` (a background write, or one
    /// whose FULL could not be restored): the next `conn()` restores FULL before anything
    /// else commits on it.
    relaxed: std::sync::atomic::AtomicBool,
    /// Tests: background writes commit after every row as if a caller were waiting.
    #[cfg(test)]
    yield_always: std::sync::atomic::AtomicBool,
    /// Read-only connections for the till's reads, so a sync page being applied never
    /// makes a product lookup wait (WAL lets readers run beside the writer).
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Held until the store is dropped or [`Store::release_lock`]: no second client (here or
    /// in another process) opens the database meanwhile. `None` for a read-only store.
    lock: Mutex<Option<DbLock>>,
    /// Set when the file found at open was damaged and replaced by a fresh one.
    damage: Option<DamageReport>,
    /// How long personal data the till no longer needs is kept.
    retention: Mutex<Retention>,
    /// The outbox's claims and read-back timing (see [`Claims`]).
    claims: Claims,
    /// The thread that checkpoints the WAL so that no recording call does (stopped with the
    /// lock's release). `None` for a read-only store.
    wal_thread: Mutex<Option<checkpoint::Checkpointer>>,
    /// Recording calls on several threads share commits (see [`group`]).
    group: group::Group,
}

/// Claim tokens, the schedule's clock and the settle time before a read-back.
struct Claims {
    /// The next claim token: random high bits per store, so tokens of two stores (two
    /// processes one after the other) never coincide.
    next: std::sync::atomic::AtomicI64,
    /// How long after a job's last request may have left it is read back (ms): the
    /// request timeout plus a settle margin (CONTRACT §9 rule 8).
    settle_ms: std::sync::atomic::AtomicI64,
    /// This store instance's epoch: schedules stamped with it are on `clock`'s monotonic
    /// time (which restarts with the process).
    epoch: i64,
    /// Monotonic time for schedules, wall time for stamps (the client's clock).
    clock: Mutex<std::sync::Arc<dyn crate::clock::Clock>>,
    /// Test and simulation hook: this many coming outbox writes fail as the disk would.
    fail_writes: std::sync::atomic::AtomicU32,
    /// Which writes the hook fails ([`WriteOp`] as a number).
    fail_op: std::sync::atomic::AtomicU8,
}

/// The worker's writes to the outbox, for [`Store::fail_next_writes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteOp {
    Any = 0,
    /// Claiming jobs (marking them in flight).
    Claim = 1,
    /// Saving a multi-step job's progress.
    Step = 2,
    /// Recording outcomes.
    Finish = 3,
}

impl Default for Claims {
    fn default() -> Claims {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let mut j = crate::sync::policy::Jitter::from_seed(seed);
        // 31 random bits above a 32-bit counter: positive, never 0 (0 is "no claim").
        let high = ((j.next_unit() * f64::from(1u32 << 31)) as i64).max(1);
        let epoch = (j.next_unit() * f64::from(1u32 << 31)) as i64 + 1;
        Claims {
            epoch,
            clock: Mutex::new(std::sync::Arc::new(crate::clock::SystemClock)),
            next: std::sync::atomic::AtomicI64::new(high << 32),
            settle_ms: std::sync::atomic::AtomicI64::new(0),
            fail_writes: std::sync::atomic::AtomicU32::new(0),
            fail_op: std::sync::atomic::AtomicU8::new(0),
        }
    }
}

/// The side connection that checkpoints, and when it last did.
#[derive(Default)]
struct Checkpointer {
    conn: Option<Connection>,
    last: Option<std::time::Instant>,
}

thread_local! {
    /// Time this thread spent blocked on the writer's lock (see [`take_writer_wait`]).
    static WRITER_WAIT: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// How long the calling thread was blocked waiting for the writer connection since its
/// last call of this (zero when the writer was free each time). Benchmarks take it after
/// each record call to tell waiting for another transaction (a catalog batch, the
/// worker's commit) from the call's own work and fsync.
pub fn take_writer_wait() -> Duration {
    WRITER_WAIT.with(|w| w.replace(Duration::ZERO))
}

/// Background writes checkpoint at most this often.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Idle read connections kept open; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 4;

impl Store {
    /// Opens (creating if needed) and migrates the database, holding it exclusively for the
    /// store's life (CONTRACT §9 rules 2, 3, 4, 12). Refused, with nothing changed: a symlink,
    /// a `file:` URI, a directory every account can write, a file that is not a SQLite
    /// database (or is another application's), a database another client holds ("in use").
    /// A flow-omnium database that is damaged is moved aside (never deleted), a fresh one is
    /// created, and the outbox jobs still readable are carried over: see [`Store::damage`].
    pub fn open(path: &Path) -> Result<Store> {
        prepare_sqlite();
        let path = files::checked_path(path)?;
        // A client of this process holds it: refused before the file is even read (closing
        // a descriptor of it would drop that client's SQLite locks).
        if files::held_here(&path) {
            return Err(files::in_use(&path));
        }
        // A symlink at the catalog file's name is refused too, before anything changes.
        catalog_file::check_path(&path)?;
        // Refused before anything is created beside it (not even the lock file).
        if files::inspect(&path)? == files::Existing::Untagged {
            probe_untagged(&path)?;
        }
        let lock = DbLock::acquire(&path)?;
        // A replacement of a damaged file a crash interrupted is finished first.
        replace::resume(&path)?;
        // Looked at again under the lock: another client may have just created it.
        if files::inspect(&path)? == files::Existing::Missing {
            files::create_private(&path)?;
        }
        let mut conn = match open_checked(&path) {
            Ok(conn) => conn,
            Err(Opened::Damaged(reason)) => {
                replace::replace(&path, &reason)?;
                match open_checked(&path) {
                    Ok(conn) => conn,
                    Err(Opened::Damaged(r)) => {
                        return Err(Error::Storage(format!(
                            "database {} was damaged ({reason}) and replaced, but the fresh one fails too: {r}",
                            path.display()
                        )))
                    }
                    Err(Opened::Failed(e)) => return Err(e),
                }
            }
            Err(Opened::Failed(Error::Storage(m))) if m.contains(NOT_OURS) => {
                lock.discard();
                return Err(Error::Storage(m));
            }
            Err(Opened::Failed(e)) => return Err(e),
        };
        files::make_private(&path)?;
        // The catalog's own file: opened (made, or moved aside and made again when damaged)
        // under the lock, after the main file (an older database's catalog was copied into
        // it by the migration above).
        let catalog = catalog_file::open_writer(&path, &conn)?;
        // Taken (deleted from the file) last: an open that fails before here keeps the
        // report of a replaced file for the next open to queue. The catalog's moves too
        // (noted before each move: by this open, by the copy out of a single-file
        // database, or by an open killed right after its move).
        let damage = replace::take_report(&conn)?;
        let catalog_damage = catalog_file::take_moved(&conn, &path)?;
        let wal_thread = checkpoint::Checkpointer::start(&mut conn, &path);
        let store = Store {
            checkpointer: Mutex::new(Checkpointer::default()),
            catalog_batch: std::sync::atomic::AtomicUsize::new(catalog::FIRST_BATCH),
            conn: Mutex::new(conn),
            catalog: Mutex::new(Some(catalog)),
            catalog_damage,
            build: deferred::BuildCtl::default(),
            catalog_damage_seen: std::sync::atomic::AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            relaxed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            yield_always: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            path,
            lock: Mutex::new(Some(lock)),
            damage,
            retention: Mutex::new(Retention::default()),
            claims: Claims::default(),
            wal_thread: Mutex::new(wal_thread),
            group: group::Group::default(),
        };
        // Anything a request of the last process sent has left by now.
        use crate::clock::Clock;
        let n = store.recover_in_flight(crate::clock::SystemClock.wall_ms())?;
        if n > 0 {
            log::warn!("{n} job(s) were in flight at the last stop; each is checked in Omnium before it is sent again");
        }
        Ok(store)
    }

    /// Opens an existing database for reading only, beside a client that holds it (an
    /// operator tool): no lock, no migration, no recovery, no worker. Writes fail.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        prepare_sqlite();
        let path = files::checked_path(path)?;
        let existing = files::inspect(&path)?;
        if existing == files::Existing::Untagged {
            probe_untagged(&path)?;
        }
        if matches!(existing, files::Existing::Missing | files::Existing::Empty) {
            return Err(Error::Storage(format!(
                "database {} does not exist",
                path.display()
            )));
        }
        let conn = open_reader(&path)?;
        Ok(Store::alongside(conn, path))
    }

    /// A store over a connection opened beside the client that holds the database (no lock,
    /// nothing recovered or migrated): for tools.
    pub(crate) fn alongside(conn: Connection, path: PathBuf) -> Store {
        Store {
            checkpointer: Mutex::new(Checkpointer::default()),
            catalog_batch: std::sync::atomic::AtomicUsize::new(catalog::FIRST_BATCH),
            conn: Mutex::new(conn),
            catalog: Mutex::new(None),
            catalog_damage: Vec::new(),
            build: deferred::BuildCtl::default(),
            catalog_damage_seen: std::sync::atomic::AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            relaxed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            yield_always: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            path,
            lock: Mutex::new(None),
            damage: None,
            retention: Mutex::new(Retention::default()),
            claims: Claims::default(),
            wal_thread: Mutex::new(None),
            group: group::Group::default(),
        }
    }

    /// How long after a job's last request may have left an uncertain job is read back:
    /// the request timeout plus a settle margin (CONTRACT §9 rule 8).
    pub fn set_settle_ms(&self, ms: i64) {
        self.claims
            .settle_ms
            .store(ms.max(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// The clock schedules run on (the client's; tests and the simulation pass a manual one).
    pub fn set_clock(&self, clock: std::sync::Arc<dyn crate::clock::Clock>) {
        *self.claims.clock.lock().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    /// Monotonic ms of this store's clock.
    pub(crate) fn mono_ms(&self) -> i64 {
        self.claims
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mono_ms()
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.claims.epoch
    }

    pub(crate) fn settle_ms(&self) -> i64 {
        self.claims
            .settle_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn next_claim_token(&self) -> i64 {
        self.claims
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the next `n` outbox writes of the worker of kind `op` (claim, step, outcome)
    /// fail as a full or failing disk would, before they change anything: for tests and the
    /// simulation.
    pub fn fail_next_writes(&self, op: WriteOp, n: u32) {
        use std::sync::atomic::Ordering;
        self.claims.fail_op.store(op as u8, Ordering::SeqCst);
        self.claims.fail_writes.store(n, Ordering::SeqCst);
    }

    pub(crate) fn fail_point(&self, op: WriteOp) -> Result<()> {
        use std::sync::atomic::Ordering;
        let f = &self.claims.fail_writes;
        if f.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let only = self.claims.fail_op.load(Ordering::SeqCst);
        if only != WriteOp::Any as u8 && only != op as u8 {
            return Ok(());
        }
        if f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Storage(
                "injected write failure (disk I/O error)".into(),
            ));
        }
        Ok(())
    }

    /// Lets another client open the database: called once this client's worker has stopped
    /// and no call may write any more (a closed client whose handle lives on).
    pub fn release_lock(&self) {
        // The index build first: its statement is interrupted, so taking the catalog's
        // writer below waits only for that rollback.
        self.stop_catalog_build();
        // The checkpoint thread's connection goes first (it stops between checkpoints).
        drop(
            self.wal_thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        // The catalog's writer is closed with it (its WAL checkpointed into the file): the
        // next client of this database, in this process or another, opens its own.
        drop(
            self.catalog
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// What was done at open when the file found was damaged (the `storage.damaged` event).
    pub fn damage(&self) -> Option<&DamageReport> {
        self.damage.as_ref()
    }

    /// Where the catalog file was moved when it was found damaged (at this open, at an
    /// open killed right after the move, or during the copy out of a single-file
    /// database): it is pulled again from the start. Usually none or one.
    pub fn catalog_damage(&self) -> &[PathBuf] {
        &self.catalog_damage
    }

    /// The catalog file's writer (see [`catalog_file`]). A store opened alongside (a tool)
    /// has none: catalog writes fail there.
    pub(crate) fn catalog(&self) -> Result<CatalogGuard<'_>> {
        use std::sync::atomic::Ordering;
        let guard = match self.catalog.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // The background index build holds it: its statement is interrupted (and
                // redone after), so no writer waits for a whole index sort.
                self.build.waiting.fetch_add(1, Ordering::SeqCst);
                self.build.interrupt();
                let guard = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
                self.build.waiting.fetch_sub(1, Ordering::SeqCst);
                guard
            }
        };
        if guard.is_none() {
            return Err(Error::Storage(
                "this database was opened for reading: the catalog cannot be written".into(),
            ));
        }
        Ok(CatalogGuard(guard))
    }

    /// Runs `f` in one write transaction of the catalog file (at `synchronous = NORMAL`:
    /// a power cut may lose the last such commits, never half of one, and their cursors go
    /// with them). `f` gets the same "commit early" question as [`Store::background_write`];
    /// nobody records on this connection, so it is asked only to keep transactions short.
    pub(crate) fn catalog_write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction, &dyn Fn() -> bool) -> Result<T>,
    ) -> Result<T> {
        let written = (|| {
            let mut conn = self.catalog()?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx, &|| false)?;
            tx.commit()?;
            Ok(value)
        })();
        // With the catalog's writer let go: a corrupt catalog is moved aside at the next open.
        if let Err(e) = &written {
            self.note_catalog_damage(e);
        }
        written
    }

    /// As [`Store::catalog_write`], with this one commit synced (`synchronous = FULL`), then
    /// the catalog back at NORMAL: for a change no cursor re-reads after a power cut (the
    /// full resync's sweep of products Omnium no longer returns, which the main file's FULL
    /// "resync done" stamp follows).
    pub(crate) fn catalog_write_synced<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction, &dyn Fn() -> bool) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.catalog()?;
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        let result = (|| -> Result<T> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx, &|| false)?;
            tx.commit()?;
            Ok(value)
        })();
        let back = conn.execute_batch("PRAGMA synchronous = NORMAL");
        drop(conn);
        if let Err(e) = &result {
            self.note_catalog_damage(e);
        }
        let value = result?;
        back?;
        Ok(value)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer, with no recording batch open on it: one left open by recording callers
    /// is committed (and its members told) first.
    #[track_caller]
    pub(crate) fn conn(&self) -> WriterGuard<'_> {
        let conn = self.conn_raw();
        self.group.finish(&conn);
        conn
    }

    /// The writer as it is (a recording batch may be open on it; see [`Store::conn`]).
    #[track_caller]
    fn conn_raw(&self) -> WriterGuard<'_> {
        use std::sync::atomic::Ordering;
        use std::sync::TryLockError;
        let caller = std::panic::Location::caller();
        // A panic while holding the lock leaves SQLite consistent (transactions roll back
        // on drop), so a poisoned lock is safe to reuse.
        let guard = match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Announced while blocked: a background write holding the lock commits at
                // its next product, and none starts until this caller got its turn.
                let wanted = std::time::Instant::now();
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                WRITER_WAIT.with(|w| w.set(w.get() + wanted.elapsed()));
                guard
            }
        };
        if self.relaxed.load(Ordering::SeqCst) {
            // Only after a background write failed to restore FULL (no I/O is involved, so
            // only a broken connection could): nothing commits at NORMAL but catalog data.
            match restore_full_sync(&guard, self.wal_hooked()) {
                Ok(()) => self.relaxed.store(false, Ordering::SeqCst),
                Err(e) => panic!("the database cannot be set back to synchronous=FULL: {e}"),
            }
        }
        WriterGuard::new(guard, &self.waiting, caller)
    }

    /// Whether the writer's commits wake the checkpoint thread (its WAL hook is installed).
    fn wal_hooked(&self) -> bool {
        self.wal_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Whether a caller is blocked waiting for the writer connection.
    pub(crate) fn callers_waiting(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// The writer connection for background work (applying pulled pages): taken only when
    /// no other caller is waiting for it, so background transactions, however many follow
    /// each other, never make a record call wait longer than one of them. A caller that
    /// keeps the connection busy cannot starve the worker: after `BACKGROUND_MAX_DEFER`
    /// it queues like anyone else.
    #[track_caller]
    pub(crate) fn conn_background(&self) -> WriterGuard<'_> {
        let caller = std::panic::Location::caller();
        let started = std::time::Instant::now();
        loop {
            if !self.callers_waiting() || started.elapsed() >= BACKGROUND_MAX_DEFER {
                let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
                if !self.callers_waiting() || started.elapsed() >= BACKGROUND_MAX_DEFER {
                    // A recording batch left open for a caller still on its way is
                    // committed first: no background transaction runs inside one.
                    let guard = WriterGuard::new(guard, &self.waiting, caller);
                    self.group.finish(&guard);
                    return guard;
                }
            }
            // The waiting caller is being woken: let it run its transaction first.
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Runs `f` in a background write transaction (see [`Store::conn_background`]) with
    /// `synchronous = NORMAL`: for data Omnium can send again (catalog, prices, stock
    /// levels and their cursors). In WAL mode a NORMAL commit is atomic and never corrupts;
    /// a power cut may lose the last such commits (never half of one, and never one that a
    /// later FULL commit, a recorded sale, has followed: that commit syncs the WAL up to its
    /// own end). What is lost is pulled again from the cursor it committed with. The
    /// connection is back at `synchronous = FULL` before the lock is released, whatever `f`
    /// returned, or this errs and the next use sets it again.
    #[track_caller]
    pub(crate) fn background_write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction, &dyn Fn() -> bool) -> Result<T>,
    ) -> Result<T> {
        use std::sync::atomic::Ordering;
        let hooked = self.wal_hooked();
        let mut conn = self.conn_background();
        self.relaxed.store(true, Ordering::SeqCst);
        // No automatic checkpoint inside this commit (it would copy the whole WAL with the
        // writer held): `checkpoint_aside` does it next, without the lock. With the
        // checkpoint thread's WAL hook in place there is none already; `PRAGMA
        // wal_autocheckpoint` must then not be touched: it replaces the writer's WAL hook
        // (SQLite implements it as one), and setting it back to 1,000 put the checkpoint
        // inside recording callers' commits again after the first catalog page.
        if hooked {
            conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        } else {
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")?;
        }
        let result = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            #[cfg(test)]
            let yield_now = || self.callers_waiting() || self.yield_always.load(Ordering::SeqCst);
            #[cfg(not(test))]
            let yield_now = || self.callers_waiting();
            let value = f(&tx, &yield_now)?;
            tx.commit()?;
            Ok(value)
        })();
        restore_full_sync(&conn, hooked)?;
        self.relaxed.store(false, Ordering::SeqCst);
        drop(conn);
        self.checkpoint_aside();
        result
    }

    /// Copies the WAL's committed pages into the database from the side connection, with
    /// the writer free: a pull writes far more than a till's calls, and SQLite's automatic
    /// checkpoint would otherwise run inside whichever commit crosses 1,000 pages, a
    /// record call's included, holding the writer lock for its whole copy and sync. PASSIVE:
    /// it never waits for readers or the writer and copies what it can. At most every
    /// `CHECKPOINT_EVERY`; a failure is only logged (the WAL thread, `checkpoint.rs`, remains).
    pub(crate) fn checkpoint_aside(&self) {
        self.checkpoint_aside_if(true);
    }

    /// As [`Store::checkpoint_aside`], whenever it was last done: before a checkpoint that
    /// must run on the writer (`truncate_wal`), so that one has only the pages committed
    /// since left to copy. Returns whether every page of the WAL is now in the database.
    pub(crate) fn copy_wal_aside(&self) -> bool {
        self.checkpoint_aside_if(false)
    }

    fn checkpoint_aside_if(&self, throttled: bool) -> bool {
        let mut cp = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner());
        if throttled && cp.last.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY) {
            return false;
        }
        cp.last = Some(std::time::Instant::now());
        if cp.conn.is_none() {
            let flags = BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_WRITE;
            match Connection::open_with_flags(&self.path, flags) {
                Ok(c) => cp.conn = Some(c),
                Err(e) => {
                    log::warn!("cannot open a connection to checkpoint the WAL: {e}");
                    return false;
                }
            }
        }
        let Some(c) = &cp.conn else { return false };
        match c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, copied)) => log == copied,
            Err(e) => {
                log::warn!("WAL checkpoint failed: {e}");
                false
            }
        }
    }

    /// Runs `f` on a read-only connection from the pool.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// A value of `sync_state`, read on a reader: every committed `set_state` is seen,
    /// and the status poll (`fo_status`: the last pull and push stamps) and the puller never
    /// take the writer for it. On the writer, a status poll whose thread was preempted held
    /// a recording call up for as long (up to 116 ms in one traced run, issue 10 target 4).
    pub fn get_state(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM sync_state WHERE key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
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

impl Drop for Store {
    fn drop(&mut self) {
        // Stop the checkpoint thread before the database lock goes with the other fields.
        drop(
            self.wal_thread
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

/// The catalog file's writer, held (see [`Store::catalog`]).
pub(crate) struct CatalogGuard<'a>(MutexGuard<'a, Option<Connection>>);

impl std::ops::Deref for CatalogGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("checked when taken")
    }
}

impl std::ops::DerefMut for CatalogGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.as_mut().expect("checked when taken")
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

/// Flags for every connection: never through a symlink, never a URI.
pub(super) const BASE_FLAGS: OpenFlags =
    OpenFlags::SQLITE_OPEN_NO_MUTEX.union(OpenFlags::SQLITE_OPEN_NOFOLLOW);

/// Configures SQLite before the first connection of the process: with `wipe-heap`, its
/// freed memory is wiped ([`sqlite_heap`]). Every way the library opens a database calls it.
pub fn prepare_sqlite() {
    #[cfg(feature = "wipe-heap")]
    sqlite_heap::install();
}

fn open_reader(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(path, BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.execute_batch("PRAGMA query_only = ON")?;
    // The catalog file, read-only, as `catalog`: unqualified catalog table names resolve
    // there (they are unique across the two files).
    catalog_file::attach(&c, path)?;
    // A search alone runs a dozen distinct statements: with rusqlite's default of 16 the
    // reads evicted each other and SQL was parsed again on most calls.
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

fn open_checked(path: &Path) -> std::result::Result<Connection, Opened> {
    // The file exists (created 0600 by us if it was missing): SQLite must not create one.
    let flags = BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_WRITE;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Opened::Failed(Error::Storage(format!(
            "cannot open database {}: {e}",
            path.display()
        )))
    })?;
    // Until it is known to be sound, closing this connection must not checkpoint a WAL
    // into a damaged file (it is moved aside as found).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    refuse_foreign(&conn, path)?;
    apply_pragmas(&conn)?;
    // Plans that do not depend on the values bound (the query planner stability
    // guarantee). Without it SQLite re-prepares a statement, parsing its SQL again, whenever
    // a value bound to a parameter it looked at while planning changes: the worker's stock
    // query of each sale (a new job id each time) was parsed again for every sale, about 14 %
    // of the worker's CPU while draining. No statement on this connection needs a plan made
    // for one value (no LIKE or GLOB on a parameter, no partial index).
    if !conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)? {
        return Err(Opened::Failed(Error::Storage(
            "SQLite refused the query planner stability guarantee".into(),
        )));
    }
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Opened::Damaged(format!("integrity check: {check}")));
    }
    let fresh: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let split = schema::split_version();
    if (2..split).contains(&fresh) {
        // The catalog is in this file (a database from before the split): brought to the
        // version before the split, copied to the catalog file, then dropped here by the
        // split's migration. A crash before that commits copies again next time.
        schema::migrate_to(&conn, split - 1)?;
        if let Err(e) = catalog_file::copy_from_main(path, &conn) {
            // Re-pullable: the till opens and sells, the catalog is pulled again from the
            // cursors the catalog file holds (none unless an earlier copy committed).
            log::error!(
                "the catalog of {} could not be copied to its own file ({e}); it is pulled again from Omnium",
                path.display()
            );
        }
    }
    schema::migrate(&conn)?;
    if fresh == 0 {
        // A new database has deleted nothing but the catalog tables its first migrations
        // made and the split dropped (their pages are free): rewritten now, while that is
        // a few pages, so a new file starts without them.
        conn.execute_batch("VACUUM")?;
        conn.execute(
            "DELETE FROM sync_state WHERE key = ?1",
            [schema::VACUUM_OWED],
        )?;
    }
    if fresh != schema::LATEST {
        // What a migration wrote (a new database's whole schema, a re-index of the catalog)
        // goes into the file now: the WAL does not start out holding a copy of it.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app != APPLICATION_ID {
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
    vacuum_if_owed(&conn, path);
    Ok(conn)
}

/// Rewrites the whole file once when a migration asked for it (a database from before
/// `secure_delete` keeps deleted PDFs and customer data in free pages), then truncates the
/// WAL. A failure (a full disk) is logged and tried again at the next open: the till still
/// opens.
fn vacuum_if_owed(conn: &Connection, path: &Path) {
    use rusqlite::OptionalExtension;
    let owed = conn
        .query_row(
            "SELECT 1 FROM sync_state WHERE key = ?1",
            [schema::VACUUM_OWED],
            |_| Ok(()),
        )
        .optional();
    if !matches!(owed, Ok(Some(()))) {
        return;
    }
    let started = std::time::Instant::now();
    let done = conn
        .execute_batch("VACUUM")
        .and_then(|()| {
            conn.execute(
                "DELETE FROM sync_state WHERE key = ?1",
                [schema::VACUUM_OWED],
            )
        })
        .and_then(|_| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
        });
    match done {
        Ok(busy) => log::info!(
            "database {} rewritten once ({} ms) so no deleted data stays in free pages{}",
            path.display(),
            started.elapsed().as_millis(),
            if busy != 0 {
                "; the WAL is truncated later"
            } else {
                ""
            }
        ),
        Err(e) => {
            // A VACUUM cut short (a full disk) leaves its pages in the WAL: give the space back.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            log::warn!(
                "database {} could not be rewritten now ({e}); tried again at the next open",
                path.display()
            )
        }
    }
}

/// A SQLite database with tables but without our application id or our outbox is someone
/// else's: refused, not migrated into.
fn refuse_foreign(conn: &Connection, path: &Path) -> std::result::Result<(), Opened> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app == APPLICATION_ID {
        return Ok(());
    }
    let (tables, outbox): (i64, bool) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(name = 'outbox_job'), 0) > 0 FROM sqlite_master",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if tables > 0 && !outbox {
        return Err(Opened::Failed(Error::Storage(format!(
            "{} is a SQLite database, {NOT_OURS}; it was left as it is (check database_path)",
            path.display()
        ))));
    }
    Ok(())
}

/// Says a database is refused as another application's.
const NOT_OURS: &str = "but not flow-omnium's";

/// A SQLite file without flow-omnium's application id is ours only if its schema can be
/// read and has our outbox (an older flow-omnium database) or no table at all (a new one).
/// Looked at through an immutable, read-only connection: no lock, no journal rolled back,
/// no `-wal` or `-shm` created, nothing written. A schema that cannot be read (damage to
/// page 1) is refused too: whose it is cannot be known, and rule 3 comes before rule 4.
fn probe_untagged(path: &Path) -> Result<()> {
    // The URI is built here from the checked absolute path, every byte but [A-Za-z0-9/._~-]
    // percent-encoded, so nothing from the config is ever read as a URI parameter.
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/._~-".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let schema = Connection::open_with_flags(&uri, flags).and_then(|c| {
        c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(name = 'outbox_job'), 0) > 0 FROM sqlite_master",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)),
        )
    });
    match schema {
        Ok((0, _)) | Ok((_, true)) => Ok(()),
        Ok(_) => Err(Error::Storage(format!(
            "{} is a SQLite database, {NOT_OURS}; it was left as it is (check database_path)",
            path.display()
        ))),
        Err(e) => Err(Error::Storage(format!(
            "{} is a SQLite database without flow-omnium's mark whose schema cannot be read ({e}); \
             it may be another application's, so it was left as it is (check database_path)",
            path.display()
        ))),
    }
}

/// Aborts the process at a named point when `FO_TEST_CRASH_AT` names it: the crash tests
/// kill a child there and check the next open loses nothing. Only with feature `sim`.
pub(crate) fn crash_point(name: &str) {
    #[cfg(feature = "sim")]
    if std::env::var_os("FO_TEST_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("FO_TEST_CRASH_AT: aborting at {name}");
        std::process::abort();
    }
    #[cfg(not(feature = "sim"))]
    let _ = name;
}

/// Puts the writer back at `synchronous = FULL` (read back) and SQLite's automatic
/// checkpoint at its default after a background write.
/// `hooked`: the checkpoint thread's WAL hook is on the writer, and SQLite's automatic
/// checkpoint (which would replace it) stays off.
fn restore_full_sync(conn: &Connection, hooked: bool) -> Result<()> {
    if hooked {
        conn.execute_batch("PRAGMA synchronous = FULL")?;
    } else {
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000")?;
    }
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if sync != 2 {
        return Err(Error::Storage(format!(
            "PRAGMA synchronous is {sync} after setting it back to FULL"
        )));
    }
    Ok(())
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
    // Temporary tables (a catalog batch being staged, a full resync's list of what Omnium
    // returned) and statement journals stay in memory: nothing of them reaches a disk.
    conn.execute_batch("PRAGMA temp_store = MEMORY")?;
    let temp: i64 = conn.query_row("PRAGMA temp_store", [], |r| r.get(0))?;
    expect_pragma("temp_store", &temp.to_string(), "2")?;
    // Deleted rows (a delivered receipt's PDF, a forgotten customer) are overwritten with
    // zeros, not left in free pages.
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    let secure: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
    expect_pragma("secure_delete", &secure.to_string(), "1")?;
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

#[cfg(test)]
mod tests {
    /// Review finding: the full resync's sweep of the catalog commits synced (FULL), since no
    /// cursor re-reads it after a power cut; every other catalog commit stays at NORMAL after
    /// it, also when the synced write fails.
    #[test]
    fn a_synced_catalog_write_commits_at_full_and_leaves_the_catalog_at_normal() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(&dir.path().join("a.db")).unwrap();
        let level = |tx: &rusqlite::Transaction| -> i64 {
            tx.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(store.catalog_write(|tx, _| Ok(level(tx))).unwrap(), 1);
        assert_eq!(
            store.catalog_write_synced(|tx, _| Ok(level(tx))).unwrap(),
            2
        );
        assert_eq!(store.catalog_write(|tx, _| Ok(level(tx))).unwrap(), 1);
        let failed: super::Result<()> = store.catalog_write_synced(|_, _| {
            Err(crate::error::Error::Storage("the write failed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(store.catalog_write(|tx, _| Ok(level(tx))).unwrap(), 1);
        let seen = std::collections::HashSet::new();
        store.sweep_products(&seen).unwrap();
        assert_eq!(store.catalog_write(|tx, _| Ok(level(tx))).unwrap(), 1);
    }

    /// Issue 10 target 5: a statement run with other values bound is not parsed again. The
    /// worker's stock query of each sale (a join on the job id bound) was re-prepared at
    /// every call before the writer asked for plans that do not depend on bound values.
    #[test]
    fn the_writer_does_not_prepare_a_statement_again_for_new_bound_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(&dir.path().join("a.db")).unwrap();
        let conn = store.conn();
        let mut stmt = conn
            .prepare(
                "SELECT MAX(l.modified_ms) FROM stock_movement m
                 JOIN stock_level l ON l.sku = m.sku AND l.warehouse_id = m.warehouse_id
                 WHERE m.job_id = ?1 LIMIT ?2",
            )
            .unwrap();
        for (job, limit) in [(1_i64, 1_i64), (2, 5), (3, 256)] {
            let _: Option<i64> = stmt.query_row([job, limit], |r| r.get(0)).unwrap();
        }
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "prepared again for new bound values"
        );
    }

    /// A catalog page (a background write) leaves the checkpoint thread's WAL hook on the
    /// writer: recording commits after it still never copy the WAL into the database.
    /// Before, the page's `PRAGMA wal_autocheckpoint` replaced the hook with SQLite's own
    /// automatic checkpoint, run inside whichever caller's commit crossed 1,000 pages.
    #[test]
    fn commits_after_a_background_write_leave_the_checkpoint_to_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let store = super::Store::open(&path).unwrap();
        store
            .background_write(|tx, _| {
                tx.execute("CREATE TABLE big (b BLOB NOT NULL)", [])?;
                Ok(())
            })
            .unwrap();
        // Let `checkpoint_aside` (at most every 50 ms) run now if it wants, not later.
        std::thread::sleep(std::time::Duration::from_millis(100));
        store.checkpoint_aside();
        let wal_thread = store.wal_thread.lock().unwrap();
        let held = wal_thread.as_ref().expect("a checkpoint thread").hold();
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        // About 1,500 pages in 30 commits: past the 1,000 SQLite checkpoints at.
        for _ in 0..30 {
            store
                .write(|l| {
                    l.tx.execute("INSERT INTO big (b) VALUES (zeroblob(200000))", [])?;
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(
            db_len(),
            before,
            "a commit after the background write copied the WAL into the database"
        );
        drop(held);
    }

    use super::*;

    /// Issue 10 target 4: the WAL's pages are copied into the database without the writer
    /// (the truncation after erasing personal data does it first, and then has nothing left
    /// to copy and sync with the writer held).
    #[test]
    fn the_wal_is_copied_aside_while_the_writer_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let wal_thread = store.wal_thread.lock().unwrap();
        let thread_held = wal_thread.as_ref().expect("a checkpoint thread").hold();
        store
            .write(|l| {
                l.tx.execute("CREATE TABLE big (b BLOB NOT NULL)", [])?;
                Ok(())
            })
            .unwrap();
        // About 1,500 pages in 30 commits, none copied yet (the thread is held).
        for _ in 0..30 {
            store
                .write(|l| {
                    l.tx.execute("INSERT INTO big (b) VALUES (zeroblob(200000))", [])?;
                    Ok(())
                })
                .unwrap();
        }
        let writer = store.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let copier = {
            let s = store.clone();
            std::thread::spawn(move || {
                let _ = tx.send(s.copy_wal_aside());
            })
        };
        let copied = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("copying the WAL waited for the writer");
        assert!(
            copied,
            "every page of the WAL copied while the writer was held"
        );
        drop(writer);
        copier.join().unwrap();
        drop(thread_held);
    }

    /// Issue 10 target 4: reading a stored value (the status poll's stamps) never waits
    /// for the writer. Before, `get_state` read on the writer and waited here.
    #[test]
    fn reading_a_stored_value_never_takes_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        s.set_state("last_push_at", "42").unwrap();
        let held = s.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = tx.send(s.get_state("last_push_at").unwrap());
            })
        };
        let got = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("get_state waited for the writer");
        assert_eq!(got.as_deref(), Some("42"));
        drop(held);
        reader.join().unwrap();
    }

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
        let secure: i64 = conn
            .query_row("PRAGMA secure_delete", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, secure), ("wal", 2, 1));
        assert_eq!(version, schema::LATEST);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pos-settings.ini");
        let text = b"[till]\nprinter=epson\nthis holds settings someone wants\n";
        std::fs::write(&path, text).unwrap();
        let err = Store::open(&path).err().expect("open must fail");
        assert!(
            matches!(&err, Error::Storage(m) if m.contains("not a SQLite database")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), text);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            ["pos-settings.ini"],
            "nothing renamed, nothing created"
        );
    }

    #[test]
    fn another_applications_sqlite_database_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE settings (k TEXT, v TEXT); INSERT INTO settings VALUES ('a', 'b');",
            )
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).err().expect("open must fail");
        assert!(err.to_string().contains("not flow-omnium's"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_second_open_is_refused_as_in_use_and_a_reader_may_open_alongside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = Store::open(&path).unwrap();
        first.set_state("k", "v").unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(
            matches!(&err, Error::Storage(m) if m.contains("in use")),
            "{err}"
        );
        let reader = Store::open_read_only(&path).unwrap();
        let got: String = reader
            .conn()
            .query_row("SELECT value FROM sync_state WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(got, "v");
        assert!(reader.set_state("k", "w").is_err(), "a reader cannot write");
        drop(first);
        Store::open(&path).expect("free once the first store is closed");
    }

    #[test]
    fn a_database_from_before_secure_delete_is_rewritten_once_without_its_deleted_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let marker: &[u8] = b"%PDF-1.4 Kvittering for Quixotesdottir";
        {
            // As an older version left it: schema 4, secure_delete off, a receipt's PDF
            // deleted on delivery, its bytes still in free pages.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA secure_delete = OFF;")
                .unwrap();
            schema::migrate_to(&conn, 4).unwrap();
            conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .unwrap();
            let mut pdf = marker.to_vec();
            pdf.resize(20_000, b'x');
            conn.execute(
                "INSERT INTO receipt_pdf (job_id, pdf) VALUES (1, ?1)",
                [&pdf],
            )
            .unwrap();
            conn.execute("DELETE FROM receipt_pdf", []).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        let found = |p: &Path| {
            ["", "-wal"].iter().any(|s| {
                std::fs::read(files::side_file(p, s))
                    .is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker))
            })
        };
        assert!(found(&path), "the older version left the PDF in free pages");
        let store = Store::open(&path).unwrap();
        assert!(
            !found(&path),
            "rewritten at the first open after the upgrade"
        );
        assert!(store.get_state(schema::VACUUM_OWED).unwrap().is_none());
        // A database made by this version owes nothing once opened.
        let fresh = Store::open(&dir.path().join("b.db")).unwrap();
        assert!(fresh.get_state(schema::VACUUM_OWED).unwrap().is_none());
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
