//! The attacks of the soak, one thread each, all at once, for the whole run. The attacker is
//! a configured neighbour of T (the worst case): its capsules run, and it serves the code of
//! its modules (one chunk per 150 ms for the dripped ones) from one socket. Strangers use a
//! socket of their own; spoofed datagrams (root only) carry S's address.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ants_bench::workspace_root;
use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleRepr, CapsuleType, CodeChunk, CodeRequest, Message};

use super::{A, T, addr, type_of};

/// What every attack thread shares.
pub(crate) struct Context {
    pub(crate) sock: UdpSocket,
    pub(crate) target: SocketAddr,
    pub(crate) s_endpoint: SocketAddr,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) root: bool,
}

/// How much of one attack was sent.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Tally {
    pub(crate) attack: &'static str,
    pub(crate) what: &'static str,
    pub(crate) sent: u64,
}

/// The running attacks.
pub(crate) struct Running {
    ctx: Arc<Context>,
    threads: Vec<(&'static str, &'static str, Arc<AtomicU64>, JoinHandle<()>)>,
}

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).expect("encode");
    buf
}

fn capsule(ty: CapsuleType, resource: u16, payload: &[u8]) -> Vec<u8> {
    encode(&Message::Capsule(CapsuleRepr {
        flags: 0,
        resource,
        capsule_type: ty,
        src: addr(A),
        dst: addr(T),
        prev: addr(A),
        header: &[],
        payload,
        trace: None,
    }))
}

fn hostile(name: &str) -> Vec<u8> {
    let path = workspace_root().join(format!("tests/fixtures/hostile/{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `hostile(name)` made a distinct type per `n` (an unused data segment).
fn variant(name: &str, n: u32) -> Vec<u8> {
    let path = workspace_root().join(format!("tests/fixtures/hostile/{name}.wat"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let text = text.replacen(
        "(memory (export \"memory\") 1)",
        &format!("(memory (export \"memory\") 1) (data (i32.const 60000) \"variant {n}\")"),
        1,
    );
    wat::parse_str(text).expect("variant")
}

/// A valid module of about `functions` small functions, distinct per `n`.
fn heavy(n: u32, functions: usize) -> Vec<u8> {
    let mut text = format!(
        "(module (memory (export \"memory\") 1) (data (i32.const 0) \"heavy {n}\")
           (func (export \"ants_abi_version\") (result i32) (i32.const 2))
           (func (export \"ants_on_capsule\") (result i32) (i32.const 0))"
    );
    for f in 0..functions {
        text += &format!(
            "(func (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {f})) (i32.const {n})))"
        );
    }
    text += ")";
    wat::parse_str(text).expect("heavy module")
}

/// Send `payload` from `src` to `dst` through a raw socket (root).
fn spoof(src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        return;
    };
    let p = ipv4_udp(src, dst, payload);
    let Ok(sock) = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    ) else {
        return;
    };
    if sock.set_header_included_v4(true).is_ok() {
        let _ = sock.send_to(&p, &socket2::SockAddr::from(dst));
    }
}

fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut p = Vec::with_capacity(20 + udp_len);
    p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p
}

/// Run `body` every `every` until stopped; `body` returns how many datagrams it sent.
fn every(ctx: &Context, every: Duration, mut body: impl FnMut(u64) -> u64) -> u64 {
    let start = Instant::now();
    let (mut k, mut sent) = (0u64, 0u64);
    while !ctx.stop.load(Ordering::Acquire) {
        sent += body(k);
        k += 1;
        let due = start + every * k as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    sent
}

/// Answer T's code requests for `codes`, dripping the types in `slow`.
fn serve(ctx: &Context, codes: &BTreeMap<CapsuleType, Vec<u8>>, slow: &[CapsuleType]) -> u64 {
    let _ = ctx.sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 65536];
    let mut sent = 0;
    while !ctx.stop.load(Ordering::Acquire) {
        let Ok((n, from)) = ctx.sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(Message::CodeRequest(req)) = Message::parse(&buf[..n]) else {
            continue;
        };
        let Some(code) = codes.get(&req.capsule_type) else {
            continue;
        };
        let drip = slow.contains(&req.capsule_type);
        let total = code.len() as u32;
        for idx in req.wanted(CodeChunk::chunk_count(total)) {
            let off = idx as usize * CHUNK_LEN;
            let m = encode(&Message::CodeChunk(CodeChunk {
                capsule_type: req.capsule_type,
                total_len: total,
                offset: off as u32,
                bytes: &code[off..code.len().min(off + CHUNK_LEN)],
            }));
            let _ = ctx.sock.send_to(&m, from);
            sent += 1;
            if drip {
                // One chunk per request round of T's: it will leave us as stalled.
                break;
            }
        }
    }
    sent
}

/// Start every attack.
pub(crate) fn start(ctx: Arc<Context>) -> Running {
    let freeze = hostile("random_flood");
    let slow = hostile("slow_ops");
    let storm = hostile("storm");
    let log = hostile("log_flood");
    let deliverer = hostile("deliverer");
    let stores: Vec<Vec<u8>> = (0..20).map(|n| variant("store_flood", n)).collect();
    let heavies: Vec<Vec<u8>> = (0..60).map(|n| heavy(n, 3000)).collect();
    let drips: Vec<Vec<u8>> = (0..60).map(|n| heavy(1000 + n, 2000)).collect();
    let mut codes = BTreeMap::new();
    for c in [&freeze, &slow, &storm, &log, &deliverer]
        .into_iter()
        .chain(&stores)
        .chain(&heavies)
        .chain(&drips)
    {
        codes.insert(type_of(c), c.clone());
    }
    let drip_types: Vec<CapsuleType> = drips.iter().map(|c| type_of(c)).collect();
    let mut r = Running {
        ctx: ctx.clone(),
        threads: Vec::new(),
    };
    let mut add =
        |attack: &'static str, what: &'static str, f: Box<dyn FnOnce(&Context) -> u64 + Send>| {
            let count = Arc::new(AtomicU64::new(0));
            let (c, ctx) = (count.clone(), ctx.clone());
            let h = std::thread::spawn(move || c.store(f(&ctx), Ordering::Relaxed));
            r.threads.push((attack, what, count, h));
        };
    add(
        "serve",
        "code chunks served by the attacker (drip: one per request)",
        Box::new(move |ctx| serve(ctx, &codes, &drip_types)),
    );
    let simple = |code: &Vec<u8>, per_sec: u32, resource: u16| {
        let ty = type_of(code);
        move |ctx: &Context| {
            every(
                ctx,
                Duration::from_secs_f64(1.0 / f64::from(per_sec)),
                |_| {
                    let _ = ctx
                        .sock
                        .send_to(&capsule(ty, resource, b"attack"), ctx.target);
                    1
                },
            )
        }
    };
    add(
        "freeze",
        "random_flood capsules, 100/s",
        Box::new(simple(&freeze, 100, 8)),
    );
    add(
        "slow",
        "slow_ops capsules, 100/s",
        Box::new(simple(&slow, 100, 8)),
    );
    add(
        "storm",
        "storm capsules with resource 65535, 1/s",
        Box::new(simple(&storm, 1, u16::MAX)),
    );
    add(
        "log",
        "log_flood capsules, 50/s",
        Box::new(simple(&log, 50, 8)),
    );
    add(
        "deliver",
        "capsules delivering to the legitimate app, 50/s",
        Box::new(simple(&deliverer, 50, 8)),
    );
    let store_types: Vec<CapsuleType> = stores.iter().map(|c| type_of(c)).collect();
    add(
        "store",
        "store_flood capsules over 20 protocols, 10/s",
        Box::new(move |ctx| {
            every(ctx, Duration::from_millis(100), |k| {
                let ty = store_types[k as usize % store_types.len()];
                let _ = ctx.sock.send_to(&capsule(ty, 8, b""), ctx.target);
                1
            })
        }),
    );
    let heavy_types: Vec<CapsuleType> = heavies.iter().map(|c| type_of(c)).collect();
    add(
        "compile",
        "capsules of 60 heavy modules (3,000 functions each), 20/s",
        Box::new(move |ctx| {
            every(ctx, Duration::from_millis(50), |k| {
                let ty = heavy_types[k as usize % heavy_types.len()];
                let _ = ctx.sock.send_to(&capsule(ty, 8, b""), ctx.target);
                1
            })
        }),
    );
    add(
        "silent",
        "capsules of types never served, 20/s",
        Box::new(|ctx| {
            every(ctx, Duration::from_millis(50), |k| {
                let ty = type_of(&k.to_be_bytes());
                let _ = ctx.sock.send_to(&capsule(ty, 8, b""), ctx.target);
                1
            })
        }),
    );
    let drip_list: Vec<CapsuleType> = drips.iter().map(|c| type_of(c)).collect();
    add(
        "drip",
        "capsules of types served one chunk per request, a new type every 10 s",
        Box::new(move |ctx| {
            every(ctx, Duration::from_millis(200), |k| {
                let ty = drip_list[(k / 50) as usize % drip_list.len()];
                let _ = ctx.sock.send_to(&capsule(ty, 8, b""), ctx.target);
                1
            })
        }),
    );
    add(
        "strangers",
        "datagrams from a stranger's socket (capsules, requests, junk), 1,500/s",
        Box::new(|ctx| {
            let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                return 0;
            };
            every(ctx, Duration::from_millis(2), |k| {
                let ty = type_of(&(k ^ 0x5555).to_be_bytes());
                let req = encode(&Message::CodeRequest(CodeRequest {
                    capsule_type: ty,
                    first_chunk: 0,
                    bitmap: &[],
                }));
                for m in [capsule(ty, 64, b"stranger"), req, b"junk".to_vec()] {
                    let _ = s.send_to(&m, ctx.target);
                }
                3
            })
        }),
    );
    if ctx.root {
        let some_heavy: Vec<CapsuleType> = heavies.iter().take(8).map(|c| type_of(c)).collect();
        add(
            "spoofed requests",
            "code requests for whole modules with S's address, 30/s (root)",
            Box::new(move |ctx| {
                every(ctx, Duration::from_millis(33), |k| {
                    let req = encode(&Message::CodeRequest(CodeRequest {
                        capsule_type: some_heavy[k as usize % some_heavy.len()],
                        first_chunk: 0,
                        bitmap: &[],
                    }));
                    spoof(ctx.s_endpoint, ctx.target, &req);
                    1
                })
            }),
        );
        add(
            "spoofed chunks",
            "forged chunks with S's address, 200/s (root)",
            Box::new(|ctx| {
                let junk = vec![0xEE; CHUNK_LEN];
                every(ctx, Duration::from_millis(5), |k| {
                    let m = encode(&Message::CodeChunk(CodeChunk {
                        capsule_type: type_of(&(k % 16).to_be_bytes()),
                        total_len: 4 * CHUNK_LEN as u32,
                        offset: ((k % 4) as usize * CHUNK_LEN) as u32,
                        bytes: &junk,
                    }));
                    spoof(ctx.s_endpoint, ctx.target, &m);
                    1
                })
            }),
        );
    }
    r
}

/// Stop every attack; what each sent.
pub(crate) fn stop(r: Running) -> Vec<Tally> {
    r.ctx.stop.store(true, Ordering::Release);
    r.threads
        .into_iter()
        .map(|(attack, what, count, h)| {
            let _ = h.join();
            Tally {
                attack,
                what,
                sent: count.load(Ordering::Relaxed),
            }
        })
        .collect()
}
