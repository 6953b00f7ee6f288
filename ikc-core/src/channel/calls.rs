//! The call table: our calls to the peer, from the moment they are queued
//! until their caller takes the answer.
//!
//! A call is inserted with its caller's waker, answered by the driver (a
//! reply, an error, its deadline, the connection's end), and taken out by
//! its caller; the table is the call's channel, so a call needs no
//! allocation of its own. It also keeps our side of the peer's
//! `max_in_flight`: calls over it wait here, held with their frames, until
//! an answer makes room.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ikc_proto::{Value, pb};
use tokio::time::Instant;

use super::ids::IdTable;
use crate::IkcError;

/// What a call ends with.
pub(super) type Answer = Result<Value, IkcError>;

/// A call waiting for its answer, and then for its caller to take it.
#[derive(Debug)]
pub(super) struct PendingCall {
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

impl PendingCall {
    /// A call whose caller is `waker`, with the timeout the caller asked for.
    #[inline]
    pub(super) fn new(waker: &Waker, timeout: Option<Duration>) -> Self {
        PendingCall {
            answer: None,
            waker: Some(waker.clone()),
            deadline: timeout.map(|timeout| (None, timeout)),
            slot: Slot::Free,
        }
    }

    /// Starts the call's clock now: it waits before it is sent.
    pub(super) fn start_clock(&mut self) {
        if let Some((at, timeout)) = &mut self.deadline {
            *at = Some(Instant::now() + *timeout);
        }
    }

    /// Counts the call against the peer's `max_in_flight`.
    #[inline]
    pub(super) fn take_slot(&mut self) {
        self.slot = Slot::Taken;
    }
}

/// A call's place under the peer's `max_in_flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not counted: not a request (a `Subscribe`), or answered already.
    Free,
    /// Sent, or on its way: the peer runs it until it answers.
    Taken,
    /// Waiting in `CallTable::held` for a call of ours to end.
    Held,
}

/// Whether an answer found its call.
pub(super) enum Answered {
    /// The call waited: its caller's task, to wake once the lock is
    /// released (none if the caller has not looked yet).
    Waited(Option<Waker>),
    /// No call waits for this answer.
    Nobody,
}

impl Answered {
    /// Wakes the caller now.
    pub(super) fn wake(self) {
        if let Answered::Waited(Some(waker)) = self {
            waker.wake();
        }
    }
}

/// A call that passed its deadline, from [`CallTable::expire`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Expired {
    pub(super) id: u64,
    /// The peer was running it: it hears of its end (a `Cancel`).
    pub(super) sent: bool,
}

/// What a caller that gave up leaves to do, from [`CallTable::abandon`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Abandoned {
    /// Nothing: answered already, or never sent.
    Nothing,
    /// The peer may be running it: tell it to stop.
    Cancel,
}

/// The calls of one channel; see the [module docs](self).
#[derive(Debug)]
pub(super) struct CallTable {
    calls: IdTable<PendingCall>,
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
    /// The connection ended: no call is inserted any more.
    pub(super) closed: bool,
}

impl Default for CallTable {
    fn default() -> Self {
        CallTable {
            calls: IdTable::default(),
            unanswered: 0,
            unstamped: Vec::new(),
            next_id: 1,
            taken: 0,
            held: VecDeque::new(),
            closed: false,
        }
    }
}

impl CallTable {
    /// A new call id: the next one whose slot in the table is free (a
    /// long-running call may hold one).
    #[inline]
    pub(super) fn allocate_id(&mut self) -> u64 {
        let mut id = self.next_id;
        while self.calls.slot_taken(id) {
            id += 1;
        }
        self.next_id = id + 1;
        id
    }

    /// Calls holding a slot under the peer's `max_in_flight`.
    pub(super) fn taken(&self) -> usize {
        self.taken
    }

    /// Calls waiting for a slot.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether calls still wait for answers.
    pub(super) fn has_unanswered(&self) -> bool {
        self.unanswered > 0
    }

    /// Enters call `id`; `stamp` when its deadline starts as the driver
    /// takes its frame.
    #[inline]
    pub(super) fn insert(&mut self, id: u64, call: PendingCall, stamp: bool) {
        self.taken += usize::from(call.slot == Slot::Taken);
        if stamp && call.deadline.is_some() {
            self.unstamped.push(id);
        }
        self.calls.insert(id, call);
        self.unanswered += 1;
    }

    /// Enters call `id` as held: its `frame` waits for a slot, and its time
    /// counts from now.
    pub(super) fn hold(&mut self, id: u64, mut call: PendingCall, frame: pb::Frame) {
        call.start_clock();
        call.slot = Slot::Held;
        self.calls.insert(id, call);
        self.unanswered += 1;
        self.held.push_back((id, frame));
    }

    /// The oldest held call, if a slot is free for it.
    pub(super) fn next_held(&self, max_taken: usize) -> Option<u64> {
        if self.taken >= max_taken || self.closed {
            return None;
        }
        self.held.front().map(|(id, _)| *id)
    }

    /// Takes the oldest held call out of the queue into a slot; its frame,
    /// with the deadline the peer's handler sees made what is left of the
    /// call's. `None` when its caller is gone already.
    pub(super) fn unhold_next(&mut self) -> Option<(u64, pb::Frame)> {
        let (id, mut frame) = self.held.pop_front()?;
        let call = self.calls.get_mut(id)?;
        call.slot = Slot::Taken;
        if let (Some((Some(at), _)), Some(pb::frame::Kind::Request(request))) =
            (call.deadline, frame.kind.as_mut())
            && request.deadline_ms > 0
        {
            let left = at.saturating_duration_since(Instant::now());
            request.deadline_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
        }
        self.taken += 1;
        Some((id, frame))
    }

    /// Starts the clock of the calls not stamped yet at `now`.
    pub(super) fn stamp(&mut self, now: impl FnOnce() -> Instant) {
        if self.unstamped.is_empty() {
            return;
        }
        let now = now();
        for id in self.unstamped.drain(..) {
            if let Some(PendingCall {
                deadline: Some((at @ None, timeout)),
                ..
            }) = self.calls.get_mut(id)
            {
                *at = Some(now + *timeout);
            }
        }
    }

    /// Answers call `id` if it still waits for an answer. A held call was
    /// never sent, so the peer cannot answer it: whoever ends one frees
    /// its slot first (see [`CallTable::unhold`]).
    #[inline]
    pub(super) fn answer(&mut self, id: u64, answer: Answer) -> Answered {
        let Some(call) = self.calls.get_mut(id) else {
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
            if let Some(call) = self.calls.get_mut(*id) {
                call.slot = Slot::Free;
            }
        }
        // One pass however many: a sweep may end many at once.
        let calls = &self.calls;
        self.held
            .retain(|(id, _)| calls.get(*id).is_some_and(|call| call.slot == Slot::Held));
    }

    /// Ends every call whose deadline passed by `now` with the error
    /// `timed_out` makes (whether the call was sent), and returns them.
    pub(super) fn expire(
        &mut self,
        now: Instant,
        timed_out: impl Fn(Duration, bool) -> IkcError,
        wakers: &mut Vec<Waker>,
    ) -> Vec<Expired> {
        // Calls not sent yet (the transport had no room) start from now.
        self.stamp(|| now);
        let expired: Vec<(u64, Duration, bool)> = self
            .calls
            .iter()
            .filter(|(_, call)| call.answer.is_none())
            .filter_map(|(id, call)| match call.deadline {
                Some((Some(at), timeout)) if at <= now => {
                    Some((id, timeout, call.slot != Slot::Held))
                }
                _ => None,
            })
            .collect();
        let held: Vec<u64> = expired
            .iter()
            .filter(|(_, _, sent)| !sent)
            .map(|(id, _, _)| *id)
            .collect();
        self.unhold(&held);
        for &(id, timeout, sent) in &expired {
            if let Answered::Waited(Some(waker)) = self.answer(id, Err(timed_out(timeout, sent))) {
                wakers.push(waker);
            }
        }
        expired
            .into_iter()
            .map(|(id, _, sent)| Expired { id, sent })
            .collect()
    }

    /// Takes call `id`, whose caller gave up, out of the table.
    pub(super) fn abandon(&mut self, id: u64) -> Abandoned {
        let Some(call) = self.calls.remove(id) else {
            return Abandoned::Nothing;
        };
        if call.answer.is_some() {
            return Abandoned::Nothing;
        }
        self.unanswered -= 1;
        match call.slot {
            // Never sent: nothing to cancel.
            Slot::Held => {
                self.held.retain(|(held, _)| *held != id);
                return Abandoned::Nothing;
            }
            Slot::Taken => self.taken -= 1,
            Slot::Free => {}
        }
        Abandoned::Cancel
    }

    /// The answer to call `id` once it is in; until then the caller's
    /// task is woken when it comes.
    #[inline]
    pub(super) fn poll_answer(&mut self, id: u64, cx: &mut Context<'_>) -> Poll<Answer> {
        let Some(call) = self.calls.get_mut(id) else {
            // Only the caller takes a call out of the table.
            return Poll::Ready(Err(IkcError::disconnected(true)));
        };
        if call.answer.is_none() {
            if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                call.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(
            self.calls
                .remove(id)
                .and_then(|call| call.answer)
                .unwrap_or_else(|| Err(IkcError::disconnected(true))),
        )
    }

    /// Closes the table and ends every call: a held one with `unsent` (it
    /// never left), any other with what `ended` says for its id.
    pub(super) fn close(
        &mut self,
        unsent: impl Fn() -> IkcError,
        ended: impl Fn(u64) -> IkcError,
        wakers: &mut Vec<Waker>,
    ) {
        self.closed = true;
        let held: Vec<u64> = self.held.iter().map(|(id, _)| *id).collect();
        self.unhold(&held);
        for id in held {
            if let Answered::Waited(Some(waker)) = self.answer(id, Err(unsent())) {
                wakers.push(waker);
            }
        }
        let waiting: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, call)| call.answer.is_none())
            .map(|(id, _)| id)
            .collect();
        for id in waiting {
            if let Answered::Waited(Some(waker)) = self.answer(id, Err(ended(id))) {
                wakers.push(waker);
            }
        }
    }

    /// Drops the frames of held calls: the driver has ended.
    pub(super) fn discard_held(&mut self) -> VecDeque<(u64, pb::Frame)> {
        std::mem::take(&mut self.held)
    }
}
