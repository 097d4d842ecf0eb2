//! WAL checkpoints off the recording path.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past 1,000 pages:
//! that caller copies every page into the database file and fsyncs it (milliseconds, the
//! recording calls' p99). Instead, the writer connection's WAL hook only wakes a thread of
//! the store's own, which checkpoints (`PASSIVE`: it never takes the write lock, so recording
//! goes on meanwhile) on a connection of its own. Once the WAL is wholly copied, the next
//! write starts it over from the beginning, so it stays about [`WAKE_AT_FRAMES`] pages long.
//!
//! Under writes that never pause, a passive checkpoint may never catch up with the end of the
//! WAL, and SQLite can only start a WAL over once it has. So past [`CALLER_CHECKPOINT_FRAMES`]
//! the committing caller checkpoints itself (as SQLite would have done at 1,000): the WAL is
//! bounded, and that cost lands on one call in thousands.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// The WAL size (pages) at which the checkpoint thread is woken: SQLite's default.
pub const WAKE_AT_FRAMES: i32 = 1_000;

/// The WAL size (pages, 4 KiB each: 40 MiB) at which the committing caller checkpoints.
pub const CALLER_CHECKPOINT_FRAMES: i32 = 10_000;

struct Shared {
    /// Set by the WAL hook when a checkpoint is due, cleared by the thread as it starts one.
    wanted: Mutex<bool>,
    wake: Condvar,
    /// A checkpoint is due or running: the hook does not lock or signal again meanwhile.
    pending: AtomicBool,
    stop: AtomicBool,
    /// A checkpoint by the writer (in its commit) failed: the thread logs it, since the
    /// writer's holder must not (a log callback calling into the library would wait for the
    /// writer its own thread holds).
    writer_failed: Mutex<Option<String>>,
    /// Tests hold it to keep the thread from checkpointing.
    #[cfg(test)]
    hold: Mutex<()>,
}

/// The checkpoint thread of one store. Dropping it stops and joins the thread.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread (its own connection to `path`) and hooks `writer`'s commits to it.
    /// Without a thread (it could not start) SQLite's own automatic checkpoint stays on.
    pub fn start(writer: &mut Connection, path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            super::BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .map_err(|e| log::warn!("WAL checkpoints stay on the writer: {e}"))
        .ok()?;
        let shared = Arc::new(Shared {
            wanted: Mutex::new(false),
            wake: Condvar::new(),
            pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            writer_failed: Mutex::new(None),
            #[cfg(test)]
            hold: Mutex::new(()),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("flow-omnium-ckpt".into())
            .spawn(move || run(&for_thread, &conn))
            .map_err(|e| log::warn!("WAL checkpoints stay on the writer: {e}"))
            .ok()?;
        let for_hook = shared.clone();
        let hooked = writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames| {
            if frames >= CALLER_CHECKPOINT_FRAMES {
                // Writes never paused long enough for the thread to finish: copy here, where
                // no write can come between the checkpoint and the next start of the WAL.
                if let Err(e) = wal.checkpoint() {
                    *for_hook
                        .writer_failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    *for_hook.wanted.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    for_hook.wake.notify_one();
                }
            } else if frames >= WAKE_AT_FRAMES && !for_hook.pending.swap(true, Ordering::AcqRel) {
                *for_hook.wanted.lock().unwrap_or_else(|p| p.into_inner()) = true;
                for_hook.wake.notify_one();
            }
            Ok(())
        }));
        let checkpointer = Checkpointer {
            shared,
            thread: Some(thread),
        };
        match hooked {
            Ok(()) => Some(checkpointer),
            Err(e) => {
                log::warn!("WAL checkpoints stay on the writer: {e}");
                None
            }
        }
    }
}

impl Checkpointer {
    /// Tests: keeps the thread from checkpointing while the guard lives.
    #[cfg(test)]
    pub(crate) fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared.hold.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn run(shared: &Shared, conn: &Connection) {
    loop {
        {
            let mut wanted = shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
            while !*wanted && !shared.stop.load(Ordering::Acquire) {
                wanted = shared.wake.wait(wanted).unwrap_or_else(|p| p.into_inner());
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            *wanted = false;
        }
        let failed = shared
            .writer_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = failed {
            log::debug!("checkpoint by the writer failed: {e}");
        }
        #[cfg(test)]
        let _held = shared.hold.lock().unwrap_or_else(|p| p.into_inner());
        // PASSIVE: copies what no reader still needs, never waits for a lock, never blocks
        // the writer. A failure (a full disk) is tried again at the next wake.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => log::trace!("checkpoint: {copied} of {log} WAL pages copied"),
            Err(e) => log::debug!("checkpoint failed (tried again later): {e}"),
        }
        shared.pending.store(false, Ordering::Release);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _wanted = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            // The thread is never the caller: it runs nothing but checkpoints.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_committing_caller_leaves_the_checkpoint_to_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL);",
            )
            .unwrap();
        let ckpt = Checkpointer::start(&mut writer, &path).expect("started");
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        let held = ckpt.shared.hold.lock().unwrap();
        // 30 commits of about 50 pages each: past the 1,000 pages SQLite would have
        // checkpointed at, inside one of these commits.
        for _ in 0..30 {
            writer
                .execute("INSERT INTO t (b) VALUES (zeroblob(200000))", [])
                .unwrap();
        }
        assert_eq!(db_len(), before, "no commit copied pages into the database");
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(30);
        while db_len() < 1_000 * 4096 {
            assert!(Instant::now() < deadline, "the thread never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Wholly copied: the next write starts the WAL over instead of growing it.
        let wal_len = std::fs::metadata(dir.path().join("a.db-wal"))
            .unwrap()
            .len();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (log, copied): (i64, i64) = writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(1)?, r.get(2)?))
                })
                .unwrap();
            if log == copied {
                break;
            }
            assert!(Instant::now() < deadline, "never caught up");
            std::thread::sleep(Duration::from_millis(20));
        }
        // A write starts the WAL over only if no checkpoint runs at that moment (the
        // thread, woken by the last commits, may): tried until one does.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tries = 0u64;
        loop {
            tries += 1;
            writer
                .execute("INSERT INTO t (b) VALUES (zeroblob(100))", [])
                .unwrap();
            let frames: i64 = writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap();
            if frames < 10 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the WAL never started over ({frames} frames)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let grown = std::fs::metadata(dir.path().join("a.db-wal"))
            .unwrap()
            .len();
        assert!(
            grown <= wal_len + 3 * 4120 * tries,
            "the WAL file is reused, not grown"
        );
        drop(ckpt);
    }
}
