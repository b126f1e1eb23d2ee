// @generated from shared/reference/twemproxy.md §4.1 by hand-run script; edit with care.
use super::{Arity, CommandSpec, Special};
/// Every command nutcracker 0.5.0 recognises, sorted by name.
pub(crate) static COMMANDS: [CommandSpec; 137] = [
    CommandSpec {
        name: "append",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "auth",
        arity: Arity::Arg0,
        special: Special::Auth,
    },
    CommandSpec {
        name: "bitcount",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "bitfield",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "bitpos",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "command",
        arity: Arity::Argz,
        special: Special::Placeholder,
    },
    CommandSpec {
        name: "copy",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "decr",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "decrby",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "del",
        arity: Arity::ArgX,
        special: Special::Del,
    },
    CommandSpec {
        name: "dump",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "eval",
        arity: Arity::ArgEval,
        special: Special::None,
    },
    CommandSpec {
        name: "evalsha",
        arity: Arity::ArgEval,
        special: Special::None,
    },
    CommandSpec {
        name: "exists",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "expire",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "expireat",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "geoadd",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "geodist",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "geohash",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "geopos",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "georadius",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "georadiusbymember",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "geosearch",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "geosearchstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "get",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "getbit",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "getdel",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "getex",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "getrange",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "getset",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "hdel",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hexists",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "hget",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "hgetall",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "hincrby",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "hincrbyfloat",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "hkeys",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "hlen",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "hmget",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hmset",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hrandfield",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hscan",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hset",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "hsetnx",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "hstrlen",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "hvals",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "incr",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "incrby",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "incrbyfloat",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "lindex",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "linsert",
        arity: Arity::Arg3,
        special: Special::None,
    },
    CommandSpec {
        name: "llen",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "lmove",
        arity: Arity::Arg3,
        special: Special::None,
    },
    CommandSpec {
        name: "lolwut",
        arity: Arity::NoKey,
        special: Special::Placeholder,
    },
    CommandSpec {
        name: "lpop",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "lpos",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "lpush",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "lpushx",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "lrange",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "lrem",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "lset",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "ltrim",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "mget",
        arity: Arity::ArgX,
        special: Special::Mget,
    },
    CommandSpec {
        name: "move",
        arity: Arity::Arg1,
        special: Special::Close,
    },
    CommandSpec {
        name: "mset",
        arity: Arity::ArgKvx,
        special: Special::Mset,
    },
    CommandSpec {
        name: "persist",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "pexpire",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "pexpireat",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "pfadd",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "pfcount",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "pfmerge",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "ping",
        arity: Arity::Argz,
        special: Special::Ping,
    },
    CommandSpec {
        name: "psetex",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "pttl",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "quit",
        arity: Arity::Argz,
        special: Special::Quit,
    },
    CommandSpec {
        name: "restore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "rpop",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "rpoplpush",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "rpush",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "rpushx",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sadd",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "scard",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "sdiff",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sdiffstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "set",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "setbit",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "setex",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "setnx",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "setrange",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "sinter",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sinterstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sismember",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "smembers",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "smismember",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "smove",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "sort",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "spop",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "srandmember",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "srem",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sscan",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "strlen",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "sunion",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "sunionstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "touch",
        arity: Arity::ArgX,
        special: Special::Touch,
    },
    CommandSpec {
        name: "ttl",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "type",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "unlink",
        arity: Arity::ArgX,
        special: Special::Unlink,
    },
    CommandSpec {
        name: "zadd",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zcard",
        arity: Arity::Arg0,
        special: Special::None,
    },
    CommandSpec {
        name: "zcount",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zdiff",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zdiffstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zincrby",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zinter",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zinterstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zlexcount",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zmscore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zpopmax",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zpopmin",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrandmember",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrange",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrangebylex",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrangebyscore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrangestore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrank",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "zrem",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zremrangebylex",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zremrangebyrank",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zremrangebyscore",
        arity: Arity::Arg2,
        special: Special::None,
    },
    CommandSpec {
        name: "zrevrange",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrevrangebylex",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrevrangebyscore",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zrevrank",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "zscan",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zscore",
        arity: Arity::Arg1,
        special: Special::None,
    },
    CommandSpec {
        name: "zunion",
        arity: Arity::ArgN,
        special: Special::None,
    },
    CommandSpec {
        name: "zunionstore",
        arity: Arity::ArgN,
        special: Special::None,
    },
];
