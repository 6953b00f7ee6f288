//! [`ChannelHandle`]: the cheap, cloneable side of a channel that sends calls
//! and posts to the peer.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use foldhash::fast::RandomState as FastHash;
use futures::task::AtomicWaker;
use ikc_proto::codec::Builder as CodecBuilder;
use ikc_proto::codec::encoded::{RequestParts, encode_request};
use ikc_proto::{CodecError, FrameCodec, Value, pb};
use tokio::sync::Semaphore;
use tokio::sync::TryAcquireError;
use tokio::time::Instant;
use tokio_util::codec::Encoder;
use tokio_util::sync::CancellationToken;

use super::PeerLimits;
use crate::{ErrorKind, IkcError, PeerInfo, RemoteSession, Request, Specifier};

/// Frames handles may queue for the driver before `call`/`post` wait.
const QUEUE_CAPACITY: usize = 1024;

type Answer = Result<Value, IkcError>;

/// A call waiting for its answer, and then for its caller to take it: the
/// table is the call's channel, so a call needs no allocation of its own.
#[derive(Debug)]
struct PendingCall {
    answer: Option<Answer>,
    /// The caller's task, woken when the answer is in.
    waker: Option<Waker>,
    /// The timeout the caller asked for, and when it stops waiting: the
    /// driver stamps a call with its own clock when it sends it (or when
    /// its sweep finds it first), so a call reads no clock of its own.
    deadline: Option<(Option<Instant>, Duration)>,
    /// Where the call stands against the peer's `max_in_flight`.
    slot: Slot,
}

/// A call's place under the peer's `max_in_flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not counted: not a request (a `Subscribe`), or answered already.
    Free,
    /// Sent, or on its way: the peer runs it until it answers.
    Taken,
    /// Waiting in `Pending::held` for a call of ours to end.
    Held,
}

/// The calls waiting for answers and the frames waiting for the driver,
/// behind one lock: a call takes it once to do both.
#[derive(Debug)]
struct Pending {
    calls: HashMap<u64, PendingCall, FastHash>,
    /// Calls in `calls` still without an answer.
    unanswered: usize,
    /// Calls with a timeout whose deadline the driver has not stamped yet.
    unstamped: Vec<u64>,
    /// The id of the next call, taken under the lock as the call is queued:
    /// ids rise in the order calls reach the wire (a peer's `GoAway` names
    /// the last one it read).
    next_id: u64,
    /// Calls holding a [`Slot::Taken`].
    taken: usize,
    /// Calls over the peer's `max_in_flight`, oldest first, with their
    /// frames: sent as answers make room.
    held: VecDeque<(u64, pb::Frame)>,
    /// Frames for the driver to send, oldest first.
    outbox: VecDeque<pb::Frame>,
    /// Frames already encoded, for a transport that takes them so; from
    /// then on every frame is queued here, after those in `outbox`.
    encoded: Option<Encoded>,
    closed: bool,
}

/// Frames the handles encoded themselves, back to back with their heads,
/// for the driver to hand to the transport's write buffer in one piece
/// (see [`Registered::connect_encoded`](super::Registered::connect_encoded)):
/// a call is written straight from its target and argument, without a
/// `pb::Frame` built, queued, moved and dropped on the way.
#[derive(Debug)]
struct Encoded {
    bytes: BytesMut,
    /// How many frames `bytes` holds: the room they took in the queue.
    frames: usize,
    /// Writes the frames that are not requests, with the peer's limit.
    codec: FrameCodec,
}

/// What a handle queues for the driver.
pub(crate) enum Outgoing<'a> {
    Frame(pb::Frame),
    /// A request from its parts, for a transport that takes encoded
    /// frames: encoded as it is queued (made a frame if it has to wait).
    Request(RequestParts<'a>, Value),
    /// A request made a frame already, for any other transport.
    RequestFrame(pb::Request),
}

impl Outgoing<'_> {
    fn into_frame(self) -> pb::Frame {
        match self {
            Outgoing::Frame(frame) => frame,
            Outgoing::RequestFrame(request) => request.into(),
            Outgoing::Request(parts, arg) => pb::Request {
                id: parts.id,
                target: parts.target.to_owned(),
                arg: Some(arg.into_proto()),
                from: parts.from.to_owned(),
                deadline_ms: parts.deadline_ms,
            }
            .into(),
        }
    }
}

/// Whether an answer found its call.
enum Answered {
    /// The call waited: its caller's task, to wake once the lock is
    /// released (none if the caller has not looked yet).
    Waited(Option<Waker>),
    /// No call waits for this answer.
    Nobody,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            calls: HashMap::default(),
            unanswered: 0,
            unstamped: Vec::new(),
            next_id: 1,
            taken: 0,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            encoded: None,
            closed: false,
        }
    }
}

impl Pending {
    /// A new call id.
    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Starts the clock of the calls not stamped yet at `now`.
    fn stamp(&mut self, now: impl FnOnce() -> Instant) {
        if self.unstamped.is_empty() {
            return;
        }
        let now = now();
        for id in self.unstamped.drain(..) {
            if let Some(PendingCall {
                deadline: Some((at @ None, timeout)),
                ..
            }) = self.calls.get_mut(&id)
            {
                *at = Some(now + *timeout);
            }
        }
    }

    /// Answers call `id` if it still waits for an answer. A held call was
    /// never sent, so the peer cannot answer it: whoever ends one frees
    /// its slot first (see [`Pending::unhold`]).
    fn answer(&mut self, id: u64, answer: Answer) -> Answered {
        let Some(call) = self.calls.get_mut(&id) else {
            return Answered::Nobody;
        };
        if call.answer.is_some() || call.slot == Slot::Held {
            return Answered::Nobody;
        }
        call.answer = Some(answer);
        let waker = call.waker.take();
        if std::mem::replace(&mut call.slot, Slot::Free) == Slot::Taken {
            self.taken -= 1;
        }
        self.unanswered -= 1;
        Answered::Waited(waker)
    }

    /// Takes the held calls `ids` out of the queue (their frames are
    /// dropped: never sent), leaving them free to be answered.
    fn unhold(&mut self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        for id in ids {
            if let Some(call) = self.calls.get_mut(id) {
                call.slot = Slot::Free;
            }
        }
        // One pass however many: a sweep may end many at once.
        let calls = &self.calls;
        self.held
            .retain(|(id, _)| calls.get(id).is_some_and(|call| call.slot == Slot::Held));
    }
}

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

/// What became of a frame offered to the driver's queue.
enum Queued {
    Yes,
    /// The queue is full: the frame is given back.
    Full(pb::Frame),
    Closed,
    /// Over the peer's frame limit.
    Refused(IkcError),
}

/// State shared by the handles and the driver of one channel.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Shared with every request the peer sends (`Request::caller`).
    peer: Arc<PeerInfo>,
    pending: Mutex<Pending>,
    call_timeout: Option<Duration>,
    /// Largest frame the peer accepts.
    max_frame_length: usize,
    limits: CallLimits,
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
    /// Room in the queue, a permit per frame. The semaphore is fair: a
    /// handle waiting for room is served before one that comes later, so
    /// none waits forever behind a busy one.
    room: Semaphore,
    closed: CancellationToken,
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
            pending: Mutex::default(),
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
            room: Semaphore::new(QUEUE_CAPACITY),
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call, whose caller `waker` wakes, and queues its frame,
    /// under one lock; returns its id (`id`, or a new one for a request),
    /// and the frame when the queue is full.
    fn insert(
        &self,
        id: Option<u64>,
        timeout: Option<Duration>,
        waker: &Waker,
        mut frame: Outgoing<'_>,
    ) -> Result<(u64, Option<pb::Frame>), IkcError> {
        let mut call = PendingCall {
            answer: None,
            waker: Some(waker.clone()),
            deadline: timeout.map(|timeout| (None, timeout)),
            slot: Slot::Free,
        };
        let mut pending = self.lock();
        if pending.closed {
            return Err(self.closed_error());
        }
        let id = id.unwrap_or_else(|| pending.allocate_id());
        match &mut frame {
            Outgoing::Request(parts, _) => parts.id = id,
            Outgoing::RequestFrame(request) => request.id = id,
            Outgoing::Frame(_) => {}
        }
        if !matches!(frame, Outgoing::Frame(_)) {
            // The peer's limit: one compare on the way. Behind calls that
            // wait already, a call waits too, so they go out in order.
            if pending.taken >= self.max_taken || !pending.held.is_empty() {
                return self.hold(pending, id, call, timeout, frame);
            }
            call.slot = Slot::Taken;
        }
        if !self.take_room() {
            // Its frame waits for room: its time counts from now.
            call.deadline = timeout.map(|timeout| (Some(Instant::now() + timeout), timeout));
            pending.taken += usize::from(call.slot == Slot::Taken);
            pending.calls.insert(id, call);
            pending.unanswered += 1;
            drop(pending);
            // The driver sweeps call deadlines only while calls are pending:
            // it must learn of this one even though its frame waits.
            self.driver_waker.wake();
            return Ok((id, Some(frame.into_frame())));
        }
        self.enqueue(&mut pending, frame)?;
        pending.taken += usize::from(call.slot == Slot::Taken);
        pending.calls.insert(id, call);
        pending.unanswered += 1;
        if timeout.is_some() {
            pending.unstamped.push(id);
        }
        drop(pending);
        self.notify();
        Ok((id, None))
    }

    /// Puts call `id` in the queue of calls waiting for a slot under the
    /// peer's `max_in_flight`, or fails it with `Overloaded` when the queue
    /// is full. Only under load: the frame is made and measured here.
    fn hold(
        &self,
        mut pending: MutexGuard<'_, Pending>,
        id: u64,
        mut call: PendingCall,
        timeout: Option<Duration>,
        frame: Outgoing<'_>,
    ) -> Result<(u64, Option<pb::Frame>), IkcError> {
        if pending.held.len() >= self.limits.max_queued {
            return Err(IkcError::new(
                ErrorKind::Overloaded,
                format!(
                    "{} calls running at kernel {:?} (its limit) and {} waiting",
                    pending.taken,
                    self.peer.kernel,
                    pending.held.len()
                ),
            )
            .with_retry_after(self.limits.retry_after));
        }
        let frame = frame.into_frame();
        if let Some((len, max)) = self.oversized(&frame) {
            return Err(too_large(len as u64, max));
        }
        // Its time counts from now, while it waits.
        call.deadline = timeout.map(|timeout| (Some(Instant::now() + timeout), timeout));
        call.slot = Slot::Held;
        pending.calls.insert(id, call);
        pending.unanswered += 1;
        pending.held.push_back((id, frame));
        drop(pending);
        // The driver sweeps call deadlines only while calls are pending:
        // it must learn of this one, which it has no frame of.
        self.driver_waker.wake();
        Ok((id, None))
    }

    /// Sends held calls while the peer's limit has room for them (and the
    /// queue to the driver too); whether it queued any, for the caller to
    /// [`notify`](Self::notify) the driver once the lock is released.
    fn release_held(&self, pending: &mut Pending) -> bool {
        let mut queued = false;
        while pending.taken < self.max_taken && !pending.closed {
            let Some(&(id, _)) = pending.held.front() else {
                break;
            };
            if !self.take_room() {
                // The driver tries again as it takes frames and so makes room.
                break;
            }
            let Some((_, mut frame)) = pending.held.pop_front() else {
                break;
            };
            let Some(call) = pending.calls.get_mut(&id) else {
                self.room.add_permits(1);
                continue;
            };
            call.slot = Slot::Taken;
            // The deadline the peer's handler sees is what is left of it.
            if let (Some((Some(at), _)), Some(pb::frame::Kind::Request(request))) =
                (call.deadline, frame.kind.as_mut())
                && request.deadline_ms > 0
            {
                let left = at.saturating_duration_since(Instant::now());
                request.deadline_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
            }
            pending.taken += 1;
            match self.enqueue(pending, Outgoing::Frame(frame)) {
                Ok(()) => queued = true,
                // Measured against the same limit when it was held; only
                // an encoder's own refusal is left.
                Err(error) => {
                    if let Answered::Waited(Some(waker)) = pending.answer(id, Err(error)) {
                        waker.wake();
                    }
                }
            }
        }
        queued
    }

    /// Takes room for one frame if there is some (and nobody waits for it).
    fn take_room(&self) -> bool {
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => false,
        }
    }

    /// Queues `frame`, whose room was taken; the room is given back when
    /// the frame is over the peer's limit.
    fn enqueue(&self, pending: &mut Pending, frame: Outgoing<'_>) -> Result<(), IkcError> {
        let queued = match &mut pending.encoded {
            Some(encoded) => {
                let written = match frame {
                    Outgoing::Request(parts, arg) => {
                        encode_request(&parts, arg, self.max_frame_length, &mut encoded.bytes)
                    }
                    frame @ (Outgoing::Frame(_) | Outgoing::RequestFrame(_)) => encoded
                        .codec
                        .encode(&frame.into_frame(), &mut encoded.bytes),
                };
                written
                    .map(|()| encoded.frames += 1)
                    .map_err(|error| match error {
                        CodecError::FrameTooLarge { len, max } => too_large(len, max),
                        other => IkcError::new(ErrorKind::BadRequest, other.to_string()),
                    })
            }
            None => {
                let frame = frame.into_frame();
                match self.oversized(&frame) {
                    Some((len, max)) => Err(too_large(len as u64, max)),
                    None => {
                        pending.outbox.push_back(frame);
                        Ok(())
                    }
                }
            }
        };
        if queued.is_err() {
            self.room.add_permits(1);
        }
        queued
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
    fn allocate_id(&self) -> u64 {
        self.lock().allocate_id()
    }

    /// A request to queue (its id given as it is queued), as this channel
    /// takes it: for a transport that takes encoded frames, its parts,
    /// borrowed from `kept`, where its target and sender stay until it is
    /// written; for any other, a frame, the target moved into it (an owned
    /// one is not copied).
    fn request<'a, T>(
        &self,
        kept: &'a mut Option<(T, Option<String>)>,
        target: T,
        from: Option<String>,
        arg: Value,
        deadline_ms: u32,
    ) -> Outgoing<'a>
    where
        T: AsRef<str> + Into<String>,
    {
        if self.encodes.load(Ordering::Acquire) {
            let (target, from): &'a _ = kept.insert((target, from));
            let parts = RequestParts {
                id: 0,
                target: target.as_ref(),
                from: from.as_deref().unwrap_or_default(),
                deadline_ms,
            };
            Outgoing::Request(parts, arg)
        } else {
            Outgoing::RequestFrame(pb::Request {
                id: 0,
                target: target.into(),
                arg: Some(arg.into_proto()),
                from: from.unwrap_or_default(),
                deadline_ms,
            })
        }
    }

    /// Queues `frame` for the driver if there is room.
    fn queue(&self, frame: Outgoing<'_>) -> Queued {
        let mut pending = self.lock();
        if pending.closed {
            return Queued::Closed;
        }
        if !self.take_room() {
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
    async fn queue_waiting(&self, frame: Outgoing<'_>) -> Result<(), IkcError> {
        let frame = match self.queue(frame) {
            Queued::Yes => return Ok(()),
            Queued::Closed => return Err(self.closed_error()),
            Queued::Refused(error) => return Err(error),
            Queued::Full(frame) => frame,
        };
        // Closed with the channel.
        let permit = self.room.acquire().await.map_err(|_| self.closed_error())?;
        permit.forget();
        let mut pending = self.lock();
        if pending.closed {
            return Err(self.closed_error());
        }
        self.enqueue(&mut pending, Outgoing::Frame(frame))?;
        drop(pending);
        self.notify();
        Ok(())
    }

    /// From now on, frames are encoded as they are queued, for a transport
    /// that takes them so; frames queued before are encoded first.
    pub(crate) fn encode_queued(&self) {
        self.encodes.store(true, Ordering::Release);
        let mut codec = CodecBuilder::new()
            .max_frame_length(self.max_frame_length)
            .new_frame_codec();
        let mut pending = self.lock();
        let mut bytes = BytesMut::new();
        let mut frames = 0;
        for frame in std::mem::take(&mut pending.outbox) {
            // Each was measured against the same limit when it was queued.
            match codec.encode(&frame, &mut bytes) {
                Ok(()) => frames += 1,
                Err(error) => {
                    tracing::warn!(%error, "dropped a queued frame the peer would refuse");
                    self.room.add_permits(1);
                }
            }
        }
        pending.encoded = Some(Encoded {
            bytes,
            frames,
            codec,
        });
    }

    /// Whether frames are queued for the driver (it need not lock to find
    /// out).
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Moves up to `max` queued frames to `outbox` (the driver's); whether
    /// it moved any.
    pub(crate) fn take_queued(
        &self,
        outbox: &mut VecDeque<pb::Frame>,
        max: usize,
        now: impl FnOnce() -> Instant,
    ) -> bool {
        if max == 0 || !self.queued.swap(false, Ordering::Acquire) {
            return false;
        }
        let mut pending = self.lock();
        pending.stamp(now);
        let taken = pending.outbox.len().min(max);
        outbox.extend(pending.outbox.drain(..taken));
        if !pending.outbox.is_empty() {
            self.queued.store(true, Ordering::Release);
        }
        let held = !pending.held.is_empty();
        drop(pending);
        if taken > 0 {
            self.room.add_permits(taken);
            if held {
                self.release_held_now();
            }
        }
        taken > 0
    }

    /// Sends the held calls there is room for now that the driver took
    /// frames: the room may have been all that held them back.
    fn release_held_now(&self) {
        let released = self.release_held(&mut self.lock());
        if released {
            self.notify();
        }
    }

    /// Hands the frames the handles encoded to `write`, which leaves the
    /// buffer empty; whether there were any.
    pub(crate) fn take_encoded(
        &self,
        write: impl FnOnce(&mut BytesMut),
        now: impl FnOnce() -> Instant,
    ) -> bool {
        if !self.queued.swap(false, Ordering::Acquire) {
            return false;
        }
        let mut pending = self.lock();
        pending.stamp(now);
        let Some(encoded) = pending
            .encoded
            .as_mut()
            .filter(|encoded| encoded.frames > 0)
        else {
            return false;
        };
        write(&mut encoded.bytes);
        debug_assert!(encoded.bytes.is_empty(), "the transport takes every frame");
        super::trim_encoded(&mut encoded.bytes);
        let taken = std::mem::take(&mut encoded.frames);
        let held = !pending.held.is_empty();
        drop(pending);
        self.room.add_permits(taken);
        if held {
            self.release_held_now();
        }
        true
    }

    /// Ends every call whose deadline passed with `Timeout`; returns their
    /// ids so the driver can tell the peer to drop them. The driver sweeps
    /// this way instead of a timer per call.
    pub(crate) fn expire(&self, now: Instant) -> Vec<u64> {
        let mut wakers = Vec::new();
        let mut pending = self.lock();
        // Calls not sent yet (the transport had no room) start from now.
        pending.stamp(|| now);
        let expired: Vec<(u64, Duration, bool)> = pending
            .calls
            .iter()
            .filter(|(_, call)| call.answer.is_none())
            .filter_map(|(id, call)| match call.deadline {
                Some((Some(at), timeout)) if at <= now => {
                    Some((*id, timeout, call.slot == Slot::Held))
                }
                _ => None,
            })
            .collect();
        let held: Vec<u64> = expired
            .iter()
            .filter(|(_, _, held)| *held)
            .map(|(id, _, _)| *id)
            .collect();
        pending.unhold(&held);
        for &(id, timeout, held) in &expired {
            // A held call never left: it did not run.
            let error = IkcError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}"))
                .with_may_have_run(!held);
            if let Answered::Waited(Some(waker)) = pending.answer(id, Err(error)) {
                wakers.push(waker);
            }
        }
        // The peer hears of the others' end (their `Cancel`, which the
        // driver sends) before the held calls that take their slots.
        let released = !pending.held.is_empty() && self.release_held(&mut pending);
        drop(pending);
        if released {
            self.notify();
        }
        wakers.into_iter().for_each(Waker::wake);
        expired
            .into_iter()
            .filter(|(_, _, held)| !held)
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Takes call `id`, whose caller gave up, out of the table; when the
    /// peer may be running it, queues its `Cancel` (if there is room:
    /// dropped otherwise) ahead of the held call that takes its slot.
    fn abandon(&self, id: u64) {
        let mut pending = self.lock();
        let Some(call) = pending.calls.remove(&id) else {
            return;
        };
        if call.answer.is_some() {
            return;
        }
        pending.unanswered -= 1;
        match call.slot {
            // Never sent: nothing to cancel.
            Slot::Held => {
                pending.held.retain(|(held, _)| *held != id);
                return;
            }
            Slot::Taken => pending.taken -= 1,
            Slot::Free => {}
        }
        let mut queued = false;
        if !pending.closed && self.take_room() {
            queued = self
                .enqueue(&mut pending, Outgoing::Frame(pb::Cancel { id }.into()))
                .is_ok();
        }
        if !pending.held.is_empty() {
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
            match pending.answer(id, answer) {
                Answered::Waited(waker) => wakers.extend(waker),
                Answered::Nobody => tracing::trace!(id, "answer for a call nobody waits for"),
            }
        }
        let released = !pending.held.is_empty() && self.release_held(&mut pending);
        drop(pending);
        if released {
            self.notify();
        }
        wakers.drain(..).for_each(Waker::wake);
    }

    /// The answer to call `id` once it is in; until then the caller's
    /// task is woken when it comes.
    fn poll_answer(&self, id: u64, cx: &mut Context<'_>) -> Poll<Answer> {
        let mut pending = self.lock();
        // One lookup, whether the call is taken out or waits on.
        let Entry::Occupied(mut entry) = pending.calls.entry(id) else {
            // Only the caller takes a call out of the table.
            return Poll::Ready(Err(IkcError::disconnected(true)));
        };
        let call = entry.get_mut();
        if call.answer.is_none() {
            if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                call.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(
            entry
                .remove()
                .answer
                .unwrap_or_else(|| Err(IkcError::disconnected(true))),
        )
    }

    /// Drops the frames still queued: the driver has ended.
    pub(crate) fn discard_queued(&self) {
        let mut pending = self.lock();
        let unsent = std::mem::take(&mut pending.outbox);
        let encoded = pending.encoded.take();
        let held = std::mem::take(&mut pending.held);
        drop(pending);
        drop((unsent, encoded, held));
    }

    /// Whether calls of ours still wait for answers.
    pub(crate) fn has_pending(&self) -> bool {
        self.lock().unanswered > 0
    }

    /// Fails every pending call and refuses new ones. A call the peer
    /// never read (its id is above the `last_id` of the peer's GoAway) is
    /// `ShuttingDown` and safe to retry elsewhere; any other is
    /// `Disconnected`, and may have run.
    pub(crate) fn close(&self) {
        let last_read = self.peer_last_id.load(Ordering::Acquire);
        let mut pending = self.lock();
        pending.closed = true;
        let held: Vec<u64> = pending.held.iter().map(|(id, _)| *id).collect();
        pending.unhold(&held);
        for id in held {
            // Never sent: it did not run, whatever the peer read.
            if let Answered::Waited(Some(waker)) = pending.answer(id, Err(self.closed_error())) {
                waker.wake();
            }
        }
        let waiting: Vec<u64> = pending
            .calls
            .iter()
            .filter(|(_, call)| call.answer.is_none())
            .map(|(id, _)| *id)
            .collect();
        let mut wakers = Vec::with_capacity(waiting.len());
        for id in waiting {
            let error = if id > last_read {
                IkcError::new(
                    ErrorKind::ShuttingDown,
                    format!(
                        "kernel {:?} went away before reading the request",
                        self.peer.kernel
                    ),
                )
            } else {
                IkcError::disconnected(true)
            };
            if let Answered::Waited(Some(waker)) = pending.answer(id, Err(error)) {
                wakers.push(waker);
            }
        }
        drop(pending);
        wakers.into_iter().for_each(Waker::wake);
        // Handles waiting for room give up; frames already queued are still
        // sent while the driver runs (a peer that closed its write half may
        // still read them).
        self.room.close();
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
    fn closed_error(&self) -> IkcError {
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

    pub(crate) fn drain_requested(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// The error for a frame of ours over the peer's limit: never sent.
fn too_large(len: u64, max: usize) -> IkcError {
    IkcError::new(
        ErrorKind::BadRequest,
        format!("request of {len} bytes exceeds the peer's frame limit of {max} bytes"),
    )
}

/// Sends calls and posts to one connected peer. Cheap to clone; every clone
/// talks over the same connection.
///
/// Every call ends with exactly one answer: the peer's reply, the peer's typed
/// error, `Timeout` when the call's deadline passes, or `Disconnected` as soon
/// as the connection ends.
#[derive(Debug, Clone)]
pub struct ChannelHandle {
    shared: Arc<Shared>,
}

/// Removes a call from the pending table when its caller stops waiting
/// before the answer came, and tells the peer to drop the handler.
struct CallGuard<'a> {
    handle: &'a ChannelHandle,
    id: u64,
    /// The caller took the answer, and with it the call's entry.
    answered: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        // A call dropped before its answer came was abandoned: the peer
        // can drop its handler.
        if !self.answered {
            self.handle.shared.abandon(self.id);
        }
    }
}

impl ChannelHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ChannelHandle { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The peer kernel at the other end.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.shared.peer
    }

    /// The peer, as requests it sends carry it ([`Request::caller`]).
    pub(crate) fn peer_arc(&self) -> &Arc<PeerInfo> {
        &self.shared.peer
    }

    /// What the peer announced in the handshake (nothing, for a channel
    /// built without [`ChannelBuilder::peer_limits`](super::ChannelBuilder::peer_limits)).
    #[must_use]
    pub fn peer_limits(&self) -> &PeerLimits {
        &self.shared.limits.peer
    }

    /// Whether both handles belong to the same channel.
    #[must_use]
    pub fn same_channel(&self, other: &ChannelHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Completes when the connection has ended.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Starts a graceful close: the peer gets `GoAway`, new requests from it
    /// are answered `ShuttingDown`, requests already running finish and are
    /// answered, calls we made are waited for, then the connection closes.
    pub fn go_away(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.driver_waker.wake();
    }

    /// Calls `target` on the peer and waits for the answer, at most the
    /// channel's call timeout.
    ///
    /// # Errors
    ///
    /// The peer's typed error, `Timeout`, `Disconnected`, or `ShuttingDown`
    /// when either side is closing.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call: its entry is removed and the
    /// peer is sent `Cancel`, which drops the handler there.
    pub fn call(
        &self,
        target: &Specifier,
        arg: Value,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + '_ {
        let message = Message::request(target.to_string(), arg, None);
        exchange(self, message, None, self.shared.call_timeout)
    }

    /// Like [`call`](Self::call) with its own timeout.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_timeout(
        &self,
        target: &Specifier,
        arg: Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + '_ {
        let message = Message::request(target.to_string(), arg, None);
        exchange(self, message, None, Some(timeout))
    }

    /// Posts to `target` on the peer: it is sent, and nobody waits for an
    /// answer.
    ///
    /// # Errors
    ///
    /// `Disconnected` when the connection has ended, `ShuttingDown` when
    /// either side is closing.
    pub async fn post(&self, target: &Specifier, arg: Value) -> Result<(), IkcError> {
        self.send_post(target.to_string(), arg, None).await
    }

    /// Like [`call`](Self::call) with the target as text, sent as written:
    /// the peer parses it (a malformed target is its `BadRequest`), and a
    /// target without a kernel part means the peer's own session. Saves
    /// parsing and printing a [`Specifier`] per call. `timeout` `None` uses
    /// the channel's call timeout.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_str<'a>(
        &'a self,
        target: &'a str,
        arg: Value,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + 'a {
        let timeout = timeout.or(self.shared.call_timeout);
        exchange(self, Message::request(target, arg, None), None, timeout)
    }

    /// Like [`call_str`](Self::call_str), taking the handle: the future
    /// owns it and borrows only `target`, which it writes to the wire
    /// without a copy of its own.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn into_call_str(
        self,
        target: &str,
        arg: Value,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + '_ {
        let timeout = timeout.or(self.shared.call_timeout);
        exchange(self, Message::request(target, arg, None), None, timeout)
    }

    /// Like [`post`](Self::post) with the target as text, sent as written.
    ///
    /// # Errors
    ///
    /// As [`post`](Self::post).
    pub async fn post_str(&self, target: &str, arg: Value) -> Result<(), IkcError> {
        self.send_post(target.to_owned(), arg, None).await
    }

    /// Asks the peer whether it publishes `session`, and returns a handle to
    /// call it.
    ///
    /// # Errors
    ///
    /// `NoSession` when the peer does not publish it; `Timeout` or
    /// `Disconnected` when the connection fails meanwhile.
    pub async fn subscribe(&self, session: &str) -> Result<RemoteSession, IkcError> {
        let id = self.shared.allocate_id();
        let frame = pb::Frame::from(pb::Subscribe {
            id,
            session: session.to_owned(),
        });
        let message: Message<&str> = Message::Frame(frame);
        exchange(self, message, Some(id), self.shared.call_timeout).await?;
        Ok(RemoteSession::new(self.clone(), session.to_owned()))
    }

    /// Forwards a routed request; posts are only sent unless `as_call`.
    pub(crate) async fn forward(&self, mut req: Request, as_call: bool) -> Result<Value, IkcError> {
        let target = req.target().to_string();
        let from = req.from().map(str::to_owned);
        let arg = req.take_arg();
        if req.is_post() && !as_call {
            return self
                .send_post(target, arg, from)
                .await
                .map(|()| Value::Null);
        }
        let timeout = match req.deadline() {
            Some(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            None => self.shared.call_timeout,
        };
        exchange(self, Message::request(target, arg, from), None, timeout).await
    }

    /// Queues `frame` if there is room; drops it if not, or if the
    /// channel closed.
    pub(crate) fn try_send(&self, frame: pb::Frame) {
        let _ = self.shared.queue(Outgoing::Frame(frame));
    }

    fn check_open(&self) -> Result<(), IkcError> {
        let draining = self.shared.draining.load(Ordering::Acquire);
        let going_away = self.shared.peer_going_away.load(Ordering::Acquire);
        // A closed channel is found when the frame is queued, under the
        // lock that is taken then anyway.
        if !draining && !going_away {
            return Ok(());
        }
        // A closed connection is the more useful answer than our own
        // drain; after the peer's GoAway, both say the same.
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        if draining {
            return Err(IkcError::new(
                ErrorKind::ShuttingDown,
                "this connection is closing",
            ));
        }
        Err(IkcError::new(
            ErrorKind::ShuttingDown,
            format!("kernel {:?} is shutting down", self.shared.peer.kernel),
        ))
    }

    async fn send_post(
        &self,
        target: String,
        arg: Value,
        from: Option<String>,
    ) -> Result<(), IkcError> {
        self.check_open()?;
        let mut kept = None;
        let post = self.shared.request(&mut kept, target, from, arg, 0);
        self.shared.queue_waiting(post).await
    }

    /// Waits for room for `frame` in the full queue to the driver, and
    /// meanwhile for call `id`'s answer (the driver's sweep may time the
    /// call out first). `Err` when the frame could not be queued.
    async fn answer_once_queued(&self, id: u64, frame: pb::Frame) -> Result<Answer, IkcError> {
        let mut answer = std::future::poll_fn(|cx| self.shared.poll_answer(id, cx));
        tokio::select! {
            biased;
            answer = &mut answer => Ok(answer),
            queued = self.shared.queue_waiting(Outgoing::Frame(frame)) => match queued {
                Ok(()) => Ok(answer.await),
                Err(error) => Err(error),
            },
        }
    }
}

/// What a call sends: a request from its parts (`target` borrowed or
/// owned), or a frame made already.
enum Message<T> {
    Request {
        target: T,
        arg: Value,
        from: Option<String>,
    },
    Frame(pb::Frame),
}

impl<T> Message<T> {
    fn request(target: T, arg: Value, from: Option<String>) -> Self {
        Message::Request { target, arg, from }
    }
}

/// Sends `message` as call `id` (a new id when `None`) on the first poll,
/// and waits for the answer. One future for the whole call, not one per
/// layer of helpers: each layer would copy the call's arguments again. The
/// deadline is kept in the pending table and enforced by the driver's
/// sweep, so a call costs no timer of its own; the caller's waker is
/// registered as the call is queued, under the same lock.
async fn exchange<H, T>(
    handle: H,
    message: Message<T>,
    id: Option<u64>,
    timeout: Option<Duration>,
) -> Answer
where
    H: Borrow<ChannelHandle>,
    T: AsRef<str> + Into<String>,
{
    let handle = handle.borrow();
    handle.check_open()?;
    let mut kept = None;
    let mut outgoing = Some(match message {
        Message::Request { target, arg, from } => {
            let deadline_ms = timeout.map_or(0, |t| {
                u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
            });
            handle
                .shared
                .request(&mut kept, target, from, arg, deadline_ms)
        }
        Message::Frame(frame) => Outgoing::Frame(frame),
    });
    // Armed once the call is in the table.
    let mut guard = CallGuard {
        handle,
        id: 0,
        answered: true,
    };
    let mut unsent = None;
    let answer = std::future::poll_fn(|cx| match outgoing.take() {
        Some(frame) => match handle.shared.insert(id, timeout, cx.waker(), frame) {
            Ok((id, frame)) => {
                (guard.id, guard.answered) = (id, false);
                match frame {
                    // Queued with the caller's waker: nothing more to look
                    // at until the answer wakes it.
                    None => Poll::Pending,
                    Some(frame) => {
                        unsent = Some(frame);
                        Poll::Ready(None)
                    }
                }
            }
            Err(error) => Poll::Ready(Some(Err(error))),
        },
        None => handle.shared.poll_answer(guard.id, cx).map(Some),
    })
    .await;
    let answer = match (answer, unsent) {
        (Some(answer), _) => answer,
        // Rare, and boxed: every call's future would otherwise carry room
        // for waiting on the queue.
        (None, Some(frame)) => match Box::pin(handle.answer_once_queued(guard.id, frame)).await {
            Ok(answer) => answer,
            Err(error) => return Err(error),
        },
        (None, None) => unreachable!("a call either answers or gives its frame back"),
    };
    // Taken with its entry (or never entered).
    guard.answered = true;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding_shared() -> Shared {
        let peer = PeerInfo {
            kernel: "Peer".to_owned(),
            aliases: Vec::new(),
            pid: 1,
        };
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
        };
        let arg = Value::Bytes(vec![7; payload].into());
        let waker = futures::task::noop_waker_ref();
        let (_, unsent) = shared
            .insert(None, None, waker, Outgoing::Request(parts, arg))
            .expect("the channel is open");
        assert!(unsent.is_none(), "there is room in the queue");
    }

    fn kept(shared: &Shared) -> usize {
        shared
            .lock()
            .encoded
            .as_ref()
            .map_or(0, |encoded| encoded.bytes.capacity())
    }

    #[test]
    fn the_queue_of_encoded_calls_gives_back_a_buffer_grown_for_a_large_call() {
        let shared = encoding_shared();
        // Taken by copying, as a transport whose buffer is not empty does.
        let copy = |frames: &mut BytesMut| {
            let _copied = frames.to_vec();
            frames.clear();
        };
        queue_call(&shared, 100);
        assert!(shared.take_encoded(copy, Instant::now));
        let small = kept(&shared);
        assert!(small > 0, "a small batch's buffer is kept for the next one");

        queue_call(&shared, 256 * 1024);
        assert!(kept(&shared) > super::super::ENCODED_KEPT);
        assert!(shared.take_encoded(copy, Instant::now));
        assert!(
            kept(&shared) <= super::super::ENCODED_KEPT,
            "{}",
            kept(&shared)
        );
    }
}
