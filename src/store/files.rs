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
//! - One client per database: an exclusive POSIX lock on `<db>-lock`, a file beside the
//!   database that is never renamed (nor deleted, unless this open created it and the file
//!   at the path was refused as not ours), so the lock survives the database being moved
//!   aside; the kernel drops it when the process dies, so a crash never leaves it held, and
//!   a forked child never inherits it. A second open in the same process is refused by the
//!   process's own list of held lock files (see [`DbLock`]). SQLite's own locks are on
//!   other files (the database, `-shm`), so they never meet this one.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
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
    /// A SQLite file carrying flow-omnium's application id.
    Ours,
    /// A SQLite file with application id 0: an older flow-omnium database, a new one not
    /// yet marked, or another application's. [`super::probe_untagged`] tells them apart
    /// without changing anything.
    Untagged,
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
    let head = match read_head(path) {
        Ok(head) => head,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => {
            return Err(Error::Storage(format!(
                "cannot read database {}: {e}",
                path.display()
            )))
        }
    };
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
    if head.len() < 72 {
        return Ok(Existing::Untagged);
    }
    let id = i64::from(u32::from_be_bytes([head[68], head[69], head[70], head[71]]));
    match id {
        APPLICATION_ID => Ok(Existing::Ours),
        0 => Ok(Existing::Untagged),
        super::catalog_file::CATALOG_APPLICATION_ID => Err(Error::Storage(format!(
            "{} is the catalog file of a flow-omnium database, not a database; it was left as it is \
             (give the database's own path as database_path)",
            path.display()
        ))),
        _ => Err(Error::Storage(format!(
            "{} is another application's SQLite database (application id {id:#x}); it was left as it is",
            path.display()
        ))),
    }
}

/// Descriptors of database files this process has read the header of, by (device, inode),
/// kept open for the life of the process. SQLite holds POSIX locks on the database file
/// (a SHARED lock for as long as a WAL-mode connection is open), and closing *any*
/// descriptor of the file in this process drops them all, so another process could then
/// take an EXCLUSIVE lock, checkpoint and delete the WAL under us. A closed client's
/// connections can still be open when the same path is opened again, so the header is read
/// through a descriptor that is never closed (as SQLite itself keeps unused descriptors of
/// locked files). One per database file the process opens: a handful.
static HEADS: std::sync::Mutex<Vec<((u64, u64), File)>> = std::sync::Mutex::new(Vec::new());

/// The first 100 bytes of `path` (fewer if it is shorter), read without ever closing a
/// descriptor of it (see [`HEADS`]).
pub(crate) fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut heads = HEADS.lock().unwrap_or_else(|p| p.into_inner());
    let meta = std::fs::symlink_metadata(path)?;
    let key = key_of(&meta);
    if !heads.iter().any(|(k, _)| *k == key) {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)?;
        // The file at the path changed between the lstat and the open: read it, but keep
        // the descriptor under its own identity.
        let key = file.metadata().map(|m| key_of(&m))?;
        if !heads.iter().any(|(k, _)| *k == key) {
            heads.push((key, file));
        }
        let (_, file) = heads.iter().find(|(k, _)| *k == key).expect("just added");
        return read_100(file);
    }
    let (_, file) = heads.iter().find(|(k, _)| *k == key).expect("present");
    read_100(file)
}

fn read_100(file: &File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; 100];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
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

/// Makes `file` owner-only without following a symlink and without ever opening it for
/// reading or writing: SQLite holds POSIX locks on the database, `-wal` and `-shm`, and
/// closing *any* descriptor of those files in this process would drop them all (then
/// another process may truncate the `-shm` under our mapping: SIGBUS). So the file is
/// opened `O_PATH | O_NOFOLLOW` (a close of such a descriptor drops no lock), checked to be a
/// regular file, and changed through `/proc/self/fd/N` (the file itself, not a link); where
/// `/proc` is missing, by path after a `lstat` check. A missing file is left alone.
pub(crate) fn chmod_private(file: &Path) -> Result<()> {
    let err =
        |e: std::io::Error| Error::Storage(format!("cannot make {} private: {e}", file.display()));
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let meta = f.metadata().map_err(err)?;
    if !meta.is_file() || meta.permissions().mode() & 0o777 == PRIVATE_MODE {
        return Ok(());
    }
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    match std::fs::set_permissions(&by_fd, std::fs::Permissions::from_mode(PRIVATE_MODE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::symlink_metadata(file) {
                Ok(m) if m.is_file() => {
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(PRIVATE_MODE))
                        .map_err(err)
                }
                _ => Ok(()),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// Flushes a directory's entries (renames, creations) to the disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync directory {}: {e}", dir.display())))
}

/// `<db><suffix>`, as SQLite names its side files.
pub fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// A name `<db>.damaged-<stamp>` nothing uses yet (neither it nor its side files).
pub fn aside_name(path: &Path, stamp: &str) -> PathBuf {
    let mut target = side_file(path, &format!(".damaged-{stamp}"));
    let mut n = 1;
    let taken = |t: &Path| {
        ["", "-wal", "-shm"]
            .iter()
            .any(|s| std::fs::symlink_metadata(side_file(t, s)).is_ok())
    };
    while taken(&target) {
        n += 1;
        target = side_file(path, &format!(".damaged-{stamp}-{n}"));
    }
    target
}

/// Renames the database's `-wal` and `-shm`, then the database itself, to `target` (its
/// side files beside it), owner-only, never overwriting anything and never deleting
/// anything. The main file goes last, so once `target` exists every side file has moved:
/// an interrupted move is finished by calling this again.
pub fn move_aside(path: &Path, target: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", ""] {
        let from = side_file(path, suffix);
        let to = side_file(target, suffix);
        if std::fs::symlink_metadata(&from).is_err() {
            continue;
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(Error::Storage(format!(
                "database {} is damaged, but {} exists already; refusing to overwrite it",
                path.display(),
                to.display()
            )));
        }
        std::fs::rename(&from, &to).map_err(|e| {
            Error::Storage(format!(
                "database {} is damaged and {} could not be moved aside: {e}",
                path.display(),
                from.display()
            ))
        })?;
        chmod_private(&to)?;
    }
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// The exclusive hold on a database for the life of one client (CONTRACT §9 rule 2):
/// a POSIX record lock (`fcntl(F_SETLK)`) on all of `<db>-lock`, plus this process's own
/// list of the lock files it holds (POSIX locks do not exclude the process holding them).
/// Dropping it releases the lock; so does the process dying.
///
/// Why a POSIX lock and not `flock`: a child made by `fork()` shares every `flock` of its
/// parent (the lock belongs to the open file, which the child's copy of the descriptor
/// keeps open), so a helper program the POS forks would keep the database locked after
/// `fo_client_close`, until it exits. POSIX locks belong to the process and are never
/// inherited. Their one trap, that closing *any* descriptor of the file drops the process's
/// lock, is avoided by never opening a lock file this process already holds (checked
/// under the list's mutex, by device and inode, before opening). The descriptor is
/// `O_CLOEXEC` as well. A client is not usable in a forked child: open a new one there.
#[derive(Debug)]
pub struct DbLock {
    file: Option<File>,
    key: (u64, u64),
    /// Whether this open created the lock file (it may be removed if the open is refused).
    created: bool,
    path: PathBuf,
}

/// The lock files this process holds, by (device, inode).
static HELD: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(u64, u64)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// The refusal of an open because another client holds the database.
pub fn in_use(db: &Path) -> Error {
    Error::Storage(format!(
        "database {} is in use by another client (in this or another process); \
         close that client first",
        db.display()
    ))
}

/// Whether a client in this process holds `db`, looked up without opening any file (so
/// no SQLite lock of that client is disturbed).
pub fn held_here(db: &Path) -> bool {
    std::fs::symlink_metadata(side_file(db, "-lock")).is_ok_and(|m| held().contains(&key_of(&m)))
}

impl DbLock {
    pub fn acquire(db: &Path) -> Result<DbLock> {
        let path = side_file(db, "-lock");
        let in_use = || in_use(db);
        let mut held = held();
        // A lock file replaced or removed between our open and our lock (an operator
        // deleting it, a refused open discarding it) is not the one others lock: again.
        for _ in 0..8 {
            // Held here already: not even opened (closing it would drop our own lock).
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if held.contains(&key_of(&meta)) {
                    return Err(in_use());
                }
            }
            let (file, created) = open_lock_file(&path)?;
            let whole = libc::flock {
                l_type: libc::F_WRLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 0,
                l_len: 0,
                l_pid: 0,
            };
            // SAFETY: fcntl on a descriptor this function owns, with a valid flock struct.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &whole) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                return Err(
                    if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                        in_use()
                    } else {
                        Error::Storage(format!("cannot lock {}: {err}", path.display()))
                    },
                );
            }
            let meta = file
                .metadata()
                .map_err(|e| Error::Storage(format!("cannot lock {}: {e}", path.display())))?;
            if held.contains(&key_of(&meta)) {
                // The path moved to a file this process holds between the check above and
                // the open: closing this descriptor would drop that lock, so it is kept.
                std::mem::forget(file);
                return Err(in_use());
            }
            if !same_inode(&file, &path) {
                continue;
            }
            if meta.permissions().mode() & 0o777 != PRIVATE_MODE {
                file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))
                    .map_err(|e| {
                        Error::Storage(format!("cannot make {} private: {e}", path.display()))
                    })?;
            }
            let key = key_of(&meta);
            held.push(key);
            return Ok(DbLock {
                file: Some(file),
                key,
                created,
                path,
            });
        }
        Err(Error::Storage(format!(
            "the lock file {} keeps being replaced; refusing to open the database",
            path.display()
        )))
    }

    /// Releases the lock and, if this open created the lock file, removes it: for an open
    /// refused because the file is not ours, so nothing is left beside it. (Another opener
    /// that opened the same file meanwhile sees it gone and opens a new one.)
    pub fn discard(mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
        self.release();
    }

    fn release(&mut self) {
        if let Some(file) = self.file.take() {
            let mut held = held();
            drop(file);
            held.retain(|k| *k != self.key);
        }
    }
}

impl Drop for DbLock {
    fn drop(&mut self) {
        self.release();
    }
}

fn open_lock_file(path: &Path) -> Result<(File, bool)> {
    let open = |create_new: bool| {
        let mut o = OpenOptions::new();
        o.read(true)
            .write(true)
            .mode(PRIVATE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if create_new {
            o.create_new(true);
        }
        o.open(path)
    };
    let err = |e: std::io::Error| {
        Error::Storage(format!("cannot open the lock file {}: {e}", path.display()))
    };
    loop {
        match open(false) {
            Ok(f) => return Ok((f, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        match open(true) {
            Ok(f) => return Ok((f, true)),
            // Another opener created it between the two calls: open theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(e)),
        }
    }
}

/// Whether `path` still names the file `file` has open (not removed, not replaced).
fn same_inode(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => key_of(&a) == key_of(&b),
        _ => false,
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
    fn a_discarded_lock_removes_only_a_lock_file_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let lock_file = side_file(&db, "-lock");
        DbLock::acquire(&db).unwrap().discard();
        assert!(!lock_file.exists(), "created by that open: removed");
        drop(DbLock::acquire(&db).unwrap());
        DbLock::acquire(&db).unwrap().discard();
        assert!(lock_file.exists(), "there before: kept");
    }

    #[test]
    fn a_replaced_lock_file_is_not_the_one_held() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let lock_file = side_file(&db, "-lock");
        std::fs::write(&lock_file, "").unwrap();
        let file = File::open(&lock_file).unwrap();
        assert!(same_inode(&file, &lock_file));
        std::fs::remove_file(&lock_file).unwrap();
        std::fs::write(&lock_file, "").unwrap();
        assert!(!same_inode(&file, &lock_file), "another file at the name");
        // The holder of the new file is the one a second open meets.
        let held = DbLock::acquire(&db).unwrap();
        assert!(DbLock::acquire(&db).is_err());
        drop(held);
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
