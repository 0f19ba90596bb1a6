//! Capsules that try to stall a node, storm the network, evict others' state or deliver
//! where they may not.

use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_wire::CapsuleType;

use super::harness::{Attack, Field, Setup, T, capsule, type_of};
use crate::support::{addr, hostile};

/// Send the attacker's capsules of `ty` at `per_sec` while serving `code`, until stopped.
fn flood(a: &Attack, code: &[u8], ty: CapsuleType, per_sec: u32, resource: u16) -> u64 {
    let mut sent = 0;
    std::thread::scope(|s| {
        s.spawn(|| a.serve(&[code.to_vec()], Duration::ZERO, far()));
        let gap = Duration::from_secs_f64(1.0 / f64::from(per_sec));
        while !a.stopped() {
            a.send(&capsule(ty, T, resource, b"attack"));
            sent += 1;
            std::thread::sleep(gap);
        }
    });
    sent
}

/// `[limits]` with the trap quarantine off, for the tests of the bounds it would hide.
const NO_QUARANTINE: &str = "[limits]\nquarantine_traps = 0\n";

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[test]
fn a_freeze_capsule_from_a_neighbour_traps_on_fuel_and_the_node_keeps_forwarding() {
    // The capsule that froze a node for ten minutes: node_random over 4 MiB in a loop. With
    // the trap quarantine off, every capsule runs into its fuel limit (the quarantine is
    // tested below).
    let setup = Setup {
        t_extra: NO_QUARANTINE.into(),
        ..Setup::default()
    };
    let code = hostile("random_flood");
    let ty = type_of(&code);
    let (r, sent) = Field::start(&setup).run(&setup, move |a| flood(a, &code, ty, 300, 8));
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    r.assert_rss_growth_below(64);
    let traps = r.protocol(&ty, "traps");
    let over_budget = r.counter("node/drops/peer-over-budget");
    assert!(traps >= 100, "{traps} traps of {sent} attack capsules");
    assert_eq!(
        traps + over_budget,
        r.protocol(&ty, "runs") + over_budget,
        "every run of it trapped"
    );
}

#[test]
fn a_neighbour_whose_capsules_keep_trapping_is_quarantined_and_shown_by_ants_modules() {
    // The freeze capsule again, with the default policy: after 8 traps in 10 s the
    // neighbour's capsules of that type are dropped unrun for 60 s; the legitimate flow (the
    // same node, another peer and type) does not notice.
    let setup = Setup::default();
    let code = hostile("random_flood");
    let ty = type_of(&code);
    let (r, (sent, modules)) = Field::start(&setup).run(&setup, move |a| {
        let sent = flood(a, &code, ty, 300, 8);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ants"))
            .args(["modules", "--socket"])
            .arg(&a.t_sock)
            .output()
            .expect("ants modules");
        (sent, String::from_utf8_lossy(&out.stdout).into_owned())
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    assert_eq!(r.protocol(&ty, "traps"), 8, "{}", r.stats);
    assert_eq!(r.protocol(&ty, "quarantines"), 1);
    let dropped = r.counter("node/drops/quarantined");
    assert!(
        dropped + 8 + 20 >= sent,
        "{dropped} of {sent} dropped unrun: {}",
        r.stats
    );
    let row = modules
        .lines()
        .find(|l| l.starts_with(&ty.to_string()[..16]))
        .unwrap_or_else(|| panic!("no row for the type:\n{modules}"));
    assert!(row.trim_end().ends_with("1 peers"), "{modules}");
}

#[test]
fn a_slow_capsule_is_stopped_by_the_deadline_and_its_peer_budget() {
    // Cache misses and divisions: its fuel lasts several milliseconds. The deadline (1 ms
    // here) stops it, and the peer's fuel budget, charged the deadline's worth, stops its
    // sender.
    let setup = Setup {
        t_extra: format!("{NO_QUARANTINE}max_exec_time = \"1ms\"\n"),
        ..Setup::default()
    };
    let code = hostile("slow_ops");
    let ty = type_of(&code);
    // 400 per second: twice what its fuel budget (200 M/s, about 20 % of a core) pays for.
    let (r, sent) = Field::start(&setup).run(&setup, move |a| flood(a, &code, ty, 400, 8));
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    r.assert_rss_growth_below(64);
    assert!(r.protocol(&ty, "deadline_traps") >= 1, "{}", r.stats);
    let runs = r.protocol(&ty, "runs");
    let over = r.counter("node/drops/peer-over-budget");
    assert!(
        over >= sent / 4,
        "{runs} run, {over} of {sent} dropped by the budget"
    );
}

#[test]
fn a_storm_capsule_causes_at_most_its_resource_in_transmissions() {
    // 16 copies to the first neighbour at every run, injected once with a huge resource:
    // clamped to max_resource (64), and the copies share it.
    let setup = Setup {
        attack_for: Duration::from_secs(2),
        ..Setup::default()
    };
    let code = hostile("storm");
    let ty = type_of(&code);
    let (r, ()) = Field::start(&setup).run(&setup, move |a| {
        std::thread::scope(|s| {
            s.spawn(|| a.serve(std::slice::from_ref(&code), Duration::ZERO, far()));
            a.send(&capsule(ty, T, u16::MAX, b"storm"));
        });
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    let at_t = r.protocol(&ty, "sent");
    let at_s = r
        .s_stats
        .protocols
        .iter()
        .find(|(t, _)| *t == ty)
        .map_or(0, |(_, c)| c.sent);
    assert!(at_t >= 16, "the storm ran: {at_t} copies from T");
    assert!(
        at_t + at_s <= 64,
        "{at_t} + {at_s} transmissions from resource 64"
    );
    assert_eq!(r.counter("node/resource_clamped"), 1);
}

/// `store_flood` made into a distinct type per `n` (an unused data segment).
fn store_flood(n: u32) -> Vec<u8> {
    let text = std::fs::read_to_string(
        crate::support::root().join("tests/fixtures/hostile/store_flood.wat"),
    )
    .unwrap();
    let text = text.replacen(
        "(memory (export \"memory\") 1)",
        &format!("(memory (export \"memory\") 1) (data (i32.const 60000) \"variant {n}\")"),
        1,
    );
    wat::parse_str(text).unwrap()
}

#[test]
fn a_store_flood_of_many_protocols_evicts_nobody_else() {
    // The keeper protocol stores a value at T; then 20 flooding protocols each fill their
    // 1 MiB quota (20 MiB against a 16 MiB store); the keeper's value is still there.
    let setup = Setup {
        attack_for: Duration::from_secs(4),
        ..Setup::default()
    };
    let field = Field::start(&setup);
    let keeper = hostile("keeper");
    let floods: Vec<Vec<u8>> = (0..20).map(store_flood).collect();
    let flood_types: Vec<CapsuleType> = floods.iter().map(|c| type_of(c)).collect();
    let (r, kept) = field.run(&setup, move |a| {
        let mut app = AppClient::connect(&a.t_sock, 5).expect("keeper's app");
        let mut s_app = AppClient::connect(&a.s_sock, 11).expect("S's app");
        let put = Inject::with_code(keeper.clone(), addr(T), 8, vec![], b"Pprecious".to_vec());
        s_app.inject(&put).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        std::thread::scope(|s| {
            s.spawn(|| a.serve(&floods, Duration::ZERO, far()));
            for ty in &flood_types {
                a.send(&capsule(*ty, T, 8, b""));
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(500));
            let get = Inject {
                code: None,
                ..Inject::with_code(keeper.clone(), addr(T), 8, vec![], b"G".to_vec())
            };
            s_app.inject(&get).unwrap();
            let got = app.recv_timeout(Duration::from_secs(5)).ok().flatten();
            got.map(|d| d.payload)
        })
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    r.assert_rss_growth_below(96);
    assert_eq!(
        kept.as_deref(),
        Some(&b"Vprecious"[..]),
        "the keeper's state survived"
    );
    let floods_ran: u64 = (0..20u32)
        .map(|n| r.protocol(&type_of(&store_flood(n)), "runs"))
        .sum();
    assert!(floods_ran >= 16, "the floods ran: {floods_ran}");
}

#[test]
fn an_app_that_accepts_only_its_protocol_gets_nothing_else() {
    let setup = Setup {
        legit_accepts_only_forward: true,
        ..Setup::default()
    };
    let code = hostile("deliverer");
    let ty = type_of(&code);
    let (r, _) = Field::start(&setup).run(&setup, move |a| flood(a, &code, ty, 200, 8));
    r.assert_legit_flow_intact();
    r.assert_nothing_else_delivered();
    r.assert_stopped_promptly();
    assert!(r.protocol(&ty, "app_refusals") >= 100, "{}", r.stats);
}

#[test]
fn capsule_log_floods_are_cut_at_the_log_rate() {
    // Every run logs 16 lines at error level (then runs out of fuel paying for more): the
    // node writes 100 lines per second and counts the rest.
    let setup = Setup {
        attack_for: Duration::from_secs(2),
        t_extra: NO_QUARANTINE.into(),
        ..Setup::default()
    };
    let code = hostile("log_flood");
    let ty = type_of(&code);
    let (r, _) = Field::start(&setup).run(&setup, move |a| flood(a, &code, ty, 100, 8));
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    let suppressed = r.counter("capsule_logs_suppressed");
    assert!(
        suppressed >= 1000,
        "{suppressed} lines suppressed: {}",
        r.stats
    );
}
