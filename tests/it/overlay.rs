//! Real `ants run` nodes (in-process, each on its own thread and runtime) on loopback UDP:
//! demand loading across hops, restart with persisted code, loss, spoofing, liars.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_core::node::DropReason;
use ants_node::config::Config;
use ants_node::daemon;
use ants_wire::{CapsuleRepr, CapsuleType, CodeRequest, Message};

use crate::support::*;
use crate::topology::{Topology, free_ports};

fn forward_inject(dst: &str, payload: &[u8]) -> Inject {
    Inject::with_code(
        capsule_bytes("forward"),
        addr(dst),
        64,
        vec![],
        payload.to_vec(),
    )
}

/// Wait for `n` deliveries on `client`, up to `timeout`.
fn collect(client: &mut AppClient, n: usize, timeout: Duration) -> Vec<ants_app::Delivery> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        match client.recv_timeout(left) {
            Ok(Some(d)) => got.push(d),
            _ => break,
        }
    }
    got
}

#[test]
fn five_node_line_demand_loads_then_forwards_10000_without_loss() {
    let mut line = Topology::line(5, "");
    let mut rx = AppClient::connect(line.sock(5), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let first = forward_inject("198.18.0.5", b"first");
    let ty = tx.inject(&first).unwrap();
    let got = collect(&mut rx, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "the first capsule reaches the far end");
    assert_eq!(got[0].payload, b"first");
    assert_eq!(got[0].src, addr("198.18.0.1"));
    for i in 2..=5 {
        let s = line.stats(i);
        assert!(s.cached_types.contains(&ty), "n{i} caches the module");
        assert!(s.loader.requests_sent >= 1, "n{i} fetched the code");
    }
    // 10,000 more at a moderate rate (5,000/s), code already everywhere; the receiver reads
    // concurrently, as an app must (its queue is bounded and overflow is counted).
    let receiver = std::thread::spawn(move || {
        let got = collect(&mut rx, 10_000, Duration::from_secs(30));
        (rx, got)
    });
    let start = Instant::now();
    for k in 0..10_000u32 {
        let inj = Inject {
            code: None,
            payload: k.to_be_bytes().to_vec(),
            ..first.clone()
        };
        tx.inject(&inj).unwrap();
        let due = start + Duration::from_micros(200 * u64::from(k + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let (mut rx, got) = receiver.join().unwrap();
    assert_eq!(got.len(), 10_000, "no loss");
    let mut seen: Vec<u32> = got
        .iter()
        .map(|d| u32::from_be_bytes(d.payload[..4].try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 10_000, "each exactly once");

    // Restart the middle node: it indexes its code directory (reading no module yet)...
    line.restart(3);
    assert_eq!(
        line.stats(3).persisted,
        (1, 0),
        "one module indexed, none read"
    );
    tx.inject(&Inject {
        code: None,
        payload: b"after restart".to_vec(),
        ..first.clone()
    })
    .unwrap();
    let got = collect(&mut rx, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    // ...and restores it from its compiled form when the first capsule needs it.
    let s = line.stats(3);
    assert_eq!(s.persisted, (1, 1), "restored from its compiled form");
    assert_eq!(s.loader.requests_sent, 0, "no code request after restart");
}

#[test]
fn loading_completes_with_20_percent_loss_on_code_transfer() {
    // Each node's loss pattern is seeded by its own seed (derived from its address).
    let line = Topology::line(5, "[fault]\ncode_loss = 0.2\n");
    let mut rx = AppClient::connect(line.sock(5), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    tx.inject(&forward_inject("198.18.0.5", b"lossy")).unwrap();
    let got = collect(&mut rx, 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "loaded despite loss");
    let dropped: u64 = (1..=5).map(|i| line.stats(i).fault_dropped).sum();
    assert!(dropped > 0, "the fault injector did drop code messages");
}

#[test]
fn a_spoofed_code_request_gets_zero_bytes() {
    let line = Topology::line(2, "");
    let mut rx = AppClient::connect(line.sock(2), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let ty = tx.inject(&forward_inject("198.18.0.2", b"x")).unwrap();
    assert_eq!(collect(&mut rx, 1, Duration::from_secs(10)).len(), 1);
    // A stranger (not a neighbour, never sent this type) asks n1 for the code.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let req = Message::CodeRequest(CodeRequest {
        capsule_type: ty,
        first_chunk: 0,
        bitmap: &[],
    });
    stranger.send_to(&encode(&req), line.local_addr(1)).unwrap();
    let mut buf = [0u8; 2048];
    assert!(stranger.recv_from(&mut buf).is_err(), "no reply at all");
    // Not even looked at: strangers' datagrams are dropped before they are parsed.
    let s = line.stats(1);
    assert_eq!(s.node.drops_of(DropReason::Stranger), 1);
    assert_eq!(s.loader.requests_unauthorized, 0);
}

#[test]
fn a_lying_neighbour_is_caught_and_the_honest_path_completes() {
    // T (198.18.0.2) has two neighbours: honest H (198.18.0.1, a real node holding the code)
    // and a liar L (198.18.0.3, this test's socket) that serves wrong bytes.
    let dir = tempfile::tempdir().unwrap();
    let liar = UdpSocket::bind("127.0.0.1:0").unwrap();
    liar.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ports = free_ports(2);
    let lport = liar.local_addr().unwrap().port();
    let mk = |text: String| Config::parse(&text, "test").unwrap();
    let h = daemon::spawn(mk(format!(
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:{}\"\napp_socket = \"{}\"\n\
         [[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:{}\"\n",
        ports[0],
        dir.path().join("h.sock").display(),
        ports[1]
    )))
    .unwrap();
    let t = daemon::spawn(mk(format!(
        "[node]\naddress = \"198.18.0.2\"\nlisten = \"127.0.0.1:{}\"\napp_socket = \"{}\"\n\
         [[neighbour]]\naddress = \"198.18.0.1\"\nendpoint = \"127.0.0.1:{}\"\n\
         [[neighbour]]\naddress = \"198.18.0.3\"\nendpoint = \"127.0.0.1:{lport}\"\n",
        ports[1],
        dir.path().join("t.sock").display(),
        ports[0]
    )))
    .unwrap();
    let mut rx = AppClient::connect(dir.path().join("t.sock"), 0).unwrap();
    let code = capsule_bytes("forward");
    let ty = CapsuleType(<[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(
        &code,
    )));

    // The liar sends a capsule of that type, then answers T's code request with wrong bytes.
    let capsule = Message::Capsule(CapsuleRepr {
        flags: 0,
        resource: 8,
        capsule_type: ty,
        src: addr("198.18.0.3"),
        dst: addr("198.18.0.2"),
        prev: addr("198.18.0.3"),
        header: &[],
        payload: b"from the liar",
        trace: None,
    });
    liar.send_to(&encode(&capsule), t.local_addr()).unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = liar
        .recv_from(&mut buf)
        .expect("T asks the liar for the code");
    assert!(matches!(
        Message::parse(&buf[..n]),
        Ok(Message::CodeRequest(_))
    ));
    let mut bad = code.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    send_chunks(&liar, from, ty, &bad);
    let end = Instant::now() + Duration::from_secs(5);
    while t.stats().unwrap().loader.hash_mismatches == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        t.stats().unwrap().loader.hash_mismatches,
        1,
        "mismatch counted"
    );
    assert!(
        collect(&mut rx, 1, Duration::from_millis(300)).is_empty(),
        "nothing ran"
    );

    // The honest path: H's app sends a capsule of the same type to T; T fetches from H.
    let mut tx = AppClient::connect(dir.path().join("h.sock"), 7).unwrap();
    tx.inject(&forward_inject("198.18.0.2", b"honest")).unwrap();
    let got = collect(&mut rx, 2, Duration::from_secs(10));
    assert!(got.iter().any(|d| d.payload == b"honest"), "{got:?}");
    let s = t.stats().unwrap();
    assert!(s.cached_types.contains(&ty));
    h.shutdown().unwrap();
}
