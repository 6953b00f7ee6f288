//! Socket activation: the listening socket a service manager hands the
//! process, by systemd's protocol (`LISTEN_FDS` descriptors from 3 on,
//! `LISTEN_PID` naming the process they are for, `LISTEN_FDNAMES` their
//! names), read with the `listenfd` crate.
//!
//! With activation, the manager holds the socket across restarts of the
//! service: connection attempts made while ikc restarts wait in its
//! backlog instead of being refused. A `.socket` and `.service` pair:
//!
//! ```ini
//! # /etc/systemd/system/ikc.socket
//! [Socket]
//! ListenStream=127.0.0.1:6030
//! # or a Unix socket: ListenStream=/run/ikc.sock
//! FileDescriptorName=ikc
//!
//! [Install]
//! WantedBy=sockets.target
//!
//! # /etc/systemd/system/ikc.service
//! [Unit]
//! Requires=ikc.socket
//!
//! [Service]
//! ExecStart=/usr/local/bin/ikc serve --workers 4
//! KillSignal=SIGTERM
//! ```
//!
//! `ikc serve` (one process or `--workers N`) serves the activated socket
//! when there is one, in place of `--bind`/`--unix`. From Rust:
//! [`from_systemd`] in `main` before any thread starts (it unsets
//! `LISTEN_FDS` and `LISTEN_PID`, as `sd_listen_fds` does, so a child does
//! not take the socket for its own), then [`Listener::activated`] inside
//! the runtime, or `ikc_prefork::Bound::activated` for a supervisor.

use std::io;

use crate::Listener;

/// A listening socket passed by the service manager.
#[derive(Debug)]
pub enum Activated {
    /// A TCP socket (`ListenStream=HOST:PORT`).
    Tcp(std::net::TcpListener),
    /// A Unix stream socket (`ListenStream=/path`). The manager owns its
    /// file: ikc never removes it.
    Unix(std::os::unix::net::UnixListener),
}

/// The socket the service manager passed, if it passed one: the one named
/// `ikc` in `LISTEN_FDNAMES` (`FileDescriptorName=ikc`) when there is such
/// a name, else the first. `None` when the environment passes none (or
/// passes them to another process: `LISTEN_PID` is not this one).
///
/// Call it before any thread starts: it changes the environment.
///
/// # Errors
///
/// When the chosen descriptor is not a listening TCP or Unix stream socket.
pub fn from_systemd() -> io::Result<Option<Activated>> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let index = names.split(':').position(|name| name == "ikc").unwrap_or(0);
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    if let Ok(Some(tcp)) = fds.take_tcp_listener(index) {
        return Ok(Some(Activated::Tcp(tcp)));
    }
    match fds.take_unix_listener(index)? {
        Some(unix) => Ok(Some(Activated::Unix(unix))),
        None => Ok(None),
    }
}

impl Listener {
    /// Serves an [`Activated`] socket. This process is its only acceptor,
    /// as with a socket it bound itself.
    ///
    /// # Errors
    ///
    /// When the socket cannot be registered with the runtime.
    pub fn activated(socket: Activated) -> io::Result<Listener> {
        let listener = match socket {
            Activated::Tcp(tcp) => Listener::from_std_tcp(tcp)?,
            Activated::Unix(unix) => Listener::from_std_unix(unix)?,
        };
        Ok(listener.unshared())
    }
}
