//! Errors from host calls.

use ants_wire::abi::status;

/// What a host call (or a handler) can fail with. Built from any status code without
/// panicking; unknown codes are kept as [`Error::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A pointer/length was outside linear memory (an SDK bug if it ever happens).
    BadPointer,
    /// An argument was out of range (offset past the end, unknown field, zero TTL…).
    BadArgument,
    /// No such key, app or route.
    NotFound,
    /// The field is read-only to capsule code.
    ReadOnly,
    /// A size limit would be exceeded.
    TooLarge,
    /// This protocol's soft-store quota is full.
    Quota,
    /// A per-execution limit (copies, deliveries, log lines) is reached.
    Limit,
    /// The capsule's resource budget is used up; nothing was sent.
    ResourceExhausted,
    /// No route toward the address.
    NoRoute,
    /// A value did not fit the buffer given; `needed` bytes are required.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The capsule's data is not what the protocol expects (e.g. a short header).
    Malformed,
    /// A protocol-defined error code (positive), returned from the entry as is.
    Protocol(u16),
    /// A status code this SDK does not know.
    Unknown(i32),
}

/// Result of host calls and handlers.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The error for a negative status code.
    pub fn from_status(code: i32) -> Error {
        match code {
            status::BAD_POINTER => Error::BadPointer,
            status::BAD_ARGUMENT => Error::BadArgument,
            status::NOT_FOUND => Error::NotFound,
            status::READ_ONLY => Error::ReadOnly,
            status::TOO_LARGE => Error::TooLarge,
            status::QUOTA => Error::Quota,
            status::LIMIT => Error::Limit,
            status::RESOURCE_EXHAUSTED => Error::ResourceExhausted,
            status::NO_ROUTE => Error::NoRoute,
            other => Error::Unknown(other),
        }
    }

    /// The entry's return code for this error: the negative status for host errors,
    /// `-100` for [`Error::BufferTooSmall`], `-101` for [`Error::Malformed`], the positive
    /// code for [`Error::Protocol`].
    pub fn code(&self) -> i32 {
        match *self {
            Error::BadPointer => status::BAD_POINTER,
            Error::BadArgument => status::BAD_ARGUMENT,
            Error::NotFound => status::NOT_FOUND,
            Error::ReadOnly => status::READ_ONLY,
            Error::TooLarge => status::TOO_LARGE,
            Error::Quota => status::QUOTA,
            Error::Limit => status::LIMIT,
            Error::ResourceExhausted => status::RESOURCE_EXHAUSTED,
            Error::NoRoute => status::NO_ROUTE,
            Error::BufferTooSmall { .. } => -100,
            Error::Malformed => -101,
            Error::Protocol(c) => i32::from(c),
            Error::Unknown(c) => c,
        }
    }
}

/// `Ok(value)` for a non-negative status, the matching error otherwise.
#[inline]
pub(crate) fn check(code: i32) -> Result<u32> {
    u32::try_from(code).map_err(|_| Error::from_status(code))
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small ({needed} bytes needed)")
            }
            Error::Malformed => f.write_str("malformed capsule data"),
            Error::Protocol(c) => write!(f, "protocol error {c}"),
            other => f.write_str(status::name(other.code())),
        }
    }
}
