//! The panic boundary, the thread's last error, and C string handling. Every export runs
//! its body through [`guard`]; nothing here knows about Omnium.

use crate::error::{fo_result, Error, Result};
use crate::model::fields::MAX_ID_BYTES;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Each thread's last error lives in a POSIX thread-specific slot, not a Rust
/// `thread_local!`: Rust's thread-locals are destroyed before `pthread_key` destructors run,
/// and one first touched during that phase is never freed, while a pthread slot set during
/// destructor rounds is freed in the next round. So a call from an exiting thread (a
/// `pthread_key` destructor) neither aborts nor leaks.
static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();

/// What `fo_last_error_message` returns if the process ran out of thread-specific keys (the
/// message cannot be kept): a static string, never NULL.
const NO_SLOT: &CStr = c"(no message: no thread-specific storage was available)";

/// A last-error message is cut at this many bytes (at a character boundary): messages are
/// short by design, so only echoed input could make one long, and it is capped here too.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Frees a thread's message when the thread exits.
unsafe extern "C" fn free_message(p: *mut std::ffi::c_void) {
    if !p.is_null() {
        // SAFETY: only set_last_error stores pointers here, each from CString::into_raw.
        drop(unsafe { CString::from_raw(p.cast()) });
    }
}

fn key() -> Option<libc::pthread_key_t> {
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer and a destructor that frees what we store.
        let created = unsafe { libc::pthread_key_create(&mut key, Some(free_message)) };
        (created == 0).then_some(key)
    })
}

/// Sets this thread's last error. Never panics, whatever state the thread is in.
pub fn set_last_error(message: &str) {
    let mut clean = crate::redact::redact(message).replace('\0', " ");
    if clean.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
        clean.push('…');
    }
    let Some(key) = key() else { return };
    let new = CString::new(clean).unwrap_or_default().into_raw();
    // SAFETY: the key is live for the process; the slot holds NULL or a pointer from
    // CString::into_raw, replaced here and freed once.
    unsafe {
        let old = libc::pthread_getspecific(key);
        if libc::pthread_setspecific(key, new.cast()) == 0 {
            free_message(old);
        } else {
            drop(CString::from_raw(new));
        }
    }
}

/// This thread's last error (`""` if none yet). Never NULL, never panics. The pointer stays
/// valid until the thread's next `set_last_error` or its exit.
pub fn last_error_ptr() -> *const c_char {
    let Some(key) = key() else {
        return NO_SLOT.as_ptr();
    };
    // SAFETY: the key is live; the slot holds NULL or a CString's pointer.
    let p = unsafe { libc::pthread_getspecific(key) };
    if p.is_null() {
        c"".as_ptr()
    } else {
        p.cast_const().cast()
    }
}

/// Runs `body`, turning an error into its code (and this thread's last error message) and a
/// panic into `FO_PANIC`. It never lets a panic unwind into C: recording the message runs
/// inside the boundary too, and so does everything done about a caught panic.
pub fn guard<F>(body: F) -> fo_result
where
    F: FnOnce() -> Result<()>,
{
    let outcome = catch_unwind(AssertUnwindSafe(|| match body() {
        Ok(()) => {
            set_last_error("");
            fo_result::FO_OK
        }
        Err(e) => {
            set_last_error(&e.to_string());
            e.code()
        }
    }));
    match outcome {
        Ok(code) => code,
        Err(payload) => {
            let _ = catch_unwind(AssertUnwindSafe(move || {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                log::error!("a bug was caught at the C boundary: {what}");
                set_last_error(&format!("internal bug caught at the C boundary: {what}"));
                drop(payload);
            }));
            fo_result::FO_PANIC
        }
    }
}

/// For exports that return no result code: a panic is logged and swallowed.
pub fn guard_void<F: FnOnce()>(body: F) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        let _ = catch_unwind(AssertUnwindSafe(move || {
            log::error!("a bug was caught at the C boundary of a void function");
            drop(payload);
        }));
    }
}

/// For exports that return a value instead of a result code: a panic gives `fallback`.
pub fn guard_value<T, F: FnOnce() -> T>(fallback: T, body: F) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let _ = catch_unwind(AssertUnwindSafe(move || {
                log::error!("a bug was caught at the C boundary");
                drop(payload);
            }));
            fallback
        }
    }
}

/// The static string returned when a string-returning export caught a panic.
pub const PANICKED: &CStr = c"(internal bug caught at the C boundary)";

/// Borrows a C string argument. NULL is `NullArgument`; invalid UTF-8 is `InvalidJson` for
/// JSON arguments and `InvalidInput` for ids.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub unsafe fn arg_str<'a>(p: *const c_char, name: &str, is_json: bool) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullArgument(name.to_string()));
    }
    // SAFETY: non-NULL and NUL-terminated per the function's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        let m = format!("{name}: not valid UTF-8 ({e})");
        if is_json {
            Error::InvalidJson(m)
        } else {
            Error::InvalidInput(m)
        }
    })
}

/// Borrows an id argument (a SKU, an order, store, customer or job id): UTF-8, 1 to
/// [`MAX_ID_BYTES`] bytes, else `InvalidInput` without echoing it.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub unsafe fn arg_id<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    // SAFETY: passed on from the caller.
    let s = unsafe { arg_str(p, name, false) }?;
    if s.is_empty() || s.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            name,
            format!("ids are 1 to {MAX_ID_BYTES} bytes, got {}", s.len()),
        ));
    }
    Ok(s)
}

/// Hands a string to C; it must come back through `fo_string_free`.
pub fn out_string(s: String) -> *mut c_char {
    CString::new(s.replace('\0', " "))
        .unwrap_or_default()
        .into_raw()
}

/// Checks an out-pointer before any work is done.
pub fn out_ptr<T>(p: *mut T, name: &str) -> Result<()> {
    if p.is_null() {
        Err(Error::NullArgument(name.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_fo_panic_and_the_thread_goes_on() {
        let code = guard(|| panic!("boom in a test"));
        assert_eq!(code, fo_result::FO_PANIC);
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("boom in a test"), "{msg}");
        assert_eq!(guard(|| Ok(())), fo_result::FO_OK);
        assert_eq!(unsafe { CStr::from_ptr(last_error_ptr()) }.to_bytes(), b"");
    }

    #[test]
    fn errors_map_to_their_codes_with_the_message_kept() {
        let code = guard(|| {
            Err(Error::invalid(
                "sale.lines[0].quantity",
                "must be greater than 0",
            ))
        });
        assert_eq!(code, fo_result::FO_INVALID_INPUT);
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(msg, "sale.lines[0].quantity: must be greater than 0");
    }
}
