//! Thread and process facts from /proc: thread ids and CPU time, pinning, RSS, UDP drops.

use super::*;

/// The kernel thread id of the calling thread.
pub(crate) fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Thread ids of this process.
pub(crate) fn thread_ids() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn thread_name(tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// CPU time a thread has run (scheduler statistics, nanoseconds); zero once it is gone.
pub(crate) fn thread_cpu(tid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Resident set size of this process and its peak, in KiB.
pub(crate) fn vm_rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Datagrams the kernel dropped on receive (full buffer) for each local UDP port on loopback,
/// from the `drops` column of /proc/net/udp.
pub(crate) fn udp_drops() -> BTreeMap<u16, u64> {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (f.get(1), f.last()) else {
            continue;
        };
        let port = local
            .split(':')
            .nth(1)
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(d)) = (port, drops.parse::<u64>()) {
            *out.entry(port).or_insert(0) += d;
        }
    }
    out
}

// --- relay / sink loop --------------------------------------------------------------------
