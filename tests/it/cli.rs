//! The `ants` binary, as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn ants(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run ants")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assemble a hostile fixture into `dir/<name>.wasm`.
fn hostile_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.wasm"));
    std::fs::write(&p, hostile(name)).unwrap();
    p
}

#[test]
fn build_prints_the_type_sha256sum_would() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("forward.wasm");
    let o = ants(&[
        "capsule",
        "build",
        "capsules/forward",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = stdout(&o);
    let (ty, path) = line.trim().split_once("  ").expect("`<type>  <path>`");
    assert_eq!(ty.len(), 64);
    assert!(ty.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(Path::new(path), out);
    // The same line sha256sum prints.
    if let Ok(sum) = Command::new("sha256sum").arg(&out).output() {
        assert_eq!(String::from_utf8_lossy(&sum.stdout).trim(), line.trim());
    }
    let hash = ants(&["capsule", "hash", out.to_str().unwrap()]);
    assert_eq!(stdout(&hash), line);
}

#[test]
fn check_accepts_capsules_and_names_the_reason_for_hostile_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = capsule("forward").path;
    let o = ants(&["capsule", "check", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ok"));
    for (name, reason) in [
        ("foreign_import", "may import only from module \"ants\""),
        ("missing_entry", "does not export `ants_on_capsule`"),
        (
            "wrong_signature",
            "imports `ants::log` as func(i32) -> (i32)",
        ),
    ] {
        let f = hostile_file(dir.path(), name);
        let o = ants(&["capsule", "check", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stdout(&o).contains(reason), "{name}: {}", stdout(&o));
    }
    let o = ants(&[
        "capsule",
        "check",
        "--max-module",
        "100",
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("over the 100-byte limit"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn test_reports_traps_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (name, reason) in [
        ("infinite_loop", "TRAPPED: out of fuel"),
        (
            "memory_growth",
            "TRAPPED: memory or table grown past the node's limit",
        ),
        ("deep_recursion", "TRAPPED: call stack exhausted"),
    ] {
        let f = hostile_file(dir.path(), name);
        let o = ants(&["capsule", "test", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stdout(&o).contains(reason), "{name}: {}", stdout(&o));
    }
    let f = hostile_file(dir.path(), "foreign_import");
    let o = ants(&["capsule", "test", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rejected"));
}

#[test]
fn test_json_shows_what_forward_did() {
    let f = capsule("forward").path;
    let f = f.to_str().unwrap();
    let o = ants(&[
        "capsule",
        "test",
        f,
        "--json",
        "--dst",
        "198.18.0.9",
        "--payload",
        "hi",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["outcome"], "returned");
    assert_eq!(v["sends"][0]["next_hop"], "198.18.0.9");
    assert_eq!(v["sends"][0]["payload"], hex::encode("hi"));
    let o = ants(&[
        "capsule",
        "test",
        f,
        "--node",
        "198.18.0.9",
        "--dst",
        "198.18.0.9",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("delivered 1"), "{}", stdout(&o));
}

#[test]
fn help_teaches() {
    let o = ants(&["capsule", "test", "--help"]);
    let text = stdout(&o);
    assert!(text.contains("Example: ants capsule test"), "{text}");
    assert!(text.contains("--route"));
    let o = ants(&["capsule", "abi"]);
    assert!(stdout(&o).contains("route_for_node(addr) -> status"));
}

#[test]
fn test_reports_neighbours_to_flooding_capsules() {
    // anycast floods an advertisement to every neighbour except the one it came from.
    let f = capsule("anycast").path;
    let mut header = vec![1u8, 0, 0, 0, 161];
    header.extend_from_slice(&"198.18.0.1".parse::<ants_wire::Address>().unwrap().0);
    header.extend_from_slice(&[0, 0x01, 0x90]); // hops 0, hold 400 ms
    let o = ants(&[
        "capsule",
        "test",
        f.to_str().unwrap(),
        "--json",
        "--node",
        "198.18.0.2",
        "--src",
        "198.18.0.1",
        "--prev",
        "198.18.0.1",
        "--header-hex",
        &hex::encode(&header),
        "--neighbour",
        "198.18.0.1",
        "--neighbour",
        "198.18.0.3",
        "--neighbour",
        "198.18.0.4",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let hops: Vec<_> = v["sends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["next_hop"].clone())
        .collect();
    assert_eq!(hops, ["198.18.0.3", "198.18.0.4"]);
}

#[test]
fn capsule_new_makes_a_crate_that_tests_builds_and_runs_outside_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("my hops");
    let crate_dir = krate.to_str().unwrap();
    let out = ants(&["capsule", "new", crate_dir]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("created capsule crate my-hops"),
        "{out:?}"
    );
    for f in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
        assert!(krate.join(f).is_file(), "{f}");
    }
    // Again into the same (now not empty) directory: refused.
    let again = ants(&["capsule", "new", crate_dir]);
    assert!(!again.status.success());
    // Its unit tests pass against the mock host (a target directory of this workspace's
    // target keeps the second run fast).
    let test = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .arg("test")
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", root().join("target/capsule-new-test"))
        .output()
        .expect("cargo test");
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(text.contains("test result: ok. 3 passed"), "{text}");
    // It builds to wasm, and the module counts its hop.
    let built = ants(&["capsule", "build", crate_dir, "--quiet"]);
    assert!(built.status.success(), "{built:?}");
    let line = stdout(&built);
    let wasm = line
        .trim_end()
        .split_once("  ")
        .expect("type  path")
        .1
        .to_owned();
    assert!(wasm.ends_with("my_hops.wasm"), "{line}");
    let run = ants(&[
        "capsule",
        "test",
        &wasm,
        "--node",
        "198.18.0.9",
        "--dst",
        "198.18.0.9",
        "--payload",
        "hi",
    ]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        stdout(&run).contains("-> app 0  dst=198.18.0.9 header=0x01 payload=\"hi\""),
        "{}",
        stdout(&run)
    );
}
