//! [`run_all`]: a connection's slots, polled in one task, each woken by
//! its own bit.
//!
//! A slot is woken once per call, as its answer comes. `FuturesUnordered`
//! spends about eight locked instructions on that wake (it upgrades a weak
//! count, queues the slot, wakes its own task through an `AtomicWaker`,
//! drops the waker's count, and clears the queued flag when it polls), a
//! measurable part of a small call on a VM, where a locked instruction
//! costs as much as some fifty others. Here a slot's waker sets its bit in
//! a shared mask and wakes the task only when the mask was empty: one
//! locked instruction per wake, and the waker's count.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Which slots were woken, a bit each, and the task polling them.
struct Ready {
    words: Vec<AtomicU64>,
    task: AtomicWaker,
}

/// The waker of slot `index`.
struct SlotWaker {
    ready: Arc<Ready>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let word = &self.ready.words[self.index / 64];
        // The first slot woken since the task last looked wakes the task.
        if word.fetch_or(1 << (self.index % 64), Ordering::AcqRel) == 0 {
            self.ready.task.wake();
        }
    }
}

/// Polls every future of `slots` until all are done, each when its own
/// waker was woken; see the [module docs](self).
pub(super) async fn run_all<F: Future<Output = ()>>(slots: impl IntoIterator<Item = F>) {
    let mut slots: Vec<Option<Pin<Box<F>>>> =
        slots.into_iter().map(|slot| Some(Box::pin(slot))).collect();
    let words = slots.len().div_ceil(64);
    // Every slot is polled once to start.
    let ready = Arc::new(Ready {
        words: (0..words)
            .map(|word| {
                let bits = (slots.len() - word * 64).min(64);
                AtomicU64::new(if bits == 64 {
                    u64::MAX
                } else {
                    (1 << bits) - 1
                })
            })
            .collect(),
        task: AtomicWaker::new(),
    });
    let wakers: Vec<Waker> = (0..slots.len())
        .map(|index| {
            Waker::from(Arc::new(SlotWaker {
                ready: Arc::clone(&ready),
                index,
            }))
        })
        .collect();
    let mut left = slots.len();
    std::future::poll_fn(|cx| {
        // Registered before looking: a slot woken meanwhile wakes the task.
        ready.task.register(cx.waker());
        for (word_index, word) in ready.words.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let index = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(slot) = &mut slots[index] else {
                    continue;
                };
                if slot
                    .as_mut()
                    .poll(&mut Context::from_waker(&wakers[index]))
                    .is_ready()
                {
                    slots[index] = None;
                    left -= 1;
                }
            }
        }
        if left == 0 {
            return Poll::Ready(());
        }
        // Slots woken while the others were polled are polled on the next
        // turn, after the runtime ran what else is ready (their answers
        // come from another task).
        if ready
            .words
            .iter()
            .any(|word| word.load(Ordering::Acquire) != 0)
        {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Each of 130 slots (three words of bits) waits for its own number of
    /// turns of a shared counter, woken by whoever moves it: every slot
    /// ends, and each one only once it is woken.
    #[tokio::test]
    async fn every_slot_is_polled_when_woken_until_all_are_done() {
        const SLOTS: usize = 130;
        let waiting: Arc<Mutex<Vec<(usize, Waker)>>> = Arc::default();
        let polls = Arc::new(Mutex::new(vec![0_usize; SLOTS]));
        let slots = (0..SLOTS).map(|index| {
            let (waiting, polls) = (Arc::clone(&waiting), Arc::clone(&polls));
            let mut turns = index % 3;
            std::future::poll_fn(move |cx| {
                polls.lock().unwrap()[index] += 1;
                if turns == 0 {
                    return Poll::Ready(());
                }
                turns -= 1;
                waiting.lock().unwrap().push((index, cx.waker().clone()));
                Poll::Pending
            })
        });
        let waker = {
            let waiting = Arc::clone(&waiting);
            tokio::spawn(async move {
                loop {
                    let woken: Vec<_> = std::mem::take(&mut *waiting.lock().unwrap());
                    for (_, waker) in woken {
                        waker.wake();
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), run_all(slots))
            .await
            .expect("every slot ends");
        waker.abort();
        let polls = polls.lock().unwrap();
        for (index, &count) in polls.iter().enumerate() {
            // Polled once to start, then once per wake.
            assert_eq!(count, index % 3 + 1, "slot {index}");
        }
    }
}
