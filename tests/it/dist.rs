//! What ships to edge hosts (`dist/`): the systemd unit passes `systemd-analyze verify`, its
//! exposure is rated, and its command line runs a node as an unprivileged user that reloads
//! on SIGHUP and drains on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

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
    if !crate::netns::require_root("the_units_command_line_runs_a_node_as_an_unprivileged_user") {
        return;
    }
    let unit = std::fs::read_to_string(root().join("dist/systemd/ants@.service")).unwrap();
    run_unit_as_nobody(&unit, Path::new(env!("CARGO_BIN_EXE_ants")));
}

/// Run `unit`'s `ExecStartPre` and `ExecStart` command lines (with `/usr/bin/ants` = `ants`)
/// as `nobody` over directories like the unit's, then `ExecReload` (SIGHUP, a new
/// neighbour) and `KillSignal` (SIGTERM, drained).
fn run_unit_as_nobody(unit: &str, ants: &Path) {
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
    let line = |key: &str| -> Vec<String> {
        let l = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"));
        l.replace("/usr/bin/ants", ants.to_str().unwrap())
            .replace("/etc/ants/%i.toml", cfg.to_str().unwrap())
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let check = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .args(line("ExecStartPre="))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // setpriv execs the node (runuser would stay its parent), so the child is the node.
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--init-groups", "--"])
        .args(line("ExecStart="))
        .env("RUST_LOG", "info")
        .env_remove("ANTS_ALLOW_ROOT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for_socket(&mut child, &sock);
    // The node's process runs as nobody.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let nobody = String::from_utf8_lossy(&nobody.stdout).trim().to_owned();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|u| u == nobody), "{uid}");
    // ExecReload: a new neighbour, applied in place.
    crate::support::reload_with_a_neighbour(&cfg, &base, child.id(), &sock);
    // KillSignal=SIGTERM: drained.
    let log = crate::support::terminate(child);
    assert!(log.contains("drained"), "{log}");
}

/// `dist/build-deb.sh` packaging the test's (debug) binary into `out`.
fn build_deb(out: &Path) -> std::path::PathBuf {
    let status = Command::new("bash")
        .arg(root().join("dist/build-deb.sh"))
        .args(["--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "dist/build-deb.sh failed");
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb")
}

#[test]
fn the_debian_package_installs_and_its_unit_runs_the_node_unprivileged() {
    if !tool_or_root("lintian", "lintian", "checking the Debian package")
        || !tool_or_root("dpkg-deb", "dpkg", "reading the Debian package")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let deb = build_deb(&dir.path().join("out"));

    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for path in [
        "./usr/bin/ants",
        "./usr/lib/systemd/system/ants@.service",
        "./usr/lib/systemd/system/ants-router@.service",
        "./usr/lib/sysusers.d/ants.conf",
        "./etc/ants/example.toml",
        "./usr/share/man/man1/ants.1.gz",
        "./usr/share/man/man1/ants-run.1.gz",
        "./usr/share/bash-completion/completions/ants",
        "./usr/share/doc/ants/copyright",
        "./usr/share/doc/ants/docs/install.md",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(path)),
            "{path} not in\n{list}"
        );
    }
    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&lint.stdout);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");

    // Into a scratch root: the binary runs, the shipped config checks.
    let scratch = dir.path().join("root");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&scratch)
        .status()
        .unwrap();
    assert!(ok.success());
    let ants = scratch.join("usr/bin/ants");
    let v = Command::new(&ants).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("capsule ABI: 2"));
    let c = Command::new(&ants)
        .arg("check-config")
        .arg(scratch.join("etc/ants/example.toml"))
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    // The packaged unit's command lines, with the packaged binary, as the unit's user.
    let unit =
        std::fs::read_to_string(scratch.join("usr/lib/systemd/system/ants@.service")).unwrap();
    run_unit_as_nobody(&unit, &ants);
}
