//! [`ChannelDriver`]: the future that runs one connection.
//!
//! One poll does, in a loop until nothing moves: take frames the handles
//! queued, read every frame that is ready and dispatch it, collect finished
//! handlers, and hand the outgoing frames to the sink. The sink is flushed
//! once at the end, so a burst of requests costs one write, not one per
//! reply. Over a transport that takes encoded frames
//! ([`Registered::connect_encoded`](super::Registered::connect_encoded)),
//! replies are written straight from their values and the handles write
//! their calls themselves; both reach the transport's write buffer as one
//! run of bytes per batch, after the frames of the outbox.
//!
//! A handler is polled once inline when its request arrives; only a
//! handler that is still pending is kept in a `FuturesUnordered` (a task per
//! request would cost a spawn and a cross-thread wake each).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;

use foldhash::fast::RandomState as FastHash;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Sink, Stream, StreamExt};
use ikc_proto::{Value, pb};
use pin_project::pin_project;
use tower::Service;

use super::ChannelError;
use super::handle::Shared;
use super::keepalive::{Keepalive, Probe};
use crate::error::error_chain;
use crate::kernel::SessionService;
use crate::monitor::MonitorEvent;
use crate::{BoxError, ChannelHandle, ErrorKind, IkcError, Kernel, Request, Specifier};

/// Frames the driver buffers for a peer that is slow to read before it stops
/// reading more requests from that peer.
const OUTBOX_HIGH_WATER: usize = 256;

/// Frames read per poll before the driver yields to other tasks.
const READ_BUDGET: usize = 256;

/// How often the driver looks for calls of ours past their deadline; a
/// timeout fires up to this much late.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

type HandlerFuture = BoxFuture<'static, Result<Value, BoxError>>;

/// A running handler: a call can be cancelled by its caller, a post cannot.
#[pin_project(project = InFlightProj)]
enum InFlight {
    Call {
        id: u64,
        #[pin]
        handler: Abortable<HandlerFuture>,
    },
    Post {
        target: Option<String>,
        #[pin]
        handler: HandlerFuture,
    },
}

/// A request waiting for the service to be ready.
struct Waiting {
    id: u64,
    req: Request,
    /// For a post: its target, for the log line if it fails.
    target: Option<String>,
}

/// What a finished handler leaves to do.
enum Finished {
    /// Answer call `id`; `None` when its caller cancelled it.
    Call {
        id: u64,
        answer: Option<Result<Value, IkcError>>,
    },
    /// A post ended; a failure is logged.
    Post {
        target: String,
        result: Result<Value, IkcError>,
    },
}

impl Future for InFlight {
    type Output = Finished;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        match self.project() {
            InFlightProj::Call { id, handler } => handler.poll(cx).map(|answer| Finished::Call {
                id: *id,
                answer: answer.ok().map(|answer| answer.map_err(IkcError::from_box)),
            }),
            InFlightProj::Post { target, handler } => {
                handler.poll(cx).map(|result| Finished::Post {
                    target: target.take().unwrap_or_default(),
                    result: result.map_err(IkcError::from_box),
                })
            }
        }
    }
}

/// Removes the peer from the kernel and fails its pending calls when the
/// driver ends or is dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) kernel: Kernel,
    pub(crate) handle: ChannelHandle,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.shared().close();
        self.handle.shared().discard_queued();
        self.kernel.unregister(&self.handle);
    }
}

/// How many of a peer's posts failed, so the log says so a few times
/// rather than once per post; the total is logged when the channel ends.
#[derive(Debug, Default)]
struct FailedPosts {
    count: u64,
    peer: String,
}

impl FailedPosts {
    /// Counts one more failure of `peer`'s posts; the count so far.
    fn record(&mut self, peer: &str) -> u64 {
        if self.count == 0 {
            peer.clone_into(&mut self.peer);
        }
        self.count += 1;
        self.count
    }
}

impl Drop for FailedPosts {
    fn drop(&mut self) {
        if self.count > 1 && !is_power_of_ten(self.count) {
            tracing::warn!(peer = %self.peer, failed = self.count, "posts from this peer failed");
        }
    }
}

/// The answer to a call whose reply is over the peer's frame limit:
/// sending it would break the connection for every call on it.
fn too_large_reply(len: u64, max: usize) -> IkcError {
    IkcError::new(
        ErrorKind::Protocol,
        format!("reply of {len} bytes exceeds the peer's frame limit of {max} bytes"),
    )
}

/// The time of this wake-up of the driver: the clock, read at the first
/// use and kept in `clock` for the rest of it.
fn read_once(clock: &mut Option<tokio::time::Instant>) -> tokio::time::Instant {
    *clock.get_or_insert_with(tokio::time::Instant::now)
}

fn is_power_of_ten(n: u64) -> bool {
    n > 0 && 10_u64.pow(n.ilog10()) == n
}

/// Runs one connection: reads and dispatches the peer's frames and writes
/// ours. Spawn it (or `.await` it); the channel lives as long as it runs.
///
/// It completes when the peer closes the connection and every request it
/// sent was answered, when a graceful close
/// ([`ChannelHandle::go_away`]) has finished, or with an error when the
/// transport fails. Dropping it aborts the connection: running handlers are
/// dropped and pending calls fail with `Disconnected`.
#[pin_project]
#[must_use = "the channel does nothing unless its driver is polled"]
pub struct ChannelDriver<T> {
    #[pin]
    transport: T,
    /// For a transport that takes frames the handles encoded: appends them
    /// to its write buffer.
    append: Option<AppendEncoded<T>>,
    state: State,
}

/// Replies encoded as they are made, back to back with their heads.
#[derive(Default)]
struct Replies {
    bytes: BytesMut,
    /// How many `bytes` holds: they count against `OUTBOX_HIGH_WATER`.
    frames: usize,
}

/// Appends frames a channel's handles encoded (whole frames, heads
/// included, back to back) to a transport's write buffer, to be written
/// with its next flush after everything sent to it before; `frames` is left
/// empty, its bytes copied or its buffer taken. See
/// [`Registered::connect_encoded`](super::Registered::connect_encoded).
pub type AppendEncoded<T> = fn(Pin<&mut T>, &mut BytesMut);

/// Everything the driver owns besides the transport.
struct State {
    service: SessionService,
    // Declared before `registration` so running handlers are dropped before
    // the peer is unregistered: Unregister comes after its last request.
    in_flight: FuturesUnordered<InFlight>,
    /// Requests waiting for the service to be ready, in arrival order.
    waiting: VecDeque<Waiting>,
    cancels: HashMap<u64, AbortHandle, FastHash>,
    outbox: VecDeque<pb::Frame>,
    /// For a transport that takes encoded frames: the replies to the
    /// peer's calls, written straight from their values, handed to the
    /// transport after the outbox.
    replies: Option<Replies>,
    /// Answers to our calls read in this turn of the loop, delivered
    /// together under one lock; `wakers` is room for their callers'.
    answers: Vec<(u64, Result<Value, IkcError>)>,
    wakers: Vec<Waker>,
    max_in_flight: usize,
    /// The hint sent with `Overloaded`.
    retry_after: Duration,
    /// Handlers in `in_flight` whose call the peer cancelled, not collected
    /// yet: they no longer count against `max_in_flight`, or a caller that
    /// gave up on a call and made the next one at once (its `Cancel` read
    /// in the same batch) would be answered `Overloaded`.
    cancelled: usize,
    keepalive: Option<Keepalive>,
    /// Wakes the driver to time out our calls; polled only while some wait.
    sweep: Pin<Box<tokio::time::Sleep>>,
    /// Frames arrived since the keepalive last looked.
    heard: bool,
    read_closed: bool,
    draining: bool,
    unflushed: bool,
    failed: Option<ChannelError>,
    last_request_id: u64,
    /// The time read once per wake-up for the deadlines of the requests
    /// read then: they are approximate anyway (the caller enforces its
    /// own), and reading the clock per request is not free.
    clock: Option<tokio::time::Instant>,
    failed_posts: FailedPosts,
    shared: Arc<Shared>,
    registration: Registration,
}

impl<T> std::fmt::Debug for ChannelDriver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelDriver")
            .field("peer", &self.state.registration.handle.peer().kernel)
            .field("in_flight", &self.state.in_flight.len())
            .field("outbox", &self.state.outbox.len())
            .finish_non_exhaustive()
    }
}

impl<T, E> ChannelDriver<T>
where
    T: Sink<pb::Frame, Error = E> + Stream<Item = Result<pb::Frame, E>>,
    E: Into<BoxError>,
{
    pub(crate) fn new(
        transport: T,
        append: Option<AppendEncoded<T>>,
        registration: Registration,
        service: SessionService,
        max_in_flight: usize,
        retry_after: Duration,
        keepalive: Option<Duration>,
    ) -> Self {
        let state = State {
            keepalive: keepalive.map(Keepalive::new),
            sweep: Box::pin(tokio::time::sleep(SWEEP_EVERY)),
            heard: false,
            service,
            in_flight: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            cancels: HashMap::default(),
            outbox: VecDeque::new(),
            replies: append.is_some().then(Replies::default),
            answers: Vec::new(),
            wakers: Vec::new(),
            max_in_flight,
            retry_after,
            cancelled: 0,
            read_closed: false,
            draining: false,
            unflushed: false,
            failed: None,
            last_request_id: 0,
            clock: None,
            failed_posts: FailedPosts::default(),
            shared: Arc::clone(registration.handle.shared()),
            registration,
        };
        if append.is_some() {
            state.shared.encode_queued();
        }
        ChannelDriver {
            transport,
            append,
            state,
        }
    }
}

impl<T, E> Future for ChannelDriver<T>
where
    T: Sink<pb::Frame, Error = E> + Stream<Item = Result<pb::Frame, E>>,
    E: Into<BoxError>,
{
    type Output = Result<(), ChannelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut transport = this.transport;
        let append = *this.append;
        let state = this.state;
        state.shared.driver_waker.register(cx.waker());
        state.clock = None;
        // Timers are looked at once per wake-up, not per loop turn: polling
        // a timer is not free, and a busy connection turns the loop often.
        if !state.read_closed && state.failed.is_none() {
            let heard = std::mem::take(&mut state.heard);
            match state.keepalive.as_mut().and_then(|k| k.poll(heard, cx)) {
                None => {}
                Some(Probe::Ping(nonce)) => {
                    state.outbox.push_back(pb::Ping { nonce }.into());
                }
                Some(Probe::Dead) => {
                    let silent = state
                        .keepalive
                        .as_ref()
                        .map_or(Duration::ZERO, |k| k.interval * 2);
                    tracing::debug!(peer = %state.registration.handle.peer().kernel, ?silent, "peer silent past the keepalive, closing");
                    state.shared.close();
                    // Close now, without flushing: a peer that stopped
                    // reading would never let the outbox drain.
                    return Poll::Ready(Err(ChannelError::Read(
                        format!(
                            "no frame from the peer for {silent:?}, not even an answer to Ping"
                        )
                        .into(),
                    )));
                }
            }
        }

        if state.shared.has_pending() && state.sweep.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            for id in state.shared.expire(now) {
                state.outbox.push_back(pb::Cancel { id }.into());
            }
            state.sweep.as_mut().reset(now + SWEEP_EVERY);
            // Register for the next sweep.
            let _ = state.sweep.as_mut().poll(cx);
        }

        let mut budget = READ_BUDGET;
        loop {
            let mut progress = false;

            if !state.draining && state.shared.drain_requested() {
                state.draining = true;
                state.outbox.push_back(
                    pb::GoAway {
                        reason: "shutting down".to_owned(),
                        last_id: state.last_request_id,
                    }
                    .into(),
                );
                progress = true;
            }

            // Frames queued by handles (encoded ones are written below).
            let room = OUTBOX_HIGH_WATER.saturating_sub(state.unsent());
            let now = || read_once(&mut state.clock);
            if append.is_none() && state.shared.take_queued(&mut state.outbox, room, now) {
                progress = true;
            }

            // Frames from the peer. A peer that does not read its answers
            // fills the outbox, and then we stop reading its requests.
            while !state.read_closed && state.failed.is_none() && state.unsent() < OUTBOX_HIGH_WATER
            {
                if budget == 0 {
                    break;
                }
                match transport.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        budget -= 1;
                        progress = true;
                        state.heard = true;
                        state.on_frame(frame, cx);
                    }
                    Poll::Ready(Some(Err(error))) => {
                        let error: BoxError = error.into();
                        tracing::debug!(peer = %state.registration.handle.peer().kernel, error = %error_chain(&*error), "invalid input from peer, closing");
                        let report = IkcError::new(ErrorKind::Protocol, error_chain(&*error));
                        state.outbox.push_back(report.to_proto(0).into());
                        state.registration.kernel.emit(MonitorEvent::Error {
                            kernel: Some(state.registration.handle.peer().kernel.clone()),
                            message: report.message().to_owned(),
                        });
                        state.failed = Some(ChannelError::Read(error));
                        state.read_closed = true;
                        progress = true;
                    }
                    Poll::Ready(None) => {
                        state.read_closed = true;
                        state.deliver_answers();
                        // Nothing more will be read, so no answer can arrive.
                        state.shared.close();
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            state.deliver_answers();

            // Requests that waited for the service to be ready.
            if state.failed.is_none() && state.dispatch(cx) {
                progress = true;
            }

            // Finished handlers.
            if state.failed.is_none() {
                while let Poll::Ready(Some(finished)) = state.in_flight.poll_next_unpin(cx) {
                    progress = true;
                    state.complete(finished);
                }
            }

            // Hand what is queued to the sink (it buffers; flushed below).
            while !state.outbox.is_empty() {
                match transport.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let frame = state.outbox.pop_front().expect("outbox is not empty");
                        if let Err(error) = transport.as_mut().start_send(frame) {
                            return Poll::Ready(Err(ChannelError::Write(error.into())));
                        }
                        state.unflushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(error)) => {
                        return Poll::Ready(Err(ChannelError::Write(error.into())));
                    }
                    Poll::Pending => break,
                }
            }
            // Then the replies encoded already, and what the handles
            // encoded, once the frames before them are in the sink and it
            // has room.
            if let Some(append) = append
                && state.outbox.is_empty()
                && (state.replies.as_ref().is_some_and(|r| r.frames > 0)
                    || state.shared.has_queued())
            {
                match transport.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(replies) = state.replies.as_mut().filter(|r| r.frames > 0) {
                            append(transport.as_mut(), &mut replies.bytes);
                            super::trim_encoded(&mut replies.bytes);
                            replies.frames = 0;
                            state.unflushed = true;
                            progress = true;
                        }
                        let now = || read_once(&mut state.clock);
                        if state
                            .shared
                            .take_encoded(|frames| append(transport.as_mut(), frames), now)
                        {
                            state.unflushed = true;
                            progress = true;
                        }
                    }
                    Poll::Ready(Err(error)) => {
                        return Poll::Ready(Err(ChannelError::Write(error.into())));
                    }
                    Poll::Pending => {}
                }
            }

            if budget == 0 {
                // Let other connections run; come back at once. (The last
                // frame read may also have filled the outbox: then no
                // read was left pending to wake the driver.)
                cx.waker().wake_by_ref();
                break;
            }
            if !progress {
                break;
            }
        }

        if state.unflushed {
            match transport.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => state.unflushed = false,
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(ChannelError::Write(error.into())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }

        let quiet = state.unsent() == 0 && !state.unflushed;
        let done = if state.failed.is_some() {
            quiet
        } else if state.read_closed {
            quiet && state.in_flight.is_empty() && state.waiting.is_empty()
        } else {
            state.draining
                && quiet
                && state.in_flight.is_empty()
                && state.waiting.is_empty()
                && !state.shared.has_pending()
        };
        if !done {
            return Poll::Pending;
        }
        match transport.as_mut().poll_close(cx) {
            Poll::Pending => Poll::Pending,
            // The connection is over either way; a failed close loses nothing.
            Poll::Ready(_) => Poll::Ready(state.failed.take().map_or(Ok(()), Err)),
        }
    }
}

impl State {
    /// Frames of ours waiting to go to the transport.
    fn unsent(&self) -> usize {
        self.outbox.len() + self.replies.as_ref().map_or(0, |replies| replies.frames)
    }

    /// Delivers the answers read so far to their callers.
    fn deliver_answers(&mut self) {
        if !self.answers.is_empty() {
            self.shared.resolve_all(&mut self.answers, &mut self.wakers);
        }
    }

    fn on_frame(&mut self, frame: pb::Frame, cx: &mut Context<'_>) {
        use pb::frame::Kind;
        let Some(kind) = frame.kind else {
            // A frame kind from a newer protocol revision: nothing to do.
            tracing::trace!("ignoring empty or unknown frame");
            return;
        };
        match kind {
            Kind::Request(request) => self.on_request(request, cx),
            Kind::Reply(reply) => {
                let answer = Value::from_proto(reply.value).map_err(IkcError::from);
                self.answers.push((reply.id, answer));
            }
            Kind::Error(error) => {
                let id = error.id;
                let error = IkcError::from_proto(error);
                if id == 0 {
                    tracing::debug!(peer = %self.registration.handle.peer().kernel, %error, "peer reported an error");
                    self.registration.kernel.emit(MonitorEvent::Error {
                        kernel: Some(self.registration.handle.peer().kernel.clone()),
                        message: error.to_string(),
                    });
                } else {
                    self.answers.push((id, Err(error)));
                }
            }
            Kind::Cancel(cancel) => {
                if let Some(abort) = self.cancels.remove(&cancel.id) {
                    abort.abort();
                    self.cancelled += 1;
                } else if cancel.id != 0 {
                    // Not started yet: it never will be.
                    self.waiting.retain(|waiting| waiting.id != cancel.id);
                }
            }
            Kind::Subscribe(subscribe) => {
                let kernel = &self.registration.kernel;
                let frame = if kernel.is_published(&subscribe.session) {
                    kernel.emit(MonitorEvent::Subscribe {
                        kernel: self.registration.handle.peer().kernel.clone(),
                        session: subscribe.session,
                    });
                    pb::Reply {
                        id: subscribe.id,
                        value: None,
                    }
                    .into()
                } else {
                    IkcError::no_session(&subscribe.session)
                        .to_proto(subscribe.id)
                        .into()
                };
                self.outbox.push_back(frame);
            }
            Kind::Unsubscribe(unsubscribe) => {
                self.registration.kernel.emit(MonitorEvent::Unsubscribe {
                    kernel: self.registration.handle.peer().kernel.clone(),
                    session: unsubscribe.session,
                });
            }
            Kind::Ping(ping) => self.outbox.push_back(pb::Pong { nonce: ping.nonce }.into()),
            Kind::Pong(_) => {}
            Kind::GoAway(go_away) => {
                tracing::debug!(peer = %self.registration.handle.peer().kernel, reason = %go_away.reason, "peer is going away");
                self.shared.set_peer_going_away(go_away.last_id);
            }
        }
    }

    fn on_request(&mut self, request: pb::Request, cx: &mut Context<'_>) {
        let id = request.id;
        self.last_request_id = (self.last_request_id).max(id);
        let refuse = |this: &mut State, target: &str, error: IkcError| {
            if id == 0 {
                this.failed_post(target, &error);
            } else {
                this.outbox.push_back(error.to_proto(id).into());
            }
        };
        if self.draining {
            return refuse(
                self,
                &request.target,
                IkcError::new(ErrorKind::ShuttingDown, "kernel is shutting down"),
            );
        }
        let running = self.in_flight.len() - self.cancelled + self.waiting.len();
        if running >= self.max_in_flight {
            let error = IkcError::new(
                ErrorKind::Overloaded,
                format!("{running} requests already running on this connection"),
            )
            .with_retry_after(self.retry_after);
            return refuse(self, &request.target, error);
        }
        // A call's target is parsed in place; a post keeps its text for the
        // log line if it fails.
        let (target, post_target) = if id == 0 {
            (request.target.parse(), Some(request.target))
        } else {
            (Specifier::parse_owned(request.target), None)
        };
        let target = match target {
            Ok(target) => target,
            Err(error) => {
                return refuse(
                    self,
                    post_target.as_deref().unwrap_or_default(),
                    IkcError::new(ErrorKind::BadRequest, format!("bad target: {error}")),
                );
            }
        };
        let arg = match Value::from_proto(request.arg) {
            Ok(arg) => arg,
            Err(error) => {
                return refuse(
                    self,
                    post_target.as_deref().unwrap_or_default(),
                    IkcError::from(error),
                );
            }
        };
        let mut req = if id == 0 {
            Request::post(target, arg)
        } else {
            Request::call(target, arg)
        };
        req.set_caller(Arc::clone(self.registration.handle.peer_arc()));
        if !request.from.is_empty() {
            req = req.with_from(request.from);
        }
        // The deadline is passed on for the handler to use. It is not
        // enforced here: the caller's own timeout ends the call and its
        // Cancel drops the handler, without a timer per request.
        if request.deadline_ms > 0 {
            let deadline = Duration::from_millis(u64::from(request.deadline_ms));
            let now = read_once(&mut self.clock);
            req = req.with_deadline(now + deadline);
        }
        let waiting = Waiting {
            id,
            req,
            target: post_target,
        };
        // Nothing queued before it: call at once if the service is ready.
        if self.waiting.is_empty()
            && let Poll::Ready(ready) = self.service.poll_ready(cx)
        {
            return self.start(waiting, ready, cx);
        }
        self.waiting.push_back(waiting);
        self.dispatch(cx);
    }

    /// Calls the service for waiting requests, in order, while it is ready.
    /// The router (and most stacks) are always ready, so a request is
    /// normally called as soon as it arrives; a stack with backpressure (a
    /// concurrency limit) holds the rest here, counted against
    /// `max_in_flight`. Calling this one instance avoids a clone of the
    /// stack per request.
    fn dispatch(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.waiting.is_empty() {
            let ready = match self.service.poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(ready) => ready,
            };
            let Some(waiting) = self.waiting.pop_front() else {
                break;
            };
            progress = true;
            self.start(waiting, ready, cx);
        }
        progress
    }

    /// Calls the service, which said `ready`, for one request, and polls
    /// the handler once.
    fn start(&mut self, waiting: Waiting, ready: Result<(), BoxError>, cx: &mut Context<'_>) {
        let Waiting { id, req, target } = waiting;
        let mut handler: HandlerFuture = match ready {
            Ok(()) => self.service.call(req),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        };
        // Most handlers answer at once: poll inline and skip the queue.
        if let Poll::Ready(answer) = handler.poll_unpin(cx) {
            let answer = answer.map_err(IkcError::from_box);
            let finished = match target {
                Some(target) => Finished::Post {
                    target,
                    result: answer,
                },
                None => Finished::Call {
                    id,
                    answer: Some(answer),
                },
            };
            self.complete(finished);
        } else if target.is_some() {
            self.in_flight.push(InFlight::Post { target, handler });
        } else {
            let (abort, registration) = AbortHandle::new_pair();
            self.cancels.insert(id, abort);
            self.in_flight.push(InFlight::Call {
                id,
                handler: Abortable::new(handler, registration),
            });
        }
    }

    fn complete(&mut self, finished: Finished) {
        let (id, answer) = match finished {
            Finished::Post { target, result } => {
                if let Err(error) = result {
                    self.failed_post(&target, &error);
                }
                return;
            }
            Finished::Call { id, answer } => (id, answer),
        };
        if answer.is_some() {
            self.cancels.remove(&id);
        }
        let frame = match answer {
            // Cancelled by the caller: nobody waits for an answer.
            None => {
                self.cancelled -= 1;
                return;
            }
            Some(Ok(value)) if self.replies.is_some() => {
                let max = self.shared.max_frame_length();
                let replies = self.replies.as_mut().expect("checked above");
                match ikc_proto::codec::encoded::encode_reply(id, value, max, &mut replies.bytes) {
                    Ok(()) => {
                        replies.frames += 1;
                        return;
                    }
                    Err(ikc_proto::CodecError::FrameTooLarge { len, max }) => {
                        too_large_reply(len, max).to_proto(id).into()
                    }
                    Err(error) => IkcError::new(ErrorKind::Protocol, error.to_string())
                        .to_proto(id)
                        .into(),
                }
            }
            Some(Ok(value)) => {
                let reply: pb::Frame = pb::Reply {
                    id,
                    value: Some(value.into_proto()),
                }
                .into();
                match self.shared.oversized(&reply) {
                    // Sending it would break the connection for every call on it.
                    Some((len, max)) => too_large_reply(len as u64, max).to_proto(id).into(),
                    None => reply,
                }
            }
            Some(Err(error)) => error.to_proto(id).into(),
        };
        self.outbox.push_back(frame);
    }

    fn failed_post(&mut self, target: &str, error: &IkcError) {
        let peer = &self.registration.handle.peer().kernel;
        // A peer can make posts fail as fast as it sends them: warn about
        // the first, then at 10, 100, 1000... failures and at the end.
        match self.failed_posts.record(peer) {
            1 => {
                tracing::warn!(%peer, %target, %error, "post failed (more failures from this peer are counted, not each logged)")
            }
            failed if is_power_of_ten(failed) => {
                tracing::warn!(%peer, failed, %target, %error, "posts from this peer keep failing");
            }
            _ => tracing::debug!(%peer, %target, %error, "post failed"),
        }
        self.registration.kernel.emit(MonitorEvent::Error {
            kernel: Some(peer.clone()),
            message: format!("post to {target} failed: {error}"),
        });
    }
}
