//! The accept loop and the drain that ends it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use ikc_core::{Kernel, MonitorEvent};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::{Connection, ShutdownReport};
use crate::BoxError;
use crate::listener::{Listener, is_connection_error, is_fd_exhaustion};
use crate::shutdown::Shutdown;

/// Pause after an accept error that is not about one connection (out of
/// file descriptors): accepting again at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections until the server stops, then drains them.
pub(super) struct AcceptLoop {
    pub(super) accepted: Arc<AtomicU64>,
    /// Cancelled when the loop stops accepting, for whoever waits on it.
    pub(super) not_accepting: CancellationToken,
    pub(super) accept_limit: Option<u64>,
    pub(super) listener: Listener,
    pub(super) stop: CancellationToken,
    pub(super) signal: Option<BoxFuture<'static, ()>>,
    pub(super) kernel: Kernel,
    pub(super) shutdown: Shutdown,
    pub(super) grace_period: Duration,
}

impl AcceptLoop {
    pub(super) async fn run<S>(self, mut connections: S) -> ShutdownReport
    where
        S: Service<Connection, Error = BoxError> + Send,
        S::Future: Send + 'static,
        S::Response: Send,
    {
        let AcceptLoop {
            accepted,
            not_accepting,
            accept_limit,
            listener,
            stop,
            signal,
            kernel,
            shutdown,
            grace_period,
        } = self;
        tracing::info!(
            kernel = kernel.name(),
            "listening on {}",
            listener.local_addr()
        );
        let signal = async move {
            match signal {
                Some(signal) => signal.await,
                None => std::future::pending().await,
            }
        };
        let stopping = async {
            tokio::select! {
                () = stop.cancelled() => {}
                () = signal => {}
            }
        };
        let mut stopping = std::pin::pin!(stopping);
        loop {
            // Readiness first: a full server stops accepting (backpressure).
            tokio::select! {
                biased;
                () = &mut stopping => break,
                ready = connections.ready() => if ready.is_err() { break },
            }
            let (io, peer) = tokio::select! {
                biased;
                () = &mut stopping => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) if is_connection_error(&error) => continue,
                    Err(error) => {
                        if is_fd_exhaustion(&error) {
                            tracing::error!(%error, "out of file descriptors; pausing accept");
                        } else {
                            tracing::error!(%error, "accept failed; pausing accept");
                        }
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            detach(connections.call(Connection::new(io, peer)));
            let count = accepted.fetch_add(1, Ordering::Relaxed) + 1;
            if accept_limit.is_some_and(|limit| count >= limit) {
                tracing::info!(
                    accepted = count,
                    "accept limit reached; finishing the open connections"
                );
                drop(listener);
                not_accepting.cancel();
                // Recycling: the connections end on their own, unless a
                // shutdown arrives meanwhile.
                shutdown.close();
                tokio::select! {
                    () = shutdown.wait() => return ShutdownReport::default(),
                    () = &mut stopping => {}
                }
                return drain(&kernel, &shutdown, grace_period).await;
            }
        }

        // Peers already waiting in the backlog are taken in, so they hear
        // why (a ShuttingDown refusal or GoAway) instead of a reset. Not on a
        // shared socket: the other workers will serve them.
        while !listener.is_shared() && matches!(connections.ready().now_or_never(), Some(Ok(_))) {
            let Some(Ok((io, peer))) = listener.accept().now_or_never() else {
                break;
            };
            detach(connections.call(Connection::new(io, peer)));
        }
        // Stop accepting: the listening socket closes (a Unix socket file of
        // ours is removed) before the drain begins.
        drop(listener);
        not_accepting.cancel();
        drain(&kernel, &shutdown, grace_period).await
    }
}

/// Runs a connection on its own task; the trace layer logs how it ended.
fn detach<F: Future + Send + 'static>(connection: F) {
    tokio::spawn(async move {
        let _ = connection.await;
    });
}

/// Drains every connection, aborting what is left after `grace_period`.
async fn drain(kernel: &Kernel, shutdown: &Shutdown, grace_period: Duration) -> ShutdownReport {
    let open = shutdown.connections();
    tracing::info!(connections = open, grace = ?grace_period, "shutting down");
    kernel.emit(MonitorEvent::Shutdown);
    shutdown.drain();
    let aborted = if tokio::time::timeout(grace_period, shutdown.wait())
        .await
        .is_ok()
    {
        0
    } else {
        let left = shutdown.connections();
        tracing::warn!(
            connections = left,
            "grace period over; aborting connections"
        );
        shutdown.abort();
        shutdown.wait().await;
        left
    };
    ShutdownReport {
        connections: open,
        aborted,
    }
}
