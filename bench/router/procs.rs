//! Child processes and the host: root check, tool installation, setup commands, long-running
//! children (trafgen, `ants`, namespace holders) in their own process groups, and Ctrl-C.
//!
//! Every child the harness starts is a [`Proc`]; dropping it stops the child's whole process
//! group (by its id) so an error or an interrupt never leaves a generator or router behind.

use super::*;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT, SIGTERM and SIGHUP into a flag checked between steps, so the guards run.
pub(crate) fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Fail if Ctrl-C (or SIGTERM) arrived.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleep, waking every 50 ms to notice an interrupt.
pub(crate) fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Fail with a clear message unless running as root.
pub(crate) fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "router-bench needs root (network namespaces, veth, AF_PACKET, nftables); \
             run it as root, e.g. `sudo -E cargo run --release -p ants-bench --bin router-bench`"
        );
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}

/// Install trafgen (netsniff-ng), ip/tc (iproute2), nft (nftables) and taskset (util-linux)
/// with apt-get when one is missing.
pub(crate) fn ensure_tools() -> Result<()> {
    let need = [
        ("trafgen", "netsniff-ng"),
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("nft", "nftables"),
        ("taskset", "util-linux"),
        ("ethtool", "ethtool"),
    ];
    let mut missing: Vec<&str> = need
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing {} with apt-get …", missing.join(" "));
    let mut install = vec!["apt-get", "install", "-y"];
    install.extend(&missing);
    for argv in [&["apt-get", "update"][..], &install] {
        let st = Command::new(argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("cannot run {}", argv.join(" ")))?;
        if !st.success() {
            bail!(
                "`{}` failed ({st}); install {} by hand",
                argv.join(" "),
                missing.join(" ")
            );
        }
    }
    for (tool, pkg) in need {
        if !on_path(tool) {
            bail!("`{tool}` still missing after installing {pkg}");
        }
    }
    Ok(())
}

/// Run a short command to completion; its stdout, or an error with its stderr.
pub(crate) fn run(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`] but an error is only printed (for cleanup and "delete if present").
pub(crate) fn run_quiet(argv: &[&str]) -> bool {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `true` while process `pid` runs (not a zombie) and its command name is `comm`.
pub(crate) fn running_as(pid: u32, comm: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
        return false;
    };
    name == comm && !rest.starts_with(['Z', 'X'])
}

/// Send `sig` to one process by id.
pub(crate) fn signal_pid(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain kill(2) on a positive pid the caller started.
        unsafe { libc::kill(pid, sig) };
    }
}

/// A long-running child in its own process group, output appended to a log file.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Start `argv` with stdout and stderr appended to `log` (after a header line).
    pub(crate) fn spawn(
        name: &str,
        argv: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Proc> {
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        writeln!(
            file,
            "==== {} (unix time {}): {}",
            name,
            unix_now(),
            argv.join(" ")
        )?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}: `{}`", argv.join(" ")))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The child's process id (also its process group id).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the child has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Fail, with the log's last lines, if the child has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(st) = self.exited() {
            bail!(
                "{} exited early ({st}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 25)
            );
        }
        Ok(())
    }

    /// Signal the process group with `sig`, wait up to `grace`, then SIGKILL it.
    pub(crate) fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pgid = libc::pid_t::try_from(child.id()).ok()?;
        let group = |s: libc::c_int| {
            // SAFETY: kill(2) on the negative id of the process group this child leads; the
            // group holds only the child and what it forked.
            unsafe { libc::kill(-pgid, s) };
        };
        group(sig);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(st)) = child.try_wait() {
                group(libc::SIGKILL); // forked workers, if any are left
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        group(libc::SIGKILL);
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM, Duration::from_secs(2));
    }
}

/// The last `n` lines of a log file.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
