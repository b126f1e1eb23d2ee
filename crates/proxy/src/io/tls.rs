//! TLS on both sides with rustls (ring provider, no OpenSSL): loading a
//! pool's PEM files into rustls configs, the handshakes (tokio-rustls), and
//! the data path of an established TLS connection.
//!
//! After the handshake the connection leaves tokio-rustls: `TlsStream` keeps
//! the rustls state next to the socket and does its own I/O, so the send
//! chain keeps its batching. A send gathers the queued messages exactly as
//! the plain chain does, hands them to the TLS writer in one vectored call
//! (they become as few records as their size allows) and flushes the records
//! in one `writev`; `per_message` hands over and flushes one message at a
//! time. Reads take up to 64 KiB of ciphertext in one syscall into a
//! per-thread scratch buffer and decrypt it all into the caller's buffer.
//! Short reads and writes clear the readiness as on a plain socket.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::Interest;

use crate::io::chain::{self, SendOpts, SendQueue, Sent};
use crate::io::stream::Stream;
use crate::io::sys;
use crate::stats::SendStats;

/// Ciphertext read per syscall.
const READ_SCRATCH: usize = 64 * 1024;
/// Most TLS bytes buffered before a flush: bounds what one batch encrypts.
const TLS_BUFFER_LIMIT: usize = 256 * 1024;
/// A client that has not finished its handshake by then is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool's TLS material, as read from its PEM files.
pub(crate) struct PoolTls {
    /// The listener's config (`tls_cert`/`tls_key`/`tls_client_ca`).
    pub(crate) listen: Option<Arc<ServerConfig>>,
    /// The backends' config (`server_tls_*`) and the name to verify.
    pub(crate) servers: Option<(Arc<ClientConfig>, Option<String>)>,
}

/// The TLS material a pool uses now; a reload replaces it without touching
/// established connections (they keep the config they were made with).
#[derive(Default)]
pub(crate) struct TlsSlot(RwLock<Option<Arc<PoolTls>>>);

impl TlsSlot {
    pub(crate) fn get(&self) -> Option<Arc<PoolTls>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, tls: Option<Arc<PoolTls>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }
}

/// A PEM file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key} '{path}' of pool '{pool}': {problem}")]
pub struct TlsLoadError {
    pub pool: String,
    pub key: &'static str,
    pub path: String,
    pub problem: String,
}

/// Reads a pool's PEM files into rustls configs; `None` for a plain pool.
pub(crate) fn load(pool: &nc_config::Pool) -> Result<Option<Arc<PoolTls>>, TlsLoadError> {
    if pool.tls.is_none() && pool.server_tls.is_none() {
        return Ok(None);
    }
    let fail = |key: &'static str, path: &Path, problem: String| TlsLoadError {
        pool: pool.name.clone(),
        key,
        path: path.display().to_string(),
        problem,
    };
    let listen = match &pool.tls {
        None => None,
        Some(tls) => {
            let certs = read_certs(&tls.cert).map_err(|p| fail("tls_cert", &tls.cert, p))?;
            let key = read_key(&tls.key).map_err(|p| fail("tls_key", &tls.key, p))?;
            let builder = ServerConfig::builder();
            let builder = match &tls.client_ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let roots = read_roots(ca).map_err(|p| fail("tls_client_ca", ca, p))?;
                    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                        .build()
                        .map_err(|e| fail("tls_client_ca", ca, e.to_string()))?;
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let config = builder
                .with_single_cert(certs, key)
                .map_err(|e| fail("tls_key", &tls.key, e.to_string()))?;
            Some(Arc::new(config))
        }
    };
    let servers = match &pool.server_tls {
        None => None,
        Some(tls) => {
            let roots = read_roots(&tls.ca).map_err(|p| fail("server_tls_ca", &tls.ca, p))?;
            let builder = ClientConfig::builder().with_root_certificates(roots);
            let config = match &tls.client_cert {
                None => builder.with_no_client_auth(),
                Some((cert, key)) => {
                    let certs = read_certs(cert).map_err(|p| fail("server_tls_cert", cert, p))?;
                    let pkey = read_key(key).map_err(|p| fail("server_tls_key", key, p))?;
                    builder
                        .with_client_auth_cert(certs, pkey)
                        .map_err(|e| fail("server_tls_key", key, e.to_string()))?
                }
            };
            if let Some(name) = &tls.name {
                ServerName::try_from(name.as_str()).map_err(|e| TlsLoadError {
                    pool: pool.name.clone(),
                    key: "server_tls_name",
                    path: name.clone(),
                    problem: e.to_string(),
                })?;
            }
            Some((Arc::new(config), tls.name.clone()))
        }
    };
    Ok(Some(Arc::new(PoolTls { listen, servers })))
}

fn pem_problem(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => crate::errno::strerror(crate::errno::errno_of(&e)),
        other => other.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_problem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_problem)?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".to_string());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_problem)
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// What tokio-rustls reports for a peer that closed before a handshake.
pub(crate) const HANDSHAKE_EOF: &str = "tls handshake eof";

/// Why a handshake failed, in words for the log line.
fn handshake_problem(err: &io::Error) -> String {
    let text = err.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{text} (a plaintext client on a TLS listener?)")
    } else {
        text
    }
}

/// The server side of a handshake on an accepted client connection.
pub(crate) async fn accept(stream: Stream, config: Arc<ServerConfig>) -> Result<Stream, String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = async {
        match stream {
            Stream::Tcp(s) => {
                let (io, conn) = acceptor.accept(s).await?.into_inner();
                Ok((Stream::Tcp(io), rustls::Connection::Server(conn)))
            }
            Stream::Unix(s) => {
                let (io, conn) = acceptor.accept(s).await?.into_inner();
                Ok((Stream::Unix(io), rustls::Connection::Server(conn)))
            }
            Stream::Tls(_) => Err(io::Error::other("already TLS")),
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok((io, conn))) => Ok(TlsStream::wrap(io, conn)),
        Ok(Err(e)) => Err(handshake_problem(&e)),
        Err(_) => Err(format!(
            "no handshake within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        )),
    }
}

/// The client side of a handshake on a new server connection, verifying
/// the server's certificate for `name`.
pub(crate) async fn connect(
    stream: Stream,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<Stream, String> {
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let result = match stream {
        Stream::Tcp(s) => connector
            .connect(name, s)
            .await
            .map(|t| t.into_inner())
            .map(|(io, conn)| (Stream::Tcp(io), conn)),
        Stream::Unix(s) => connector
            .connect(name, s)
            .await
            .map(|t| t.into_inner())
            .map(|(io, conn)| (Stream::Unix(io), conn)),
        Stream::Tls(_) => Err(io::Error::other("already TLS")),
    };
    match result {
        Ok((io, conn)) => Ok(TlsStream::wrap(io, rustls::Connection::Client(conn))),
        Err(e) => Err(handshake_problem(&e)),
    }
}

/// An established TLS connection over a plain stream.
pub(crate) struct TlsStream {
    pub(crate) io: Stream,
    conn: RefCell<rustls::Connection>,
    /// The peer sent close_notify or closed the socket.
    eof: Cell<bool>,
}

thread_local! {
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(READ_SCRATCH));
}

/// A socket as `io::Write` for rustls' `write_tls`: one `writev` per call.
struct FdWriter<'a> {
    fd: BorrowedFd<'a>,
    offered: usize,
}

impl Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.offered = buf.len();
        sys::write(self.fd, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.offered = bufs.iter().map(|b| b.len()).sum();
        sys::writev(self.fd, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    fn wrap(io: Stream, mut conn: rustls::Connection) -> Stream {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Stream::Tls(Box::new(TlsStream {
            io,
            conn: RefCell::new(conn),
            eof: Cell::new(false),
        }))
    }

    /// Encrypted bytes wait to be written (a short flush left them).
    pub(crate) fn has_pending_output(&self) -> bool {
        self.conn.borrow().wants_write()
    }

    /// Moves every decrypted byte into `buf`; notes a close_notify.
    fn take_plaintext(
        &self,
        conn: &mut rustls::Connection,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        let state = conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if state.peer_has_closed() {
            self.eof.set(true);
        }
        let n = state.plaintext_bytes_to_read();
        if n == 0 {
            return Ok(0);
        }
        let start = buf.len();
        buf.resize(start + n, 0);
        conn.reader().read_exact(&mut buf[start..])?;
        Ok(n)
    }

    /// Feeds ciphertext to rustls and decrypts it into `buf` as it goes
    /// (rustls holds at most 16 KiB of plaintext).
    fn feed(
        &self,
        conn: &mut rustls::Connection,
        mut data: &[u8],
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        let mut plain = 0;
        while !data.is_empty() {
            conn.read_tls(&mut data)?;
            plain += self.take_plaintext(conn, buf)?;
        }
        Ok(plain)
    }

    /// As `Stream::poll_read_into`: plaintext bytes added to `buf`, 0 = EOF.
    pub(crate) fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut conn = self.conn.borrow_mut();
        loop {
            let n = self.take_plaintext(&mut conn, buf)?;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if self.eof.get() {
                return Poll::Ready(Ok(0));
            }
            ready!(self.io.poll_read_ready(cx))?;
            let fd = self.io.fd();
            let result = SCRATCH.with_borrow_mut(|scratch| {
                scratch.clear();
                let mut got = None;
                let result = self.io.try_io(Interest::READABLE, || {
                    let read = sys::read_into(fd, scratch, READ_SCRATCH)?;
                    got = Some(read.bytes);
                    if read.bytes > 0 && read.drained {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(())
                });
                match (result, got) {
                    (_, Some(0)) => Ok(None),
                    (_, Some(_)) => self.feed(&mut conn, &scratch[..], buf).map(Some),
                    (Err(e), None) => Err(e),
                    (Ok(()), None) => Ok(Some(0)),
                }
            });
            match result {
                // The socket hit EOF: what was decrypted is already returned.
                Ok(None) => {
                    self.eof.set(true);
                    return Poll::Ready(Ok(0));
                }
                Ok(Some(n)) if n > 0 => return Poll::Ready(Ok(n)),
                // A partial record: read again (or wait for the next edge).
                Ok(Some(_)) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// As `Stream::poll_send_once`: one batch into the TLS writer and one
    /// flush, or the rest of an earlier short flush.
    pub(crate) fn poll_send_once<Q: SendQueue>(
        &self,
        cx: &mut Context<'_>,
        queue: &mut Q,
        offset: &mut usize,
        opts: &SendOpts,
        stats: &SendStats,
    ) -> Poll<io::Result<Sent>> {
        let mut conn = self.conn.borrow_mut();
        self.io.poll_send_with(cx, |fd| {
            send_once(fd, &mut conn, queue, offset, opts, stats)
        })
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // Best effort: tell the peer the close is deliberate.
        let conn = self.conn.get_mut();
        conn.send_close_notify();
        let mut writer = FdWriter {
            fd: self.io.fd(),
            offered: 0,
        };
        let _ = conn.write_tls(&mut writer);
    }
}

/// One send over TLS: the rest of a short flush, or the next batch gathered
/// as the plain chain gathers it, encrypted in one call and flushed in one
/// syscall. The plaintext messages are complete once rustls has taken them.
fn send_once<Q: SendQueue>(
    fd: BorrowedFd<'_>,
    conn: &mut rustls::Connection,
    queue: &mut Q,
    offset: &mut usize,
    opts: &SendOpts,
    stats: &SendStats,
) -> io::Result<Sent> {
    if conn.wants_write() {
        return flush(fd, conn, stats);
    }
    let mut iovs = chain::Batch::new();
    let (total, looked_at) = chain::gather(queue, *offset, opts, &mut iovs);
    if total == 0 {
        drop(iovs);
        return Ok(chain::complete_empty(queue, offset, looked_at));
    }
    let taken = conn.writer().write_vectored(&iovs)?;
    stats.iovecs.add(iovs.len() as u64);
    drop(iovs);
    stats.tls_flushes.incr();
    stats.tls_plain_bytes.add(taken as u64);
    chain::complete(queue, offset, taken);
    flush(fd, conn, stats)
}

/// Writes the buffered records in one syscall.
fn flush(fd: BorrowedFd<'_>, conn: &mut rustls::Connection, stats: &SendStats) -> io::Result<Sent> {
    let mut writer = FdWriter { fd, offered: 0 };
    let written = conn.write_tls(&mut writer)?;
    stats.syscalls.incr();
    stats.bytes.add(written as u64);
    if written < writer.offered {
        stats.partial.incr();
        return Ok(Sent::Short);
    }
    Ok(Sent::All)
}
