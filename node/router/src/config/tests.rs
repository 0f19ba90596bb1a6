//! Configuration validation: every refusal, with its message.

use super::*;
use crate::testutil::config;

fn err(f: impl FnOnce(&mut RouterConfig)) -> ConfigError {
    let mut c = config();
    f(&mut c);
    match prepare(&c) {
        Ok(_) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

fn ok(f: impl FnOnce(&mut RouterConfig)) -> Prepared {
    let mut c = config();
    f(&mut c);
    prepare(&c).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn route(s: &str, via: Option<&str>) -> Route {
    let (dst, len) = s.split_once('/').unwrap();
    Route {
        dst: dst.parse().unwrap(),
        prefix_len: len.parse().unwrap(),
        via: via.map(|v| v.parse().unwrap()),
    }
}

#[test]
fn the_test_config_and_defaults_are_valid() {
    let p = ok(|_| {});
    assert_eq!(p.ifaces.len(), 2);
    assert!(prepare(&RouterConfig::default()).is_err(), "no interfaces");
    assert_eq!(RouterConfig::default().capsule_port, 3322);
}

#[test]
fn interface_errors() {
    assert_eq!(
        err(|c| c.interfaces.clear()).to_string(),
        "router: no interfaces configured"
    );
    assert_eq!(
        err(|c| c.interfaces[1].name.clear()).to_string(),
        "interface #1: the name is empty"
    );
    assert_eq!(
        err(|c| c.interfaces[1].name = "eth0".into()).to_string(),
        "interface `eth0` is listed twice"
    );
    for len in [0, 33] {
        assert_eq!(
            err(|c| c.interfaces[0].prefix_len = len).to_string(),
            format!("interface `eth0`: prefix length /{len} is out of range (1..=32)")
        );
    }
    for (addr, why) in [
        ("224.0.0.1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.1", "this network"),
        ("255.255.255.255", "broadcast"),
        ("169.254.0.1", "link-local"),
        ("198.18.0.0", "network address"),
        ("198.18.0.255", "broadcast address"),
    ] {
        let e = err(|c| c.interfaces[0].addr = addr.parse().unwrap()).to_string();
        assert!(
            e.starts_with(&format!(
                "interface `eth0`: address {addr} cannot be used ("
            )),
            "{e}"
        );
        assert!(e.contains(why), "{e}");
    }
    // /31 and /32 have no network or broadcast address.
    ok(|c| {
        c.interfaces[0].addr = "198.18.0.0".parse().unwrap();
        c.interfaces[0].prefix_len = 31;
        c.routes.clear();
    });
    ok(|c| {
        c.interfaces[0].prefix_len = 32;
        c.routes.clear();
    });
    for mac in [[0; 6], [0xff; 6], [0x01, 0, 0x5e, 0, 0, 1]] {
        assert!(matches!(
            err(|c| c.interfaces[1].mac = mac),
            ConfigError::InterfaceMac { .. }
        ));
    }
    assert_eq!(
        err(|c| c.interfaces[1].mac = [0x03, 0, 0, 0, 0, 1]).to_string(),
        "interface `eth1`: MAC 03:00:00:00:00:01 must be unicast and non-zero"
    );
    assert_eq!(
        err(|c| c.interfaces[0].mtu = 67).to_string(),
        "interface `eth0`: MTU 67 is below the IPv4 minimum of 68"
    );
    assert_eq!(
        err(|c| c.interfaces[1].prefix_len = 16).to_string(),
        "interfaces `eth0` (198.18.0.0/24) and `eth1` (198.18.0.0/16) have overlapping subnets; \
         every next hop must belong to exactly one interface"
    );
}

#[test]
fn route_errors() {
    let e = |r: Route| err(move |c| c.routes.push(r)).to_string();
    assert_eq!(
        e(route("10.0.0.0/33", Some("198.18.0.9"))),
        "route 10.0.0.0/33 via 198.18.0.9: prefix length out of range (0..=32)"
    );
    assert_eq!(
        e(route("10.1.2.3/8", Some("198.18.0.9"))),
        "route 10.1.2.3/8 via 198.18.0.9: host bits are set in the destination (did you mean 10.0.0.0/8?)"
    );
    assert_eq!(
        e(route("10.0.0.0/8", Some("192.0.2.1"))),
        "route 10.0.0.0/8 via 192.0.2.1: the gateway is in no interface's subnet"
    );
    for (via, why) in [
        ("198.18.0.1", "own address"),
        ("198.18.0.255", "broadcast"),
        ("198.18.0.0", "network address"),
    ] {
        let msg = e(route("10.0.0.0/8", Some(via)));
        assert!(
            msg.starts_with(&format!(
                "route 10.0.0.0/8 via {via}: the gateway cannot be a next hop"
            )),
            "{msg}"
        );
        assert!(msg.contains(why), "{msg}");
    }
    assert!(e(route("10.0.0.0/8", None)).starts_with(
        "route 10.0.0.0/8 on-link: an on-link route must lie inside one interface's subnet"
    ));
    assert_eq!(
        e(route("198.19.0.0/16", Some("198.18.0.9"))),
        "routes 198.19.0.0/16 via 198.18.1.254 and 198.19.0.0/16 via 198.18.0.9 are for the same \
         prefix with different next hops"
    );
    assert_eq!(
        e(route("198.18.1.0/24", Some("198.18.0.9"))),
        "route 198.18.1.0/24 via 198.18.0.9: this is interface `eth1`'s own subnet, which is \
         on-link through `eth1`; a static route may not replace it"
    );
    assert_eq!(
        err(|c| c.capsule_port = 0).to_string(),
        "capsule_port 0 is not a usable UDP port"
    );
}

#[test]
fn redundant_routes_are_accepted_and_on_link_routes_find_their_interface() {
    let p = ok(|c| {
        // Kernel-style duplicates of a connected subnet and of a listed route.
        c.routes.push(route("198.18.1.0/24", None));
        c.routes.push(route("198.19.0.0/16", Some("198.18.1.254")));
        c.routes.push(route("198.18.0.128/25", None));
        c.routes.push(route("0.0.0.0/0", Some("198.18.0.254")));
    });
    let nh = |a: &str| p.routes.lookup(u32::from(a.parse::<Ipv4Addr>().unwrap()));
    assert_eq!(
        nh("198.18.0.200"),
        Some(NextHop {
            iface: 0,
            via: None
        })
    );
    assert_eq!(
        nh("8.8.8.8"),
        Some(NextHop {
            iface: 0,
            via: Some(0xc612_00fe)
        })
    );
    assert_eq!(
        nh("198.19.9.9"),
        Some(NextHop {
            iface: 1,
            via: Some(0xc612_01fe)
        })
    );
}

#[test]
fn limit_errors() {
    let e = |f: fn(&mut RouterLimits)| err(move |c| f(&mut c.limits)).to_string();
    assert_eq!(
        e(|l| l.arp_entries = 0),
        "limit `arp_entries` = 0: must be in 1..=1048576"
    );
    assert_eq!(
        e(|l| l.arp_incomplete_entries = 0),
        "limit `arp_incomplete_entries` = 0: must be in 1..=1048576"
    );
    assert_eq!(
        e(|l| l.icmp_source_entries = (1 << 20) + 1),
        "limit `icmp_source_entries` = 1048577: must be in 1..=1048576"
    );
    assert_eq!(
        e(|l| l.max_tx_frames = 0),
        "limit `max_tx_frames` = 0: must be in 1..=1048576"
    );
    assert_eq!(
        e(|l| l.max_tx_bytes = 1000),
        "limit `max_tx_bytes` = 1000: must be in 1514..=1073741824 (at least one frame of the largest MTU)"
    );
    assert_eq!(
        e(|l| l.arp_retries = 0),
        "limit `arp_retries` = 0: must be in 1..=100"
    );
    assert_eq!(
        e(|l| l.arp_retry = Duration::ZERO),
        "limit `arp_retry` = 0ns: must be between 1 ms and 1 day"
    );
    assert!(e(|l| l.arp_pending_total = usize::MAX).starts_with("limit `arp_pending_total`"));
    // Zero holds and a zero ICMP budget are legitimate choices.
    ok(|c| {
        c.limits.arp_pending_per_neighbour = 0;
        c.limits.arp_pending_total = 0;
        c.limits.icmp_burst = 0;
        c.limits.icmp_per_sec = 0;
        c.limits.icmp_source_burst = 0;
        c.limits.icmp_source_per_sec = 0;
    });
}

#[test]
fn docs_router_md_states_the_default_limits() {
    const DOCS: &str = include_str!("../../../../docs/router.md");
    // Exhaustive: a new limit does not compile here until its row is checked.
    let RouterLimits {
        arp_entries,
        arp_incomplete_entries,
        arp_pending_per_neighbour,
        arp_pending_total,
        arp_reachable,
        arp_retry,
        arp_retries,
        icmp_per_sec,
        icmp_burst,
        icmp_source_per_sec,
        icmp_source_burst,
        icmp_source_entries,
        max_tx_frames,
        max_tx_bytes,
    } = RouterLimits::default();
    let secs = |t: Duration| format!("{} s", t.as_secs());
    for (name, value) in [
        ("arp_entries", arp_entries.to_string()),
        ("arp_incomplete_entries", arp_incomplete_entries.to_string()),
        (
            "arp_pending_per_neighbour",
            arp_pending_per_neighbour.to_string(),
        ),
        ("arp_pending_total", arp_pending_total.to_string()),
        ("arp_reachable", secs(arp_reachable)),
        ("arp_retry", secs(arp_retry)),
        ("arp_retries", arp_retries.to_string()),
        ("icmp_per_sec", icmp_per_sec.to_string()),
        ("icmp_burst", icmp_burst.to_string()),
        ("icmp_source_per_sec", icmp_source_per_sec.to_string()),
        ("icmp_source_burst", icmp_source_burst.to_string()),
        ("icmp_source_entries", icmp_source_entries.to_string()),
        ("max_tx_frames", max_tx_frames.to_string()),
        ("max_tx_bytes", max_tx_bytes.to_string()),
    ] {
        let row = format!("| `{name}` | {value} |");
        assert!(DOCS.contains(&row), "docs/router.md lacks the row `{row}`");
    }
}
