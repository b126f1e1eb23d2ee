//! memcached's ASCII protocol: requests, replies, base64 keys.
//!
//! Layout:
//! - `command`: the [`Command`] set: nutcracker 0.5.0's 14 commands plus the
//!   ncproxy extensions (`gat gats flush_all verbosity stats` and the meta
//!   commands `mg ms md ma mn me`), and name lookup.
//! - `request`: [`parse_request`] validates one client request in place and
//!   returns spans into the caller's buffer ([`Request`]). For nutcracker's
//!   commands it accepts exactly what `memcache_parse_req` accepts; a byte
//!   that cannot lead to a valid request is an error as soon as it arrives.
//! - `reply`: [`parse_reply`] / [`ReplyScanner`] find where one server reply
//!   ends and what it is ([`Reply`], [`ReplyKind`]), by the rules of
//!   `memcache_parse_rsp` plus `OK` and the meta replies; [`ValueBlocks`]
//!   walks the `VALUE` blocks of a retrieval reply for multi-get coalescing.
//! - `base64`: [`decode_base64_key`] for meta requests with the `b` flag.
//!
//! Lengths are checked against [`crate::Limits`] as soon as they are read: a
//! data block larger than `max_bulk_len` is refused before any of it has
//! arrived, and a request line must end within `max_bulk_len` bytes
//! (a reply line within [`MAX_REPLY_LINE`]). Data blocks are framed by their
//! declared length, never scanned.

mod base64;
mod command;
mod line;
mod reply;
mod request;

pub use base64::decode_base64_key;
pub use command::Command;
pub use reply::{parse_reply, Reply, ReplyKind, ReplyScanner, ValueBlocks, MAX_REPLY_LINE};
pub use request::{parse_request, KeySpans, Request};

/// memcached's and nutcracker's MEMCACHE_MAX_KEY_LENGTH.
pub const MAX_KEY_LEN: usize = 250;
