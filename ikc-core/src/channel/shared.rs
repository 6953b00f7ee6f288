//! [`Shared`]: what the handles and the driver of one channel share: the
//! call table, the handles' outbox and the room left in it behind one lock
//! (a call takes it once for all three), and the connection's state flags.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use ikc_proto::codec::encoded::RequestParts;
use ikc_proto::{CodecError, Value, pb};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PeerLimits;
use super::calls::{Abandoned, Answer, Answered, CallTable, Expired, PendingCall};
use super::outbox::{Outbox, Outgoing};
use crate::transport::Transport;
use crate::{ErrorKind, IkcError, PeerInfo};

/// Frames handles may queue for the driver before `call`/`post` wait.
const QUEUE_CAPACITY: usize = 1024;

/// Our side of the peer's `max_in_flight`, and what this channel says when
/// it is overloaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    /// What the peer announced.
    pub(crate) peer: PeerLimits,
    /// Calls that may wait for a slot.
    pub(crate) max_queued: usize,
    /// The hint given with `Overloaded`.
    pub(crate) retry_after: Duration,
}

/// What became of a frame offered to the handles' outbox.
pub(super) enum Queued {
    Yes,
    /// The outbox is full: the frame is given back.
    Full(pb::Frame),
    Closed,
    /// Over the peer's frame limit.
    Refused(IkcError),
}

/// The call table and the handles' outbox, behind one lock.
#[derive(Debug)]
struct Pending {
    calls: CallTable,
    outbox: Outbox,
    /// Frames the outbox has room for: counted here, under the lock every
    /// frame is queued under anyway, rather than by a semaphore's atomic.
    /// While handles wait for room, the room made goes to them instead
    /// (`Shared::room_made`).
    room: usize,
    /// Handles waiting for room ([`Shared::queue_waiting`]). While one
    /// waits, only the waiters take room, in turn, so none waits forever
    /// behind a busy handle that comes later.
    room_waiters: usize,
}

/// State shared by the handles and the driver of one channel.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Shared with every request the peer sends (`Request::caller`).
    pub(super) peer: Arc<PeerInfo>,
    pending: Mutex<Pending>,
    pub(super) call_timeout: Option<Duration>,
    /// Largest frame the peer accepts.
    max_frame_length: usize,
    pub(super) limits: CallLimits,
    /// Our calls the peer runs at once: its `max_in_flight`, or no limit.
    max_taken: usize,
    /// The peer sent GoAway: it takes no new requests.
    peer_going_away: AtomicBool,
    /// The `last_id` of the peer's GoAway (`u64::MAX` before one came).
    peer_last_id: AtomicU64,
    /// We were asked to drain: no new requests either way.
    draining: AtomicBool,
    pub(crate) driver_waker: AtomicWaker,
    /// Frames are queued for the driver (it need not lock to find out).
    queued: AtomicBool,
    /// The transport takes encoded frames: calls are queued as their parts,
    /// not as frames.
    encodes: AtomicBool,
    /// Room made while handles wait for it, a permit per frame: the
    /// semaphore is fair, so they take it in the order they came. What
    /// they leave is taken back into `Pending::room` once none waits.
    room_made: Semaphore,
    pub(super) closed: CancellationToken,
}

impl Shared {
    pub(crate) fn new(
        peer: PeerInfo,
        call_timeout: Option<Duration>,
        max_frame_length: usize,
        limits: CallLimits,
    ) -> Self {
        Shared {
            peer: Arc::new(peer),
            pending: Mutex::new(Pending {
                calls: CallTable::default(),
                outbox: Outbox::new(max_frame_length),
                room: QUEUE_CAPACITY,
                room_waiters: 0,
            }),
            call_timeout,
            max_frame_length,
            limits,
            max_taken: limits.peer.max_in_flight.unwrap_or(usize::MAX),
            peer_going_away: AtomicBool::new(false),
            peer_last_id: AtomicU64::new(u64::MAX),
            draining: AtomicBool::new(false),
            driver_waker: AtomicWaker::new(),
            queued: AtomicBool::new(false),
            encodes: AtomicBool::new(false),
            room_made: Semaphore::new(0),
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call, whose caller `waker` wakes, and queues its frame,
    /// under one lock; returns its id (`id`, or a new one for a request),
    /// and the frame when the outbox is full.
    pub(super) fn insert(
        &self,
        id: Option<u64>,
        timeout: Option<Duration>,
        waker: &Waker,
        mut frame: Outgoing<'_>,
    ) -> Result<(u64, Option<pb::Frame>), IkcError> {
        let mut call = PendingCall::new(waker, timeout);
        let mut pending = self.lock();
        if pending.calls.closed {
            return Err(self.closed_error());
        }
        let id = id.unwrap_or_else(|| pending.calls.allocate_id());
        frame.set_id(id);
        if frame.is_request() {
            // The peer's limit: one compare on the way. Behind calls that
            // wait already, a call waits too, so they go out in order.
            if pending.calls.taken() >= self.max_taken || pending.calls.held() > 0 {
                return self.hold(pending, id, call, frame);
            }
            call.take_slot();
        }
        if !self.take_room(&mut pending) {
            // Its frame waits for room: its time counts from now.
            call.start_clock();
            pending.calls.insert(id, call, false);
            drop(pending);
            // The driver sweeps call deadlines only while calls are pending:
            // it must learn of this one even though its frame waits.
            self.driver_waker.wake();
            return Ok((id, Some(frame.into_frame())));
        }
        self.enqueue(&mut pending, frame)?;
        pending.calls.insert(id, call, true);
        drop(pending);
        self.notify();
        Ok((id, None))
    }

    /// Registers and queues calls of `target` with the args `args` yields,
    /// all woken by `waker`, under one lock, while the peer's limit and the
    /// outbox have room for them; pushes each call's id into `ids`, or 0
    /// with its error into `refused` (a frame over the peer's limit). Stops
    /// at the first call that would have to wait: the caller sends the
    /// rest one at a time.
    pub(super) fn insert_batch(
        &self,
        target: &str,
        args: &mut std::iter::Peekable<impl Iterator<Item = Value>>,
        timeout: Option<Duration>,
        waker: &Waker,
        ids: &mut Vec<u64>,
        refused: &mut Vec<(usize, IkcError)>,
    ) -> Result<(), IkcError> {
        let deadline_ms = deadline_ms(timeout);
        let mut pending = self.lock();
        if pending.calls.closed {
            return Err(self.closed_error());
        }
        let mut queued = false;
        while args.peek().is_some() {
            if pending.calls.taken() >= self.max_taken
                || pending.calls.held() > 0
                || !self.take_room(&mut pending)
            {
                break;
            }
            let Some(arg) = args.next() else { break };
            let id = pending.calls.allocate_id();
            let mut kept = None;
            let mut frame = self.request(&mut kept, target, None, None, arg, deadline_ms);
            frame.set_id(id);
            match self.enqueue(&mut pending, frame) {
                Ok(()) => {
                    let mut call = PendingCall::new(waker, timeout);
                    call.take_slot();
                    pending.calls.insert(id, call, true);
                    ids.push(id);
                    queued = true;
                }
                Err(error) => {
                    refused.push((ids.len(), error));
                    ids.push(0);
                }
            }
        }
        drop(pending);
        if queued {
            self.notify();
        }
        Ok(())
    }

    /// Takes the answers of the calls `ids` that are in into `answers` (a
    /// call of id 0, or whose answer was taken, is skipped); ready when
    /// none is left, and until then the caller's task is woken as one
    /// comes. One lock for them all.
    pub(super) fn poll_answers(
        &self,
        ids: &mut [u64],
        answers: &mut [Option<Answer>],
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut pending = self.lock();
        let mut waiting = false;
        for (id, answer) in ids.iter_mut().zip(answers.iter_mut()) {
            if *id == 0 {
                continue;
            }
            match pending.calls.poll_answer(*id, cx) {
                Poll::Ready(taken) => {
                    *answer = Some(taken);
                    *id = 0;
                }
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Puts call `id` in the queue of calls waiting for a slot under the
    /// peer's `max_in_flight`, or fails it with `Overloaded` when the queue
    /// is full. Only under load: the frame is made and measured here.
    fn hold(
        &self,
        mut pending: MutexGuard<'_, Pending>,
        id: u64,
        call: PendingCall,
        frame: Outgoing<'_>,
    ) -> Result<(u64, Option<pb::Frame>), IkcError> {
        if pending.calls.held() >= self.limits.max_queued {
            return Err(IkcError::new(
                ErrorKind::Overloaded,
                format!(
                    "{} calls running at kernel {:?} (its limit) and {} waiting",
                    pending.calls.taken(),
                    self.peer.kernel,
                    pending.calls.held()
                ),
            )
            .with_retry_after(self.limits.retry_after));
        }
        let frame = frame.into_frame();
        if let Some((len, max)) = self.oversized(&frame) {
            return Err(too_large(len as u64, max));
        }
        pending.calls.hold(id, call, frame);
        drop(pending);
        // The driver sweeps call deadlines only while calls are pending:
        // it must learn of this one, which it has no frame of.
        self.driver_waker.wake();
        Ok((id, None))
    }

    /// Sends held calls while the peer's limit has room for them (and the
    /// outbox too); whether it queued any, for the caller to
    /// [`notify`](Self::notify) the driver once the lock is released.
    fn release_held(&self, pending: &mut Pending) -> bool {
        let mut queued = false;
        while pending.calls.next_held(self.max_taken).is_some() {
            if !self.take_room(pending) {
                // The driver tries again as it writes frames and so makes room.
                break;
            }
            let Some((id, frame)) = pending.calls.unhold_next() else {
                self.give_room(pending, 1);
                continue;
            };
            match self.enqueue(pending, Outgoing::Frame(frame)) {
                Ok(()) => queued = true,
                // Measured against the same limit when it was held; only
                // an encoder's own refusal is left.
                Err(error) => pending.calls.answer(id, Err(error)).wake(),
            }
        }
        queued
    }

    /// Takes room for one frame if there is some and no handle waits for it.
    #[inline]
    fn take_room(&self, pending: &mut Pending) -> bool {
        if pending.room_waiters > 0 {
            return false;
        }
        if pending.room == 0 {
            // What the last waiters left, if anything.
            let left = self.room_made.available_permits();
            let Some(permit) = u32::try_from(left)
                .ok()
                .filter(|&permits| permits > 0)
                .and_then(|permits| self.room_made.try_acquire_many(permits).ok())
            else {
                return false;
            };
            permit.forget();
            pending.room = left;
        }
        pending.room -= 1;
        true
    }

    /// Gives back room for `frames` frames: to the handles waiting for it,
    /// if any.
    fn give_room(&self, pending: &mut Pending, frames: usize) {
        if pending.room_waiters > 0 {
            self.room_made.add_permits(frames);
        } else {
            pending.room += frames;
        }
    }

    /// Queues `frame`, whose room was taken; the room is given back when
    /// the frame is over the peer's limit.
    fn enqueue(&self, pending: &mut Pending, frame: Outgoing<'_>) -> Result<(), IkcError> {
        pending.outbox.push(frame).map_err(|error| {
            self.give_room(pending, 1);
            match error {
                CodecError::FrameTooLarge { len, max } => too_large(len, max),
                other => IkcError::new(ErrorKind::BadRequest, other.to_string()),
            }
        })
    }

    /// Tells the driver frames are queued.
    fn notify(&self) {
        // Told already and not looked yet: the driver takes this frame with
        // the others (it clears the flag before it takes them, and takes
        // them under the lock this frame was queued under).
        if self.queued.load(Ordering::Acquire) {
            return;
        }
        self.queued.store(true, Ordering::Release);
        self.driver_waker.wake();
    }

    /// A new call id, for a frame made before it is queued.
    pub(super) fn allocate_id(&self) -> u64 {
        self.lock().calls.allocate_id()
    }

    /// A request to queue (its id given as it is queued), as this channel
    /// takes it: for a transport that takes encoded frames, its parts,
    /// borrowed from `kept`, where its target, sender and trace context
    /// stay until it is written; for any other, a frame, the target moved
    /// into it (an owned one is not copied).
    ///
    /// With the `otel` feature, the current span's trace context, when it
    /// has one, is sent in place of `traceparent`: a hub forwarding a
    /// request runs it in its own span (the caller's child), so the next
    /// kernel's span is the hub's child, one hop at a time. Without one (or
    /// without the feature) the request's own context travels on as it
    /// came.
    #[inline]
    pub(super) fn request<'a, T>(
        &self,
        kept: &'a mut Option<(T, Option<String>, Option<String>)>,
        target: T,
        from: Option<String>,
        traceparent: Option<String>,
        arg: Value,
        deadline_ms: u32,
    ) -> Outgoing<'a>
    where
        T: AsRef<str> + Into<String>,
    {
        #[cfg(feature = "otel")]
        let traceparent = crate::propagation::current_traceparent().or(traceparent);
        if self.encodes.load(Ordering::Acquire) {
            let (target, from, traceparent): &'a _ = kept.insert((target, from, traceparent));
            let parts = RequestParts {
                id: 0,
                target: target.as_ref(),
                from: from.as_deref().unwrap_or_default(),
                deadline_ms,
                traceparent: traceparent.as_deref().unwrap_or_default(),
            };
            Outgoing::Request(parts, arg)
        } else {
            Outgoing::RequestFrame(pb::Request {
                id: 0,
                target: target.into(),
                arg: Some(arg.into_proto()),
                from: from.unwrap_or_default(),
                deadline_ms,
                traceparent: traceparent.unwrap_or_default(),
            })
        }
    }

    /// Queues `frame` for the driver if there is room.
    pub(super) fn queue(&self, frame: Outgoing<'_>) -> Queued {
        let mut pending = self.lock();
        if pending.calls.closed {
            return Queued::Closed;
        }
        if !self.take_room(&mut pending) {
            return Queued::Full(frame.into_frame());
        }
        if let Err(error) = self.enqueue(&mut pending, frame) {
            return Queued::Refused(error);
        }
        drop(pending);
        self.notify();
        Queued::Yes
    }

    /// Queues `frame` for the driver, waiting for room in turn.
    pub(super) async fn queue_waiting(&self, frame: Outgoing<'_>) -> Result<(), IkcError> {
        let frame = match self.queue(frame) {
            Queued::Yes => return Ok(()),
            Queued::Closed => return Err(self.closed_error()),
            Queued::Refused(error) => return Err(error),
            Queued::Full(frame) => frame,
        };
        let waiting = RoomWaiter::new(self);
        let permit = tokio::select! {
            permit = self.room_made.acquire() => permit,
            () = self.closed.cancelled() => return Err(self.closed_error()),
        };
        // Never closed: the room the permit stands for is taken here.
        if let Ok(permit) = permit {
            permit.forget();
        }
        let mut pending = self.lock();
        waiting.leave(&mut pending);
        if pending.calls.closed {
            return Err(self.closed_error());
        }
        self.enqueue(&mut pending, Outgoing::Frame(frame))?;
        drop(pending);
        self.notify();
        Ok(())
    }

    /// From now on, frames are encoded as they are queued, for a transport
    /// that takes them so; frames queued before are written first.
    pub(crate) fn encode_queued(&self) {
        self.encodes.store(true, Ordering::Release);
        self.lock().outbox.encode();
    }

    /// Whether frames are queued for the driver (it need not lock to find
    /// out).
    pub(super) fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Writes the handles' outbox to `transport` as far as it takes it, the
    /// deadlines of the calls in it starting at `now`; whether it wrote
    /// anything. Frames it had no room for stay queued.
    pub(super) fn write<T: Transport + ?Sized>(
        &self,
        transport: Pin<&mut T>,
        cx: &mut Context<'_>,
        now: impl FnOnce() -> Instant,
    ) -> Result<bool, T::Error> {
        if !self.queued.swap(false, Ordering::Acquire) {
            return Ok(false);
        }
        let mut pending = self.lock();
        pending.calls.stamp(now);
        let written = pending.outbox.write(transport, cx);
        if !pending.outbox.is_empty() {
            // The transport had no room: it wakes the driver when it has.
            self.queued.store(true, Ordering::Release);
        }
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                self.queued.store(true, Ordering::Release);
                return Err(error);
            }
        };
        if written == 0 {
            return Ok(false);
        }
        self.give_room(&mut pending, written);
        // The room may have been all that held calls back.
        if pending.calls.held() > 0 && self.release_held(&mut pending) {
            drop(pending);
            self.notify();
        }
        Ok(true)
    }

    /// Ends every call whose deadline passed with `Timeout`; returns the
    /// ids of those the peer was running, so the driver can tell the peer
    /// to drop them. The driver sweeps this way instead of a timer per call.
    pub(crate) fn expire(&self, now: Instant) -> Vec<u64> {
        let mut wakers = Vec::new();
        let mut pending = self.lock();
        let expired = pending.calls.expire(
            now,
            |timeout, sent| {
                // A held call never left: it did not run.
                IkcError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}"))
                    .with_may_have_run(sent)
            },
            &mut wakers,
        );
        // The peer hears of the others' end (their `Cancel`, which the
        // driver sends) before the held calls that take their slots.
        let released = pending.calls.held() > 0 && self.release_held(&mut pending);
        drop(pending);
        if released {
            self.notify();
        }
        wakers.into_iter().for_each(Waker::wake);
        expired
            .into_iter()
            .filter(|Expired { sent, .. }| *sent)
            .map(|Expired { id, .. }| id)
            .collect()
    }

    /// Takes call `id`, whose caller gave up, out of the table; when the
    /// peer may be running it, queues its `Cancel` (if there is room:
    /// dropped otherwise) ahead of the held call that takes its slot.
    pub(super) fn abandon(&self, id: u64) {
        let mut pending = self.lock();
        if pending.calls.abandon(id) == Abandoned::Nothing {
            return;
        }
        let mut queued = false;
        if !pending.calls.closed && self.take_room(&mut pending) {
            queued = self
                .enqueue(&mut pending, Outgoing::Frame(pb::Cancel { id }.into()))
                .is_ok();
        }
        if pending.calls.held() > 0 {
            queued |= self.release_held(&mut pending);
        }
        drop(pending);
        if queued {
            self.notify();
        }
    }

    /// Delivers every answer in `answers` (emptied) under one lock, then
    /// wakes the callers, whose wakers are kept in `wakers` meanwhile.
    /// Answers nobody waits for are dropped, each with a trace line.
    pub(crate) fn resolve_all(&self, answers: &mut Vec<(u64, Answer)>, wakers: &mut Vec<Waker>) {
        let mut pending = self.lock();
        for (id, answer) in answers.drain(..) {
            match pending.calls.answer(id, answer) {
                // The calls of a batch share their caller's waker: it is
                // woken once for the answers that came together.
                Answered::Waited(Some(waker))
                    if wakers.last().is_some_and(|last| last.will_wake(&waker)) => {}
                Answered::Waited(waker) => wakers.extend(waker),
                Answered::Nobody => tracing::trace!(id, "answer for a call nobody waits for"),
            }
        }
        let released = pending.calls.held() > 0 && self.release_held(&mut pending);
        drop(pending);
        if released {
            self.notify();
        }
        wakers.drain(..).for_each(Waker::wake);
    }

    /// The answer to call `id` once it is in; until then the caller's
    /// task is woken when it comes.
    pub(super) fn poll_answer(&self, id: u64, cx: &mut Context<'_>) -> Poll<Answer> {
        self.lock().calls.poll_answer(id, cx)
    }

    /// Drops the frames still queued: the driver has ended.
    pub(crate) fn discard_queued(&self) {
        let mut pending = self.lock();
        let held = pending.calls.discard_held();
        let outbox = std::mem::replace(&mut pending.outbox, Outbox::new(self.max_frame_length));
        drop(pending);
        drop((held, outbox));
    }

    /// Whether calls of ours still wait for answers.
    pub(crate) fn has_pending(&self) -> bool {
        self.lock().calls.has_unanswered()
    }

    /// Fails every pending call and refuses new ones. A call the peer
    /// never read (its id is above the `last_id` of the peer's GoAway) is
    /// `ShuttingDown` and safe to retry elsewhere; any other is
    /// `Disconnected`, and may have run.
    pub(crate) fn close(&self) {
        let last_read = self.peer_last_id.load(Ordering::Acquire);
        let mut wakers = Vec::new();
        let mut pending = self.lock();
        pending.calls.close(
            // Never sent: it did not run, whatever the peer read.
            || self.closed_error(),
            |id| {
                if id > last_read {
                    IkcError::new(
                        ErrorKind::ShuttingDown,
                        format!(
                            "kernel {:?} went away before reading the request",
                            self.peer.kernel
                        ),
                    )
                } else {
                    IkcError::disconnected(true)
                }
            },
            &mut wakers,
        );
        drop(pending);
        wakers.into_iter().for_each(Waker::wake);
        // Handles waiting for room give up (they wait on `closed` too);
        // frames already queued are still sent while the driver runs (a
        // peer that closed its write half may still read them).
        self.closed.cancel();
    }

    /// The largest frame the peer accepts.
    pub(crate) fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The frame's length and the peer's limit, when the frame is over it.
    pub(crate) fn oversized(&self, frame: &pb::Frame) -> Option<(usize, usize)> {
        let max = self.max_frame_length;
        if max == usize::MAX {
            return None;
        }
        ikc_proto::codec::encoded::over_limit(frame, max).map(|len| (len, max))
    }

    /// Why a frame could not be sent on the closed channel. It never left
    /// us; when the peer had said it was going away, that is the answer
    /// (`ShuttingDown`, safe to retry elsewhere), as for a call it never
    /// read: a draining server that closes right after its GoAway must not
    /// make a call started a moment later look like a broken connection.
    pub(super) fn closed_error(&self) -> IkcError {
        if self.peer_going_away.load(Ordering::Acquire) {
            IkcError::new(
                ErrorKind::ShuttingDown,
                format!("kernel {:?} went away", self.peer.kernel),
            )
        } else {
            IkcError::disconnected(false)
        }
    }

    /// The peer sent GoAway: it read our requests up to `last_id` and takes
    /// no new ones.
    pub(crate) fn set_peer_going_away(&self, last_id: u64) {
        self.peer_last_id.store(last_id, Ordering::Release);
        self.peer_going_away.store(true, Ordering::Release);
    }

    /// Whether the peer said it is going away.
    pub(super) fn peer_going_away(&self) -> bool {
        self.peer_going_away.load(Ordering::Acquire)
    }

    /// Asks the driver to drain the connection.
    pub(super) fn request_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.driver_waker.wake();
    }

    pub(crate) fn drain_requested(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// A handle waiting for room in the outbox, counted in
/// `Pending::room_waiters` until it [leaves](Self::leave) (with its room)
/// or is dropped (it gave up).
struct RoomWaiter<'a> {
    shared: &'a Shared,
    waiting: bool,
}

impl<'a> RoomWaiter<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.lock().room_waiters += 1;
        RoomWaiter {
            shared,
            waiting: true,
        }
    }

    /// Stops waiting, under the lock the caller holds.
    fn leave(mut self, pending: &mut Pending) {
        self.waiting = false;
        pending.room_waiters -= 1;
        self.release_held(pending);
    }

    /// The calls held back for the peer's limit take no room while handles
    /// wait for it: once the last one is gone, what is left is theirs, and
    /// nothing else may come to send them.
    fn release_held(&self, pending: &mut Pending) {
        if pending.room_waiters == 0
            && pending.calls.held() > 0
            && self.shared.release_held(pending)
        {
            // Told now, with the lock held: the flag is only read by the
            // driver, which takes the frames under this lock.
            self.shared.notify();
        }
    }
}

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        let mut pending = self.shared.lock();
        pending.room_waiters -= 1;
        self.release_held(&mut pending);
    }
}

/// A call's timeout as the request's `deadline_ms` tells the peer: 0 for
/// none, at least 1 ms for any.
pub(super) fn deadline_ms(timeout: Option<Duration>) -> u32 {
    timeout.map_or(0, |t| {
        u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

/// The error for a frame of ours over the peer's limit: never sent.
fn too_large(len: u64, max: usize) -> IkcError {
    IkcError::new(
        ErrorKind::BadRequest,
        format!("request of {len} bytes exceeds the peer's frame limit of {max} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Outbound;

    fn encoding_shared() -> Shared {
        let peer = PeerInfo::new("Peer".to_owned(), Vec::new(), 1);
        let limits = CallLimits {
            peer: PeerLimits::default(),
            max_queued: 0,
            retry_after: Duration::ZERO,
        };
        let shared = Shared::new(peer, None, usize::MAX, limits);
        shared.encode_queued();
        shared
    }

    fn queue_call(shared: &Shared, payload: usize) {
        let parts = RequestParts {
            id: 0,
            target: "echo/say",
            from: "",
            deadline_ms: 0,
            traceparent: "",
        };
        let arg = Value::Bytes(vec![7; payload].into());
        let waker = futures::task::noop_waker_ref();
        let (_, unsent) = shared
            .insert(None, None, waker, Outgoing::Request(parts, arg))
            .expect("the channel is open");
        assert!(unsent.is_none(), "there is room in the queue");
    }

    fn kept(shared: &Shared) -> usize {
        shared.lock().outbox.kept()
    }

    /// Takes encoded frames by copying, as a transport whose buffer is not
    /// empty does.
    struct Copying;

    impl Transport for Copying {
        type Error = std::io::Error;

        fn poll_recv(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<pb::Frame, Self::Error>>> {
            Poll::Pending
        }

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, item: Outbound<'_>) -> Result<(), Self::Error> {
            if let Outbound::Encoded(frames) = item {
                let _copied = frames.to_vec();
                frames.clear();
            }
            Ok(())
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn takes_encoded(&self) -> bool {
            true
        }
    }

    /// Yields until `n` handles wait for room (a bounded number of times).
    async fn until_waiting(shared: &Shared, n: usize) {
        for _ in 0..1_000 {
            if shared.lock().room_waiters == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{n} handles never waited for room");
    }

    #[tokio::test]
    async fn room_made_while_handles_wait_is_theirs_in_turn_then_free_again() {
        let shared = Arc::new(encoding_shared());
        let frame = || Outgoing::Frame(pb::Cancel { id: 1 }.into());
        let queued = |shared: &Shared| matches!(shared.queue(frame()), Queued::Yes);
        for _ in 0..QUEUE_CAPACITY {
            assert!(queued(&shared));
        }
        assert!(!queued(&shared), "the queue is full");

        let wait = |shared: &Arc<Shared>| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { shared.queue_waiting(frame()).await })
        };
        let first = wait(&shared);
        until_waiting(&shared, 1).await;
        let second = wait(&shared);
        until_waiting(&shared, 2).await;

        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(
            shared
                .write(Pin::new(&mut Copying), &mut cx, Instant::now)
                .expect("copying never fails")
        );
        // A handle that comes while others wait does not go before them.
        assert!(!queued(&shared));
        for waiter in [first, second] {
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("a waiter is given room")
                .expect("no panic")
                .expect("queued");
        }
        assert_eq!(shared.lock().room_waiters, 0);

        // The room the waiters left is anyone's again, no more and no less:
        // their two frames are in the queue.
        for n in 0..QUEUE_CAPACITY - 2 {
            assert!(queued(&shared), "room for frame {n}");
        }
        assert!(!queued(&shared), "the queue is full again");
    }

    #[test]
    fn the_queue_of_encoded_calls_gives_back_a_buffer_grown_for_a_large_call() {
        let shared = encoding_shared();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut write = |shared: &Shared| {
            shared
                .write(Pin::new(&mut Copying), &mut cx, Instant::now)
                .expect("copying never fails")
        };
        queue_call(&shared, 100);
        assert!(write(&shared));
        let small = kept(&shared);
        assert!(small > 0, "a small batch's buffer is kept for the next one");

        queue_call(&shared, 256 * 1024);
        assert!(kept(&shared) > super::super::outbox::ENCODED_KEPT);
        assert!(write(&shared));
        assert!(
            kept(&shared) <= super::super::outbox::ENCODED_KEPT,
            "{}",
            kept(&shared)
        );
    }
}
