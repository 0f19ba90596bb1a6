//! [`AppClient`]: a blocking client for the app socket, for apps and the `ants` CLI.
//!
//! One client is one connection and one app id, optionally restricted to deliveries from a
//! list of capsule types ([`AppClient::connect_accepting`], [`AppClientBuilder::accept`]).
//! Calls are synchronous: [`AppClient::inject`]
//! waits for the node's answer, [`AppClient::recv`] for the next delivery. Deliveries that
//! arrive while the client waits for an answer go to a bounded queue that `recv` empties
//! first; when it is full the newest delivery is dropped and counted
//! ([`AppClient::dropped_deliveries`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ants_wire::{Address, CapsuleType};

use crate::proto::{
    self, AppFrame, Captured, DecodeError, Delivery, EncodeError, Inject, NodeFrame,
};

/// How long a client waits for `Registered`, `Injected` or `Pong` unless told otherwise.
/// Generous: the first inject of a module makes the node compile it.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Deliveries a client holds while it waits for a reply, unless told otherwise.
pub const DEFAULT_QUEUE_LEN: usize = 1024;

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// What can go wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error(
        "cannot connect to {}: {} — is `ants run` running with [node] app_socket set?",
        .path.display(),
        describe_connect_error(.source)
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("app socket I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The node closed the connection.
    #[error("the node closed the app connection")]
    Closed,
    /// The node answered a request with an `Error` frame.
    #[error("the node refused the request: {message}")]
    Refused {
        /// The node's reason.
        message: String,
    },
    /// The node sent an `Error` frame while the client waited for a delivery; the node
    /// closes the connection after such an error.
    #[error("the node reported an error: {message}")]
    NodeError {
        /// The node's reason.
        message: String,
    },
    /// No answer in time. The connection may be out of step afterwards: reconnect.
    #[error("no {waiting_for} from the node within {after:?}")]
    Timeout {
        /// The frame waited for.
        waiting_for: &'static str,
        /// How long.
        after: Duration,
    },
    /// The node sent bytes that are not a valid frame.
    #[error("malformed frame from the node: {0}")]
    Protocol(#[from] DecodeError),
    /// The node sent a valid frame that makes no sense here.
    #[error("unexpected {got} frame from the node while waiting for {waiting_for}")]
    Unexpected {
        /// What arrived.
        got: &'static str,
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// The request cannot be encoded (a field too long).
    #[error("cannot send the request: {0}")]
    Encode(#[from] EncodeError),
}

fn describe_connect_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::ConnectionRefused => {
            "connection refused (a stale socket file: nothing listens on it)".to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (the socket is 0600: run as the node's user)".to_owned()
        }
        _ => e.to_string(),
    }
}

/// The settings of a connection before it is made: app id, accepted capsule types, reply
/// timeout and delivery queue length. Start from [`AppClient::builder`]; the shortcuts
/// [`AppClient::connect`] and [`AppClient::connect_accepting`] cover the common cases.
///
/// ```no_run
/// use std::time::Duration;
/// use ants_app::{AppClient, capsule_type_of};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ping = capsule_type_of(&std::fs::read("ping.wasm")?);
/// let client = AppClient::builder(7)
///     .accept([ping])
///     .reply_timeout(Duration::from_secs(5))
///     .connect("/run/ants/app.sock")?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AppClientBuilder {
    app: u32,
    accept: Vec<CapsuleType>,
    reply_timeout: Duration,
    queue_len: usize,
}

impl AppClientBuilder {
    /// Add capsule types allowed to deliver to this app. With none added (the default) the
    /// node delivers capsules of any type; with some, only those types. At most
    /// [`MAX_ACCEPT_TYPES`](proto::MAX_ACCEPT_TYPES) in all, repeats included: more makes
    /// [`connect`](Self::connect) fail with [`ClientError::Encode`] before anything is sent.
    pub fn accept(mut self, types: impl IntoIterator<Item = CapsuleType>) -> Self {
        self.accept.extend(types);
        self
    }

    /// How long `connect` and every later request wait for the node's answer
    /// ([`DEFAULT_REPLY_TIMEOUT`] unless set).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// How many deliveries to hold while waiting for an answer, at least 1
    /// ([`DEFAULT_QUEUE_LEN`] unless set; see [`AppClient::set_queue_len`]).
    pub fn queue_len(mut self, len: usize) -> Self {
        self.queue_len = len.max(1);
        self
    }

    /// Connect to the node at `path` and register, waiting for the node's answer.
    ///
    /// Fails with [`ClientError::Refused`] if the node refuses the registration (e.g. another
    /// connection holds the id).
    pub fn connect(self, path: impl AsRef<Path>) -> Result<AppClient, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let app = self.app;
        let mut client = AppClient {
            stream,
            app,
            accept: self.accept,
            node: Address::UNSPECIFIED,
            rbuf: Vec::new(),
            queue: VecDeque::new(),
            queue_len: self.queue_len,
            dropped: 0,
            reply_timeout: self.reply_timeout,
        };
        client.send(&AppFrame::Register {
            app,
            accept: client.accept.clone(),
        })?;
        let node = client.await_reply("Registered", |f| match f {
            NodeFrame::Registered { app: a, node } if a == app => Ok(Some(node)),
            NodeFrame::Registered { .. } => Err(ClientError::Unexpected {
                got: "Registered (for another app id)",
                waiting_for: "Registered",
            }),
            other => Err(unexpected(&other, "Registered")),
        })?;
        client.node = node;
        Ok(client)
    }
}

/// Ask the node at `path` for its counters without registering an app id — what
/// `ants status` and `ants drops` do: one `Stats` request, its answer within `timeout`.
pub fn query_stats(path: impl AsRef<Path>, timeout: Duration) -> Result<String, ClientError> {
    unregistered(path.as_ref(), timeout)?.stats()
}

/// Ask the node at `path` to drop `capsule_type`'s module without registering an app id
/// (`ants modules --evict`); whether it had it.
pub fn evict_module(
    path: impl AsRef<Path>,
    capsule_type: CapsuleType,
    timeout: Duration,
) -> Result<bool, ClientError> {
    unregistered(path.as_ref(), timeout)?.evict(capsule_type)
}

/// Ask the node at `path` for its soft-store's entries (of one namespace, or all) without
/// registering an app id (`ants store dump`).
pub fn store_dump(
    path: impl AsRef<Path>,
    capsule_type: Option<CapsuleType>,
    timeout: Duration,
) -> Result<String, ClientError> {
    unregistered(path.as_ref(), timeout)?.store_dump(capsule_type)
}

/// Ask the node at `path` for the traces it started (`None`: the list; `Some(id)`: one
/// trace with its events) without registering an app id (`ants trace`).
pub fn traces(
    path: impl AsRef<Path>,
    id: Option<u64>,
    timeout: Duration,
) -> Result<String, ClientError> {
    let mut client = unregistered(path.as_ref(), timeout)?;
    client.send(&AppFrame::Traces { id })?;
    client.await_reply("Traces", |f| match f {
        NodeFrame::Traces { json } => Ok(Some(json)),
        other => Err(unexpected(&other, "Traces")),
    })
}

/// Ask the node at `path` to read its config file again (`ants reload`): what it applied
/// and what needs a restart; a bad file is an `Error` reply with the file's first error.
pub fn reload(path: impl AsRef<Path>, timeout: Duration) -> Result<String, ClientError> {
    let mut client = unregistered(path.as_ref(), timeout)?;
    client.send(&AppFrame::Reload)?;
    client.await_reply("Reloaded", |f| match f {
        NodeFrame::Reloaded { text } => Ok(Some(text)),
        other => Err(unexpected(&other, "Reloaded")),
    })
}

/// Start capturing the node's datagrams (`ants capture`): a [`Capture`] that yields them.
pub fn capture(path: impl AsRef<Path>, timeout: Duration) -> Result<Capture, ClientError> {
    let mut client = unregistered(path.as_ref(), timeout)?;
    client.send(&AppFrame::Capture)?;
    client.await_reply("CaptureStarted", |f| match f {
        NodeFrame::CaptureStarted => Ok(Some(())),
        other => Err(unexpected(&other, "CaptureStarted")),
    })?;
    Ok(Capture { client })
}

/// A running capture; dropping it (closing the connection) ends it at the node.
#[derive(Debug)]
pub struct Capture {
    client: AppClient,
}

impl Capture {
    /// The next captured datagram, waiting up to `timeout` (`None` = forever); `Ok(None)`
    /// when the time ran out.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Captured>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        match self.client.next_frame(deadline)? {
            None => Ok(None),
            Some(NodeFrame::Captured(c)) => Ok(Some(c)),
            Some(NodeFrame::Error { message }) => Err(ClientError::NodeError { message }),
            Some(other) => Err(unexpected(&other, "Captured")),
        }
    }
}

/// A connection that has not claimed an app id, for the requests that need none.
fn unregistered(path: &Path, timeout: Duration) -> Result<AppClient, ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_owned(),
        source,
    })?;
    let client = AppClient {
        stream,
        app: u32::MAX,
        accept: Vec::new(),
        node: Address::UNSPECIFIED,
        rbuf: Vec::new(),
        queue: VecDeque::new(),
        queue_len: DEFAULT_QUEUE_LEN,
        dropped: 0,
        reply_timeout: timeout,
    };
    Ok(client)
}

/// A blocking connection to the local node's app socket, registered as one app id.
#[derive(Debug)]
pub struct AppClient {
    stream: UnixStream,
    app: u32,
    /// The capsule types registered as accepted; empty = any.
    accept: Vec<CapsuleType>,
    node: Address,
    /// Bytes read but not yet decoded (at most one partial frame after each decode).
    rbuf: Vec<u8>,
    queue: VecDeque<Delivery>,
    queue_len: usize,
    dropped: u64,
    reply_timeout: Duration,
}

impl AppClient {
    /// Settings for a connection registered as `app`, accepting any capsule type, with the
    /// default reply timeout and queue length.
    pub fn builder(app: u32) -> AppClientBuilder {
        AppClientBuilder {
            app,
            accept: Vec::new(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            queue_len: DEFAULT_QUEUE_LEN,
        }
    }

    /// Connect to the node at `path` and register `app` for deliveries from capsules of any
    /// type, waiting up to [`DEFAULT_REPLY_TIMEOUT`] for the node's answer.
    ///
    /// Fails with [`ClientError::Refused`] if the node refuses the id (e.g. another
    /// connection holds it).
    pub fn connect(path: impl AsRef<Path>, app: u32) -> Result<AppClient, ClientError> {
        Self::builder(app).connect(path)
    }

    /// [`AppClient::connect`] with a reply timeout for this and every later request.
    pub fn connect_with_timeout(
        path: impl AsRef<Path>,
        app: u32,
        reply_timeout: Duration,
    ) -> Result<AppClient, ClientError> {
        Self::builder(app)
            .reply_timeout(reply_timeout)
            .connect(path)
    }

    /// [`AppClient::connect`], but the node delivers to `app` only capsules whose type is in
    /// `accept` (an empty slice accepts any type, like `connect`). At most
    /// [`MAX_ACCEPT_TYPES`](proto::MAX_ACCEPT_TYPES) types, else [`ClientError::Encode`].
    pub fn connect_accepting(
        path: impl AsRef<Path>,
        app: u32,
        accept: &[CapsuleType],
    ) -> Result<AppClient, ClientError> {
        Self::builder(app)
            .accept(accept.iter().copied())
            .connect(path)
    }

    /// The node's active address: the `src` of every capsule this app injects.
    pub fn node(&self) -> Address {
        self.node
    }

    /// This connection's app id.
    pub fn app(&self) -> u32 {
        self.app
    }

    /// The capsule types registered as allowed to deliver to this app, as given; empty means
    /// any type.
    pub fn accepted_types(&self) -> &[CapsuleType] {
        &self.accept
    }

    /// How long requests wait for the node's answer.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// How many deliveries to hold while waiting for an answer (at least 1).
    pub fn set_queue_len(&mut self, len: usize) {
        self.queue_len = len.max(1);
    }

    /// Deliveries dropped because the queue was full while this client waited for an answer.
    pub fn dropped_deliveries(&self) -> u64 {
        self.dropped
    }

    /// Deliveries received and not yet returned by `recv`.
    pub fn queued_deliveries(&self) -> usize {
        self.queue.len()
    }

    /// Hand a capsule to the node and wait until it accepts or refuses it. Returns the
    /// capsule type the node confirmed.
    ///
    /// Attach the module (`inject.code`) the first time a type is sent from this node; the
    /// node keeps it, runs it, and serves it to nodes downstream that ask for it.
    pub fn inject(&mut self, inject: &Inject) -> Result<CapsuleType, ClientError> {
        self.send(&AppFrame::Inject(inject.clone()))?;
        let want = inject.capsule_type;
        self.await_reply("Injected", |f| match f {
            NodeFrame::Injected { capsule_type } if capsule_type == want => Ok(Some(want)),
            // A late answer to an earlier, timed-out inject of another type.
            NodeFrame::Injected { capsule_type } => {
                tracing::debug!(
                    "ignoring stale Injected for {} while waiting for {}",
                    capsule_type.short(),
                    want.short()
                );
                Ok(None)
            }
            other => Err(unexpected(&other, "Injected")),
        })
    }

    /// The node's counters, as one JSON object (the form of `ants run --stats-json`).
    pub fn stats(&mut self) -> Result<String, ClientError> {
        self.send(&AppFrame::Stats)?;
        self.await_reply("Stats", |f| match f {
            NodeFrame::Stats { json } => Ok(Some(json)),
            other => Err(unexpected(&other, "Stats")),
        })
    }

    /// Ask the node to drop `capsule_type`'s module; whether it had it.
    pub fn evict(&mut self, capsule_type: CapsuleType) -> Result<bool, ClientError> {
        self.send(&AppFrame::Evict { capsule_type })?;
        self.await_reply("Evicted", |f| match f {
            NodeFrame::Evicted {
                capsule_type: t,
                removed,
            } if t == capsule_type => Ok(Some(removed)),
            other => Err(unexpected(&other, "Evicted")),
        })
    }

    /// The soft-store's entries (of one namespace, or all) as one JSON object.
    pub fn store_dump(&mut self, capsule_type: Option<CapsuleType>) -> Result<String, ClientError> {
        self.send(&AppFrame::StoreDump { capsule_type })?;
        self.await_reply("StoreDump", |f| match f {
            NodeFrame::StoreDump { json } => Ok(Some(json)),
            other => Err(unexpected(&other, "StoreDump")),
        })
    }

    /// Check that the node answers.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.send(&AppFrame::Ping)?;
        self.await_reply("Pong", |f| match f {
            NodeFrame::Pong => Ok(Some(())),
            other => Err(unexpected(&other, "Pong")),
        })
    }

    /// The next delivery, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<Delivery, ClientError> {
        loop {
            if let Some(d) = self.recv_until(None)? {
                return Ok(d);
            }
        }
    }

    /// The next delivery, or `None` if none arrives within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, ClientError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<Delivery>, ClientError> {
        if let Some(d) = self.queue.pop_front() {
            return Ok(Some(d));
        }
        loop {
            match self.next_frame(deadline)? {
                None => return Ok(None),
                Some(NodeFrame::Delivery(d)) => return Ok(Some(d)),
                Some(NodeFrame::Error { message }) => {
                    return Err(ClientError::NodeError { message });
                }
                // Late answers to requests that timed out.
                Some(
                    NodeFrame::Pong
                    | NodeFrame::Injected { .. }
                    | NodeFrame::Stats { .. }
                    | NodeFrame::Evicted { .. }
                    | NodeFrame::StoreDump { .. }
                    | NodeFrame::CaptureStarted
                    | NodeFrame::Captured(_),
                ) => {}
                Some(other) => return Err(unexpected(&other, "a delivery")),
            }
        }
    }

    fn send(&mut self, frame: &AppFrame) -> Result<(), ClientError> {
        let bytes = frame.to_bytes()?;
        match self.stream.write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(self.error_left_by_node().unwrap_or(ClientError::Closed))
            }
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    /// After the node closed the connection: the `Error` frame it sent first, if any
    /// (e.g. "too many app connections" arrives before the client's first write fails).
    fn error_left_by_node(&mut self) -> Option<ClientError> {
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            match self.next_frame(Some(deadline)) {
                Ok(Some(NodeFrame::Error { message })) => {
                    return Some(ClientError::Refused { message });
                }
                Ok(Some(NodeFrame::Delivery(d))) => self.enqueue(d),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Read frames until `accept` returns a value, queueing deliveries; an `Error` frame is
    /// the node's refusal.
    fn await_reply<T>(
        &mut self,
        waiting_for: &'static str,
        mut accept: impl FnMut(NodeFrame) -> Result<Option<T>, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.reply_timeout;
        let dropped_before = self.dropped;
        let result = loop {
            match self.next_frame(Some(deadline))? {
                None => {
                    break Err(ClientError::Timeout {
                        waiting_for,
                        after: self.reply_timeout,
                    });
                }
                Some(NodeFrame::Delivery(d)) => self.enqueue(d),
                Some(NodeFrame::Error { message }) => break Err(ClientError::Refused { message }),
                Some(frame) => {
                    if let Some(v) = accept(frame)? {
                        break Ok(v);
                    }
                }
            }
        };
        if self.dropped > dropped_before {
            tracing::warn!(
                app = self.app,
                dropped = self.dropped - dropped_before,
                total = self.dropped,
                "delivery queue full while waiting for {waiting_for}: deliveries dropped"
            );
        }
        result
    }

    fn enqueue(&mut self, d: Delivery) {
        if self.queue.len() < self.queue_len {
            self.queue.push_back(d);
        } else {
            self.dropped += 1;
        }
    }

    /// The next frame, or `None` once `deadline` passes. Partial frames stay buffered, so a
    /// timeout never puts the stream out of step.
    fn next_frame(&mut self, deadline: Option<Instant>) -> Result<Option<NodeFrame>, ClientError> {
        loop {
            let parsed = match proto::split_frame(&self.rbuf)? {
                Some((frame, used)) => Some((NodeFrame::decode(frame)?, used)),
                None => None,
            };
            if let Some((frame, used)) = parsed {
                self.rbuf.drain(..used);
                return Ok(Some(frame));
            }
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    // A zero read timeout is an error for the OS: wait at least 1 ms.
                    Some(left) if !left.is_zero() => Some(left.max(Duration::from_millis(1))),
                    _ => return Ok(None),
                },
            };
            self.stream.set_read_timeout(timeout)?;
            let old = self.rbuf.len();
            self.rbuf.resize(old + READ_CHUNK, 0);
            let r = self.stream.read(&mut self.rbuf[old..]);
            self.rbuf.truncate(old + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => return Err(ClientError::Closed),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed);
                }
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }
}

fn frame_name(f: &NodeFrame) -> &'static str {
    match f {
        NodeFrame::Registered { .. } => "Registered",
        NodeFrame::Delivery(_) => "Delivery",
        NodeFrame::Injected { .. } => "Injected",
        NodeFrame::Error { .. } => "Error",
        NodeFrame::Pong => "Pong",
        NodeFrame::Stats { .. } => "Stats",
        NodeFrame::Evicted { .. } => "Evicted",
        NodeFrame::StoreDump { .. } => "StoreDump",
        NodeFrame::Traces { .. } => "Traces",
        NodeFrame::Reloaded { .. } => "Reloaded",
        NodeFrame::CaptureStarted => "CaptureStarted",
        NodeFrame::Captured(_) => "Captured",
    }
}

fn unexpected(f: &NodeFrame, waiting_for: &'static str) -> ClientError {
    ClientError::Unexpected {
        got: frame_name(f),
        waiting_for,
    }
}

#[cfg(test)]
mod tests;
