//! `ants status` and `ants drops` against a running node, over its app socket.

use std::path::PathBuf;
use std::time::Duration;

use ants_app::{AppClient, Inject};
use ants_node::config::Config;
use ants_node::daemon;

use crate::support::{addr, capsule_bytes, run_ants};

/// A node at `address` with an app socket (`n.sock`) in a fresh directory; `extra` is more
/// of its `[node]` table, where `{dir}` stands for the directory.
fn node_at(address: &str, extra: &str) -> (tempfile::TempDir, PathBuf, daemon::DaemonHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("n.sock");
    let text = format!(
        "[node]\naddress = \"{address}\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n{}",
        sock.display(),
        extra.replace("{dir}", &dir.path().display().to_string())
    );
    let path = dir.path().join("n.toml");
    std::fs::write(&path, text).unwrap();
    let node = daemon::spawn(Config::load(&path).unwrap()).expect("node");
    (dir, sock, node)
}

#[test]
fn status_and_drops_show_what_a_running_node_did() {
    let (_dir, sock, node) = node_at("198.18.0.70", "");
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
    let (ok, out, err) = run_ants(&["status", "-s", s]);
    assert!(ok, "{err}");
    assert!(out.starts_with("node 198.18.0.70 (UDP overlay)"), "{out}");
    assert!(
        out.contains(&ty.to_string()[..16]),
        "the protocol table: {out}"
    );
    let (ok, json, err) = run_ants(&["status", "-s", s, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["address"], "198.18.0.70");
    assert_eq!(v["protocols"][ty.to_string()]["runs"], 2);
    let (ok, drops, err) = run_ants(&["drops", "-s", s]);
    assert!(ok, "{err}");
    assert!(drops.contains("node.no-route"), "{drops}");
    assert!(drops.contains("node.stranger"), "{drops}");
    assert!(!drops.contains("node.trapped"), "zero rows hidden: {drops}");
    let (ok, all, _) = run_ants(&["drops", "-s", s, "--all", "--json"]);
    assert!(ok);
    let all: serde_json::Value = serde_json::from_str(&all).expect("JSON");
    assert_eq!(all["node.trapped"], 0);
    assert_eq!(all["node.no-route"], 1);
    // The registered app was not disturbed.
    app.ping().expect("app still connected");
    // A socket nobody listens on: a clear error, not a hang.
    let (ok, _, err) = run_ants(&["status", "-s", "/nonexistent/ants.sock"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/ants.sock"), "{err}");
    node.shutdown().expect("stop");
}

#[test]
fn modules_lists_and_evicts_a_running_nodes_types() {
    let (dir, sock, node) = node_at("198.18.0.71", "code_cache_dir = \"{dir}/code\"\n");
    let code_dir = dir.path().join("code");
    let code = capsule_bytes("forward");
    let len = code.len();
    let mut app = AppClient::connect(&sock, 0).expect("app");
    let inj = Inject::with_code(code, addr("198.18.0.71"), 8, vec![], b"hi".to_vec());
    let ty = app.inject(&inj).expect("inject");
    app.recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("delivered");
    let s = sock.to_str().unwrap();
    let (ok, out, err) = run_ants(&["modules", "-s", s]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&ty.to_string()[..16]))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], len.to_string(), "module bytes: {out}");
    assert_eq!(cells[3], "1", "runs: {out}");
    let (ok, json, _) = run_ants(&["modules", "-s", s, "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["type"], ty.to_string());
    assert_eq!(rows[0]["cached"], true);
    assert!(code_dir.join(format!("{ty}.wasm")).is_file());

    // Evict: gone from memory and from the code directory; a second evict finds nothing.
    let (ok, out, err) = run_ants(&["modules", "-s", s, "--evict", &ty.to_string()]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), format!("evicted {ty}"));
    assert!(!code_dir.join(format!("{ty}.wasm")).exists());
    assert!(!code_dir.join(format!("{ty}.cwasm")).exists());
    let st = node.stats().unwrap();
    assert!(st.cached_types.is_empty(), "{st:?}");
    let (ok, _, err) = run_ants(&["modules", "-s", s, "--evict", &ty.to_string()]);
    assert!(!ok);
    assert!(err.contains("no module of type"), "{err}");
    // The module is needed again: injected with its code, it loads and runs.
    app.inject(&inj).expect("inject again");
    app.recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("delivered after the evict");
    let (ok, _, err) = run_ants(&["modules", "-s", s, "--evict", "not-a-type"]);
    assert!(!ok);
    assert!(err.contains("--evict"), "{err}");
    node.shutdown().expect("stop");
}

#[test]
fn store_dump_shows_a_protocols_entries_with_their_ttl() {
    let (_dir, sock, node) = node_at("198.18.0.72", "");
    let s = sock.to_str().unwrap();
    let (ok, out, _) = run_ants(&["store", "dump", "-s", s]);
    assert!(ok);
    assert_eq!(out.trim(), "the soft-store is empty");
    // keeper stores "hello" under key "k" for 10 minutes at its destination (this node).
    let mut app = AppClient::connect(&sock, 0).expect("app");
    let put = Inject::with_code(
        crate::support::hostile("keeper"),
        addr("198.18.0.72"),
        8,
        vec![],
        b"Phello".to_vec(),
    );
    let ty = app.inject(&put).expect("inject");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while node.stats().unwrap().node.runs == 0 {
        assert!(std::time::Instant::now() < end, "keeper did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, out, err) = run_ants(&["store", "dump", "-s", s]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with(&format!("type {ty}: 1 entries, ")),
        "{out}"
    );
    let entry = lines.next().unwrap();
    let ttl = entry
        .strip_prefix("  key 6b  value 68656c6c6f (5 bytes)  ttl ")
        .and_then(|t| t.strip_suffix(" s"))
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((590.0..=600.0).contains(&ttl), "{out}");
    let (ok, json, _) = run_ants(&[
        "store",
        "dump",
        "-s",
        s,
        "--type",
        &ty.to_string(),
        "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["namespaces"][0]["entries"][0]["value_len"], 5);
    assert_eq!(v["truncated"], false);
    let other = "00".repeat(32);
    let (ok, out, _) = run_ants(&["store", "dump", "-s", s, "--type", &other]);
    assert!(ok);
    assert_eq!(out.trim(), "the soft-store is empty");
    node.shutdown().expect("stop");
}

#[test]
fn top_prints_rates_between_refreshes() {
    let (_dir, sock, node) = node_at("198.18.0.73", "");
    let mut app = AppClient::connect(&sock, 0).expect("app");
    let first = Inject::with_code(
        capsule_bytes("forward"),
        addr("198.18.0.73"),
        8,
        vec![],
        b"hi".to_vec(),
    );
    let ty = app.inject(&first).expect("inject");
    // Keep capsules flowing while top samples.
    let sender = std::thread::spawn(move || {
        for _ in 0..60 {
            let inj = Inject {
                code: None,
                ..first.clone()
            };
            app.inject(&inj).expect("inject");
            std::thread::sleep(Duration::from_millis(10));
        }
        app
    });
    let s = sock.to_str().unwrap();
    let (ok, out, err) = run_ants(&[
        "top",
        "-s",
        s,
        "--plain",
        "--iterations",
        "2",
        "--interval",
        "0.25",
    ]);
    let _app = sender.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.matches("node 198.18.0.73, up ").count(), 2, "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&ty.to_string()[..16]))
        .unwrap_or_else(|| panic!("no protocol row: {out}"));
    let runs_per_s: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(runs_per_s > 0.0, "{out}");
    node.shutdown().expect("stop");
}

#[test]
fn a_store_dump_of_a_full_store_is_cut_to_fit_one_answer() {
    // Two protocols each fill their 1 MiB namespace with ~990 entries of 1,000 bytes: one
    // worker lists 1,000 entries, values cut to 64 bytes, and says the list is cut.
    // A deadline long enough for a debug build to finish each flood.
    let extra = "workers = 1\n[limits]\nmax_exec_time = \"500ms\"\n";
    let (_dir, sock, node) = node_at("198.18.0.74", extra);
    let mut app = AppClient::connect(&sock, 0).expect("app");
    for tag in [b'a', b'b'] {
        let mut code = crate::support::hostile("store_flood");
        code.extend_from_slice(&[0, 3, 1, b'v', tag]); // a custom section: another type
        let inj = Inject::with_code(code, addr("198.18.0.74"), 8, vec![], vec![]);
        app.inject(&inj).expect("inject");
    }
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while node.stats().unwrap().node.runs < 2 {
        assert!(std::time::Instant::now() < end, "the floods did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, json, err) = run_ants(&["store", "dump", "-s", sock.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    assert!(json.len() < 1 << 20, "{} bytes", json.len());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let counts: Vec<_> = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["count"].clone(), n["entries"].as_array().unwrap().len()))
        .collect();
    assert_eq!(v["truncated"], true, "{counts:?}");
    let spaces = v["namespaces"].as_array().unwrap();
    let listed: usize = spaces
        .iter()
        .map(|n| n["entries"].as_array().unwrap().len())
        .sum();
    let counted: u64 = spaces.iter().map(|n| n["count"].as_u64().unwrap()).sum();
    assert_eq!(listed, 1000);
    assert!(counted > 1900, "both namespaces nearly full: {counted}");
    let e = &spaces[0]["entries"][0];
    assert_eq!(
        (e["value_len"].as_u64(), e["value"].as_str().unwrap().len()),
        (Some(1000), 128)
    );
    node.shutdown().expect("stop");
}
