//! The `bpf(2)` commands router mode uses, each over the `repr(C)` prefix of `union
//! bpf_attr` it needs (the kernel treats the missing tail as zeros): create maps and
//! update, look up or delete their elements; load a program (with the verifier's log when
//! it refuses); attach it with a BPF link; run it on a test frame.
//!
//! Every function takes safe types and returns `io::Error`s naming the command.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use super::asm::Insn;

/// `enum bpf_cmd`.
const MAP_CREATE: libc::c_long = 0;
const MAP_LOOKUP_ELEM: libc::c_long = 1;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const MAP_DELETE_ELEM: libc::c_long = 3;
const PROG_LOAD: libc::c_long = 5;
const PROG_TEST_RUN: libc::c_long = 10;
const LINK_CREATE: libc::c_long = 28;

/// `enum bpf_map_type` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum MapType {
    Hash = 1,
    PercpuArray = 6,
    LpmTrie = 11,
    Xskmap = 17,
    DevmapHash = 25,
}

/// `enum bpf_prog_type` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ProgType {
    SchedCls = 3,
    Xdp = 6,
}

/// `BPF_F_NO_PREALLOC`: required for LPM tries.
pub const F_NO_PREALLOC: u32 = 1;
/// `BPF_ANY` for [`map_update`].
pub const UPDATE_ANY: u64 = 0;

/// `bpf(cmd, attr, sizeof attr)`; the raw return value.
fn bpf_raw<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised `repr(C)` prefix of `union bpf_attr` whose
    // size is passed with it; every pointer in it refers to memory that outlives the call
    // and is as large as the length stored beside it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            ptr::from_mut(attr),
            mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `bpf(cmd, attr)` for a command that returns a new descriptor.
fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let rc = bpf_raw(cmd, attr)?;
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (d, s) in out.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    out
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

fn with_context(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("bpf({what}): {e}"))
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// Create a map; `name` (15 bytes at most) shows in `bpftool map`.
pub fn map_create(
    ty: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: ty as u32,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
    };
    bpf_fd(MAP_CREATE, &mut attr).map_err(with_context("BPF_MAP_CREATE"))
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn map_elem<K, V>(
    cmd: libc::c_long,
    map: BorrowedFd<'_>,
    key: &K,
    value: *mut V,
    flags: u64,
) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        _pad: 0,
        key: ptr::from_ref(key) as u64,
        value: value as u64,
        flags,
    };
    bpf_raw(cmd, &mut attr).map(|_| ())
}

/// Insert or replace `key → value`. `K` and `V` must be plain data of the map's key and
/// value sizes.
pub fn map_update<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    key: &K,
    value: &V,
    flags: u64,
) -> io::Result<()> {
    map_elem(
        MAP_UPDATE_ELEM,
        map,
        key,
        ptr::from_ref(value).cast_mut(),
        flags,
    )
    .map_err(with_context("BPF_MAP_UPDATE_ELEM"))
}

/// Delete `key`; `Ok(false)` when it was not there.
pub fn map_delete<K: Copy>(map: BorrowedFd<'_>, key: &K) -> io::Result<bool> {
    match map_elem::<K, u8>(MAP_DELETE_ELEM, map, key, ptr::null_mut(), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(with_context("BPF_MAP_DELETE_ELEM")(e)),
    }
}

/// Read `key` into `out` (for a per-CPU map, `out` holds one value per possible CPU);
/// `Ok(false)` when it is not there.
pub fn map_lookup<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    key: &K,
    out: &mut [V],
) -> io::Result<bool> {
    match map_elem(MAP_LOOKUP_ELEM, map, key, out.as_mut_ptr(), 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(with_context("BPF_MAP_LOOKUP_ELEM")(e)),
    }
}

/// CPUs the kernel may run on (`/sys/devices/system/cpu/possible`): the number of values of
/// a per-CPU map element.
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in text.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.parse().map_err(|_| io::Error::other("bad cpu list"))?,
            b.parse().map_err(|_| io::Error::other("bad cpu list"))?,
        );
        n = n.max(b + 1).max(a + 1);
    }
    Ok(n)
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Load a program. When the verifier refuses it, the load is repeated with a log and the
/// error carries the log's last lines (what the verifier objected to).
pub fn prog_load(
    ty: ProgType,
    insns: &[Insn],
    name: &str,
    expected_attach_type: u32,
    prog_flags: u32,
) -> io::Result<OwnedFd> {
    let license = b"Apache-2.0 OR MIT\0";
    let mut log = Vec::new();
    let attempt = |log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_type: ty as u32,
            insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags,
            prog_name: name16(name),
            prog_ifindex: 0,
            expected_attach_type,
        };
        bpf_fd(PROG_LOAD, &mut attr)
    };
    match attempt(&mut log) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            log.resize(1 << 20, 0);
            let _ = attempt(&mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0');
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(io::Error::new(
                e.kind(),
                format!(
                    "bpf(BPF_PROG_LOAD) of `{name}`: {e}; verifier log ends:\n{}",
                    tail.join("\n")
                ),
            ))
        }
        Err(e) => Err(with_context("BPF_PROG_LOAD")(e)),
    }
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` (with room for the tcx member).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// Attach `prog` to interface `ifindex` at `attach_type` through a BPF link: the returned
/// descriptor owns the attachment (closing it, or the process dying, detaches).
pub fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: fd_u32(prog),
        target_ifindex: ifindex,
        attach_type,
        flags,
        relative_fd: 0,
        _pad: 0,
        expected_revision: 0,
    };
    bpf_fd(LINK_CREATE, &mut attr)
}

#[repr(C)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Run `prog` once on `data` (`BPF_PROG_TEST_RUN`) with the context `ctx` (for XDP: a
/// `struct xdp_md`), returning the program's return value; `data` is replaced by the frame
/// as the program left it. Nothing is sent: a redirect is only reported.
pub fn prog_test_run<C: Copy>(
    prog: BorrowedFd<'_>,
    data: &mut Vec<u8>,
    ctx: &C,
) -> io::Result<u32> {
    let mut out = vec![0u8; data.len() + 256];
    let attr = test_run(prog, data, Some(&mut out), ctx, (1, 0, 0))
        .map_err(with_context("BPF_PROG_TEST_RUN"))?;
    out.truncate(attr.data_size_out as usize);
    *data = out;
    Ok(attr.retval)
}

/// `BPF_XDP` (`enum bpf_attach_type`): attaching a program to a device's XDP hook.
pub const ATTACH_XDP: u32 = 37;

/// `struct xdp_md`, the context of an XDP test run: offsets into the test frame (`data_end`
/// is its length) and the device it seems to arrive on.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the frames a test run's program redirects are really sent.
pub const F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Run XDP program `prog` over `frame` `repeat` times in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`, kernel 5.18+): each run gets its own copy of the frame in a
/// page-pool page, and what the program redirects (`XDP_REDIRECT`, `XDP_TX`) is transmitted
/// as an `xdp_frame`, without an skb — up to `batch` runs per flush (0: the kernel's 64).
/// `ctx` (a `struct xdp_md`, its `data_end` the frame's length) names the device the frames
/// seem to arrive on.
pub fn prog_test_run_live<C: Copy>(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ctx: &C,
    repeat: u32,
    batch: u32,
) -> io::Result<()> {
    test_run(
        prog,
        frame,
        None,
        ctx,
        (repeat, F_TEST_XDP_LIVE_FRAMES, batch),
    )
    .map_err(with_context("BPF_PROG_TEST_RUN (live frames)"))?;
    Ok(())
}

/// One `BPF_PROG_TEST_RUN` of `prog` over `data_in` with context `ctx`, the output into
/// `data_out` if given; `(repeat, flags, batch_size)` as the kernel takes them.
fn test_run<C: Copy>(
    prog: BorrowedFd<'_>,
    data_in: &[u8],
    data_out: Option<&mut [u8]>,
    ctx: &C,
    (repeat, flags, batch_size): (u32, u32, u32),
) -> io::Result<TestRunAttr> {
    let (out_ptr, out_len) = data_out.map_or((0, 0), |o| (o.as_mut_ptr() as u64, o.len()));
    let mut attr = TestRunAttr {
        prog_fd: fd_u32(prog),
        retval: 0,
        data_size_in: u32::try_from(data_in.len()).unwrap_or(u32::MAX),
        data_size_out: u32::try_from(out_len).unwrap_or(u32::MAX),
        data_in: data_in.as_ptr() as u64,
        data_out: out_ptr,
        repeat,
        duration: 0,
        ctx_size_in: mem::size_of::<C>() as u32,
        ctx_size_out: 0,
        ctx_in: ptr::from_ref(ctx) as u64,
        ctx_out: 0,
        flags,
        cpu: 0,
        batch_size,
        _pad: 0,
    };
    bpf_raw(PROG_TEST_RUN, &mut attr)?;
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(mem::offset_of!(MapElemAttr, flags), 24);
        assert_eq!(mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(mem::offset_of!(LinkCreateAttr, relative_fd), 16);
        assert_eq!(mem::offset_of!(LinkCreateAttr, expected_revision), 24);
        assert_eq!(mem::offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(mem::offset_of!(TestRunAttr, flags), 64);
    }

    #[test]
    fn possible_cpus_is_at_least_one() {
        assert!(possible_cpus().unwrap() >= 1);
    }
}
