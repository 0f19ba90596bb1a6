//! Draining a node after each input, as a real driver does: datagrams onto links, `Compile`
//! events to the shared executor, deliveries to apps, the next deadline into the queue.

use std::sync::Arc;

use ants_core::Executor;
use ants_core::node::Event as NodeEvent;
use ants_wire::abi::LogLevel;
use ants_wire::{CapsuleRepr, Kind, Message};

use crate::apps::Delivered;
use crate::event::Event;
use crate::link::LinkDrop;
use crate::sim::{Sim, ns};
use crate::trace::{Record, Ty};
use crate::watch::{Violation, Watch};

impl<E: Executor> Sim<E> {
    pub(crate) fn link_drop(&mut self, from: u32, to: u32, r: LinkDrop) {
        self.stats.link_drops[r.index()] += 1;
        self.trace.record(
            self.now,
            &Record::Drop {
                from,
                to,
                reason: r.name(),
            },
        );
    }

    /// Drain node `i`'s outputs after an input; schedule its next timer no earlier than
    /// `floor`.
    pub(crate) fn flush(&mut self, i: u32, floor: u64) {
        let now = self.now;
        let Sim {
            nodes,
            links,
            classes,
            queue,
            pool,
            trace,
            stats,
            topo,
            shared,
            apps,
            log,
            config,
            watches,
            violation,
            part,
            outbox,
            ..
        } = self;
        let Some(sn) = part.node_mut(nodes, i) else {
            return;
        };
        // This node's links, sorted by receiver (searched directly: they are read anyway).
        let out = topo.edge_range(i);
        let first = out.start;
        let mine = links.get_mut(out).unwrap_or_default();
        sn.node.drain_transmits(|to, bytes| {
            let kind_byte = bytes.get(3).copied();
            let drop = match mine.binary_search_by_key(&to, |l| l.to) {
                Err(_) => Err(LinkDrop::NoLink),
                Ok(k) => {
                    let (l, link) = ((first + k) as u32, &mut mine[k]);
                    let p = &classes[link.class as usize];
                    let code = kind_byte != Some(Kind::Capsule as u8);
                    link.transmit(p, now, bytes.len(), code).map(|at| (l, at))
                }
            };
            if kind_byte == Some(Kind::Capsule as u8) {
                stats.capsules_sent += 1;
            } else {
                stats.code_messages_sent += 1;
            }
            if trace.is_on() {
                let (kind, ty) = describe(bytes);
                let rec = Record::Send {
                    from: i,
                    to,
                    kind,
                    ty: ty.map(Ty),
                    len: bytes.len(),
                };
                trace.record(now, &rec);
            }
            match drop {
                Ok((l, at)) => {
                    // (`SimNode::next_tie`, spelled out: `sn.node` is borrowed.)
                    let tie = crate::event::tie(Some(i), sn.pushes);
                    sn.pushes += 1;
                    if part.owns(to) {
                        let buf = pool.put(bytes);
                        queue.push(at, tie, Event::Arrive { link: l, buf });
                    } else {
                        outbox.post(part.owner(to), at, tie, l, bytes);
                    }
                }
                Err(r) => {
                    stats.link_drops[r.index()] += 1;
                    let rec = Record::Drop {
                        from: i,
                        to,
                        reason: r.name(),
                    };
                    trace.record(now, &rec);
                }
            }
        });
        while let Some(ev) = sn.node.poll_event() {
            match ev {
                NodeEvent::Compile { ty, code } => {
                    let (idx, shared_code, r) = shared.compile(ty, &code);
                    // One copy of the module for every node's code cache.
                    if !Arc::ptr_eq(&code, &shared_code) {
                        sn.node.add_code(ty, shared_code);
                    }
                    let rec = Record::Compile {
                        node: i,
                        ty: Ty(ty),
                        ok: r.is_ok(),
                    };
                    trace.record(now, &rec);
                    let at = now.saturating_add(ns(config.compile_delay));
                    let ev = Event::Compiled {
                        node: i,
                        epoch: sn.epoch,
                        ty: idx,
                    };
                    queue.push(at, sn.next_tie(i), ev);
                }
                // The simulator keeps no code store (`set_stored` is never called), so a
                // restore is never asked for.
                NodeEvent::Restore { .. } => {}
                NodeEvent::CapsuleLog { ty, level, text } => {
                    let rec = Record::Log {
                        node: i,
                        ty: Ty(ty),
                        level: level_name(level),
                        text: &text,
                    };
                    trace.record(now, &rec);
                }
                NodeEvent::Trapped { ty, reason } => {
                    let rec = Record::Trap {
                        node: i,
                        ty: Ty(ty),
                        reason: reason.to_string(),
                    };
                    trace.record(now, &rec);
                }
                // Counted in the node's counters (`quarantines`); its traps are traced above.
                NodeEvent::Quarantined { .. } => {}
                NodeEvent::CodeFailed {
                    ty,
                    reason,
                    dropped,
                } => {
                    let rec = Record::CodeFailed {
                        node: i,
                        ty: Ty(ty),
                        reason: &reason,
                        dropped,
                    };
                    trace.record(now, &rec);
                }
            }
        }
        while let Some(d) = sn.node.poll_delivery() {
            let Ok(repr) = CapsuleRepr::parse(&d.capsule) else {
                continue;
            };
            let duplicate = apps
                .entry((i, d.app))
                .or_default()
                .delivered(now, repr.payload);
            if trace.is_on() {
                let rec = Record::Deliver {
                    node: i,
                    app: d.app,
                    ty: Ty(repr.capsule_type),
                    len: repr.payload.len(),
                };
                trace.record(now, &rec);
            }
            if duplicate && violation.is_none() && watches.contains(&Watch::NoDuplicateDelivery) {
                let detail = Watch::duplicate_detail(d.app, repr.payload.len());
                *violation = Some(Violation::new(
                    Watch::NoDuplicateDelivery.describe(),
                    now,
                    i,
                    detail,
                    trace,
                ));
            }
            if config.delivery_log > 0 {
                if log.len() >= config.delivery_log {
                    log.pop_front();
                }
                log.push_back(Delivered {
                    node: i,
                    app: d.app,
                    at: d.at,
                    capsule: d.capsule,
                });
            }
        }
        for w in watches.iter() {
            if violation.is_none()
                && let Some(detail) = w.check_node(&sn.node)
            {
                *violation = Some(Violation::new(w.describe(), now, i, detail, trace));
            }
        }
        if let Some(t) = sn.node.poll_timeout() {
            let t = ns(t).max(floor);
            if t < sn.timer_at {
                sn.timer_at = t;
                queue.push(
                    t,
                    sn.next_tie(i),
                    Event::Timer {
                        node: i,
                        epoch: sn.epoch,
                    },
                );
            }
        }
    }
}

/// Kind name and type of a datagram, for the trace.
pub(crate) fn describe(data: &[u8]) -> (&'static str, Option<ants_wire::CapsuleType>) {
    match Message::parse(data) {
        Ok(Message::Capsule(c)) => ("capsule", Some(c.capsule_type)),
        Ok(Message::CodeRequest(r)) => ("code-request", Some(r.capsule_type)),
        Ok(Message::CodeChunk(c)) => ("code-chunk", Some(c.capsule_type)),
        Ok(Message::CodeNack(n)) => ("code-nack", Some(n.capsule_type)),
        Ok(Message::TraceReport(r)) => ("trace-report", Some(r.capsule_type)),
        Err(_) => ("malformed", None),
    }
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}
