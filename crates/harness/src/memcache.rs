//! Raw memcached text-protocol helpers for tests: reply framing (classic,
//! meta and `stats` replies), request builders, a buffered client
//! ([`McConn`]) and direct backend inspection ([`backend_dump`]).
//!
//! The framing is deliberately independent of any proxy code: a reply is
//! - `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` blocks up to and
//!   including `END\r\n` (one reply, also when there are no blocks);
//! - `STAT ...\r\n` lines up to and including `END\r\n` (one reply);
//! - `VA <size> <flags>*\r\n<data>\r\n` (meta value reply);
//! - any other single line (`STORED`, `HD`, `MN`, `SERVER_ERROR ...`, a
//!   number...).

use crate::raw::{escape_bytes, Fill, RawConn};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Byte length of the first complete reply in `buf`, `Ok(None)` if it is not
/// complete yet, `Err` if it is not a memcached reply.
pub fn mc_reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    let mut in_block = false; // inside VALUE... or STAT... END
    loop {
        let Some(nl) = find_crlf(&buf[pos..]) else {
            return Ok(None);
        };
        let line = &buf[pos..pos + nl];
        let next = pos + nl + 2;
        if line.starts_with(b"VALUE ") {
            let n = token(line, 3)
                .and_then(parse_usize)
                .ok_or_else(|| format!("bad VALUE line \"{}\"", escape_bytes(line)))?;
            let end = next + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[next + n..end] != b"\r\n" {
                return Err(format!(
                    "VALUE data block not followed by CRLF: \"{}\"",
                    escape_bytes(line)
                ));
            }
            pos = end;
            in_block = true;
            continue;
        }
        if line.starts_with(b"STAT ") {
            pos = next;
            in_block = true;
            continue;
        }
        if line == b"END" {
            return Ok(Some(next));
        }
        if in_block {
            return Err(format!(
                "unexpected line inside a VALUE/STAT block: \"{}\"",
                escape_bytes(line)
            ));
        }
        if line.starts_with(b"VA ") {
            let n = token(line, 1)
                .and_then(parse_usize)
                .ok_or_else(|| format!("bad VA line \"{}\"", escape_bytes(line)))?;
            let end = next + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            return Ok(Some(end));
        }
        return Ok(Some(next));
    }
}

/// `(complete replies, bytes they span)`; stops at the first framing error
/// (the rest is not counted).
pub fn count_mc_replies(buf: &[u8]) -> (usize, usize) {
    let mut n = 0;
    let mut pos = 0;
    while let Ok(Some(len)) = mc_reply_len(&buf[pos..]) {
        n += 1;
        pos += len;
    }
    (n, pos)
}

/// Splits `buf` into complete replies; the incomplete or unparsable tail is
/// returned as the second value.
pub fn split_mc_replies(buf: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(Some(len)) = mc_reply_len(&buf[pos..]) {
        out.push(buf[pos..pos + len].to_vec());
        pos += len;
    }
    (out, buf[pos..].to_vec())
}

/// Replaces the cas unique of every `VALUE k f n cas` line with `<cas>`
/// (the uniques of two independent memcached instances may differ).
pub fn mask_cas(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut pos = 0;
    while pos < buf.len() {
        let Some(nl) = find_crlf(&buf[pos..]) else {
            out.extend_from_slice(&buf[pos..]);
            break;
        };
        let line = &buf[pos..pos + nl];
        if line.starts_with(b"VALUE ") {
            let toks: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if toks.len() == 5 {
                out.extend_from_slice(&toks[..4].join(&b' '));
                out.extend_from_slice(b" <cas>\r\n");
            } else {
                out.extend_from_slice(&buf[pos..pos + nl + 2]);
            }
            let data = toks.get(3).and_then(|t| parse_usize(t)).unwrap_or(0);
            let end = (pos + nl + 2 + data + 2).min(buf.len());
            out.extend_from_slice(&buf[pos + nl + 2..end]);
            pos = end;
        } else {
            out.extend_from_slice(&buf[pos..pos + nl + 2]);
            pos += nl + 2;
        }
    }
    out
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn token(line: &[u8], i: usize) -> Option<&[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty()).nth(i)
}

fn parse_usize(t: &[u8]) -> Option<usize> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// `<cmd> <key> <flags> <exptime> <len>[ noreply]\r\n<data>\r\n` for
/// set/add/replace/append/prepend.
pub fn storage(
    cmd: &str,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    noreply: bool,
) -> Vec<u8> {
    let mut v = format!("{cmd} ").into_bytes();
    v.extend_from_slice(key);
    v.extend_from_slice(format!(" {flags} {exptime} {}", data.len()).as_bytes());
    if noreply {
        v.extend_from_slice(b" noreply");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// `set <key> 0 0 <len>\r\n<data>\r\n`.
pub fn set(key: &[u8], data: &[u8]) -> Vec<u8> {
    storage("set", key, 0, 0, data, false)
}

/// `<cmd> k1 k2 ...\r\n` (get, gets, or `gat <exptime>` style prefixes).
pub fn retrieval(cmd: &str, keys: &[&[u8]]) -> Vec<u8> {
    let mut v = cmd.as_bytes().to_vec();
    for k in keys {
        v.push(b' ');
        v.extend_from_slice(k);
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// `get k1 k2 ...\r\n`.
pub fn get(keys: &[&[u8]]) -> Vec<u8> {
    retrieval("get", keys)
}

/// The reply memcached gives to a `get` of one key holding `data`
/// (`flags` 0): `VALUE key 0 len\r\ndata\r\nEND\r\n`, or `END\r\n` for `None`.
pub fn value_reply(key: &[u8], flags: u32, data: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(d) = data {
        v.extend_from_slice(b"VALUE ");
        v.extend_from_slice(key);
        v.extend_from_slice(format!(" {flags} {}\r\n", d.len()).as_bytes());
        v.extend_from_slice(d);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"END\r\n");
    v
}

/// A connection that reads memcached replies one at a time.
#[derive(Debug)]
pub struct McConn {
    conn: RawConn,
    buf: Vec<u8>,
}

impl McConn {
    /// Connects over TCP.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(McConn {
            conn: RawConn::connect(addr)?,
            buf: Vec::new(),
        })
    }

    /// Wraps a connection.
    pub fn from_raw(conn: RawConn) -> Self {
        McConn {
            conn,
            buf: Vec::new(),
        }
    }

    /// The underlying connection.
    pub fn raw(&mut self) -> &mut RawConn {
        &mut self.conn
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send(bytes)
    }

    fn pull(&mut self) {
        self.buf.extend(self.conn.take_buffered());
    }

    /// Reads one complete reply.
    pub fn reply(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pull();
            match mc_reply_len(&self.buf) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out waiting for a memcached reply; buffered: \"{}\"",
                        escape_bytes(&self.buf[..self.buf.len().min(300)])
                    ),
                ));
            }
            match self.conn.read_some(left)? {
                Fill::Closed => {
                    self.pull();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed; buffered: \"{}\"",
                            escape_bytes(&self.buf[..self.buf.len().min(300)])
                        ),
                    ));
                }
                Fill::Data(_) | Fill::Idle => {}
            }
        }
    }

    /// Sends `req` and reads one reply.
    pub fn call(&mut self, req: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
        self.send(req)?;
        self.reply(timeout)
    }

    /// Reads `n` replies.
    pub fn replies(&mut self, n: usize, timeout: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        (0..n)
            .map(|_| self.reply(deadline.saturating_duration_since(Instant::now())))
            .collect()
    }

    /// Everything that arrives until EOF or `idle` of silence.
    pub fn drain(&mut self, idle: Duration, cap: Duration) -> Vec<u8> {
        self.pull();
        let mut out = std::mem::take(&mut self.buf);
        out.extend(self.conn.read_until_eof_or_idle(idle, cap));
        out
    }

    /// Whether the peer closed.
    pub fn is_closed(&mut self) -> bool {
        let c = self.conn.is_closed();
        self.pull();
        c
    }
}

/// Asks one memcached directly: its value for `key` (`None` = miss).
pub fn backend_get(addr: SocketAddr, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut c = McConn::connect(addr)?;
    let r = c.call(&get(&[key]), Duration::from_secs(5))?;
    if r == b"END\r\n" {
        return Ok(None);
    }
    let hdr = find_crlf(&r).unwrap_or(0);
    Ok(Some(r[hdr + 2..r.len() - 7].to_vec()))
}

/// Every key one memcached holds (`lru_crawler metadump all`, URL-decoded),
/// sorted, each with its value (read with `get`; items that expired or were
/// evicted in between are left out).
pub fn backend_dump(addr: SocketAddr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut c = RawConn::connect(addr)?;
    c.send(b"lru_crawler metadump all\r\n")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.buffered().ends_with(b"END\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || matches!(c.read_some(left)?, Fill::Closed) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "lru_crawler metadump did not finish",
            ));
        }
    }
    let text = c.take_buffered();
    let mut keys: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter_map(|l| l.strip_prefix(b"key="))
        .map(|l| url_decode(l.split(|&b| b == b' ').next().unwrap_or(b"")))
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        if let Some(v) = backend_get(addr, &k)? {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let Some(b) = std::str::from_utf8(&s[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_replies() {
        assert_eq!(mc_reply_len(b"STORED\r\n"), Ok(Some(8)));
        assert_eq!(mc_reply_len(b"STORED\r"), Ok(None));
        let v = b"VALUE a 0 2\r\nab\r\nVALUE b 0 3 9\r\n\r\nE\r\nEND\r\nX";
        assert_eq!(mc_reply_len(v), Ok(Some(v.len() - 1)));
        assert_eq!(mc_reply_len(b"VALUE a 0 2\r\nab\r\n"), Ok(None));
        assert_eq!(
            mc_reply_len(b"STAT pid 1\r\nSTAT x y\r\nEND\r\n"),
            Ok(Some(27))
        );
        assert_eq!(mc_reply_len(b"VA 3 f5\r\nbar\r\nMN\r\n"), Ok(Some(14)));
        assert!(mc_reply_len(b"VALUE a 0 2\r\nabc\r\n").is_err());
        assert_eq!(count_mc_replies(b"1\r\nEND\r\nHD\r\nVA 1\r\n"), (3, 12));
        assert_eq!(
            mask_cas(b"VALUE a 0 2 17\r\nab\r\nVALUE b 0 1\r\nc\r\nEND\r\n"),
            b"VALUE a 0 2 <cas>\r\nab\r\nVALUE b 0 1\r\nc\r\nEND\r\n".to_vec()
        );
        assert_eq!(url_decode(b"a%3Ab%2"), b"a:b%2".to_vec());
    }
}
