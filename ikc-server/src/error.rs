//! [`Error`]: why a server or client could not start or connect.

use std::fmt;
use std::io;

use crate::BoxError;

/// Why a server could not start, or a client could not connect.
///
/// Opaque, in the manner of tonic's transport error: [`Error::kind`] says
/// what went wrong, `source()` carries the cause.
#[derive(Debug)]
pub struct Error {
    kind: TransportErrorKind,
    context: String,
    source: Option<BoxError>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The address is already in use (EADDRINUSE, or a live Unix socket).
    AddressInUse,
    /// Binding or listening failed for another reason (permissions...).
    Bind,
    /// Connecting to the server failed.
    Connect,
    /// The handshake failed: bad or no answer, or a timeout.
    Handshake,
    /// The server refused the handshake (`Refuse`).
    Refused,
    /// The peer speaks another protocol version.
    Version,
    /// The server refused the handshake because it is shutting down (a
    /// draining pre-forked worker, a restart): connecting again reaches
    /// one that is not.
    ShuttingDown,
    /// An invalid setting or address.
    Config,
    /// The client's connect timeout
    /// ([`ClientBuilder::connect_timeout`](crate::client::ClientBuilder::connect_timeout))
    /// passed before the connection was up: the server never answered the
    /// connect, the TLS handshake or the ikc handshake in time.
    Timeout,
}

impl Error {
    pub(crate) fn new(kind: TransportErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn bind(addr: &dyn fmt::Display, error: io::Error) -> Self {
        let kind = if error.kind() == io::ErrorKind::AddrInUse {
            TransportErrorKind::AddressInUse
        } else {
            TransportErrorKind::Bind
        };
        let what = if kind == TransportErrorKind::AddressInUse {
            "address in use"
        } else {
            "cannot listen"
        };
        Error::new(kind, format!("{what}: {addr}")).with_source(error)
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
