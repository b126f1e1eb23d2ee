//! Reply scanning: where one memcached reply ends and what it is, without
//! copying, by the rules of nutcracker 0.5.0's `memcache_parse_rsp`:
//! - a first byte that is a digit starts a number line (incr/decr): digits,
//!   then spaces, then CRLF;
//! - `STORED NOT_STORED EXISTS NOT_FOUND DELETED TOUCHED ERROR` allow only
//!   spaces before the CRLF; `END` must be followed by CR at once (nutcracker
//!   compares `END\r`, so `END \r\n` is an error);
//! - `CLIENT_ERROR SERVER_ERROR VERSION` run to the CRLF (free text);
//! - `VALUE <key> <flags> <bytes> [...]`: the key is any bytes but space,
//!   flags digits ended by a space, bytes digits ended by space or CR, the
//!   rest of the line skipped (the `gets` cas unique), LF, `<bytes>` bytes,
//!   CR LF. One reply is all the `VALUE` blocks and the `END` after them.
//!
//! Added for ncproxy: `OK` (spaces, CRLF) and the meta replies `HD NF NS EX
//! ME EN` (free text to CRLF: flags), `MN` (spaces, CRLF) and `VA <size> [flags]`
//! with its data block.
//!
//! One difference: after `VALUE` blocks nutcracker takes any status word as
//! the reply's end (`VALUE ...\r\nx\r\nSTORED\r\n` is one `STORED` reply);
//! here only `END` and the error words `ERROR CLIENT_ERROR SERVER_ERROR`
//! (which memcached may send after some blocks) end such a reply, anything
//! else is a protocol error.
//!
//! Lines (all but the data blocks) are bounded by [`MAX_REPLY_LINE`]; a
//! `VALUE`/`VA` size above `Limits::max_bulk_len` is refused before its data
//! is awaited; data blocks are framed by length, never scanned.

use std::ops::Range;

use super::line::{data_block, Line, CR};
use crate::{Limits, ParseError};

/// Longest reply line accepted, CRLF included (64 KiB): far above anything
/// memcached sends (a `VALUE` header is at most ~320 bytes), small enough
/// that a server sending garbage without CRLF is cut off quickly.
pub const MAX_REPLY_LINE: usize = 64 * 1024;

/// What a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// Zero or more `VALUE` blocks then `END` (a get/gets/gat/gats reply).
    /// `end` = offset where "END\r\n" starts.
    Values {
        /// Number of `VALUE` blocks.
        count: usize,
        /// Offset of `END`.
        end: usize,
    },
    /// `STORED`
    Stored,
    /// `NOT_STORED`
    NotStored,
    /// `EXISTS`
    Exists,
    /// `NOT_FOUND`
    NotFound,
    /// `DELETED`
    Deleted,
    /// `TOUCHED`
    Touched,
    /// `OK` (flush_all, verbosity: not accepted by nutcracker, which never
    /// sends those commands)
    Ok,
    /// incr/decr result line (digits, trailing spaces allowed as nutcracker
    /// allows).
    Number,
    /// `ERROR` (possibly after `VALUE` blocks)
    Error,
    /// `CLIENT_ERROR ...` (possibly after `VALUE` blocks)
    ClientError,
    /// `SERVER_ERROR ...` (possibly after `VALUE` blocks)
    ServerError,
    /// `VERSION ...`
    Version,
    /// meta `HD [flags]`
    MetaHd,
    /// meta `VA <size> [flags]` and its data block
    MetaVa,
    /// meta `EN`
    MetaEn,
    /// meta `NF [flags]`
    MetaNf,
    /// meta `NS [flags]`
    MetaNs,
    /// meta `EX [flags]`
    MetaEx,
    /// meta `MN`
    MetaMn,
    /// meta `ME <rest of line>`
    MetaMe,
}

impl ReplyKind {
    /// `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR`.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            ReplyKind::Error | ReplyKind::ClientError | ReplyKind::ServerError
        )
    }
}

/// One complete reply at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Its length in bytes.
    pub len: usize,
    /// What it is.
    pub kind: ReplyKind,
}

/// How the rest of a reply line after its word is read.
#[derive(Clone, Copy)]
enum Rest {
    /// Spaces then CRLF (`SW_CRLF`).
    Spaces,
    /// Free text then CRLF (`SW_RUNTO_CRLF`).
    Text,
    /// CR right after the word (`END`).
    Cr,
    /// A `VALUE` block.
    Value,
    /// A meta `VA` line and its data block.
    Va,
}

/// The reply words: name, kind, rest, allowed after `VALUE` blocks.
const WORDS: [(&[u8], ReplyKind, Rest, bool); 21] = [
    (
        b"END",
        ReplyKind::Values { count: 0, end: 0 },
        Rest::Cr,
        true,
    ),
    (
        b"VALUE",
        ReplyKind::Values { count: 0, end: 0 },
        Rest::Value,
        true,
    ),
    (b"ERROR", ReplyKind::Error, Rest::Spaces, true),
    (b"CLIENT_ERROR", ReplyKind::ClientError, Rest::Text, true),
    (b"SERVER_ERROR", ReplyKind::ServerError, Rest::Text, true),
    (b"STORED", ReplyKind::Stored, Rest::Spaces, false),
    (b"NOT_STORED", ReplyKind::NotStored, Rest::Spaces, false),
    (b"EXISTS", ReplyKind::Exists, Rest::Spaces, false),
    (b"NOT_FOUND", ReplyKind::NotFound, Rest::Spaces, false),
    (b"DELETED", ReplyKind::Deleted, Rest::Spaces, false),
    (b"TOUCHED", ReplyKind::Touched, Rest::Spaces, false),
    (b"VERSION", ReplyKind::Version, Rest::Text, false),
    (b"OK", ReplyKind::Ok, Rest::Spaces, false),
    (b"HD", ReplyKind::MetaHd, Rest::Text, false),
    (b"VA", ReplyKind::MetaVa, Rest::Va, false),
    // memcached 1.6 echoes the O and k flags on a miss too (`EN O9 kkey`).
    (b"EN", ReplyKind::MetaEn, Rest::Text, false),
    (b"NF", ReplyKind::MetaNf, Rest::Text, false),
    (b"NS", ReplyKind::MetaNs, Rest::Text, false),
    (b"EX", ReplyKind::MetaEx, Rest::Text, false),
    (b"MN", ReplyKind::MetaMn, Rest::Spaces, false),
    (b"ME", ReplyKind::MetaMe, Rest::Text, false),
];

/// Longest reply word (`CLIENT_ERROR`, `SERVER_ERROR`).
const MAX_WORD_LEN: usize = 12;

const UNKNOWN: ParseError = ParseError::Protocol("unknown reply");

/// One step of a reply: a `VALUE` block, or the line that ends the reply.
pub(crate) enum Element {
    Value { key: Range<usize>, end: usize },
    Last { kind: ReplyKind, end: usize },
}

/// Scans the element at `pos`; `after_values`: `VALUE` blocks came before.
pub(crate) fn element(
    buf: &[u8],
    pos: usize,
    after_values: bool,
    limits: &Limits,
) -> Result<Element, ParseError> {
    let mut l = Line::new(buf, pos, MAX_REPLY_LINE - 2);
    let first = l.peek()?;
    if first.is_ascii_digit() && !after_values {
        l.number(false, usize::MAX)?;
        if !matches!(l.peek()?, b' ' | CR) {
            return Err(ParseError::Protocol("bad number reply"));
        }
        l.spaces_to_cr()?;
        l.crlf()?;
        return Ok(Element::Last {
            kind: ReplyKind::Number,
            end: l.pos,
        });
    }
    let (kind, rest) = word(&mut l, after_values)?;
    match rest {
        Rest::Cr => {
            if l.peek()? != CR {
                return Err(UNKNOWN);
            }
        }
        Rest::Spaces => l.spaces_to_cr()?,
        Rest::Text => l.run_to_cr(false)?,
        Rest::Value => return value_block(l, limits),
        Rest::Va => {
            if l.peek()? != b' ' {
                return Err(ParseError::Protocol("VA without size"));
            }
            l.skip_spaces()?;
            let (_, size) = l.number(false, limits.max_bulk_len)?;
            if !matches!(l.peek()?, b' ' | CR) {
                return Err(ParseError::Protocol("bad VA size"));
            }
            l.run_to_cr(false)?;
            l.crlf()?;
            let end = data_block(buf, l.pos, size)?;
            return Ok(Element::Last { kind, end });
        }
    }
    l.crlf()?;
    let kind = match kind {
        ReplyKind::Values { .. } => ReplyKind::Values { count: 0, end: pos },
        kind => kind,
    };
    Ok(Element::Last { kind, end: l.pos })
}

/// The reply word at the cursor, up to its space or CR (not consumed).
fn word(l: &mut Line<'_>, after_values: bool) -> Result<(ReplyKind, Rest), ParseError> {
    let start = l.pos;
    let allowed = move |w: &(&[u8], ReplyKind, Rest, bool)| w.3 || !after_values;
    loop {
        let ch = match l.peek() {
            Ok(ch) => ch,
            Err(e) => {
                // Out of bytes inside the word: fail now if no word starts
                // like this (the whole input would fail too).
                let so_far = &l.buf[start..l.pos];
                let hope = WORDS.iter().any(|w| allowed(w) && w.0.starts_with(so_far));
                return Err(if hope { e } else { UNKNOWN });
            }
        };
        if ch == b' ' || ch == CR {
            let name = &l.buf[start..l.pos];
            return WORDS
                .iter()
                .find(|w| allowed(w) && w.0 == name)
                .map(|w| (w.1, w.2))
                .ok_or(UNKNOWN);
        }
        if l.pos - start >= MAX_WORD_LEN {
            return Err(UNKNOWN);
        }
        l.pos += 1;
    }
}

/// `VALUE <key> <flags> <bytes> [...]\r\n<data>\r\n`, cursor after `VALUE`.
fn value_block(mut l: Line<'_>, limits: &Limits) -> Result<Element, ParseError> {
    // nutcracker's SW_SPACES_BEFORE_KEY/SW_KEY: the key starts at the first
    // byte that is not a space (even a CR) and ends only at a space.
    l.skip_spaces()?;
    let key_start = l.pos;
    while l.peek()? != b' ' {
        l.pos += 1;
    }
    let key = key_start..l.pos;
    l.skip_spaces()?;
    l.number(false, usize::MAX)?; // flags
    if l.peek()? != b' ' {
        return Err(ParseError::Protocol("bad VALUE flags"));
    }
    l.skip_spaces()?;
    let (_, bytes) = l.number(false, limits.max_bulk_len)?;
    if !matches!(l.peek()?, b' ' | CR) {
        return Err(ParseError::Protocol("bad VALUE length"));
    }
    l.run_to_cr(false)?;
    l.crlf()?;
    let end = data_block(l.buf, l.pos, bytes)?;
    Ok(Element::Value { key, end })
}

/// One-shot scan of one reply at the start of `buf`.
pub fn parse_reply(buf: &[u8], limits: &Limits) -> Result<Reply, ParseError> {
    ReplyScanner::default().scan(buf, limits)
}

/// Resumable reply scanner: a reply of many `VALUE` blocks arriving over
/// many reads is scanned once, not from its start on every read. It keeps
/// the offset of the first block not yet complete; a block that is itself
/// incomplete costs only its header line per call, since its data is
/// skipped by length.
#[derive(Debug, Default, Clone)]
pub struct ReplyScanner {
    /// Bytes of the current reply already scanned (whole blocks only).
    pos: usize,
    /// `VALUE` blocks among them.
    count: usize,
}

impl ReplyScanner {
    /// Scans the reply at the start of `buf`. Between calls that return
    /// `Incomplete`, `buf` must keep its bytes and only grow at the end;
    /// after `Ok` (the caller then removes `reply.len` bytes) or any other
    /// error, the next call starts a new reply.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Reply, ParseError> {
        loop {
            match element(buf, self.pos, self.count > 0, limits) {
                Ok(Element::Value { end, .. }) => {
                    self.pos = end;
                    self.count += 1;
                }
                Ok(Element::Last { kind, end }) => {
                    let kind = match kind {
                        ReplyKind::Values { end, .. } => ReplyKind::Values {
                            count: self.count,
                            end,
                        },
                        kind => kind,
                    };
                    *self = ReplyScanner::default();
                    return Ok(Reply { len: end, kind });
                }
                Err(ParseError::Incomplete) => return Err(ParseError::Incomplete),
                Err(e) => {
                    *self = ReplyScanner::default();
                    return Err(e);
                }
            }
        }
    }
}

/// Iterates the `VALUE` blocks of a `Values` reply: for each, the key's
/// span and the whole block's span (header line to the CRLF after the
/// data). Used to coalesce multi-get fragments.
#[derive(Debug, Clone)]
pub struct ValueBlocks<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `END` starts.
    end: usize,
    limits: Limits,
}

impl<'a> ValueBlocks<'a> {
    /// Checks that `reply` starts with a complete `Values` reply (bytes
    /// after it are ignored); errors otherwise (`Incomplete` included).
    pub fn new(reply: &'a [u8], limits: &Limits) -> Result<ValueBlocks<'a>, ParseError> {
        match parse_reply(reply, limits)?.kind {
            ReplyKind::Values { end, .. } => Ok(ValueBlocks {
                buf: reply,
                pos: 0,
                end,
                limits: *limits,
            }),
            _ => Err(ParseError::Protocol("not a VALUE/END reply")),
        }
    }
}

impl Iterator for ValueBlocks<'_> {
    type Item = (Range<usize>, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        // Validated in `new`, so this is a VALUE block.
        match element(self.buf, self.pos, true, &self.limits) {
            Ok(Element::Value { key, end }) => {
                let block = self.pos..end;
                self.pos = end;
                Some((key, block))
            }
            _ => {
                self.pos = self.end;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
