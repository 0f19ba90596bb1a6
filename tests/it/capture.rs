//! `ants capture` on a node of a real run, decoded by tshark with the shipped dissector
//! (`tools/wireshark/ants.lua`): every field checked against what was sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};

use crate::netns::tool_or_root;
use crate::support::{addr, capsule_bytes, root};
use crate::topology::Topology;

/// tshark's fields for every ANTS message in `pcapng` (one row per message, tab-separated),
/// run as `nobody` when we are root: Wireshark runs no Lua script given with -X as root.
fn tshark_fields(pcapng: &[u8], fields: &[&str]) -> Vec<Vec<String>> {
    let script = std::env::temp_dir().join(format!("ants-dissector-{}.lua", std::process::id()));
    std::fs::copy(root().join("tools/wireshark/ants.lua"), &script).unwrap();
    let mut args = vec![
        "-r".to_string(),
        "-".into(),
        "-X".into(),
        format!("lua_script:{}", script.display()),
        "-Y".into(),
        "ants".into(),
        "-T".into(),
        "fields".into(),
    ];
    for f in fields {
        args.push("-e".into());
        args.push((*f).into());
    }
    // SAFETY: `geteuid` has no arguments and cannot fail.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "tshark"]);
        c
    } else {
        Command::new("tshark")
    };
    let mut child = cmd
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    child.stdin.take().unwrap().write_all(pcapng).unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tshark: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn a_capture_of_a_real_run_decodes_with_the_shipped_dissector() {
    if !tool_or_root("tshark", "tshark", "decoding a capture with tshark") {
        return;
    }
    let line = Topology::line(3, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n2.pcapng");
    let mut capture = Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["capture", "-s"])
        .arg(line.sock(2))
        .arg("-w")
        .arg(&file)
        .args(["--duration", "6"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("ants capture");
    let mut stderr = BufReader::new(capture.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("capturing the node on"), "{first}");
    let started = Instant::now();

    // Six capsules from n1 to n3 through n2, the first with its code: n2 loads it from n1
    // and serves it to n3. The last is traced: n2 and n3 report to n1 (n3 through n2).
    let mut rx = AppClient::connect(line.sock(3), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let code = capsule_bytes("forward");
    let first_inject = Inject::with_code(code, addr("198.18.0.3"), 64, vec![], b"0".to_vec());
    let ty = tx.inject(&first_inject).unwrap();
    for k in 0..6u8 {
        if k > 0 {
            let inj = Inject {
                code: None,
                payload: vec![b'0' + k],
                trace: (k == 5).then_some(0xabc),
                ..first_inject.clone()
            };
            tx.inject(&inj).unwrap();
        }
        let d = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
        assert_eq!(d.payload, [b'0' + k]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "traffic took too long"
    );
    let status = capture.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("captured "), "{rest}");

    let n2_port = line.local_addr(2).port().to_string();
    let rows = tshark_fields(
        &std::fs::read(&file).unwrap(),
        &[
            "udp.dstport",
            "ants.kind_name",
            "ants.type",
            "ants.src",
            "ants.dst",
            "ants.prev",
            "ants.resource",
            "ants.chunk.offset",
            "ants.chunk.total",
            "ants.trace.id",
            "ants.report.origin",
            "ants.report.reporter",
        ],
    );
    let mut kinds: BTreeMap<(String, bool), usize> = BTreeMap::new();
    let ty = ty.to_string();
    for r in &rows {
        let inbound = r[0] == n2_port;
        *kinds.entry((r[1].clone(), inbound)).or_default() += 1;
        assert_eq!(r[2], ty, "{r:?}");
        match r[1].as_str() {
            "capsule" => {
                assert_eq!((r[3].as_str(), r[4].as_str()), ("198.18.0.1", "198.18.0.3"));
                // In from n1 (which spent one resource), out from n2 (one more).
                let (prev, rl) = if inbound {
                    ("198.18.0.1", "63")
                } else {
                    ("198.18.0.2", "62")
                };
                assert_eq!((r[5].as_str(), r[6].as_str()), (prev, rl), "{r:?}");
            }
            "code-chunk" => {
                assert_eq!(r[7], "0", "one chunk: the module is under 1 KiB");
                assert_eq!(r[8], capsule_bytes("forward").len().to_string());
            }
            "code-request" => {}
            "trace-report" => {
                assert_eq!(r[9], "0x0000000000000abc", "{r:?}");
                assert_eq!(r[10], "198.18.0.1", "reports go to the origin: {r:?}");
                // In: n3's; out: n2's own, or n3's passed on.
                let from: &[&str] = if inbound {
                    &["198.18.0.3"]
                } else {
                    &["198.18.0.2", "198.18.0.3"]
                };
                assert!(from.contains(&r[11].as_str()), "{r:?}");
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    let count =
        |kind: &str, inbound: bool| kinds.get(&(kind.into(), inbound)).copied().unwrap_or(0);
    assert_eq!(count("capsule", true), 6, "{kinds:?}");
    assert_eq!(count("capsule", false), 6, "{kinds:?}");
    let traced = rows
        .iter()
        .filter(|r| r[1] == "capsule" && !r[9].is_empty());
    assert_eq!(traced.count(), 2, "the traced capsule in and out");
    // In: n3's report; out: n2's own and n3's, forwarded.
    assert_eq!(count("trace-report", true), 1, "{kinds:?}");
    assert_eq!(count("trace-report", false), 2, "{kinds:?}");
    for inbound in [true, false] {
        // A request each way (n2 to n1, n3 to n2), a chunk each way; retries may add more.
        assert!(count("code-request", inbound) >= 1, "{kinds:?}");
        assert!(count("code-chunk", inbound) >= 1, "{kinds:?}");
    }
}
