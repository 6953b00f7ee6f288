//! [`MetricsLayer`]: per session and event, each request's count, error
//! and latency; the requests in flight.
//!
//! A request adds to plain atomics of its target (a count, a latency
//! bucket, a sum of nanoseconds) and of its layer (started, ended): a few
//! uncontended adds and two reads of the CPU's clock. [`flush`] moves what
//! was added into the `metrics` recorder, so that the recorder's own cost
//! (a registry lookup, a timestamped sample per histogram value) is paid
//! once per target and flush rather than once per request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use ::metrics::{Counter, Gauge};
use ikc_core::{ErrorKind, Request, Specifier};
use pin_project::pin_project;
use quanta::Clock;
use tower::{Layer, Service};

use crate::BoxError;

/// Upper bounds of the latency buckets of `ikc_request_duration_seconds`
/// in nanoseconds, 50 µs to 10 s (a last bucket, `+Inf`, takes the rest).
const BOUNDS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// How often a layer made on a tokio runtime flushes by itself.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The layers alive in this process, for [`flush`].
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Moves what every [`MetricsLayer`] of this process recorded since the
/// last flush into the `metrics` recorder. A layer made on a tokio
/// runtime flushes every second by itself, and a target's last figures
/// are flushed when it is dropped; call this before rendering a scrape
/// to make it exact (`ikc serve --metrics` does).
pub fn flush() {
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|layer| layer.upgrade().map(|layer| layer.flush()).is_some());
}

/// Records the request metrics of [the module docs](super) around the
/// service it wraps.
///
/// Made on a tokio runtime, the layer spawns a task that [`flush`]es it
/// every second while it lives.
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
    /// A layer recording into the `metrics` recorder of the thread that
    /// makes it (the global one, unless a local one is set).
    #[must_use]
    pub fn new() -> Self {
        let common = Arc::new(Common {
            clock: Clock::new(),
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
        });
        let shared = Arc::new(Shared {
            targets: RwLock::default(),
            unrouted: Arc::new(Target::new("-/-", Arc::clone(&common), None)),
            common,
            in_flight: ::metrics::gauge!("ikc_requests_in_flight"),
            reported_in_flight: AtomicI64::new(0),
        });
        {
            let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|layer| layer.strong_count() > 0);
            live.push(Arc::downgrade(&shared));
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let layer = Arc::downgrade(&shared);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(FLUSH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Some(layer) = layer.upgrade() else { break };
                    layer.flush();
                }
            });
        }
        MetricsLayer { shared }
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
    /// The targets seen answered, by their names (`session/event`, looked
    /// up with the request's own `&str`).
    targets: RwLock<HashMap<Box<str>, Arc<Target>>>,
    /// Requests whose target does not exist.
    unrouted: Arc<Target>,
    common: Arc<Common>,
    in_flight: Gauge,
    /// What this layer last added to `in_flight` (several layers, several
    /// servers of one process, share the gauge).
    reported_in_flight: AtomicI64,
}

/// What every target of a layer shares: the clock, and the requests
/// started and ended (their difference is the requests in flight).
#[derive(Debug)]
struct Common {
    clock: Clock,
    started: AtomicU64,
    ended: AtomicU64,
}

/// One session and event: what its requests added since the last flush,
/// and the recorder's handles it is flushed into.
#[derive(Debug)]
struct Target {
    /// `session/event`, as [`Specifier::names`](ikc_core::Specifier::names).
    names: Box<str>,
    session: Box<str>,
    event: Box<str>,
    calls: AtomicU64,
    posts: AtomicU64,
    /// Requests by latency bucket ([`BOUNDS`], then `+Inf`).
    buckets: [AtomicU64; BOUNDS.len() + 1],
    nanos: AtomicU64,
    common: Arc<Common>,
    /// Where a request answered "no such target" is counted instead; none
    /// for that target itself.
    unrouted: Option<Arc<Target>>,
    exported: Exported,
}

/// A target's handles in the recorder. The latency histogram is written
/// as the series of a Prometheus histogram: cumulative `_bucket{le}` and
/// `_count` counters, and `_sum` (seconds, fractional) as a gauge added to.
#[derive(Debug)]
struct Exported {
    calls: Counter,
    posts: Counter,
    buckets: [Counter; BOUNDS.len() + 1],
    count: Counter,
    sum: Gauge,
}

impl Target {
    fn new(names: &str, common: Arc<Common>, unrouted: Option<Arc<Target>>) -> Self {
        let (session, event) = names.split_once('/').unwrap_or((names, "-"));
        let labels = [("session", session.to_owned()), ("event", event.to_owned())];
        let with = |key: &'static str, value: String| {
            let mut labels = labels.to_vec();
            labels.push((key, value));
            labels
        };
        let buckets = std::array::from_fn(|i| {
            let le = BOUNDS.get(i).map_or_else(
                || "+Inf".to_owned(),
                // Nanoseconds to seconds is exact enough to print the bound
                // as written (`0.00005`).
                |&nanos| (nanos as f64 / 1e9).to_string(),
            );
            ::metrics::counter!("ikc_request_duration_seconds_bucket", &with("le", le))
        });
        Target {
            names: names.into(),
            session: session.into(),
            event: event.into(),
            calls: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            nanos: AtomicU64::new(0),
            common,
            unrouted,
            exported: Exported {
                calls: ::metrics::counter!("ikc_requests_total", &with("kind", "call".into())),
                posts: ::metrics::counter!("ikc_requests_total", &with("kind", "post".into())),
                buckets,
                count: ::metrics::counter!("ikc_request_duration_seconds_count", &labels),
                sum: ::metrics::gauge!("ikc_request_duration_seconds_sum", &labels),
            },
        }
    }

    fn record(&self, post: bool, nanos: u64, error: Option<ErrorKind>) {
        if post { &self.posts } else { &self.calls }.fetch_add(1, Relaxed);
        let bucket = BOUNDS.iter().take_while(|&&bound| nanos > bound).count();
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.nanos.fetch_add(nanos, Relaxed);
        if let Some(kind) = error {
            // Rare, so straight to the recorder.
            let labels = [
                ("session", self.session.to_string()),
                ("event", self.event.to_string()),
                ("error", kind.as_str().to_owned()),
            ];
            ::metrics::counter!("ikc_request_errors_total", &labels).increment(1);
        }
    }

    fn flush(&self) {
        let exported = &self.exported;
        exported.calls.increment(self.calls.swap(0, Relaxed));
        exported.posts.increment(self.posts.swap(0, Relaxed));
        let mut cumulative = 0;
        for (bucket, counter) in self.buckets.iter().zip(&exported.buckets) {
            cumulative += bucket.swap(0, Relaxed);
            counter.increment(cumulative);
        }
        exported.count.increment(cumulative);
        exported
            .sum
            .increment(Duration::from_nanos(self.nanos.swap(0, Relaxed)).as_secs_f64());
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Shared {
    fn known(&self, names: &str) -> Option<Arc<Target>> {
        let targets = self.targets.read().unwrap_or_else(PoisonError::into_inner);
        targets.get(names).cloned()
    }

    /// The target answered for the first time.
    fn learn(&self, names: &str) -> Arc<Target> {
        let mut targets = self.targets.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(targets.entry(names.into()).or_insert_with(|| {
            Arc::new(Target::new(
                names,
                Arc::clone(&self.common),
                Some(Arc::clone(&self.unrouted)),
            ))
        }))
    }

    fn flush(&self) {
        {
            let targets = self.targets.read().unwrap_or_else(PoisonError::into_inner);
            targets.values().for_each(|target| target.flush());
        }
        self.unrouted.flush();
        // Ended first: a request counted there started before.
        let ended = self.common.ended.load(Relaxed);
        let started = self.common.started.load(Relaxed);
        let now = i64::try_from(started.saturating_sub(ended)).unwrap_or(i64::MAX);
        let before = self.reported_in_flight.swap(now, Relaxed);
        self.in_flight.increment((now - before) as f64);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let reported = *self.reported_in_flight.get_mut();
        self.in_flight.decrement(reported as f64);
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

/// The last few targets a [`Metered`] clone answered.
#[derive(Debug, Clone, Default)]
struct Recent {
    targets: [Option<Arc<Target>>; RECENT],
    /// The slot the next target learnt replaces.
    next: usize,
}

/// How many targets a connection keeps at hand.
const RECENT: usize = 4;

impl Recent {
    fn find(&self, names: &str) -> Option<&Arc<Target>> {
        self.targets
            .iter()
            .flatten()
            .find(|target| *target.names == *names)
    }

    fn keep(&mut self, target: &Arc<Target>) {
        self.targets[self.next] = Some(Arc::clone(target));
        self.next = (self.next + 1) % RECENT;
    }
}

impl<S> Metered<S> {
    fn seen(&mut self, target: &Specifier) -> Seen {
        let names = target.names();
        if let Some(target) = self.recent.find(names) {
            return Seen::Known(Arc::clone(target));
        }
        if let Some(target) = self.shared.known(names) {
            self.recent.keep(&target);
            return Seen::Known(target);
        }
        if target.event().is_none() {
            // A target naming no event is refused by the router.
            return Seen::Known(Arc::clone(&self.shared.unrouted));
        }
        // Names are kept only for a target not seen answered yet.
        Seen::New(Box::new(NewTarget {
            shared: Arc::clone(&self.shared),
            names: names.into(),
        }))
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
        let common = &self.shared.common;
        let started = common.clock.raw();
        common.started.fetch_add(1, Relaxed);
        let post = req.is_post();
        let target = self.seen(req.target());
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
    /// A target not answered yet: it is learnt at the end, if it exists.
    New(Box<NewTarget>),
}

struct NewTarget {
    shared: Arc<Shared>,
    names: Box<str>,
}

/// What a request's end records.
struct Record {
    target: Seen,
    post: bool,
    /// The clock's raw reading at the request's arrival.
    started: u64,
}

impl Record {
    fn finish(self, error: Option<ErrorKind>) {
        let unrouted = matches!(
            error,
            Some(ErrorKind::NoSession | ErrorKind::NoEvent | ErrorKind::NoKernel)
        );
        let target = match self.target {
            Seen::Known(target) => target,
            Seen::New(new) if unrouted => Arc::clone(&new.shared.unrouted),
            Seen::New(new) => new.shared.learn(&new.names),
        };
        let common = &target.common;
        let nanos = common
            .clock
            .delta_as_nanos(self.started, common.clock.raw());
        common.ended.fetch_add(1, Relaxed);
        let target = match &target.unrouted {
            Some(instead) if unrouted => instead,
            _ => &target,
        };
        target.record(self.post, nanos, error);
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
