//! The protocol seam: everything the proxy core needs to know about a wire
//! format, behind one per-pool value. The client, server and reply queue
//! call the dialect to parse a request into a protocol-neutral [`Action`],
//! split and coalesce multi-key requests, scan and classify replies, build
//! error replies and the connect-time handshake; they match nothing of the
//! wire format themselves. `redis` is RESP2 as nutcracker speaks it;
//! `memcache` is memcached ASCII and meta (`redis: false` pools).
//!
//! One `match` per call picks the protocol (pingora's `enum Session`
//! pattern): no trait objects, and a reload may switch a pool's protocol.

pub(crate) mod cluster;
pub(crate) mod memcache;
pub(crate) mod redis;

use std::ops::Range;

use bytes::Bytes;
use nc_protocol::resp::ParseError;
use nc_protocol::Limits;

use crate::errno::Errno;

/// A pool's protocol and its per-pool settings.
pub(crate) enum Dialect {
    Redis(redis::Redis),
    Memcache,
}

/// Which protocol, without settings: what a client's reply queue needs to
/// build error replies and coalesce fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Redis,
    Memcache,
}

/// One complete request at the head of a client's buffer, and what to do
/// with it. Ranges index the request's own bytes.
pub(crate) struct Parsed {
    pub(crate) len: usize,
    pub(crate) action: Action,
    /// A byte the proxy blanks to a space before forwarding (a meta
    /// command's `q` flag), offset from the request's start.
    pub(crate) blank: Option<usize>,
}

/// What the client does with a request, whatever the protocol.
pub(crate) enum Action {
    /// Forward as received to the server of `key`; one reply. `read_only`
    /// (set only for Redis Cluster pools) lets replica reads take it.
    Forward { key: Range<usize>, read_only: bool },
    /// Forward to the server of `key`; the server sends no reply (memcache
    /// `noreply`), so the client gets none either.
    ForwardNoReply { key: Range<usize> },
    /// A memcache meta command: `key` is base64 when `base64`; with
    /// `quiet`, the reply quiet mode suppresses is dropped.
    ForwardMeta {
        key: Range<usize>,
        base64: bool,
        quiet: Option<Quiet>,
    },
    /// Every server of the pool gets it; one merged reply, or none.
    Broadcast { noreply: bool },
    /// The proxy's own statistics (memcache `stats`).
    Stats,
    /// Forward to the server of the pool's placeholder key (commands with no
    /// key, such as COMMAND or LOLWUT).
    ForwardPlaceholder,
    /// Split per server and merge the replies (multi-key requests).
    Split(Split),
    /// A password check answered locally (Redis AUTH).
    Auth { password: Range<usize> },
    /// Answered locally with this reply (PING).
    Local(Bytes),
    /// No reply; the connection closes once earlier replies are out.
    Quit,
    /// Parsed but not proxied: the connection is closed (nutcracker's
    /// behaviour for unsupported commands).
    Unsupported(&'static str),
    /// Redis Cluster pools: MULTI, EXEC and DISCARD. The client queues the
    /// transaction and sends it whole, to the node of its one slot, at EXEC.
    Transaction(TransactionStep),
}

/// A transaction command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransactionStep {
    Multi,
    Exec,
    Discard,
}

/// A request to split per server: its keys (or key/value groups) and how
/// their replies merge.
pub(crate) struct Split {
    pub(crate) kind: FragmentKind,
    /// The command name re-emitted in each fragment.
    pub(crate) name: &'static str,
    /// The arguments in the request's bytes (Redis: from the first key to
    /// the end; memcache: the key list).
    pub(crate) args: Range<usize>,
    /// An argument every fragment repeats before the keys (gat's exptime).
    pub(crate) prefix: Option<Range<usize>>,
    pub(crate) nkeys: usize,
    /// Redis Cluster pools: the command only reads.
    pub(crate) read_only: bool,
}

/// Which replies memcache quiet mode suppresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// mg: a miss (`EN`).
    Miss,
    /// ms, md, ma, me: success (`HD`).
    Success,
}

/// How the fragments of one request merge into the client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentKind {
    /// Redis MGET: arrays merged back into key order.
    Mget,
    /// Redis DEL, UNLINK, TOUCH: integers summed.
    Sum,
    /// Redis MSET: status replies dropped, one `+OK`.
    Mset,
    /// memcache get/gets/gat/gats: VALUE blocks merged, one `END`.
    Retrieval,
    /// memcache flush_all, verbosity: the first error, else the first reply.
    Broadcast,
}

/// The per-fragment state the reply queue keeps for one split request.
pub(crate) struct Fragments {
    pub(crate) kind: FragmentKind,
    /// Per fragment: its reply, once in.
    pub(crate) replies: Vec<Option<Bytes>>,
    /// For each key in request order: (fragment, position in it).
    pub(crate) key_order: Vec<(u32, u32)>,
    /// The first network-level error of any fragment.
    pub(crate) errno: Option<Errno>,
}

impl Fragments {
    pub(crate) fn new(kind: FragmentKind, nfrags: usize, key_order: Vec<(u32, u32)>) -> Fragments {
        Fragments {
            kind,
            replies: vec![None; nfrags],
            key_order,
            errno: None,
        }
    }
}

/// The client's reply to a split request, built from its fragments.
pub(crate) struct Coalesced {
    pub(crate) reply: Bytes,
    /// Close the client after this reply (nutcracker's post_coalesce).
    pub(crate) close_after: bool,
    /// The reply is an error the proxy made (counts as `forward_error`).
    pub(crate) synthesized_error: bool,
}

/// What a server's reply is, as far as the connection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyClass {
    Ok,
    Error,
    /// The server is failing (Redis -OOM, -BUSY, -LOADING): nutcracker
    /// closes the connection and fails everything queued on it.
    TransientFailure,
    /// The reply that ends a noreply fence (memcache `VERSION`).
    Fence,
    /// A Redis Cluster node did not serve the request (MOVED, ASK, ...).
    Cluster(cluster::ClusterError),
}

/// One complete reply at the head of a server's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScannedReply {
    pub(crate) len: usize,
    pub(crate) class: ReplyClass,
}

/// A server connection's reply scanner, resumable across reads.
pub(crate) enum ReplyScanner {
    Resp(nc_protocol::resp::ReplyScanner),
    /// RESP from a Redis Cluster node: cluster errors are classified too.
    RespCluster(nc_protocol::resp::ReplyScanner),
    Memcache(nc_protocol::memcache::ReplyScanner),
}

impl ReplyScanner {
    /// The next complete reply in `buf`, or `Incomplete`.
    #[inline]
    pub(crate) fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<ScannedReply, ParseError> {
        match self {
            ReplyScanner::Resp(scanner) => redis::scan_reply(scanner, buf, limits, false),
            ReplyScanner::RespCluster(scanner) => redis::scan_reply(scanner, buf, limits, true),
            ReplyScanner::Memcache(scanner) => memcache::scan_reply(scanner, buf, limits),
        }
    }
}

/// A request the proxy itself sends on connect, and what to call it in logs.
pub(crate) struct HandshakeRequest {
    pub(crate) data: Bytes,
    pub(crate) what: &'static str,
}

impl Dialect {
    /// The dialect of a pool.
    pub(crate) fn for_pool(pool: &nc_config::Pool) -> Dialect {
        match pool.redis {
            true => Dialect::Redis(redis::Redis::for_pool(pool)),
            false => Dialect::Memcache,
        }
    }

    pub(crate) fn wire(&self) -> Wire {
        match self {
            Dialect::Redis(_) => Wire::Redis,
            Dialect::Memcache => Wire::Memcache,
        }
    }

    /// Parses the request at the head of `buf`.
    #[inline]
    pub(crate) fn parse_request(&self, buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
        match self {
            Dialect::Redis(redis) => redis::parse_request(buf, limits, redis.cluster),
            Dialect::Memcache => memcache::parse_request(buf, limits),
        }
    }

    /// Whether a new client must authenticate before anything is forwarded.
    pub(crate) fn needs_auth(&self) -> bool {
        match self {
            Dialect::Redis(redis) => redis.auth.is_some(),
            Dialect::Memcache => false,
        }
    }

    /// Checks a client's password; returns the reply and whether the
    /// client is now authenticated (None: as before).
    pub(crate) fn auth(&self, password: &[u8]) -> (Bytes, Option<bool>) {
        match self {
            Dialect::Redis(redis) => redis.auth(password),
            Dialect::Memcache => (Bytes::new(), None),
        }
    }

    /// The reply to anything but AUTH or QUIT before authentication.
    pub(crate) fn noauth_reply(&self) -> Bytes {
        match self {
            Dialect::Redis(_) => redis::NOAUTH.clone(),
            Dialect::Memcache => Bytes::new(),
        }
    }

    /// A fresh reply scanner for a server connection.
    pub(crate) fn reply_scanner(&self) -> ReplyScanner {
        match self {
            Dialect::Redis(redis) if redis.cluster => ReplyScanner::RespCluster(Default::default()),
            Dialect::Redis(_) => ReplyScanner::Resp(Default::default()),
            Dialect::Memcache => ReplyScanner::Memcache(Default::default()),
        }
    }

    /// The class of a complete reply that refused a transaction's queued
    /// command (a cluster error, or an ordinary error).
    pub(crate) fn classify_refusal(&self, reply: &[u8]) -> ReplyClass {
        match cluster::classify(reply) {
            Some(error) => ReplyClass::Cluster(error),
            None => ReplyClass::Error,
        }
    }

    /// What a server connection sends first (Redis: AUTH, then SELECT).
    pub(crate) fn handshake(&self) -> Vec<HandshakeRequest> {
        match self {
            Dialect::Redis(redis) => redis.handshake(),
            Dialect::Memcache => Vec::new(),
        }
    }
}

impl Wire {
    /// The reply for a request that failed with `errno` (nutcracker's
    /// msg_get_error).
    pub(crate) fn error_reply(self, errno: Errno) -> Bytes {
        match self {
            Wire::Redis => crate::errno::redis_error_reply(errno),
            Wire::Memcache => memcache::error_reply(errno),
        }
    }

    /// Splits `bytes` (one request) per server. `route` gives a key's
    /// server, or None when no server is live (then nothing is split).
    pub(crate) fn split(
        self,
        split: &Split,
        bytes: &Bytes,
        route: impl FnMut(&[u8]) -> Option<usize>,
    ) -> Option<SplitRequest> {
        match self {
            Wire::Redis => redis::split(split, bytes, route),
            Wire::Memcache => memcache::split(split, bytes, route),
        }
    }

    /// Merges the fragments' replies into the client's reply.
    pub(crate) fn coalesce(self, frags: &Fragments, limits: &Limits) -> Coalesced {
        match self {
            Wire::Redis => redis::coalesce(frags, limits),
            Wire::Memcache => memcache::coalesce(frags, limits),
        }
    }

    /// The same request for each of `servers` servers (a broadcast).
    pub(crate) fn broadcast(self, bytes: &Bytes, servers: usize) -> SplitRequest {
        memcache::broadcast(bytes, servers)
    }

    /// Whether quiet mode drops this reply.
    pub(crate) fn suppressed(self, quiet: Quiet, reply: &[u8]) -> bool {
        match self {
            Wire::Redis => false,
            Wire::Memcache => memcache::suppressed(quiet, reply),
        }
    }

    /// A meta command's key as hashed (base64 keys decoded into `scratch`).
    pub(crate) fn routing_key<'a>(
        self,
        key: &'a [u8],
        base64: bool,
        scratch: &'a mut [u8; 256],
    ) -> &'a [u8] {
        memcache::routing_key(key, base64, scratch)
    }

    /// The request that fences a run of no-reply requests, if the protocol
    /// has no-reply requests.
    pub(crate) fn fence(self) -> Option<Bytes> {
        match self {
            Wire::Redis => None,
            Wire::Memcache => Some(memcache::FENCE.clone()),
        }
    }
}

/// A request split per server: the fragments in order of first use, and
/// the state their replies are merged with.
pub(crate) struct SplitRequest {
    pub(crate) fragments: Vec<(usize, Bytes)>,
    pub(crate) state: Fragments,
}
