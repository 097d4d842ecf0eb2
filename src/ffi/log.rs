//! Forwarding the library's log to the POS through `fo_set_log_callback`.
//!
//! No lock is ever held while the POS's function runs (CONTRACT §9 rule 7): a line takes a
//! clone of the current sink under a short lock and calls it after the lock is released, so
//! the callback may call any `fo_` function, `fo_set_log_callback` included. Lines the
//! library logs on a thread that is already inside the callback (because the callback
//! called back in) are dropped instead of re-entering it, so a callback can never recurse
//! into itself.

use super::fo_log_fn;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};
use std::sync::{Arc, Mutex, Once};

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, c_int, *const std::ffi::c_char),
    user_data: usize,
}

/// The current sink. Only swapped or cloned under the lock, never called under it.
static SINK: Mutex<Option<Arc<Sink>>> = Mutex::new(None);
static INSTALL: Once = Once::new();

thread_local! {
    // A const-initialised Cell has no destructor, so it stays readable while the thread's
    // other thread-locals are being destroyed (`try_with` is used all the same).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Clears the thread's in-callback mark when the callback returns.
struct InCallback;

impl Drop for InCallback {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|f| f.set(false));
    }
}

/// Whether this thread is inside the POS's log callback (so the library called it).
pub fn in_callback() -> bool {
    IN_CALLBACK.try_with(|f| f.get()).unwrap_or(false)
}

struct CallbackLogger;

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // The HTTP and TLS crates dump raw request bytes at debug level, in pieces too small
        // for the redactor to recognise a secret: only their warnings and errors pass.
        let noisy = ["ureq", "rustls", "ring"]
            .iter()
            .any(|t| metadata.target().starts_with(t));
        metadata.level() <= log::max_level() && !(noisy && metadata.level() > log::Level::Warn)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Inside the callback already (it called back into the library): drop the line.
        if IN_CALLBACK.try_with(|f| f.get()).unwrap_or(true) {
            return;
        }
        let sink = SINK.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(sink) = sink else { return };
        let text = crate::redact::redact(&format!("{}: {}", record.target(), record.args()));
        let Ok(message) = CString::new(text.replace('\0', " ")) else {
            return;
        };
        if IN_CALLBACK.try_with(|f| f.set(true)).is_err() {
            return;
        }
        let _mark = InCallback;
        // SAFETY: the POS registered this function for exactly this call shape; the
        // message lives until the call returns. No lock of ours is held here.
        unsafe {
            (sink.callback)(
                sink.user_data as *mut c_void,
                level_number(record.level()),
                message.as_ptr(),
            )
        };
    }

    fn flush(&self) {}
}

fn level_number(level: log::Level) -> c_int {
    match level {
        log::Level::Error => 1,
        log::Level::Warn => 2,
        log::Level::Info => 3,
        log::Level::Debug => 4,
        log::Level::Trace => 5,
    }
}

pub fn set_callback(cb: fo_log_fn, user_data: *mut c_void, max_level: c_int) {
    INSTALL.call_once(|| {
        // Fails only if the host already installed a logger; then that one keeps working.
        if log::set_logger(&CallbackLogger).is_err() {
            eprintln!(
                "flow-omnium: a logger is already installed; fo_set_log_callback has no effect"
            );
        }
    });
    let filter = match (cb, max_level) {
        (None, _) | (_, ..=0) => log::LevelFilter::Off,
        (_, 1) => log::LevelFilter::Error,
        (_, 2) => log::LevelFilter::Warn,
        (_, 3) => log::LevelFilter::Info,
        (_, 4) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let new = cb.map(|callback| {
        Arc::new(Sink {
            callback,
            user_data: user_data as usize,
        })
    });
    // The sink and the level change together, so two threads setting callbacks at once
    // cannot leave one's sink with the other's level. Neither step runs foreign code.
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    *sink = new;
    log::set_max_level(filter);
}
