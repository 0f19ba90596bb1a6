use std::collections::BTreeMap;

use super::*;
use crate::tests::{NativeForward, module};

const LINE: &str = r#"
name = "line with loss and a crash"
seed = 7
duration = "2s"

[topology]
kind = "line"
nodes = 5

[links]
latency = "1ms"
loss = 0.1

[[link]]
between = [3, 4]
latency = "5ms"

[nodes]
compile_delay = "2ms"

[[listen]]
node = 4
app = 0

[[send]]
node = 0
app = 7
capsule = "fwd"
dst = 4
payload = "u32:seq"
at = "10ms"
count = 100
every = "10ms"

[[fault]]
at = "500ms"
crash = 2

[[fault]]
at = "700ms"
restart = 2
"#;

fn caps() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([("fwd".to_string(), module(3000, 1))])
}

#[test]
fn a_scenario_builds_and_runs() {
    let s = Scenario::parse(LINE, "line.toml").unwrap();
    assert_eq!(
        s.capsule_names().into_iter().collect::<Vec<_>>(),
        vec!["fwd"]
    );
    assert_eq!(s.duration(), Duration::from_secs(2));
    let (mut sim, names) = s
        .build(s.seed.unwrap(), NativeForward::default(), &caps())
        .unwrap();
    assert_eq!(names.values().collect::<Vec<_>>(), vec!["fwd"]);
    sim.run_until(s.duration());
    let rx = &sim.apps()[&(4, 0)];
    let tx = &sim.apps()[&(0, 7)];
    assert_eq!(tx.injected + tx.inject_errors, 100);
    // Loss on every hop and a crash: some, not all, arrive; none twice.
    assert!(rx.delivered > 20 && rx.delivered < 100, "{rx:?}");
    assert_eq!(rx.duplicates, 0);
    assert!(sim.stats().drops(crate::LinkDrop::NodeDown) > 0);
    let report = crate::Report::new(&sim, s.name.clone(), &names, true);
    let text = report.render();
    assert!(text.contains("fwd"), "{text}");
    assert!(text.contains("seed       7"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["per_node"].as_array().unwrap().len(), 5);
    assert_eq!(json["apps"][0]["node"], 0);
}

#[test]
fn a_watch_stops_the_run_at_its_first_violation() {
    let watched = format!(
        "{LINE}\n[[watch]]\nproperty = \"no-duplicate-delivery\"\n\n\
         [[watch]]\nproperty = \"max-held\"\nlimit = 0\n"
    );
    let s = Scenario::parse(&watched, "line.toml").unwrap();
    let (mut sim, _) = s
        .build(s.seed.unwrap(), NativeForward::default(), &caps())
        .unwrap();
    sim.run_until(s.duration());
    // The first capsule a node holds while it fetches the code breaks `max-held = 0`.
    let v = sim.violation().expect("violated").clone();
    assert_eq!(v.property, "max-held (limit 0)");
    assert!(v.detail.contains("1 capsules held"), "{v:?}");
    assert!(!v.recent.is_empty() && v.recent.len() <= crate::trace::TAIL_LINES);
    assert!(v.recent.iter().all(|l| l.starts_with("{\"t\":")), "{v:?}");
    assert_eq!(sim.now(), v.at, "stopped there");
    assert!(v.at < s.duration());
    // The same run from the same seed stops at the same place.
    let (mut again, _) = s
        .build(s.seed.unwrap(), NativeForward::default(), &caps())
        .unwrap();
    again.run_until(s.duration());
    assert_eq!(again.violation(), Some(&v));
    // A limit the run stays within, and no duplicates: it runs to the end.
    let fine = watched.replace("limit = 0", "limit = 1000");
    let s = Scenario::parse(&fine, "line.toml").unwrap();
    let (mut sim, _) = s
        .build(s.seed.unwrap(), NativeForward::default(), &caps())
        .unwrap();
    sim.run_until(s.duration());
    assert_eq!(sim.violation(), None);
    assert_eq!(sim.now(), s.duration());
}

#[test]
fn every_generator_and_selector_parses() {
    for topo in [
        "kind = \"ring\"\nnodes = 6",
        "kind = \"grid\"\nwidth = 3\nheight = 2",
        "kind = \"tree\"\nnodes = 6\nfanout = 3",
        "kind = \"random\"\nnodes = 6\ndegree = 3",
        "kind = \"explicit\"\nnodes = 3\nedges = [[0, 1], [1, 2]]",
    ] {
        let text = format!(
            "duration = \"1s\"\n[topology]\n{topo}\n[[listen]]\nnode = \"all\"\napp = 1\n\
             [[send]]\nnode = [0, 2]\ncapsule = \"fwd\"\ndst = \"random\"\n\
             [[send]]\nnode = \"random:2\"\ncapsule = \"fwd\"\ndst = \"198.18.0.1\"\n"
        );
        let s = Scenario::parse(&text, "t").unwrap();
        let (mut sim, _) = s.build(3, NativeForward::default(), &caps()).unwrap();
        sim.run_until(s.duration());
        assert!(sim.stats().capsule_hops > 0, "{topo}");
    }
}

#[test]
fn mistakes_are_reported_with_where_and_why() {
    let cases = [
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\ncolour = 1",
            "colour",
        ),
        (
            "duration = \"1\"\n[topology]\nkind = \"line\"\nnodes = 3",
            "no unit",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"mesh\"\nnodes = 3",
            "kind = \"mesh\"",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"grid\"\nwidth = 3",
            "needs `height`",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[send]]\nnode = 5\ncapsule = \"fwd\"",
            "[[send]] #1 (fwd): node 5 does not exist",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[send]]\nnode = 0\ncapsule = \"fwd\"\ncount = 5",
            "need `every`",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[fault]]\nat = \"1s\"\npartition = [0, 2]",
            "no link between 0 and 2",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[fault]]\nat = \"1s\"\ncrash = 1\nrestart = 1",
            "exactly one",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[links]\nloss = 1.5",
            "between 0 and 1",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[send]]\nnode = 0\ncapsule = \"other\"",
            "capsule `other` was not provided",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"no-loops\"",
            "[[watch]] #1 (no-loops): unknown property \"no-loops\" (known: \"no-duplicate-delivery\", \"max-held\", \"max-store-bytes\", \"store-path\")",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"max-held\"",
            "[[watch]] #1 (max-held): needs `limit`",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"max-store-bytes\"",
            "[[watch]] #1 (max-store-bytes): needs `limit`",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"max-held\"\nlimit = 1\nto = 0",
            "[[watch]] #1 (max-held): capsule, key, from, to and at are for \"store-path\"",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"fwd\"\nkey = \"str:k\"\nto = 0\nat = \"1s\"",
            "[[watch]] #1 (store-path): needs `from`",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"fwd\"\nkey = \"str:k\"\nfrom = [1, 2]\nto = 3\nat = \"1s\"",
            "[[watch]] #1 (store-path): to = 3: no such node",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"fwd\"\nkey = \"bogus:1\"\nfrom = 1\nto = 0\nat = \"1s\"",
            "[[watch]] #1 (store-path) key:",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"gone\"\nkey = \"str:k\"\nfrom = 1\nto = 0\nat = \"1s\"",
            "capsule `gone` was not provided",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"fwd\"\nkey = \"str:k\"\nfrom = 1\nto = 0\nat = \"soon\"",
            "[[watch]] #1 (store-path) at:",
        ),
        (
            "duration = \"1s\"\n[topology]\nkind = \"line\"\nnodes = 3\n[nodes]\ninstances = \"one\"",
            "[nodes] instances: \"one\": expected \"per-node\" or \"shared\"",
        ),
    ];
    for (text, want) in cases {
        let err = Scenario::parse(text, "bad.toml")
            .and_then(|s| s.build(1, NativeForward::default(), &caps()).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "`{want}` not in: {err}");
    }
}
