//! Property tests for the wire format v1 parsers and emitters.
//!
//! - `*_round_trip`: any valid repr emits `buffer_len()` bytes that parse back to itself,
//!   through the per-kind parser and through [`Message::parse`].
//! - `mutated_encodings_*` / `arbitrary_bytes_*`: any byte string either parses or yields a
//!   typed [`WireError`]; when it parses, re-emitting gives the input back with the ignored
//!   bytes zeroed (see [`canonical`]) and re-parsing gives the same repr.
//! - `packet_setters_change_only_their_field`: the zero-copy view's setters.
//! - `wanted_yields_exactly_the_set_bits`: `CodeRequest::wanted` against a model.
//! - `display_is_one_line`: every `Display` is a non-empty single line.
//!
//! The generators (valid messages, mutations of their encodings) are in
//! `properties/strategies.rs`.

#[path = "properties/strategies.rs"]
mod strategies;

use std::collections::BTreeSet;

use ants_wire::code::{CHUNK_LEN, MAX_BITMAP_LEN, MAX_MODULE_LEN};
use ants_wire::{
    Address, CapsulePacket, CapsuleRepr, CapsuleType, CodeChunk, CodeNack, CodeRequest, Kind,
    Message, NackReason, TraceReport, WireError,
};
use proptest::prelude::*;
use proptest::sample::Index;
use strategies::*;

// ---------------------------------------------------------------------------------------------
// The "parses or errors, and parse is canonical" oracle.
// ---------------------------------------------------------------------------------------------

/// What a successful parse must re-emit: the input with the bytes the parser ignores set to
/// zero. Those are the prefix's reserved byte 5 in every kind, the flags byte 4 of the code
/// messages (flags are only meaningful on capsules), and the reserved bytes 6–7 of a
/// code-request and 7 of a code-nack. Nothing else may differ.
fn canonical(input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    v[5] = 0;
    match Kind::from_u8(v[3]).expect("parsed, so the kind is known") {
        Kind::Capsule => {}
        Kind::CodeRequest => {
            v[4] = 0;
            v[6] = 0;
            v[7] = 0;
        }
        Kind::CodeChunk => v[4] = 0,
        Kind::CodeNack => {
            v[4] = 0;
            v[7] = 0;
        }
        Kind::TraceReport => v[4] = 0,
    }
    v
}

fn assert_one_line(s: &str) {
    assert!(!s.is_empty(), "empty Display");
    assert!(
        !s.contains('\n') && !s.contains('\r'),
        "multi-line Display: {s:?}"
    );
}

fn check_any_bytes(input: &[u8]) -> Result<(), TestCaseError> {
    let parsed = Message::parse(input);

    // The view and every per-kind parser must not panic either, and must agree with dispatch.
    let packet = CapsulePacket::new_checked(input);
    let capsule = CapsuleRepr::parse(input);
    prop_assert_eq!(packet.is_ok(), capsule.is_ok());
    if let (Ok(p), Ok(c)) = (&packet, &capsule) {
        prop_assert_eq!(&p.repr(), c);
        prop_assert_eq!(p.flags(), c.flags);
        prop_assert_eq!(p.resource(), c.resource);
        prop_assert_eq!(p.capsule_type(), c.capsule_type);
        prop_assert_eq!(p.src(), c.src);
        prop_assert_eq!(p.dst(), c.dst);
        prop_assert_eq!(p.prev(), c.prev);
        prop_assert_eq!(p.header(), c.header);
        prop_assert_eq!(p.payload(), c.payload);
        prop_assert_eq!(p.trace(), c.trace);
    }
    let request = CodeRequest::parse(input);
    let chunk = CodeChunk::parse(input);
    let nack = CodeNack::parse(input);
    let report = TraceReport::parse(input);
    match &parsed {
        Ok(Message::Capsule(m)) => prop_assert_eq!(Ok(*m), capsule),
        Ok(Message::CodeRequest(m)) => prop_assert_eq!(Ok(*m), request),
        Ok(Message::CodeChunk(m)) => prop_assert_eq!(Ok(*m), chunk),
        Ok(Message::CodeNack(m)) => prop_assert_eq!(Ok(*m), nack),
        Ok(Message::TraceReport(m)) => prop_assert_eq!(Ok(*m), report),
        Err(e) => {
            assert_one_line(&e.to_string());
            // Whichever parser the prefix selects reports the same error.
            if let Ok(k) = ants_wire::Prefix::parse(input).map(|p| p.kind) {
                let same = match k {
                    Kind::Capsule => capsule.err(),
                    Kind::CodeRequest => request.err(),
                    Kind::CodeChunk => chunk.err(),
                    Kind::CodeNack => nack.err(),
                    Kind::TraceReport => report.err(),
                };
                prop_assert_eq!(Some(*e), same);
            }
        }
    }

    if let Ok(m) = parsed {
        assert_one_line(&m.to_string());
        prop_assert_eq!(m.buffer_len(), input.len());
        let out = encode(&m);
        prop_assert_eq!(
            &out,
            &canonical(input),
            "re-emit is not canonical for {}",
            m
        );
        prop_assert_eq!(Message::parse(&out), Ok(m));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn capsule_round_trip(c in arb_capsule()) {
        let r = c.repr();
        let buf = encode(&Message::Capsule(r));
        prop_assert_eq!(buf.len(), r.buffer_len());
        prop_assert_eq!(CapsuleRepr::parse(&buf), Ok(r));
        prop_assert_eq!(Message::parse(&buf), Ok(Message::Capsule(r)));
        let view = CapsulePacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(view.repr(), r);
    }

    #[test]
    fn code_request_round_trip(q in arb_request()) {
        let r = q.repr();
        let buf = encode(&Message::CodeRequest(r));
        prop_assert_eq!(buf.len(), r.buffer_len());
        prop_assert_eq!(CodeRequest::parse(&buf), Ok(r));
        prop_assert_eq!(Message::parse(&buf), Ok(Message::CodeRequest(r)));
    }

    #[test]
    fn code_chunk_round_trip(c in arb_chunk()) {
        let r = c.repr();
        let buf = encode(&Message::CodeChunk(r));
        prop_assert_eq!(buf.len(), r.buffer_len());
        prop_assert_eq!(CodeChunk::parse(&buf), Ok(r));
        prop_assert_eq!(Message::parse(&buf), Ok(Message::CodeChunk(r)));
        prop_assert!(r.index() < CodeChunk::chunk_count(r.total_len));
    }

    #[test]
    fn code_nack_round_trip(n in arb_nack()) {
        let buf = encode(&Message::CodeNack(n));
        prop_assert_eq!(buf.len(), CodeNack::LEN);
        prop_assert_eq!(CodeNack::parse(&buf), Ok(n));
        prop_assert_eq!(Message::parse(&buf), Ok(Message::CodeNack(n)));
    }

    /// `emit` writes exactly `buffer_len()` bytes at the front of a larger buffer, leaves the
    /// rest alone, and refuses any buffer that is one byte (or more) too short.
    #[test]
    fn emit_respects_buffer_bounds(m in arb_message(), extra in 0..64usize, short in 1..64usize) {
        let m = m.message();
        let exact = encode(&m);
        let mut big = vec![0xEEu8; exact.len() + extra];
        prop_assert_eq!(m.emit(&mut big), Ok(exact.len()));
        prop_assert_eq!(&big[..exact.len()], &exact[..]);
        prop_assert!(big[exact.len()..].iter().all(|&b| b == 0xEE));
        let mut small = vec![0u8; exact.len().saturating_sub(short)];
        let is_too_small = matches!(m.emit(&mut small), Err(WireError::BufferTooSmall { .. }));
        prop_assert!(is_too_small);
    }

    #[test]
    fn mutated_encodings_parse_or_error_canonically(input in arb_mutated()) {
        check_any_bytes(&input)?;
    }

    #[test]
    fn arbitrary_bytes_parse_or_error_canonically(
        input in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), arb_prefixed_bytes()]
    ) {
        check_any_bytes(&input)?;
    }

    /// Each setter of the view changes its field, and nothing else, as seen by `parse`.
    #[test]
    fn packet_setters_change_only_their_field(
        c in arb_capsule(),
        resource in proptest::option::of(any::<u16>()),
        prev in proptest::option::of(arb_address()),
        dst in proptest::option::of(arb_address()),
        header_edit in proptest::option::of((any::<Index>(), any::<u8>())),
        payload_edit in proptest::option::of((any::<Index>(), any::<u8>())),
    ) {
        let mut buf = encode(&Message::Capsule(c.repr()));
        let mut expected = c.clone();
        {
            let mut p = CapsulePacket::new_checked(&mut buf[..]).unwrap();
            if let Some(v) = resource {
                p.set_resource(v);
                expected.resource = v;
            }
            if let Some(a) = prev {
                p.set_prev(a);
                expected.prev = a;
            }
            if let Some(a) = dst {
                p.set_dst(a);
                expected.dst = a;
            }
            if let Some((i, v)) = header_edit
                && !expected.header.is_empty()
            {
                let at = i.index(expected.header.len());
                p.header_mut()[at] = v;
                expected.header[at] = v;
            }
            if let Some((i, v)) = payload_edit
                && !expected.payload.is_empty()
            {
                let at = i.index(expected.payload.len());
                p.payload_mut()[at] = v;
                expected.payload[at] = v;
            }
            prop_assert_eq!(p.header_mut().len(), c.header.len());
            prop_assert_eq!(p.payload_mut().len(), c.payload.len());
            prop_assert_eq!(p.repr(), expected.repr());
        }
        prop_assert_eq!(CapsuleRepr::parse(&buf), Ok(expected.repr()));
        // Byte for byte, the buffer is what emitting the expected repr gives.
        prop_assert_eq!(buf, encode(&Message::Capsule(expected.repr())));
    }

    #[test]
    fn wanted_yields_exactly_the_set_bits(
        first_chunk in arb_first_chunk(),
        bitmap in prop::collection::vec(any::<u8>(), 1..=MAX_BITMAP_LEN),
        total_chunks in prop_oneof![0..5000u32, any::<u32>(), Just(u32::MAX)],
    ) {
        let r = CodeRequest { capsule_type: CapsuleType::default(), first_chunk, bitmap: &bitmap };
        let got: Vec<u32> = r.wanted(total_chunks).collect();
        let mut model = BTreeSet::new();
        for (byte_i, byte) in bitmap.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    let rel = byte_i as u64 * 8 + u64::from(bit);
                    let idx = u64::from(first_chunk) + rel;
                    if idx < u64::from(total_chunks) {
                        model.insert(idx as u32);
                    }
                }
            }
        }
        prop_assert!(got.iter().all(|&i| i < total_chunks && i >= first_chunk));
        prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "not strictly increasing");
        prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }

    /// An empty bitmap means "every chunk from `first_chunk` on".
    #[test]
    fn wanted_empty_bitmap_is_all_from_first(
        first_chunk in prop_oneof![0..20000u32, any::<u32>()],
        total_chunks in 0..20000u32,
    ) {
        let r = CodeRequest { capsule_type: CapsuleType::default(), first_chunk, bitmap: &[] };
        let got: Vec<u32> = r.wanted(total_chunks).collect();
        prop_assert_eq!(got, (first_chunk..total_chunks).collect::<Vec<_>>());
    }

    /// Display never panics and is one line — also for reprs no parser would produce.
    #[test]
    fn display_is_one_line(
        m in arb_message(),
        bogus_chunk in (arb_type(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..2000)),
        bogus_request in (arb_type(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..600)),
    ) {
        let m = m.message();
        let s = m.to_string();
        assert_one_line(&s);
        let kind = match m {
            Message::Capsule(r) => { assert_one_line(&r.to_string()); "capsule " }
            Message::CodeRequest(r) => { assert_one_line(&r.to_string()); "code-request " }
            Message::CodeChunk(r) => { assert_one_line(&r.to_string()); "code-chunk " }
            Message::CodeNack(r) => { assert_one_line(&r.to_string()); "code-nack " }
            Message::TraceReport(r) => { assert_one_line(&r.to_string()); "trace-report " }
        };
        prop_assert!(s.starts_with(kind), "{s}");

        let (capsule_type, total_len, offset, bytes) = bogus_chunk;
        assert_one_line(&CodeChunk { capsule_type, total_len, offset, bytes: &bytes }.to_string());
        let (capsule_type, first_chunk, bitmap) = bogus_request;
        assert_one_line(&CodeRequest { capsule_type, first_chunk, bitmap: &bitmap }.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Emit-side rejections (plain tests: one boundary each).
// ---------------------------------------------------------------------------------------------

#[test]
fn emit_rejects_what_parse_would_reject() {
    let big = vec![0u8; usize::from(u16::MAX) + 1];
    let mut out = vec![0u8; big.len() + 200];
    let c = CapsuleRepr {
        flags: 0,
        resource: 1,
        capsule_type: CapsuleType::default(),
        src: Address::UNSPECIFIED,
        dst: Address::UNSPECIFIED,
        prev: Address::UNSPECIFIED,
        header: &big,
        payload: &[],
        trace: None,
    };
    assert!(matches!(
        c.emit(&mut out),
        Err(WireError::InvalidField { .. })
    ));
    let c = CapsuleRepr {
        header: &[],
        payload: &big,
        ..c
    };
    assert!(matches!(
        c.emit(&mut out),
        Err(WireError::InvalidField { .. })
    ));

    let bitmap = vec![0xFFu8; MAX_BITMAP_LEN + 1];
    let r = CodeRequest {
        capsule_type: CapsuleType::default(),
        first_chunk: 0,
        bitmap: &bitmap,
    };
    assert_eq!(
        r.emit(&mut out),
        Err(WireError::BitmapTooLong((MAX_BITMAP_LEN + 1) as u16))
    );
    let r = CodeRequest {
        bitmap: &bitmap[..MAX_BITMAP_LEN],
        ..r
    };
    assert_eq!(
        r.emit(&mut out),
        Ok(CodeRequest::FIXED_LEN + MAX_BITMAP_LEN)
    );

    let data = [0u8; CHUNK_LEN];
    let ok = CodeChunk {
        capsule_type: CapsuleType::default(),
        total_len: MAX_MODULE_LEN,
        offset: 0,
        bytes: &data,
    };
    assert!(ok.emit(&mut out).is_ok());
    let last = CodeChunk {
        offset: MAX_MODULE_LEN - CHUNK_LEN as u32,
        ..ok
    };
    assert!(last.emit(&mut out).is_ok());
    for bad in [
        CodeChunk {
            total_len: 0,
            bytes: &[],
            ..ok
        },
        CodeChunk {
            total_len: MAX_MODULE_LEN + 1,
            ..ok
        },
        CodeChunk {
            offset: MAX_MODULE_LEN,
            ..ok
        },
        CodeChunk { offset: 1, ..ok },
        CodeChunk {
            total_len: 10,
            bytes: &data[..9],
            ..ok
        },
        CodeChunk {
            total_len: 10,
            bytes: &data[..11],
            ..ok
        },
        CodeChunk {
            bytes: &data[..CHUNK_LEN - 1],
            ..ok
        },
    ] {
        assert!(
            matches!(bad.emit(&mut out), Err(WireError::BadChunk { .. })),
            "{bad:?}"
        );
    }
}

/// The exact-length and reserved-byte rules, spelled out once each.
#[test]
fn reserved_bytes_are_ignored_and_emitted_zero() {
    let n = CodeNack {
        capsule_type: CapsuleType([5; 32]),
        reason: NackReason::TooLarge,
    };
    let mut buf = encode(&Message::CodeNack(n));
    buf[4] = 0xFF; // flags: meaningless on a nack
    buf[5] = 0xFF; // prefix reserved
    buf[7] = 0xFF; // nack reserved
    assert_eq!(CodeNack::parse(&buf), Ok(n));
    assert_eq!(
        encode(&Message::CodeNack(n))[4..8],
        [0, 0, NackReason::TooLarge as u8, 0]
    );

    let q = CodeRequest {
        capsule_type: CapsuleType([5; 32]),
        first_chunk: 3,
        bitmap: &[1],
    };
    let mut buf = encode(&Message::CodeRequest(q));
    buf[4..8].copy_from_slice(&[0xFF; 4]);
    assert_eq!(CodeRequest::parse(&buf), Ok(q));

    // A capsule carries its flags, unknown bits included.
    let c = CapsuleRepr {
        flags: 0xFE,
        resource: 9,
        capsule_type: CapsuleType([5; 32]),
        src: Address::UNSPECIFIED,
        dst: Address::UNSPECIFIED,
        prev: Address::UNSPECIFIED,
        header: &[],
        payload: &[],
        trace: None,
    };
    let buf = encode(&Message::Capsule(c));
    assert_eq!(buf[4], 0xFE);
    assert_eq!(CapsuleRepr::parse(&buf).unwrap().flags, 0xFE);
}
