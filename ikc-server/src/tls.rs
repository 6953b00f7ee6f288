//! TLS for TCP connections, with tokio-rustls.
//!
//! A server given [`ServerTls`] (its certificate chain and key) runs the TLS
//! handshake on every accepted TCP connection before the ikc preface, within
//! its handshake timeout
//! ([`Server::handshake_timeout`](crate::Server::handshake_timeout)); a
//! client given [`ClientTls`] (the roots it trusts) does the same after it
//! connects, checking the server's certificate against the host or IP
//! address it dialled, within its connect timeout
//! ([`ClientBuilder::connect_timeout`](crate::client::ClientBuilder::connect_timeout),
//! which bounds the connect, the TLS handshake and the ikc handshake
//! together). Unix sockets are not wrapped:
//! file permissions guard them. TLS and the shared secret
//! ([`auth`](crate::auth)) combine: TLS hides the traffic, the secret proves
//! the client.
//!
//! Mutual TLS: a server given the CA its clients' certificates must lead to
//! ([`ServerTls::client_ca_pem`]) requires and verifies a certificate from
//! every TCP client; a client presents one with [`ClientTls::identity_pem`].
//! The verified certificate's subject and SANs become the peer's
//! [`Identity`](ikc_core::Identity), for access policies.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use ikc_core::Certificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::extensions::GeneralName;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: &str, error: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {error}"))
}

/// A server's TLS identity: its certificate chain and private key, and
/// the CA its clients' certificates must lead to when it requires them.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    certs: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

impl ServerTls {
    /// From a PEM certificate chain and a PEM private key.
    ///
    /// # Errors
    ///
    /// When the PEM is not a certificate chain and a key that fit together.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<Self> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("bad certificate PEM", e))?;
        if certs.is_empty() {
            return Err(invalid("bad certificate PEM", "no certificate found"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("bad private key PEM", e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS set-up", e))?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| invalid("certificate and key", e))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certs,
            key: Arc::new(key),
        })
    }

    /// Requires every client to present a certificate that leads to one of
    /// the PEM certificates in `ca` (mutual TLS); a client without one
    /// fails the TLS handshake. The certificate becomes the peer's
    /// identity (see [the module docs](self)).
    ///
    /// # Errors
    ///
    /// When the PEM holds no usable CA certificate.
    pub fn client_ca_pem(self, ca: &[u8]) -> io::Result<Self> {
        let roots = Arc::new(root_store(ca)?);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| invalid("client CA", e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS set-up", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| invalid("certificate and key", e))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ..self
        })
    }

    /// [`client_ca_pem`](Self::client_ca_pem) from a file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or as `client_ca_pem`.
    pub fn client_ca_pem_file(self, ca: impl AsRef<Path>) -> io::Result<Self> {
        self.client_ca_pem(&std::fs::read(ca)?)
    }

    /// From PEM files: the certificate chain and the private key.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, or as [`from_pem`](Self::from_pem).
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_pem(&std::fs::read(cert_chain)?, &std::fs::read(key)?)
    }

    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// What a client trusts: the root certificates a server's chain must lead
/// to; and, for a server that requires one, the client's own certificate.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    roots: Arc<rustls::RootCertStore>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls(..)")
    }
}

impl ClientTls {
    /// Trusts the PEM certificates in `roots` (a CA, or a server's own
    /// self-signed certificate).
    ///
    /// # Errors
    ///
    /// When the PEM holds no usable certificate.
    pub fn from_pem(roots: &[u8]) -> io::Result<Self> {
        let roots = Arc::new(root_store(roots)?);
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS set-up", e))?
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            roots,
        })
    }

    /// Presents the PEM certificate chain `cert_chain` with its PEM private
    /// `key` to a server that requires client certificates (mutual TLS).
    ///
    /// # Errors
    ///
    /// When the PEM is not a certificate chain and a key that fit together.
    pub fn identity_pem(self, cert_chain: &[u8], key: &[u8]) -> io::Result<Self> {
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("bad certificate PEM", e))?;
        if certs.is_empty() {
            return Err(invalid("bad certificate PEM", "no certificate found"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("bad private key PEM", e))?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS set-up", e))?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(certs, key)
            .map_err(|e| invalid("client certificate and key", e))?;
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            ..self
        })
    }

    /// [`identity_pem`](Self::identity_pem) from PEM files.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, or as `identity_pem`.
    pub fn identity_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> io::Result<Self> {
        self.identity_pem(&std::fs::read(cert_chain)?, &std::fs::read(key)?)
    }

    /// Trusts the PEM certificates in the file at `roots`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or as [`from_pem`](Self::from_pem).
    pub fn from_pem_file(roots: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_pem(&std::fs::read(roots)?)
    }

    /// Runs the TLS handshake on `stream` to `host` (the name or IP address
    /// the client dialled, which the certificate must name).
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| invalid("server name", e))?;
        self.connector.connect(name, stream).await
    }
}

/// The certificates in PEM `pem`, as a root store.
fn root_store(pem: &[u8]) -> io::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid("bad certificate PEM", e))?;
        store
            .add(cert)
            .map_err(|e| invalid("unusable root certificate", e))?;
    }
    if store.is_empty() {
        return Err(invalid("bad certificate PEM", "no certificate found"));
    }
    Ok(store)
}

/// The verified client certificate of an accepted TLS stream, as an
/// identity sees it: its subject and subject alternative names.
pub(crate) fn client_certificate(
    stream: &tokio_rustls::server::TlsStream<TcpStream>,
) -> Option<Certificate> {
    let der = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
                GeneralName::URI(uri) => sans.push((*uri).to_owned()),
                GeneralName::RFC822Name(mail) => sans.push((*mail).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_text(bytes) {
                        sans.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Some(Certificate::new(cert.subject().to_string(), sans))
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_string())
}
