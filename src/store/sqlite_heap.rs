//! SQLite's own memory is wiped when freed (feature `wipe-heap`, issue 11).
//!
//! The bundled SQLite allocates with the C allocator, not Rust's, so [`crate::wipe_heap`]
//! does not see its blocks: its page cache, the values bound to statements and its
//! scratch space keep customers' names and e-mails in freed memory after a row was erased
//! or the client closed. Before the first connection of the process, SQLite is given an
//! allocator (`SQLITE_CONFIG_MALLOC`) that keeps each block's size in a header and zeroes
//! the block on free and on realloc (which always moves). SQLite takes its allocator only
//! before it is initialised: if something in the process opened a connection of this
//! bundled SQLite first (only Rust code linking this crate can), the default allocator
//! stays and a warning says so; [`installed`] tells.

use rusqlite::ffi;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use zeroize::Zeroize;

/// Room for the block's size before the block, keeping the C allocator's 16-byte alignment.
const HEADER: usize = 16;

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Gives SQLite the wiping allocator, once, before any connection (every way the library
/// opens a database calls this first).
pub fn install() {
    INSTALL.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to an sqlite3_mem_methods, which
        // SQLite copies; the functions stay valid for the process's life. Called before the
        // first connection of this library, so SQLite is not initialised yet (else it
        // refuses with SQLITE_MISUSE and nothing changes).
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            )
        };
        if rc == ffi::SQLITE_OK {
            INSTALLED.store(true, Ordering::SeqCst);
        } else {
            log::warn!(
                "SQLite was initialised before the library opened a database (code {rc}): its freed memory is not wiped"
            );
        }
    });
}

/// Whether SQLite allocates through the wiping allocator.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// The block's start and its size, from a pointer SQLite holds.
///
/// # Safety
/// `p` came from [`x_malloc`] or [`x_realloc`] and was not freed.
unsafe fn block(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: `p` is HEADER bytes into a block whose first bytes hold its size.
    unsafe {
        let base = (p as *mut u8).sub(HEADER);
        (base, (base as *const usize).read())
    }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let size = usize::try_from(n).unwrap_or(0).max(1);
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a plain C allocation, checked for NULL.
    let base = unsafe { libc::malloc(total) } as *mut u8;
    if base.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `base` holds `total` ≥ HEADER bytes, aligned for usize.
    unsafe {
        (base as *mut usize).write(size);
        base.add(HEADER) as *mut c_void
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what it got from x_malloc/x_realloc, once.
    unsafe {
        let (base, size) = block(p);
        std::slice::from_raw_parts_mut(base, size + HEADER).zeroize();
        libc::free(base as *mut c_void);
    }
}

/// Always a new block: the old one is wiped, never left behind by a moving realloc.
unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for x_malloc/x_free; the copy stays within both blocks.
    unsafe {
        let new = x_malloc(n);
        if new.is_null() || p.is_null() {
            return new;
        }
        let (_, old_size) = block(p);
        let (_, new_size) = block(new);
        std::ptr::copy_nonoverlapping(p as *const u8, new as *mut u8, old_size.min(new_size));
        x_free(p);
        new
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: a live block of ours.
    let (_, size) = unsafe { block(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    n.checked_add(7).map_or(n, |m| m & !7)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_size_and_grow_by_copy() {
        // SAFETY: blocks of the allocator under test, used within their sizes.
        unsafe {
            let p = x_malloc(40);
            assert!(!p.is_null());
            assert_eq!(x_size(p), 40);
            assert_eq!(p as usize % 8, 0, "SQLite needs 8-byte alignment");
            std::ptr::write_bytes(p as *mut u8, 0xAB, 40);
            let q = x_realloc(p, 100);
            assert_eq!(x_size(q), 100);
            assert!(std::slice::from_raw_parts(q as *const u8, 40)
                .iter()
                .all(|&b| b == 0xAB));
            let r = x_realloc(q, 8);
            assert_eq!(x_size(r), 8);
            x_free(r);
            x_free(std::ptr::null_mut());
            assert_eq!(x_roundup(13), 16);
            assert_eq!(x_roundup(c_int::MAX), c_int::MAX);
        }
    }
}
