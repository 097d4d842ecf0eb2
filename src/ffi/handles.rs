//! Typed, checked client handles (CONTRACT §9 rule 1).
//!
//! A `fo_client *` given to C is the address of a small allocation that is never freed, and
//! the key of a process-wide registry. The registry, not the pointer, holds the client:
//! `Some` while it is open, `None` (a tombstone) once it is closed. A call looks its handle
//! up under a short read lock and clones the `Arc`, so it owns its reference for the rest of
//! the call; close takes the client out under the write lock and only then stops it. The
//! pointer itself is never dereferenced, so a closed, stale or foreign pointer is refused
//! (`FO_CLOSED`, `FO_INVALID_INPUT`) instead of read, and an address can never be reused
//! by a later client. Each open leaves one registry entry (a few dozen bytes) for the life
//! of the process.

use super::fo_client;
use crate::client::Client;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Registry = BTreeMap<usize, Option<Arc<Client>>>;

static HANDLES: RwLock<Registry> = RwLock::new(BTreeMap::new());

// Nothing panics while the lock is held (map operations and Arc clones only), so a
// poisoned lock still guards consistent data.
fn read() -> RwLockReadGuard<'static, Registry> {
    HANDLES.read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Registry> {
    HANDLES.write().unwrap_or_else(|p| p.into_inner())
}

/// Registers an open client and returns its new handle.
pub fn register(client: Client) -> *mut fo_client {
    let handle = Box::into_raw(Box::new(fo_client { _tombstone: 0 }));
    write().insert(handle as usize, Some(Arc::new(client)));
    handle
}

/// The client behind a handle, for the length of one call.
pub fn get(c: *const fo_client) -> Result<Arc<Client>> {
    if c.is_null() {
        return Err(Error::NullArgument("client".into()));
    }
    match read().get(&(c as usize)) {
        Some(Some(client)) => Ok(Arc::clone(client)),
        Some(None) => Err(Error::Closed),
        None => Err(Error::invalid(
            "client",
            "is not a handle returned by fo_client_open",
        )),
    }
}

/// Takes the client out of its handle, leaving the tombstone. `None` for NULL, for a handle
/// already closed (a second close is a no-op) and for a pointer that is no handle.
pub fn take(c: *const fo_client) -> Option<Arc<Client>> {
    if c.is_null() {
        return None;
    }
    write().get_mut(&(c as usize)).and_then(Option::take)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::fo_result;

    #[test]
    fn unknown_pointers_are_refused_without_being_read() {
        // A dangling address: never dereferenced, only looked up.
        let bogus = 0x10 as *const fo_client;
        let code = |r: Result<Arc<Client>>| r.err().map(|e| e.code());
        assert_eq!(code(get(bogus)), Some(fo_result::FO_INVALID_INPUT));
        assert!(take(bogus).is_none());
        assert_eq!(
            code(get(std::ptr::null())),
            Some(fo_result::FO_NULL_ARGUMENT)
        );
    }
}
