//! TLS configs from PEM files, for `serve --tls-cert/--tls-key` and
//! `bench --tls`: rustls with its `ring` provider, TLS 1.2 and 1.3.

use iomux::rustls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the PEM file `path` (the value of `flag`): at
/// least one.
fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: String| format!("{flag} {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(pem_error(e)))?;
    if chain.is_empty() {
        return Err(what(
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

/// What went wrong reading a PEM file, said plainly.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => format!("cannot read it: {e}"),
        Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// A server config from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), with the ALPN protocols `alpn` (most
/// preferred first).
///
/// # Errors
/// Says which file could not be read or parsed, or that the key does not
/// match the certificate, naming the flag.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates("--tls-cert", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let e = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----)".into()
            }
            other => pem_error(other),
        };
        format!("--tls-key {}: {e}", key.display())
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "--tls-cert {} with --tls-key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
