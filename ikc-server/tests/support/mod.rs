//! Helpers shared by the ikc-server integration tests: a server kernel with
//! an echo session and a slow session the test releases, bounded waits, and
//! raw handshake bytes for peers that misbehave on purpose.
//!
//! Every socket is bound to 127.0.0.1 with port 0, or is a Unix socket in a
//! temporary directory.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ikc_core::{BoxError, IkcError, Kernel, Monitor, MonitorEvent, Request, Specifier, Value};
use ikc_proto::{HandshakeCodec, Preface, pb};
use ikc_server::{ServerHandle, ShutdownReport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};
use tower::service_fn;
use tracing_subscriber::fmt::MakeWriter;

/// The bound on every wait in the tests. Generous: a passing wait takes
/// milliseconds, and a failing one must not hang the suite.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// How long a test watches for something that must *not* happen.
pub(crate) const QUIET: Duration = Duration::from_millis(150);

/// Loopback with port 0: the kernel picks a free port.
pub(crate) const LOOPBACK: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Awaits `fut` for at most [`WAIT`], failing the test with `what` otherwise.
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Asserts that `fut` is still pending after [`QUIET`]: a wait on the clock
/// only to see that something has *not* happened, never to order events.
pub(crate) async fn still_pending<F: Future + Unpin>(what: &str, fut: &mut F)
where
    F::Output: std::fmt::Debug,
{
    if let Ok(output) = tokio::time::timeout(QUIET, fut).await {
        panic!("{what} should still be pending, but ended with {output:?}");
    }
}

/// Parses a specifier the test knows to be valid.
pub(crate) fn spec(text: &str) -> Specifier {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// The error a call that must fail ended with.
#[track_caller]
pub(crate) fn call_error(result: Result<Value, IkcError>) -> IkcError {
    match result {
        Ok(value) => panic!("the call should have failed, but answered {value:?}"),
        Err(error) => error,
    }
}

/// Shuts `server` down and waits (bounded) for its report.
pub(crate) async fn shut_down(server: &ServerHandle) -> ShutdownReport {
    server.shutdown();
    within("the server to stop", server.stopped()).await
}

/// Reads monitor events until one matches `wanted`; the events before it
/// are returned too, oldest first.
pub(crate) async fn wait_for_event(
    monitor: &mut Monitor,
    wanted: impl Fn(&MonitorEvent) -> bool,
) -> Vec<MonitorEvent> {
    within("a monitor event", async {
        let mut seen = Vec::new();
        loop {
            let event = monitor
                .next_event()
                .await
                .expect("the kernel lives as long as the test");
            let done = wanted(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    })
    .await
}

/// Publishes `echo` on `kernel`: `say` answers its argument, `upper`
/// answers a string argument in upper case.
pub(crate) fn publish_echo(kernel: &Kernel) {
    kernel
        .publish(
            "echo",
            ["say", "upper"],
            service_fn(|req: Request| async move {
                match req.event() {
                    "upper" => {
                        let text = req.arg().as_str().ok_or("upper needs a string")?;
                        Ok::<_, BoxError>(Value::from(text.to_uppercase()))
                    }
                    _ => Ok(req.into_arg()),
                }
            }),
        )
        .expect("echo names are valid");
}

/// Controls the `slow` session: sees each request start, and lets requests
/// finish one permit at a time.
#[derive(Debug)]
pub(crate) struct Gate {
    started: mpsc::UnboundedReceiver<Value>,
    release: Arc<Semaphore>,
}

impl Gate {
    /// Waits (bounded) until a `slow` request has started; its argument.
    pub(crate) async fn started(&mut self) -> Value {
        within("a slow request to start", self.started.recv())
            .await
            .expect("the slow session lives as long as the kernel")
    }

    /// Lets `n` slow requests answer.
    pub(crate) fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// Publishes `slow` on `kernel`: `wait` reports that it started, then
/// answers its argument once the returned [`Gate`] releases it (never, if
/// the gate never does).
pub(crate) fn publish_slow(kernel: &Kernel) -> Gate {
    let (started_tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let permits = Arc::clone(&release);
    kernel
        .publish(
            "slow",
            ["wait"],
            service_fn(move |req: Request| {
                let started = started_tx.clone();
                let permits = Arc::clone(&permits);
                async move {
                    let arg = req.into_arg();
                    let _ = started.send(arg.clone());
                    permits.acquire().await?.forget();
                    Ok::<_, BoxError>(arg)
                }
            }),
        )
        .expect("slow names are valid");
    Gate { started, release }
}

/// Publishes `record` on `kernel`: `note` sends its argument to the
/// returned receiver and answers null.
pub(crate) fn publish_recorder(kernel: &Kernel) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    kernel
        .publish(
            "record",
            ["note"],
            service_fn(move |req: Request| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(req.into_arg());
                    Ok::<_, BoxError>(Value::Null)
                }
            }),
        )
        .expect("record names are valid");
    rx
}

/// A server kernel named `name` publishing `echo` and `slow`.
pub(crate) fn server_kernel(name: &str) -> (Kernel, Gate) {
    let kernel = Kernel::new(name);
    publish_echo(&kernel);
    let gate = publish_slow(&kernel);
    (kernel, gate)
}

/// The bytes a client sends to open a handshake: the preface announcing
/// protocol `version`, then a `Hello` from kernel `name`.
pub(crate) async fn hello_bytes(version: u8, name: &str) -> Vec<u8> {
    let hello = pb::Hello {
        version: u32::from(version),
        kernel: name.to_owned(),
        pid: std::process::id(),
        ..Default::default()
    };
    let mut writer = FramedWrite::new(Vec::new(), HandshakeCodec::client());
    writer
        .send(hello.into())
        .await
        .expect("encoding into memory cannot fail");
    let mut bytes = writer.into_inner();
    // The client codec always writes the current preface; patch its version.
    assert_eq!(bytes[..Preface::LEN], Preface::CURRENT.to_bytes());
    bytes[Preface::LEN - 1] = version;
    bytes
}

/// Reads the server's answer to a handshake from a raw stream: `Welcome`,
/// `Refuse`, or `None` when the server closed the connection instead.
pub(crate) async fn read_handshake_answer<S>(stream: &mut S) -> Option<pb::handshake::Kind>
where
    S: AsyncRead + Unpin,
{
    let mut reader = FramedRead::new(stream, HandshakeCodec::client());
    within("the handshake answer", reader.next())
        .await
        .map(|answer| answer.expect("the answer decodes"))
        .and_then(|handshake| handshake.kind)
}

/// Writes `bytes` to a raw stream.
pub(crate) async fn write_raw<S>(stream: &mut S, bytes: Vec<u8>)
where
    S: AsyncWrite + Unpin,
{
    let mut writer = FramedWrite::new(stream, BytesCodec::new());
    within("a raw write", writer.send(Bytes::from(bytes)))
        .await
        .expect("the raw write succeeds");
}

/// Reads a raw stream until the peer closes it (or resets it), and returns
/// what arrived before that.
pub(crate) async fn read_until_closed<S>(stream: &mut S) -> Vec<u8>
where
    S: AsyncRead + Unpin,
{
    let mut reader = FramedRead::new(stream, BytesCodec::new());
    within("the peer to close the connection", async {
        let mut received = Vec::new();
        while let Some(Ok(chunk)) = reader.next().await {
            received.extend_from_slice(&chunk);
        }
        received
    })
    .await
}

/// Log lines a test's `tracing_subscriber::fmt` subscriber writes, kept in
/// memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub(crate) fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}
