//! The resource bound, checked over arbitrary capsule behaviour: one capsule injected with
//! resource `R` causes at most `R` capsule transmissions anywhere in the network, whatever its
//! code does (docs/abi.md, "The resource budget"; the copies of one run share the budget they
//! arrived with).
//!
//! [`Chaos`] stands in for a hostile or buggy protocol: at every node it sends a
//! data-dependent number of copies (up to the per-run limit) toward neighbours or far
//! addresses, with shared or explicit (including absurd) resources, editing its header
//! between copies so its descendants behave differently again. The network is a random graph
//! with shortest-path routes; the property test runs it to quiescence and counts every
//! capsule put on a link.

use std::collections::BTreeSet;
use std::time::Duration;

use ants_core::node::Injection;
use ants_core::{Execution, Executor, LoadError, RunReport, RunResult, native_module};
use ants_wire::CapsuleType;
use ants_wire::abi::Field;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::{Sim, SimConfig, Topology, node_address};

/// A protocol whose every run is a different, data-dependent fan-out.
#[derive(Debug, Default)]
struct Chaos {
    loaded: BTreeSet<CapsuleType>,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Executor for Chaos {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        let ty = CapsuleType(Sha256::digest(code).into());
        self.loaded.insert(ty);
        Ok(ty)
    }

    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.loaded.contains(ty)
    }

    fn run(&mut self, e: &mut Box<Execution>) -> RunReport {
        let digest = Sha256::new()
            .chain_update(e.node.address.0)
            .chain_update(&e.capsule.header)
            .chain_update(&e.capsule.payload)
            .finalize();
        let mut h = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let neighbours: Vec<_> = e.node.neighbours.iter().copied().collect();
        let copies = h % 24; // beyond the per-run limit of 16, on purpose
        for k in 0..copies {
            h = mix(h);
            let toward = match (h >> 8) % 4 {
                // Far away (routed), or a neighbour.
                0 => node_address((h >> 16) as u32 % 16),
                _ if !neighbours.is_empty() => neighbours[(h >> 16) as usize % neighbours.len()],
                _ => node_address(0),
            };
            // Descendants see a different header, so they behave differently.
            let len = e.capsule.header.len();
            if len < 32 {
                e.capsule_resize(Field::Header as i32, (len + 1) as i32);
                e.capsule_write(Field::Header as i32, len as u32, &[k as u8 ^ (h as u8)]);
            }
            let _ = match (h >> 24) % 5 {
                0 => e.route_for_node_with(toward.0, 0),
                1 => e.route_for_node_with(toward.0, (h >> 32) as i32 & 0xFFFF),
                2 => e.route_for_node_with(toward.0, e.capsule_resource()),
                3 => e.route_for_node_with(toward.0, e.capsule_resource() - 1),
                _ => e.route_for_node(toward.0),
            };
        }
        RunReport {
            result: RunResult::Returned(0),
            fuel_used: 10,
            nanos: None,
        }
    }
}

/// Inject one `Chaos` capsule with `resource` at node 0 of a random `n`-node graph and run
/// until nothing moves; the capsules put on links.
fn transmissions(n: u32, seed: u64, resource: u16) -> u64 {
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    config.node.max_resource = u16::MAX;
    let topo = Topology::random(n, 3, seed).expect("topology");
    let mut sim = Sim::new(topo, config, Chaos::default());
    sim.register_app(0, 7);
    let code = native_module(64, seed as u8);
    let inj = Injection {
        ty: CapsuleType(Sha256::digest(&code).into()),
        code: Some(&code),
        dst: node_address(n - 1),
        resource,
        header: &[],
        payload: &seed.to_le_bytes(),
        trace: None,
    };
    sim.inject(0, 7, inj).expect("inject");
    sim.run_until(Duration::from_secs(120));
    assert_eq!(sim.pending_events(), 0, "the network went quiet");
    sim.stats().capsules_sent
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn one_capsule_with_resource_r_causes_at_most_r_transmissions(
        n in 2u32..16,
        seed in any::<u64>(),
        resource in 0u16..400,
    ) {
        let sent = transmissions(n, seed, resource);
        prop_assert!(sent <= u64::from(resource), "{sent} transmissions from resource {resource}");
    }
}

#[test]
fn the_bound_is_reached_not_just_respected() {
    // A protocol that always fans out uses most of its budget: the property is not vacuous.
    let best = (0..16u64)
        .map(|seed| transmissions(12, seed, 300))
        .max()
        .unwrap_or(0);
    assert!(best > 150, "best run used {best} of 300");
    assert!(best <= 300);
}
