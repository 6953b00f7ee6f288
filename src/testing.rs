//! A testing kit for sessions, with no sockets: two kernels connected in
//! memory, a mock session that records what it got and answers from a
//! script, bounded waits on monitor events, and faults to inject.
//!
//! ```
//! use std::time::Duration;
//!
//! use ikc::testing::{self, MockSession, Reply};
//! use ikc::{ErrorKind, Kernel, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The session under test's peer: a mock that answers `add` with 5, then
//! // fails `add` with BadRequest.
//! let calc = MockSession::new()
//!     .reply("add", Reply::value(5))
//!     .reply("add", Reply::error(ErrorKind::BadRequest, "too big"));
//! let server = Kernel::new("Server");
//! calc.publish(&server, "calc")?;
//!
//! // A client kernel connected to it in memory, in one line.
//! let client = Kernel::new("Client");
//! let pair = testing::connect(&client, &server);
//!
//! let target = "poe://Server/calc/add".parse()?;
//! assert_eq!(client.call(&target, Value::from(vec![2, 3])).await?, Value::from(5));
//! let error = client.call(&target, Value::from(vec![2, 300])).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::BadRequest);
//!
//! // What the mock got, and from whom.
//! let got = calc.requests();
//! assert_eq!(got.len(), 2);
//! assert_eq!(got[0].arg(), &Value::from(vec![2, 3]));
//! assert_eq!(got[0].caller().map(|peer| peer.kernel.as_str()), Some("Client"));
//!
//! // A fault: the connection drops; the server's monitor sees the client go.
//! let mut monitor = server.monitor();
//! pair.disconnect();
//! testing::expect_unregister(&mut monitor, "Client", Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use ikc_core::transport::memory;
use ikc_core::{
    BoxError, Channel, ChannelHandle, ErrorKind, IkcError, Kernel, Monitor, MonitorEvent,
    ParseSpecifierError, PeerInfo, Request, Value,
};
use tokio::task::JoinHandle;

/// Frames each end of the in-memory connection buffers.
const BUFFER: usize = 64;

/// Two kernels connected in memory by [`connect`]: each can call the
/// other's sessions, by name (`poe://B/session/event`) or through the
/// handles. Dropping it leaves the connection running;
/// [`disconnect`](Self::disconnect) drops it.
#[derive(Debug)]
pub struct KernelPair {
    a_to_b: ChannelHandle,
    b_to_a: ChannelHandle,
    drivers: [JoinHandle<()>; 2],
}

/// Connects kernels `a` and `b` in memory, as a handshake over a socket
/// would: each registers the other (monitors see `Register`), and requests
/// carry the sending kernel as their [`caller`](Request::caller). Needs a
/// tokio runtime; the channels run on spawned tasks.
///
/// # Panics
///
/// When `a` or `b` already has a peer of the other's name (connect each
/// pair once).
#[must_use]
pub fn connect(a: &Kernel, b: &Kernel) -> KernelPair {
    let (a_end, b_end) = memory::pair(BUFFER);
    let (a_to_b, a_driver) = Channel::builder(a.clone())
        .connect(peer_info(b), a_end)
        .expect("kernel a has no peer named as kernel b");
    let (b_to_a, b_driver) = Channel::builder(b.clone())
        .connect(peer_info(a), b_end)
        .expect("kernel b has no peer named as kernel a");
    let spawn = |driver: ikc_core::channel::ChannelDriver<memory::MemoryTransport>| {
        tokio::spawn(async move {
            if let Err(error) = driver.await {
                tracing::debug!(%error, "in-memory channel ended");
            }
        })
    };
    KernelPair {
        a_to_b,
        b_to_a,
        drivers: [spawn(a_driver), spawn(b_driver)],
    }
}

fn peer_info(kernel: &Kernel) -> PeerInfo {
    PeerInfo::new(kernel.name().to_owned(), kernel.aliases(), kernel.pid())
}

impl KernelPair {
    /// Kernel a's end: calls and posts to kernel b.
    #[must_use]
    pub fn a_to_b(&self) -> &ChannelHandle {
        &self.a_to_b
    }

    /// Kernel b's end: calls and posts to kernel a.
    #[must_use]
    pub fn b_to_a(&self) -> &ChannelHandle {
        &self.b_to_a
    }

    /// Drops the connection at once, as a crashed peer or a cut cable
    /// would: calls pending either way fail with `Disconnected`, and each
    /// kernel unregisters the other.
    pub fn disconnect(&self) {
        for driver in &self.drivers {
            driver.abort();
        }
    }

    /// Closes the connection gracefully: each side says `GoAway`, calls in
    /// flight are answered, then the channels end.
    pub fn close(&self) {
        self.a_to_b.go_away();
        self.b_to_a.go_away();
    }
}

/// One scripted answer of a [`MockSession`].
#[derive(Debug, Clone)]
pub struct Reply {
    answer: Result<Value, IkcError>,
    delay: Option<Duration>,
    hang: bool,
}

impl Reply {
    /// Answers `value`.
    #[must_use]
    pub fn value(value: impl Into<Value>) -> Reply {
        Reply {
            answer: Ok(value.into()),
            delay: None,
            hang: false,
        }
    }

    /// Fails with a typed error, as a failing handler would.
    #[must_use]
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply {
            answer: Err(IkcError::new(kind, message)),
            delay: None,
            hang: false,
        }
    }

    /// Never answers: the caller's deadline, or a `Cancel`, ends the call.
    #[must_use]
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::value(Value::Null)
        }
    }

    /// Answers only after `delay` (a slow handler).
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// A session for tests: records every request it gets and answers each
/// event from a script.
///
/// The replies given for an event with [`reply`](Self::reply) are used in
/// order; the last one then answers every later request. An event with no
/// script fails with `Handler` ("no reply scripted"). It is a tower
/// `Service<Request>`, so it can be published (see
/// [`publish`](Self::publish)) or wrapped in layers. Clones share the
/// script and the record.
#[derive(Debug, Clone, Default)]
pub struct MockSession {
    inner: Arc<Mutex<Script>>,
}

#[derive(Debug, Default)]
struct Script {
    replies: HashMap<String, VecDeque<Reply>>,
    /// Events in the order they were first scripted (what is published).
    events: Vec<String>,
    requests: Vec<Request>,
}

impl MockSession {
    /// A mock with no script.
    #[must_use]
    pub fn new() -> MockSession {
        MockSession::default()
    }

    /// Adds `reply` to the script of `event`.
    #[must_use]
    pub fn reply(self, event: &str, reply: Reply) -> MockSession {
        {
            let mut script = self.lock();
            if !script.replies.contains_key(event) {
                script.events.push(event.to_owned());
            }
            script
                .replies
                .entry(event.to_owned())
                .or_default()
                .push_back(reply);
        }
        self
    }

    /// Publishes this mock on `kernel` as session `name`, with the scripted
    /// events.
    ///
    /// # Errors
    ///
    /// When `name` or an event name is not a valid name.
    pub fn publish(&self, kernel: &Kernel, name: &str) -> Result<(), ParseSpecifierError> {
        let events = self.lock().events.clone();
        kernel.publish(name, events, self.clone())
    }

    /// Every request received so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl tower::Service<Request> for MockSession {
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let reply = {
            let mut script = self.lock();
            let event = req.event().to_owned();
            script.requests.push(req);
            script.replies.get_mut(&event).and_then(|replies| {
                if replies.len() > 1 {
                    replies.pop_front()
                } else {
                    replies.front().cloned()
                }
            })
        };
        Box::pin(async move {
            let Some(reply) = reply else {
                return Err(IkcError::new(ErrorKind::Handler, "no reply scripted").into());
            };
            if reply.hang {
                std::future::pending::<()>().await;
            }
            if let Some(delay) = reply.delay {
                tokio::time::sleep(delay).await;
            }
            reply.answer.map_err(Into::into)
        })
    }
}

/// A monitor event that did not come in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no {wanted} within {within:?}; saw {seen:?}")]
pub struct MissingEvent {
    wanted: String,
    within: Duration,
    seen: Vec<MonitorEvent>,
}

impl MissingEvent {
    /// The events that came instead, in order.
    #[must_use]
    pub fn seen(&self) -> &[MonitorEvent] {
        &self.seen
    }
}

/// Waits at most `within` for the first event of `monitor` that `wanted`
/// accepts, skipping the others; the event.
///
/// # Errors
///
/// When none comes in time (or the kernel is gone), with the events seen.
pub async fn expect_event(
    monitor: &mut Monitor,
    within: Duration,
    what: &str,
    wanted: impl Fn(&MonitorEvent) -> bool,
) -> Result<MonitorEvent, MissingEvent> {
    let mut seen = Vec::new();
    let search = async {
        while let Some(event) = monitor.next_event().await {
            if wanted(&event) {
                return Some(event);
            }
            seen.push(event);
        }
        None
    };
    match tokio::time::timeout(within, search).await {
        Ok(Some(event)) => Ok(event),
        _ => Err(MissingEvent {
            wanted: what.to_owned(),
            within,
            seen,
        }),
    }
}

/// Waits at most `within` for kernel `kernel` to register with the
/// monitored kernel.
///
/// # Errors
///
/// As [`expect_event`].
pub async fn expect_register(
    monitor: &mut Monitor,
    kernel: &str,
    within: Duration,
) -> Result<MonitorEvent, MissingEvent> {
    let what = format!("Register of {kernel:?}");
    expect_event(
        monitor,
        within,
        &what,
        |event| matches!(event, MonitorEvent::Register { kernel: k, .. } if k == kernel),
    )
    .await
}

/// Waits at most `within` for kernel `kernel` to unregister from the
/// monitored kernel.
///
/// # Errors
///
/// As [`expect_event`].
pub async fn expect_unregister(
    monitor: &mut Monitor,
    kernel: &str,
    within: Duration,
) -> Result<MonitorEvent, MissingEvent> {
    let what = format!("Unregister of {kernel:?}");
    expect_event(
        monitor,
        within,
        &what,
        |event| matches!(event, MonitorEvent::Unregister { kernel: k } if k == kernel),
    )
    .await
}
