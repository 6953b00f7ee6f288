//! The babysitter's rules, as a pure state machine: which worker is a rogue,
//! and which signal it gets next.
//!
//! A worker is a rogue when its lifetime CPU time passes the limit (IKC
//! 0.13's rule), when its heartbeat stops advancing (hung: its runtime no
//! longer runs), or when it never reports ready (a start-up that hangs). A
//! rogue gets SIGINT, then SIGTERM, then SIGKILL, one step per
//! `2 x babysit`; the supervisor replaces it once it is reaped. A worker
//! that used its connection budget keeps its connections until the recycle
//! deadline, then is told to drain (SIGTERM: its peers get `GoAway`). A
//! worker told to drain that is still alive after the grace period gets
//! SIGKILL.

use std::fmt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Why a worker is a rogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RogueReason {
    /// Lifetime CPU time over the limit.
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
    /// Lifetime CPU time after which a worker is a rogue.
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
    /// Its lifetime CPU time.
    pub cpu: Duration,
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
        WorkerState::Booting | WorkerState::Running if facts.cpu > limits.cpu => {
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
            cpu: 600 * S,
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
            cpu: Duration::ZERO,
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
        f.cpu = 601 * S;
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
