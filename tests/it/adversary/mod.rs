//! The adversary suite (issue "Hostile network"): every attack found against a node, each
//! tried on a real `ants run` process with a legitimate flow running beside it.
//!
//! Every test asserts the same four things (see [`harness::Report`]): the legitimate flow
//! lost nothing (≥ 99 % delivered, each exactly once, nothing else delivered to its app); the
//! attack shows in the node's counters; the node's memory (and disk, where the attack aims at
//! it) stayed within the bounds of its configuration; and the node stopped within one second
//! of SIGTERM.
//!
//! - `exec`: capsules that try to stall (freeze, bulk memory), storm, fill the soft-store or
//!   deliver where they may not.
//! - `code`: peers that try to make the node fetch, compile and store code: strangers, silent
//!   and dripping neighbours, floods of modules, the allow-list, serving nothing.
//! - `spoof`: datagrams with a neighbour's source address (raw sockets; root).
//! - `router`: router mode in network namespaces: ARP and ICMP floods (root).

mod code;
mod exec;
mod harness;
mod router;
mod spoof;
