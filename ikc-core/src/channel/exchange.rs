//! [`Exchange`]: the future of one call, from putting it in the call table
//! to taking its answer.
//!
//! Written out as a small state machine rather than an `async fn`: an
//! async fn keeps its arguments beside every state it goes through, and a
//! call's future was 896 bytes, copied (`memcpy`) twice for every call a
//! caller starts, a tenth of a small call's instructions in `ikc bench`.
//! This one holds the message until the first poll, then the call's id,
//! in 104 bytes: what only some calls carry (a forwarded request's sender
//! and trace context, a frame made already) is boxed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ikc_proto::{Value, pb};

use super::ChannelHandle;
use super::calls::Answer;
use super::outbox::Outgoing;
use super::shared::deadline_ms;
use crate::IkcError;

/// What a call sends: a request from its parts (`target` borrowed or
/// owned), or a frame made already. Small, since every call's future holds
/// it until its first poll (and a caller may move that future more than
/// once before): what only some calls carry is boxed.
pub(super) enum Message<T> {
    Request {
        target: T,
        arg: Value,
        /// Only for a request a hub forwards.
        forwarded: Option<Box<Forwarded>>,
    },
    Frame(Box<pb::Frame>),
}

/// What a forwarded request carries on from its caller.
pub(super) struct Forwarded {
    pub(super) from: Option<String>,
    pub(super) traceparent: Option<String>,
}

impl<T> Message<T> {
    /// A call of this kernel's own: no sender named, no trace context but
    /// the current span's (with the `otel` feature).
    pub(super) fn call(target: T, arg: Value) -> Self {
        Message::Request {
            target,
            arg,
            forwarded: None,
        }
    }
}

/// Sends its message as call `id` (a new id when `None`) on the first poll,
/// and waits for the answer; dropped before it, the call is abandoned (the
/// peer is told to drop its handler). The caller's waker is registered as
/// the call is queued, under the same lock, and the deadline is kept in
/// the call table and enforced by the driver's sweep: a call costs no
/// timer of its own.
#[must_use = "futures do nothing unless polled"]
pub(super) struct Exchange<'a, T> {
    handle: &'a ChannelHandle,
    timeout: Option<Duration>,
    state: State<'a, T>,
}

enum State<'a, T> {
    /// Not polled yet: the call goes in the table with the first waker.
    Start {
        message: Message<T>,
        id: Option<u64>,
    },
    /// In the table: its answer wakes the caller.
    Waiting(CallGuard<'a>),
    /// In the table, its frame waiting for room in the queue to the
    /// driver. Rare, and boxed: every call's future would otherwise carry
    /// room for waiting on the queue.
    Queued(CallGuard<'a>, Pin<Box<QueuedAnswer<'a>>>),
    /// The answer was taken (or the call failed before it was sent).
    Done,
}

// Every call's future is this one (or holds it): a few bytes more are
// copied for every call started.
const _: () = assert!(std::mem::size_of::<Exchange<'static, &'static str>>() <= 104);

type QueuedAnswer<'a> = dyn Future<Output = Result<Answer, IkcError>> + Send + 'a;

impl<'a, T> Exchange<'a, T> {
    pub(super) fn new(
        handle: &'a ChannelHandle,
        message: Message<T>,
        id: Option<u64>,
        timeout: Option<Duration>,
    ) -> Self {
        Exchange {
            handle,
            timeout,
            state: State::Start { message, id },
        }
    }
}

impl<T> Exchange<'_, T>
where
    T: AsRef<str> + Into<String>,
{
    /// Puts the call in the table; `Some` when that ends it already.
    fn start(
        &mut self,
        message: Message<T>,
        id: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Option<Answer> {
        let handle = self.handle;
        if let Err(error) = handle.check_open() {
            return Some(Err(error));
        }
        let mut kept = None;
        let outgoing = match message {
            Message::Request {
                target,
                arg,
                forwarded,
            } => {
                let (from, traceparent) =
                    forwarded.map_or((None, None), |f| (f.from, f.traceparent));
                handle.shared().request(
                    &mut kept,
                    target,
                    from,
                    traceparent,
                    arg,
                    deadline_ms(self.timeout),
                )
            }
            Message::Frame(frame) => Outgoing::Frame(*frame),
        };
        match handle
            .shared()
            .insert(id, self.timeout, cx.waker(), outgoing)
        {
            // Queued with the caller's waker: nothing more to look at
            // until the answer wakes it.
            Ok((id, None)) => {
                self.state = State::Waiting(CallGuard::new(handle, id));
                None
            }
            Ok((id, Some(frame))) => {
                let queued = Box::pin(answer_once_queued(handle, id, frame));
                self.state = State::Queued(CallGuard::new(handle, id), queued);
                None
            }
            Err(error) => Some(Err(error)),
        }
    }
}

impl<T> Future for Exchange<'_, T>
where
    T: AsRef<str> + Into<String> + Unpin,
{
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        if matches!(this.state, State::Start { .. }) {
            let State::Start { message, id } = std::mem::replace(&mut this.state, State::Done)
            else {
                unreachable!("matched just above")
            };
            if let Some(answer) = this.start(message, id, cx) {
                return Poll::Ready(answer);
            }
            // In the table with this waker: nothing to look at until the
            // answer wakes it.
            if let State::Waiting(_) = this.state {
                return Poll::Pending;
            }
        }
        let answer = match &mut this.state {
            State::Waiting(guard) => ready!(this.handle.shared().poll_answer(guard.id, cx)),
            State::Queued(_, queued) => match ready!(queued.as_mut().poll(cx)) {
                Ok(answer) => answer,
                // Not sent: the call is abandoned with its guard.
                Err(error) => {
                    this.state = State::Done;
                    return Poll::Ready(Err(error));
                }
            },
            State::Start { .. } => unreachable!("started above"),
            State::Done => panic!("a call's future polled after it completed"),
        };
        // Taken with its entry.
        if let State::Waiting(guard) | State::Queued(guard, _) = &mut this.state {
            guard.answered = true;
        }
        this.state = State::Done;
        Poll::Ready(answer)
    }
}

/// Waits for room for `frame` in the full queue to the driver, and
/// meanwhile for call `id`'s answer (the driver's sweep may time the call
/// out first). `Err` when the frame could not be queued.
async fn answer_once_queued(
    handle: &ChannelHandle,
    id: u64,
    frame: pb::Frame,
) -> Result<Answer, IkcError> {
    let shared = handle.shared();
    let mut answer = std::future::poll_fn(|cx| shared.poll_answer(id, cx));
    tokio::select! {
        biased;
        answer = &mut answer => Ok(answer),
        queued = shared.queue_waiting(Outgoing::Frame(frame)) => match queued {
            Ok(()) => Ok(answer.await),
            Err(error) => Err(error),
        },
    }
}

/// Removes a call from the pending table when its caller stops waiting
/// before the answer came, and tells the peer to drop the handler.
struct CallGuard<'a> {
    handle: &'a ChannelHandle,
    id: u64,
    /// The caller took the answer, and with it the call's entry.
    answered: bool,
}

impl<'a> CallGuard<'a> {
    fn new(handle: &'a ChannelHandle, id: u64) -> Self {
        CallGuard {
            handle,
            id,
            answered: false,
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        // A call dropped before its answer came was abandoned: the peer
        // can drop its handler.
        if !self.answered {
            self.handle.shared().abandon(self.id);
        }
    }
}
