//! The three system calls the data path makes directly: `read` into a
//! buffer's spare capacity, `writev` for batched sends and `write` for
//! per-message sends. They are here, not in tokio, so that every send is
//! exactly one counted syscall and a short read or write can clear the
//! socket's readiness without a second, wasted call. Also the few other
//! libc calls the proxy needs: `sched_yield` and `getrusage` for
//! `--busy-poll`, rlimits, daemonizing, registering the epoll set of parked
//! idle clients with the runtime, `malloc_trim` after they parked, and the fatal-signal handler
//! (SIGSEGV, SIGBUS, SIGABRT: one log line, then the default action).
#![allow(unsafe_code)]

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::BytesMut;

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) bytes: usize,
    /// Fewer bytes than offered: the socket is drained for now.
    pub(crate) drained: bool,
}

/// Bytes of the stack buffer used for a connection's first read.
const FIRST_READ: usize = 4096;

/// Reads once into `buf` and extends its length by what was read.
///
/// While `buf` has no allocation yet (a new or idle connection) the read goes
/// to a small stack buffer first, so a connection that never sends, or a
/// stale readiness that reads nothing, costs no buffer. After that it reads
/// into the spare capacity, reserving `min_free` bytes first.
pub(crate) fn read_into(
    fd: BorrowedFd<'_>,
    buf: &mut BytesMut,
    min_free: usize,
) -> io::Result<Read> {
    if buf.capacity() == 0 {
        let mut first = [0u8; FIRST_READ];
        // SAFETY: `first` is a valid writable buffer of FIRST_READ bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), first.as_mut_ptr().cast(), FIRST_READ) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > 0 {
            buf.reserve(min_free.max(n));
            buf.extend_from_slice(&first[..n]);
        }
        return Ok(Read {
            bytes: n,
            drained: n < FIRST_READ,
        });
    }
    buf.reserve(min_free);
    let spare = buf.spare_capacity_mut();
    let offered = spare.len();
    // SAFETY: `spare` is valid writable memory of `spare.len()` bytes owned by
    // `buf`; read(2) writes at most that many bytes into it.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), offered) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(Read {
        bytes: n,
        drained: n < offered,
    })
}

/// One `writev(2)`. At most `IOV_MAX` slices are passed by the callers.
pub(crate) fn writev(fd: BorrowedFd<'_>, iovs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: IoSlice is guaranteed ABI-compatible with `struct iovec` on
    // Unix; the slices borrow live buffers for the duration of the call.
    let n = unsafe {
        libc::writev(
            fd.as_raw_fd(),
            iovs.as_ptr().cast(),
            iovs.len() as libc::c_int,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `write(2)`.
pub(crate) fn write(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is a live, initialised slice for the duration of the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Lets another runnable thread on this CPU go first (`--busy-poll` rounds).
pub(crate) fn sched_yield() {
    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
    unsafe { libc::sched_yield() };
}

/// How often the calling thread has been switched out while runnable
/// (preempted, or after `sched_yield` let another task run).
pub(crate) fn thread_involuntary_switches() -> i64 {
    // SAFETY: rusage is plain data, so all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage struct; RUSAGE_THREAD
    // cannot fail on Linux.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_nivcsw
}

/// Registers an epoll set (`mio::Poll`, the parked idle clients of a
/// worker) with the runtime, readable when any of its sockets has an event.
pub(crate) fn register_epoll_set(
    poll: mio::Poll,
) -> io::Result<tokio::io::unix::AsyncFd<mio::Poll>> {
    // SAFETY: the AsyncFd owns the Poll, whose epoll descriptor is open and
    // the same from its creation until it is dropped, with the AsyncFd.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Gives the allocator's free memory back to the kernel (glibc's
/// `malloc_trim`), after a burst of freed client tasks; elsewhere nothing.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The soft and hard RLIMIT_NOFILE.
pub(crate) fn getrlimit_nofile(limit: &mut libc::rlimit) -> io::Result<()> {
    // SAFETY: `limit` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches from the terminal like nutcracker's nc_daemonize: fork, setsid
/// (ignoring SIGHUP meanwhile), fork again, umask 0, stdio to /dev/null.
/// No chdir. Must run before any thread is started.
pub(crate) fn daemonize() -> io::Result<()> {
    // SAFETY: called while the process is single-threaded; each call's
    // result is checked; the children continue with a copy of this state.
    unsafe {
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        match libc::fork() {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::umask(0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in 0..3 {
            if libc::dup2(null, fd) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if null > 2 {
            libc::close(null);
        }
    }
    Ok(())
}

/// The fatal-signal hook: called with the signal's number, name and the
/// wall-clock time (seconds, milliseconds) from inside the handler.
pub(crate) type FatalHook = fn(i32, &str, u64, u32);

static FATAL_HOOK: std::sync::OnceLock<FatalHook> = std::sync::OnceLock::new();

const FATAL_SIGNALS: [(i32, &str); 3] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGABRT, "SIGABRT"),
];

extern "C" fn on_fatal(signo: libc::c_int) {
    let name = FATAL_SIGNALS
        .iter()
        .find(|(n, _)| *n == signo)
        .map_or("?", |(_, name)| name);
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and `now` is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    if let Some(hook) = FATAL_HOOK.get() {
        hook(
            signo,
            name,
            now.tv_sec as u64,
            (now.tv_nsec / 1_000_000) as u32,
        );
    }
    // SA_RESETHAND restored the default action: re-raise to take it (a
    // core dump) with the original signal, as nutcracker does.
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(signo) };
}

/// Installs `hook` for SIGSEGV, SIGBUS and SIGABRT; each fires once, then
/// the default action runs.
pub(crate) fn on_fatal_signals(hook: FatalHook) -> io::Result<()> {
    let _ = FATAL_HOOK.set(hook);
    for (signo, _) in FATAL_SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the handler only calls
        // async-signal-safe functions and formats on the stack.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signo, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One `write(2)` to a raw descriptor, ignoring errors (the fatal-signal
/// handler's log line).
pub(crate) fn write_fd(fd: i32, data: &[u8]) {
    // SAFETY: `data` is a valid buffer of `data.len()` bytes.
    let _ = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
}
