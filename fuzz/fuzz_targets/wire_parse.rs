//! Any byte string either parses as an ANTS message or yields a `WireError`, never a panic.
//! When it parses, re-emitting gives the input back with only the ignored bytes zeroed, and
//! re-parsing gives the same message. The zero-copy capsule view is exercised too: every
//! accessor, every setter, and agreement with `CapsuleRepr::parse`.
#![no_main]

use ants_wire::{
    Address, CapsulePacket, CapsuleRepr, CodeChunk, CodeNack, CodeRequest, Kind, Message, Prefix,
};
use libfuzzer_sys::fuzz_target;

/// The input with the bytes the parser ignores set to zero (see `docs/wire-format.md`,
/// "Reserved and ignored bytes"): prefix byte 5 always; flags (byte 4) of the code messages;
/// bytes 6–7 of a code-request; byte 7 of a code-nack; flags of a trace report.
fn canonical(input: &[u8], kind: Kind) -> Vec<u8> {
    let mut v = input.to_vec();
    v[5] = 0;
    match kind {
        Kind::Capsule => {}
        Kind::CodeRequest => v[4..8].fill(0),
        Kind::CodeChunk => v[4] = 0,
        Kind::CodeNack => {
            v[4] = 0;
            v[7] = 0;
        }
        Kind::TraceReport => v[4] = 0,
    }
    v
}

fn one_line(s: &str) {
    assert!(!s.is_empty() && !s.contains('\n'), "bad Display: {s:?}");
}

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(m) => {
            one_line(&m.to_string());
            let kind = Prefix::parse(data)
                .expect("parsed, so the prefix is valid")
                .kind;
            let mut out = vec![0u8; m.buffer_len()];
            let n = m.emit(&mut out).expect("a parsed message re-emits");
            assert_eq!(n, data.len());
            assert_eq!(out, canonical(data, kind), "non-canonical: {m}");
            assert_eq!(Message::parse(&out), Ok(m));
            if let Message::CodeRequest(r) = m {
                // `wanted` stays in range; bound the count so a fuzzer cannot make it slow.
                let total = r.first_chunk.saturating_add(4096);
                for i in r.wanted(total) {
                    assert!(i >= r.first_chunk && i < total);
                }
            }
        }
        Err(e) => one_line(&e.to_string()),
    }

    // Per-kind parsers never panic on anything either.
    let _ = CodeRequest::parse(data);
    let _ = CodeChunk::parse(data);
    let _ = CodeNack::parse(data);
    let _ = ants_wire::TraceReport::parse(data).map(|r| r.events().count());

    let capsule = CapsuleRepr::parse(data);
    match CapsulePacket::new_checked(data.to_vec()) {
        Ok(mut p) => {
            let parsed = capsule.expect("view and parse agree");
            assert_eq!(p.repr(), parsed);
            let (flags, ty, src) = (p.flags(), p.capsule_type(), p.src());
            let (hlen, plen) = (p.header().len(), p.payload().len());
            // Mutate through every setter using values taken from the input itself.
            let resource = p.resource().wrapping_sub(1);
            let dst = p.prev();
            let prev = Address::from(core::net::Ipv4Addr::new(198, 18, 0, 2));
            p.set_resource(resource);
            p.set_dst(dst);
            p.set_prev(prev);
            p.header_mut().iter_mut().for_each(|b| *b = !*b);
            p.payload_mut().reverse();
            let buf = p.into_inner();
            let after = CapsuleRepr::parse(&buf).expect("setters keep the capsule valid");
            assert_eq!(after.flags, flags);
            assert_eq!(after.capsule_type, ty);
            assert_eq!(after.src, src);
            assert_eq!(after.resource, resource);
            assert_eq!(after.dst, dst);
            assert_eq!(after.prev, prev);
            assert_eq!(after.header.len(), hlen);
            assert_eq!(after.payload.len(), plen);
            assert!(
                after
                    .header
                    .iter()
                    .zip(parsed.header)
                    .all(|(a, b)| *a == !*b)
            );
            assert!(after.payload.iter().rev().eq(parsed.payload.iter()));
        }
        Err(e) => assert_eq!(Err(e), capsule),
    }
});
