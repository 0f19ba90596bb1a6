//! Host ABI v2: what a capsule module may import and must export.
//!
//! A capsule is a core wasm module that imports only from module [`IMPORT_MODULE`] the
//! functions listed in [`HOST_FUNCTIONS`] (with exactly those signatures), exports its linear
//! memory as [`MEMORY_EXPORT`], the entry [`ENTRY_EXPORT`] `() -> i32` and
//! [`ABI_VERSION_EXPORT`] `() -> i32` returning [`ABI_VERSION`]. The node checks all of this
//! when it loads a module and rejects it with a readable reason otherwise.
//!
//! Pointers and lengths are `i32` offsets into the capsule's linear memory. Every host
//! function returns a status: a non-negative value on success (often a length) or one of the
//! negative codes in [`status`]. A bad pointer never traps; it returns
//! [`status::BAD_POINTER`].

/// The ABI version this crate describes. Version 2 made the resource a budget the copies of
/// one run share (`route_for_node`, `route_for_node_with`) and charged host calls fuel.
pub const ABI_VERSION: i32 = 2;
/// The only import module a capsule may use.
pub const IMPORT_MODULE: &str = "ants";
/// The entry point, `() -> i32`: 0 = handled, anything else = the capsule reports an error.
pub const ENTRY_EXPORT: &str = "ants_on_capsule";
/// `() -> i32` returning [`ABI_VERSION`].
pub const ABI_VERSION_EXPORT: &str = "ants_abi_version";
/// The capsule's linear memory.
pub const MEMORY_EXPORT: &str = "memory";

/// Status codes returned by host functions. Non-negative values mean success.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// A pointer/length pair is outside the capsule's linear memory.
    pub const BAD_POINTER: i32 = -1;
    /// An argument is out of range (unknown field, level, negative length or TTL…).
    pub const BAD_ARGUMENT: i32 = -2;
    /// No such soft-store key, app or route.
    pub const NOT_FOUND: i32 = -3;
    /// The field cannot be written by capsule code (`type`, `src`, `prev`).
    pub const READ_ONLY: i32 = -4;
    /// A size limit would be exceeded (capsule size, key or value size).
    pub const TOO_LARGE: i32 = -5;
    /// The protocol's soft-store quota is full.
    pub const QUOTA: i32 = -6;
    /// A per-execution limit is reached (copies sent, deliveries, log lines).
    pub const LIMIT: i32 = -7;
    /// The capsule's resource budget is used up; nothing was sent.
    pub const RESOURCE_EXHAUSTED: i32 = -8;
    /// No route toward that address.
    pub const NO_ROUTE: i32 = -9;

    /// A short name for a status code, for logs and `ants capsule test`.
    pub fn name(code: i32) -> &'static str {
        match code {
            OK => "ok",
            BAD_POINTER => "bad-pointer",
            BAD_ARGUMENT => "bad-argument",
            NOT_FOUND => "not-found",
            READ_ONLY => "read-only",
            TOO_LARGE => "too-large",
            QUOTA => "quota",
            LIMIT => "limit",
            RESOURCE_EXHAUSTED => "resource-exhausted",
            NO_ROUTE => "no-route",
            c if c > 0 => "ok",
            _ => "unknown",
        }
    }
}

/// A capsule field, as named by `capsule_len`/`capsule_read`/`capsule_write`/`capsule_resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Field {
    /// The capsule type, 32 bytes, read-only.
    Type = 0,
    /// Source address, 16 bytes, read-only.
    Src = 1,
    /// Destination address, 16 bytes, writable.
    Dst = 2,
    /// Previous hop, 16 bytes, read-only (the node sets it on send).
    Prev = 3,
    /// Protocol header, variable, writable and resizable.
    Header = 4,
    /// Payload, variable, writable and resizable.
    Payload = 5,
}

impl Field {
    /// Decode a field id from the guest.
    pub fn from_i32(v: i32) -> Option<Field> {
        Some(match v {
            0 => Field::Type,
            1 => Field::Src,
            2 => Field::Dst,
            3 => Field::Prev,
            4 => Field::Header,
            5 => Field::Payload,
            _ => return None,
        })
    }
}

/// Log levels for the `log` host function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum LogLevel {
    /// Something is wrong.
    Error = 1,
    /// Something looks wrong.
    Warn = 2,
    /// Notable.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

impl LogLevel {
    /// Decode a level from the guest.
    pub fn from_i32(v: i32) -> Option<LogLevel> {
        Some(match v {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => return None,
        })
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A wasm value type used in host signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

/// One host function: name and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFn {
    /// Import name within [`IMPORT_MODULE`].
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
    /// One-line contract, printed by `ants capsule check --abi`.
    pub doc: &'static str,
}

use ValType::{I32, I64};

/// Every function the host provides, in the order of `docs/abi.md`.
pub const HOST_FUNCTIONS: &[HostFn] = &[
    HostFn {
        name: "node_address",
        params: &[I32],
        results: &[I32],
        doc: "node_address(out) -> status: write this node's 16-byte address at out",
    },
    HostFn {
        name: "node_time",
        params: &[],
        results: &[I64],
        doc: "node_time() -> ns: node time in nanoseconds since the Unix epoch (virtual in simulation)",
    },
    HostFn {
        name: "node_random",
        params: &[I32, I32],
        results: &[I32],
        doc: "node_random(out, len) -> status: fill out[..len] from the node's seeded generator",
    },
    HostFn {
        name: "capsule_len",
        params: &[I32],
        results: &[I32],
        doc: "capsule_len(field) -> len: current length of a field",
    },
    HostFn {
        name: "capsule_read",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        doc: "capsule_read(field, offset, out, len) -> copied: copy field[offset..] into out, at most len bytes",
    },
    HostFn {
        name: "capsule_write",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        doc: "capsule_write(field, offset, src, len) -> status: overwrite field[offset..offset+len] (header, payload, dst)",
    },
    HostFn {
        name: "capsule_resize",
        params: &[I32, I32],
        results: &[I32],
        doc: "capsule_resize(field, new_len) -> status: grow (zero-filled) or shrink the header or payload",
    },
    HostFn {
        name: "capsule_resource",
        params: &[],
        results: &[I32],
        doc: "capsule_resource() -> n: resource budget not yet given to copies (at the start: the arriving resource)",
    },
    HostFn {
        name: "route_for_node",
        params: &[I32],
        results: &[I32],
        doc: "route_for_node(addr) -> status: send a copy of the capsule as it is now toward addr; copies share what is left of the budget when the run ends",
    },
    HostFn {
        name: "route_for_node_with",
        params: &[I32, I32],
        results: &[I32],
        doc: "route_for_node_with(addr, resource) -> status: like route_for_node, the copy carrying exactly resource (budget pays resource + 1)",
    },
    HostFn {
        name: "node_neighbours",
        params: &[I32, I32],
        results: &[I32],
        doc: "node_neighbours(out, cap) -> n: write up to cap 16-byte neighbour addresses at out; returns how many neighbours there are",
    },
    HostFn {
        name: "next_hop",
        params: &[I32, I32],
        results: &[I32],
        doc: "next_hop(addr, out) -> status: write the next active hop toward addr at out",
    },
    HostFn {
        name: "deliver_to_app",
        params: &[I32],
        results: &[I32],
        doc: "deliver_to_app(app) -> status: hand a copy of the capsule as it is now to local app `app`",
    },
    HostFn {
        name: "store_get",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        doc: "store_get(key, key_len, out, cap) -> len: value length (copies at most cap bytes) or not-found",
    },
    HostFn {
        name: "store_put",
        params: &[I32, I32, I32, I32, I64],
        results: &[I32],
        doc: "store_put(key, key_len, val, val_len, ttl_ms) -> status: insert or replace with a time-to-live",
    },
    HostFn {
        name: "store_remove",
        params: &[I32, I32],
        results: &[I32],
        doc: "store_remove(key, key_len) -> status: ok or not-found",
    },
    HostFn {
        name: "log",
        params: &[I32, I32, I32],
        results: &[I32],
        doc: "log(level, msg, len) -> status: log a UTF-8 line (1=error … 5=trace)",
    },
];

/// Look up a host function by import name.
pub fn host_fn(name: &str) -> Option<&'static HostFn> {
    HOST_FUNCTIONS.iter().find(|f| f.name == name)
}
