//! A cursor over one protocol line, shared by the request and reply parsers.
//!
//! Every read goes through [`Line::peek`], which says `Incomplete` at the end
//! of the buffer and `LineTooLong` at the end of the line's bound, so a
//! decision is only ever taken on bytes that have arrived, and a prefix of
//! the input parses as `Incomplete` or exactly like the whole input.

use std::ops::Range;

use crate::ParseError;

pub(crate) const CR: u8 = b'\r';
pub(crate) const LF: u8 = b'\n';

pub(crate) struct Line<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// `min(buf.len(), bound)`: the line must have ended before this.
    end: usize,
    /// The bound, not the buffer, is what stops reading at `end`.
    bounded: bool,
}

impl<'a> Line<'a> {
    /// A line starting at `start` whose content (without its CRLF) may be
    /// at most `max_content` bytes long.
    #[inline]
    pub(crate) fn new(buf: &'a [u8], start: usize, max_content: usize) -> Line<'a> {
        let bound = start.saturating_add(max_content).saturating_add(2);
        Line {
            buf,
            pos: start,
            end: buf.len().min(bound),
            bounded: buf.len() >= bound,
        }
    }

    /// The byte at the cursor, if it may be read.
    #[inline]
    pub(crate) fn peek(&self) -> Result<u8, ParseError> {
        if self.pos < self.end {
            Ok(self.buf[self.pos])
        } else if self.bounded {
            Err(ParseError::LineTooLong)
        } else {
            Err(ParseError::Incomplete)
        }
    }

    /// Skips spaces; returns the first other byte (not consumed).
    #[inline]
    pub(crate) fn skip_spaces(&mut self) -> Result<u8, ParseError> {
        loop {
            let ch = self.peek()?;
            if ch != b' ' {
                return Ok(ch);
            }
            self.pos += 1;
        }
    }

    /// Advances over bytes other than space and CR; returns their span.
    /// `strict`: control bytes (and DEL) are an error, since memcached
    /// would end its line at an LF.
    #[inline]
    pub(crate) fn token(&mut self, strict: bool) -> Result<Range<usize>, ParseError> {
        let start = self.pos;
        loop {
            let ch = self.peek()?;
            if ch == b' ' || ch == CR {
                return Ok(start..self.pos);
            }
            if strict && (ch < 0x21 || ch == 0x7f) {
                return Err(ParseError::Protocol("control byte in token"));
            }
            self.pos += 1;
        }
    }

    /// Digits (after an optional `-` when `minus`); the terminator is not
    /// consumed. A value above `cap` is `BulkTooLong` as soon as its digit
    /// arrives. Returns the token's span and its value (saturating).
    #[inline]
    pub(crate) fn number(
        &mut self,
        minus: bool,
        cap: usize,
    ) -> Result<(Range<usize>, usize), ParseError> {
        let start = self.pos;
        match self.peek()? {
            b'0'..=b'9' => {}
            b'-' if minus => self.pos += 1,
            CR => return Err(ParseError::Arity),
            _ => return Err(ParseError::Protocol("expected digit")),
        }
        let mut value: usize = 0;
        loop {
            let ch = self.peek()?;
            if !ch.is_ascii_digit() {
                return Ok((start..self.pos, value));
            }
            value = value
                .saturating_mul(10)
                .saturating_add(usize::from(ch - b'0'));
            if value > cap {
                return Err(ParseError::BulkTooLong);
            }
            self.pos += 1;
        }
    }

    /// Digits whose value must not exceed `max` (no sign); the terminator
    /// is not consumed. Out of range is an error as soon as the digit that
    /// takes it there arrives.
    #[inline]
    pub(crate) fn number_at_most(&mut self, max: u64) -> Result<(), ParseError> {
        match self.peek()? {
            b'0'..=b'9' => {}
            CR => return Err(ParseError::Arity),
            _ => return Err(ParseError::Protocol("expected digit")),
        }
        let mut value: u64 = 0;
        loop {
            let ch = self.peek()?;
            if !ch.is_ascii_digit() {
                return Ok(());
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(ch - b'0')))
                .filter(|&v| v <= max)
                .ok_or(ParseError::Protocol("number out of memcached's range"))?;
            self.pos += 1;
        }
    }

    /// Spaces, then CR (not consumed); anything else is an error
    /// (nutcracker's `SW_CRLF`).
    #[inline]
    pub(crate) fn spaces_to_cr(&mut self) -> Result<(), ParseError> {
        match self.skip_spaces()? {
            CR => Ok(()),
            _ => Err(ParseError::Protocol("unexpected byte before CRLF")),
        }
    }

    /// Any bytes up to CR (not consumed); `no_lf`: an LF is an error.
    #[inline]
    pub(crate) fn run_to_cr(&mut self, no_lf: bool) -> Result<(), ParseError> {
        // Bounded by `end`, so a search cannot run past the line's bound.
        let rest = &self.buf[self.pos..self.end];
        match memchr::memchr(CR, rest) {
            Some(i) => {
                if no_lf && memchr::memchr(LF, &rest[..i]).is_some() {
                    return Err(ParseError::Protocol("LF inside a line"));
                }
                self.pos += i;
                Ok(())
            }
            None => {
                if no_lf && memchr::memchr(LF, rest).is_some() {
                    return Err(ParseError::Protocol("LF inside a line"));
                }
                self.pos = self.end;
                self.peek().map(|_| ())
            }
        }
    }

    /// At a CR: consumes it and the LF that must follow.
    #[inline]
    pub(crate) fn crlf(&mut self) -> Result<(), ParseError> {
        debug_assert_eq!(self.buf.get(self.pos), Some(&CR));
        self.pos += 1;
        if self.peek()? != LF {
            return Err(ParseError::Protocol("expected LF after CR"));
        }
        self.pos += 1;
        Ok(())
    }
}

/// Checks the data block of `len` bytes starting at `start`: only the CRLF
/// at `start + len` is looked at, so re-checking a growing buffer is O(1).
/// Returns the offset after the block's LF.
#[inline]
pub(crate) fn data_block(buf: &[u8], start: usize, len: usize) -> Result<usize, ParseError> {
    let cr = start.checked_add(len).ok_or(ParseError::BulkTooLong)?;
    match buf.get(cr) {
        None => return Err(ParseError::Incomplete),
        Some(&CR) => {}
        Some(_) => return Err(ParseError::Protocol("data block not followed by CRLF")),
    }
    match buf.get(cr + 1) {
        None => Err(ParseError::Incomplete),
        Some(&LF) => Ok(cr + 2),
        Some(_) => Err(ParseError::Protocol("expected LF after data block")),
    }
}
