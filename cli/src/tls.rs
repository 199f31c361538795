//! TLS configs from PEM files, for `serve --tls-cert/--tls-key` and
//! `bench --tls`: rustls with its `ring` provider, TLS 1.2 and 1.3.

use iomux::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
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
/// How a TLS client checks the server.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Certificates signed by the CAs of this PEM file.
    Ca(std::path::PathBuf),
    /// Any certificate, unchecked (testing only).
    Insecure,
}

/// A client config trusting `trust`, with the ALPN protocols `alpn`.
///
/// # Errors
/// Says which file could not be read or holds no usable CA.
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match trust {
        Trust::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("--tls-ca", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server name a client asks for on `host` (a DNS name or an IP
/// address).
///
/// # Errors
/// `host` is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("TLS server name {host:?}: {e}"))
}

/// `--tls-insecure`: accepts any certificate, but still checks the
/// handshake's signatures (so the cost of a handshake is a real one).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client's side of a bench: its config and the name it asks for.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}
