//! Cross-crate integration tests
