//! flow-omnium keeps a Flow Retail POS terminal in step with the Omnium OMS.
//!
//! Data flows one way through each stage (see README "Architecture"):
//! `ffi/` (C ABI) → `model/` (parse + validate) → `store/` (one durable SQLite
//! transaction) → `sync/` (the worker) → `omnium/` (HTTP) → Omnium.
//! [`Client`] is the Rust API that `ffi/` wraps.

pub mod admin;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod ffi;
pub mod model;
pub mod omnium;
pub mod redact;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod sync;
pub mod views;
#[cfg(feature = "wipe-heap")]
pub mod wipe_heap;

/// Every block the library frees is zeroed first: see [`wipe_heap`].
#[cfg(feature = "wipe-heap")]
#[global_allocator]
static WIPE_ON_FREE: wipe_heap::WipeOnFree = wipe_heap::WipeOnFree;

pub use client::Client;
pub use config::Config;
pub use error::{fo_result, Error, Result};
