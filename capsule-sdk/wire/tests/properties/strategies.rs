//! Strategies for the property tests: owned messages (the reprs borrow, so strategies
//! produce these and tests borrow from them), valid-message generators, and mutations of valid
//! encodings that reach the parser's deep checks.

use std::net::Ipv4Addr;

use ants_wire::code::{CHUNK_LEN, MAX_BITMAP_LEN, MAX_MODULE_LEN};
use ants_wire::message::FLAG_TRACE;
use ants_wire::trace::{EVENT_LEN, MAX_REPORT_EVENTS};
use ants_wire::{
    Address, BASE_VERSION, CapsuleRepr, CapsuleType, CodeChunk, CodeNack, CodeRequest, MAGIC,
    Message, NackReason, Trace, TraceEvent, TraceReport, VERSION,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Owned messages (the reprs borrow, so strategies produce these and tests borrow from them).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct OwnedCapsule {
    pub(crate) flags: u8,
    pub(crate) resource: u16,
    pub(crate) capsule_type: CapsuleType,
    pub(crate) src: Address,
    pub(crate) dst: Address,
    pub(crate) prev: Address,
    pub(crate) header: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) trace: Option<Trace>,
}

impl OwnedCapsule {
    pub(crate) fn repr(&self) -> CapsuleRepr<'_> {
        CapsuleRepr {
            flags: self.flags,
            resource: self.resource,
            capsule_type: self.capsule_type,
            src: self.src,
            dst: self.dst,
            prev: self.prev,
            header: &self.header,
            payload: &self.payload,
            trace: self.trace,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedReport {
    pub(crate) hops: u8,
    pub(crate) capsule_type: CapsuleType,
    pub(crate) origin: Address,
    pub(crate) reporter: Address,
    pub(crate) trace_id: u64,
    pub(crate) events: Vec<u8>,
}

impl OwnedReport {
    pub(crate) fn repr(&self) -> TraceReport<'_> {
        TraceReport {
            hops: self.hops,
            capsule_type: self.capsule_type,
            origin: self.origin,
            reporter: self.reporter,
            trace_id: self.trace_id,
            events: &self.events,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedRequest {
    pub(crate) capsule_type: CapsuleType,
    pub(crate) first_chunk: u32,
    pub(crate) bitmap: Vec<u8>,
}

impl OwnedRequest {
    pub(crate) fn repr(&self) -> CodeRequest<'_> {
        CodeRequest {
            capsule_type: self.capsule_type,
            first_chunk: self.first_chunk,
            bitmap: &self.bitmap,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OwnedChunk {
    pub(crate) capsule_type: CapsuleType,
    pub(crate) total_len: u32,
    pub(crate) offset: u32,
    pub(crate) bytes: Vec<u8>,
}

impl OwnedChunk {
    pub(crate) fn repr(&self) -> CodeChunk<'_> {
        CodeChunk {
            capsule_type: self.capsule_type,
            total_len: self.total_len,
            offset: self.offset,
            bytes: &self.bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum OwnedMessage {
    Capsule(OwnedCapsule),
    Request(OwnedRequest),
    Chunk(OwnedChunk),
    Nack(CodeNack),
    Report(OwnedReport),
}

impl OwnedMessage {
    pub(crate) fn message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Capsule(c) => Message::Capsule(c.repr()),
            OwnedMessage::Request(r) => Message::CodeRequest(r.repr()),
            OwnedMessage::Chunk(c) => Message::CodeChunk(c.repr()),
            OwnedMessage::Nack(n) => Message::CodeNack(*n),
            OwnedMessage::Report(r) => Message::TraceReport(r.repr()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------

pub(crate) fn arb_type() -> impl Strategy<Value = CapsuleType> {
    any::<[u8; 32]>().prop_map(CapsuleType)
}

pub(crate) fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        Just(Address::UNSPECIFIED),
        any::<[u8; 4]>().prop_map(|o| Address::from(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(Address),
    ]
}

pub(crate) fn arb_capsule() -> impl Strategy<Value = OwnedCapsule> {
    (
        any::<u8>(),
        any::<u16>(),
        arb_type(),
        arb_address(),
        arb_address(),
        arb_address(),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..1500),
        prop::option::of(any::<(u64, u64)>()),
    )
        .prop_map(
            |(flags, resource, capsule_type, src, dst, prev, header, payload, trace)| {
                let trace = trace.map(|(id, clock)| Trace { id, clock });
                OwnedCapsule {
                    // A traced capsule always has the trace flag (emit sets it).
                    flags: if trace.is_some() {
                        flags | FLAG_TRACE
                    } else {
                        flags
                    },
                    resource,
                    capsule_type,
                    src,
                    dst,
                    prev,
                    header,
                    payload,
                    trace,
                }
            },
        )
}

pub(crate) fn arb_event() -> impl Strategy<Value = TraceEvent> {
    (
        any::<(u8, u8, u16, u32, u32)>(),
        any::<(u64, u64)>(),
        arb_address(),
    )
        .prop_map(
            |((kind, detail, resource, a, b), (clock, time_ns), peer)| TraceEvent {
                kind,
                detail,
                resource,
                a,
                b,
                clock,
                time_ns,
                peer,
            },
        )
}

pub(crate) fn arb_report() -> impl Strategy<Value = OwnedReport> {
    (
        any::<u8>(),
        arb_type(),
        arb_address(),
        arb_address(),
        any::<u64>(),
        prop::collection::vec(arb_event(), 0..=MAX_REPORT_EVENTS),
    )
        .prop_map(|(hops, capsule_type, origin, reporter, trace_id, events)| {
            let mut bytes = vec![0u8; events.len() * EVENT_LEN];
            for (e, out) in events.iter().zip(bytes.chunks_exact_mut(EVENT_LEN)) {
                e.emit(out);
            }
            OwnedReport {
                hops,
                capsule_type,
                origin,
                reporter,
                trace_id,
                events: bytes,
            }
        })
}

pub(crate) fn arb_first_chunk() -> impl Strategy<Value = u32> {
    prop_oneof![0..64u32, any::<u32>(), (u32::MAX - 64)..=u32::MAX]
}

pub(crate) fn arb_request() -> impl Strategy<Value = OwnedRequest> {
    (
        arb_type(),
        arb_first_chunk(),
        prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 1..=MAX_BITMAP_LEN)
        ],
    )
        .prop_map(|(capsule_type, first_chunk, bitmap)| OwnedRequest {
            capsule_type,
            first_chunk,
            bitmap,
        })
}

/// A valid chunk: `total_len` in range, offset a chunk boundary below it, bytes the right length.
pub(crate) fn arb_chunk() -> impl Strategy<Value = OwnedChunk> {
    let total = prop_oneof![
        1..=(3 * CHUNK_LEN as u32),
        1..=MAX_MODULE_LEN,
        Just(MAX_MODULE_LEN),
        Just(CHUNK_LEN as u32),
    ];
    (arb_type(), total)
        .prop_flat_map(|(capsule_type, total_len)| {
            let count = CodeChunk::chunk_count(total_len);
            (Just(capsule_type), Just(total_len), 0..count)
        })
        .prop_flat_map(|(capsule_type, total_len, index)| {
            let offset = index * CHUNK_LEN as u32;
            let len = CHUNK_LEN.min((total_len - offset) as usize);
            (
                Just(capsule_type),
                Just(total_len),
                Just(offset),
                prop::collection::vec(any::<u8>(), len),
            )
        })
        .prop_map(|(capsule_type, total_len, offset, bytes)| OwnedChunk {
            capsule_type,
            total_len,
            offset,
            bytes,
        })
}

pub(crate) fn arb_nack() -> impl Strategy<Value = CodeNack> {
    (
        arb_type(),
        prop_oneof![
            Just(NackReason::NotFound),
            Just(NackReason::RateLimited),
            Just(NackReason::TooLarge),
        ],
    )
        .prop_map(|(capsule_type, reason)| CodeNack {
            capsule_type,
            reason,
        })
}

pub(crate) fn arb_message() -> impl Strategy<Value = OwnedMessage> {
    prop_oneof![
        arb_capsule().prop_map(OwnedMessage::Capsule),
        arb_request().prop_map(OwnedMessage::Request),
        arb_chunk().prop_map(OwnedMessage::Chunk),
        arb_nack().prop_map(OwnedMessage::Nack),
        arb_report().prop_map(OwnedMessage::Report),
    ]
}

pub(crate) fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    let n = m.emit(&mut buf).expect("valid repr emits");
    assert_eq!(n, buf.len());
    buf
}

/// Offsets of the length/count fields, where random values reach the deepest checks.
pub(crate) fn arb_u16_field() -> impl Strategy<Value = usize> {
    // 6: code-chunk len; 44: code-request bitmap len; 88/90: capsule header/payload len.
    prop_oneof![Just(6usize), Just(44), Just(88), Just(90), 0..100usize]
}

pub(crate) fn arb_u32_field() -> impl Strategy<Value = usize> {
    // 40: code-chunk total len / code-request first chunk; 44: code-chunk offset.
    prop_oneof![Just(40usize), Just(44), 0..100usize]
}

pub(crate) fn arb_len_value() -> impl Strategy<Value = u16> {
    prop_oneof![0..2048u16, any::<u16>(), Just(u16::MAX)]
}

pub(crate) fn arb_u32_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        0..(4 * CHUNK_LEN as u32),
        any::<u32>(),
        Just(MAX_MODULE_LEN),
        Just(MAX_MODULE_LEN + 1),
        Just(u32::MAX),
    ]
}

#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Cut the buffer at a position.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Write a big-endian `u16` at an offset (if it fits).
    SetU16(usize, u16),
    /// Write a big-endian `u32` at an offset (if it fits).
    SetU32(usize, u32),
    /// Make the declared length fields agree with the buffer length again, so the parser gets
    /// past the length check to the field checks (chunk geometry, nack reason).
    FixLengths,
}

pub(crate) fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
        3 => (arb_u16_field(), arb_len_value()).prop_map(|(at, v)| Mutation::SetU16(at, v)),
        3 => (arb_u32_field(), arb_u32_value()).prop_map(|(at, v)| Mutation::SetU32(at, v)),
        2 => Just(Mutation::FixLengths),
    ]
}

pub(crate) fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, mask) if !buf.is_empty() => {
            let at = i.index(buf.len());
            buf[at] ^= mask;
        }
        Mutation::Set(i, v) if !buf.is_empty() => {
            let at = i.index(buf.len());
            buf[at] = *v;
        }
        Mutation::Truncate(i) => {
            let at = i.index(buf.len() + 1);
            buf.truncate(at);
        }
        Mutation::Extend(more) => buf.extend_from_slice(more),
        Mutation::SetU16(at, v) if at + 2 <= buf.len() => {
            buf[*at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::SetU32(at, v) if at + 4 <= buf.len() => {
            buf[*at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::FixLengths => fix_lengths(buf),
        _ => {}
    }
}

pub(crate) fn put16(buf: &mut [u8], at: usize, v: usize) {
    let v = u16::try_from(v).unwrap_or(u16::MAX);
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn fix_lengths(buf: &mut [u8]) {
    if buf.len() < 4 {
        return;
    }
    let len = buf.len();
    match buf[3] {
        1 if len >= 92 + 16 || (len >= 92 && buf[2] != VERSION) => {
            let ext = if buf[2] == VERSION { 16 } else { 0 };
            let hdr = usize::from(u16::from_be_bytes([buf[88], buf[89]])).min(len - 92 - ext);
            put16(buf, 88, hdr);
            put16(buf, 90, len - 92 - ext - hdr);
        }
        5 if len >= 80 => buf[7] = ((len - 80) / EVENT_LEN).min(MAX_REPORT_EVENTS) as u8,
        2 if len >= 46 => put16(buf, 44, len - 46),
        3 if len >= 48 => put16(buf, 6, len - 48),
        _ => {}
    }
}

/// Raw bytes, most of them starting with a valid magic and version so they get past the prefix.
pub(crate) fn arb_prefixed_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        0..=6u8,
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..400),
        any::<bool>(),
        prop_oneof![Just(BASE_VERSION), Just(VERSION)],
    )
        .prop_map(|(kind, flags, reserved, tail, fix, version)| {
            let mut v = vec![MAGIC[0], MAGIC[1], version, kind, flags, reserved];
            v.extend(tail);
            if fix {
                fix_lengths(&mut v);
            }
            v
        })
}

/// A valid encoding put through 1–8 mutations.
pub(crate) fn arb_mutated() -> impl Strategy<Value = Vec<u8>> {
    (arb_message(), prop::collection::vec(arb_mutation(), 1..8)).prop_map(|(m, muts)| {
        let mut buf = encode(&m.message());
        for mu in &muts {
            apply(&mut buf, mu);
        }
        buf
    })
}
