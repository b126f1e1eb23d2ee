//! Reply scanning: finds where one RESP2 reply ends and what kind it is,
//! without copying, by the rules of nutcracker 0.5.0's `redis_parse_rsp`,
//! including what it lets through from a misbehaving server: a bulk or
//! array length with a `-` in it reads as null at the top level (`$-1`,
//! `$-x`, `*-`), an element's `$` length ignores `-` signs (`$-2` is two
//! bytes; `$-1` and `$1-` are null), an element that is a status, error or
//! integer runs to its CRLF unchecked, and a top-level integer is digits
//! and `-` signs only. A byte that cannot fit is an error as soon as it
//! arrives. Nested arrays are walked iteratively up to `Limits::max_depth`.
//! RESP3 types are scanned too and passed through, where nutcracker closes
//! the server connection (a documented difference).

use std::ops::Range;

use memchr::memchr;

use super::{read_uint_line, ParseError};
use crate::Limits;

/// The top-level type of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Status,
    Error,
    /// nutcracker's reading of an integer reply: its digits, `-` signs
    /// ignored, modulo 2^32 (what it sums when it merges DEL replies).
    Integer(u32),
    Bulk,
    NullBulk,
    /// An array with this many elements (elements may be arrays themselves).
    Array(usize),
    NullArray,
    /// A RESP3 type (`_ , # ( ! = % ~ > |`). For an aggregate, how many
    /// values follow: a map's or attribute's pairs count twice, and an
    /// attribute is followed by the value it annotates.
    Resp3 {
        follows: usize,
    },
}

impl ReplyKind {
    /// How many values follow this one's header as its elements.
    fn follows(self) -> usize {
        match self {
            ReplyKind::Array(n) | ReplyKind::Resp3 { follows: n } => n,
            _ => 0,
        }
    }
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
    let (first, next) = scan_one(buf, 0, Level::Top, limits)?;
    if first.follows() == 0 {
        return Ok(Reply {
            len: next,
            kind: first,
        });
    }
    let max_depth = limits.max_depth.min(DEPTH_CAP);
    // remaining[d] = elements still expected by the array open at depth d.
    let mut remaining = [0usize; DEPTH_CAP];
    let mut depth = 0usize;
    let mut pos = 0usize;
    let mut top: Option<ReplyKind> = None;
    loop {
        let level = if top.is_none() {
            Level::Top
        } else {
            Level::Element
        };
        let (kind, next) = scan_one(buf, pos, level, limits)?;
        pos = next;
        if top.is_none() {
            top = Some(kind);
        }
        let n = kind.follows();
        if n > 0 {
            if depth == max_depth {
                return Err(ParseError::TooDeep);
            }
            remaining[depth] = n;
            depth += 1;
            continue;
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
            let level = if self.top.is_none() {
                Level::Top
            } else {
                Level::Element
            };
            let (kind, next) = match scan_one(buf, self.pos, level, limits) {
                Ok(found) => found,
                Err(ParseError::Incomplete) => return Err(ParseError::Incomplete),
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            };
            self.pos = next;
            let top = *self.top.get_or_insert(kind);
            let n = kind.follows();
            if n > 0 {
                if self.remaining.len() == max_depth {
                    self.reset();
                    return Err(ParseError::TooDeep);
                }
                self.remaining.push(n);
                continue;
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

/// Where a value sits: nutcracker parses a reply's first value and the
/// elements of its arrays with different rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Element,
}

/// Scans one value header (and, for scalars, the value) at `pos`.
#[inline]
fn scan_one(
    buf: &[u8],
    pos: usize,
    level: Level,
    limits: &Limits,
) -> Result<(ReplyKind, usize), ParseError> {
    let Some(&tag) = buf.get(pos) else {
        return Err(ParseError::Incomplete);
    };
    let body = pos + 1;
    match (tag, level) {
        (b'+', _) => Ok((ReplyKind::Status, line_end(buf, body)?)),
        (b'-', _) => Ok((ReplyKind::Error, line_end(buf, body)?)),
        (b':', Level::Element) => {
            let end = line_end(buf, body)?;
            Ok((ReplyKind::Integer(integer_value(&buf[body..end - 2])), end))
        }
        (b':', Level::Top) => {
            let cr = skip(buf, body, |c| c.is_ascii_digit() || c == b'-')?;
            if buf[cr] != b'\r' {
                return Err(ParseError::Protocol("invalid integer"));
            }
            let end = lf_after(buf, cr)?;
            Ok((ReplyKind::Integer(integer_value(&buf[body..cr])), end))
        }
        (b'$', Level::Element) => {
            let cr = skip(buf, body, |c| c.is_ascii_digit() || c == b'-')?;
            if buf[cr] != b'\r' {
                return Err(ParseError::Protocol("invalid bulk length"));
            }
            if cr == body {
                return Err(ParseError::Protocol("empty bulk length"));
            }
            let len = length(&buf[body..cr], limits.max_bulk_len, ParseError::BulkTooLong)?;
            let data = lf_after(buf, cr)?;
            // nutcracker's test for `$-1`: two bytes that read as 1.
            if len == 1 && cr - body == 2 {
                return Ok((ReplyKind::NullBulk, data));
            }
            Ok((ReplyKind::Bulk, bulk_end(buf, data, len)?))
        }
        (b'$', Level::Top) => {
            let stop = skip(buf, body, |c| c.is_ascii_digit())?;
            match buf[stop] {
                b'-' => Ok((ReplyKind::NullBulk, line_end(buf, stop)?)),
                b'\r' if stop > body => {
                    let len = length(
                        &buf[body..stop],
                        limits.max_bulk_len,
                        ParseError::BulkTooLong,
                    )?;
                    let data = lf_after(buf, stop)?;
                    Ok((ReplyKind::Bulk, bulk_end(buf, data, len)?))
                }
                b'\r' => Err(ParseError::Protocol("empty bulk length")),
                _ => Err(ParseError::Protocol("invalid bulk length")),
            }
        }
        (b'*', _) => {
            let stop = skip(buf, body, |c| c.is_ascii_digit())?;
            match buf[stop] {
                b'-' => Ok((ReplyKind::NullArray, line_end(buf, stop)?)),
                b'\r' if stop > body => {
                    let n = length(
                        &buf[body..stop],
                        limits.max_array_len,
                        ParseError::ArrayTooLong,
                    )?;
                    Ok((ReplyKind::Array(n), lf_after(buf, stop)?))
                }
                b'\r' => Err(ParseError::Protocol("empty array length")),
                _ => Err(ParseError::Protocol("invalid array length")),
            }
        }
        (b'_' | b',' | b'#' | b'(', _) => {
            Ok((ReplyKind::Resp3 { follows: 0 }, line_end(buf, body)?))
        }
        (b'!' | b'=', _) => {
            let (len, digits, data) = read_uint_line(buf, body)?;
            if digits == 0 {
                return Err(ParseError::Protocol("empty bulk length"));
            }
            if len > limits.max_bulk_len {
                return Err(ParseError::BulkTooLong);
            }
            Ok((ReplyKind::Resp3 { follows: 0 }, bulk_end(buf, data, len)?))
        }
        (b'%' | b'~' | b'>' | b'|', _) => {
            let (n, digits, next) = read_uint_line(buf, body)?;
            if digits == 0 {
                return Err(ParseError::Protocol("empty aggregate length"));
            }
            if n > limits.max_array_len {
                return Err(ParseError::ArrayTooLong);
            }
            let follows = match tag {
                b'%' => 2 * n,
                b'|' => 2 * n + 1,
                _ => n,
            };
            Ok((ReplyKind::Resp3 { follows }, next))
        }
        _ => Err(ParseError::Protocol("unsupported reply type")),
    }
}

/// The position of the first byte from `from` on that `keep` rejects.
#[inline]
fn skip(buf: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> Result<usize, ParseError> {
    let rest = buf.get(from..).ok_or(ParseError::Incomplete)?;
    rest.iter()
        .position(|&c| !keep(c))
        .map(|i| from + i)
        .ok_or(ParseError::Incomplete)
}

/// The position after the LF that must follow the CR at `cr`.
#[inline]
fn lf_after(buf: &[u8], cr: usize) -> Result<usize, ParseError> {
    match buf.get(cr + 1) {
        None => Err(ParseError::Incomplete),
        Some(b'\n') => Ok(cr + 2),
        Some(_) => Err(ParseError::Protocol("expected LF after CR")),
    }
}

/// The position after the CRLF that ends the line starting at `from`: the
/// first CR, which must be followed by LF (anything else goes before it).
#[inline]
fn line_end(buf: &[u8], from: usize) -> Result<usize, ParseError> {
    let rest = buf.get(from..).ok_or(ParseError::Incomplete)?;
    match memchr(b'\r', rest) {
        None => Err(ParseError::Incomplete),
        Some(i) => lf_after(buf, from + i),
    }
}

/// The end of `len` data bytes at `data` and their CRLF. The CR is checked
/// as soon as it can be, before the rest arrives.
#[inline]
fn bulk_end(buf: &[u8], data: usize, len: usize) -> Result<usize, ParseError> {
    let cr = data.checked_add(len).ok_or(ParseError::BulkTooLong)?;
    match buf.get(cr) {
        None => Err(ParseError::Incomplete),
        Some(b'\r') => lf_after(buf, cr),
        Some(_) => Err(ParseError::Protocol("bulk data not followed by CRLF")),
    }
}

/// A length's digits (`-` signs skipped), or `too_long` above `max`.
#[inline]
fn length(text: &[u8], max: usize, too_long: ParseError) -> Result<usize, ParseError> {
    let mut value: usize = 0;
    for &c in text.iter().filter(|c| c.is_ascii_digit()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(c - b'0')))
            .filter(|&v| v <= max)
            .ok_or(too_long)?;
    }
    Ok(value)
}

/// nutcracker's value of an integer reply's text: the digits, `-` signs
/// and anything else skipped, modulo 2^32.
#[inline]
fn integer_value(text: &[u8]) -> u32 {
    text.iter()
        .filter(|c| c.is_ascii_digit())
        .fold(0u32, |v, &c| {
            v.wrapping_mul(10).wrapping_add(u32::from(c - b'0'))
        })
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
        match scan_one(reply, 0, Level::Top, limits)? {
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
        let len = element_len(&self.buf[self.pos..], &self.limits).ok()?;
        let span = self.pos..self.pos + len;
        self.pos = span.end;
        self.left -= 1;
        Some(span)
    }
}

/// The length of the array element (and everything nested in it) at the
/// start of `buf`, scanned by the element rules.
fn element_len(buf: &[u8], limits: &Limits) -> Result<usize, ParseError> {
    let mut pending = 1usize;
    let mut pos = 0;
    while pending > 0 {
        let (kind, next) = scan_one(buf, pos, Level::Element, limits)?;
        pos = next;
        pending -= 1;
        pending = pending
            .checked_add(kind.follows())
            .ok_or(ParseError::ArrayTooLong)?;
    }
    Ok(pos)
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
        check(b":-7\r\n", Ok(ReplyKind::Integer(7)));
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
            b"@1\r\n",
            Err(ParseError::Protocol("unsupported reply type")),
        );
        check(
            b"$3\r\nabcd\r\n",
            Err(ParseError::Protocol("bulk data not followed by CRLF")),
        );
        check(b":x\r\n", Err(ParseError::Protocol("invalid integer")));
        check(b"+OK\rX", Err(ParseError::Protocol("expected LF after CR")));
        check(b"$\r\n", Err(ParseError::Protocol("empty bulk length")));
        check(b"*\r\n", Err(ParseError::Protocol("empty array length")));
        check(
            b"*2\r\n$\r\n",
            Err(ParseError::Protocol("empty bulk length")),
        );
        check(
            b"*1\r\n@\r\n",
            Err(ParseError::Protocol("unsupported reply type")),
        );
        check(b"!x\r\n", Err(ParseError::Protocol("expected digit")));
    }

    #[test]
    fn resp3_types_are_scanned_whole() {
        let none = Ok(ReplyKind::Resp3 { follows: 0 });
        check(b"_\r\n", none);
        check(b",1.5\r\n", none);
        check(b"#t\r\n", none);
        check(b"(12345678901234567890\r\n", none);
        check(b"!3\r\nerr\r\n", none);
        check(b"=8\r\ntxt:a\r\nb\r\n", none);
        check(b"~2\r\n+a\r\n:1\r\n", Ok(ReplyKind::Resp3 { follows: 2 }));
        check(b">2\r\n+a\r\n+b\r\n", Ok(ReplyKind::Resp3 { follows: 2 }));
        check(b"%1\r\n+a\r\n:1\r\n", Ok(ReplyKind::Resp3 { follows: 2 }));
        // An attribute is followed by the value it annotates.
        check(
            b"|1\r\n+a\r\n:1\r\n+OK\r\n",
            Ok(ReplyKind::Resp3 { follows: 3 }),
        );
        check(b"*2\r\n_\r\n%1\r\n,1\r\n#f\r\n", Ok(ReplyKind::Array(2)));
        let attributed = b"|1\r\n+a\r\n:1\r\n+OK\r\n";
        for cut in 0..attributed.len() {
            assert_eq!(
                parse_reply(&attributed[..cut], &Limits::default()),
                Err(ParseError::Incomplete),
                "cut {cut}"
            );
        }
    }

    /// What nutcracker 0.5.0 makes of replies a real Redis never sends, each
    /// seen through it with a canned-reply backend.
    #[test]
    fn misbehaving_servers_as_nutcracker_reads_them() {
        // A `-` in a top-level bulk or array length: null, up to the CRLF.
        check(b"$-0\r\n", Ok(ReplyKind::NullBulk));
        check(b"$-x y\r\n", Ok(ReplyKind::NullBulk));
        check(b"$12-\r\n", Ok(ReplyKind::NullBulk));
        check(b"*-\r\n", Ok(ReplyKind::NullArray));
        // A status line runs to the first CR, whatever comes before it.
        check(b"+a\nb\r\n", Ok(ReplyKind::Status));
        // An element's `$` length skips `-` signs; two bytes reading 1 are null.
        check(b"*2\r\n$1\r\na\r\n$-2\r\nxy\r\n", Ok(ReplyKind::Array(2)));
        check(b"*1\r\n$1-\r\n", Ok(ReplyKind::Array(1)));
        check(b"*1\r\n$-\r\n\r\n", Ok(ReplyKind::Array(1)));
        // An element that is a status, error or integer runs to its CRLF.
        check(b"*3\r\n:\r\n-e\r\n:x y\r\n", Ok(ReplyKind::Array(3)));
        check(b"*2\r\n*-1\r\n*-\r\n", Ok(ReplyKind::Array(2)));
        // The byte after bulk data must be CR, checked before the LF arrives.
        assert_eq!(
            parse_reply(b"$3\r\nbc\r\n", &Limits::default()),
            Err(ParseError::Protocol("bulk data not followed by CRLF"))
        );
        assert_eq!(
            parse_reply(b"*1\r\n*1\r\n$1\r\nx\n", &Limits::default()),
            Err(ParseError::Protocol("bulk data not followed by CRLF"))
        );
        // And a CR must be followed by LF.
        assert_eq!(
            parse_reply(b":-5\r$", &Limits::default()),
            Err(ParseError::Protocol("expected LF after CR"))
        );
        assert_eq!(
            parse_reply(b"*-1\r^", &Limits::default()),
            Err(ParseError::Protocol("expected LF after CR"))
        );
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
            scanner.scan(b"@1\r\n", &limits),
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
