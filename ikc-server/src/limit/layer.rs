use tower::Layer;

use super::ConnectionLimit;

/// Applies [`ConnectionLimit`]: at most `max` connections at once. Each
/// service it builds has its own count.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimitLayer {
    max: usize,
}

impl ConnectionLimitLayer {
    /// At most `max` connections at once.
    #[must_use]
    pub const fn new(max: usize) -> Self {
        ConnectionLimitLayer { max }
    }
}

impl<S> Layer<S> for ConnectionLimitLayer {
    type Service = ConnectionLimit<S>;

    fn layer(&self, inner: S) -> ConnectionLimit<S> {
        ConnectionLimit::new(inner, self.max)
    }
}
