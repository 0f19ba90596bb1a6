//! `[node] workers`: a node's capsule types split across forwarding threads, each type on
//! exactly one worker (its soft-store, code loads and order with it), nothing lost when
//! the kernel hands a worker another's datagrams (GSO/GRO buffers of mixed types).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_wire::CapsuleType;

use crate::support::{addr, fresh_forward};
use crate::topology::Topology;

/// The worker of 2 that runs `ty` (what the kernel's steering program computes).
fn owner(ty: &CapsuleType) -> usize {
    let mut datagram = vec![0u8; 40];
    datagram[8..40].copy_from_slice(ty.as_bytes());
    ants_node::udp::steer(&datagram, 2)
}

fn type_of(code: &[u8]) -> CapsuleType {
    Inject::with_code(code.to_vec(), addr("198.18.0.1"), 0, vec![], vec![]).capsule_type
}

/// Two forward capsules of new types that belong to different workers of 2.
fn two_types_on_different_workers() -> [(Vec<u8>, CapsuleType); 2] {
    let first = fresh_forward("workers-0", 0);
    let a = type_of(&first);
    for k in 1..64 {
        let code = fresh_forward(&format!("workers-{k}"), 0);
        let b = type_of(&code);
        if owner(&b) != owner(&a) {
            return [(first, a), (code, b)];
        }
    }
    panic!("64 types, all on one worker");
}

#[test]
fn two_workers_run_each_type_on_one_worker_and_lose_nothing() {
    let line = Topology::start_with(3, &[(1, 2), (2, 3)], "", "workers = 2\n");
    let [(code_a, a), (code_b, b)] = two_types_on_different_workers();
    let mut rx = AppClient::connect(line.sock(3), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let inject = |code: Option<Vec<u8>>, ty: CapsuleType, k: u32| Inject {
        capsule_type: ty,
        code,
        ..Inject::with_code(
            vec![],
            addr("198.18.0.3"),
            64,
            vec![],
            k.to_be_bytes().to_vec(),
        )
    };
    // First one of each type, with its code: both load hop by hop.
    assert_eq!(tx.inject(&inject(Some(code_a), a, 0)).unwrap(), a);
    assert_eq!(tx.inject(&inject(Some(code_b), b, 1)).unwrap(), b);
    // Then 2,000 more in bursts, the two types interleaved, so that n1's batched sends (one
    // UDP GSO buffer per run of same-size datagrams) mix them and n2's kernel steers the
    // buffer by its first type: the other type's datagrams are handed over.
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(60);
        while got.len() < 2002 && Instant::now() < end {
            if let Ok(Some(d)) = rx.recv_timeout(Duration::from_millis(500)) {
                got.push(d);
            }
        }
        got
    });
    // Let both loads finish first (a capsule sent during a load is held, not lost, but a
    // burst would overflow the pending queue).
    std::thread::sleep(Duration::from_secs(3));
    for k in 2..2002u32 {
        let ty = if k % 2 == 0 { a } else { b };
        tx.inject(&inject(None, ty, k)).unwrap();
        if k % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let got = receiver.join().unwrap();
    let seen: BTreeSet<u32> = got
        .iter()
        .map(|d| u32::from_be_bytes(d.payload[..4].try_into().unwrap()))
        .collect();
    assert_eq!(got.len(), 2002, "every capsule delivered once");
    assert_eq!(seen.len(), 2002);
    for d in &got {
        let k = u32::from_be_bytes(d.payload[..4].try_into().unwrap());
        assert_eq!(d.capsule_type, if k % 2 == 0 { a } else { b });
    }

    let s = line.stats(2);
    assert_eq!(s.workers.len(), 2);
    for (ty, name) in [(a, "a"), (b, "b")] {
        let w = owner(&ty);
        assert!(
            s.workers[w].protocols.contains(&ty),
            "type {name} ran on worker {w}: {:?}",
            s.workers
        );
        assert!(
            !s.workers[1 - w].protocols.contains(&ty),
            "type {name} ran only on worker {w}: {:?}",
            s.workers
        );
        let runs = s.protocols.iter().find(|(t, _)| *t == ty).unwrap().1.runs;
        assert_eq!(runs, 1001, "type {name} ran once per capsule at n2");
    }
    assert!(
        s.workers.iter().all(|w| w.runs > 0),
        "both workers ran capsules"
    );
    // Both neighbours were heard from (n1 sent capsules, n3 asked for code), recently.
    assert_eq!(s.neighbours.len(), 2, "{:?}", s.neighbours);
    for n in &s.neighbours {
        let heard = n.last_heard.unwrap_or_else(|| panic!("{n:?} never heard"));
        assert!(heard < Duration::from_secs(60), "{n:?}");
        assert!(n.datagrams > 0, "{n:?}");
    }
    let n1 = line.stats(1);
    assert_eq!(
        n1.routes,
        [("198.18.0.3/32".to_string(), "198.18.0.2".to_string())],
        "n1 routes to n3 via n2"
    );
    assert!(n1.uptime > Duration::ZERO);
    assert_eq!(s.handoff_dropped, 0);
    eprintln!(
        "n2: {} datagrams handed between workers; per worker {:?}",
        s.handed_off,
        s.workers
            .iter()
            .map(|w| (w.datagrams_in, w.runs, w.handed_off))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_restarted_node_restores_each_type_on_its_worker_from_one_directory() {
    let mut line = Topology::start_with(2, &[(1, 2)], "", "workers = 2\n");
    let [(code_a, a), (code_b, b)] = two_types_on_different_workers();
    let mut rx = AppClient::connect(line.sock(2), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    for (code, ty) in [(&code_a, a), (&code_b, b)] {
        let inj = Inject::with_code(code.clone(), addr("198.18.0.2"), 8, vec![], b"x".to_vec());
        assert_eq!(tx.inject(&inj).unwrap(), ty);
        assert!(rx.recv_timeout(Duration::from_secs(20)).unwrap().is_some());
    }
    // n2 compiled both and stored them, each worker its own, in one directory.
    line.restart(2);
    let s = line.stats(2);
    assert_eq!(
        s.persisted.0, 2,
        "both types indexed after the restart: {s:?}"
    );
    let mut rx = AppClient::connect(line.sock(2), 0).unwrap();
    for (code, ty) in [(&code_a, a), (&code_b, b)] {
        let inj = Inject {
            code: None,
            ..Inject::with_code(code.clone(), addr("198.18.0.2"), 8, vec![], b"y".to_vec())
        };
        assert_eq!(tx.inject(&inj).unwrap(), ty);
        let d = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
        assert_eq!(d.capsule_type, ty);
    }
    let s = line.stats(2);
    assert_eq!(s.loader.fetches_started, 0, "restored, not fetched: {s:?}");
    assert_eq!(s.persisted.1, 2, "both restores reused the compiled form");
}

/// A 92-byte capsule of type `ty` (no header, no payload).
fn bare_capsule(ty: &CapsuleType) -> Vec<u8> {
    let mut c = vec![0xA7, 0x5C, 1, 1, 0, 0, 0, 8];
    c.extend_from_slice(ty.as_bytes());
    c.extend_from_slice(&[0; 48]);
    c.extend_from_slice(&[0; 4]);
    c
}

#[test]
fn a_gso_buffer_of_mixed_types_is_split_between_the_workers() {
    // One UDP GSO send from a neighbour carrying a capsule of type a then one of type b: the
    // kernel steers the whole buffer by a's type; the worker of a hands b's capsule to the
    // worker of b, whose node holds it and fetches b's code from the neighbour. A stranger's
    // buffer is dropped where it lands, never copied to another worker.
    let [(_, a), (_, b)] = two_types_on_different_workers();
    let cfg = ants_node::udp::UdpConfig::default();
    let neighbour =
        ants_node::udp::BatchSocket::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let stranger = ants_node::udp::BatchSocket::bind("127.0.0.1:0".parse().unwrap(), &cfg).unwrap();
    let text = format!(
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         [[neighbour]]\naddress = \"198.18.0.9\"\nendpoint = \"{}\"\n",
        neighbour.local_addr().unwrap()
    );
    let node = ants_node::daemon::spawn(ants_node::config::Config::parse(&text, "w.toml").unwrap())
        .expect("node");
    let send_both = |sock: &ants_node::udp::BatchSocket| {
        let mut batch = ants_node::udp::SendBatch::new(&cfg);
        assert!(batch.push(node.local_addr(), &bare_capsule(&a)));
        assert!(batch.push(node.local_addr(), &bare_capsule(&b)));
        assert_eq!(sock.send_batch(&mut batch).unwrap(), 2);
        assert_eq!(batch.gso_sends(), 1, "one GSO send");
    };
    let wait = |done: &dyn Fn(&ants_node::daemon::Stats) -> bool| {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let s = node.stats().unwrap();
            if done(&s) || Instant::now() > end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    send_both(&neighbour);
    let s = wait(&|s| s.node.held >= 2);
    assert_eq!(s.node.held, 2, "{s:?}");
    assert_eq!((s.handed_off, s.handoff_dropped), (1, 0));
    assert_eq!(s.workers[owner(&a)].datagrams_in, 1);
    assert_eq!(s.workers[owner(&b)].datagrams_in, 1);
    assert_eq!(s.workers[owner(&a)].handed_off, 1);
    assert_eq!(
        s.loader.fetches_started, 2,
        "each worker fetches its own type"
    );
    send_both(&stranger);
    let stranger_drops =
        |s: &ants_node::daemon::Stats| s.node.drops_of(ants_core::node::DropReason::Stranger);
    let s = wait(&|s| stranger_drops(s) >= 2);
    assert_eq!(stranger_drops(&s), 2, "{s:?}");
    assert_eq!(s.handed_off, 1, "nothing of the stranger's was handed over");
    assert_eq!(s.workers[owner(&a)].datagrams_in, 3);
}
