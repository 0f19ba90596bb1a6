//! IPv4 address facts the packet path needs: prefix masks, martian ranges, the per-interface
//! numbers precomputed once ([`IfaceInfo`]), and the classification of a packet's source and
//! destination against our own addresses ([`AddrPlan`]).
//!
//! Addresses are `u32` (host order) on the packet path: comparisons are single instructions.

use crate::config::Interface;

/// The netmask of a prefix length (`0` → `0.0.0.0`, `32` → `255.255.255.255`).
pub(crate) fn mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// Why `a` can never be a unicast host's address, or `None` if it can be.
/// RFC 1812 §5.3.7 and RFC 3927 §7: such addresses are neither forwarded nor answered.
pub(crate) fn not_unicast_host(a: u32) -> Option<&'static str> {
    match a >> 24 {
        0 => Some("0.0.0.0/8 means \"this network\""),
        127 => Some("127.0.0.0/8 is loopback"),
        224..=239 => Some("it is multicast"),
        240..=255 => Some("240.0.0.0/4 is reserved and 255.255.255.255 is broadcast"),
        169 if (a >> 16) & 0xff == 254 => Some("169.254.0.0/16 is link-local"),
        _ => None,
    }
}

/// One interface's numbers, precomputed.
#[derive(Debug, Clone)]
pub(crate) struct IfaceInfo {
    pub(crate) addr: u32,
    pub(crate) network: u32,
    pub(crate) mask: u32,
    pub(crate) prefix_len: u8,
    /// The directed broadcast address; `/31` and `/32` links have none (RFC 3021).
    pub(crate) broadcast: Option<u32>,
    pub(crate) mac: [u8; 6],
    pub(crate) mtu: u16,
}

impl IfaceInfo {
    pub(crate) fn new(i: &Interface) -> Self {
        let a = u32::from(i.addr);
        let m = mask(i.prefix_len);
        IfaceInfo {
            addr: a,
            network: a & m,
            mask: m,
            prefix_len: i.prefix_len,
            broadcast: (i.prefix_len <= 30).then_some(a | !m),
            mac: i.mac,
            mtu: i.mtu,
        }
    }

    /// `ip` is inside this interface's subnet.
    #[inline]
    pub(crate) fn contains(&self, ip: u32) -> bool {
        ip & self.mask == self.network
    }
}

/// What an address is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrKind {
    /// One of our interface addresses.
    Own,
    /// Broadcast (limited or directed at one of our subnets) or multicast.
    Broadcast,
    /// Never a host: 0/8, 127/8, 169.254/16, 240/4.
    Martian,
    /// Someone else's unicast address.
    Unicast,
}

/// Our own and directed-broadcast addresses, scanned linearly: a router has a handful of
/// interfaces, and a scan of a few `u32`s beats hashing.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrPlan {
    special: Vec<(u32, AddrKind)>,
}

impl AddrPlan {
    pub(crate) fn new(ifaces: &[IfaceInfo]) -> Self {
        let mut special = Vec::with_capacity(ifaces.len() * 2);
        for i in ifaces {
            special.push((i.addr, AddrKind::Own));
            if let Some(b) = i.broadcast {
                special.push((b, AddrKind::Broadcast));
            }
        }
        AddrPlan { special }
    }

    /// Classify `a`.
    #[inline]
    pub(crate) fn classify(&self, a: u32) -> AddrKind {
        match a >> 24 {
            224..=239 => return AddrKind::Broadcast,
            255 if a == u32::MAX => return AddrKind::Broadcast,
            0 | 127 | 240..=255 => return AddrKind::Martian,
            169 if (a >> 16) & 0xff == 254 => return AddrKind::Martian,
            _ => {}
        }
        for &(s, kind) in &self.special {
            if s == a {
                return kind;
            }
        }
        AddrKind::Unicast
    }

    /// Prefixes covering exactly the addresses [`classify`](Self::classify) does not call
    /// [`AddrKind::Unicast`]: the fixed martian, multicast and broadcast ranges, then our
    /// own and directed-broadcast addresses as /32s.
    pub(crate) fn non_unicast_prefixes(&self) -> Vec<(u32, u8)> {
        let mut out = vec![
            (0x0000_0000, 8),  // 0.0.0.0/8
            (0x7f00_0000, 8),  // 127.0.0.0/8
            (0xa9fe_0000, 16), // 169.254.0.0/16
            (0xe000_0000, 4),  // 224.0.0.0/4
            (0xf000_0000, 4),  // 240.0.0.0/4, 255.255.255.255 included
        ];
        out.extend(self.special.iter().map(|&(a, _)| (a, 32)));
        out
    }

    /// `a` is one of our interface addresses.
    #[inline]
    pub(crate) fn is_own(&self, a: u32) -> bool {
        self.special
            .iter()
            .any(|&(s, k)| s == a && k == AddrKind::Own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn masks() {
        assert_eq!(mask(0), 0);
        assert_eq!(mask(8), 0xff00_0000);
        assert_eq!(mask(31), 0xffff_fffe);
        assert_eq!(mask(32), u32::MAX);
        assert_eq!(mask(200), u32::MAX);
    }

    /// 198.18.0.1/24 and 198.18.9.0/31 (no broadcast address).
    fn plan() -> AddrPlan {
        let iface = |a: &str, len| {
            IfaceInfo::new(&Interface {
                name: "x".into(),
                mac: [2, 0, 0, 0, 0, 1],
                addr: a.parse().unwrap(),
                prefix_len: len,
                mtu: 1500,
            })
        };
        AddrPlan::new(&[iface("198.18.0.1", 24), iface("198.18.9.0", 31)])
    }

    #[test]
    fn classification() {
        let plan = plan();
        assert_eq!(plan.classify(ip("198.18.0.1")), AddrKind::Own);
        assert_eq!(plan.classify(ip("198.18.9.0")), AddrKind::Own);
        assert_eq!(plan.classify(ip("198.18.0.255")), AddrKind::Broadcast);
        // A /31 has no broadcast address: the peer is a plain host.
        assert_eq!(plan.classify(ip("198.18.9.1")), AddrKind::Unicast);
        assert_eq!(plan.classify(ip("255.255.255.255")), AddrKind::Broadcast);
        assert_eq!(plan.classify(ip("224.0.0.1")), AddrKind::Broadcast);
        assert_eq!(plan.classify(ip("239.255.255.255")), AddrKind::Broadcast);
        for m in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "240.0.0.1",
            "255.255.255.254",
            "169.254.1.1",
        ] {
            assert_eq!(plan.classify(ip(m)), AddrKind::Martian, "{m}");
            assert!(not_unicast_host(ip(m)).is_some(), "{m}");
        }
        assert_eq!(plan.classify(ip("198.19.1.1")), AddrKind::Unicast);
        assert_eq!(plan.classify(ip("169.253.1.1")), AddrKind::Unicast);
        assert!(not_unicast_host(ip("198.19.1.1")).is_none());
        assert!(plan.is_own(ip("198.18.0.1")));
        assert!(!plan.is_own(ip("198.18.0.255")));
    }

    proptest::proptest! {
        /// The prefixes a fast path is given cover exactly the non-unicast addresses.
        #[test]
        fn non_unicast_prefixes_match_classify(a in proptest::prelude::any::<u32>(), pick in 0usize..6) {
            let plan = plan();
            // Half the time, an address near the interesting ones.
            let probe = match pick {
                0 => ip("198.18.0.1"),
                1 => ip("198.18.0.255"),
                2 => (a & 0xff) | ip("198.18.0.0"),
                3 => (a & 0x00ff_ffff) | 0xa900_0000,
                _ => a,
            };
            let covered = plan
                .non_unicast_prefixes()
                .iter()
                .any(|&(n, len)| probe & mask(len) == n);
            proptest::prop_assert_eq!(covered, plan.classify(probe) != AddrKind::Unicast);
        }
    }
}
