//! The database's files before and around SQLite: which path may be used, whether the file
//! there is ours, the lock that keeps one client per database, and owner-only modes.
//!
//! Decisions (the README's "Storage on the device" says the same to integrators):
//! - The path must not be a symlink (dangling or not) and must not start with `file:` (it
//!   would be read as a URI with options such as `nolock=1`).
//! - The directory must not be writable by every account (`o+w`, sticky or not: in `/tmp`
//!   another account could plant `-wal`/`-shm`/`-lock` names first). A group-writable
//!   directory is accepted (the group is the integrator's choice) and logged.
//! - A file that is not SQLite (or is another application's SQLite database) is left exactly
//!   as it is.
//! - One client per database: an exclusive `flock` on `<db>-lock`, a file beside the
//!   database that is never renamed or deleted, so the lock survives the database being
//!   moved aside; the kernel drops it when the process dies, so a crash never leaves it held.
//!   `flock` (not `fcntl`) so that a second open in the same process is refused too, and so
//!   that it cannot interfere with SQLite's own `fcntl` locks on the database.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The first 16 bytes of every SQLite database file.
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// `PRAGMA application_id` of a flow-omnium database ("FOMN").
pub const APPLICATION_ID: i64 = 0x464F_4D4E;
/// Owner read and write, nothing for anyone else.
pub const PRIVATE_MODE: u32 = 0o600;

/// What is at the database path before anything is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    Missing,
    /// A zero-length file: SQLite makes it a database.
    Empty,
    /// A SQLite file that is ours, or may be (application id 0: older or damaged).
    Sqlite,
}

/// Checks the path itself: absolute (so no name is ever read as a URI), not `file:`, not a
/// symlink, in a directory that exists and not every account can write.
pub fn checked_path(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(Error::Storage("the database path is empty".into()));
    }
    if path.to_string_lossy().starts_with("file:") {
        return Err(Error::Storage(format!(
            "database path {shown:?} starts with \"file:\": URIs are not accepted, give a file path"
        )));
    }
    let path = std::path::absolute(path)
        .map_err(|e| Error::Storage(format!("database path {shown:?}: {e}")))?;
    refuse_symlink(&path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::Storage(format!(
            "database directory {} cannot be used: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::Storage(format!(
            "{} (the database's directory) is not a directory",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(Error::Storage(format!(
            "database directory {} is writable by every account (mode {mode:o}); \
             keep the database in a directory only this account can write (e.g. chmod 700)",
            dir.display()
        )));
    }
    if mode & 0o020 != 0 {
        log::warn!(
            "database directory {} is group-writable (mode {mode:o}): the group's members can replace the database",
            dir.display()
        );
    }
    Ok(path)
}

fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Storage(format!(
            "database path {} is a symbolic link; refusing to follow it (give the real path)",
            path.display()
        ))),
        Ok(m) if !m.is_file() => Err(Error::Storage(format!(
            "database path {} is not a regular file",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Looks at the file without changing it: a file that is not SQLite, or is another
/// application's SQLite database, is refused and left exactly as it is.
pub fn inspect(path: &Path) -> Result<Existing> {
    refuse_symlink(path)?;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => {
            return Err(Error::Storage(format!(
                "cannot read database {}: {e}",
                path.display()
            )))
        }
    };
    let mut head = Vec::with_capacity(100);
    (&mut file)
        .take(100)
        .read_to_end(&mut head)
        .map_err(|e| Error::Storage(format!("cannot read database {}: {e}", path.display())))?;
    if head.is_empty() {
        return Ok(Existing::Empty);
    }
    if !head.starts_with(SQLITE_HEADER) {
        return Err(Error::Storage(format!(
            "{} is not a SQLite database; it was left as it is (check database_path)",
            path.display()
        )));
    }
    // The application id sits at bytes 68..72 of the header (big-endian).
    if head.len() >= 72 {
        let id = i64::from(u32::from_be_bytes([head[68], head[69], head[70], head[71]]));
        if id != 0 && id != APPLICATION_ID {
            return Err(Error::Storage(format!(
                "{} is another application's SQLite database (application id {id:#x}); it was left as it is",
                path.display()
            )));
        }
    }
    Ok(Existing::Sqlite)
}

/// Creates an empty database file owned by this account with mode 0600 (whatever the
/// umask), never through a symlink. SQLite gives `-wal` and `-shm` the mode of this file.
pub fn create_private(path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::Storage(format!("cannot create database {}: {e}", path.display())))?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))
        .map_err(|e| Error::Storage(format!("cannot chmod {}: {e}", path.display())))?;
    Ok(())
}

/// Makes the database and its `-wal`/`-shm` owner-only (files made by an older version, or
/// by a SQLite built without our flags). Symlinks are never followed.
pub fn make_private(path: &Path) -> Result<()> {
    for file in [
        path.to_path_buf(),
        side_file(path, "-wal"),
        side_file(path, "-shm"),
    ] {
        chmod_private(&file)?;
    }
    Ok(())
}

fn chmod_private(file: &Path) -> Result<()> {
    match std::fs::symlink_metadata(file) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o777 != PRIVATE_MODE => {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(PRIVATE_MODE))
                .map_err(|e| Error::Storage(format!("cannot make {} private: {e}", file.display())))
        }
        _ => Ok(()),
    }
}

/// `<db><suffix>`, as SQLite names its side files.
pub fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames the database and its `-wal`/`-shm` to `<name>.damaged-<time>` (owner-only), so
/// unsent sales in it can still be read. Never deletes anything.
pub fn move_aside(path: &Path, stamp: &str) -> Result<PathBuf> {
    let mut target = side_file(path, &format!(".damaged-{stamp}"));
    let mut n = 1;
    while std::fs::symlink_metadata(&target).is_ok() {
        n += 1;
        target = side_file(path, &format!(".damaged-{stamp}-{n}"));
    }
    std::fs::rename(path, &target).map_err(|e| {
        Error::Storage(format!(
            "database {} is damaged and could not be moved aside: {e}",
            path.display()
        ))
    })?;
    chmod_private(&target)?;
    for suffix in ["-wal", "-shm"] {
        let side = side_file(path, suffix);
        if std::fs::symlink_metadata(&side).is_ok() {
            let moved = side_file(&target, suffix);
            std::fs::rename(&side, &moved).map_err(|e| {
                Error::Storage(format!(
                    "database {} is damaged and its {suffix} file could not be moved aside: {e}",
                    path.display()
                ))
            })?;
            chmod_private(&moved)?;
        }
    }
    Ok(target)
}

/// The exclusive hold on a database for the life of one client (CONTRACT §9 rule 2).
/// Dropping it (closing the file) releases the lock; so does the process dying.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

impl DbLock {
    pub fn acquire(db: &Path) -> Result<DbLock> {
        let path = side_file(db, "-lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                Error::Storage(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Error::Storage(format!(
                    "database {} is in use by another client (in this or another process); \
                     close that client first",
                    db.display()
                ))
            } else {
                Error::Storage(format!("cannot lock {}: {err}", path.display()))
            });
        }
        chmod_private(&path)?;
        Ok(DbLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let first = DbLock::acquire(&db).unwrap();
        let err = DbLock::acquire(&db).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        DbLock::acquire(&db).expect("free again once the holder is gone");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pos-settings.ini");
        std::fs::write(&f, "[till]\nprinter=epson\n").unwrap();
        assert!(inspect(&f)
            .unwrap_err()
            .to_string()
            .contains("not a SQLite"));
        std::fs::write(&f, "").unwrap();
        assert_eq!(inspect(&f).unwrap(), Existing::Empty);
        assert_eq!(
            inspect(&dir.path().join("none.db")).unwrap(),
            Existing::Missing
        );
    }

    #[test]
    fn a_world_writable_directory_and_file_uris_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = checked_path(&open.join("a.db")).unwrap_err();
        assert!(
            err.to_string().contains("writable by every account"),
            "{err}"
        );
        let err = checked_path(Path::new("file:x.db?nolock=1")).unwrap_err();
        assert!(err.to_string().contains("file:"), "{err}");
        assert!(checked_path(&dir.path().join("a.db")).is_ok());
    }
}
