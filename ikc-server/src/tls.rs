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

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: &str, error: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {error}"))
}

/// A server's TLS identity: its certificate chain and private key.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
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
            .with_single_cert(certs, key)
            .map_err(|e| invalid("certificate and key", e))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
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

/// What a client trusts: the root certificates a server's chain must lead to.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
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
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(roots) {
            let cert = cert.map_err(|e| invalid("bad certificate PEM", e))?;
            store
                .add(cert)
                .map_err(|e| invalid("unusable root certificate", e))?;
        }
        if store.is_empty() {
            return Err(invalid("bad certificate PEM", "no certificate found"));
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS set-up", e))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
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
