//! End-to-end tests of the anycast capsule on real overlay nodes.
