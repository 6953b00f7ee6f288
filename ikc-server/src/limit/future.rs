//! The future of a limited connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;
use tokio::sync::OwnedSemaphorePermit;

/// Runs the connection and releases its permit when it ends.
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    _permit: OwnedSemaphorePermit,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, permit: OwnedSemaphorePermit) -> Self {
        ResponseFuture {
            inner,
            _permit: permit,
        }
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}
