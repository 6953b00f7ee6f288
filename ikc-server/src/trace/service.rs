use std::task::{Context, Poll};

use ikc_core::{BoxError, Request};
use tower::Service;
use tracing::Instrument;

use super::future::{ConnectionFuture, RequestFuture};
use crate::io::ServedConnection;

macro_rules! wrapper_accessors {
    ($name:ident) => {
        impl<S> $name<S> {
            /// Wraps `inner`.
            pub fn new(inner: S) -> Self {
                $name { inner }
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
    };
}

/// Runs each connection in an `ikc.conn` span.
#[derive(Debug, Clone)]
pub struct ConnectionTrace<S> {
    inner: S,
}

wrapper_accessors!(ConnectionTrace);

impl<S, C> Service<C> for ConnectionTrace<S>
where
    C: ServedConnection,
    S: Service<C>,
    S::Response: std::fmt::Debug,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ConnectionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, conn: C) -> Self::Future {
        let span = tracing::debug_span!("ikc.conn", peer.addr = %conn.peer_addr(), kernel = tracing::field::Empty);
        span.in_scope(|| tracing::debug!("connection opened"));
        let inner = span.in_scope(|| self.inner.call(conn));
        ConnectionFuture::new(inner.instrument(span))
    }
}

/// Runs each request in an `ikc.request` span. Its errors are boxed
/// ([`BoxError`], what a session service answers), so the stack under it
/// needs no `map_err` of its own.
#[derive(Debug, Clone)]
pub struct RequestTrace<S> {
    inner: S,
}

wrapper_accessors!(RequestTrace);

impl<S> Service<Request> for RequestTrace<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let span = tracing::trace_span!(
            "ikc.request",
            session = req.session(),
            event = req.event(),
            kind = if req.is_post() { "post" } else { "call" },
        );
        if span.is_disabled() {
            return RequestFuture::untraced(self.inner.call(req));
        }
        // Before the span is first entered: its OpenTelemetry span starts
        // then, with the caller's as its parent. A context that does not
        // parse, or none, makes it a root.
        #[cfg(feature = "otel")]
        ikc_core::propagation::set_parent(&span, req.traceparent());
        let inner = span.in_scope(|| self.inner.call(req));
        RequestFuture::traced(inner.instrument(span))
    }
}
