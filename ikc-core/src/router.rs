//! [`Router`]: the tower service that dispatches every request to its session.
//!
//! A request for the local kernel (no kernel part, or one of its names) goes
//! to the published session's service; a request for a connected kernel is
//! forwarded over that kernel's channel, so a server is a hub through which
//! its clients call each other. `*` tries the local kernel first, then each
//! connected kernel in turn.
//!
//! The router is always ready, so one slow session never holds up another.
//! Each router instance (one per connection) keeps a clone of each local
//! session's service it has called and calls it directly while it is ready;
//! a session that is not ready is called through a fresh clone that waits
//! for it (as axum's `Route` does), and the clone it kept is dropped, so it
//! holds no reservation (a concurrency-limit permit, a buffer slot) while
//! nobody calls it. After a session is retracted or published again, a
//! router drops the clones it kept at its next call to a local session (or
//! when its connection closes): until then the old service stays alive,
//! though nothing calls it. A router keeps at most 8
//! sessions, found by comparing names (a connection calls few sessions, and
//! comparing a short name costs less than hashing it). Every failure to
//! route is a typed [`IkcError`], never a panic or a closed connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use ikc_proto::Value;
use pin_project::pin_project;
use tower::Service;
use tower::ServiceExt;

use crate::monitor::MonitorEvent;
use crate::names::Names;
use crate::peers::Peers;
use crate::sessions::{Published, SessionService, Sessions};
use crate::{ChannelHandle, ErrorKind, IkcError, KernelTarget, Request, Specifier};

/// What a router routes by: the kernel's names, its published sessions and
/// its connected peers.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    pub(crate) names: Arc<Names>,
    pub(crate) sessions: Sessions,
    pub(crate) peers: Peers,
}

/// Dispatches requests to local sessions and connected kernels; from
/// [`Kernel::router`](crate::Kernel::router).
pub struct Router {
    routes: Routes,
    kept: Kept,
}

/// How many sessions' services one router keeps; the one kept longest
/// makes room for another.
const KEPT_SESSIONS: usize = 8;

/// Session services this router instance calls directly, valid while the
/// kernel's sessions are unchanged.
#[derive(Default)]
struct Kept {
    /// Calls so far (saturating): a router called once (`Kernel::call`)
    /// keeps nothing, one called again (a connection's) keeps what it calls.
    calls: u8,
    generation: u64,
    ready: Vec<Session>,
}

struct Session {
    name: String,
    published: Arc<Published>,
    service: SessionService,
    /// The event last found among the session's events (the next request
    /// most likely names it again).
    allowed: String,
}

impl Clone for Router {
    /// A router for the same kernel; the clone starts with no sessions of
    /// its own.
    fn clone(&self) -> Self {
        Router::new(self.routes.clone())
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("kernel", &self.routes.names.name())
            .field("sessions", &self.kept.ready.len())
            .finish()
    }
}

/// Where a request goes.
pub(crate) enum Destination {
    Local(Arc<Published>),
    Remote(ChannelHandle),
    /// `*` with no local session: every connected kernel, in turn.
    AnyRemote(Vec<ChannelHandle>),
}

impl Router {
    pub(crate) fn new(routes: Routes) -> Self {
        Router {
            routes,
            kept: Kept::default(),
        }
    }
}

impl Routes {
    /// Finds where `req` goes, or the error its caller gets.
    pub(crate) fn resolve(&self, req: &Request) -> Result<Destination, IkcError> {
        if req.target().event().is_none() {
            return Err(IkcError::new(
                ErrorKind::BadRequest,
                "the target names no event",
            ));
        }
        match req.target().kernel() {
            KernelTarget::Local => self.local(req),
            KernelTarget::Named(name) if self.names.is_named(name) => self.local(req),
            KernelTarget::Named(name) => self
                .peers
                .get(name)
                .map(Destination::Remote)
                .ok_or_else(|| IkcError::no_kernel(name)),
            KernelTarget::Any if self.sessions.is_published(req.session()) => self.local(req),
            KernelTarget::Any => Ok(Destination::AnyRemote(self.peers.all())),
        }
    }

    fn local(&self, req: &Request) -> Result<Destination, IkcError> {
        let published = self
            .sessions
            .get(req.session())
            .ok_or_else(|| IkcError::no_session(req.session()))?;
        if !published.allows(req.event()) {
            return Err(IkcError::no_event(req.session(), req.event()));
        }
        Ok(Destination::Local(published))
    }

    /// Posts to `target`: delivered, and nobody waits for an answer. A post
    /// to a local session returns once the session has handled it, and the
    /// session's failure, which is not the poster's, is logged and
    /// announced on the monitor bus as a peer's failing post is.
    pub(crate) async fn post(&self, target: &Specifier, arg: Value) -> Result<(), IkcError> {
        let req = Request::post(target.clone(), arg);
        let Destination::Local(published) = self.resolve(&req)? else {
            return Router::new(self.clone()).oneshot(req).await.map(drop);
        };
        if let Err(error) = published.service.clone().oneshot(req).await {
            let error = IkcError::from_box(error);
            tracing::warn!(%target, %error, "post failed");
            self.peers.monitor().emit(MonitorEvent::Error {
                kernel: None,
                message: format!("post to {target} failed: {error}"),
            });
        }
        Ok(())
    }
}

/// Tries each kernel in turn until one publishes the session.
async fn any_remote(peers: Vec<ChannelHandle>, mut req: Request) -> Result<Value, IkcError> {
    let session = req.session().to_owned();
    for peer in peers {
        // Name the kernel so the peer does not forward a `*` again (a loop).
        let event = req.event().to_owned();
        let target = Specifier::remote(&peer.peer().kernel, &session, &event)
            .map_err(|e| IkcError::new(ErrorKind::BadRequest, e.to_string()))?;
        req.retarget(target);
        match peer.forward(req.clone(), true).await {
            Err(e) if matches!(e.kind(), ErrorKind::NoSession | ErrorKind::NoEvent) => {}
            other => return other,
        }
    }
    Err(IkcError::no_session(&session))
}

impl Service<Request> for Router {
    type Response = Value;
    type Error = IkcError;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> RouteFuture {
        if let Some(service) = self.kept_ready(&req) {
            return RouteFuture {
                state: State::Called {
                    inner: service.call(req),
                },
            };
        }
        let state = match self.routes.resolve(&req) {
            Err(error) => State::Ready {
                result: Some(Err(error)),
            },
            Ok(Destination::Local(published)) => {
                let mut service = published.service.clone();
                // Nobody is woken by this poll: a service that is not ready
                // is polled again, with the caller's waker, by `Oneshot`.
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                match service.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => State::Called {
                        inner: service.call(req),
                    },
                    Poll::Ready(Err(error)) => State::Ready {
                        result: Some(Err(IkcError::from_box(error))),
                    },
                    // Rare: boxed, so the request stays out of every routed
                    // future's size.
                    Poll::Pending => State::Called {
                        inner: Box::pin(service.oneshot(req)),
                    },
                }
            }
            Ok(Destination::Remote(peer)) => State::Remote {
                inner: Box::pin(async move { peer.forward(req, false).await }),
            },
            Ok(Destination::AnyRemote(peers)) => State::Remote {
                inner: Box::pin(any_remote(peers, req)),
            },
        };
        RouteFuture { state }
    }
}

impl Router {
    /// The clone of a local session's service this router keeps for
    /// `req`, when it has one (or can take one) and it is ready to be
    /// called. `None` sends the request through [`resolve`], which also
    /// finds every error.
    fn kept_ready(&mut self, req: &Request) -> Option<&mut SessionService> {
        let local = match req.target().kernel() {
            KernelTarget::Local => true,
            KernelTarget::Named(name) => self.routes.names.is_named(name),
            KernelTarget::Any => false,
        };
        if !local || req.target().event().is_none() {
            return None;
        }
        self.kept.calls = self.kept.calls.saturating_add(1);
        if self.kept.calls < 2 {
            return None;
        }
        let generation = self.routes.sessions.generation();
        if self.kept.generation != generation {
            self.kept.ready.clear();
            self.kept.generation = generation;
        }
        let ready = &mut self.kept.ready;
        let at = match ready.iter().position(|kept| kept.name == req.session()) {
            Some(at) => at,
            None => {
                let published = self.routes.sessions.get(req.session())?;
                if ready.len() == KEPT_SESSIONS {
                    ready.remove(0);
                }
                ready.push(Session {
                    name: req.session().to_owned(),
                    service: published.service.clone(),
                    published,
                    allowed: String::new(),
                });
                ready.len() - 1
            }
        };
        let session = &mut ready[at];
        if session.allowed != req.event() {
            if !session.published.allows(req.event()) {
                return None;
            }
            req.event().clone_into(&mut session.allowed);
        }
        // Nobody is woken by this poll: a service that is not ready now is
        // dropped (with whatever it reserved) and a clone waits instead.
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if let Poll::Ready(Ok(())) = session.service.poll_ready(&mut cx) {
            return Some(&mut ready[at].service);
        }
        ready.remove(at);
        None
    }
}

/// The answer to a routed request.
#[pin_project]
#[derive(Debug)]
pub struct RouteFuture {
    #[pin]
    state: State,
}

#[pin_project(project = StateProj)]
enum State {
    Ready {
        result: Option<Result<Value, IkcError>>,
    },
    /// A local session's answer.
    Called {
        #[pin]
        inner: BoxFuture<'static, Result<Value, crate::BoxError>>,
    },
    Remote {
        #[pin]
        inner: BoxFuture<'static, Result<Value, IkcError>>,
    },
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Ready { .. } => "Ready",
            State::Called { .. } => "Local",
            State::Remote { .. } => "Remote",
        })
    }
}

impl Future for RouteFuture {
    type Output = Result<Value, IkcError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { result } => {
                Poll::Ready(result.take().expect("RouteFuture polled after completion"))
            }
            StateProj::Called { inner } => inner.poll(cx).map_err(IkcError::from_box),
            StateProj::Remote { inner } => inner.poll(cx),
        }
    }
}
