//! The babysitter's rules, as a pure state machine: which worker is a rogue,
//! and which signal it gets next.
//!
//! A worker is a rogue when it spins: the CPU time it used over the last
//! full CPU window passes the CPU limit ([`CpuSamples`]; IKC 0.13 likewise
//! counted a worker only while it ran and forgave it once it slept, so a
//! busy worker that also waits is never one). It is a rogue, too, when its
//! heartbeat stops advancing (hung: its runtime no longer runs), or when it
//! never reports ready (a start-up that hangs). A rogue gets SIGINT, then
//! SIGTERM, then SIGKILL, one step per `2 x babysit`; the supervisor
//! replaces it once it is reaped. A worker that used its connection budget
//! keeps its connections until the recycle deadline, then is told to drain
//! (SIGTERM: its peers get `GoAway`). A worker told to drain that is still
//! alive after the grace period gets SIGKILL.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Why a worker is a rogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RogueReason {
    /// Over the CPU limit within one CPU window (spinning).
    Cpu,
    /// The heartbeat stopped advancing.
    Hung,
    /// Never reported ready.
    Boot,
}

impl fmt::Display for RogueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RogueReason::Cpu => "cpu limit",
            RogueReason::Hung => "hung",
            RogueReason::Boot => "boot timeout",
        })
    }
}

/// Where a worker is in its life, as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not ready yet.
    Booting,
    /// Ready and serving.
    Running,
    /// Used its connection budget: accepts no more, keeps its connections
    /// until the recycle deadline; a replacement takes its place.
    Recycling {
        /// When it reported it.
        since: Instant,
    },
    /// Told to finish and exit (recycling, reload, fewer workers, shutdown).
    Draining {
        /// When it was told.
        since: Instant,
        /// Whether it was killed for overstaying the grace period.
        killed: bool,
    },
    /// Being stopped as a rogue.
    Rogue {
        /// Why.
        reason: RogueReason,
        /// Signals sent so far (1 = SIGINT, 2 = SIGTERM, 3 = SIGKILL).
        step: u8,
        /// When the last one was sent.
        since: Instant,
    },
}

impl WorkerState {
    /// Whether the worker counts toward the serving workers.
    #[must_use]
    pub fn is_serving(self) -> bool {
        matches!(self, WorkerState::Booting | WorkerState::Running)
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerState::Booting => f.write_str("booting"),
            WorkerState::Running => f.write_str("running"),
            WorkerState::Recycling { .. } => f.write_str("recycling"),
            WorkerState::Draining { killed: false, .. } => f.write_str("draining"),
            WorkerState::Draining { killed: true, .. } => f.write_str("killed after grace period"),
            WorkerState::Rogue { reason, step, .. } => {
                write!(f, "rogue ({reason}, {step} signals sent)")
            }
        }
    }
}

/// The babysitter's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a worker may use within one CPU window.
    pub cpu: Duration,
    /// Heartbeat age after which a running worker is hung.
    pub hang: Duration,
    /// Time to report ready after start.
    pub boot: Duration,
    /// Time between escalation steps (`2 x babysit`).
    pub step: Duration,
    /// Time a draining worker has before SIGKILL.
    pub grace: Duration,
    /// Time a recycling worker keeps its connections before it is told to
    /// drain.
    pub recycle: Duration,
}

/// What the supervisor knows about a worker at a babysit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// When it was forked.
    pub started: Instant,
    /// When its heartbeat last advanced (or it started).
    pub last_beat: Instant,
    /// The CPU time it used over its last full CPU window
    /// ([`CpuSamples::used_in_window`]); `None` while it is too young to
    /// have one, or when its CPU time cannot be read: then the CPU rule does
    /// not judge it.
    pub cpu_in_window: Option<Duration>,
}

/// A worker's CPU time, sampled at each babysit check, back to the newest
/// sample that is at least one CPU window old: what the CPU rule judges.
///
/// The CPU used over the window is the difference between the newest sample
/// and that oldest one, scaled to the window's length by the time between
/// them. Samples need not be evenly spaced: after a gap (a suspended
/// supervisor, a sample that could not be read) the use is averaged over
/// the longer span, neither inflated nor hidden, and the samples taken
/// after the gap judge the worker on their own once they span a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSamples {
    /// (when, lifetime CPU time then), oldest first.
    samples: VecDeque<(Instant, Duration)>,
}

impl CpuSamples {
    /// No samples yet.
    #[must_use]
    pub fn new() -> Self {
        CpuSamples::default()
    }

    /// The lifetime CPU time read last, if any was.
    #[must_use]
    pub fn latest(&self) -> Option<Duration> {
        self.samples.back().map(|(_, cpu)| *cpu)
    }

    /// Adds the lifetime CPU time `cpu` read at `at`, and forgets samples
    /// older than needed to span `window`.
    pub fn record(&mut self, at: Instant, cpu: Duration, window: Duration) {
        self.samples.push_back((at, cpu));
        // Keep the newest sample that is a full window old as the base.
        while self
            .samples
            .get(1)
            .is_some_and(|(then, _)| at.saturating_duration_since(*then) >= window)
        {
            self.samples.pop_front();
        }
    }

    /// The CPU time used over the last `window`, or `None` when the samples
    /// do not span a full window yet.
    #[must_use]
    pub fn used_in_window(&self, window: Duration) -> Option<Duration> {
        let (first, base) = *self.samples.front()?;
        let (last, cpu) = *self.samples.back()?;
        let span = last.saturating_duration_since(first);
        if span < window || span.is_zero() {
            return None;
        }
        let used = cpu.saturating_sub(base).as_nanos();
        let scaled = used * window.as_nanos() / span.as_nanos();
        Some(Duration::from_nanos(
            u64::try_from(scaled).unwrap_or(u64::MAX),
        ))
    }
}

/// One babysit check: updates `state` and returns the signal to send now.
pub fn check(
    state: &mut WorkerState,
    facts: Facts,
    now: Instant,
    limits: &Limits,
) -> Option<Signal> {
    let rogue = |reason| {
        Some(WorkerState::Rogue {
            reason,
            step: 1,
            since: now,
        })
    };
    let next = match *state {
        WorkerState::Booting | WorkerState::Running
            if facts.cpu_in_window.is_some_and(|used| used > limits.cpu) =>
        {
            rogue(RogueReason::Cpu)
        }
        WorkerState::Running if now.saturating_duration_since(facts.last_beat) > limits.hang => {
            rogue(RogueReason::Hung)
        }
        WorkerState::Booting if now.saturating_duration_since(facts.started) > limits.boot => {
            rogue(RogueReason::Boot)
        }
        WorkerState::Booting | WorkerState::Running => None,
        WorkerState::Rogue {
            reason,
            step,
            since,
        } if now.saturating_duration_since(since) >= limits.step => Some(WorkerState::Rogue {
            reason,
            step: (step + 1).min(3),
            since: now,
        }),
        WorkerState::Rogue { .. } => None,
        WorkerState::Recycling { since }
            if now.saturating_duration_since(since) > limits.recycle =>
        {
            *state = WorkerState::Draining {
                since: now,
                killed: false,
            };
            return Some(Signal::SIGTERM);
        }
        WorkerState::Recycling { .. } => None,
        WorkerState::Draining {
            since,
            killed: false,
        } if now.saturating_duration_since(since) > limits.grace => {
            *state = WorkerState::Draining {
                since,
                killed: true,
            };
            return Some(Signal::SIGKILL);
        }
        WorkerState::Draining { .. } => None,
    };
    let next = next?;
    *state = next;
    match next {
        WorkerState::Rogue { step: 1, .. } => Some(Signal::SIGINT),
        WorkerState::Rogue { step: 2, .. } => Some(Signal::SIGTERM),
        _ => Some(Signal::SIGKILL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits() -> Limits {
        Limits {
            cpu: 570 * S,
            hang: 30 * S,
            boot: 30 * S,
            step: 2 * S,
            grace: 10 * S,
            recycle: 20 * S,
        }
    }

    fn facts(t0: Instant) -> Facts {
        Facts {
            started: t0,
            last_beat: t0,
            cpu_in_window: None,
        }
    }

    #[test]
    fn healthy_worker_gets_no_signal() {
        let t0 = Instant::now();
        let mut state = WorkerState::Running;
        let mut f = facts(t0);
        f.last_beat = t0 + 100 * S;
        assert_eq!(check(&mut state, f, t0 + 110 * S, &limits()), None);
        assert_eq!(state, WorkerState::Running);
    }

    #[test]
    fn cpu_hog_escalates_int_term_kill_one_step_per_interval() {
        let t0 = Instant::now();
        let mut state = WorkerState::Running;
        let mut f = facts(t0);
        f.cpu_in_window = Some(571 * S);
        f.last_beat = t0 + 700 * S;
        let l = limits();
        assert_eq!(check(&mut state, f, t0 + 700 * S, &l), Some(Signal::SIGINT));
        assert!(matches!(
            state,
            WorkerState::Rogue {
                reason: RogueReason::Cpu,
                step: 1,
                ..
            }
        ));
        // Not yet time for the next step.
        assert_eq!(check(&mut state, f, t0 + 701 * S, &l), None);
        assert_eq!(
            check(&mut state, f, t0 + 702 * S, &l),
            Some(Signal::SIGTERM)
        );
        assert_eq!(
            check(&mut state, f, t0 + 704 * S, &l),
            Some(Signal::SIGKILL)
        );
        assert_eq!(
            check(&mut state, f, t0 + 706 * S, &l),
            Some(Signal::SIGKILL)
        );
    }

    const WINDOW: Duration = Duration::from_secs(600);

    /// Babysits a fresh worker every 5 s until `until` (seconds), its
    /// lifetime CPU given by `cpu_at(seconds)`; the first signal, if any,
    /// with when it came and the worker's lifetime CPU then.
    fn babysit_cpu(
        until: u32,
        cpu_at: impl Fn(u32) -> Duration,
    ) -> Option<(Signal, u32, Duration, WorkerState)> {
        let t0 = Instant::now();
        let mut state = WorkerState::Running;
        let mut samples = CpuSamples::new();
        for secs in (0..=until).step_by(5) {
            let now = t0 + secs * S;
            samples.record(now, cpu_at(secs), WINDOW);
            let f = Facts {
                started: t0,
                last_beat: now,
                cpu_in_window: samples.used_in_window(WINDOW),
            };
            if let Some(signal) = check(&mut state, f, now, &limits()) {
                return Some((signal, secs, cpu_at(secs), state));
            }
        }
        None
    }

    #[test]
    fn spinning_worker_is_a_cpu_rogue_after_one_full_window() {
        // One CPU second per second: the first full window is over the limit.
        let (signal, at, _, state) =
            babysit_cpu(3_600, |secs| secs * S).expect("a spinning worker is a rogue");
        assert_eq!(signal, Signal::SIGINT);
        assert_eq!(at, 600, "judged as soon as it has a full window");
        assert!(matches!(
            state,
            WorkerState::Rogue {
                reason: RogueReason::Cpu,
                ..
            }
        ));
    }

    #[test]
    fn worker_that_works_and_sleeps_is_never_a_cpu_rogue_past_the_lifetime_total() {
        // 10 s of CPU, then 10 s asleep, for ten hours: 18,000 CPU seconds
        // in all, 300 in any window.
        let cpu_at = |secs: u32| (secs / 20 * 10 + (secs % 20).min(10)) * S;
        assert!(cpu_at(36_000) > 30 * limits().cpu);
        assert_eq!(babysit_cpu(36_000, cpu_at), None);
    }

    #[test]
    fn worker_younger_than_the_window_is_not_judged() {
        let t0 = Instant::now();
        let mut samples = CpuSamples::new();
        samples.record(t0, Duration::ZERO, WINDOW);
        samples.record(t0 + 595 * S, 595 * S, WINDOW);
        assert_eq!(samples.used_in_window(WINDOW), None);
        samples.record(t0 + 600 * S, 600 * S, WINDOW);
        assert_eq!(samples.used_in_window(WINDOW), Some(600 * S));
    }

    #[test]
    fn cpu_use_across_a_sample_gap_is_scaled_to_the_window() {
        let t0 = Instant::now();
        let mut samples = CpuSamples::new();
        samples.record(t0, Duration::ZERO, WINDOW);
        samples.record(t0 + 5 * S, 5 * S, WINDOW);
        // No sample for 1,200 s, in which it used 600 s: half of one CPU.
        samples.record(t0 + 1_205 * S, 605 * S, WINDOW);
        assert_eq!(samples.used_in_window(WINDOW), Some(300 * S));
        // After the gap, the samples judge it on their own: it spins now.
        for secs in (1_210..=1_805_u32).step_by(5) {
            samples.record(t0 + secs * S, (605 + secs - 1_205) * S, WINDOW);
        }
        assert_eq!(samples.used_in_window(WINDOW), Some(600 * S));
    }

    #[test]
    fn worker_whose_cpu_time_cannot_be_read_is_not_a_cpu_rogue() {
        let t0 = Instant::now();
        let mut state = WorkerState::Running;
        let mut f = facts(t0);
        f.last_beat = t0 + 700 * S;
        assert_eq!(f.cpu_in_window, None);
        assert_eq!(check(&mut state, f, t0 + 700 * S, &limits()), None);
    }

    #[test]
    fn stale_heartbeat_marks_a_running_worker_hung() {
        let t0 = Instant::now();
        let mut state = WorkerState::Running;
        assert_eq!(check(&mut state, facts(t0), t0 + 30 * S, &limits()), None);
        assert_eq!(
            check(&mut state, facts(t0), t0 + 31 * S, &limits()),
            Some(Signal::SIGINT)
        );
        assert!(matches!(
            state,
            WorkerState::Rogue {
                reason: RogueReason::Hung,
                ..
            }
        ));
    }

    #[test]
    fn worker_that_never_reports_ready_is_a_boot_rogue() {
        let t0 = Instant::now();
        let mut state = WorkerState::Booting;
        assert_eq!(
            check(&mut state, facts(t0), t0 + 31 * S, &limits()),
            Some(Signal::SIGINT)
        );
        assert!(matches!(
            state,
            WorkerState::Rogue {
                reason: RogueReason::Boot,
                ..
            }
        ));
    }

    #[test]
    fn draining_worker_is_killed_once_after_the_grace_period() {
        let t0 = Instant::now();
        let mut state = WorkerState::Draining {
            since: t0,
            killed: false,
        };
        assert_eq!(check(&mut state, facts(t0), t0 + 10 * S, &limits()), None);
        assert_eq!(
            check(&mut state, facts(t0), t0 + 11 * S, &limits()),
            Some(Signal::SIGKILL)
        );
        assert_eq!(check(&mut state, facts(t0), t0 + 12 * S, &limits()), None);
    }

    #[test]
    fn recycling_worker_is_told_to_drain_at_the_deadline_then_killed_after_the_grace() {
        let t0 = Instant::now();
        let mut state = WorkerState::Recycling { since: t0 };
        assert!(!state.is_serving(), "a replacement takes its place");
        assert_eq!(check(&mut state, facts(t0), t0 + 20 * S, &limits()), None);
        assert_eq!(
            check(&mut state, facts(t0), t0 + 21 * S, &limits()),
            Some(Signal::SIGTERM)
        );
        assert_eq!(
            state,
            WorkerState::Draining {
                since: t0 + 21 * S,
                killed: false
            }
        );
        assert_eq!(check(&mut state, facts(t0), t0 + 30 * S, &limits()), None);
        assert_eq!(
            check(&mut state, facts(t0), t0 + 32 * S, &limits()),
            Some(Signal::SIGKILL)
        );
    }

    #[test]
    fn only_booting_and_running_workers_serve() {
        let t0 = Instant::now();
        assert!(WorkerState::Booting.is_serving());
        assert!(WorkerState::Running.is_serving());
        assert!(
            !WorkerState::Draining {
                since: t0,
                killed: false
            }
            .is_serving()
        );
        let rogue = WorkerState::Rogue {
            reason: RogueReason::Hung,
            step: 1,
            since: t0,
        };
        assert!(!rogue.is_serving());
    }
}
