//! Request parsing: one memcache ASCII request at the start of a buffer.
//!
//! nutcracker's 14 commands follow `memcache_parse_req` byte for byte:
//! - leading spaces before the name; the name is lower case (`SW_START`
//!   wants `islower`, so `G` is an error on its own);
//! - one or more spaces between tokens; a key is any bytes but space and CR
//!   (nutcracker lets LF, NUL and other control bytes through), 1..=250
//!   bytes, its length checked when the token ends;
//! - storage: `<flags> <exptime>` are digits each ended by a space (so
//!   `set k 0 0\r\n` and negative exptimes fail), `<bytes>` digits ended by
//!   space or CR (`cas`: space, then digits), then optional `noreply`;
//! - `incr`/`decr`/`touch`: the number is a digit or `-` followed by digits
//!   only (so a lone `-` and `-5` pass, `5-` does not); CR right after the
//!   key is an error;
//! - `noreply` is exactly those 7 bytes then space or CR, only trailing
//!   spaces after it, and only for storage, arithmetic, `touch`, `delete`
//!   (in `get` it is just another key);
//! - `version`/`quit` take nothing but trailing spaces;
//! - a data block is LF after the line's CR, `<bytes>` bytes, then CR LF at
//!   exactly that offset.
//!
//! Extensions (`gat gats flush_all verbosity stats` and meta) use the same
//! token rules, but their keys and flags may not contain control bytes.
//! Where nutcracker only notices a bad name or `noreply` at the token's
//! end, this parser fails as soon as the bytes so far cannot be one: the
//! set of accepted inputs is the same, errors just come sooner.

use std::ops::Range;

use super::command::{Command, MAX_NAME_LEN};
use super::line::{data_block, Line, CR};
use super::MAX_KEY_LEN;
use crate::{Limits, ParseError};

/// One complete, valid request at the start of a buffer. All ranges index
/// the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The whole request, data block included.
    pub len: usize,
    /// Which command.
    pub command: Command,
    /// The first key (`0..0` when the command has none).
    pub key: Range<usize>,
    /// Number of keys (retrieval: all of them; `version`, `stats`, ...: 0).
    pub nkeys: usize,
    /// Retrieval: from the first key's first byte to the last key's last
    /// byte (only keys and spaces in between); otherwise `key`.
    pub keys: Range<usize>,
    /// `gat`/`gats`: the exptime token.
    pub exptime: Option<Range<usize>>,
    /// The `noreply` token, when present (storage, `incr`/`decr`,
    /// `delete`, `touch`, `flush_all`, `verbosity`).
    pub noreply: Option<Range<usize>>,
    /// Meta: offset of the first `q` flag's byte, when present.
    pub quiet: Option<usize>,
    /// Meta: the `b` flag is present (the key is base64, see
    /// [`decode_base64_key`](super::decode_base64_key); not validated here).
    pub base64_key: bool,
    /// The command line including its CRLF (a data block follows for
    /// storage commands and `ms`).
    pub line_len: usize,
}

impl Request {
    /// Spans of every key, in order: all keys of a retrieval command, just
    /// `key` for one-key commands, nothing for the others.
    pub fn key_spans<'a>(&self, buf: &'a [u8]) -> KeySpans<'a> {
        KeySpans::new(buf, self.keys.clone())
    }
}

/// Iterator over a request's keys, from [`Request::key_spans`].
#[derive(Debug, Clone)]
pub struct KeySpans<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> KeySpans<'a> {
    /// The keys in `keys` (a [`Request::keys`] span) of `buf`, which may be
    /// the request's own bytes.
    pub fn new(buf: &'a [u8], keys: Range<usize>) -> KeySpans<'a> {
        KeySpans {
            buf,
            pos: keys.start,
            end: keys.end,
        }
    }
}

impl Iterator for KeySpans<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        // Keys never contain spaces (a space ends a key), so the keys span
        // splits on runs of spaces.
        while self.pos < self.end && self.buf[self.pos] == b' ' {
            self.pos += 1;
        }
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        while self.pos < self.end && self.buf[self.pos] != b' ' {
            self.pos += 1;
        }
        Some(start..self.pos)
    }
}

const NOREPLY: &[u8; 7] = b"noreply";

/// Parses one request. `Err(ParseError::Incomplete)` only when the bytes so
/// far are a valid prefix of a request; any other error is final (the
/// proxy closes or answers an error).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Request, ParseError> {
    let mut p = Parser {
        l: Line::new(buf, 0, limits.max_bulk_len),
        limits,
    };
    p.request()
}

struct Parser<'a, 'l> {
    l: Line<'a>,
    limits: &'l Limits,
}

/// What the command-specific part found.
#[derive(Default)]
struct Found {
    key: Option<Range<usize>>,
    nkeys: usize,
    keys_end: usize,
    exptime: Option<Range<usize>>,
    noreply: Option<Range<usize>>,
    quiet: Option<usize>,
    base64_key: bool,
    /// Data block length (storage, `ms`).
    data: Option<usize>,
}

impl Parser<'_, '_> {
    fn request(&mut self) -> Result<Request, ParseError> {
        let first = self.l.skip_spaces()?;
        if !first.is_ascii_lowercase() {
            return Err(ParseError::UnsupportedCommand);
        }
        let command = self.name()?;
        let mut f = Found::default();
        use Command::*;
        match command {
            Get | Gets => {
                self.after_name_space()?;
                self.keys(&mut f, false)?;
            }
            Gat | Gats => {
                self.after_name_space()?;
                self.l.skip_spaces()?;
                let (exptime, _) = self.l.number(true, usize::MAX)?;
                if exptime.len() == 1 && self.l.buf[exptime.start] == b'-' {
                    return Err(ParseError::Protocol("expected digit"));
                }
                self.space_after(true)?;
                f.exptime = Some(exptime);
                self.keys(&mut f, true)?;
            }
            Set | Add | Replace | Append | Prepend | Cas => {
                self.after_name_space()?;
                self.one_key(&mut f, false)?;
                self.space_after(true)?;
                // memcached reads flags as 32 bits, exptime as a long and
                // cas as 64 bits; a value it cannot read makes it answer
                // the line and then read the data block as a command (two
                // replies for one request), so such a request is refused.
                self.digits_then_space(u64::from(u32::MAX))?; // flags
                self.digits_then_space(i64::MAX as u64)?; // exptime
                self.l.skip_spaces()?;
                let (_, bytes) = self.l.number(false, self.limits.max_bulk_len)?;
                self.space_after(command == Cas)?;
                if command == Cas {
                    self.l.skip_spaces()?;
                    self.l.number_at_most(u64::MAX)?;
                    self.space_after(false)?;
                }
                f.data = Some(bytes);
                self.tail(&mut f, true)?;
            }
            Incr | Decr | Touch => {
                self.after_name_space()?;
                self.one_key(&mut f, false)?;
                self.space_after(true)?;
                self.l.skip_spaces()?;
                self.l.number(true, usize::MAX)?;
                self.space_after(false)?;
                self.tail(&mut f, true)?;
            }
            Delete => {
                self.after_name_space()?;
                self.one_key(&mut f, false)?;
                self.tail(&mut f, true)?;
            }
            Version | Quit | MetaNoop => self.l.spaces_to_cr()?,
            FlushAll => {
                if self.l.skip_spaces()?.is_ascii_digit() {
                    self.l.number(false, usize::MAX)?;
                    self.space_after(false)?;
                }
                self.tail(&mut f, true)?;
            }
            Verbosity => {
                self.after_name_space()?;
                self.l.skip_spaces()?;
                self.l.number(false, usize::MAX)?;
                self.space_after(false)?;
                self.tail(&mut f, true)?;
            }
            Stats => self.l.run_to_cr(true)?,
            MetaGet | MetaDelete | MetaArithmetic | MetaDebug => {
                self.after_name_space()?;
                self.one_key(&mut f, true)?;
                self.meta_flags(&mut f)?;
            }
            MetaSet => {
                self.after_name_space()?;
                self.one_key(&mut f, true)?;
                self.space_after(true)?;
                self.l.skip_spaces()?;
                let (_, datalen) = self.l.number(false, self.limits.max_bulk_len)?;
                self.space_after(false)?;
                f.data = Some(datalen);
                self.meta_flags(&mut f)?;
            }
        }
        // The cursor is at the line's CR.
        self.l.crlf()?;
        let line_len = self.l.pos;
        let len = match f.data {
            Some(n) => data_block(self.l.buf, line_len, n)?,
            None => line_len,
        };
        let key = f.key.unwrap_or(0..0);
        let keys = if f.nkeys > 0 {
            key.start..f.keys_end
        } else {
            0..0
        };
        Ok(Request {
            len,
            command,
            key,
            nkeys: f.nkeys,
            keys,
            exptime: f.exptime,
            noreply: f.noreply,
            quiet: f.quiet,
            base64_key: f.base64_key,
            line_len,
        })
    }

    /// The command name, up to its space or CR (not consumed).
    fn name(&mut self) -> Result<Command, ParseError> {
        let start = self.l.pos;
        loop {
            let ch = match self.l.peek() {
                Ok(ch) => ch,
                Err(e) => {
                    // Out of bytes inside the name: fail now if no command
                    // starts like this (the whole input would fail too).
                    return Err(if Command::is_name_prefix(&self.l.buf[start..self.l.pos]) {
                        e
                    } else {
                        ParseError::UnsupportedCommand
                    });
                }
            };
            if ch == b' ' || ch == CR {
                return Command::lookup(&self.l.buf[start..self.l.pos])
                    .ok_or(ParseError::UnsupportedCommand);
            }
            if !(ch.is_ascii_lowercase() || ch == b'_') || self.l.pos - start >= MAX_NAME_LEN {
                return Err(ParseError::UnsupportedCommand);
            }
            self.l.pos += 1;
        }
    }

    /// The name must be followed by a space (a CR means missing arguments).
    fn after_name_space(&mut self) -> Result<(), ParseError> {
        self.space_after(true)
    }

    /// At a token's terminator: a space is required; a CR is allowed
    /// unless `space_only`. Consumes nothing.
    fn space_after(&mut self, space_only: bool) -> Result<(), ParseError> {
        match self.l.peek()? {
            b' ' => Ok(()),
            CR if space_only => Err(ParseError::Arity),
            CR => Ok(()),
            _ => Err(ParseError::Protocol("unexpected byte after token")),
        }
    }

    /// `SW_SPACES_BEFORE_FLAGS`/`SW_FLAGS`: digits ended by a space only,
    /// at most `max`.
    fn digits_then_space(&mut self, max: u64) -> Result<(), ParseError> {
        self.l.skip_spaces()?;
        self.l.number_at_most(max)?;
        self.space_after(true)
    }

    /// A key after spaces; its terminator is not consumed.
    fn key(&mut self, strict: bool) -> Result<Range<usize>, ParseError> {
        self.l.skip_spaces()?;
        let key = self.l.token(strict)?;
        if key.is_empty() {
            return Err(ParseError::Arity);
        }
        if key.len() > MAX_KEY_LEN || key.len() >= self.limits.max_key_len {
            return Err(ParseError::KeyTooLong);
        }
        Ok(key)
    }

    fn one_key(&mut self, f: &mut Found, strict: bool) -> Result<(), ParseError> {
        let key = self.key(strict)?;
        f.keys_end = key.end;
        f.key = Some(key);
        f.nkeys = 1;
        Ok(())
    }

    /// One or more keys up to the line's CR.
    fn keys(&mut self, f: &mut Found, strict: bool) -> Result<(), ParseError> {
        loop {
            if self.l.skip_spaces()? == CR && f.nkeys > 0 {
                return Ok(());
            }
            if f.nkeys == self.limits.max_array_len {
                return Err(ParseError::ArrayTooLong);
            }
            let key = self.key(strict)?;
            f.keys_end = key.end;
            f.key.get_or_insert(key);
            f.nkeys += 1;
        }
    }

    /// `SW_RUNTO_CRLF` + `SW_NOREPLY` + `SW_AFTER_NOREPLY`: spaces, at most
    /// one `noreply` (when `noreply` is allowed), spaces, CR.
    fn tail(&mut self, f: &mut Found, noreply: bool) -> Result<(), ParseError> {
        loop {
            match self.l.peek()? {
                b' ' => self.l.pos += 1,
                CR => return Ok(()),
                b'n' if noreply && f.noreply.is_none() => {
                    let start = self.l.pos;
                    for &want in NOREPLY {
                        if self.l.peek()? != want {
                            return Err(ParseError::Protocol("expected noreply"));
                        }
                        self.l.pos += 1;
                    }
                    if !matches!(self.l.peek()?, b' ' | CR) {
                        return Err(ParseError::Protocol("expected noreply"));
                    }
                    f.noreply = Some(start..self.l.pos);
                }
                _ => return Err(ParseError::Protocol("unexpected argument")),
            }
        }
    }

    /// Meta flags up to the line's CR: each a letter, optionally with a
    /// token glued on (`O123`, `T60`).
    fn meta_flags(&mut self, f: &mut Found) -> Result<(), ParseError> {
        loop {
            let ch = self.l.skip_spaces()?;
            if ch == CR {
                return Ok(());
            }
            if !ch.is_ascii_alphabetic() {
                return Err(ParseError::Protocol("bad meta flag"));
            }
            match ch {
                b'q' if f.quiet.is_none() => f.quiet = Some(self.l.pos),
                b'b' => f.base64_key = true,
                _ => {}
            }
            self.l.pos += 1;
            self.l.token(true)?;
        }
    }
}

#[cfg(test)]
mod tests;
