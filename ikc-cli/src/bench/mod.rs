//! A closed-loop load generator for ikc servers: the engine of `ikc bench`.
//!
//! [`run`] opens `conns` connections (one [`Client`] each) and keeps
//! `inflight` calls outstanding on every one: each answer is checked against
//! the payload sent, and the slot calls again at once. Answers that arrive
//! during the warm-up are not counted; those that arrive during the next
//! `secs` are, with their latency (send to answer) in a histogram. No call
//! starts after the window.
//!
//! ```no_run
//! use std::time::Duration;
//! use ikc_cli::bench::{BenchOptions, run};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = BenchOptions::new("127.0.0.1:6030");
//! options.conns = 4;
//! options.inflight = 32;
//! options.secs = Duration::from_secs(5);
//! let report = run(options).await?;
//! println!("{}", report.summary_line());
//! # Ok(())
//! # }
//! ```

mod report;
mod slots;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ikc::core::Value;
use ikc::server::Client;
use ikc::server::client::ClientBuilder;
use indicatif::{ProgressBar, ProgressStyle};

pub use self::report::BenchReport;
use self::report::Recorder;

/// Default event called: the demo session's `echo/say`.
pub const DEFAULT_TARGET: &str = "echo/say";

/// Default measured time: 5 seconds.
pub const DEFAULT_SECS: Duration = Duration::from_secs(5);

/// Default warm-up before measuring: 0.5 seconds.
pub const DEFAULT_WARMUP: Duration = Duration::from_millis(500);

/// Default payload: 64 bytes.
pub const DEFAULT_PAYLOAD: usize = 64;

/// How long one call may take before it counts as an error: 10 seconds.
/// It also bounds how long a run waits after its window for the last answers.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many answers a slot records at a time.
const RECORD_BATCH: usize = 16;

/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// What to measure; see the [module docs](self).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Server address: `host:port` or `unix:PATH`; several, comma-separated,
    /// spread the connections over them in turn.
    pub addr: String,
    /// The event to call. Default: [`DEFAULT_TARGET`].
    pub target: String,
    /// Connections, one client each. Default: 1.
    pub conns: usize,
    /// Calls outstanding on each connection. Default: 1.
    pub inflight: usize,
    /// Calls sent at once with [`Client::call_many`]; `inflight` must be
    /// a multiple of it, and each connection keeps `inflight / batch`
    /// batches going, a batch sent again once all its answers are in.
    /// Default: 1, every call on its own ([`Client::call`]).
    pub batch: usize,
    /// Bytes in each call's [`Value::Bytes`] argument. Default:
    /// [`DEFAULT_PAYLOAD`] (64).
    pub payload: usize,
    /// The measured window. Default: [`DEFAULT_SECS`] (5 s).
    pub secs: Duration,
    /// Load before the window, not counted. Default: [`DEFAULT_WARMUP`] (0.5 s).
    pub warmup: Duration,
    /// Draw a progress bar on stderr when it is a terminal. Default: on.
    pub progress: bool,
    /// How each connection is made: its secret, TLS roots, connect
    /// timeout... (`ikc bench` builds it as `ikc call` does). The run sets
    /// its call timeout to [`CALL_TIMEOUT`]. Leave its kernel and name
    /// unset: each connection makes its own kernel, and a server refuses a
    /// second kernel of a name already connected. Default:
    /// [`Client::builder`].
    pub client: ClientBuilder,
}

impl BenchOptions {
    /// Options with the defaults, for the server at `addr`.
    #[must_use]
    pub fn new(addr: impl Into<String>) -> Self {
        BenchOptions {
            addr: addr.into(),
            target: DEFAULT_TARGET.to_owned(),
            conns: 1,
            inflight: 1,
            batch: 1,
            payload: DEFAULT_PAYLOAD,
            secs: DEFAULT_SECS,
            warmup: DEFAULT_WARMUP,
            progress: true,
            client: Client::builder(),
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        if self.conns == 0 || self.inflight == 0 {
            return Err(BenchError::Options(
                "conns and inflight must be at least 1".to_owned(),
            ));
        }
        if self.batch == 0 || self.inflight % self.batch != 0 {
            return Err(BenchError::Options(format!(
                "inflight ({}) must be a multiple of batch ({})",
                self.inflight, self.batch
            )));
        }
        if self.secs.is_zero() {
            return Err(BenchError::Options("secs must be more than 0".to_owned()));
        }
        Ok(())
    }

    /// The payload every call carries: `payload` bytes in a recognisable
    /// pattern (the peers' pattern, so a mismatch is easy to spot).
    #[must_use]
    pub fn payload_bytes(&self) -> Bytes {
        // Truncation to u8 is the pattern.
        #[allow(clippy::cast_possible_truncation)]
        let payload: Vec<u8> = (0..self.payload).map(|i| (i * 31 + 7) as u8).collect();
        // One buffer for the run, never freed: every call sends a clone,
        // and a static `Bytes` is cloned and dropped without the atomic
        // count a shared one keeps (two locked instructions per call).
        Bytes::from_static(payload.leak())
    }
}

/// Parses seconds given as a decimal number (`5`, `0.5`) for a command-line
/// flag.
///
/// # Errors
///
/// When the text is not a finite, non-negative number of seconds.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a usable duration"))
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options make no run.
    #[error("invalid options: {0}")]
    Options(String),
    /// A connection could not be opened.
    #[error("cannot open the benchmark's connections to {addr}")]
    Connect {
        /// The server address.
        addr: String,
        /// What failed.
        #[source]
        source: ikc::server::Error,
    },
}

/// The time frame of one run: load starts at `start`, answers that arrive
/// in `[measure_start, end)` are counted, and no call starts at or after
/// `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the run began (connections are opened inside the warm-up).
    pub start: Instant,
    /// When counting begins.
    pub measure_start: Instant,
    /// When counting ends.
    pub end: Instant,
}

impl Window {
    /// The window of a run with `options` that starts now.
    #[must_use]
    pub fn starting_now(options: &BenchOptions) -> Self {
        let start = Instant::now();
        let measure_start = start + options.warmup;
        Window {
            start,
            measure_start,
            end: measure_start + options.secs,
        }
    }

    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_start && at < self.end
    }
}

/// Runs a benchmark with `options` and reports what it measured; see the
/// [module docs](self).
///
/// # Errors
///
/// [`BenchError::Options`] for options that make no run,
/// [`BenchError::Connect`] when a connection cannot be opened. Failed calls
/// do not end the run: they are counted in [`BenchReport::errors`].
pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let window = Window::starting_now(&options);
    run_in(options, window).await
}

/// [`run`] in a window fixed by the caller, who may want to sample
/// something (CPU time) at its edges.
///
/// # Errors
///
/// As [`run`].
pub async fn run_in(options: BenchOptions, window: Window) -> Result<BenchReport, BenchError> {
    options.validate()?;
    // A list of servers (`a,b,c`): the connections go round them in turn.
    let addrs: Vec<&str> = options.addr.split(',').map(str::trim).collect();
    let connect = (0..options.conns).map(|n| {
        let addr = addrs[n % addrs.len()];
        let connect = options
            .client
            .clone()
            .call_timeout(Some(CALL_TIMEOUT))
            .connect(addr);
        async move {
            connect.await.map_err(|source| BenchError::Connect {
                addr: addr.to_owned(),
                source,
            })
        }
    });
    let clients = futures::future::try_join_all(connect).await?;

    let done =
        (options.progress && std::io::stderr().is_terminal()).then(|| Arc::new(AtomicU64::new(0)));
    let progress = done
        .as_ref()
        .map(|done| spawn_progress(window, Arc::clone(done)));

    let payload = options.payload_bytes();
    let target: Arc<str> = Arc::from(options.target.as_str());
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let load = Load {
                client: client.clone(),
                target: Arc::clone(&target),
                payload: payload.clone(),
                inflight: options.inflight,
                batch: options.batch,
                window,
                done: done.clone(),
            };
            tokio::spawn(load.run())
        })
        .collect();

    let mut total = Recorder::new();
    for task in tasks {
        match task.await {
            Ok(recorder) => total.merge(&recorder),
            Err(error) => total.error(&format!("connection task failed: {error}")),
        }
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    for client in &clients {
        client.close();
    }
    Ok(total.into_report(&options))
}

/// The load on one connection.
struct Load {
    client: Client,
    target: Arc<str>,
    payload: Bytes,
    inflight: usize,
    batch: usize,
    window: Window,
    done: Option<Arc<AtomicU64>>,
}

impl Load {
    /// `inflight` slots, each calling again as soon as its answer came: a
    /// slot is one future for the whole run, not one per call, and the
    /// slots are polled in this task, each as its own answer wakes it
    /// ([`slots`]). The slots of
    /// a connection share one recorder: a latency histogram is a few hundred
    /// kilobytes, and one per slot would scatter the recording of every
    /// answer over more memory than the caches hold.
    async fn run(self) -> Recorder {
        let recorder = Mutex::new(Recorder::new());
        if self.batch > 1 {
            slots::run_all((0..self.inflight / self.batch).map(|_| self.batch_slot(&recorder)))
                .await;
        } else {
            slots::run_all((0..self.inflight).map(|_| self.slot(&recorder))).await;
        }
        recorder
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn slot(&self, recorder: &Mutex<Recorder>) {
        // Good answers are recorded a batch at a time: a lock per answer
        // is a measurable part of a small call's cost.
        let mut answers = Vec::with_capacity(RECORD_BATCH);
        let record = |answers: &mut Vec<(Instant, Instant)>| {
            // The slots run in one task, one at a time: the lock is never
            // contended, and it is let go before the next call.
            let mut recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
            for (sent, answered) in answers.drain(..) {
                recorder.answer(&self.window, sent, answered);
            }
            recorder
        };
        // One clock read per call: a call is sent right after the answer
        // before it is recorded, so that answer's time is its start (the
        // latency counts the slot's own bookkeeping, well under a
        // microsecond, and a clock read is a measurable part of a small
        // call on a VM).
        let mut sent = Instant::now();
        loop {
            let answer = self
                .client
                .call(&self.target, Value::Bytes(self.payload.clone()))
                .await;
            let answered = Instant::now();
            if let Some(done) = &self.done {
                done.fetch_add(1, Ordering::Relaxed);
            }
            let dead = match answer {
                Ok(Value::Bytes(bytes)) if bytes == self.payload => {
                    answers.push((sent, answered));
                    if answers.len() == RECORD_BATCH {
                        drop(record(&mut answers));
                    }
                    false
                }
                Ok(other) => {
                    answers.push((sent, answered));
                    record(&mut answers).mismatch(&other);
                    false
                }
                Err(error) => {
                    record(&mut answers).error(&error.to_string());
                    // A dead connection answers at once: calling again
                    // would only spin.
                    self.client.is_closed()
                }
            };
            if dead || answered >= self.window.end {
                break;
            }
            sent = answered;
        }
        drop(record(&mut answers));
    }

    /// `batch` calls at a time with [`Client::call_many`], sent again once
    /// all their answers are in; every answer of a batch counts from the
    /// batch's start to the moment the last came.
    async fn batch_slot(&self, recorder: &Mutex<Recorder>) {
        let mut sent = Instant::now();
        loop {
            let args = std::iter::repeat_n(Value::Bytes(self.payload.clone()), self.batch);
            let answers = self.client.call_many(&self.target, args).await;
            let answered = Instant::now();
            if let Some(done) = &self.done {
                done.fetch_add(answers.len() as u64, Ordering::Relaxed);
            }
            let mut dead = false;
            let mut recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
            for answer in answers {
                match answer {
                    Ok(Value::Bytes(bytes)) if bytes == self.payload => {
                        recorder.answer(&self.window, sent, answered);
                    }
                    Ok(other) => {
                        recorder.answer(&self.window, sent, answered);
                        recorder.mismatch(&other);
                    }
                    Err(error) => {
                        recorder.error(&error.to_string());
                        dead |= self.client.is_closed();
                    }
                }
            }
            drop(recorder);
            if dead || answered >= self.window.end {
                break;
            }
            sent = answered;
        }
    }
}

/// Draws a progress bar on stderr until aborted.
fn spawn_progress(window: Window, done: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let total = window.end.duration_since(window.start);
    let bar = ProgressBar::new(u64::try_from(total.as_millis()).unwrap_or(u64::MAX));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>8} [{bar:40}] {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_TICK);
        let mut last = (Instant::now(), 0);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let count = done.load(Ordering::Relaxed);
            let rate = rate(count - last.1, now.duration_since(last.0));
            last = (now, count);
            bar.set_prefix(if now < window.measure_start {
                "warm-up"
            } else {
                "measure"
            });
            bar.set_position(
                u64::try_from(now.duration_since(window.start).as_millis()).unwrap_or(u64::MAX),
            );
            bar.set_message(format!("{rate:.0} calls/s"));
            if now >= window.end {
                bar.finish_and_clear();
                return;
            }
        }
    })
}

#[allow(clippy::cast_precision_loss)] // a rate for display
fn rate(count: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikc::{Kernel, Server};

    async fn echo_server() -> ikc::server::ServerHandle {
        let kernel = Kernel::new("Server");
        crate::demo::publish_echo(&kernel).expect("demo names are valid");
        Server::builder()
            .kernel(kernel)
            .bind("127.0.0.1:0".parse().expect("an address"))
            .serve()
            .await
            .expect("a loopback port")
    }

    fn quick(addr: String) -> BenchOptions {
        let mut options = BenchOptions::new(addr);
        options.conns = 2;
        options.inflight = 4;
        options.secs = Duration::from_millis(300);
        options.warmup = Duration::from_millis(100);
        options.progress = false;
        options
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_run_measures_calls_and_counts_no_problem() {
        let server = echo_server().await;
        let report = run(quick(server.local_addr().to_string()))
            .await
            .expect("a run");
        assert!(report.is_success(), "{report:?}");
        assert!(report.measured > 0 && report.answered >= report.measured);
        assert_eq!(report.latency.len(), report.measured);
        let line = report.summary_line();
        assert!(
            line.starts_with("rps=") && line.ends_with("errors=0 mismatches=0"),
            "{line}"
        );
        assert_eq!(report.to_json()["errors"], 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batched_run_measures_every_call_of_its_batches() {
        let server = echo_server().await;
        let mut options = quick(server.local_addr().to_string());
        options.batch = 2;
        let report = run(options).await.expect("a run");
        assert!(report.is_success(), "{report:?}");
        assert!(report.measured > 0 && report.answered >= report.measured);
        // Whole batches: two answers per batch, counted in one window.
        assert_eq!(report.answered % 2, 0);
        assert_eq!(report.latency.len(), report.measured);
        assert_eq!(report.to_json()["batch"], 2);
    }

    #[tokio::test]
    async fn a_batch_that_does_not_divide_the_calls_in_flight_is_refused() {
        let mut options = quick("127.0.0.1:1".to_owned());
        options.batch = 3;
        let error = run(options).await.expect_err("refused before connecting");
        assert!(
            matches!(&error, BenchError::Options(text) if text.contains("multiple of batch")),
            "{error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_calls_are_counted_as_errors() {
        let server = echo_server().await;
        let mut options = quick(server.local_addr().to_string());
        // `upper` refuses bytes.
        options.target = "echo/upper".to_owned();
        let report = run(options).await.expect("a run");
        assert!(!report.is_success());
        assert!(report.errors > 0);
        assert!(
            report
                .first_problem
                .as_deref()
                .is_some_and(|p| p.contains("BadRequest")),
            "{:?}",
            report.first_problem
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_a_connect_error() {
        // Bind and drop a listener: its port is then very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let error = run(quick(format!("127.0.0.1:{port}"))).await.unwrap_err();
        assert!(matches!(error, BenchError::Connect { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn zero_connections_are_refused_before_connecting() {
        let mut options = quick("127.0.0.1:1".to_owned());
        options.conns = 0;
        assert!(matches!(run(options).await, Err(BenchError::Options(_))));
    }

    #[test]
    fn seconds_parse_as_decimal_numbers() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("5"), Ok(Duration::from_secs(5)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn payload_follows_the_peers_pattern() {
        let mut options = BenchOptions::new("x");
        options.payload = 3;
        assert_eq!(&options.payload_bytes()[..], &[7, 38, 69]);
    }
}
