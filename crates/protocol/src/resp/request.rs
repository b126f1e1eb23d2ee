//! Request parsing: one RESP2 multibulk request, validated in place exactly as
//! nutcracker 0.5.0's `redis_parse_req` validates it, returning spans into the
//! caller's buffer so the proxy can forward the original bytes.
//!
//! Errors are reported at the earliest byte where nutcracker would report
//! them (for example an unknown command as soon as its name is complete),
//! because that decides which earlier pipelined replies a client still gets.

use std::ops::Range;

use super::command::{lookup, Arity, CommandSpec};
use super::{read_uint_line, ParseError};
use crate::Limits;

/// One complete, valid request at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Bytes the request occupies.
    pub len: usize,
    pub command: &'static CommandSpec,
    /// Element count, the command name included.
    pub argc: usize,
    /// The routing key (the first key); `0..0` when the command has none.
    pub key: Range<usize>,
    /// How many keys the request carries (for ArgX/ArgKvx: all of them).
    pub nkeys: usize,
    /// Offset of the first element after the command name.
    pub args_start: usize,
}

impl Request {
    /// The elements after the command name, as spans of `buf` (which must be
    /// the buffer this request was parsed from).
    pub fn args<'a>(&self, buf: &'a [u8]) -> ArgIter<'a> {
        ArgIter {
            buf: &buf[..self.len],
            pos: self.args_start,
        }
    }
}

/// Iterator over the bulk elements of an already validated request.
#[derive(Debug, Clone)]
pub struct ArgIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ArgIter<'a> {
    /// The elements of `request` (exactly one validated request's bytes)
    /// from `args_start` (its [`Request::args_start`]) on.
    pub fn new(request: &'a [u8], args_start: usize) -> ArgIter<'a> {
        ArgIter {
            buf: request,
            pos: args_start,
        }
    }
}

impl Iterator for ArgIter<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.buf.get(self.pos) != Some(&b'$') {
            return None;
        }
        let (len, _, data) = read_uint_line(self.buf, self.pos + 1).ok()?;
        let end = data.checked_add(len)?;
        if end + 2 > self.buf.len() {
            return None;
        }
        self.pos = end + 2;
        Some(data..end)
    }
}

/// Longest command name worth waiting for (the longest supported is 17).
const MAX_COMMAND_NAME_LEN: usize = 64;

/// What an element is, which decides its length limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Name,
    Key,
    Arg,
}

/// Reads one `$len\r\ndata\r\n` element at `pos`. Length limits are checked
/// as soon as the length line is complete, before the payload is awaited.
#[inline]
fn bulk(
    buf: &[u8],
    pos: usize,
    role: Role,
    limits: &Limits,
) -> Result<(Range<usize>, usize), ParseError> {
    match buf.get(pos) {
        None => return Err(ParseError::Incomplete),
        Some(b'$') => {}
        Some(_) => return Err(ParseError::Protocol("expected '$'")),
    }
    let (len, digits, data) = read_uint_line(buf, pos + 1)?;
    if digits == 0 {
        return Err(ParseError::Protocol("empty bulk length"));
    }
    match role {
        Role::Name if len == 0 => return Err(ParseError::Protocol("empty command name")),
        // No supported name is longer; don't wait for bytes that cannot match.
        Role::Name if len > MAX_COMMAND_NAME_LEN => return Err(ParseError::UnsupportedCommand),
        Role::Key if len >= limits.max_key_len => return Err(ParseError::KeyTooLong),
        _ if len > limits.max_bulk_len => return Err(ParseError::BulkTooLong),
        _ => {}
    }
    let end = data.checked_add(len).ok_or(ParseError::BulkTooLong)?;
    match buf.get(end) {
        None => return Err(ParseError::Incomplete),
        Some(b'\r') => {}
        Some(_) => return Err(ParseError::Protocol("bulk data not followed by CR")),
    }
    match buf.get(end + 1) {
        None => Err(ParseError::Incomplete),
        Some(b'\n') => Ok((data..end, end + 2)),
        Some(_) => Err(ParseError::Protocol("expected LF after CR")),
    }
}

/// The command name of a `$len\r\nname\r` element at `pos`, once its CR has
/// arrived; `None` while it hasn't, or when the length line is one that
/// [`bulk`] rejects.
fn name_before_cr(buf: &[u8], pos: usize) -> Option<&[u8]> {
    if buf.get(pos) != Some(&b'$') {
        return None;
    }
    let (len, digits, data) = read_uint_line(buf, pos + 1).ok()?;
    if digits == 0 || len == 0 || len > MAX_COMMAND_NAME_LEN {
        return None;
    }
    let end = data + len;
    (buf.get(end) == Some(&b'\r')).then(|| &buf[data..end])
}

/// Parses the request at the start of `buf`.
///
/// `Err(ParseError::Incomplete)` means the bytes so far are a valid prefix.
/// Any other error means the connection must be closed (nutcracker closes
/// client connections on every parse error and unsupported command).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Request, ParseError> {
    match buf.first() {
        None => return Err(ParseError::Incomplete),
        Some(b'*') => {}
        Some(_) => {
            return Err(ParseError::Protocol(
                "expected '*' (inline commands are not supported)",
            ))
        }
    }
    let (argc, _, mut pos) = read_uint_line(buf, 1)?;
    if argc == 0 {
        return Err(ParseError::Protocol("empty multibulk"));
    }
    if argc > limits.max_array_len {
        return Err(ParseError::ArrayTooLong);
    }
    let (name, next) = match bulk(buf, pos, Role::Name, limits) {
        Ok(found) => found,
        // nutcracker classifies a name as soon as the CR after it is in,
        // before it looks at the LF: a missing or wrong LF after an unknown
        // name is still an unknown name.
        Err(_) if name_before_cr(buf, pos).is_some_and(|name| lookup(name).is_none()) => {
            return Err(ParseError::UnsupportedCommand)
        }
        Err(e) => return Err(e),
    };
    let command = lookup(&buf[name]).ok_or(ParseError::UnsupportedCommand)?;
    pos = next;
    let args_start = pos;
    let mut remaining = argc - 1;

    let take =
        |role: Role, pos: &mut usize, remaining: &mut usize| -> Result<Range<usize>, ParseError> {
            let (span, next) = bulk(buf, *pos, role, limits)?;
            *pos = next;
            *remaining -= 1;
            Ok(span)
        };

    let mut key = 0..0;
    let mut nkeys = 0;
    match command.arity {
        Arity::Argz => {
            if remaining != 0 {
                return Err(ParseError::Arity);
            }
        }
        Arity::NoKey => {
            while remaining > 0 {
                take(Role::Arg, &mut pos, &mut remaining)?;
            }
        }
        Arity::ArgEval => {
            if remaining == 0 {
                return Err(ParseError::Arity);
            }
            take(Role::Arg, &mut pos, &mut remaining)?; // script or sha
            if remaining < 2 {
                return Err(ParseError::Arity);
            }
            let numkeys = take(Role::Arg, &mut pos, &mut remaining)?;
            let numkeys = &buf[numkeys];
            if numkeys.is_empty()
                || !numkeys.iter().all(u8::is_ascii_digit)
                || numkeys.iter().all(|&b| b == b'0')
            {
                return Err(ParseError::Protocol(
                    "EVAL numkeys must be a positive number",
                ));
            }
            key = take(Role::Key, &mut pos, &mut remaining)?;
            nkeys = 1;
            while remaining > 0 {
                take(Role::Arg, &mut pos, &mut remaining)?;
            }
        }
        arity => {
            if remaining == 0 {
                return Err(ParseError::Arity);
            }
            key = take(Role::Key, &mut pos, &mut remaining)?;
            nkeys = 1;
            let exact = match arity {
                Arity::Arg0 => Some(0),
                Arity::Arg1 => Some(1),
                Arity::Arg2 => Some(2),
                Arity::Arg3 => Some(3),
                _ => None,
            };
            if exact.is_some_and(|n| n != remaining) {
                return Err(ParseError::Arity);
            }
            match arity {
                Arity::ArgX => {
                    while remaining > 0 {
                        take(Role::Key, &mut pos, &mut remaining)?;
                        nkeys += 1;
                    }
                }
                Arity::ArgKvx => {
                    if remaining % 2 == 0 {
                        return Err(ParseError::Arity);
                    }
                    while remaining > 0 {
                        take(Role::Arg, &mut pos, &mut remaining)?; // value
                        if remaining > 0 {
                            take(Role::Key, &mut pos, &mut remaining)?;
                            nkeys += 1;
                        }
                    }
                }
                _ => {
                    while remaining > 0 {
                        take(Role::Arg, &mut pos, &mut remaining)?;
                    }
                }
            }
        }
    }
    Ok(Request {
        len: pos,
        command,
        argc,
        key,
        nkeys,
        args_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode_command;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command(&mut out, args[0], args[1..].iter().copied());
        out
    }

    #[track_caller]
    fn check(input: &[u8], expect: Result<(&str, &[u8], usize), ParseError>) {
        let got = parse_request(input, &Limits::default()).map(|r| {
            assert_eq!(r.len, input.len(), "request must consume the whole input");
            (r.command.name, &input[r.key.clone()], r.nkeys)
        });
        assert_eq!(got, expect);
    }

    #[test]
    fn simple_commands() {
        check(&cmd(&[b"GET", b"k"]), Ok(("get", b"k", 1)));
        check(&cmd(&[b"set", b"key", b"value"]), Ok(("set", b"key", 1)));
        check(&cmd(&[b"SET", b"k"]), Ok(("set", b"k", 1)));
        check(&cmd(&[b"GET", b""]), Ok(("get", b"", 1)));
        check(&cmd(&[b"PING"]), Ok(("ping", b"", 0)));
        check(&cmd(&[b"LOLWUT", b"VERSION", b"5"]), Ok(("lolwut", b"", 0)));
        check(&cmd(&[b"EXISTS", b"a", b"b"]), Ok(("exists", b"a", 1)));
        check(b"*01\r\n$04\r\nPING\r\n", Ok(("ping", b"", 0)));
    }

    #[test]
    fn multi_key_commands_count_keys() {
        check(&cmd(&[b"MGET", b"a", b"b", b"c"]), Ok(("mget", b"a", 3)));
        check(&cmd(&[b"DEL", b"a"]), Ok(("del", b"a", 1)));
        check(
            &cmd(&[b"MSET", b"a", b"1", b"b", b"2"]),
            Ok(("mset", b"a", 2)),
        );
        check(
            &cmd(&[b"EVAL", b"return 1", b"2", b"k1", b"k2"]),
            Ok(("eval", b"k1", 1)),
        );
    }

    #[test]
    fn args_iterates_after_the_name() {
        let buf = cmd(&[b"MSET", b"a", b"1", b"bb", b""]);
        let req = parse_request(&buf, &Limits::default()).unwrap();
        let args: Vec<&[u8]> = req.args(&buf).map(|r| &buf[r]).collect();
        assert_eq!(args, vec![&b"a"[..], b"1", b"bb", b""]);
    }

    #[test]
    fn nutcracker_closes_on_these() {
        use ParseError::*;
        check(&cmd(&[b"GET"]), Err(Arity));
        check(&cmd(&[b"MGET"]), Err(Arity));
        check(&cmd(&[b"EXISTS"]), Err(Arity));
        check(&cmd(&[b"GET", b"a", b"b"]), Err(Arity));
        check(&cmd(&[b"PING", b"x"]), Err(Arity));
        check(&cmd(&[b"QUIT", b"x"]), Err(Arity));
        check(&cmd(&[b"MSET", b"a", b"1", b"b"]), Err(Arity));
        check(&cmd(&[b"LINSERT", b"l", b"BEFORE", b"x"]), Err(Arity));
        check(&cmd(&[b"EVAL", b"return 1", b"1"]), Err(Arity));
        check(
            &cmd(&[b"EVAL", b"return 1", b"0", b"k"]),
            Err(Protocol("EVAL numkeys must be a positive number")),
        );
        check(
            &cmd(&[b"EVAL", b"return 1", b"x", b"k"]),
            Err(Protocol("EVAL numkeys must be a positive number")),
        );
        check(&cmd(&[b"KEYS", b"*"]), Err(UnsupportedCommand));
        check(&cmd(&[b"SELECT", b"1"]), Err(UnsupportedCommand));
        check(
            b"PING\r\n",
            Err(Protocol("expected '*' (inline commands are not supported)")),
        );
        check(b"*0\r\n", Err(Protocol("empty multibulk")));
        check(b"*-1\r\n", Err(Protocol("expected digit")));
        check(b"*1\r\n$0\r\n\r\n", Err(Protocol("empty command name")));
        check(b"*2\r\n$3\r\nGET\r\n:1\r\n", Err(Protocol("expected '$'")));
        check(
            b"*2\r\n$3\r\nGET\r\n$\r\na\r\n",
            Err(Protocol("empty bulk length")),
        );
        check(
            b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nbX\r\n",
            Err(Protocol("bulk data not followed by CR")),
        );
        check(
            b"*1\r\n$4\r\nPING\rX",
            Err(Protocol("expected LF after CR")),
        );
    }

    #[test]
    fn errors_are_reported_before_the_rest_arrives() {
        // nutcracker rejects an unknown name as soon as the name is complete.
        check(b"*2\r\n$4\r\nKEYS\r\n", Err(ParseError::UnsupportedCommand));
        // ... the CR after it is enough (a supported one waits for the LF) ...
        check(b"*5\r\n$6\r\nSelEcT\r", Err(ParseError::UnsupportedCommand));
        check(b"*2\r\n$3\r\nGET\r", Err(ParseError::Incomplete));
        check(b"*2\r\n$4\r\nKEYS", Err(ParseError::Incomplete));
        check(b"*2\r\n$4\r\nKEYS\rX", Err(ParseError::UnsupportedCommand));
        check(
            b"*2\r\n$3\r\nGET\rX",
            Err(ParseError::Protocol("expected LF after CR")),
        );
        // ... and a too-long key as soon as its length line is complete.
        check(
            b"*2\r\n$3\r\nGET\r\n$99999\r\n",
            Err(ParseError::KeyTooLong),
        );
        check(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999999\r\n",
            Err(ParseError::BulkTooLong),
        );
        check(b"*99999999\r\n", Err(ParseError::ArrayTooLong));
    }

    #[test]
    fn key_length_limit_at_and_above() {
        let limits = Limits::default();
        let ok = vec![b'k'; limits.max_key_len - 1];
        let bad = vec![b'k'; limits.max_key_len];
        check(&cmd(&[b"GET", &ok]), Ok(("get", &ok, 1)));
        check(&cmd(&[b"GET", &bad]), Err(ParseError::KeyTooLong));
        check(&cmd(&[b"MGET", b"a", &bad]), Err(ParseError::KeyTooLong));
        // values are not keys
        check(&cmd(&[b"SET", b"a", &bad]), Ok(("set", b"a", 1)));
    }

    #[test]
    fn bulk_and_array_limits_at_and_above() {
        let limits = Limits {
            max_bulk_len: 4,
            max_array_len: 3,
            ..Limits::default()
        };
        assert!(parse_request(&cmd(&[b"SET", b"k", b"1234"]), &limits).is_ok());
        assert_eq!(
            parse_request(&cmd(&[b"SET", b"k", b"12345"]), &limits),
            Err(ParseError::BulkTooLong)
        );
        assert_eq!(
            parse_request(&cmd(&[b"SET", b"k", b"v", b"x"]), &limits),
            Err(ParseError::ArrayTooLong)
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let buf = cmd(&[b"MSET", b"a", b"1", b"b\r\n", b""]);
        for cut in 0..buf.len() {
            assert_eq!(
                parse_request(&buf[..cut], &Limits::default()),
                Err(ParseError::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let mut buf = cmd(&[b"SET", b"a", b"1"]);
        buf.extend(cmd(&[b"GET", b"a"]));
        let first = parse_request(&buf, &Limits::default()).unwrap();
        assert_eq!(first.command.name, "set");
        let second = parse_request(&buf[first.len..], &Limits::default()).unwrap();
        assert_eq!(second.command.name, "get");
        assert_eq!(first.len + second.len, buf.len());
    }
}
