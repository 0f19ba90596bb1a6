//! The app-socket protocol: length-prefixed frames between local apps and their node.
//!
//! - [`AppFrame`]: what an app sends (`Register`, optionally with the capsule types it
//!   accepts deliveries from, `Inject`, `Ping`, `Stats`).
//! - [`NodeFrame`]: what the node sends (`Registered`, `Delivery`, `Injected`, `Error`, `Pong`,
//!   `Stats`).
//! - [`Inject`] and [`Delivery`]: the capsule-carrying bodies, with conversions to and from
//!   [`CapsuleRepr`].
//! - [`split_frame`] / [`check_frame_len`]: find one frame in a byte stream.
//!
//! Every frame on the stream is
//!
//! ```text
//!  0            4            5
//!  | length L   | frame type | body (L - 1 bytes) |
//!  | u32 BE     | u8         |                    |
//! ```
//!
//! `1 ≤ L ≤` [`MAX_FRAME_LEN`]; `L` counts the type byte and the body, not itself. All
//! integers are big-endian and every body length is exact: a short body or trailing bytes is a
//! [`DecodeError`]. Decoding never panics, whatever the bytes. The byte layout of each body
//! is in `docs/apps.md`.

use std::fmt;

use ants_wire::{Address, CapsuleRepr, CapsuleType};
use sha2::{Digest, Sha256};

/// Largest value of the length prefix: a module (1 MiB) plus a capsule (64 KiB).
pub const MAX_FRAME_LEN: usize = 1024 * 1024 + 64 * 1024;

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// Frame type bytes. App → node types have the top bit clear, node → app types have it set.
pub mod frame_type {
    /// App → node: claim an app id.
    pub const REGISTER: u8 = 0x01;
    /// App → node: send a capsule (and, the first time, its module).
    pub const INJECT: u8 = 0x02;
    /// App → node: liveness check.
    pub const PING: u8 = 0x03;
    /// App → node: the node's counters, please (allowed before registering).
    pub const STATS: u8 = 0x04;
    /// App → node: drop a capsule type's module from memory and the code directory
    /// (allowed before registering; the socket is the node owner's).
    pub const EVICT: u8 = 0x05;
    /// App → node: the soft-store's entries, of one type or all (allowed before
    /// registering).
    pub const STORE_DUMP: u8 = 0x06;
    /// App → node: stream copies of the datagrams the node sends and receives (allowed
    /// before registering; one capture at a time).
    pub const CAPTURE: u8 = 0x07;
    /// App → node: the traces this node started, or one of them with its events (allowed
    /// before registering).
    pub const TRACES: u8 = 0x08;
    /// App → node: read the config file again and apply what can change in place (allowed
    /// before registering; `ants reload`).
    pub const RELOAD: u8 = 0x09;
    /// Node → app: the registration succeeded.
    pub const REGISTERED: u8 = 0x81;
    /// Node → app: a capsule delivered to this app id.
    pub const DELIVERY: u8 = 0x82;
    /// Node → app: the injected capsule was accepted.
    pub const INJECTED: u8 = 0x83;
    /// Node → app: a request was refused, or the connection is about to close.
    pub const ERROR: u8 = 0x84;
    /// Node → app: answer to `Ping`.
    pub const PONG: u8 = 0x85;
    /// Node → app: answer to `Stats`: the counters as one JSON object (UTF-8).
    pub const STATS_REPLY: u8 = 0x86;
    /// Node → app: answer to `Evict`: the type, and whether the node had anything of it.
    pub const EVICTED: u8 = 0x87;
    /// Node → app: answer to `StoreDump`: the entries as one JSON object (UTF-8).
    pub const STORE_DUMP_REPLY: u8 = 0x88;
    /// Node → app: a datagram the node sent or received (after `Capture`).
    pub const CAPTURED: u8 = 0x89;
    /// Node → app: the capture has started; `Captured` frames follow.
    pub const CAPTURE_STARTED: u8 = 0x8a;
    /// Node → app: answer to `Traces`: one JSON object (UTF-8).
    pub const TRACES_REPLY: u8 = 0x8b;
    /// Node → app: answer to `Reload`: what changed and what needs a restart (UTF-8).
    pub const RELOADED: u8 = 0x8c;
}

/// Most capsule types a `Register` may list as accepted.
///
/// The node keeps each app's list for as long as the app is connected and checks it on every
/// delivery, so it must stay small; 64 types (a 2 KiB list) is far more than one app speaks,
/// and an app that wants more can accept any type and filter deliveries itself.
pub const MAX_ACCEPT_TYPES: usize = 64;

/// `Inject` flag bit: a module follows (`code` is `Some`).
pub const INJECT_FLAG_CODE: u8 = 0x01;
/// `Inject` flag bit: trace the capsule; an 8-byte trace id follows the fixed part (0: the
/// node picks one).
pub const INJECT_FLAG_TRACE: u8 = 0x02;

/// A `Register` body without an accept list (the original frame): the app id alone.
const REGISTER_ANY: usize = 4;
/// Fixed part of a `Register` body with an accept list: app id and type count.
const REGISTER_LIST_FIXED: usize = 6;
/// Fixed part of an `Inject` body.
const INJECT_FIXED: usize = 59;
/// Fixed part of a `Delivery` body.
const DELIVERY_FIXED: usize = 94;

/// Why a frame could not be decoded. The connection cannot continue after
/// [`FrameTooLong`](DecodeError::FrameTooLong) or [`EmptyFrame`](DecodeError::EmptyFrame)
/// (the stream is out of step); after the others the peer is misbehaving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes is longer than the {max}-byte limit")]
    FrameTooLong {
        /// The announced length.
        len: u64,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The length prefix is 0: not even a type byte.
    #[error("empty frame (length 0, no frame type)")]
    EmptyFrame,
    /// A frame type this direction does not use.
    #[error("unknown {direction} frame type 0x{frame_type:02x}")]
    UnknownFrameType {
        /// The type byte.
        frame_type: u8,
        /// `"app-to-node"` or `"node-to-app"`.
        direction: &'static str,
    },
    /// The body ends before a field does.
    #[error("{frame} frame truncated: needs at least {needed} body bytes, has {actual}")]
    Truncated {
        /// Frame name.
        frame: &'static str,
        /// Bytes needed so far.
        needed: usize,
        /// Body length.
        actual: usize,
    },
    /// Bytes left over after the last field.
    #[error("{frame} frame has {extra} trailing bytes")]
    TrailingBytes {
        /// Frame name.
        frame: &'static str,
        /// How many.
        extra: usize,
    },
    /// A boolean byte that is neither 0 nor 1.
    #[error("{frame} frame: {field} is {value}, must be 0 or 1")]
    BadBool {
        /// Frame name.
        frame: &'static str,
        /// Field name.
        field: &'static str,
        /// The byte.
        value: u8,
    },
    /// Unknown flag bits in an `Inject`, or code length without the code flag.
    #[error("inject frame: bad flags 0x{flags:02x} with code length {code_len}")]
    BadInjectFlags {
        /// The flags byte.
        flags: u8,
        /// The code length field.
        code_len: u32,
    },
    /// A `Register` accept list with no types (an empty list is sent as the 4-byte body, so
    /// that every registration has one encoding) or more than [`MAX_ACCEPT_TYPES`].
    #[error(
        "register frame: accept list of {count} capsule types, must be 1 to {max} \
         (leave the list out to accept any type)"
    )]
    BadAcceptCount {
        /// The count field.
        count: u16,
        /// [`MAX_ACCEPT_TYPES`].
        max: usize,
    },
    /// An `Error` message that is not UTF-8.
    #[error("error frame message is not UTF-8")]
    InvalidUtf8,
}

/// Why a frame could not be encoded. Nothing is appended to the buffer in that case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A length field cannot hold the field.
    #[error("{field} is {len} bytes, more than the {max} the frame can carry")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `Register` lists more than [`MAX_ACCEPT_TYPES`] accepted capsule types.
    #[error(
        "accept list of {count} capsule types is longer than the {max} a register frame can carry"
    )]
    TooManyAcceptTypes {
        /// Types in the list.
        count: usize,
        /// [`MAX_ACCEPT_TYPES`].
        max: usize,
    },
    /// The whole frame is longer than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes is longer than the {max}-byte limit")]
    FrameTooLong {
        /// Type byte plus body.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
}

/// Check a length prefix; returns it as `usize` if it may be read.
pub fn check_frame_len(len: u32) -> Result<usize, DecodeError> {
    let n = usize::try_from(len).unwrap_or(usize::MAX);
    if n == 0 {
        Err(DecodeError::EmptyFrame)
    } else if n > MAX_FRAME_LEN {
        Err(DecodeError::FrameTooLong {
            len: u64::from(len),
            max: MAX_FRAME_LEN,
        })
    } else {
        Ok(n)
    }
}

/// Find the first frame in `buf`, a prefix of the byte stream.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((frame, consumed)))` with the
/// frame (type byte + body, ready for [`AppFrame::decode`] / [`NodeFrame::decode`]) and the
/// number of stream bytes it used. A bad length prefix is an error as soon as its 4 bytes
/// are in, before any of the body is buffered.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = check_frame_len(u32::from_be_bytes(*prefix))?;
    let end = LEN_PREFIX + len;
    Ok(buf.get(LEN_PREFIX..end).map(|frame| (frame, end)))
}

/// The SHA-256 of a module: the capsule type of the capsules it forwards.
pub fn capsule_type_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

/// A capsule an app asks its node to send.
///
/// The node fills in what the app may not choose: `src` is the node's own address and `prev`
/// is `::` (see [`Inject::to_repr`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Inject {
    /// The wasm module, sent the first time so the node can run it and serve it to the
    /// nodes downstream. `None` once the node has it.
    pub code: Option<Vec<u8>>,
    /// SHA-256 of the module.
    pub capsule_type: CapsuleType,
    /// Destination active address.
    pub dst: Address,
    /// Network-wide resource budget (decremented on every send).
    pub resource: u16,
    /// Protocol header (at most 65 535 bytes).
    pub header: Vec<u8>,
    /// Payload (at most 65 535 bytes).
    pub payload: Vec<u8>,
    /// Trace the capsule with this id (`ants send --trace`; 0: the node picks one).
    pub trace: Option<u64>,
}

impl Inject {
    /// An inject carrying `code`, with its capsule type computed from it.
    pub fn with_code(
        code: Vec<u8>,
        dst: Address,
        resource: u16,
        header: Vec<u8>,
        payload: Vec<u8>,
    ) -> Inject {
        Inject {
            capsule_type: capsule_type_of(&code),
            code: Some(code),
            dst,
            resource,
            header,
            payload,
            trace: None,
        }
    }

    /// `false` when code is attached and its SHA-256 is not `capsule_type`.
    pub fn code_matches_type(&self) -> bool {
        self.code
            .as_deref()
            .is_none_or(|c| capsule_type_of(c) == self.capsule_type)
    }

    /// The capsule as the node sends it: `src` = the node's address, `prev` = `::`, no flags.
    pub fn to_repr(&self, src: Address) -> CapsuleRepr<'_> {
        CapsuleRepr {
            flags: 0,
            resource: self.resource,
            capsule_type: self.capsule_type,
            src,
            dst: self.dst,
            prev: Address::UNSPECIFIED,
            header: &self.header,
            payload: &self.payload,
            trace: None,
        }
    }

    fn body_len(&self) -> usize {
        INJECT_FIXED
            + if self.trace.is_some() { 8 } else { 0 }
            + self.code.as_ref().map_or(0, Vec::len)
            + self.header.len()
            + self.payload.len()
    }
}

impl fmt::Debug for Inject {
    // Modules are up to a megabyte: print their length, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inject")
            .field("code_len", &self.code.as_ref().map(Vec::len))
            .field("capsule_type", &self.capsule_type)
            .field("dst", &self.dst)
            .field("resource", &self.resource)
            .field("header_len", &self.header.len())
            .field("payload_len", &self.payload.len())
            .field("trace", &self.trace)
            .finish()
    }
}

/// A datagram a node sent or received, streamed to `ants capture`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Node time, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Sent by the node (else received).
    pub outbound: bool,
    /// The other end.
    pub peer: std::net::SocketAddr,
    /// The node's end.
    pub local: std::net::SocketAddr,
    /// Datagrams the node could not hand to this capture since the previous frame (the
    /// connection's queue was full).
    pub lost: u32,
    /// The datagram (UDP payload).
    pub data: Vec<u8>,
}

/// Fixed part of a `Captured` body: time, direction, lost, two endpoints.
const CAPTURED_FIXED: usize = 8 + 1 + 4 + 2 * 18;

fn put_endpoint(w: &mut FrameWriter<'_>, a: &std::net::SocketAddr) {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    w.put(&ip.octets()).put(&a.port().to_be_bytes());
}

/// A capsule delivered to an app (`deliver_to_app` in capsule code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The capsule's type.
    pub capsule_type: CapsuleType,
    /// Original sender.
    pub src: Address,
    /// Destination.
    pub dst: Address,
    /// Previous active hop (`::` if the capsule came from a local app).
    pub prev: Address,
    /// Remaining resource budget.
    pub resource: u16,
    /// Protocol header (at most 65 535 bytes).
    pub header: Vec<u8>,
    /// Payload (at most 65 535 bytes).
    pub payload: Vec<u8>,
    /// Node time when the capsule was delivered, in nanoseconds.
    pub node_time_ns: u64,
}

impl Delivery {
    /// Copy a capsule's fields into a delivery.
    pub fn from_repr(repr: &CapsuleRepr<'_>, node_time_ns: u64) -> Delivery {
        Delivery {
            capsule_type: repr.capsule_type,
            src: repr.src,
            dst: repr.dst,
            prev: repr.prev,
            resource: repr.resource,
            header: repr.header.to_vec(),
            payload: repr.payload.to_vec(),
            node_time_ns,
        }
    }
}

/// A frame an app sends to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppFrame {
    /// Claim `app`; one connection per app id.
    Register {
        /// The app id capsules name in `deliver_to_app`.
        app: u32,
        /// The capsule types whose code may deliver to `app`; empty means any type. At most
        /// [`MAX_ACCEPT_TYPES`]. It is a set: order and repeats carry no meaning, but each
        /// entry counts towards the limit. An empty list is encoded as the original 4-byte
        /// body, so apps and nodes that predate the list still understand each other.
        accept: Vec<CapsuleType>,
    },
    /// Send a capsule.
    Inject(Inject),
    /// Liveness check; answered by `Pong`.
    Ping,
    /// Ask for the node's counters; answered by `Stats`. Needs no registration: it is how
    /// `ants status` and `ants drops` look into a running node.
    Stats,
    /// Drop a type's module (verified code, compiled code, instances, its files in the code
    /// directory); the next capsule of the type loads it again. Answered by `Evicted`. Needs
    /// no registration (`ants modules --evict`).
    Evict {
        /// The type.
        capsule_type: CapsuleType,
    },
    /// Ask for the soft-store's entries — of `capsule_type`'s namespace, or of every one;
    /// answered by `StoreDump`. Needs no registration (`ants store dump`).
    StoreDump {
        /// One namespace, or all.
        capsule_type: Option<CapsuleType>,
    },
    /// Ask for the traces this node started: a list (`None`), or one trace with every
    /// event reported for it. Answered by `Traces`. Needs no registration (`ants trace`).
    Traces {
        /// One trace id, or the list.
        id: Option<u64>,
    },
    /// Read the node's config file again and apply what can change in place; answered by
    /// `Reloaded`, or `Error` with the file's first error (the running config stays).
    /// Needs no registration (`ants reload`).
    Reload,
    /// Start streaming the node's datagrams to this connection (`ants capture`): answered by
    /// `CaptureStarted`, then `Captured` frames until the connection closes. Needs no
    /// registration; one capture at a time.
    Capture,
}

/// A frame a node sends to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFrame {
    /// The app id is now this connection's.
    Registered {
        /// The app id.
        app: u32,
        /// The node's active address (the `src` of capsules this app injects).
        node: Address,
    },
    /// A capsule for this app.
    Delivery(Delivery),
    /// The last `Inject` was accepted.
    Injected {
        /// Its type.
        capsule_type: CapsuleType,
    },
    /// A request was refused, or the node is closing the connection.
    Error {
        /// Human-readable reason.
        message: String,
    },
    /// Answer to `Ping`.
    Pong,
    /// Answer to `Stats`: the node's counters as one JSON object (the form of
    /// `ants run --stats-json`).
    Stats {
        /// The JSON text.
        json: String,
    },
    /// Answer to `Capture`: `Captured` frames follow.
    CaptureStarted,
    /// A datagram the node sent or received.
    Captured(Captured),
    /// Answer to `StoreDump`: the entries as one JSON object.
    StoreDump {
        /// The JSON text.
        json: String,
    },
    /// Answer to `Traces`: one JSON object.
    Traces {
        /// The JSON text.
        json: String,
    },
    /// Answer to `Reload`: what was applied, and what needs a restart.
    Reloaded {
        /// Human-readable summary.
        text: String,
    },
    /// Answer to `Evict`.
    Evicted {
        /// The type.
        capsule_type: CapsuleType,
        /// Whether the node had its module (in memory or on disk).
        removed: bool,
    },
}

/// Appends one frame (length prefix, type, body) to a buffer; the length is checked before
/// anything is written, so an error leaves the buffer as it was.
struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    end: usize,
}

impl<'a> FrameWriter<'a> {
    fn begin(out: &'a mut Vec<u8>, frame_type: u8, body_len: usize) -> Result<Self, EncodeError> {
        let len = 1 + body_len;
        let len32 = u32::try_from(len)
            .ok()
            .filter(|_| len <= MAX_FRAME_LEN)
            .ok_or(EncodeError::FrameTooLong {
                len,
                max: MAX_FRAME_LEN,
            })?;
        let end = out.len() + LEN_PREFIX + len;
        out.reserve(LEN_PREFIX + len);
        out.extend_from_slice(&len32.to_be_bytes());
        out.push(frame_type);
        Ok(FrameWriter { out, end })
    }

    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    fn finish(self) {
        debug_assert_eq!(
            self.out.len(),
            self.end,
            "announced and written lengths differ"
        );
    }
}

fn len16(field: &'static str, bytes: &[u8]) -> Result<[u8; 2], EncodeError> {
    u16::try_from(bytes.len())
        .map(u16::to_be_bytes)
        .map_err(|_| EncodeError::FieldTooLong {
            field,
            len: bytes.len(),
            max: usize::from(u16::MAX),
        })
}

/// Reads fields off a frame body; every read is bounds-checked.
struct Body<'a> {
    frame: &'static str,
    buf: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn new(frame: &'static str, buf: &'a [u8]) -> Self {
        Body { frame, buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                frame: self.frame,
                needed: self.at.saturating_add(n),
                actual: self.buf.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A byte that must be 0 or 1.
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool {
                frame: self.frame,
                field,
                value,
            }),
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn address(&mut self) -> Result<Address, DecodeError> {
        self.array().map(Address)
    }

    fn capsule_type(&mut self) -> Result<CapsuleType, DecodeError> {
        self.array().map(CapsuleType)
    }

    fn endpoint(&mut self) -> Result<std::net::SocketAddr, DecodeError> {
        let ip = std::net::Ipv6Addr::from(self.array::<16>()?);
        let port = self.u16()?;
        Ok(match ip.to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::from((v4, port)),
            None => std::net::SocketAddr::from((ip, port)),
        })
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.at..];
        self.at = self.buf.len();
        s
    }

    fn bytes16(&mut self, len: u16) -> Result<Vec<u8>, DecodeError> {
        self.take(usize::from(len)).map(<[u8]>::to_vec)
    }

    fn at_end(&self) -> bool {
        self.at == self.buf.len()
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                frame: self.frame,
                extra,
            }),
        }
    }
}

/// Split a frame (type byte + body) into its parts.
fn type_and_body(frame: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    match frame.split_first() {
        Some((&t, body)) => Ok((t, body)),
        None => Err(DecodeError::EmptyFrame),
    }
}

impl AppFrame {
    /// Append this frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            AppFrame::Register { app, accept } => encode_register(out, *app, accept)?,
            AppFrame::Inject(i) => {
                let header_len = len16("protocol header", &i.header)?;
                let payload_len = len16("payload", &i.payload)?;
                let code_len = match &i.code {
                    Some(c) => u32::try_from(c.len()).map_err(|_| EncodeError::FrameTooLong {
                        len: c.len(),
                        max: MAX_FRAME_LEN,
                    })?,
                    None => 0,
                };
                let mut flags = if i.code.is_some() {
                    INJECT_FLAG_CODE
                } else {
                    0
                };
                if i.trace.is_some() {
                    flags |= INJECT_FLAG_TRACE;
                }
                let trace_len = if i.trace.is_some() { 8 } else { 0 };
                let mut w = FrameWriter::begin(out, frame_type::INJECT, i.body_len())?;
                w.put(i.capsule_type.as_bytes())
                    .put(&i.dst.octets())
                    .put(&i.resource.to_be_bytes())
                    .put(&[flags])
                    .put(&code_len.to_be_bytes())
                    .put(&header_len)
                    .put(&payload_len)
                    .put(&i.trace.map(u64::to_be_bytes).unwrap_or_default()[..trace_len])
                    .put(i.code.as_deref().unwrap_or_default())
                    .put(&i.header)
                    .put(&i.payload);
                w.finish();
            }
            AppFrame::Ping => FrameWriter::begin(out, frame_type::PING, 0)?.finish(),
            AppFrame::Stats => FrameWriter::begin(out, frame_type::STATS, 0)?.finish(),
            AppFrame::Evict { capsule_type } => {
                let mut w = FrameWriter::begin(out, frame_type::EVICT, CapsuleType::LEN)?;
                w.put(capsule_type.as_bytes());
                w.finish();
            }
            AppFrame::Capture => FrameWriter::begin(out, frame_type::CAPTURE, 0)?.finish(),
            AppFrame::Reload => FrameWriter::begin(out, frame_type::RELOAD, 0)?.finish(),
            AppFrame::Traces { id } => {
                let id = id.map(u64::to_be_bytes);
                let id = id.as_ref().map_or(&[][..], |b| &b[..]);
                let mut w = FrameWriter::begin(out, frame_type::TRACES, id.len())?;
                w.put(id);
                w.finish();
            }
            AppFrame::StoreDump { capsule_type } => {
                let ty = capsule_type.as_ref().map_or(&[][..], |t| &t.as_bytes()[..]);
                let mut w = FrameWriter::begin(out, frame_type::STORE_DUMP, ty.len())?;
                w.put(ty);
                w.finish();
            }
        }
        Ok(())
    }

    /// Encode into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decode a frame: type byte + body, without the length prefix (see [`split_frame`]).
    pub fn decode(frame: &[u8]) -> Result<AppFrame, DecodeError> {
        let (t, body) = type_and_body(frame)?;
        match t {
            frame_type::REGISTER => decode_register(body),
            frame_type::INJECT => decode_inject(body).map(AppFrame::Inject),
            frame_type::PING => Body::new("ping", body).finish().map(|()| AppFrame::Ping),
            frame_type::STATS => Body::new("stats", body).finish().map(|()| AppFrame::Stats),
            frame_type::EVICT => {
                let mut b = Body::new("evict", body);
                let capsule_type = b.capsule_type()?;
                b.finish()?;
                Ok(AppFrame::Evict { capsule_type })
            }
            frame_type::CAPTURE => Body::new("capture", body)
                .finish()
                .map(|()| AppFrame::Capture),
            frame_type::STORE_DUMP => {
                let mut b = Body::new("store dump", body);
                let capsule_type = if body.is_empty() {
                    None
                } else {
                    Some(b.capsule_type()?)
                };
                b.finish()?;
                Ok(AppFrame::StoreDump { capsule_type })
            }
            frame_type::RELOAD => Body::new("reload", body)
                .finish()
                .map(|()| AppFrame::Reload),
            frame_type::TRACES => {
                let mut b = Body::new("traces", body);
                let id = if body.is_empty() {
                    None
                } else {
                    Some(b.u64()?)
                };
                b.finish()?;
                Ok(AppFrame::Traces { id })
            }
            other => Err(DecodeError::UnknownFrameType {
                frame_type: other,
                direction: "app-to-node",
            }),
        }
    }
}

/// `Register` body: `app` u32, then — only if the list is not empty — a u16 count and that
/// many 32-byte capsule types.
fn encode_register(out: &mut Vec<u8>, app: u32, accept: &[CapsuleType]) -> Result<(), EncodeError> {
    let count = u16::try_from(accept.len())
        .ok()
        .filter(|_| accept.len() <= MAX_ACCEPT_TYPES)
        .ok_or(EncodeError::TooManyAcceptTypes {
            count: accept.len(),
            max: MAX_ACCEPT_TYPES,
        })?;
    let body_len = match count {
        0 => REGISTER_ANY,
        _ => REGISTER_LIST_FIXED + accept.len() * CapsuleType::LEN,
    };
    let mut w = FrameWriter::begin(out, frame_type::REGISTER, body_len)?;
    w.put(&app.to_be_bytes());
    if count > 0 {
        w.put(&count.to_be_bytes());
        for t in accept {
            w.put(t.as_bytes());
        }
    }
    w.finish();
    Ok(())
}

/// The inverse of [`encode_register`]. The count is checked before the list is read, so a
/// bad count is reported as such however long the body is.
fn decode_register(body: &[u8]) -> Result<AppFrame, DecodeError> {
    let mut b = Body::new("register", body);
    let app = b.u32()?;
    let mut accept = Vec::new();
    if !b.at_end() {
        let count = b.u16()?;
        let n = usize::from(count);
        if n == 0 || n > MAX_ACCEPT_TYPES {
            return Err(DecodeError::BadAcceptCount {
                count,
                max: MAX_ACCEPT_TYPES,
            });
        }
        // `take` returned exactly `n` × 32 bytes: no remainder to lose.
        let (types, _) = b
            .take(n * CapsuleType::LEN)?
            .as_chunks::<{ CapsuleType::LEN }>();
        accept = types.iter().copied().map(CapsuleType).collect();
    }
    b.finish()?;
    Ok(AppFrame::Register { app, accept })
}

fn decode_inject(body: &[u8]) -> Result<Inject, DecodeError> {
    let mut b = Body::new("inject", body);
    let capsule_type = b.capsule_type()?;
    let dst = b.address()?;
    let resource = b.u16()?;
    let flags = b.u8()?;
    let code_len = b.u32()?;
    let header_len = b.u16()?;
    let payload_len = b.u16()?;
    let has_code = match flags & !INJECT_FLAG_TRACE {
        INJECT_FLAG_CODE => true,
        0 if code_len == 0 => false,
        _ => return Err(DecodeError::BadInjectFlags { flags, code_len }),
    };
    let trace = if flags & INJECT_FLAG_TRACE != 0 {
        Some(b.u64()?)
    } else {
        None
    };
    let code = if has_code {
        let n = usize::try_from(code_len).unwrap_or(usize::MAX);
        Some(b.take(n)?.to_vec())
    } else {
        None
    };
    let header = b.bytes16(header_len)?;
    let payload = b.bytes16(payload_len)?;
    b.finish()?;
    Ok(Inject {
        code,
        capsule_type,
        dst,
        resource,
        header,
        payload,
        trace,
    })
}

impl NodeFrame {
    /// Append this frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            NodeFrame::Registered { app, node } => {
                let mut w = FrameWriter::begin(out, frame_type::REGISTERED, 20)?;
                w.put(&app.to_be_bytes()).put(&node.octets());
                w.finish();
            }
            NodeFrame::Delivery(d) => {
                let header_len = len16("protocol header", &d.header)?;
                let payload_len = len16("payload", &d.payload)?;
                let body_len = DELIVERY_FIXED + d.header.len() + d.payload.len();
                let mut w = FrameWriter::begin(out, frame_type::DELIVERY, body_len)?;
                w.put(d.capsule_type.as_bytes())
                    .put(&d.src.octets())
                    .put(&d.dst.octets())
                    .put(&d.prev.octets())
                    .put(&d.resource.to_be_bytes())
                    .put(&d.node_time_ns.to_be_bytes())
                    .put(&header_len)
                    .put(&payload_len)
                    .put(&d.header)
                    .put(&d.payload);
                w.finish();
            }
            NodeFrame::Injected { capsule_type } => {
                let mut w = FrameWriter::begin(out, frame_type::INJECTED, CapsuleType::LEN)?;
                w.put(capsule_type.as_bytes());
                w.finish();
            }
            NodeFrame::Error { message } => {
                let mut w = FrameWriter::begin(out, frame_type::ERROR, message.len())?;
                w.put(message.as_bytes());
                w.finish();
            }
            NodeFrame::Pong => FrameWriter::begin(out, frame_type::PONG, 0)?.finish(),
            NodeFrame::Stats { json } => {
                let mut w = FrameWriter::begin(out, frame_type::STATS_REPLY, json.len())?;
                w.put(json.as_bytes());
                w.finish();
            }
            NodeFrame::CaptureStarted => {
                FrameWriter::begin(out, frame_type::CAPTURE_STARTED, 0)?.finish();
            }
            NodeFrame::Captured(c) => {
                let mut w =
                    FrameWriter::begin(out, frame_type::CAPTURED, CAPTURED_FIXED + c.data.len())?;
                w.put(&c.ts_ns.to_be_bytes())
                    .put(&[u8::from(c.outbound)])
                    .put(&c.lost.to_be_bytes());
                put_endpoint(&mut w, &c.peer);
                put_endpoint(&mut w, &c.local);
                w.put(&c.data);
                w.finish();
            }
            NodeFrame::StoreDump { json } => {
                let mut w = FrameWriter::begin(out, frame_type::STORE_DUMP_REPLY, json.len())?;
                w.put(json.as_bytes());
                w.finish();
            }
            NodeFrame::Traces { json } => {
                let mut w = FrameWriter::begin(out, frame_type::TRACES_REPLY, json.len())?;
                w.put(json.as_bytes());
                w.finish();
            }
            NodeFrame::Reloaded { text } => {
                let mut w = FrameWriter::begin(out, frame_type::RELOADED, text.len())?;
                w.put(text.as_bytes());
                w.finish();
            }
            NodeFrame::Evicted {
                capsule_type,
                removed,
            } => {
                let mut w = FrameWriter::begin(out, frame_type::EVICTED, CapsuleType::LEN + 1)?;
                w.put(capsule_type.as_bytes()).put(&[u8::from(*removed)]);
                w.finish();
            }
        }
        Ok(())
    }

    /// Encode into a fresh buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decode a frame: type byte + body, without the length prefix (see [`split_frame`]).
    pub fn decode(frame: &[u8]) -> Result<NodeFrame, DecodeError> {
        let (t, body) = type_and_body(frame)?;
        match t {
            frame_type::REGISTERED => {
                let mut b = Body::new("registered", body);
                let app = b.u32()?;
                let node = b.address()?;
                b.finish()?;
                Ok(NodeFrame::Registered { app, node })
            }
            frame_type::DELIVERY => {
                let mut b = Body::new("delivery", body);
                let capsule_type = b.capsule_type()?;
                let src = b.address()?;
                let dst = b.address()?;
                let prev = b.address()?;
                let resource = b.u16()?;
                let node_time_ns = b.u64()?;
                let header_len = b.u16()?;
                let payload_len = b.u16()?;
                let header = b.bytes16(header_len)?;
                let payload = b.bytes16(payload_len)?;
                b.finish()?;
                Ok(NodeFrame::Delivery(Delivery {
                    capsule_type,
                    src,
                    dst,
                    prev,
                    resource,
                    header,
                    payload,
                    node_time_ns,
                }))
            }
            frame_type::INJECTED => {
                let mut b = Body::new("injected", body);
                let capsule_type = b.capsule_type()?;
                b.finish()?;
                Ok(NodeFrame::Injected { capsule_type })
            }
            frame_type::ERROR => text(body).map(|message| NodeFrame::Error { message }),
            frame_type::PONG => Body::new("pong", body).finish().map(|()| NodeFrame::Pong),
            frame_type::STATS_REPLY => text(body).map(|json| NodeFrame::Stats { json }),
            frame_type::STORE_DUMP_REPLY => text(body).map(|json| NodeFrame::StoreDump { json }),
            frame_type::TRACES_REPLY => text(body).map(|json| NodeFrame::Traces { json }),
            frame_type::RELOADED => text(body).map(|text| NodeFrame::Reloaded { text }),
            frame_type::CAPTURE_STARTED => Body::new("capture started", body)
                .finish()
                .map(|()| NodeFrame::CaptureStarted),
            frame_type::CAPTURED => {
                let mut b = Body::new("captured", body);
                let ts_ns = b.u64()?;
                let outbound = b.bool("outbound")?;
                let lost = b.u32()?;
                let peer = b.endpoint()?;
                let local = b.endpoint()?;
                let data = b.rest().to_vec();
                Ok(NodeFrame::Captured(Captured {
                    ts_ns,
                    outbound,
                    peer,
                    local,
                    lost,
                    data,
                }))
            }
            frame_type::EVICTED => {
                let mut b = Body::new("evicted", body);
                let capsule_type = b.capsule_type()?;
                let removed = b.bool("removed")?;
                b.finish()?;
                Ok(NodeFrame::Evicted {
                    capsule_type,
                    removed,
                })
            }
            other => Err(DecodeError::UnknownFrameType {
                frame_type: other,
                direction: "node-to-app",
            }),
        }
    }
}

/// A body that is all UTF-8 text (`Error`, `Stats`).
fn text(body: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(body)
        .map(str::to_owned)
        .map_err(|_| DecodeError::InvalidUtf8)
}

#[cfg(test)]
mod tests;
