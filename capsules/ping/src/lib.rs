//! `ping`: travel to the destination and back to the source, counting hops each way.
//!
//! Protocol header (12 bytes, big-endian): `back: u8` (0 outbound, 1 returning),
//! `hops_out: u8`, `hops_back: u8`, reserved `u8`, `sent_at: u64` (ns, node time at the
//! source). An app sends a ping with an empty header; the source node stamps it. Back at the
//! source it is delivered to app 0, which can compute the round-trip time from `sent_at`.
#![cfg_attr(target_arch = "wasm32", no_std)]

use ants_sdk::{Ctx, Result, entry};

entry!(ping);

const APP: u32 = 0;
const HEADER_LEN: usize = 12;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Header {
    back: bool,
    hops_out: u8,
    hops_back: u8,
    sent_at: u64,
}

impl Header {
    fn decode(b: [u8; HEADER_LEN]) -> Header {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[4..]);
        Header {
            back: b[0] != 0,
            hops_out: b[1],
            hops_back: b[2],
            sent_at: u64::from_be_bytes(t),
        }
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..3].copy_from_slice(&[u8::from(self.back), self.hops_out, self.hops_back]);
        b[4..].copy_from_slice(&self.sent_at.to_be_bytes());
        b
    }
}

fn ping(cx: &mut Ctx) -> Result<()> {
    let me = cx.node.address();
    let mut h = match cx.capsule.header::<HEADER_LEN>() {
        Ok(raw) => Header::decode(raw),
        // A fresh ping from an app: stamp it with the source's clock.
        Err(_) => Header {
            sent_at: cx.node.time().as_nanos() as u64,
            ..Header::default()
        },
    };
    h.back |= cx.capsule.dst() == me;
    let toward = if h.back {
        cx.capsule.src()
    } else {
        cx.capsule.dst()
    };
    if h.back && toward == me {
        cx.capsule.set_header(&h.encode())?;
        return cx.capsule.deliver_to_app(APP);
    }
    let hops = if h.back {
        &mut h.hops_back
    } else {
        &mut h.hops_out
    };
    *hops = hops.saturating_add(1);
    cx.capsule.set_header(&h.encode())?;
    cx.capsule.route_for_node(toward)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_sdk::Address;
    use ants_sdk::mock::MockHost;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    /// Carry a ping through `path` (node addresses in order), as the network would.
    fn travel(path: &[&str]) -> Vec<(usize, usize)> {
        let mut host = MockHost::new(addr(path[0]));
        host.capsule.src = addr(path[0]);
        host.capsule.dst = addr(path[path.len() / 2]);
        let mut events = Vec::new();
        for (i, node) in path.iter().enumerate() {
            host.node.address = addr(node);
            let out = host.run(ping);
            assert_eq!(out.result, Ok(()), "at hop {i}");
            events.push((out.sends.len(), out.deliveries.len()));
            if let Some(s) = out.sends.first() {
                host.capsule.header = s.header.clone();
                host.capsule.resource = s.resource;
            }
        }
        let h = Header::decode(host.capsule.header[..HEADER_LEN].try_into().unwrap());
        assert!(h.back);
        assert_eq!(usize::from(h.hops_out), path.len() / 2);
        assert_eq!(usize::from(h.hops_back), path.len() / 2);
        assert_eq!(h.sent_at, host.node.now.as_nanos() as u64);
        events
    }

    #[test]
    fn goes_out_and_back_counting_hops() {
        let ev = travel(&[
            "198.18.0.1",
            "198.18.0.2",
            "198.18.0.3",
            "198.18.0.2",
            "198.18.0.1",
        ]);
        assert_eq!(ev, vec![(1, 0), (1, 0), (1, 0), (1, 0), (0, 1)]);
    }

    #[test]
    fn ping_to_self_is_delivered_at_once() {
        let mut host = MockHost::new(addr("198.18.0.1"));
        host.capsule.src = addr("198.18.0.1");
        host.capsule.dst = addr("198.18.0.1");
        let out = host.run(ping);
        assert_eq!((out.sends.len(), out.deliveries.len()), (0, 1));
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            back: true,
            hops_out: 3,
            hops_back: 2,
            sent_at: 42,
        };
        assert_eq!(Header::decode(h.encode()), h);
    }
}
