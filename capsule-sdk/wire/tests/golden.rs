//! A golden capsule: the exact bytes of one known capsule, in the hex dump that
//! `docs/wire-format.md` shows. If this test fails, the wire format changed — bump
//! [`ants_wire::VERSION`] and update the document.
//!
//! `cargo test -p ants-wire --test golden -- --nocapture` prints the dump.

use std::fmt::Write as _;

use ants_wire::message::FLAG_TRACE;
use ants_wire::{Address, CapsuleRepr, CapsuleType};

/// SHA-256 of the smallest valid wasm module, `\0asm\x01\0\0\0`:
/// `printf '\0asm\1\0\0\0' | sha256sum`.
const EMPTY_MODULE_SHA256: &str =
    "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";

const EXPECTED: &str = "\
0000: a75c 0101 0100 0040 93a4 4bbb 96c7 5121  .\\.....@..K...Q!
0010: 8e4c 00d4 79e4 c143 5812 2a38 9acc a162  .L..y..CX.*8...b
0020: 05b1 e4d0 dc5f 9476 0000 0000 0000 0000  ....._.v........
0030: 0000 ffff c612 0001 0000 0000 0000 0000  ................
0040: 0000 ffff c612 0005 0000 0000 0000 0000  ................
0050: 0000 ffff c612 0002 0002 0005 0007 6865  ..............he
0060: 6c6c 6f                                  llo
";

/// `xxd`-style dump: offset, 16 bytes in hex, printable ASCII.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        write!(out, "{:04x}:", row * 16).unwrap();
        for (i, b) in chunk.iter().enumerate() {
            if i % 2 == 0 {
                out.push(' ');
            }
            write!(out, "{b:02x}").unwrap();
        }
        // Keep the ASCII column aligned on a short last row.
        let pad: usize = (chunk.len()..16)
            .map(|i| if i % 2 == 0 { 3 } else { 2 })
            .sum();
        out.push_str(&" ".repeat(pad + 2));
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[test]
fn golden_capsule_hex_dump() {
    let capsule_type: CapsuleType = EMPTY_MODULE_SHA256.parse().unwrap();
    assert_eq!(capsule_type.to_string(), EMPTY_MODULE_SHA256);
    let c = CapsuleRepr {
        flags: FLAG_TRACE,
        resource: 64,
        capsule_type,
        src: "198.18.0.1".parse::<Address>().unwrap(),
        dst: "198.18.0.5".parse::<Address>().unwrap(),
        prev: "198.18.0.2".parse::<Address>().unwrap(),
        header: &[0x00, 0x07],
        payload: b"hello",
        trace: None,
    };
    let mut buf = vec![0u8; c.buffer_len()];
    c.emit(&mut buf).unwrap();
    let dump = hexdump(&buf);
    println!("{c}\n{dump}");
    assert_eq!(dump, EXPECTED);
}

const EXPECTED_TRACED: &str = "\
0000: a75c 0201 0100 0040 93a4 4bbb 96c7 5121  .\\.....@..K...Q!
0010: 8e4c 00d4 79e4 c143 5812 2a38 9acc a162  .L..y..CX.*8...b
0020: 05b1 e4d0 dc5f 9476 0000 0000 0000 0000  ....._.v........
0030: 0000 ffff c612 0001 0000 0000 0000 0000  ................
0040: 0000 ffff c612 0005 0000 0000 0000 0000  ................
0050: 0000 ffff c612 0002 0002 0005 0007 6865  ..............he
0060: 6c6c 6f00 0000 0000 00ab cd00 0000 0000  llo.............
0070: 0000 03                                  ...
";

const EXPECTED_REPORT: &str = "\
0000: a75c 0205 0000 4001 93a4 4bbb 96c7 5121  .\\....@...K...Q!
0010: 8e4c 00d4 79e4 c143 5812 2a38 9acc a162  .L..y..CX.*8...b
0020: 05b1 e4d0 dc5f 9476 0000 0000 0000 0000  ....._.v........
0030: 0000 ffff c612 0001 0000 0000 0000 0000  ................
0040: 0000 ffff c612 0002 0000 0000 0000 abcd  ................
0050: 0600 003f 0000 0000 0000 0000 0000 0000  ...?............
0060: 0000 0005 0000 0000 0000 03e8 0000 0000  ................
0070: 0000 0000 0000 ffff c612 0003            ............
";

/// The same capsule traced (wire version 2): trace id `0xabcd`, sent at Lamport time 3.
#[test]
fn golden_traced_capsule_and_report_hex_dumps() {
    use ants_wire::trace::{REPORT_HOPS, emit_report};
    use ants_wire::{Trace, TraceEvent, TraceEventKind, TraceReport};

    let capsule_type: CapsuleType = EMPTY_MODULE_SHA256.parse().unwrap();
    let c = CapsuleRepr {
        flags: 0,
        resource: 64,
        capsule_type,
        src: "198.18.0.1".parse::<Address>().unwrap(),
        dst: "198.18.0.5".parse::<Address>().unwrap(),
        prev: "198.18.0.2".parse::<Address>().unwrap(),
        header: &[0x00, 0x07],
        payload: b"hello",
        trace: Some(Trace {
            id: 0xabcd,
            clock: 3,
        }),
    };
    let mut buf = vec![0u8; c.buffer_len()];
    c.emit(&mut buf).unwrap();
    let dump = hexdump(&buf);
    println!("{c}\n{dump}");
    assert_eq!(dump, EXPECTED_TRACED);

    // Node 198.18.0.2 reports to the origin 198.18.0.1: it sent a copy to 198.18.0.3 with
    // resource 63 at Lamport time 5, 1 µs after the epoch of its clock.
    let head = TraceReport {
        hops: REPORT_HOPS,
        capsule_type,
        origin: c.src,
        reporter: c.prev,
        trace_id: 0xabcd,
        events: &[],
    };
    let mut sent = TraceEvent::new(TraceEventKind::Sent, 5, 1_000);
    sent.resource = 63;
    sent.peer = "198.18.0.3".parse().unwrap();
    let mut buf = vec![0u8; 200];
    let n = emit_report(&mut buf, &head, &[sent]).unwrap();
    let r = TraceReport::parse(&buf[..n]).unwrap();
    let dump = hexdump(&buf[..n]);
    println!("{r}\n{dump}");
    assert_eq!(dump, EXPECTED_REPORT);
}
