//! What a [`Node`](super::Node) hands its driver and its apps: events, deliveries, load
//! timings, and the requests apps make of it.

use std::sync::Arc;
use std::time::Duration;

use ants_wire::abi::LogLevel;
use ants_wire::{Address, CapsuleType};

use crate::TrapReason;

/// Something the driver should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Compile and install this verified module, then call
    /// [`Node::module_ready`](super::Node::module_ready).
    Compile {
        /// The type.
        ty: CapsuleType,
        /// The module bytes (SHA-256 equals `ty`).
        code: Arc<[u8]>,
    },
    /// Load the module of `ty` from the driver's code store (see
    /// [`Node::set_stored`](super::Node::set_stored)), give its bytes to
    /// [`Node::add_code`](super::Node::add_code), install it, then call
    /// [`Node::module_ready`](super::Node::module_ready).
    Restore {
        /// The type.
        ty: CapsuleType,
    },
    /// A capsule logged a line.
    CapsuleLog {
        /// The protocol.
        ty: CapsuleType,
        /// Level.
        level: LogLevel,
        /// Text.
        text: String,
    },
    /// A capsule trapped.
    Trapped {
        /// The protocol.
        ty: CapsuleType,
        /// Why.
        reason: TrapReason,
    },
    /// A peer's capsules of a type trapped too often: they are dropped unrun for a while
    /// ([`QuarantineConfig`](super::QuarantineConfig)).
    Quarantined {
        /// The protocol.
        ty: CapsuleType,
        /// The peer, for logs.
        peer: String,
    },
    /// Loading a type failed; its held capsules were dropped.
    CodeFailed {
        /// The protocol.
        ty: CapsuleType,
        /// Why, for logs.
        reason: String,
        /// Capsules dropped.
        dropped: usize,
    },
}

/// A capsule for a local app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDelivery {
    /// The app id.
    pub app: u32,
    /// The capsule, wire-encoded (parse with [`CapsuleRepr::parse`](ants_wire::CapsuleRepr::parse)).
    pub capsule: Vec<u8>,
    /// Node time of the delivery.
    pub at: Duration,
}

/// A capsule an app asks the node to send.
#[derive(Debug, Clone, Copy)]
pub struct Injection<'a> {
    /// The protocol.
    pub ty: CapsuleType,
    /// The module, when the app hands it over (needed the first time).
    pub code: Option<&'a [u8]>,
    /// Destination.
    pub dst: Address,
    /// Resource budget.
    pub resource: u16,
    /// Protocol header.
    pub header: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
    /// Trace the capsule: `Some(id)` with the app's trace id (0: the node picks one); `None`
    /// traces it only if the node's sampling rate picks it.
    pub trace: Option<u64>,
}

/// Why an app's request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The app id is not registered.
    #[error("app {0} is not registered")]
    NotRegistered(u32),
    /// The module's SHA-256 is not the capsule type.
    #[error("module hash {found} does not match capsule type {ty}")]
    HashMismatch {
        /// Declared type.
        ty: CapsuleType,
        /// SHA-256 of the given module.
        found: CapsuleType,
    },
    /// The node has no code for the type and none was given.
    #[error("unknown capsule type {0} and no code given")]
    UnknownType(CapsuleType),
    /// Header + payload over the node's limit.
    #[error("capsule data of {size} bytes exceeds the node's {max}-byte limit")]
    TooLarge {
        /// Header + payload bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The module is still compiling and the capsules waiting for it fill the queue.
    #[error("type {0} is still compiling and its waiting queue is full; retry shortly")]
    Busy(CapsuleType),
    /// The module is larger than the code cache can hold.
    #[error("module does not fit in the code cache")]
    CodeTooLarge,
    /// The node's code policy does not allow the type.
    #[error("capsule type {0} is not allowed by the node's code policy")]
    NotAllowed(CapsuleType),
}

/// When one module load went through its stages, in node time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTiming {
    /// The type.
    pub ty: CapsuleType,
    /// The first capsule of the type was held (fetch started).
    pub held_at: Duration,
    /// The module was complete and its hash verified.
    pub verified_at: Option<Duration>,
    /// The compiled module was installed (or rejected).
    pub ready_at: Option<Duration>,
}
