//! The node's TOML config file (`ants run --config node.toml`), documented key by key in
//! `docs/config.md`.
//!
//! - [`Config`]: the validated config, with typed sections ([`NodeSection`], [`Neighbour`],
//!   [`RouteEntry`], [`Limits`], [`CodeSection`], [`Fault`]).
//! - [`Config::load`] / [`Config::parse`]: read and validate; every error is a
//!   [`ConfigError`] naming the file, the line and the key, e.g.
//!   `node.toml line 12: [[route]] via = "198.18.0.9": not the address of any [[neighbour]]`.
//!
//! Parsing has two steps: serde + `toml` read the file into strings and numbers that keep
//! their spans (unknown keys and wrong types are rejected there, with their line), then this
//! module turns them into addresses, prefixes and limits and checks how they fit together.

mod error;
mod limits;
mod raw;
mod router;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ants_core::Prefix;
use ants_wire::{Address, CapsuleType};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use error::ConfigError;
pub use limits::Limits;
use raw::{RawCode, RawConfig, RawFault, RawNeighbour, RawNode, RawRoute};
pub use router::{BusyPoll, Datapath, FastPathMode, IpRoute, RouterInterface, RouterSection};

/// Largest `max_capsule_bytes`: header + payload must fit one UDP datagram (65,507 bytes over
/// IPv4) together with the fixed capsule header.
pub const MAX_CAPSULE_BYTES: usize = 65_507 - ants_wire::capsule::FIXED_LEN;

/// Longest Unix socket path (`sun_path` holds 108 bytes including the terminating NUL).
const MAX_UNIX_PATH: usize = 107;

/// A validated node config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[node]`: who this node is and where it listens.
    pub node: NodeSection,
    /// `[[neighbour]]`: the directly reachable active nodes.
    pub neighbours: Vec<Neighbour>,
    /// `[[route]]`: static routes (direct neighbours are routes without being listed).
    pub routes: Vec<RouteEntry>,
    /// `[limits]`: resource bounds.
    pub limits: Limits,
    /// `[code]`: which capsule types the node accepts.
    pub code: CodeSection,
    /// `[fault]`: fault injection for tests.
    pub fault: Fault,
    /// `[router]`: router mode (AF_PACKET interfaces, plain IPv4 forwarding); `None` = the
    /// UDP overlay.
    pub router: Option<RouterSection>,
    /// `[metrics]`: Prometheus metrics over HTTP; `None` = not served.
    pub metrics: Option<MetricsSection>,
    /// `[trace]`: capsule tracing.
    pub trace: TraceSection,
    /// `[record]` (or `ants run --record`): record the node core's inputs for `ants replay`.
    pub record: Option<RecordSection>,
    /// `[[watch]]`: properties checked after every input of the node core, as a scenario's
    /// are in `ants sim` (docs/simulation.md, "Watchpoints"); violations are reported in the
    /// status, the metrics and the log.
    pub watches: Vec<ants_sim::Watch>,
    /// The file it was read from ([`Config::load`]); a reload (SIGHUP, `ants reload`)
    /// reads it again.
    pub path: Option<PathBuf>,
}

/// `[record]`: where the node records every input of its node core, for `ants replay`
/// (docs/simulation.md, "Record and replay").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSection {
    /// The recording directory: the node writes `<address>/worker-<i>.rec` and the modules it
    /// installs (`<address>/modules/`) under it, so several nodes can share one.
    pub dir: PathBuf,
    /// Bytes one worker's recording may take; recording stops there (said in the log and in
    /// the file), the node runs on.
    pub max_bytes: u64,
}

impl RecordSection {
    /// Default `max_bytes`: 1 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
    /// Bounds of `max_bytes`: 1 MiB to 1 TiB.
    pub const MAX_BYTES_RANGE: std::ops::RangeInclusive<u64> = (1 << 20)..=(1 << 40);
}

/// `[trace]`: which capsules the node traces on its own, and how many reports it sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSection {
    /// Fraction (0–1) of the capsules local apps send that the node traces without being
    /// asked (`ants send --trace` asks); default 0.
    pub sample: f64,
    /// Trace reports the node sends or forwards per second (default 1000; 0 = none).
    pub reports_per_sec: u64,
}

impl Default for TraceSection {
    fn default() -> Self {
        let d = ants_core::node::TraceConfig::default();
        TraceSection {
            sample: d.sample,
            reports_per_sec: d.reports_per_sec,
        }
    }
}

/// `[metrics]`: where `GET /metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSection {
    /// TCP address (default `127.0.0.1:9322`).
    pub listen: std::net::SocketAddr,
    /// Allow a non-loopback `listen` (anyone who reaches it reads the node's counters).
    pub public: bool,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// This node's active address.
    pub address: Address,
    /// The UDP endpoint the node listens on; in router mode, the address and port capsules
    /// are sent to (default: the first interface's address and the capsule port).
    pub listen: SocketAddr,
    /// The Unix socket for local apps; `None` = no apps.
    pub app_socket: Option<PathBuf>,
    /// Where verified modules and compiled artifacts are kept across restarts; `None` = in
    /// memory only.
    pub code_cache_dir: Option<PathBuf>,
    /// The seed of the node's randomness (as given, or derived from the address).
    pub seed: u64,
    /// Forwarding threads (default: the CPUs the process may use, at most
    /// [`MAX_WORKERS`]; router mode: 1). Each runs the capsule types that hash to it, and
    /// in router mode forwards its share of the interfaces' traffic.
    pub workers: usize,
}

/// Most `[node] workers`.
pub const MAX_WORKERS: usize = 64;

/// `[[neighbour]]`: an active node one overlay hop away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Its active address.
    pub address: Address,
    /// Its UDP endpoint.
    pub endpoint: SocketAddr,
}

/// `[[route]]`: capsules for `dst` go to the neighbour `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// The destination prefix (a bare address is a host route).
    pub dst: Prefix,
    /// The next hop: always the address of a configured neighbour.
    pub via: Address,
}

/// `[code]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeSection {
    /// Which capsule types the node loads and runs.
    pub policy: CodePolicy,
    /// Whose capsules and code messages the node looks at.
    pub accept_from: AcceptFrom,
}

/// `[code] accept_from`: who can make the node run, fetch, serve or compile code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptFrom {
    /// Configured neighbours only (the overlay's default).
    #[default]
    Neighbours,
    /// Configured neighbours and hosts on the router's interface subnets (router mode's
    /// default).
    OnLink,
    /// Anyone who can send a datagram (code is still verified by hash and sandboxed).
    Any,
}

/// Which capsule types a node accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CodePolicy {
    /// Any type (the default): code is still verified against its hash.
    #[default]
    Any,
    /// Only these types (sorted, without duplicates); others are dropped and counted.
    AllowList(Vec<CapsuleType>),
}

impl CodePolicy {
    /// Whether capsules of type `t` may be loaded and run.
    pub fn allows(&self, t: &CapsuleType) -> bool {
        match self {
            CodePolicy::Any => true,
            CodePolicy::AllowList(list) => list.binary_search(t).is_ok(),
        }
    }
}

/// `[fault]`: fault injection for tests; off by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Fraction (0 to 1) of code-transfer messages dropped, sent and received.
    pub code_loss: f64,
    /// Seed of the loss pattern (default: the node's seed).
    pub seed: u64,
}

impl Config {
    /// Read and validate the config file at `path`. Relative `app_socket` and
    /// `code_cache_dir` paths are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_text(path).map(|(c, _)| c)
    }

    /// As [`load`](Self::load), with the file's text as it was read.
    pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut c = Source::new(&text, &path.display().to_string(), base).config()?;
        c.path = Some(path.to_owned());
        Ok((c, text))
    }

    /// This config with what a running node can change in place taken from `new`:
    /// neighbours, routes, `[code]`, `[trace]`, and the `[limits]` keys `max_resource`,
    /// `peer_fuel_per_sec`, `quarantine_traps`, `quarantine_window`, `quarantine_time` and
    /// `drain_time`. The rest stays as it is (see [`Config::restart_needed`]).
    pub fn with_live_changes(&self, new: &Config) -> Config {
        let mut c = self.clone();
        c.neighbours = new.neighbours.clone();
        c.routes = new.routes.clone();
        c.code = new.code.clone();
        c.trace = new.trace;
        c.watches = new.watches.clone();
        let (l, n) = (&mut c.limits, &new.limits);
        l.max_resource = n.max_resource;
        l.peer_fuel_per_sec = n.peer_fuel_per_sec;
        l.quarantine_traps = n.quarantine_traps;
        l.quarantine_window = n.quarantine_window;
        l.quarantine_time = n.quarantine_time;
        l.drain_time = n.drain_time;
        c
    }

    /// What differs between this running config and `new` that only a restart applies, by
    /// section (empty when `new` can be applied entirely in place).
    pub fn restart_needed(&self, new: &Config) -> Vec<String> {
        let live = self.with_live_changes(new);
        let mut out = Vec::new();
        let (a, b) = (&live.node, &new.node);
        for (key, same) in [
            ("address", a.address == b.address),
            ("listen", a.listen == b.listen),
            ("app_socket", a.app_socket == b.app_socket),
            ("code_cache_dir", a.code_cache_dir == b.code_cache_dir),
            ("seed", a.seed == b.seed),
            ("workers", a.workers == b.workers),
        ] {
            if !same {
                out.push(format!("[node] {key}"));
            }
        }
        if live.limits != new.limits {
            out.push("[limits] (keys other than max_resource, peer_fuel_per_sec, quarantine_* and drain_time)".into());
        }
        for (section, same) in [
            ("[router]", live.router == new.router),
            ("[metrics]", live.metrics == new.metrics),
            ("[fault]", live.fault == new.fault),
            ("[record]", live.record == new.record),
        ] {
            if !same {
                out.push(section.into());
            }
        }
        out
    }

    /// Validate config `text`; `origin` names it in errors (usually the file name). Paths
    /// are kept as written.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Source::new(text, origin, None).config()
    }
}

/// The text being parsed, for turning spans into lines.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
    base: Option<&'a Path>,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl<'a> Source<'a> {
    fn new(text: &'a str, origin: &'a str, base: Option<&'a Path>) -> Self {
        Source { text, origin, base }
    }

    fn config(&self) -> Result<Config> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.toml_error(&e))?;
        let router = raw.router.as_ref().map(|r| self.router(r)).transpose()?;
        let node = self.node(&raw.node, router.as_ref())?;
        let neighbours = self.neighbours(&raw.neighbours, &node)?;
        let routes = self.routes(&raw.routes, &neighbours)?;
        let limits = self.limits(&raw.limits)?;
        let code = self.code(&raw.code, router.is_some())?;
        let fault = self.fault(&raw.fault, node.seed)?;
        let metrics = raw.metrics.as_ref().map(|m| self.metrics(m)).transpose()?;
        let trace = self.trace(&raw.trace)?;
        let record = raw.record.as_ref().map(|r| self.record(r)).transpose()?;
        let watches = raw
            .watches
            .iter()
            .map(|w| self.watch(w))
            .collect::<Result<_>>()?;
        Ok(Config {
            node,
            neighbours,
            routes,
            limits,
            code,
            fault,
            router,
            metrics,
            trace,
            record,
            watches,
            path: None,
        })
    }

    fn watch(&self, raw: &raw::RawWatch) -> Result<ants_sim::Watch> {
        let limit = raw.limit.as_ref().map(|l| *l.get_ref());
        ants_sim::Watch::from_parts(raw.property.get_ref(), limit)
            .map_err(|why| self.bad("[[watch]]", "property", &raw.property, why))
    }

    fn record(&self, raw: &raw::RawRecord) -> Result<RecordSection> {
        const S: &str = "[record]";
        let Some(dir) = &raw.dir else {
            return Err(self.section_error(S, "record.dir", "[record] missing field `dir`"));
        };
        if dir.get_ref().trim().is_empty() {
            return Err(self.bad(S, "dir", dir, "must name a directory"));
        }
        let max_bytes = match &raw.max_bytes {
            None => RecordSection::DEFAULT_MAX_BYTES,
            Some(v) if RecordSection::MAX_BYTES_RANGE.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(self.invalid(
                    v.span(),
                    S,
                    "max_bytes",
                    v.get_ref(),
                    "must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)",
                ));
            }
        };
        Ok(RecordSection {
            dir: self.resolve(dir.get_ref()),
            max_bytes,
        })
    }

    fn trace(&self, raw: &raw::RawTrace) -> Result<TraceSection> {
        const S: &str = "[trace]";
        let d = TraceSection::default();
        let sample = match &raw.sample {
            None => d.sample,
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(self.invalid(
                    v.span(),
                    S,
                    "sample",
                    v.get_ref(),
                    "must be a fraction from 0 to 1 (0.01 traces one capsule in a hundred)",
                ));
            }
        };
        let reports_per_sec = match &raw.reports_per_sec {
            None => d.reports_per_sec,
            Some(v) if *v.get_ref() <= 1_000_000 => *v.get_ref(),
            Some(v) => {
                return Err(self.invalid(
                    v.span(),
                    S,
                    "reports_per_sec",
                    v.get_ref(),
                    "must be at most 1000000",
                ));
            }
        };
        Ok(TraceSection {
            sample,
            reports_per_sec,
        })
    }

    fn metrics(&self, raw: &raw::RawMetrics) -> Result<MetricsSection> {
        const S: &str = "[metrics]";
        let public = raw.public.unwrap_or(false);
        let listen = match &raw.listen {
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 9322)),
            Some(v) => {
                let a: std::net::SocketAddr = v.get_ref().trim().parse().map_err(|_| {
                    self.bad(
                        S,
                        "listen",
                        v,
                        "expected an address and port, e.g. \"127.0.0.1:9322\"",
                    )
                })?;
                if !a.ip().is_loopback() && !public {
                    return Err(self.bad(
                        S,
                        "listen",
                        v,
                        "not a loopback address: anyone who reaches it reads the node's \
                         counters; add public = true to mean it",
                    ));
                }
                a
            }
        };
        Ok(MetricsSection { listen, public })
    }

    fn address(&self, section: &str, field: &str, v: &Spanned<String>) -> Result<Address> {
        let a: Address = v
            .get_ref()
            .trim()
            .parse()
            .map_err(|_| self.bad(section, field, v, "expected an IPv4 or IPv6 address"))?;
        if a.is_unspecified() || a.to_ipv4() == Some(Ipv4Addr::UNSPECIFIED) {
            return Err(self.bad(
                section,
                field,
                v,
                "the unspecified address cannot be an active address",
            ));
        }
        Ok(a)
    }

    fn endpoint(&self, section: &str, field: &str, v: &Spanned<String>) -> Result<SocketAddr> {
        v.get_ref().trim().parse().map_err(|_| {
            self.bad(
                section,
                field,
                v,
                "expected host:port, an IP address and a UDP port (e.g. 127.0.0.1:7001 or [::1]:7001)",
            )
        })
    }

    fn path(&self, field: &str, v: Option<&Spanned<String>>) -> Result<Option<PathBuf>> {
        let Some(v) = v else { return Ok(None) };
        if v.get_ref().is_empty() {
            return Err(self.bad(
                "[node]",
                field,
                v,
                "must not be empty (leave the key out for none)",
            ));
        }
        Ok(Some(self.resolve(v.get_ref())))
    }

    /// `path` as written, relative paths taken from the config file's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        match self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }
    }

    fn node(&self, raw: &RawNode, router: Option<&RouterSection>) -> Result<NodeSection> {
        let address = self.address("[node]", "address", &raw.address)?;
        let listen = self.listen(raw.listen.as_ref(), router)?;
        let app_socket = self.path("app_socket", raw.app_socket.as_ref())?;
        if let (Some(p), Some(v)) = (&app_socket, &raw.app_socket) {
            let len = p.as_os_str().len();
            if len > MAX_UNIX_PATH {
                return Err(self.bad(
                    "[node]",
                    "app_socket",
                    v,
                    format_args!("the path is {len} bytes long; a Unix socket path has at most {MAX_UNIX_PATH}"),
                ));
            }
        }
        Ok(NodeSection {
            address,
            listen,
            app_socket,
            code_cache_dir: self.path("code_cache_dir", raw.code_cache_dir.as_ref())?,
            seed: raw.seed.unwrap_or_else(|| derive_seed(&address)),
            workers: self.workers(raw.workers.as_ref(), router)?,
        })
    }

    /// `[node] workers`: 1 to [`MAX_WORKERS`]; left out, one per CPU (router mode: one).
    fn workers(&self, raw: Option<&Spanned<u64>>, router: Option<&RouterSection>) -> Result<usize> {
        let Some(v) = raw else {
            if router.is_some() {
                return Ok(1);
            }
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            return Ok(cpus.min(MAX_WORKERS));
        };
        let n = *v.get_ref();
        if n == 0 || n > MAX_WORKERS as u64 {
            return Err(self.invalid(
                v.span(),
                "[node]",
                "workers",
                n,
                format_args!("must be between 1 and {MAX_WORKERS}"),
            ));
        }
        Ok(n as usize)
    }

    /// `[node] listen`: required for the overlay; in router mode optional, and then it must
    /// name one of the router's interface addresses and its capsule port.
    fn listen(
        &self,
        raw: Option<&Spanned<String>>,
        router: Option<&RouterSection>,
    ) -> Result<SocketAddr> {
        let Some(v) = raw else {
            return match router {
                Some(r) => Ok(SocketAddr::from((r.interfaces[0].address, r.capsule_port))),
                None => Err(self.section_error(
                    "[node]",
                    "node.listen",
                    "[node] missing field `listen` (the UDP endpoint; only router mode, with a \
                     [router] section, may leave it out)",
                )),
            };
        };
        let listen = self.endpoint("[node]", "listen", v)?;
        let Some(r) = router else { return Ok(listen) };
        let port = r.capsule_port;
        if r.interfaces
            .iter()
            .any(|i| SocketAddr::from((i.address, port)) == listen)
        {
            return Ok(listen);
        }
        Err(self.bad(
            "[node]",
            "listen",
            v,
            format_args!(
                "in router mode this must be one of the [[router.interface]] addresses with \
                 port {port} (or leave it out)"
            ),
        ))
    }

    fn neighbours(&self, raw: &[RawNeighbour], node: &NodeSection) -> Result<Vec<Neighbour>> {
        const S: &str = "[[neighbour]]";
        let mut by_address: HashMap<Address, usize> = HashMap::new();
        let mut by_endpoint: HashMap<SocketAddr, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for n in raw {
            let address = self.address(S, "address", &n.address)?;
            if address == node.address {
                return Err(self.bad(
                    S,
                    "address",
                    &n.address,
                    "is this node's own [node] address",
                ));
            }
            if let Some(line) = by_address.insert(address, self.line_of(n.address.span().start)) {
                return Err(self.bad(
                    S,
                    "address",
                    &n.address,
                    format_args!("already used by the [[neighbour]] on line {line}"),
                ));
            }
            let endpoint = self.endpoint(S, "endpoint", &n.endpoint)?;
            if endpoint.ip().is_unspecified() || endpoint.port() == 0 {
                return Err(self.bad(
                    S,
                    "endpoint",
                    &n.endpoint,
                    "needs a concrete IP address and a non-zero port",
                ));
            }
            if endpoint == node.listen {
                return Err(self.bad(
                    S,
                    "endpoint",
                    &n.endpoint,
                    "is this node's own [node] listen endpoint",
                ));
            }
            if let Some(why) = unreachable_family(node.listen, endpoint) {
                return Err(self.bad(S, "endpoint", &n.endpoint, why));
            }
            if let Some(line) = by_endpoint.insert(endpoint, self.line_of(n.endpoint.span().start))
            {
                return Err(self.bad(
                    S,
                    "endpoint",
                    &n.endpoint,
                    format_args!("already used by the [[neighbour]] on line {line}"),
                ));
            }
            out.push(Neighbour { address, endpoint });
        }
        Ok(out)
    }

    fn routes(&self, raw: &[RawRoute], neighbours: &[Neighbour]) -> Result<Vec<RouteEntry>> {
        const S: &str = "[[route]]";
        let mut seen: HashMap<Prefix, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let dst: Prefix = r.dst.get_ref().trim().parse().map_err(|e| {
                self.bad(
                    S,
                    "dst",
                    &r.dst,
                    format_args!("{e} (expected a prefix such as 198.18.0.0/24, or an address)"),
                )
            })?;
            if let Some(line) = seen.insert(dst, self.line_of(r.dst.span().start)) {
                return Err(self.bad(
                    S,
                    "dst",
                    &r.dst,
                    format_args!("the [[route]] on line {line} already covers {dst}"),
                ));
            }
            let via = r.via.get_ref().trim().parse::<Address>().ok();
            let Some(via) = via.filter(|v| neighbours.iter().any(|n| n.address == *v)) else {
                return Err(self.bad(S, "via", &r.via, "not the address of any [[neighbour]]"));
            };
            out.push(RouteEntry { dst, via });
        }
        Ok(out)
    }

    fn code(&self, raw: &RawCode, router: bool) -> Result<CodeSection> {
        const S: &str = "[code]";
        let allow = match &raw.allow {
            Some(list) => list
                .get_ref()
                .iter()
                .map(|t| {
                    t.get_ref()
                        .parse::<CapsuleType>()
                        .map_err(|e| self.bad(S, "allow", t, e))
                })
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let policy = match raw.policy.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "any")) => {
                if let Some(list) = raw.allow.as_ref().filter(|l| !l.get_ref().is_empty()) {
                    return Err(self.invalid(
                        list.span(),
                        S,
                        "allow",
                        format_args!("[...{} types]", list.get_ref().len()),
                        "only used with policy = \"allow-list\" (the policy is \"any\")",
                    ));
                }
                CodePolicy::Any
            }
            Some((p, "allow-list")) => {
                if allow.is_empty() {
                    return Err(self.bad(
                        S,
                        "policy",
                        p,
                        "needs at least one type in [code] allow (64 hex digits each)",
                    ));
                }
                let mut allow = allow;
                allow.sort_unstable();
                allow.dedup();
                CodePolicy::AllowList(allow)
            }
            Some((p, _)) => {
                return Err(self.bad(S, "policy", p, "expected \"any\" or \"allow-list\""));
            }
        };
        let accept_from = match raw.accept_from.as_ref().map(|a| (a, a.get_ref().as_str())) {
            None if router => AcceptFrom::OnLink,
            None | Some((_, "neighbours")) => AcceptFrom::Neighbours,
            Some((_, "on-link")) if router => AcceptFrom::OnLink,
            Some((a, "on-link")) => {
                return Err(self.bad(
                    S,
                    "accept_from",
                    a,
                    "\"on-link\" needs router mode (a [router] section); use \"neighbours\" or \"any\"",
                ));
            }
            Some((_, "any")) => AcceptFrom::Any,
            Some((a, _)) => {
                return Err(self.bad(
                    S,
                    "accept_from",
                    a,
                    "expected \"neighbours\", \"on-link\" (router mode) or \"any\"",
                ));
            }
        };
        Ok(CodeSection {
            policy,
            accept_from,
        })
    }

    fn fault(&self, raw: &RawFault, node_seed: u64) -> Result<Fault> {
        let code_loss = match &raw.code_loss {
            None => 0.0,
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(self.invalid(
                    v.span(),
                    "[fault]",
                    "code_loss",
                    v.get_ref(),
                    "must be between 0 and 1",
                ));
            }
        };
        Ok(Fault {
            code_loss,
            seed: raw.seed.unwrap_or(node_seed),
        })
    }
}

/// Why a socket bound to `listen` cannot send to `endpoint`, if it cannot.
fn unreachable_family(listen: SocketAddr, endpoint: SocketAddr) -> Option<String> {
    let mapped = |a: &SocketAddr| match a {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => true,
    };
    let reachable = match listen {
        SocketAddr::V4(_) => mapped(&endpoint),
        SocketAddr::V6(v6) => endpoint.is_ipv6() || v6.ip().is_unspecified(),
    };
    (!reachable).then(|| {
        format!(
            "cannot be reached from [node] listen = \"{listen}\"; listen on [::]:{} to reach IPv4 and IPv6 endpoints",
            listen.port()
        )
    })
}

/// A seed for a node that names none: the first 8 bytes of SHA-256 over a label and the
/// address, so nodes differ and a restart keeps its seed.
fn derive_seed(address: &Address) -> u64 {
    let mut h = Sha256::new();
    h.update(b"ants node seed v1");
    h.update(address.octets());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests;
