//! Network-namespace support for the router tests (Linux, root only).
//!
//! - [`require_root`]: skip a test with a clear message when not root, or fail it when
//!   `ANTS_REQUIRE_ROOT_TESTS=1` (CI sets it).
//! - [`Netns`]: a guard that creates namespaces (`ants-t-<pid>-<n>-<name>`), veth pairs,
//!   addresses, routes and sysctls, and deletes every namespace it made on drop — also when
//!   the test panics. Namespaces left by a killed test process are swept on the next run.
//! - [`run_in`] (a command through `ip netns exec`), [`enter`] (a closure on a fresh thread
//!   inside a namespace: `setns` is per thread) and [`spawn_in`] (the same, not waited for).
//! - Probes for acceptance tests (module `probe`, re-exported here): [`ping`] (ICMP echo
//!   with a TTL; who answered and how), [`udp_probe`] (one UDP datagram with a TTL; the
//!   ICMP error it caused), and [`tcp_transfer`] (bytes through a TCP connection between
//!   two namespaces, checked by SHA-256).
//!
//! Addresses come from 198.18.0.0/15 only; no traffic leaves the namespaces made here.

mod probe;

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

pub(crate) use probe::{IcmpReply, frag_probe, inet_checksum, ping, tcp_transfer, udp_probe};

const PREFIX: &str = "ants-t-";

/// `true` when the test may go on (we are root). Otherwise prints
/// `skipping <test>: needs root (network namespaces)` and returns `false`, or panics when
/// `ANTS_REQUIRE_ROOT_TESTS=1`.
pub(crate) fn require_root(test: &str) -> bool {
    // SAFETY: `geteuid` has no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let msg = format!("skipping {test}: needs root (network namespaces)");
    if std::env::var_os("ANTS_REQUIRE_ROOT_TESTS").is_some_and(|v| v == "1") {
        panic!("{msg}\n(ANTS_REQUIRE_ROOT_TESTS=1 makes this a failure)");
    }
    eprintln!("{msg}");
    false
}

/// Make sure the command-line `tools` are on PATH, installing the Debian packages that provide
/// them when missing (`(command, package)`; root, `apt-get update` retried once). Serialised,
/// so parallel tests do not fight over the dpkg lock. Panics with the manual command when
/// it cannot.
pub(crate) fn require_tools(tools: &[(&str, &str)]) {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|p| p.into_inner());
    let on_path = |cmd: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).is_file()))
            || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(cmd).is_file())
    };
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|&(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let install = || {
        Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = install()
        || (Command::new("apt-get")
            .args(["update", "-q"])
            .output()
            .is_ok_and(|o| o.status.success())
            && install());
    assert!(
        ok && tools.iter().all(|(cmd, _)| on_path(cmd)),
        "cannot install {}: run `apt-get install -y {}`",
        missing.join(" "),
        missing.join(" ")
    );
}

/// Whether `program` (from Debian's `package`) can run for `test`: on PATH, or installed
/// now as root. Not root and missing: the test is skipped with a message (a failure when
/// `ANTS_REQUIRE_ROOT_TESTS=1`, as in CI).
pub(crate) fn tool_or_root(program: &str, package: &str, test: &str) -> bool {
    let on_path = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !on_path && !require_root(&format!("{test} (installs Debian's {package})")) {
        return false;
    }
    require_tools(&[(program, package)]);
    true
}

/// Run `program args…`; `Err` with its stderr when it fails.
fn try_cmd(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{program} {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `ip args…`, panicking with the command and its stderr on failure.
fn ip(args: &[&str]) -> String {
    try_cmd("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `cmd` (split on whitespace, no quoting) inside namespace `ns`; its stdout.
pub(crate) fn try_run_in(ns: &str, cmd: &str) -> io::Result<String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend(cmd.split_whitespace());
    try_cmd("ip", &args)
}

/// [`try_run_in`], panicking on failure.
pub(crate) fn run_in(ns: &str, cmd: &str) -> String {
    try_run_in(ns, cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Move the calling thread into namespace `ns` (network namespaces are per thread).
fn setns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `f` is an open namespace file for the duration of the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", io::Error::last_os_error());
}

/// Run `f` on a fresh thread inside namespace `ns` and return its result (a panic in `f`
/// is passed on). Sockets opened in `f` stay in `ns` wherever they are used later.
pub(crate) fn enter<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns);
            f()
        })
        .join()
    })
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Run `f` on a new thread inside namespace `ns`, without waiting for it.
pub(crate) fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        setns(&ns);
        f()
    })
}

/// Delete namespaces left behind by test processes that no longer exist.
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = try_cmd("ip", &["netns", "del", &name]);
        }
    }
}

/// Namespaces made for one test; all deleted (with their veths) when this is dropped.
#[derive(Debug)]
pub(crate) struct Netns {
    prefix: String,
    names: Vec<String>,
}

impl Netns {
    /// A new, empty set of namespaces with a prefix unique to this process and test.
    pub(crate) fn new() -> Netns {
        static SWEEP: Once = Once::new();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        SWEEP.call_once(sweep_stale);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Netns {
            prefix: format!("{PREFIX}{}-{n}-", std::process::id()),
            names: Vec::new(),
        }
    }

    /// Create namespace `<prefix><short>` with loopback up; returns its full name.
    pub(crate) fn add(&mut self, short: &str) -> String {
        let name = format!("{}{short}", self.prefix);
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "dev", "lo", "up"]);
        name
    }

    /// A veth pair: `a.1` in namespace `a.0`, `b.1` in namespace `b.0`, both up.
    pub(crate) fn veth(&self, a: (&str, &str), b: (&str, &str)) {
        self.veth_queues(a, b, 1);
    }

    /// As [`veth`](Self::veth), each end with `queues` receive and transmit queues.
    pub(crate) fn veth_queues(&self, a: (&str, &str), b: (&str, &str), queues: usize) {
        let (ns_a, if_a) = a;
        let (ns_b, if_b) = b;
        let q = queues.to_string();
        ip(&[
            "-n",
            ns_a,
            "link",
            "add",
            "name",
            if_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            ns_b,
        ]);
        up(ns_a, if_a);
        up(ns_b, if_b);
    }

    /// Delete every namespace now (also done on drop).
    pub(crate) fn cleanup(&mut self) {
        for name in self.names.drain(..) {
            if let Err(e) = try_cmd("ip", &["netns", "del", &name]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Set link `ifname` up in `ns`.
pub(crate) fn up(ns: &str, ifname: &str) {
    ip(&["-n", ns, "link", "set", "dev", ifname, "up"]);
}

/// Add address `cidr` (e.g. `198.18.1.1/24`) to `ifname` in `ns`.
pub(crate) fn addr(ns: &str, ifname: &str, cidr: &str) {
    ip(&["-n", ns, "addr", "add", cidr, "dev", ifname]);
}

/// `ip route add <spec>` in `ns`, e.g. `default via 198.18.1.1`.
pub(crate) fn route(ns: &str, spec: &str) {
    let mut args = vec!["-n", ns, "route", "add"];
    args.extend(spec.split_whitespace());
    ip(&args);
}

/// A permanent neighbour entry: `ip` reachable at `mac` through `ifname` in `ns`.
pub(crate) fn neigh(ns: &str, ifname: &str, ip_addr: Ipv4Addr, mac: [u8; 6]) {
    let (ip_s, mac_s) = (ip_addr.to_string(), fmt_mac(mac));
    ip(&[
        "-n",
        ns,
        "neigh",
        "replace",
        &ip_s,
        "lladdr",
        &mac_s,
        "dev",
        ifname,
        "nud",
        "permanent",
    ]);
}

/// The index of `ifname` in `ns`.
pub(crate) fn ifindex(ns: &str, ifname: &str) -> u32 {
    run_in(ns, &format!("cat /sys/class/net/{ifname}/ifindex"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("ifindex of {ifname} in {ns}: {e}"))
}

/// `ants run` (the built binary) in `ns` as a router owning the one interface `ifname`
/// with `address`/24, plus the `[router]` keys `router_keys`; its config and code cache go
/// into `dir`. Returns the command, not yet started.
pub(crate) fn ants_router(
    ns: &str,
    dir: &std::path::Path,
    address: &str,
    ifname: &str,
    router_keys: &str,
) -> Command {
    let cfg = dir.join("router.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\naddress = \"{address}\"\ncode_cache_dir = \"{}\"\n\n[router]\n\
             {router_keys}\n[[router.interface]]\nname = \"{ifname}\"\n\
             address = \"{address}/24\"\n",
            dir.join("code").display()
        ),
    )
    .expect("write the router config");
    ants_run(ns, &cfg)
}

/// `ants run --config CFG` inside namespace `ns` (`ip netns exec`, which also mounts that
/// namespace's `/sys`).
pub(crate) fn ants_run(ns: &str, cfg: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        env!("CARGO_BIN_EXE_ants"),
        "run",
        "--config",
    ])
    .arg(cfg);
    cmd
}

/// Write sysctl `key` (e.g. `net.ipv4.ip_forward`) in `ns`.
pub(crate) fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    enter(ns, || std::fs::write(&path, value))
        .unwrap_or_else(|e| panic!("sysctl {key}={value} in {ns}: {e}"));
}

/// Read sysctl `key` in `ns` (trimmed).
pub(crate) fn read_sysctl(ns: &str, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    enter(ns, || std::fs::read_to_string(&path))
        .unwrap_or_else(|e| panic!("read sysctl {key} in {ns}: {e}"))
        .trim()
        .to_string()
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn fmt_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The MAC address of `ifname` in `ns`.
pub(crate) fn mac(ns: &str, ifname: &str) -> [u8; 6] {
    let out = ip(&["-n", ns, "-o", "link", "show", "dev", ifname]);
    let text = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no link/ether in `{out}`"));
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("mac `{text}`: {e}"));
    }
    mac
}

/// Turn GRO on for `ifname` in `ns`. On a veth this also turns NAPI on, which the kernel
/// requires before it delivers frames that an XDP program on the other end redirected into
/// it (without, they are dropped).
pub(crate) fn enable_gro(ns: &str, ifname: &str) {
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_set(ns, ifname, &[(ETHTOOL_SGRO, 1)]);
}

/// Turn off TX checksum offload (and with it TSO/GSO) on `ifname` in `ns`, so the frames it
/// sends carry complete checksums and are no larger than the MTU — what a host on a real
/// wire sends. Without this, frames a veth peer's stack sends arrive with the checksum left
/// for offload (`FrameMeta::csum_not_ready`) and a forwarder must complete it.
pub(crate) fn disable_offloads(ns: &str, ifname: &str) {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const ETHTOOL_STSO: u32 = 0x1f;
    const ETHTOOL_SGSO: u32 = 0x24;
    ethtool_set(
        ns,
        ifname,
        &[(ETHTOOL_STXCSUM, 0), (ETHTOOL_STSO, 0), (ETHTOOL_SGSO, 0)],
    );
}

/// Set ethtool features of `ifname` in `ns`: `(command, value)` with the `ETHTOOL_S*`
/// commands that take a `struct ethtool_value`.
fn ethtool_set(ns: &str, ifname: &str, settings: &[(u32, u32)]) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    enter(ns, || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("udp socket for ethtool");
        for &(cmd, data) in settings {
            let mut val = EthtoolValue { cmd, data };
            // SAFETY: all-zero bytes are a valid `ifreq`.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
                *d = s as libc::c_char;
            }
            req.ifr_ifru.ifru_data = std::ptr::from_mut(&mut val).cast();
            // SAFETY: SIOCETHTOOL reads `req` and the `ethtool_value` it points to, both
            // live for the call.
            let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &raw mut req) };
            let err = io::Error::last_os_error();
            // A feature the device cannot change is fine; anything else is a setup bug.
            assert!(
                rc == 0 || err.raw_os_error() == Some(libc::EOPNOTSUPP),
                "ethtool {cmd:#x} = {data} on {ifname} in {ns}: {err}"
            );
        }
    });
}
