use std::fmt;
use std::task::{Context, Poll};

use tower::Service;

use super::Shutdown;
use super::future::ResponseFuture;
use crate::BoxError;
use crate::io::ServedConnection;

/// The error `poll_ready` gives once the server is draining: the accept
/// loop stops.
#[derive(Debug, Default)]
pub struct ShuttingDown(());

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server is shutting down")
    }
}

impl std::error::Error for ShuttingDown {}

/// Tracks each connection and hands it the tokens to drain and abort.
#[derive(Debug, Clone)]
pub struct ShutdownMonitor<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S> ShutdownMonitor<S> {
    /// Wraps `inner`; its connections follow `shutdown`.
    pub fn new(inner: S, shutdown: Shutdown) -> Self {
        ShutdownMonitor { inner, shutdown }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C> Service<C> for ShutdownMonitor<S>
where
    C: ServedConnection,
    S: Service<C>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.shutdown.is_draining() {
            return Poll::Ready(Err(ShuttingDown(()).into()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut conn: C) -> Self::Future {
        conn.set_drain(self.shutdown.drain.child_token());
        conn.set_abort(self.shutdown.abort.child_token());
        ResponseFuture::new(self.shutdown.tracker.track_future(self.inner.call(conn)))
    }
}
