//! [`Listener`]: a bound TCP or Unix socket; and, for a supervisor that
//! binds before any runtime exists (a pre-forking one), the same sockets
//! bound with the standard library ([`bind_tcp_std`], [`bind_unix_std`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::error::{Error, TransportErrorKind};
use crate::io::{Io, PeerAddr};

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A Unix socket file this process created; removed on drop only if the
/// path still names the same inode (another server may have replaced it).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Left in place at drop ([`SocketFile::keep`]).
    kept: bool,
}

impl SocketFile {
    /// Takes charge of the socket file at `path`: one this process just
    /// bound, or one bound by another (the old generation of an upgrade
    /// handed it over).
    ///
    /// # Errors
    ///
    /// When there is no file at `path`.
    pub fn adopt(path: impl Into<PathBuf>) -> io::Result<SocketFile> {
        let path = path.into();
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            kept: false,
        })
    }

    /// Where the file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the file in place: another process took charge of it.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound listening socket, TCP or Unix.
#[derive(Debug)]
pub struct Listener {
    // Dropped in this order: the socket closes, then its file is removed.
    inner: Inner,
    _socket_file: Option<SocketFile>,
    addr: ListenAddr,
    /// Bound elsewhere and shared (pre-forked workers all accept on it).
    shared: bool,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds a TCP listener (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// [`TransportErrorKind::AddressInUse`] naming the address, or
    /// [`TransportErrorKind::Bind`] (permissions...).
    pub async fn bind_tcp(addr: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::bind(&addr, e))?;
        let addr = listener.local_addr().map_err(|e| Error::bind(&addr, e))?;
        Ok(Listener {
            inner: Inner::Tcp(listener),
            _socket_file: None,
            addr: ListenAddr::Tcp(addr),
            shared: false,
        })
    }

    /// Binds a Unix socket at `path`.
    ///
    /// An existing file there is probed first: a socket nobody listens on
    /// (connection refused) is stale and replaced; a live listener is
    /// [`TransportErrorKind::AddressInUse`]; anything that is not a socket is an
    /// error and is never deleted. The socket file is removed when the
    /// listener is dropped, if it is still ours.
    ///
    /// # Errors
    ///
    /// As above, and [`TransportErrorKind::Bind`] for other failures.
    pub fn bind_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let (listener, file) = bind_unix_std(path)?;
        let shown = format!("unix:{}", path.display());
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::bind(&shown, e))?;
        let listener = UnixListener::from_std(listener).map_err(|e| Error::bind(&shown, e))?;
        Ok(Listener {
            inner: Inner::Unix(listener),
            _socket_file: Some(file),
            addr: ListenAddr::Unix(path.to_owned()),
            shared: false,
        })
    }

    /// Uses a TCP listener bound elsewhere (a pre-forking supervisor binds in
    /// the parent and each worker serves the inherited socket).
    ///
    /// # Errors
    ///
    /// When the socket cannot be registered with the runtime.
    pub fn from_std_tcp(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = ListenAddr::Tcp(listener.local_addr()?);
        Ok(Listener {
            inner: Inner::Tcp(listener),
            _socket_file: None,
            addr,
            shared: true,
        })
    }

    /// Uses a Unix listener bound elsewhere. The socket file is left alone
    /// at shutdown: whoever bound it removes it.
    ///
    /// # Errors
    ///
    /// When the socket cannot be registered with the runtime.
    pub fn from_std_unix(listener: std::os::unix::net::UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()?
            .as_pathname()
            .map(Path::to_owned)
            .unwrap_or_default();
        let listener = UnixListener::from_std(listener)?;
        Ok(Listener {
            inner: Inner::Unix(listener),
            _socket_file: None,
            addr: ListenAddr::Unix(path),
            shared: true,
        })
    }

    /// The same listener, accepted on by this process alone.
    pub(crate) fn unshared(mut self) -> Self {
        self.shared = false;
        self
    }

    /// Where this listener listens (with the real port when bound to 0).
    #[must_use]
    pub fn local_addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// Whether the socket was bound elsewhere ([`from_std_tcp`](Self::from_std_tcp),
    /// [`from_std_unix`](Self::from_std_unix)) and may be shared with other
    /// processes.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Accepts the next connection.
    ///
    /// # Errors
    ///
    /// The accept error; the caller decides by its kind whether to go on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection is never lost if the future is dropped.
    pub(crate) async fn accept(&self) -> io::Result<(Io, PeerAddr)> {
        match &self.inner {
            Inner::Tcp(listener) => {
                let (stream, addr) = listener.accept().await?;
                // Requests and replies are small; do not let Nagle hold them.
                let _ = stream.set_nodelay(true);
                Ok((Io::Tcp(stream), PeerAddr::Tcp(addr)))
            }
            Inner::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Io::Unix(stream), PeerAddr::Unix))
            }
        }
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            Inner::Tcp(listener) => listener.as_fd(),
            Inner::Unix(listener) => listener.as_fd(),
        }
    }
}

/// Binds a TCP listener without a runtime (a pre-forking supervisor binds
/// in the parent, which never runs tokio).
///
/// # Errors
///
/// As [`Listener::bind_tcp`].
pub fn bind_tcp_std(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    std::net::TcpListener::bind(addr).map_err(|e| Error::bind(&addr, e))
}

/// Binds a Unix socket without a runtime, probing an existing file as
/// [`Listener::bind_unix`] does. The returned [`SocketFile`] removes the
/// socket file when dropped, if it is still ours.
///
/// # Errors
///
/// As [`Listener::bind_unix`].
pub fn bind_unix_std(path: &Path) -> Result<(std::os::unix::net::UnixListener, SocketFile), Error> {
    use std::os::unix::net::UnixListener;
    let shown = format!("unix:{}", path.display());
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_stale_socket(path, &shown)?;
            UnixListener::bind(path).map_err(|e| Error::bind(&shown, e))?
        }
        Err(e) => return Err(Error::bind(&shown, e)),
    };
    let file = SocketFile::adopt(path).map_err(|e| Error::bind(&shown, e))?;
    Ok((listener, file))
}

fn remove_stale_socket(path: &Path, shown: &str) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::bind(&shown, e))?;
    if !meta.file_type().is_socket() {
        return Err(Error::new(
            TransportErrorKind::Bind,
            format!("{shown} exists and is not a socket; not removing it"),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::new(
            TransportErrorKind::AddressInUse,
            format!("address in use: {shown} has a live listener"),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale unix socket");
            std::fs::remove_file(path).map_err(|e| Error::bind(&shown, e))
        }
        Err(e) => Err(Error::bind(&shown, e)),
    }
}

/// Accept errors that concern one connection only (the peer reset it before
/// we got it); the listener is fine.
pub(crate) fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Out of file descriptors: accepting again at once would spin.
pub(crate) fn is_fd_exhaustion(error: &io::Error) -> bool {
    let code = error.raw_os_error();
    code == Some(nix::errno::Errno::EMFILE as i32) || code == Some(nix::errno::Errno::ENFILE as i32)
}
