//! [`ChannelHandle`] as a tower [`Service`]: any tower middleware (retry,
//! timeout, concurrency limits, load balancing) composes on the caller's
//! side of a channel.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::Service;

use super::ChannelHandle;
use crate::{IkcError, Request, Value};

/// Sends each request to the peer: a call waits for the answer, a post
/// ([`Request::post`]) is sent and answers `Value::Null`. The target is
/// sent as written: the peer takes `session/event` as its own session and
/// routes `poe://kernel/...` as it would its own caller's. The request's
/// deadline, when it has one, bounds the call; the channel's call timeout
/// otherwise.
impl Service<Request> for ChannelHandle {
    type Response = Value;
    type Error = IkcError;
    type Future = BoxFuture<'static, Result<Value, IkcError>>;

    /// Ready while the connection is open: the channel queues calls
    /// itself, and its bounds apply as each is sent.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        if self.is_closed() {
            return Poll::Ready(Err(IkcError::disconnected(false)));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let handle = self.clone();
        Box::pin(async move { handle.forward(req, false).await })
    }
}
