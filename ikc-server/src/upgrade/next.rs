//! The old generation's side of an upgrade: the binary to start again
//! ([`Exec`]), the new process until it says it serves
//! ([`NextGeneration`]), and why an upgrade failed ([`UpgradeError`]).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{READY, READY_MESSAGE, SOCKET_FILE};

/// The first descriptor systemd's protocol passes.
const FIRST_FD: i32 = 3;

/// The program an upgrade starts: this process's binary and arguments as
/// it started.
#[derive(Debug, Clone)]
pub struct Exec {
    program: PathBuf,
    arg0: OsString,
    args: Vec<OsString>,
}

impl Exec {
    /// This process's binary and arguments. Call it at start-up: once an
    /// upgrade replaced the file, `/proc/self/exe` names the deleted one,
    /// while the path taken now names whatever the operator installed
    /// there since.
    ///
    /// # Errors
    ///
    /// When the path of the running binary cannot be read.
    pub fn current() -> io::Result<Exec> {
        let program = std::env::current_exe()?;
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| program.clone().into());
        Ok(Exec {
            program,
            arg0,
            args: args.collect(),
        })
    }

    /// The binary this upgrade starts.
    #[must_use]
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// Why an upgrade failed. The old generation keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The binary could not be started.
    #[error("cannot start {program}: {source}", program = program.display())]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The new process exited before it said it serves.
    #[error("the new generation (pid {pid}) exited before it was ready ({status})")]
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended, as `waitpid` told.
        status: String,
    },
    /// The new process did not say it serves in time; it is stopped.
    #[error("the new generation (pid {pid}) was not ready within {within:?}; stopping it")]
    NotReady {
        /// Its pid.
        pid: u32,
        /// The deadline it missed.
        within: Duration,
    },
}

/// A new generation, started and not yet serving.
#[derive(Debug)]
pub struct NextGeneration {
    child: Child,
    ready: UnixDatagram,
    /// How long it has to serve, from its start.
    within: Duration,
    started: Instant,
}

impl NextGeneration {
    /// Starts `exec` with `sockets` (name and descriptor; the first is the
    /// listening socket, named [`LISTENER`](super::LISTENER)) as descriptors 3 and up, and
    /// the readiness socket after them. `socket_file` is the Unix socket
    /// file whose removal passes to the new generation; `within` is how
    /// long it has to serve.
    ///
    /// # Errors
    ///
    /// [`UpgradeError::Spawn`].
    pub fn spawn(
        exec: &Exec,
        sockets: &[(&str, BorrowedFd<'_>)],
        socket_file: Option<&Path>,
        within: Duration,
    ) -> Result<NextGeneration, UpgradeError> {
        let failed = |source| UpgradeError::Spawn {
            program: exec.program.clone(),
            source,
        };
        let (ready, theirs) = UnixDatagram::pair().map_err(failed)?;
        ready.set_nonblocking(true).map_err(failed)?;
        let mut names: Vec<&str> = sockets.iter().map(|(name, _)| *name).collect();
        names.push(READY);
        let mut mappings = Vec::with_capacity(names.len());
        for (fd, (_, socket)) in (FIRST_FD..).zip(sockets) {
            mappings.push(FdMapping {
                parent_fd: socket.try_clone_to_owned().map_err(failed)?,
                child_fd: fd,
            });
        }
        mappings.push(FdMapping {
            parent_fd: OwnedFd::from(theirs),
            child_fd: FIRST_FD + i32::try_from(sockets.len()).unwrap_or(i32::MAX - FIRST_FD),
        });
        let mut command = Command::new(&exec.program);
        command
            .arg0(&exec.arg0)
            .args(&exec.args)
            .env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS_FIRST_FD");
        match socket_file {
            Some(path) => command.env(SOCKET_FILE, path),
            None => command.env_remove(SOCKET_FILE),
        };
        command
            .fd_mappings(mappings)
            .map_err(|collision| failed(io::Error::other(collision)))?;
        let child = command.spawn().map_err(failed)?;
        Ok(NextGeneration {
            child,
            ready,
            within,
            started: Instant::now(),
        })
    }

    /// The new process's pid.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the new generation is done starting, without blocking:
    /// `None` while it starts, `Some(Ok(()))` once it serves,
    /// `Some(Err(_))` when it exited first or its time ran out (then it
    /// gets SIGTERM, so that whatever it accepted drains, and the caller
    /// reaps it). Wait for the descriptor ([`AsFd`]) to become readable, or
    /// a moment, between two calls.
    pub fn poll(&mut self) -> Option<Result<(), UpgradeError>> {
        let mut buf = [0_u8; 16];
        if let Ok(n) = self.ready.recv(&mut buf) {
            if buf.get(..n) == Some(READY_MESSAGE) {
                return Some(Ok(()));
            }
        }
        match self.child.try_wait() {
            Ok(None) if self.started.elapsed() > self.within => {
                self.terminate();
                Some(Err(UpgradeError::NotReady {
                    pid: self.id(),
                    within: self.within,
                }))
            }
            Ok(None) => None,
            Ok(Some(status)) => Some(Err(self.exited(&status))),
            Err(error) => Some(Err(UpgradeError::Exited {
                pid: self.id(),
                status: error.to_string(),
            })),
        }
    }

    /// The error for a new process that ended with `status` (reaped by
    /// the caller's own `waitpid`).
    #[must_use]
    pub fn exited(&self, status: &dyn std::fmt::Display) -> UpgradeError {
        UpgradeError::Exited {
            pid: self.id(),
            status: status.to_string(),
        }
    }

    /// Gives up on the new generation: SIGTERM, so that whatever it
    /// accepted drains. Returns the process for the caller to reap.
    #[must_use = "the process must be reaped"]
    pub fn abandon(self) -> Child {
        self.terminate();
        self.child
    }

    fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Waits until the new generation serves, at most the `within` it was
    /// spawned with; one that ran out of time is reaped in the background.
    ///
    /// # Errors
    ///
    /// [`UpgradeError::Exited`] and [`UpgradeError::NotReady`].
    pub async fn ready(mut self) -> Result<(), UpgradeError> {
        // An upgrade is rare and takes seconds: a readiness check every
        // 20 ms costs nothing and needs no child-process reactor.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            match self.poll() {
                None => {}
                Some(Err(error @ UpgradeError::NotReady { .. })) => {
                    let mut child = self.child;
                    tokio::task::spawn_blocking(move || child.wait());
                    return Err(error);
                }
                Some(done) => return done,
            }
        }
    }
}

impl AsFd for NextGeneration {
    /// The readiness socket: readable when the new generation says it
    /// serves.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }
}
