//! `ants status` and `ants drops` against a running node, over its app socket.

use std::process::Command;
use std::time::Duration;

use ants_app::{AppClient, Inject};
use ants_node::config::Config;
use ants_node::daemon;

use crate::support::{addr, capsule_bytes};

fn ants(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(args)
        .output()
        .expect("run ants");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_and_drops_show_what_a_running_node_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("n.sock");
    let text = format!(
        "[node]\naddress = \"198.18.0.70\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n",
        sock.display()
    );
    let path = dir.path().join("n.toml");
    std::fs::write(&path, text).unwrap();
    let node = daemon::spawn(Config::load(&path).unwrap()).expect("node");
    // One capsule delivered here, one to an address the node has no route to.
    let mut app = AppClient::connect(&sock, 0).expect("app");
    let first = Inject::with_code(
        capsule_bytes("forward"),
        addr("198.18.0.70"),
        8,
        vec![],
        b"hi".to_vec(),
    );
    let ty = app.inject(&first).expect("inject");
    app.recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("delivered");
    let lost = Inject {
        code: None,
        dst: addr("203.0.113.9"),
        ..first.clone()
    };
    app.inject(&lost).expect("inject");
    // A datagram from a stranger: dropped and counted.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"not a capsule", node.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let s = sock.to_str().unwrap();
    let (ok, out, err) = ants(&["status", "-s", s]);
    assert!(ok, "{err}");
    assert!(out.starts_with("node 198.18.0.70 (UDP overlay)"), "{out}");
    assert!(
        out.contains(&ty.to_string()[..16]),
        "the protocol table: {out}"
    );
    let (ok, json, err) = ants(&["status", "-s", s, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["address"], "198.18.0.70");
    assert_eq!(v["protocols"][ty.to_string()]["runs"], 2);
    let (ok, drops, err) = ants(&["drops", "-s", s]);
    assert!(ok, "{err}");
    assert!(drops.contains("node.no-route"), "{drops}");
    assert!(drops.contains("node.stranger"), "{drops}");
    assert!(!drops.contains("node.trapped"), "zero rows hidden: {drops}");
    let (ok, all, _) = ants(&["drops", "-s", s, "--all", "--json"]);
    assert!(ok);
    let all: serde_json::Value = serde_json::from_str(&all).expect("JSON");
    assert_eq!(all["node.trapped"], 0);
    assert_eq!(all["node.no-route"], 1);
    // The registered app was not disturbed.
    app.ping().expect("app still connected");
    // A socket nobody listens on: a clear error, not a hang.
    let (ok, _, err) = ants(&["status", "-s", "/nonexistent/ants.sock"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/ants.sock"), "{err}");
    node.shutdown().expect("stop");
}
