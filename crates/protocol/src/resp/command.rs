//! The command table: which commands nutcracker 0.5.0 proxies, their arity
//! class (which also says where the keys are) and any special handling.

use super::table::COMMANDS;

/// nutcracker's argument classes (`redis_argz`, `redis_arg0`, ...). The first
/// key, when there is one, is always the first argument after the name,
/// except for EVAL/EVALSHA where it follows `script numkeys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// The name alone (PING, QUIT, COMMAND).
    Argz,
    /// key
    Arg0,
    /// key + 1 argument
    Arg1,
    /// key + 2 arguments
    Arg2,
    /// key + 3 arguments
    Arg3,
    /// key + any number of arguments
    ArgN,
    /// one or more keys (fragmented across servers)
    ArgX,
    /// key value pairs (fragmented across servers)
    ArgKvx,
    /// script numkeys key [key ...] [arg ...], numkeys >= 1
    ArgEval,
    /// any arguments, no key (routed by a placeholder key)
    NoKey,
}

/// What the proxy does beyond routing by the first key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    /// Answered locally with `+PONG`.
    Ping,
    /// No reply; the connection closes after earlier replies.
    Quit,
    /// Checked against `redis_auth` locally, never forwarded.
    Auth,
    /// Parsed but not forwardable: the connection is closed (nutcracker: MOVE).
    Close,
    /// Routed by the key `"placeholder"` (COMMAND, LOLWUT).
    Placeholder,
    Mget,
    Del,
    Unlink,
    Touch,
    Mset,
}

/// How a multi-key request is split per server and its replies merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentKind {
    /// Arrays merged back into key order.
    Mget,
    /// Integers summed (DEL, UNLINK, TOUCH).
    Sum,
    /// Status replies dropped, one `+OK`.
    Mset,
}

/// One row of the command table.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase name, as re-emitted in fragments.
    pub name: &'static str,
    pub arity: Arity,
    pub special: Special,
}

impl CommandSpec {
    /// How requests of this command fragment when they carry more than one key.
    pub fn fragment_kind(&self) -> Option<FragmentKind> {
        match self.special {
            Special::Mget => Some(FragmentKind::Mget),
            Special::Del | Special::Unlink | Special::Touch => Some(FragmentKind::Sum),
            Special::Mset => Some(FragmentKind::Mset),
            _ => None,
        }
    }

    /// Whether the command only reads (Redis's `readonly` flag): what a
    /// Redis Cluster replica serves after READONLY.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self.name,
            "bitcount"
                | "bitpos"
                | "dump"
                | "exists"
                | "geodist"
                | "geohash"
                | "geopos"
                | "get"
                | "getbit"
                | "getrange"
                | "hexists"
                | "hget"
                | "hgetall"
                | "hkeys"
                | "hlen"
                | "hmget"
                | "hrandfield"
                | "hscan"
                | "hstrlen"
                | "hvals"
                | "lindex"
                | "llen"
                | "lpos"
                | "lrange"
                | "mget"
                | "pfcount"
                | "pttl"
                | "scard"
                | "sdiff"
                | "sinter"
                | "sismember"
                | "smembers"
                | "smismember"
                | "srandmember"
                | "sscan"
                | "strlen"
                | "sunion"
                | "touch"
                | "ttl"
                | "type"
                | "zcard"
                | "zcount"
                | "zdiff"
                | "zinter"
                | "zlexcount"
                | "zmscore"
                | "zrandmember"
                | "zrange"
                | "zrangebylex"
                | "zrangebyscore"
                | "zrank"
                | "zrevrange"
                | "zrevrangebylex"
                | "zrevrangebyscore"
                | "zrevrank"
                | "zscan"
                | "zscore"
                | "zunion"
        )
    }

    /// Every command in the table, sorted by name.
    pub fn all() -> &'static [CommandSpec] {
        &COMMANDS
    }
}

/// The longest command name in the table; longer names cannot match.
const MAX_NAME_LEN: usize = 17;

/// A name packed big-endian into 24 zero-padded bytes: comparing packed keys
/// as integers orders them like the names (no name contains a NUL), so a
/// lookup is a binary search over integers instead of memcmp calls.
type Packed = [u64; 3];

const fn pack(name: &[u8]) -> Packed {
    let mut bytes = [0u8; 24];
    let mut i = 0;
    while i < name.len() && i < 24 {
        bytes[i] = name[i].to_ascii_lowercase();
        i += 1;
    }
    let mut words = [0u64; 3];
    let mut w = 0;
    while w < 3 {
        let mut k = 0;
        while k < 8 {
            words[w] = (words[w] << 8) | bytes[w * 8 + k] as u64;
            k += 1;
        }
        w += 1;
    }
    words
}

const fn pack_table() -> [Packed; COMMANDS.len()] {
    let mut out = [[0u64; 3]; COMMANDS.len()];
    let mut i = 0;
    while i < COMMANDS.len() {
        out[i] = pack(COMMANDS[i].name.as_bytes());
        i += 1;
    }
    out
}

/// `COMMANDS`' names, packed, in the same (sorted) order.
static PACKED: [Packed; COMMANDS.len()] = pack_table();

/// Finds a command by name, case-insensitively, without allocating.
#[inline]
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let key = pack(name);
    let spec = &COMMANDS[PACKED.binary_search(&key).ok()?];
    // Zero padding would let "get\0" pack like "get"; lengths tell them apart.
    (spec.name.len() == name.len()).then_some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lowercase() {
        for pair in COMMANDS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for spec in COMMANDS.iter() {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(spec.name.len() <= MAX_NAME_LEN);
        }
    }

    #[test]
    fn packed_keys_keep_the_name_order() {
        for pair in PACKED.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for spec in COMMANDS.iter() {
            assert_eq!(
                lookup(spec.name.to_ascii_uppercase().as_bytes()),
                Some(spec)
            );
        }
        // A NUL cannot make a prefix match a longer name.
        assert!(lookup(b"get\0").is_none());
    }

    #[test]
    fn read_only_commands() {
        let read_only = |n: &str| lookup(n.as_bytes()).unwrap().is_read_only();
        for name in ["get", "mget", "exists", "hgetall", "zrange", "ttl", "sscan"] {
            assert!(read_only(name), "{name}");
        }
        for name in [
            "set", "del", "incr", "eval", "zadd", "getdel", "getex", "sort",
        ] {
            assert!(!read_only(name), "{name}");
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GET").map(|c| c.name), Some("get"));
        assert_eq!(lookup(b"gEt").map(|c| c.arity), Some(Arity::Arg0));
        assert_eq!(
            lookup(b"georadiusbymember").map(|c| c.arity),
            Some(Arity::ArgN)
        );
        assert!(lookup(b"KEYS").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"georadiusbymemberx").is_none());
        assert!(lookup(&[0xff; 3]).is_none());
    }

    #[test]
    fn classes_from_the_reference() {
        let class = |n: &str| lookup(n.as_bytes()).map(|c| c.arity);
        assert_eq!(class("ping"), Some(Arity::Argz));
        assert_eq!(class("exists"), Some(Arity::ArgN));
        assert_eq!(class("set"), Some(Arity::ArgN));
        assert_eq!(class("mset"), Some(Arity::ArgKvx));
        assert_eq!(class("evalsha"), Some(Arity::ArgEval));
        assert_eq!(class("lolwut"), Some(Arity::NoKey));
        assert_eq!(
            lookup(b"unlink").and_then(|c| c.fragment_kind()),
            Some(FragmentKind::Sum)
        );
        assert_eq!(
            lookup(b"mget").and_then(|c| c.fragment_kind()),
            Some(FragmentKind::Mget)
        );
        assert_eq!(lookup(b"hmget").and_then(|c| c.fragment_kind()), None);
        for unsupported in [
            "keys",
            "info",
            "select",
            "multi",
            "subscribe",
            "scan",
            "rename",
            "bitop",
            "blpop",
            "time",
            "flushall",
            "config",
            "hello",
            "client",
            "msetnx",
            "echo",
            "object",
        ] {
            assert!(lookup(unsupported.as_bytes()).is_none(), "{unsupported}");
        }
    }
}
