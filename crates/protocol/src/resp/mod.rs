//! RESP2: requests, replies, the command table and encoders.
//!
//! Layout: `request` parses and validates one client request in place and
//! returns spans into the caller's buffer; `reply` scans one server reply;
//! `command`/`table` hold the command table; `encode` writes the few frames the
//! proxy synthesizes.

mod command;
mod encode;
mod reply;
mod request;
mod table;

pub use command::{lookup, Arity, CommandSpec, FragmentKind, Special};
pub use encode::{encode_array_header, encode_bulk, encode_command, encode_integer, write_usize};
pub use reply::{parse_reply, ArrayElements, Reply, ReplyKind, ReplyScanner};
pub use request::{parse_request, ArgIter, Request};

/// Re-exported from the crate root, where it is shared with `memcache`.
pub use crate::error::ParseError;

/// Reads a decimal line terminated by CRLF starting at `pos`, digits only,
/// as nutcracker's `isdigit` loops do (no sign, leading zeros fine).
/// Returns the value, the number of digits and the position after the LF.
#[inline]
pub(crate) fn read_uint_line(
    buf: &[u8],
    mut pos: usize,
) -> Result<(usize, usize, usize), ParseError> {
    let start = pos;
    let mut value: usize = 0;
    loop {
        let Some(&ch) = buf.get(pos) else {
            return Err(ParseError::Incomplete);
        };
        match ch {
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(ch - b'0')))
                    .ok_or(ParseError::Protocol("number too large"))?;
                pos += 1;
            }
            b'\r' => {
                match buf.get(pos + 1) {
                    None => return Err(ParseError::Incomplete),
                    Some(b'\n') => {}
                    Some(_) => return Err(ParseError::Protocol("expected LF after CR")),
                }
                return Ok((value, pos - start, pos + 2));
            }
            _ => return Err(ParseError::Protocol("expected digit")),
        }
    }
}
