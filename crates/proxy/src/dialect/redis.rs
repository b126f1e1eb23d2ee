//! Redis (RESP2) as nutcracker proxies it: the command table decides each
//! request's action, MGET/DEL/UNLINK/TOUCH/MSET split per server and merge
//! as nutcracker's redis_fragment and pre/post coalesce do, -OOM/-BUSY/
//! -LOADING replies fail the connection (redis_failure), and a server
//! connection starts with AUTH then SELECT.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use nc_protocol::resp::{self, ArrayElements, ParseError, ReplyKind, Special};
use nc_protocol::Limits;

use super::{
    Action, Coalesced, FragmentKind, Fragments, HandshakeRequest, Parsed, ReplyClass, ScannedReply,
    Split, SplitRequest,
};
use crate::errno::redis_error_reply;

pub(super) static PONG: Bytes = Bytes::from_static(b"+PONG\r\n");
static OK: Bytes = Bytes::from_static(b"+OK\r\n");
pub(super) static NOAUTH: Bytes = Bytes::from_static(b"-NOAUTH Authentication required\r\n");
static AUTH_NOT_SET: Bytes =
    Bytes::from_static(b"-ERR Client sent AUTH, but no password is set\r\n");
static AUTH_INVALID: Bytes = Bytes::from_static(b"-ERR invalid password\r\n");

/// A Redis pool's protocol settings.
pub(crate) struct Redis {
    /// `redis_auth`: checked for clients, sent to servers.
    pub(super) auth: Option<String>,
    /// `redis_db`: selected on every server connection when non-zero.
    db: u32,
    /// A `redis_cluster` pool: cluster errors are classified, EXISTS splits.
    pub(super) cluster: bool,
    /// `cluster_read` is not `master`: every node connection sends READONLY.
    readonly: bool,
}

impl Redis {
    pub(super) fn for_pool(pool: &nc_config::Pool) -> Redis {
        Redis {
            auth: pool.redis_auth.clone(),
            db: pool.redis_db,
            cluster: pool.cluster.is_some(),
            readonly: pool
                .cluster
                .as_ref()
                .is_some_and(|c| c.read != nc_config::ClusterRead::Master),
        }
    }

    /// AUTH is answered locally against `redis_auth`. Without one the
    /// client's state does not change.
    pub(super) fn auth(&self, password: &[u8]) -> (Bytes, Option<bool>) {
        match &self.auth {
            None => (AUTH_NOT_SET.clone(), None),
            Some(expected) if expected.as_bytes() == password => (OK.clone(), Some(true)),
            Some(_) => (AUTH_INVALID.clone(), Some(false)),
        }
    }

    /// AUTH then SELECT at the head of a new connection's queue (nutcracker
    /// queues SELECT first, which fails with NOAUTH: its issue #491).
    pub(super) fn handshake(&self) -> Vec<HandshakeRequest> {
        let mut out = Vec::new();
        if let Some(password) = &self.auth {
            let mut cmd = BytesMut::new();
            resp::encode_command(&mut cmd, b"AUTH", [password.as_bytes()].into_iter());
            out.push(HandshakeRequest {
                data: cmd.freeze(),
                what: "AUTH",
            });
        }
        if self.readonly {
            // On a master READONLY changes nothing; on a replica (also one a
            // failover demoted) it lets reads be served.
            out.push(HandshakeRequest {
                data: super::cluster::READONLY.clone(),
                what: "READONLY",
            });
        }
        if self.db > 0 {
            let mut cmd = BytesMut::new();
            let db = self.db.to_string();
            resp::encode_command(&mut cmd, b"SELECT", [db.as_bytes()].into_iter());
            out.push(HandshakeRequest {
                data: cmd.freeze(),
                what: "SELECT",
            });
        }
        out
    }
}

/// Parses one request and maps its command to an action.
#[inline]
pub(super) fn parse_request(
    buf: &[u8],
    limits: &Limits,
    cluster: bool,
) -> Result<Parsed, ParseError> {
    if cluster {
        if let Some(parsed) = transaction_command(buf)? {
            return Ok(parsed);
        }
    }
    let request = resp::parse_request(buf, limits)?;
    let command = request.command;
    // Static pools never ask: nutcracker has no replicas to read from.
    let read_only = cluster && command.is_read_only();
    let split_kind = match command.fragment_kind() {
        // A cluster serves one slot per command, so EXISTS splits too.
        None if cluster && command.name == "exists" && request.argc > 2 => {
            Some(resp::FragmentKind::Sum)
        }
        kind => kind,
    };
    let nkeys = match split_kind {
        Some(_) if command.name == "exists" => request.argc - 1,
        _ => request.nkeys,
    };
    let action = match command.special {
        Special::Quit => Action::Quit,
        Special::Auth => Action::Auth {
            password: request.key.clone(),
        },
        Special::Ping => Action::Local(PONG.clone()),
        Special::Close => Action::Unsupported(command.name),
        Special::Placeholder => Action::ForwardPlaceholder,
        _ => match split_kind {
            Some(kind) if nkeys > 1 => Action::Split(Split {
                kind: match kind {
                    resp::FragmentKind::Mget => FragmentKind::Mget,
                    resp::FragmentKind::Sum => FragmentKind::Sum,
                    resp::FragmentKind::Mset => FragmentKind::Mset,
                },
                name: command.name,
                args: request.args_start..request.len,
                prefix: None,
                nkeys,
                read_only,
            }),
            _ => Action::Forward {
                key: request.key.clone(),
                read_only,
            },
        },
    };
    Ok(Parsed {
        len: request.len,
        action,
        blank: None,
    })
}

/// MULTI, EXEC and DISCARD (without arguments), which a cluster pool
/// serves and nutcracker's command table does not have; `Ok(None)` for any
/// other request. A prefix of one of them is `Incomplete`, so a command cut
/// at any byte is not taken for an unknown one.
fn transaction_command(buf: &[u8]) -> Result<Option<Parsed>, ParseError> {
    use super::TransactionStep;
    const COMMANDS: [(&[u8], TransactionStep); 3] = [
        (b"*1\r\n$5\r\nmulti\r\n", TransactionStep::Multi),
        (b"*1\r\n$4\r\nexec\r\n", TransactionStep::Exec),
        (b"*1\r\n$7\r\ndiscard\r\n", TransactionStep::Discard),
    ];
    for (wire, step) in COMMANDS {
        let n = buf.len().min(wire.len());
        if buf[..n].eq_ignore_ascii_case(&wire[..n]) {
            if n < wire.len() {
                return Err(ParseError::Incomplete);
            }
            return Ok(Some(Parsed {
                len: wire.len(),
                action: Action::Transaction(step),
                blank: None,
            }));
        }
    }
    Ok(None)
}

/// Splits a multi-key request into one request per server, keys in their
/// original order (nutcracker's redis_fragment).
pub(super) fn split(
    split: &Split,
    bytes: &Bytes,
    mut route: impl FnMut(&[u8]) -> Option<usize>,
) -> Option<SplitRequest> {
    let step = if split.kind == FragmentKind::Mset {
        2
    } else {
        1
    };
    let args: Vec<Range<usize>> = resp::ArgIter::new(bytes, split.args.start).collect();
    // (server, argument spans) per fragment, in order of first use.
    let mut frags: Vec<(usize, Vec<Range<usize>>)> = Vec::new();
    let mut key_order = Vec::with_capacity(split.nkeys);
    for group in args.chunks(step) {
        let server = route(&bytes[group[0].clone()])?;
        let frag = match frags.iter().position(|(s, _)| *s == server) {
            Some(i) => i,
            None => {
                frags.push((server, Vec::new()));
                frags.len() - 1
            }
        };
        let keys = &mut frags[frag].1;
        key_order.push((frag as u32, (keys.len() / step) as u32));
        keys.extend(group.iter().cloned());
    }
    let state = Fragments::new(split.kind, frags.len(), key_order);
    let fragments = frags
        .into_iter()
        .map(|(server, spans)| {
            let mut out =
                BytesMut::with_capacity(spans.iter().map(|s| s.len() + 16).sum::<usize>() + 16);
            resp::encode_command(
                &mut out,
                split.name.as_bytes(),
                spans.iter().map(|s| &bytes[s.clone()]),
            );
            (server, out.freeze())
        })
        .collect();
    Some(SplitRequest { fragments, state })
}

/// nutcracker's pre/post coalesce: builds the client's reply from the
/// fragments' replies.
pub(super) fn coalesce(frags: &Fragments, limits: &Limits) -> Coalesced {
    if let Some(errno) = frags.errno {
        return Coalesced {
            reply: redis_error_reply(errno),
            // An MGET fragment that failed at the network level closes the
            // client after the error, as nutcracker's post_coalesce does.
            close_after: frags.kind == FragmentKind::Mget,
            synthesized_error: true,
        };
    }
    let invalid = || Coalesced {
        reply: redis_error_reply(libc::EINVAL),
        close_after: false,
        synthesized_error: true,
    };
    let mut out = BytesMut::new();
    match frags.kind {
        FragmentKind::Mget => {
            // Element spans of each fragment's array reply.
            let mut elements: Vec<(Bytes, Vec<Range<usize>>)> =
                Vec::with_capacity(frags.replies.len());
            for reply in &frags.replies {
                let Some(reply) = reply else { return invalid() };
                let Ok(iter) = ArrayElements::new(reply, limits) else {
                    return invalid();
                };
                elements.push((reply.clone(), iter.collect()));
            }
            out.reserve(
                frags
                    .replies
                    .iter()
                    .flatten()
                    .map(Bytes::len)
                    .sum::<usize>()
                    + 16,
            );
            resp::encode_array_header(&mut out, frags.key_order.len());
            for &(frag, pos) in &frags.key_order {
                let (reply, spans) = &elements[frag as usize];
                let Some(span) = spans.get(pos as usize) else {
                    return invalid();
                };
                out.put_slice(&reply[span.clone()]);
            }
        }
        FragmentKind::Sum => {
            // nutcracker sums 32-bit values and prints the total as a signed
            // int (`:%d`); only a misbehaving server gets near the wrap.
            let mut sum: u32 = 0;
            for reply in &frags.replies {
                let Some(reply) = reply else { return invalid() };
                match resp::parse_reply(reply, limits) {
                    Ok(r) => match r.kind {
                        ReplyKind::Integer(n) => sum = sum.wrapping_add(n),
                        _ => return invalid(),
                    },
                    Err(_) => return invalid(),
                }
            }
            resp::encode_integer(&mut out, i64::from(sum as i32));
        }
        FragmentKind::Mset => {
            for reply in &frags.replies {
                match reply.as_ref().map(|r| resp::parse_reply(r, limits)) {
                    Some(Ok(r)) if r.kind == ReplyKind::Status => {}
                    _ => return invalid(),
                }
            }
            out.put_slice(b"+OK\r\n");
        }
        // memcache kinds never reach a Redis pool.
        FragmentKind::Retrieval | FragmentKind::Broadcast => return invalid(),
    }
    Coalesced {
        reply: out.freeze(),
        close_after: false,
        synthesized_error: false,
    }
}

/// Scans one reply and classifies it.
#[inline]
pub(super) fn scan_reply(
    scanner: &mut resp::ReplyScanner,
    buf: &[u8],
    limits: &Limits,
    cluster: bool,
) -> Result<ScannedReply, ParseError> {
    let reply = scanner.scan(buf, limits)?;
    let class = match reply.kind {
        ReplyKind::Error if cluster => match super::cluster::classify(&buf[..reply.len]) {
            Some(error) => ReplyClass::Cluster(error),
            None if is_transient_failure(&buf[..reply.len]) => ReplyClass::TransientFailure,
            None => ReplyClass::Error,
        },
        ReplyKind::Error if is_transient_failure(&buf[..reply.len]) => ReplyClass::TransientFailure,
        ReplyKind::Error => ReplyClass::Error,
        _ => ReplyClass::Ok,
    };
    Ok(ScannedReply {
        len: reply.len,
        class,
    })
}

/// `-OOM`, `-BUSY` and `-LOADING` (nutcracker's redis_failure). nutcracker
/// types an error by its whole first word, so `-BUSYKEY` (RESTORE onto an
/// existing key) or `-OOMx` is an ordinary error that is passed through.
fn is_transient_failure(reply: &[u8]) -> bool {
    let word_end = reply
        .iter()
        .position(|&c| c == b' ' || c == b'\r')
        .unwrap_or(reply.len());
    matches!(&reply[..word_end], b"-OOM" | b"-BUSY" | b"-LOADING")
}

#[cfg(test)]
mod tests {
    use super::is_transient_failure;

    #[test]
    fn transient_failures_are_matched_by_their_whole_first_word() {
        // Observed against nutcracker 0.5.0 with a canned-reply backend.
        for failure in [
            &b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"[..],
            b"-OOM\r\n",
            b"-BUSY Redis is busy running a script.\r\n",
            b"-BUSY\r\n",
            b"-LOADING Redis is loading the dataset in memory\r\n",
            b"-LOADING\r\n",
        ] {
            assert!(is_transient_failure(failure), "{failure:?}");
        }
        for passed_through in [
            &b"-BUSYKEY Target key name already exists.\r\n"[..],
            b"-BUSYGROUP Consumer Group name already exists\r\n",
            b"-OOMx y\r\n",
            b"-LOADINGX\r\n",
            b"-busy lower case\r\n",
            b"-ERR BUSY\r\n",
        ] {
            assert!(!is_transient_failure(passed_through), "{passed_through:?}");
        }
    }
}
