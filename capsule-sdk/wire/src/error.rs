use crate::message::Kind;

/// Why a byte string is not a valid ANTS message. Every parse failure is one of these; the
/// node counts them per variant, so they are kept small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed part of its kind (or of the common prefix).
    #[error("truncated: {kind} needs at least {needed} bytes, got {got}")]
    Truncated {
        /// What was being parsed (`"prefix"` or the kind name).
        kind: &'static str,
        /// Minimum length required.
        needed: usize,
        /// Length received.
        got: usize,
    },
    /// The first two bytes are not [`crate::MAGIC`].
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A version this node does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// A kind byte outside the known kinds.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// The lengths declared in the header disagree with the datagram length.
    #[error("{kind}: declared length {declared} but datagram has {actual} bytes")]
    LengthMismatch {
        /// The message kind.
        kind: Kind,
        /// Length implied by the header fields.
        declared: usize,
        /// Length of the buffer.
        actual: usize,
    },
    /// A code chunk whose offset/length/total do not describe a valid chunk.
    #[error("code-chunk: offset {offset} + len {len} invalid for total {total}")]
    BadChunk {
        /// Chunk offset.
        offset: u32,
        /// Chunk length.
        len: u16,
        /// Declared module length.
        total: u32,
    },
    /// A code request whose bitmap is longer than [`crate::code::MAX_BITMAP_LEN`].
    #[error("code-request: bitmap of {0} bytes exceeds the maximum")]
    BitmapTooLong(u16),
    /// A field value that is reserved or out of range.
    #[error("{kind}: invalid field `{field}`")]
    InvalidField {
        /// The message kind.
        kind: Kind,
        /// The field name.
        field: &'static str,
    },
    /// The output buffer given to `emit` is too small.
    #[error("buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
}
