//! Forwarding the library's log to the POS through `fo_set_log_callback`.
//!
//! No lock is ever held while the POS's function runs (CONTRACT §9 rule 7): a line takes a
//! clone of the current sink under a short lock and calls it after the lock is released, so
//! the callback may call any `fo_` function, `fo_set_log_callback` included. Lines the
//! library logs on a thread that is already inside the callback (because the callback
//! called back in) are dropped instead of re-entering it, so a callback can never recurse
//! into itself.
//!
//! Each sink counts the calls of it in progress. `fo_set_log_callback` swaps the sink, then
//! waits until no call of the old one is running, except calls on threads that are waiting
//! in `fo_set_log_callback` themselves (a callback replacing itself, on one thread or on
//! several at once): when it returns, the old callback is not running and will not be
//! called again, so the POS may free its `user_data`.

use super::fo_log_fn;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};
use std::sync::{Arc, Condvar, Mutex, Once};

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, c_int, *const std::ffi::c_char),
    user_data: usize,
    calls: Mutex<Calls>,
    /// Signalled when a call ends or a caller inside starts waiting.
    changed: Condvar,
}

#[derive(Default)]
struct Calls {
    /// Lines that took this sink and have not returned from it (counted under [`SINK`]'s
    /// lock, so none can start once the sink has been replaced).
    running: usize,
    /// Of those, threads inside this sink's callback waiting in `set_callback` for it.
    waiting_inside: usize,
}

impl Sink {
    fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One call of a sink in progress; ends it when dropped.
struct Running(Arc<Sink>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.calls().running -= 1;
        self.0.changed.notify_all();
    }
}

/// The current sink. Only swapped or cloned under the lock, never called under it.
static SINK: Mutex<Option<Arc<Sink>>> = Mutex::new(None);
static INSTALL: Once = Once::new();

thread_local! {
    // A const-initialised Cell has no destructor, so it stays readable while the thread's
    // other thread-locals are being destroyed (`try_with` is used all the same).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// The sink whose callback this thread is inside (its address), 0 when none.
    static INSIDE: Cell<usize> = const { Cell::new(0) };
}

/// Clears the thread's in-callback mark when the callback returns.
struct InCallback;

impl Drop for InCallback {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|f| f.set(false));
        let _ = INSIDE.try_with(|f| f.set(0));
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
        let sink = {
            let current = SINK.lock().unwrap_or_else(|p| p.into_inner());
            let Some(sink) = current.as_ref() else { return };
            // Counted while the sink cannot be swapped: a replacement waits for this call.
            sink.calls().running += 1;
            Running(sink.clone())
        };
        let text = crate::redact::redact(&format!("{}: {}", record.target(), record.args()));
        let Ok(message) = CString::new(text.replace('\0', " ")) else {
            return;
        };
        if IN_CALLBACK.try_with(|f| f.set(true)).is_err() {
            return;
        }
        let _mark = InCallback;
        let _ = INSIDE.try_with(|f| f.set(Arc::as_ptr(&sink.0) as usize));
        let sink = &sink.0;
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
            calls: Mutex::default(),
            changed: Condvar::new(),
        })
    });
    // The sink and the level change together, so two threads setting callbacks at once
    // cannot leave one's sink with the other's level. Neither step runs foreign code.
    let old = {
        let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *sink, new);
        log::set_max_level(filter);
        old
    };
    if let Some(old) = old {
        wait_until_idle(&old);
    }
}

/// Returns when no call of `sink` is running but those of threads waiting here themselves
/// (this thread included, when it is inside `sink`'s callback): no new call can start, as
/// the sink has been replaced. Threads inside the callback that all replace it at once wait
/// for the others' calls only, so they cannot wait for each other.
fn wait_until_idle(sink: &Arc<Sink>) {
    let inside = INSIDE.try_with(Cell::get).unwrap_or(0) == Arc::as_ptr(sink) as usize;
    let mut calls = sink.calls();
    if inside {
        calls.waiting_inside += 1;
        sink.changed.notify_all();
    }
    while calls.running > calls.waiting_inside {
        calls = sink.changed.wait(calls).unwrap_or_else(|p| p.into_inner());
    }
    if inside {
        calls.waiting_inside -= 1;
    }
}
