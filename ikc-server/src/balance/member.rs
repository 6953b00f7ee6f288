//! [`Member`]: one server of a balanced set, as the balancer sees it: a
//! tower service that connects on its own, is not ready while it has no
//! open connection (connecting, backing off after a failure, or drained by
//! the server's `GoAway`), and never fails readiness, so the balancer keeps
//! it and tries it again rather than dropping it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use ikc_core::{ErrorKind, IkcError, Request, Value};
use tower::Service;

use super::Registry;
use crate::client::{Client, ClientBuilder};
use crate::error::Error;

/// Where a member stands.
enum State {
    /// Connecting now.
    Connecting(BoxFuture<'static, Result<Client, Error>>),
    /// Waiting after a failed attempt.
    Backoff(Pin<Box<tokio::time::Sleep>>),
    Connected(Client),
}

/// One server of a balanced set; see the [module docs](self).
pub(crate) struct Member {
    addr: String,
    builder: ClientBuilder,
    state: State,
    /// The pause after the next failure.
    backoff: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    registry: Arc<Registry>,
}

impl Member {
    pub(crate) fn new(
        addr: String,
        builder: ClientBuilder,
        (min_backoff, max_backoff): (Duration, Duration),
        registry: Arc<Registry>,
    ) -> Self {
        let state = State::Connecting(connect(&builder, &addr));
        Member {
            addr,
            builder,
            state,
            backoff: min_backoff,
            min_backoff,
            max_backoff,
            registry,
        }
    }
}

fn connect(builder: &ClientBuilder, addr: &str) -> BoxFuture<'static, Result<Client, Error>> {
    let builder = builder.clone();
    let addr = addr.to_owned();
    Box::pin(async move { builder.connect(&addr).await })
}

impl Drop for Member {
    fn drop(&mut self) {
        if let State::Connected(client) = &self.state {
            self.registry.remove(&self.addr);
            // Removed from the set: its calls finish, then it closes.
            client.handle().go_away();
        }
    }
}

impl Service<Request> for Member {
    type Response = Value;
    type Error = IkcError;
    type Future = BoxFuture<'static, Result<Value, IkcError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        loop {
            match &mut self.state {
                State::Connected(client) => {
                    let handle = client.handle();
                    if !handle.is_closed() && !handle.is_going_away() {
                        return Poll::Ready(Ok(()));
                    }
                    // Drained (the server said GoAway) or gone: out of the
                    // set until a new connection is open.
                    tracing::debug!(addr = %self.addr, "member connection ended, reconnecting");
                    self.registry.remove(&self.addr);
                    self.state = State::Connecting(connect(&self.builder, &self.addr));
                }
                State::Connecting(connecting) => match connecting.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(client)) => {
                        tracing::debug!(addr = %self.addr, kernel = %client.server().kernel, "member connected");
                        self.backoff = self.min_backoff;
                        self.registry.insert(&self.addr, &client);
                        self.state = State::Connected(client);
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(addr = %self.addr, %error, pause = ?self.backoff, "member did not connect; trying again after a pause");
                        let pause = self.backoff;
                        self.backoff = (self.backoff * 2).min(self.max_backoff);
                        self.state = State::Backoff(Box::pin(tokio::time::sleep(pause)));
                    }
                },
                State::Backoff(pause) => {
                    if pause.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.state = State::Connecting(connect(&self.builder, &self.addr));
                }
            }
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match &mut self.state {
            State::Connected(client) => Service::call(client, req),
            // The balancer calls only a member that said it is ready.
            State::Connecting(_) | State::Backoff(_) => Box::pin(std::future::ready(Err(
                IkcError::new(ErrorKind::Disconnected, "this server is not connected"),
            ))),
        }
    }
}
