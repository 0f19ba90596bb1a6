//! The AF_PACKET driver on real veths: a namespace `r` whose interface `r0` is opened with a
//! [`PacketSocket`], linked to a namespace `h` (a host at 198.18.20.1/24 on `h0`).
//!
//! Root only (see `netns::require_root`).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use ants_node::afpacket::kernel::{self, IngressDropState, IsolateOptions, KernelRoute};
use ants_node::afpacket::{PacketSocket, PacketType, RingConfig};

use crate::netns::{self, Netns, enter};

const H_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 1);
const R_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);

/// Namespaces `r` and `h` joined by the veth `r0`–`h0`; `h` reaches `R_IP` at `r0`'s MAC
/// through a permanent neighbour entry, so it sends no ARP.
struct Pair {
    _nets: Netns,
    r: String,
    h: String,
    r_mac: [u8; 6],
    h_mac: [u8; 6],
}

fn pair(test: &str) -> Option<Pair> {
    if !netns::require_root(test) {
        return None;
    }
    let mut nets = Netns::new();
    let (r, h) = (nets.add("r"), nets.add("h"));
    nets.veth((&r, "r0"), (&h, "h0"));
    netns::addr(&h, "h0", "198.18.20.1/24");
    let (r_mac, h_mac) = (netns::mac(&r, "r0"), netns::mac(&h, "h0"));
    netns::neigh(&h, "h0", R_IP, r_mac);
    Some(Pair {
        _nets: nets,
        r,
        h,
        r_mac,
        h_mac,
    })
}

fn open(ns: &str, cfg: &RingConfig) -> PacketSocket {
    enter(ns, || PacketSocket::open("r0", cfg)).unwrap_or_else(|e| panic!("open r0: {e}"))
}

/// Send one UDP datagram per payload from `h` (198.18.20.1) to `dst:port`.
fn send_from_h(h: &str, dst: Ipv4Addr, port: u16, payloads: &[Vec<u8>]) {
    enter(h, || {
        let s = UdpSocket::bind((H_IP, 0)).expect("bind in h");
        for p in payloads {
            s.send_to(p, SocketAddrV4::new(dst, port))
                .expect("send from h");
        }
    });
}

/// The UDP payload of an untagged IPv4/UDP frame without IP options, if `frame` is one.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    (frame.len() >= 42 && frame[12..14] == [8, 0] && frame[14] == 0x45 && frame[23] == 17)
        .then(|| &frame[42..])
}

/// Receive on `sock` until `done` says so or 5 s pass; returns the UDP payloads seen.
fn collect_until(
    sock: &mut PacketSocket,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while !done(&got) && Instant::now() < deadline {
        let n = sock.recv_blocks(4, |f| {
            if let Some(p) = udp_payload(f) {
                got.push(p.to_vec());
            }
        });
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn markers(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:04}").into_bytes())
        .collect()
}

/// A complete Ethernet/IPv4/UDP frame (UDP checksum 0: none, which IPv4 allows).
fn udp_frame(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): (SocketAddrV4, SocketAddrV4),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    iph[6] = 0x40; // DF
    iph[8] = 64;
    iph[9] = 17;
    iph[12..16].copy_from_slice(&src.ip().octets());
    iph[16..20].copy_from_slice(&dst.ip().octets());
    let sum = netns::inet_checksum(&iph);
    iph[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn packet_socket_receives_sends_and_ignores_outgoing_frames() {
    receive_send_ignore_outgoing(
        "packet_socket_receives_sends_and_ignores_outgoing_frames",
        true,
    );
}

#[test]
fn packet_socket_works_through_the_qdisc_too() {
    receive_send_ignore_outgoing("packet_socket_works_through_the_qdisc_too", false);
}

fn receive_send_ignore_outgoing(test: &str, qdisc_bypass: bool) {
    let Some(p) = pair(test) else {
        return;
    };
    let cfg = RingConfig {
        qdisc_bypass,
        ..RingConfig::default()
    };
    let mut sock = open(&p.r, &cfg);
    assert_eq!(sock.ifname(), "r0");
    assert_eq!(sock.mac(), p.r_mac);
    assert_eq!(sock.mtu(), 1500);
    assert!(sock.ifindex() > 0);
    assert_eq!(sock.recv_blocks(8, |_| panic!("nothing was sent yet")), 0);

    // Receive: 50 datagrams from h, addressed to R_IP at r0's MAC.
    let rx = markers("ants-rx", 50);
    send_from_h(&p.h, R_IP, 7000, &rx);
    let got = collect_until(&mut sock, |g| g.len() >= 50);
    assert_eq!(got, rx, "every frame, in order");

    // Transmit: 32 hand-made frames to h's UDP socket, in one flush.
    let sink = enter(&p.h, || UdpSocket::bind((H_IP, 7001))).expect("sink in h");
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = markers("ants-tx", 32);
    for m in &tx {
        let frame = udp_frame(
            (p.r_mac, p.h_mac),
            (SocketAddrV4::new(R_IP, 7000), SocketAddrV4::new(H_IP, 7001)),
            m,
        );
        assert!(sock.queue(&frame));
    }
    assert_eq!(sock.tx().len(), 32);
    assert_eq!(sock.flush().expect("flush"), 32);
    assert_eq!(sock.tx_dropped(), 0);
    let mut buf = [0u8; 2048];
    let mut delivered = Vec::new();
    for _ in 0..32 {
        let (n, from) = sink.recv_from(&mut buf).expect("frame sent by r reaches h");
        assert_eq!(from, SocketAddrV4::new(R_IP, 7000).into());
        delivered.push(buf[..n].to_vec());
    }
    assert_eq!(delivered, tx);

    // Outgoing frames never show up on the ring: neither ours (the kernel never loops a
    // frame back to the socket that sent it) nor those of the kernel's own stack
    // (PACKET_IGNORE_OUTGOING). Let r's kernel send some datagrams out of r0 too.
    netns::addr(&p.r, "r0", "198.18.20.2/24");
    netns::neigh(&p.r, "r0", H_IP, p.h_mac);
    let kout = markers("ants-kout", 8);
    enter(&p.r, || {
        let s = UdpSocket::bind((R_IP, 0)).expect("bind in r");
        for m in &kout {
            s.send_to(m, SocketAddrV4::new(H_IP, 7001))
                .expect("send from r");
        }
    });
    for m in &kout {
        let n = sink.recv(&mut buf).expect("the kernel's datagram left r0");
        assert_eq!(&buf[..n], &m[..]);
    }
    // Once a later frame from h has arrived, any echo of them would have arrived before it.
    send_from_h(&p.h, R_IP, 7000, &[b"ants-rx-last".to_vec()]);
    let after = collect_until(&mut sock, |g| g.iter().any(|m| m == b"ants-rx-last"));
    assert!(
        after.iter().any(|m| m == b"ants-rx-last"),
        "the control frame arrived"
    );
    assert!(
        !after
            .iter()
            .any(|m| m.starts_with(b"ants-tx") || m.starts_with(b"ants-kout")),
        "outgoing frames came back: {after:?}"
    );
    assert_eq!(
        sock.rx_counters().outgoing,
        0,
        "the kernel filtered them, not our fallback"
    );

    let (packets, drops) = sock.stats().expect("stats");
    assert!(packets >= 51, "kernel saw {packets} frames");
    assert_eq!(drops, 0);
    let (again, _) = sock.stats().expect("stats");
    assert!(again >= packets, "counters accumulate across reads");
}

#[test]
fn frames_can_be_rewritten_in_place_and_sent_back() {
    let Some(p) = pair("frames_can_be_rewritten_in_place_and_sent_back") else {
        return;
    };
    let mut sock = open(&p.r, &RingConfig::default());
    let sink = enter(&p.h, || UdpSocket::bind((H_IP, 7002))).expect("sink in h");
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // h sends from its sink socket (a socket stays in the namespace it was made in); r swaps
    // addresses in ring memory and answers on the same interface through `split` (a
    // reflector: what a router does for an echo request).
    for m in markers("ants-echo", 10) {
        sink.send_to(&m, SocketAddrV4::new(R_IP, 7000)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = 0;
    while answered < 10 && Instant::now() < deadline {
        let (rx, tx) = sock.split();
        rx.recv_blocks(4, |f, _meta| {
            let Some(m) = udp_payload(f) else { return };
            if !m.starts_with(b"ants-echo") {
                return;
            }
            let (dst_mac, rest) = f.split_at_mut(6);
            dst_mac.swap_with_slice(&mut rest[..6]);
            let (ip_src, ip_dst) = f[26..34].split_at_mut(4);
            ip_src.swap_with_slice(ip_dst);
            let (sp, dp) = f[34..38].split_at_mut(2);
            sp.swap_with_slice(dp);
            f[40..42].copy_from_slice(&[0, 0]); // no UDP checksum (the IP one is unchanged)
            assert!(tx.queue(f));
            answered += 1;
        });
        sock.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(answered, 10);
    let mut buf = [0u8; 256];
    for m in markers("ants-echo", 10) {
        let (n, from) = sink.recv_from(&mut buf).expect("reflected datagram");
        assert_eq!(&buf[..n], &m[..]);
        assert_eq!(from, SocketAddrV4::new(R_IP, 7000).into());
    }
}

#[test]
fn a_small_ring_wraps_around_in_order() {
    let Some(p) = pair("a_small_ring_wraps_around_in_order") else {
        return;
    };
    let cfg = RingConfig {
        block_size: 4096,
        block_count: 4,
        frame_size: 2048,
        ..RingConfig::default()
    };
    let mut sock = open(&p.r, &cfg);
    // 600 frames of ~100 bytes through a 16 KiB ring: ~20 trips around it. Bursts stay
    // below the ring's size, so nothing is dropped.
    let all = markers("ants-wrap", 600);
    let mut got = Vec::new();
    for burst in all.chunks(20) {
        send_from_h(&p.h, R_IP, 7000, burst);
        let want = got.len() + burst.len();
        let more = collect_until(&mut sock, |g| got.len() + g.len() >= want);
        got.extend(more);
    }
    assert_eq!(got, all);
    let (_, drops) = sock.stats().unwrap();
    assert_eq!(drops, 0);
    assert!(sock.rx_counters().blocks >= 20, "{:?}", sock.rx_counters());
}

#[test]
fn open_errors_name_the_interface_and_the_step() {
    let Some(p) = pair("open_errors_name_the_interface_and_the_step") else {
        return;
    };
    let err = enter(&p.r, || PacketSocket::open("nope0", &RingConfig::default())).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("on nope0") && msg.contains("SIOCGIFINDEX"),
        "{msg}"
    );
    assert!(msg.contains("no such interface"), "{msg}");
    let err = enter(&p.r, || PacketSocket::open("lo", &RingConfig::default())).unwrap_err();
    assert!(
        err.to_string().contains("not an Ethernet interface"),
        "{err}"
    );
    let bad = RingConfig {
        block_size: 1000,
        ..RingConfig::default()
    };
    let err = enter(&p.r, || PacketSocket::open("r0", &bad)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().starts_with("r0: ring block_size"), "{err}");
}

#[test]
fn isolation_sets_and_restores_sysctls_and_reports_kernel_state() {
    let Some(p) = pair("isolation_sets_and_restores_sysctls_and_reports_kernel_state") else {
        return;
    };
    let fwd = "net.ipv4.conf.r0.forwarding";
    let v6 = "net.ipv6.conf.r0.disable_ipv6";
    netns::sysctl(&p.r, fwd, "1");
    netns::sysctl(&p.r, v6, "0");
    netns::addr(&p.r, "r0", "198.18.20.9/24");
    netns::route(&p.r, "198.18.50.0/24 via 198.18.20.1 dev r0");

    let opts = IsolateOptions {
        ingress_drop: false,
    };
    let iso = enter(&p.r, || kernel::isolate_with("r0", &opts)).expect("isolate r0");
    assert_eq!(iso.ifname(), "r0");
    assert_eq!(iso.previous_forwarding(), "1");
    assert_eq!(iso.previous_disable_ipv6(), Some("0"));
    assert_eq!(
        iso.kernel_ipv4_addrs(),
        &[(Ipv4Addr::new(198, 18, 20, 9), 24)]
    );
    assert_eq!(iso.ingress_drop(), &IngressDropState::NotRequested);
    assert_eq!(netns::read_sysctl(&p.r, fwd), "0");
    assert_eq!(netns::read_sysctl(&p.r, v6), "1");

    // Dropped on this thread, which is not in `r`: still restored in `r`.
    drop(iso);
    assert_eq!(netns::read_sysctl(&p.r, fwd), "1");
    assert_eq!(netns::read_sysctl(&p.r, v6), "0");

    let routes = enter(&p.r, kernel::kernel_routes).expect("routes");
    let net = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
    let route = |destination, gateway| KernelRoute {
        destination,
        prefix_len: 24,
        gateway,
        dev: "r0".into(),
    };
    assert!(
        routes.contains(&route(net(198, 18, 20, 0), None)),
        "{routes:?}"
    );
    assert!(
        routes.contains(&route(net(198, 18, 50, 0), Some(H_IP))),
        "{routes:?}"
    );
    assert_eq!(
        enter(&p.r, || kernel::interface_ipv4_addrs("r0")).unwrap(),
        vec![(net(198, 18, 20, 9), 24)]
    );
    let err = enter(&p.r, || kernel::isolate("nope0")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(enter(&p.r, || kernel::isolate("all")).is_err());
}

/// tcx (and so the ingress drop) exists from Linux 6.6 on.
fn kernel_has_tcx() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

#[test]
fn ingress_drop_hides_frames_from_the_kernel_but_not_from_the_ring() {
    let Some(p) = pair("ingress_drop_hides_frames_from_the_kernel_but_not_from_the_ring") else {
        return;
    };
    // Give r0 an address so the kernel would deliver h's datagrams to a socket in r.
    netns::addr(&p.r, "r0", "198.18.20.2/24");
    let kernel_sock = enter(&p.r, || UdpSocket::bind((R_IP, 7100))).expect("bind in r");
    kernel_sock.set_nonblocking(true).unwrap();
    let drain = |s: &UdpSocket| {
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while let Ok(n) = s.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    };
    let mut sock = open(&p.r, &RingConfig::default());

    let before = markers("ants-before", 5);
    send_from_h(&p.h, R_IP, 7100, &before);
    assert_eq!(collect_until(&mut sock, |g| g.len() >= 5), before);
    assert_eq!(
        drain(&kernel_sock),
        before,
        "without the drop the kernel delivers"
    );

    let iso = enter(&p.r, || kernel::isolate("r0")).expect("isolate");
    match iso.ingress_drop() {
        IngressDropState::Installed => {}
        other if kernel_has_tcx() => panic!("ingress drop not installed: {other:?}"),
        other => {
            eprintln!("skipping the ingress-drop half: {other:?}");
            return;
        }
    }
    let during = markers("ants-during", 5);
    send_from_h(&p.h, R_IP, 7100, &during);
    // The ring sees them (taps run before tc ingress) …
    assert_eq!(collect_until(&mut sock, |g| g.len() >= 5), during);
    // … and by the time a block with them was retired the kernel was long done with them.
    assert!(
        drain(&kernel_sock).is_empty(),
        "the kernel stack still saw frames"
    );

    drop(iso);
    let after = markers("ants-after", 5);
    send_from_h(&p.h, R_IP, 7100, &after);
    assert_eq!(collect_until(&mut sock, |g| g.len() >= 5), after);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while got.len() < 5 && Instant::now() < deadline {
        got.extend(drain(&kernel_sock));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(got, after, "the drop is gone with the Isolation");
}

#[tokio::test(flavor = "current_thread")]
async fn async_fd_turns_readable_when_a_block_is_retired() {
    let Some(p) = pair("async_fd_turns_readable_when_a_block_is_retired") else {
        return;
    };
    let mut afd = open(&p.r, &RingConfig::default())
        .into_async_fd()
        .expect("register");
    let h = p.h.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        send_from_h(&h, R_IP, 7000, &markers("ants-async", 3));
    });
    let mut got = Vec::new();
    let wait = async {
        while got.len() < 3 {
            let mut ready = afd.readable_mut().await.expect("readable");
            ready.get_inner_mut().recv_blocks(8, |f| {
                if let Some(m) = udp_payload(f) {
                    got.push(m.to_vec());
                }
            });
            if !ready.get_inner().rx_ready() {
                ready.clear_ready();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("woken by the retired block");
    sender.join().unwrap();
    assert_eq!(got, markers("ants-async", 3));
}

#[test]
fn checksum_state_of_frames_from_a_local_stack_is_reported() {
    let Some(p) = pair("checksum_state_of_frames_from_a_local_stack_is_reported") else {
        return;
    };
    let mut sock = open(&p.r, &RingConfig::default());
    let mut meta_of = |prefix: &str| {
        let ms = markers(prefix, 3);
        send_from_h(&p.h, R_IP, 7000, &ms);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut metas = Vec::new();
        while metas.len() < 3 && Instant::now() < deadline {
            sock.recv_blocks_meta(4, |f, m| {
                if udp_payload(f).is_some_and(|u| u.starts_with(prefix.as_bytes())) {
                    metas.push(m);
                }
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(metas.len(), 3, "{prefix} frames arrived");
        metas
    };
    // With h0's offloads on (the veth default), h's stack may leave UDP checksums to the
    // "hardware"; the ring says so, and a forwarder must finish them.
    let offloaded = meta_of("ants-csum-on");
    println!("veth defaults: {:?}", offloaded[0]);
    assert!(
        offloaded
            .iter()
            .all(|m| m.pkt_type == PacketType::Host && m.vlan_tci.is_none())
    );
    // With them off the frames are complete, as from a host on a real wire.
    netns::disable_offloads(&p.h, "h0");
    let complete = meta_of("ants-csum-off");
    assert!(complete.iter().all(|m| !m.csum_not_ready), "{complete:?}");
}

/// Capabilities of the calling thread (`capget`/`capset`, version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drop `CAP_NET_RAW` from the calling thread only (capabilities are per thread).
fn drop_cap_net_raw() {
    const CAP_NET_RAW: u32 = 13;
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: `hdr` and `data` are live and sized as capget v3 expects (a header, two data).
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut hdr, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_NET_RAW);
    // SAFETY: as above; the kernel only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut hdr, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
}

#[test]
fn without_cap_net_raw_the_error_says_what_is_missing() {
    let Some(p) = pair("without_cap_net_raw_the_error_says_what_is_missing") else {
        return;
    };
    let err = enter(&p.r, || {
        drop_cap_net_raw();
        PacketSocket::open("r0", &RingConfig::default())
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    let msg = err.to_string();
    assert!(msg.starts_with("socket(AF_PACKET) on r0: "), "{msg}");
    assert!(
        msg.contains("router mode needs root or CAP_NET_RAW"),
        "{msg}"
    );
}
