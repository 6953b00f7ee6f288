//! The streams a connection runs over: [`Connected`], what a stream says
//! of its peer, and the crate's own stream type over the kinds it serves.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ikc_core::{Identity, UnixCredentials};
use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A stream a server can serve a connection over
/// ([`ServerHandle::serve_connection`](crate::ServerHandle::serve_connection)),
/// and what it knows of its peer, as tonic's `Connected`.
///
/// Implemented for TCP and Unix streams and tokio's in-memory
/// [`DuplexStream`]; implement it for a stream of your own (a tunnel, a
/// stream from a socket activation or an upgrade) to serve it.
pub trait Connected: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Who is at the other end, for logs.
    fn peer_addr(&self) -> PeerAddr;

    /// What the stream proves of its peer (the credentials of a Unix
    /// socket, say), which becomes part of the peer's [`Identity`]. By
    /// default nothing: the server adds the address, the shared-secret key
    /// and the TLS certificate itself.
    fn peer_identity(&self) -> Identity {
        Identity::default()
    }
}

impl Connected for TcpStream {
    fn peer_addr(&self) -> PeerAddr {
        TcpStream::peer_addr(self).map_or(PeerAddr::Other, PeerAddr::Tcp)
    }
}

impl Connected for UnixStream {
    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Unix
    }

    /// The peer process's uid, gid and pid, from the operating system.
    fn peer_identity(&self) -> Identity {
        match self.peer_cred() {
            Ok(cred) => Identity::default().with_unix(UnixCredentials::new(
                cred.uid(),
                cred.gid(),
                cred.pid(),
            )),
            Err(error) => {
                tracing::debug!(%error, "no credentials for a Unix socket peer");
                Identity::default()
            }
        }
    }
}

impl Connected for DuplexStream {
    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Other
    }
}

/// Who connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix socket peer (usually unnamed).
    Unix,
    /// A stream of the caller's own (see [`Connected`]) whose peer has no
    /// socket address: an in-memory pipe, a tunnel.
    Other,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            PeerAddr::Unix => f.write_str("unix"),
            PeerAddr::Other => f.write_str("other"),
        }
    }
}

/// A connected stream: TCP, Unix, TLS over TCP, or one of the caller's
/// own. The sockets are variants, so the request path reads and writes
/// them without dynamic dispatch; only a stream of the caller's own is
/// boxed.
#[pin_project(project = IoProj)]
pub(crate) enum Io {
    /// A TCP stream.
    Tcp(#[pin] TcpStream),
    /// A Unix stream.
    Unix(#[pin] UnixStream),
    /// A TLS stream accepted by a server.
    #[cfg(feature = "tls")]
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A TLS stream opened by a client.
    #[cfg(feature = "tls")]
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A stream of the caller's own, from [`serve_connection`](crate::ServerHandle::serve_connection).
    Other(Box<dyn Connected>),
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Io::Tcp(_) => "Io::Tcp",
            Io::Unix(_) => "Io::Unix",
            #[cfg(feature = "tls")]
            Io::TlsServer(_) => "Io::TlsServer",
            #[cfg(feature = "tls")]
            Io::TlsClient(_) => "Io::TlsClient",
            Io::Other(_) => "Io::Other",
        })
    }
}

impl Io {
    /// What the connection proves of its peer at `addr`: its address, its
    /// Unix credentials, its verified TLS client certificate.
    pub(crate) fn identity(&self, addr: &PeerAddr) -> Identity {
        let identity = match self {
            Io::Tcp(_) => Identity::default(),
            Io::Unix(unix) => unix.peer_identity(),
            #[cfg(feature = "tls")]
            Io::TlsServer(tls) => match crate::tls::client_certificate(tls) {
                Some(certificate) => Identity::default().with_certificate(certificate),
                None => Identity::default(),
            },
            #[cfg(feature = "tls")]
            Io::TlsClient(_) => Identity::default(),
            Io::Other(other) => other.peer_identity(),
        };
        identity.with_addr(addr.to_string())
    }

    /// `io` as the variant of its kind: a TCP or Unix socket of the
    /// caller's goes the sockets' way (TLS included), anything else boxed.
    pub(crate) fn from_connected<C: Connected>(io: C) -> Io {
        let io: Box<dyn Any> = Box::new(io);
        let io = match io.downcast::<TcpStream>() {
            Ok(tcp) => return Io::Tcp(*tcp),
            Err(io) => io,
        };
        let io = match io.downcast::<UnixStream>() {
            Ok(unix) => return Io::Unix(*unix),
            Err(io) => io,
        };
        match io.downcast::<C>() {
            Ok(io) => Io::Other(io),
            Err(_) => unreachable!("the box holds a C"),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.project() {
            IoProj::Tcp(s) => s.poll_read(cx, buf),
            IoProj::Unix(s) => s.poll_read(cx, buf),
            #[cfg(feature = "tls")]
            IoProj::TlsServer(s) => Pin::new(&mut **s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            IoProj::TlsClient(s) => Pin::new(&mut **s).poll_read(cx, buf),
            IoProj::Other(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            IoProj::Tcp(s) => s.poll_write(cx, buf),
            IoProj::Unix(s) => s.poll_write(cx, buf),
            #[cfg(feature = "tls")]
            IoProj::TlsServer(s) => Pin::new(&mut **s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            IoProj::TlsClient(s) => Pin::new(&mut **s).poll_write(cx, buf),
            IoProj::Other(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            IoProj::Tcp(s) => s.poll_write_vectored(cx, bufs),
            IoProj::Unix(s) => s.poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            IoProj::TlsServer(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            IoProj::TlsClient(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            IoProj::Other(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Io::TlsServer(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Io::TlsClient(s) => s.is_write_vectored(),
            Io::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            IoProj::Tcp(s) => s.poll_flush(cx),
            IoProj::Unix(s) => s.poll_flush(cx),
            #[cfg(feature = "tls")]
            IoProj::TlsServer(s) => Pin::new(&mut **s).poll_flush(cx),
            #[cfg(feature = "tls")]
            IoProj::TlsClient(s) => Pin::new(&mut **s).poll_flush(cx),
            IoProj::Other(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            IoProj::Tcp(s) => s.poll_shutdown(cx),
            IoProj::Unix(s) => s.poll_shutdown(cx),
            #[cfg(feature = "tls")]
            IoProj::TlsServer(s) => Pin::new(&mut **s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            IoProj::TlsClient(s) => Pin::new(&mut **s).poll_shutdown(cx),
            IoProj::Other(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A connection as the connection layers ([`trace`](crate::trace),
/// [`shutdown`](crate::shutdown), [`limit`](crate::limit)) see it: who
/// connected, and how it hears that it should close. The layers serve any
/// type that is one, as tower's layers serve any request type; the
/// server's [`Connection`](crate::Connection) is the one ikc serves.
pub trait ServedConnection {
    /// Who connected.
    fn peer_addr(&self) -> &PeerAddr;

    /// `token` is cancelled when the connection should close gracefully:
    /// send `GoAway`, finish running requests, close.
    fn set_drain(&mut self, token: tokio_util::sync::CancellationToken);

    /// `token` is cancelled when the connection must close now.
    fn set_abort(&mut self, token: tokio_util::sync::CancellationToken);
}
