//! nc-config
