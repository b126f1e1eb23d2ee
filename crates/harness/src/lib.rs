//! nc-harness
