use super::*;

/// The example shipped in `examples/` and quoted in `docs/config.md`.
const EXAMPLE: &str = include_str!("../../../examples/config/node.example.toml");
const DOCS: &str = include_str!("../../../docs/config.md");

/// Lines 1-3: the smallest valid config.
const BASE: &str = "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:7001\"\n";

/// BASE plus one neighbour on lines 5-7.
fn with_neighbour(rest: &str) -> String {
    format!(
        "{BASE}\n[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:7002\"\n{rest}"
    )
}

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, "node.toml")
}

/// Parse `text`, expect an error on `line` whose message contains every one of `needles`.
#[track_caller]
fn assert_error(text: &str, line: usize, needles: &[&str]) -> ConfigError {
    let e = parse(text).expect_err("config should be rejected");
    let shown = e.to_string();
    assert_eq!(e.line(), Some(line), "{shown}");
    assert!(
        shown.starts_with(&format!("node.toml line {line}: ")),
        "{shown}"
    );
    for n in needles {
        assert!(shown.contains(n), "`{shown}` lacks `{n}`");
    }
    e
}

#[test]
fn the_documented_example_is_valid_and_quoted_verbatim() {
    assert!(
        DOCS.contains(EXAMPLE),
        "docs/config.md must quote examples/config/node.example.toml"
    );
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.node.address, "198.18.0.1".parse().unwrap());
    assert_eq!(c.node.listen, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(
        c.node.app_socket.as_deref(),
        Some(Path::new("/tmp/ants/n1.sock"))
    );
    assert_eq!(
        c.node.code_cache_dir.as_deref(),
        Some(Path::new("/tmp/ants/n1"))
    );
    assert_eq!(c.node.seed, 1);
    assert_eq!(c.neighbours.len(), 2);
    assert_eq!(c.neighbours[1].endpoint, "127.0.0.1:7003".parse().unwrap());
    assert_eq!(c.routes[0].dst, "198.18.0.0/24".parse().unwrap());
    assert_eq!(c.routes[1].dst, Prefix::host("198.18.1.7".parse().unwrap()));
    assert_eq!(c.routes[1].via, "198.18.0.3".parse().unwrap());
    assert_eq!(
        c.limits,
        Limits::default(),
        "the example lists the defaults"
    );
    assert_eq!(c.code.policy, CodePolicy::Any);
    assert_eq!(
        c.fault,
        Fault {
            code_loss: 0.0,
            seed: 7
        }
    );
}

#[test]
fn defaults_fill_everything_optional() {
    let c = parse(BASE).unwrap();
    assert!(c.neighbours.is_empty() && c.routes.is_empty());
    assert_eq!(c.node.app_socket, None);
    assert_eq!(c.node.code_cache_dir, None);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.fuel, 1_000_000);
    assert_eq!(c.limits.serve_bytes_per_sec, 1_048_576);
    assert_eq!(c.code.policy, CodePolicy::Any);
    assert_eq!(c.fault.code_loss, 0.0);
    // The derived seed is stable, differs between addresses, and seeds the fault injector.
    assert_eq!(c.node.seed, parse(BASE).unwrap().node.seed);
    let other = parse(&BASE.replace("198.18.0.1", "198.18.0.9")).unwrap();
    assert_ne!(c.node.seed, other.node.seed);
    assert_eq!(c.fault.seed, c.node.seed);
}

#[test]
fn ipv6_addresses_and_dual_stack_listen() {
    let text = "[node]\naddress = \"2001:db8::1\"\nlisten = \"[::]:7001\"\n\
                [[neighbour]]\naddress = \"2001:db8::2\"\nendpoint = \"[::1]:7002\"\n\
                [[neighbour]]\naddress = \"198.18.0.3\"\nendpoint = \"127.0.0.1:7003\"\n\
                [[route]]\ndst = \"2001:db8:1::/48\"\nvia = \"2001:db8::2\"\n";
    let c = parse(text).unwrap();
    assert_eq!(c.node.address.to_string(), "2001:db8::1");
    assert_eq!(c.routes[0].dst.to_string(), "2001:db8:1::/48");
}

#[test]
fn listen_without_port() {
    let text = BASE.replace("127.0.0.1:7001", "127.0.0.1");
    let e = assert_error(
        &text,
        3,
        &["[node] listen = \"127.0.0.1\": expected host:port"],
    );
    assert_eq!(e.key(), Some("node.listen"));
}

#[test]
fn node_address_not_an_address() {
    let text = BASE.replace("198.18.0.1", "198.18.0.1/24");
    assert_error(
        &text,
        2,
        &[
            "[node] address = \"198.18.0.1/24\"",
            "expected an IPv4 or IPv6 address",
        ],
    );
    let text = BASE.replace("198.18.0.1", "0.0.0.0");
    assert_error(&text, 2, &["[node] address", "unspecified"]);
}

#[test]
fn route_via_unknown_neighbour() {
    let text = with_neighbour("\n[[route]]\ndst = \"198.18.0.0/24\"\nvia = \"198.18.0.9\"\n");
    let e = assert_error(&text, 11, &[]);
    assert_eq!(
        e.to_string(),
        "node.toml line 11: [[route]] via = \"198.18.0.9\": not the address of any [[neighbour]]"
    );
    assert_eq!(e.key(), Some("route.via"));
}

#[test]
fn route_bad_and_duplicate_prefixes() {
    let text = with_neighbour("[[route]]\ndst = \"198.18.0.0/33\"\nvia = \"198.18.0.2\"\n");
    assert_error(
        &text,
        9,
        &["[[route]] dst = \"198.18.0.0/33\"", "out of range"],
    );
    let text = with_neighbour(
        "[[route]]\ndst = \"198.18.0.0/24\"\nvia = \"198.18.0.2\"\n\
         [[route]]\ndst = \"198.18.0.7/24\"\nvia = \"198.18.0.2\"\n",
    );
    assert_error(
        &text,
        12,
        &["[[route]] dst", "line 9 already covers 198.18.0.0/24"],
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let text = BASE.replace("address", "adress");
    assert_error(&text, 2, &["[node]", "unknown field `adress`"]);
    let text = format!("{BASE}\n[limits]\nfuel = 5\nmax_fuel = 6\n");
    assert_error(&text, 7, &["[limits]", "max_fuel"]);
    let text = format!("{BASE}\n[limit]\nfuel = 5\n");
    assert_error(&text, 5, &["limit"]);
    let text = with_neighbour("via = \"x\"\n");
    assert_error(&text, 8, &["[[neighbour]]", "unknown field `via`"]);
}

#[test]
fn wrong_types_and_syntax_errors_name_the_line() {
    let text = BASE.replace("\"127.0.0.1:7001\"", "7001");
    let e = assert_error(&text, 3, &["[node] listen: invalid type", "string"]);
    assert_eq!(e.key(), Some("node.listen"));
    let text = format!("{BASE}seed = -1\n");
    assert_error(&text, 4, &["[node] seed: "]);
    let text = format!("{BASE}\n[limits\n");
    assert_error(&text, 5, &[]);
}

#[test]
fn missing_required_keys() {
    let e = parse("[limits]\nfuel = 5\n").unwrap_err();
    assert_eq!(e.to_string(), "node.toml: missing field `node`");
    assert_eq!(e.line(), None);
    assert_error(
        "\n[node]\naddress = \"198.18.0.1\"\n",
        2,
        &["[node] missing field `listen`"],
    );
}

#[test]
fn duplicate_and_self_neighbours() {
    let dup_addr = with_neighbour(
        "\n[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:7003\"\n",
    );
    let e = assert_error(
        &dup_addr,
        10,
        &[
            "[[neighbour]] address = \"198.18.0.2\"",
            "already used by the [[neighbour]] on line 6",
        ],
    );
    assert_eq!(e.key(), Some("neighbour.address"));
    let dup_endpoint = with_neighbour(
        "\n[[neighbour]]\naddress = \"198.18.0.3\"\nendpoint = \"127.0.0.1:7002\"\n",
    );
    assert_error(
        &dup_endpoint,
        11,
        &["[[neighbour]] endpoint = \"127.0.0.1:7002\"", "line 7"],
    );
    let own =
        format!("{BASE}[[neighbour]]\naddress = \"198.18.0.1\"\nendpoint = \"127.0.0.1:7002\"\n");
    assert_error(
        &own,
        5,
        &["[[neighbour]] address = \"198.18.0.1\"", "this node's own"],
    );
    let own_endpoint =
        format!("{BASE}[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:7001\"\n");
    assert_error(
        &own_endpoint,
        6,
        &["[[neighbour]] endpoint", "own [node] listen"],
    );
    let port0 =
        format!("{BASE}[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"127.0.0.1:0\"\n");
    assert_error(&port0, 6, &["[[neighbour]] endpoint", "non-zero port"]);
}

#[test]
fn endpoint_family_must_be_reachable_from_listen() {
    let text =
        format!("{BASE}[[neighbour]]\naddress = \"198.18.0.2\"\nendpoint = \"[::1]:7002\"\n");
    assert_error(
        &text,
        6,
        &[
            "[[neighbour]] endpoint = \"[::1]:7002\"",
            "listen on [::]:7001",
        ],
    );
}

#[test]
fn code_loss_outside_zero_to_one() {
    for bad in ["1.5", "-0.1", "nan"] {
        let text = format!("{BASE}\n[fault]\ncode_loss = {bad}\n");
        let e = assert_error(&text, 6, &["[fault] code_loss", "between 0 and 1"]);
        assert_eq!(e.key(), Some("fault.code_loss"));
    }
    let c = parse(&format!("{BASE}\n[fault]\ncode_loss = 1\nseed = 3\n")).unwrap();
    assert_eq!(
        c.fault,
        Fault {
            code_loss: 1.0,
            seed: 3
        }
    );
}

#[test]
fn code_policies() {
    let empty = format!("{BASE}\n[code]\npolicy = \"allow-list\"\nallow = []\n");
    assert_error(
        &empty,
        6,
        &["[code] policy = \"allow-list\"", "at least one type"],
    );
    let missing = format!("{BASE}\n[code]\npolicy = \"allow-list\"\n");
    assert_error(&missing, 6, &["[code] policy", "at least one type"]);
    let unknown = format!("{BASE}\n[code]\npolicy = \"deny\"\n");
    assert_error(
        &unknown,
        6,
        &["[code] policy = \"deny\"", "\"any\" or \"allow-list\""],
    );
    let good = "ab".repeat(32);
    let bad_hex = format!(
        "{BASE}\n[code]\npolicy = \"allow-list\"\nallow = [\n  \"{good}\",\n  \"xyz\",\n]\n"
    );
    let e = assert_error(&bad_hex, 9, &["[code] allow = \"xyz\"", "64 hex digits"]);
    assert_eq!(e.key(), Some("code.allow"));
    let stray = format!("{BASE}\n[code]\nallow = [\"{good}\"]\n");
    assert_error(
        &stray,
        6,
        &["[code] allow", "only used with policy = \"allow-list\""],
    );

    let ok = format!(
        "{BASE}\n[code]\npolicy = \"allow-list\"\nallow = [\"{good}\", \"{}\", \"{good}\"]\n",
        "01".repeat(32)
    );
    let c = parse(&ok).unwrap();
    let t: CapsuleType = good.parse().unwrap();
    let CodePolicy::AllowList(list) = &c.code.policy else {
        panic!("allow-list expected")
    };
    assert_eq!(list.len(), 2, "duplicates removed");
    assert!(c.code.policy.allows(&t));
    assert!(!c.code.policy.allows(&CapsuleType([0x02; 32])));
    assert!(CodePolicy::Any.allows(&t));
}

#[test]
fn limits_are_range_checked() {
    let text = format!("{BASE}\n[limits]\nfuel = 0\n");
    let e = assert_error(&text, 6, &["[limits] fuel = 0: must be at least 1"]);
    assert_eq!(e.key(), Some("limits.fuel"));
    let text = format!("{BASE}\n[limits]\nmax_capsule_bytes = 70000\n");
    assert_error(
        &text,
        6,
        &["[limits] max_capsule_bytes = 70000", "at most 65415"],
    );
    let text = format!("{BASE}\n[limits]\nstore_bytes = 1000\n");
    assert_error(
        &text,
        6,
        &[
            "[limits] store_bytes = 1000",
            "store_namespace_bytes (1048576) must not exceed store_bytes (1000)",
        ],
    );
    let text = format!("{BASE}\n[limits]\npending_total = 10\npending_per_type = 20\n");
    assert_error(&text, 7, &["[limits] pending_per_type = 20"]);
    let text = format!("{BASE}\n[limits]\ncode_cache_bytes = 1000\n");
    assert_error(&text, 6, &["[limits] code_cache_bytes", "max_module_bytes"]);
    let c = parse(&format!(
        "{BASE}\n[limits]\nfuel = 5\nserve_bytes_per_sec = 0\n"
    ))
    .unwrap();
    assert_eq!((c.limits.fuel, c.limits.serve_bytes_per_sec), (5, 0));
    assert_eq!(c.limits.max_sends, Limits::default().max_sends);
}

#[test]
fn paths_must_be_usable() {
    let text = format!("{BASE}app_socket = \"\"\n");
    assert_error(&text, 4, &["[node] app_socket = \"\"", "must not be empty"]);
    let long = format!("/tmp/{}.sock", "a".repeat(120));
    let text = format!("{BASE}app_socket = \"{long}\"\n");
    assert_error(&text, 4, &["[node] app_socket", "at most 107"]);
}

#[test]
fn load_names_the_file_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n1.toml");
    std::fs::write(
        &path,
        format!("{BASE}app_socket = \"n1.sock\"\ncode_cache_dir = \"/abs/cache\"\n"),
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.node.app_socket, Some(dir.path().join("n1.sock")));
    assert_eq!(c.node.code_cache_dir, Some(PathBuf::from("/abs/cache")));

    std::fs::write(&path, BASE.replace("127.0.0.1:7001", "nowhere")).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{} line 3: [node] listen", path.display())),
        "{e}"
    );

    let missing = dir.path().join("absent.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("absent.toml"), "{e}");
}

#[test]
fn no_panic_on_odd_input() {
    for text in [
        "",
        "\u{feff}",
        "[node]\naddress = \"\u{1F600}\"\nlisten = \"é\"",
        "[[node]]",
        "node = 5",
        "[node]\n\"\u{0}\" = 1",
    ] {
        assert!(parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn workers_default_to_the_cpus_and_are_bounded() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert_eq!(parse(BASE).unwrap().node.workers, cpus.min(MAX_WORKERS));
    assert_eq!(
        parse(&format!("{BASE}workers = 3\n")).unwrap().node.workers,
        3
    );
    assert_error(
        &format!("{BASE}workers = 0\n"),
        4,
        &["[node] workers = 0", "between 1 and 64"],
    );
    assert_error(
        &format!("{BASE}workers = 65\n"),
        4,
        &["[node] workers = 65", "between 1 and 64"],
    );
}

#[test]
fn trace_sampling_and_report_rate_are_checked() {
    let base = BASE;
    let c = parse(base).unwrap();
    assert_eq!((c.trace.sample, c.trace.reports_per_sec), (0.0, 1000));
    let c = parse(&format!(
        "{base}[trace]\nsample = 0.25\nreports_per_sec = 10\n"
    ))
    .unwrap();
    assert_eq!((c.trace.sample, c.trace.reports_per_sec), (0.25, 10));
    assert_error(
        &format!("{base}[trace]\nsample = 1.5\n"),
        5,
        &["[trace]", "sample", "fraction from 0 to 1"],
    );
    assert_error(
        &format!("{base}[trace]\nreports_per_sec = 2000000\n"),
        5,
        &["reports_per_sec", "at most 1000000"],
    );
    assert_error(&format!("{base}[trace]\nrate = 1\n"), 5, &["rate"]);
}

#[test]
fn record_takes_a_directory_and_a_bounded_size() {
    assert_eq!(parse(BASE).unwrap().record, None);
    let c = parse(&format!("{BASE}\n[record]\ndir = \"/var/lib/ants/rec\"\n")).unwrap();
    assert_eq!(
        c.record,
        Some(RecordSection {
            dir: "/var/lib/ants/rec".into(),
            max_bytes: RecordSection::DEFAULT_MAX_BYTES,
        })
    );
    assert_error(
        &format!("{BASE}\n[record]\ndir = \"rec\"\nmax_bytes = 1000\n"),
        7,
        &["[record] max_bytes = 1000", "1 MiB"],
    );
    assert_error(
        &format!("{BASE}\n[record]\nmax_bytes = 1048576\n"),
        5,
        &["`dir`"],
    );
    assert_error(
        &format!("{BASE}\n[record]\ndir = \"\"\n"),
        6,
        &["must name a directory"],
    );
    let other = parse(&format!("{BASE}\n[record]\ndir = \"elsewhere\"\n")).unwrap();
    assert_eq!(c.restart_needed(&other), vec!["[record]".to_string()]);
}

#[test]
fn watches_are_the_scenarios_properties_and_reload_live() {
    assert!(parse(BASE).unwrap().watches.is_empty());
    let text = format!(
        "{BASE}\n[[watch]]\nproperty = \"max-held\"\nlimit = 8\n\n\
         [[watch]]\nproperty = \"no-duplicate-delivery\"\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.watches,
        vec![
            ants_sim::Watch::MaxHeld(8),
            ants_sim::Watch::NoDuplicateDelivery
        ]
    );
    assert_error(
        &format!("{BASE}\n[[watch]]\nproperty = \"max-held\"\n"),
        6,
        &["[[watch]] property = \"max-held\"", "needs `limit`"],
    );
    assert_error(
        &format!("{BASE}\n[[watch]]\nproperty = \"loops\"\nlimit = 1\n"),
        6,
        &["unknown property \"loops\"", "max-store-bytes"],
    );
    assert_error(
        &format!("{BASE}\n[[watch]]\nproperty = \"max-held\"\nlimit = -1\n"),
        7,
        &["limit"],
    );
    // A reload changes them in place.
    let none = parse(BASE).unwrap();
    assert!(none.restart_needed(&c).is_empty());
    assert_eq!(none.with_live_changes(&c).watches, c.watches);
}
