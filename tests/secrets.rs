//! The client secret and tokens never reach the POS's log callback, at any level, however
//! short the secret, whatever fails (the library's own lines and its HTTP crates').

mod common;

use common::*;
use flow_omnium::ffi::fo_set_log_callback;
use serde_json::json;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;
use std::time::Duration;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(_user: *mut c_void, _level: c_int, message: *const c_char) {
    // SAFETY: the library passes a valid NUL-terminated string for the call's duration.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    LINES.lock().unwrap().push(text);
}

#[test]
fn secrets_and_tokens_never_reach_the_log_even_at_trace() {
    // SAFETY: `collect` is thread-safe and lives for the whole process.
    unsafe { fo_set_log_callback(Some(collect), std::ptr::null_mut(), 5) };
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // A short wrong secret (refused), then the right one (tokens issued and used).
    let wrong = open(
        &dir.path().join("a.db"),
        &sim,
        json!({"omnium": {"client_secret": "Zq9"}}),
    );
    wrong.record_sale(&sale("S-1", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(wrong);
    let right = open(&dir.path().join("b.db"), &sim, json!({}));
    right.record_sale(&sale("S-2", 1)).unwrap();
    right.flush(Duration::from_secs(10)).unwrap();
    sim.set_down(true);
    right.record_sale(&sale("S-3", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(right);
    unsafe { fo_set_log_callback(None, std::ptr::null_mut(), 0) };

    let lines = LINES.lock().unwrap();
    assert!(
        lines.len() > 10,
        "the log was written: {} lines",
        lines.len()
    );
    for line in lines.iter() {
        assert!(!line.contains("Zq9"), "the short secret leaked: {line}");
        assert!(!line.contains(CLIENT_SECRET), "the secret leaked: {line}");
        assert!(!line.contains("Bearer "), "a token leaked: {line}");
    }
}
