//! Wire protocols shared by ncproxy and ncbench.
//!
//! Layout:
//! - [`resp`]: RESP2 requests and replies: a streaming, zero-copy parser that
//!   validates requests exactly as nutcracker 0.5.0 does, the command table
//!   (arity class, key positions, fragmentation kind), reply scanning and the
//!   few encoders the proxy needs (fragments, synthesized replies).
//! - [`memcache`]: memcached's ASCII protocol with the same shape (parse
//!   request → command and key spans, scan reply → length and kind):
//!   nutcracker 0.5.0's grammar for its 14 commands, plus `gat`/`gats`,
//!   `flush_all`, `verbosity`, `stats` and the meta commands as ncproxy
//!   extensions.
//! - [`ParseError`] (in `error.rs`): why a buffer is not (yet) one message,
//!   shared by both protocols (also reachable as `resp::ParseError`).
//! - [`Limits`]: hard bounds on untrusted input, checked before anything is
//!   allocated or waited for.
//!
//! The proxy core only sees those shapes, not the wire format.
//!
//! **Invariant:** this crate is pure: no I/O, no tokio, no logging, no
//! allocation per parsed request or reply.
#![forbid(unsafe_code)]

mod error;
mod limits;
pub mod memcache;
pub mod resp;

pub use error::ParseError;
pub use limits::{Limits, DEFAULT_MBUF_SIZE, MBUF_HEADER_SIZE};
