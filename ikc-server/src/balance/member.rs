//! [`Member`]: one server of a balanced set, as the balancer sees it: a
//! tower service that connects on its own, is not ready while it has no
//! open connection (connecting, backing off after a failure, or drained by
//! the server's `GoAway`), and never fails readiness, so the balancer keeps
//! it and tries it again rather than dropping it. Each attempt runs in a
//! task of its own, so a member connects whether or not the balancer is
//! polled, and tells the [`Registry`] how it ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use ikc_core::{ErrorKind, IkcError, Request, Value};
use tokio::task::JoinHandle;
use tower::Service;

use super::Registry;
use crate::client::{Client, ClientBuilder};
use crate::error::Error;

/// Where a member stands.
enum State {
    /// Connecting now, in a task of its own.
    Connecting(JoinHandle<Result<Client, Error>>),
    /// Waiting after a failed attempt.
    Backoff(Pin<Box<tokio::time::Sleep>>),
    Connected(Client),
}

/// One server of a balanced set; see the [module docs](self).
pub(crate) struct Member {
    /// The member's key in the discovery's set.
    key: String,
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
    /// A member that starts connecting now.
    pub(crate) fn new(
        key: &str,
        addr: String,
        builder: ClientBuilder,
        (min_backoff, max_backoff): (Duration, Duration),
        registry: Arc<Registry>,
    ) -> Self {
        Member {
            state: attempt(key, &addr, &builder, &registry),
            key: key.to_owned(),
            addr,
            builder,
            backoff: min_backoff,
            min_backoff,
            max_backoff,
            registry,
        }
    }

    fn connect(&mut self) {
        self.state = attempt(&self.key, &self.addr, &self.builder, &self.registry);
    }

    /// Waits before the next attempt, `why` the last one failed.
    fn back_off(&mut self, why: &dyn std::fmt::Display) {
        tracing::debug!(addr = %self.addr, error = %why, pause = ?self.backoff, "member did not connect; trying again after a pause");
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
        self.state = State::Backoff(Box::pin(tokio::time::sleep(pause)));
    }
}

/// A connection attempt in a task of its own, which tells the registry how
/// it ended.
fn attempt(key: &str, addr: &str, builder: &ClientBuilder, registry: &Arc<Registry>) -> State {
    let (key, addr) = (key.to_owned(), addr.to_owned());
    let (builder, registry) = (builder.clone(), Arc::clone(registry));
    State::Connecting(tokio::spawn(async move {
        let connected = builder.connect(&addr).await;
        registry.attempted(&key, connected.as_ref().ok());
        connected
    }))
}

impl Drop for Member {
    fn drop(&mut self) {
        self.registry.remove(&self.key);
        match &self.state {
            // Removed from the set: its calls finish, then it closes.
            State::Connected(client) => client.handle().go_away(),
            State::Connecting(attempt) => attempt.abort(),
            State::Backoff(_) => {}
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
                    self.registry.remove(&self.key);
                    self.connect();
                }
                State::Connecting(attempt) => match attempt.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Ok(client))) => {
                        tracing::debug!(addr = %self.addr, kernel = %client.server().kernel, "member connected");
                        self.backoff = self.min_backoff;
                        self.state = State::Connected(client);
                    }
                    Poll::Ready(Ok(Err(error))) => self.back_off(&error),
                    Poll::Ready(Err(panicked)) => self.back_off(&panicked),
                },
                State::Backoff(pause) => {
                    if pause.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.connect();
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
