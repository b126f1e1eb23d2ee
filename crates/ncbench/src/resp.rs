//! A specialised RESP2 reply scanner for the driver's read path.
//!
//! Why not the shared protocol crate: the driver must never be the bottleneck,
//! and it only needs to find where a reply ends and look at a few bytes of it.
//! This scanner borrows from the read buffer, never allocates, and walks arrays
//! lazily (an MGET reply is checked element by element in place). Requests are
//! encoded by `workload`, not here.

/// A parsed reply borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    /// `None` is the null bulk (`$-1`).
    Bulk(Option<&'a [u8]>),
    /// `None` is the null array (`*-1`).
    Array(Option<ArrayRef<'a>>),
}

/// The elements of an array reply, parsed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayRef<'a> {
    pub len: usize,
    body: &'a [u8],
}

impl<'a> ArrayRef<'a> {
    /// Iterates the elements. The array was fully scanned already, so every
    /// element parses; a malformed one would have failed the outer scan.
    pub fn iter(&self) -> impl Iterator<Item = Reply<'a>> + 'a {
        let mut pos = 0;
        let body = self.body;
        (0..self.len).map_while(move |_| match scan(&body[pos..], 1) {
            Ok(Some((r, n))) => {
                pos += n;
                Some(r)
            }
            _ => None,
        })
    }
}

/// Why bytes are not RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    BadPrefix(u8),
    BadLength,
    BadTerminator,
    TooDeep,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::BadPrefix(b) => write!(f, "unexpected reply type byte 0x{b:02x}"),
            ProtoError::BadLength => f.write_str("malformed length"),
            ProtoError::BadTerminator => f.write_str("missing CRLF"),
            ProtoError::TooDeep => f.write_str("arrays nested too deeply"),
        }
    }
}

const MAX_DEPTH: usize = 8;

/// Parses one reply at the start of `buf`. `Ok(None)`: incomplete, read more.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtoError> {
    scan(buf, 0)
}

#[inline]
fn line(buf: &[u8], from: usize) -> Result<Option<usize>, ProtoError> {
    // Returns the index of '\r' of the CRLF ending the line starting at `from`.
    match memchr::memchr(b'\r', &buf[from..]) {
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

#[inline]
fn parse_int(digits: &[u8]) -> Result<i64, ProtoError> {
    let (neg, d) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        _ => (false, digits),
    };
    if d.is_empty() || d.len() > 19 {
        return Err(ProtoError::BadLength);
    }
    let mut v: i64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return Err(ProtoError::BadLength);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as i64))
            .ok_or(ProtoError::BadLength)?;
    }
    Ok(if neg { -v } else { v })
}

fn scan(buf: &[u8], depth: usize) -> Result<Option<(Reply<'_>, usize)>, ProtoError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some(cr) = line(buf, 1)? else {
        return Ok(None);
    };
    let head = &buf[1..cr];
    let after = cr + 2;
    match buf[0] {
        b'+' => Ok(Some((Reply::Status(head), after))),
        b'-' => Ok(Some((Reply::Error(head), after))),
        b':' => Ok(Some((Reply::Int(parse_int(head)?), after))),
        b'$' => {
            let n = parse_int(head)?;
            if n < 0 {
                return if n == -1 {
                    Ok(Some((Reply::Bulk(None), after)))
                } else {
                    Err(ProtoError::BadLength)
                };
            }
            let n = n as usize;
            let end = after + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtoError::BadTerminator);
            }
            Ok(Some((Reply::Bulk(Some(&buf[after..end])), end + 2)))
        }
        b'*' => {
            let n = parse_int(head)?;
            if n < 0 {
                return if n == -1 {
                    Ok(Some((Reply::Array(None), after)))
                } else {
                    Err(ProtoError::BadLength)
                };
            }
            if depth >= MAX_DEPTH {
                return Err(ProtoError::TooDeep);
            }
            let mut pos = after;
            for _ in 0..n {
                match scan(&buf[pos..], depth + 1)? {
                    None => return Ok(None),
                    Some((_, used)) => pos += used,
                }
            }
            Ok(Some((
                Reply::Array(Some(ArrayRef {
                    len: n as usize,
                    body: &buf[after..pos],
                })),
                pos,
            )))
        }
        other => Err(ProtoError::BadPrefix(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[u8], expect: Option<(Reply<'_>, usize)>) {
        assert_eq!(parse(input).unwrap(), expect);
    }

    #[test]
    fn simple_types() {
        check(b"+OK\r\n", Some((Reply::Status(b"OK"), 5)));
        check(b"-ERR x\r\n", Some((Reply::Error(b"ERR x"), 8)));
        check(b":-42\r\n", Some((Reply::Int(-42), 6)));
        check(b"$3\r\nabc\r\n+", Some((Reply::Bulk(Some(b"abc")), 9)));
        check(b"$-1\r\n", Some((Reply::Bulk(None), 5)));
        check(b"$0\r\n\r\n", Some((Reply::Bulk(Some(b"")), 6)));
        check(b"*-1\r\n", Some((Reply::Array(None), 5)));
    }

    #[test]
    fn incomplete_at_every_split() {
        let full = b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut {cut}");
        }
        let (r, n) = parse(full).unwrap().unwrap();
        assert_eq!(n, full.len());
        let Reply::Array(Some(a)) = r else { panic!() };
        let items: Vec<_> = a.iter().collect();
        assert_eq!(
            items,
            vec![Reply::Bulk(Some(b"a")), Reply::Bulk(None), Reply::Int(7)]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(b"?x\r\n"), Err(ProtoError::BadPrefix(b'?')));
        assert_eq!(parse(b"$3\r\nabcd\r\n"), Err(ProtoError::BadTerminator));
        assert_eq!(parse(b":1x\r\n"), Err(ProtoError::BadLength));
        assert_eq!(parse(b"$-2\r\n"), Err(ProtoError::BadLength));
        assert_eq!(parse(b"+OK\rX"), Err(ProtoError::BadTerminator));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        let mut deep = deep.clone();
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(parse(&deep), Err(ProtoError::TooDeep));
    }
}
