//! Wire protocols shared by ncproxy and ncbench.
//!
//! Layout:
//! - [`resp`]: RESP2 requests and replies: a streaming, zero-copy parser that
//!   validates requests exactly as nutcracker 0.5.0 does, the command table
//!   (arity class, key positions, fragmentation kind), reply scanning and the
//!   few encoders the proxy needs (fragments, synthesized replies).
//! - [`Limits`]: hard bounds on untrusted input, checked before anything is
//!   allocated or waited for.
//!
//! memcached ASCII will live beside `resp` as its own module with the same
//! shape (parse request → key spans, parse reply → length and kind); the proxy
//! core only sees those shapes, not the wire format.
//!
//! **Invariant:** this crate is pure: no I/O, no tokio, no logging, no
//! allocation per parsed request or reply.
#![forbid(unsafe_code)]

mod limits;
pub mod resp;

pub use limits::{Limits, DEFAULT_MBUF_SIZE, MBUF_HEADER_SIZE};
