//! Test certificates made at run time (rcgen) and a blocking TLS client.
//!
//! [`TestPki::generate`] writes a throwaway CA, a server certificate for
//! `localhost` and `127.0.0.1` and a client certificate, all signed by that
//! CA, as PEM files in a temp dir (removed on drop). [`TestPki::expired`]
//! does the same with leaf certificates that expired in 2001. [`TlsConn`] is
//! [`RawConn`](crate::RawConn)'s TLS sibling: send bytes, read RESP replies
//! with a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;

use crate::Error;

/// A CA with one server and one client certificate, as PEM files.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
    /// The CA certificate (what verifies both leaves).
    pub ca: PathBuf,
    /// Server certificate (SANs `localhost`, `127.0.0.1`) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificate and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn pki_error(e: impl std::fmt::Display) -> Error {
    Error::Io {
        context: "generating test certificates".to_string(),
        source: io::Error::other(e.to_string()),
    }
}

impl TestPki {
    /// A fresh CA and leaves valid from 2020 to 2100.
    pub fn generate() -> Result<TestPki, Error> {
        Self::make(false)
    }

    /// Like [`generate`](Self::generate), but both leaves expired in 2001.
    pub fn expired() -> Result<TestPki, Error> {
        Self::make(true)
    }

    fn make(expired: bool) -> Result<TestPki, Error> {
        let dir = crate::process::temp_dir("pki")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A distinct name per CA: a certificate from another TestPki is then
        // refused as from an unknown issuer, not as a bad signature.
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("ncproxy test CA {}-{serial}-{nanos}", std::process::id()),
        );
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let ca_key = KeyPair::generate().map_err(pki_error)?;
        let ca = ca_params.self_signed(&ca_key).map_err(pki_error)?;
        let leaf = |cn: &str, purpose: ExtendedKeyUsagePurpose| {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let mut params = CertificateParams::new(names).map_err(pki_error)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![purpose];
            let (from, to) = if expired { (2000, 2001) } else { (2020, 2100) };
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
            let key = KeyPair::generate().map_err(pki_error)?;
            let cert = params.signed_by(&key, &ca, &ca_key).map_err(pki_error)?;
            Ok::<_, Error>((cert.pem(), key.serialize_pem()))
        };
        let server = leaf("ncproxy test server", ExtendedKeyUsagePurpose::ServerAuth)?;
        let client = leaf("ncproxy test client", ExtendedKeyUsagePurpose::ClientAuth)?;
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|source| Error::Io {
                context: format!("writing {}", path.display()),
                source,
            })?;
            Ok::<_, Error>(path)
        };
        Ok(TestPki {
            ca: write("ca.pem", &ca.pem())?,
            cert: write("server.pem", &server.0)?,
            key: write("server.key", &server.1)?,
            client_cert: write("client.pem", &client.0)?,
            client_key: write("client.key", &client.1)?,
            dir,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls client config trusting this CA, presenting the client
    /// certificate when `with_client_cert`.
    pub fn client_config(
        &self,
        with_client_cert: bool,
    ) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).map_err(pki_error)? {
            roots.add(cert.map_err(pki_error)?).map_err(pki_error)?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = if with_client_cert {
            let certs = CertificateDer::pem_file_iter(&self.client_cert)
                .map_err(pki_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pki_error)?;
            let key = PrivateKeyDer::from_pem_file(&self.client_key).map_err(pki_error)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(pki_error)?
        } else {
            builder.with_no_client_auth()
        };
        Ok(Arc::new(config))
    }
}

/// A blocking TLS connection for tests: the handshake happens on connect.
pub struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects to `addr` and completes the handshake for `name` within 5 s.
    pub fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> io::Result<TlsConn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(name.to_string()).map_err(io::Error::other)?;
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes all of `data`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Reads until `count` complete RESP replies are buffered, then returns
    /// their bytes (and keeps anything after them).
    pub fn read_replies(&mut self, count: usize, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(len) = replies_len(&self.buf, count) {
                return Ok(self.buf.drain(..len).collect());
            }
            if Instant::now() >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Vec<u8>> {
        self.send(&crate::resp_cmd(args))?;
        self.read_replies(1, Duration::from_secs(5))
    }
}

/// Bytes of the first `count` complete replies in `buf`, if all are there.
fn replies_len(buf: &[u8], count: usize) -> Option<usize> {
    let mut at = 0;
    for _ in 0..count {
        at += crate::reply_len(&buf[at..]).ok()??;
    }
    Some(at)
}
