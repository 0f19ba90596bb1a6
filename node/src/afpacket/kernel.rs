//! The kernel's side of an interface router mode owns: keep its IP stack out of the way,
//! and read what it knows (addresses, routes).
//!
//! - [`isolate`] / [`isolate_with`]: per-interface `forwarding=0`, `disable_ipv6=1`, an
//!   optional tcx ingress drop, and a report of kernel IPv4 addresses; the returned
//!   [`Isolation`] puts everything back when dropped.
//! - [`interface_ipv4_addrs`]: the IPv4 addresses the kernel has on an interface.
//! - [`kernel_routes`]: the kernel's main IPv4 routing table, dumped over rtnetlink
//!   (`netlink-packet-route`).
//!
//! The ingress drop is a two-instruction tcx BPF program attached through a BPF link (see
//! the `tcx` module), not `tc qdisc add … clsact` + `tc filter … matchall action drop`: it
//! needs no `tc` binary and no `cls_matchall`/`act_gact` modules (kernels built without
//! them exist — the development VM's is one), and a link owned by a descriptor detaches
//! itself when the process dies, so a crashed router never leaves the interface dark.
//!
//! Everything here acts on the calling thread's network namespace; what [`Isolation`]
//! restores is held through descriptors opened in that namespace, so it is restored there
//! even if the value is dropped on another thread.

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::ptr;

use super::tcx::IngressDrop;

/// What [`isolate_with`] does besides the sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolateOptions {
    /// Attach a drop-everything tcx ingress program, so the kernel's IP stack does not even
    /// look at the frames the node handles (the node's packet socket still gets them: taps
    /// run before tc ingress). Failure to attach is reported, not an error.
    pub ingress_drop: bool,
}

impl Default for IsolateOptions {
    /// Ingress drop on: it costs nothing on the node's path and spares the kernel the IP
    /// receive path (routing lookup, then a drop) for every frame.
    fn default() -> Self {
        IsolateOptions { ingress_drop: true }
    }
}

/// Whether the tcx ingress drop is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressDropState {
    /// Not asked for.
    NotRequested,
    /// Attached; detached when the [`Isolation`] is dropped (or the process exits).
    Installed,
    /// Asked for but could not be attached (old kernel, missing `CAP_BPF`): the reason.
    /// The kernel then still runs its IP receive path on every frame, harmlessly (no
    /// addresses, no forwarding) but at some CPU cost.
    Unavailable(String),
}

/// A sysctl (or sysfs setting) changed by the router, restored on drop through the
/// descriptor it was read by.
#[derive(Debug)]
pub(crate) struct SavedSysctl {
    file: File,
    previous: String,
    changed: bool,
    path: String,
}

impl SavedSysctl {
    /// Set the sysctl at `path` to `value`, remembering what it was. `Ok(None)` when the
    /// file does not exist.
    pub(crate) fn set(path: &str, value: &str) -> io::Result<Option<SavedSysctl>> {
        let Some(mut saved) = Self::open(path)? else {
            return Ok(None);
        };
        if saved.previous != value {
            saved.write(value)?;
        }
        Ok(Some(saved))
    }

    /// Open the sysctl at `path` and remember its value, changing nothing yet (`write`
    /// does). `Ok(None)` when the file does not exist.
    pub(crate) fn open(path: &str) -> io::Result<Option<SavedSysctl>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("open {path}: {e}"))),
        };
        let mut buf = [0u8; 64];
        let n = file
            .read_at(&mut buf, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("read {path}: {e}")))?;
        let previous = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        Ok(Some(SavedSysctl {
            file,
            previous,
            changed: false,
            path: path.to_owned(),
        }))
    }

    /// Write `value` (through the file opened at the start, so a process that has since
    /// given up its user id may still write it); restored on drop unless it is the value
    /// found at the start.
    pub(crate) fn write(&mut self, value: &str) -> io::Result<()> {
        self.put(value)?;
        self.changed = value != self.previous;
        Ok(())
    }

    /// Write back the value found at the start.
    pub(crate) fn restore(&mut self) -> io::Result<()> {
        self.put(&self.previous)?;
        self.changed = false;
        Ok(())
    }

    fn put(&self, value: &str) -> io::Result<()> {
        self.file
            .write_at(format!("{value}\n").as_bytes(), 0)
            .map(drop)
            .map_err(|e| io::Error::new(e.kind(), format!("write {value} to {}: {e}", self.path)))
    }
}

impl Drop for SavedSysctl {
    fn drop(&mut self) {
        if self.changed {
            // Nothing to do about a failure here (the interface may be gone already).
            let _ = self.put(&self.previous);
        }
    }
}

/// What [`isolate`] changed on an interface; restores it when dropped.
#[derive(Debug)]
pub struct Isolation {
    ifname: String,
    forwarding: SavedSysctl,
    disable_ipv6: Option<SavedSysctl>,
    kernel_addrs: Vec<(Ipv4Addr, u8)>,
    ingress_state: IngressDropState,
    _ingress: Option<IngressDrop>,
}

impl Isolation {
    /// The interface isolated.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// `net.ipv4.conf.<if>.forwarding` before isolation (`"1"` if the kernel was routing).
    pub fn previous_forwarding(&self) -> &str {
        &self.forwarding.previous
    }

    /// `net.ipv6.conf.<if>.disable_ipv6` before isolation; `None` without IPv6 support.
    pub fn previous_disable_ipv6(&self) -> Option<&str> {
        self.disable_ipv6.as_ref().map(|s| s.previous.as_str())
    }

    /// IPv4 addresses the kernel has on the interface (address, prefix length). The router
    /// owns its addresses in its own config; with a kernel address here the kernel would
    /// also answer ARP and ICMP for it, so a daemon should refuse to start and say so.
    pub fn kernel_ipv4_addrs(&self) -> &[(Ipv4Addr, u8)] {
        &self.kernel_addrs
    }

    /// Whether the tcx ingress drop is in place.
    pub fn ingress_drop(&self) -> &IngressDropState {
        &self.ingress_state
    }
}

/// [`isolate_with`] with the default options (ingress drop on).
pub fn isolate(ifname: &str) -> io::Result<Isolation> {
    isolate_with(ifname, &IsolateOptions::default())
}

/// Take `ifname` away from the kernel's IP stack, in the calling thread's network namespace:
/// `net.ipv4.conf.<if>.forwarding = 0` (the kernel forwards nothing that arrives there),
/// `net.ipv6.conf.<if>.disable_ipv6 = 1` (no IPv6 addresses, no router solicitations or
/// other IPv6 noise on the link), and, if asked, a tcx ingress drop. Reports the kernel's
/// IPv4 addresses on the interface. Dropping the result restores what was changed.
pub fn isolate_with(ifname: &str, opts: &IsolateOptions) -> io::Result<Isolation> {
    check_ifname(ifname)?;
    let forwarding =
        SavedSysctl::set(&format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding"), "0")?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("isolate {ifname}: no such interface in this network namespace"),
                )
            })?;
    let disable_ipv6 = SavedSysctl::set(
        &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
        "1",
    )?;
    let kernel_addrs = interface_ipv4_addrs(ifname)?;
    let (ingress, ingress_state) = if opts.ingress_drop {
        match ifindex(ifname).and_then(IngressDrop::attach) {
            Ok(d) => (Some(d), IngressDropState::Installed),
            Err(e) => (None, IngressDropState::Unavailable(e.to_string())),
        }
    } else {
        (None, IngressDropState::NotRequested)
    };
    Ok(Isolation {
        ifname: ifname.to_string(),
        forwarding,
        disable_ipv6,
        kernel_addrs,
        ingress_state,
        _ingress: ingress,
    })
}

/// Refuse names that are not interface names, or that would address the namespace-wide
/// sysctl directories (`all`, `default`).
fn check_ifname(ifname: &str) -> io::Result<()> {
    let bad = ifname.is_empty()
        || ifname.len() >= libc::IFNAMSIZ
        || matches!(ifname, "." | ".." | "all" | "default")
        || ifname
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{ifname}` is not an interface name router mode can own"),
        ));
    }
    Ok(())
}

/// The index of `ifname` in the calling thread's network namespace.
fn ifindex(ifname: &str) -> io::Result<u32> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string that lives for the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// Frees a `getifaddrs` list when dropped.
struct IfAddrs(*mut libc::ifaddrs);

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a successful `getifaddrs` and is freed only here.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

/// Read an IPv4 `sockaddr` pointer from `getifaddrs`.
///
/// # Safety
///
/// `sa` must be null or point to a valid `sockaddr` whose family says how long it is.
unsafe fn sockaddr_v4(sa: *const libc::sockaddr) -> Option<Ipv4Addr> {
    // SAFETY: the caller vouches that `sa` is null or valid.
    let family = unsafe { sa.as_ref() }?.sa_family;
    if libc::c_int::from(family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the kernel stored a `sockaddr_in` here; read it unaligned to
    // need no promise about the allocation's alignment.
    let sin = unsafe { ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
    Some(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
}

/// The IPv4 addresses (address, prefix length) the kernel has on `ifname` in the calling
/// thread's network namespace, labelled aliases (`eth0:1`) included. Empty for an unknown
/// interface.
pub fn interface_ipv4_addrs(ifname: &str) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let mut list = IfAddrs(ptr::null_mut());
    // SAFETY: `getifaddrs` writes a list head to the pointer it is given; `IfAddrs` frees it.
    if unsafe { libc::getifaddrs(&raw mut list.0) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("getifaddrs: {e}")));
    }
    let mut out = Vec::new();
    let mut cur = list.0;
    // Every `cur` is null or a node of the list `getifaddrs` built, alive until `list` is
    // dropped at the end of this function; its name is a C string and its address pointers
    // are null or valid socket addresses.
    while !cur.is_null() {
        // SAFETY: non-null, so a node of the list (see above).
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: see the comment before the loop.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes();
        let ours = name == ifname.as_bytes()
            || name
                .strip_prefix(ifname.as_bytes())
                .is_some_and(|r| r.starts_with(b":"));
        if !ours {
            continue;
        }
        // SAFETY: see the comment before the loop.
        let (addr, mask) = unsafe { (sockaddr_v4(ifa.ifa_addr), sockaddr_v4(ifa.ifa_netmask)) };
        if let Some(addr) = addr {
            let prefix = mask.map_or(32, |m| u32::from(m).count_ones() as u8);
            out.push((addr, prefix));
        }
    }
    Ok(out)
}

/// One route of the kernel's IPv4 table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Prefix length of the destination (0 for the default route).
    pub prefix_len: u8,
    /// Next hop, for routes through a gateway; `None` for connected routes.
    pub gateway: Option<Ipv4Addr>,
    /// Interface the route leaves by.
    pub dev: String,
}

/// Most route messages [`kernel_routes`] reads before it gives up (a full Internet table is
/// ~1 M routes; an edge host's main table has a handful).
const MAX_ROUTE_MESSAGES: usize = 100_000;

/// The kernel's main IPv4 routing table in the calling thread's network namespace, dumped
/// over rtnetlink (`RTM_GETROUTE`), for importing routes into the router. Unicast routes of
/// the main table only (no local, broadcast, blackhole or unreachable routes); multipath
/// routes are left out.
pub fn kernel_routes() -> io::Result<Vec<KernelRoute>> {
    use netlink_packet_core::{
        NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

    let err = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("rtnetlink {what}: {e}"));
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| err("socket", e))?;
    socket.bind_auto().map_err(|e| err("bind", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| err("connect", e))?;
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(request)),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(|e| err("send", e))?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 << 10];
    let mut seen = 0;
    loop {
        let n = socket
            .recv(&mut &mut rx[..], 0)
            .map_err(|e| err("recv", e))?;
        let mut at = 0;
        while at < n {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n]).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {e}"))
                })?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("rtnetlink route dump: {e}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    out.extend(route_of(&r));
                }
                _ => {}
            }
            seen += 1;
            if len == 0 || seen > MAX_ROUTE_MESSAGES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "rtnetlink route dump: malformed or endless",
                ));
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// A main-table IPv4 unicast route without multipath, as a [`KernelRoute`].
fn route_of(r: &netlink_packet_route::route::RouteMessage) -> Option<KernelRoute> {
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
    let h = &r.header;
    if h.address_family != AddressFamily::Inet || h.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(h.table);
    let (mut destination, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(d)) => destination = *d,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(_) => return None,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || h.destination_prefix_length > 32 {
        return None;
    }
    Some(KernelRoute {
        destination,
        prefix_len: h.destination_prefix_length,
        gateway,
        dev: oif.map(interface_name).unwrap_or_default(),
    })
}

/// The name of interface `index` in the calling thread's namespace (empty if unknown).
fn interface_name(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes `if_indextoname` may write, NUL included.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: on success the kernel wrote a NUL-terminated name into `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_main_table_unicast_routes_are_taken() {
        use netlink_packet_route::AddressFamily;
        use netlink_packet_route::route::{
            RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
        };
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let msg = |len, kind, table: u8, attrs: Vec<RouteAttribute>| {
            let mut m = RouteMessage::default();
            m.header.address_family = AddressFamily::Inet;
            m.header.destination_prefix_length = len;
            m.header.kind = kind;
            m.header.table = table;
            m.attributes = attrs;
            m
        };
        let main = RouteHeader::RT_TABLE_MAIN;
        let via = msg(
            24,
            RouteType::Unicast,
            main,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet(ip("198.18.50.0"))),
                RouteAttribute::Gateway(RouteAddress::Inet(ip("198.18.1.2"))),
            ],
        );
        assert_eq!(
            route_of(&via),
            Some(KernelRoute {
                destination: ip("198.18.50.0"),
                prefix_len: 24,
                gateway: Some(ip("198.18.1.2")),
                dev: String::new(),
            })
        );
        let default = msg(0, RouteType::Unicast, main, vec![]);
        assert_eq!(
            route_of(&default).unwrap().destination,
            Ipv4Addr::UNSPECIFIED
        );
        // Local routes, other tables (also by attribute), multipath, IPv6: left out.
        assert_eq!(route_of(&msg(32, RouteType::Local, 255, vec![])), None);
        assert_eq!(route_of(&msg(24, RouteType::Unicast, 100, vec![])), None);
        let table_attr = msg(24, RouteType::Unicast, 0, vec![RouteAttribute::Table(1000)]);
        assert_eq!(route_of(&table_attr), None);
        let multi = msg(
            24,
            RouteType::Unicast,
            main,
            vec![RouteAttribute::MultiPath(vec![])],
        );
        assert_eq!(route_of(&multi), None);
        let mut v6 = msg(64, RouteType::Unicast, main, vec![]);
        v6.header.address_family = AddressFamily::Inet6;
        assert_eq!(route_of(&v6), None);
        assert_eq!(route_of(&msg(33, RouteType::Unicast, main, vec![])), None);
    }

    #[test]
    fn the_dump_of_this_namespace_parses() {
        // Whatever the host's table holds, the dump ends and parses.
        kernel_routes().unwrap();
    }

    #[test]
    fn namespace_wide_and_odd_names_are_refused() {
        for name in [
            "",
            "all",
            "default",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "0123456789abcdef",
        ] {
            assert!(check_ifname(name).is_err(), "{name:?}");
        }
        check_ifname("r1-h1").unwrap();
    }

    #[test]
    fn loopback_has_its_address() {
        let addrs = interface_ipv4_addrs("lo").unwrap();
        // Containers may run without an address on lo; when there is one it is 127.0.0.1/8.
        if let Some(a) = addrs.first() {
            assert_eq!(*a, (Ipv4Addr::LOCALHOST, 8));
        }
        assert!(interface_ipv4_addrs("ants-nonexist0").unwrap().is_empty());
    }
}
