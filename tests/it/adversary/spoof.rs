//! Datagrams with a configured neighbour's source address, sent through a raw socket (root):
//! a spoofed code request must not make the node blast a module at the neighbour, and
//! spoofed chunks must not get the honest neighbour distrusted.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_wire::code::CHUNK_LEN;
use ants_wire::{CodeChunk, CodeRequest, Message};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::code::{fresh_forward, legit_new_type_arrives, module};
use super::harness::{Attack, Field, Setup, T, encode, type_of};
use crate::netns::require_root;
use crate::support::addr;

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(v) => v,
        SocketAddr::V6(_) => panic!("the field is on IPv4 loopback"),
    }
}

/// Send `payload` as a UDP datagram from `src` to `dst` (a raw socket writes the IP header).
fn spoof(src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let (src, dst) = (v4(src), v4(dst));
    let udp_len = 8 + payload.len();
    let mut p = Vec::with_capacity(20 + udp_len);
    p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    p.extend_from_slice(payload);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket");
    sock.set_header_included_v4(true).expect("IP_HDRINCL");
    sock.send_to(&p, &SockAddr::from(dst))
        .expect("send spoofed");
}

#[test]
fn a_spoofed_code_request_from_a_neighbours_address_gets_it_one_window_at_most() {
    if !require_root("a_spoofed_code_request_from_a_neighbours_address_gets_it_one_window_at_most")
    {
        return;
    }
    let setup = Setup {
        attack_for: Duration::from_secs(2),
        ..Setup::default()
    };
    // A large module T holds (a local app ran it once).
    let big = module(1, 9_000);
    let big_chunks = big.len().div_ceil(CHUNK_LEN) as u64;
    assert!(big_chunks > 64, "{big_chunks} chunks");
    let ty = type_of(&big);
    let (r, (one, many, spoofed, took)) = Field::start(&setup).run(&setup, move |a: &Attack| {
        let mut app = AppClient::connect(&a.t_sock, 78).unwrap();
        app.inject(&Inject::with_code(big.clone(), addr(T), 1, vec![], vec![]))
            .unwrap();
        let unsolicited = || a.s_stats.get().map_or(0, |s| s.loader.chunks_unsolicited);
        let req = encode(&Message::CodeRequest(CodeRequest {
            capsule_type: ty,
            first_chunk: 0,
            bitmap: &[],
        }));
        // One spoofed request for the whole module.
        spoof(a.s_endpoint, a.target, &req);
        std::thread::sleep(Duration::from_millis(300));
        let one = unsolicited();
        // Then one every 30 ms.
        let started = Instant::now();
        let mut spoofed = 1u64;
        while !a.stopped() && started.elapsed() < Duration::from_millis(1500) {
            spoof(a.s_endpoint, a.target, &req);
            spoofed += 1;
            std::thread::sleep(Duration::from_millis(30));
        }
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        (one, unsolicited(), spoofed, took)
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    // One request: one window (32 chunks), not the module's {big_chunks}.
    assert!(
        (1..=32).contains(&one),
        "one spoofed request made T send S {one} chunks"
    );
    // All of them: at most the serving bucket's burst (64 KiB) and rate (1 MiB/s) for the
    // time the attack took (and never more than a window per request).
    let budget = (64 * 1024 + (1 << 20) * took.as_millis() as u64 / 1000) / CHUNK_LEN as u64;
    assert!(
        many <= (budget + 32).min(spoofed * 32),
        "{spoofed} spoofed requests made T send S {many} chunks (budget {budget})"
    );
    assert!(r.counter("loader/requests_truncated") >= 1, "{}", r.stats);
}

#[test]
fn spoofed_chunks_do_not_get_an_honest_neighbour_distrusted() {
    if !require_root("spoofed_chunks_do_not_get_an_honest_neighbour_distrusted") {
        return;
    }
    let setup = Setup {
        attack_for: Duration::from_secs(4),
        ..Setup::default()
    };
    let code = fresh_forward("spoofed", 8 * 1024);
    let ty = type_of(&code);
    let (r, arrived) = Field::start(&setup).run(&setup, move |a: &Attack| {
        std::thread::scope(|s| {
            // Forged chunks of the type, "from" S, over and over.
            s.spawn(|| {
                let junk = vec![0xEE; code.len()];
                while !a.stopped() {
                    for (i, bytes) in junk.chunks(CHUNK_LEN).enumerate() {
                        let m = encode(&Message::CodeChunk(CodeChunk {
                            capsule_type: ty,
                            total_len: junk.len() as u32,
                            offset: (i * CHUNK_LEN) as u32,
                            bytes,
                        }));
                        spoof(a.s_endpoint, a.target, &m);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            legit_new_type_arrives(a, code.clone(), Duration::from_secs(3))
        })
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    assert!(
        arrived,
        "the honest neighbour's new type loaded despite the forgeries"
    );
    assert_eq!(r.counter("loader/distrust_refusals"), 0, "{}", r.stats);
    assert!(r.counter("loader/chunks_unsolicited") >= 1, "{}", r.stats);
}
