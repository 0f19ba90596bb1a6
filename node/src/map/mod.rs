//! A picture of a deployment (`ants map`, `ants sim --map`): nodes coloured by health and the
//! links between them labelled with their capsule traffic, as SVG or as a self-refreshing
//! web page.
//!
//! - [`model`]: [`Map`] — nodes ([`MapNode`], [`Health`]) and links ([`MapLink`], one
//!   [`Flow`] per direction) — built from two polls of running nodes' counters
//!   ([`Map::from_polls`]) or from the end of a simulated run ([`Map::from_sim`]).
//! - [`dir`]: the nodes of a topology directory (one node config per `.toml` file).
//! - [`layout`]: deterministic node positions (force-directed from a fixed start, turned
//!   so the graph's long axis is horizontal, spread until no two nodes' labels meet).
//! - [`svg`]: the picture ([`svg::render_svg`]) and the page around it
//!   ([`svg::render_page`]); no external script, style or font.
//!
//! Nothing here does I/O except [`dir`] reading config files; polling and serving belong
//! to the CLI (`node/src/cli/map.rs`).

pub mod dir;
pub mod layout;
pub mod model;
pub mod svg;

pub use dir::{DirError, NodeSource, read_topology_dir};
pub use model::{Flow, Health, Map, MapLink, MapNode, Poll, Unit};
