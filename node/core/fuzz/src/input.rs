//! What the fuzz input decodes to: a [`Preset`] configuration, then a sequence of [`Op`]s,
//! both with `#[derive(Arbitrary)]`; and [`encode`], the inverse used to write seeds.
//!
//! Every field is a fixed-size integer or bool (no `Vec`), so an input is a plain
//! concatenation of little-endian fields and every byte string decodes to something.

use std::collections::BTreeSet;
use std::time::Duration;

use ants_core::{CodePolicy, LoaderConfig};
use arbitrary::{Arbitrary, Unstructured};

use crate::world::{TYPES, types};

/// Most operations taken from one input (the rest is ignored).
pub const MAX_OPS: usize = 1000;

/// The loader's configuration for one run.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// `LoaderConfig::default()`.
    Default,
    /// `LoaderConfig::tight()`, as the loader's property test uses: 3 slots, windows of 3 chunks.
    Small,
    /// Every bound and timing chosen by the input, zeros included.
    Tuned(Knobs),
}

/// Raw values of a tuned configuration; [`Preset::config`] maps them to small ranges.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    pub per_type: u8,
    pub total: u8,
    pub bytes: u16,
    pub fetches: u8,
    pub per_peer: u8,
    pub module_kib: u8,
    pub request_ms: u8,
    pub backoff: u8,
    pub attempts: u8,
    pub load_ms: u16,
    pub compile_ms: u16,
    pub window: u8,
    pub negative_ms: u16,
    pub distrust_ms: u16,
    pub serve_ms: u16,
    pub serve_rate: u16,
    pub serve_burst: u16,
    pub compile_rate_ms: u16,
    pub compile_burst_ms: u16,
    pub tables: u8,
    pub transmit: u8,
    /// Bit 4 set: an allow list of the types whose bit (0..4) is set; else accept any.
    pub allow: u8,
}

/// One thing that happens to the node. A type is an index (modulo 4) into the run's four
/// types, a peer an index modulo 5; peers 0 and 1 are configured neighbours.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A capsule of a type the node cannot run arrives from a peer (`hold`).
    Hold { ty: u8, from: u8, len: u16 },
    /// A capsule whose code the node has on disk (`hold_local`); `from % (PEERS + 1) ==
    /// PEERS` is a local app.
    HoldLocal { ty: u8, from: u8, len: u16 },
    /// Chunk `idx` of the type's module (the real one; garbage for the ghost type).
    RealChunk { ty: u8, from: u8, idx: u8 },
    /// A real chunk with one byte changed: right geometry, wrong bytes.
    CorruptChunk {
        ty: u8,
        from: u8,
        idx: u8,
        at: u16,
        xor: u8,
    },
    /// A hand-built chunk. `fit`: `total` is cut to 1..=65536 and `offset`/length made
    /// valid for it; otherwise all three are taken as they are (length up to 2047).
    Chunk {
        ty: u8,
        from: u8,
        total: u32,
        offset: u32,
        len: u16,
        fill: u8,
        fit: bool,
    },
    /// The peer asked by the oldest request drained so far answers it: the chunks asked
    /// for (those whose index bit `idx % 8` is set in `drop` are lost), a `not-found` nack
    /// if it has no module, or a module with one byte changed if it `lie`s.
    Answer { drop: u8, lie: bool },
    /// A `code-nack`; `reason % 3` is not-found, rate-limited, too-large.
    Nack { ty: u8, from: u8, reason: u8 },
    /// A peer asks us for chunks; the bitmap is the first `bitmap_len % 5` bytes.
    Request {
        ty: u8,
        from: u8,
        first: u16,
        bitmap: [u8; 4],
        bitmap_len: u8,
    },
    /// We sent a capsule of `ty` to `to` (authorizes it to fetch `ty`).
    NoteSent { ty: u8, to: u8 },
    /// Time passes; `fire`: the driver calls `handle_timeout`.
    Advance { ms: u16, fire: bool },
    /// Time jumps to `poll_timeout` (if later) and `handle_timeout` runs.
    Timeout,
    /// The node reports a compile of `ty` that took `ms`.
    Compiled { ty: u8, ms: u16 },
    /// The node compiled `ty`: `take_held`.
    TakeHeld { ty: u8 },
    /// The node could not compile `ty`.
    CompileFailed { ty: u8, invalid: bool },
    /// `poll_transmit` up to `n` times.
    Drain { n: u8 },
    /// Drain `poll_event`: verified code goes into the node's code store; `install`: it is
    /// compiled at once (`compiled` + `take_held`).
    Events { install: bool },
}

impl Preset {
    /// The configuration this preset stands for.
    pub fn config(&self) -> LoaderConfig {
        match self {
            Preset::Default => LoaderConfig::default(),
            Preset::Small => LoaderConfig::tight(),
            Preset::Tuned(k) => tuned(k),
        }
    }
}

fn ms(v: impl Into<u64>) -> Duration {
    Duration::from_millis(v.into())
}

fn tuned(k: &Knobs) -> LoaderConfig {
    let request = ms(k.request_ms);
    let tables = usize::from(k.tables % 4);
    let policy = if k.allow & 0x10 == 0 {
        CodePolicy::AcceptAny
    } else {
        let allowed: BTreeSet<_> = (0..TYPES)
            .filter(|i| k.allow & (1 << i) != 0)
            .map(|i| types()[i])
            .collect();
        CodePolicy::AllowList(allowed)
    };
    LoaderConfig {
        max_pending_per_type: usize::from(k.per_type % 5),
        max_pending_total: usize::from(k.total % 9),
        max_pending_bytes: usize::from(k.bytes % 4096),
        max_concurrent_fetches: usize::from(k.fetches % 5),
        max_fetches_per_peer: usize::from(k.per_peer % 4),
        // 0..=47 KiB: the 40,000-byte module fits only sometimes.
        max_module_bytes: usize::from(k.module_kib % 48) * 1024,
        request_timeout: request,
        max_request_timeout: request * u32::from(k.backoff % 8),
        max_attempts: u32::from(k.attempts % 5),
        load_timeout: ms(k.load_ms),
        compile_timeout: ms(k.compile_ms),
        request_window: u32::from(k.window % 41),
        negative_ttl: ms(k.negative_ms),
        distrust_ttl: ms(k.distrust_ms),
        serve_window: ms(k.serve_ms),
        serve_bytes_per_sec: u64::from(k.serve_rate),
        serve_burst_bytes: u64::from(k.serve_burst),
        compile_nanos_per_sec: u64::from(k.compile_rate_ms) * 1_000_000,
        compile_burst_nanos: u64::from(k.compile_burst_ms) * 1_000_000,
        max_budget_peers: tables,
        max_serve_peers: tables,
        max_authorizations: tables,
        max_negative_entries: tables,
        max_distrust_entries: tables,
        max_transmit_queue: usize::from(k.transmit % 17),
        policy,
    }
}

/// A preset and at most [`MAX_OPS`] operations; `None` only if not even a preset decodes.
/// A truncated last operation is completed with zeros (as `arbitrary` does).
pub fn decode(data: &[u8]) -> Option<(Preset, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let preset = Preset::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((preset, ops))
}

/// The bytes [`decode`] turns into `preset` and `ops`: the inverse of `arbitrary`'s derive
/// for these types (an enum variant is a `u32` scaled onto the variant count, integers
/// little-endian, a bool one byte). Only used to write seeds; the tests check the round trip.
pub fn encode(preset: &Preset, ops: &[Op]) -> Vec<u8> {
    let mut e = Encoder(Vec::new());
    match preset {
        Preset::Default => {
            e.variant(0, 3);
        }
        Preset::Small => {
            e.variant(1, 3);
        }
        Preset::Tuned(k) => {
            e.variant(2, 3);
            e.u8(k.per_type).u8(k.total).u16(k.bytes).u8(k.fetches);
            e.u8(k.per_peer)
                .u8(k.module_kib)
                .u8(k.request_ms)
                .u8(k.backoff);
            e.u8(k.attempts)
                .u16(k.load_ms)
                .u16(k.compile_ms)
                .u8(k.window);
            e.u16(k.negative_ms).u16(k.distrust_ms).u16(k.serve_ms);
            e.u16(k.serve_rate)
                .u16(k.serve_burst)
                .u16(k.compile_rate_ms);
            e.u16(k.compile_burst_ms)
                .u8(k.tables)
                .u8(k.transmit)
                .u8(k.allow);
        }
    }
    for op in ops {
        e.op(op);
    }
    e.0
}

struct Encoder(Vec<u8>);

impl Encoder {
    /// The smallest `u32` that `arbitrary` maps to variant `k` of `n`
    /// (`(u64::from(x) * n) >> 32 == k`).
    fn variant(&mut self, k: u64, n: u64) -> &mut Self {
        let x = u32::try_from((k << 32).div_ceil(n)).expect("k < n");
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn op(&mut self, op: &Op) {
        const N: u64 = 16;
        match *op {
            Op::Hold { ty, from, len } => self.variant(0, N).u8(ty).u8(from).u16(len),
            Op::HoldLocal { ty, from, len } => self.variant(1, N).u8(ty).u8(from).u16(len),
            Op::RealChunk { ty, from, idx } => self.variant(2, N).u8(ty).u8(from).u8(idx),
            Op::CorruptChunk {
                ty,
                from,
                idx,
                at,
                xor,
            } => self.variant(3, N).u8(ty).u8(from).u8(idx).u16(at).u8(xor),
            Op::Chunk {
                ty,
                from,
                total,
                offset,
                len,
                fill,
                fit,
            } => self
                .variant(4, N)
                .u8(ty)
                .u8(from)
                .u32(total)
                .u32(offset)
                .u16(len)
                .u8(fill)
                .bool(fit),
            Op::Answer { drop, lie } => self.variant(5, N).u8(drop).bool(lie),
            Op::Nack { ty, from, reason } => self.variant(6, N).u8(ty).u8(from).u8(reason),
            Op::Request {
                ty,
                from,
                first,
                bitmap,
                bitmap_len,
            } => {
                let e = self.variant(7, N).u8(ty).u8(from).u16(first);
                for b in bitmap {
                    e.u8(b);
                }
                e.u8(bitmap_len)
            }
            Op::NoteSent { ty, to } => self.variant(8, N).u8(ty).u8(to),
            Op::Advance { ms, fire } => self.variant(9, N).u16(ms).bool(fire),
            Op::Timeout => self.variant(10, N),
            Op::Compiled { ty, ms } => self.variant(11, N).u8(ty).u16(ms),
            Op::TakeHeld { ty } => self.variant(12, N).u8(ty),
            Op::CompileFailed { ty, invalid } => self.variant(13, N).u8(ty).bool(invalid),
            Op::Drain { n } => self.variant(14, N).u8(n),
            Op::Events { install } => self.variant(15, N).bool(install),
        };
    }
}
