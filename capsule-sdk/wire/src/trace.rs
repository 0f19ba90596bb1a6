//! Wire version 2: capsule traces ordered by Lamport clocks.
//!
//! A **traced capsule** is a version 2 capsule with [`FLAG_TRACE`] set. After its payload it
//! carries the trace extension ([`Trace`], 16 bytes): the trace id its origin chose and the
//! Lamport time of the send that produced this copy.
//!
//! ```text
//!  … payload | trace id u64 | clock u64 |
//! ```
//!
//! Every node that handles a traced capsule sends one **trace report** (kind 5) toward the
//! capsule's `src`, hop by hop along its routes: what it did, as events stamped with its
//! Lamport clock and its own clock.
//!
//! ```text
//!  0        6     7      8      40       56         72         80
//!  | prefix | hops| count| type | origin | reporter | trace id | events: count × 44 |
//! ```
//!
//! An event (44 bytes, no reserved bytes):
//!
//! ```text
//!  0     1       2          4   8   12      20     28
//!  | kind| detail| resource | a | b | clock | time | peer (16) |
//! ```
//!
//! [`FLAG_TRACE`]: crate::message::FLAG_TRACE

use core::fmt;

use crate::message::{Kind, Prefix, check_min, check_out};
use crate::{Address, CapsuleType, VERSION, WireError, be16, be32, be64};

/// Length of the trace extension of a traced capsule.
pub const TRACE_LEN: usize = 16;
/// Length of a trace report's fixed part.
pub const REPORT_FIXED_LEN: usize = 80;
/// Length of one event in a trace report.
pub const EVENT_LEN: usize = 44;
/// Most events one report carries (a report then fits 1,136 bytes, under the IPv6 minimum
/// MTU). A node with more to say ends the report with a [`TraceEventKind::Truncated`] event.
pub const MAX_REPORT_EVENTS: usize = 24;
/// Hops a report may travel toward its origin before it is dropped (loops cannot keep it).
pub const REPORT_HOPS: u8 = 64;

/// The trace extension of a traced capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trace {
    /// Chosen by the trace's origin; the same in every copy.
    pub id: u64,
    /// The Lamport time of the send that produced this copy.
    pub clock: u64,
}

impl Trace {
    pub(crate) fn parse(b: &[u8]) -> Trace {
        Trace {
            id: be64(b, 0),
            clock: be64(b, 8),
        }
    }

    pub(crate) fn emit(self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.id.to_be_bytes());
        b[8..16].copy_from_slice(&self.clock.to_be_bytes());
    }
}

/// What a node did with a traced capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TraceEventKind {
    /// A local app sent it (`a` = app id, `b` = 1 when the node sampled it, not the app).
    Injected = 1,
    /// It arrived from `peer` (`b` = the Lamport time of that send, saturating).
    Received = 2,
    /// It waits for its code: fetched from `peer` (`detail` 0) or compiled from the node's
    /// own copy (`detail` 1).
    HeldForCode = 3,
    /// Its code became ready and the held capsule runs (`a` = µs it waited).
    CodeReady = 4,
    /// Its code ran: `a` = fuel, `b` = ns (0: not measured), `detail` = 0 returned 0,
    /// 1 returned an error, 2 trapped, 3 not loaded.
    Ran = 5,
    /// A copy went to the neighbour `peer` (`resource` = the copy's budget).
    Sent = 6,
    /// Delivered to local app `a`.
    Delivered = 7,
    /// Dropped; `detail` = the node's drop reason code (docs/wire-format.md).
    Dropped = 8,
    /// The node had `a` more events than one report holds; they are not reported.
    Truncated = 9,
}

impl TraceEventKind {
    /// Decode a kind byte; `None` for a kind this version does not know (carried anyway).
    pub fn from_u8(v: u8) -> Option<TraceEventKind> {
        use TraceEventKind::*;
        Some(match v {
            1 => Injected,
            2 => Received,
            3 => HeldForCode,
            4 => CodeReady,
            5 => Ran,
            6 => Sent,
            7 => Delivered,
            8 => Dropped,
            9 => Truncated,
            _ => return None,
        })
    }

    /// The name used in output and docs.
    pub fn name(self) -> &'static str {
        use TraceEventKind::*;
        match self {
            Injected => "injected",
            Received => "received",
            HeldForCode => "held-for-code",
            CodeReady => "code-ready",
            Ran => "ran",
            Sent => "sent",
            Delivered => "delivered",
            Dropped => "dropped",
            Truncated => "truncated",
        }
    }
}

/// One event of a trace report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// The kind byte ([`TraceEventKind`]; unknown values are carried).
    pub kind: u8,
    /// Kind-specific detail.
    pub detail: u8,
    /// The capsule's resource at the event.
    pub resource: u16,
    /// Kind-specific value.
    pub a: u32,
    /// Kind-specific value.
    pub b: u32,
    /// The reporter's Lamport time of the event.
    pub clock: u64,
    /// The reporter's clock at the event, ns (node time: since the Unix epoch on a live node,
    /// virtual time in the simulator).
    pub time_ns: u64,
    /// The other node involved (`::` when none).
    pub peer: Address,
}

impl TraceEvent {
    /// An event of `kind` with the other fields zero.
    pub fn new(kind: TraceEventKind, clock: u64, time_ns: u64) -> TraceEvent {
        TraceEvent {
            kind: kind as u8,
            detail: 0,
            resource: 0,
            a: 0,
            b: 0,
            clock,
            time_ns,
            peer: Address::UNSPECIFIED,
        }
    }

    /// The decoded kind, if this version knows it.
    pub fn event_kind(&self) -> Option<TraceEventKind> {
        TraceEventKind::from_u8(self.kind)
    }

    fn parse(b: &[u8]) -> TraceEvent {
        let mut peer = [0u8; 16];
        peer.copy_from_slice(&b[28..44]);
        TraceEvent {
            kind: b[0],
            detail: b[1],
            resource: be16(b, 2),
            a: be32(b, 4),
            b: be32(b, 8),
            clock: be64(b, 12),
            time_ns: be64(b, 20),
            peer: Address(peer),
        }
    }

    /// Write the event into `b[..EVENT_LEN]`; panics if `b` is shorter.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.kind;
        b[1] = self.detail;
        b[2..4].copy_from_slice(&self.resource.to_be_bytes());
        b[4..8].copy_from_slice(&self.a.to_be_bytes());
        b[8..12].copy_from_slice(&self.b.to_be_bytes());
        b[12..20].copy_from_slice(&self.clock.to_be_bytes());
        b[20..28].copy_from_slice(&self.time_ns.to_be_bytes());
        b[28..44].copy_from_slice(&self.peer.0);
    }
}

/// A trace report (kind 5, version 2), borrowing its events from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceReport<'a> {
    /// Hops left before the report is dropped.
    pub hops: u8,
    /// The traced capsule's type.
    pub capsule_type: CapsuleType,
    /// Where the report goes: the traced capsule's `src`.
    pub origin: Address,
    /// The node that handled the capsule.
    pub reporter: Address,
    /// The trace id.
    pub trace_id: u64,
    /// The events, [`EVENT_LEN`] bytes each (see [`TraceReport::events`]).
    pub events: &'a [u8],
}

impl<'a> TraceReport<'a> {
    /// Parse a trace report: the length must be exactly `80 + 44 × count`, with count at most
    /// [`MAX_REPORT_EVENTS`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let prefix = Prefix::parse(buf)?;
        if prefix.kind != Kind::TraceReport {
            return Err(WireError::InvalidField {
                kind: prefix.kind,
                field: "kind (expected trace-report)",
            });
        }
        check_min(buf, Kind::TraceReport, REPORT_FIXED_LEN)?;
        let count = usize::from(buf[7]);
        if count > MAX_REPORT_EVENTS {
            return Err(WireError::InvalidField {
                kind: Kind::TraceReport,
                field: "event count",
            });
        }
        let declared = REPORT_FIXED_LEN + count * EVENT_LEN;
        if declared != buf.len() {
            return Err(WireError::LengthMismatch {
                kind: Kind::TraceReport,
                declared,
                actual: buf.len(),
            });
        }
        let mut ty = [0u8; 32];
        ty.copy_from_slice(&buf[8..40]);
        let mut origin = [0u8; 16];
        origin.copy_from_slice(&buf[40..56]);
        let mut reporter = [0u8; 16];
        reporter.copy_from_slice(&buf[56..72]);
        Ok(TraceReport {
            hops: buf[6],
            capsule_type: CapsuleType(ty),
            origin: Address(origin),
            reporter: Address(reporter),
            trace_id: be64(buf, 72),
            events: &buf[REPORT_FIXED_LEN..],
        })
    }

    /// The events in order.
    pub fn events(&self) -> impl Iterator<Item = TraceEvent> + 'a {
        self.events.chunks_exact(EVENT_LEN).map(TraceEvent::parse)
    }

    /// Number of events.
    pub fn event_count(&self) -> usize {
        self.events.len() / EVENT_LEN
    }

    /// Bytes [`TraceReport::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        REPORT_FIXED_LEN + self.events.len()
    }

    /// Serialize into the front of `buf`; fails if `buf` is too small or the events are not
    /// a whole number of at most [`MAX_REPORT_EVENTS`] events.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let count = self.event_count();
        if !self.events.len().is_multiple_of(EVENT_LEN) || count > MAX_REPORT_EVENTS {
            return Err(WireError::InvalidField {
                kind: Kind::TraceReport,
                field: "event count",
            });
        }
        let len = self.buffer_len();
        check_out(buf, len)?;
        write_report_header(buf, self, count as u8);
        buf[REPORT_FIXED_LEN..len].copy_from_slice(self.events);
        Ok(len)
    }
}

fn write_report_header(buf: &mut [u8], r: &TraceReport<'_>, count: u8) {
    Prefix {
        version: VERSION,
        kind: Kind::TraceReport,
        flags: 0,
    }
    .emit(buf);
    buf[6] = r.hops;
    buf[7] = count;
    buf[8..40].copy_from_slice(&r.capsule_type.0);
    buf[40..56].copy_from_slice(&r.origin.0);
    buf[56..72].copy_from_slice(&r.reporter.0);
    buf[72..80].copy_from_slice(&r.trace_id.to_be_bytes());
}

/// Write a report of `events` (at most [`MAX_REPORT_EVENTS`]) into the front of `buf`,
/// without borrowing them as bytes first; returns the length written.
pub fn emit_report(
    buf: &mut [u8],
    head: &TraceReport<'_>,
    events: &[TraceEvent],
) -> Result<usize, WireError> {
    if events.len() > MAX_REPORT_EVENTS {
        return Err(WireError::InvalidField {
            kind: Kind::TraceReport,
            field: "event count",
        });
    }
    let len = REPORT_FIXED_LEN + events.len() * EVENT_LEN;
    check_out(buf, len)?;
    write_report_header(buf, head, events.len() as u8);
    for (e, out) in events
        .iter()
        .zip(buf[REPORT_FIXED_LEN..len].chunks_exact_mut(EVENT_LEN))
    {
        e.emit(out);
    }
    Ok(len)
}

/// Lower a report's hop count in place (forwarding); `false` when it had none left.
pub fn take_report_hop(buf: &mut [u8]) -> bool {
    match buf.get_mut(6) {
        Some(h) if *h > 0 => {
            *h -= 1;
            true
        }
        _ => false,
    }
}

impl fmt::Display for TraceReport<'_> {
    /// `trace-report id=… type=… origin=… reporter=… hops=… events=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace-report id={:016x} type={} origin={} reporter={} hops={} events={}",
            self.trace_id,
            self.capsule_type.short(),
            self.origin,
            self.reporter,
            self.hops,
            self.event_count()
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn report_round_trips_and_checks_lengths() {
        let head = TraceReport {
            hops: REPORT_HOPS,
            capsule_type: CapsuleType([3; 32]),
            origin: "198.18.0.1".parse().unwrap(),
            reporter: "198.18.0.2".parse().unwrap(),
            trace_id: 0x0102_0304_0506_0708,
            events: &[],
        };
        let mut ev = TraceEvent::new(TraceEventKind::Sent, 7, 1_000);
        ev.peer = "198.18.0.3".parse().unwrap();
        ev.resource = 15;
        let mut buf = vec![0u8; 2000];
        let n = emit_report(&mut buf, &head, &[ev, ev]).unwrap();
        assert_eq!(n, REPORT_FIXED_LEN + 2 * EVENT_LEN);
        let r = TraceReport::parse(&buf[..n]).unwrap();
        assert_eq!(r.trace_id, head.trace_id);
        assert_eq!(r.events().collect::<std::vec::Vec<_>>(), [ev, ev]);
        assert!(matches!(
            TraceReport::parse(&buf[..n - 1]),
            Err(WireError::LengthMismatch { .. })
        ));
        buf[7] = (MAX_REPORT_EVENTS + 1) as u8;
        assert!(matches!(
            TraceReport::parse(&buf[..n]),
            Err(WireError::InvalidField { .. })
        ));
        // A version 1 prefix has no kind 5.
        buf[2] = 1;
        assert_eq!(
            TraceReport::parse(&buf[..n]),
            Err(WireError::UnknownKind(5))
        );
        let too_many = [ev; MAX_REPORT_EVENTS + 1];
        assert!(emit_report(&mut buf, &head, &too_many).is_err());
    }

    #[test]
    fn hops_run_out() {
        let mut b = [0u8; 7];
        b[6] = 1;
        assert!(take_report_hop(&mut b));
        assert!(!take_report_hop(&mut b));
        assert!(!take_report_hop(&mut [0u8; 3]));
    }
}
