//! Code-distribution messages: how a node fetches a module it lacks from the previous hop.
//!
//! ```text
//! code-request: | prefix 6 | reserved 2 | type 32 | first chunk u32 | bitmap len u16 | bitmap |
//! code-chunk:   | prefix 6 | len u16    | type 32 | total len u32   | offset u32     | bytes  |
//! code-nack:    | prefix 6 | reason u8 | reserved 1 | type 32 |
//! ```
//!
//! Modules travel in chunks of exactly [`CHUNK_LEN`] bytes (the last one shorter), so a chunk
//! is named by its index `offset / CHUNK_LEN`. A request names the chunks it still wants: an
//! empty bitmap means "every chunk from `first chunk` on"; otherwise bit `i` (LSB first within
//! each byte) asks for chunk `first chunk + i`. A module is at most
//! [`MAX_MODULE_LEN`] bytes on the wire.

use core::fmt;

use crate::message::{Kind, PREFIX_LEN, Prefix, check_min, check_out};
use crate::{BASE_VERSION, CapsuleType, WireError, be16, be32};

/// Size of every chunk but the last.
pub const CHUNK_LEN: usize = 1024;
/// Largest module the code protocol can carry (the node's own cap may be lower).
pub const MAX_MODULE_LEN: u32 = 16 * 1024 * 1024;
/// Longest bitmap in one request: 256 bytes = 2048 chunks = 2 MiB of module.
pub const MAX_BITMAP_LEN: usize = 256;

const TYPE: core::ops::Range<usize> = 8..40;

fn read_type(buf: &[u8]) -> CapsuleType {
    let mut t = [0u8; 32];
    t.copy_from_slice(&buf[TYPE]);
    CapsuleType(t)
}

/// `code-request`: "send me these chunks of this module".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRequest<'a> {
    /// The module wanted.
    pub capsule_type: CapsuleType,
    /// Index of the first chunk the bitmap refers to.
    pub first_chunk: u32,
    /// Wanted chunks relative to `first_chunk`; empty = all from `first_chunk` on.
    pub bitmap: &'a [u8],
}

impl<'a> CodeRequest<'a> {
    /// Fixed part length.
    pub const FIXED_LEN: usize = 46;

    /// Parse a code request.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        expect_kind(buf, Kind::CodeRequest)?;
        check_min(buf, Kind::CodeRequest, Self::FIXED_LEN)?;
        let bitmap_len = be16(buf, 44);
        if usize::from(bitmap_len) > MAX_BITMAP_LEN {
            return Err(WireError::BitmapTooLong(bitmap_len));
        }
        let declared = Self::FIXED_LEN + usize::from(bitmap_len);
        if declared != buf.len() {
            return Err(WireError::LengthMismatch {
                kind: Kind::CodeRequest,
                declared,
                actual: buf.len(),
            });
        }
        Ok(CodeRequest {
            capsule_type: read_type(buf),
            first_chunk: be32(buf, 40),
            bitmap: &buf[Self::FIXED_LEN..],
        })
    }

    /// Bytes [`CodeRequest::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        Self::FIXED_LEN + self.bitmap.len()
    }

    /// Serialize; fails if the bitmap is longer than [`MAX_BITMAP_LEN`] or `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if self.bitmap.len() > MAX_BITMAP_LEN {
            return Err(WireError::BitmapTooLong(
                u16::try_from(self.bitmap.len()).unwrap_or(u16::MAX),
            ));
        }
        let len = self.buffer_len();
        check_out(buf, len)?;
        emit_prefix(buf, Kind::CodeRequest);
        buf[6..8].fill(0);
        buf[TYPE].copy_from_slice(&self.capsule_type.0);
        buf[40..44].copy_from_slice(&self.first_chunk.to_be_bytes());
        // The length check above bounds the bitmap to MAX_BITMAP_LEN, which fits in u16.
        buf[44..46].copy_from_slice(&(self.bitmap.len() as u16).to_be_bytes());
        buf[Self::FIXED_LEN..len].copy_from_slice(self.bitmap);
        Ok(len)
    }

    /// The chunk indices this request asks for, given the module has `total_chunks` chunks.
    pub fn wanted(&self, total_chunks: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.first_chunk;
        let all = self.bitmap.is_empty();
        let span = if all {
            total_chunks.saturating_sub(first)
        } else {
            (self.bitmap.len() as u32) * 8
        };
        (0..span).filter_map(move |i| {
            let idx = first.checked_add(i)?;
            if idx >= total_chunks {
                return None;
            }
            let want = all || self.bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0;
            want.then_some(idx)
        })
    }
}

impl fmt::Display for CodeRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "code-request type={} from-chunk={}",
            self.capsule_type.short(),
            self.first_chunk
        )?;
        if self.bitmap.is_empty() {
            f.write_str(" want=all")
        } else {
            let n: u32 = self.bitmap.iter().map(|b| b.count_ones()).sum();
            write!(f, " want={n}")
        }
    }
}

/// `code-chunk`: bytes `offset..offset+len` of a module of `total_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeChunk<'a> {
    /// The module this chunk belongs to.
    pub capsule_type: CapsuleType,
    /// Length of the whole module.
    pub total_len: u32,
    /// Byte offset of this chunk; a multiple of [`CHUNK_LEN`].
    pub offset: u32,
    /// The chunk bytes: [`CHUNK_LEN`] long, or the remainder for the last chunk.
    pub bytes: &'a [u8],
}

impl<'a> CodeChunk<'a> {
    /// Fixed part length.
    pub const FIXED_LEN: usize = 48;

    /// Parse a code chunk, checking that offset, length and total describe a valid chunk.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        expect_kind(buf, Kind::CodeChunk)?;
        check_min(buf, Kind::CodeChunk, Self::FIXED_LEN)?;
        let len = be16(buf, 6);
        let declared = Self::FIXED_LEN + usize::from(len);
        if declared != buf.len() {
            return Err(WireError::LengthMismatch {
                kind: Kind::CodeChunk,
                declared,
                actual: buf.len(),
            });
        }
        let chunk = CodeChunk {
            capsule_type: read_type(buf),
            total_len: be32(buf, 40),
            offset: be32(buf, 44),
            bytes: &buf[Self::FIXED_LEN..],
        };
        chunk.validate()?;
        Ok(chunk)
    }

    fn validate(&self) -> Result<(), WireError> {
        let bad = WireError::BadChunk {
            offset: self.offset,
            len: u16::try_from(self.bytes.len()).unwrap_or(u16::MAX),
            total: self.total_len,
        };
        if self.total_len == 0 || self.total_len > MAX_MODULE_LEN {
            return Err(bad);
        }
        if !(self.offset as usize).is_multiple_of(CHUNK_LEN) || self.offset >= self.total_len {
            return Err(bad);
        }
        let expected = CHUNK_LEN.min((self.total_len - self.offset) as usize);
        if self.bytes.len() != expected {
            return Err(bad);
        }
        Ok(())
    }

    /// Index of this chunk.
    pub fn index(&self) -> u32 {
        self.offset / CHUNK_LEN as u32
    }

    /// Number of chunks in a module of `total_len` bytes.
    pub fn chunk_count(total_len: u32) -> u32 {
        total_len.div_ceil(CHUNK_LEN as u32)
    }

    /// Bytes [`CodeChunk::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        Self::FIXED_LEN + self.bytes.len()
    }

    /// Serialize; fails if the chunk is not a valid chunk of its module or `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.validate()?;
        let len = self.buffer_len();
        check_out(buf, len)?;
        emit_prefix(buf, Kind::CodeChunk);
        // validate() bounds bytes to CHUNK_LEN.
        buf[6..8].copy_from_slice(&(self.bytes.len() as u16).to_be_bytes());
        buf[TYPE].copy_from_slice(&self.capsule_type.0);
        buf[40..44].copy_from_slice(&self.total_len.to_be_bytes());
        buf[44..48].copy_from_slice(&self.offset.to_be_bytes());
        buf[Self::FIXED_LEN..len].copy_from_slice(self.bytes);
        Ok(len)
    }
}

impl fmt::Display for CodeChunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "code-chunk type={} chunk={}/{} bytes={}..{} of {}",
            self.capsule_type.short(),
            self.index(),
            Self::chunk_count(self.total_len),
            self.offset,
            u64::from(self.offset) + self.bytes.len() as u64,
            self.total_len
        )
    }
}

/// Why a node refuses a code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NackReason {
    /// The node does not hold that module.
    NotFound = 1,
    /// The node is rate-limiting this peer; retry later.
    RateLimited = 2,
    /// The module is larger than the node will serve.
    TooLarge = 3,
}

impl NackReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => NackReason::NotFound,
            2 => NackReason::RateLimited,
            3 => NackReason::TooLarge,
            _ => return None,
        })
    }

    /// Name as printed.
    pub fn name(self) -> &'static str {
        match self {
            NackReason::NotFound => "not-found",
            NackReason::RateLimited => "rate-limited",
            NackReason::TooLarge => "too-large",
        }
    }
}

/// `code-nack`: the asked node will not send this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeNack {
    /// The module asked for.
    pub capsule_type: CapsuleType,
    /// Why not.
    pub reason: NackReason,
}

impl CodeNack {
    /// Exact length.
    pub const LEN: usize = 40;

    /// Parse a code nack.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        expect_kind(buf, Kind::CodeNack)?;
        check_min(buf, Kind::CodeNack, Self::LEN)?;
        if buf.len() != Self::LEN {
            return Err(WireError::LengthMismatch {
                kind: Kind::CodeNack,
                declared: Self::LEN,
                actual: buf.len(),
            });
        }
        let reason = NackReason::from_u8(buf[PREFIX_LEN]).ok_or(WireError::InvalidField {
            kind: Kind::CodeNack,
            field: "reason",
        })?;
        Ok(CodeNack {
            capsule_type: read_type(buf),
            reason,
        })
    }

    /// Bytes [`CodeNack::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Serialize.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        check_out(buf, Self::LEN)?;
        emit_prefix(buf, Kind::CodeNack);
        buf[6] = self.reason as u8;
        buf[7] = 0;
        buf[TYPE].copy_from_slice(&self.capsule_type.0);
        Ok(Self::LEN)
    }
}

impl fmt::Display for CodeNack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "code-nack type={} reason={}",
            self.capsule_type.short(),
            self.reason.name()
        )
    }
}

fn expect_kind(buf: &[u8], kind: Kind) -> Result<(), WireError> {
    let p = Prefix::parse(buf)?;
    if p.kind != kind {
        return Err(WireError::InvalidField {
            kind: p.kind,
            field: "kind",
        });
    }
    Ok(())
}

fn emit_prefix(buf: &mut [u8], kind: Kind) {
    Prefix {
        version: BASE_VERSION,
        kind,
        flags: 0,
    }
    .emit(buf);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn request_bitmap_selects_chunks() {
        let bitmap = [0b0000_0101u8, 0b1000_0000];
        let r = CodeRequest {
            capsule_type: CapsuleType([1; 32]),
            first_chunk: 10,
            bitmap: &bitmap,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf).unwrap();
        let p = CodeRequest::parse(&buf).unwrap();
        assert_eq!(p, r);
        assert_eq!(p.wanted(100).collect::<Vec<_>>(), vec![10, 12, 25]);
        assert_eq!(p.wanted(12).collect::<Vec<_>>(), vec![10]);
        let all = CodeRequest {
            bitmap: &[],
            first_chunk: 2,
            ..r
        };
        assert_eq!(all.wanted(5).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn chunk_geometry_is_checked() {
        let data = [9u8; CHUNK_LEN];
        let c = CodeChunk {
            capsule_type: CapsuleType([1; 32]),
            total_len: 2000,
            offset: 0,
            bytes: &data,
        };
        let mut buf = vec![0u8; c.buffer_len()];
        c.emit(&mut buf).unwrap();
        assert_eq!(CodeChunk::parse(&buf).unwrap(), c);
        // Last chunk must be exactly the remainder.
        let last = CodeChunk {
            offset: 1024,
            bytes: &data[..976],
            ..c
        };
        assert!(last.emit(&mut buf).is_ok());
        let wrong = CodeChunk {
            offset: 1024,
            bytes: &data[..975],
            ..c
        };
        assert!(matches!(
            wrong.emit(&mut buf),
            Err(WireError::BadChunk { .. })
        ));
        let unaligned = CodeChunk { offset: 5, ..c };
        assert!(unaligned.emit(&mut buf).is_err());
        assert_eq!(CodeChunk::chunk_count(2000), 2);
    }

    #[test]
    fn nack_round_trip_and_bad_reason() {
        let n = CodeNack {
            capsule_type: CapsuleType([3; 32]),
            reason: NackReason::NotFound,
        };
        let mut buf = [0u8; CodeNack::LEN];
        n.emit(&mut buf).unwrap();
        assert_eq!(CodeNack::parse(&buf).unwrap(), n);
        buf[6] = 99;
        assert!(matches!(
            CodeNack::parse(&buf),
            Err(WireError::InvalidField { .. })
        ));
    }
}
