//! Record and replay: real nodes record their node cores' inputs (`[record]`), and `ants
//! replay` runs them again through fresh node cores and finds the same outputs — or says
//! where they differ, or why it cannot read a recording.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_node::record::{Input, RecordReader};

use crate::support::*;
use crate::topology::Topology;

/// `ants replay ARGS`: (exit code, stdout, stderr).
fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ants"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run ants replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A line of `n` nodes recording under `dir`, `count` capsules from node 1 to node `n`
/// (the first with its code), every delivery received; then every node stopped.
fn record_a_run(n: usize, dir: &Path, count: u32, node_keys: &str) -> Vec<u32> {
    record_a_run_with(n, dir, count, node_keys, "", |_| {}, |_| {})
}

/// [`record_a_run`] with `more` in every node's config, `halfway` called with the line
/// when half the capsules are sent, and `before_stop` before the nodes are stopped.
fn record_a_run_with(
    n: usize,
    dir: &Path,
    count: u32,
    node_keys: &str,
    more: &str,
    halfway: impl FnOnce(&Topology),
    before_stop: impl FnOnce(&Topology),
) -> Vec<u32> {
    let extra = format!("\n[record]\ndir = \"{}\"\n{more}", dir.display());
    let edges: Vec<(usize, usize)> = (1..n).map(|i| (i, i + 1)).collect();
    let mut line = Topology::start_with(n, &edges, &extra, node_keys);
    let mut rx = AppClient::connect(line.sock(n), 0).expect("app on the last node");
    let mut tx = AppClient::connect(line.sock(1), 7).expect("app on the first node");
    let dst = format!("198.18.0.{n}");
    let first = Inject::with_code(capsule_bytes("forward"), addr(&dst), 64, vec![], vec![0; 4]);
    let mut got = Vec::new();
    let mut halfway = Some(halfway);
    for k in 0..count {
        if k == count / 2
            && let Some(f) = halfway.take()
        {
            f(&line);
        }
        let inj = Inject {
            code: (k == 0).then(|| capsule_bytes("forward")),
            payload: k.to_be_bytes().to_vec(),
            ..first.clone()
        };
        tx.inject(&inj).expect("inject");
        if k == 0 {
            // The first one demand-loads the code along the line.
            let d = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("app")
                .expect("first");
            got.push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
        }
    }
    let end = Instant::now() + Duration::from_secs(20);
    while got.len() < count as usize && Instant::now() < end {
        if let Ok(Some(d)) = rx.recv_timeout(Duration::from_millis(500)) {
            got.push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
        }
    }
    drop((rx, tx));
    before_stop(&line);
    for i in 1..=n {
        line.kill(i);
    }
    got
}

/// A reload in the middle of a recording: the middle node's `[limits] max_resource` drops
/// below what the capsules carry, so from then on it clamps them (counted). The replay
/// applies the recorded file at the same input and ends identical — counters included.
#[test]
fn a_reload_is_replayed_with_the_config_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let mut reloaded = String::new();
    let got = record_a_run_with(
        3,
        &rec,
        200,
        "workers = 1\n",
        "",
        |line| {
            let file = line.config_file(2);
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, format!("{text}\n[limits]\nmax_resource = 10\n")).unwrap();
            reloaded = line.reload(2).expect("reload");
        },
        |_| {},
    );
    assert_eq!(got.len(), 200, "every capsule still arrives: {reloaded}");
    assert!(reloaded.contains("applied"), "{reloaded}");
    let (code, out, err) = replay(&[rec.join("198.18.0.2").to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let w = &v["workers"][0];
    assert_eq!(w["outcome"], "identical", "{w}");
    assert!(w["inputs"].as_u64().unwrap() > 200, "{w}");
    let inputs = |node: &str| {
        let file = rec.join(node).join("worker-0.rec");
        let (mut reader, _) = RecordReader::open(&file).unwrap();
        std::iter::from_fn(move || reader.next_record().unwrap())
            .map(|(_, input)| input)
            .collect::<Vec<_>>()
    };
    let reloads: Vec<String> = inputs("198.18.0.2")
        .into_iter()
        .filter_map(|i| match i {
            Input::Reconfigured { config } => Some(config),
            _ => None,
        })
        .collect();
    assert_eq!(reloads.len(), 1);
    assert!(reloads[0].contains("max_resource = 10"), "{}", reloads[0]);
    // The reload mattered — so a replay that ignored it would have diverged: what the third
    // node received from the second carried the clamped resource from then on.
    let clamped = inputs("198.18.0.3")
        .into_iter()
        .filter_map(|i| match i {
            Input::Datagram { data, .. } => ants_wire::CapsuleRepr::parse(&data)
                .ok()
                .map(|c| c.resource),
            _ => None,
        })
        .filter(|r| *r < 10)
        .count();
    assert!(clamped >= 90, "{clamped} capsules arrived clamped");
}

/// `[[watch]]` on live nodes: the second node of a line holds the first capsule while its
/// code loads, so `max-held = 0` is violated there, once — at the input that `ants replay
/// --watch` of its recording names too. No app received a payload twice.
#[test]
fn a_live_watch_reports_what_the_replay_finds_at_the_same_input() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let watches = "\n[[watch]]\nproperty = \"max-held\"\nlimit = 0\n\n\
                   [[watch]]\nproperty = \"no-duplicate-delivery\"\n";
    let mut status = (serde_json::Value::Null, String::new(), String::new());
    let got = record_a_run_with(
        3,
        &rec,
        50,
        "workers = 1\n",
        watches,
        |_| {},
        |line| {
            let sock = line.sock(2);
            let (ok, json, err) = run_ants(&["status", "-s", sock.to_str().unwrap(), "--json"]);
            assert!(ok, "{err}");
            let (_, text, _) = run_ants(&["status", "-s", sock.to_str().unwrap()]);
            let (_, last, _) =
                run_ants(&["status", "-s", line.sock(3).to_str().unwrap(), "--json"]);
            status = (serde_json::from_str(&json).unwrap(), text, last);
        },
    );
    assert_eq!(got.len(), 50);
    let (v, text, last) = status;
    let w = &v["watches"];
    assert_eq!(w[0]["property"], "max-held (limit 0)", "{v}");
    assert_eq!(w[0]["violations"], 1, "{w}");
    let first = &w[0]["first"];
    assert_eq!(
        first["detail"], "1 capsules held waiting for their code",
        "{w}"
    );
    assert_eq!(first["worker"], 0, "{w}");
    let input = first["input"]
        .as_u64()
        .expect("the node records, so the input is named");
    assert_eq!(w[1]["property"], "no-duplicate-delivery", "{w}");
    assert_eq!(w[1]["violations"], 0, "{w}");
    assert!(
        text.contains("watch     max-held (limit 0): VIOLATED 1 time(s); first at")
            && text.contains(&format!("recorded input {input}: 1 capsules held"))
            && text.contains("watch     no-duplicate-delivery: holds"),
        "{text}"
    );
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["watches"][1]["violations"], 0, "{last}");

    let n2 = rec.join("198.18.0.2");
    let (code, out, err) = replay(&[n2.to_str().unwrap(), "--watch", "max-held=0"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "watch violated: max-held (limit 0) at input {input} "
        )),
        "live: input {input}; replay: {out}"
    );
}

#[test]
fn a_recorded_five_node_line_replays_identically_and_a_changed_input_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let got = record_a_run(5, &rec, 300, "workers = 1\n");
    assert_eq!(got.len(), 300, "every capsule delivered live");

    let (code, out, err) = replay(&[rec.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let workers = v["workers"].as_array().expect("array");
    assert_eq!(workers.len(), 5, "one recording per node: {out}");
    for w in workers {
        assert_eq!(w["outcome"], "identical", "{w}");
        assert!(w["inputs"].as_u64().unwrap() > 300, "{w}");
        assert!(w["checkpoints"].as_u64().unwrap() >= 1, "{w}");
    }
    // The last node delivered them all again, the others forwarded them.
    let last = workers
        .iter()
        .find(|w| w["address"] == "198.18.0.5")
        .unwrap();
    assert_eq!(last["delivered"], 300, "{last}");
    let first = workers
        .iter()
        .find(|w| w["address"] == "198.18.0.1")
        .unwrap();
    assert!(first["sent"].as_u64().unwrap() >= 300, "{first}");
    // Joined into one network: every datagram each node sent along the line was received
    // by the next, and nothing arrived that was not sent.
    let links = v["links"].as_array().expect("links");
    for (a, b) in [(1, 2), (2, 3), (3, 4), (4, 5)] {
        let l = links
            .iter()
            .find(|l| l["from"] == format!("198.18.0.{a}") && l["to"] == format!("198.18.0.{b}"))
            .unwrap_or_else(|| panic!("no link {a} -> {b}: {out}"));
        assert!(l["sent"].as_u64().unwrap() >= 300, "{l}");
        assert_eq!(l["received"], l["sent"], "{l}");
        assert_eq!(l["unexpected"], 0, "{l}");
    }
    // The human form says so too.
    let (code, out, _) = replay(&[rec.join("198.18.0.3").to_str().unwrap()]);
    eprintln!("{out}");
    assert_eq!(code, 0);
    assert!(
        out.contains("198.18.0.3 worker 0/1:") && out.contains("identical"),
        "{out}"
    );

    // Watches, as a scenario has them: the last node received no payload twice; the second
    // held the first capsule while its code loaded, so "never more than 0 held" fails there.
    let n5 = rec.join("198.18.0.5");
    let (code, out, err) = replay(&[n5.to_str().unwrap(), "--watch", "no-duplicate-delivery"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let n2 = rec.join("198.18.0.2");
    let (code, out, err) = replay(&[n2.to_str().unwrap(), "--watch", "max-held=0"]);
    eprintln!("{out}");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("watch violated: max-held (limit 0) at input")
            && out.contains("1 capsules held waiting for their code"),
        "{out}"
    );
    let (code, _, err) = replay(&[n2.to_str().unwrap(), "--watch", "max-held=lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the limit must be a whole number"), "{err}");

    // One byte of one received capsule changed: the replay's outputs differ, and it says
    // where.
    let file = rec.join("198.18.0.3").join("worker-0.rec");
    let original = std::fs::read(&file).unwrap();
    let at = payload_byte_of_a_late_datagram(&file);
    let mut changed = unpack(&original);
    changed[at] ^= 0x5a;
    std::fs::write(&file, pack(&changed)).unwrap();
    let (code, out, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    eprintln!("{out}");
    assert!(out.contains("DIVERGED at input"), "{out}");

    // Cut short, as the file of a node that died: replayed as far as it goes, and said so.
    std::fs::write(&file, &original[..original.len() * 2 / 3]).unwrap();
    let (code, out, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("identical as far as recorded") && out.contains("ends inside a record"),
        "{out}"
    );
    // Not a recording: refused, naming the file and the place, before anything runs.
    std::fs::write(&file, b"garbage, not a recording").unwrap();
    let (code, out, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("worker-0.rec")
            && err.contains("at byte 0")
            && err.contains("not an ants recording"),
        "{err}"
    );

    // A module the recording needs, gone.
    std::fs::write(&file, &original).unwrap();
    let modules = rec.join("198.18.0.3").join("modules");
    for m in std::fs::read_dir(&modules).unwrap() {
        std::fs::remove_file(m.unwrap().path()).unwrap();
    }
    let (code, _, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the recording needs module"), "{err}");

    // Nothing there.
    let (code, _, err) = replay(&[dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no recordings"), "{err}");
}

#[test]
fn two_workers_record_and_replay_each_their_share() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let got = record_a_run(3, &rec, 100, "workers = 2\n");
    assert_eq!(got.len(), 100);
    let (code, text, _) = replay(&[rec.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("198.18.0.1 -> 198.18.0.2: "), "{text}");
    let (code, out, err) = replay(&[rec.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 6, "two recordings per node: {out}");
    assert!(workers.iter().all(|w| w["outcome"] == "identical"), "{out}");
    let delivered: u64 = workers
        .iter()
        .filter(|w| w["address"] == "198.18.0.3")
        .map(|w| w["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!(delivered, 100, "{out}");
}

/// The uncompressed stream of a recording file's bytes.
fn unpack(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("decompress");
    out
}

/// `bytes` as a recording file.
fn pack(bytes: &[u8]) -> Vec<u8> {
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(bytes).expect("compress");
    enc.finish().expect("compress")
}

/// The offset in the uncompressed stream of a payload byte of a datagram in the second half
/// of `file`.
fn payload_byte_of_a_late_datagram(file: &Path) -> usize {
    let (mut r, _) = RecordReader::open(file).unwrap();
    let mut found = Vec::new();
    loop {
        let at = r.offset();
        match r.next_record().unwrap() {
            Some((_, Input::Datagram { from, data })) if data.len() > 90 => {
                let addr_len = if from.is_ipv4() { 7 } else { 19 };
                // kind, time, source, length, then the datagram: a byte near its end (the
                // capsule's payload).
                found.push(at as usize + 1 + 8 + addr_len + 4 + data.len() - 2);
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(found.len() > 10, "datagrams recorded: {}", found.len());
    found[found.len() / 2]
}
