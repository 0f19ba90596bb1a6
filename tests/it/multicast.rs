//! End-to-end tests of the multicast capsule on real overlay nodes.
