//! End-to-end tests of the traceroute capsule on real overlay nodes.
