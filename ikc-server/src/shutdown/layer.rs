use tower::Layer;

use super::{Shutdown, ShutdownMonitor};

/// Applies [`ShutdownMonitor`] with a server's [`Shutdown`] switch.
#[derive(Debug, Clone)]
pub struct ShutdownMonitorLayer {
    shutdown: Shutdown,
}

impl ShutdownMonitorLayer {
    /// Connections follow `shutdown`.
    #[must_use]
    pub fn new(shutdown: Shutdown) -> Self {
        ShutdownMonitorLayer { shutdown }
    }
}

impl<S> Layer<S> for ShutdownMonitorLayer {
    type Service = ShutdownMonitor<S>;

    fn layer(&self, inner: S) -> ShutdownMonitor<S> {
        ShutdownMonitor::new(inner, self.shutdown.clone())
    }
}
