//! IPv4 header validation and address checks.

use super::*;

fn frame() -> Vec<u8> {
    Ipv4Spec::udp(A, B, 1000, 2000, b"hello").frame(R0_MAC, A_MAC)
}

#[test]
fn header_errors_are_counted_by_reason() {
    let mut r = resolved_router();
    // Shorter than a minimal header.
    let f = frame();
    assert_drop(&mut r, 0, f[..14 + 19].to_vec(), DropReason::Truncated);
    assert_drop(&mut r, 0, f[..14].to_vec(), DropReason::Truncated);

    let mut f = frame();
    f[14] = 0x65; // version 6 in an IPv4 ethertype
    fix_ip_checksum(&mut f);
    assert_drop(&mut r, 0, f, DropReason::BadVersion);

    let mut f = frame();
    f[14] = 0x44; // IHL 4
    assert_drop(&mut r, 0, f, DropReason::BadHeaderLength);

    let mut f = frame();
    f[14] = 0x4f; // IHL 15 = 60 bytes, frame has 20 + 13
    assert_drop(&mut r, 0, f, DropReason::Truncated);

    let mut f = frame();
    f[16..18].copy_from_slice(&19u16.to_be_bytes()); // total < header
    fix_ip_checksum(&mut f);
    assert_drop(&mut r, 0, f, DropReason::BadTotalLength);

    let mut f = frame();
    let total = (f.len() - 14 + 1) as u16; // one byte beyond the frame
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut f);
    assert_drop(&mut r, 0, f, DropReason::BadTotalLength);

    let mut f = frame();
    f[24] ^= 0x01;
    assert_drop(&mut r, 0, f, DropReason::BadChecksum);

    assert!(drain(&mut r).is_empty(), "no ICMP about malformed packets");
    assert_eq!(r.counters().forwarded, 0);
}

#[test]
fn bad_sources_are_dropped_silently() {
    let mut r = resolved_router();
    for src in [
        "224.0.0.5",
        "255.255.255.255",
        "198.18.0.255", // our subnet's broadcast
        "198.18.0.1",   // ours (this interface)
        "198.18.1.1",   // ours (the other one)
        "0.0.0.0",
        "127.0.0.1",
        "240.0.0.1",
        "169.254.3.4",
    ] {
        let mut s = Ipv4Spec::udp(src.parse().unwrap(), B, 1, 2, b"x");
        s.ttl = 1; // would earn an ICMP if the source were accepted
        assert_drop(&mut r, 0, s.frame(R0_MAC, A_MAC), DropReason::BadSource);
    }
    assert!(drain(&mut r).is_empty());
}

#[test]
fn broadcast_multicast_and_martian_destinations_are_dropped_silently() {
    let mut r = resolved_router();
    for dst in [
        "255.255.255.255",
        "198.18.0.255",
        "198.18.1.255",
        "224.0.0.1",
        "239.1.2.3",
    ] {
        let s = Ipv4Spec::echo(A, dst.parse().unwrap(), 1, 1, b"ping");
        assert_drop(
            &mut r,
            0,
            s.frame(R0_MAC, A_MAC),
            DropReason::BroadcastDestination,
        );
    }
    for dst in [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "240.1.1.1",
        "169.254.1.1",
        "255.255.255.254",
    ] {
        let s = Ipv4Spec::udp(A, dst.parse().unwrap(), 1, 2, b"x");
        assert_drop(
            &mut r,
            0,
            s.frame(R0_MAC, A_MAC),
            DropReason::MartianDestination,
        );
    }
    assert!(
        drain(&mut r).is_empty(),
        "never an answer to broadcast or martians"
    );
}

#[test]
fn ethernet_padding_is_allowed_and_kept() {
    let mut r = resolved_router();
    let mut f = Ipv4Spec::udp(A, B, 1, 2, b"").frame(R0_MAC, A_MAC); // 14 + 28 = 42 bytes
    let ip_len = f.len() - 14;
    f.resize(60, 0xee);
    let before = f.clone();
    assert_eq!(
        r.handle_frame(t(0), 0, &mut f),
        Verdict::Forward { iface: 1 }
    );
    assert_eq!(f.len(), 60);
    assert_eq!(
        &f[14 + ip_len..],
        &before[14 + ip_len..],
        "padding untouched"
    );
    let ip = parse_ip(&f);
    assert_eq!(ip.ttl, 63);
}
