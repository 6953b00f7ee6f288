//! Binary upgrade without dropping a connection: a running generation of
//! ikc (a single-process server or a pre-fork supervisor) starts the binary
//! on disk again, hands it the listening socket by descriptor inheritance,
//! and stops accepting and drains only once the new generation says it
//! serves.
//!
//! The old generation spawns the new one ([`NextGeneration::spawn`]) with
//! the descriptors it hands over named by systemd's socket-activation
//! protocol, so the new process takes them as it would take systemd's
//! ([`activation::passed`](crate::activation::passed)):
//!
//! | descriptor | name in `LISTEN_FDNAMES` | what it is |
//! |---|---|---|
//! | 3 | `ikc` | the listening socket, TCP or Unix |
//! | 4, ... | any other (`ikc-metrics`...) | further listening sockets the caller hands over |
//! | last | `ikc-ready` | a datagram socket: the new generation sends `ready` on it once it serves ([`Handover::ready`]) |
//!
//! `LISTEN_PID` is left unset (the old generation cannot know the new
//! pid before it exists; the `listenfd` crate skips the check then), and
//! `IKC_SOCKET_FILE` names the Unix socket file whose removal passes to
//! the new generation ([`Handover::take_socket_file`]).
//!
//! The old generation keeps serving until the `ready` arrives. If the new
//! process exits first, or is not ready within the caller's deadline, the
//! upgrade failed ([`UpgradeError`]): the old generation stops the new one
//! (SIGTERM, so whatever it accepted drains) and goes on serving.
//!
//! [`PidFile`] is the pid file that follows the generation that serves:
//! each writes its pid when it serves, and removes the file at exit only
//! while it still names it.
//!
//! | module | the idea |
//! |---|---|
//! | `next` | the old generation's side: [`Exec`], [`NextGeneration`], [`UpgradeError`] |
//! | this one | the new generation's side: [`Handover`] |
//! | `pid_file` | [`PidFile`] |

mod next;
mod pid_file;

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

pub use next::{Exec, NextGeneration, UpgradeError};
pub use pid_file::PidFile;

use crate::listener::SocketFile;

/// `LISTEN_FDNAMES` name of the listening socket.
pub const LISTENER: &str = "ikc";
/// `LISTEN_FDNAMES` name of the readiness socket.
pub(crate) const READY: &str = "ikc-ready";
/// The environment variable that names the Unix socket file handed over.
pub(crate) const SOCKET_FILE: &str = "IKC_SOCKET_FILE";
/// What the new generation sends when it serves.
pub(crate) const READY_MESSAGE: &[u8] = b"ready";

/// The new generation's side of an upgrade: how it tells the old one that
/// it serves. Taken from the environment with
/// [`activation::passed`](crate::activation::passed).
#[derive(Debug)]
pub struct Handover {
    ready: UnixDatagram,
    socket_file: Option<PathBuf>,
}

impl Handover {
    pub(crate) fn new(ready: UnixDatagram, socket_file: Option<PathBuf>) -> Handover {
        Handover { ready, socket_file }
    }

    /// The Unix socket file the old generation created, now this one's to
    /// remove when it stops (the guard removes it on drop); `None` for TCP
    /// or a socket file someone else (systemd) owns.
    ///
    /// # Errors
    ///
    /// When the file is no longer there.
    pub fn take_socket_file(&mut self) -> io::Result<Option<SocketFile>> {
        self.socket_file.take().map(SocketFile::adopt).transpose()
    }

    /// Tells the old generation that this one serves: it stops accepting
    /// and drains.
    ///
    /// # Errors
    ///
    /// When the old generation is gone (it gave up waiting).
    pub fn ready(self) -> io::Result<()> {
        self.ready.send(READY_MESSAGE).map(drop)
    }
}
