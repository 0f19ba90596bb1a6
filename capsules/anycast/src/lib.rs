//! `anycast`: deliver a capsule to exactly one member of a group, the nearest by hop count.
//!
//! One module, two capsule kinds, told apart by the first header byte (big-endian fields):
//!
//! - `advertise` (24 bytes): `kind = 1`, `group: u32`, `member: [u8; 16]`, `hops: u8`,
//!   `hold_ms: u16`. A member's app injects one every refresh period with `hops = 0` and a
//!   `hold_ms` a little over that period. Each node records it in its soft-store table for the
//!   group (member, hops, next hop = `prev`, expiry = now + `hold_ms`) and floods it on, one
//!   hop further, to every neighbour but `prev` — only if it brought news: a member not in the
//!   table, fewer hops, or a refresh from the entry's own next hop. Copies that arrive over
//!   longer or parallel paths stop there, so each refresh crosses each link about once.
//! - `data` (5 bytes): `kind = 2`, `group: u32`. Each node sends it to the next hop of its
//!   nearest live member (fewest hops, then lowest address); the member's node delivers it to
//!   app 0. When a member falls silent its entries expire after `hold_ms` and the next nearest,
//!   already in every table, takes over.
#![cfg_attr(target_arch = "wasm32", no_std)]

use core::cmp::Reverse;
use core::num::NonZeroU16;

use ants_sdk::{Address, Ctx, Duration, Error, Result, entry};

entry!(anycast);

/// The app that receives data capsules at the chosen member.
const APP: u32 = 0;
const ADVERTISE: u8 = 1;
const DATA: u8 = 2;
const ADVERTISE_LEN: usize = 24;
/// Candidate members remembered per group: the nearest few are enough to fail over.
const SLOTS: usize = 4;
const ENTRY_LEN: usize = 41;

/// One candidate member, as stored: `member`, `hops`, `next`, `expires_ms` (node time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    member: Address,
    hops: u8,
    next: Address,
    expires_ms: u64,
}

type Table = [Option<Entry>; SLOTS];

impl Entry {
    /// Order of preference: fewest hops, ties to the lowest member address.
    fn rank(&self) -> (u8, Address) {
        (self.hops, self.member)
    }

    fn decode(b: &[u8; ENTRY_LEN]) -> Entry {
        Entry {
            member: Address(b[..16].try_into().unwrap_or_default()),
            hops: b[16],
            next: Address(b[17..33].try_into().unwrap_or_default()),
            expires_ms: u64::from_be_bytes(b[33..].try_into().unwrap_or_default()),
        }
    }

    fn encode(&self, b: &mut [u8; ENTRY_LEN]) {
        b[..16].copy_from_slice(&self.member.0);
        b[16] = self.hops;
        b[17..33].copy_from_slice(&self.next.0);
        b[33..ENTRY_LEN].copy_from_slice(&self.expires_ms.to_be_bytes());
    }
}

fn anycast(cx: &mut Ctx) -> Result<()> {
    let [kind, group @ ..] = cx.capsule.header::<5>()?;
    let now = u64::try_from(cx.node.time().as_millis()).unwrap_or(u64::MAX);
    let mut buf = [0u8; SLOTS * ENTRY_LEN];
    let mut table: Table = [None; SLOTS];
    if let Some(v) = cx.store.get(&group, &mut buf)? {
        for (slot, b) in table.iter_mut().zip(v.as_chunks().0) {
            *slot = Some(Entry::decode(b)).filter(|e| e.expires_ms > now);
        }
    }
    match kind {
        ADVERTISE => advertise(cx, group, &mut table, now),
        DATA => {
            let best = table.iter().flatten().min_by_key(|e| e.rank());
            match best.ok_or(Error::NoRoute)? {
                e if e.member == cx.node.address() => cx.capsule.deliver_to_app(APP),
                e => cx.capsule.route_for_node(e.next),
            }
        }
        _ => Err(Error::Malformed),
    }
}

fn advertise(cx: &mut Ctx, group: [u8; 4], table: &mut Table, now: u64) -> Result<()> {
    let h = cx.capsule.header::<ADVERTISE_LEN>()?;
    let hold = NonZeroU16::new(u16::from_be_bytes([h[22], h[23]])).ok_or(Error::Malformed)?;
    let prev = cx.capsule.prev();
    let offer = Entry {
        member: Address(h[5..21].try_into().unwrap_or_default()),
        hops: h[21],
        next: prev,
        expires_ms: now.saturating_add(u64::from(hold.get())),
    };
    // Take the member's own slot, else a free one, else the least preferred member's.
    let victim = table.iter_mut().min_by_key(|e| match e {
        Some(e) if e.member == offer.member => (0, None),
        None => (1, None),
        Some(e) => (2, Some(Reverse(e.rank()))),
    });
    let Some(slot) = victim else { return Ok(()) };
    let news = match *slot {
        None => true,
        Some(e) if e.member == offer.member => offer.hops < e.hops || e.next == prev,
        Some(e) => offer.rank() < e.rank(),
    };
    if !news {
        return Ok(());
    }
    *slot = Some(offer);
    // Live entries first; the zeros after them read back as long expired.
    let mut buf = [0u8; SLOTS * ENTRY_LEN];
    for (e, b) in table.iter().flatten().zip(buf.as_chunks_mut().0) {
        e.encode(b);
    }
    let last = table.iter().flatten().map(|e| e.expires_ms).max();
    let ttl = last.unwrap_or(now).saturating_sub(now);
    cx.store.put(&group, &buf, Duration::from_millis(ttl))?;
    // Flood it on, one hop further from the member, to every neighbour but the one it came from.
    let hops = offer.hops.saturating_add(1);
    cx.capsule.write_header(21, &[hops])?;
    let mut nbrs = [Address::UNSPECIFIED; 16];
    let n = cx.node.neighbours(&mut nbrs).min(nbrs.len());
    for nb in nbrs[..n].iter().filter(|a| **a != prev) {
        cx.capsule.route_for_node(*nb)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_sdk::mock::{MockHost, Outcome};

    const GROUP: u32 = 0xA1;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn advert(member: &str, hops: u8, hold_ms: u16) -> Vec<u8> {
        let mut h = vec![ADVERTISE];
        h.extend(GROUP.to_be_bytes());
        h.extend(addr(member).0);
        h.push(hops);
        h.extend(hold_ms.to_be_bytes());
        h
    }

    fn data() -> Vec<u8> {
        let mut h = vec![DATA];
        h.extend(GROUP.to_be_bytes());
        h
    }

    /// Node `at` with `nbrs` as neighbours (routes: every address is a direct neighbour).
    fn node(at: &str, nbrs: &[&str]) -> MockHost {
        let mut host = MockHost::new(addr(at));
        host.node.neighbours.extend(nbrs.iter().map(|a| addr(a)));
        host
    }

    /// Run a capsule with `header`, arrived from `prev` (`"::"` = injected by a local app).
    fn run(host: &mut MockHost, prev: &str, header: Vec<u8>) -> Outcome {
        host.capsule.prev = addr(prev);
        host.capsule.header = header;
        host.run(anycast)
    }

    fn table(host: &mut MockHost) -> Vec<Entry> {
        let v = host.store_get(&GROUP.to_be_bytes()).unwrap_or_default();
        v.as_chunks()
            .0
            .iter()
            .map(Entry::decode)
            .filter(|e| e.expires_ms > 0)
            .collect()
    }

    fn next_hops(out: &Outcome) -> Vec<Address> {
        out.sends.iter().map(|s| s.next_hop).collect()
    }

    #[test]
    fn advertisement_is_recorded_and_reflooded_except_to_prev() {
        let mut host = node("198.18.0.2", &["198.18.0.1", "198.18.0.3", "198.18.0.4"]);
        let out = run(&mut host, "198.18.0.1", advert("198.18.0.1", 1, 400));
        assert_eq!(out.result, Ok(()));
        assert_eq!(next_hops(&out), [addr("198.18.0.3"), addr("198.18.0.4")]);
        assert!(
            out.sends
                .iter()
                .all(|s| s.header == advert("198.18.0.1", 2, 400))
        );
        let now = u64::try_from(host.node.now.as_millis()).unwrap();
        let want = Entry {
            member: addr("198.18.0.1"),
            hops: 1,
            next: addr("198.18.0.1"),
            expires_ms: now + 400,
        };
        assert_eq!(table(&mut host), [want]);
    }

    #[test]
    fn worse_or_duplicate_advertisement_is_not_reflooded_but_a_refresh_is() {
        let mut host = node("198.18.0.2", &["198.18.0.1", "198.18.0.3", "198.18.0.4"]);
        run(&mut host, "198.18.0.1", advert("198.18.0.1", 1, 400));
        let recorded = table(&mut host);
        // The same round over a parallel path (equal hops) and over a longer one.
        for (prev, hops) in [("198.18.0.3", 1), ("198.18.0.4", 3)] {
            let out = run(&mut host, prev, advert("198.18.0.1", hops, 400));
            assert_eq!(out.result, Ok(()));
            assert!(out.sends.is_empty(), "from {prev} with {hops} hops");
            assert_eq!(table(&mut host), recorded);
        }
        // The next round from the entry's own next hop refreshes it and floods on.
        host.node.now += Duration::from_millis(300);
        let out = run(&mut host, "198.18.0.1", advert("198.18.0.1", 1, 400));
        assert_eq!(out.sends.len(), 2);
        assert_eq!(table(&mut host)[0].expires_ms, recorded[0].expires_ms + 300);
    }

    #[test]
    fn data_goes_to_the_next_hop_of_the_nearest_member() {
        let mut host = node("198.18.0.3", &["198.18.0.2", "198.18.0.4"]);
        run(&mut host, "198.18.0.4", advert("198.18.0.7", 4, 400));
        run(&mut host, "198.18.0.2", advert("198.18.0.1", 2, 400));
        let out = run(&mut host, "198.18.0.9", data());
        assert_eq!(out.result, Ok(()));
        assert_eq!(next_hops(&out), [addr("198.18.0.2")]);
        assert_eq!(out.sends[0].header, data());
        assert!(out.deliveries.is_empty());
        // At equal distance the lower member address wins, whatever the arrival order.
        run(&mut host, "198.18.0.4", advert("198.18.0.5", 2, 400));
        run(&mut host, "198.18.0.4", advert("198.18.0.0", 2, 400));
        let out = run(&mut host, "198.18.0.9", data());
        assert_eq!(next_hops(&out), [addr("198.18.0.4")]);
    }

    #[test]
    fn expired_entries_are_ignored() {
        let mut host = node("198.18.0.3", &["198.18.0.2", "198.18.0.4"]);
        run(&mut host, "198.18.0.2", advert("198.18.0.1", 2, 400));
        host.node.now += Duration::from_millis(300);
        run(&mut host, "198.18.0.4", advert("198.18.0.7", 4, 400));
        host.node.now += Duration::from_millis(100);
        let out = run(&mut host, "198.18.0.9", data());
        assert_eq!(next_hops(&out), [addr("198.18.0.4")], "the nearest expired");
        host.node.now += Duration::from_millis(300);
        let out = run(&mut host, "198.18.0.9", data());
        assert_eq!(out.result, Err(Error::NoRoute));
        assert!(out.sends.is_empty());
        // A worse advertisement from a new next hop is news once the old entry expired.
        let out = run(&mut host, "198.18.0.2", advert("198.18.0.7", 6, 400));
        assert_eq!(next_hops(&out), [addr("198.18.0.4")]);
    }

    #[test]
    fn a_member_floods_its_own_advertisement_and_receives_data() {
        let mut host = node("198.18.0.1", &["198.18.0.2", "198.18.0.8"]);
        let out = run(&mut host, "::", advert("198.18.0.1", 0, 400));
        assert_eq!(next_hops(&out), [addr("198.18.0.2"), addr("198.18.0.8")]);
        // A farther member is known too, but the local one is nearest.
        run(&mut host, "198.18.0.2", advert("198.18.0.7", 6, 400));
        let out = run(&mut host, "198.18.0.2", data());
        assert_eq!(out.result, Ok(()));
        assert!(out.sends.is_empty());
        assert_eq!(out.deliveries.len(), 1);
        assert_eq!(out.deliveries[0].app, APP);
    }

    #[test]
    fn a_full_table_keeps_the_nearest_members() {
        let mut host = node("198.18.0.3", &["198.18.0.2"]);
        for (i, hops) in [(1, 5), (2, 6), (4, 7), (5, 8)] {
            run(
                &mut host,
                "198.18.0.2",
                advert(&format!("198.18.1.{i}"), hops, 400),
            );
        }
        let out = run(&mut host, "198.18.0.2", advert("198.18.1.9", 9, 400));
        assert!(out.sends.is_empty(), "farther than all four: not news");
        run(&mut host, "198.18.0.2", advert("198.18.1.6", 2, 400));
        let mut members: Vec<_> = table(&mut host).iter().map(|e| e.member).collect();
        members.sort();
        let want = ["198.18.1.1", "198.18.1.2", "198.18.1.4", "198.18.1.6"].map(addr);
        assert_eq!(members, want);
    }

    #[test]
    fn malformed_headers_are_errors_without_sends() {
        let mut host = node("198.18.0.2", &["198.18.0.1", "198.18.0.3"]);
        let no_hold = advert("198.18.0.1", 0, 0);
        let bad = [
            vec![],
            vec![DATA, 0, 0],
            advert("198.18.0.1", 0, 400)[..10].to_vec(),
        ];
        for header in bad.into_iter().chain([no_hold, vec![9, 0, 0, 0, 0xA1]]) {
            let out = run(&mut host, "198.18.0.1", header.clone());
            assert_eq!(out.result, Err(Error::Malformed), "header {header:?}");
            assert!(out.sends.is_empty() && out.deliveries.is_empty());
        }
        assert!(table(&mut host).is_empty());
    }
}
