//! The semantics of host ABI v1, written once over plain slices.
//!
//! The wasmtime executor translates guest pointers into slices (returning
//! [`status::BAD_POINTER`] when they fall outside linear memory) and calls the methods of
//! [`Execution`]; the SDK's native mock host calls the very same methods. So a capsule's unit
//! tests see exactly the limits and status codes it will meet on a node.
//!
//! Every method returns a status (`>= 0` success, negative codes from [`status`]); none panics,
//! whatever the arguments.

use std::time::Duration;

use ants_soft_store::{PutError, SoftStore};
use ants_wire::abi::{Field, LogLevel, status};
use ants_wire::{Address, CapsuleType};

use crate::{CapsuleState, Effects};

/// What the node provides to a running capsule.
pub trait NodeEnv {
    /// This node's active address.
    fn address(&self) -> Address;
    /// Node time since the Unix epoch (virtual in simulation).
    fn now(&self) -> Duration;
    /// Fill `out` from the node's seeded generator.
    fn fill_random(&mut self, out: &mut [u8]);
    /// The next active hop toward `toward`, if the node has a route.
    fn next_hop(&self, toward: &Address) -> Option<Address>;
    /// Call `f` with each neighbour's active address, in a stable order.
    fn for_each_neighbour(&self, f: &mut dyn FnMut(Address));
    /// Whether a local app with this id is registered.
    fn has_app(&self, app: u32) -> bool;
    /// The node's soft-store (namespaced by capsule type).
    fn store(&mut self) -> &mut SoftStore<[u8; 32]>;
}

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

/// One capsule execution in progress: the capsule, the node, the outputs and the limits.
#[derive(Debug)]
pub struct Execution<'a> {
    /// The capsule being run.
    pub capsule: &'a mut CapsuleState,
    /// The node it runs on.
    pub env: &'a mut dyn NodeEnv,
    /// What the execution asked for so far.
    pub effects: &'a mut Effects,
    /// The limits in force.
    pub limits: &'a HostLimits,
}

impl std::fmt::Debug for dyn NodeEnv + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeEnv({})", self.address())
    }
}

fn to_status(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Execution<'_> {
    fn namespace(&self) -> [u8; 32] {
        let CapsuleType(t) = self.capsule.capsule_type;
        t
    }

    /// `node_address`: this node's address.
    pub fn node_address(&self) -> [u8; 16] {
        self.env.address().0
    }

    /// `node_time`: nanoseconds since the Unix epoch, saturating.
    pub fn node_time(&self) -> i64 {
        i64::try_from(self.env.now().as_nanos()).unwrap_or(i64::MAX)
    }

    /// `node_random`: fill `out`.
    pub fn node_random(&mut self, out: &mut [u8]) -> i32 {
        self.env.fill_random(out);
        status::OK
    }

    fn field(&self, field: Field) -> &[u8] {
        let c = &*self.capsule;
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
        let c = &mut *self.capsule;
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

    /// `capsule_resource`: the remaining resource budget.
    pub fn capsule_resource(&self) -> i32 {
        i32::from(self.capsule.resource)
    }

    /// `route_for_node`: send a copy of the capsule as it is now toward `toward`.
    pub fn route_for_node(&mut self, toward: [u8; 16]) -> i32 {
        if self.effects.sends.len() >= self.limits.max_sends {
            self.effects.limit_hits += 1;
            return status::LIMIT;
        }
        let Some(resource) = self.capsule.resource.checked_sub(1) else {
            self.effects.resource_refusals += 1;
            return status::RESOURCE_EXHAUSTED;
        };
        let toward = Address(toward);
        let Some(next_hop) = self.env.next_hop(&toward) else {
            self.effects.no_route += 1;
            return status::NO_ROUTE;
        };
        let snapshot = self.effects.snapshot(self.capsule);
        self.effects.sends.push(crate::Send {
            toward,
            next_hop,
            resource,
            snapshot,
        });
        status::OK
    }

    /// `node_neighbours`: write as many 16-byte neighbour addresses as fit in `out`; returns
    /// the number of neighbours (which may be more than were written).
    pub fn node_neighbours(&self, out: &mut [u8]) -> i32 {
        let mut n = 0usize;
        let mut slots = out.chunks_exact_mut(16);
        self.env.for_each_neighbour(&mut |a| {
            if let Some(slot) = slots.next() {
                slot.copy_from_slice(&a.0);
            }
            n += 1;
        });
        to_status(n)
    }

    /// `next_hop`: the next active hop toward `toward`.
    pub fn next_hop(&self, toward: [u8; 16]) -> Result<[u8; 16], i32> {
        self.env
            .next_hop(&Address(toward))
            .map(|a| a.0)
            .ok_or(status::NO_ROUTE)
    }

    /// `deliver_to_app`: hand a copy to local app `app`.
    pub fn deliver_to_app(&mut self, app: i32) -> i32 {
        let Ok(app) = u32::try_from(app) else {
            return status::BAD_ARGUMENT;
        };
        if !self.env.has_app(app) {
            return status::NOT_FOUND;
        }
        if self.effects.deliveries.len() >= self.limits.max_deliveries {
            self.effects.limit_hits += 1;
            return status::LIMIT;
        }
        let snapshot = self.effects.snapshot(self.capsule);
        self.effects
            .deliveries
            .push(crate::Delivery { app, snapshot });
        status::OK
    }

    fn check_key(&mut self, key: &[u8]) -> Option<i32> {
        (key.len() > self.env.store().config().max_key_len).then_some(status::TOO_LARGE)
    }

    /// `store_get`: copy at most `out.len()` bytes of the value; returns the full value length.
    pub fn store_get(&mut self, key: &[u8], out: &mut [u8]) -> i32 {
        if let Some(err) = self.check_key(key) {
            return err;
        }
        let ns = self.namespace();
        let now = self.env.now();
        match self.env.store().get(&ns, key, now) {
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
        let now = self.env.now();
        match self
            .env
            .store()
            .put(&ns, key, value, Duration::from_millis(ttl_ms), now)
        {
            Ok(_) => status::OK,
            Err(PutError::QuotaExceeded { .. }) => status::QUOTA,
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
        if self.env.store().remove(&ns, key) {
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
