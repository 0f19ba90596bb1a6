//! Router mode started as root gives up root once its interfaces are open: it becomes the
//! configured user (`[router] user`), keeping only the capabilities it still uses —
//! `CAP_NET_RAW` (its packet sockets), `CAP_NET_ADMIN` (restoring the interfaces'
//! forwarding sysctls and detaching programs on exit), `CAP_BPF` and `CAP_PERFMON` (its BPF
//! maps) — in the calling thread, and none in any other thread; then sets no-new-privileges.
//!
//! `setresuid` in glibc changes every thread's ids. Only the calling thread asked to keep its
//! capabilities (`PR_SET_KEEPCAPS` is per thread), so the kernel clears every other thread's
//! permitted set when it leaves uid 0; the calling thread's is then cut down to the four.

use std::ffi::CString;
use std::path::Path;

use anyhow::{Context, bail};

/// The capabilities router mode keeps.
pub const KEPT: [(u32, &str); 4] = [
    (13, "CAP_NET_RAW"),
    (12, "CAP_NET_ADMIN"),
    (39, "CAP_BPF"),
    (38, "CAP_PERFMON"),
];

/// A user to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Look `name` up in the user database.
pub fn lookup(name: &str) -> anyhow::Result<Target> {
    let c = CString::new(name).context("a user name has no NUL bytes")?;
    // SAFETY: `passwd` is plain data (integers and pointers); all zeros is a valid value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pw`'s strings
    // (none are read).
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        bail!("no user named {name:?} on this host ([router] user)");
    }
    Ok(Target {
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// Hand `dir` and what is in it (two levels: the code directory's files) to `to`.
pub fn give_dir(dir: &Path, to: Target) -> anyhow::Result<()> {
    let own = |p: &Path| {
        std::os::unix::fs::lchown(p, Some(to.uid), Some(to.gid))
            .with_context(|| format!("cannot hand {} to uid {}", p.display(), to.uid))
    };
    own(dir)?;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        own(&e?.path())?;
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS` for the calling thread and the threads it starts afterwards: no
/// `execve` can then gain privileges (setuid binaries, file capabilities). `ants run` sets it
/// before its first thread, so every thread of a node has it.
pub fn no_new_privileges() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Become `to`, keeping [`KEPT`] in this thread only. Must run as root.
pub fn drop_to(to: Target) -> anyhow::Result<()> {
    let sys = |what: &str, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()).with_context(|| format!("{what} failed"))
        }
    };
    // SAFETY: plain system calls with valid arguments; no memory is shared with the kernel
    // beyond the local arrays passed by pointer.
    unsafe {
        sys("setgroups", libc::setgroups(1, &to.gid))?;
        sys(
            "prctl(PR_SET_KEEPCAPS)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
        )?;
        sys("setresgid", libc::setresgid(to.gid, to.gid, to.gid))?;
        sys("setresuid", libc::setresuid(to.uid, to.uid, to.uid))?;
    }
    let mask: u64 = KEPT.iter().fold(0, |m, (bit, _)| m | 1 << bit);
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        CapData {
            effective: mask as u32,
            permitted: mask as u32,
            inheritable: 0,
        },
        CapData {
            effective: (mask >> 32) as u32,
            permitted: (mask >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: `header` and `data` are the layouts capset(2) expects for version 3 (two
    // 32-bit words), valid for the call.
    unsafe {
        sys(
            "capset",
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int,
        )?;
        sys(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
        )?;
        sys(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
    }
    // SAFETY: getuid and geteuid have no preconditions and cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid == 0 || euid == 0 {
        bail!("still root after setresuid");
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
