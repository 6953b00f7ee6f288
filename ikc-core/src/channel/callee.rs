//! The callee's side of a channel: the peer's requests, from admission to
//! the answer.
//!
//! A request is admitted (or refused: draining, over `max_in_flight`, a bad
//! target or argument), waits while the service is not ready, runs, and is
//! answered into the driver's outbox; the peer may cancel it meanwhile. A
//! handler is polled once inline when it starts; only a handler that is
//! still pending is kept in a `FuturesUnordered` (a task per request would
//! cost a spawn and a cross-thread wake each).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use foldhash::fast::RandomState as FastHash;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use ikc_proto::{CodecError, Value, pb};
use pin_project::pin_project;
use tower::Service;

use super::control::Clock;
use super::outbox::Outbox;
use super::{ChannelContext, SessionService};
use crate::monitor::MonitorEvent;
use crate::{BoxError, ErrorKind, IkcError, PeerInfo, Request, Specifier};

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

fn is_power_of_ten(n: u64) -> bool {
    n > 0 && 10_u64.pow(n.ilog10()) == n
}

/// The answer to a call whose reply is over the peer's frame limit:
/// sending it would break the connection for every call on it.
fn too_large_reply(len: u64, max: usize) -> IkcError {
    IkcError::new(
        ErrorKind::Protocol,
        format!("reply of {len} bytes exceeds the peer's frame limit of {max} bytes"),
    )
}

/// The peer's requests on one channel; see the [module docs](self).
pub(super) struct Callee {
    service: SessionService,
    in_flight: FuturesUnordered<InFlight>,
    /// Requests waiting for the service to be ready, in arrival order.
    waiting: VecDeque<Waiting>,
    cancels: HashMap<u64, AbortHandle, FastHash>,
    max_in_flight: usize,
    /// The hint sent with `Overloaded`.
    retry_after: Duration,
    /// Handlers in `in_flight` whose call the peer cancelled, not collected
    /// yet: they no longer count against `max_in_flight`, or a caller that
    /// gave up on a call and made the next one at once (its `Cancel` read
    /// in the same batch) would be answered `Overloaded`.
    cancelled: usize,
    /// The highest request id read: a `GoAway` names it.
    pub(super) last_request_id: u64,
    failed_posts: FailedPosts,
    /// Shared with every request the peer sends (`Request::caller`).
    peer: Arc<PeerInfo>,
    /// Where failed posts are reported.
    context: ChannelContext,
}

impl Callee {
    pub(super) fn new(
        service: SessionService,
        max_in_flight: usize,
        retry_after: Duration,
        peer: Arc<PeerInfo>,
        context: ChannelContext,
    ) -> Self {
        Callee {
            service,
            in_flight: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            cancels: HashMap::default(),
            max_in_flight,
            retry_after,
            cancelled: 0,
            last_request_id: 0,
            failed_posts: FailedPosts::default(),
            peer,
            context,
        }
    }

    /// Whether no request of the peer's runs or waits.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty()
    }

    /// Handlers running.
    pub(super) fn running(&self) -> usize {
        self.in_flight.len()
    }

    /// Admits the peer's `request`, refuses it, or starts it.
    pub(super) fn on_request(
        &mut self,
        request: pb::Request,
        draining: bool,
        clock: &mut Clock,
        outbox: &mut Outbox,
        cx: &mut Context<'_>,
    ) {
        let id = request.id;
        self.last_request_id = self.last_request_id.max(id);
        if draining {
            let error = IkcError::new(ErrorKind::ShuttingDown, "kernel is shutting down");
            return self.refuse(id, &request.target, error, outbox);
        }
        let running = self.in_flight.len() - self.cancelled + self.waiting.len();
        if running >= self.max_in_flight {
            let error = IkcError::new(
                ErrorKind::Overloaded,
                format!("{running} requests already running on this connection"),
            )
            .with_retry_after(self.retry_after);
            return self.refuse(id, &request.target, error, outbox);
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
                let error = IkcError::new(ErrorKind::BadRequest, format!("bad target: {error}"));
                return self.refuse(
                    id,
                    post_target.as_deref().unwrap_or_default(),
                    error,
                    outbox,
                );
            }
        };
        let arg = match Value::from_proto(request.arg) {
            Ok(arg) => arg,
            Err(error) => {
                let error = IkcError::from(error);
                return self.refuse(
                    id,
                    post_target.as_deref().unwrap_or_default(),
                    error,
                    outbox,
                );
            }
        };
        let mut req = if id == 0 {
            Request::post(target, arg)
        } else {
            Request::call(target, arg)
        };
        req.set_caller(Arc::clone(&self.peer));
        if !request.from.is_empty() {
            req = req.with_from(request.from);
        }
        // Kept as the peer sent it; the request's tracing layer parses it
        // (and ignores what does not parse).
        if !request.traceparent.is_empty() {
            req = req.with_traceparent(request.traceparent);
        }
        // The deadline is passed on for the handler to use. It is not
        // enforced here: the caller's own timeout ends the call and its
        // Cancel drops the handler, without a timer per request.
        if request.deadline_ms > 0 {
            let deadline = Duration::from_millis(u64::from(request.deadline_ms));
            req.set_deadline(clock.now() + deadline);
        }
        // Nothing queued before it: call at once if the service is ready
        // (the request moves once less than through the queue).
        if self.waiting.is_empty()
            && let Poll::Ready(ready) = self.service.poll_ready(cx)
        {
            return self.start(id, req, post_target, ready, outbox, cx);
        }
        self.waiting.push_back(Waiting {
            id,
            req,
            target: post_target,
        });
        self.dispatch(outbox, cx);
    }

    /// The peer cancelled call `id`: its handler is dropped, or it never
    /// starts.
    pub(super) fn on_cancel(&mut self, id: u64) {
        if let Some(abort) = self.cancels.remove(&id) {
            abort.abort();
            self.cancelled += 1;
        } else if id != 0 {
            self.waiting.retain(|waiting| waiting.id != id);
        }
    }

    /// Starts the requests that waited for the service and answers the
    /// handlers that finished; whether anything moved.
    pub(super) fn poll_handlers(&mut self, outbox: &mut Outbox, cx: &mut Context<'_>) -> bool {
        let mut progress = self.dispatch(outbox, cx);
        while let Poll::Ready(Some(finished)) = self.in_flight.poll_next_unpin(cx) {
            progress = true;
            self.complete(finished, outbox);
        }
        progress
    }

    fn refuse(&mut self, id: u64, target: &str, error: IkcError, outbox: &mut Outbox) {
        if id == 0 {
            self.failed_post(target, &error);
        } else {
            outbox.push_error(id, &error);
        }
    }

    /// Calls the service for waiting requests, in order, while it is ready.
    /// The router (and most stacks) are always ready, so a request is
    /// normally called as soon as it arrives; a stack with backpressure (a
    /// concurrency limit) holds the rest here, counted against
    /// `max_in_flight`. Calling this one instance avoids a clone of the
    /// stack per request.
    fn dispatch(&mut self, outbox: &mut Outbox, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.waiting.is_empty() {
            let ready = match self.service.poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(ready) => ready,
            };
            let Some(Waiting { id, req, target }) = self.waiting.pop_front() else {
                break;
            };
            progress = true;
            self.start(id, req, target, ready, outbox, cx);
        }
        progress
    }

    /// Calls the service, which said `ready`, for request `id` (a post's
    /// `target` kept for its log line), and polls the handler once.
    fn start(
        &mut self,
        id: u64,
        req: Request,
        target: Option<String>,
        ready: Result<(), BoxError>,
        outbox: &mut Outbox,
        cx: &mut Context<'_>,
    ) {
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
            self.complete(finished, outbox);
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

    fn complete(&mut self, finished: Finished, outbox: &mut Outbox) {
        let (id, answer) = match finished {
            Finished::Post { target, result } => {
                if let Err(error) = result {
                    self.failed_post(&target, &error);
                }
                return;
            }
            Finished::Call { id, answer } => (id, answer),
        };
        let Some(answer) = answer else {
            // Cancelled by the caller: nobody waits for an answer.
            self.cancelled -= 1;
            return;
        };
        // Only a handler that did not answer at once can be cancelled.
        if !self.cancels.is_empty() {
            self.cancels.remove(&id);
        }
        match answer {
            Ok(value) => match outbox.push_reply(id, value) {
                Ok(()) => {}
                // Sending it would break the connection for every call on it.
                Err(CodecError::FrameTooLarge { len, max }) => {
                    outbox.push_error(id, &too_large_reply(len, max));
                }
                Err(error) => {
                    outbox.push_error(id, &IkcError::new(ErrorKind::Protocol, error.to_string()));
                }
            },
            Err(error) => outbox.push_error(id, &error),
        }
    }

    fn failed_post(&mut self, target: &str, error: &IkcError) {
        let peer = &self.peer.kernel;
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
        self.context.emit(MonitorEvent::Error {
            kernel: Some(peer.clone()),
            message: format!("post to {target} failed: {error}"),
        });
    }
}
