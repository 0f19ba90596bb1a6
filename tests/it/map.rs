//! `ants map` against real nodes on loopback: the SVG of a running line shows every node and
//! the traffic of its busy links; the served page, rendered by headless Chromium, shows
//! every node in its health's colour; `ants sim --map` draws a simulated run; bad input
//! gives clear errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ants_app::{AppClient, Inject};

use crate::netns::tool_or_root;
use crate::support::{addr, capsule_bytes, root, run_ants};
use crate::topology::Topology;

/// Node 1's app sends `forward` capsules to the last node of a line, about 200 a second,
/// and the last node's app takes them, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    fn start(line: &Topology, last: usize) -> Traffic {
        let mut rx = AppClient::connect(line.sock(last), 0).expect("receiver app");
        let mut tx = AppClient::connect(line.sock(1), 7).expect("sender app");
        let dst = format!("198.18.0.{last}");
        let first = Inject::with_code(
            capsule_bytes("forward"),
            addr(&dst),
            64,
            vec![],
            b"first".to_vec(),
        );
        tx.inject(&first).expect("inject");
        rx.recv_timeout(Duration::from_secs(30))
            .expect("app socket")
            .expect("the first capsule arrives after demand loading");
        let more = Inject {
            code: None,
            ..first
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sending = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if tx.inject(&more).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let taking = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if rx.recv_timeout(Duration::from_millis(100)).is_err() {
                        return;
                    }
                }
            })
        };
        Traffic {
            stop,
            threads: vec![sending, taking],
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The flows of an SVG: `(from, to, class, label)` per arrow.
fn flows(svg: &str) -> Vec<(String, String, String, String)> {
    let attr = |e: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        e.find(&key)
            .map(|at| {
                let v = &e[at + key.len()..];
                v[..v.find('"').unwrap_or(0)].to_owned()
            })
            .unwrap_or_default()
    };
    svg.split("<g class=\"flow ")
        .skip(1)
        .filter(|e| e.contains("data-from"))
        .map(|e| {
            let class = e[..e.find('"').unwrap_or(0)].to_owned();
            let label = e
                .split("class=\"rate\">")
                .nth(1)
                .map(|l| l[..l.find('<').unwrap_or(0)].to_owned())
                .unwrap_or_default();
            (attr(e, "data-from"), attr(e, "data-to"), class, label)
        })
        .collect()
}

/// `"123/s"` or `"1.2k/s"` as a number.
fn rate(label: &str) -> f64 {
    let v = label.trim_end_matches("/s");
    match v.strip_suffix('k') {
        Some(k) => k.parse::<f64>().map_or(-1.0, |k| k * 1e3),
        None => v.parse().unwrap_or(-1.0),
    }
}

#[test]
fn map_once_draws_every_node_and_the_traffic_of_a_running_line() {
    let line = Topology::line(4, "");
    let traffic = Traffic::start(&line, 4);
    let out = line.dir().join("map.svg");
    let dir = line.dir().to_str().unwrap();
    let (ok, _, err) = run_ants(&[
        "map",
        "--dir",
        dir,
        "--once",
        "--interval",
        "1",
        "--svg",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("4 nodes: 4 up"), "{err}");
    let svg = std::fs::read_to_string(&out).expect("the SVG is written");
    for i in 1..=4 {
        assert!(
            svg.contains(&format!("data-address=\"198.18.0.{i}\" data-health=\"up\"")),
            "node {i}: {svg}"
        );
    }
    let flows = flows(&svg);
    assert_eq!(flows.len(), 6, "3 links, 2 directions each: {flows:?}");
    for i in 1..4 {
        let (from, to) = (format!("198.18.0.{i}"), format!("198.18.0.{}", i + 1));
        let f = flows
            .iter()
            .find(|f| f.0 == from && f.1 == to)
            .unwrap_or_else(|| panic!("{from} → {to} in {flows:?}"));
        assert_eq!(f.2, "active", "{f:?}");
        assert!(
            rate(&f.3) >= 50.0,
            "about 200 capsules/s go {from} → {to}: {f:?}"
        );
    }

    // Sockets instead of a directory, one of them dead: drawn red, not an error; the SVG
    // goes to stdout.
    let socks: Vec<String> = (1..=4)
        .map(|i| line.sock(i).display().to_string())
        .collect();
    let mut args = vec!["map", "--once", "--interval", "0.5"];
    for s in &socks {
        args.extend(["-s", s.as_str()]);
    }
    args.extend(["-s", "/nonexistent/ants-map.sock"]);
    let (ok, svg, err) = run_ants(&args);
    drop(traffic);
    assert!(ok, "{err}");
    assert!(err.contains("5 nodes: 4 up, 1 unreachable"), "{err}");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains("data-address=\"/nonexistent/ants-map.sock\" data-health=\"unreachable\""),
        "{svg}"
    );
    assert_eq!(
        self::flows(&svg).len(),
        6,
        "links come from the nodes' own lists"
    );
}

#[test]
fn map_errors_name_what_is_wrong() {
    let (ok, _, err) = run_ants(&["map", "--once"]);
    assert!(!ok);
    assert!(err.contains("no nodes given"), "{err}");

    let (ok, _, err) = run_ants(&["map", "--dir", "/nonexistent/topology", "--once"]);
    assert!(!ok);
    assert!(
        err.contains("cannot read the topology directory /nonexistent/topology"),
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    let (ok, _, err) = run_ants(&["map", "--dir", d.path().to_str().unwrap(), "--once"]);
    assert!(!ok);
    assert!(err.contains("has no .toml node configs"), "{err}");

    std::fs::write(
        d.path().join("n1.toml"),
        "[node]\naddress = \"198.18.0.1\"\nlisten = 7\n",
    )
    .unwrap();
    let (ok, _, err) = run_ants(&["map", "--dir", d.path().to_str().unwrap(), "--once"]);
    assert!(!ok);
    assert!(err.contains("n1.toml line 3"), "the file and line: {err}");

    let (ok, _, err) = run_ants(&["map", "-s", "x.sock", "--listen", "0.0.0.0:0"]);
    assert!(!ok);
    assert!(
        err.contains("not a loopback address") && err.contains("--public"),
        "{err}"
    );

    let (ok, help, _) = run_ants(&["map", "--help"]);
    assert!(ok);
    assert!(help.contains("Example") && help.contains("ants map --dir examples/line5"));
}

#[test]
fn sim_map_draws_the_simulated_line_with_capsules_per_link() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sim.svg");
    let scenario = root().join("examples/sim/line-loss-crash.toml");
    let (ok, _, err) = run_ants(&[
        "sim",
        scenario.to_str().unwrap(),
        "--quiet",
        "--map",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let svg = std::fs::read_to_string(&out).expect("the map is written");
    for i in 1..=8 {
        assert!(
            svg.contains(&format!("data-address=\"198.18.0.{i}\"")),
            "{svg}"
        );
    }
    let flows = flows(&svg);
    assert_eq!(flows.len(), 14, "7 links, both directions");
    let first = flows
        .iter()
        .find(|f| f.0 == "198.18.0.1" && f.1 == "198.18.0.2")
        .expect("0 → 1");
    assert_eq!(first.2, "active");
    let n: f64 = first.3.parse().expect("a count");
    assert!(
        n > 300.0,
        "about 450 capsules were sent down the line: {first:?}"
    );
    assert!(svg.contains("capsules in the run"), "totals, not rates");
}

/// GET `path` from `at` (host:port); the body.
fn get(at: &str, path: &str) -> String {
    let mut c = std::net::TcpStream::connect(at).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {at}\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

/// Sizes of the 4-connected blobs of pixels within `tol` (per channel) of `rgb`.
fn blobs(pixels: &[u8], width: usize, height: usize, rgb: [u8; 3], tol: u8) -> Vec<usize> {
    let near = |i: usize| {
        (0..3).all(|c| pixels[i * 4 + c].abs_diff(rgb[c]) <= tol) && pixels[i * 4 + 3] > 200
    };
    let mut seen = vec![false; width * height];
    let mut sizes = Vec::new();
    for start in 0..width * height {
        if seen[start] || !near(start) {
            continue;
        }
        let mut size = 0;
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if !seen[j] && near(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        sizes.push(size);
    }
    sizes
}

fn hex_rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("colour");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Headless Chromium on `url`: `extra` flags (`--screenshot=…` or `--dump-dom`); stdout.
fn chromium(url: &str, extra: &[&str], cwd: &Path) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "chromium",
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .args(["--force-device-scale-factor=1", "--window-size=1100,700"])
    .arg("--no-first-run")
    .arg(format!("--user-data-dir={}", cwd.join("profile").display()));
    // SAFETY: `geteuid` has no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--no-sandbox");
    }
    let out = cmd
        .args(extra)
        .arg(url)
        .current_dir(cwd)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_served_map_shows_every_node_in_a_real_browser() {
    if !tool_or_root("chromium", "chromium", "the map in headless Chromium") {
        return;
    }
    let mut line = Topology::line(5, "");
    line.kill(5);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ants"))
        .args(["map", "--dir", line.dir().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ants map");
    let stdout = child.stdout.take().expect("stdout");
    // `ants map` serving on a free loopback port, killed on drop.
    let server = crate::support::Running::new(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the URL line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    let at = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let json: serde_json::Value = serde_json::from_str(&get(&at, "/map.json")).expect("JSON");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(5), "{json}");
    assert!(get(&at, "/map.svg").starts_with("<svg"));

    let work = tempfile::tempdir().unwrap();
    let dom = chromium(&url, &["--dump-dom"], work.path());
    for i in 1..=5 {
        assert!(
            dom.contains(&format!("data-address=\"198.18.0.{i}\"")),
            "node {i} in the rendered DOM: {dom}"
        );
    }
    let shot = work.path().join("map.png");
    chromium(
        &url,
        &[&format!("--screenshot={}", shot.display())],
        work.path(),
    );
    drop(server);

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("decode");
    let (w, h) = (info.width as usize, info.height as usize);
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf[..w * h * 4].to_vec(),
        png::ColorType::Rgb => buf[..w * h * 3]
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    // A node's circle (radius 22: ~1,500 pixels) is a blob of its health's colour; the
    // legend's swatches (radius 6) are far smaller.
    let nodes = |hex: &str| -> usize {
        blobs(&rgba, w, h, hex_rgb(hex), 24)
            .into_iter()
            .filter(|&n| n >= 600)
            .count()
    };
    let up = nodes(ants_node::map::svg::colour(ants_node::map::Health::Up));
    let degraded = nodes(ants_node::map::svg::colour(
        ants_node::map::Health::Degraded,
    ));
    let red = nodes(ants_node::map::svg::colour(
        ants_node::map::Health::Unreachable,
    ));
    assert_eq!(
        (up + degraded, red),
        (4, 1),
        "four live nodes and one dead one in the picture ({} in {})",
        w * h,
        shot.display()
    );
}
