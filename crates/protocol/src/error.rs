//! The one error type of every parser in this crate.

use thiserror::Error;

/// Why a buffer is not (yet) one valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes so far are a valid prefix: read more and parse again.
    #[error("incomplete message")]
    Incomplete,
    /// A byte that the grammar does not allow here.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A request whose command nutcracker does not support.
    #[error("unsupported command")]
    UnsupportedCommand,
    /// A supported command with an argument count nutcracker rejects.
    #[error("wrong number of arguments")]
    Arity,
    /// A key at or above `Limits::max_key_len` (memcache: also above
    /// `memcache::MAX_KEY_LEN`).
    #[error("key too long")]
    KeyTooLong,
    /// A bulk length above `Limits::max_bulk_len` (memcache: a data block's
    /// `<bytes>`/`<datalen>`/`VALUE` size).
    #[error("bulk string too long")]
    BulkTooLong,
    /// An array length above `Limits::max_array_len` (memcache: the number
    /// of keys of one retrieval request).
    #[error("array too long")]
    ArrayTooLong,
    /// Reply arrays nested deeper than `Limits::max_depth`.
    #[error("arrays nested too deep")]
    TooDeep,
    /// A line-based (memcache) message whose line has not ended within its
    /// bound: `Limits::max_bulk_len` for a request line,
    /// `memcache::MAX_REPLY_LINE` for a reply line.
    #[error("line too long")]
    LineTooLong,
}
