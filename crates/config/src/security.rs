//! ncproxy's TLS and health keys (extensions nutcracker rejects as unknown):
//! `tls_cert`/`tls_key`/`tls_client_ca` (the listener speaks TLS),
//! `server_tls`/`server_tls_ca`/`server_tls_cert`/`server_tls_key`/
//! `server_tls_name` (backend connections speak TLS),
//! `health_check_interval` (active checks) and `auto_eject_drop`.
//!
//! Only the keys and their combinations are checked here; the PEM files are
//! read (and their errors reported) when the proxy starts or reloads.

use std::path::PathBuf;

use crate::conf::{set_bool, set_num, SetError, DIRECTIVE_LINE};
use crate::error::{ConfigError, ConfigErrorKind, LogLine};
use crate::{Server, ServerAddr};

/// `tls_cert` + `tls_key` (+ `tls_client_ca`): the listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    /// PEM certificate chain the listener presents.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
}

/// `server_tls: true` and its keys: how backend connections speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM CA bundle that verifies the servers' certificates.
    pub ca: PathBuf,
    /// PEM client certificate and key presented to the servers.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name verified in every server's certificate; `None`: each
    /// server's own host.
    pub name: Option<String>,
}

/// The extension keys while a pool's directives are read; `None` is unset.
#[derive(Default)]
pub(crate) struct SecurityKeys {
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_client_ca: Option<String>,
    server_tls: Option<bool>,
    server_tls_ca: Option<String>,
    server_tls_cert: Option<String>,
    server_tls_key: Option<String>,
    server_tls_name: Option<String>,
    health_check_interval: Option<i32>,
    auto_eject_drop: Option<bool>,
}

/// What the extension keys come to for one pool.
pub(crate) struct Security {
    pub(crate) tls: Option<ListenTls>,
    pub(crate) server_tls: Option<ServerTls>,
    pub(crate) health_check_interval_ms: u64,
    pub(crate) auto_eject_drop: bool,
}

fn set_text(field: &mut Option<String>, value: &str) -> Result<(), SetError> {
    if field.is_some() {
        return Err(SetError::Invalid(crate::conf::DUPLICATE.to_owned()));
    }
    *field = Some(value.to_owned());
    Ok(())
}

fn problem(path: &str, message: String) -> ConfigError {
    ConfigError::one(
        path,
        ConfigErrorKind::Validation,
        LogLine::conf(DIRECTIVE_LINE, message),
    )
}

impl SecurityKeys {
    /// One directive; `Ok(false)` when the key is not one of these.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<bool, SetError> {
        match key {
            "tls_cert" => set_text(&mut self.tls_cert, value)?,
            "tls_key" => set_text(&mut self.tls_key, value)?,
            "tls_client_ca" => set_text(&mut self.tls_client_ca, value)?,
            "server_tls" => set_bool(&mut self.server_tls, value)?,
            "server_tls_ca" => set_text(&mut self.server_tls_ca, value)?,
            "server_tls_cert" => set_text(&mut self.server_tls_cert, value)?,
            "server_tls_key" => set_text(&mut self.server_tls_key, value)?,
            "server_tls_name" => set_text(&mut self.server_tls_name, value)?,
            "health_check_interval" => set_num(&mut self.health_check_interval, value)?,
            "auto_eject_drop" => set_bool(&mut self.auto_eject_drop, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the combinations (in the style of conf_validate_pool).
    pub(crate) fn validate(self, path: &str, servers: &[Server]) -> Result<Security, ConfigError> {
        let needs =
            |a: &str, b: &str| problem(path, format!("conf: directive \"{a}:\" needs \"{b}:\""));
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(ListenTls {
                cert: cert.into(),
                key: key.into(),
                client_ca: self.tls_client_ca.map(PathBuf::from),
            }),
            (Some(_), None) => return Err(needs("tls_cert", "tls_key")),
            (None, Some(_)) => return Err(needs("tls_key", "tls_cert")),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(needs("tls_client_ca", "tls_cert"))
            }
            (None, None) => None,
        };
        let server_tls = if self.server_tls == Some(true) {
            let Some(ca) = self.server_tls_ca else {
                return Err(problem(
                    path,
                    "conf: directive \"server_tls_ca:\" is missing".to_owned(),
                ));
            };
            let client_cert = match (self.server_tls_cert, self.server_tls_key) {
                (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                (Some(_), None) => return Err(needs("server_tls_cert", "server_tls_key")),
                (None, Some(_)) => return Err(needs("server_tls_key", "server_tls_cert")),
                (None, None) => None,
            };
            let unix = servers
                .iter()
                .any(|s| matches!(s.addr, ServerAddr::Unix(_)));
            if unix && self.server_tls_name.is_none() {
                return Err(problem(
                    path,
                    "conf: directive \"server_tls_name:\" is missing (unix socket servers have no host name)"
                        .to_owned(),
                ));
            }
            Some(ServerTls {
                ca: ca.into(),
                client_cert,
                name: self.server_tls_name,
            })
        } else {
            let stray = [
                ("server_tls_ca", &self.server_tls_ca),
                ("server_tls_cert", &self.server_tls_cert),
                ("server_tls_key", &self.server_tls_key),
                ("server_tls_name", &self.server_tls_name),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, v)| v.is_some()) {
                return Err(problem(
                    path,
                    format!("conf: directive \"{key}:\" is only valid with \"server_tls: true\""),
                ));
            }
            None
        };
        Ok(Security {
            tls,
            server_tls,
            health_check_interval_ms: self.health_check_interval.map_or(0, |n| n as u64),
            auto_eject_drop: self.auto_eject_drop.unwrap_or(true),
        })
    }
}
