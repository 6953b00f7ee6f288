//! [`Monitor`]: the ordered stream of what happens to a kernel's connections.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many events a slow monitor may fall behind before it misses some.
pub const MONITOR_CAPACITY: usize = 1024;

/// Something that happened to a kernel, in the order it happened.
///
/// For one peer, `Register` comes before its first request is dispatched and
/// `Unregister` after its last one finished.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A remote kernel connected.
    Register {
        /// Its name.
        kernel: String,
        /// Its aliases.
        aliases: Vec<String>,
        /// Its process id.
        pid: u32,
    },
    /// A remote kernel disconnected.
    Unregister {
        /// Its name.
        kernel: String,
    },
    /// A remote kernel subscribed to one of our sessions.
    Subscribe {
        /// The remote kernel.
        kernel: String,
        /// The session.
        session: String,
    },
    /// A remote kernel unsubscribed from one of our sessions.
    Unsubscribe {
        /// The remote kernel.
        kernel: String,
        /// The session.
        session: String,
    },
    /// Something failed that no caller will hear about (a failing post, a
    /// protocol error from a peer).
    Error {
        /// The remote kernel involved, if any.
        kernel: Option<String>,
        /// What happened.
        message: String,
    },
    /// The kernel is shutting down.
    Shutdown,
}

/// Where a kernel announces its [`MonitorEvent`]s. Cheap to clone: clones
/// announce to the same monitors, which end once every clone is gone.
#[derive(Debug, Clone)]
pub(crate) struct MonitorBus(broadcast::Sender<MonitorEvent>);

impl MonitorBus {
    pub(crate) fn new() -> Self {
        MonitorBus(broadcast::channel(MONITOR_CAPACITY).0)
    }

    /// Announces `event` to every monitor.
    pub(crate) fn emit(&self, event: MonitorEvent) {
        // No monitor listening is the normal case, not an error.
        let _ = self.0.send(event);
    }

    /// A stream of what is announced from now on.
    pub(crate) fn subscribe(&self) -> Monitor {
        Monitor::new(self.0.subscribe())
    }
}

/// A stream of [`MonitorEvent`]s, from [`Kernel::monitor`](crate::Kernel::monitor).
///
/// Events are kept for a slow reader up to [`MONITOR_CAPACITY`]; a reader
/// further behind skips the oldest ones (and a warning is logged).
#[derive(Debug)]
pub struct Monitor {
    events: BroadcastStream<MonitorEvent>,
}

impl Monitor {
    pub(crate) fn new(rx: broadcast::Receiver<MonitorEvent>) -> Self {
        Monitor {
            events: BroadcastStream::new(rx),
        }
    }

    /// The next event; `None` once the kernel is gone.
    pub async fn next_event(&mut self) -> Option<MonitorEvent> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for Monitor {
    type Item = MonitorEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MonitorEvent>> {
        loop {
            match std::task::ready!(Pin::new(&mut self.events).poll_next(cx)) {
                Some(Ok(event)) => return Poll::Ready(Some(event)),
                Some(Err(BroadcastStreamRecvError::Lagged(missed))) => {
                    tracing::warn!(missed, "monitor fell behind and skipped events");
                }
                None => return Poll::Ready(None),
            }
        }
    }
}
