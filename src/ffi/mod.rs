//! The C ABI (CONTRACT §2–§6). Only argument handling lives here: every export checks its
//! pointers, runs its body inside the panic boundary and calls the Rust [`Client`].
//!
//! Conventions for every function below:
//! - A `const char *` argument is a NUL-terminated UTF-8 string owned by the caller and only
//!   read during the call.
//! - An out-pointer is written only when the call returns `FO_OK`. Strings returned through
//!   it are owned by the caller and must be released with `fo_string_free`.
//! - On any result other than `FO_OK`, `fo_last_error_message()` on the same thread says why.

#![allow(non_camel_case_types)]

mod boundary;
mod handles;
mod log;

use crate::client::Client;
use crate::error::{fo_result, Error};
use crate::model::store_events::MAX_PDF_BYTES;
use boundary::{arg_id, arg_str, guard, guard_value, guard_void, out_ptr, out_string};
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

/// An open client: a database, a configuration and a sync worker. Opaque; safe to use from
/// many threads at once. Made by `fo_client_open`, released by `fo_client_close`.
pub struct fo_client {
    // Never read: the handle's address is its key in the registry (handles.rs), and the
    // allocation is never freed, so the address is never reused.
    _tombstone: u64,
}

// A client is shared by every thread that calls it, and by its sync thread.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Client>();
};

/// Receives the library's log lines: `level` is 1 (error) … 5 (trace); `message` is valid
/// only during the call. Called from the library's threads, so it must be thread-safe.
pub type fo_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: c_int, message: *const c_char)>;

/// The client behind a handle for the length of one call: `FO_NULL_ARGUMENT`, `FO_CLOSED`
/// after close, `FO_INVALID_INPUT` for a pointer that is no handle. The pointer is only
/// looked up, never read, and the returned reference keeps the client alive for the call
/// even if another thread closes the handle meanwhile.
fn client(c: *const fo_client) -> Result<Arc<Client>, Error> {
    handles::get(c)
}

/// This thread's last failure message; `""` after a success. Never NULL. The pointer stays
/// valid until the next `fo_` call on the same thread.
///
/// Results: none (returns a pointer, never NULL).
/// Threads: any thread; each thread has its own message, also a thread that is exiting (a
/// call from a `pthread_key` destructor).
/// Blocks: never.
/// Pointers: the returned string belongs to the library: never free or modify it. It stays
/// valid until the next `fo_` call on the same thread or the thread's exit; copy it to keep it.
#[no_mangle]
pub extern "C" fn fo_last_error_message() -> *const c_char {
    guard_value(boundary::PANICKED.as_ptr(), boundary::last_error_ptr)
}

/// The name of a result code, e.g. `"FO_OK"`; `"FO_UNKNOWN"` for a number that is not
/// one. A static string; never NULL. (Takes the code as an `int`, the ABI of `fo_result`, so
/// that any number is safe to pass.)
///
/// Results: none (returns a static string, never NULL).
/// Threads: any thread. Blocks: never.
/// Pointers: the returned string is static: never free it.
#[no_mangle]
pub extern "C" fn fo_result_name(r: c_int) -> *const c_char {
    guard_value(c"FO_UNKNOWN".as_ptr(), || {
        fo_result::from_code(r)
            .map(fo_result::c_name)
            .unwrap_or(c"FO_UNKNOWN")
            .as_ptr()
    })
}

/// The library version (equals the crate version). A static string.
///
/// Results: none (returns a static string, never NULL).
/// Threads: any thread. Blocks: never.
/// Pointers: the returned string is static: never free it.
#[no_mangle]
pub extern "C" fn fo_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    guard_value(c"".as_ptr(), || VERSION.as_ptr().cast())
}

/// Frees a string the library returned. NULL is a no-op.
///
/// Results: none. Threads: any thread (not necessarily the one that received the string).
/// Blocks: never.
/// Pointers: `s` is NULL or a string returned through an `out_json` of this library, not yet
/// freed; it is invalid after the call. Freeing any other pointer, or one twice, is undefined
/// behaviour.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn fo_string_free(s: *mut c_char) {
    guard_void(|| {
        if !s.is_null() {
            // SAFETY: it came from CString::into_raw in out_string, per the contract.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Opens a client from its JSON configuration (CONTRACT §3): opens or creates the database
/// and starts the sync thread unless `sync.autostart` is false. On `FO_OK`, `*out` holds the
/// client; release it with `fo_client_close`. Errors: `FO_CONFIG` (bad configuration, the
/// message names the key), `FO_STORAGE` (the database cannot be opened; another client, in
/// this process or another, holds it: the message says "in use"; `database_path` is a
/// symlink, not a SQLite database, or in a directory every account can write: nothing is
/// changed), `FO_STORAGE_FULL`. A damaged flow-omnium database is moved aside and replaced
/// by a fresh one carrying its readable jobs: `FO_OK`, and a `storage.damaged` event.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`config_json` or `out` is NULL); `FO_INVALID_JSON`
/// (`config_json` is not UTF-8, not JSON or not an object); `FO_CONFIG` (a configuration rule
/// is broken; the message starts with the key, e.g. `config.store_id: is required`);
/// `FO_STORAGE`; `FO_STORAGE_FULL`; `FO_PANIC`; `FO_INTERNAL` (the sync thread could not be
/// started).
/// Threads: any thread; clients of different databases are independent. Open after `fork()`, in
/// the process that uses the client: a client never crosses a `fork()` (the child must not use
/// or close a client of its parent).
/// Blocks: while the database is opened, checked and migrated (milliseconds; a damaged or very
/// large database can take seconds; at most the 5 s busy timeout per step while another process
/// holds it); never on the network.
/// Pointers: `config_json` is a NUL-terminated UTF-8 string owned by the caller, only read
/// during the call (the client keeps its own copy); `*out` is written only on `FO_OK`, with a
/// handle the caller owns and releases with `fo_client_close`.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_client_open(
    config_json: *const c_char,
    out: *mut *mut fo_client,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let text = unsafe { arg_str(config_json, "config_json", true) }?;
        out_ptr(out, "out")?;
        let client = Client::open(text)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = handles::register(client) };
        Ok(())
    })
}

/// Stops the sync thread and releases the client. NULL is a no-op. Returns within 10 s even
/// when Omnium does not answer. No call on this client may start after it returns; a call
/// racing with it returns `FO_CLOSED`.
///
/// Results: none. NULL, a handle already closed and a pointer that is no handle are no-ops.
/// Threads: any thread, also while other threads are inside calls on the same client (they
/// finish with their normal result or `FO_CLOSED`; the client is freed by the last of them).
/// Called from a log callback (on any thread), it does not wait for the sync thread, which
/// stops on its own once the callback returns; the database is released then.
/// Blocks: until the sync thread has stopped, at most about 8 s even when Omnium does not
/// answer (a request in flight then finishes on its own and the database stays held until it
/// has).
/// Pointers: after the call `c` is a tombstone: it stays valid to pass to any `fo_` function
/// for the life of the process (`FO_CLOSED`); it is never freed or reused, so never free it
/// yourself.
///
/// # Safety
/// `c` is NULL or a pointer returned by `fo_client_open`, closed at most once.
#[no_mangle]
pub unsafe extern "C" fn fo_client_close(c: *mut fo_client) {
    guard_void(|| {
        // The handle stays behind as a tombstone: later calls get FO_CLOSED. Calls already
        // running hold their own reference and finish first; the client is freed by the last.
        // From inside a log callback the library called, waiting for the worker could wait
        // for this very thread: close without waiting (the worker stops on its own).
        if let Some(client) = handles::take(c) {
            if log::in_callback() {
                client.close_without_waiting();
            } else {
                client.close();
            }
        }
    })
}

/// The body shared by the recording calls.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `json` is NULL or a NUL-terminated string.
unsafe fn record(
    c: *mut fo_client,
    json: *const c_char,
    arg: &str,
    method: fn(&Client, &str) -> Result<(), Error>,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        let text = unsafe { arg_str(json, arg, true) }?;
        method(&client, text)
    })
}

/// Records a sale (CONTRACT §4) durably in the outbox; never waits on the network.
/// The same `id` with the same content again is `FO_OK` and stores nothing; with other
/// content it is `FO_CONFLICT`. A broken rule (balance, required field, duplicate line id,
/// unknown field) is `FO_INVALID_INPUT` with the field named in the message.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `sale_json` is NULL); `FO_INVALID_JSON` (not
/// UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is broken;
/// the message names the field); `FO_CONFLICT` (the id was recorded with other content);
/// `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was
/// caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `sale_json` is a NUL-terminated UTF-8 string owned by the caller, only
/// read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `sale_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_sale(c: *mut fo_client, sale_json: *const c_char) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { record(c, sale_json, "sale_json", Client::record_sale) }
}

/// Records a return of a recorded sale or of an Omnium order. It reaches Omnium only after
/// its sale. For a sale recorded here, lines and returnable quantities are checked.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `return_json` is NULL); `FO_INVALID_JSON` (not
/// UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is broken;
/// the message names the field); `FO_CONFLICT` (the id was recorded with other content);
/// `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was
/// caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `return_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `return_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_return(
    c: *mut fo_client,
    return_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { record(c, return_json, "return_json", Client::record_return) }
}

/// Records a cancellation of a whole order (no `lines`) or of whole lines. It reaches
/// Omnium only after the order's earlier jobs.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `cancellation_json` is NULL); `FO_INVALID_JSON`
/// (not UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is
/// broken; the message names the field); `FO_CONFLICT` (the id was recorded with other
/// content); `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a
/// bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `cancellation_json` is a NUL-terminated UTF-8 string owned by the
/// caller, only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `cancellation_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_cancellation(
    c: *mut fo_client,
    cancellation_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        record(
            c,
            cancellation_json,
            "cancellation_json",
            Client::record_cancellation,
        )
    }
}

/// Records a receipt and its PDF (`pdf_len` bytes, starting with `%PDF-`, at most
/// 10 MiB; copied before the call returns). Sent after its sale as an Omnium invoice with
/// the PDF attached. With `send_receipts` false the call validates and stores nothing.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `receipt_json` or `pdf` is NULL);
/// `FO_INVALID_JSON` (not UTF-8, not JSON, not an object, or nested too deeply);
/// `FO_INVALID_INPUT` (a rule is broken, the PDF does not start with `%PDF-` or `pdf_len` is
/// over 10 MiB (checked before `pdf` is read); the message names the field); `FO_CONFLICT` (the
/// id was recorded with other content); `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`;
/// `FO_CLOSED`; `FO_PANIC` (a bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `receipt_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call; `pdf` points to `pdf_len` readable bytes owned by the caller,
/// copied before the call returns.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `receipt_json` is NULL or a NUL-terminated string; `pdf`
/// is NULL or points to `pdf_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fo_record_receipt(
    c: *mut fo_client,
    receipt_json: *const c_char,
    pdf: *const u8,
    pdf_len: usize,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        let text = unsafe { arg_str(receipt_json, "receipt_json", true) }?;
        if pdf.is_null() {
            return Err(Error::NullArgument("pdf".into()));
        }
        // Checked before a slice is made: a length over isize::MAX would be undefined
        // behaviour in from_raw_parts, and one over the limit is never read at all.
        if pdf_len > MAX_PDF_BYTES {
            return Err(Error::invalid(
                "pdf",
                format!("is {pdf_len} bytes; at most {MAX_PDF_BYTES} are accepted"),
            ));
        }
        // SAFETY: non-NULL, `pdf_len` readable bytes per the contract.
        let bytes = unsafe { std::slice::from_raw_parts(pdf, pdf_len) };
        client.record_receipt(text, bytes)
    })
}

/// Records a customer created or changed at the till (`type` `person` or `company`). The
/// newest version not yet sent replaces older ones; `fo_customer_get` shows it at once.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `customer_json` is NULL); `FO_INVALID_JSON`
/// (not UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is
/// broken; the message names the field); `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`;
/// `FO_CLOSED`; `FO_PANIC` (a bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `customer_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `customer_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_customer(
    c: *mut fo_client,
    customer_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { record(c, customer_json, "customer_json", Client::record_customer) }
}

/// Records goods received, with a purchase order (confirmed on its delivery, once) or
/// without (new absolute levels pushed). More than ordered is accepted and reported.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `reception_json` is NULL); `FO_INVALID_JSON`
/// (not UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is
/// broken; the message names the field); `FO_CONFLICT` (the id was recorded with other
/// content); `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a
/// bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `reception_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `reception_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_goods_reception(
    c: *mut fo_client,
    reception_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        record(
            c,
            reception_json,
            "reception_json",
            Client::record_goods_reception,
        )
    }
}

/// Records absolute on-hand levels counted at the till. Only for a `"flow"` stock-master
/// store (else `FO_INVALID_INPUT`); the newest level per SKU and warehouse is pushed.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `stock_json` is NULL); `FO_INVALID_JSON` (not
/// UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is broken;
/// the message names the field) (also for a store whose stock master is not `"flow"`);
/// `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was
/// caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `stock_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `stock_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_stock_count(
    c: *mut fo_client,
    stock_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { record(c, stock_json, "stock_json", Client::record_stock_count) }
}

/// Records click & collect progress (`ready_for_pickup`, `picked_up`, `not_collected`,
/// `cancelled`; `lines` absent = all lines). The local order shows it at once. If Omnium
/// cancelled the order meanwhile, the job dies with that reason and the order stays
/// cancelled.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `pickup_json` is NULL); `FO_INVALID_JSON` (not
/// UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is broken;
/// the message names the field); `FO_CONFLICT` (the id was recorded with other content);
/// `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was
/// caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `pickup_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `pickup_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_record_pickup(
    c: *mut fo_client,
    pickup_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { record(c, pickup_json, "pickup_json", Client::record_pickup) }
}

/// Takes an Omnium event-subscription payload as is (`className`, `objectId`, `storeId`,
/// `status`, …). An order event queues one fetch of the order whatever store it names (the
/// payload does not say where the order is picked up; the fetched order decides whether it
/// is this store's, and an order that moved away leaves the till); repeats coalesce; other
/// classes and POS orders (`subClassName` "Pos") are ignored (`FO_OK`).
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `omnium_event_json` is NULL); `FO_INVALID_JSON`
/// (not UTF-8, not JSON, not an object, or nested too deeply); `FO_INVALID_INPUT` (a rule is
/// broken; the message names the field); `FO_STORAGE_FULL` (nothing was written); `FO_STORAGE`;
/// `FO_CLOSED`; `FO_PANIC` (a bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `omnium_event_json` is a NUL-terminated UTF-8 string owned by the
/// caller, only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `omnium_event_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_event_notify(
    c: *mut fo_client,
    omnium_event_json: *const c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        record(
            c,
            omnium_event_json,
            "omnium_event_json",
            Client::event_notify,
        )
    }
}

/// Click & collect and online orders for this store: `{"items": [{"id", "order_type",
/// "status", "store_id", "customer", "lines": [{"line_id", "sku", "name", "quantity",
/// "unit_price", …}], "total", "pickup_deadline", …}]}`. `filter_json` (`{"order_type",
/// "status"}`, both optional) may be NULL. Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_JSON`
/// (`filter_json` is not a JSON object); `FO_INVALID_INPUT` (a filter value is not allowed;
/// when `c` is not a handle from `fo_client_open`); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a
/// bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `filter_json` is NULL (no filter) or a NUL-terminated UTF-8 string
/// owned by the caller, only read during the call; `*out_json` is written only on `FO_OK` with
/// a new string the caller owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `filter_json` is NULL or a NUL-terminated string;
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_orders_list(
    c: *mut fo_client,
    filter_json: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_optional(c, filter_json, out_json, Client::orders_json) }
}

/// One inbound order by id (as in `fo_orders_list`); `FO_NOT_FOUND` if not known locally.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `order_id` or `out_json` is NULL);
/// `FO_INVALID_INPUT` (`order_id` is empty, over 128 bytes or not UTF-8; when `c` is not a
/// handle from `fo_client_open`); `FO_NOT_FOUND`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `order_id` is a NUL-terminated UTF-8 string owned by the caller, only
/// read during the call; `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `order_id` is NULL or a NUL-terminated string; `out_json`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_order_get(
    c: *mut fo_client,
    order_id: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_json(c, order_id, "order_id", false, out_json, Client::order_json) }
}

/// Purchase orders for this store: `{"items": [{"id", "number", "status", "supplier",
/// "expected_date", "delivery_id", "lines": [{"line_id", "sku", "name", "ean", "quantity",
/// "delivered_quantity"}]}]}`. `filter_json` (`{"status"}`) may be NULL.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_JSON`
/// (`filter_json` is not a JSON object); `FO_INVALID_INPUT` (a filter value is not allowed;
/// when `c` is not a handle from `fo_client_open`); `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a
/// bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `filter_json` is NULL (no filter) or a NUL-terminated UTF-8 string
/// owned by the caller, only read during the call; `*out_json` is written only on `FO_OK` with
/// a new string the caller owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `filter_json` is NULL or a NUL-terminated string;
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_purchase_orders_list(
    c: *mut fo_client,
    filter_json: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_optional(c, filter_json, out_json, Client::purchase_orders_json) }
}

/// A customer recorded here or fetched from Omnium for an inbound order:
/// `{"id", "type", "first_name", "last_name", "company_name", "tax_id", "email", "phone",
/// "address", "loyalty_id"}`. `FO_NOT_FOUND` if not known locally.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `customer_id` or `out_json` is NULL);
/// `FO_INVALID_INPUT` (`customer_id` is empty, over 128 bytes or not UTF-8; when `c` is not a
/// handle from `fo_client_open`); `FO_NOT_FOUND`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `customer_id` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call; `*out_json` is written only on `FO_OK` with a new string the
/// caller owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `customer_id` is NULL or a NUL-terminated string;
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_customer_get(
    c: *mut fo_client,
    customer_id: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        read_json(
            c,
            customer_id,
            "customer_id",
            false,
            out_json,
            Client::customer_json,
        )
    }
}

/// The body of the list calls whose JSON filter may be NULL.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `filter` is NULL or a NUL-terminated string; `out_json`
/// is NULL or writable.
unsafe fn read_optional(
    c: *mut fo_client,
    filter: *const c_char,
    out_json: *mut *mut c_char,
    read: fn(&Client, Option<&str>) -> Result<String, Error>,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        let filter = if filter.is_null() {
            None
        } else {
            Some(unsafe { arg_str(filter, "filter_json", true) }?)
        };
        out_ptr(out_json, "out_json")?;
        let json = read(&client, filter)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = out_string(json) };
        Ok(())
    })
}

/// The body shared by the reading calls: one argument (NULL allowed only when
/// `arg_name` is empty), one JSON string out.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `arg` is NULL or a NUL-terminated string; `out_json` is
/// NULL or writable.
unsafe fn read_json(
    c: *mut fo_client,
    arg: *const c_char,
    arg_name: &str,
    is_json: bool,
    out_json: *mut *mut c_char,
    read: impl FnOnce(&Client, &str) -> Result<String, Error>,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        let text = if arg_name.is_empty() {
            ""
        } else if is_json {
            unsafe { arg_str(arg, arg_name, true) }?
        } else {
            unsafe { arg_id(arg, arg_name) }?
        };
        out_ptr(out_json, "out_json")?;
        let json = read(&client, text)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = out_string(json) };
        Ok(())
    })
}

/// A product by SKU from the local catalog (works offline): `{"sku", "product_id", "name",
/// "brand", "ean", "category_ids", "image_urls", "active", "price": {"unit_price",
/// "currency", "valid_from", "valid_until"} or null, "cost_price"}`. The price is the one
/// valid now for this store and market. `FO_NOT_FOUND` if the SKU is not known locally.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `sku` or `out_json` is NULL); `FO_INVALID_INPUT`
/// (`sku` is empty, over 128 bytes or not UTF-8; when `c` is not a handle from
/// `fo_client_open`); `FO_NOT_FOUND`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was caught;
/// the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `sku` is a NUL-terminated UTF-8 string owned by the caller, only read
/// during the call; `*out_json` is written only on `FO_OK` with a new string the caller owns
/// and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `sku` is NULL or a NUL-terminated string; `out_json` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_product_get(
    c: *mut fo_client,
    sku: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_json(c, sku, "sku", false, out_json, Client::product_json) }
}

/// Searches sellable products offline. Query: `{"text", "category_id", "brand", "limit"
/// (1..500, default 50), "offset"}`; `text` matches the start of words in the name, SKU, EAN
/// and brand, ranked, an exact SKU or EAN first. Result: `{"items": [product…], "total": N}`.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `query_json` or `out_json` is NULL);
/// `FO_INVALID_JSON` (`query_json` is not a JSON object); `FO_INVALID_INPUT` (a query value is
/// out of range; when `c` is not a handle from `fo_client_open`); `FO_STORAGE`; `FO_CLOSED`;
/// `FO_PANIC` (a bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `query_json` is a NUL-terminated UTF-8 string owned by the caller,
/// only read during the call; `*out_json` is written only on `FO_OK` with a new string the
/// caller owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `query_json` is NULL or a NUL-terminated string;
/// `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_product_search(
    c: *mut fo_client,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        read_json(
            c,
            query_json,
            "query_json",
            true,
            out_json,
            Client::search_json,
        )
    }
}

/// Stock of a SKU in this store's warehouses: `{"sku", "warehouses": [{"warehouse_id",
/// "quantity", "reserved", "pending", "available", "as_of"}]}`. `quantity` and `reserved` are
/// Omnium's last known levels; `pending` is the local change Omnium has not counted yet
/// (sales −, restocked returns +); `available = quantity − reserved + pending`. `as_of` is
/// Omnium's `modified` of the level (ISO 8601), or null when no level was ever pulled for
/// that SKU and warehouse: then `quantity` and `reserved` are 0 and mean "unknown", not 0.
/// `FO_NOT_FOUND` if nothing is known of the SKU. Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `sku` or `out_json` is NULL); `FO_INVALID_INPUT`
/// (`sku` is empty, over 128 bytes or not UTF-8; when `c` is not a handle from
/// `fo_client_open`); `FO_NOT_FOUND`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug was caught;
/// the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `sku` is a NUL-terminated UTF-8 string owned by the caller, only read
/// during the call; `*out_json` is written only on `FO_OK` with a new string the caller owns
/// and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `sku` is NULL or a NUL-terminated string; `out_json` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_stock_get(
    c: *mut fo_client,
    sku: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_json(c, sku, "sku", false, out_json, Client::stock_json) }
}

/// A store (this one or another that was pulled) as Omnium's JSON plus `opening_hours`
/// (`{"monday": {"open", "from", "to"}, …}`), `special_days` and `warehouses`.
/// `FO_NOT_FOUND` if not known locally. Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c`, `store_id` or `out_json` is NULL);
/// `FO_INVALID_INPUT` (`store_id` is empty, over 128 bytes or not UTF-8; when `c` is not a
/// handle from `fo_client_open`); `FO_NOT_FOUND`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `store_id` is a NUL-terminated UTF-8 string owned by the caller, only
/// read during the call; `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `store_id` is NULL or a NUL-terminated string; `out_json`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_store_get(
    c: *mut fo_client,
    store_id: *const c_char,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe { read_json(c, store_id, "store_id", false, out_json, Client::store_json) }
}

/// Product categories in the store's language: `{"items": [{"id", "name", "parent_id",
/// "sort_index"}]}`. Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_INPUT` also
/// when `c` is not a handle from `fo_client_open`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_categories_list(
    c: *mut fo_client,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        read_json(c, std::ptr::null(), "", false, out_json, |c, _| {
            c.categories_json()
        })
    }
}

/// Addition to the contract: the brands of sellable products, `{"items": ["Devold", …]}`
/// (Omnium has no brand entity; the list is derived from the catalog).
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_INPUT` also
/// when `c` is not a handle from `fo_client_open`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_brands_list(
    c: *mut fo_client,
    out_json: *mut *mut c_char,
) -> fo_result {
    // SAFETY: caller contract above.
    unsafe {
        read_json(c, std::ptr::null(), "", false, out_json, |c, _| {
            c.brands_json()
        })
    }
}

/// Wakes the sync thread to push now (starting it if `sync.autostart` was false), even
/// when it is backing off after an outage. A 429's Retry-After is still honoured.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT`; `FO_INVALID_INPUT` also when `c` is not a handle from
/// `fo_client_open`; `FO_INTERNAL` (the sync thread could not be started); `FO_CLOSED`;
/// `FO_PANIC`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: never (it only wakes the sync thread, starting it if needed).
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`).
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read).
#[no_mangle]
pub unsafe extern "C" fn fo_sync_now(c: *mut fo_client) -> fo_result {
    // SAFETY: caller contract above.
    guard(|| client(c)?.sync_now())
}

/// Waits until nothing is pending (dead jobs and jobs blocked behind them do not count):
/// `FO_OK`, or `FO_TIMEOUT` after `timeout_ms`.
///
/// Results: `FO_OK` (nothing pending); `FO_TIMEOUT`; `FO_NULL_ARGUMENT`; `FO_INVALID_INPUT`
/// also when `c` is not a handle from `fo_client_open`; `FO_STORAGE`; `FO_INTERNAL` (the sync
/// thread could not be started); `FO_CLOSED` (also when the client is closed during the wait);
/// `FO_PANIC`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: up to `timeout_ms` milliseconds (0: checks once and returns), returning early once
/// nothing is pending or the client is closed. Called from a log callback on the sync thread
/// (the library's own line), or on a thread the sync thread waits for (the one fetching the
/// next catalog page, those sending a batch), it checks once and never waits: the sync thread
/// cannot deliver until the callback returns (`FO_TIMEOUT` when anything is pending).
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`).
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read).
#[no_mangle]
pub unsafe extern "C" fn fo_flush(c: *mut fo_client, timeout_ms: u32) -> fo_result {
    // SAFETY: caller contract above.
    guard(|| client(c)?.flush(Duration::from_millis(timeout_ms.into())))
}

/// The sync status as JSON: `{"online", "outbox": {"pending", "blocked", "dead",
/// "oldest_pending_at"}, "next_attempt_at", "last_push_at", "last_pull_at", "pulling",
/// "failing_datasets"}` (additions: `pulling` is true while a pull run is in progress;
/// `failing_datasets` lists each data set whose last pull failed, `[{"dataset", "failing_since",
/// "failed_runs", "last_error"}]`, empty when none: `dataset` is `stores`, `categories`,
/// `products`, `stock`, `orders.ClickAndCollect`, `orders.Online`, `orders.PickUpPoint` (orders
/// are read in these passes, each reported on its own) or `purchase_orders`, `failed_runs`
/// counts pull runs in a row that read it,
/// `last_error` is Omnium's short reason; the till keeps its last data for that set, and
/// `last_pull_at` still moves with the others).
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_INPUT` also
/// when `c` is not a handle from `fo_client_open`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_status(c: *mut fo_client, out_json: *mut *mut c_char) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        out_ptr(out_json, "out_json")?;
        let json = client.status_json()?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = out_string(json) };
        Ok(())
    })
}

/// The next event as JSON, waiting up to `timeout_ms`; `FO_TIMEOUT` if none came. Events
/// are queued in order (at most 10,000; beyond that the oldest is dropped and a warning
/// logged) and each is returned once. `"type"` is one of:
/// - `order.received`, `order.updated`, `order.cancelled`: an inbound order for this store
///   (`order_id`, `order_type`, `status`, `at`); an `order.updated` with `"removed": true`
///   says the order left the till (`reason` `"moved"`, with the new `store_id`, or
///   `"deleted"`: Omnium no longer has it);
/// - `stock.changed`, `catalog.changed`: pulled data changed (`dataset`, `count`);
/// - `job.dead`: a job was given up (`job_id`, `kind`, `entity_id`, `error`; see
///   `fo_dead_jobs`);
/// - `sync.online`, `sync.offline` (`reason`), `sync.auth_failed` (Omnium refuses the API
///   user even with a new token; `reason`): the link to Omnium changed (`at`);
/// - `goods_reception.over_received`: a reception had more than its purchase order
///   (`reception_id`, `purchase_order_id`, `lines`);
/// - `storage.damaged`: the database was damaged at open and moved aside (`moved_to`,
///   `salvaged`, `lost`).
///
/// Unknown types may be added later: ignore a type you do not know.
/// Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_TIMEOUT` (no event within `timeout_ms`); `FO_NULL_ARGUMENT` (`c` or
/// `out_json` is NULL); `FO_INVALID_INPUT` also when `c` is not a handle from `fo_client_open`;
/// `FO_CLOSED` (also at once for a thread waiting here when another thread closes the client);
/// `FO_PANIC`; `FO_INTERNAL`.
/// Threads: any thread; with several threads waiting, each event goes to exactly one of them. A
/// call racing with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: up to `timeout_ms` milliseconds (0: returns at once), returning early when an event
/// arrives or the client is closed.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_next_event(
    c: *mut fo_client,
    timeout_ms: u32,
    out_json: *mut *mut c_char,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        out_ptr(out_json, "out_json")?;
        let json = client.next_event(Duration::from_millis(timeout_ms.into()))?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = out_string(json) };
        Ok(())
    })
}

/// Jobs given up on: `{"items": [{"id", "kind", "entity_id", "attempts", "last_error",
/// "dead_at"}]}`. Free `*out_json` with `fo_string_free`.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` or `out_json` is NULL); `FO_INVALID_INPUT` also
/// when `c` is not a handle from `fo_client_open`; `FO_STORAGE`; `FO_CLOSED`; `FO_PANIC` (a bug
/// was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one local database read (at most the 5 s busy timeout); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `*out_json` is written only on `FO_OK` with a new string the caller
/// owns and frees with `fo_string_free`.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `out_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fo_dead_jobs(c: *mut fo_client, out_json: *mut *mut c_char) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        out_ptr(out_json, "out_json")?;
        let json = client.dead_jobs_json()?;
        // SAFETY: checked non-NULL above.
        unsafe { *out_json = out_string(json) };
        Ok(())
    })
}

/// Gives the dead job `job_id` (an `id` from `fo_dead_jobs`) a new set of attempts; NULL
/// retries every dead job. `FO_NOT_FOUND` if there is no such dead job.
///
/// Results: `FO_OK`; `FO_NULL_ARGUMENT` (`c` is NULL); `FO_INVALID_INPUT` (`job_id` is empty,
/// over 128 bytes, not UTF-8 or not a job id; when `c` is not a handle from `fo_client_open`);
/// `FO_NOT_FOUND` (no dead job has that id); `FO_STORAGE_FULL`; `FO_STORAGE`; `FO_CLOSED`;
/// `FO_PANIC` (a bug was caught; the process goes on); `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one durable SQLite transaction (typically well under a millisecond; at most the
/// 5 s busy timeout while another connection writes); never on the network.
/// Pointers: `c` is a handle from `fo_client_open` (after `fo_client_close` it may still be
/// passed: `FO_CLOSED`); `job_id` is NULL (every dead job) or a NUL-terminated string owned by
/// the caller, only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `job_id` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_job_retry(c: *mut fo_client, job_id: *const c_char) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        let id = if job_id.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated per the contract.
            Some(unsafe { arg_id(job_id, "job_id") }?)
        };
        client.retry_job(id)
    })
}

/// Sends the library's log lines up to `max_level` (1 error … 5 trace) to `cb`; NULL `cb`
/// (or `max_level` 0) turns logging off. Process-wide. Lines never contain secrets.
///
/// Results: none.
/// Threads: any thread, including from inside the callback itself (to replace or remove it).
/// Process-wide: one callback for every client. When this returns, the callback it replaced
/// is not running on any other thread and is never called again, so its `user_data` may be
/// freed; the exceptions are threads that are inside that callback and themselves calling
/// this function (a callback replacing itself), whose own calls are still on their stacks.
/// Blocks: until calls of the replaced callback that other threads had begun have returned
/// (a short internal lock otherwise; no callback is called while it is held). Do not call it
/// while holding a lock the callback takes.
/// Pointers: `cb` is NULL (logging off) or a function that stays callable, and `user_data`
/// valid, until it is replaced and this call returns (the library does not
/// free `user_data`). The callback runs on the library's threads and on the threads of calls
/// that log, with `message` valid only during the call; it must be thread-safe and must not
/// unwind (C++ exceptions) or `longjmp` out: it must return. It may call any `fo_` function;
/// lines the library logs on a thread while that thread is inside the callback are dropped (no
/// recursion).
///
/// # Safety
/// `cb` is NULL or a thread-safe function that stays valid while it is registered.
#[no_mangle]
pub unsafe extern "C" fn fo_set_log_callback(
    cb: fo_log_fn,
    user_data: *mut c_void,
    max_level: c_int,
) {
    guard_void(|| log::set_callback(cb, user_data, max_level))
}

/// Erases what this till holds about a customer (the right to be forgotten): the customer
/// record, the name, e-mail and phone of inbound orders naming them, and the payloads of
/// delivered (and dead) customer jobs; free database pages and the WAL are overwritten or
/// truncated, so no copy stays on disk. A customer job not yet delivered keeps what it
/// needs to reach Omnium and is erased as soon as it is delivered. Until then, and for
/// `sync.customer_retention_ms` after, the customer is not fetched or stored again, unless
/// the POS records them again with `fo_record_customer`. Omnium's own copy is not touched.
///
/// Results: `FO_OK`; `FO_NOT_FOUND` (nothing was held about `customer_id`);
/// `FO_NULL_ARGUMENT`; `FO_INVALID_INPUT` (an empty id, one over 128 bytes or not UTF-8;
/// also when `c` is not a handle from `fo_client_open`); `FO_STORAGE`, `FO_STORAGE_FULL` (a
/// disk error; nothing erased); `FO_CLOSED`; `FO_PANIC`; `FO_INTERNAL`.
/// Threads: any thread, at the same time as any other call on the same client; a call racing
/// with `fo_client_close` returns its normal result or `FO_CLOSED`.
/// Blocks: for one short database transaction and a WAL checkpoint (at most the 5 s busy
/// timeout while another connection holds the database); never on the network.
/// Pointers: `c` is a handle from `fo_client_open`; `customer_id` is a NUL-terminated UTF-8
/// string owned by the caller, only read during the call.
///
/// # Safety
/// `c` is any pointer value (NULL, an open or a closed handle: it is only looked up, never read); `customer_id` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fo_forget_customer(
    c: *mut fo_client,
    customer_id: *const c_char,
) -> fo_result {
    guard(|| {
        // SAFETY: caller contract above.
        let client = client(c)?;
        // SAFETY: NULL-checked by arg_str; NUL-terminated per the contract.
        let id = unsafe { arg_id(customer_id, "customer_id") }?;
        client.forget_customer(id)
    })
}
