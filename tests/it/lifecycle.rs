//! A node's life as an operator sees it: draining on SIGTERM (nothing lost silently),
//! `ants check-config`, `ants --version`.

use std::net::UdpSocket;
use std::time::Duration;

use ants_node::config::Config;
use ants_node::daemon;
use ants_wire::{CapsuleRepr, CapsuleType, Message};

use crate::support::*;

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
    let began = std::time::Instant::now();
    let stopping = std::thread::spawn(move || node.drain().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    send_chunks(&peer, at, ty, &code);
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
    // It exits as soon as nothing is held, not after the 30 s drain time, and counts
    // nothing as lost.
    let stats = stopping.join().unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_secs(10), "the drain took {took:?}");
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

/// A one-node overlay config in `dir`: (its file, its app socket, its text).
fn lone_node(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let cfg = dir.join("n.toml");
    let sock = dir.join("n.sock");
    let text = format!(
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n",
        sock.display()
    );
    std::fs::write(&cfg, &text).unwrap();
    (cfg, sock, text)
}

#[test]
fn sigterm_drains_and_writes_the_final_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, sock, _) = lone_node(dir.path());
    let stats = dir.path().join("stats.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["--log-format", "json", "run", "--allow-root", "--config"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for_socket(&mut child, &sock);
    let log = crate::support::terminate(child);
    // --log-format json: one object per line, for journald and log shippers.
    let messages: Vec<String> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            v["message"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("SIGTERM: draining for at most 2s")),
        "{log}"
    );
    assert!(messages.iter().any(|m| m == "drained"), "{log}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(s["drain_dropped"], 0);
}

/// Edit node `i`'s config file.
fn edit(topo: &crate::topology::Topology, i: usize, from: &str, to: &str) {
    let file = topo.config_file(i);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "{from:?} not in\n{text}");
    std::fs::write(&file, text.replace(from, to)).unwrap();
}

#[test]
fn a_reload_that_tightens_the_code_policy_evicts_code_already_loaded() {
    use ants_app::{AppClient, Inject};
    let topo = crate::topology::Topology::line(3, "");
    let mut rx = AppClient::connect(topo.sock(3), 0).unwrap();
    let mut tx = AppClient::connect(topo.sock(1), 7).unwrap();
    let code = capsule_bytes("forward");
    let ty = ants_wire::CapsuleType(<sha2::Sha256 as sha2::Digest>::digest(&code).into());
    let mut inj = Inject::with_code(code, addr("198.18.0.3"), 16, vec![], b"before".to_vec());
    tx.inject(&inj).unwrap();
    let d = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(d.payload, b"before");
    assert!(topo.stats(2).cached_types.contains(&ty), "n2 has the code");
    // n2 now allows only another type: the code it holds goes, and so do the capsules.
    let other = capsule_bytes("ping");
    let other = ants_wire::CapsuleType(<sha2::Sha256 as sha2::Digest>::digest(&other).into());
    let file = topo.config_file(2);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[code]\npolicy = \"allow-list\"\nallow = [\"{other}\"]\n"),
    )
    .unwrap();
    let answer = topo.reload(2).unwrap();
    assert!(answer.contains("applied"), "{answer}");
    assert!(
        !topo.stats(2).cached_types.contains(&ty),
        "evicted on reload"
    );
    let runs = topo.stats(2).node.runs;
    inj.code = None;
    inj.payload = b"after".to_vec();
    tx.inject(&inj).unwrap();
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).unwrap().is_none(),
        "n2 no longer runs or fetches it"
    );
    let s = topo.stats(2);
    assert_eq!(s.node.runs, runs, "not run at n2");
    assert!(s.loader.policy_refusals >= 1, "{:?}", s.loader);
}

#[test]
fn a_reload_moves_a_route_while_capsules_flow_and_loses_none() {
    use ants_app::{AppClient, Inject};
    // Two ways from n1 to n3: via n2 (the shortest-path choice) and via n4.
    let topo = crate::topology::Topology::start(4, &[(1, 2), (2, 3), (1, 4), (4, 3)], "");
    let mut rx = AppClient::connect(topo.sock(3), 0).unwrap();
    // n4 has the code before the switch (a capsule it must fetch code for may be held, and a
    // burst beyond the pending limit is refused and counted: not what this test is about).
    let mut warm = AppClient::connect(topo.sock(4), 7).unwrap();
    let code = capsule_bytes("forward");
    warm.inject(&Inject::with_code(
        code,
        addr("198.18.0.3"),
        16,
        vec![],
        b"warm".to_vec(),
    ))
    .unwrap();
    let d = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(d.payload, b"warm");
    let n4_before = topo.stats(4).node.runs;
    let sock1 = topo.sock(1);
    let sender = std::thread::spawn(move || {
        let mut tx = AppClient::connect(sock1, 7).unwrap();
        let code = capsule_bytes("forward");
        let mut inj = Inject::with_code(code, addr("198.18.0.3"), 16, vec![], vec![]);
        for k in 0..2000u32 {
            inj.payload = k.to_be_bytes().to_vec();
            tx.inject(&inj).unwrap();
            inj.code = None;
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    edit(
        &topo,
        1,
        "dst = \"198.18.0.3\"\nvia = \"198.18.0.2\"",
        "dst = \"198.18.0.3\"\nvia = \"198.18.0.4\"",
    );
    let held = topo.stats(1).node.held;
    let text = topo.reload(1).unwrap();
    assert!(
        text.contains("applied") && !text.contains("restart"),
        "{text}"
    );
    // Read while the sender still sends (an app's queue holds 1,024 deliveries).
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2000 {
        let d = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_or_else(|| panic!("{} of 2000 delivered", seen.len()));
        let k = u32::from_be_bytes(d.payload.as_slice().try_into().unwrap());
        assert!(seen.insert(k), "capsule {k} delivered twice");
    }
    sender.join().unwrap();
    let (via2, via4) = (topo.stats(2).node.runs, topo.stats(4).node.runs - n4_before);
    assert!(
        via2 > 0 && via4 > 0,
        "both ways carried capsules: {via2} and {via4}"
    );
    assert_eq!(via2 + via4, 2000, "each capsule took one way");
    assert_eq!(
        topo.stats(1).node.held,
        held,
        "n1 kept its code: nothing held after"
    );

    // A bad file is refused with its place, and the running config stays.
    edit(&topo, 1, "via = \"198.18.0.4\"", "via = \"198.18.0.99\"");
    let e = topo.reload(1).unwrap_err();
    assert!(e.contains("n1.toml line") && e.contains("via"), "{e}");
    // What cannot change in place is named.
    edit(&topo, 1, "via = \"198.18.0.99\"", "via = \"198.18.0.4\"");
    let port = topo.local_addr(1).port();
    edit(&topo, 1, &format!("127.0.0.1:{port}\""), "127.0.0.1:1\"");
    let text = topo.reload(1).unwrap();
    assert!(
        text.contains("needs a restart to change: [node] listen"),
        "{text}"
    );
    // The socket's CLI says the same.
    let (ok, out, err) = run_ants(&["reload", "-s", topo.sock(1).to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("[node] listen"), "{out}");
}

#[test]
fn sighup_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, sock, base) = lone_node(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["run", "--allow-root", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for_socket(&mut child, &sock);
    crate::support::reload_with_a_neighbour(&cfg, &base, child.id(), &sock);
    let log = crate::support::terminate(child);
    assert!(
        log.contains("SIGHUP: reloading") && log.contains("reloaded"),
        "{log}"
    );
}

#[test]
fn the_overlay_refuses_root_unless_told() {
    if !crate::netns::require_root("the_overlay_refuses_root_unless_told") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("n.toml");
    std::fs::write(
        &cfg,
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("ANTS_ALLOW_ROOT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refusing to run the UDP overlay as root"),
        "{err}"
    );
    assert!(err.contains("--allow-root"), "{err}");
    // ANTS_ALLOW_ROOT=1, as the demo scripts set it when run as root: the node starts.
    let (cfg, sock, _) = lone_node(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ANTS_ALLOW_ROOT", "1")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for_socket(&mut child, &sock);
    let log = crate::support::terminate(child);
    assert!(log.contains("running the UDP overlay as root"), "{log}");
}
