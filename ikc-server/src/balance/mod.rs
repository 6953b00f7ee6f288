//! Calls spread over many servers: [`Client::balanced`] makes a tower
//! `Service<Request>` over one connection per server of a [`Discovery`]
//! (a fixed list, or your own source), balanced by tower's power-of-two-
//! choices over the requests each connection has pending
//! (`tower::balance::p2c` over `tower::load::PendingRequests`).
//!
//! Discovery sources: a fixed list ([`discover::static_list`]), DNS
//! (`dns::Dns`, A/AAAA and SRV, with the `dns` feature), or any stream of
//! changes of your own ([`discover::Discovery`]).
//!
//! - A call naming no kernel (`session/event`, `poe://*/session/event`)
//!   goes to any member; a call naming a kernel goes to the member that is
//!   that kernel when one is (else through any member, which may route it).
//!   A call naming a kernel waits, at most the connect timeout, for the
//!   members still making their first connection attempt, so a call made
//!   just after [`Client::balanced`] finds its kernel.
//! - A member connects on its own (in a task, from the moment the set names
//!   it, or for members found later, when the balancer next takes the
//!   discovery's changes), and one that fails to connect is tried
//!   again after a pause that doubles up to the builder's reconnect
//!   maximum. A member whose server says `GoAway` (it drains) is taken out
//!   of the set, not failed, and comes back once it accepts again.
//! - Failover: a call that ended `ShuttingDown`, or `Disconnected` with
//!   `may_have_run == false` (it provably did not run), is sent once more,
//!   to another member. A call that may have run is never sent again unless
//!   the caller said its calls are idempotent ([`Balanced::idempotent`]).
//! - An empty set answers `NoKernel` at once; a set whose servers are all
//!   unreachable answers `Timeout` after the connect timeout and the call
//!   timeout, never hangs.
//!
//! Each member connects with a client kernel of its own: the servers of a
//! fleet usually share a name, and one kernel cannot hold two peers of the
//! same name.

pub mod discover;
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub mod dns;
mod member;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use ikc_core::{ErrorKind, IkcError, KernelTarget, Request, Value};
use tokio::sync::Notify;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::util::BoxService;
use tower::{Service, ServiceExt};

use self::discover::Discovery;
use self::member::Member;
use crate::BoxError;
use crate::client::{Client, ClientBuilder};

/// Requests waiting for a member while the balancer is busy.
const BUFFER: usize = 1024;

/// The members: the keys in the set, those still making their first
/// connection attempt, and the open connection of each one connected (for
/// calls that name a kernel).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    members: Mutex<Members>,
    /// Woken when a member's first attempt ends or the set changes.
    settled: Notify,
}

#[derive(Debug, Default)]
struct Members {
    /// Keys in the set.
    known: usize,
    /// Keys whose first connection attempt has not ended yet.
    first_attempt: HashSet<String>,
    connected: HashMap<String, Client>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self, change: &Change<String, String>) {
        let mut members = self.lock();
        match change {
            Change::Insert(key, _) => {
                members.known += 1;
                members.first_attempt.insert(key.clone());
            }
            Change::Remove(key) => {
                members.known = members.known.saturating_sub(1);
                members.first_attempt.remove(key);
                members.connected.remove(key);
            }
        }
        drop(members);
        self.settled.notify_waiters();
    }

    /// A connection attempt of member `key` ended, with `client` when it
    /// connected.
    pub(crate) fn attempted(&self, key: &str, client: Option<&Client>) {
        let mut members = self.lock();
        members.first_attempt.remove(key);
        if let Some(client) = client {
            members.connected.insert(key.to_owned(), client.clone());
        }
        drop(members);
        self.settled.notify_waiters();
    }

    pub(crate) fn remove(&self, key: &str) {
        self.lock().connected.remove(key);
    }

    fn is_empty(&self) -> bool {
        self.lock().known == 0
    }

    /// The connected member that is kernel `name`.
    fn kernel(&self, name: &str) -> Option<Client> {
        self.lock()
            .connected
            .values()
            .find(|client| {
                let server = client.server();
                server.names().any(|n| n == name) && !client.handle().is_going_away()
            })
            .cloned()
    }

    /// The connected member that is kernel `name`, waiting (at most
    /// `wait`) for members still making their first attempt, so a call
    /// made just after [`Client::balanced`] finds the kernel it names.
    async fn kernel_settled(&self, name: &str, wait: Duration) -> Option<Client> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.settled.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(client) = self.kernel(name) {
                return Some(client);
            }
            if self.lock().first_attempt.is_empty() {
                return None;
            }
            tokio::time::timeout_at(until, notified).await.ok()?;
        }
    }
}

/// A client of many servers; see the [module docs](self). Cheap to clone:
/// clones share the connections.
#[derive(Clone)]
pub struct Balanced {
    buffer: Buffer<Request, BoxFuture<'static, Result<Value, BoxError>>>,
    registry: Arc<Registry>,
    /// How long a call may wait for a member and its answer.
    deadline: Duration,
    /// How long a call naming a kernel waits for the members' first
    /// connection attempts.
    connect_timeout: Duration,
    idempotent: bool,
}

impl std::fmt::Debug for Balanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balanced")
            .field("members", &self.registry.lock().known)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of every server `discovery` names, balanced; see
    /// [`balance`](crate::balance). Each member connects as `builder`
    /// says (TLS, secret, timeouts, limits; its `reconnect` pauses bound
    /// the retries of a member that does not answer), with a kernel of its
    /// own named after the builder's. Waits for `discovery`'s first
    /// changes (at most the connect timeout); must run on a tokio runtime.
    pub async fn balanced(builder: ClientBuilder, discovery: impl Discovery) -> Balanced {
        let mut discovery = Box::pin(discovery);
        // The first changes, so a call made at once finds the set.
        let mut initial = Vec::new();
        if let Ok(Some(first)) =
            tokio::time::timeout(builder.connect_timeout, discovery.next()).await
        {
            initial.push(first);
            while let Some(Some(next)) = futures::FutureExt::now_or_never(discovery.next()) {
                initial.push(next);
            }
        }
        let registry = Arc::new(Registry::default());
        let backoff = builder.reconnect_pauses();
        let base = builder
            .name
            .clone()
            .unwrap_or_else(|| format!("client-{}", std::process::id()));
        let make_member = {
            let registry = Arc::clone(&registry);
            let builder = builder.clone();
            let next = AtomicU32::new(1);
            Arc::new(move |change: Change<String, String>| match change {
                Change::Insert(key, addr) => {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let mut builder = builder.clone();
                    builder.kernel = None;
                    // The member reconnects itself, between calls.
                    builder.reconnect = None;
                    builder.name = Some(format!("{base}-m{n}"));
                    let member = Member::new(&key, addr, builder, backoff, Arc::clone(&registry));
                    Change::Insert(key, member)
                }
                Change::Remove(key) => Change::Remove(key),
            })
        };
        // The first members start connecting now, so a call made at once
        // finds the set, and one naming a kernel finds that kernel; later
        // ones as the balancer takes them.
        let mut first = Vec::with_capacity(initial.len());
        for change in initial {
            first.push(change.map(|change| {
                registry.changed(&change);
                make_member(change)
            }));
        }
        let later = {
            let registry = Arc::clone(&registry);
            let make_member = Arc::clone(&make_member);
            discovery.map(move |change| {
                let change = change?;
                registry.changed(&change);
                Ok::<_, BoxError>(make_member(change))
            })
        };
        let members = stream::iter(first).chain(later);
        let load = PendingRequestsDiscover::new(members, CompleteOnResponse::default());
        let balance = BoxService::new(NonEmpty {
            inner: Balance::new(load),
            registry: Arc::clone(&registry),
            inner_ready: false,
        });
        let deadline =
            builder.connect_timeout + builder.call_timeout.unwrap_or(Duration::from_secs(30));
        Balanced {
            buffer: Buffer::new(balance, BUFFER),
            registry,
            deadline,
            connect_timeout: builder.connect_timeout,
            idempotent: false,
        }
    }
}

impl Balanced {
    /// Whether calls through this handle may run twice: then one that may
    /// have run on a member that failed (`Disconnected`,
    /// `may_have_run == true`) is sent once more to another member too.
    /// Default: false, only calls that provably did not run are.
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Calls `target` on a member and waits for the answer.
    ///
    /// # Errors
    ///
    /// The typed error the call ended with (after one failover, when it
    /// qualifies).
    pub async fn call(&self, target: &str, arg: impl Into<Value>) -> Result<Value, IkcError> {
        let target = target.parse().map_err(|e: ikc_core::ParseSpecifierError| {
            IkcError::new(ErrorKind::BadRequest, format!("bad target {target:?}: {e}"))
        })?;
        self.clone().send(Request::call(target, arg.into())).await
    }

    /// Posts to `target` on a member.
    ///
    /// # Errors
    ///
    /// When no member could take it.
    pub async fn post(&self, target: &str, arg: impl Into<Value>) -> Result<(), IkcError> {
        let target = target.parse().map_err(|e: ikc_core::ParseSpecifierError| {
            IkcError::new(ErrorKind::BadRequest, format!("bad target {target:?}: {e}"))
        })?;
        self.clone()
            .send(Request::post(target, arg.into()))
            .await
            .map(drop)
    }

    /// Members in the set (connected or not).
    #[must_use]
    pub fn members(&self) -> usize {
        self.registry.lock().known
    }

    async fn send(self, req: Request) -> Result<Value, IkcError> {
        if let KernelTarget::Named(name) = req.target().kernel()
            && let Some(client) = self
                .registry
                .kernel_settled(name, self.connect_timeout)
                .await
        {
            return client.oneshot(req).await;
        }
        if self.registry.is_empty() {
            return Err(no_server());
        }
        let again = req.clone();
        match once(self.buffer.clone(), self.deadline, req).await {
            Err(error) if self.retryable(&error) => {
                tracing::debug!(%error, "call failed on one member; sending it to another");
                once(self.buffer, self.deadline, again).await
            }
            answer => answer,
        }
    }

    fn retryable(&self, error: &IkcError) -> bool {
        match error.kind() {
            ErrorKind::ShuttingDown => true,
            ErrorKind::Disconnected => !error.may_have_run() || self.idempotent,
            _ => false,
        }
    }
}

/// One try: the request through the balancer, within `deadline`.
fn once(
    buffer: Buffer<Request, BoxFuture<'static, Result<Value, BoxError>>>,
    deadline: Duration,
    req: Request,
) -> BoxFuture<'static, Result<Value, IkcError>> {
    let call: BoxFuture<'static, Result<Value, BoxError>> = Box::pin(buffer.oneshot(req));
    Box::pin(async move {
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(into_ikc(error)),
            Err(_) => Err(IkcError::new(
                ErrorKind::Timeout,
                format!("no member answered within {deadline:?}"),
            )),
        }
    })
}

/// The balancer, answering `NoKernel` to the calls waiting in it once the
/// set is empty (the balancer itself would hold them until a member came).
/// It says it is ready then, and fails the call itself: the buffer in front
/// takes a readiness error for the end of the service.
struct NonEmpty<S> {
    inner: S,
    registry: Arc<Registry>,
    /// The inner balancer said it is ready: the next call is its.
    inner_ready: bool,
}

impl<S> Service<Request> for NonEmpty<S>
where
    S: Service<Request, Response = Value, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                self.inner_ready = ready.is_ok();
                Poll::Ready(ready)
            }
            // The balancer took the discovery's changes in this poll: an
            // empty set now is the set.
            Poll::Pending if self.registry.is_empty() => {
                self.inner_ready = false;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if std::mem::take(&mut self.inner_ready) {
            return Box::pin(self.inner.call(req));
        }
        Box::pin(std::future::ready(Err(no_server().into())))
    }
}

/// The answer of an empty set.
fn no_server() -> IkcError {
    IkcError::new(ErrorKind::NoKernel, "no server in the balanced set")
}

/// The call's own error, out of the balancer's and the buffer's boxes.
fn into_ikc(error: BoxError) -> IkcError {
    match error.downcast::<IkcError>() {
        Ok(error) => *error,
        Err(other) => IkcError::new(ErrorKind::Disconnected, other.to_string()),
    }
}

/// Sends each request to a member: as [`Balanced::call`] and
/// [`Balanced::post`] do, a post answering `Value::Null`. Always ready:
/// requests wait for a member in the balancer's queue.
impl Service<Request> for Balanced {
    type Response = Value;
    type Error = IkcError;
    type Future = BoxFuture<'static, Result<Value, IkcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(this.send(req))
    }
}
