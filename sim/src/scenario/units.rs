//! Values written as text in scenario files: durations (`"250ms"`), sizes (`"64KiB"`),
//! bandwidths (`"100Mbit"`), node selections and the header/payload field language.

use std::time::Duration;

use ants_wire::Address;

use crate::apps::{Field, Template};
use crate::topology::Topology;

/// `"10ns"`, `"250us"`, `"1.5ms"`, `"2s"`, `"1m"`; `"0"` alone is zero.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{s}` has no unit (write e.g. \"10ms\", \"2s\")"))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}`: `{num}` is not a number"))?;
    let scale = match unit.trim() {
        "ns" => 1e0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        other => {
            return Err(format!(
                "duration `{s}`: unknown unit `{other}` (ns, us, ms, s, m)"
            ));
        }
    };
    let ns = v * scale;
    if !ns.is_finite() || !(0.0..=1e19).contains(&ns) {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// `"1000"` bytes, `"64KiB"`, `"16MiB"`, `"1GiB"`, `"10KB"` (powers of 1000 for KB/MB/GB).
pub fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: u64 = num
        .parse()
        .map_err(|_| format!("size `{s}`: `{num}` is not a whole number"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "size `{s}`: unknown unit `{other}` (B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    v.checked_mul(scale)
        .ok_or_else(|| format!("size `{s}` is out of range"))
}

/// Bits per second: `"100Mbit"`, `"1Gbit"`, `"64kbit"`, `"9600bit"` (a `/s` or `ps` suffix
/// is allowed); `"unlimited"` or `"0"` = no limit (0).
pub fn bandwidth(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "unlimited" || s == "0" {
        return Ok(0);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("bandwidth `{s}` has no unit (write e.g. \"100Mbit\")"))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bandwidth `{s}`: `{num}` is not a number"))?;
    let unit = unit.trim().trim_end_matches("/s").trim_end_matches("ps");
    let scale = match unit {
        "bit" | "b" => 1e0,
        "kbit" | "Kbit" | "kb" => 1e3,
        "Mbit" | "Mb" => 1e6,
        "Gbit" | "Gb" => 1e9,
        other => {
            return Err(format!(
                "bandwidth `{s}`: unknown unit `{other}` (bit, kbit, Mbit, Gbit)"
            ));
        }
    };
    let bps = v * scale;
    if !bps.is_finite() || !(1.0..=1e15).contains(&bps) {
        return Err(format!("bandwidth `{s}` is out of range"));
    }
    Ok(bps.round() as u64)
}

/// A header or payload: whitespace-separated fields, each written as bytes in order.
///
/// | field | bytes |
/// |---|---|
/// | `u8:N` `u16:N` `u32:N` `u64:N` | N big-endian (decimal or `0x…`) |
/// | `u8:seq` … `u64:seq` | the send's sequence number (0, 1, 2 …), big-endian |
/// | `hex:0a0b…` | those bytes |
/// | `str:text` | the UTF-8 text (no spaces) |
/// | `node:N` | node N's 16-byte active address |
/// | `addr:A` | address A (IPv4 or IPv6) as 16 bytes |
pub fn template(s: &str, topo: &Topology) -> Result<Template, String> {
    let nodes = topo.len();
    let mut fields: Vec<Field> = Vec::new();
    for tok in s.split_whitespace() {
        let (kind, val) = tok.split_once(':').ok_or_else(|| {
            format!("field `{tok}` is not `kind:value` (u32:7, hex:0a, str:x, node:3, addr:…)")
        })?;
        let width = match kind {
            "u8" => Some(1u8),
            "u16" => Some(2),
            "u32" => Some(4),
            "u64" => Some(8),
            _ => None,
        };
        if let Some(w) = width {
            if val == "seq" {
                fields.push(Field::Seq(w));
                continue;
            }
            let v =
                parse_int(val).ok_or_else(|| format!("field `{tok}`: `{val}` is not a number"))?;
            if w < 8 && v >> (u32::from(w) * 8) != 0 {
                return Err(format!("field `{tok}`: {v} does not fit in {kind}"));
            }
            push(&mut fields, &v.to_be_bytes()[8 - usize::from(w)..]);
            continue;
        }
        match kind {
            "hex" => {
                let b = hex(val).ok_or_else(|| format!("field `{tok}`: not hex"))?;
                push(&mut fields, &b);
            }
            "str" => push(&mut fields, val.as_bytes()),
            "node" => {
                let i: u32 = val
                    .parse()
                    .map_err(|_| format!("field `{tok}`: `{val}` is not a node number"))?;
                if i >= nodes {
                    return Err(format!(
                        "field `{tok}`: no node {i} (the topology has {nodes})"
                    ));
                }
                push(&mut fields, &topo.address(i).0);
            }
            "addr" => {
                let a: Address = val
                    .parse()
                    .map_err(|_| format!("field `{tok}`: `{val}` is not an address"))?;
                push(&mut fields, &a.0);
            }
            other => {
                return Err(format!(
                    "field `{tok}`: unknown kind `{other}` (u8, u16, u32, u64, hex, str, node, addr)"
                ));
            }
        }
    }
    Ok(Template(fields))
}

/// Append literal bytes, merging with a preceding literal.
fn push(fields: &mut Vec<Field>, b: &[u8]) {
    match fields.last_mut() {
        Some(Field::Bytes(v)) => v.extend_from_slice(b),
        _ => fields.push(Field::Bytes(b.to_vec())),
    }
}

fn parse_int(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_bandwidths_parse_with_units() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("10").unwrap_err().contains("no unit"));
        assert!(duration("3 weeks").is_err());
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size("1000"), Ok(1000));
        assert!(size("1.5MiB").is_err());
        assert_eq!(bandwidth("100Mbit"), Ok(100_000_000));
        assert_eq!(bandwidth("1Gbit/s"), Ok(1_000_000_000));
        assert_eq!(bandwidth("unlimited"), Ok(0));
        assert!(bandwidth("fast").is_err());
    }

    #[test]
    fn templates_build_protocol_headers() {
        // The multicast subscribe header of tests/it/multicast.rs (group 7, app 50, 2 s).
        let line = Topology::line(8).unwrap();
        let t = template("u8:1 u8:0 u16:0 u32:7 u32:50 u32:2000", &line).unwrap();
        let mut out = Vec::new();
        t.render(0, &mut out);
        assert_eq!(out, [1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 50, 0, 0, 7, 208]);
        let t = template("u8:1 u32:0xa1 node:0 u8:0 u16:400", &line).unwrap();
        t.render(0, &mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(&out[5..21], &line.address(0).0);
        let t = template("str:seq= u32:seq hex:ff", &line).unwrap();
        t.render(3, &mut out);
        assert_eq!(out, b"seq=\0\0\0\x03\xff");
        assert_eq!(template("", &line).unwrap(), Template::default());
        for bad in ["u8:256", "u32", "node:9", "hex:abc", "foo:1", "addr:nope"] {
            assert!(template(bad, &line).is_err(), "{bad}");
        }
    }
}
