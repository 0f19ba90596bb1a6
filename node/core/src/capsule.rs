//! A capsule's fields while it is being executed.

use ants_wire::{Address, CapsuleRepr, CapsuleType, Trace};

/// The mutable state of one capsule during an execution. Buffers are reused between
/// executions ([`CapsuleState::load`]) so the forwarding path does not allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsuleState {
    /// Flag bits from the wire.
    pub flags: u8,
    /// Resource budget as received: sends remaining. Copies carry `resource - 1`.
    pub resource: u16,
    /// The capsule type; immutable to capsule code.
    pub capsule_type: CapsuleType,
    /// Original sender; immutable to capsule code.
    pub src: Address,
    /// Destination; capsule code may rewrite it.
    pub dst: Address,
    /// Previous active hop as received; immutable to capsule code.
    pub prev: Address,
    /// Protocol header.
    pub header: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
    /// The trace extension of a traced capsule (invisible to capsule code; the node sets
    /// its clock on every copy it sends).
    pub trace: Option<Trace>,
}

impl CapsuleState {
    /// A state holding a copy of `repr`.
    pub fn from_repr(repr: &CapsuleRepr<'_>) -> Self {
        let mut s = CapsuleState::default();
        s.load(repr);
        s
    }

    /// Overwrite this state with `repr`, reusing the buffers' capacity.
    pub fn load(&mut self, repr: &CapsuleRepr<'_>) {
        self.flags = repr.flags;
        self.resource = repr.resource;
        self.capsule_type = repr.capsule_type;
        self.src = repr.src;
        self.dst = repr.dst;
        self.prev = repr.prev;
        self.header.clear();
        self.header.extend_from_slice(repr.header);
        self.payload.clear();
        self.payload.extend_from_slice(repr.payload);
        self.trace = repr.trace;
    }

    /// Borrow as a wire representation (for emitting).
    pub fn repr(&self) -> CapsuleRepr<'_> {
        CapsuleRepr {
            flags: self.flags,
            resource: self.resource,
            capsule_type: self.capsule_type,
            src: self.src,
            dst: self.dst,
            prev: self.prev,
            header: &self.header,
            payload: &self.payload,
            trace: self.trace,
        }
    }
}
