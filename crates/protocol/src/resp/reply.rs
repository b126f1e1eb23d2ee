//! Reply scanning: finds where one RESP2 reply ends and what kind it is,
//! without copying. Nested arrays are walked iteratively up to
//! `Limits::max_depth`. RESP3 type bytes are a protocol error, as in
//! nutcracker (which then closes the server connection).

use std::ops::Range;

use memchr::memchr;

use super::{read_uint_line, ParseError};
use crate::Limits;

/// The top-level type of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Status,
    Error,
    Integer(i64),
    Bulk,
    NullBulk,
    /// An array with this many elements (elements may be arrays themselves).
    Array(usize),
    NullArray,
}

/// One complete reply at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
    pub kind: ReplyKind,
}

/// Deepest nesting this scanner can track, whatever the limits say.
const DEPTH_CAP: usize = 128;

/// Scans the reply at the start of `buf`.
pub fn parse_reply(buf: &[u8], limits: &Limits) -> Result<Reply, ParseError> {
    // Most replies are scalars: no nesting stack to set up for them.
    let (first, next) = scan_one(buf, 0, limits)?;
    match first {
        ReplyKind::Array(n) if n > 0 => {}
        kind => return Ok(Reply { len: next, kind }),
    }
    let max_depth = limits.max_depth.min(DEPTH_CAP);
    // remaining[d] = elements still expected by the array open at depth d.
    let mut remaining = [0usize; DEPTH_CAP];
    let mut depth = 0usize;
    let mut pos = 0usize;
    let mut top: Option<ReplyKind> = None;
    loop {
        let (kind, next) = scan_one(buf, pos, limits)?;
        pos = next;
        if top.is_none() {
            top = Some(kind);
        }
        match kind {
            ReplyKind::Array(n) if n > 0 => {
                if depth == max_depth {
                    return Err(ParseError::TooDeep);
                }
                remaining[depth] = n;
                depth += 1;
                continue;
            }
            _ => {}
        }
        // One element finished: close every array it completes.
        loop {
            if depth == 0 {
                return Ok(Reply {
                    len: pos,
                    kind: top.unwrap_or(kind),
                });
            }
            remaining[depth - 1] -= 1;
            if remaining[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// A reply scanner that resumes where it stopped. `parse_reply` rescans an
/// incomplete reply from its first byte on every call, which is quadratic
/// for a large array arriving in many reads; this keeps the position and
/// the open arrays between calls instead.
#[derive(Debug, Default, Clone)]
pub struct ReplyScanner {
    /// Bytes of the current reply already scanned (whole elements only).
    pos: usize,
    /// Elements still expected by each open array, outermost first.
    remaining: Vec<usize>,
    top: Option<ReplyKind>,
}

impl ReplyScanner {
    /// Scans the reply at the start of `buf`. Between calls that return
    /// `Incomplete`, `buf` must keep its bytes and only grow at the end;
    /// after `Ok` (or any other error) the next call starts a new reply.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Reply, ParseError> {
        let max_depth = limits.max_depth.min(DEPTH_CAP);
        loop {
            let (kind, next) = match scan_one(buf, self.pos, limits) {
                Ok(found) => found,
                Err(ParseError::Incomplete) => return Err(ParseError::Incomplete),
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            };
            self.pos = next;
            let top = *self.top.get_or_insert(kind);
            if let ReplyKind::Array(n) = kind {
                if n > 0 {
                    if self.remaining.len() == max_depth {
                        self.reset();
                        return Err(ParseError::TooDeep);
                    }
                    self.remaining.push(n);
                    continue;
                }
            }
            // One element finished: close every array it completes.
            loop {
                match self.remaining.last_mut() {
                    None => {
                        let reply = Reply {
                            len: self.pos,
                            kind: top,
                        };
                        self.reset();
                        return Ok(reply);
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.remaining.pop();
                    }
                }
            }
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.remaining.clear();
        self.top = None;
    }
}

/// Scans one value header (and, for scalars, the value) at `pos`.
#[inline]
fn scan_one(buf: &[u8], pos: usize, limits: &Limits) -> Result<(ReplyKind, usize), ParseError> {
    let Some(&tag) = buf.get(pos) else {
        return Err(ParseError::Incomplete);
    };
    match tag {
        b'+' | b'-' => {
            let end = line_end(buf, pos + 1)?;
            let kind = if tag == b'+' {
                ReplyKind::Status
            } else {
                ReplyKind::Error
            };
            Ok((kind, end))
        }
        b':' => {
            let (value, next) = read_int_line(buf, pos + 1)?;
            Ok((ReplyKind::Integer(value), next))
        }
        b'$' => {
            if buf.get(pos + 1) == Some(&b'-') {
                return match read_int_line(buf, pos + 1)? {
                    (-1, next) => Ok((ReplyKind::NullBulk, next)),
                    _ => Err(ParseError::Protocol("negative bulk length")),
                };
            }
            let (len, digits, data) = read_uint_line(buf, pos + 1)?;
            if digits == 0 {
                return Err(ParseError::Protocol("empty bulk length"));
            }
            if len > limits.max_bulk_len {
                return Err(ParseError::BulkTooLong);
            }
            let end = data.checked_add(len).ok_or(ParseError::BulkTooLong)?;
            if buf.len() < end.saturating_add(2) {
                return Err(ParseError::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::Protocol("bulk data not followed by CRLF"));
            }
            Ok((ReplyKind::Bulk, end + 2))
        }
        b'*' => {
            if buf.get(pos + 1) == Some(&b'-') {
                return match read_int_line(buf, pos + 1)? {
                    (-1, next) => Ok((ReplyKind::NullArray, next)),
                    _ => Err(ParseError::Protocol("negative array length")),
                };
            }
            let (len, digits, next) = read_uint_line(buf, pos + 1)?;
            if digits == 0 {
                return Err(ParseError::Protocol("empty array length"));
            }
            if len > limits.max_array_len {
                return Err(ParseError::ArrayTooLong);
            }
            Ok((ReplyKind::Array(len), next))
        }
        _ => Err(ParseError::Protocol("unsupported reply type")),
    }
}

/// Position after the CRLF that ends the line starting at `from`.
#[inline]
fn line_end(buf: &[u8], from: usize) -> Result<usize, ParseError> {
    let rest = buf.get(from..).ok_or(ParseError::Incomplete)?;
    match memchr(b'\n', rest) {
        None => Err(ParseError::Incomplete),
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(from + i + 1),
        Some(_) => Err(ParseError::Protocol("LF without CR")),
    }
}

/// A signed decimal line (`:` integers, `$-1`, `*-1`).
#[inline]
fn read_int_line(buf: &[u8], pos: usize) -> Result<(i64, usize), ParseError> {
    let end = line_end(buf, pos)?;
    let text = &buf[pos..end - 2];
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Protocol("invalid integer"));
    }
    // Accumulate negatively so that i64::MIN is representable; reject overflow.
    let mut value: i64 = 0;
    for d in digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d - b'0')))
            .ok_or(ParseError::Protocol("integer out of range"))?;
    }
    let value = if negative {
        value
    } else {
        value
            .checked_neg()
            .ok_or(ParseError::Protocol("integer out of range"))?
    };
    Ok((value, end))
}

/// Iterates the top-level elements of a complete array reply, each as the
/// span of its full encoding (what MGET coalescing copies into key order).
#[derive(Debug, Clone)]
pub struct ArrayElements<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
    limits: Limits,
}

impl<'a> ArrayElements<'a> {
    /// `reply` must be exactly one array reply (as returned by [`parse_reply`]).
    pub fn new(reply: &'a [u8], limits: &Limits) -> Result<ArrayElements<'a>, ParseError> {
        match scan_one(reply, 0, limits)? {
            (ReplyKind::Array(n), pos) => Ok(ArrayElements {
                buf: reply,
                pos,
                left: n,
                limits: *limits,
            }),
            _ => Err(ParseError::Protocol("not an array")),
        }
    }

    /// Elements not yet returned.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for ArrayElements<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.left == 0 {
            return None;
        }
        let reply = parse_reply(&self.buf[self.pos..], &self.limits).ok()?;
        let span = self.pos..self.pos + reply.len;
        self.pos = span.end;
        self.left -= 1;
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[u8], expect: Result<ReplyKind, ParseError>) {
        let got = parse_reply(input, &Limits::default());
        match (got, expect) {
            (Ok(r), Ok(k)) => {
                assert_eq!(r.kind, k);
                assert_eq!(r.len, input.len(), "must consume exactly the reply");
            }
            (got, expect) => assert_eq!(got.map(|r| r.kind), expect),
        }
    }

    #[test]
    fn scalars() {
        check(b"+OK\r\n", Ok(ReplyKind::Status));
        check(b"-ERR nope\r\n", Ok(ReplyKind::Error));
        check(b":42\r\n", Ok(ReplyKind::Integer(42)));
        check(b":-7\r\n", Ok(ReplyKind::Integer(-7)));
        check(b"$3\r\nabc\r\n", Ok(ReplyKind::Bulk));
        check(b"$0\r\n\r\n", Ok(ReplyKind::Bulk));
        check(b"$-1\r\n", Ok(ReplyKind::NullBulk));
        check(b"*-1\r\n", Ok(ReplyKind::NullArray));
        check(b"*0\r\n", Ok(ReplyKind::Array(0)));
        check(b"$4\r\na\r\nb\r\n", Ok(ReplyKind::Bulk));
    }

    #[test]
    fn nested_arrays() {
        check(
            b"*2\r\n*1\r\n:1\r\n*2\r\n$1\r\na\r\n*0\r\n",
            Ok(ReplyKind::Array(2)),
        );
        check(
            b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n+x\r\n",
            Ok(ReplyKind::Array(3)),
        );
    }

    #[test]
    fn depth_limit_at_and_above() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let nest = |d: usize| {
            let mut v = b"*1\r\n".repeat(d);
            v.extend_from_slice(b":1\r\n");
            v
        };
        assert!(parse_reply(&nest(3), &limits).is_ok());
        assert_eq!(parse_reply(&nest(4), &limits), Err(ParseError::TooDeep));
    }

    #[test]
    fn errors() {
        check(
            b"%1\r\n",
            Err(ParseError::Protocol("unsupported reply type")),
        );
        check(
            b"_\r\n",
            Err(ParseError::Protocol("unsupported reply type")),
        );
        check(
            b"$3\r\nabcd\r\n",
            Err(ParseError::Protocol("bulk data not followed by CRLF")),
        );
        check(b":x\r\n", Err(ParseError::Protocol("invalid integer")));
        check(b"+OK\n", Err(ParseError::Protocol("LF without CR")));
    }

    #[test]
    fn prefixes_are_incomplete() {
        let full = b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:5\r\n-ERR x\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_reply(&full[..cut], &Limits::default()),
                Err(ParseError::Incomplete),
                "cut {cut}"
            );
        }
        check(full, Ok(ReplyKind::Array(3)));
    }

    #[test]
    fn scanner_resumes_and_agrees_with_parse_reply() {
        let replies: [&[u8]; 5] = [
            b"+OK\r\n",
            b"$5\r\nhello\r\n",
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*0\r\n$-1\r\n",
            b"*2\r\n*1\r\n*1\r\n:7\r\n-ERR x\r\n",
            b"*-1\r\n",
        ];
        let limits = Limits::default();
        let stream: Vec<u8> = replies.concat();
        let mut scanner = ReplyScanner::default();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        // One byte at a time: every reply is found exactly once, as parse_reply finds it.
        for &byte in &stream {
            buf.push(byte);
            match scanner.scan(&buf, &limits) {
                Ok(reply) => {
                    assert_eq!(Ok(reply), parse_reply(&buf, &limits));
                    got.push(buf.drain(..reply.len).collect::<Vec<u8>>());
                }
                Err(ParseError::Incomplete) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, replies.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
        assert!(buf.is_empty());
    }

    #[test]
    fn scanner_limits_and_errors_reset_it() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let mut scanner = ReplyScanner::default();
        assert_eq!(
            scanner.scan(b"*1\r\n*1\r\n*1\r\n", &limits),
            Err(ParseError::TooDeep)
        );
        assert_eq!(
            scanner.scan(b"%1\r\n", &limits),
            Err(ParseError::Protocol("unsupported reply type"))
        );
        assert_eq!(
            scanner.scan(b":5\r\n", &limits).map(|r| r.kind),
            Ok(ReplyKind::Integer(5))
        );
    }

    #[test]
    fn array_elements_are_spans() {
        let full = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:5\r\n";
        let elements: Vec<&[u8]> = ArrayElements::new(full, &Limits::default())
            .unwrap()
            .map(|r| &full[r])
            .collect();
        assert_eq!(
            elements,
            vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:5\r\n"]
        );
    }
}
