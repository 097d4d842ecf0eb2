//! Group commit for recording calls made at the same time on several threads.
//!
//! Every recorded event must be durable before its call returns, and with
//! `synchronous=FULL` each commit is an fsync: one thread after another, eight threads get
//! no more through than one. So calls that arrive while another holds the writer share one
//! transaction and one fsync:
//!
//! * A caller takes the writer and, if no batch transaction is open, opens one
//!   (`BEGIN IMMEDIATE`). Every rule that can refuse its event (a conflict, a rule checked
//!   against what is recorded) runs before its rows are written, the check in a
//!   `SAVEPOINT` when the batch holds others' rows: a refused event undoes only its own
//!   part and only its caller gets the error; the others' rows stay in the batch. Its rows
//!   are then written outside any savepoint (a savepoint copies every page it changes
//!   first); a failure while writing them fails the whole batch, as a failed commit does.
//! * Then, if other recording callers are already waiting for the writer (and the batch is
//!   not full), it leaves the commit to them and waits; otherwise it commits the batch (one
//!   fsync) and tells every member the outcome. A lone caller commits at once: no hop to
//!   another thread, no waiting for company.
//! * A member returns `Ok` only after the COMMIT that holds its rows returned; a commit that
//!   fails fails every member (nothing was written); an error that made SQLite roll the
//!   whole transaction back fails every member before it too.
//! * Anyone else who takes the writer (the worker) first commits an open batch the same way,
//!   so no other transaction ever runs inside one.

use super::Store;
use crate::error::{Error, Result};
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a failed recording caller's part is undone (see [`Group::undo_member`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    /// It wrote nothing.
    Nothing,
    /// Its writes are in the savepoint `rec`, still open.
    Savepoint,
    /// Its writes are in the transaction itself: the batch is rolled back, every member
    /// failed.
    Batch,
}

/// At most this many callers share one commit: a steady stream still commits regularly.
pub const MAX_MEMBERS: usize = 64;

/// How long a member that left its batch open waits for a caller still on its way before it
/// takes the writer and commits the batch itself: a slow caller (a huge sale being read, a
/// preempted thread) costs the others at most this, never its whole reading.
pub const COMING_WAIT: Duration = Duration::from_millis(2);

#[derive(Default)]
pub(crate) struct Group {
    /// Recording callers waiting for the writer's lock (counted before they lock it).
    pub(crate) waiting: AtomicUsize,
    /// Recording callers on their way to the writer: announced ([`Store::coming`]) before
    /// they read and check their event, so a batch is not committed just before they
    /// arrive (on a machine with fewer cores than callers, their reading staggers their
    /// arrival). Each leaves this count only after it is counted in `waiting`, or, if it
    /// never comes, after committing a batch left open for it (see [`Coming`]).
    pub(crate) coming: AtomicUsize,
    state: Mutex<State>,
    done: Condvar,
    /// Tests: the next commit fails as a full disk would (and is rolled back).
    #[cfg(test)]
    pub(crate) fail_commit: std::sync::atomic::AtomicBool,
    /// Tests: commits made.
    #[cfg(test)]
    pub(crate) commits: AtomicUsize,
    /// Tests: the next undo of one caller's savepoint fails.
    #[cfg(test)]
    pub(crate) fail_undo: std::sync::atomic::AtomicBool,
    /// Tests: a longer [`COMING_WAIT`] (a test that steps through a batch left open).
    #[cfg(test)]
    pub(crate) coming_wait: Mutex<Option<Duration>>,
    /// Tests: what [`Group::log_deferred`] logged.
    #[cfg(test)]
    pub(crate) logged: Mutex<Vec<String>>,
    /// Errors found while holding the writer, logged by [`Group::log_deferred`] once it is
    /// released: a log callback may call into the library, which would wait for the writer
    /// this thread holds.
    deferred: Mutex<Vec<String>>,
}

#[derive(Default)]
struct State {
    /// The open batch: its number and how many callers' rows it holds. Changed only by the
    /// holder of the writer's lock.
    open: Option<(u64, usize)>,
    next: u64,
    /// Outcomes of finished batches not yet collected by all their waiting members:
    /// (result, members still to collect it).
    outcomes: HashMap<u64, (Result<()>, usize)>,
}

impl Group {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open batch's number, opening one (`BEGIN IMMEDIATE`) if there is none. The
    /// caller holds the writer.
    pub(crate) fn join(&self, conn: &Connection) -> Result<u64> {
        if let Some((id, _)) = self.state().open {
            return Ok(id);
        }
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut s = self.state();
        s.next += 1;
        let id = s.next;
        s.open = Some((id, 0));
        Ok(id)
    }

    /// Counts the caller's rows into the open batch (its savepoint was released).
    pub(crate) fn add_member(&self) {
        if let Some((_, members)) = &mut self.state().open {
            *members += 1;
        }
    }

    /// Whether the open batch holds no caller's rows yet: its first member needs no
    /// savepoint, since undoing its part is rolling back the whole transaction. The caller
    /// holds the writer.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.state().open, Some((_, 0)))
    }

    /// After an error in a caller's part, undoes it as `undo` says. If SQLite rolled the
    /// whole transaction back, or `undo` is [`Undo::Batch`], every member so far is failed
    /// with `error` (nothing of the batch is kept).
    pub(crate) fn undo_member(&self, conn: &Connection, error: &Error, undo: Undo) {
        if conn.is_autocommit() {
            self.publish(Err(shared_failure(error)));
            return;
        }
        let undone = match undo {
            Undo::Nothing => return,
            Undo::Batch => conn.execute_batch("ROLLBACK"),
            Undo::Savepoint => conn
                .prepare_cached("ROLLBACK TO rec")
                .and_then(|mut s| s.execute([]))
                .and_then(|_| conn.prepare_cached("RELEASE rec"))
                .and_then(|mut s| s.execute([]))
                .map(|_| ()),
        };
        #[cfg(test)]
        let undone = if self.fail_undo.swap(false, Ordering::SeqCst) {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected: the savepoint could not be undone".into()),
            ))
        } else {
            undone
        };
        if let Err(e) = undone {
            // Cannot undo this caller's part alone: nothing of the batch is kept.
            let e = Error::from(e);
            self.deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                    "a recording's rows could not be undone alone; its batch is rolled back: {e}"
                ));
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            self.publish(Err(shared_failure(&e)));
        } else if undo == Undo::Batch {
            // Rolled back: nothing of the batch is kept.
            self.publish(Err(shared_failure(error)));
        }
    }

    /// Logs what was found while the writer was held. Called by a caller that no longer
    /// holds it.
    pub(crate) fn log_deferred(&self) {
        let msgs = std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|p| p.into_inner()));
        for m in msgs {
            log::error!("{m}");
            #[cfg(test)]
            self.logged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(m);
        }
    }

    /// Whether the holder of the writer should leave the open batch to a caller already
    /// waiting for it (true) or commit it now (false).
    pub(crate) fn leave_to_next(&self) -> bool {
        match self.state().open {
            Some((_, members)) => {
                members > 0
                    && members < MAX_MEMBERS
                    // `coming` first: a caller leaves it only after entering `waiting`, so
                    // one on its way is never missed in both.
                    && (self.coming.load(Ordering::Acquire) > 0
                        || self.waiting.load(Ordering::Acquire) > 0)
            }
            None => false,
        }
    }

    /// Commits the open batch, if any, and tells its members. The caller holds the writer.
    /// Returns the batch's number and the commit's result (`None` when none was open).
    pub(crate) fn finish(&self, conn: &Connection) -> Option<(u64, Result<()>)> {
        let (id, _) = self.state().open?;
        #[cfg(test)]
        {
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.fail_commit.swap(false, Ordering::SeqCst) {
                let _ = conn.execute_batch("ROLLBACK");
                let e = Error::StorageFull("injected: database or disk is full".into());
                self.publish(Err(shared_failure(&e)));
                return Some((id, Err(e)));
            }
        }
        let result = conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(Error::from);
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.publish(result.as_ref().map_err(shared_failure).map(|_| ()));
        Some((id, result))
    }

    /// Ends the open batch with `outcome` for every member waiting on it.
    fn publish(&self, outcome: Result<()>) {
        let mut s = self.state();
        if let Some((id, members)) = s.open.take() {
            // The member that finishes collects nothing: it knows the result already.
            if members > 0 {
                s.outcomes.insert(id, (outcome, members));
            }
            drop(s);
            self.done.notify_all();
        }
    }

    /// Waits until batch `id` is finished and returns its outcome, or `None` if it is still
    /// open at `deadline`. The caller is a member that left the commit to another and holds
    /// nothing.
    pub(crate) fn wait_until(&self, id: u64, deadline: Option<Instant>) -> Option<Result<()>> {
        let mut s = self.state();
        loop {
            if s.open.map(|(open, _)| open) != Some(id) {
                if let Some((outcome, left)) = s.outcomes.get_mut(&id) {
                    let out = outcome.clone();
                    *left -= 1;
                    if *left == 0 {
                        s.outcomes.remove(&id);
                    }
                    return Some(out);
                }
                // Finished by the member that committed it, which counted this one: only
                // reachable if the outcome was collected already, which cannot happen.
                return Some(Err(Error::Internal(format!(
                    "the outcome of commit batch {id} is missing"
                ))));
            }
            s = match deadline {
                None => self.done.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The member that commits collects its own share of the outcome.
    pub(crate) fn collect_own(&self, id: u64) {
        let mut s = self.state();
        if let Some((_, left)) = s.outcomes.get_mut(&id) {
            *left -= 1;
            if *left == 0 {
                s.outcomes.remove(&id);
            }
        }
    }
}

/// A recording caller announced on its way to the writer (see [`Group::coming`]). Handed to
/// [`Store::record_announced`], which counts it as waiting first and then lets it go. Dropped
/// without coming (its event refused before it reached the writer, or a panic), it commits
/// a batch that may have been left open for it, so no member waits for a caller that never
/// comes.
pub struct Coming<'s> {
    pub(crate) store: &'s Store,
    pub(crate) armed: bool,
}

impl Coming<'_> {
    /// It is counted in `waiting` now: it leaves the count of callers on their way.
    pub(crate) fn arrived(mut self) {
        self.armed = false;
        self.store.group.coming.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Coming<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let group = &self.store.group;
        group.coming.fetch_sub(1, Ordering::AcqRel);
        // A batch left open for this caller is committed by whoever comes next, or else by
        // this one (taking the writer commits an open batch first).
        let open = group.state().open.is_some_and(|(_, members)| members > 0);
        if open
            && group.coming.load(Ordering::Acquire) == 0
            && group.waiting.load(Ordering::Acquire) == 0
        {
            drop(self.store.conn());
            group.log_deferred();
        }
    }
}

impl Store {
    /// Waits for batch `id`, which this member left open to a caller waiting for the writer
    /// or on its way to it: if it is still open after [`COMING_WAIT`], that caller is slow
    /// (or never comes), and this member takes the writer, which commits the open batch
    /// (see [`Store::conn`]), then collects its outcome.
    pub(crate) fn wait_for_batch(&self, id: u64) -> Result<()> {
        #[cfg(test)]
        let wait = self
            .group
            .coming_wait
            .lock()
            .unwrap()
            .unwrap_or(COMING_WAIT);
        #[cfg(not(test))]
        let wait = COMING_WAIT;
        if let Some(out) = self.group.wait_until(id, Some(Instant::now() + wait)) {
            return out;
        }
        drop(self.conn());
        self.group.log_deferred();
        self.group.wait_until(id, None).unwrap_or_else(|| {
            Err(Error::Internal(format!(
                "the wait for commit batch {id} ended without its outcome"
            )))
        })
    }

    /// Announces a recording caller on its way to the writer (see [`Group::coming`]).
    pub fn coming(&self) -> Coming<'_> {
        self.group.coming.fetch_add(1, Ordering::AcqRel);
        Coming {
            store: self,
            armed: true,
        }
    }
}

/// The error every member of a failed batch gets: the same kind (a full disk stays
/// `StorageFull`), saying it was the shared commit.
fn shared_failure(e: &Error) -> Error {
    match e {
        Error::StorageFull(m) => Error::StorageFull(format!("the shared commit failed: {m}")),
        Error::Storage(m) => Error::Storage(format!("the shared commit failed: {m}")),
        other => Error::Storage(format!("the shared commit failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Extras, NewJob, Recorded, Store};
    use std::sync::Arc;

    fn job<'a>(id: &'a str, content: &'a str) -> NewJob<'a> {
        NewJob {
            kind: "sale",
            event_id: id,
            entity_id: id,
            content,
            blob: None,
        }
    }

    fn stored(store: &Store) -> Vec<String> {
        store
            .conn()
            .prepare("SELECT event_id FROM outbox_job ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A records and, inside its transaction, waits until B waits for the writer; then B
    /// records `b` (its content) and both return. Returns (A's result, B's result).
    fn a_then_b(
        store: &Arc<Store>,
        b: (&'static str, &'static str),
    ) -> (Result<Recorded>, Result<Recorded>) {
        let (inside, is_inside) = std::sync::mpsc::channel();
        let s = store.clone();
        let a = std::thread::spawn(move || {
            s.record(&job("A", "{\"a\":1}"), 1, |_| {
                inside.send(()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                while s.group.waiting.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(Extras::default())
            })
        });
        is_inside.recv().unwrap();
        let s = store.clone();
        let b = std::thread::spawn(move || s.record(&job(b.0, b.1), 1, |_| Ok(Extras::default())));
        (a.join().unwrap(), b.join().unwrap())
    }

    #[test]
    fn a_caller_waiting_for_the_writer_shares_the_commit_of_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let (a, b) = a_then_b(&store, ("B", "{\"b\":1}"));
        assert!(matches!(a, Ok(Recorded::New(_))), "{a:?}");
        assert!(matches!(b, Ok(Recorded::New(_))), "{b:?}");
        assert_eq!(
            store.group.commits.load(Ordering::SeqCst),
            1,
            "one commit for both"
        );
        assert_eq!(stored(&store), ["A", "B"]);
    }

    /// Spawns A recording while `coming` (another caller, announced) is on its way, and
    /// waits until A has left the open batch to it (A's rows in, the writer free).
    fn a_leaves_its_batch_open(store: &Arc<Store>) -> std::thread::JoinHandle<Result<Recorded>> {
        let s = store.clone();
        let a = std::thread::spawn(move || {
            s.record(&job("A", "{\"a\":1}"), 1, |_| Ok(Extras::default()))
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = store.group.state().open.is_some_and(|(_, m)| m == 1)
                && store.conn.try_lock().is_ok();
            if left {
                break;
            }
            assert!(Instant::now() < deadline, "A never left its batch open");
            std::thread::sleep(Duration::from_millis(1));
        }
        a
    }

    #[test]
    fn a_batch_waits_for_an_announced_caller_and_shares_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        // B announced itself (it is still reading its event) before A took the writer; A
        // waits for it as long as the test needs.
        *store.group.coming_wait.lock().unwrap() = Some(Duration::from_secs(600));
        let coming = store.coming();
        let a = a_leaves_its_batch_open(&store);
        assert_eq!(store.group.commits.load(Ordering::SeqCst), 0);
        assert!(
            !a.is_finished(),
            "A returned before its rows were committed"
        );
        let b = store.record_announced(
            &job("B", "{\"b\":1}"),
            1,
            |_| Ok(Extras::default()),
            Some(coming),
        );
        assert!(matches!(b, Ok(Recorded::New(_))), "{b:?}");
        let a = a.join().unwrap();
        assert!(matches!(a, Ok(Recorded::New(_))), "{a:?}");
        assert_eq!(
            store.group.commits.load(Ordering::SeqCst),
            1,
            "one commit for both"
        );
        assert_eq!(stored(&store), ["A", "B"]);
        assert_eq!(store.group.coming.load(Ordering::SeqCst), 0);
    }

    /// Review of 7f41a99: a caller announced but slow to arrive (a huge sale being read, a
    /// preempted thread) held every batch member until it came; a member now waits
    /// `COMING_WAIT` at most, then commits the batch itself.
    #[test]
    fn a_caller_slow_to_arrive_holds_the_batch_only_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let coming = store.coming();
        let s = store.clone();
        let a = std::thread::spawn(move || {
            s.record(&job("A", "{\"a\":1}"), 1, |_| Ok(Extras::default()))
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !a.is_finished() {
            assert!(
                Instant::now() < deadline,
                "A waited for a caller that did not come"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(a.join().unwrap(), Ok(Recorded::New(_))));
        assert_eq!(store.group.commits.load(Ordering::SeqCst), 1);
        // The slow caller arrives later and commits on its own.
        let b = store.record_announced(
            &job("B", "{\"b\":1}"),
            1,
            |_| Ok(Extras::default()),
            Some(coming),
        );
        assert!(matches!(b, Ok(Recorded::New(_))), "{b:?}");
        assert_eq!(store.group.commits.load(Ordering::SeqCst), 2);
        assert_eq!(store.group.coming.load(Ordering::SeqCst), 0);
        drop(store);
        let again = Store::open(&dir.path().join("a.db")).unwrap();
        assert_eq!(stored(&again), ["A", "B"]);
    }

    #[test]
    fn an_announced_caller_that_never_comes_commits_the_batch_left_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        *store.group.coming_wait.lock().unwrap() = Some(Duration::from_secs(600));
        let coming = store.coming();
        let a = a_leaves_its_batch_open(&store);
        // Its event is refused before it reaches the writer: dropping it commits A's batch.
        drop(coming);
        let a = a.join().unwrap();
        assert!(matches!(a, Ok(Recorded::New(_))), "{a:?}");
        assert_eq!(store.group.commits.load(Ordering::SeqCst), 1);
        assert_eq!(store.group.coming.load(Ordering::SeqCst), 0);
        // Durable: read on a connection of its own.
        drop(store);
        let again = Store::open(&dir.path().join("a.db")).unwrap();
        assert_eq!(stored(&again), ["A"]);
    }

    #[test]
    fn a_failed_shared_commit_fails_every_caller_in_it_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        store.group.fail_commit.store(true, Ordering::SeqCst);
        let (a, b) = a_then_b(&store, ("B", "{\"b\":1}"));
        for r in [&a, &b] {
            assert!(matches!(r, Err(Error::StorageFull(_))), "{r:?}");
        }
        assert!(
            stored(&store).is_empty(),
            "nothing of the failed batch was kept"
        );
        // The next call commits normally.
        store
            .record(&job("C", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(stored(&store), ["C"]);
    }

    #[test]
    fn one_callers_conflict_fails_only_that_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        store
            .record(&job("B", "{\"b\":1}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        let (a, b) = a_then_b(&store, ("B", "{\"b\":2}"));
        assert!(matches!(a, Ok(Recorded::New(_))), "{a:?}");
        assert!(matches!(b, Err(Error::Conflict(_))), "{b:?}");
        assert_eq!(stored(&store), ["B", "A"]);
    }

    /// Review (low): an error found while holding the writer was logged there, and a log
    /// callback calling into the library (to record, to read status) would wait for the
    /// writer its own thread holds. Logged once the writer is released.
    #[test]
    fn an_error_found_under_the_writer_is_logged_after_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let logged = |s: &Store| s.group.logged.lock().unwrap().clone();
        {
            // Holding the writer, as a recording caller does: nothing is logged yet.
            let conn = store.conn();
            store.group.join(&conn).unwrap();
            conn.execute_batch("SAVEPOINT rec").unwrap();
            store.group.fail_undo.store(true, Ordering::SeqCst);
            store
                .group
                .undo_member(&conn, &Error::Internal("refused".into()), Undo::Savepoint);
            assert!(logged(&store).is_empty(), "logged under the writer");
            store.group.finish(&conn);
        }
        store.group.log_deferred();
        assert_eq!(logged(&store).len(), 1);
        // Through a recording whose check fails: logged by the time it returns.
        store.group.fail_undo.store(true, Ordering::SeqCst);
        let r = store.record(&job("A", "{}"), 1, |_| {
            Err(Error::Internal("refused".into()))
        });
        assert!(r.is_err());
        let all = logged(&store);
        assert_eq!(all.len(), 2);
        assert!(all[1].contains("could not be undone alone"), "{all:?}");
        // The writer is usable after it.
        store
            .record(&job("B", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(stored(&store), ["B"]);
    }

    #[test]
    fn a_panicking_check_leaves_the_others_committed_and_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let s = store.clone();
        let panicked = std::thread::spawn(move || {
            s.record(&job("P", "{}"), 1, |_| -> Result<Extras> {
                panic!("a bug")
            })
        })
        .join();
        assert!(panicked.is_err());
        store
            .record(&job("Q", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(stored(&store), ["Q"]);
    }

    #[test]
    fn a_lone_callers_failure_after_writing_keeps_none_of_its_rows() {
        // The first member of a batch works without a savepoint: its failure rolls the
        // whole transaction back, and the writer is free for the next call.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let err = store
            .record(&job("F", "{}"), 1, |lookup| {
                lookup.tx.execute(
                    "INSERT INTO sync_state (key, value) VALUES ('half', 'done')",
                    [],
                )?;
                Err(Error::InvalidInput("refused after a write".into()))
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        assert!(store.group.state().open.is_none());
        store
            .record(&job("G", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(stored(&store), ["G"]);
        let half: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sync_state WHERE key = 'half'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(half, 0);
    }

    #[test]
    fn a_failure_while_writing_a_members_rows_fails_the_whole_batch() {
        // A's rows are in the batch when B's movement insert fails half-way (after B's
        // outbox row): no savepoint holds B's rows apart, so the batch is rolled back and
        // both are told; nothing of either is stored.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON stock_movement_todo WHEN new.effects LIKE '%BOOM%'
                 BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;",
            )
            .unwrap();
        let (inside, is_inside) = std::sync::mpsc::channel();
        let s = store.clone();
        let a = std::thread::spawn(move || {
            s.record(&job("A", "{}"), 1, |_| {
                inside.send(()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                while s.group.waiting.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(Extras::default())
            })
        });
        is_inside.recv().unwrap();
        let s = store.clone();
        let b = std::thread::spawn(move || {
            s.record(&job("B", "{}"), 1, |_| {
                Ok(Extras {
                    effects: vec![crate::store::StockEffect {
                        sku: "BOOM".into(),
                        warehouse_id: "w".into(),
                        quantity: -1.0,
                    }]
                    .into(),
                    extra: None,
                })
            })
        });
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.is_err(), "{a:?}");
        assert!(
            matches!(&b, Err(e) if e.to_string().contains("injected write failure")),
            "{b:?}"
        );
        assert!(stored(&store).is_empty());
        assert!(store.group.state().outcomes.is_empty());
        store
            .record(&job("C", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert_eq!(stored(&store), ["C"]);
    }

    #[test]
    fn eight_threads_recording_at_once_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let id = format!("T{t}-{i}");
                        s.record(&job(&id, "{}"), 1, |_| Ok(Extras::default()))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stored(&store).len(), 400);
        assert!(
            store.group.state().outcomes.is_empty(),
            "every outcome collected"
        );
        assert!(store.group.state().open.is_none());
    }

    #[test]
    fn a_full_disk_in_a_later_members_insert_acknowledges_nobody_whose_rows_are_gone() {
        // B's outbox insert (OR ROLLBACK: no statement journal) runs out of pages while A's
        // rows wait in the batch: SQLite rolls the whole transaction back. Whatever each
        // caller is told must match what is stored: Ok only with its row, and the store
        // records again once there is room.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
        {
            let conn = store.conn();
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 8))
                .unwrap();
        }
        let big: &'static str = Box::leak("x".repeat(200_000).into_boxed_str());
        let (a, b) = a_then_b(&store, ("B", big));
        assert!(matches!(b, Err(Error::StorageFull(_))), "{b:?}");
        let kept = stored(&store);
        assert_eq!(a.is_ok(), kept.contains(&"A".to_string()), "{a:?} {kept:?}");
        assert!(!kept.contains(&"B".to_string()));
        assert!(store.group.state().outcomes.is_empty());
        store
            .conn()
            .execute_batch("PRAGMA max_page_count = 1073741823")
            .unwrap();
        store
            .record(&job("C", "{}"), 1, |_| Ok(Extras::default()))
            .unwrap();
        assert!(stored(&store).contains(&"C".to_string()));
    }
}
