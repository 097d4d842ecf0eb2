//! The panic boundary, the thread's last error, and C string handling. Every export runs
//! its body through [`guard`]; nothing here knows about Omnium.

use crate::error::{fo_result, Error, Result};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn set_last_error(message: &str) {
    let clean = crate::redact::redact(message).replace('\0', " ");
    let c = CString::new(clean).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs `body`, turning an error into its code (and this thread's last error message) and a
/// panic into `FO_PANIC`. It never lets a panic unwind into C.
pub fn guard<F>(body: F) -> fo_result
where
    F: FnOnce() -> Result<()>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            fo_result::FO_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.code()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("a bug was caught at the C boundary: {what}");
            set_last_error(&format!("internal bug caught at the C boundary: {what}"));
            fo_result::FO_PANIC
        }
    }
}

/// For exports that return no result code: a panic is logged and swallowed.
pub fn guard_void<F: FnOnce()>(body: F) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log::error!("a bug was caught at the C boundary of a void function");
    }
}

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
