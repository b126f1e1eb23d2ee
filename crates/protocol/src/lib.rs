//! nc-protocol
