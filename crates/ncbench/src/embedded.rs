//! An in-process RESP backend for machines without `redis-server`.
//!
//! It speaks enough of Redis for ncbench's workload and for proxies in front
//! of it: GET, SET, MGET, MSET, DEL, EXISTS, INCR, PING, ECHO, SELECT, AUTH,
//! FLUSHALL/FLUSHDB, DBSIZE, COMMAND, INFO, QUIT. Each backend is its own
//! keyspace. All backends run on one thread with a current-thread runtime:
//! this is a fallback so `ncbench run` works anywhere, not a Redis replacement,
//! and runs on it are announced as such. The thread pins itself to
//! `[placement] backends` when that is set.
use crate::affinity::{self, CpuList};
use crate::error::{BenchError, Result};
use crate::resp::{self, Reply};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

type Store = Rc<RefCell<HashMap<Vec<u8>, Vec<u8>>>>;

/// Running embedded backends; dropped = stopped.
pub struct EmbeddedBackends {
    pub addrs: Vec<SocketAddr>,
    /// The CPUs the backend thread may run on, as it read them at its start.
    pub cpus_allowed: String,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackends")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Drop for EmbeddedBackends {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `count` embedded backends on free loopback ports, on one thread
/// pinned to `cpus` when given.
pub fn start(count: usize, cpus: Option<&CpuList>) -> Result<EmbeddedBackends> {
    let mut listeners = Vec::with_capacity(count);
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| BenchError::setup(format!("embedded backend: cannot bind: {e}")))?;
        l.set_nonblocking(true)
            .map_err(|e| BenchError::setup(e.to_string()))?;
        addrs.push(
            l.local_addr()
                .map_err(|e| BenchError::setup(e.to_string()))?,
        );
        listeners.push(l);
    }
    let stop = Arc::new(Notify::new());
    let stop2 = stop.clone();
    let cpus = cpus.cloned();
    let (started_tx, started_rx) =
        std::sync::mpsc::channel::<std::result::Result<String, String>>();
    let thread = std::thread::Builder::new()
        .name("ncbench-embedded".into())
        .spawn(move || {
            if let Some(c) = &cpus {
                if let Err(e) = affinity::pin_current_thread(c) {
                    let _ = started_tx.send(Err(format!("cannot pin to CPUs {c}: {e}")));
                    return;
                }
            }
            let _ = started_tx.send(Ok(affinity::cpus_allowed_of_this_thread()));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the embedded backend");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                for l in listeners {
                    let store: Store = Rc::new(RefCell::new(HashMap::new()));
                    let l = tokio::net::TcpListener::from_std(l).expect("register listener");
                    tokio::task::spawn_local(async move {
                        while let Ok((s, _)) = l.accept().await {
                            let _ = s.set_nodelay(true);
                            tokio::task::spawn_local(serve(s, store.clone()));
                        }
                    });
                }
                stop2.notified().await;
            });
        })
        .map_err(|e| BenchError::setup(format!("embedded backend: {e}")))?;
    let cpus_allowed = started_rx
        .recv()
        .unwrap_or_else(|_| Err("the backend thread ended before it started".into()))
        .map_err(|e| BenchError::setup(format!("embedded backend: {e}")))?;
    Ok(EmbeddedBackends {
        addrs,
        cpus_allowed,
        stop,
        thread: Some(thread),
    })
}

async fn serve(mut s: tokio::net::TcpStream, store: Store) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = match s.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        end += n;
        let mut quit = false;
        loop {
            let data = &buf[start..end];
            if data.is_empty() {
                break;
            }
            if data[0] != b'*' {
                // Inline command: one line, words separated by spaces.
                let Some(nl) = memchr::memchr(b'\n', data) else {
                    break;
                };
                let line = data[..nl].strip_suffix(b"\r").unwrap_or(&data[..nl]);
                let args: Vec<&[u8]> = line
                    .split(|&c| c == b' ')
                    .filter(|a| !a.is_empty())
                    .collect();
                if !args.is_empty() {
                    quit |= execute(&args, &store, &mut out);
                }
                start += nl + 1;
                continue;
            }
            match resp::parse(data) {
                Ok(Some((Reply::Array(Some(a)), used))) => {
                    let args: Vec<&[u8]> = a
                        .iter()
                        .map(|r| match r {
                            Reply::Bulk(Some(b)) => b,
                            _ => &b""[..],
                        })
                        .collect();
                    if !args.is_empty() {
                        quit |= execute(&args, &store, &mut out);
                    }
                    start += used;
                }
                Ok(None) => break,
                _ => {
                    out.extend_from_slice(b"-ERR Protocol error\r\n");
                    let _ = s.write_all(&out).await;
                    return;
                }
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if quit {
            return;
        }
    }
}

fn bulk(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(v) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}

/// Runs one command, appending its reply; returns true for QUIT.
fn execute(args: &[&[u8]], store: &Store, out: &mut Vec<u8>) -> bool {
    let cmd = args[0].to_ascii_uppercase();
    let argc = args.len();
    let wrong = |out: &mut Vec<u8>| {
        out.extend_from_slice(
            format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                String::from_utf8_lossy(&cmd).to_lowercase()
            )
            .as_bytes(),
        )
    };
    let mut db = store.borrow_mut();
    match cmd.as_slice() {
        b"GET" if argc == 2 => bulk(out, db.get(args[1]).map(|v| v.as_slice())),
        b"SET" if argc >= 3 => {
            db.insert(args[1].to_vec(), args[2].to_vec());
            out.extend_from_slice(b"+OK\r\n");
        }
        b"MGET" if argc >= 2 => {
            out.extend_from_slice(format!("*{}\r\n", argc - 1).as_bytes());
            for k in &args[1..] {
                bulk(out, db.get(*k).map(|v| v.as_slice()));
            }
        }
        b"MSET" if argc >= 3 && argc % 2 == 1 => {
            for kv in args[1..].chunks(2) {
                db.insert(kv[0].to_vec(), kv[1].to_vec());
            }
            out.extend_from_slice(b"+OK\r\n");
        }
        b"DEL" | b"UNLINK" if argc >= 2 => {
            let n = args[1..]
                .iter()
                .filter(|k| db.remove(**k).is_some())
                .count();
            int(out, n as i64);
        }
        b"EXISTS" if argc >= 2 => {
            let n = args[1..].iter().filter(|k| db.contains_key(**k)).count();
            int(out, n as i64);
        }
        b"INCR" if argc == 2 => {
            let cur = match db.get(args[1]) {
                None => Some(0),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok()),
            };
            match cur.and_then(|n| n.checked_add(1)) {
                None => out.extend_from_slice(b"-ERR value is not an integer or out of range\r\n"),
                Some(n) => {
                    db.insert(args[1].to_vec(), n.to_string().into_bytes());
                    int(out, n);
                }
            }
        }
        b"PING" => {
            if argc > 1 {
                bulk(out, Some(args[1]));
            } else {
                out.extend_from_slice(b"+PONG\r\n");
            }
        }
        b"ECHO" if argc == 2 => bulk(out, Some(args[1])),
        b"SELECT" | b"AUTH" => out.extend_from_slice(b"+OK\r\n"),
        b"FLUSHALL" | b"FLUSHDB" => {
            db.clear();
            out.extend_from_slice(b"+OK\r\n");
        }
        b"DBSIZE" => int(out, db.len() as i64),
        b"COMMAND" => out.extend_from_slice(b"*0\r\n"),
        b"INFO" => bulk(
            out,
            Some(b"# Server\r\nredis_version:7.0.0-ncbench-embedded\r\n"),
        ),
        b"CLIENT" => out.extend_from_slice(b"+OK\r\n"),
        b"QUIT" => {
            out.extend_from_slice(b"+OK\r\n");
            return true;
        }
        b"GET" | b"SET" | b"MGET" | b"MSET" | b"DEL" | b"UNLINK" | b"EXISTS" | b"INCR"
        | b"ECHO" => wrong(out),
        _ => out.extend_from_slice(
            format!(
                "-ERR unknown command '{}'\r\n",
                String::from_utf8_lossy(args[0])
            )
            .as_bytes(),
        ),
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmds: &[&[&[u8]]]) -> Vec<u8> {
        let store: Store = Rc::new(RefCell::new(HashMap::new()));
        let mut out = Vec::new();
        for c in cmds {
            execute(c, &store, &mut out);
        }
        out
    }

    #[test]
    fn commands() {
        let out = run(&[
            &[b"SET", b"a", b"1"],
            &[b"get", b"a"],
            &[b"GET", b"b"],
            &[b"MGET", b"a", b"b"],
            &[b"INCR", b"n"],
            &[b"INCR", b"n"],
            &[b"INCR", b"a"],
            &[b"DEL", b"a", b"b"],
            &[b"PING"],
            &[b"NOPE"],
            &[b"GET"],
        ]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+OK\r\n$1\r\n1\r\n$-1\r\n*2\r\n$1\r\n1\r\n$-1\r\n:1\r\n:2\r\n:2\r\n:1\r\n+PONG\r\n-ERR unknown command 'NOPE'\r\n-ERR wrong number of arguments for 'get' command\r\n"
        );
    }

    #[test]
    fn backend_thread_runs_where_placed() {
        let allowed = affinity::allowed_cpus().unwrap();
        let b = start(1, None).unwrap();
        assert_eq!(b.cpus_allowed, allowed.to_string());
        let last = CpuList::parse(&allowed.cpus().last().unwrap().to_string()).unwrap();
        let b = start(1, Some(&last)).unwrap();
        assert_eq!(b.cpus_allowed, last.to_string());
    }

    #[test]
    fn serves_over_tcp_with_the_redis_crate() {
        let b = start(2, None).unwrap();
        let client = redis::Client::open(format!("redis://{}/", b.addrs[1])).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
        assert_eq!(v.as_deref(), Some("v"));
        // Backends do not share a keyspace.
        let client0 = redis::Client::open(format!("redis://{}/", b.addrs[0])).unwrap();
        let mut con0 = client0.get_connection().unwrap();
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut con0).unwrap();
        assert_eq!(v, None);
    }
}
