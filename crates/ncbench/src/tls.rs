//! TLS for the load: the certificates a run makes for itself, the client
//! configs the driver verifies targets with, and the data path of a driver
//! connection over TLS.
//!
//! - [`Pki`]: a throwaway CA with a server certificate for `localhost` and
//!   `127.0.0.1`, made at run time with rcgen (nc-harness's `TestPki`) when
//!   `[backends] tls` or a target's `tls` asks for it. redis-server's TLS
//!   ports and ncproxy's TLS listeners present its certificate; the driver,
//!   ncproxy's `server_tls` and the loader trust its CA.
//! - [`TlsClient`]: what a connection needs to speak TLS to one target: a
//!   rustls client config (a CA file, the run's CA, or the system's roots)
//!   and the name to verify.
//! - [`TlsConn`]: an established connection's rustls state. The handshake is
//!   tokio-rustls' (`TlsConnector`); then the connection leaves tokio-rustls
//!   and the driver keeps its own socket (`AsyncFd`), so sending stays one
//!   syscall per batch: a batch's plaintext goes into rustls in one call (one
//!   record while it fits in 16 KiB) and the records go out in one `writev`
//!   ([`TlsConn::send`]). A read takes up to 64 KiB of ciphertext in one
//!   syscall and decrypts all of it ([`TlsConn::read`]); a short read clears
//!   the readiness as on a plain socket.
use crate::error::{BenchError, Result};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Ciphertext read per syscall.
const READ_SCRATCH: usize = 64 * 1024;
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The run's own certificates (PEM files in a temp dir, removed on drop).
#[derive(Debug)]
pub struct Pki {
    inner: nc_harness::TestPki,
}

impl Pki {
    /// A fresh CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Pki> {
        nc_harness::TestPki::generate()
            .map(|inner| Pki { inner })
            .map_err(|e| BenchError::setup(format!("cannot make TLS certificates: {e}")))
    }

    /// The CA certificate.
    pub fn ca(&self) -> &Path {
        &self.inner.ca
    }

    /// The server certificate and its key.
    pub fn cert(&self) -> &Path {
        &self.inner.cert
    }

    pub fn key(&self) -> &Path {
        &self.inner.key
    }

    /// A client config that trusts this CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        client_config(Some(self.ca()))
    }
}

/// A client config trusting the CAs in the PEM file `ca`, or the system's
/// roots when `None`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |e: String| BenchError::setup(format!("TLS CA {}: {e}", path.display()));
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(BenchError::setup(
                    "no system CA certificates found to verify the TLS target (give the CA file: --tls-ca or tls_ca)",
                ));
            }
        }
    }
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// How the driver speaks TLS to one target.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// The name verified in the server's certificate.
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Verifies the server as `host` (a DNS name or an IP address).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<TlsClient> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            BenchError::setup(format!("`{host}` cannot be verified as a TLS name: {e}"))
        })?;
        Ok(TlsClient { config, name })
    }

    /// Verifies the server as the IP address it is reached at.
    pub fn for_addr(config: Arc<ClientConfig>, addr: SocketAddr) -> TlsClient {
        TlsClient {
            config,
            name: ServerName::IpAddress(addr.ip().into()),
        }
    }

    /// Completes a handshake on a connected socket (tokio-rustls, bounded by
    /// [`HANDSHAKE_TIMEOUT`]) and hands back the socket with the session.
    pub async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> io::Result<(tokio::net::TcpStream, TlsConn)> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(self.name.clone(), tcp))
                .await
                .map_err(|_| io::Error::new(ErrorKind::TimedOut, "TLS handshake timed out"))?
                .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
        let (tcp, mut conn) = stream.into_inner();
        // A batch is bounded by the pipeline; rustls must take all of it.
        conn.set_buffer_limit(None);
        Ok((
            tcp,
            TlsConn {
                conn,
                scratch: vec![0u8; READ_SCRATCH],
            },
        ))
    }
}

/// What one read of a driver connection produced (plain or TLS).
pub enum ReadOutcome {
    /// Nothing to read now (readiness cleared).
    WouldBlock,
    /// The peer closed (TCP EOF or `close_notify` with nothing left).
    Closed,
    /// This many plaintext bytes were appended at `rend` (may be 0: a
    /// record not complete yet).
    Data(usize),
    Failed(io::Error),
}

/// An established TLS session next to the driver's socket.
pub struct TlsConn {
    conn: rustls::ClientConnection,
    scratch: Vec<u8>,
}

impl TlsConn {
    /// Whether encrypted bytes wait to be written.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends `buf[*pos..]`: all of it goes into rustls at once (`*pos`
    /// becomes `buf.len()`), then the records are flushed, one `writev` per
    /// call while the socket takes them. Returns whether everything is out;
    /// `false` means the socket is full (readiness cleared).
    pub fn send(
        &mut self,
        fd: &AsyncFd<TcpStream>,
        buf: &[u8],
        pos: &mut usize,
    ) -> io::Result<bool> {
        if *pos < buf.len() {
            self.conn.writer().write_all(&buf[*pos..])?;
            *pos = buf.len();
        }
        while self.conn.wants_write() {
            let conn = &mut self.conn;
            match fd.try_io(Interest::WRITABLE, |s| conn.write_tls(&mut &*s)) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads the ciphertext the socket has (one syscall, up to 64 KiB),
    /// decrypts it and appends the plaintext to `rbuf` at `*rend`, making
    /// room first (moving `rbuf[*rstart..*rend]` to the front, or growing).
    pub fn read(
        &mut self,
        guard: &mut AsyncFdReadyGuard<'_, TcpStream>,
        rbuf: &mut Vec<u8>,
        rstart: &mut usize,
        rend: &mut usize,
    ) -> ReadOutcome {
        let scratch = &mut self.scratch;
        let n = match guard.try_io(|s| s.get_ref().read(scratch)) {
            Err(_would_block) => return ReadOutcome::WouldBlock,
            Ok(Ok(0)) => return ReadOutcome::Closed,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return ReadOutcome::Failed(e),
        };
        if n < self.scratch.len() {
            // Drained: skip the EAGAIN read; a new edge re-arms readiness.
            guard.clear_ready();
        }
        let mut input = &self.scratch[..n];
        let mut got = 0;
        let mut closed = false;
        while !input.is_empty() && !closed {
            match self.conn.read_tls(&mut input) {
                Ok(0) => closed = true,
                Ok(_) => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    return ReadOutcome::Failed(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("TLS: {e}"),
                    ))
                }
            };
            closed |= state.peer_has_closed();
            let avail = state.plaintext_bytes_to_read();
            if avail > 0 {
                make_room(rbuf, rstart, rend, avail);
                match self.conn.reader().read(&mut rbuf[*rend..*rend + avail]) {
                    Ok(k) => {
                        *rend += k;
                        got += k;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return ReadOutcome::Failed(e),
                }
            }
        }
        if closed && got == 0 {
            ReadOutcome::Closed
        } else {
            ReadOutcome::Data(got)
        }
    }
}

/// Makes `need` bytes free after `rbuf[..*rend]`: moves the unread part
/// `rbuf[*rstart..*rend]` to the front, then grows if that is not enough.
fn make_room(rbuf: &mut Vec<u8>, rstart: &mut usize, rend: &mut usize, need: usize) {
    if rbuf.len() - *rend >= need {
        return;
    }
    if *rstart > 0 {
        rbuf.copy_within(*rstart..*rend, 0);
        *rend -= *rstart;
        *rstart = 0;
    }
    if rbuf.len() - *rend < need {
        rbuf.resize(*rend + need, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_room_moves_then_grows() {
        let mut b = vec![0u8; 8];
        b[5..7].copy_from_slice(b"ab");
        let (mut s, mut e) = (5, 7);
        make_room(&mut b, &mut s, &mut e, 1);
        assert_eq!((s, e, b.len()), (5, 7, 8), "room enough: untouched");
        make_room(&mut b, &mut s, &mut e, 4);
        assert_eq!((s, e, b.len()), (0, 2, 8));
        assert_eq!(&b[..2], b"ab");
        make_room(&mut b, &mut s, &mut e, 10);
        assert_eq!((s, e, b.len()), (0, 2, 12));
        assert_eq!(&b[..2], b"ab");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = client_config(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
        let e = client_config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let pki = Pki::generate().unwrap();
        assert!(pki.client_config().is_ok());
    }
}
