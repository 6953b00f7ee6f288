//! The supervisor's signals: flags set by signal-hook handlers, and a wake
//! pipe that makes the supervisor's `poll` return when one arrives.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use signal_hook::SigId;

/// Every signal the supervisor handles.
pub(crate) const HANDLED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

/// Signals received since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) stop: bool,
    pub(crate) reload: bool,
    pub(crate) upgrade: bool,
    pub(crate) status: bool,
    pub(crate) more: bool,
    pub(crate) fewer: bool,
    pub(crate) child: bool,
}

/// The installed handlers.
#[derive(Debug)]
pub(crate) struct Signals {
    flags: [Arc<AtomicBool>; HANDLED.len()],
    wake: UnixStream,
    ids: Vec<SigId>,
}

impl Signals {
    /// Installs the handlers.
    pub(crate) fn install() -> io::Result<Signals> {
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let flags: [Arc<AtomicBool>; HANDLED.len()] = Default::default();
        let mut ids = Vec::with_capacity(2 * HANDLED.len());
        for (sig, flag) in HANDLED.iter().zip(&flags) {
            ids.push(signal_hook::flag::register(*sig as i32, Arc::clone(flag))?);
            ids.push(signal_hook::low_level::pipe::register(
                *sig as i32,
                wake_tx.try_clone()?,
            )?);
        }
        Ok(Signals { flags, wake, ids })
    }

    /// Removes the supervisor's actions in a new worker. The process-wide
    /// handler stays installed (signal-hook's registry, which tokio's signal
    /// handling shares), so the worker's own tokio handlers work; resetting
    /// to the default action instead would leave the registry believing its
    /// handler is still installed, and SIGTERM would kill the worker
    /// outright instead of draining it.
    pub(crate) fn unregister(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }

    /// Whether SIGINT or SIGTERM arrived and was not taken yet. Unlike
    /// [`Signals::take`] it leaves the flags and the wake pipe alone: a new
    /// worker asks its copy of the flags, and the pipe is shared with the
    /// supervisor.
    pub(crate) fn stop_requested(&self) -> bool {
        HANDLED
            .iter()
            .zip(&self.flags)
            .filter(|(sig, _)| matches!(sig, Signal::SIGINT | Signal::SIGTERM))
            .any(|(_, flag)| flag.load(Ordering::Acquire))
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Which signals arrived, clearing them.
    pub(crate) fn take(&mut self) -> Received {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        let mut got = [false; HANDLED.len()];
        for (slot, flag) in got.iter_mut().zip(&self.flags) {
            *slot = flag.swap(false, Ordering::AcqRel);
        }
        let [int, term, hup, usr1, usr2, ttin, ttou, chld] = got;
        Received {
            stop: int || term,
            reload: hup,
            upgrade: usr1,
            status: usr2,
            more: ttin,
            fewer: ttou,
            child: chld,
        }
    }
}
