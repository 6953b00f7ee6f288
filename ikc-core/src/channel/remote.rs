//! [`RemoteSession`]: a session published by a connected kernel, subscribed
//! to and called like a local tower service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use ikc_proto::{Value, pb};
use tower::Service;

use super::ChannelHandle;
use crate::{ErrorKind, IkcError, Specifier};

/// One event call on a [`RemoteSession`] used as a tower `Service`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The event name.
    pub event: String,
    /// The argument.
    pub arg: Value,
}

impl Call {
    /// A call of `event` with `arg`.
    pub fn new(event: impl Into<String>, arg: impl Into<Value>) -> Self {
        Call {
            event: event.into(),
            arg: arg.into(),
        }
    }
}

#[derive(Debug)]
struct Subscription {
    handle: ChannelHandle,
    session: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Best effort: a closed connection has no subscription to end.
        self.handle.try_send(
            pb::Unsubscribe {
                session: self.session.clone(),
            }
            .into(),
        );
    }
}

/// A session on a connected kernel, from
/// [`Kernel::subscribe`](crate::Kernel::subscribe) or
/// [`ChannelHandle::subscribe`].
///
/// Cheap to clone; the subscription ends (the peer sees `Unsubscribe`) when
/// the last clone is dropped or [`unsubscribe`](Self::unsubscribe)d.
///
/// It is a tower `Service<Call>`, so client-side middleware composes:
///
/// ```no_run
/// # pub async fn f(calc: ikc_core::RemoteSession) -> Result<(), tower::BoxError> {
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use ikc_core::{Call, Value};
///
/// let mut calc = ServiceBuilder::new().timeout(Duration::from_secs(1)).service(calc);
/// let sum = calc.ready().await?.call(Call::new("add", vec![1, 2])).await?;
/// assert_eq!(sum, Value::from(3));
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct RemoteSession {
    inner: Arc<Subscription>,
}

impl ChannelHandle {
    /// Asks the peer whether it publishes `session`, and returns a handle to
    /// call it.
    ///
    /// # Errors
    ///
    /// `NoSession` when the peer does not publish it; `Timeout` or
    /// `Disconnected` when the connection fails meanwhile.
    pub async fn subscribe(&self, session: &str) -> Result<RemoteSession, IkcError> {
        self.announce_subscription(session).await?;
        Ok(RemoteSession::new(self.clone(), session.to_owned()))
    }
}

impl RemoteSession {
    pub(crate) fn new(handle: ChannelHandle, session: String) -> Self {
        RemoteSession {
            inner: Arc::new(Subscription { handle, session }),
        }
    }

    /// The kernel that publishes the session.
    #[must_use]
    pub fn kernel(&self) -> &str {
        &self.inner.handle.peer().kernel
    }

    /// The session name.
    #[must_use]
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    fn target(&self, event: &str) -> Result<Specifier, IkcError> {
        Specifier::remote(self.kernel(), self.session(), event)
            .map_err(|e| IkcError::new(ErrorKind::BadRequest, e.to_string()))
    }

    /// Calls `event` and waits for the answer (at most the channel's call
    /// timeout).
    ///
    /// # Errors
    ///
    /// As [`ChannelHandle::call`], and `BadRequest` for an invalid event name.
    pub async fn call(&self, event: &str, arg: impl Into<Value>) -> Result<Value, IkcError> {
        self.inner
            .handle
            .call(&self.target(event)?, arg.into())
            .await
    }

    /// Calls `event` with its own timeout.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_timeout(
        &self,
        event: &str,
        arg: impl Into<Value>,
        timeout: Duration,
    ) -> Result<Value, IkcError> {
        self.inner
            .handle
            .call_timeout(&self.target(event)?, arg.into(), timeout)
            .await
    }

    /// Posts `event`: sent, and nobody waits for an answer.
    ///
    /// # Errors
    ///
    /// As [`ChannelHandle::post`].
    pub async fn post(&self, event: &str, arg: impl Into<Value>) -> Result<(), IkcError> {
        self.inner
            .handle
            .post(&self.target(event)?, arg.into())
            .await
    }

    /// Ends this handle's use of the subscription (the same as dropping it).
    pub fn unsubscribe(self) {
        drop(self);
    }
}

impl Service<Call> for RemoteSession {
    type Response = Value;
    type Error = IkcError;
    type Future = BoxFuture<'static, Result<Value, IkcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        // The channel queues calls itself; its bound applies in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.call(&call.event, call.arg).await })
    }
}
