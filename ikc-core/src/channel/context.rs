//! [`ChannelContext`]: what a channel needs of its kernel, and nothing
//! more: where to announce what happens, which sessions it publishes (to
//! answer `Subscribe`), the service that handles the peer's requests by
//! default, and where the peer is registered while the channel runs.

use std::sync::Arc;

use super::{ChannelHandle, SessionService};
use crate::RegisterError;
use crate::monitor::{MonitorBus, MonitorEvent};
use crate::sessions::Sessions;

/// Where a channel's peer is known while the channel runs (the kernel's
/// table of connected peers).
pub(crate) trait Links: Send + Sync {
    /// Adds the peer; refused when one of its names is taken.
    fn register(&self, handle: &ChannelHandle) -> Result<(), RegisterError>;
    /// Removes the peer: its channel has ended.
    fn unregister(&self, handle: &ChannelHandle);
}

/// What a channel needs of its kernel: a [`Kernel`](crate::Kernel)
/// converts into one, so `Channel::builder(kernel)` is how a channel gets
/// it.
#[derive(Clone)]
pub struct ChannelContext {
    pub(crate) monitor: MonitorBus,
    pub(crate) sessions: Sessions,
    /// The kernel's router, boxed: each channel calls a clone of its own.
    pub(crate) router: SessionService,
    pub(crate) links: Arc<dyn Links>,
    /// The kernel's name, for logs.
    pub(crate) name: Arc<str>,
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext")
            .field("kernel", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChannelContext {
    pub(crate) fn emit(&self, event: MonitorEvent) {
        self.monitor.emit(event);
    }
}
