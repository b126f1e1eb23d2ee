//! memcached ASCII (and meta) as ncproxy proxies it: nutcracker 0.5.0's
//! commands byte for byte, plus the extensions the README lists.
//!
//! - Retrieval commands with several keys (get, gets, gat, gats) split per
//!   server; the replies merge as nutcracker's memcache_post_coalesce does:
//!   for each key in request order, the next VALUE block of that key's
//!   fragment, then one `END`.
//! - `noreply` requests are forwarded verbatim and never wait for a reply;
//!   the server connection fences each run of them with a `version` request
//!   so that an error memcached still sends for one (a `decr` of a
//!   non-numeric value, an oversized `set`) is swallowed, never handed to
//!   the next request (see conn/server.rs).
//! - Meta commands route by key (a `b` key is base64-decoded for hashing).
//!   Quiet mode (`q`) is stripped before forwarding, so memcached always
//!   answers, and the proxy drops the replies quiet mode suppresses (`EN`
//!   for mg, `HD` for the others): FIFO matching cannot desync. `mn` is
//!   answered by the proxy in order.
//! - `flush_all` and `verbosity` go to every server (one reply, the first
//!   error wins); `version` and `stats` are answered by the proxy.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use nc_protocol::memcache::{self, Command, KeySpans, ReplyKind, ValueBlocks};
use nc_protocol::resp::ParseError;
use nc_protocol::Limits;

use super::{
    Action, Coalesced, FragmentKind, Fragments, Parsed, Quiet, ReplyClass, ScannedReply, Split,
    SplitRequest,
};
use crate::errno::strerror;
use crate::errno::Errno;

static VERSION: Bytes =
    Bytes::from_static(concat!("VERSION ncproxy-", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes());
static MN: Bytes = Bytes::from_static(b"MN\r\n");
static END: &[u8] = b"END\r\n";
static STATS_ARGS: Bytes =
    Bytes::from_static(b"CLIENT_ERROR stats with arguments is not supported by the proxy\r\n");
/// The request that fences a run of noreply requests on a server connection.
pub(crate) static FENCE: Bytes = Bytes::from_static(b"version\r\n");

/// Parses one request and maps its command to an action.
#[inline]
pub(super) fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let request = memcache::parse_request(buf, limits)?;
    let key = request.key.clone();
    let mut blank = None;
    let action = match request.command {
        Command::Get | Command::Gets | Command::Gat | Command::Gats => {
            if request.nkeys > 1 {
                Action::Split(Split {
                    kind: FragmentKind::Retrieval,
                    name: request.command.name(),
                    args: request.keys.clone(),
                    prefix: request.exptime.clone(),
                    nkeys: request.nkeys,
                    read_only: false,
                })
            } else {
                Action::Forward {
                    key,
                    read_only: false,
                }
            }
        }
        Command::Set
        | Command::Add
        | Command::Replace
        | Command::Append
        | Command::Prepend
        | Command::Cas
        | Command::Incr
        | Command::Decr
        | Command::Delete
        | Command::Touch => match request.noreply {
            Some(_) => Action::ForwardNoReply { key },
            None => Action::Forward {
                key,
                read_only: false,
            },
        },
        Command::Version => Action::Local(VERSION.clone()),
        Command::Quit => Action::Quit,
        Command::FlushAll | Command::Verbosity => Action::Broadcast {
            noreply: request.noreply.is_some(),
        },
        Command::Stats => {
            // The line is `stats` plus optional arguments.
            let line = &buf[..request.line_len];
            let has_args = line[..line.len() - 2]
                .split(|&c| c == b' ')
                .filter(|t| !t.is_empty())
                .count()
                > 1;
            if has_args {
                Action::Local(STATS_ARGS.clone())
            } else {
                Action::Stats
            }
        }
        Command::MetaNoop => Action::Local(MN.clone()),
        Command::MetaGet
        | Command::MetaSet
        | Command::MetaDelete
        | Command::MetaArithmetic
        | Command::MetaDebug => {
            let quiet = request.quiet.map(|at| {
                blank = Some(at);
                if request.command == Command::MetaGet {
                    Quiet::Miss
                } else {
                    Quiet::Success
                }
            });
            Action::ForwardMeta {
                key,
                base64: request.base64_key,
                quiet,
            }
        }
    };
    Ok(Parsed {
        len: request.len,
        action,
        blank,
    })
}

/// A meta key for hashing: the key itself, or its base64 decoding into
/// `scratch` (an undecodable key hashes as written; memcached rejects it).
pub(super) fn routing_key<'a>(
    encoded: &'a [u8],
    base64: bool,
    scratch: &'a mut [u8; 256],
) -> &'a [u8] {
    if !base64 {
        return encoded;
    }
    match memcache::decode_base64_key(encoded, scratch) {
        Some(decoded) => decoded,
        None => encoded,
    }
}

/// Whether quiet mode suppresses this reply.
pub(super) fn suppressed(quiet: Quiet, reply: &[u8]) -> bool {
    fn word_is(reply: &[u8], word: &[u8]) -> bool {
        reply.starts_with(word) && matches!(reply.get(word.len()), Some(b' ' | b'\r'))
    }
    match quiet {
        Quiet::Miss => word_is(reply, b"EN"),
        Quiet::Success => word_is(reply, b"HD"),
    }
}

/// Splits a multi-key retrieval into one request per server, keys in their
/// original order (nutcracker's memcache_fragment_retrieval).
pub(super) fn split(
    split: &Split,
    bytes: &Bytes,
    mut route: impl FnMut(&[u8]) -> Option<usize>,
) -> Option<SplitRequest> {
    // (server, key spans) per fragment, in order of first use.
    let mut frags: Vec<(usize, Vec<Range<usize>>)> = Vec::new();
    let mut key_order = Vec::with_capacity(split.nkeys);
    for span in KeySpans::new(bytes, split.args.clone()) {
        let server = route(&bytes[span.clone()])?;
        let frag = match frags.iter().position(|(s, _)| *s == server) {
            Some(i) => i,
            None => {
                frags.push((server, Vec::new()));
                frags.len() - 1
            }
        };
        let spans = &mut frags[frag].1;
        key_order.push((frag as u32, spans.len() as u32));
        spans.push(span);
    }
    let state = Fragments::new(split.kind, frags.len(), key_order);
    let prefix = split.prefix.clone().map(|p| &bytes[p]);
    let fragments = frags
        .into_iter()
        .map(|(server, spans)| {
            let size = split.name.len()
                + prefix.map_or(0, |p| p.len() + 1)
                + spans.iter().map(|s| s.len() + 1).sum::<usize>()
                + 3;
            let mut out = BytesMut::with_capacity(size);
            out.put_slice(split.name.as_bytes());
            if let Some(prefix) = prefix {
                out.put_u8(b' ');
                out.put_slice(prefix);
            }
            for span in spans {
                out.put_u8(b' ');
                out.put_slice(&bytes[span]);
            }
            out.put_slice(b"\r\n");
            (server, out.freeze())
        })
        .collect();
    Some(SplitRequest { fragments, state })
}

/// Every server gets the request as received (flush_all, verbosity).
pub(super) fn broadcast(bytes: &Bytes, servers: usize) -> SplitRequest {
    SplitRequest {
        fragments: (0..servers).map(|s| (s, bytes.clone())).collect(),
        state: Fragments::new(FragmentKind::Broadcast, servers, Vec::new()),
    }
}

/// `SERVER_ERROR <strerror>\r\n` (nutcracker's msg_get_error).
pub(super) fn error_reply(errno: Errno) -> Bytes {
    let text = strerror(errno);
    let mut out = BytesMut::with_capacity(text.len() + 15);
    out.put_slice(b"SERVER_ERROR ");
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

/// nutcracker's memcache_pre/post_coalesce for retrievals, and the
/// first-error-wins merge of a broadcast.
pub(super) fn coalesce(frags: &Fragments, limits: &Limits) -> Coalesced {
    if let Some(errno) = frags.errno {
        return Coalesced {
            reply: error_reply(errno),
            // A failed fragment closes the client after the error
            // (memcache_post_coalesce sets the client connection's err).
            close_after: frags.kind == FragmentKind::Retrieval,
            synthesized_error: true,
        };
    }
    match frags.kind {
        FragmentKind::Broadcast => {
            let mut first = None;
            for reply in frags.replies.iter().flatten() {
                let is_error =
                    memcache::parse_reply(reply, limits).map_or(true, |r| r.kind.is_error());
                if is_error {
                    return Coalesced {
                        reply: reply.clone(),
                        close_after: false,
                        synthesized_error: false,
                    };
                }
                first.get_or_insert(reply);
            }
            match first {
                Some(reply) => Coalesced {
                    reply: reply.clone(),
                    close_after: false,
                    synthesized_error: false,
                },
                None => invalid(false),
            }
        }
        _ => coalesce_retrieval(frags, limits),
    }
}

fn invalid(close_after: bool) -> Coalesced {
    Coalesced {
        reply: error_reply(libc::EINVAL),
        close_after,
        synthesized_error: true,
    }
}

fn coalesce_retrieval(frags: &Fragments, limits: &Limits) -> Coalesced {
    // Each fragment's VALUE blocks, and how many were taken so far.
    let mut blocks: Vec<(&Bytes, Vec<Range<usize>>, usize)> =
        Vec::with_capacity(frags.replies.len());
    for reply in &frags.replies {
        let Some(reply) = reply else {
            return invalid(true);
        };
        let Ok(values) = ValueBlocks::new(reply, limits) else {
            // Any other reply type (SERVER_ERROR, CLIENT_ERROR...): nutcracker's
            // pre_coalesce marks the request in error with EINVAL.
            return invalid(true);
        };
        blocks.push((reply, values.map(|(_, block)| block).collect(), 0));
    }
    let size: usize = frags.replies.iter().flatten().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(size + END.len());
    for &(frag, _) in &frags.key_order {
        let (reply, spans, taken) = &mut blocks[frag as usize];
        if let Some(span) = spans.get(*taken) {
            out.put_slice(&reply[span.clone()]);
            *taken += 1;
        }
    }
    out.put_slice(END);
    Coalesced {
        reply: out.freeze(),
        close_after: false,
        synthesized_error: false,
    }
}

/// Scans one reply and classifies it. memcached's errors never fail the
/// connection (nutcracker's memcache_failure is always false).
#[inline]
pub(super) fn scan_reply(
    scanner: &mut memcache::ReplyScanner,
    buf: &[u8],
    limits: &Limits,
) -> Result<ScannedReply, ParseError> {
    let reply = scanner.scan(buf, limits)?;
    let class = match reply.kind {
        ReplyKind::Version => ReplyClass::Fence,
        kind if kind.is_error() => ReplyClass::Error,
        _ => ReplyClass::Ok,
    };
    Ok(ScannedReply {
        len: reply.len,
        class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &[u8]) -> Parsed {
        parse_request(line, &Limits::default()).expect("a valid request")
    }

    /// Splits `request` with keys routed by their first byte (a→0, b→1, ...).
    fn split_by_first_byte(request: &'static [u8]) -> SplitRequest {
        let bytes = Bytes::from_static(request);
        let Action::Split(plan) = parsed(request).action else {
            panic!("not split: {request:?}");
        };
        split(&plan, &bytes, |key| Some(usize::from(key[0] - b'a'))).expect("all servers live")
    }

    fn merged(state: &mut Fragments, replies: &[&'static [u8]]) -> Coalesced {
        for (slot, reply) in state.replies.iter_mut().zip(replies) {
            *slot = Some(Bytes::from_static(reply));
        }
        coalesce(state, &Limits::default())
    }

    #[test]
    fn retrievals_split_per_server_in_key_order() {
        let split = split_by_first_byte(b"get a1 b1  a2 c1\r\n");
        let frags: Vec<(usize, &[u8])> =
            split.fragments.iter().map(|(s, b)| (*s, &b[..])).collect();
        assert_eq!(
            frags,
            [
                (0, &b"get a1 a2\r\n"[..]),
                (1, b"get b1\r\n"),
                (2, b"get c1\r\n")
            ]
        );
        assert_eq!(split.state.key_order, [(0, 0), (1, 0), (0, 1), (2, 0)]);
        let gat = split_by_first_byte(b"gats 300 b1 a1\r\n");
        let frags: Vec<&[u8]> = gat.fragments.iter().map(|(_, b)| &b[..]).collect();
        assert_eq!(frags, [&b"gats 300 b1\r\n"[..], b"gats 300 a1\r\n"]);
    }

    #[test]
    fn one_key_retrievals_and_storage_are_forwarded_as_received() {
        assert!(matches!(
            parsed(b"get a\r\n").action,
            Action::Forward { .. }
        ));
        assert!(matches!(
            parsed(b"set a 0 0 1 noreply\r\nx\r\n").action,
            Action::ForwardNoReply { .. }
        ));
        let Action::Forward { key, .. } = parsed(b"incr counter 5\r\n").action else {
            panic!("incr is forwarded by key");
        };
        assert_eq!(key, 5..12);
    }

    #[test]
    fn merged_values_follow_nutcracker_order_when_keys_miss() {
        // Keys a1 (server 0, missing), b1 (server 1), a2 (server 0): for each
        // key, the next block of its server's reply. a1 takes a2's block.
        let mut split = split_by_first_byte(b"get a1 b1 a2\r\n");
        let out = merged(
            &mut split.state,
            &[
                b"VALUE a2 0 1\r\nx\r\nEND\r\n",
                b"VALUE b1 3 2\r\nyz\r\nEND\r\n",
            ],
        );
        assert_eq!(
            &out.reply[..],
            b"VALUE a2 0 1\r\nx\r\nVALUE b1 3 2\r\nyz\r\nEND\r\n"
        );
        assert!(!out.close_after && !out.synthesized_error);
    }

    #[test]
    fn a_failed_fragment_errors_and_closes_the_client() {
        let mut split = split_by_first_byte(b"get a1 b1\r\n");
        split.state.errno = Some(libc::ECONNREFUSED);
        let out = coalesce(&split.state, &Limits::default());
        assert_eq!(&out.reply[..], b"SERVER_ERROR Connection refused\r\n");
        assert!(out.close_after && out.synthesized_error);
        let mut split = split_by_first_byte(b"get a1 b1\r\n");
        let out = merged(
            &mut split.state,
            &[b"END\r\n", b"SERVER_ERROR out of memory\r\n"],
        );
        assert_eq!(&out.reply[..], b"SERVER_ERROR Invalid argument\r\n");
    }

    #[test]
    fn broadcasts_answer_the_first_error_else_ok() {
        let bytes = Bytes::from_static(b"flush_all\r\n");
        let mut all = broadcast(&bytes, 3);
        assert_eq!(all.fragments.len(), 3);
        assert!(all.fragments.iter().all(|(_, b)| b == &bytes));
        let ok = merged(&mut all.state, &[b"OK\r\n", b"OK\r\n", b"OK\r\n"]);
        assert_eq!(&ok.reply[..], b"OK\r\n");
        let mut all = broadcast(&bytes, 3);
        let err = merged(
            &mut all.state,
            &[b"OK\r\n", b"ERROR\r\n", b"SERVER_ERROR x\r\n"],
        );
        assert_eq!(&err.reply[..], b"ERROR\r\n");
    }

    #[test]
    fn quiet_mode_drops_only_what_memcached_would_not_send() {
        assert!(suppressed(Quiet::Miss, b"EN\r\n"));
        assert!(!suppressed(Quiet::Miss, b"VA 1 q\r\nx\r\n"));
        assert!(!suppressed(Quiet::Miss, b"ENx\r\n"));
        assert!(suppressed(Quiet::Success, b"HD O12 k\r\n"));
        assert!(suppressed(Quiet::Success, b"HD\r\n"));
        assert!(!suppressed(Quiet::Success, b"NS\r\n"));
        assert!(!suppressed(Quiet::Success, b"EN\r\n"));
        let mg = parsed(b"mg foo v q k\r\n");
        assert_eq!(mg.blank, Some(9), "the q flag is blanked before forwarding");
        assert!(matches!(
            mg.action,
            Action::ForwardMeta {
                quiet: Some(Quiet::Miss),
                ..
            }
        ));
    }

    #[test]
    fn base64_meta_keys_hash_as_the_decoded_key() {
        let mut scratch = [0u8; 256];
        assert_eq!(routing_key(b"Zm9v", true, &mut scratch), b"foo");
        let mut scratch = [0u8; 256];
        assert_eq!(routing_key(b"Zm9v", false, &mut scratch), b"Zm9v");
        let mut scratch = [0u8; 256];
        assert_eq!(routing_key(b"!!", true, &mut scratch), b"!!");
    }

    #[test]
    fn proxy_errors_read_as_nutcracker_writes_them() {
        assert_eq!(
            &error_reply(libc::ETIMEDOUT)[..],
            b"SERVER_ERROR Connection timed out\r\n"
        );
        assert_eq!(&error_reply(0)[..], b"SERVER_ERROR unknown\r\n");
    }
}
