//! Router behaviour tests, by topic. Frames are built with pnet (`crate::testutil`), outputs
//! parsed back with pnet and checked field by field.

mod arp;
mod ethernet;
mod forward;
mod icmp_limits;
mod local;
mod offload;
mod props;
mod send;
mod validation;

use crate::counters::DropReason;
use crate::testutil::*;
use crate::{Router, Verdict};

/// Feed `frame` on `iface` at `now` and expect it to be dropped for `reason` (and only that).
fn assert_drop(r: &mut Router, iface: usize, mut frame: Vec<u8>, reason: DropReason) {
    let before = r.counters().clone();
    assert_eq!(
        r.handle_frame(t(0), iface, &mut frame),
        Verdict::Done,
        "{reason}"
    );
    assert_eq!(
        r.counters().drop_count(reason),
        before.drop_count(reason) + 1,
        "expected a {reason} drop, counters: {:?}",
        r.counters()
            .drops()
            .filter(|&(_, n)| n > 0)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        r.counters().dropped_total(),
        before.dropped_total() + 1,
        "{reason}"
    );
}

/// Re-checksum the IPv4 header of an Ethernet frame after a test edited it.
fn fix_ip_checksum(frame: &mut [u8]) {
    let hlen = usize::from(frame[14] & 0x0f) * 4;
    frame[24] = 0;
    frame[25] = 0;
    let c = pnet_packet::util::checksum(&frame[14..14 + hlen.max(20)], 5);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}
