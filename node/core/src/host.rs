//! The semantics of host ABI v2, written once over plain slices.
//!
//! The wasmtime executor translates guest pointers into slices (returning
//! [`status::BAD_POINTER`] when they fall outside linear memory) and calls the methods of
//! [`Execution`]; the SDK's native mock host calls the very same methods. So a capsule's unit
//! tests see exactly the limits and status codes it will meet on a node.
//!
//! Every method returns a status (`>= 0` success, negative codes from [`status`]); none panics,
//! whatever the arguments.

use std::time::Duration;

use ants_soft_store::PutError;
use ants_wire::abi::{Field, LogLevel, status};
use ants_wire::{Address, CapsuleType};

use crate::{CapsuleState, Effects, Executor, NodeContext, RunReport, RunResult};

/// Per-execution limits on what a capsule may ask for. All hits are counted in [`Effects`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Copies one execution may send (`route_for_node` calls that succeed).
    pub max_sends: usize,
    /// Deliveries one execution may make.
    pub max_deliveries: usize,
    /// Log lines one execution may emit.
    pub max_log_lines: usize,
    /// Longest log line kept; longer ones are truncated.
    pub max_log_len: usize,
    /// Largest header + payload a capsule may grow to.
    pub max_capsule_data: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_sends: 16,
            max_deliveries: 4,
            max_log_lines: 16,
            max_log_len: 512,
            max_capsule_data: 16 * 1024,
        }
    }
}

/// The fuel host calls cost, on top of the wasm instructions that make them.
///
/// Fuel alone bounds a capsule only if work done *inside* host calls is paid for too: a
/// `node_random` over 4 MiB is one wasm instruction but millions of host operations. So every
/// host call pays [`CALL`](fuel::CALL) plus an amount proportional to the bytes it touches,
/// charged *before* the work is done (a call that cannot pay traps with "out of fuel" and does
/// nothing). The rates were measured on the development machine so that one unit of fuel
/// spent in a host call takes about as long as one spent on wasm instructions
/// (`docs/security.md`). The wasmtime executor charges them; hosts without fuel (the SDK's
/// mock) do not.
pub mod fuel {
    /// Every host call: about what a call's round trip between wasm and the host costs in
    /// time, in units of plain wasm instructions.
    pub const CALL: u64 = 50;
    /// Bytes copied (or compared, hashed into a map) per unit of fuel.
    pub const COPY_BYTES_PER_FUEL: u64 = 8;
    /// Random bytes generated per unit of fuel.
    pub const RANDOM_BYTES_PER_FUEL: u64 = 1;
    /// Bytes stored into or read from the soft-store per unit of fuel (an allocation, a map
    /// update and the copy).
    pub const STORE_BYTES_PER_FUEL: u64 = 2;
    /// A `log` line, on top of its bytes: the node formats and writes it.
    pub const LOG_LINE: u64 = 1_000;

    /// A call that copies `bytes` bytes.
    pub const fn copy(bytes: usize) -> u64 {
        CALL + bytes as u64 / COPY_BYTES_PER_FUEL
    }

    /// A soft-store call over `bytes` bytes of keys and values.
    pub const fn store(bytes: usize) -> u64 {
        CALL + bytes as u64 / STORE_BYTES_PER_FUEL
    }

    /// A call that generates `bytes` random bytes.
    pub const fn random(bytes: usize) -> u64 {
        CALL + bytes as u64 / RANDOM_BYTES_PER_FUEL
    }
}

/// One capsule execution: the capsule, the node it runs on, its outputs and its limits.
///
/// Owned data only, so an executor can move it into whatever runs the code (a wasm store)
/// for the duration of a call and back. Run it with [`execute`], which settles the resource
/// budget and discards a trapped execution's outputs.
#[derive(Debug, Default)]
pub struct Execution {
    /// The capsule being run.
    pub capsule: CapsuleState,
    /// The node it runs on.
    pub node: NodeContext,
    /// What the execution asked for so far.
    pub effects: Effects,
    /// The limits in force.
    pub limits: HostLimits,
}

/// Run the capsule in `exec` on `executor`: reset the outputs, run, then settle the copies'
/// resource shares (or, after a trap, discard sends and deliveries and keep log lines).
///
/// Every host of the node core calls executors through this function, so the budget rules of
/// `docs/abi.md` hold whatever the executor.
pub fn execute(executor: &mut dyn Executor, exec: &mut Box<Execution>) -> RunReport {
    exec.effects.begin(exec.capsule.resource);
    let report = executor.run(exec);
    match report.result {
        RunResult::Returned(_) => exec.effects.settle_resources(),
        RunResult::Trapped(_) | RunResult::NotLoaded => exec.effects.discard_outputs(),
    }
    report
}

fn to_status(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Execution {
    /// An execution context for `node` with these limits and an empty capsule.
    pub fn new(node: NodeContext, limits: HostLimits) -> Execution {
        Execution {
            capsule: CapsuleState::default(),
            node,
            effects: Effects::default(),
            limits,
        }
    }

    fn namespace(&self) -> [u8; 32] {
        let CapsuleType(t) = self.capsule.capsule_type;
        t
    }

    /// `node_address`: this node's address.
    pub fn node_address(&self) -> [u8; 16] {
        self.node.address.0
    }

    /// `node_time`: nanoseconds since the Unix epoch, saturating.
    pub fn node_time(&self) -> i64 {
        i64::try_from(self.node.now.as_nanos()).unwrap_or(i64::MAX)
    }

    /// `node_random`: fill `out`.
    pub fn node_random(&mut self, out: &mut [u8]) -> i32 {
        self.node.fill_random(out);
        status::OK
    }

    fn field(&self, field: Field) -> &[u8] {
        let c = &self.capsule;
        match field {
            Field::Type => &c.capsule_type.0,
            Field::Src => &c.src.0,
            Field::Dst => &c.dst.0,
            Field::Prev => &c.prev.0,
            Field::Header => &c.header,
            Field::Payload => &c.payload,
        }
    }

    /// `capsule_len`: current length of a field.
    pub fn capsule_len(&self, field: i32) -> i32 {
        match Field::from_i32(field) {
            Some(f) => to_status(self.field(f).len()),
            None => status::BAD_ARGUMENT,
        }
    }

    /// `capsule_read`: copy `field[offset..]` into `out`; returns bytes copied.
    pub fn capsule_read(&self, field: i32, offset: u32, out: &mut [u8]) -> i32 {
        let Some(f) = Field::from_i32(field) else {
            return status::BAD_ARGUMENT;
        };
        let data = self.field(f);
        let Some(rest) = data.get(offset as usize..) else {
            return status::BAD_ARGUMENT;
        };
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        to_status(n)
    }

    /// `capsule_write`: overwrite `field[offset..offset + data.len()]` within its current length.
    pub fn capsule_write(&mut self, field: i32, offset: u32, data: &[u8]) -> i32 {
        let target: &mut [u8] = match Field::from_i32(field) {
            None => return status::BAD_ARGUMENT,
            Some(Field::Type | Field::Src | Field::Prev) => return status::READ_ONLY,
            Some(Field::Dst) => &mut self.capsule.dst.0,
            Some(Field::Header) => &mut self.capsule.header,
            Some(Field::Payload) => &mut self.capsule.payload,
        };
        let start = offset as usize;
        match start
            .checked_add(data.len())
            .and_then(|end| target.get_mut(start..end))
        {
            Some(dst) => {
                dst.copy_from_slice(data);
                status::OK
            }
            None => status::BAD_ARGUMENT,
        }
    }

    /// `capsule_resize`: grow (zero-filled) or shrink the header or payload.
    pub fn capsule_resize(&mut self, field: i32, new_len: i32) -> i32 {
        let Ok(new_len) = usize::try_from(new_len) else {
            return status::BAD_ARGUMENT;
        };
        let c = &mut self.capsule;
        let (target, other) = match Field::from_i32(field) {
            None => return status::BAD_ARGUMENT,
            Some(Field::Header) => (&mut c.header, c.payload.len()),
            Some(Field::Payload) => (&mut c.payload, c.header.len()),
            Some(_) => return status::READ_ONLY,
        };
        if new_len > usize::from(u16::MAX) || new_len + other > self.limits.max_capsule_data {
            return status::TOO_LARGE;
        }
        target.resize(new_len, 0);
        status::OK
    }

    /// `capsule_resource`: the part of the resource budget not yet given to copies (at the
    /// start of a run: the resource the capsule arrived with).
    pub fn capsule_resource(&self) -> i32 {
        i32::from(self.effects.budget())
    }

    /// `route_for_node`: send a copy of the capsule as it is now toward `toward`. The copy
    /// costs one unit of the budget now and gets an equal share of what is left when the run
    /// ends ([`Effects::settle_resources`]).
    pub fn route_for_node(&mut self, toward: [u8; 16]) -> i32 {
        self.send(toward, None)
    }

    /// `route_for_node_with`: like `route_for_node`, but the copy carries exactly `resource`,
    /// taken from the budget together with the unit its transmission costs.
    pub fn route_for_node_with(&mut self, toward: [u8; 16], resource: i32) -> i32 {
        match u16::try_from(resource) {
            Ok(r) => self.send(toward, Some(r)),
            Err(_) => status::BAD_ARGUMENT,
        }
    }

    fn send(&mut self, toward: [u8; 16], resource: Option<u16>) -> i32 {
        if self.effects.sends.len() >= self.limits.max_sends {
            self.effects.limit_hits += 1;
            return status::LIMIT;
        }
        let cost = resource.map_or(1, |r| u32::from(r) + 1);
        if u32::from(self.effects.budget()) < cost {
            self.effects.resource_refusals += 1;
            return status::RESOURCE_EXHAUSTED;
        }
        let toward = Address(toward);
        let Some(next_hop) = self.node.next_hop(&toward) else {
            self.effects.no_route += 1;
            return status::NO_ROUTE;
        };
        let snapshot = self.effects.snapshot(&self.capsule);
        self.effects.push_send(toward, next_hop, resource, snapshot);
        status::OK
    }

    /// `node_neighbours`: write as many 16-byte neighbour addresses as fit in `out`; returns
    /// the number of neighbours (which may be more than were written).
    pub fn node_neighbours(&self, out: &mut [u8]) -> i32 {
        let mut n = 0usize;
        let mut slots = out.chunks_exact_mut(16);
        for a in &self.node.neighbours {
            if let Some(slot) = slots.next() {
                slot.copy_from_slice(&a.0);
            }
            n += 1;
        }
        to_status(n)
    }

    /// `next_hop`: the next active hop toward `toward`.
    pub fn next_hop(&self, toward: [u8; 16]) -> Result<[u8; 16], i32> {
        self.node
            .next_hop(&Address(toward))
            .map(|a| a.0)
            .ok_or(status::NO_ROUTE)
    }

    /// `deliver_to_app`: hand a copy to local app `app`. An app that is not registered, or
    /// that accepts only other capsule types, is `NOT_FOUND` (the capsule cannot tell the
    /// two apart); refusals by an app's accept list are counted.
    pub fn deliver_to_app(&mut self, app: i32) -> i32 {
        let Ok(app) = u32::try_from(app) else {
            return status::BAD_ARGUMENT;
        };
        if !self.node.accepts(app, &self.capsule.capsule_type) {
            if self.node.apps.contains(&app) {
                self.effects.app_refusals += 1;
            }
            return status::NOT_FOUND;
        }
        if self.effects.deliveries.len() >= self.limits.max_deliveries {
            self.effects.limit_hits += 1;
            return status::LIMIT;
        }
        let snapshot = self.effects.snapshot(&self.capsule);
        self.effects
            .deliveries
            .push(crate::Delivery { app, snapshot });
        status::OK
    }

    fn check_key(&mut self, key: &[u8]) -> Option<i32> {
        (key.len() > self.node.store.config().max_key_len).then_some(status::TOO_LARGE)
    }

    /// `store_get`: copy at most `out.len()` bytes of the value; returns the full value length.
    pub fn store_get(&mut self, key: &[u8], out: &mut [u8]) -> i32 {
        if let Some(err) = self.check_key(key) {
            return err;
        }
        let ns = self.namespace();
        let now = self.node.now;
        match self.node.store.get(&ns, key, now) {
            Some(v) => {
                let n = v.len().min(out.len());
                out[..n].copy_from_slice(&v[..n]);
                to_status(v.len())
            }
            None => status::NOT_FOUND,
        }
    }

    /// `store_put`: insert or replace with a time-to-live in milliseconds.
    pub fn store_put(&mut self, key: &[u8], value: &[u8], ttl_ms: i64) -> i32 {
        let Ok(ttl_ms) = u64::try_from(ttl_ms) else {
            return status::BAD_ARGUMENT;
        };
        let ns = self.namespace();
        let now = self.node.now;
        match self
            .node
            .store
            .put(&ns, key, value, Duration::from_millis(ttl_ms), now)
        {
            Ok(_) => status::OK,
            Err(PutError::QuotaExceeded { .. } | PutError::StoreFull { .. }) => status::QUOTA,
            Err(PutError::ZeroTtl) => status::BAD_ARGUMENT,
            Err(
                PutError::KeyTooLong { .. }
                | PutError::ValueTooLong { .. }
                | PutError::TooLarge { .. },
            ) => status::TOO_LARGE,
        }
    }

    /// `store_remove`: remove a key.
    pub fn store_remove(&mut self, key: &[u8]) -> i32 {
        if let Some(err) = self.check_key(key) {
            return err;
        }
        let ns = self.namespace();
        if self.node.store.remove(&ns, key) {
            status::OK
        } else {
            status::NOT_FOUND
        }
    }

    /// `log`: record a line (truncated to the limit; invalid UTF-8 replaced).
    pub fn log(&mut self, level: i32, msg: &[u8]) -> i32 {
        let Some(level) = LogLevel::from_i32(level) else {
            return status::BAD_ARGUMENT;
        };
        if self.effects.logs.len() >= self.limits.max_log_lines {
            self.effects.limit_hits += 1;
            return status::LIMIT;
        }
        let msg = &msg[..msg.len().min(self.limits.max_log_len)];
        match std::str::from_utf8(msg) {
            Ok(s) => self.effects.push_log(level, s.as_bytes()),
            Err(_) => {
                let lossy = String::from_utf8_lossy(msg);
                self.effects.push_log(level, lossy.as_bytes());
            }
        }
        status::OK
    }
}
