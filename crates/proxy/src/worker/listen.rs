//! Listeners and admission: binding a pool's address (SO_REUSEPORT so
//! every worker binds the same port), the accept loop that spawns client
//! tasks, and the client caps shared by all workers (RLIMIT_NOFILE as
//! nutcracker computes it, and each pool's `client_connections`), and the
//! TLS handshake of a pool with `tls_cert`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nc_config::{Config, Listen};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::conn::client;
use crate::io::stream::Stream;
use crate::log;
use crate::pool::health::PoolShared;
use crate::pool::{Pool, PoolHandle};
use crate::StartError;

/// A bound listener, not yet registered with a runtime.
pub(crate) enum BoundListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds a pool's listener. `reuseport` lets every worker bind the same port.
pub(crate) fn bind(
    listen: &Listen,
    backlog: u32,
    reuseport: bool,
) -> Result<BoundListener, StartError> {
    match listen {
        Listen::Tcp { addr, text, .. } => {
            let fail = |fd: i32, err: std::io::Error| StartError::Bind {
                what: format!("p {fd}"),
                addr: text.clone(),
                err,
            };
            let socket = Socket::new(
                Domain::for_address(*addr),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .map_err(|e| fail(-1, e))?;
            let fd = socket.as_raw_fd();
            socket.set_reuse_address(true).map_err(|e| fail(fd, e))?;
            if reuseport {
                socket.set_reuse_port(true).map_err(|e| fail(fd, e))?;
            }
            socket.bind(&(*addr).into()).map_err(|e| fail(fd, e))?;
            socket
                .listen(backlog.min(i32::MAX as u32) as i32)
                .map_err(|e| fail(fd, e))?;
            socket.set_nonblocking(true).map_err(|e| fail(fd, e))?;
            Ok(BoundListener::Tcp(socket.into()))
        }
        Listen::Unix { path, perm, text } => {
            let fail = |err: std::io::Error| StartError::Bind {
                what: "p".to_string(),
                addr: text.clone(),
                err,
            };
            // nutcracker unlinks a stale socket file before binding.
            let _ = std::fs::remove_file(path);
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(fail)?;
            if let Some(perm) = perm {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*perm))
                    .map_err(fail)?;
            }
            listener.set_nonblocking(true).map_err(fail)?;
            Ok(BoundListener::Unix(listener))
        }
    }
}

impl BoundListener {
    pub(crate) fn try_clone(&self) -> std::io::Result<BoundListener> {
        Ok(match self {
            BoundListener::Tcp(l) => BoundListener::Tcp(l.try_clone()?),
            BoundListener::Unix(l) => BoundListener::Unix(l.try_clone()?),
        })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            BoundListener::Tcp(l) => l.local_addr().ok(),
            BoundListener::Unix(_) => None,
        }
    }
}

/// Client admission shared by all workers (checked per connection, never
/// per request): nutcracker's descriptor-based cap on all clients.
pub(crate) struct Admission {
    /// RLIMIT_NOFILE minus what servers and listeners need (nutcracker §5.9).
    pub(crate) max_clients: usize,
    pub(crate) clients: AtomicUsize,
}

impl Admission {
    pub(crate) fn new(config: &Config, workers: usize) -> Admission {
        let nofile = open_file_limit();
        // Every worker has its own server connections and listeners.
        let reserved: usize = config
            .pools
            .iter()
            .map(|p| (p.server_connections as usize * p.servers.len() + 1) * workers)
            .sum::<usize>()
            + 32;
        Admission {
            max_clients: nofile.saturating_sub(reserved),
            clients: AtomicUsize::new(0),
        }
    }

    /// Takes a client slot in `pool`, or refuses.
    pub(crate) fn admit(&self, pool: &PoolShared) -> bool {
        if self.clients.fetch_add(1, Ordering::Relaxed) >= self.max_clients {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if !pool.take_client() {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn release(&self, pool: &PoolShared) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
        pool.release_client();
    }
}

/// The soft RLIMIT_NOFILE.
fn open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    match crate::io::sys::getrlimit_nofile(&mut limit) {
        Ok(()) if limit.rlim_cur != libc::RLIM_INFINITY => limit.rlim_cur as usize,
        _ => usize::MAX,
    }
}

/// A listener registered with this worker's runtime.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn register(bound: BoundListener) -> std::io::Result<Listener> {
        Ok(match bound {
            BoundListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            BoundListener::Unix(l) => Listener::Unix(UnixListener::from_std(l)?),
        })
    }

    async fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept().await?.0),
            Listener::Unix(l) => Stream::Unix(l.accept().await?.0),
        })
    }
}

/// Accepts clients of one pool on this worker and spawns their tasks. A
/// client keeps the admission slot of the pool it was accepted by, even if a
/// reload swaps that pool.
pub(crate) async fn accept_loop(
    listener: BoundListener,
    handle: Rc<PoolHandle>,
    admission: Arc<Admission>,
) {
    let listener = match Listener::register(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error(format_args!(
                "listen on pool '{}' failed: {e}",
                handle.current().config.name
            ));
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let pool = handle.current();
                if !admission.admit(&pool.shared) {
                    // Over the limit: accept, then close at once (nutcracker §5.9).
                    drop(stream);
                    continue;
                }
                if let Stream::Tcp(tcp) = &stream {
                    let _ = tcp.set_nodelay(true);
                    if pool.config.tcpkeepalive {
                        let _ = SockRef::from(tcp).set_tcp_keepalive(&TcpKeepalive::new());
                    }
                }
                let (admission, shared) = (admission.clone(), pool.shared.clone());
                let handle = handle.clone();
                let tls = shared.tls.get().and_then(|tls| tls.listen.clone());
                tokio::task::spawn_local(async move {
                    match tls_handshake(stream, tls, &pool).await {
                        // The client releases its slot when it closes, which
                        // may be after it was parked idle.
                        Some(stream) => client::serve(stream, handle).await,
                        None => admission.release(&shared),
                    }
                });
            }
            Err(e) => accept_failed(&handle.current(), e).await,
        }
    }
}

/// On a TLS listener, the handshake (bounded by `HANDSHAKE_TIMEOUT`); a
/// client that fails it is logged and dropped.
async fn tls_handshake(
    stream: Stream,
    tls: Option<Arc<rustls::ServerConfig>>,
    pool: &Pool,
) -> Option<Stream> {
    let Some(tls) = tls else {
        return Some(stream);
    };
    let peer = match &stream {
        Stream::Tcp(tcp) => tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        _ => "unix socket".to_string(),
    };
    match crate::io::tls::accept(stream, tls).await {
        Ok(stream) => Some(stream),
        Err(problem) => {
            pool.stats().tls_handshake_failures.incr();
            let line = format_args!(
                "TLS handshake with client {peer} on pool '{}' failed: {problem}",
                pool.config.name
            );
            // A connect-and-close (a port probe) is not worth an error line.
            if problem == crate::io::tls::HANDSHAKE_EOF {
                log::debug(line);
            } else {
                log::error(line);
            }
            None
        }
    }
}

/// Logs an accept failure; out of descriptors, it backs off instead of spinning.
async fn accept_failed(pool: &Pool, err: std::io::Error) {
    log::error(format_args!(
        "accept on p for pool '{}' failed: {err}",
        pool.config.name
    ));
    if matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
