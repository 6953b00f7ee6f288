//! [`MetricsLayer`]: per session and event, each request's count, error
//! and latency; the requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use ::metrics::{Counter, Gauge, Histogram};
use ikc_core::{ErrorKind, Request};
use pin_project::pin_project;
use quanta::Instant;
use tower::{Layer, Service};

use crate::BoxError;

/// Records the request metrics of [the module docs](super) around the
/// service it wraps.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer::new()
    }
}

impl MetricsLayer {
    /// A layer recording into the global `metrics` recorder.
    #[must_use]
    pub fn new() -> Self {
        let in_flight = ::metrics::gauge!("ikc_requests_in_flight");
        MetricsLayer {
            shared: Arc::new(Shared {
                targets: RwLock::default(),
                unrouted: Arc::new(Target::new("-", "-", in_flight.clone(), None)),
                in_flight,
            }),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            shared: Arc::clone(&self.shared),
            recent: Recent::default(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// The handles of each session and event seen answered, by session
    /// then event (looked up with the request's own `&str`s).
    targets: RwLock<HashMap<Box<str>, HashMap<Box<str>, Arc<Target>>>>,
    /// Requests whose target does not exist.
    unrouted: Arc<Target>,
    in_flight: Gauge,
}

/// The handles of one session and event, and those a request's end needs
/// besides (so that it holds one reference, not two).
#[derive(Debug)]
struct Target {
    session: Box<str>,
    event: Box<str>,
    calls: Counter,
    posts: Counter,
    duration: Histogram,
    in_flight: Gauge,
    /// Where a request answered "no such target" is counted instead; none
    /// for that target itself.
    unrouted: Option<Arc<Target>>,
}

impl Target {
    fn new(session: &str, event: &str, in_flight: Gauge, unrouted: Option<Arc<Target>>) -> Self {
        let labels = [("session", session.to_owned()), ("event", event.to_owned())];
        let with_kind = |kind: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_owned()));
            ::metrics::counter!("ikc_requests_total", &labels)
        };
        Target {
            session: session.into(),
            event: event.into(),
            calls: with_kind("call"),
            posts: with_kind("post"),
            duration: ::metrics::histogram!("ikc_request_duration_seconds", &labels),
            in_flight,
            unrouted,
        }
    }

    fn record(&self, post: bool, started: Instant, error: Option<ErrorKind>) {
        if post { &self.posts } else { &self.calls }.increment(1);
        self.duration.record(started.elapsed().as_secs_f64());
        if let Some(kind) = error {
            let labels = [
                ("session", self.session.to_string()),
                ("event", self.event.to_string()),
                ("error", kind.as_str().to_owned()),
            ];
            ::metrics::counter!("ikc_request_errors_total", &labels).increment(1);
        }
    }
}

impl Shared {
    fn known(&self, session: &str, event: &str) -> Option<Arc<Target>> {
        let targets = self.targets.read().unwrap_or_else(PoisonError::into_inner);
        targets.get(session)?.get(event).cloned()
    }

    /// The handles of a target answered for the first time.
    fn learn(&self, session: &str, event: &str) -> Arc<Target> {
        let mut targets = self.targets.write().unwrap_or_else(PoisonError::into_inner);
        let events = targets.entry(session.into()).or_default();
        Arc::clone(events.entry(event.into()).or_insert_with(|| {
            let unrouted = Arc::clone(&self.unrouted);
            Arc::new(Target::new(
                session,
                event,
                self.in_flight.clone(),
                Some(unrouted),
            ))
        }))
    }
}

/// The service [`MetricsLayer`] makes.
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    shared: Arc<Shared>,
    /// This clone's last targets: each connection calls a clone of its own,
    /// and a connection calls few targets, so most requests find theirs
    /// here by comparing names, without hashing or locking.
    recent: Recent,
}

/// The handles of the last few targets a [`Metered`] clone answered.
#[derive(Debug, Clone, Default)]
struct Recent {
    targets: [Option<Arc<Target>>; RECENT],
    /// The slot the next target learnt replaces.
    next: usize,
}

/// How many targets a connection keeps at hand.
const RECENT: usize = 4;

impl Recent {
    fn find(&self, session: &str, event: &str) -> Option<&Arc<Target>> {
        self.targets
            .iter()
            .flatten()
            .find(|target| *target.event == *event && *target.session == *session)
    }

    fn keep(&mut self, target: &Arc<Target>) {
        self.targets[self.next] = Some(Arc::clone(target));
        self.next = (self.next + 1) % RECENT;
    }
}

impl<S> Metered<S> {
    fn seen(&mut self, session: &str, event: &str) -> Seen {
        if let Some(target) = self.recent.find(session, event) {
            return Seen::Known(Arc::clone(target));
        }
        if let Some(target) = self.shared.known(session, event) {
            self.recent.keep(&target);
            return Seen::Known(target);
        }
        if event.is_empty() {
            // A target naming no event is refused by the router.
            return Seen::Known(Arc::clone(&self.shared.unrouted));
        }
        // Names are kept only for a target not seen answered yet.
        Seen::New(Arc::clone(&self.shared), session.into(), event.into())
    }
}

impl<S> Service<Request> for Metered<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let post = req.is_post();
        let target = self.seen(req.session(), req.event());
        self.shared.in_flight.increment(1.0);
        MeteredFuture {
            inner: self.inner.call(req),
            record: Some(Record {
                target,
                post,
                started,
            }),
        }
    }
}

enum Seen {
    Known(Arc<Target>),
    /// A target not answered yet: its handles are made at the end, if it
    /// exists.
    New(Arc<Shared>, Box<str>, Box<str>),
}

/// What a request's end records.
struct Record {
    target: Seen,
    post: bool,
    started: Instant,
}

impl Record {
    fn finish(self, error: Option<ErrorKind>) {
        let unrouted = matches!(
            error,
            Some(ErrorKind::NoSession | ErrorKind::NoEvent | ErrorKind::NoKernel)
        );
        let target = match self.target {
            Seen::Known(target) => target,
            Seen::New(shared, _, _) if unrouted => Arc::clone(&shared.unrouted),
            Seen::New(shared, session, event) => shared.learn(&session, &event),
        };
        target.in_flight.decrement(1.0);
        let target = match &target.unrouted {
            Some(instead) if unrouted => instead,
            _ => &target,
        };
        target.record(self.post, self.started, error);
    }
}

/// The future of [`Metered`]: the inner answer, recorded when it comes (or
/// as `Disconnected`, when the request is dropped before it does).
#[pin_project(PinnedDrop)]
pub struct MeteredFuture<F> {
    #[pin]
    inner: F,
    record: Option<Record>,
}

impl<F> std::fmt::Debug for MeteredFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx)).map_err(Into::into);
        if let Some(record) = this.record.take() {
            let error = answer.as_ref().err().map(ErrorKind::of);
            record.finish(error);
        }
        Poll::Ready(answer)
    }
}

#[pin_project::pinned_drop]
impl<F> PinnedDrop for MeteredFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(record) = self.project().record.take() {
            record.finish(Some(ErrorKind::Disconnected));
        }
    }
}
