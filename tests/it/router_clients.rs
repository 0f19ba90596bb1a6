//! Real clients through router mode, with the hosts' offloads at Linux's defaults (TSO, GSO,
//! checksum offload on the veths — what every Linux host has): `h1 — r1 — r2 — h2` with a
//! 1400-byte r1 — r2 link, r1 and r2 `ants` routers.
//!
//! Checked: `ping -M dont` larger than the small link (the routers fragment, both ways);
//! `tracepath` finds the 1400-byte path MTU and the three hops; `traceroute` over UDP and
//! ICMP lists r1, r2, h2; a TCP transfer (SHA-256 checked) with the hosts sending 64 KiB
//! super-frames. `iperf3` TCP then runs through the ants routers and through the same line
//! with kernel routers: both throughputs are printed (never asserted — this 2-core VM is
//! noisy) and recorded in bench/RESULTS.md.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{self, Netns, require_root, require_tools, tcp_transfer, try_run_in};
use crate::router::{
    H2, LineOptions, R1_H1, R2_H2, R2_R1, line_namespaces, ping_until, start_line_with,
};

/// The Debian packages of the clients (installed when missing).
const TOOLS: [(&str, &str); 4] = [
    ("iperf3", "iperf3"),
    ("traceroute", "traceroute"),
    ("tracepath", "iputils-tracepath"),
    ("ping", "iputils-ping"),
];

/// `ping -M dont -s 1472` (a 1500-byte packet, DF clear) over the 1400-byte link: the number
/// of replies out of `count`.
fn big_pings(ns: &str, dst: Ipv4Addr, count: u32) -> u32 {
    let out = try_run_in(
        ns,
        &format!("ping -n -M dont -s 1472 -c {count} -i 0.2 -W 2 {dst}"),
    )
    .unwrap_or_else(|e| e.to_string());
    out.split(", ")
        .find_map(|part| part.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The hop addresses of a `traceroute -n -q 1` run (`*` for a silent hop).
fn traceroute_hops(ns: &str, extra: &str, dst: Ipv4Addr) -> Vec<String> {
    let out = try_run_in(ns, &format!("traceroute -n -q 1 -w 2 -m 6 {extra} {dst}"))
        .unwrap_or_else(|e| panic!("traceroute {extra}: {e}"));
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// An `iperf3` server in `ns` for one test (`-1`), killed on drop if still running.
fn iperf3_server(ns: &str, port: u16) -> crate::support::Running {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "iperf3", "-s", "-1", "-p"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 -s");
    crate::support::Running::new(child)
}

/// Throughput in Mbit/s of a `seconds`-long `iperf3` TCP run from `client` to `dst` in
/// `server` (the receiver's figure).
fn iperf3_mbits(client: &str, server: &str, dst: Ipv4Addr, port: u16, seconds: u32) -> f64 {
    let _srv = iperf3_server(server, port);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = try_run_in(
            client,
            &format!("iperf3 -c {dst} -p {port} -t {seconds} -J"),
        );
        // With -J, errors (e.g. the server not listening yet) come as JSON too.
        let parsed = out.as_ref().ok().and_then(|o| {
            let v: serde_json::Value = serde_json::from_str(o).ok()?;
            v["end"]["sum_received"]["bits_per_second"].as_f64()
        });
        match parsed {
            Some(bps) => return bps / 1e6,
            None if Instant::now() > end => panic!("iperf3 -c {dst}: {out:?}"),
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The same line with kernel routers (addresses on r1 and r2, `ip_forward` on), offloads at
/// their defaults. Returns the namespaces (h1, h2) and their guard.
fn kernel_line(r1_r2_mtu: u16) -> (Netns, String, String) {
    let (netns, [h1, r1, r2, h2]) = line_namespaces(Some(r1_r2_mtu));
    for (ns, ifname, cidr) in [
        (&r1, "r1-h1", "198.18.1.1/24"),
        (&r1, "r1-r2", "198.18.2.1/24"),
        (&r2, "r2-r1", "198.18.2.2/24"),
        (&r2, "r2-h2", "198.18.3.1/24"),
    ] {
        netns::addr(ns, ifname, cidr);
    }
    netns::route(&r1, "198.18.3.0/24 via 198.18.2.2");
    netns::route(&r2, "198.18.1.0/24 via 198.18.2.1");
    for r in [&r1, &r2] {
        netns::sysctl(r, "net.ipv4.ip_forward", "1");
    }
    (netns, h1, h2)
}

#[test]
fn real_clients_through_the_routers_with_default_offloads() {
    if !require_root("real_clients_through_the_routers_with_default_offloads") {
        return;
    }
    real_clients(false, false);
}

#[test]
fn real_clients_through_the_xdp_fast_path() {
    if !require_root("real_clients_through_the_xdp_fast_path") {
        return;
    }
    real_clients(true, false);
}

#[test]
fn real_clients_through_the_afxdp_datapath() {
    if !require_root("real_clients_through_the_afxdp_datapath") {
        return;
    }
    real_clients(false, true);
}

/// The clients through `ants` routers (`xdp`: with the fast path; `afxdp`: on AF_XDP
/// sockets), then iperf3 through kernel routers for comparison.
fn real_clients(xdp: bool, afxdp: bool) {
    require_tools(&TOOLS);
    let line = start_line_with(&LineOptions {
        r1_r2_mtu: Some(1400),
        host_offloads: true,
        xdp,
        afxdp,
        ..LineOptions::default()
    });
    let (h1, h2) = (line.ns[0].clone(), line.ns[3].clone());
    ping_until(&h1, H2, 64);

    // 1500-byte pings without DF: r1 fragments the requests, r2 the replies.
    let got = big_pings(&h1, H2, 5);
    assert!(got >= 4, "{got}/5 replies to ping -M dont -s 1472");
    let (r1, r2) = (line.stats(1), line.stats(2));
    let (r1, r2) = (r1.router.expect("r1 router"), r2.router.expect("r2 router"));
    assert!(r1.router.fragmented >= 4, "r1: {:?}", r1.router);
    assert!(r2.router.fragmented >= 4, "r2: {:?}", r2.router);

    // tracepath: the path MTU of the small link and the three hops.
    let out = try_run_in(&h1, &format!("tracepath -n -m 6 {H2}"))
        .unwrap_or_else(|e| panic!("tracepath: {e}"));
    eprintln!("{out}");
    assert!(
        out.contains("pmtu 1400"),
        "tracepath found the path MTU:\n{out}"
    );
    assert!(
        out.contains("Resume: pmtu 1400 hops 3"),
        "tracepath reached h2 in 3 hops:\n{out}"
    );

    // traceroute, UDP and ICMP: r1 (its address toward h1), r2 (toward r1), h2.
    let want = [R1_H1, R2_R1, H2].map(|a| a.to_string()).to_vec();
    assert_eq!(traceroute_hops(&h1, "", H2), want, "traceroute (UDP)");
    assert_eq!(traceroute_hops(&h1, "-I", H2), want, "traceroute -I (ICMP)");
    assert_eq!(
        traceroute_hops(&h1, "-I", R2_H2),
        [R1_H1, R2_H2].map(|a| a.to_string()).to_vec(),
        "traceroute to the router's far address"
    );

    // TCP with the hosts' segmentation offload: super-frames through both routers.
    tcp_transfer(&h1, &h2, SocketAddrV4::new(H2, 5201), 32 << 20).expect("TCP transfer");
    let r1 = line.stats(1).router.expect("r1 router");
    if xdp || afxdp {
        // An XDP program on a veth turns its peer's segmentation offload off, and h1's
        // checksums left to offload make its TCP data take the slow path.
        eprintln!(
            "r1 fast path: {:?}\nr1 interfaces: {:?}",
            r1.fast_path, r1.interfaces
        );
    } else {
        assert!(
            r1.router.forwarded_gso > 0,
            "r1 forwarded super-frames whole: {:?} {:?}",
            r1.router,
            r1.interfaces
        );
    }

    let ants = iperf3_mbits(&h1, &h2, H2, 5301, 3);
    drop(line);
    let (_kernel, kh1, kh2) = kernel_line(1400);
    let kernel = iperf3_mbits(&kh1, &kh2, H2, 5301, 3);
    let path = match (xdp, afxdp) {
        (true, _) => "ants routers + XDP",
        (false, true) => "ants routers on AF_XDP",
        (false, false) => "ants routers",
    };
    eprintln!(
        "iperf3 TCP h1 → h2, 3 s, offloads at defaults, r1—r2 MTU 1400: \
         {path} {ants:.0} Mbit/s, kernel routers {kernel:.0} Mbit/s ({:.2}×)",
        ants / kernel
    );
}
