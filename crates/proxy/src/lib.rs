//! nc-proxy
