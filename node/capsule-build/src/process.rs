//! Running external programs the way this crate needs to.
//!
//! - [`run`]: spawn with stdin closed, drain stdout/stderr on threads (so a chatty child never
//!   blocks on a full pipe), optionally tee stderr to ours, and kill the child at a deadline;
//! - [`describe`]: a command as a copy-pasteable shell line, for error messages and logs;
//! - [`tail`]: the last lines of captured output;
//! - [`find_in_path`] and [`running_as_root`]: small environment probes.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a finished child left behind.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Why [`run`] has no [`Captured`] to give.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started (usually: not installed).
    Spawn(io::Error),
    /// Waiting for the child failed.
    Wait(io::Error),
    /// The deadline passed; the child was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "could not start it: {e}"),
            RunError::Wait(e) => write!(f, "could not wait for it: {e}"),
            RunError::TimedOut(after) => {
                write!(f, "timed out after {} s and was killed", after.as_secs())
            }
        }
    }
}

/// Runs `cmd` to completion (or until `timeout`), capturing both output streams.
///
/// With `stream_stderr`, the child's stderr is also copied to ours as it arrives; it is still
/// captured so a failure can quote it.
pub(crate) fn run(
    cmd: &mut Command,
    timeout: Option<Duration>,
    stream_stderr: bool,
) -> Result<Captured, RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let stdout = child.stdout.take().map(|s| drain(s, false));
    let stderr = child.stderr.take().map(|s| drain(s, stream_stderr));

    let status = match timeout {
        None => child.wait().map_err(RunError::Wait)?,
        Some(limit) => {
            let deadline = Instant::now() + limit;
            loop {
                if let Some(status) = child.try_wait().map_err(RunError::Wait)? {
                    break status;
                }
                let now = Instant::now();
                if now >= deadline {
                    // Best effort: the child may have exited between the two calls.
                    let _ = child.kill();
                    let _ = child.wait();
                    // The reader threads end when the pipes close; they are not joined so a
                    // grandchild holding a pipe open cannot make us hang after all.
                    return Err(RunError::TimedOut(limit));
                }
                thread::sleep((deadline - now).min(Duration::from_millis(50)));
            }
        }
    };
    Ok(Captured {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn drain(mut from: impl Read + Send + 'static, tee: bool) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if tee {
                        let mut err = io::stderr().lock();
                        // Losing our own stderr must not fail the build.
                        let _ = err.write_all(&buf[..n]);
                        let _ = err.flush();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        all
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// `cmd` as a shell line: explicitly set environment variables first, then the program and
/// its arguments, quoted where a shell would need it. Removed variables are shown as
/// `env -u NAME`.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut removed = Vec::new();
    let mut set = Vec::new();
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => set.push(format!("{}={}", key.to_string_lossy(), quote(v))),
            None => removed.push(format!("-u {}", key.to_string_lossy())),
        }
    }
    let mut parts = Vec::new();
    if !removed.is_empty() {
        parts.push(format!("env {}", removed.join(" ")));
    }
    parts.extend(set);
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The last `n` lines of `bytes`, lossily decoded, without a trailing newline.
pub(crate) fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first line of `bytes`, trimmed: a short reason for a one-line message.
pub(crate) fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// The first executable file called `name` in `$PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file we may execute.
pub(crate) fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Our effective user id, if we can tell: from `/proc/self/status`, else from `id -u`.
pub(crate) fn effective_uid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(uid) = euid_from_proc_status(&status)
    {
        return Some(uid);
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The effective uid from a `/proc/<pid>/status` text (`Uid: real effective saved fs`).
pub(crate) fn euid_from_proc_status(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether this process runs as root, i.e. may run `apt-get install`.
pub fn running_as_root() -> bool {
    effective_uid() == Some(0)
}

/// `$name` if set and non-empty.
pub(crate) fn env_nonempty(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--config", r#"profile.release.opt-level="s""#])
            .env("RUSTC_BOOTSTRAP", "1")
            .env_remove("RUSTFLAGS");
        assert_eq!(
            describe(&cmd),
            r#"env -u RUSTFLAGS RUSTC_BOOTSTRAP=1 cargo build --config 'profile.release.opt-level="s"'"#
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail(b"a\n", 5), "a");
        assert_eq!(tail(b"", 5), "");
    }

    #[test]
    fn euid_is_the_second_uid_field() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(euid_from_proc_status(status), Some(0));
        assert_eq!(euid_from_proc_status("Name: x\n"), None);
    }

    #[test]
    fn run_kills_at_the_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        match run(&mut cmd, Some(Duration::from_millis(200)), false) {
            Err(RunError::TimedOut(_)) => {}
            // No `sleep` on this machine: nothing to test.
            Err(RunError::Spawn(_)) => return,
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_captures_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let Ok(done) = run(&mut cmd, Some(Duration::from_secs(10)), false) else {
            return;
        };
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
        assert_eq!(done.status.code(), Some(3));
    }
}
