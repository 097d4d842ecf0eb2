//! Replacing a damaged database (CONTRACT §9 rule 4) so that a crash at any point loses
//! nothing and the next open finishes the job:
//!
//! 1. `<db>-replacing` is written (the name the damaged file will get, one line) and synced.
//! 2. The damaged file's `-wal`, `-shm`, then the file itself are renamed to
//!    `<db>.damaged-<time>` (never deleted, never written to).
//! 3. A fresh database is built at `<db>.new` (rollback journal, no WAL, so it is one file)
//!    and every readable job of the damaged one is carried into it, with the
//!    `storage.damaged` report, in one transaction.
//! 4. `<db>.new` is renamed to `<db>`.
//! 5. The marker is removed.
//!
//! Each step is synced (files and directory) before the next. At open, under the lock, a
//! marker left by a crash is resolved before anything else: no valid name in it → step 2
//! never started (the marker goes, and the damage is found again); the damaged file not at
//! its new name yet → step 2 is finished; `<db>` missing → steps 3–5 are redone from the
//! moved-aside file (a half-built `<db>.new` is deleted first: it is ours and incomplete);
//! `<db>` present → only step 5 is left.

use super::{crash_point, files, salvage, schema, DamageReport, APPLICATION_ID, BASE_FLAGS};
use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `sync_state` key holding the `storage.damaged` report until the open that reports it.
pub(super) const REPORT_KEY: &str = "storage.damaged";

fn marker(path: &Path) -> PathBuf {
    files::side_file(path, "-replacing")
}

fn building(path: &Path) -> PathBuf {
    files::side_file(path, ".new")
}

fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Moves the damaged database at `path` aside and puts a fresh one, holding what could be
/// read, in its place. The caller holds the database's lock.
pub(super) fn replace(path: &Path, reason: &str) -> Result<()> {
    use crate::clock::Clock;
    let now = crate::clock::SystemClock.wall_ms();
    let stamp = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let target = files::aside_name(path, &stamp);
    write_marker(path, &target)?;
    crash_point("replace:marked");
    files::move_aside(path, &target)?;
    crash_point("replace:moved");
    rebuild(path, &target, reason)
}

/// Finishes a replacement a crash interrupted, if there is one. The caller holds the lock.
pub(super) fn resume(path: &Path) -> Result<()> {
    let marker = marker(path);
    let text = match std::fs::read(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::Storage(format!(
                "cannot read {}: {e}",
                marker.display()
            )))
        }
    };
    let Some(target) = target_of(path, &text) else {
        // Cut short while being written: nothing was moved yet.
        log::warn!(
            "an interrupted replacement of {} had not started; the database is checked again",
            path.display()
        );
        remove_building(path)?;
        return remove_marker(path);
    };
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !exists(&target) {
        if !exists(path) {
            // Neither name holds the file: nothing of ours to finish.
            log::error!(
                "an interrupted replacement of {} found neither it nor {}",
                path.display(),
                target.display()
            );
            remove_building(path)?;
            return remove_marker(path);
        }
        files::move_aside(path, &target)?;
    }
    if exists(path) {
        // The fresh database is in place: only the marker was left.
        log::warn!("finishing an interrupted replacement of {}", path.display());
        remove_building(path)?;
        return remove_marker(path);
    }
    log::warn!(
        "an interrupted replacement of {} is finished from {}",
        path.display(),
        target.display()
    );
    rebuild(path, &target, "replacement interrupted; resumed")
}

/// Steps 3 to 5: build `<db>.new` from the moved-aside file, rename it into place, remove
/// the marker.
fn rebuild(path: &Path, damaged: &Path, reason: &str) -> Result<()> {
    remove_building(path)?;
    let new = building(path);
    files::create_private(&new)?;
    let report = {
        let conn = open_building(&new).map_err(|e| {
            Error::Storage(format!(
                "database {} was damaged ({reason}) and moved to {}, but a fresh one cannot be created: {e}",
                path.display(),
                damaged.display()
            ))
        })?;
        let report = salvage::carry_over(damaged, &conn)?;
        conn.close().map_err(|(_, e)| Error::from(e))?;
        report
    };
    std::fs::File::open(&new)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync {}: {e}", new.display())))?;
    crash_point("replace:built");
    std::fs::rename(&new, path).map_err(|e| {
        Error::Storage(format!(
            "cannot move the fresh database {} into place: {e}",
            new.display()
        ))
    })?;
    files::sync_dir(dir_of(path))?;
    crash_point("replace:renamed");
    remove_marker(path)?;
    log::error!(
        "database {} was damaged ({reason}); moved to {}, a fresh database was created, \
         {} outbox job(s) carried over, {} lost",
        path.display(),
        damaged.display(),
        report.salvaged,
        report
            .lost
            .map_or("an unknown number".to_string(), |n| n.to_string())
    );
    Ok(())
}

/// The fresh database while it is built: one file (rollback journal), fully synced.
fn open_building(new: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(new, BASE_FLAGS | OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Storage(format!(
            "PRAGMA journal_mode is {mode:?} after setting it to \"delete\""
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    schema::migrate(&conn)?;
    // Built with secure_delete from the start: nothing deleted to rewrite.
    conn.execute(
        "DELETE FROM sync_state WHERE key = ?1",
        [schema::VACUUM_OWED],
    )?;
    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    Ok(conn)
}

fn write_marker(path: &Path, target: &Path) -> Result<()> {
    let marker = marker(path);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = |e: std::io::Error| Error::Storage(format!("cannot write {}: {e}", marker.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(files::PRIVATE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&marker)
        .map_err(err)?;
    f.write_all(format!("{name}\n").as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    files::sync_dir(dir_of(path))
}

/// The moved-aside name a marker holds, if it was written whole and names a file beside
/// the database as this module names them.
fn target_of(path: &Path, text: &[u8]) -> Option<PathBuf> {
    let text = std::str::from_utf8(text).ok()?;
    let name = text.strip_suffix('\n')?;
    let own = path.file_name()?.to_str()?;
    let ok =
        name.starts_with(&format!("{own}.damaged-")) && !name.contains('/') && !name.contains('\n');
    ok.then(|| dir_of(path).join(name))
}

fn remove_marker(path: &Path) -> Result<()> {
    let marker = marker(path);
    match std::fs::remove_file(&marker) {
        Ok(()) => files::sync_dir(dir_of(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Storage(format!(
            "cannot remove {}: {e}",
            marker.display()
        ))),
    }
}

/// Deletes a half-built `<db>.new` and its journal: only ever made by this module, under
/// the lock, and incomplete until renamed away.
fn remove_building(path: &Path) -> Result<()> {
    let new = building(path);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let f = files::side_file(&new, suffix);
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Storage(format!(
                    "cannot remove the half-built {}: {e}",
                    f.display()
                )))
            }
        }
    }
    Ok(())
}

/// The report a replacement left in the database, removed as it is read (the open that
/// reads it queues the `storage.damaged` event).
pub(super) fn take_report(conn: &Connection) -> Result<Option<DamageReport>> {
    use rusqlite::OptionalExtension;
    let json: Option<String> = conn
        .query_row(
            "SELECT value FROM sync_state WHERE key = ?1",
            [REPORT_KEY],
            |r| r.get(0),
        )
        .optional()?;
    let Some(json) = json else {
        return Ok(None);
    };
    conn.execute("DELETE FROM sync_state WHERE key = ?1", [REPORT_KEY])?;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    Ok(Some(DamageReport {
        moved_to: v["moved_to"].as_str().unwrap_or_default().to_string(),
        salvaged: v["salvaged"].as_u64().unwrap_or(0),
        lost: v["lost"].as_u64(),
    }))
}
