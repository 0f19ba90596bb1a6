//! The integration test binary: real capsules built to wasm, hostile modules, the `ants` CLI.
//!
//! Capsules are built on demand by `ants-capsule-build` (once per process), so this binary
//! needs no prebuilt wasm and no manual toolchain step.

mod adversary;
mod afpacket;
mod afxdp;
mod anycast;
mod capsules;
mod capture;
mod cli;
mod dist;
mod fastpath;
mod hostile;
mod lifecycle;
mod map;
mod metrics;
mod multicast;
mod netns;
mod overlay;
mod replay;
mod router;
mod router_clients;
mod sim;
mod status;
mod support;
mod topology;
mod trace;
mod traceroute;
mod workers;
