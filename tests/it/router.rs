//! Router mode in network namespaces: `h1 — r1 — r2 — h2`, with r1 and r2 `ants` routers in
//! router mode (AF_PACKET, kernel forwarding off, no kernel addresses on their interfaces)
//! and h1, h2 plain Linux hosts that also run an overlay `ants` node each.
//!
//! Checked: ping and a TCP transfer h1 → h2 through the userspace routers; TTL expiry answered
//! by the right router; an unroutable destination answered with ICMP unreachable; capsules
//! sent from h1 demand-load through r1 and r2 and reach h2's app, interleaved with plain
//! traffic. Every node runs in-process on a thread inside its namespace, so its counters
//! can be read.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_node::config::Config;
use ants_node::daemon::{self, DaemonHandle, Stats};

use crate::netns::{self, Netns, disable_offloads, enter, ping, require_root, udp_probe};
use crate::support::{addr, capsule_bytes};

pub(crate) const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
pub(crate) const R1_H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub(crate) const R1_R2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub(crate) const R2_R1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub(crate) const R2_H2: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
pub(crate) const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 10);

/// The four namespaces, links and nodes; everything is torn down on drop (nodes first).
pub(crate) struct Line {
    pub(crate) nodes: Vec<DaemonHandle>,
    pub(crate) ns: Vec<String>,
    pub(crate) dir: tempfile::TempDir,
    _netns: Netns,
}

impl Line {
    /// Counters of node `i` (0 = h1, 1 = r1, 2 = r2, 3 = h2).
    pub(crate) fn stats(&self, i: usize) -> Stats {
        self.nodes[i].stats().expect("node running")
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // Stop the nodes (restoring their interfaces) before the namespaces go.
        for n in self.nodes.drain(..) {
            let _ = n.shutdown();
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Config {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A router config: `ifaces` are (name, cidr); `ip_route` is (dst, via); `active` the
/// active neighbours as (address, endpoint); `routes` active routes (dst, via).
fn router_config(
    address: Ipv4Addr,
    ifaces: &[(&str, &str)],
    ip_route: (&str, Ipv4Addr),
    active: &[(Ipv4Addr, Ipv4Addr)],
    route: (&str, Ipv4Addr),
    router_keys: &str,
) -> String {
    let (node_keys, router_keys) = router_keys
        .split_once("[router]\n")
        .unwrap_or(("", router_keys));
    let mut t = format!(
        "[node]\naddress = \"{address}\"\n{node_keys}\n[router]\nicmp_per_sec = 1000\n{router_keys}"
    );
    for (name, cidr) in ifaces {
        t += &format!("\n[[router.interface]]\nname = \"{name}\"\naddress = \"{cidr}\"\n");
    }
    t += &format!(
        "\n[[router.route]]\ndst = \"{}\"\nvia = \"{}\"\n",
        ip_route.0, ip_route.1
    );
    for (a, ep) in active {
        t += &format!("\n[[neighbour]]\naddress = \"{a}\"\nendpoint = \"{ep}:3322\"\n");
    }
    t += &format!(
        "\n[[route]]\ndst = \"{}\"\nvia = \"{}\"\n",
        route.0, route.1
    );
    t
}

/// An overlay node on a host: listens on its own address, one active neighbour (its router).
fn host_config(dir: &Path, address: Ipv4Addr, router: (Ipv4Addr, Ipv4Addr)) -> String {
    format!(
        "[node]\naddress = \"{address}\"\nlisten = \"{address}:3322\"\n\
         app_socket = \"{}\"\n\n[[neighbour]]\naddress = \"{}\"\nendpoint = \"{}:3322\"\n\n\
         [[route]]\ndst = \"198.18.0.0/15\"\nvia = \"{}\"\n",
        dir.join(format!("{address}.sock")).display(),
        router.0,
        router.1,
        router.0
    )
}

/// What a test changes about the line.
#[derive(Default)]
pub(crate) struct LineOptions {
    /// Extra `[router]` keys for both routers (e.g. `arp_incomplete_entries = 8`).
    pub(crate) router_keys: &'static str,
    /// The MTU of the r1 — r2 link (default: the veth's 1500).
    pub(crate) r1_r2_mtu: Option<u16>,
    /// Leave the hosts' offloads (TSO/GSO, checksum) at Linux's defaults, as on every real
    /// host; by default h1's are switched off so it sends what a host on a wire sends.
    pub(crate) host_offloads: bool,
    /// Run both routers with `fast_path = "xdp"` (and GRO on the hosts' veths, which the
    /// kernel needs to deliver frames XDP redirects into a veth).
    pub(crate) xdp: bool,
    /// Run both routers with `datapath = "afxdp"`.
    pub(crate) afxdp: bool,
    /// `[node] workers` of both routers (0: left out, one), and as many queues on every
    /// veth of the line.
    pub(crate) workers: usize,
}

/// The routers' extra keys for `opts`: `[node]` keys, then `[router]\n` and its keys.
fn router_keys(opts: &LineOptions) -> String {
    let mut keys = String::new();
    if opts.workers > 0 {
        keys += &format!("workers = {}\n", opts.workers);
    }
    keys += "[router]\n";
    keys += opts.router_keys;
    if opts.xdp {
        keys += "fast_path = \"xdp\"\n";
    }
    if opts.afxdp {
        keys += "datapath = \"afxdp\"\n";
    }
    keys
}

/// `h1 — r1 — r2 — h2` with `opts`.
/// The namespaces `h1 — r1 — r2 — h2`, linked, with the hosts' addresses and default
/// routes and the r1 — r2 link's MTU; the routers' side is left to the caller.
pub(crate) fn line_namespaces(r1_r2_mtu: Option<u16>) -> (Netns, [String; 4]) {
    line_namespaces_queues(r1_r2_mtu, 1)
}

/// As [`line_namespaces`], every veth with `queues` queues each way.
fn line_namespaces_queues(r1_r2_mtu: Option<u16>, queues: usize) -> (Netns, [String; 4]) {
    let mut netns = Netns::new();
    let [h1, r1, r2, h2] = ["h1", "r1", "r2", "h2"].map(|n| netns.add(n));
    netns.veth_queues((&h1, "h1-r1"), (&r1, "r1-h1"), queues);
    netns.veth_queues((&r1, "r1-r2"), (&r2, "r2-r1"), queues);
    netns.veth_queues((&r2, "r2-h2"), (&h2, "h2-r2"), queues);
    netns::addr(&h1, "h1-r1", "198.18.1.10/24");
    netns::addr(&h2, "h2-r2", "198.18.3.10/24");
    netns::route(&h1, "default via 198.18.1.1");
    netns::route(&h2, "default via 198.18.3.1");
    if let Some(mtu) = r1_r2_mtu {
        netns::run_in(&r1, &format!("ip link set r1-r2 mtu {mtu}"));
        netns::run_in(&r2, &format!("ip link set r2-r1 mtu {mtu}"));
    }
    (netns, [h1, r1, r2, h2])
}

pub(crate) fn start_line_with(opts: &LineOptions) -> Line {
    let (netns, [h1, r1, r2, h2]) = line_namespaces_queues(opts.r1_r2_mtu, opts.workers.max(1));
    // A veth by default leaves checksums and segmentation to "offload". Unless the test asks
    // for the defaults, h1 sends MTU-sized frames as a host on a real wire does (no TSO/GSO);
    // h2 keeps checksum offload, so r2 gets frames whose checksums are left to offload (TCP
    // acknowledgements, code requests) — counted in `partial_checksums`.
    if !opts.host_offloads {
        disable_offloads(&h1, "h1-r1");
    }
    if opts.xdp {
        netns::enable_gro(&h1, "h1-r1");
        netns::enable_gro(&h2, "h2-r2");
    }
    for r in [&r1, &r2] {
        netns::sysctl(r, "net.ipv4.ip_forward", "0");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_r1 = write(
        dir.path(),
        "r1.toml",
        &router_config(
            R1_H1,
            &[("r1-h1", "198.18.1.1/24"), ("r1-r2", "198.18.2.1/24")],
            ("198.18.3.0/24", R2_R1),
            &[(H1, H1), (R2_R1, R2_R1)],
            ("198.18.3.0/24", R2_R1),
            &router_keys(opts),
        ),
    );
    let cfg_r2 = write(
        dir.path(),
        "r2.toml",
        &router_config(
            R2_R1,
            &[("r2-r1", "198.18.2.2/24"), ("r2-h2", "198.18.3.1/24")],
            ("198.18.1.0/24", R1_R2),
            &[(H2, H2), (R1_H1, R1_R2)],
            ("198.18.1.0/24", R1_H1),
            &router_keys(opts),
        ),
    );
    let cfg_h1 = write(
        dir.path(),
        "h1.toml",
        &host_config(dir.path(), H1, (R1_H1, R1_H1)),
    );
    let cfg_h2 = write(
        dir.path(),
        "h2.toml",
        &host_config(dir.path(), H2, (R2_R1, R2_H2)),
    );
    let mut nodes = Vec::new();
    for (ns, cfg) in [(&h1, cfg_h1), (&r1, cfg_r1), (&r2, cfg_r2), (&h2, cfg_h2)] {
        let node = enter(ns, move || daemon::spawn(cfg));
        nodes.push(node.unwrap_or_else(|e| panic!("node in {ns}: {e:#}")));
    }
    Line {
        nodes,
        ns: vec![h1, r1, r2, h2],
        dir,
        _netns: netns,
    }
}

/// Ping until an answer comes (the routers resolve ARP on the first packets).
pub(crate) fn ping_until(ns: &str, dst: Ipv4Addr, ttl: u32) -> netns::IcmpReply {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match ping(ns, dst, ttl, Duration::from_millis(500)) {
            Ok(r) => return r,
            Err(e) if Instant::now() > end => panic!("no answer to ping {dst} ttl {ttl}: {e}"),
            Err(_) => {}
        }
    }
}

#[test]
fn routers_forward_ip_answer_icmp_and_run_capsules() {
    if !require_root("routers_forward_ip_answer_icmp_and_run_capsules") {
        return;
    }
    forward_answer_and_run_capsules(&LineOptions::default());
}

#[test]
fn with_the_xdp_fast_path_too() {
    if !require_root("with_the_xdp_fast_path_too") {
        return;
    }
    let line = forward_answer_and_run_capsules(&LineOptions {
        xdp: true,
        ..LineOptions::default()
    });
    for (i, name) in [(1, "r1"), (2, "r2")] {
        let s = line.stats(i).router.expect("router stats");
        let fp = s.fast_path.expect("fast path stats");
        eprintln!("{name}: fast path {fp:?}");
        assert!(
            fp.counters.forwarded > 0,
            "{name}: the fast path forwarded plain IPv4: {fp:?}"
        );
        assert!(fp.counters.passed > 0, "{name}: and passed the rest on");
        assert_eq!(fp.counters.redirect_failed, 0);
        assert!(fp.neighbours >= 2, "{name}: {fp:?}");
        // And `--stats-json` shows it.
        let json = line.stats(i).to_json();
        let f = &json["router"]["fast_path"];
        assert!(f["forwarded"].as_u64().unwrap_or(0) > 0, "{json}");
        assert_eq!(f["native"], true, "{json}");
        assert_eq!(
            json["router"]["interfaces"].as_array().map(Vec::len),
            Some(2)
        );
    }
}

#[test]
fn on_the_afxdp_datapath_too() {
    if !require_root("on_the_afxdp_datapath_too") {
        return;
    }
    let line = forward_answer_and_run_capsules(&LineOptions {
        afxdp: true,
        ..LineOptions::default()
    });
    forwards_in_place(&line);
}

/// On AF_XDP every frame the userspace router forwarded left from the UMEM frame it came
/// in, by descriptor (the sockets of a worker share one UMEM): none was copied.
fn forwards_in_place(line: &Line) {
    for (i, name) in [(1, "r1"), (2, "r2")] {
        let s = line.stats(i);
        let r = s.router.as_ref().expect("router stats");
        let in_place: u64 = r.interfaces.iter().map(|i| i.tx_in_place).sum();
        let sent: u64 = r.interfaces.iter().map(|i| i.tx_frames).sum();
        eprintln!(
            "{name}: forwarded {}, {in_place} in place, {sent} sent",
            r.router.forwarded
        );
        assert!(r.router.forwarded > 0, "{name}");
        assert_eq!(in_place, r.router.forwarded, "{name}: {:?}", r.interfaces);
        // The router's own frames (ARP, ICMP, capsules) are copied in: sent, not in place.
        assert!(sent > in_place, "{name}: {:?}", r.interfaces);
        let json = s.to_json();
        assert_eq!(
            json["router"]["interfaces"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i["tx_in_place"].as_u64()).sum()),
            Some(in_place),
            "{json}"
        );
    }
}

#[test]
fn on_the_afxdp_datapath_with_the_fast_path() {
    if !require_root("on_the_afxdp_datapath_with_the_fast_path") {
        return;
    }
    let line = forward_answer_and_run_capsules(&LineOptions {
        afxdp: true,
        xdp: true,
        ..LineOptions::default()
    });
    for i in [1, 2] {
        let fp = line
            .stats(i)
            .router
            .expect("router")
            .fast_path
            .expect("fast path");
        assert!(fp.counters.forwarded > 0, "{fp:?}");
    }
    forwards_in_place(&line);
}

#[test]
fn with_two_workers_per_router() {
    if !require_root("with_two_workers_per_router") {
        return;
    }
    let line = forward_answer_and_run_capsules(&LineOptions {
        workers: 2,
        ..LineOptions::default()
    });
    both_workers_forward(&line);
}

#[test]
fn with_two_workers_per_router_on_afxdp() {
    if !require_root("with_two_workers_per_router_on_afxdp") {
        return;
    }
    let line = forward_answer_and_run_capsules(&LineOptions {
        workers: 2,
        afxdp: true,
        ..LineOptions::default()
    });
    both_workers_forward(&line);
    forwards_in_place(&line);
}

/// Many flows through the line: each router's two workers both forward some (a flow's
/// frames reach one worker: the fanout's or the veth's queue hash), their counts add up to
/// the router's, and their routers shared ARP without losing any.
fn both_workers_forward(line: &Line) {
    let h1 = &line.ns[0];
    enter(h1, || {
        let sockets: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind((H1, 0)).expect("bind in h1"))
            .collect();
        for s in &sockets {
            for _ in 0..4 {
                s.send_to(b"flow", (H2, 9)).expect("send");
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    for (i, name) in [(1, "r1"), (2, "r2")] {
        let s = line.stats(i);
        let r = s.router.as_ref().expect("router stats");
        assert_eq!(s.workers.len(), 2, "{name}: {:?}", s.workers);
        let per: Vec<u64> = s.workers.iter().map(|w| w.forwarded).collect();
        eprintln!(
            "{name}: forwarded per worker {per:?}, ARP shared {} (dropped {})",
            r.arp_shared, r.arp_share_dropped
        );
        assert!(
            per.iter().all(|&n| n > 0),
            "{name}: both workers forward: {per:?}"
        );
        assert_eq!(per.iter().sum::<u64>(), r.router.forwarded, "{name}");
        assert!(r.arp_shared > 0, "{name}: the workers' routers shared ARP");
        assert_eq!(r.arp_share_dropped, 0, "{name}");
    }
}

/// Ping, TTL expiry, unreachables, a TCP transfer and capsules through both routers.
fn forward_answer_and_run_capsules(opts: &LineOptions) -> Line {
    let line = start_line_with(opts);
    let (h1, h2) = (&line.ns[0], &line.ns[3]);

    // Plain IPv4 end to end, through both userspace routers.
    let r = ping_until(h1, H2, 64);
    assert_eq!((r.from, r.kind), (H2, (0, 0)), "echo reply from h2");
    for _ in 0..20 {
        let r = ping(h1, H2, 64, Duration::from_secs(2)).expect("ping h2");
        assert_eq!((r.from, r.kind), (H2, (0, 0)));
    }
    // The routers themselves answer pings to their addresses.
    let r = ping_until(h1, R2_H2, 64);
    assert_eq!(
        (r.from, r.kind),
        (R2_H2, (0, 0)),
        "r2 answers for its own address"
    );

    // TTL expiry: each router answers from the interface the packet came in on.
    let r = ping_until(h1, H2, 1);
    assert_eq!((r.from, r.kind), (R1_H1, (11, 0)), "TTL 1 expires at r1");
    let r = ping_until(h1, H2, 2);
    assert_eq!((r.from, r.kind), (R2_R1, (11, 0)), "TTL 2 expires at r2");
    let r = udp_probe(h1, H2, 33434, 1).expect("udp probe");
    assert_eq!((r.from, r.kind), (R1_H1, (11, 0)), "UDP with TTL 1 too");

    // No route: ICMP destination unreachable from r1.
    let r = ping_until(h1, Ipv4Addr::new(198, 18, 99, 1), 64);
    assert_eq!(r.from, R1_H1);
    assert_eq!(r.kind.0, 3, "destination unreachable, got {:?}", r.kind);

    // A TCP transfer (8 MiB, SHA-256 checked) through the routers.
    netns::tcp_transfer(h1, h2, SocketAddrV4::new(H2, 5201), 8 << 20).expect("TCP transfer");

    // Capsules: h1's app sends, h2's app receives; r1 and r2 demand-load the code.
    let sock = |a: Ipv4Addr| line.dir.path().join(format!("{a}.sock"));
    let mut rx = AppClient::connect(sock(H2), 0).expect("app on h2");
    let mut tx = AppClient::connect(sock(H1), 7).expect("app on h1");
    let first = Inject::with_code(
        capsule_bytes("forward"),
        addr("198.18.3.10"),
        64,
        vec![],
        b"first".to_vec(),
    );
    let ty = tx.inject(&first).expect("inject");
    let d = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("the first capsule reaches h2");
    assert_eq!(d.payload, b"first");
    assert_eq!(d.src, addr("198.18.1.10"));
    for (i, name) in [(1, "r1"), (2, "r2"), (3, "h2")] {
        let s = line.stats(i);
        assert!(s.cached_types.contains(&ty), "{name} caches the module");
        assert!(s.loader.requests_sent >= 1, "{name} fetched the code");
    }

    // Mixed traffic: capsules interleaved with pings; every capsule arrives once.
    for k in 0..200u32 {
        let inj = Inject {
            code: None,
            payload: k.to_be_bytes().to_vec(),
            ..first.clone()
        };
        tx.inject(&inj).expect("inject");
        if k % 20 == 0 {
            let r = ping(h1, H2, 64, Duration::from_secs(2)).expect("ping during capsules");
            assert_eq!(r.kind, (0, 0));
        }
    }
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while seen.len() < 200 && Instant::now() < end {
        if let Ok(Some(d)) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
        }
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 200, "every capsule delivered exactly once");

    let r2 = line.stats(2).router.expect("router stats");
    assert!(
        r2.interfaces[1].partial_checksums > 0,
        "r2 passed on h2's offloaded checksums: {:?}",
        r2.interfaces[1]
    );
    for (i, name) in [(1, "r1"), (2, "r2")] {
        let s = line.stats(i);
        let r = s.router.as_ref().expect("router stats");
        eprintln!("{name}: {:?}\n{name}: {:?}", r.router, r.interfaces);
        assert!(r.router.forwarded > 0, "{name} forwarded IP");
        assert!(
            r.router.capsules >= 201,
            "{name} took the capsules: {:?}",
            r.router
        );
        assert!(s.node.runs >= 201, "{name} ran them");
        assert_eq!(
            netns::read_sysctl(&line.ns[i], "net.ipv4.ip_forward"),
            "0",
            "{name}: the kernel did not forward"
        );
    }
    line
}

#[test]
fn a_router_refuses_interfaces_with_kernel_addresses() {
    if !require_root("a_router_refuses_interfaces_with_kernel_addresses") {
        return;
    }
    let mut netns = Netns::new();
    let (a, b) = (netns.add("a"), netns.add("b"));
    netns.veth((&a, "a-b"), (&b, "b-a"));
    netns::addr(&a, "a-b", "198.18.5.1/24");
    netns::sysctl(&a, "net.ipv4.conf.a-b.forwarding", "1");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "a.toml",
        "[node]\naddress = \"198.18.5.1\"\n[router]\n[[router.interface]]\nname = \"a-b\"\n\
         address = \"198.18.5.1/24\"\n",
    );
    let err = enter(&a, move || daemon::spawn(cfg)).expect_err("must refuse");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("the kernel has the address 198.18.5.1/24"),
        "{msg}"
    );
    assert_eq!(
        netns::read_sysctl(&a, "net.ipv4.conf.a-b.forwarding"),
        "1",
        "what the node changed before refusing is restored"
    );
}

/// Started without privileges (as the router unit would be with its capabilities removed),
/// router mode says what it needs and how to give it.
#[test]
fn a_router_without_capabilities_says_what_it_needs() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("a_router_without_capabilities_says_what_it_needs") {
        return;
    }
    let mut netns = Netns::new();
    let (a, b) = (netns.add("a"), netns.add("b"));
    netns.veth((&a, "a-b"), (&b, "b-a"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir(&code).unwrap();
    let ok = std::process::Command::new("chown")
        .arg("nobody")
        .arg(&code)
        .status()
        .unwrap();
    assert!(ok.success());
    let cmd = netns::ants_router(&a, dir.path(), "198.18.5.1", "a-b", "");
    let args: Vec<_> = cmd.get_args().collect();
    // `ip netns exec NS ants run --config CFG`, with the node started as nobody.
    let out = std::process::Command::new("ip")
        .args(&args[..3])
        .args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--init-groups",
            "--",
        ])
        .args(&args[3..])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("router mode needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON")
            && err.contains("ants-router@"),
        "{err}"
    );
}

/// Started as root with `[router] user`, a router drops to that user once its interfaces
/// are open, keeping only the capabilities it uses — and still forwards, and still restores
/// its interfaces on SIGTERM.
#[test]
fn a_router_started_as_root_drops_to_its_user() {
    if !require_root("a_router_started_as_root_drops_to_its_user") {
        return;
    }
    let (netns, [h1, r1, r2, h2]) = line_namespaces(None);
    for r in [&r1, &r2] {
        netns::sysctl(r, "net.ipv4.ip_forward", "0");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let before = netns::read_sysctl(&r1, "net.ipv6.conf.r1-h1.disable_ipv6");
    let configs = [
        (
            &r1,
            router_config(
                R1_H1,
                &[("r1-h1", "198.18.1.1/24"), ("r1-r2", "198.18.2.1/24")],
                ("198.18.3.0/24", R2_R1),
                &[(R2_R1, R2_R1)],
                ("198.18.3.0/24", R2_R1),
                "user = \"nobody\"\n",
            ),
        ),
        (
            &r2,
            router_config(
                R2_R1,
                &[("r2-r1", "198.18.2.2/24"), ("r2-h2", "198.18.3.1/24")],
                ("198.18.1.0/24", R1_R2),
                &[(R1_H1, R1_R2)],
                ("198.18.1.0/24", R1_H1),
                "",
            ),
        ),
    ];
    let mut children = Vec::new();
    for (ns, text) in configs {
        // r1 also has a code directory, which it hands to its user.
        let code = dir.path().join(format!("{ns}-code"));
        let text = text.replacen(
            "\n\n[router]",
            &format!("\ncode_cache_dir = \"{}\"\n\n[router]", code.display()),
            1,
        );
        let cfg = dir.path().join(format!("{ns}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{ns}.log"))).unwrap();
        let child = netns::ants_run(ns, &cfg)
            .env("RUST_LOG", "info")
            .stderr(log)
            .spawn()
            .expect("start ants");
        children.push(child);
    }
    ping_until(&h1, H2, 64);
    let pid = children[0].id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |s: &str, key: &str| -> String {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in\n{s}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field(&status, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(field(&status, "NoNewPrivs:"), "1");
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_PERFMON (38), CAP_BPF (39), nothing else;
    // every other thread has no more than that.
    let kept = (1u64 << 12) | (1 << 13) | (1 << 38) | (1 << 39);
    assert_eq!(field(&status, "CapEff:"), format!("{kept:016x}"));
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let s = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let prm = u64::from_str_radix(&field(&s, "CapPrm:"), 16).unwrap();
        assert_eq!(prm & !kept, 0, "a thread kept more: {prm:x}");
        assert_eq!(field(&s, "NoNewPrivs:"), "1", "every thread");
    }
    let code = dir.path().join(format!("{r1}-code"));
    let meta = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&code).unwrap());
    assert_eq!(
        meta, 65534,
        "the code directory belongs to the router's user"
    );
    // SIGTERM: as nobody, with CAP_NET_ADMIN, it still gives the interfaces back.
    for c in &mut children {
        // SAFETY: `kill` with a child's pid and a valid signal has no memory effects.
        assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGTERM) }, 0);
    }
    for c in &mut children {
        let st = c.wait().unwrap();
        let log = std::fs::read_to_string(dir.path().join(format!("{r1}.log"))).unwrap();
        assert!(st.success(), "{log}");
    }
    let log = std::fs::read_to_string(dir.path().join(format!("{r1}.log"))).unwrap();
    assert!(log.contains("privileges dropped"), "{log}");
    assert_eq!(
        netns::read_sysctl(&r1, "net.ipv6.conf.r1-h1.disable_ipv6"),
        before,
        "restored"
    );
    // Started again as root, it takes back the directory it handed to its user.
    let again = dir.path().join(format!("{r1}-again.log"));
    let mut child = netns::ants_run(&r1, &dir.path().join(format!("{r1}.toml")))
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&again).unwrap())
        .spawn()
        .expect("start ants again");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(&again).unwrap();
        if log.contains("privileges dropped") {
            break;
        }
        assert!(
            std::time::Instant::now() < end && child.try_wait().unwrap().is_none(),
            "the second start failed:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::support::signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    drop(h2);
    drop(netns);
}
