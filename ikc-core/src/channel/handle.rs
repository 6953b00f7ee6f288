//! [`ChannelHandle`]: the cheap, cloneable side of a channel that sends calls
//! and posts to the peer.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use foldhash::fast::RandomState as FastHash;
use futures::task::AtomicWaker;
use ikc_proto::{Value, pb};
use tokio::sync::Semaphore;
use tokio::sync::TryAcquireError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    /// When the caller stops waiting, and the timeout it asked for.
    deadline: Option<(Instant, Duration)>,
}

/// The calls waiting for answers and the frames waiting for the driver,
/// behind one lock: a call takes it once to do both.
#[derive(Debug, Default)]
struct Pending {
    calls: HashMap<u64, PendingCall, FastHash>,
    /// Calls in `calls` still without an answer.
    unanswered: usize,
    /// Frames for the driver to send, oldest first.
    outbox: VecDeque<pb::Frame>,
    closed: bool,
}

/// Whether an answer found its call.
enum Answered {
    /// The call waited: its caller's task, to wake once the lock is
    /// released (none if the caller has not looked yet).
    Waited(Option<Waker>),
    /// No call waits for this answer.
    Nobody,
}

impl Pending {
    /// Answers call `id` if it still waits for an answer.
    fn answer(&mut self, id: u64, answer: Answer) -> Answered {
        let Some(call) = self.calls.get_mut(&id) else {
            return Answered::Nobody;
        };
        if call.answer.is_some() {
            return Answered::Nobody;
        }
        call.answer = Some(answer);
        self.unanswered -= 1;
        Answered::Waited(call.waker.take())
    }
}

/// What became of a frame offered to the driver's queue.
enum Queued {
    Yes,
    /// The queue is full: the frame is given back.
    Full(pb::Frame),
    Closed,
}

/// State shared by the handles and the driver of one channel.
#[derive(Debug)]
pub(crate) struct Shared {
    peer: PeerInfo,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    call_timeout: Option<Duration>,
    /// Largest frame the peer accepts.
    max_frame_length: usize,
    /// The peer sent GoAway: it takes no new requests.
    peer_going_away: AtomicBool,
    /// The `last_id` of the peer's GoAway (`u64::MAX` before one came).
    peer_last_id: AtomicU64,
    /// We were asked to drain: no new requests either way.
    draining: AtomicBool,
    pub(crate) driver_waker: AtomicWaker,
    /// Frames are queued for the driver (it need not lock to find out).
    queued: AtomicBool,
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
    ) -> Self {
        Shared {
            peer,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            call_timeout,
            max_frame_length,
            peer_going_away: AtomicBool::new(false),
            peer_last_id: AtomicU64::new(u64::MAX),
            draining: AtomicBool::new(false),
            driver_waker: AtomicWaker::new(),
            queued: AtomicBool::new(false),
            room: Semaphore::new(QUEUE_CAPACITY),
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers call `id` and queues its frame, under one lock. The frame
    /// is given back when the queue is full.
    fn insert(
        &self,
        id: u64,
        deadline: Option<(Instant, Duration)>,
        frame: pb::Frame,
    ) -> Result<Option<pb::Frame>, IkcError> {
        let call = PendingCall {
            answer: None,
            waker: None,
            deadline,
        };
        let mut pending = self.lock();
        if pending.closed {
            return Err(self.closed_error());
        }
        pending.calls.insert(id, call);
        pending.unanswered += 1;
        if !self.take_room() {
            drop(pending);
            // The driver sweeps call deadlines only while calls are pending:
            // it must learn of this one even though its frame waits.
            self.driver_waker.wake();
            return Ok(Some(frame));
        }
        self.push(pending, frame);
        Ok(None)
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

    /// Queues `frame`, whose room was taken, then releases the lock and
    /// wakes the driver.
    fn push(&self, mut pending: MutexGuard<'_, Pending>, frame: pb::Frame) {
        pending.outbox.push_back(frame);
        drop(pending);
        self.queued.store(true, Ordering::Release);
        self.driver_waker.wake();
    }

    /// Queues `frame` for the driver if there is room.
    fn queue(&self, frame: pb::Frame) -> Queued {
        let pending = self.lock();
        if pending.closed {
            return Queued::Closed;
        }
        if !self.take_room() {
            return Queued::Full(frame);
        }
        self.push(pending, frame);
        Queued::Yes
    }

    /// Queues `frame` for the driver, waiting for room in turn.
    async fn queue_waiting(&self, frame: pb::Frame) -> Result<(), IkcError> {
        let frame = match self.queue(frame) {
            Queued::Yes => return Ok(()),
            Queued::Closed => return Err(self.closed_error()),
            Queued::Full(frame) => frame,
        };
        // Closed with the channel.
        let permit = self.room.acquire().await.map_err(|_| self.closed_error())?;
        permit.forget();
        let pending = self.lock();
        if pending.closed {
            return Err(self.closed_error());
        }
        self.push(pending, frame);
        Ok(())
    }

    /// Moves up to `max` queued frames to `outbox` (the driver's); whether
    /// it moved any.
    pub(crate) fn take_queued(&self, outbox: &mut VecDeque<pb::Frame>, max: usize) -> bool {
        if max == 0 || !self.queued.swap(false, Ordering::Acquire) {
            return false;
        }
        let mut pending = self.lock();
        let taken = pending.outbox.len().min(max);
        outbox.extend(pending.outbox.drain(..taken));
        if !pending.outbox.is_empty() {
            self.queued.store(true, Ordering::Release);
        }
        drop(pending);
        if taken > 0 {
            self.room.add_permits(taken);
        }
        taken > 0
    }

    /// Ends every call whose deadline passed with `Timeout`; returns their
    /// ids so the driver can tell the peer to drop them. The driver sweeps
    /// this way instead of a timer per call.
    pub(crate) fn expire(&self, now: Instant) -> Vec<u64> {
        let mut wakers = Vec::new();
        let mut pending = self.lock();
        let expired: Vec<(u64, Duration)> = pending
            .calls
            .iter()
            .filter(|(_, call)| call.answer.is_none())
            .filter_map(|(id, call)| match call.deadline {
                Some((at, timeout)) if at <= now => Some((*id, timeout)),
                _ => None,
            })
            .collect();
        for &(id, timeout) in &expired {
            let error = IkcError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}"))
                .with_may_have_run(true);
            if let Answered::Waited(Some(waker)) = pending.answer(id, Err(error)) {
                wakers.push(waker);
            }
        }
        drop(pending);
        wakers.into_iter().for_each(Waker::wake);
        expired.into_iter().map(|(id, _)| id).collect()
    }

    /// Takes call `id` out of the table; whether it was still without an
    /// answer.
    fn remove(&self, id: u64) -> bool {
        let mut pending = self.lock();
        let unanswered = pending
            .calls
            .remove(&id)
            .is_some_and(|call| call.answer.is_none());
        if unanswered {
            pending.unanswered -= 1;
        }
        unanswered
    }

    /// Delivers the answer to call `id`; whether anybody was waiting.
    pub(crate) fn resolve(&self, id: u64, answer: Answer) -> bool {
        let answered = self.lock().answer(id, answer);
        match answered {
            Answered::Waited(waker) => {
                waker.into_iter().for_each(Waker::wake);
                true
            }
            Answered::Nobody => false,
        }
    }

    /// The answer to call `id` once it is in; until then the caller's
    /// task is woken when it comes.
    fn poll_answer(&self, id: u64, cx: &mut Context<'_>) -> Poll<Answer> {
        let mut pending = self.lock();
        let Some(call) = pending.calls.get_mut(&id) else {
            // Only the caller takes a call out of the table.
            return Poll::Ready(Err(IkcError::disconnected(true)));
        };
        if call.answer.is_none() {
            if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                call.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let call = pending.calls.remove(&id);
        Poll::Ready(
            call.and_then(|call| call.answer)
                .unwrap_or_else(|| Err(IkcError::disconnected(true))),
        )
    }

    /// Drops the frames still queued: the driver has ended.
    pub(crate) fn discard_queued(&self) {
        let unsent = std::mem::take(&mut self.lock().outbox);
        drop(unsent);
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

    /// The frame's length and the peer's limit, when the frame is over it.
    pub(crate) fn oversized(&self, frame: &pb::Frame) -> Option<(usize, usize)> {
        let max = self.max_frame_length;
        if max == usize::MAX {
            return None;
        }
        ikc_proto::codec::over_limit(frame, max).map(|len| (len, max))
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
        if !self.answered && self.handle.shared.remove(self.id) {
            self.handle.try_send(pb::Cancel { id: self.id }.into());
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
        request(
            self,
            target.to_string(),
            arg,
            None,
            self.shared.call_timeout,
        )
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
        request(self, target.to_string(), arg, None, Some(timeout))
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
    pub fn call_str(
        &self,
        target: &str,
        arg: Value,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + '_ {
        let timeout = timeout.or(self.shared.call_timeout);
        request(self, target.to_owned(), arg, None, timeout)
    }

    /// Like [`call_str`](Self::call_str), taking the handle: the future
    /// owns it and borrows nothing.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn into_call_str(
        self,
        target: &str,
        arg: Value,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + 'static {
        let timeout = timeout.or(self.shared.call_timeout);
        request(self, target.to_owned(), arg, None, timeout)
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
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = pb::Frame::from(pb::Subscribe {
            id,
            session: session.to_owned(),
        });
        exchange(self, |_, _| Ok(frame), Some(id), self.shared.call_timeout).await?;
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
        request(self, target, arg, from, timeout).await
    }

    /// Queues `frame` if there is room; drops it if not, or if the
    /// channel closed.
    pub(crate) fn try_send(&self, frame: pb::Frame) {
        let _ = self.shared.queue(frame);
    }

    fn check_open(&self) -> Result<(), IkcError> {
        // A closed connection is the more useful answer than our own
        // drain; after the peer's GoAway, both say the same.
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        if self.shared.draining.load(Ordering::Acquire) {
            return Err(IkcError::new(
                ErrorKind::ShuttingDown,
                "this connection is closing",
            ));
        }
        if self.shared.peer_going_away.load(Ordering::Acquire) {
            return Err(IkcError::new(
                ErrorKind::ShuttingDown,
                format!("kernel {:?} is shutting down", self.shared.peer.kernel),
            ));
        }
        Ok(())
    }

    async fn send_post(
        &self,
        target: String,
        arg: Value,
        from: Option<String>,
    ) -> Result<(), IkcError> {
        self.check_open()?;
        let request = pb::Request {
            id: 0,
            target,
            arg: Some(arg.into_proto()),
            from: from.unwrap_or_default(),
            deadline_ms: 0,
        };
        let frame = self.fits(request.into())?;
        self.shared.queue_waiting(frame).await
    }

    /// Refuses a frame the peer would reject for its size, before it is sent.
    fn fits(&self, frame: pb::Frame) -> Result<pb::Frame, IkcError> {
        match self.shared.oversized(&frame) {
            Some((len, max)) => Err(IkcError::new(
                ErrorKind::BadRequest,
                format!("request of {len} bytes exceeds the peer's frame limit of {max} bytes"),
            )),
            None => Ok(frame),
        }
    }

    /// Waits for room for `frame` in the full queue to the driver, and
    /// meanwhile for call `id`'s answer (the driver's sweep may time the
    /// call out first). `Err` when the frame could not be queued.
    async fn answer_once_queued(&self, id: u64, frame: pb::Frame) -> Result<Answer, IkcError> {
        let mut answer = std::future::poll_fn(|cx| self.shared.poll_answer(id, cx));
        tokio::select! {
            biased;
            answer = &mut answer => Ok(answer),
            queued = self.shared.queue_waiting(frame) => match queued {
                Ok(()) => Ok(answer.await),
                Err(error) => Err(error),
            },
        }
    }
}

/// A call of `target`, sent on the first poll.
fn request<H>(
    handle: H,
    target: String,
    arg: Value,
    from: Option<String>,
    timeout: Option<Duration>,
) -> impl Future<Output = Answer> + Send
where
    H: Borrow<ChannelHandle> + Send,
{
    let build = move |handle: &ChannelHandle, id: u64| {
        handle.check_open()?;
        let request = pb::Request {
            id,
            target,
            arg: Some(arg.into_proto()),
            from: from.unwrap_or_default(),
            deadline_ms: timeout.map_or(0, |t| {
                u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
        };
        handle.fits(request.into())
    };
    exchange(handle, build, None, timeout)
}

/// Sends the frame `build` makes for call `id` (a new id when `None`) on
/// the first poll, and waits for the answer. One future for the whole call,
/// not one per layer of helpers: each layer would copy the call's arguments
/// again. The deadline is kept in the pending table and enforced by the
/// driver's sweep, so a call costs no timer of its own.
async fn exchange<H, B>(handle: H, build: B, id: Option<u64>, timeout: Option<Duration>) -> Answer
where
    H: Borrow<ChannelHandle>,
    B: FnOnce(&ChannelHandle, u64) -> Result<pb::Frame, IkcError>,
{
    let handle = handle.borrow();
    let id = id.unwrap_or_else(|| handle.shared.next_id.fetch_add(1, Ordering::Relaxed));
    let frame = build(handle, id)?;
    let deadline = timeout.map(|timeout| (Instant::now() + timeout, timeout));
    let unsent = handle.shared.insert(id, deadline, frame)?;
    let mut guard = CallGuard {
        handle,
        id,
        answered: false,
    };
    let answer = match unsent {
        None => std::future::poll_fn(|cx| handle.shared.poll_answer(id, cx)).await,
        // Rare, and boxed: every call's future would otherwise carry room
        // for waiting on the queue.
        Some(frame) => match Box::pin(handle.answer_once_queued(id, frame)).await {
            Ok(answer) => answer,
            Err(error) => return Err(error),
        },
    };
    guard.answered = true;
    answer
}
