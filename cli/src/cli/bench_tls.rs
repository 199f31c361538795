//! `iomux bench`'s TLS flags (`--tls`, `--tls-ca`, `--tls-insecure`,
//! `--tls-name`) and `--new-conn`, a new connection per request.

use crate::bench::Mode;
use crate::tls::{ClientTls, Trust};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Connect over TLS (rustls, TLS 1.2 or 1.3), trusting --tls-ca or,
    /// with --tls-insecure, any certificate.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificates (or the self-signed certificate)
    /// to trust.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        conflicts_with = "tls_insecure"
    )]
    pub tls_ca: Option<PathBuf>,
    /// Accept any server certificate (testing only; signatures are still
    /// checked).
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,
    /// The server name to ask for and check [default: the host of --addr;
    /// localhost for a unix: address].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_name: Option<String>,
    /// A new connection for every request (with --tls a full handshake
    /// each): measures connections (handshakes) per second. --conns of
    /// them at a time, each closed once its response is whole; latency is
    /// the whole cycle (connect, handshake, request, reply). A closed loop
    /// only: no --rate.
    #[arg(long, conflicts_with_all = ["pipeline", "rate", "idle", "requests", "heavy", "connect_rate"])]
    pub new_conn: bool,
}

impl TlsArgs {
    /// The TLS side of a bench of `target` (`HOST:PORT`, `unix:...`) in
    /// `mode`, if --tls: ALPN `http/1.1` in http mode.
    pub fn client(&self, target: &str, mode: &Mode) -> Result<Option<ClientTls>, String> {
        if !self.tls {
            return Ok(None);
        }
        let trust = match (&self.tls_ca, self.tls_insecure) {
            (Some(ca), _) => Trust::Ca(ca.clone()),
            (None, true) => Trust::Insecure,
            (None, false) => {
                return Err("--tls needs --tls-ca FILE (the CA to trust) or --tls-insecure".into());
            }
        };
        let alpn: &[&[u8]] = if mode.name() == "http" {
            &[b"http/1.1"]
        } else {
            &[]
        };
        let config = crate::tls::client_config(&trust, alpn)?;
        let host = match &self.tls_name {
            Some(name) => name.clone(),
            None => default_name(target),
        };
        let name = crate::tls::server_name(&host).map_err(|e| format!("{e} (give --tls-name)"))?;
        Ok(Some(ClientTls { config, name }))
    }
}

/// The host of `HOST:PORT` (`[::1]:443` gives `::1`); `localhost` for a
/// Unix-domain address.
fn default_name(target: &str) -> String {
    if target.starts_with("unix:") {
        return "localhost".into();
    }
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::default_name;

    #[test]
    fn the_default_name_is_the_host() {
        assert_eq!(default_name("localhost:8443"), "localhost");
        assert_eq!(default_name("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(default_name("[::1]:8443"), "::1");
        assert_eq!(default_name("unix:/tmp/s.sock"), "localhost");
    }
}
