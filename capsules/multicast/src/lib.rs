//! `multicast`: ANTS-style soft-state multicast. One module carries two capsule kinds.
//!
//! - **subscribe** — a receiver's app sends it with `dst` = the sender's address. Every node on
//!   the way, the receiver's own included, records a *branch* of the group: the downstream
//!   neighbour it came from (`prev`), or the app itself on the receiver's node (where `prev`
//!   is `::`). The subscription lapses after `lifetime_ms` unless the app sends it again.
//! - **data** — the sender's app injects it on its own node. Each node sends one copy down each
//!   live branch except back toward `prev`, and hands one copy to each member app on the node.
//!   Branches are kept per (group, downstream neighbour), so receivers behind the same
//!   neighbour share one copy and every receiver gets each capsule exactly once.
//!
//! Protocol header (big-endian): `kind: u8` (1 subscribe, 2 data), 3 reserved bytes,
//! `group: u32`; a subscribe adds `app: u32` (the subscribing app's id on its node) and
//! `lifetime_ms: u32` (how long each node keeps the branch, 1 ms to 60 s).
//!
//! Soft state: one key per group (`b"g"` + group) holding up to [`CAPACITY`] branches of 28
//! bytes — `hop: [u8; 16]`, `app: u32`, `expires_ns: u64` (node time). Expired branches are
//! skipped by data and dropped by the next subscribe; the key's own TTL is the last branch's
//! expiry, so an abandoned group disappears by itself. The resource budget bounds any loop.
#![cfg_attr(target_arch = "wasm32", no_std)]

use ants_sdk::{Address, Ctx, Duration, Error, Result, entry, info};

entry!(multicast);

/// Header kind of a subscribe capsule.
pub const SUBSCRIBE: u8 = 1;
/// Header kind of a data capsule.
pub const DATA: u8 = 2;
/// Branches kept per group and node; a subscribe for one more answers [`GROUP_FULL`].
pub const CAPACITY: usize = 8;
/// Protocol error code: the group's branch list on this node is full.
pub const GROUP_FULL: u16 = 1;
/// Longest lifetime a subscribe may ask for.
pub const MAX_LIFETIME_MS: u32 = 60_000;
const BRANCH_LEN: usize = 28;

/// Where copies of a group's data go from this node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Branch {
    /// The downstream neighbour, or `::` for an app on this node.
    hop: Address,
    /// The member app when `hop` is `::`, else 0.
    app: u32,
    /// Node time (ns since the epoch) after which the branch is dead.
    expires_ns: u64,
}

impl Branch {
    fn decode(b: &[u8]) -> Branch {
        Branch {
            hop: Address(take(b, 0)),
            app: u32::from_be_bytes(take(b, 16)),
            expires_ns: u64::from_be_bytes(take(b, 20)),
        }
    }

    fn encode(&self) -> [u8; BRANCH_LEN] {
        let mut b = [0u8; BRANCH_LEN];
        b[..16].copy_from_slice(&self.hop.0);
        b[16..20].copy_from_slice(&self.app.to_be_bytes());
        b[20..].copy_from_slice(&self.expires_ns.to_be_bytes());
        b
    }
}

/// `N` bytes of `b` from `at`, zeros where `b` is too short.
fn take<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let chunk = b.get(at..).and_then(<[u8]>::first_chunk);
    chunk.copied().unwrap_or([0; N])
}

/// The live branches of a group on this node, as stored under its key.
fn live_branches(cx: &mut Ctx, key: &[u8], now: u64) -> Result<([Branch; CAPACITY], usize)> {
    let mut buf = [0u8; CAPACITY * BRANCH_LEN];
    let stored = cx.store.get(key, &mut buf)?.unwrap_or_default();
    let (mut list, mut n) = ([Branch::default(); CAPACITY], 0);
    for b in stored.chunks_exact(BRANCH_LEN).map(Branch::decode) {
        if b.expires_ns > now && n < CAPACITY {
            list[n] = b;
            n += 1;
        }
    }
    Ok((list, n))
}

fn multicast(cx: &mut Ctx) -> Result<()> {
    let h = cx.capsule.header::<8>()?;
    let key = [b'g', h[4], h[5], h[6], h[7]];
    let now = u64::try_from(cx.node.time().as_nanos()).unwrap_or(u64::MAX);
    match h[0] {
        SUBSCRIBE => subscribe(cx, &key, now),
        DATA => data(cx, &key, now),
        _ => Err(Error::Malformed),
    }
}

/// Record or refresh the branch the subscribe came from, then carry it on toward the sender.
fn subscribe(cx: &mut Ctx, key: &[u8], now: u64) -> Result<()> {
    let h = cx.capsule.header::<16>()?;
    let word = |at| u32::from_be_bytes(take(&h, at));
    let lifetime_ms = u64::from(word(12).clamp(1, MAX_LIFETIME_MS));
    let expires_ns = now.saturating_add(lifetime_ms * 1_000_000);
    let hop = cx.capsule.prev();
    let app = if hop.is_unspecified() { word(8) } else { 0 };
    let (mut list, mut n) = live_branches(cx, key, now)?;
    match list[..n].iter().position(|b| (b.hop, b.app) == (hop, app)) {
        Some(i) => list[i].expires_ns = expires_ns,
        None if n == CAPACITY => return Err(Error::Protocol(GROUP_FULL)),
        None => {
            info!("group {}: new branch to {hop} app {app}", word(4));
            list[n] = Branch {
                hop,
                app,
                expires_ns,
            };
            n += 1;
        }
    }
    let (mut value, mut last) = ([0u8; CAPACITY * BRANCH_LEN], now);
    for (slot, b) in value.chunks_exact_mut(BRANCH_LEN).zip(&list[..n]) {
        slot.copy_from_slice(&b.encode());
        last = last.max(b.expires_ns);
    }
    // The key expires with its last branch.
    let ttl = Duration::from_nanos(last - now);
    cx.store.put(key, &value[..n * BRANCH_LEN], ttl)?;
    let sender = cx.capsule.dst();
    if sender == cx.node.address() {
        return Ok(());
    }
    cx.capsule.route_for_node(sender)
}

/// One copy down each live branch except back toward `prev`, one delivery per member app.
/// Every branch is tried; the first failure is returned.
fn data(cx: &mut Ctx, key: &[u8], now: u64) -> Result<()> {
    let prev = cx.capsule.prev();
    let (list, n) = live_branches(cx, key, now)?;
    let mut result = Ok(());
    for b in &list[..n] {
        result = result.and(match b.hop {
            local if local.is_unspecified() => cx.capsule.deliver_to_app(b.app),
            hop if hop != prev => cx.capsule.route_for_node(hop),
            _ => Ok(()),
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_sdk::mock::{MockHost, Outcome};
    use std::collections::{BTreeMap, VecDeque};

    const SENDER: &str = "198.18.0.1";
    const GROUP: u32 = 7;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn subscribe_header(app: u32, lifetime_ms: u32) -> Vec<u8> {
        let mut h = vec![SUBSCRIBE, 0, 0, 0];
        for w in [GROUP, app, lifetime_ms] {
            h.extend_from_slice(&w.to_be_bytes());
        }
        h
    }

    fn data_header() -> Vec<u8> {
        let mut h = vec![DATA, 0, 0, 0];
        h.extend_from_slice(&GROUP.to_be_bytes());
        h
    }

    fn key() -> Vec<u8> {
        let mut k = b"g".to_vec();
        k.extend_from_slice(&GROUP.to_be_bytes());
        k
    }

    /// A node at `me` with a route toward the sender via `up`.
    fn node(me: &str, up: &str) -> MockHost {
        let mut host = MockHost::new(addr(me));
        host.node.add_route(addr(SENDER), addr(up));
        host.capsule.src = addr(me);
        host.capsule.dst = addr(SENDER);
        host
    }

    /// Run a subscribe that arrives at `host` from `prev` (`::` = from a local app).
    fn subscribe_from(host: &mut MockHost, prev: &str, app: u32, lifetime_ms: u32) -> Outcome {
        host.capsule.prev = addr(prev);
        host.capsule.header = subscribe_header(app, lifetime_ms);
        host.run(multicast)
    }

    /// Run a data capsule that arrives at `host` from `prev`.
    fn data_from(host: &mut MockHost, prev: &str) -> Outcome {
        host.capsule.prev = addr(prev);
        host.capsule.dst = addr(SENDER);
        host.capsule.header = data_header();
        host.capsule.payload = b"seq 1".to_vec();
        host.run(multicast)
    }

    fn branches(host: &mut MockHost) -> Vec<Branch> {
        let v = host.store_get(&key()).unwrap_or_default();
        v.chunks_exact(BRANCH_LEN).map(Branch::decode).collect()
    }

    fn hops(out: &Outcome) -> Vec<Address> {
        out.sends.iter().map(|s| s.next_hop).collect()
    }

    fn now_ns(host: &MockHost) -> u64 {
        host.node.now.as_nanos() as u64
    }

    #[test]
    fn subscribe_records_a_branch_and_continues_toward_the_sender() {
        let mut n3 = node("198.18.0.3", "198.18.0.2");
        let out = subscribe_from(&mut n3, "198.18.0.5", 9, 1500);
        assert_eq!(out.result, Ok(()));
        assert_eq!(hops(&out), [addr("198.18.0.2")]);
        assert_eq!(out.sends[0].toward, addr(SENDER));
        assert_eq!(
            out.sends[0].header,
            subscribe_header(9, 1500),
            "header unchanged"
        );
        let want = Branch {
            hop: addr("198.18.0.5"),
            app: 0,
            expires_ns: now_ns(&n3) + 1_500_000_000,
        };
        assert_eq!(branches(&mut n3), [want]);
        assert_eq!(out.logs.len(), 1, "a new branch is logged: {:?}", out.logs);
        // A refresh moves the expiry; it neither adds a branch nor logs.
        n3.node.now += Duration::from_millis(500);
        let out = subscribe_from(&mut n3, "198.18.0.5", 9, 1500);
        assert_eq!((hops(&out).len(), out.logs.len()), (1, 0));
        let got = branches(&mut n3);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].expires_ns, now_ns(&n3) + 1_500_000_000);
    }

    #[test]
    fn subscribe_stops_at_the_sender() {
        let mut n1 = node(SENDER, SENDER);
        let out = subscribe_from(&mut n1, "198.18.0.2", 9, 1500);
        assert_eq!(out.result, Ok(()));
        assert!(out.sends.is_empty());
        assert_eq!(branches(&mut n1)[0].hop, addr("198.18.0.2"));
    }

    #[test]
    fn local_subscription_records_the_app_and_data_is_delivered_to_it() {
        let mut n5 = node("198.18.0.5", "198.18.0.3");
        n5.node.apps.insert(3);
        let out = subscribe_from(&mut n5, "::", 3, 1500);
        assert_eq!(hops(&out), [addr("198.18.0.3")]);
        let b = branches(&mut n5);
        assert_eq!((b[0].hop, b[0].app), (Address::UNSPECIFIED, 3));
        let out = data_from(&mut n5, "198.18.0.3");
        assert_eq!(out.result, Ok(()));
        assert!(out.sends.is_empty());
        assert_eq!(out.deliveries.len(), 1);
        assert_eq!(out.deliveries[0].app, 3);
        assert_eq!(out.deliveries[0].payload, b"seq 1");
    }

    #[test]
    fn data_fans_out_one_copy_per_live_branch_never_back_to_prev() {
        let mut n2 = node("198.18.0.2", SENDER);
        for from in ["198.18.0.3", "198.18.0.4", "198.18.0.6"] {
            // Two receivers behind .3: still one branch, so one copy.
            subscribe_from(&mut n2, from, 1, 1500);
            subscribe_from(&mut n2, from, 2, 1500);
        }
        assert_eq!(branches(&mut n2).len(), 3);
        let out = data_from(&mut n2, SENDER);
        assert_eq!(out.result, Ok(()));
        let to = ["198.18.0.3", "198.18.0.4", "198.18.0.6"].map(addr);
        assert_eq!(hops(&out), to);
        for s in &out.sends {
            assert_eq!(
                (s.header.as_slice(), s.payload.as_slice()),
                (&data_header()[..], &b"seq 1"[..])
            );
            // The three copies share the budget of 64: one unit each for the hop, the 61
            // left split as 21 + 20 + 20.
            assert!(s.resource == 20 || s.resource == 21, "{}", s.resource);
        }
        let total: u16 = out.sends.iter().map(|s| s.resource + 1).sum();
        assert_eq!(total, 64, "the copies share the arriving budget");
        let out = data_from(&mut n2, "198.18.0.4");
        assert_eq!(hops(&out), [to[0], to[2]], "never back toward prev");
        assert!(out.deliveries.is_empty());
    }

    #[test]
    fn expired_branches_are_not_used_and_the_key_expires_with_the_last() {
        let mut n2 = node("198.18.0.2", SENDER);
        subscribe_from(&mut n2, "198.18.0.3", 1, 1000);
        subscribe_from(&mut n2, "198.18.0.4", 1, 3000);
        n2.node.now += Duration::from_millis(1000);
        assert_eq!(hops(&data_from(&mut n2, SENDER)), [addr("198.18.0.4")]);
        // The next subscribe drops the dead branch from the stored list.
        subscribe_from(&mut n2, "198.18.0.6", 1, 1000);
        let b: Vec<_> = branches(&mut n2).iter().map(|b| b.hop).collect();
        assert_eq!(b, ["198.18.0.4", "198.18.0.6"].map(addr));
        n2.node.now += Duration::from_millis(2000);
        assert!(data_from(&mut n2, SENDER).sends.is_empty());
        assert_eq!(
            n2.store_get(&key()),
            None,
            "the key's TTL ran out with its last branch"
        );
    }

    #[test]
    fn the_branch_list_is_bounded() {
        let mut n2 = node("198.18.0.2", SENDER);
        for i in 0..CAPACITY {
            let out = subscribe_from(&mut n2, &format!("198.18.1.{i}"), 1, 1000);
            assert_eq!(out.result, Ok(()));
        }
        let out = subscribe_from(&mut n2, "198.18.2.1", 1, 1000);
        assert_eq!(out.result, Err(Error::Protocol(GROUP_FULL)));
        assert!(out.sends.is_empty());
        assert_eq!(branches(&mut n2).len(), CAPACITY);
        // Members already on the list still refresh; a slot frees when a branch expires.
        n2.node.now += Duration::from_millis(600);
        assert_eq!(
            subscribe_from(&mut n2, "198.18.1.0", 1, 1000).result,
            Ok(())
        );
        n2.node.now += Duration::from_millis(600);
        assert_eq!(
            subscribe_from(&mut n2, "198.18.2.1", 1, 1000).result,
            Ok(())
        );
        assert_eq!(branches(&mut n2).len(), 2);
        assert_eq!(data_from(&mut n2, SENDER).sends.len(), 2);
    }

    #[test]
    fn malformed_headers_are_errors_without_effects() {
        let mut n2 = node("198.18.0.2", SENDER);
        let short_subscribe = subscribe_header(1, 1000)[..12].to_vec();
        let unknown_kind = [9, 0, 0, 0, 0, 0, 0, 7].to_vec();
        for header in [vec![], vec![DATA, 0, 0], short_subscribe, unknown_kind] {
            n2.capsule.header = header.clone();
            n2.capsule.prev = addr("198.18.0.3");
            let out = n2.run(multicast);
            assert_eq!(out.result, Err(Error::Malformed), "header {header:?}");
            assert_eq!(out.code, -101);
            assert!(out.sends.is_empty() && out.deliveries.is_empty());
        }
        assert_eq!(n2.store_get(&key()), None);
    }

    /// The tree of the end-to-end test, hop by hop through one mock host per node: receivers
    /// on 5, 6 and 7 subscribe to the sender on 1, whose data reaches each exactly once.
    #[test]
    fn overlapping_paths_merge_into_one_tree() {
        let up = [(2, 1), (3, 2), (4, 2), (5, 3), (6, 3), (7, 4)];
        let a = |i: u8| format!("198.18.0.{i}");
        let mut net: BTreeMap<Address, MockHost> = BTreeMap::new();
        net.insert(addr(SENDER), node(SENDER, SENDER));
        for (n, parent) in up {
            let mut host = node(&a(n), &a(parent));
            host.node.apps.insert(u32::from(n));
            net.insert(addr(&a(n)), host);
        }
        let mut delivered = Vec::new();
        // Inject at `at` and carry every copy to its next hop.
        let mut carry = |net: &mut BTreeMap<_, MockHost>, at: Address, header: Vec<u8>| {
            let mut queue = VecDeque::from([(at, Address::UNSPECIFIED, header, 16)]);
            while let Some((at, prev, header, resource)) = queue.pop_front() {
                let host = net.get_mut(&at).unwrap();
                (
                    host.capsule.prev,
                    host.capsule.header,
                    host.capsule.resource,
                ) = (prev, header, resource);
                let out = host.run(multicast);
                assert_eq!(out.result, Ok(()));
                delivered.extend(out.deliveries.iter().map(|d| (at, d.app)));
                for s in out.sends {
                    queue.push_back((s.next_hop, at, s.header, s.resource));
                }
            }
        };
        for r in [5, 6, 7] {
            carry(&mut net, addr(&a(r)), subscribe_header(u32::from(r), 1000));
        }
        carry(&mut net, addr(SENDER), data_header());
        delivered.sort();
        let want: Vec<_> = [5, 6, 7].map(|r| (addr(&a(r)), u32::from(r))).into();
        assert_eq!(delivered, want);
    }
}
