//! Shared helpers: build shipped capsules once, load fixtures, run capsules on a test node.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ants_capsule_build::{BuildOptions, BuiltCapsule};
use ants_core::{Executor, HostLimits};
use ants_node::testbench::{self, TestNode, TestRun};
use ants_node::{ExecutorConfig, WasmExecutor};
use ants_wire::{Address, CapsuleRepr, CapsuleType};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build `capsules/<name>` to wasm once per test process and return the result.
pub(crate) fn capsule(name: &str) -> BuiltCapsule {
    static BUILT: OnceLock<Mutex<Vec<(String, BuiltCapsule)>>> = OnceLock::new();
    let cache = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, b)) = cache.iter().find(|(n, _)| n == name) {
        return b.clone();
    }
    let dir = root().join("capsules").join(name);
    let built = ants_capsule_build::build(&dir, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()));
    cache.push((name.to_string(), built.clone()));
    built
}

/// The bytes of a shipped capsule's module.
pub(crate) fn capsule_bytes(name: &str) -> Vec<u8> {
    std::fs::read(capsule(name).path).expect("read built capsule")
}

/// A hostile fixture, assembled from `tests/fixtures/hostile/<name>.wat`.
pub(crate) fn hostile(name: &str) -> Vec<u8> {
    let path = root()
        .join("tests/fixtures/hostile")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn addr(s: &str) -> Address {
    s.parse().expect("address literal")
}

/// A capsule of type `ty` from 198.18.0.1 to `dst` with `payload`.
pub(crate) fn capsule_to<'a>(ty: CapsuleType, dst: &str, payload: &'a [u8]) -> CapsuleRepr<'a> {
    CapsuleRepr {
        flags: 0,
        resource: 64,
        capsule_type: ty,
        src: addr("198.18.0.1"),
        dst: addr(dst),
        prev: addr("198.18.0.1"),
        header: &[],
        payload,
        trace: None,
    }
}

/// An executor with default limits.
/// An executor with the default limits but no wall-clock deadline: fuel alone decides, so
/// tests of fuel, limits and the simulator are deterministic (the deadline has its own tests).
pub(crate) fn executor() -> WasmExecutor {
    let config = ExecutorConfig {
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    WasmExecutor::with_config(config).expect("engine")
}

/// Run one capsule on `node`.
pub(crate) fn run_on(exec: &mut WasmExecutor, node: &mut TestNode, c: &CapsuleRepr<'_>) -> TestRun {
    let fuel = exec.compiler().config().fuel;
    testbench::run(exec, node, c, &HostLimits::default(), fuel)
}

/// Load `code` and run one capsule of it toward 198.18.0.9 on a fresh node 198.18.0.2.
pub(crate) fn load_and_run(exec: &mut WasmExecutor, code: &[u8]) -> (CapsuleType, TestRun) {
    let ty = exec.load(code).expect("module loads");
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let run = run_on(exec, &mut node, &capsule_to(ty, "198.18.0.9", b"x"));
    (ty, run)
}

/// A forward capsule module of a new type, `pad` bytes larger (a custom section: ignored by
/// validation and execution, it changes the hash and the number of chunks to fetch).
pub(crate) fn fresh_forward(tag: &str, pad: usize) -> Vec<u8> {
    let mut code = capsule_bytes("forward");
    let name = b"ants-test";
    let mut body: Vec<u8> = [&[name.len() as u8][..], name, tag.as_bytes()].concat();
    body.resize(body.len() + pad, 0x55);
    code.push(0);
    let mut len = body.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            code.push(byte);
            break;
        }
        code.push(byte | 0x80);
    }
    code.extend_from_slice(&body);
    code
}

/// Run the `ants` binary from the workspace root: (success, stdout, stderr).
pub(crate) fn run_ants(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run ants");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wait (up to 20 s) until `child`, an `ants run`, has made its app socket `sock`; panics
/// with its log if it exits first.
pub(crate) fn wait_for_socket(child: &mut std::process::Child, sock: &Path) {
    let up = std::time::Instant::now();
    while !sock.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the node exited ({status}) before making {}",
                sock.display()
            );
        }
        assert!(
            up.elapsed() < std::time::Duration::from_secs(20),
            "the node did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Send `signal` to `pid` (a process of the test's).
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: `kill` with a pid and a valid signal has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
}

/// A child process (a node, a server) that a failing test must not leave behind (it would
/// hold the test's output pipe open): killed on drop unless [`terminate`](Self::terminate)d.
pub(crate) struct Running(Option<std::process::Child>);

impl Running {
    pub(crate) fn new(child: std::process::Child) -> Running {
        Running(Some(child))
    }

    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// `true` while the process has not exited.
    pub(crate) fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("wait").is_none())
    }

    /// As [`terminate`]: SIGTERM, a clean exit, its log.
    pub(crate) fn terminate(mut self) -> String {
        terminate(self.0.take().expect("running"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM `child`, wait for it to exit successfully, and return its log (stderr, piped).
pub(crate) fn terminate(child: std::process::Child) -> String {
    signal(child.id(), libc::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// Wait (up to 10 s) until the node at `sock` reports `n` neighbours (a reload applied).
fn wait_for_neighbours(sock: &Path, n: usize) {
    let start = std::time::Instant::now();
    loop {
        let s = ants_app::query_stats(sock, std::time::Duration::from_secs(5)).expect("stats");
        let v: serde_json::Value = serde_json::from_str(&s).expect("stats JSON");
        if v["neighbours"].as_array().is_some_and(|a| a.len() == n) {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "not reloaded: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `m` as one datagram.
pub(crate) fn encode(m: &ants_wire::Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).expect("a buffer of buffer_len() bytes");
    buf
}

/// Send `code` as the code chunks of `ty` from `from` to `to`, in order.
pub(crate) fn send_chunks(
    from: &std::net::UdpSocket,
    to: std::net::SocketAddr,
    ty: CapsuleType,
    code: &[u8],
) {
    use ants_wire::code::CHUNK_LEN;
    for (i, chunk) in code.chunks(CHUNK_LEN).enumerate() {
        let m = ants_wire::Message::CodeChunk(ants_wire::CodeChunk {
            capsule_type: ty,
            total_len: code.len() as u32,
            offset: (i * CHUNK_LEN) as u32,
            bytes: chunk,
        });
        from.send_to(&encode(&m), to).expect("send a code chunk");
    }
}

/// Rewrite the config `cfg` as `base` plus a neighbour (198.18.0.2), SIGHUP the node `pid`,
/// and wait until its app socket `sock` shows the neighbour: a reload applied in place.
pub(crate) fn reload_with_a_neighbour(cfg: &Path, base: &str, pid: u32, sock: &Path) {
    std::fs::write(
        cfg,
        format!("{base}[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:9\"\n"),
    )
    .expect("rewrite the config");
    signal(pid, libc::SIGHUP);
    wait_for_neighbours(sock, 1);
}
