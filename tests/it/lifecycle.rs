//! A node's life as an operator sees it: draining on SIGTERM (nothing lost silently),
//! `ants check-config`, `ants --version`.

use std::net::UdpSocket;
use std::time::Duration;

use ants_node::config::Config;
use ants_node::daemon;
use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleRepr, CapsuleType, CodeChunk, Message};

use crate::support::*;

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).unwrap();
    buf
}

/// A node (198.18.0.2) whose only neighbour, 198.18.0.1, is this test's socket; it routes
/// 198.18.0.9 back through that neighbour.
fn node_beside(peer: &UdpSocket, drain: &str) -> daemon::DaemonHandle {
    let port = peer.local_addr().unwrap().port();
    let text = format!(
        "[node]\naddress = \"198.18.0.2\"\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         [[neighbour]]\naddress = \"198.18.0.1\"\nendpoint = \"127.0.0.1:{port}\"\n\
         [[route]]\ndst = \"198.18.0.9\"\nvia = \"198.18.0.1\"\n\
         [limits]\ndrain_time = \"{drain}\"\n"
    );
    daemon::spawn(Config::parse(&text, "test").unwrap()).unwrap()
}

/// The peer sends a `forward` capsule for 198.18.0.9 and waits for the node's code request.
fn send_held_capsule(peer: &UdpSocket, node: std::net::SocketAddr, ty: CapsuleType) {
    let c = Message::Capsule(CapsuleRepr {
        flags: 0,
        resource: 8,
        capsule_type: ty,
        src: addr("198.18.0.1"),
        dst: addr("198.18.0.9"),
        prev: addr("198.18.0.1"),
        header: &[],
        payload: b"held",
        trace: None,
    });
    peer.send_to(&encode(&c), node).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("the node asks for the code");
    assert!(matches!(
        Message::parse(&buf[..n]),
        Ok(Message::CodeRequest(_))
    ));
}

#[test]
fn a_drain_finishes_a_capsule_held_for_its_code_then_exits() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let node = node_beside(&peer, "30s");
    let at = node.local_addr();
    let code = capsule_bytes("forward");
    let ty = ants_app::capsule_type_of(&code);
    send_held_capsule(&peer, at, ty);

    // SIGTERM's drain starts while the capsule waits; then the code arrives.
    let stopping = std::thread::spawn(move || node.drain().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    for (i, chunk) in code.chunks(CHUNK_LEN).enumerate() {
        let m = Message::CodeChunk(CodeChunk {
            capsule_type: ty,
            total_len: code.len() as u32,
            offset: (i * CHUNK_LEN) as u32,
            bytes: chunk,
        });
        peer.send_to(&encode(&m), at).unwrap();
    }
    let mut buf = [0u8; 2048];
    loop {
        // Retries of the code request may come first.
        let (n, _) = peer
            .recv_from(&mut buf)
            .expect("the held capsule is forwarded");
        match Message::parse(&buf[..n]) {
            Ok(Message::Capsule(c)) => break assert_eq!(c.payload, b"held"),
            Ok(Message::CodeRequest(_)) => {}
            other => panic!("expected the capsule, got {other:?}"),
        }
    }
    // It exits as soon as nothing is held (not after the 30 s drain time: the test's
    // own time limit would catch that), and counts nothing as lost.
    let stats = stopping.join().unwrap();
    assert_eq!(stats.drain_dropped, 0);
    assert_eq!(stats.node.sent, 1);
}

#[test]
fn a_drain_that_runs_out_of_time_counts_what_it_drops() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let node = node_beside(&peer, "200ms");
    let code = capsule_bytes("forward");
    send_held_capsule(&peer, node.local_addr(), ants_app::capsule_type_of(&code));
    // The code never comes.
    let stats = node.drain().unwrap();
    assert_eq!(
        stats.drain_dropped, 1,
        "the held capsule is counted, not lost silently"
    );
    assert_eq!(stats.node.sent, 0);
}

#[test]
fn check_config_reports_each_file_and_fails_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:7001\"\n[trace]\nsample = 2\n",
    )
    .unwrap();
    let (ok, out, err) = run_ants(&["check-config", "examples/line5/n1.toml"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("examples/line5/n1.toml: ok — node 198.18.0.1"),
        "{out}"
    );
    let (ok, out, err) = run_ants(&[
        "check-config",
        "examples/line5/n2.toml",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(out.contains("n2.toml: ok"), "{out}");
    assert!(
        err.contains("bad.toml line 5") && err.contains("sample"),
        "{err}"
    );
}

#[test]
fn version_says_exactly_what_runs() {
    let (ok, out, _) = run_ants(&["--version"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], concat!("ants ", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with("revision: "), "{out}");
    assert!(out.contains("wire format: versions 1 and 2"), "{out}");
    assert!(out.contains("capsule ABI: 2"), "{out}");
    let wasmtime = out
        .lines()
        .find_map(|l| l.strip_prefix("wasmtime: "))
        .unwrap();
    assert!(wasmtime.split('.').count() == 3, "{out}");
}

#[test]
fn sigterm_drains_and_writes_the_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("n.toml");
    let sock = dir.path().join("n.sock");
    let stats = dir.path().join("stats.json");
    std::fs::write(
        &cfg,
        format!(
            "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = std::time::Instant::now();
    while !sock.exists() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "the node did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: `kill` with a child's pid and a valid signal has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("SIGTERM: draining for at most 2s"), "{log}");
    assert!(log.contains("drained"), "{log}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(s["drain_dropped"], 0);
}
