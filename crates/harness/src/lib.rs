//! nc-harness: real backend and proxy processes for tests and benchmarks.
//!
//! Tests of several crates and the `ncbench` load generator use this crate to
//! run the real parts DESIGN.md asks for: `redis-server`, `memcached`, the
//! compatibility oracle `nutcracker` and our own `ncproxy`, each on free
//! loopback ports, each killed when its handle is dropped. Everything here is
//! std-only blocking code with explicit timeouts, so a test that uses it is
//! deterministic and always stops by itself.
//!
//! # Layout
//!
//! - [`port`]: free loopback port allocation. Ports come from outside the
//!   kernel's ephemeral range, are probed with a real `bind(127.0.0.1:P)`, and
//!   are reserved both process-wide (a set of handed-out ports) and across
//!   processes (an `flock`ed file per port under the temp dir), so parallel
//!   test threads and parallel test binaries never receive the same port.
//! - [`process`]: the children. [`RedisServer`], [`Memcached`] and
//!   [`ProxyProcess`] (kind [`ProxyKind::Nutcracker`] or
//!   [`ProxyKind::Ncproxy`], started through [`Nutcracker`] / [`Ncproxy`]).
//!   A start waits (bounded) until the child answers, retries with a new port
//!   when the child failed to bind, and fails with the child's log otherwise.
//!   Drop sends SIGKILL and reaps the child. Children also get
//!   `PR_SET_PDEATHSIG`, so they die with the harness process even if it is
//!   killed without unwinding.
//! - [`cluster`]: [`RedisCluster`], a real local Redis Cluster (masters and
//!   replicas, each node's client and bus port leased) started with
//!   `redis-cli --cluster create`, plus the topology changes tests need:
//!   reshard (blocking or in the background), kill/restart, failover waits,
//!   add-node + rebalance and single-slot migration steps for ASK/TRYAGAIN.
//! - [`raw`]: [`RawConn`], a tiny blocking TCP/unix client that sends raw bytes
//!   and reads replies with deadlines, plus the RESP helpers [`resp_cmd`],
//!   [`parse_reply`] / [`Reply`] and byte-diff helpers for readable failures.
//! - [`conf`]: [`PoolConfig`] / [`ServerSpec`], a nutcracker YAML renderer.
//! - [`tls`]: [`TestPki`] (a CA and certificates made at run time) and
//!   [`TlsConn`], a blocking TLS client; [`RedisServer::start_tls`] adds a
//!   `--tls-port` to a redis-server.
//! - [`error`]: the crate's [`Error`] type.
//!
//! # Binaries
//!
//! A missing binary is an error ([`Error::BinaryNotFound`]) whose message says
//! how to install it; tests `expect()` it and so fail loudly instead of being
//! skipped. Lookup order: an environment variable (`REDIS_SERVER_BIN`,
//! `REDIS_CLI_BIN`, `MEMCACHED_BIN`, `NUTCRACKER_BIN`), then `PATH`, then the
//! Debian locations (`/usr/bin/redis-server`, `/usr/bin/redis-cli`,
//! `/usr/bin/memcached`, `/usr/sbin/nutcracker`).
//! [`ncproxy_bin`] lets the `NCPROXY_BIN` variable replace the ncproxy binary
//! under test (point it at nutcracker to validate a test against the oracle).
//!
//! # Example
//!
//! ```no_run
//! use nc_harness::{free_port, resp_cmd, Nutcracker, PoolConfig, RedisServer};
//! use std::time::Duration;
//!
//! let r1 = RedisServer::start().unwrap();
//! let r2 = RedisServer::start().unwrap();
//! let pool = PoolConfig::redis("alpha", free_port().unwrap())
//!     .server(r1.addr(), 1, Some("s1"))
//!     .server(r2.addr(), 1, Some("s2"));
//! let proxy = Nutcracker::start(&pool.render()).unwrap();
//! let mut conn = proxy.connect().unwrap();
//! conn.send(&resp_cmd(&[b"SET", b"k", b"v"])).unwrap();
//! assert_eq!(conn.read_exact_reply_bytes(Duration::from_secs(5)).unwrap(), b"+OK\r\n");
//! ```

pub mod cluster;
pub mod conf;
pub mod error;
pub mod memcache;
pub mod port;
pub mod process;
pub mod raw;
pub mod rng;
pub mod tls;

pub use cluster::{ClusterOptions, RedisCluster, ReshardHandle, CLUSTER_SLOTS};
pub use conf::{render_config, PoolConfig, ServerSpec};
pub use error::Error;
pub use port::{free_port, lease_port, PortLease};
pub use process::{
    find_binary, ncproxy_bin, ListenAddr, Memcached, Ncproxy, Nutcracker, ProxyKind, ProxyProcess,
    RedisServer,
};
pub use raw::{
    count_replies, diff_bytes, escape_bytes, parse_reply, reply_len, resp_cmd, Fill, RawConn,
    Reply, RespError,
};
pub use rng::SplitMix64;
pub use tls::{TestPki, TlsConn};
