//! Futures of traced connections and requests.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;
use tokio::time::Instant;
use tracing::instrument::Instrumented;

/// A connection running in its span; logs how it ended.
#[pin_project]
#[derive(Debug)]
pub struct ConnectionFuture<F> {
    #[pin]
    inner: Instrumented<F>,
    opened: Instant,
}

impl<F> ConnectionFuture<F> {
    pub(crate) fn new(inner: Instrumented<F>) -> Self {
        ConnectionFuture {
            inner,
            opened: Instant::now(),
        }
    }
}

impl<F, T, E> Future for ConnectionFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: std::fmt::Debug,
    E: std::fmt::Display,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let output = std::task::ready!(this.inner.as_mut().poll(cx));
        let _entered = this.inner.span().enter();
        let lived = this.opened.elapsed();
        match &output {
            Ok(outcome) => tracing::debug!(?outcome, ?lived, "connection ended"),
            Err(error) => tracing::debug!(%error, ?lived, "connection failed"),
        }
        Poll::Ready(output)
    }
}

/// A request running in its span; logs its latency and outcome.
#[pin_project]
#[derive(Debug)]
pub struct RequestFuture<F> {
    #[pin]
    inner: Instrumented<F>,
    /// `None` when no subscriber wants the request span: reading the clock
    /// twice per request is a measurable part of a small call.
    started: Option<Instant>,
}

impl<F> RequestFuture<F> {
    pub(crate) fn new(inner: Instrumented<F>) -> Self {
        let started = (!inner.span().is_disabled()).then(Instant::now);
        RequestFuture { inner, started }
    }
}

impl<F, T, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let output = std::task::ready!(this.inner.as_mut().poll(cx));
        let _entered = this.inner.span().enter();
        let latency = this.started.map(|started| started.elapsed());
        match &output {
            Ok(_) => tracing::trace!(?latency, "request answered"),
            Err(error) => tracing::debug!(?latency, %error, "request failed"),
        }
        Poll::Ready(output)
    }
}
