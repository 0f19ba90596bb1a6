//! The `traceroute` capsule on real `ants run` nodes, and `ants traceroute` against them.
//!
//! Topology (node i is 198.18.0.i): a line of six with a side branch at n3.
//!
//! ```text
//! n1 — n2 — n3 — n4 — n5 — n6
//!            |
//!            n7 — n8
//! ```
//!
//! A returned path lists every active node that ran the capsule on the way out, the source
//! first: n1 → n6 is six records, the source and the five active hops after it.

use std::process::Command;
use std::time::Duration;

use ants_app::{AppClient, Delivery, Inject};
use ants_wire::Address;

use crate::support::*;
use crate::topology::Topology;

const EDGES: [(usize, usize); 7] = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (3, 7), (7, 8)];
const APP: u32 = 7;
const RETURNING: u8 = 0x01;
const UNREACHABLE: u8 = 0x04;

/// A fresh probe toward `dst`: header `flags` 0, `hops` 0, `app` [`APP`], then a tag.
fn probe(dst: &str, code: bool) -> Inject {
    let mut header = vec![0, 0, 0];
    header.extend_from_slice(&APP.to_be_bytes());
    header.extend_from_slice(b"tag");
    let mut inject = Inject::with_code(capsule_bytes("traceroute"), addr(dst), 64, header, vec![]);
    if !code {
        inject.code = None;
    }
    inject
}

/// The records of a returned probe: (address, node time in ns), the source first.
fn path(d: &Delivery) -> Vec<(Address, u64)> {
    assert!(d.payload.len().is_multiple_of(24), "whole records");
    d.payload
        .chunks_exact(24)
        .map(|r| {
            let a = Address(r[..16].try_into().unwrap());
            (a, u64::from_be_bytes(r[16..].try_into().unwrap()))
        })
        .collect()
}

fn trace(client: &mut AppClient, dst: &str, code: bool) -> Delivery {
    client.inject(&probe(dst, code)).expect("inject");
    client
        .recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("the probe comes back to the source")
}

#[test]
fn a_probe_records_the_five_active_hops_in_order_and_comes_back() {
    let topo = Topology::start(8, &EDGES, "");
    let mut client = AppClient::connect(topo.sock(1), APP).unwrap();
    let d = trace(&mut client, "198.18.0.6", true);
    assert_eq!((d.src, d.dst), (addr("198.18.0.1"), addr("198.18.0.6")));
    assert_eq!(d.header[0], RETURNING, "turned around, nothing truncated");
    assert_eq!(u16::from_be_bytes([d.header[1], d.header[2]]), 6, "hops");
    assert_eq!(&d.header[7..], b"tag", "the app's tag comes back untouched");
    let p = path(&d);
    let hops: Vec<Address> = p.iter().map(|(a, _)| *a).collect();
    let want: Vec<Address> = (1..=6).map(|i| addr(&format!("198.18.0.{i}"))).collect();
    assert_eq!(hops, want, "the source, then the five active hops in order");
    assert!(
        p.windows(2).all(|w| w[0].1 <= w[1].1),
        "times never decrease along the path: {p:?}"
    );
    assert!(
        d.node_time_ns >= p[5].1,
        "delivered after the destination ran it"
    );

    // Down the side branch: the path forks at n3.
    let d = trace(&mut client, "198.18.0.8", false);
    let hops: Vec<Address> = path(&d).iter().map(|(a, _)| *a).collect();
    let want: Vec<Address> = [1, 2, 3, 7, 8]
        .iter()
        .map(|i| addr(&format!("198.18.0.{i}")))
        .collect();
    assert_eq!(hops, want);

    // Nowhere to go: the source itself turns the probe around, marked unreachable.
    let d = trace(&mut client, "198.18.0.9", false);
    assert_eq!(d.header[0], RETURNING | UNREACHABLE);
    assert_eq!(path(&d).len(), 1);
}

#[test]
fn ants_traceroute_prints_one_line_per_active_hop() {
    let topo = Topology::start(8, &EDGES, "");
    let code = capsule("traceroute").path;
    let o = Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["traceroute", "198.18.0.6", "-q", "2", "--timeout", "20"])
        .arg("--socket")
        .arg(topo.sock(1))
        .arg("--code")
        .arg(&code)
        .output()
        .expect("run ants");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "title, five hops, round trip:\n{text}");
    assert_eq!(
        lines[0],
        "traceroute to 198.18.0.6 from 198.18.0.1, 2 probes"
    );
    for (i, line) in lines[1..6].iter().enumerate() {
        let hop = i + 1;
        let head = format!("{hop:2}  198.18.0.{}  ", hop + 1);
        assert!(line.starts_with(&head), "hop {hop}: {line}");
        assert_eq!(line.matches(" ms").count(), 2, "one time per probe: {line}");
        assert!(!line.contains('*') && !line.contains('?'), "{line}");
    }
    assert!(lines[6].starts_with("round trip  "), "{}", lines[6]);
}

#[test]
fn ants_traceroute_without_code_outside_the_checkout_says_to_pass_code() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["traceroute", "198.18.0.6", "--socket", "/nonexistent.sock"])
        .current_dir(dir.path())
        .output()
        .expect("run ants");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pass --code traceroute.wasm"), "{err}");
}
