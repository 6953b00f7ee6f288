//! Futures of traced connections and requests.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ikc_core::BoxError;
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

/// A request running in its span; logs its latency and outcome, and boxes
/// its error. A
/// request whose span nobody wants runs without one (and without reading
/// the clock): entering and leaving a disabled span on every poll is a
/// measurable part of a small call.
#[pin_project]
#[derive(Debug)]
pub struct RequestFuture<F> {
    #[pin]
    state: RequestState<F>,
}

#[pin_project(project = RequestStateProj)]
#[derive(Debug)]
enum RequestState<F> {
    Traced {
        #[pin]
        inner: Instrumented<F>,
        started: Instant,
    },
    Untraced {
        #[pin]
        inner: F,
    },
}

impl<F> RequestFuture<F> {
    pub(crate) fn traced(inner: Instrumented<F>) -> Self {
        RequestFuture {
            state: RequestState::Traced {
                inner,
                started: Instant::now(),
            },
        }
    }

    pub(crate) fn untraced(inner: F) -> Self {
        RequestFuture {
            state: RequestState::Untraced { inner },
        }
    }
}

impl<F, T, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RequestStateProj::Traced { mut inner, started } => {
                let output = std::task::ready!(inner.as_mut().poll(cx)).map_err(Into::into);
                let _entered = inner.span().enter();
                let latency = started.elapsed();
                match &output {
                    Ok(_) => tracing::trace!(?latency, "request answered"),
                    Err(error) => tracing::debug!(?latency, %error, "request failed"),
                }
                Poll::Ready(output)
            }
            RequestStateProj::Untraced { inner } => {
                let output = std::task::ready!(inner.poll(cx)).map_err(Into::into);
                if let Err(error) = &output {
                    tracing::debug!(%error, "request failed");
                }
                Poll::Ready(output)
            }
        }
    }
}
