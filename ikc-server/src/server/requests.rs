//! [`RequestRouter`]: the kernel's router as the request service that a
//! server's layers wrap, its errors boxed, under the request timeout when
//! one is set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ikc_core::router::RouteFuture;
use ikc_core::{BoxError, Request, Router, Value};
use pin_project::pin_project;
use tokio::time::Sleep;
use tower::Service;
use tower::timeout::error::Elapsed;

/// The request service that [`Server::layer`](super::Server::layer)
/// layers wrap: the kernel's router, its errors boxed, under the request
/// timeout when one is set (a request that runs longer fails with tower's
/// [`Elapsed`], and its handler is dropped).
#[derive(Debug, Clone)]
pub struct RequestRouter {
    router: Router,
    timeout: Option<Duration>,
}

impl RequestRouter {
    pub(crate) fn new(router: Router, timeout: Option<Duration>) -> Self {
        RequestRouter { router, timeout }
    }
}

impl Service<Request> for RequestRouter {
    type Response = Value;
    type Error = BoxError;
    type Future = RequestRouterFuture;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.router.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Request) -> RequestRouterFuture {
        RequestRouterFuture {
            routed: self.router.call(req),
            // Boxed: a timer is three times the size of the rest, and most
            // servers set no request timeout.
            timeout: self
                .timeout
                .map(|timeout| Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

/// The answer of a [`RequestRouter`].
#[pin_project]
#[derive(Debug)]
pub struct RequestRouterFuture {
    #[pin]
    routed: RouteFuture,
    timeout: Option<Pin<Box<Sleep>>>,
}

impl Future for RequestRouterFuture {
    type Output = Result<Value, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.routed.poll(cx) {
            return Poll::Ready(answer.map_err(Into::into));
        }
        if let Some(timeout) = this.timeout {
            ready!(timeout.as_mut().poll(cx));
            return Poll::Ready(Err(Elapsed::new().into()));
        }
        Poll::Pending
    }
}
