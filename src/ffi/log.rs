//! Forwarding the library's log to the POS through `fo_set_log_callback`.

use super::fo_log_fn;
use std::ffi::{c_int, c_void, CString};
use std::sync::{Once, RwLock};

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, c_int, *const std::ffi::c_char),
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALL: Once = Once::new();

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
        let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        let text = crate::redact::redact(&format!("{}: {}", record.target(), record.args()));
        let Ok(message) = CString::new(text.replace('\0', " ")) else {
            return;
        };
        // SAFETY: the POS registered this function for exactly this call shape; the
        // message lives until the call returns.
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
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = cb.map(|callback| Sink {
        callback,
        user_data: user_data as usize,
    });
    log::set_max_level(filter);
}
