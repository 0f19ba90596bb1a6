//! The common prefix of every ANTS message and dispatch on its `kind`.
//!
//! ```text
//!  0      2        3      4       5          6
//!  +------+--------+------+-------+----------+----- kind-specific -----
//!  | magic| version| kind | flags | reserved |
//!  +------+--------+------+-------+----------+-------------------------
//! ```

use core::fmt;

use crate::{
    BASE_VERSION, CapsuleRepr, CodeChunk, CodeNack, CodeRequest, MAGIC, TraceReport, VERSION,
    WireError, be16,
};

/// Length of the common prefix.
pub const PREFIX_LEN: usize = 6;

/// Offset of the flags byte.
pub(crate) const FLAGS_AT: usize = 4;

/// Capsule flag bit: the capsule is traced. In a version 2 capsule it says that the trace
/// extension ([`crate::Trace`]) follows the payload; in a version 1 capsule it is carried and
/// means nothing.
pub const FLAG_TRACE: u8 = 0x01;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A capsule: code type + addresses + protocol header + payload.
    Capsule = 1,
    /// Ask the previous hop for (part of) a module.
    CodeRequest = 2,
    /// One chunk of a module.
    CodeChunk = 3,
    /// "I do not have (or will not send) that module."
    CodeNack = 4,
    /// What a node did with a traced capsule, on its way to the trace's origin (version 2).
    TraceReport = 5,
}

impl Kind {
    /// Decode a kind byte.
    pub fn from_u8(v: u8) -> Result<Kind, WireError> {
        Ok(match v {
            1 => Kind::Capsule,
            2 => Kind::CodeRequest,
            3 => Kind::CodeChunk,
            4 => Kind::CodeNack,
            5 => Kind::TraceReport,
            other => return Err(WireError::UnknownKind(other)),
        })
    }

    /// The kind's name as written in docs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Capsule => "capsule",
            Kind::CodeRequest => "code-request",
            Kind::CodeChunk => "code-chunk",
            Kind::CodeNack => "code-nack",
            Kind::TraceReport => "trace-report",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The validated common prefix of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The wire version: 1 ([`BASE_VERSION`]) for what version 1 can express, 2 ([`VERSION`])
    /// for a traced capsule and a trace report.
    pub version: u8,
    /// The message kind.
    pub kind: Kind,
    /// Flag bits ([`FLAG_TRACE`]); unknown bits are carried, not interpreted.
    pub flags: u8,
}

impl Prefix {
    /// Check magic, version and kind. Version 1 has kinds 1–4; version 2 is a traced capsule
    /// (kind 1) or a trace report (kind 5); anything else is refused.
    pub fn parse(buf: &[u8]) -> Result<Prefix, WireError> {
        if buf.len() < PREFIX_LEN {
            return Err(WireError::Truncated {
                kind: "prefix",
                needed: PREFIX_LEN,
                got: buf.len(),
            });
        }
        if buf[0..2] != MAGIC {
            return Err(WireError::BadMagic(be16(buf, 0)));
        }
        let version = buf[2];
        if version != BASE_VERSION && version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let kind = Kind::from_u8(buf[3])?;
        match (version, kind) {
            (BASE_VERSION, Kind::TraceReport) => return Err(WireError::UnknownKind(buf[3])),
            (VERSION, Kind::CodeRequest | Kind::CodeChunk | Kind::CodeNack) => {
                return Err(WireError::UnsupportedVersion(version));
            }
            _ => {}
        }
        Ok(Prefix {
            version,
            kind,
            flags: buf[4],
        })
    }

    /// Write the prefix into `buf[..PREFIX_LEN]`; callers have checked the length.
    pub(crate) fn emit(self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&MAGIC);
        buf[2] = self.version;
        buf[3] = self.kind as u8;
        buf[4] = self.flags;
        buf[5] = 0;
    }
}

/// Any ANTS message, borrowed from the datagram it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A capsule.
    Capsule(CapsuleRepr<'a>),
    /// A code request.
    CodeRequest(CodeRequest<'a>),
    /// A code chunk.
    CodeChunk(CodeChunk<'a>),
    /// A code nack.
    CodeNack(CodeNack),
    /// A trace report.
    TraceReport(TraceReport<'a>),
}

impl<'a> Message<'a> {
    /// Parse any message. Never panics: any input either parses or yields a [`WireError`].
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, WireError> {
        Ok(match Prefix::parse(buf)?.kind {
            Kind::Capsule => Message::Capsule(CapsuleRepr::parse(buf)?),
            Kind::CodeRequest => Message::CodeRequest(CodeRequest::parse(buf)?),
            Kind::CodeChunk => Message::CodeChunk(CodeChunk::parse(buf)?),
            Kind::CodeNack => Message::CodeNack(CodeNack::parse(buf)?),
            Kind::TraceReport => Message::TraceReport(TraceReport::parse(buf)?),
        })
    }

    /// Bytes needed by [`Message::emit`].
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::Capsule(m) => m.buffer_len(),
            Message::CodeRequest(m) => m.buffer_len(),
            Message::CodeChunk(m) => m.buffer_len(),
            Message::CodeNack(m) => m.buffer_len(),
            Message::TraceReport(m) => m.buffer_len(),
        }
    }

    /// Serialize into the front of `buf`, returning the number of bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            Message::Capsule(m) => m.emit(buf),
            Message::CodeRequest(m) => m.emit(buf),
            Message::CodeChunk(m) => m.emit(buf),
            Message::CodeNack(m) => m.emit(buf),
            Message::TraceReport(m) => m.emit(buf),
        }
    }
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Capsule(m) => m.fmt(f),
            Message::CodeRequest(m) => m.fmt(f),
            Message::CodeChunk(m) => m.fmt(f),
            Message::CodeNack(m) => m.fmt(f),
            Message::TraceReport(m) => m.fmt(f),
        }
    }
}

/// Check that `buf` can hold `needed` bytes.
pub(crate) fn check_out(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::BufferTooSmall {
            needed,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Check that a message of `kind` is at least `needed` bytes.
pub(crate) fn check_min(buf: &[u8], kind: Kind, needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            kind: kind.name(),
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}
