//! The capsule message.
//!
//! ```text
//!  0        6          8      40    56    72     88        90         92
//!  | prefix | resource | type | src | dst | prev | hdr len | pay len  | header | payload |
//!  |  6     | u16      | 32   | 16  | 16  | 16   | u16     | u16      | n      | m       |
//! ```
//!
//! The datagram length must equal `92 + hdr len + pay len` exactly (plus 16 for the trace
//! extension of a version 2, traced capsule: [`crate::trace`]). [`CapsulePacket`] is the
//! zero-copy view the forwarding path uses (decrement the resource, set `prev`, send the same
//! buffer on); [`CapsuleRepr`] is the owned-fields form with `parse`/`emit`.

use core::fmt;
use core::ops::Range;

use crate::message::{FLAG_TRACE, Kind, Prefix, check_min, check_out};
use crate::trace::{TRACE_LEN, Trace};
use crate::{Address, BASE_VERSION, CapsuleType, VERSION, WireError, be16};

mod field {
    use core::ops::Range;
    pub(super) const RESOURCE: Range<usize> = 6..8;
    pub(super) const TYPE: Range<usize> = 8..40;
    pub(super) const SRC: Range<usize> = 40..56;
    pub(super) const DST: Range<usize> = 56..72;
    pub(super) const PREV: Range<usize> = 72..88;
    pub(super) const HEADER_LEN: Range<usize> = 88..90;
    pub(super) const PAYLOAD_LEN: Range<usize> = 90..92;
}

/// Length of the fixed part of a capsule.
pub const FIXED_LEN: usize = 92;

/// A checked, zero-copy view of a capsule in a byte buffer.
#[derive(Debug, Clone)]
pub struct CapsulePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CapsulePacket<T> {
    /// Validate prefix, kind and lengths; after this no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        let prefix = Prefix::parse(buf)?;
        if prefix.kind != Kind::Capsule {
            return Err(WireError::InvalidField {
                kind: prefix.kind,
                field: "kind (expected capsule)",
            });
        }
        check_min(buf, Kind::Capsule, FIXED_LEN)?;
        let traced = prefix.version == VERSION;
        if traced && prefix.flags & FLAG_TRACE == 0 {
            return Err(WireError::InvalidField {
                kind: Kind::Capsule,
                field: "flags (a version 2 capsule is traced)",
            });
        }
        let declared = FIXED_LEN
            + usize::from(be16(buf, field::HEADER_LEN.start))
            + usize::from(be16(buf, field::PAYLOAD_LEN.start))
            + if traced { TRACE_LEN } else { 0 };
        if declared != buf.len() {
            return Err(WireError::LengthMismatch {
                kind: Kind::Capsule,
                declared,
                actual: buf.len(),
            });
        }
        Ok(CapsulePacket { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn header_range(&self) -> Range<usize> {
        FIXED_LEN..FIXED_LEN + usize::from(be16(self.b(), field::HEADER_LEN.start))
    }

    fn payload_range(&self) -> Range<usize> {
        let start = self.header_range().end;
        start..self.b().len() - self.trace_len()
    }

    fn trace_len(&self) -> usize {
        if self.b()[2] == VERSION { TRACE_LEN } else { 0 }
    }

    /// The trace extension of a traced (version 2) capsule.
    pub fn trace(&self) -> Option<Trace> {
        let b = self.b();
        (self.trace_len() != 0).then(|| Trace::parse(&b[b.len() - TRACE_LEN..]))
    }

    /// Flag bits.
    pub fn flags(&self) -> u8 {
        self.b()[crate::message::FLAGS_AT]
    }

    /// Remaining network-wide resource budget.
    pub fn resource(&self) -> u16 {
        be16(self.b(), field::RESOURCE.start)
    }

    /// The capsule type (hash of its code).
    pub fn capsule_type(&self) -> CapsuleType {
        CapsuleType(array(&self.b()[field::TYPE]))
    }

    /// The original sender.
    pub fn src(&self) -> Address {
        Address(array(&self.b()[field::SRC]))
    }

    /// The destination.
    pub fn dst(&self) -> Address {
        Address(array(&self.b()[field::DST]))
    }

    /// The previous active hop (`::` when injected by a local app).
    pub fn prev(&self) -> Address {
        Address(array(&self.b()[field::PREV]))
    }

    /// The protocol header.
    pub fn header(&self) -> &[u8] {
        &self.b()[self.header_range()]
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.payload_range()]
    }

    /// All fields as a [`CapsuleRepr`] borrowing this buffer.
    pub fn repr(&self) -> CapsuleRepr<'_> {
        CapsuleRepr {
            flags: self.flags(),
            resource: self.resource(),
            capsule_type: self.capsule_type(),
            src: self.src(),
            dst: self.dst(),
            prev: self.prev(),
            header: self.header(),
            payload: self.payload(),
            trace: self.trace(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CapsulePacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set the resource budget.
    pub fn set_resource(&mut self, v: u16) {
        self.bm()[field::RESOURCE].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the previous hop (the node does this on send).
    pub fn set_prev(&mut self, a: Address) {
        self.bm()[field::PREV].copy_from_slice(&a.0);
    }

    /// Set the destination.
    pub fn set_dst(&mut self, a: Address) {
        self.bm()[field::DST].copy_from_slice(&a.0);
    }

    /// The protocol header, mutable in place (its length is fixed by the buffer).
    pub fn header_mut(&mut self) -> &mut [u8] {
        let r = self.header_range();
        &mut self.bm()[r]
    }

    /// The payload, mutable in place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.bm()[r]
    }
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// A capsule's fields, borrowing header and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsuleRepr<'a> {
    /// Flag bits ([`FLAG_TRACE`]).
    pub flags: u8,
    /// Remaining network-wide resource budget; 0 means the capsule must not be sent again.
    pub resource: u16,
    /// SHA-256 of the forwarding routine.
    pub capsule_type: CapsuleType,
    /// Original sender; immutable to capsule code.
    pub src: Address,
    /// Destination.
    pub dst: Address,
    /// Previous active hop; set by the node on send.
    pub prev: Address,
    /// Protocol-owned header bytes.
    pub header: &'a [u8],
    /// Payload bytes.
    pub payload: &'a [u8],
    /// The trace extension: `Some` makes the capsule a traced, version 2 capsule (with
    /// [`FLAG_TRACE`] set on emit).
    pub trace: Option<Trace>,
}

impl<'a> CapsuleRepr<'a> {
    /// Parse a capsule message.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let p = CapsulePacket::new_checked(buf)?;
        Ok(CapsuleRepr {
            flags: p.flags(),
            resource: p.resource(),
            capsule_type: p.capsule_type(),
            src: p.src(),
            dst: p.dst(),
            prev: p.prev(),
            header: &buf[p.header_range()],
            payload: &buf[p.payload_range()],
            trace: p.trace(),
        })
    }

    /// Bytes [`CapsuleRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        FIXED_LEN
            + self.header.len()
            + self.payload.len()
            + if self.trace.is_some() { TRACE_LEN } else { 0 }
    }

    /// Serialize into the front of `buf`; returns the length written.
    ///
    /// Fails if `buf` is too small or header/payload exceed `u16::MAX` bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let hlen = u16::try_from(self.header.len()).map_err(|_| WireError::InvalidField {
            kind: Kind::Capsule,
            field: "header length",
        })?;
        let plen = u16::try_from(self.payload.len()).map_err(|_| WireError::InvalidField {
            kind: Kind::Capsule,
            field: "payload length",
        })?;
        let len = self.buffer_len();
        check_out(buf, len)?;
        let (version, flags) = match self.trace {
            Some(_) => (VERSION, self.flags | FLAG_TRACE),
            None => (BASE_VERSION, self.flags),
        };
        Prefix {
            version,
            kind: Kind::Capsule,
            flags,
        }
        .emit(buf);
        buf[field::RESOURCE].copy_from_slice(&self.resource.to_be_bytes());
        buf[field::TYPE].copy_from_slice(&self.capsule_type.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::PREV].copy_from_slice(&self.prev.0);
        buf[field::HEADER_LEN].copy_from_slice(&hlen.to_be_bytes());
        buf[field::PAYLOAD_LEN].copy_from_slice(&plen.to_be_bytes());
        let h_end = FIXED_LEN + self.header.len();
        buf[FIXED_LEN..h_end].copy_from_slice(self.header);
        let p_end = h_end + self.payload.len();
        buf[h_end..p_end].copy_from_slice(self.payload);
        if let Some(t) = self.trace {
            t.emit(&mut buf[p_end..len]);
        }
        Ok(len)
    }
}

impl fmt::Display for CapsuleRepr<'_> {
    /// tcpdump-like one-liner: `capsule type=… src=… dst=… prev=… rl=… hdr=…B payload=…B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capsule type={} src={} dst={} prev={} rl={} hdr={}B payload={}B",
            self.capsule_type.short(),
            self.src,
            self.dst,
            self.prev,
            self.resource,
            self.header.len(),
            self.payload.len()
        )?;
        if let Some(t) = self.trace {
            write!(f, " [trace {:016x} clock {}]", t.id, t.clock)?;
        } else if self.flags & FLAG_TRACE != 0 {
            f.write_str(" [trace]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::ToString, vec};

    fn sample() -> CapsuleRepr<'static> {
        CapsuleRepr {
            flags: FLAG_TRACE,
            resource: 64,
            capsule_type: CapsuleType([7; 32]),
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.5".parse().unwrap(),
            prev: Address::UNSPECIFIED,
            header: b"hdr",
            payload: b"hello",
            trace: None,
        }
    }

    #[test]
    fn traced_capsules_are_version_2_with_the_extension() {
        let c = CapsuleRepr {
            flags: 0,
            trace: Some(Trace { id: 9, clock: 4 }),
            ..sample()
        };
        let mut buf = vec![0u8; c.buffer_len()];
        assert_eq!(c.emit(&mut buf).unwrap(), 100 + TRACE_LEN);
        assert_eq!((buf[2], buf[4]), (VERSION, FLAG_TRACE));
        let p = CapsuleRepr::parse(&buf).unwrap();
        assert_eq!(p.trace, c.trace);
        assert_eq!((p.header, p.payload), (&b"hdr"[..], &b"hello"[..]));
        assert!(p.to_string().ends_with("[trace 0000000000000009 clock 4]"));
        // Version 2 without the flag, or without the extension's bytes, is refused.
        buf[4] = 0;
        assert!(matches!(
            CapsuleRepr::parse(&buf),
            Err(WireError::InvalidField { .. })
        ));
        buf[4] = FLAG_TRACE;
        assert!(matches!(
            CapsuleRepr::parse(&buf[..buf.len() - 1]),
            Err(WireError::LengthMismatch { .. })
        ));
        // Untraced: version 1, and the old flag bit is still carried.
        let mut v1 = vec![0u8; sample().buffer_len()];
        sample().emit(&mut v1).unwrap();
        assert_eq!((v1[2], v1[4]), (BASE_VERSION, FLAG_TRACE));
        assert_eq!(CapsuleRepr::parse(&v1).unwrap().trace, None);
    }

    #[test]
    fn emit_parse_round_trip_and_display() {
        let c = sample();
        let mut buf = vec![0u8; c.buffer_len()];
        assert_eq!(c.emit(&mut buf).unwrap(), 100);
        assert_eq!(CapsuleRepr::parse(&buf).unwrap(), c);
        let s = format!("{c}");
        assert!(s.contains("src=198.18.0.1 dst=198.18.0.5"), "{s}");
        assert!(s.ends_with("[trace]"), "{s}");
    }

    #[test]
    fn view_mutates_in_place() {
        let c = sample();
        let mut buf = vec![0u8; c.buffer_len()];
        c.emit(&mut buf).unwrap();
        let mut p = CapsulePacket::new_checked(&mut buf[..]).unwrap();
        p.set_resource(63);
        p.set_prev("198.18.0.2".parse().unwrap());
        p.payload_mut()[0] = b'J';
        let r = CapsuleRepr::parse(&buf).unwrap();
        assert_eq!(r.resource, 63);
        assert_eq!(r.prev.to_string(), "198.18.0.2");
        assert_eq!(r.payload, b"Jello");
    }

    #[test]
    fn length_must_match_exactly() {
        let c = sample();
        let mut buf = vec![0u8; c.buffer_len() + 1];
        c.emit(&mut buf).unwrap();
        assert!(matches!(
            CapsuleRepr::parse(&buf),
            Err(WireError::LengthMismatch {
                declared: 100,
                actual: 101,
                ..
            })
        ));
        assert!(matches!(
            CapsuleRepr::parse(&buf[..50]),
            Err(WireError::Truncated { .. })
        ));
        let mut small = [0u8; 10];
        assert!(matches!(
            c.emit(&mut small),
            Err(WireError::BufferTooSmall { .. })
        ));
    }
}
