//! `ants map`: ask every node of a deployment for its counters (as `ants status --json`)
//! every interval and draw the picture (`ants_node::map`): served as a live page, written
//! as SVG or HTML, or taken once.
//!
//! The server is hand-rolled HTTP/1.1 over tokio like `[metrics]` (`daemon/metrics.rs`):
//! one request per connection, at most 8 KiB read within 2 s, 8 connections at once, the
//! answer written within 5 s; loopback unless `--public`. It serves what the poller last
//! rendered and never asks a node on a request's behalf, so a browser cannot make the map
//! poll faster than `--interval`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ants_node::http::{Request, Response};
use ants_node::map::svg::{Refresh, render_page, render_svg};
use ants_node::map::{Health, Map, NodeSource, Poll, read_topology_dir};
use anyhow::{Context, bail};
use clap::Args;
use tokio::net::TcpListener;
use tracing::warn;

/// The long help of `ants map` (clap shows it for `--help`).
pub(crate) const LONG_HELP: &str = "\
Draw a deployment: every node coloured by its health, every link labelled with the
traffic of each of its directions — as a live web page, an SVG or an HTML file.

Nodes: app sockets (-s, repeated) and/or a topology directory (--dir: one `ants run`
config per .toml file, like examples/line5; each gives the node's address, app socket and
neighbours, so a node that does not answer is still drawn, with its links). Every
--interval seconds each node is asked for its counters, as `ants status --json` does.

What the picture shows:
  node  green: up · amber: degraded (drops, traps or quarantines rose since the last poll)
        · red: unreachable (its socket does not answer) · grey: unknown (only named as a
        neighbour, or configured without app_socket). Under its address: capsules/s
        (received + injected) and drops/s.
  link  two arrows, one per direction, each labelled with the datagrams/s (capsules and
        code transfer) its receiver counted from its sender between the last two polls:
        blue and thicker when busy, grey when idle, dotted when the receiver did not
        answer, dashed when only one side lists the other as a neighbour (the other side
        drops what comes over it).
  Hover a node or an arrow for details (drop reasons, when a neighbour was last heard).
  The layout is deterministic: the same topology is drawn the same way every time.

Output:
  (default)        serve the page on http://127.0.0.1:9330/: / (the page, which fetches a
                   new picture every interval), /map.svg and /map.json
  --listen ADDR    serve on ADDR (port 0: any free port, printed); an address that is not
                   loopback needs --public
  --svg FILE       write the SVG, rewritten after every poll
  --html FILE      write a self-contained page that reloads itself
  --once           poll twice, --interval apart, write the picture (the SVG to stdout when
                   no file is named) and exit

Example, with the 5-node line of examples/line5 running (bash examples/demo.sh starts it):

  ants map --dir examples/line5            # open http://127.0.0.1:9330/
  ants map -s /tmp/ants-demo/n1.sock -s /tmp/ants-demo/n2.sock --once --svg map.svg

`ants sim SCENARIO --map FILE` draws the same picture for a simulated run. Reference:
docs/map.md.";

/// Where the page is served when no file is named.
const DEFAULT_LISTEN: &str = "127.0.0.1:9330";
/// Nodes asked at once.
const POLL_THREADS: usize = 32;

/// `ants map` arguments; see [`LONG_HELP`].
#[derive(Debug, Args)]
pub(crate) struct MapArgs {
    /// A node's app socket (`app_socket` in its config); repeat for every node.
    #[arg(short, long = "socket", value_name = "SOCKET")]
    sockets: Vec<PathBuf>,
    /// A topology directory: one node config per .toml file (e.g. examples/line5).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write the picture as SVG to FILE (rewritten after every poll).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write a self-contained page to FILE that reloads itself (rewritten after every poll).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Serve the live page on this address [default: 127.0.0.1:9330 when no file is named].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Allow a --listen address that is not loopback: anyone who reaches it sees the
    /// deployment's addresses and traffic.
    #[arg(long, requires = "listen")]
    public: bool,
    /// Seconds between polls; rates are counter rises over this interval.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Poll twice, --interval apart, write the picture and exit (the SVG to stdout when
    /// neither --svg nor --html is given).
    #[arg(long, conflicts_with = "listen")]
    once: bool,
    /// Seconds to wait for each node's answer.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

/// What the server hands out: the last picture in each form.
#[derive(Debug, Default)]
struct Latest {
    page: String,
    svg: String,
    json: String,
}

impl MapArgs {
    /// The nodes to draw: the directory's, then sockets not already among them.
    fn sources(&self) -> anyhow::Result<Vec<NodeSource>> {
        let mut sources = match &self.dir {
            Some(dir) => read_topology_dir(dir)?,
            None => Vec::new(),
        };
        for s in &self.sockets {
            if !sources.iter().any(|n| n.socket.as_ref() == Some(s)) {
                sources.push(NodeSource::socket(s));
            }
        }
        if sources.is_empty() {
            bail!(
                "no nodes given: name each node's app socket with -s SOCKET (repeat it), or a \
                 topology directory of node configs with --dir DIR (see `ants map --help`)"
            );
        }
        Ok(sources)
    }

    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let sources = self.sources()?;
        let interval = Duration::from_secs_f64(self.interval.clamp(0.2, 3600.0));
        let timeout = Duration::from_secs_f64(self.timeout.clamp(0.1, 60.0));
        if self.once {
            let first = poll(&sources, timeout);
            std::thread::sleep(interval.saturating_sub(first.at.elapsed()));
            let second = poll(&sources, timeout);
            let map = Map::from_polls(&sources, Some(&first), &second);
            let svg = render_svg(&map);
            if self.svg.is_none() && self.html.is_none() {
                std::io::stdout().write_all(svg.as_bytes())?;
            }
            self.write_files(&map, &svg, Refresh::Never)?;
            eprintln!("{}", census(&map));
            return Ok(ExitCode::SUCCESS);
        }
        let files_only = self.svg.is_some() || self.html.is_some();
        let listen = match self.listen {
            Some(l) => Some(l),
            None if files_only => None,
            None => Some(DEFAULT_LISTEN.parse()?),
        };
        let Some(listen) = listen else {
            // Files only: poll and write until stopped.
            let mut prev: Option<Poll> = None;
            loop {
                let cur = poll(&sources, timeout);
                let map = Map::from_polls(&sources, prev.as_ref(), &cur);
                self.write_files(
                    &map,
                    &render_svg(&map),
                    Refresh::Reload(interval.as_secs_f64()),
                )?;
                let next = cur.at + interval;
                prev = Some(cur);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let listener = rt.block_on(bind(listen, self.public))?;
        let at = listener.local_addr()?;
        println!(
            "serving the map of {} nodes on http://{at}/ (every {:.1} s; Ctrl-C stops)",
            sources.len(),
            interval.as_secs_f64()
        );
        let latest = Arc::new(Mutex::new(Latest::default()));
        // The first picture before the first request; then the poller keeps it current.
        let mut prev = poll(&sources, timeout);
        self.publish(&Map::from_polls(&sources, None, &prev), interval, &latest);
        let poller = {
            let latest = latest.clone();
            std::thread::Builder::new()
                .name("map-poller".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(
                            (prev.at + interval).saturating_duration_since(Instant::now()),
                        );
                        let cur = poll(&sources, timeout);
                        let map = Map::from_polls(&sources, Some(&prev), &cur);
                        self.publish(&map, interval, &latest);
                        prev = cur;
                    }
                })
                .context("cannot start the poller")?
        };
        rt.block_on(async {
            tokio::select! {
                () = serve(listener, latest) => {}
                r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            }
            anyhow::Ok(())
        })?;
        drop(poller);
        Ok(ExitCode::SUCCESS)
    }

    /// Render `map` for the server (and the files, if named).
    fn publish(&self, map: &Map, interval: Duration, latest: &Mutex<Latest>) {
        let svg = render_svg(map);
        if let Err(e) = self.write_files(map, &svg, Refresh::Reload(interval.as_secs_f64())) {
            warn!("map: {e:#}");
        }
        let next = Latest {
            page: render_page(map, &svg, Refresh::Fetch(interval.as_secs_f64())),
            json: serde_json::to_string(map).unwrap_or_default(),
            svg,
        };
        *latest.lock().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// Write `--svg` and `--html`, each replaced whole (a reader never sees half a file).
    fn write_files(&self, map: &Map, svg: &str, refresh: Refresh) -> anyhow::Result<()> {
        if let Some(path) = &self.svg {
            replace(path, svg)?;
        }
        if let Some(path) = &self.html {
            replace(path, &render_page(map, svg, refresh))?;
        }
        Ok(())
    }
}

/// `5 nodes: 4 up, 1 unreachable`.
fn census(map: &Map) -> String {
    let c = map.census();
    let each: Vec<String> = Health::ALL
        .iter()
        .filter_map(|h| c.get(h).map(|n| format!("{n} {}", h.name())))
        .collect();
    format!("{} nodes: {}", map.nodes.len(), each.join(", "))
}

/// Write `text` to `path` through a temporary file in the same directory.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Ask every node with an app socket for its counters, [`POLL_THREADS`] at a time.
fn poll(sources: &[NodeSource], timeout: Duration) -> Poll {
    let at = Instant::now();
    let mut answers = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(POLL_THREADS) {
        std::thread::scope(|s| {
            let asked: Vec<_> = chunk
                .iter()
                .map(|src| {
                    src.socket
                        .as_deref()
                        .map(|p| s.spawn(move || ask(p, timeout)))
                })
                .collect();
            for h in asked {
                answers.push(h.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the poll thread panicked".to_owned()))
                }));
            }
        });
    }
    Poll { at, answers }
}

/// One node's counters, or why not.
fn ask(socket: &Path, timeout: Duration) -> Result<serde_json::Value, String> {
    let text = ants_app::query_stats(socket, timeout).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("the node's answer is not JSON: {e}"))
}

/// Bind the page's listener, refusing a non-loopback address unless `public`.
async fn bind(listen: SocketAddr, public: bool) -> anyhow::Result<TcpListener> {
    if !listen.ip().is_loopback() && !public {
        bail!(
            "--listen {listen} is not a loopback address; anyone who can reach it would see the \
             deployment's addresses and traffic — add --public to mean it"
        );
    }
    let l = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let at = l.local_addr()?;
    if !at.ip().is_loopback() {
        warn!(%at, "map served on a non-loopback address (--public)");
    }
    Ok(l)
}

/// Answer requests on `listener` until the task is dropped (bounds: [`ants_node::http`]).
async fn serve(listener: TcpListener, latest: Arc<Mutex<Latest>>) {
    ants_node::http::serve(listener, "map", move |r: Request| {
        let latest = latest.clone();
        async move {
            let l = latest.lock().unwrap_or_else(PoisonError::into_inner);
            route(r.method.as_deref(), r.path.as_deref(), &l)
        }
    })
    .await;
}

/// The page may run its own inline script and fetch from where it came, nothing else.
const PAGE_CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'";

/// The answer to a request line's method and path.
fn route(method: Option<&str>, path: Option<&str>, latest: &Latest) -> Response {
    match (method, path) {
        (Some("GET"), Some("/" | "/index.html")) => Response {
            csp: Some(PAGE_CSP),
            ..Response::ok("text/html; charset=utf-8", latest.page.clone())
        },
        (Some("GET"), Some("/map.svg")) => Response::ok("image/svg+xml", latest.svg.clone()),
        (Some("GET"), Some("/map.json")) => Response::ok("application/json", latest.json.clone()),
        (Some("GET"), Some(_)) => Response::error(
            "404 Not Found",
            "only /, /map.svg and /map.json are served here",
        ),
        _ => Response::error("400 Bad Request", "expected GET /, /map.svg or /map.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_documents_are_served() {
        let l = Latest {
            page: "<html>".into(),
            svg: "<svg>".into(),
            json: "{}".into(),
        };
        let page = route(Some("GET"), Some("/"), &l);
        assert_eq!((page.body.as_str(), page.csp), ("<html>", Some(PAGE_CSP)));
        let query = ants_node::http::parse_request(b"GET /?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(
            route(query.method.as_deref(), query.path.as_deref(), &l).status,
            "200 OK"
        );
        assert_eq!(
            route(Some("GET"), Some("/map.svg"), &l).content_type,
            "image/svg+xml"
        );
        assert_eq!(route(Some("GET"), Some("/map.json"), &l).body, "{}");
        assert_eq!(
            route(Some("GET"), Some("/etc/passwd"), &l).status,
            "404 Not Found"
        );
        assert_eq!(route(Some("POST"), Some("/"), &l).status, "400 Bad Request");
        assert_eq!(route(None, None, &l).status, "400 Bad Request");
    }

    #[test]
    fn no_nodes_is_a_clear_error() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            map: MapArgs,
        }
        let e = Cli::parse_from(["map", "--once"])
            .map
            .sources()
            .unwrap_err();
        assert!(e.to_string().starts_with("no nodes given"), "{e}");
        let cli = Cli::parse_from(["map", "-s", "a.sock", "-s", "b.sock", "-s", "a.sock"]);
        let s = cli.map.sources().unwrap();
        assert_eq!(s.len(), 2, "a socket given twice is one node");
    }
}
