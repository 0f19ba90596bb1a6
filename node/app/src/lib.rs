//! The ANTS-rs local app interface: how programs on a node's host send capsules and receive
//! the capsules delivered to them.
//!
//! An app connects to the node's Unix stream socket (`[node] app_socket` in the node's
//! config), registers an app id, then injects capsules and receives the capsules whose code
//! calls `deliver_to_app(id)` on that node.
//!
//! - [`proto`]: the frames on the socket — encode/decode, never panicking on hostile bytes.
//! - [`AppClient`] ([`client`]): a blocking client for apps and the `ants` CLI.
//! - [`cli`]: output helpers for `ants send` / `ants listen`.
//!
//! The node side (a tokio server) is `ants_node::app_server`. The protocol and its byte
//! layout are described in `docs/apps.md`.
//!
//! ```no_run
//! use ants_app::{AppClient, Inject};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = AppClient::connect("/run/ants/app.sock", 7)?;
//! let code = std::fs::read("forward.wasm")?;
//! let inject = Inject::with_code(code, "198.18.0.5".parse()?, 64, vec![], b"hello".to_vec());
//! client.inject(&inject)?;
//! let delivery = client.recv()?;
//! println!("{}", ants_app::format_delivery_json(&delivery));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod proto;

pub use cli::format_delivery_json;
pub use client::{
    AppClient, AppClientBuilder, Capture, ClientError, capture, evict_module, query_stats, reload,
    store_dump, traces,
};
pub use proto::{
    AppFrame, Captured, DecodeError, Delivery, EncodeError, Inject, MAX_ACCEPT_TYPES, NodeFrame,
    capsule_type_of,
};
