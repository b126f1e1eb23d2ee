//! A tiny blocking client for raw byte streams, and RESP helpers.
//!
//! [`RawConn`] sends exactly the bytes it is given and reads with explicit
//! deadlines into an internal buffer, so a test sees precisely what a server
//! sent and whether (and when) it closed the connection. Nothing here
//! interprets replies except the RESP framing helpers ([`reply_len`],
//! [`parse_reply`], [`count_replies`]) that tell where one reply ends.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Default connect timeout of [`RawConn::connect`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Write timeout: a peer that does not read for this long fails the send.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    fn set_nonblocking(&self, nb: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(nb),
            Stream::Unix(s) => s.set_nonblocking(nb),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Unix(s) => s.write_all(buf),
        }
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
}

/// The outcome of one [`RawConn::read_some`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This many new bytes were appended to the buffer.
    Data(usize),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the wait.
    Idle,
}

/// A blocking connection that sends raw bytes and buffers what comes back.
///
/// Reads append to an internal buffer; the `read_*` methods take their result
/// out of that buffer, so bytes are never lost between calls. Once the peer
/// has closed (EOF, or a reset), [`saw_close`](Self::saw_close) is true.
#[derive(Debug)]
pub struct RawConn {
    stream: Stream,
    buf: Vec<u8>,
    closed: bool,
    reset: bool,
}

impl RawConn {
    /// Connects over TCP (5 s connect timeout per resolved address),
    /// with `TCP_NODELAY`.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        for a in addr.to_socket_addrs()? {
            match Self::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects over TCP with the given connect timeout.
    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Self::from_stream(Stream::Tcp(s)))
    }

    /// Connects to a proxy listen address (TCP or unix).
    pub fn connect_listen(addr: &crate::ListenAddr) -> io::Result<Self> {
        match addr {
            crate::ListenAddr::Tcp(a) => Self::connect_timeout(*a, CONNECT_TIMEOUT),
            crate::ListenAddr::Unix(p) => Self::connect_unix(p),
        }
    }

    /// Connects to a unix socket.
    pub fn connect_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Self::from_stream(Stream::Unix(s)))
    }

    fn from_stream(stream: Stream) -> Self {
        RawConn {
            stream,
            buf: Vec::new(),
            closed: false,
            reset: false,
        }
    }

    /// The local address (TCP only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.stream {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    /// Writes all of `bytes` (in one `write_all`).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` in pieces of `chunk` bytes, sleeping `pause` after each
    /// piece (`chunk = 1` sends one byte per write).
    pub fn send_paced(&mut self, bytes: &[u8], chunk: usize, pause: Duration) -> io::Result<()> {
        for piece in bytes.chunks(chunk.max(1)) {
            self.stream.write_all(piece)?;
            if !pause.is_zero() {
                thread::sleep(pause);
            }
        }
        Ok(())
    }

    /// Half-closes the connection (no more writes; the peer reads EOF).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Waits up to `wait` for more bytes and appends them to the buffer.
    pub fn read_some(&mut self, wait: Duration) -> io::Result<Fill> {
        if self.closed {
            return Ok(Fill::Closed);
        }
        if wait.is_zero() {
            return Ok(Fill::Idle);
        }
        self.stream.set_read_timeout(Some(wait))?;
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => {
                self.closed = true;
                Ok(Fill::Closed)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(Fill::Data(n))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Fill::Idle)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fill::Data(0)),
            Err(e) if is_reset(&e) => {
                self.closed = true;
                self.reset = true;
                Ok(Fill::Closed)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads exactly one complete RESP reply (waiting at most `timeout`) and
    /// returns its bytes; bytes after it stay buffered.
    ///
    /// Fails with `TimedOut` if no complete reply arrived, `UnexpectedEof` if
    /// the peer closed first, `InvalidData` if the bytes are not RESP.
    pub fn read_exact_reply_bytes(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = reply_len(&self.buf).map_err(invalid)? {
                return Ok(self.buf.drain(..n).collect());
            }
            self.wait_more(deadline, "a RESP reply")?;
        }
    }

    /// Reads `n` complete RESP replies (all within `timeout`).
    pub fn read_replies(&mut self, n: usize, timeout: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            out.push(self.read_exact_reply_bytes(left)?);
        }
        Ok(out)
    }

    /// Reads exactly `n` bytes (whatever they are).
    pub fn read_exact_bytes(&mut self, n: usize, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.buf.len() < n {
            self.wait_more(deadline, "bytes")?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one line, through and including the first `\n`.
    pub fn read_line(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            self.wait_more(deadline, "a line")?;
        }
    }

    /// Collects everything the peer sends until it closes the connection, or
    /// nothing arrives for `idle`, or `cap` has passed in total. Returns the
    /// bytes (including anything buffered before); never fails.
    pub fn read_until_eof_or_idle(&mut self, idle: Duration, cap: Duration) -> Vec<u8> {
        let deadline = Instant::now() + cap;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(idle.min(left)) {
                Ok(Fill::Data(_)) if !left.is_zero() => continue,
                _ => break,
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Collects bytes until the buffer holds at least `n` complete RESP
    /// replies, or the peer closes, or nothing arrives for `idle`, or `cap`
    /// has passed. Returns everything read (also bytes past the `n`th reply
    /// and incomplete or non-RESP tails); never fails.
    pub fn read_replies_or_eof(&mut self, n: usize, idle: Duration, cap: Duration) -> Vec<u8> {
        let deadline = Instant::now() + cap;
        loop {
            match count_replies(&self.buf) {
                Ok((count, _)) if count >= n => break,
                Err(_) => break,
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(idle.min(left)) {
                Ok(Fill::Data(_)) if !left.is_zero() => continue,
                _ => break,
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Whether the peer has closed the connection. Checks without blocking;
    /// bytes that are waiting are moved into the buffer (so they are not
    /// lost) and mean "not closed yet" unless an EOF follows them.
    pub fn is_closed(&mut self) -> bool {
        if self.closed {
            return true;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return self.closed;
        }
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.reset = is_reset(&e);
                    self.closed = true;
                    break;
                }
            }
        }
        let _ = self.stream.set_nonblocking(false);
        self.closed
    }

    /// Whether an earlier read saw the peer close (EOF or reset).
    pub fn saw_close(&self) -> bool {
        self.closed
    }

    /// Whether the close was a reset (RST) rather than an orderly FIN.
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// The bytes read but not yet taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes read but not yet taken.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn wait_more(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out waiting for {what}; buffered: {}",
                    escape_bytes(&self.buf[..self.buf.len().min(200)])
                ),
            ));
        }
        match self.read_some(left)? {
            Fill::Closed => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed while waiting for {what}; buffered: {}",
                    escape_bytes(&self.buf[..self.buf.len().min(200)])
                ),
            )),
            Fill::Data(_) | Fill::Idle => Ok(()),
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn invalid(e: RespError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Encodes a command as a RESP multibulk request (`*N\r\n$len\r\narg\r\n...`).
pub fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A parsed RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+...`
    Status(Vec<u8>),
    /// `-...`
    Error(Vec<u8>),
    /// `:n`
    Integer(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Reply>>),
}

/// Bytes that are not valid RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(pub String);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RESP: {}", self.0)
    }
}

impl std::error::Error for RespError {}

/// One header line: (type byte, line content, bytes consumed incl. CRLF).
type Header<'a> = (u8, &'a [u8], usize);

fn header(buf: &[u8]) -> Result<Option<Header<'_>>, RespError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    if !matches!(t, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError(format!(
            "unexpected type byte {}",
            escape_bytes(&[t])
        )));
    }
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((t, &buf[1..i], i + 2))),
        None => Ok(None),
    }
}

fn int(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RespError(format!("bad integer {}", escape_bytes(line))))
}

/// Length of the first complete RESP2 reply in `buf`, `None` if incomplete.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, RespError> {
    let mut pos = 0;
    let mut remaining: u64 = 1;
    while remaining > 0 {
        let Some((t, line, used)) = header(&buf[pos..])? else {
            return Ok(None);
        };
        pos += used;
        remaining -= 1;
        match t {
            b'$' => {
                let n = int(line)?;
                if n >= 0 {
                    let n = n as usize;
                    if buf.len() < pos + n + 2 {
                        return Ok(None);
                    }
                    if &buf[pos + n..pos + n + 2] != b"\r\n" {
                        return Err(RespError("bulk not terminated by CRLF".into()));
                    }
                    pos += n + 2;
                }
            }
            b'*' => {
                let n = int(line)?;
                if n > 0 {
                    remaining += n as u64;
                }
            }
            b':' => {
                int(line)?;
            }
            _ => {}
        }
    }
    Ok(Some(pos))
}

/// Parses the first complete RESP2 reply; `None` if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(len) = reply_len(buf)? else {
        return Ok(None);
    };
    let (reply, used) = parse_complete(buf)?;
    debug_assert_eq!(used, len);
    Ok(Some((reply, used)))
}

/// Parses a reply known to be complete (iterative, so nesting depth is free).
fn parse_complete(buf: &[u8]) -> Result<(Reply, usize), RespError> {
    // Stack of arrays under construction: (expected items, items so far).
    let mut stack: Vec<(usize, Vec<Reply>)> = Vec::new();
    let mut pos = 0;
    loop {
        let (t, line, used) = header(&buf[pos..])?.ok_or_else(|| RespError("truncated".into()))?;
        pos += used;
        let mut item = match t {
            b'+' => Reply::Status(line.to_vec()),
            b'-' => Reply::Error(line.to_vec()),
            b':' => Reply::Integer(int(line)?),
            b'$' => {
                let n = int(line)?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let n = n as usize;
                    let v = buf[pos..pos + n].to_vec();
                    pos += n + 2;
                    Reply::Bulk(Some(v))
                }
            }
            _ => {
                let n = int(line)?;
                if n < 0 {
                    Reply::Array(None)
                } else if n == 0 {
                    Reply::Array(Some(Vec::new()))
                } else {
                    stack.push((n as usize, Vec::with_capacity(n as usize)));
                    continue;
                }
            }
        };
        loop {
            match stack.last_mut() {
                None => return Ok((item, pos)),
                Some((want, items)) => {
                    items.push(item);
                    if items.len() < *want {
                        break;
                    }
                    let (_, items) = stack.pop().expect("non-empty");
                    item = Reply::Array(Some(items));
                }
            }
        }
    }
}

/// Counts the complete RESP2 replies at the start of `buf`:
/// `(count, bytes they use)`.
pub fn count_replies(buf: &[u8]) -> Result<(usize, usize), RespError> {
    let mut pos = 0;
    let mut count = 0;
    while let Some(n) = reply_len(&buf[pos..])? {
        pos += n;
        count += 1;
    }
    Ok((count, pos))
}

/// Shows bytes readably: printable ASCII as is, `\r \n \t \\ \"`, others as
/// `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// `None` if equal, else a readable description of the first difference with
/// `context` bytes of escaped text around it on both sides.
pub fn diff_bytes(expected: &[u8], actual: &[u8], context: usize) -> Option<String> {
    if expected == actual {
        return None;
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let from = at.saturating_sub(context);
    let window = |b: &[u8]| {
        let to = (at + context).min(b.len());
        let start = from.min(b.len());
        format!(
            "{}{}{}",
            if start > 0 { "..." } else { "" },
            escape_bytes(&b[start..to]),
            if to < b.len() { "..." } else { "" }
        )
    };
    Some(format!(
        "first difference at byte {at} (expected {} bytes, got {} bytes)\n  expected: \"{}\"\n  actual:   \"{}\"",
        expected.len(),
        actual.len(),
        window(expected),
        window(actual),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn resp_cmd_encodes_binary_args() {
        assert_eq!(
            resp_cmd(&[b"SET", b"k", b"a\r\nb"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
        );
        assert_eq!(resp_cmd(&[b"GET", b""]), b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
    }

    #[test]
    fn reply_framing() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"+OK\r\n", Some(5)),
            (b"+OK\r", None),
            (b"", None),
            (b":12\r\n:1", Some(5)),
            (b"$-1\r\n", Some(5)),
            (b"$3\r\na\r\n\r\n", Some(9)),
            (b"$3\r\na\r", None),
            (b"*-1\r\n", Some(5)),
            (b"*0\r\n", Some(4)),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n+x", Some(19)),
            (b"*2\r\n$1\r\na\r\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(reply_len(input).unwrap(), *want, "{}", escape_bytes(input));
        }
        assert!(reply_len(b"PONG\r\n").is_err());
        assert!(reply_len(b"$1\r\nab\r\n").is_err());
        assert!(reply_len(b":x\r\n").is_err());
        assert_eq!(count_replies(b"+OK\r\n:1\r\n$2\r\nx").unwrap(), (2, 9));
    }

    #[test]
    fn reply_parsing() {
        let (r, n) = parse_reply(b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:5\r\n-ERR x\r\n!")
            .unwrap()
            .unwrap();
        assert_eq!(n, 32);
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Integer(5),
                    Reply::Error(b"ERR x".to_vec())
                ])),
            ]))
        );
        let deep = format!("{}:1\r\n", "*1\r\n".repeat(10_000));
        assert!(parse_reply(deep.as_bytes()).unwrap().is_some());
        assert_eq!(parse_reply(b"*1\r\n").unwrap(), None);
    }

    #[test]
    fn escape_and_diff() {
        assert_eq!(escape_bytes(b"a\r\n\x00\xff\\"), "a\\r\\n\\x00\\xff\\\\");
        assert_eq!(diff_bytes(b"abc", b"abc", 4), None);
        let d = diff_bytes(b"+OK\r\n:1\r\n", b"+OK\r\n:2\r\n", 3).unwrap();
        assert!(d.contains("byte 6"), "{d}");
        assert!(d.contains(":1") && d.contains(":2"), "{d}");
        let d = diff_bytes(b"+OK\r\n", b"", 3).unwrap();
        assert!(d.contains("byte 0") && d.contains("got 0 bytes"), "{d}");
    }

    /// A one-shot server: accepts one connection, runs `f` on it.
    fn serve(f: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            f(s);
        });
        addr
    }

    #[test]
    fn read_until_eof_collects_everything_then_reports_closed() {
        let addr = serve(|mut s| {
            s.write_all(b"+OK\r\n").unwrap();
            thread::sleep(Duration::from_millis(50));
            s.write_all(b":1\r\n").unwrap();
        });
        let mut c = RawConn::connect(addr).unwrap();
        let got = c.read_until_eof_or_idle(Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(got, b"+OK\r\n:1\r\n");
        assert!(c.saw_close());
        assert!(c.is_closed());
    }

    #[test]
    fn idle_and_cap_bound_the_read() {
        let addr = serve(|mut s| {
            s.write_all(b"+A\r\n").unwrap();
            thread::sleep(Duration::from_millis(600));
            let _ = s.write_all(b"+B\r\n");
        });
        let mut c = RawConn::connect(addr).unwrap();
        let t0 = Instant::now();
        let got = c.read_until_eof_or_idle(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(got, b"+A\r\n");
        assert!(t0.elapsed() < Duration::from_millis(500));
        assert!(!c.is_closed());
        let got = c.read_replies_or_eof(1, Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(got, b"+B\r\n");

        // The cap wins over a peer that keeps trickling bytes.
        let addr = serve(|mut s| {
            for _ in 0..100 {
                if s.write_all(b"x").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let mut c = RawConn::connect(addr).unwrap();
        let t0 = Instant::now();
        let got = c.read_until_eof_or_idle(Duration::from_millis(500), Duration::from_millis(200));
        assert!(!got.is_empty());
        assert!(t0.elapsed() < Duration::from_millis(600));
    }

    #[test]
    fn reply_reads_keep_the_rest_buffered() {
        let addr = serve(|mut s| {
            let mut req = [0u8; 14];
            s.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"*1\r\n$4\r\nPING\r\n");
            s.write_all(b"+PONG\r\n$3\r\nab").unwrap();
            thread::sleep(Duration::from_millis(30));
            s.write_all(b"c\r\n").unwrap();
            thread::sleep(Duration::from_millis(300));
        });
        let mut c = RawConn::connect(addr).unwrap();
        c.send_paced(&resp_cmd(&[b"PING"]), 1, Duration::from_millis(1))
            .unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.read_exact_reply_bytes(t).unwrap(), b"+PONG\r\n");
        assert_eq!(c.read_exact_reply_bytes(t).unwrap(), b"$3\r\nabc\r\n");
        let e = c
            .read_exact_reply_bytes(Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = c.read_exact_reply_bytes(t).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
