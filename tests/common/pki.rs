//! Certificates made at test time, as PEM files: a CA, and an ECDSA P-256
//! certificate it signed for `localhost` and 127.0.0.1, with its key; and
//! blocking rustls clients that trust the CA.

use iomux::rustls;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

/// The files of one test's certificates, in a directory of their own.
pub struct Pki {
    pub dir: PathBuf,
    /// The server's chain (its certificate, then the CA's).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's certificate alone.
    pub ca: PathBuf,
    pub client: Arc<ClientConfig>,
}

impl Pki {
    /// Makes the certificates of test `name` (a directory under the
    /// system's temporary one).
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("iomux-pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let (ca, roots) = test_ca();
        let (leaf, key) = signed_by(&ca, &["localhost", "127.0.0.1"]);
        let pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            client: client_config(roots, &[b"http/1.1"]),
            dir,
        };
        std::fs::write(&pki.cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        pki
    }

    /// The certificate and key files as `serve`'s flags.
    pub fn serve_flags(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A blocking TLS client of `addr` (checking the name `localhost`),
    /// with read and write timeouts.
    pub fn connect(&self, addr: SocketAddr) -> TlsClient {
        let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        super::set_timeouts(&tcp, super::IO_TIMEOUT);
        let name = ServerName::try_from("localhost").unwrap();
        let session = ClientConnection::new(Arc::clone(&self.client), name).unwrap();
        StreamOwned::new(session, tcp)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking rustls client over TCP.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Reads `client` to the end of its TLS stream: the bytes, and the error
/// that ended it if it was not a `close_notify` (rustls reports a TCP end
/// without one as `UnexpectedEof`).
pub fn read_to_close_notify<S: std::io::Read + std::io::Write>(
    client: &mut StreamOwned<ClientConnection, S>,
) -> (Vec<u8>, Option<std::io::Error>) {
    use std::io::Read;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return (data, None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (data, Some(e)),
        }
    }
}

/// A server config with a certificate for `localhost` signed by a CA made
/// here, in memory, and a client config that trusts that CA (no ALPN);
/// made once per test process.
pub fn in_memory() -> &'static (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: std::sync::OnceLock<(Arc<rustls::ServerConfig>, Arc<ClientConfig>)> =
        std::sync::OnceLock::new();
    CONFIGS.get_or_init(|| {
        let (ca, roots) = test_ca();
        let (leaf, key) = signed_by(&ca, &["localhost"]);
        (
            server_config(&ca, &leaf, &key, &[]),
            client_config(roots, &[]),
        )
    })
}

/// A CA made here, and the roots that trust it.
pub fn test_ca() -> (
    rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    rustls::RootCertStore,
) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "iomux test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    (ca, roots)
}

/// An ECDSA P-256 certificate for `names`, signed by `ca`, and its key.
pub fn signed_by(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    names: &[&str],
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (leaf, key)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting `leaf` (then the CA's certificate) with
/// `key`, offering the `alpn` protocols.
pub fn server_config(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    leaf: &rcgen::Certificate,
    key: &rcgen::KeyPair,
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client config trusting `roots`, offering the `alpn` protocols.
pub fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
