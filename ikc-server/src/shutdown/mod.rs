//! Graceful shutdown of a server's connections.
//!
//! A [`Shutdown`] is the server-wide switch: [`Shutdown::drain`] stops the
//! accept loop (the [`ShutdownMonitor`] is no longer ready) and tells every
//! connection to close gracefully (it sends `GoAway`, answers what it already
//! accepted, then closes); [`Shutdown::abort`] closes what is left at once,
//! after the grace period. [`Shutdown::wait`] completes when every
//! connection has ended.
//!
//! The monitor does not decide *when* to shut down: the server does, on its
//! handle, on its shutdown signal, or on `IKC/shutdown` when allowed.

pub mod future;
mod layer;
mod service;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::layer::ShutdownMonitorLayer;
pub use self::service::{ShutdownMonitor, ShuttingDown};

/// The server-wide shutdown switch, shared by the accept loop and every
/// connection. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A switch that is off.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks that no new connection will come, without telling the open
    /// ones to close: [`wait`](Self::wait) completes when they have ended on
    /// their own.
    pub fn close(&self) {
        self.tracker.close();
    }

    /// Stops accepting and tells every connection to close gracefully.
    pub fn drain(&self) {
        self.tracker.close();
        self.drain.cancel();
    }

    /// Closes every remaining connection now.
    pub fn abort(&self) {
        self.drain();
        self.abort.cancel();
    }

    /// Whether [`drain`](Self::drain) was called.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Completes when [`drain`](Self::drain) is called.
    pub async fn draining(&self) {
        self.drain.cancelled().await;
    }

    /// Completes when draining started and every connection has ended.
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// Connections still open.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.tracker.len()
    }
}
