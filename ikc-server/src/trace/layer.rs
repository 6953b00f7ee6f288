use tower::Layer;

use super::{ConnectionTrace, RequestTrace};

/// Applies [`ConnectionTrace`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionTraceLayer;

impl ConnectionTraceLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        ConnectionTraceLayer
    }
}

impl<S> Layer<S> for ConnectionTraceLayer {
    type Service = ConnectionTrace<S>;

    fn layer(&self, inner: S) -> ConnectionTrace<S> {
        ConnectionTrace::new(inner)
    }
}

/// Applies [`RequestTrace`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTraceLayer;

impl RequestTraceLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        RequestTraceLayer
    }
}

impl<S> Layer<S> for RequestTraceLayer {
    type Service = RequestTrace<S>;

    fn layer(&self, inner: S) -> RequestTrace<S> {
        RequestTrace::new(inner)
    }
}
