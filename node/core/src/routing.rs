//! Routing over active addresses: [`Prefix`] and a longest-prefix-match [`RoutingTable`].
//!
//! Active addresses are 16 bytes; an IPv4 prefix `a.b.c.d/n` is stored as the IPv4-mapped
//! prefix `::ffff:a.b.c.d/(96 + n)`, so one table serves both families. Lookups walk the
//! prefix lengths present, longest first, each a hash probe: O(distinct lengths), no
//! allocation.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use ants_wire::Address;

/// An address prefix over active addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: Address,
    len: u8,
}

/// Why a prefix string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    Address(String),
    /// The length is not a number within the family's range.
    #[error("prefix length `{0}` is out of range (0-32 for IPv4, 0-128 for IPv6)")]
    Length(String),
}

fn mask(addr: Address, len: u8) -> Address {
    let bits = u128::from_be_bytes(addr.0);
    let keep = u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0);
    Address((bits & keep).to_be_bytes())
}

impl Prefix {
    /// A prefix of `len` bits (over the 128-bit address); host bits are cleared.
    pub fn new(addr: Address, len: u8) -> Prefix {
        let len = len.min(128);
        Prefix {
            addr: mask(addr, len),
            len,
        }
    }

    /// The single address `addr` (/128).
    pub fn host(addr: Address) -> Prefix {
        Prefix { addr, len: 128 }
    }

    /// Length in bits over the 16-byte address.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// `true` for the default route (`::/0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The network address.
    pub fn addr(&self) -> Address {
        self.addr
    }

    /// Whether `a` is inside this prefix.
    pub fn contains(&self, a: &Address) -> bool {
        mask(*a, self.len) == self.addr
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    /// `198.18.0.0/24`, `2001:db8::/32`, or a bare address (a host route).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: Address = a.parse().map_err(|_| PrefixError::Address(a.to_string()))?;
        let v4 = addr.to_ipv4().is_some() && a.contains('.');
        let max = if v4 { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| PrefixError::Length(l.to_string()))?,
        };
        Ok(Prefix::new(addr, if v4 { len + 96 } else { len }))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr.to_ipv4() {
            Some(v4) if self.len >= 96 => write!(f, "{v4}/{}", self.len - 96),
            _ => write!(f, "{}/{}", self.addr.to_ipv6(), self.len),
        }
    }
}

/// Longest-prefix-match table from prefixes to a value (e.g. the next-hop address).
///
/// One hash table per prefix length present, longest first. The tables hash with foldhash:
/// their keys are the operator's routes, so no sender can choose colliding ones, and a
/// lookup (a capsule's `route_for_node`, a router's every packet) costs a few nanoseconds
/// per length instead of SipHash's tens.
#[derive(Debug, Clone)]
pub struct RoutingTable<V> {
    by_len: Vec<(u8, Routes<V>)>,
}

type Routes<V> = HashMap<Address, V, foldhash::fast::RandomState>;

impl<V> Default for RoutingTable<V> {
    fn default() -> Self {
        RoutingTable { by_len: Vec::new() }
    }
}

impl<V> RoutingTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace the route for `prefix`; returns the old value.
    pub fn insert(&mut self, prefix: Prefix, value: V) -> Option<V> {
        // Longest first: this length's table, or where it goes.
        let at = match self.by_len.binary_search_by(|(l, _)| prefix.len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.by_len.insert(i, (prefix.len, Routes::default()));
                i
            }
        };
        self.by_len[at].1.insert(prefix.addr, value)
    }

    /// Remove the route for exactly `prefix`.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<V> {
        let i = self
            .by_len
            .binary_search_by(|(l, _)| prefix.len.cmp(l))
            .ok()?;
        let v = self.by_len[i].1.remove(&prefix.addr);
        if self.by_len[i].1.is_empty() {
            self.by_len.remove(i);
        }
        v
    }

    /// The value of the longest prefix containing `a`.
    pub fn lookup(&self, a: &Address) -> Option<&V> {
        self.by_len
            .iter()
            .find_map(|(len, m)| m.get(&mask(*a, *len)))
    }

    /// Remove every route.
    pub fn clear(&mut self) {
        self.by_len.clear();
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }

    /// `true` if there are no routes.
    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_print_and_contain() {
        let p: Prefix = "198.18.0.77/24".parse().unwrap();
        assert_eq!(p.to_string(), "198.18.0.0/24");
        assert!(p.contains(&a("198.18.0.200")));
        assert!(!p.contains(&a("198.18.1.1")));
        let h: Prefix = "198.18.0.5".parse().unwrap();
        assert_eq!(h.to_string(), "198.18.0.5/32");
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&a("2001:db8::1")));
        assert!("198.18.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense/8".parse::<Prefix>().is_err());
        assert!("::/0".parse::<Prefix>().unwrap().contains(&a("198.18.0.1")));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RoutingTable::new();
        t.insert("0.0.0.0/0".parse().unwrap(), 0);
        t.insert("198.18.0.0/16".parse().unwrap(), 16);
        t.insert("198.18.3.0/24".parse().unwrap(), 24);
        t.insert("198.18.3.7".parse().unwrap(), 32);
        assert_eq!(t.lookup(&a("198.18.3.7")), Some(&32));
        assert_eq!(t.lookup(&a("198.18.3.8")), Some(&24));
        assert_eq!(t.lookup(&a("198.18.9.9")), Some(&16));
        assert_eq!(t.lookup(&a("10.0.0.1")), Some(&0));
        assert_eq!(t.len(), 4);
        t.remove(&"198.18.3.0/24".parse().unwrap());
        assert_eq!(t.lookup(&a("198.18.3.8")), Some(&16));
        // An IPv6 address outside ::ffff:0:0/96 is not matched by IPv4 /0.
        assert_eq!(t.lookup(&a("2001:db8::1")), None);
    }
}
