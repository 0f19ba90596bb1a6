//! `traceroute`: record every active hop on the way to the destination, then carry the path
//! back to the source and hand it to the app that asked.
//!
//! Protocol header (big-endian), at least 7 bytes:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | `flags`: bit 0 [`RETURNING`], bit 1 [`TRUNCATED`], bit 2 [`UNREACHABLE`]; other bits must be 0 |
//! | 1 | 2 | `hops`: active nodes that ran the capsule on the way out, source and destination included |
//! | 3 | 4 | `app`: the app on the source node that receives the path |
//! | 7 | … | the app's own tag (e.g. a probe number), carried untouched |
//!
//! Payload: one 24-byte record per active hop on the way out, in order, the source first:
//! its 16-byte address, then its node time (`u64`, ns since the Unix epoch) when the capsule
//! ran there. When a record would not fit the node's capsule-data limit (16 KiB by default)
//! the capsule stops recording, sets [`TRUNCATED`] and keeps going; `hops` still counts.
//!
//! At the destination the capsule turns around (sets [`RETURNING`]; `src` is immutable, so it
//! routes toward it); returning hops only forward. A hop with no route onward turns it around
//! early with [`UNREACHABLE`]. Back at the source it is delivered to `app`.
#![cfg_attr(target_arch = "wasm32", no_std)]

use ants_sdk::{Ctx, Error, Result, entry};

entry!(traceroute);

/// Length of the fixed part of the header.
pub const HEADER_LEN: usize = 7;
/// Length of one hop record in the payload.
pub const RECORD_LEN: usize = 24;
/// The capsule is on its way back to the source.
pub const RETURNING: u8 = 0x01;
/// Some hops were not recorded: the capsule data limit was reached.
pub const TRUNCATED: u8 = 0x02;
/// The last recorded hop had no route to the destination.
pub const UNREACHABLE: u8 = 0x04;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    flags: u8,
    hops: u16,
    app: u32,
}

impl Header {
    fn decode(b: [u8; HEADER_LEN]) -> Result<Header> {
        if b[0] & !(RETURNING | TRUNCATED | UNREACHABLE) != 0 {
            return Err(Error::Malformed);
        }
        Ok(Header {
            flags: b[0],
            hops: u16::from_be_bytes([b[1], b[2]]),
            app: u32::from_be_bytes([b[3], b[4], b[5], b[6]]),
        })
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let [h0, h1] = self.hops.to_be_bytes();
        let [a0, a1, a2, a3] = self.app.to_be_bytes();
        [self.flags, h0, h1, a0, a1, a2, a3]
    }
}

fn traceroute(cx: &mut Ctx) -> Result<()> {
    let mut h = Header::decode(cx.capsule.header()?)?;
    let me = cx.node.address();
    if h.flags & RETURNING == 0 {
        h.hops = h.hops.saturating_add(1);
        record(cx, &mut h)?;
        let dst = cx.capsule.dst();
        if dst == me {
            h.flags |= RETURNING;
        } else {
            cx.capsule.write_header(0, &h.encode())?;
            match cx.capsule.route_for_node(dst) {
                Err(Error::NoRoute) => h.flags |= RETURNING | UNREACHABLE,
                sent => return sent,
            }
        }
        cx.capsule.write_header(0, &h.encode())?;
    }
    let src = cx.capsule.src();
    if src == me {
        cx.capsule.deliver_to_app(h.app)
    } else {
        cx.capsule.route_for_node(src)
    }
}

/// Append this node's record, or mark the path truncated when it does not fit.
fn record(cx: &mut Ctx, h: &mut Header) -> Result<()> {
    let len = cx.capsule.payload_len();
    if !len.is_multiple_of(RECORD_LEN) {
        return Err(Error::Malformed);
    }
    if h.flags & TRUNCATED != 0 {
        return Ok(());
    }
    match cx.capsule.resize_payload(len + RECORD_LEN) {
        Err(Error::TooLarge) => {
            h.flags |= TRUNCATED;
            Ok(())
        }
        Err(e) => Err(e),
        Ok(()) => {
            let ns = u64::try_from(cx.node.time().as_nanos()).unwrap_or(u64::MAX);
            let mut rec = [0u8; RECORD_LEN];
            rec[..16].copy_from_slice(&cx.node.address().0);
            rec[16..].copy_from_slice(&ns.to_be_bytes());
            cx.capsule.write_payload(len, &rec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_sdk::Address;
    use ants_sdk::mock::{MockHost, Outcome};
    use std::time::Duration;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn header(flags: u8, hops: u16, app: u32) -> Vec<u8> {
        Header { flags, hops, app }.encode().to_vec()
    }

    /// A fresh probe from an app on 198.18.0.1 toward `dst`, as `ants traceroute` sends it.
    fn probe(dst: &str) -> MockHost {
        let mut host = MockHost::new(addr("198.18.0.1"));
        host.capsule.src = addr("198.18.0.1");
        host.capsule.dst = addr(dst);
        host.capsule.header = header(0, 0, 7);
        host.capsule.header.extend_from_slice(b"tag");
        host.node.apps.insert(7);
        host
    }

    /// Run the capsule at `node` (clock `ms` past the mock's epoch) and carry its one send
    /// onward, as the network would.
    fn hop(host: &mut MockHost, node: &str, ms: u64) -> Outcome {
        host.node.address = addr(node);
        host.node.now += Duration::from_millis(ms);
        let out = host.run(traceroute);
        assert_eq!(out.result, Ok(()), "at {node}");
        if let Some(s) = out.sends.first() {
            host.capsule.header = s.header.clone();
            host.capsule.payload = s.payload.clone();
            host.capsule.resource = s.resource;
        }
        out
    }

    fn records(payload: &[u8]) -> Vec<(Address, u64)> {
        payload
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                let a = Address(r[..16].try_into().unwrap());
                (a, u64::from_be_bytes(r[16..].try_into().unwrap()))
            })
            .collect()
    }

    #[test]
    fn records_each_hop_in_order_turns_at_dst_and_delivers_at_src() {
        let mut host = probe("198.18.0.3");
        let t0 = host.node.now.as_nanos() as u64;
        let path = ["198.18.0.1", "198.18.0.2", "198.18.0.3"];
        for (i, node) in path.iter().enumerate() {
            let out = hop(&mut host, node, 1);
            assert_eq!(
                out.sends[0].toward,
                addr(if i < 2 { "198.18.0.3" } else { "198.18.0.1" })
            );
        }
        assert_eq!(host.capsule.header[0], RETURNING, "turned around at dst");
        let out = hop(&mut host, "198.18.0.2", 1);
        assert_eq!(
            out.sends[0].toward,
            addr("198.18.0.1"),
            "returning hops only forward"
        );
        assert_eq!(
            out.sends[0].payload.len(),
            3 * RECORD_LEN,
            "and record nothing"
        );
        let out = hop(&mut host, "198.18.0.1", 1);
        assert!(out.sends.is_empty());
        let d = &out.deliveries[0];
        assert_eq!(d.app, 7);
        assert_eq!(
            d.header,
            [header(RETURNING, 3, 7), b"tag".to_vec()].concat()
        );
        let want: Vec<_> = (0..3)
            .map(|i| (addr(path[i]), t0 + (i as u64 + 1) * 1_000_000))
            .collect();
        assert_eq!(records(&d.payload), want);
    }

    #[test]
    fn a_trace_to_the_source_itself_comes_straight_back() {
        let mut host = probe("198.18.0.1");
        let out = hop(&mut host, "198.18.0.1", 0);
        assert_eq!((out.sends.len(), out.deliveries.len()), (0, 1));
        assert_eq!(records(&out.deliveries[0].payload).len(), 1);
    }

    #[test]
    fn stops_recording_at_the_data_limit_but_keeps_going() {
        let mut host = probe("198.18.0.9");
        let room =
            ants_sdk::mock::HostLimits::default().max_capsule_data - host.capsule.header.len();
        host.capsule.payload = vec![0; room / RECORD_LEN * RECORD_LEN];
        let full = host.capsule.payload.len();
        let out = hop(&mut host, "198.18.0.2", 1);
        assert_eq!(out.sends[0].toward, addr("198.18.0.9"));
        assert_eq!(out.sends[0].payload.len(), full);
        assert_eq!(out.sends[0].header[..HEADER_LEN], header(TRUNCATED, 1, 7));
        let out = hop(&mut host, "198.18.0.9", 1);
        assert_eq!(
            out.sends[0].header[..HEADER_LEN],
            header(RETURNING | TRUNCATED, 2, 7)
        );
    }

    #[test]
    fn no_route_onward_turns_the_capsule_around() {
        let mut host = probe("198.18.0.9");
        host.node.direct_by_default = false;
        host.node.add_route(addr("198.18.0.9"), addr("198.18.0.2"));
        hop(&mut host, "198.18.0.1", 0);
        // 198.18.0.2 knows the way back but not onward.
        host.node.routes.clear();
        host.node.add_route(addr("198.18.0.1"), addr("198.18.0.1"));
        let out = hop(&mut host, "198.18.0.2", 1);
        assert_eq!(out.sends[0].toward, addr("198.18.0.1"));
        let want = header(RETURNING | UNREACHABLE, 2, 7);
        assert_eq!(out.sends[0].header[..HEADER_LEN], want);
        // Unreachable from the source itself: the app hears it at once.
        let mut host = probe("198.18.0.9");
        host.node.direct_by_default = false;
        let out = hop(&mut host, "198.18.0.1", 0);
        assert_eq!(
            out.deliveries[0].header[..HEADER_LEN],
            header(RETURNING | UNREACHABLE, 1, 7)
        );
    }

    #[test]
    fn malformed_data_is_refused() {
        for (hdr, payload) in [
            (vec![0, 0, 0], vec![]),                    // header too short
            (header(0x80, 0, 7), vec![]),               // unknown flag
            (header(0, 0, 7), vec![0; RECORD_LEN - 1]), // torn record
        ] {
            let mut host = probe("198.18.0.9");
            host.capsule.header = hdr;
            host.capsule.payload = payload;
            let out = host.run(traceroute);
            assert_eq!(out.result, Err(Error::Malformed));
            assert!(out.sends.is_empty() && out.deliveries.is_empty());
        }
    }
}
