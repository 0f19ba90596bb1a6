//! The shipped capsules, built to real wasm and run in the real sandbox.

use ants_core::Executor;
use ants_node::testbench::TestNode;

use crate::support::*;

#[test]
fn forward_routes_then_delivers_at_dst() {
    let mut exec = executor();
    let ty = exec.load(&capsule_bytes("forward")).unwrap();
    let mut node = TestNode::new(addr("198.18.0.2"), 1);
    node.add_route(addr("198.18.0.9"), addr("198.18.0.3"));
    let run = run_on(
        &mut exec,
        &mut node,
        &capsule_to(ty, "198.18.0.9", b"hello"),
    );
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.sends.len(), 1);
    assert_eq!(run.sends[0].next_hop.as_deref(), Some("198.18.0.3"));
    assert_eq!(run.sends[0].resource, 63);
    assert_eq!(run.sends[0].payload, hex::encode("hello"));
    assert!(run.fuel_used > 0);

    let mut at_dst = TestNode::new(addr("198.18.0.9"), 1);
    let run = run_on(
        &mut exec,
        &mut at_dst,
        &capsule_to(ty, "198.18.0.9", b"hello"),
    );
    assert!(run.ok() && run.sends.is_empty());
    assert_eq!(run.deliveries.len(), 1);
    assert_eq!(run.deliveries[0].app, Some(0));
}

#[test]
fn ping_turns_around_at_dst_and_counts_hops() {
    let mut exec = executor();
    let ty = exec.load(&capsule_bytes("ping")).unwrap();
    // At the source: stamped, one hop out.
    let mut src = TestNode::new(addr("198.18.0.1"), 1);
    let run = run_on(&mut exec, &mut src, &capsule_to(ty, "198.18.0.9", b""));
    assert!(run.ok(), "{run:?}");
    let header = hex::decode(&run.sends[0].header).unwrap();
    assert_eq!(&header[..4], &[0, 1, 0, 0]);
    assert_eq!(
        u64::from_be_bytes(header[4..].try_into().unwrap()),
        src.now.as_nanos() as u64
    );
    // At the destination: turned around toward the source.
    let mut dst = TestNode::new(addr("198.18.0.9"), 1);
    let mut c = capsule_to(ty, "198.18.0.9", b"");
    c.header = &header;
    let run = run_on(&mut exec, &mut dst, &c);
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.sends[0].toward.as_deref(), Some("198.18.0.1"));
    assert_eq!(
        &hex::decode(&run.sends[0].header).unwrap()[..4],
        &[1, 1, 1, 0]
    );
}

#[test]
fn built_type_is_the_sha256_of_the_file() {
    use sha2::{Digest, Sha256};
    for name in ["forward", "ping"] {
        let b = capsule(name);
        let bytes = std::fs::read(&b.path).unwrap();
        assert_eq!(&bytes[..4], b"\0asm");
        assert_eq!(b.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
    }
}
