//! What a benchmark run measured: counts and a latency histogram.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ikc::core::Value;

use super::{BenchOptions, Window};

/// Lowest and highest latency the histogram holds, in nanoseconds (1 ns to
/// 60 s), with 3 significant figures.
const HISTOGRAM_LOW_NS: u64 = 1;
const HISTOGRAM_HIGH_NS: u64 = 60_000_000_000;
const HISTOGRAM_SIGFIG: u8 = 3;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HISTOGRAM_LOW_NS, HISTOGRAM_HIGH_NS, HISTOGRAM_SIGFIG)
        .expect("the bounds are valid")
}

/// Per-connection counts, merged at the end (no locks while measuring).
#[derive(Debug)]
pub(super) struct Recorder {
    latency: Histogram<u64>,
    measured: u64,
    answered: u64,
    errors: u64,
    mismatches: u64,
    first_problem: Option<String>,
}

impl Recorder {
    pub(super) fn new() -> Self {
        Recorder {
            latency: histogram(),
            measured: 0,
            answered: 0,
            errors: 0,
            mismatches: 0,
            first_problem: None,
        }
    }

    /// An answer came at `answered` to a call sent at `sent`.
    pub(super) fn answer(&mut self, window: &Window, sent: Instant, answered: Instant) {
        self.answered += 1;
        if window.counts(answered) {
            let nanos = answered.saturating_duration_since(sent).as_nanos();
            self.latency
                .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX).max(1));
            self.measured += 1;
        }
    }

    pub(super) fn mismatch(&mut self, answer: &Value) {
        self.mismatches += 1;
        self.first_problem.get_or_insert_with(|| {
            format!(
                "answer differs from the payload: a {} value",
                answer.type_name()
            )
        });
    }

    pub(super) fn error(&mut self, message: &str) {
        self.errors += 1;
        self.first_problem
            .get_or_insert_with(|| format!("call failed: {message}"));
    }

    pub(super) fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.measured += other.measured;
        self.answered += other.answered;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&other.first_problem);
        }
    }

    pub(super) fn into_report(self, options: &BenchOptions) -> BenchReport {
        BenchReport {
            conns: options.conns,
            inflight: options.inflight,
            batch: options.batch,
            payload: options.payload,
            secs: options.secs,
            measured: self.measured,
            answered: self.answered,
            errors: self.errors,
            mismatches: self.mismatches,
            first_problem: self.first_problem,
            latency: self.latency,
        }
    }
}

/// The outcome of a [`run`](super::run).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BenchReport {
    /// Connections used.
    pub conns: usize,
    /// Calls outstanding on each connection.
    pub inflight: usize,
    /// Calls sent at once ([`BenchOptions::batch`](super::BenchOptions::batch)).
    pub batch: usize,
    /// Payload bytes per call.
    pub payload: usize,
    /// The measured window.
    pub secs: Duration,
    /// Answers that arrived in the window.
    pub measured: u64,
    /// Answers over the whole run, warm-up and the tail after the window
    /// included.
    pub answered: u64,
    /// Calls that ended with an error.
    pub errors: u64,
    /// Answers that were not the payload sent.
    pub mismatches: u64,
    /// The first error or mismatch, described.
    pub first_problem: Option<String>,
    /// Latency (send to answer) of the measured answers, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl BenchReport {
    /// Answers per second in the window.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // a rate
    pub fn rps(&self) -> f64 {
        self.measured as f64 / self.secs.as_secs_f64()
    }

    /// The latency at `quantile` (0.5 = median), in microseconds.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // microseconds for display
    pub fn latency_us(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The highest latency, in microseconds.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // microseconds for display
    pub fn max_us(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Whether the run measured something and every call was answered
    /// with its payload.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.measured > 0 && self.errors == 0 && self.mismatches == 0
    }

    /// `rps=... p50_us=... p90_us=... p99_us=... max_us=... errors=... mismatches=...`
    #[must_use]
    pub fn summary_line(&self) -> String {
        let mut line = format!("rps={:.1}", self.rps());
        for (name, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            let _ = write!(line, " {name}_us={:.1}", self.latency_us(quantile));
        }
        let _ = write!(
            line,
            " max_us={:.1} errors={} mismatches={}",
            self.max_us(),
            self.errors,
            self.mismatches
        );
        line
    }

    /// The report as one JSON object.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "conns": self.conns,
            "inflight": self.inflight,
            "batch": self.batch,
            "payload": self.payload,
            "secs": self.secs.as_secs_f64(),
            "measured": self.measured,
            "answered": self.answered,
            "rps": self.rps(),
            "p50_us": self.latency_us(0.5),
            "p90_us": self.latency_us(0.9),
            "p99_us": self.latency_us(0.99),
            "p999_us": self.latency_us(0.999),
            "max_us": self.max_us(),
            "errors": self.errors,
            "mismatches": self.mismatches,
            "first_problem": self.first_problem,
        })
    }
}
