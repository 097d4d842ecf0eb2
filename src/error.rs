//! One error type for the whole crate, and its mapping to the C result codes.

use std::fmt;

/// Result codes of the C API (CONTRACT §2). The numbers are fixed.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum fo_result {
    /// Success.
    FO_OK = 0,
    /// A required pointer was NULL.
    FO_NULL_ARGUMENT = 1,
    /// Not UTF-8, not JSON, or not the expected JSON type.
    FO_INVALID_JSON = 2,
    /// Well-formed but breaks a rule; the message names the field.
    FO_INVALID_INPUT = 3,
    /// An id already recorded with different content.
    FO_CONFLICT = 4,
    /// The thing is not known locally.
    FO_NOT_FOUND = 5,
    /// The wait ran out.
    FO_TIMEOUT = 6,
    /// Disk full; nothing was written.
    FO_STORAGE_FULL = 7,
    /// I/O error or damaged database.
    FO_STORAGE = 8,
    /// The client is closing or closed.
    FO_CLOSED = 9,
    /// Bad or incomplete configuration.
    FO_CONFIG = 10,
    /// A bug was caught at the boundary; the process goes on.
    FO_PANIC = 98,
    /// Anything else.
    FO_INTERNAL = 99,
}

impl fo_result {
    /// The code's name as written in the header, e.g. `"FO_OK"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("FO_UNKNOWN")
    }

    /// The code with this number, if there is one.
    pub fn from_code(code: i32) -> Option<fo_result> {
        use fo_result::*;
        [
            FO_OK,
            FO_NULL_ARGUMENT,
            FO_INVALID_JSON,
            FO_INVALID_INPUT,
            FO_CONFLICT,
            FO_NOT_FOUND,
            FO_TIMEOUT,
            FO_STORAGE_FULL,
            FO_STORAGE,
            FO_CLOSED,
            FO_CONFIG,
            FO_PANIC,
            FO_INTERNAL,
        ]
        .into_iter()
        .find(|r| *r as i32 == code)
    }

    /// [`fo_result::name`] as a static C string.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            fo_result::FO_OK => c"FO_OK",
            fo_result::FO_NULL_ARGUMENT => c"FO_NULL_ARGUMENT",
            fo_result::FO_INVALID_JSON => c"FO_INVALID_JSON",
            fo_result::FO_INVALID_INPUT => c"FO_INVALID_INPUT",
            fo_result::FO_CONFLICT => c"FO_CONFLICT",
            fo_result::FO_NOT_FOUND => c"FO_NOT_FOUND",
            fo_result::FO_TIMEOUT => c"FO_TIMEOUT",
            fo_result::FO_STORAGE_FULL => c"FO_STORAGE_FULL",
            fo_result::FO_STORAGE => c"FO_STORAGE",
            fo_result::FO_CLOSED => c"FO_CLOSED",
            fo_result::FO_CONFIG => c"FO_CONFIG",
            fo_result::FO_PANIC => c"FO_PANIC",
            fo_result::FO_INTERNAL => c"FO_INTERNAL",
        }
    }
}

/// Every failure the library reports. Messages name the field, job or status involved and
/// never contain a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("{0} is NULL")]
    NullArgument(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Timeout(String),
    #[error("disk full: {0}")]
    StorageFull(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("the client is closed")]
    Closed,
    /// The message starts with the key (`config.sync.max_attempts: …`).
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> fo_result {
        match self {
            Error::NullArgument(_) => fo_result::FO_NULL_ARGUMENT,
            Error::InvalidJson(_) => fo_result::FO_INVALID_JSON,
            Error::InvalidInput(_) => fo_result::FO_INVALID_INPUT,
            Error::Conflict(_) => fo_result::FO_CONFLICT,
            Error::NotFound(_) => fo_result::FO_NOT_FOUND,
            Error::Timeout(_) => fo_result::FO_TIMEOUT,
            Error::StorageFull(_) => fo_result::FO_STORAGE_FULL,
            Error::Storage(_) => fo_result::FO_STORAGE,
            Error::Closed => fo_result::FO_CLOSED,
            Error::Config(_) => fo_result::FO_CONFIG,
            Error::Internal(_) => fo_result::FO_INTERNAL,
        }
    }

    pub fn invalid(field: impl fmt::Display, problem: impl fmt::Display) -> Error {
        Error::InvalidInput(format!("{field}: {problem}"))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return Error::StorageFull(format!("{e}; nothing was written"));
            }
        }
        Error::Storage(e.to_string())
    }
}
