//! The one definition of what crosses a boundary in ANTS-rs, shared by the node and the
//! capsule SDK (`no_std`, no allocation):
//!
//! - [`address`]: active addresses ([`Address`], IPv6-sized) and capsule types ([`CapsuleType`],
//!   the SHA-256 of a wasm module).
//! - [`capsule`]: the capsule message — a zero-copy checked view ([`CapsulePacket`]) for the
//!   forwarding path and a [`CapsuleRepr`] with `parse`/`emit` for everything else.
//! - [`code`]: the code-distribution messages (`code-request`, `code-chunk`, `code-nack`).
//! - [`trace`]: version 2 — the trace extension a traced capsule carries ([`Trace`]) and the
//!   trace report ([`TraceReport`]) nodes send toward the trace's origin.
//! - [`message`]: dispatch on the common prefix ([`Message::parse`]).
//! - [`abi`]: host ABI v2 — import names and signatures, status codes, field ids.
//!
//! Every parser does its length checks once in a checked constructor; after that no accessor
//! panics, and any byte string either parses or yields a typed [`WireError`].
//! The byte layout is documented in `docs/wire-format.md`.
#![no_std]
#![forbid(unsafe_code)]

pub mod abi;
pub mod address;
pub mod capsule;
pub mod code;
mod error;
pub mod message;
pub mod trace;

pub use address::{Address, CapsuleType};
pub use capsule::{CapsulePacket, CapsuleRepr};
pub use code::{CodeChunk, CodeNack, CodeRequest, NackReason};
pub use error::WireError;
pub use message::{Kind, Message, Prefix};
pub use trace::{Trace, TraceEvent, TraceEventKind, TraceReport};

/// First two bytes of every ANTS message.
pub const MAGIC: [u8; 2] = [0xA7, 0x5C];
/// The newest wire format version this crate speaks (2: version 1 plus traced capsules and
/// trace reports). It parses both versions and emits version 1 for every message version 1
/// can express, so untraced traffic is byte for byte version 1.
pub const VERSION: u8 = 2;
/// The version of every message that is not a traced capsule or a trace report.
pub const BASE_VERSION: u8 = 1;
/// Default UDP port for capsules and code transfer.
pub const DEFAULT_PORT: u16 = 3322;

/// Read a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read a big-endian `u64` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Read a big-endian `u32` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
