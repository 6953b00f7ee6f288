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
use std::path::PathBuf;

use crate::Listener;
use crate::upgrade::{self, Handover};

/// A listening socket passed by the service manager.
#[derive(Debug)]
pub enum Activated {
    /// A TCP socket (`ListenStream=HOST:PORT`).
    Tcp(std::net::TcpListener),
    /// A Unix stream socket (`ListenStream=/path`). The manager owns its
    /// file: ikc never removes it.
    Unix(std::os::unix::net::UnixListener),
}

/// The descriptors passed to this process by systemd's protocol: by the
/// service manager, or by the old generation of a binary upgrade
/// ([`upgrade`](crate::upgrade)). Take what you serve with its methods.
pub struct Passed {
    fds: listenfd::ListenFd,
    names: Vec<String>,
    socket_file: Option<PathBuf>,
}

/// Reads what the environment passed, and unsets `LISTEN_FDS` and
/// `LISTEN_PID`, as `sd_listen_fds` does, so that a child does not take
/// the descriptors for its own (the names mean nothing without them).
///
/// Call it before any thread starts: it changes the environment.
#[must_use]
pub fn passed() -> Passed {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let socket_file = std::env::var_os(upgrade::SOCKET_FILE).map(PathBuf::from);
    let fds = listenfd::ListenFd::from_env();
    Passed {
        fds,
        names: names.split(':').map(str::to_owned).collect(),
        socket_file,
    }
}

/// The socket the service manager passed, if it passed one: as
/// [`passed`] and then [`Passed::listener`].
///
/// Call it before any thread starts: it changes the environment.
///
/// # Errors
///
/// As [`Passed::listener`].
pub fn from_systemd() -> io::Result<Option<Activated>> {
    passed().listener()
}

impl std::fmt::Debug for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passed")
            .field("fds", &self.fds.len())
            .field("names", &self.names)
            .field("socket_file", &self.socket_file)
            .finish()
    }
}

impl Passed {
    fn index(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .filter(|index| *index < self.fds.len())
    }

    /// The listening socket to serve: the one named `ikc` in
    /// `LISTEN_FDNAMES` (`FileDescriptorName=ikc`) when there is such a
    /// name, else the first. `None` when the environment passes none (or
    /// passes them to another process: `LISTEN_PID` is not this one).
    ///
    /// # Errors
    ///
    /// When the chosen descriptor is not a listening TCP or Unix stream
    /// socket.
    pub fn listener(&mut self) -> io::Result<Option<Activated>> {
        if self.fds.len() == 0 {
            return Ok(None);
        }
        let index = self.index(upgrade::LISTENER).unwrap_or(0);
        if let Ok(Some(tcp)) = self.fds.take_tcp_listener(index) {
            return Ok(Some(Activated::Tcp(tcp)));
        }
        match self.fds.take_unix_listener(index)? {
            Some(unix) => Ok(Some(Activated::Unix(unix))),
            None => Ok(None),
        }
    }

    /// The TCP listening socket passed under `name` (`ikc-metrics` for the
    /// metrics endpoint an upgrade hands over), if any.
    ///
    /// # Errors
    ///
    /// When that descriptor is not a listening TCP socket.
    pub fn tcp_listener(&mut self, name: &str) -> io::Result<Option<std::net::TcpListener>> {
        match self.index(name) {
            Some(index) => self.fds.take_tcp_listener(index),
            None => Ok(None),
        }
    }

    /// The old generation's readiness socket when this process is the new
    /// generation of an upgrade.
    ///
    /// # Errors
    ///
    /// When the descriptor named `ikc-ready` is not a datagram socket.
    pub fn handover(&mut self) -> io::Result<Option<Handover>> {
        let Some(index) = self.index(upgrade::READY) else {
            return Ok(None);
        };
        Ok(self
            .fds
            .take_unix_datagram(index)?
            .map(|ready| Handover::new(ready, self.socket_file.take())))
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
