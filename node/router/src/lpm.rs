//! Longest-prefix match.
//!
//! One sorted `Vec` of networks per prefix length that has any route, the lengths scanned from
//! longest to shortest; within a length, a binary search. A typical router (a few connected
//! /24s and a default) answers in two or three probes of a few cache lines, with no hashing
//! and no allocation. The table is built once by [`Router::new`](crate::Router::new) and never
//! changes, so there is no cache to keep coherent.

/// Where a route sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextHop {
    /// Egress interface id.
    pub(crate) iface: usize,
    /// The gateway; `None` means the destination itself is on the link.
    pub(crate) via: Option<u32>,
}

impl NextHop {
    /// The neighbour to resolve for a packet to `dst`.
    #[inline]
    pub(crate) fn neighbour(&self, dst: u32) -> u32 {
        self.via.unwrap_or(dst)
    }
}

#[derive(Debug, Clone)]
struct Level {
    mask: u32,
    /// Sorted by network, unique.
    routes: Vec<(u32, NextHop)>,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTable {
    /// Sorted by prefix length, longest first; no empty levels.
    levels: Vec<(u8, Level)>,
}

impl RouteTable {
    /// Add (or replace) the route for `network/len`. `network` must have no host bits.
    pub(crate) fn insert(&mut self, network: u32, len: u8, nh: NextHop) {
        let len = len.min(32);
        let mask = crate::addr::mask(len);
        let at = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    (
                        len,
                        Level {
                            mask,
                            routes: Vec::new(),
                        },
                    ),
                );
                i
            }
        };
        let routes = &mut self.levels[at].1.routes;
        let network = network & mask;
        match routes.binary_search_by_key(&network, |(n, _)| *n) {
            Ok(i) => routes[i].1 = nh,
            Err(i) => routes.insert(i, (network, nh)),
        }
    }

    /// The most specific route for `dst`.
    #[inline]
    /// Every route as `(network, prefix length, next hop)`, longest prefixes first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, u8, NextHop)> + '_ {
        self.levels
            .iter()
            .flat_map(|(len, level)| level.routes.iter().map(move |&(n, nh)| (n, *len, nh)))
    }

    pub(crate) fn lookup(&self, dst: u32) -> Option<NextHop> {
        for (_, level) in &self.levels {
            let key = dst & level.mask;
            if let Ok(i) = level.routes.binary_search_by_key(&key, |(n, _)| *n) {
                return level.routes.get(i).map(|(_, nh)| *nh);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::mask;
    use proptest::prelude::*;

    fn nh(iface: usize) -> NextHop {
        NextHop { iface, via: None }
    }

    #[test]
    fn longest_prefix_wins_and_default_catches_the_rest() {
        let mut t = RouteTable::default();
        t.insert(0, 0, nh(9));
        t.insert(0xc612_0000, 16, nh(1)); // 198.18.0.0/16
        t.insert(0xc612_0500, 24, nh(2)); // 198.18.5.0/24
        t.insert(0xc612_0505, 32, nh(3)); // 198.18.5.5/32
        assert_eq!(t.lookup(0xc612_0505), Some(nh(3)));
        assert_eq!(t.lookup(0xc612_0506), Some(nh(2)));
        assert_eq!(t.lookup(0xc612_0606), Some(nh(1)));
        assert_eq!(t.lookup(0x0808_0808), Some(nh(9)));
        let mut no_default = RouteTable::default();
        no_default.insert(0xc612_0000, 16, nh(1));
        assert_eq!(no_default.lookup(0x0808_0808), None);
    }

    #[test]
    fn insert_replaces_and_masks() {
        let mut t = RouteTable::default();
        t.insert(0x0a00_00ff, 24, nh(1));
        t.insert(0x0a00_0000, 24, nh(2));
        assert_eq!(t.lookup(0x0a00_0001), Some(nh(2)));
        assert_eq!(t.levels.len(), 1);
        assert_eq!(t.levels[0].1.routes.len(), 1);
    }

    proptest! {
        /// The table agrees with a brute-force scan of all routes.
        #[test]
        fn agrees_with_brute_force(
            routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0usize..8), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..60),
        ) {
            let mut t = RouteTable::default();
            let mut reference: Vec<(u32, u8, usize)> = Vec::new();
            for (net, len, iface) in routes {
                let net = net & mask(len);
                t.insert(net, len, nh(iface));
                reference.retain(|&(n, l, _)| !(n == net && l == len));
                reference.push((net, len, iface));
            }
            // Probe addresses both random and next to the inserted networks.
            let near = reference.iter().flat_map(|&(n, _, _)| [n, n.wrapping_add(1), n.wrapping_sub(1)]);
            for dst in probes.into_iter().chain(near) {
                let want = reference
                    .iter()
                    .filter(|&&(n, l, _)| dst & mask(l) == n)
                    .max_by_key(|&&(_, l, _)| l)
                    .map(|&(_, _, i)| nh(i));
                prop_assert_eq!(t.lookup(dst), want, "dst {:#x}", dst);
            }
        }
    }
}
