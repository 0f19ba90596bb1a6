//! What ships to edge hosts (`dist/`): the systemd unit passes `systemd-analyze verify`, its
//! exposure is rated, and its command line runs a node as an unprivileged user that reloads
//! on SIGHUP and drains on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::tool_or_root;
use crate::support::*;

/// The unit with `/usr/bin/ants` replaced by the built binary, as `name` in `dir`.
fn unit_copy(dir: &Path, unit: &str, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("dist/systemd").join(unit)).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        text.replace("/usr/bin/ants", env!("CARGO_BIN_EXE_ants")),
    )
    .unwrap();
    path
}

#[test]
fn the_units_verify_and_the_overlay_unit_is_rated_ok() {
    if !tool_or_root("systemd-analyze", "systemd", "checking the systemd units") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `Documentation=man:ants(1)`: verify looks the page up, so make it.
    let man = dir.path().join("man");
    let (ok, _, err) = run_ants(&["manual", man.join("man1").to_str().unwrap()]);
    assert!(ok, "{err}");
    for (unit, name) in [
        ("ants@.service", "ants@edge1.service"),
        ("ants-router@.service", "ants-router@r1.service"),
    ] {
        let path = unit_copy(dir.path(), unit, name);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("MANPATH", &man)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{unit}: {err}"
        );
    }
    let path = unit_copy(dir.path(), "ants@.service", "ants@edge1.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for ants@edge1.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in\n{text}"));
    eprintln!("ants@.service exposure {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0 (OK):\n{text}");
}

#[test]
fn the_units_command_line_runs_a_node_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("ANTS_REQUIRE_ROOT_TESTS").is_none(),
            "CI runs this test as root"
        );
        return;
    }
    // The state and runtime directories systemd would make, owned by the service user.
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (state, run) = (top.join("state"), top.join("run"));
    for d in [&state, &run] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let ok = Command::new("chown")
            .arg("nobody:nogroup")
            .arg(d)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let cfg = top.join("edge1.toml");
    let sock = run.join("app.sock");
    let base = format!(
        "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n\
         code_cache_dir = \"{}\"\n",
        sock.display(),
        state.join("code").display()
    );
    std::fs::write(&cfg, &base).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    // ExecStartPre, then ExecStart, as the unit's user.
    let check = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            env!("CARGO_BIN_EXE_ants"),
            "check-config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            env!("CARGO_BIN_EXE_ants"),
            "run",
            "--config",
        ])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("ANTS_ALLOW_ROOT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = Instant::now();
    while !sock.exists() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "the node did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The node's process runs as nobody.
    let pid = Command::new("pgrep")
        .args(["-u", "nobody", "-f", "ants run --config"])
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8_lossy(&pid.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a node process owned by nobody");
    // ExecReload: a new neighbour, applied in place.
    std::fs::write(
        &cfg,
        format!("{base}[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:9\"\n"),
    )
    .unwrap();
    // SAFETY: `kill` with a pid and a valid signal has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let t = Instant::now();
    loop {
        let s = ants_app::query_stats(&sock, Duration::from_secs(5)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        if v["neighbours"].as_array().is_some_and(|n| n.len() == 1) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not reloaded: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // KillSignal=SIGTERM: drained.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("drained"), "{log}");
}
