//! Free loopback port allocation that is safe across threads and processes.
//!
//! Three layers keep two users from receiving the same port:
//!
//! 1. **Process-wide set.** Every port handed out and not yet released is in a
//!    `Mutex<HashSet<u16>>`; a candidate already in it is skipped. This covers
//!    parallel test threads.
//! 2. **Cross-process lock.** For each candidate the allocator opens
//!    `$TMPDIR/nc-harness-ports/<port>.lock` and takes a non-blocking exclusive
//!    `flock`. The lock lives as long as the lease, and the kernel drops it
//!    when the process dies, so nothing stale is ever left behind. This covers
//!    parallel test binaries (cargo runs one per test file) and ncbench.
//! 3. **Real bind probe.** The candidate must bind on `127.0.0.1` right now,
//!    which excludes ports used by anything else on the machine.
//!
//! Candidates come from below the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, usually 32768-60999), starting
//! at a pseudo-random offset. Outgoing connections take their source ports
//! from the ephemeral range, so a port we picked cannot be grabbed as a source
//! port between the probe and the child's `bind`. If the range cannot be read
//! the allocator falls back to asking the kernel (`bind 127.0.0.1:0`). A child
//! that still fails to bind is restarted on a new port by [`crate::process`].

use crate::Error;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowest port the allocator hands out.
const MIN_PORT: u16 = 10_000;
/// How many candidates one allocation probes before giving up.
const MAX_TRIES: usize = 4_000;

/// A reserved loopback port. The reservation ends when the lease is dropped.
///
/// Keep the lease alive for as long as the port is (or may be) in use: the
/// harness's process handles hold theirs until the child has been killed and
/// reaped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    // Holding the file keeps the flock; closing it releases the lock.
    _lock: Option<File>,
}

impl PortLease {
    /// The reserved port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        handed_out()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.port);
    }
}

/// Reserves a free loopback port until the returned lease is dropped.
pub fn lease_port() -> Result<PortLease, Error> {
    let (lo, hi) = candidate_range();
    if lo >= hi {
        return kernel_port();
    }
    let span = u32::from(hi - lo);
    let mut x = seed();
    for _ in 0..MAX_TRIES {
        x = xorshift(x);
        let port = lo + (x % u64::from(span)) as u16;
        if let Some(lease) = try_reserve(port) {
            return Ok(lease);
        }
    }
    Err(Error::NoFreePort { tries: MAX_TRIES })
}

/// Reserves a free loopback port for the rest of the process's life and
/// returns its number.
///
/// Use this for ports the caller writes into a config (a proxy's `listen:`).
/// Each call keeps one small lock file open.
pub fn free_port() -> Result<u16, Error> {
    let lease = lease_port()?;
    let port = lease.port();
    static FOREVER: OnceLock<Mutex<Vec<PortLease>>> = OnceLock::new();
    FOREVER
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(lease);
    Ok(port)
}

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Tries to reserve one specific port through all three layers.
pub(crate) fn try_reserve(port: u16) -> Option<PortLease> {
    let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    if port == 0 || set.contains(&port) {
        return None;
    }
    let lock = lock_file(port)?;
    if !bindable(port) {
        return None;
    }
    set.insert(port);
    Some(PortLease {
        port,
        _lock: Some(lock),
    })
}

/// Takes the cross-process lock of `port`, or `None` if another process (or
/// another open file in this one) holds it.
pub(crate) fn lock_file(port: u16) -> Option<File> {
    let dir = lock_dir();
    let path = dir.join(format!("{port}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is touched.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(file)
}

fn lock_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("nc-harness-ports");
        let _ = fs::create_dir_all(&dir);
        // Let other users on the machine share the directory.
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
        dir
    })
    .clone()
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `[lo, hi)` below the ephemeral range, or an empty range if unknown.
fn candidate_range() -> (u16, u16) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().map(|s| s.parse::<u16>());
    match (it.next(), it.next()) {
        (Some(Ok(first)), Some(Ok(last))) => {
            if first > MIN_PORT + 1_000 {
                (MIN_PORT, first)
            } else if last < 64_000 {
                (last + 1, u16::MAX)
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    }
}

/// Fallback when no private range is known: let the kernel choose.
fn kernel_port() -> Result<PortLease, Error> {
    for _ in 0..MAX_TRIES {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("bind 127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("local_addr", e))?
            .port();
        drop(listener);
        if let Some(lease) = try_reserve(port) {
            return Ok(lease);
        }
    }
    Err(Error::NoFreePort { tries: MAX_TRIES })
}

fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = u64::from(std::process::id());
    // splitmix64 of the mixture, never 0.
    let mut z = nanos ^ (pid << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::thread;

    #[test]
    fn leases_are_unique_across_threads_and_bindable() {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                thread::spawn(|| {
                    (0..25)
                        .map(|_| lease_port().expect("lease"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let leases: Vec<PortLease> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let ports: HashSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(ports.len(), leases.len(), "a port was handed out twice");
        let (lo, hi) = candidate_range();
        for lease in &leases {
            assert!(lease.port() >= lo && lease.port() < hi || lo >= hi);
            // Nobody listens there: we can bind it ourselves.
            TcpListener::bind(lease.addr()).expect("leased port must be bindable");
        }
    }

    #[test]
    fn a_leased_port_is_locked_for_other_processes() {
        // A port below the allocator's range, so no test running in
        // parallel leases it.
        let lease = (MIN_PORT / 2..MIN_PORT)
            .find_map(try_reserve)
            .expect("a free port below the allocator's range");
        // A second open file description conflicts exactly like another
        // process would.
        assert!(lock_file(lease.port()).is_none(), "flock not held");
        assert!(try_reserve(lease.port()).is_none(), "reserved twice");
        let port = lease.port();
        drop(lease);
        // A test spawning a child at this moment shares the lock file's open
        // description between fork and exec (close-on-exec), so the lock
        // may outlive the lease by that long: retry briefly.
        fn soon<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match attempt() {
                    None if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    got => return got,
                }
            }
        }
        let again = soon(|| lock_file(port));
        assert!(again.is_some(), "lock not released on drop");
        drop(again);
        let lease = soon(|| try_reserve(port)).expect("port reusable after release");
        assert_eq!(lease.port(), port);
    }

    #[test]
    fn a_port_in_use_is_never_handed_out() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let busy = listener.local_addr().unwrap().port();
        assert!(try_reserve(busy).is_none());
        // Busy ports in the private range are skipped too.
        let (lo, _) = candidate_range();
        if lo > 0 {
            let lease = lease_port().unwrap();
            let port = lease.port();
            drop(lease);
            let _l = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
            assert!(try_reserve(port).is_none());
        }
    }

    #[test]
    fn free_port_is_process_lifetime() {
        let p = free_port().unwrap();
        assert!(try_reserve(p).is_none());
        assert!(lock_file(p).is_none());
    }
}
