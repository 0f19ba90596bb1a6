//! Helpers for the `ants send` / `ants listen` commands built on [`AppClient`](crate::AppClient).

use serde::Serialize;

use crate::proto::Delivery;

/// The JSON object `ants listen` prints per delivery; field order is fixed.
#[derive(Serialize)]
struct DeliveryJson<'a> {
    #[serde(rename = "type")]
    capsule_type: String,
    src: String,
    dst: String,
    prev: String,
    resource: u16,
    header_hex: String,
    payload_hex: String,
    /// The payload as text when it is valid UTF-8, else `null`.
    payload_text: Option<&'a str>,
    node_time_ns: u64,
}

/// One delivery as a single-line JSON object (no trailing newline):
///
/// ```json
/// {"type":"<64 hex>","src":"198.18.0.1","dst":"198.18.0.5","prev":"198.18.0.4","resource":12,
///  "header_hex":"","payload_hex":"6869","payload_text":"hi","node_time_ns":1234}
/// ```
///
/// Addresses print as in configs (dotted quads for IPv4-mapped ones); `payload_text` is
/// `null` when the payload is not UTF-8.
pub fn format_delivery_json(d: &Delivery) -> String {
    let json = DeliveryJson {
        capsule_type: d.capsule_type.to_string(),
        src: d.src.to_string(),
        dst: d.dst.to_string(),
        prev: d.prev.to_string(),
        resource: d.resource,
        header_hex: hex::encode(&d.header),
        payload_hex: hex::encode(&d.payload),
        payload_text: std::str::from_utf8(&d.payload).ok(),
        node_time_ns: d.node_time_ns,
    };
    // Serializing strings and integers cannot fail; fall back to an empty object anyway.
    serde_json::to_string(&json).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_wire::{Address, CapsuleType};

    fn delivery(payload: &[u8]) -> Delivery {
        Delivery {
            capsule_type: CapsuleType([0xab; 32]),
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.5".parse().unwrap(),
            prev: Address::UNSPECIFIED,
            resource: 12,
            header: vec![1, 2],
            payload: payload.to_vec(),
            node_time_ns: 1234,
        }
    }

    #[test]
    fn delivery_json_line() {
        let s = format_delivery_json(&delivery(b"hi \"x\"\n"));
        let t = "ab".repeat(32);
        let want = format!(
            r#"{{"type":"{t}","src":"198.18.0.1","dst":"198.18.0.5","prev":"::","resource":12,"header_hex":"0102","payload_hex":"6869202278220a","payload_text":"hi \"x\"\n","node_time_ns":1234}}"#
        );
        assert_eq!(s, want);
        assert!(!s.contains('\n'));
    }

    #[test]
    fn binary_payload_has_null_text() {
        let s = format_delivery_json(&delivery(&[0xff, 0]));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["payload_hex"], "ff00");
        assert!(v["payload_text"].is_null());
    }
}
