//! [`ChannelHandle`]: the cheap, cloneable side of a channel that sends calls
//! and posts to the peer, and [`Target`], what a call is addressed to.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ikc_proto::{Value, pb};
use tokio::time::Instant;

use super::PeerLimits;
use super::exchange::{Exchange, Forwarded, Message};
use super::outbox::Outgoing;
use super::shared::Shared;
use crate::{ErrorKind, IkcError, PeerInfo, Request, Specifier};

/// What a call or post is addressed to: a [`Specifier`], or its text, sent
/// as written (the peer parses it: a malformed target is its `BadRequest`,
/// and a target without a kernel part means the peer's own session). Text
/// saves parsing and printing a specifier per call.
///
/// ```
/// use ikc_core::{Specifier, channel::Target};
///
/// let spec: Specifier = "poe://Server/calc/add".parse()?;
/// assert_eq!(Target::from(&spec).as_str(), "poe://Server/calc/add");
/// assert_eq!(Target::from("calc/add").as_str(), "calc/add");
/// # Ok::<(), ikc_core::ParseSpecifierError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a>(Cow<'a, str>);

impl Target<'_> {
    /// The target as it is sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(text: &'a str) -> Self {
        Target(Cow::Borrowed(text))
    }
}

impl From<String> for Target<'_> {
    fn from(text: String) -> Self {
        Target(Cow::Owned(text))
    }
}

impl<'a> From<&'a String> for Target<'a> {
    fn from(text: &'a String) -> Self {
        Target(Cow::Borrowed(text))
    }
}

impl From<&Specifier> for Target<'_> {
    fn from(spec: &Specifier) -> Self {
        Target(Cow::Owned(spec.to_string()))
    }
}

impl From<Specifier> for Target<'_> {
    fn from(spec: Specifier) -> Self {
        Target(Cow::Owned(spec.to_string()))
    }
}

/// Sends calls and posts to one connected peer. Cheap to clone; every clone
/// talks over the same connection.
///
/// Every call ends with exactly one answer: the peer's reply, the peer's typed
/// error, `Timeout` when the call's deadline passes, or `Disconnected` as soon
/// as the connection ends.
///
/// Its calling API is the one [`RemoteSession`](super::RemoteSession) and ikc-server's `Client`
/// have: [`call`](Self::call) (a [`Target`], a value; the channel's call
/// timeout), [`call_timeout`](Self::call_timeout), [`post`](Self::post).
/// As a tower `Service<Request>` it takes a request's own deadline, so
/// tower middleware (retry, balance, concurrency limits) composes on it.
#[derive(Debug, Clone)]
pub struct ChannelHandle {
    shared: Arc<Shared>,
}

impl ChannelHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ChannelHandle { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The peer kernel at the other end.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.shared.peer
    }

    /// The peer, as requests it sends carry it ([`Request::caller`]).
    pub(crate) fn peer_arc(&self) -> &Arc<PeerInfo> {
        &self.shared.peer
    }

    /// What the peer announced in the handshake (nothing, for a channel
    /// built without [`ChannelBuilder::peer_limits`](super::ChannelBuilder::peer_limits)).
    #[must_use]
    pub fn peer_limits(&self) -> &PeerLimits {
        &self.shared.limits.peer
    }

    /// Whether both handles belong to the same channel.
    #[must_use]
    pub fn same_channel(&self, other: &ChannelHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Whether either side said it is going away (our
    /// [`go_away`](Self::go_away), or the peer's `GoAway`): new calls are
    /// answered `ShuttingDown`, and a balancer takes the connection out of
    /// its set.
    #[must_use]
    pub fn is_going_away(&self) -> bool {
        self.shared.drain_requested() || self.shared.peer_going_away()
    }

    /// Completes when the connection has ended.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Starts a graceful close: the peer gets `GoAway`, new requests from it
    /// are answered `ShuttingDown`, requests already running finish and are
    /// answered, calls we made are waited for, then the connection closes.
    pub fn go_away(&self) {
        self.shared.request_drain();
    }

    /// Calls `target` on the peer and waits for the answer, at most the
    /// channel's call timeout.
    ///
    /// # Errors
    ///
    /// The peer's typed error, `Timeout`, `Disconnected`, or `ShuttingDown`
    /// when either side is closing.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call: its entry is removed and the
    /// peer is sent `Cancel`, which drops the handler there.
    pub fn call<'a>(
        &'a self,
        target: impl Into<Target<'a>>,
        arg: impl Into<Value>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + 'a {
        let message = Message::call(target.into().0, arg.into());
        Exchange::new(self, message, None, self.shared.call_timeout)
    }

    /// Like [`call`](Self::call) with its own timeout.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_timeout<'a>(
        &'a self,
        target: impl Into<Target<'a>>,
        arg: impl Into<Value>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + 'a {
        let message = Message::call(target.into().0, arg.into());
        Exchange::new(self, message, None, Some(timeout))
    }

    /// Posts to `target` on the peer: it is sent, and nobody waits for an
    /// answer.
    ///
    /// # Errors
    ///
    /// `Disconnected` when the connection has ended, `ShuttingDown` when
    /// either side is closing, `BadRequest` when it is over the peer's
    /// frame limit.
    pub async fn post(
        &self,
        target: impl Into<Target<'_>>,
        arg: impl Into<Value>,
    ) -> Result<(), IkcError> {
        self.send_post(target.into().0, arg.into(), None, None)
            .await
    }

    /// Asks the peer whether it publishes `session` (its `Subscribe`);
    /// [`subscribe`](Self::subscribe) makes the session's handle of it.
    pub(super) async fn announce_subscription(&self, session: &str) -> Result<(), IkcError> {
        let id = self.shared.allocate_id();
        let frame = pb::Frame::from(pb::Subscribe {
            id,
            session: session.to_owned(),
        });
        let message: Message<&str> = Message::Frame(Box::new(frame));
        Exchange::new(self, message, Some(id), self.shared.call_timeout)
            .await
            .map(drop)
    }

    /// Forwards a routed request; posts are only sent unless `as_call`.
    pub(crate) async fn forward(&self, mut req: Request, as_call: bool) -> Result<Value, IkcError> {
        let target = req.target().to_string();
        let from = req.from().map(str::to_owned);
        let traceparent = req.traceparent().map(str::to_owned);
        let arg = req.take_arg();
        if req.is_post() && !as_call {
            return self
                .send_post(target, arg, from, traceparent)
                .await
                .map(|()| Value::Null);
        }
        let timeout = match req.deadline() {
            Some(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            None => self.shared.call_timeout,
        };
        let forwarded = (from.is_some() || traceparent.is_some())
            .then(|| Box::new(Forwarded { from, traceparent }));
        let message = Message::Request {
            target,
            arg,
            forwarded,
        };
        Exchange::new(self, message, None, timeout).await
    }

    /// Queues `frame` if there is room; drops it if not, or if the
    /// channel closed.
    pub(crate) fn try_send(&self, frame: pb::Frame) {
        let _ = self.shared.queue(Outgoing::Frame(frame));
    }

    pub(super) fn check_open(&self) -> Result<(), IkcError> {
        let draining = self.shared.drain_requested();
        let going_away = self.shared.peer_going_away();
        // A closed channel is found when the frame is queued, under the
        // lock that is taken then anyway.
        if !draining && !going_away {
            return Ok(());
        }
        // A closed connection is the more useful answer than our own
        // drain; after the peer's GoAway, both say the same.
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        if draining {
            return Err(IkcError::new(
                ErrorKind::ShuttingDown,
                "this connection is closing",
            ));
        }
        Err(IkcError::new(
            ErrorKind::ShuttingDown,
            format!("kernel {:?} is shutting down", self.shared.peer.kernel),
        ))
    }

    async fn send_post(
        &self,
        target: impl AsRef<str> + Into<String>,
        arg: Value,
        from: Option<String>,
        traceparent: Option<String>,
    ) -> Result<(), IkcError> {
        self.check_open()?;
        let mut kept = None;
        let post = self
            .shared
            .request(&mut kept, target, from, traceparent, arg, 0);
        self.shared.queue_waiting(post).await
    }
}
