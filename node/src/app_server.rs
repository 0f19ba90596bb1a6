//! The node side of the app socket: a tokio Unix-socket server between local apps and the
//! node loop.
//!
//! - [`AppServer::bind`] claims the socket path (0600, removing a stale socket file only if
//!   nothing listens on it); [`AppServer::run`] spawns the accept loop and returns an
//!   [`AppHandle`].
//! - Each connection gets a reader task, which turns `Register` / `Inject` frames into
//!   [`AppRequest`]s for the node loop and answers with the node's reply, and a writer task
//!   fed by a bounded queue ([`DEFAULT_QUEUE_LEN`] frames).
//! - [`AppHandle::deliver`] routes a delivery to the connection registered for an app id
//!   without ever blocking: a full queue drops the delivery and counts it for that app.
//!
//! The node loop owns the registration table (which ids are live); this module only
//! forwards requests, remembers which connection holds each id the node accepted, and sends
//! [`AppRequest::Disconnected`] when that connection ends. The protocol is `ants_app::proto`;
//! `docs/apps.md` describes it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ants_app::proto::{self, AppFrame, DecodeError, Delivery, Inject, NodeFrame};
use ants_wire::{Address, CapsuleType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Frames queued per connection before deliveries to it are dropped.
pub const DEFAULT_QUEUE_LEN: usize = 1024;
/// App connections served at once; more are answered with an `Error` frame and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How long a closing connection may take to flush its last frames (e.g. an `Error`).
const WRITER_LINGER: Duration = Duration::from_secs(1);
/// Frames or bytes written per `write` call at most, so one busy app cannot hog a turn.
const WRITE_BATCH_FRAMES: usize = 64;
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// A connection's read buffer is shrunk back to this after a large frame.
const READ_BUF_KEEP: usize = 64 * 1024;

/// Identifies one app connection for the lifetime of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// What the app server asks of the node loop. Every `reply` must be answered (or dropped,
/// which the app sees as "the node dropped the request").
#[derive(Debug)]
pub enum AppRequest {
    /// A connection claims an app id. Answer `Err("app id N is already registered")` if a
    /// live connection holds it; on `Ok` deliveries for `app` go to `conn`.
    Register {
        /// The app id.
        app: u32,
        /// The capsule types that may deliver to it (empty: any).
        accept: Vec<CapsuleType>,
        /// The connection asking.
        conn: ConnId,
        /// `Ok(())` or the reason for refusing.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A registered app hands over a capsule (and possibly its module).
    Inject {
        /// The app id of the connection.
        app: u32,
        /// The capsule; its `src` is the node's address and `prev` is `::`
        /// ([`Inject::to_repr`]).
        inject: Inject,
        /// The accepted capsule type, or why it was refused.
        reply: oneshot::Sender<Result<CapsuleType, String>>,
    },
    /// The connection holding `app` has ended; the id is free again.
    Disconnected {
        /// The app id.
        app: u32,
    },
    /// A connection (registered or not) asks for the node's counters: answer with them as
    /// one JSON object (`Stats::to_json`).
    Stats {
        /// The JSON text, or why not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// A connection (registered or not) asks for the soft-store's entries: one type's, or
    /// every one's (`{"namespaces": [...], "truncated": bool}`).
    StoreDump {
        /// One namespace, or all.
        ty: Option<CapsuleType>,
        /// The entries, or why not.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// A connection (registered or not) asks for the traces this node started: the list
    /// (`{"traces": [...]}`), or one trace with its events (`{"trace": {...}}`, `null` when
    /// unknown).
    Traces {
        /// One trace, or the list.
        id: Option<u64>,
        /// The JSON, or why not.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// Read the config file again and apply what can change in place (a connection's
    /// `Reload`, or SIGHUP): what changed and what needs a restart, or the file's error.
    Reload {
        /// The summary, or why not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Internal (the node to its workers): run with this config's live parts from now on.
    Apply {
        /// The running config with the new live parts.
        config: Arc<crate::config::Config>,
        /// The config file's text as it was read for this reload (what a recording keeps).
        text: Arc<str>,
        /// Done.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A connection (registered or not) asks for copies of the node's datagrams: on `Ok`
    /// the node has queued `CaptureStarted` on `out` and streams `Captured` frames into it
    /// until the connection closes.
    Capture {
        /// The connection's outgoing queue.
        out: mpsc::Sender<NodeFrame>,
        /// `Ok`, or why not (another capture runs).
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A connection (registered or not) asks the node to drop a type's module.
    Evict {
        /// The type.
        ty: CapsuleType,
        /// Whether the node had it, or why not.
        reply: oneshot::Sender<Result<bool, String>>,
    },
}

/// Delivery counters of one registered app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppConnCounters {
    /// The connection holding the id.
    pub conn: ConnId,
    /// Deliveries put on its queue.
    pub deliveries_queued: u64,
    /// Deliveries dropped because its queue was full.
    pub deliveries_dropped_queue_full: u64,
}

/// A snapshot of the app server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppServerCounters {
    /// Connections accepted, including refused ones.
    pub connections_accepted: u64,
    /// Connections refused because [`AppServer::with_max_connections`] were open.
    pub connections_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections closed because they sent a malformed frame.
    pub protocol_errors: u64,
    /// Deliveries put on a connection's queue.
    pub deliveries_queued: u64,
    /// Deliveries dropped because the app's queue was full.
    pub deliveries_dropped_queue_full: u64,
    /// Deliveries dropped because no connection holds the app id.
    pub deliveries_dropped_no_app: u64,
    /// Per registered app (live connections only).
    pub per_app: BTreeMap<u32, AppConnCounters>,
}

/// A bound app socket, not yet serving. See the [module docs](self).
#[derive(Debug)]
pub struct AppServer {
    listener: StdUnixListener,
    socket: SocketFile,
    node: Option<Address>,
    queue_len: usize,
    max_connections: usize,
}

impl AppServer {
    /// Bind the app socket at `path` with permissions 0600.
    ///
    /// An existing socket file is removed only if nothing listens on it (a stale file left
    /// by a crashed node); a live one is `AddrInUse`, and anything that is not a socket is
    /// `AlreadyExists` and left alone. Does not need a tokio runtime.
    ///
    /// There is no moment at which another user can connect: the socket is bound inside a
    /// fresh 0700 directory next to `path`, made 0600 there, and only then renamed to
    /// `path` (no process-wide umask is touched, so this is safe with other threads).
    pub fn bind(path: &Path) -> io::Result<AppServer> {
        remove_stale_socket(path)?;
        let listener = bind_private(path)?;
        let socket = SocketFile::claim(path)?;
        // From here on, dropping `socket` removes the file if a later step fails.
        listener.set_nonblocking(true)?;
        Ok(AppServer {
            listener,
            socket,
            node: None,
            queue_len: DEFAULT_QUEUE_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// The node's active address, sent to apps in `Registered`. Set it: without it apps
    /// are told `::`.
    pub fn with_node_address(mut self, node: Address) -> Self {
        self.node = Some(node);
        self
    }

    /// Frames queued per connection (default [`DEFAULT_QUEUE_LEN`], at least 1).
    pub fn with_queue_len(mut self, frames: usize) -> Self {
        self.queue_len = frames.max(1);
        self
    }

    /// Connections served at once (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Start serving: spawn the accept loop (and later one reader and one writer task per
    /// connection) on the current tokio runtime. Requests go to `to_node`.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn run(self, to_node: mpsc::Sender<AppRequest>) -> AppHandle {
        let node = self.node.unwrap_or_else(|| {
            tracing::warn!("app server started without a node address: apps will be told `::`");
            Address::UNSPECIFIED
        });
        let shared = Arc::new(Shared {
            socket: self.socket,
            node,
            queue_len: self.queue_len,
            max_connections: self.max_connections,
            routes: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            totals: Totals::default(),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let accept = tokio::spawn(accept_loop(
            self.listener,
            Arc::clone(&shared),
            to_node,
            shutdown_rx,
        ));
        AppHandle {
            shared,
            accept,
            _shutdown: shutdown_tx,
        }
    }
}

/// The running app server. Dropping it stops accepting, closes every app connection and
/// removes the socket file.
#[derive(Debug)]
pub struct AppHandle {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    /// Dropped with the handle, which tells every task to stop.
    _shutdown: watch::Sender<()>,
}

/// Hands deliveries to the app server from any thread (a node's workers each hold one);
/// see [`AppHandle::deliverer`].
#[derive(Debug, Clone)]
pub struct AppDeliverer(Arc<Shared>);

impl AppDeliverer {
    /// Queue `delivery` for the connection registered as `app`. Never blocks: returns
    /// `false` (and counts it) when no connection holds `app` or its queue is full.
    pub fn deliver(&self, app: u32, delivery: Delivery) -> bool {
        self.0.deliver(app, delivery)
    }
}

impl AppHandle {
    /// A handle that delivers to this server's apps from any thread.
    pub fn deliverer(&self) -> AppDeliverer {
        AppDeliverer(Arc::clone(&self.shared))
    }

    /// Queue `delivery` for the connection registered as `app`. Never blocks: returns
    /// `false` (and counts it) when no connection holds `app` or its queue is full.
    pub fn deliver(&self, app: u32, delivery: Delivery) -> bool {
        self.shared.deliver(app, delivery)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> AppServerCounters {
        let t = &self.shared.totals;
        let per_app = self
            .shared
            .routes()
            .iter()
            .map(|(&app, r)| (app, r.counters))
            .collect();
        AppServerCounters {
            connections_accepted: t.accepted.load(Ordering::Relaxed),
            connections_refused: t.refused.load(Ordering::Relaxed),
            connections_open: self.shared.open.load(Ordering::Relaxed) as u64,
            protocol_errors: t.protocol_errors.load(Ordering::Relaxed),
            deliveries_queued: t.queued.load(Ordering::Relaxed),
            deliveries_dropped_queue_full: t.dropped_full.load(Ordering::Relaxed),
            deliveries_dropped_no_app: t.dropped_no_app.load(Ordering::Relaxed),
            per_app,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.socket.path
    }
}

impl Drop for AppHandle {
    fn drop(&mut self) {
        self.accept.abort();
        // Remove the file now rather than when the aborted task is dropped, so a client
        // (or a new node) sees the server gone as soon as the handle is.
        self.shared.socket.remove();
    }
}

/// State shared by the handle and the tasks.
#[derive(Debug)]
struct Shared {
    socket: SocketFile,
    node: Address,
    queue_len: usize,
    max_connections: usize,
    /// App id → the connection the node accepted for it.
    routes: Mutex<HashMap<u32, Route>>,
    next_conn: AtomicU64,
    open: AtomicUsize,
    totals: Totals,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, HashMap<u32, Route>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(&self, app: u32, delivery: Delivery) -> bool {
        let totals = &self.totals;
        let mut routes = self.routes();
        let Some(route) = routes.get_mut(&app) else {
            totals.dropped_no_app.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match route.tx.try_send(NodeFrame::Delivery(delivery)) {
            Ok(()) => {
                route.counters.deliveries_queued += 1;
                totals.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                route.counters.deliveries_dropped_queue_full += 1;
                totals.dropped_full.fetch_add(1, Ordering::Relaxed);
                let dropped = route.counters.deliveries_dropped_queue_full;
                if dropped.is_power_of_two() {
                    tracing::warn!(app, dropped, "app queue full: deliveries dropped");
                }
                false
            }
            // The connection is closing; its route goes away in a moment.
            Err(TrySendError::Closed(_)) => {
                totals.dropped_no_app.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    accepted: AtomicU64,
    refused: AtomicU64,
    protocol_errors: AtomicU64,
    queued: AtomicU64,
    dropped_full: AtomicU64,
    dropped_no_app: AtomicU64,
}

#[derive(Debug)]
struct Route {
    tx: mpsc::Sender<NodeFrame>,
    counters: AppConnCounters,
}

/// The socket file this server created, identified by inode so that a file someone else
/// put at the same path later is never removed. Removed on drop.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    removed: AtomicBool,
}

impl SocketFile {
    fn claim(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            removed: AtomicBool::new(false),
        })
    }

    fn remove(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = fs::remove_file(&self.path)
        {
            tracing::warn!("cannot remove app socket {}: {e}", self.path.display());
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Bind a Unix socket that appears at `path` already 0600: bound in a private directory
/// beside it, chmod-ed, then renamed into place.
fn bind_private(path: &Path) -> io::Result<StdUnixListener> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".ants-sock-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| {
            context(
                e,
                format_args!("cannot create a private directory in {}", parent.display()),
            )
        })?;
    let staged = private.path().join("s");
    let listener = StdUnixListener::bind(&staged)
        .map_err(|e| context(e, format_args!("cannot bind app socket {}", path.display())))?;
    fs::set_permissions(&staged, Permissions::from_mode(0o600)).map_err(|e| {
        context(
            e,
            format_args!("cannot chmod 0600 app socket {}", path.display()),
        )
    })?;
    fs::rename(&staged, path).map_err(|e| {
        context(
            e,
            format_args!("cannot move app socket into place at {}", path.display()),
        )
    })?;
    Ok(listener)
}

fn context(e: io::Error, what: fmt::Arguments<'_>) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(context(
                e,
                format_args!("cannot inspect {}", path.display()),
            ));
        }
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it (choose another [node] app_socket)",
                path.display()
            ),
        ));
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is serving apps on {} (is another node running?)",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale app socket {}", path.display());
            fs::remove_file(path).map_err(|e| {
                context(
                    e,
                    format_args!("cannot remove stale app socket {}", path.display()),
                )
            })
        }
        Err(e) => Err(context(
            e,
            format_args!("cannot tell whether {} is in use", path.display()),
        )),
    }
}

async fn accept_loop(
    listener: StdUnixListener,
    shared: Arc<Shared>,
    to_node: mpsc::Sender<AppRequest>,
    mut shutdown: watch::Receiver<()>,
) {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("app socket {}: {e}", shared.socket.path.display());
            shared.socket.remove();
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: wait for descriptors to free up instead of spinning.
                tracing::warn!("app socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        shared.totals.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.open.load(Ordering::Relaxed) >= shared.max_connections {
            shared.totals.refused.fetch_add(1, Ordering::Relaxed);
            let message = format!(
                "too many app connections (limit {})",
                shared.max_connections
            );
            tokio::spawn(refuse(stream, message));
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let conn = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        tracing::debug!("app connection {conn} accepted");
        tokio::spawn(serve_connection(
            stream,
            conn,
            Arc::clone(&shared),
            to_node.clone(),
            shutdown.clone(),
        ));
    }
    shared.socket.remove();
}

async fn refuse(mut stream: tokio::net::UnixStream, message: String) {
    if let Ok(bytes) = (NodeFrame::Error { message }).to_bytes() {
        let _ = tokio::time::timeout(WRITER_LINGER, stream.write_all(&bytes)).await;
    }
}

/// Why a connection's reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The app closed the connection or it failed.
    Closed,
    /// The app sent something malformed; an `Error` frame was queued.
    Protocol,
    /// The node loop is gone.
    NodeGone,
    /// The handle was dropped.
    Shutdown,
}

async fn serve_connection(
    stream: tokio::net::UnixStream,
    conn: ConnId,
    shared: Arc<Shared>,
    to_node: mpsc::Sender<AppRequest>,
    mut shutdown: watch::Receiver<()>,
) {
    let (rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel(shared.queue_len);
    let mut writer = tokio::spawn(write_frames(wr, out_rx));
    let mut session = Session {
        conn,
        app: None,
        shared: Arc::clone(&shared),
        to_node,
        out,
    };
    let end = tokio::select! {
        end = session.read_loop(rd) => end,
        _ = shutdown.changed() => End::Shutdown,
    };
    tracing::debug!("app connection {conn} ends: {end:?}");
    session.close(end == End::Shutdown).await;
    drop(session);
    // The writer ends once it has flushed what is queued (all senders are gone now).
    if end == End::Shutdown
        || tokio::time::timeout(WRITER_LINGER, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
}

/// Write queued frames, batching what is already queued into one `write`.
async fn write_frames(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<NodeFrame>) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        let mut frames = 0;
        while let Some(frame) = next.take() {
            if let Err(e) = frame.encode(&mut buf) {
                tracing::warn!("app frame not sent: {e}");
            }
            frames += 1;
            if frames < WRITE_BATCH_FRAMES && buf.len() < WRITE_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        if buf.capacity() > WRITE_BATCH_BYTES * 2 {
            buf = Vec::new();
        }
    }
}

/// One connection's reader side: its registration and its requests to the node.
struct Session {
    conn: ConnId,
    app: Option<u32>,
    shared: Arc<Shared>,
    to_node: mpsc::Sender<AppRequest>,
    out: mpsc::Sender<NodeFrame>,
}

/// Reading a frame failed.
enum ReadError {
    Io,
    Decode(DecodeError),
}

impl Session {
    async fn read_loop(&mut self, rd: OwnedReadHalf) -> End {
        let mut rd = BufReader::new(rd);
        let mut buf = Vec::new();
        loop {
            let frame = match read_frame(&mut rd, &mut buf).await {
                Ok(Some(f)) => f,
                Ok(None) | Err(ReadError::Io) => return End::Closed,
                Err(ReadError::Decode(e)) => {
                    self.shared
                        .totals
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("app connection {}: {e}", self.conn);
                    let _ = self.reply_error(format!("{e}; closing")).await;
                    return End::Protocol;
                }
            };
            if let Err(end) = self.handle(frame).await {
                return end;
            }
        }
    }

    async fn handle(&mut self, frame: AppFrame) -> Result<(), End> {
        match frame {
            AppFrame::Ping => self.reply(NodeFrame::Pong).await,
            AppFrame::Stats => {
                let r = self.ask(|reply| AppRequest::Stats { reply }).await?;
                self.answer(r, |json| NodeFrame::Stats { json }).await
            }
            AppFrame::Evict { capsule_type } => {
                let ty = capsule_type;
                let r = self.ask(|reply| AppRequest::Evict { ty, reply }).await?;
                self.answer(r, |removed| NodeFrame::Evicted {
                    capsule_type,
                    removed,
                })
                .await
            }
            AppFrame::Capture => {
                // On `Ok` the node has queued `CaptureStarted` itself, ahead of any datagram.
                let out = self.out.clone();
                match self.ask(|reply| AppRequest::Capture { out, reply }).await? {
                    Ok(()) => Ok(()),
                    Err(message) => self.reply_error(message).await,
                }
            }
            AppFrame::StoreDump { capsule_type } => {
                let ty = capsule_type;
                let r = self
                    .ask(|reply| AppRequest::StoreDump { ty, reply })
                    .await?;
                self.answer(r, |v| NodeFrame::StoreDump {
                    json: v.to_string(),
                })
                .await
            }
            AppFrame::Traces { id } => {
                let r = self.ask(|reply| AppRequest::Traces { id, reply }).await?;
                self.answer(r, |v| NodeFrame::Traces {
                    json: v.to_string(),
                })
                .await
            }
            AppFrame::Reload => {
                let r = self.ask(|reply| AppRequest::Reload { reply }).await?;
                self.answer(r, |text| NodeFrame::Reloaded { text }).await
            }
            AppFrame::Register { app, accept } => self.register(app, accept).await,
            AppFrame::Inject(inject) => {
                let Some(app) = self.app else {
                    return self
                        .reply_error("register an app id before injecting".to_owned())
                        .await;
                };
                let r = self
                    .ask(|reply| AppRequest::Inject { app, inject, reply })
                    .await?;
                self.answer(r, |capsule_type| NodeFrame::Injected { capsule_type })
                    .await
            }
        }
    }

    /// Reply with the node's answer as `frame`, or with an `Error` naming why not.
    async fn answer<T>(
        &mut self,
        r: Result<T, String>,
        frame: impl FnOnce(T) -> NodeFrame,
    ) -> Result<(), End> {
        match r {
            Ok(v) => self.reply(frame(v)).await,
            Err(message) => self.reply_error(message).await,
        }
    }

    async fn register(&mut self, app: u32, accept: Vec<CapsuleType>) -> Result<(), End> {
        if let Some(current) = self.app {
            return self
                .reply_error(format!(
                    "this connection is already registered as app {current}"
                ))
                .await;
        }
        let conn = self.conn;
        match self
            .ask(|reply| AppRequest::Register {
                app,
                accept,
                conn,
                reply,
            })
            .await?
        {
            Err(message) => self.reply_error(message).await,
            Ok(()) => {
                // From now on the node holds the id for us: `close` must release it.
                self.app = Some(app);
                // `Registered` goes on the queue before any delivery can.
                self.reply(NodeFrame::Registered {
                    app,
                    node: self.shared.node,
                })
                .await?;
                let route = Route {
                    tx: self.out.clone(),
                    counters: AppConnCounters {
                        conn,
                        ..AppConnCounters::default()
                    },
                };
                self.shared.routes().insert(app, route);
                tracing::debug!("app {app} registered on {conn}");
                Ok(())
            }
        }
    }

    /// Send a request to the node loop and wait for its answer.
    async fn ask<T>(
        &mut self,
        request: impl FnOnce(oneshot::Sender<Result<T, String>>) -> AppRequest,
    ) -> Result<Result<T, String>, End> {
        let (tx, rx) = oneshot::channel();
        if self.to_node.send(request(tx)).await.is_err() {
            let _ = self
                .reply_error("the node is shutting down".to_owned())
                .await;
            return Err(End::NodeGone);
        }
        Ok(rx
            .await
            .unwrap_or_else(|_| Err("the node dropped the request".to_owned())))
    }

    async fn reply(&self, frame: NodeFrame) -> Result<(), End> {
        // Waits while the queue is full: back-pressure on this app only.
        self.out.send(frame).await.map_err(|_| End::Closed)
    }

    async fn reply_error(&self, message: String) -> Result<(), End> {
        self.reply(NodeFrame::Error { message }).await
    }

    /// Forget the route and tell the node the id is free.
    async fn close(&mut self, shutting_down: bool) {
        let Some(app) = self.app.take() else {
            return;
        };
        {
            let mut routes = self.shared.routes();
            if routes
                .get(&app)
                .is_some_and(|r| r.counters.conn == self.conn)
            {
                routes.remove(&app);
            }
        }
        let msg = AppRequest::Disconnected { app };
        if shutting_down {
            // The node loop may be stopping too: do not wait for it.
            let _ = self.to_node.try_send(msg);
        } else {
            let _ = self.to_node.send(msg).await;
        }
    }
}

/// The next frame, or `None` at a clean end of stream (between frames).
async fn read_frame(
    rd: &mut BufReader<OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> Result<Option<AppFrame>, ReadError> {
    let mut prefix = [0u8; proto::LEN_PREFIX];
    match rd.read(&mut prefix[..1]).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(_) => return Err(ReadError::Io),
    }
    rd.read_exact(&mut prefix[1..])
        .await
        .map_err(|_| ReadError::Io)?;
    let len = proto::check_frame_len(u32::from_be_bytes(prefix)).map_err(ReadError::Decode)?;
    buf.clear();
    buf.resize(len, 0);
    rd.read_exact(buf).await.map_err(|_| ReadError::Io)?;
    let frame = AppFrame::decode(buf).map_err(ReadError::Decode);
    if buf.capacity() > READ_BUF_KEEP {
        buf.clear();
        buf.shrink_to(READ_BUF_KEEP);
    }
    frame.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::collections::hash_map::Entry;
    use std::io::{Read, Write};

    use ants_app::{AppClient, ClientError, capsule_type_of};

    const NODE: Address = Address([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]);

    #[derive(Debug)]
    enum Seen {
        Injected { app: u32, inject: Inject },
        Disconnected { app: u32 },
    }

    /// A node loop with the registration rules the real one has.
    fn fake_node(mut rx: mpsc::Receiver<AppRequest>, seen: mpsc::UnboundedSender<Seen>) {
        tokio::spawn(async move {
            let mut live = HashMap::new();
            let mut known = HashSet::new();
            while let Some(req) = rx.recv().await {
                match req {
                    AppRequest::Register {
                        app, conn, reply, ..
                    } => {
                        let r = match live.entry(app) {
                            Entry::Occupied(_) => {
                                Err(format!("app id {app} is already registered"))
                            }
                            Entry::Vacant(v) => {
                                v.insert(conn);
                                Ok(())
                            }
                        };
                        let _ = reply.send(r);
                    }
                    AppRequest::Inject { app, inject, reply } => {
                        let r = if !inject.code_matches_type() {
                            Err("module hash does not match capsule_type".to_owned())
                        } else if inject.code.is_none() && !known.contains(&inject.capsule_type) {
                            Err("unknown capsule type and no code given".to_owned())
                        } else {
                            known.insert(inject.capsule_type);
                            Ok(inject.capsule_type)
                        };
                        if r.is_ok() {
                            let _ = seen.send(Seen::Injected { app, inject });
                        }
                        let _ = reply.send(r);
                    }
                    AppRequest::Disconnected { app } => {
                        live.remove(&app);
                        let _ = seen.send(Seen::Disconnected { app });
                    }
                    AppRequest::Stats { reply } => {
                        let _ = reply.send(Ok(format!("{{\"apps\":{}}}", live.len())));
                    }
                    AppRequest::Evict { reply, .. } => {
                        let _ = reply.send(Ok(false));
                    }
                    AppRequest::Capture { reply, .. } => {
                        let _ = reply.send(Err("no captures here".into()));
                    }
                    AppRequest::StoreDump { reply, .. } => {
                        let _ = reply.send(Ok(serde_json::json!({"namespaces": []})));
                    }
                    AppRequest::Traces { reply, .. } => {
                        let _ = reply.send(Ok(serde_json::json!({"traces": []})));
                    }
                    AppRequest::Reload { reply } => {
                        let _ = reply.send(Err("no config file here".into()));
                    }
                    AppRequest::Apply { reply, .. } => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        });
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    async fn connect(path: &Path, app: u32) -> Result<AppClient, ClientError> {
        let path = path.to_owned();
        blocking(move || AppClient::connect_with_timeout(path, app, Duration::from_secs(10))).await
    }

    /// Run `f` on a client on a blocking thread and hand the client back.
    async fn with<T: Send + 'static>(
        mut c: AppClient,
        f: impl FnOnce(&mut AppClient) -> T + Send + 'static,
    ) -> (AppClient, T) {
        blocking(move || {
            let r = f(&mut c);
            (c, r)
        })
        .await
    }

    fn delivery(n: u16) -> Delivery {
        Delivery {
            capsule_type: CapsuleType([7; 32]),
            src: "198.18.0.9".parse().unwrap(),
            dst: NODE,
            prev: "198.18.0.2".parse().unwrap(),
            resource: n,
            header: vec![1, 2, 3],
            payload: vec![0x5a; 4000],
            node_time_ns: u64::from(n),
        }
    }

    /// Wait (in runtime time, letting the server tasks run) until `cond` holds.
    async fn eventually(mut cond: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 10 s");
    }

    const WAIT: Duration = Duration::from_secs(10);
    const BRIEF: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn apps_register_inject_and_receive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let server = AppServer::bind(&path)
            .unwrap()
            .with_node_address(NODE)
            .with_queue_len(8);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (tx, rx) = mpsc::channel(16);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        fake_node(rx, seen_tx);
        let handle = server.run(tx);

        // Registration; one connection per id.
        let a = connect(&path, 1).await.unwrap();
        assert_eq!(a.node(), NODE);
        let e = connect(&path, 1).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the node refused the request: app id 1 is already registered"
        );
        let b = connect(&path, 2).await.unwrap();

        // Inject: forwarded with its code; refusals come back as errors.
        let code = b"\0asm\x01\0\0\0".to_vec();
        let first = Inject::with_code(
            code.clone(),
            "198.18.0.5".parse().unwrap(),
            9,
            vec![1],
            b"x".to_vec(),
        );
        let f2 = first.clone();
        let (a, r) = with(a, move |a| a.inject(&f2)).await;
        assert_eq!(r.unwrap(), capsule_type_of(&code));
        match seen.recv().await.unwrap() {
            Seen::Injected { app, inject } => {
                assert_eq!(app, 1);
                assert_eq!(inject, first);
            }
            other => panic!("unexpected {other:?}"),
        }
        let unknown = Inject {
            code: None,
            capsule_type: CapsuleType([3; 32]),
            ..first.clone()
        };
        let (a, r) = with(a, move |a| a.inject(&unknown)).await;
        assert!(
            matches!(r, Err(ClientError::Refused { message }) if message == "unknown capsule type and no code given")
        );
        let forged = Inject {
            capsule_type: CapsuleType([4; 32]),
            ..first.clone()
        };
        let (a, r) = with(a, move |a| a.inject(&forged)).await;
        assert!(
            matches!(r, Err(ClientError::Refused { message }) if message.contains("hash does not match"))
        );

        // Deliveries go to the connection holding the id, and only there.
        assert!(handle.deliver(2, delivery(2)));
        let (b, r) = with(b, |b| b.recv_timeout(WAIT)).await;
        assert_eq!(r.unwrap(), Some(delivery(2)));
        let (a, r) = with(a, |a| a.recv_timeout(BRIEF)).await;
        assert_eq!(r.unwrap(), None);
        assert!(!handle.deliver(99, delivery(0)));
        assert_eq!(handle.counters().deliveries_dropped_no_app, 1);

        // A delivery that arrives while the app waits for `Injected` is kept for `recv`.
        assert!(handle.deliver(1, delivery(10)));
        let again = Inject {
            code: None,
            ..first.clone()
        };
        let (a, r) = with(a, move |a| {
            let r = a.inject(&again);
            (r, a.queued_deliveries())
        })
        .await;
        assert!(r.0.is_ok());
        assert_eq!(r.1, 1);
        let _ = seen.recv().await;
        let (a, r) = with(a, |a| a.recv_timeout(WAIT)).await;
        assert_eq!(r.unwrap(), Some(delivery(10)));

        // A full queue drops (and counts) without blocking: nothing runs the writer task
        // during this loop, so exactly the queue length gets through.
        let accepted = (0..100).filter(|&n| handle.deliver(1, delivery(n))).count();
        assert_eq!(accepted, 8);
        let c = handle.counters();
        assert_eq!(c.per_app[&1].deliveries_dropped_queue_full, 92);
        assert_eq!(c.deliveries_dropped_queue_full, 92);
        assert_eq!(c.per_app[&1].deliveries_queued, 9);
        assert_eq!(c.per_app[&2].deliveries_queued, 1);
        let (a, got) = with(a, |a| {
            let got: Vec<_> = (0..8)
                .map(|_| a.recv_timeout(WAIT).unwrap().unwrap().resource)
                .collect();
            assert_eq!(a.recv_timeout(BRIEF).unwrap(), None);
            got
        })
        .await;
        assert_eq!(got, (0..8).collect::<Vec<_>>());

        // A closed connection frees its id.
        drop(a);
        match seen.recv().await.unwrap() {
            Seen::Disconnected { app } => assert_eq!(app, 1),
            other => panic!("unexpected {other:?}"),
        }
        let a = connect(&path, 1).await.unwrap();
        assert!(handle.deliver(1, delivery(1)));
        let (a, r) = with(a, |a| a.recv_timeout(WAIT)).await;
        assert_eq!(r.unwrap(), Some(delivery(1)));
        let (b, r) = with(b, |b| b.ping()).await;
        r.unwrap();

        // A malformed frame gets an Error frame, then the connection closes.
        let p = path.clone();
        let reply = blocking(move || {
            let mut s = StdUnixStream::connect(p).unwrap();
            s.write_all(&[0, 0, 0, 1, 0x77]).unwrap();
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        })
        .await;
        let (frame, used) = proto::split_frame(&reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert!(
            matches!(NodeFrame::decode(frame).unwrap(), NodeFrame::Error { message } if message.contains("unknown app-to-node frame type 0x77"))
        );
        assert_eq!(handle.counters().protocol_errors, 1);
        eventually(|| handle.counters().connections_open == 2).await;

        // Dropping the handle removes the socket file and closes the apps.
        drop(handle);
        assert!(!path.exists());
        let (_b, r) = with(b, |b| b.recv_timeout(WAIT)).await;
        assert!(matches!(r, Err(ClientError::Closed)), "{r:?}");
        drop(a);
    }

    #[tokio::test]
    async fn bind_removes_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");

        // Live: refused.
        let live = AppServer::bind(&path).unwrap();
        let e = AppServer::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        // Dropped without running: its file goes too.
        drop(live);
        assert!(!path.exists());

        // Stale (a listener that went away without cleaning up): replaced.
        drop(StdUnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = AppServer::bind(&path).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let handle = server.run(tx);
        drop(handle);
        assert!(!path.exists());

        // Not a socket: left alone.
        fs::write(&path, b"precious").unwrap();
        let e = AppServer::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let server = AppServer::bind(&path).unwrap().with_max_connections(1);
        let (tx, rx) = mpsc::channel(4);
        let (seen_tx, _seen) = mpsc::unbounded_channel();
        fake_node(rx, seen_tx);
        let handle = server.run(tx);
        let _a = connect(&path, 1).await.unwrap();
        let e = connect(&path, 2).await.unwrap_err();
        assert!(
            e.to_string().contains("too many app connections (limit 1)"),
            "{e}"
        );
        assert_eq!(handle.counters().connections_refused, 1);
    }

    #[tokio::test]
    async fn stats_are_answered_with_or_without_a_registration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let server = AppServer::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let (seen_tx, _seen) = mpsc::unbounded_channel();
        fake_node(rx, seen_tx);
        let _handle = server.run(tx);
        let p = path.clone();
        let unregistered =
            blocking(move || ants_app::query_stats(p, Duration::from_secs(10))).await;
        assert_eq!(unregistered.unwrap(), "{\"apps\":0}");
        let a = connect(&path, 3).await.unwrap();
        let (_a, json) = with(a, |c| c.stats()).await;
        assert_eq!(json.unwrap(), "{\"apps\":1}");
    }
}
