//! Probes for router acceptance tests, run from inside a namespace: [`ping`] (ICMP echo
//! with a TTL), [`udp_probe`] (one UDP datagram with a TTL) and [`tcp_transfer`] (bytes
//! through a TCP connection between two namespaces, checked by SHA-256).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, Socket, Type};

use super::{enter, spawn_in};

/// What answered a probe: the source of the ICMP message and its (type, code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpReply {
    /// Source address of the ICMP message.
    pub(crate) from: Ipv4Addr,
    /// ICMP (type, code): (0, 0) echo reply, (11, 0) TTL exceeded, (3, x) unreachable.
    pub(crate) kind: (u8, u8),
}

impl IcmpReply {
    pub(crate) const ECHO_REPLY: (u8, u8) = (0, 0);
    pub(crate) const TTL_EXCEEDED: (u8, u8) = (11, 0);
    pub(crate) const NET_UNREACHABLE: (u8, u8) = (3, 0);
    pub(crate) const HOST_UNREACHABLE: (u8, u8) = (3, 1);
    pub(crate) const PORT_UNREACHABLE: (u8, u8) = (3, 3);
}

/// The Internet checksum (RFC 1071) of `data`.
pub(crate) fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw ICMPv4 socket with a receive timeout; it gets every ICMP message for the namespace.
fn icmp_socket() -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Wait until `deadline` for an ICMP message on `sock` that `matches` (given the message's
/// source, its ICMP bytes); returns who sent it and its type and code.
fn wait_icmp(
    sock: &Socket,
    deadline: Instant,
    matches: impl Fn(Ipv4Addr, &[u8]) -> bool,
) -> io::Result<IcmpReply> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while Instant::now() < deadline {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        // SAFETY: `recv` initialised the first `n` bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let Some(ihl) = pkt.first().map(|b| usize::from(b & 0xf) * 4) else {
            continue;
        };
        if pkt.len() < ihl + 8 || ihl < 20 {
            continue;
        }
        let from = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let icmp = &pkt[ihl..];
        if matches(from, icmp) {
            return Ok(IcmpReply {
                from,
                kind: (icmp[0], icmp[1]),
            });
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no matching ICMP message",
    ))
}

/// The datagram quoted by an ICMP error (`icmp` = the error's ICMP bytes): its IP header's
/// protocol and destination, and the first 8 bytes after that header.
fn quoted(icmp: &[u8]) -> Option<(u8, Ipv4Addr, &[u8])> {
    if !matches!(icmp.first(), Some(3 | 11 | 12)) {
        return None;
    }
    let inner = icmp.get(8..)?;
    let ihl = usize::from(inner.first()? & 0xf) * 4;
    let dst = Ipv4Addr::new(*inner.get(16)?, inner[17], inner[18], inner[19]);
    Some((inner[9], dst, inner.get(ihl..ihl + 8)?))
}

/// Send one ICMP echo request to `dst` with IP TTL `ttl` from namespace `ns`, and wait up to
/// `timeout` for its echo reply or an ICMP error about it. Returns who answered and how.
pub(crate) fn ping(ns: &str, dst: Ipv4Addr, ttl: u32, timeout: Duration) -> io::Result<IcmpReply> {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u16;
    enter(ns, || {
        let sock = icmp_socket()?;
        sock.set_ttl_v4(ttl)?;
        let mut req = vec![8, 0, 0, 0];
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend_from_slice(b"ants netns ping payload 32 bytes");
        let sum = inet_checksum(&req);
        req[2..4].copy_from_slice(&sum.to_be_bytes());
        let deadline = Instant::now() + timeout;
        sock.send_to(&req, &SocketAddr::from((dst, 0)).into())?;
        let ours = |h: &[u8]| h.get(4..8) == Some(&[id.to_be_bytes(), seq.to_be_bytes()].concat());
        wait_icmp(&sock, deadline, |from, icmp| match icmp[0] {
            0 => from == dst && ours(icmp),
            _ => quoted(icmp)
                .is_some_and(|(proto, to, h)| proto == 1 && to == dst && h[0] == 8 && ours(h)),
        })
    })
}

/// Send one UDP datagram to `dst:port` with IP TTL `ttl` from namespace `ns`, and return the
/// ICMP error it caused (TTL exceeded on the way, port unreachable at the end, …), waiting
/// up to 2 seconds.
pub(crate) fn udp_probe(ns: &str, dst: Ipv4Addr, port: u16, ttl: u32) -> io::Result<IcmpReply> {
    enter(ns, || {
        let icmp = icmp_socket()?;
        let udp = UdpSocket::bind("0.0.0.0:0")?;
        udp.set_ttl(ttl)?;
        let src_port = udp.local_addr()?.port();
        let deadline = Instant::now() + Duration::from_secs(2);
        udp.send_to(b"ants udp probe", SocketAddrV4::new(dst, port))?;
        wait_icmp(&icmp, deadline, |_, msg| {
            quoted(msg).is_some_and(|(proto, to, h)| {
                proto == 17
                    && to == dst
                    && h[0..2] == src_port.to_be_bytes()
                    && h[2..4] == port.to_be_bytes()
            })
        })
    })
}

/// Send one `size`-byte UDP datagram with DF to `dst:port` from namespace `ns`, ignoring any
/// path MTU the kernel learned (IP_PMTUDISC_PROBE, so every probe really leaves the host), and
/// return the ICMP error it caused (fragmentation needed from a router on a smaller link),
/// waiting up to `timeout`.
pub(crate) fn frag_probe(
    ns: &str,
    dst: Ipv4Addr,
    port: u16,
    size: usize,
    timeout: Duration,
) -> io::Result<IcmpReply> {
    enter(ns, || {
        use std::os::fd::AsRawFd;
        let icmp = icmp_socket()?;
        let udp = UdpSocket::bind("0.0.0.0:0")?;
        let probe: libc::c_int = libc::IP_PMTUDISC_PROBE;
        // SAFETY: a valid socket, a pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                udp.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw const probe).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let src_port = udp.local_addr()?.port();
        let deadline = Instant::now() + timeout;
        udp.send_to(&vec![0x5a; size], SocketAddrV4::new(dst, port))?;
        wait_icmp(&icmp, deadline, |_, msg| {
            msg[0] == 3
                && msg[1] == 4
                && quoted(msg).is_some_and(|(proto, to, h)| {
                    proto == 17 && to == dst && h[0..2] == src_port.to_be_bytes()
                })
        })
    })
}

/// Deterministic bytes for a transfer.
fn pattern_chunk(offset: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let k = offset + i;
        *b = (k as u8) ^ ((k >> 8) as u8).wrapping_mul(31) ^ ((k >> 16) as u8);
    }
}

/// Move `bytes` bytes over TCP from a client in `ns_client` to a server listening on
/// `server` in `ns_server`; the server answers with the SHA-256 and count of what it got,
/// and the client checks both. Every step has a timeout, so a broken path fails in seconds.
pub(crate) fn tcp_transfer(
    ns_client: &str,
    ns_server: &str,
    server: SocketAddrV4,
    bytes: usize,
) -> io::Result<()> {
    const STEP: Duration = Duration::from_secs(20);
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let srv = spawn_in(ns_server, move || -> io::Result<u64> {
        let listener = match TcpListener::bind(server) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready_tx.send(Err(io::Error::new(e.kind(), format!("bind {server}: {e}"))));
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        let _ = ready_tx.send(Ok(()));
        let deadline = Instant::now() + STEP;
        let (mut conn, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("accept: {e}"))),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(STEP))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        let digest: [u8; 32] = hasher.finalize().into();
        conn.write_all(&digest)?;
        conn.write_all(&total.to_be_bytes())?;
        Ok(total)
    });
    ready_rx
        .recv_timeout(STEP)
        .map_err(|_| io::Error::other("server thread did not start"))??;
    let client = enter(ns_client, || -> io::Result<()> {
        let mut conn = TcpStream::connect_timeout(&SocketAddr::V4(server), STEP)?;
        conn.set_write_timeout(Some(STEP))?;
        conn.set_read_timeout(Some(STEP))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut sent = 0;
        while sent < bytes {
            let n = buf.len().min(bytes - sent);
            pattern_chunk(sent, &mut buf[..n]);
            conn.write_all(&buf[..n])?;
            hasher.update(&buf[..n]);
            sent += n;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut answer = [0u8; 40];
        conn.read_exact(&mut answer)?;
        let digest: [u8; 32] = hasher.finalize().into();
        let count = u64::from_be_bytes(answer[32..].try_into().unwrap_or_default());
        if count != bytes as u64 || answer[..32] != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "server got {count} bytes of {bytes}, digest match: {}",
                    answer[..32] == digest
                ),
            ));
        }
        Ok(())
    });
    let server_result = srv
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))?;
    client.map_err(|e| io::Error::new(e.kind(), format!("tcp client: {e}")))?;
    server_result
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("tcp server: {e}")))
}

/// The helpers themselves, on a plain two-namespace link (no router involved).
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn netns_helpers_work_on_a_direct_link_and_clean_up() {
        if !require_root("netns_helpers_work_on_a_direct_link_and_clean_up") {
            return;
        }
        let mut nets = Netns::new();
        let (a, b) = (nets.add("a"), nets.add("b"));
        nets.veth((&a, "a0"), (&b, "b0"));
        addr(&a, "a0", "198.18.7.1/24");
        addr(&b, "b0", "198.18.7.2/24");
        let (ip_a, ip_b) = (Ipv4Addr::new(198, 18, 7, 1), Ipv4Addr::new(198, 18, 7, 2));

        let r = ping(&a, ip_b, 64, Duration::from_secs(3)).expect("ping b from a");
        assert_eq!(
            r,
            IcmpReply {
                from: ip_b,
                kind: IcmpReply::ECHO_REPLY
            }
        );
        let r = udp_probe(&a, ip_b, 9, 64).expect("udp probe to a closed port");
        assert_eq!(
            r,
            IcmpReply {
                from: ip_b,
                kind: IcmpReply::PORT_UNREACHABLE
            }
        );
        // Nothing routes 198.19.9.9 from a yet: no answer, the probe times out.
        let nowhere = Ipv4Addr::new(198, 19, 9, 9);
        assert!(ping(&a, nowhere, 64, Duration::from_millis(300)).is_err());

        // TTL exceeded: b forwards to a third namespace, a pings through it with TTL 1.
        let c = nets.add("c");
        nets.veth((&b, "b1"), (&c, "c0"));
        addr(&b, "b1", "198.18.8.1/24");
        addr(&c, "c0", "198.18.8.2/24");
        route(&a, "198.18.8.0/24 via 198.18.7.2");
        route(&c, "198.18.7.0/24 via 198.18.8.1");
        sysctl(&b, "net.ipv4.ip_forward", "1");
        assert_eq!(read_sysctl(&b, "net.ipv4.ip_forward"), "1");
        assert_eq!(
            read_sysctl(&a, "net.ipv4.ip_forward"),
            "0",
            "sysctls are per namespace"
        );
        let ip_c = Ipv4Addr::new(198, 18, 8, 2);
        let r = ping(&a, ip_c, 1, Duration::from_secs(3)).expect("ttl 1");
        assert_eq!(
            r,
            IcmpReply {
                from: ip_b,
                kind: IcmpReply::TTL_EXCEEDED
            }
        );
        let r = udp_probe(&a, ip_c, 33434, 1).expect("udp ttl 1");
        assert_eq!(
            r,
            IcmpReply {
                from: ip_b,
                kind: IcmpReply::TTL_EXCEEDED
            }
        );
        assert_eq!(
            ping(&a, ip_c, 64, Duration::from_secs(3)).unwrap().kind,
            IcmpReply::ECHO_REPLY
        );
        // b has no route to 198.19.9.9: net unreachable. Nobody has 198.18.8.99: after one
        // quick ARP try, host unreachable.
        route(&a, "default via 198.18.7.2");
        let r = ping(&a, nowhere, 64, Duration::from_secs(3)).expect("net unreachable");
        assert_eq!((r.from, r.kind), (ip_b, IcmpReply::NET_UNREACHABLE));
        sysctl(&b, "net.ipv4.neigh.b1.mcast_solicit", "1");
        sysctl(&b, "net.ipv4.neigh.b1.retrans_time_ms", "100");
        let r = udp_probe(&a, Ipv4Addr::new(198, 18, 8, 99), 9, 64).expect("host unreachable");
        assert_eq!((r.from, r.kind), (ip_b, IcmpReply::HOST_UNREACHABLE));

        disable_offloads(&a, "a0");
        tcp_transfer(&a, &c, SocketAddrV4::new(ip_c, 5001), 8 << 20).expect("8 MiB over tcp");
        assert!(run_in(&a, "ip -o addr show dev a0").contains("198.18.7.1/24"));
        assert_eq!(
            mac(&a, "a0"),
            enter(&a, || mac(&a, "a0")),
            "same answer from inside"
        );
        let _ = ip_a;

        let names = [a.clone(), b.clone(), c.clone()];
        nets.cleanup();
        let list = ip(&["netns", "list"]);
        for n in names {
            assert!(!list.contains(&n), "{n} still exists");
        }
    }

    #[test]
    fn namespaces_are_deleted_when_a_test_panics() {
        if !require_root("namespaces_are_deleted_when_a_test_panics") {
            return;
        }
        let name = std::sync::Mutex::new(String::new());
        let r = std::panic::catch_unwind(|| {
            let mut nets = Netns::new();
            *name.lock().unwrap() = nets.add("p");
            panic!("test failure inside");
        });
        assert!(r.is_err());
        let name = name.into_inner().unwrap();
        assert!(!name.is_empty());
        assert!(
            !ip(&["netns", "list"]).contains(&name),
            "{name} survived the panic"
        );
    }
}
