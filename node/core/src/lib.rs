//! Sans-IO core of an ANTS node: host ABI semantics, executor interface, (later) routing and code loading
