//! Shared setup for the benchmarks: build the shipped capsules to wasm once; read CPU time
//! from /proc and pin threads (overlay-bench, router-bench); medians of runs.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Build `capsules/<name>` (release wasm) and return its bytes.
pub fn capsule_bytes(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../capsules")
        .join(name);
    let opts = ants_capsule_build::BuildOptions {
        verbose: false,
        ..Default::default()
    };
    let built = ants_capsule_build::build(&dir, &opts)
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()));
    std::fs::read(&built.path).unwrap_or_else(|e| panic!("{}: {e}", built.path.display()))
}

/// A capsule of type `ty` from `src` (also its previous hop) to `dst`, resource 64, no
/// header, carrying `payload`: what the benches run and forward.
pub fn capsule_repr<'a>(
    src: ants_wire::Address,
    ty: ants_wire::CapsuleType,
    dst: ants_wire::Address,
    payload: &'a [u8],
) -> ants_wire::CapsuleRepr<'a> {
    ants_wire::CapsuleRepr {
        flags: 0,
        resource: 64,
        capsule_type: ty,
        src,
        dst,
        prev: src,
        header: &[],
        payload,
        trace: None,
    }
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Per-run values as `a / b / c` with `digits` decimals.
pub fn join_runs(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Restrict thread `tid` (0 = the calling thread) to CPU `cpu`. Threads and processes it
/// creates afterwards inherit the mask.
pub fn pin_thread(tid: u32, cpu: usize) -> Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live `cpu_set_t`; CPU_SET ignores CPUs beyond its size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let tid = libc::pid_t::try_from(tid)?;
    // SAFETY: `set` is a valid `cpu_set_t` of exactly the size passed; the call only reads it.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        bail!(
            "cannot pin thread {tid} to CPU {cpu}: {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Clock ticks per second of the tick counters in /proc (`USER_HZ`, normally 100).
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// One `cpu` line of /proc/stat, in clock ticks ([`clock_ticks_per_sec`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice.
    pub user: u64,
    /// system.
    pub system: u64,
    /// idle + iowait.
    pub idle: u64,
    /// irq.
    pub irq: u64,
    /// softirq.
    pub softirq: u64,
    /// steal (time the hypervisor ran something else).
    pub steal: u64,
}

impl CpuTicks {
    /// The line for CPU `cpu` (`None` = the machine-wide `cpu` line); zeroes if unreadable.
    pub fn read(cpu: Option<usize>) -> CpuTicks {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let key = cpu.map_or_else(|| "cpu".to_string(), |c| format!("cpu{c}"));
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key.as_str()))
            .map(CpuTicks::parse)
            .unwrap_or_default()
    }

    /// Parse a `cpuN user nice system idle iowait irq softirq steal …` line.
    pub fn parse(line: &str) -> CpuTicks {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        CpuTicks {
            user: g(0) + g(1),
            system: g(2),
            idle: g(3) + g(4),
            irq: g(5),
            softirq: g(6),
            steal: g(7),
        }
    }

    /// Busy ticks: user + nice + system + irq + softirq + steal.
    pub fn busy(&self) -> u64 {
        self.user + self.system + self.irq + self.softirq + self.steal
    }

    /// Field-wise `self - earlier` (saturating).
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// Machine-wide CPU ticks from /proc/stat: [user+nice+system, irq+softirq, steal, idle+iowait].
pub fn machine_ticks() -> [u64; 4] {
    let t = CpuTicks::read(None);
    [t.user + t.system, t.irq + t.softirq, t.steal, t.idle]
}

/// A process's CPU ticks (utime + stime, all its threads, dead ones included) from
/// `/proc/<pid>/stat` (`None` = this process); `None` once the process is gone.
pub fn process_ticks(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let text = std::fs::read_to_string(path).ok()?;
    let after_comm = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime); after the comm, field 3 is index 0.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The UTC calendar date of a UNIX time, as `YYYY-MM-DD`.
pub fn utc_date(unix_secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The workspace root (this crate lives in `<root>/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build `ants` (`cargo build --release -p ants-node`) unless `no_build`, and return its path.
pub fn ants_binary(explicit: Option<&Path>, no_build: bool) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--ants {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let root = workspace_root();
    if !no_build {
        println!("building ants: cargo build --release -p ants-node");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "ants-node", "--bin", "ants"])
            .current_dir(&root)
            .status()
            .context("cannot run cargo")?;
        if !st.success() {
            bail!("`cargo build --release -p ants-node` failed ({st})");
        }
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("release/ants");
    if !bin.is_file() {
        bail!(
            "{} not found (build it with `cargo build --release -p ants-node`)",
            bin.display()
        );
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn cpu_line_parses_and_subtracts() {
        let a = CpuTicks::parse("cpu1 10 1 5 100 2 3 4 1 0 0");
        assert_eq!(a.user, 11);
        assert_eq!(a.idle, 102);
        assert_eq!(a.busy(), 11 + 5 + 3 + 4 + 1);
        let b = CpuTicks::parse("cpu1 20 1 6 150 2 3 9 1 0 0");
        let d = b.since(&a);
        assert_eq!(d.busy(), 10 + 1 + 5);
        assert_eq!(d.idle, 50);
        assert_eq!(CpuTicks::parse("cpu1 x"), CpuTicks::default());
    }

    #[test]
    fn own_process_ticks_are_readable() {
        assert!(process_ticks(None).is_some());
        assert!(process_ticks(Some(u32::MAX)).is_none());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_795_000_000), "2026-11-18");
    }
}
