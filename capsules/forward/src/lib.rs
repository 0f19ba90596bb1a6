//! `forward`: the default capsule. Route toward the destination; at the destination, hand
//! the capsule to app 0. This is what a plain packet does, written as a capsule — copy it to
//! start a protocol of your own.
#![cfg_attr(target_arch = "wasm32", no_std)]

use ants_sdk::{Ctx, Result, entry};

entry!(forward);

/// The app that receives capsules at their destination.
const APP: u32 = 0;

fn forward(cx: &mut Ctx) -> Result<()> {
    let dst = cx.capsule.dst();
    if dst == cx.node.address() {
        cx.capsule.deliver_to_app(APP)
    } else {
        cx.capsule.route_for_node(dst)
    }
}

#[cfg(test)]
mod tests {
    use ants_sdk::mock::MockHost;
    use ants_sdk::{Address, Error};

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn routes_toward_dst_with_one_less_resource() {
        let mut host = MockHost::new(addr("198.18.0.2"));
        host.capsule.dst = addr("198.18.0.9");
        host.capsule.payload = b"hello".to_vec();
        host.node.add_route(addr("198.18.0.9"), addr("198.18.0.3"));
        let out = host.run(super::forward);
        assert_eq!(out.result, Ok(()));
        assert_eq!(out.sends.len(), 1);
        assert_eq!(out.sends[0].next_hop, addr("198.18.0.3"));
        assert_eq!(out.sends[0].resource, 63);
        assert_eq!(out.sends[0].payload, b"hello");
        assert!(out.deliveries.is_empty());
    }

    #[test]
    fn delivers_at_dst() {
        let mut host = MockHost::new(addr("198.18.0.9"));
        host.capsule.dst = addr("198.18.0.9");
        let out = host.run(super::forward);
        assert_eq!(out.result, Ok(()));
        assert!(out.sends.is_empty());
        assert_eq!(out.deliveries.len(), 1);
        assert_eq!(out.deliveries[0].app, 0);
    }

    #[test]
    fn reports_no_route_and_exhausted_resource() {
        let mut host = MockHost::new(addr("198.18.0.2"));
        host.capsule.dst = addr("198.18.0.9");
        host.node.direct_by_default = false;
        assert_eq!(host.run(super::forward).result, Err(Error::NoRoute));
        host.node.direct_by_default = true;
        host.capsule.resource = 0;
        let out = host.run(super::forward);
        assert_eq!(out.result, Err(Error::ResourceExhausted));
        assert!(out.sends.is_empty());
    }
}
