//! Helpers shared by the ikc-core integration tests: kernels connected in
//! memory, sessions the test controls, a hand-driven raw peer, and bounded
//! waits. No sockets anywhere.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::mpsc as fmpsc;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use ikc_core::channel::SessionService;
use ikc_core::transport::memory::{self, MemoryTransport};
use ikc_core::{
    BoxError, Channel, ChannelBuilder, ChannelError, ChannelHandle, IkcError, Kernel, Monitor,
    MonitorEvent, PeerInfo, Request, Specifier, Value, service_fn,
};
use ikc_proto::pb;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The bound on every wait in the tests. Generous: a passing wait takes
/// microseconds, and a failing one must not hang the suite.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Frames each end of an in-memory transport buffers.
pub(crate) const TRANSPORT_BUFFER: usize = 64;

/// Awaits `fut` for at most [`WAIT`], failing the test with `what` otherwise.
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Parses a specifier the test knows to be valid.
pub(crate) fn spec(text: &str) -> Specifier {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// What a peer announces about `kernel` in its handshake.
pub(crate) fn peer_info(kernel: &Kernel) -> PeerInfo {
    PeerInfo::new(kernel.name().to_owned(), kernel.aliases(), kernel.pid())
}

/// Two kernels connected in memory, both drivers spawned.
#[derive(Debug)]
pub(crate) struct Link {
    /// Kernel A's handle: calls kernel B.
    pub(crate) a_to_b: ChannelHandle,
    /// Kernel B's handle: calls kernel A.
    pub(crate) b_to_a: ChannelHandle,
    /// Kernel A's driver.
    pub(crate) a_driver: JoinHandle<Result<(), ChannelError>>,
    /// Kernel B's driver.
    pub(crate) b_driver: JoinHandle<Result<(), ChannelError>>,
}

/// Connects `a` and `b` with default channel settings.
pub(crate) fn connect(a: &Kernel, b: &Kernel) -> Link {
    connect_with(a, b, |builder| builder, |builder| builder)
}

/// Connects `a` and `b`, each channel builder configured by its closure.
pub(crate) fn connect_with(
    a: &Kernel,
    b: &Kernel,
    a_options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
    b_options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
) -> Link {
    let (a_end, b_end) = memory::pair(TRANSPORT_BUFFER);
    let (a_to_b, a_driver) = a_options(Channel::builder(a.clone()))
        .connect(peer_info(b), a_end)
        .expect("kernel B registers with kernel A");
    let (b_to_a, b_driver) = b_options(Channel::builder(b.clone()))
        .connect(peer_info(a), b_end)
        .expect("kernel A registers with kernel B");
    Link {
        a_to_b,
        b_to_a,
        a_driver: tokio::spawn(a_driver),
        b_driver: tokio::spawn(b_driver),
    }
}

/// Awaits a spawned driver's end (bounded) and returns what it ended with.
pub(crate) async fn driver_end(
    driver: JoinHandle<Result<(), ChannelError>>,
) -> Result<(), ChannelError> {
    within("the channel driver to end", driver)
        .await
        .expect("the driver task does not panic")
}

/// A session that answers with its argument.
pub(crate) fn echo() -> SessionService {
    SessionService::new(service_fn(|req: Request| async move {
        Ok::<_, BoxError>(req.into_arg())
    }))
}

/// An echo of `n` (a number below 200) that answers after 200 - `n`
/// milliseconds: calls made in order are answered in reverse.
pub(crate) fn reversing_echo() -> SessionService {
    SessionService::new(service_fn(|req: Request| async move {
        let n: u64 = req.arg_as()?;
        tokio::time::sleep(Duration::from_millis(200 - n)).await;
        Ok::<_, BoxError>(req.into_arg())
    }))
}

/// A session that answers `answer` to every event (to tell who answered).
pub(crate) fn answers(answer: &'static str) -> SessionService {
    SessionService::new(service_fn(move |_: Request| async move {
        Ok::<_, BoxError>(Value::from(answer))
    }))
}

/// A session whose every event fails with `message`.
pub(crate) fn failing(message: &'static str) -> SessionService {
    SessionService::new(service_fn(move |_: Request| async move {
        Err::<Value, BoxError>(message.into())
    }))
}

/// A session that answers with its argument and counts the requests that
/// reached it.
pub(crate) fn counting() -> (SessionService, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let service = SessionService::new(service_fn(move |req: Request| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(req.into_arg()) }
    }));
    (service, count)
}

/// A session that hands every request it gets to the test, answering null.
pub(crate) fn recording() -> (SessionService, mpsc::UnboundedReceiver<Request>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = SessionService::new(service_fn(move |req: Request| {
        let _ = tx.send(req);
        async { Ok::<_, BoxError>(Value::Null) }
    }));
    (service, rx)
}

/// Sends its value when dropped, unless disarmed: tells the test that a
/// handler's future was dropped before it finished.
#[derive(Debug)]
pub(crate) struct DropSignal {
    tx: Option<mpsc::UnboundedSender<Value>>,
    value: Value,
}

impl DropSignal {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Value>, value: Value) -> Self {
        DropSignal {
            tx: Some(tx),
            value,
        }
    }

    /// The handler finished normally: dropping it now says nothing.
    pub(crate) fn disarm(mut self) {
        self.tx = None;
    }
}

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(std::mem::take(&mut self.value));
        }
    }
}

/// The test's side of a [`held`] session.
#[derive(Debug)]
pub(crate) struct HeldControl {
    started: mpsc::UnboundedReceiver<Value>,
    dropped: mpsc::UnboundedReceiver<Value>,
    release: watch::Sender<bool>,
}

impl HeldControl {
    /// Waits until a request reached the session; returns its argument.
    pub(crate) async fn started(&mut self) -> Value {
        within("a held request to start", self.started.recv())
            .await
            .expect("the session is alive")
    }

    /// Waits until a handler's future was dropped before it finished
    /// (cancelled); returns its argument.
    pub(crate) async fn dropped(&mut self) -> Value {
        within("a held handler to be dropped", self.dropped.recv())
            .await
            .expect("the session is alive")
    }

    /// Lets every held request (running or future) answer.
    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }
}

/// A session that takes a while (paused time) and records the most
/// requests it ever ran at once.
pub(crate) fn slow_counting() -> (SessionService, Arc<AtomicUsize>) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&most);
    let service = SessionService::new(service_fn(move |req: Request| {
        let running = Arc::clone(&running);
        let most = Arc::clone(&seen);
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(req.into_arg())
        }
    }));
    (service, most)
}

/// A session whose requests wait until the test releases them, then answer
/// with their argument. It reports each start, and each handler dropped
/// before it finished.
pub(crate) fn held() -> (SessionService, HeldControl) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let service = SessionService::new(service_fn(move |req: Request| {
        let started_tx = started_tx.clone();
        let guard = DropSignal::new(dropped_tx.clone(), req.arg().clone());
        let mut release_rx = release_rx.clone();
        async move {
            let _ = started_tx.send(req.arg().clone());
            // An error means the test is gone; answering is harmless then.
            let _ = release_rx.wait_for(|released| *released).await;
            guard.disarm();
            Ok::<_, BoxError>(req.into_arg())
        }
    }));
    (
        service,
        HeldControl {
            started,
            dropped,
            release,
        },
    )
}

/// Every monitor event already on the bus, without waiting.
pub(crate) fn drain_now(monitor: &mut Monitor) -> Vec<MonitorEvent> {
    let mut events = Vec::new();
    while let Some(Some(event)) = monitor.next_event().now_or_never() {
        events.push(event);
    }
    events
}

/// The next monitor event (bounded).
pub(crate) async fn next_event(monitor: &mut Monitor) -> MonitorEvent {
    within("a monitor event", monitor.next_event())
        .await
        .expect("the kernel is alive")
}

/// The far end of a kernel's channel, driven by hand with raw frames.
#[derive(Debug)]
pub(crate) struct RawPeer {
    transport: MemoryTransport,
}

/// Connects `kernel` to a raw peer named `name`; the kernel's driver is
/// spawned.
pub(crate) fn raw_peer(
    kernel: &Kernel,
    name: &str,
    options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
) -> (RawPeer, ChannelHandle, JoinHandle<Result<(), ChannelError>>) {
    let (kernel_end, raw_end) = memory::pair(TRANSPORT_BUFFER);
    let info = PeerInfo::new(name.to_owned(), Vec::new(), 4242);
    let (handle, driver) = options(Channel::builder(kernel.clone()))
        .connect(info, kernel_end)
        .expect("the raw peer registers");
    (RawPeer { transport: raw_end }, handle, tokio::spawn(driver))
}

impl RawPeer {
    /// Sends one frame to the kernel.
    pub(crate) async fn send(&mut self, frame: impl Into<pb::Frame>) {
        within("the raw peer to send", self.transport.send(frame.into()))
            .await
            .expect("the kernel's end is open");
    }

    /// Sends nothing more (the kernel reads the end of its input) but
    /// keeps reading, like a TCP peer that shut down its write half.
    pub(crate) async fn close_write(&mut self) {
        within("the raw peer to close", SinkExt::close(&mut self.transport))
            .await
            .expect("the memory transport closes");
    }

    /// The next frame from the kernel; `None` when its end closed.
    pub(crate) async fn recv(&mut self) -> Option<pb::Frame> {
        within("a frame from the kernel", self.transport.next())
            .await
            .map(|frame| frame.expect("the memory transport never fails"))
    }

    /// The next frame from the kernel, which must be an `Error`.
    pub(crate) async fn recv_error(&mut self) -> pb::Error {
        match self.recv().await {
            Some(pb::Frame {
                kind: Some(pb::frame::Kind::Error(error)),
            }) => error,
            other => panic!("expected an Error frame, got {other:?}"),
        }
    }

    /// The next frame from the kernel, which must be a `Reply`.
    pub(crate) async fn recv_reply(&mut self) -> pb::Reply {
        match self.recv().await {
            Some(pb::Frame {
                kind: Some(pb::frame::Kind::Reply(reply)),
            }) => reply,
            other => panic!("expected a Reply frame, got {other:?}"),
        }
    }

    /// The next frame from the kernel, which must be a `Request`.
    pub(crate) async fn recv_request(&mut self) -> pb::Request {
        match self.recv().await {
            Some(pb::Frame {
                kind: Some(pb::frame::Kind::Request(request)),
            }) => request,
            other => panic!("expected a Request frame, got {other:?}"),
        }
    }
}

/// A raw request frame.
pub(crate) fn raw_request(id: u64, target: &str, arg: impl Into<Value>) -> pb::Request {
    pb::Request {
        id,
        target: target.to_owned(),
        arg: Some(arg.into().into_proto()),
        from: String::new(),
        deadline_ms: 0,
        traceparent: String::new(),
    }
}

/// The typed error a raw `Error` frame carries.
pub(crate) fn typed(error: pb::Error) -> IkcError {
    IkcError::from_proto(error)
}

/// A memory transport whose read side the test can make fail.
#[derive(Debug)]
pub(crate) struct FaultyTransport {
    inner: MemoryTransport,
    faults: fmpsc::UnboundedReceiver<io::Error>,
}

/// Wraps `inner`; each error sent on the returned sender is read by the
/// channel as a transport error.
pub(crate) fn faulty(
    inner: MemoryTransport,
) -> (FaultyTransport, fmpsc::UnboundedSender<io::Error>) {
    let (tx, faults) = fmpsc::unbounded();
    (FaultyTransport { inner, faults }, tx)
}

impl Stream for FaultyTransport {
    type Item = Result<pb::Frame, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(Some(error)) = self.faults.poll_next_unpin(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl Sink<pb::Frame> for FaultyTransport {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_ready_unpin(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: pb::Frame) -> Result<(), io::Error> {
        self.inner.start_send_unpin(frame)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_flush_unpin(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_close_unpin(cx)
    }
}

/// A memory transport whose reads the test holds back: frames the peer
/// sent are not seen until the test releases them, after a write failed.
/// It plays the race of a peer that answers, says `GoAway` and closes
/// while a new call of ours goes out: the write fails before the
/// runtime's reactor has told the reader that data arrived.
#[derive(Debug)]
pub(crate) struct LateReads {
    inner: MemoryTransport,
    hold: Arc<Hold>,
}

/// The switch of a [`LateReads`] transport.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    held: std::sync::atomic::AtomicBool,
    reader: futures::task::AtomicWaker,
    write_failed: tokio::sync::Notify,
}

impl Hold {
    /// Holds the reads back from now on.
    pub(crate) fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// Completes once a write failed.
    pub(crate) async fn write_failed(&self) {
        self.write_failed.notified().await;
    }

    /// Lets the reader see what arrived.
    pub(crate) fn release(&self) {
        self.held.store(false, Ordering::Release);
        self.reader.wake();
    }
}

/// Wraps `inner`; its reads wait while the returned switch holds them.
pub(crate) fn late_reads(inner: MemoryTransport) -> (LateReads, Arc<Hold>) {
    let hold = Arc::new(Hold::default());
    let transport = LateReads {
        inner,
        hold: Arc::clone(&hold),
    };
    (transport, hold)
}

impl LateReads {
    fn failed<T>(&self, result: Result<T, io::Error>) -> Result<T, io::Error> {
        if result.is_err() {
            self.hold.write_failed.notify_one();
        }
        result
    }
}

impl Stream for LateReads {
    type Item = Result<pb::Frame, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.hold.held.load(Ordering::Acquire) {
            self.hold.reader.register(cx.waker());
            if self.hold.held.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl Sink<pb::Frame> for LateReads {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        match self.inner.poll_ready_unpin(cx) {
            Poll::Ready(result) => Poll::Ready(self.failed(result)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn start_send(mut self: Pin<&mut Self>, frame: pb::Frame) -> Result<(), io::Error> {
        let result = self.inner.start_send_unpin(frame);
        self.failed(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        match self.inner.poll_flush_unpin(cx) {
            Poll::Ready(result) => Poll::Ready(self.failed(result)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_close_unpin(cx)
    }
}
