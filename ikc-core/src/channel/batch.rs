//! [`ChannelHandle::call_many`]: a batch of calls of one target, sent
//! under one lock and waited for by one future with one waker.
//!
//! A call made with [`ChannelHandle::call`] is a future of its own: a
//! caller keeping 32 calls in flight polls 32 futures (in a
//! `FuturesUnordered` or a `join_all`), each registered with its own waker
//! and woken once per answer. A batch is one entry per call in the call
//! table, as ever, but it queues its frames under one lock, its calls
//! share the caller's waker (the driver wakes it once for the answers that
//! came in one read), and it takes its answers under one lock per wake.

use std::future::Future;

use futures::future::join_all;
use ikc_proto::Value;

use super::calls::Answer;
use super::handle::{ChannelHandle, Target};
use crate::IkcError;

/// The calls of a batch still in the call table: dropped before their
/// answers came, they are abandoned (the peer is sent `Cancel`).
struct BatchGuard<'a> {
    handle: &'a ChannelHandle,
    /// One per call of the batch; 0 once its answer is taken (or for a
    /// call that never entered the table).
    ids: Vec<u64>,
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        for &id in self.ids.iter().filter(|&&id| id != 0) {
            self.handle.shared().abandon(id);
        }
    }
}

impl ChannelHandle {
    /// Calls `target` once with each of `args` and waits for every answer,
    /// each at most the channel's call timeout; the answers come in the
    /// order of `args`.
    ///
    /// The same calls as [`call`](Self::call) in a `join_all`, for less:
    /// see the [module docs](self). Calls over the peer's `max_in_flight`
    /// or the room of the queue to the driver wait their turn one by one,
    /// as calls of their own would.
    ///
    /// ```
    /// # use ikc_core::{Channel, Kernel, PeerInfo, Value, service_fn, transport::memory};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = Kernel::new("Server");
    /// # server.publish("calc", ["double"], service_fn(|req: ikc_core::Request| async move {
    /// #     Ok::<_, ikc_core::BoxError>(Value::from(req.arg_as::<i64>()? * 2))
    /// # }))?;
    /// # let client = Kernel::new("Client");
    /// # let (a, b) = memory::pair(16);
    /// # let peer = |k: &Kernel| PeerInfo::new(k.name(), vec![], k.pid());
    /// # let (_, server_driver) = Channel::builder(server.clone()).connect(peer(&client), a)?;
    /// # let (to_server, client_driver) = Channel::builder(client.clone()).connect(peer(&server), b)?;
    /// # tokio::spawn(server_driver);
    /// # tokio::spawn(client_driver);
    /// let answers = to_server.call_many("calc/double", (1..=3).map(Value::from)).await;
    /// let doubled: Vec<Value> = answers.into_iter().collect::<Result<_, _>>()?;
    /// assert_eq!(doubled, [2, 4, 6].map(Value::from));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the calls not answered yet, as
    /// dropping a [`call`](Self::call) does.
    pub fn call_many<'a, I>(
        &'a self,
        target: impl Into<Target<'a>>,
        args: I,
    ) -> impl Future<Output = Vec<Result<Value, IkcError>>> + Send + 'a
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: Send + 'a,
    {
        let target = target.into();
        let args = args.into_iter().peekable();
        async move { self.batch(target.as_str(), args).await }
    }

    async fn batch<I>(&self, target: &str, mut args: std::iter::Peekable<I>) -> Vec<Answer>
    where
        I: Iterator<Item = Value> + Send,
    {
        let shared = self.shared();
        if let Err(error) = self.check_open() {
            return args.map(|_| Err(error.clone())).collect();
        }
        let timeout = shared.call_timeout;
        let mut guard = BatchGuard {
            handle: self,
            ids: Vec::with_capacity(args.size_hint().0),
        };
        let mut answers: Vec<Option<Answer>> = Vec::new();
        let mut inserted = false;
        std::future::poll_fn(|cx| {
            if !inserted {
                inserted = true;
                let mut refused = Vec::new();
                let entered = shared.insert_batch(
                    target,
                    &mut args,
                    timeout,
                    cx.waker(),
                    &mut guard.ids,
                    &mut refused,
                );
                answers.resize_with(guard.ids.len(), || None);
                for (at, error) in refused {
                    answers[at] = Some(Err(error));
                }
                if let Err(error) = entered {
                    // Closed before any call entered: each gets the error.
                    answers.extend(args.by_ref().map(|_| Some(Err(error.clone()))));
                    return std::task::Poll::Ready(());
                }
            }
            shared.poll_answers(&mut guard.ids, &mut answers, cx)
        })
        .await;
        // The calls that found no room in one go: one by one.
        let rest = join_all(args.map(|arg| self.call(target, arg))).await;
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Err(IkcError::disconnected(true))))
            .chain(rest)
            .collect()
    }
}
