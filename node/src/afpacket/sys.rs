//! The raw system calls behind a [`PacketSocket`](super::PacketSocket): the socket, its
//! statistics and the interface `ioctl`s, each wrapped so that callers pass safe types (socket
//! options and the ring mapping are `crate::sys`).
//!
//! Errors carry the step and the interface (`"setsockopt PACKET_RX_RING on r1-h1: …"`),
//! plus a hint where the fix is known (missing privileges, unknown interface).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// `PACKET_VNET_HDR` (`linux/if_packet.h`), which the `libc` crate does not define.
pub(super) const PACKET_VNET_HDR: libc::c_int = 15;

/// `ETH_P_ALL` in network byte order, as `socket` and `sockaddr_ll` want it.
pub(super) fn eth_p_all_be() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// The system's page size (4096 where it cannot be asked).
pub(super) fn page_size() -> usize {
    // SAFETY: `sysconf` takes an integer and returns one; no memory is involved.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Wrap `err` with the failed `step` and the interface, adding a hint for the usual causes.
pub(super) fn step_error(step: &str, ifname: &str, err: io::Error) -> io::Error {
    let hint = match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " — router mode needs root or CAP_NET_RAW (CAP_NET_ADMIN for kernel isolation)"
        }
        Some(libc::ENODEV | libc::ENXIO) => " — no such interface in this network namespace",
        _ => "",
    };
    io::Error::new(err.kind(), format!("{step} on {ifname}: {err}{hint}"))
}

/// A new `AF_PACKET`/`SOCK_RAW` socket, nonblocking and close-on-exec.
///
/// Protocol 0: the socket receives nothing until [`bind_ifindex`] names a protocol, so no
/// frame of another interface slips in while the ring is being set up.
pub(super) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor we just opened and own exclusively.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `PACKET_STATISTICS` for a `TPACKET_V3` socket: (packets, drops, queue freezes) since the
/// previous call (the kernel resets the counters when it reports them).
pub(super) fn packet_statistics(fd: RawFd) -> io::Result<libc::tpacket_stats_v3> {
    // SAFETY: all-zero bytes are a valid `tpacket_stats_v3` (three integers).
    let mut st: libc::tpacket_stats_v3 = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` and `len` are live and writable for the call; `len` tells the kernel how
    // many bytes of `st` it may write.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            ptr::from_mut(&mut st).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `PACKET_FANOUT` (`linux/if_packet.h`; the `libc` crate has it only in its new UAPI tree).
const PACKET_FANOUT: libc::c_int = 18;
/// Fanout by the kernel's flow hash: a flow's frames go to one socket of the group.
const PACKET_FANOUT_HASH: u32 = 0;
/// Let the kernel pick an id no other group in the namespace uses (Linux ≥ 4.20).
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// Join `fd` (bound) to a hash fanout group: `group` to join an existing one, `None` to
/// create one with a fresh id. Returns the group's id.
pub(super) fn join_fanout(fd: &OwnedFd, group: Option<u16>) -> io::Result<u16> {
    let arg = match group {
        Some(id) => u32::from(id) | PACKET_FANOUT_HASH << 16,
        None => (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
    };
    crate::sys::setsockopt(fd, libc::SOL_PACKET, PACKET_FANOUT, &arg)?;
    let mut got: u32 = 0;
    let mut len = mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `got` and `len` are live and writable for the call; `len` bounds the write.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT,
            ptr::from_mut(&mut got).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((got & 0xffff) as u16)
}

/// Bind `fd` to `ifindex` for every protocol (`ETH_P_ALL`).
pub(super) fn bind_ifindex(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: all-zero bytes are a valid `sockaddr_ll` (integers and a byte array).
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = eth_p_all_be();
    sll.sll_ifindex = ifindex as libc::c_int;
    // SAFETY: `sll` is a live `sockaddr_ll` and its exact size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            ptr::from_ref(&sll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the interface `ioctl`s report about a link.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinkInfo {
    pub(super) ifindex: u32,
    pub(super) hw_type: u16,
    pub(super) mac: [u8; 6],
    pub(super) mtu: u32,
    /// Receive queues in use (`ETHTOOL_GCHANNELS`: dedicated receive plus combined
    /// channels); `None` when the driver does not say.
    pub(super) rx_queues: Option<u32>,
}

/// An `ifreq` naming `ifname`; `InvalidInput` when the name cannot be an interface name.
fn ifreq_for(ifname: &str) -> io::Result<libc::ifreq> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{ifname}` is not a valid interface name (1 to 15 bytes, no NUL)"),
        ));
    }
    // SAFETY: all-zero bytes are a valid `ifreq` (a name array and a union of plain data).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// One interface `ioctl` (`SIOCGIF*`) on `fd`, in the network namespace of `fd`.
fn if_ioctl(fd: RawFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every `SIOCGIF*` request used here reads the name from and writes its answer
    // into the `ifreq` passed, which is live and exclusively borrowed for the call.
    let rc = unsafe { libc::ioctl(fd, request as _, ptr::from_mut(req)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Index, hardware type, MAC address and MTU of `ifname`, asked through `fd` (so the answer
/// is about the socket's network namespace, not about the thread's mount of `/sys`).
pub(super) fn link_info(fd: RawFd, ifname: &str) -> io::Result<LinkInfo> {
    let mut req = ifreq_for(ifname)?;
    if_ioctl(fd, libc::SIOCGIFINDEX, &mut req)
        .map_err(|e| step_error("SIOCGIFINDEX", ifname, e))?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote the index member of the union.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut req = ifreq_for(ifname)?;
    if_ioctl(fd, libc::SIOCGIFHWADDR, &mut req)
        .map_err(|e| step_error("SIOCGIFHWADDR", ifname, e))?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the hardware address member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&hw.sa_data) {
        *dst = src as u8;
    }
    let mut req = ifreq_for(ifname)?;
    if_ioctl(fd, libc::SIOCGIFMTU, &mut req).map_err(|e| step_error("SIOCGIFMTU", ifname, e))?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the MTU member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(LinkInfo {
        ifindex: u32::try_from(ifindex).unwrap_or(0),
        hw_type: hw.sa_family,
        mac,
        mtu: u32::try_from(mtu).unwrap_or(0),
        rx_queues: rx_channels(fd, ifname),
    })
}

/// `ETHTOOL_GCHANNELS` (`linux/ethtool.h`).
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The receive queues `ifname` uses, from its driver's channel counts; `None` if the driver
/// does not report them (or reports none).
fn rx_channels(fd: RawFd, ifname: &str) -> Option<u32> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    let mut req = ifreq_for(ifname).ok()?;
    req.ifr_ifru.ifru_data = ptr::from_mut(&mut ch).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS reads the command from and writes the
    // counts into the `ethtool_channels` that `ifru_data` points to, live and exclusively
    // borrowed for the call, as is `req`.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, ptr::from_mut(&mut req)) };
    let n = ch.rx_count.saturating_add(ch.combined_count);
    (rc == 0 && n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_interface_names_are_refused_before_any_syscall() {
        for name in ["", "a-name-much-too-long", "nul\0name"] {
            let err = ifreq_for(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        let req = ifreq_for("r1-h1").unwrap();
        assert_eq!(
            req.ifr_name[..5],
            [b'r', b'1', b'-', b'h', b'1'].map(|b| b as libc::c_char)
        );
        assert_eq!(req.ifr_name[5], 0);
    }

    #[test]
    fn step_errors_name_the_step_the_interface_and_the_fix() {
        let e = step_error(
            "setsockopt PACKET_RX_RING",
            "r1-h1",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("setsockopt PACKET_RX_RING on r1-h1: "),
            "{msg}"
        );
        assert!(msg.contains("CAP_NET_RAW"), "{msg}");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = step_error("bind", "nope0", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(e.to_string().contains("no such interface"), "{e}");
    }
}
