//! [`ChannelDriver`]: the future that runs one connection.
//!
//! Its poll reads as the steps it takes:
//!
//! ```text
//! poll_control;                 keepalive, call deadlines, our GoAway
//! loop { poll_read; poll_write } the peer's frames in, ours out, until nothing moves
//! poll_flush; poll_close        one write per burst; the end when all is said
//! ```
//!
//! `poll_read` hands each frame to its side: a request to the
//! [callee](super::callee), an answer to the [call table](super::calls), a
//! control frame to [control](super::control); then it starts requests that
//! waited and collects finished handlers. `poll_write` writes the driver's
//! outbox (replies, errors, control frames), then the handles' (calls,
//! posts, cancels), through the one [`Outbox::write`] path. The transport
//! is flushed once at the end, so a burst of requests costs one write, not
//! one per reply.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use ikc_proto::{Value, pb};
use pin_project::pin_project;

use super::ChannelError;
use super::callee::Callee;
use super::calls::Answer;
use super::control::{Clock, Control};
use super::outbox::Outbox;
use super::shared::Shared;
use super::{ChannelContext, ChannelHandle};
use crate::error::error_chain;
use crate::monitor::MonitorEvent;
use crate::transport::Transport;
use crate::{BoxError, ErrorKind, IkcError};

/// Frames the driver buffers for a peer that is slow to read before it stops
/// reading more requests from that peer.
const OUTBOX_HIGH_WATER: usize = 256;

/// Frames read per poll before the driver yields to other tasks.
const READ_BUDGET: usize = 256;

/// Removes the peer from the kernel and fails its pending calls when the
/// driver ends or is dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) context: ChannelContext,
    pub(crate) handle: ChannelHandle,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.shared().close();
        self.handle.shared().discard_queued();
        self.context.links.unregister(&self.handle);
    }
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
    state: State,
}

/// Everything the driver owns besides the transport.
struct State {
    // Declared before `registration` so running handlers are dropped before
    // the peer is unregistered: Unregister comes after its last request.
    callee: Callee,
    control: Control,
    /// Replies, errors and control frames, written before the handles'.
    outbox: Outbox,
    /// Answers to our calls read in this turn of the loop, delivered
    /// together under one lock; `wakers` is room for their callers'.
    answers: Vec<(u64, Answer)>,
    wakers: Vec<Waker>,
    read_closed: bool,
    unflushed: bool,
    failed: Option<ChannelError>,
    /// A write failed: the peer closed. Nothing more is written; what it
    /// said before it closed is still read, up to the end of its side.
    write_failed: Option<ChannelError>,
    clock: Clock,
    shared: Arc<Shared>,
    registration: Registration,
}

impl<T> std::fmt::Debug for ChannelDriver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelDriver")
            .field("peer", &self.state.registration.handle.peer().kernel)
            .field("in_flight", &self.state.callee.running())
            .field("outbox", &self.state.outbox.len())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> ChannelDriver<T> {
    pub(super) fn new(
        transport: T,
        registration: Registration,
        callee: Callee,
        control: Control,
    ) -> Self {
        let shared = Arc::clone(registration.handle.shared());
        let mut outbox = Outbox::new(shared.max_frame_length());
        if transport.takes_encoded() {
            outbox.encode();
            shared.encode_queued();
        }
        ChannelDriver {
            transport,
            state: State {
                callee,
                control,
                outbox,
                answers: Vec::new(),
                wakers: Vec::new(),
                read_closed: false,
                unflushed: false,
                failed: None,
                write_failed: None,
                clock: Clock::default(),
                shared,
                registration,
            },
        }
    }
}

impl<T: Transport> Future for ChannelDriver<T> {
    type Output = Result<(), ChannelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut transport = this.transport;
        let state = this.state;
        state.shared.driver_waker.register(cx.waker());
        state.clock.reset();
        if let Err(error) = state.poll_control(cx) {
            // Close now, without flushing: a peer that stopped reading
            // would never let the outbox drain.
            return Poll::Ready(Err(error));
        }
        let mut budget = READ_BUDGET;
        loop {
            let read = state.poll_read(transport.as_mut(), &mut budget, cx);
            let wrote = match state.poll_write(transport.as_mut(), cx) {
                Ok(wrote) => wrote,
                Err(error) => state.write_failed(error),
            };
            if budget == 0 {
                // Let other connections run; come back at once. (The last
                // frame read may also have filled the outbox: then no
                // read was left pending to wake the driver.)
                cx.waker().wake_by_ref();
                break;
            }
            if !read && !wrote {
                break;
            }
        }
        match state.poll_flush(transport.as_mut(), cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => {
                state.write_failed(error);
                // Read on: the end of the peer's side wakes the driver.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Pending => return Poll::Pending,
        }
        if !state.done() {
            return Poll::Pending;
        }
        match transport.poll_close(cx) {
            Poll::Pending => Poll::Pending,
            // The connection is over either way; a failed close loses nothing.
            Poll::Ready(_) => Poll::Ready(
                state
                    .write_failed
                    .take()
                    .or_else(|| state.failed.take())
                    .map_or(Ok(()), Err),
            ),
        }
    }
}

impl State {
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Result<(), ChannelError> {
        let reading = !self.read_closed && self.failed.is_none();
        self.control.poll(
            &self.shared,
            reading,
            self.callee.last_request_id,
            &mut self.outbox,
            cx,
        )
    }

    /// Reads the frames that are ready (within `budget`, and while the peer
    /// reads our answers: a peer that does not fills the outbox, and then
    /// we stop reading its requests), delivers answers, starts requests
    /// that waited and collects finished handlers; whether anything moved.
    fn poll_read<T: Transport>(
        &mut self,
        mut transport: Pin<&mut T>,
        budget: &mut usize,
        cx: &mut Context<'_>,
    ) -> bool {
        let mut progress = false;
        while !self.read_closed
            && self.failed.is_none()
            && self.outbox.len() < OUTBOX_HIGH_WATER
            && *budget > 0
        {
            match transport.as_mut().poll_recv(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *budget -= 1;
                    progress = true;
                    self.control.heard = true;
                    self.on_frame(frame, cx);
                }
                Poll::Ready(Some(Err(error))) => {
                    self.on_read_error(error.into());
                    progress = true;
                }
                Poll::Ready(None) => {
                    self.read_closed = true;
                    self.deliver_answers();
                    // Nothing more will be read, so no answer can arrive.
                    self.shared.close();
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        self.deliver_answers();
        if self.failed.is_none() {
            progress |= self.callee.poll_handlers(&mut self.outbox, cx);
        }
        progress
    }

    /// A write failed: the peer closed. A draining peer answers what it
    /// read, sends `GoAway` and closes; when our write fails before we
    /// read those, the driver keeps reading to the end of the peer's side
    /// (or until the keepalive finds it silent) instead of ending now, so
    /// the answers reach their callers and calls the peer never read fail
    /// as not run. What was to be written is dropped: the outbox no longer
    /// holds back reading. Always progress.
    fn write_failed(&mut self, error: ChannelError) -> bool {
        if self.write_failed.is_none() {
            self.write_failed = Some(error);
        }
        self.outbox = Outbox::new(self.shared.max_frame_length());
        self.unflushed = false;
        true
    }

    /// Writes the driver's outbox, then, once it is all in the transport,
    /// the handles'; whether anything was written.
    fn poll_write<T: Transport>(
        &mut self,
        mut transport: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Result<bool, ChannelError> {
        if self.write_failed.is_some() {
            return Ok(false);
        }
        let write_error = |error: T::Error| ChannelError::Write(error.into());
        let mut wrote = self
            .outbox
            .write(transport.as_mut(), cx)
            .map_err(write_error)?
            > 0;
        if self.outbox.is_empty() && self.shared.has_queued() {
            let clock = &mut self.clock;
            wrote |= self
                .shared
                .write(transport, cx, || clock.now())
                .map_err(write_error)?;
        }
        self.unflushed |= wrote;
        Ok(wrote)
    }

    fn poll_flush<T: Transport>(
        &mut self,
        transport: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ChannelError>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        match transport.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(ChannelError::Write(error.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the connection is over: everything said, and either the
    /// transport failed, the peer closed and its requests are answered, or
    /// our drain is done.
    fn done(&self) -> bool {
        let quiet = self.outbox.is_empty() && !self.unflushed;
        if self.write_failed.is_some() {
            self.read_closed
        } else if self.failed.is_some() {
            quiet
        } else if self.read_closed {
            quiet && self.callee.is_idle()
        } else {
            self.control.draining && quiet && self.callee.is_idle() && !self.shared.has_pending()
        }
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
            // Nobody would read the answer.
            Kind::Request(_) if self.write_failed.is_some() => {}
            Kind::Request(request) => self.callee.on_request(
                request,
                self.control.draining,
                &mut self.clock,
                &mut self.outbox,
                cx,
            ),
            Kind::Reply(reply) => {
                let answer = Value::from_proto(reply.value).map_err(IkcError::from);
                self.answers.push((reply.id, answer));
            }
            Kind::Error(error) if error.id != 0 => {
                self.answers
                    .push((error.id, Err(IkcError::from_proto(error))));
            }
            Kind::Cancel(cancel) => self.callee.on_cancel(cancel.id),
            control => Control::on_frame(
                control,
                &self.shared,
                &self.registration.context,
                &mut self.outbox,
            ),
        }
    }

    /// Input that cannot be read: the peer is told why, and the channel
    /// ends once that is written.
    fn on_read_error(&mut self, error: BoxError) {
        let peer = &self.registration.handle.peer().kernel;
        tracing::debug!(%peer, error = %error_chain(&*error), "invalid input from peer, closing");
        let report = IkcError::new(ErrorKind::Protocol, error_chain(&*error));
        self.outbox.push_error(0, &report);
        self.registration.context.emit(MonitorEvent::Error {
            kernel: Some(peer.clone()),
            message: report.message().to_owned(),
        });
        self.failed = Some(ChannelError::Read(error));
        self.read_closed = true;
    }
}
