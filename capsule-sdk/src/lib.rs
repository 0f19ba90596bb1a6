//! Write ANTS capsules in Rust.
//!
//! A capsule is a `no_std` `cdylib` compiled to `wasm32-unknown-unknown`. It names a handler
//! with [`entry!`]; the node calls it once per capsule arriving, with a [`Ctx`] giving access
//! to the capsule ([`Capsule`]), the node ([`Node`]) and the protocol's soft-store
//! ([`Store`]). Every host call returns a [`Result`]; the SDK never panics on a status code.
//!
//! ```
//! # #![cfg_attr(target_arch = "wasm32", no_std)]
//! use ants_sdk::{Ctx, Result, entry};
//!
//! entry!(forward);
//!
//! fn forward(cx: &mut Ctx) -> Result<()> {
//!     let dst = cx.capsule.dst();
//!     if dst == cx.node.address() {
//!         cx.capsule.deliver_to_app(0)
//!     } else {
//!         cx.capsule.route_for_node(dst)
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! On native targets the same calls go to a [`mock`] host, so the handler can be unit-tested
//! with plain `cargo test`.
//!
//! Module map: [`sys`] (raw imports next to their slice-based wrappers), [`capsule`],
//! [`node`], [`store`], [`log`](mod@log) (formatting macros), [`error`](mod@error).
#![no_std]

#[cfg(not(target_arch = "wasm32"))]
extern crate std;

pub mod capsule;
pub mod error;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod mock;
pub mod node;
pub mod store;
pub mod sys;

pub use ants_wire::abi::{ABI_VERSION, LogLevel};
pub use ants_wire::{Address, CapsuleType};
pub use capsule::Capsule;
pub use core::time::Duration;
pub use error::{Error, Result};
pub use node::Node;
pub use store::Store;

/// Everything a handler can reach: the capsule, the node, the soft-store.
#[derive(Debug)]
pub struct Ctx {
    /// The capsule being processed.
    pub capsule: Capsule,
    /// The node it is on.
    pub node: Node,
    /// This protocol's soft-store namespace.
    pub store: Store,
}

impl Ctx {
    #[doc(hidden)]
    pub fn __new() -> Ctx {
        Ctx {
            capsule: Capsule::new(),
            node: Node::new(),
            store: Store::new(),
        }
    }
}

/// Run a handler and turn its result into the entry's return code (0 = handled).
#[doc(hidden)]
pub fn __run(handler: fn(&mut Ctx) -> Result<()>) -> i32 {
    match handler(&mut Ctx::__new()) {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// Declare the capsule's handler: `entry!(my_handler)` where
/// `fn my_handler(cx: &mut Ctx) -> Result<()>`.
///
/// Exports `ants_on_capsule` (returning 0 on `Ok`, the error's code on `Err`) and
/// `ants_abi_version`. On native targets nothing is exported; tests call the handler through
/// [`mock::MockHost::run`].
#[macro_export]
macro_rules! entry {
    ($handler:path) => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn ants_on_capsule() -> i32 {
            $crate::__run($handler)
        }

        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn ants_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        // Natively nothing is exported; this checks the handler's signature and keeps it
        // "used" for builds that are not tests.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(&mut $crate::Ctx) -> $crate::Result<()> = $handler;
    };
}

#[cfg(all(target_arch = "wasm32", feature = "panic-handler", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A panicking capsule traps; the node discards its outputs and counts the trap.
    core::arch::wasm32::unreachable()
}
