use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;
use tower::Service;

use super::future::ResponseFuture;

/// Holds a permit for each connection while it lives; not ready while all
/// permits are taken.
#[derive(Debug)]
pub struct ConnectionLimit<S> {
    inner: S,
    semaphore: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
}

impl<S> ConnectionLimit<S> {
    /// Wraps `inner`, allowing `max` connections at once.
    pub fn new(inner: S, max: usize) -> Self {
        Self::with_semaphore(inner, Arc::new(Semaphore::new(max)))
    }

    /// Wraps `inner`, sharing `semaphore` with other services.
    pub fn with_semaphore(inner: S, semaphore: Arc<Semaphore>) -> Self {
        ConnectionLimit {
            inner,
            semaphore: PollSemaphore::new(semaphore),
            permit: None,
        }
    }

    /// Connections that may still open now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
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

// A clone shares the count but not a permit this instance reserved.
impl<S: Clone> Clone for ConnectionLimit<S> {
    fn clone(&self) -> Self {
        ConnectionLimit {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            permit: None,
        }
    }
}

impl<S, C> Service<C> for ConnectionLimit<S>
where
    S: Service<C>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.permit.is_none() {
            // The semaphore is never closed, so `None` cannot happen; treat it
            // as "not ready" rather than panic.
            match self.semaphore.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => self.permit = Some(permit),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, conn: C) -> Self::Future {
        let permit = self.permit.take().expect("poll_ready must be called first");
        ResponseFuture::new(self.inner.call(conn), permit)
    }
}
