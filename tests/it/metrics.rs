//! `[metrics]`: a real node serves its counters as Prometheus metrics on `GET /metrics`;
//! `promtool check metrics` (Debian's `prometheus` package, installed when missing) accepts
//! them; malformed requests get a clear status and cost nothing; a public address needs an
//! explicit setting.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use ants_app::{AppClient, Inject};
use ants_node::config::Config;
use ants_node::daemon;

use crate::netns::tool_or_root;
use crate::support::{addr, capsule_bytes};

/// A free loopback port (bound and released; the node binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Send `request` raw and return the whole response.
fn http(at: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(at).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `promtool check metrics` on `text`, installing Debian's `prometheus` when missing — as
/// root; otherwise the check is skipped with a message (a failure when
/// `ANTS_REQUIRE_ROOT_TESTS=1`, as in CI).
pub(crate) fn promtool_check(text: &str) {
    if !tool_or_root("promtool", "prometheus", "promtool check metrics") {
        return;
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_running_node_serves_metrics_that_promtool_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let sock = dir.path().join("n.sock");
    let text = format!(
        "[node]\naddress = \"198.18.0.60\"\nlisten = \"127.0.0.1:0\"\napp_socket = \"{}\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[watch]]\nproperty = \"max-held\"\nlimit = 0\n\n\
         [[watch]]\nproperty = \"no-duplicate-delivery\"\n",
        sock.display()
    );
    let path = dir.path().join("n.toml");
    std::fs::write(&path, text).unwrap();
    let node = daemon::spawn(Config::load(&path).unwrap()).expect("node");
    // One capsule to the node itself: it runs and is delivered.
    let mut app = AppClient::connect(&sock, 0).expect("app");
    let ty = app
        .inject(&Inject::with_code(
            capsule_bytes("forward"),
            addr("198.18.0.60"),
            8,
            vec![],
            b"hi".to_vec(),
        ))
        .expect("inject");
    app.recv_timeout(Duration::from_secs(20))
        .expect("app socket")
        .expect("delivered");
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    let resp = http(at, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let runs = format!("ants_capsules_total{{protocol=\"{ty}\",outcome=\"runs\"}} 1");
    assert!(body.contains(&runs), "{body}");
    assert!(
        body.contains("ants_node_events_total{event=\"runs\"} 1"),
        "{body}"
    );
    assert!(body.contains("ants_cached_modules 1"), "{body}");
    let workers = Config::load(&path).unwrap().node.workers;
    assert!(
        body.contains(&format!("ants_workers {workers}\n")),
        "{body}"
    );
    assert!(
        body.contains("ants_worker_handoffs_total{outcome=\"dropped\"} 0"),
        "{body}"
    );
    let worker_runs: u64 = body
        .lines()
        .filter(|l| l.starts_with("ants_worker_runs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(worker_runs, 1, "{body}");
    // Fuel per run as a histogram: one run, counted in every bucket from its own up.
    let fuel_count = format!("ants_capsule_fuel_count{{protocol=\"{ty}\"}} 1");
    assert!(body.contains(&fuel_count), "{body}");
    let inf = format!("ants_capsule_fuel_bucket{{le=\"+Inf\",protocol=\"{ty}\"}} 1");
    let inf_other_order = format!("ants_capsule_fuel_bucket{{protocol=\"{ty}\",le=\"+Inf\"}} 1");
    assert!(
        body.contains(&inf) || body.contains(&inf_other_order),
        "{body}"
    );
    assert!(
        body.contains("# TYPE ants_capsule_exec_seconds histogram"),
        "{body}"
    );
    // The capsule waited for its code to compile: "no more than 0 held" was violated once.
    assert!(
        body.contains("ants_watch_violations_total{property=\"max-held (limit 0)\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("ants_watch_violations_total{property=\"no-duplicate-delivery\"} 0"),
        "{body}"
    );
    promtool_check(body);
    // Bad requests: a clear status, and the node goes on serving.
    assert!(http(at, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(http(at, b"GET /secrets HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(at, &[0xff; 20_000]).starts_with("HTTP/1.1 400"));
    assert!(http(at, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    node.shutdown().expect("stop");
}

#[test]
fn a_public_metrics_address_needs_an_explicit_setting() {
    let text = "[node]\naddress = \"198.18.0.61\"\nlisten = \"127.0.0.1:0\"\n\n\
                [metrics]\nlisten = \"0.0.0.0:9322\"\n";
    let err = Config::parse(text, "m.toml").unwrap_err().to_string();
    assert!(err.contains("m.toml line 6"), "{err}");
    assert!(err.contains("public = true"), "{err}");
    let ok = format!("{text}public = true\n");
    assert!(Config::parse(&ok, "m.toml").is_ok());
}
