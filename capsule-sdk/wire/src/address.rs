//! Active addresses and capsule types.
//!
//! An [`Address`] is 16 bytes on the wire, IPv6-sized; IPv4 addresses travel as IPv4-mapped
//! (`::ffff:a.b.c.d`) and print as dotted quads. A [`CapsuleType`] is the SHA-256 of the wasm
//! module that forwards the capsule; it prints as 64 lowercase hex digits, the same string
//! `sha256sum` prints for the module file.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// An active-network address (a node or an app endpoint), 16 bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 16]);

impl Address {
    /// Length on the wire.
    pub const LEN: usize = 16;
    /// The all-zero address (`::`), used as "none", e.g. `prev` of a capsule fresh from an app.
    pub const UNSPECIFIED: Address = Address([0; 16]);

    /// An IPv4 active address, stored IPv4-mapped.
    pub const fn from_ipv4(a: Ipv4Addr) -> Self {
        let o = a.octets();
        Address([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
        ])
    }

    /// The IPv4 address if this is IPv4-mapped.
    pub fn to_ipv4(&self) -> Option<Ipv4Addr> {
        Ipv6Addr::from(self.0).to_ipv4_mapped()
    }

    /// The address as IPv6 (IPv4 stays mapped).
    pub fn to_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.0)
    }

    /// `true` for `::`.
    pub fn is_unspecified(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The raw bytes.
    pub const fn octets(&self) -> [u8; 16] {
        self.0
    }
}

impl From<Ipv4Addr> for Address {
    fn from(a: Ipv4Addr) -> Self {
        Address::from_ipv4(a)
    }
}

impl From<Ipv6Addr> for Address {
    fn from(a: Ipv6Addr) -> Self {
        Address(a.octets())
    }
}

impl From<core::net::IpAddr> for Address {
    fn from(a: core::net::IpAddr) -> Self {
        match a {
            core::net::IpAddr::V4(v4) => v4.into(),
            core::net::IpAddr::V6(v6) => v6.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_ipv4() {
            Some(v4) => fmt::Display::fmt(&v4, f),
            None => fmt::Display::fmt(&self.to_ipv6(), f),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// Error parsing an [`Address`] from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an IPv4 or IPv6 address")]
pub struct AddressParseError;

impl FromStr for Address {
    type Err = AddressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(v4.into());
        }
        s.parse::<Ipv6Addr>()
            .map(Address::from)
            .map_err(|_| AddressParseError)
    }
}

/// The type of a capsule: SHA-256 of its forwarding routine's wasm module.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CapsuleType(pub [u8; 32]);

impl CapsuleType {
    /// Length on the wire.
    pub const LEN: usize = 32;

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for logs: the first 6 bytes in hex (12 digits), like a git short hash.
    pub fn short(&self) -> ShortType<'_> {
        ShortType(self)
    }
}

/// Display helper returned by [`CapsuleType::short`].
#[derive(Debug)]
pub struct ShortType<'a>(&'a CapsuleType);

impl fmt::Display for ShortType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CapsuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CapsuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapsuleType({})", self.short())
    }
}

/// Error parsing a [`CapsuleType`] from hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a capsule type is 64 hex digits (the SHA-256 of the wasm module)")]
pub struct TypeParseError;

impl FromStr for CapsuleType {
    type Err = TypeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(TypeParseError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(TypeParseError)?;
            let lo = hex_val(pair[1]).ok_or(TypeParseError)?;
            out[i] = hi << 4 | lo;
        }
        Ok(CapsuleType(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn ipv4_is_mapped_and_prints_dotted() {
        let a: Address = "198.18.0.1".parse().unwrap();
        assert_eq!(a.0[10..12], [0xff, 0xff]);
        assert_eq!(a.to_string(), "198.18.0.1");
        let b: Address = "2001:db8::1".parse().unwrap();
        assert_eq!(b.to_string(), "2001:db8::1");
        assert!("nonsense".parse::<Address>().is_err());
    }

    #[test]
    fn type_hex_round_trip() {
        let t = CapsuleType([0xab; 32]);
        let s = t.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<CapsuleType>().unwrap(), t);
        assert_eq!(t.short().to_string(), "abababababab");
        assert!("ab".parse::<CapsuleType>().is_err());
        assert!("zz".repeat(32).parse::<CapsuleType>().is_err());
    }
}
