//! [`MetricsLayer`]: per session and event, each request's count, error
//! and latency; the requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use ::metrics::{Counter, Gauge, Histogram};
use ikc_core::{ErrorKind, Request};
use pin_project::pin_project;
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
        MetricsLayer {
            shared: Arc::new(Shared {
                targets: RwLock::default(),
                unrouted: Arc::new(Target::new("-", "-")),
                in_flight: ::metrics::gauge!("ikc_requests_in_flight"),
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

/// The handles of one session and event.
#[derive(Debug)]
struct Target {
    session: Box<str>,
    event: Box<str>,
    calls: Counter,
    posts: Counter,
    duration: Histogram,
}

impl Target {
    fn new(session: &str, event: &str) -> Self {
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
        Arc::clone(
            events
                .entry(event.into())
                .or_insert_with(|| Arc::new(Target::new(session, event))),
        )
    }
}

/// The service [`MetricsLayer`] makes.
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    shared: Arc<Shared>,
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
        let target = match self.shared.known(req.session(), req.event()) {
            Some(target) => Seen::Known(target),
            // A target naming no event is refused by the router.
            None if req.event().is_empty() => Seen::Known(Arc::clone(&self.shared.unrouted)),
            // Names are kept only for a target not seen answered yet.
            None => Seen::New(req.session().into(), req.event().into()),
        };
        self.shared.in_flight.increment(1.0);
        MeteredFuture {
            inner: self.inner.call(req),
            record: Some(Record {
                shared: Arc::clone(&self.shared),
                target,
                post,
                started,
            }),
        }
    }
}

enum Seen {
    Known(Arc<Target>),
    New(Box<str>, Box<str>),
}

/// What a request's end records.
struct Record {
    shared: Arc<Shared>,
    target: Seen,
    post: bool,
    started: Instant,
}

impl Record {
    fn finish(self, error: Option<ErrorKind>) {
        self.shared.in_flight.decrement(1.0);
        let unrouted = matches!(
            error,
            Some(ErrorKind::NoSession | ErrorKind::NoEvent | ErrorKind::NoKernel)
        );
        let target = match self.target {
            _ if unrouted => Arc::clone(&self.shared.unrouted),
            Seen::Known(target) => target,
            Seen::New(session, event) => self.shared.learn(&session, &event),
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
