//! A specialised memcached ASCII reply scanner for the driver's read path,
//! the memcache counterpart of `resp`.
//!
//! The scanner needs no knowledge of the request: a retrieval reply starts
//! with `VALUE ` or is a bare `END`, and runs to the `END\r\n` line; every
//! other reply (`STORED`, `DELETED`, `NOT_FOUND`, a number, `ERROR`,
//! `CLIENT_ERROR ..`, `SERVER_ERROR ..`) is one line. It borrows from the read
//! buffer, never allocates, and walks the VALUE blocks lazily (a multi-get is
//! checked block by block in place). Requests are encoded by `workload`.

/// A parsed reply borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `VALUE <key> <flags> <bytes>\r\n<data>\r\n` blocks, then `END\r\n`.
    Values(Values<'a>),
    /// Any one-line reply, without its CRLF.
    Line(&'a [u8]),
}

impl Reply<'_> {
    /// Whether this is an error reply (`ERROR`, `CLIENT_ERROR ..`, `SERVER_ERROR ..`).
    pub fn is_error(&self) -> bool {
        match self {
            Reply::Line(l) => {
                *l == b"ERROR" || l.starts_with(b"CLIENT_ERROR") || l.starts_with(b"SERVER_ERROR")
            }
            Reply::Values(_) => false,
        }
    }
}

/// The VALUE blocks of a retrieval reply, parsed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values<'a> {
    pub count: usize,
    /// From the first `VALUE` up to (not including) `END\r\n`.
    body: &'a [u8],
}

/// One VALUE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    pub key: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> Values<'a> {
    /// Iterates the blocks. The reply was fully scanned already, so every
    /// block parses.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let mut pos = 0;
        let body = self.body;
        (0..self.count).map_while(move |_| match block(body, pos) {
            Ok(Some(Block::Value(v, next))) => {
                pos = next;
                Some(v)
            }
            _ => None,
        })
    }
}

/// Why bytes are not a memcached reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    BadValueLine,
    BadTerminator,
    /// A line inside a retrieval reply that is neither `VALUE` nor `END`.
    Unexpected,
    TooLong,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::BadValueLine => f.write_str("malformed VALUE line"),
            ProtoError::BadTerminator => f.write_str("missing CRLF"),
            ProtoError::Unexpected => f.write_str("unexpected line in a retrieval reply"),
            ProtoError::TooLong => f.write_str("reply line longer than 8 KiB"),
        }
    }
}

/// Longest one-line reply (or VALUE header) accepted before calling it garbage.
const MAX_LINE: usize = 8 * 1024;

/// Returns the index of '\r' of the CRLF ending the line at `from`.
#[inline]
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ProtoError> {
    match memchr::memchr(b'\r', &buf[from..]) {
        None if buf.len() - from > MAX_LINE => Err(ProtoError::TooLong),
        None => Ok(None),
        Some(i) => {
            let cr = from + i;
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            if buf[cr + 1] != b'\n' {
                return Err(ProtoError::BadTerminator);
            }
            Ok(Some(cr))
        }
    }
}

enum Block<'a> {
    /// A VALUE block and the offset after it.
    Value(Value<'a>, usize),
    /// `END\r\n` and the offset after it.
    End(usize),
}

/// Parses the VALUE block or END line at `pos`. `Ok(None)`: incomplete.
#[inline]
fn block(buf: &[u8], pos: usize) -> Result<Option<Block<'_>>, ProtoError> {
    let Some(cr) = line_end(buf, pos)? else {
        return Ok(None);
    };
    let line = &buf[pos..cr];
    if line == b"END" {
        return Ok(Some(Block::End(cr + 2)));
    }
    let Some(rest) = line.strip_prefix(b"VALUE ") else {
        return Err(ProtoError::Unexpected);
    };
    // <key> <flags> <bytes> [<cas>]
    let mut it = rest.split(|&c| c == b' ');
    let key = it.next().filter(|k| !k.is_empty());
    let _flags = it.next();
    let bytes = it.next().and_then(parse_usize);
    let (Some(key), Some(n)) = (key, bytes) else {
        return Err(ProtoError::BadValueLine);
    };
    let start = cr + 2;
    let end = start + n;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtoError::BadTerminator);
    }
    Ok(Some(Block::Value(
        Value {
            key,
            data: &buf[start..end],
        },
        end + 2,
    )))
}

/// Parses decimal digits (at most 19), as memcached writes lengths and counters.
#[inline]
pub fn parse_u64(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

#[inline]
fn parse_usize(d: &[u8]) -> Option<usize> {
    parse_u64(d).and_then(|v| usize::try_from(v).ok())
}

/// Parses one reply at the start of `buf`. `Ok(None)`: incomplete, read more.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtoError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if !(buf.starts_with(b"VALUE ") || buf.starts_with(b"END\r")) {
        // A one-line reply; a prefix of "VALUE " or "END\r" might still become one.
        if b"VALUE ".starts_with(buf) || b"END\r".starts_with(buf) {
            return Ok(None);
        }
        return Ok(line_end(buf, 0)?.map(|cr| (Reply::Line(&buf[..cr]), cr + 2)));
    }
    let mut pos = 0;
    let mut count = 0;
    loop {
        match block(buf, pos)? {
            None => return Ok(None),
            Some(Block::Value(_, next)) => {
                count += 1;
                pos = next;
            }
            Some(Block::End(next)) => {
                return Ok(Some((
                    Reply::Values(Values {
                        count,
                        body: &buf[..pos],
                    }),
                    next,
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn line(input: &[u8], expect: &[u8], used: usize) {
        assert_eq!(parse(input).unwrap(), Some((Reply::Line(expect), used)));
    }

    #[test]
    fn one_line_replies() {
        line(b"STORED\r\n", b"STORED", 8);
        line(b"DELETED\r\nEND\r\n", b"DELETED", 9);
        line(b"42\r\n", b"42", 4);
        line(
            b"SERVER_ERROR out of memory\r\n",
            b"SERVER_ERROR out of memory",
            28,
        );
        assert!(parse(b"ERROR\r\n").unwrap().unwrap().0.is_error());
        assert!(!parse(b"NOT_FOUND\r\n").unwrap().unwrap().0.is_error());
    }

    #[test]
    fn values_and_misses() {
        let (r, n) = parse(b"END\r\nSTORED\r\n").unwrap().unwrap();
        assert_eq!(n, 5);
        let Reply::Values(v) = r else { panic!() };
        assert_eq!(v.count, 0);
        let full = b"VALUE a 0 3\r\nxyz\r\nVALUE bb 5 0 77\r\n\r\nEND\r\n";
        let (r, n) = parse(full).unwrap().unwrap();
        assert_eq!(n, full.len());
        let Reply::Values(v) = r else { panic!() };
        let items: Vec<_> = v.iter().map(|b| (b.key, b.data)).collect();
        assert_eq!(
            items,
            vec![(&b"a"[..], &b"xyz"[..]), (&b"bb"[..], &b""[..])]
        );
    }

    #[test]
    fn incomplete_at_every_split() {
        for full in [
            &b"VALUE a 0 3\r\nxyz\r\nVALUE b 0 1\r\nq\r\nEND\r\n"[..],
            b"END\r\n",
            b"STORED\r\n",
        ] {
            for cut in 0..full.len() {
                assert_eq!(parse(&full[..cut]).unwrap(), None, "cut {cut} of {full:?}");
            }
            assert_eq!(parse(full).unwrap().unwrap().1, full.len());
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse(b"VALUE a 0 3\r\nxyzw\r\nEND\r\n"),
            Err(ProtoError::BadTerminator)
        );
        assert_eq!(parse(b"VALUE a 0 x\r\n"), Err(ProtoError::BadValueLine));
        assert_eq!(
            parse(b"VALUE a 0 1\r\nq\r\nSTORED\r\n"),
            Err(ProtoError::Unexpected)
        );
        assert_eq!(parse(b"STORED\rX"), Err(ProtoError::BadTerminator));
        assert_eq!(parse(&[b'x'; MAX_LINE + 2]), Err(ProtoError::TooLong));
    }
}
