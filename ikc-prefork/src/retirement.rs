//! Why a worker ended: the [`ExitCause`] its wait status gives, and the
//! supervisor's reading of it, a [`Retirement`], from what it knew of the
//! worker. Pure functions on values, so every decision is tested without a
//! fork.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::babysit::{RogueReason, WorkerState};

/// A worker that dies sooner than this after starting, without having
/// reported ready, counts as a crash at start-up.
pub(crate) const MIN_UPTIME: Duration = Duration::from_secs(1);

/// How a worker process ended, from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(Signal),
    /// It was gone before a wait saw it end (its status is unknown).
    Vanished,
}

impl ExitCause {
    /// The process and how it ended, for a status that says it ended;
    /// `None` for one that does not (stopped, continued, still alive).
    pub(crate) fn from_wait(status: WaitStatus) -> Option<(Pid, ExitCause)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, ExitCause::Code(code))),
            WaitStatus::Signaled(pid, signal, _) => Some((pid, ExitCause::Signal(signal))),
            _ => None,
        }
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Code(code) => write!(f, "exit code {code}"),
            ExitCause::Signal(signal) => write!(f, "signal {signal}"),
            ExitCause::Vanished => f.write_str("vanished"),
        }
    }
}

/// What the supervisor knew of a worker when it ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    /// How it ended.
    pub(crate) cause: ExitCause,
    /// Its state at the end.
    pub(crate) state: WorkerState,
    /// It reported its connection budget used up.
    pub(crate) recycled: bool,
    /// It reported ready.
    pub(crate) ready: bool,
    /// How long it ran.
    pub(crate) lived: Duration,
    /// The supervisor recycles workers (a connection budget is set).
    pub(crate) budgeted: bool,
}

/// Why a worker ended, as the supervisor reads it: a death is replaced
/// with a backoff when deaths pile up; every other ending was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retirement {
    /// It ended on its own, unasked.
    Died,
    /// It ended on its own before it was ready, within [`MIN_UPTIME`].
    CrashedAtStart,
    /// Told to drain, it overstayed the grace period and was killed.
    KilledAfterGrace,
    /// It used its connection budget and exited.
    Recycled,
    /// Told to drain, it did.
    Drained,
    /// Stopped as a rogue.
    Rogue(RogueReason),
}

impl Retirement {
    /// Reads how a worker ended against what the supervisor knew of it.
    pub(crate) fn of(ended: &Ended) -> Retirement {
        match ended.state {
            WorkerState::Draining { killed: true, .. } => Retirement::KilledAfterGrace,
            WorkerState::Draining { .. } if ended.recycled => Retirement::Recycled,
            WorkerState::Draining { .. } => Retirement::Drained,
            WorkerState::Rogue { reason, .. } => Retirement::Rogue(reason),
            // A worker whose last connection ended before its report of the
            // used-up budget was read exits 0 all the same.
            _ if ended.cause == ExitCause::Code(0) && ended.budgeted => Retirement::Recycled,
            _ if !ended.ready && ended.lived < MIN_UPTIME => Retirement::CrashedAtStart,
            _ => Retirement::Died,
        }
    }

    /// It ended unasked: a death, counted against crash loops.
    pub(crate) fn is_death(self) -> bool {
        matches!(self, Retirement::Died | Retirement::CrashedAtStart)
    }
}

impl fmt::Display for Retirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retirement::Died => f.write_str("died"),
            Retirement::CrashedAtStart => f.write_str("crashed at start-up"),
            Retirement::KilledAfterGrace => f.write_str("killed after the grace period"),
            Retirement::Recycled => f.write_str("recycled"),
            Retirement::Drained => f.write_str("drained"),
            Retirement::Rogue(reason) => write!(f, "rogue ({reason})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const PID: Pid = Pid::from_raw(4242);

    /// A ready worker that ran a minute, in `state`, ending with `cause`,
    /// without a connection budget.
    fn ended(state: WorkerState, cause: ExitCause) -> Ended {
        Ended {
            cause,
            state,
            recycled: false,
            ready: true,
            lived: Duration::from_secs(60),
            budgeted: false,
        }
    }

    fn draining(killed: bool) -> WorkerState {
        WorkerState::Draining {
            since: Instant::now(),
            killed,
        }
    }

    fn rogue(reason: RogueReason) -> WorkerState {
        WorkerState::Rogue {
            reason,
            step: 3,
            since: Instant::now(),
        }
    }

    #[test]
    fn wait_statuses_that_end_a_process_give_its_cause() {
        assert_eq!(
            ExitCause::from_wait(WaitStatus::Exited(PID, 3)),
            Some((PID, ExitCause::Code(3)))
        );
        assert_eq!(
            ExitCause::from_wait(WaitStatus::Signaled(PID, Signal::SIGKILL, true)),
            Some((PID, ExitCause::Signal(Signal::SIGKILL)))
        );
        assert_eq!(
            ExitCause::from_wait(WaitStatus::Stopped(PID, Signal::SIGSTOP)),
            None
        );
        assert_eq!(ExitCause::from_wait(WaitStatus::Continued(PID)), None);
        assert_eq!(ExitCause::from_wait(WaitStatus::StillAlive), None);
    }

    #[test]
    fn causes_read_as_the_logs_have_them() {
        assert_eq!(ExitCause::Code(0).to_string(), "exit code 0");
        assert_eq!(ExitCause::Code(101).to_string(), "exit code 101");
        assert_eq!(
            ExitCause::Signal(Signal::SIGKILL).to_string(),
            "signal SIGKILL"
        );
        assert_eq!(ExitCause::Vanished.to_string(), "vanished");
    }

    #[test]
    fn a_draining_worker_drained_was_recycled_or_was_killed() {
        let exit = ExitCause::Code(0);
        assert_eq!(
            Retirement::of(&ended(draining(false), exit)),
            Retirement::Drained
        );
        let recycled = Ended {
            recycled: true,
            ..ended(draining(false), exit)
        };
        assert_eq!(Retirement::of(&recycled), Retirement::Recycled);
        // Killed wins over recycled: it overstayed all the same.
        let killed = Ended {
            recycled: true,
            ..ended(draining(true), ExitCause::Signal(Signal::SIGKILL))
        };
        assert_eq!(Retirement::of(&killed), Retirement::KilledAfterGrace);
    }

    #[test]
    fn a_rogue_ends_as_a_rogue_whatever_its_exit() {
        for reason in [RogueReason::Cpu, RogueReason::Hung, RogueReason::Boot] {
            for cause in [ExitCause::Code(0), ExitCause::Signal(Signal::SIGKILL)] {
                let retirement = Retirement::of(&ended(rogue(reason), cause));
                assert_eq!(retirement, Retirement::Rogue(reason));
                assert!(!retirement.is_death());
            }
        }
    }

    #[test]
    fn exit_0_of_a_serving_worker_is_a_recycling_only_under_a_budget() {
        let exit = ended(WorkerState::Running, ExitCause::Code(0));
        assert_eq!(Retirement::of(&exit), Retirement::Died);
        let budgeted = Ended {
            budgeted: true,
            ..exit
        };
        assert_eq!(Retirement::of(&budgeted), Retirement::Recycled);
        let recycling = Ended {
            state: WorkerState::Recycling {
                since: Instant::now(),
            },
            ..budgeted
        };
        assert_eq!(Retirement::of(&recycling), Retirement::Recycled);
        // Under a budget, any other end is a death.
        for cause in [
            ExitCause::Code(1),
            ExitCause::Signal(Signal::SIGSEGV),
            ExitCause::Vanished,
        ] {
            let died = Ended { cause, ..budgeted };
            assert_eq!(Retirement::of(&died), Retirement::Died);
        }
    }

    #[test]
    fn a_death_before_ready_and_within_the_minimum_uptime_is_a_crash_at_start_up() {
        let young = Ended {
            ready: false,
            lived: MIN_UPTIME / 2,
            ..ended(WorkerState::Booting, ExitCause::Code(1))
        };
        assert_eq!(Retirement::of(&young), Retirement::CrashedAtStart);
        let ready = Ended {
            ready: true,
            ..young
        };
        assert_eq!(Retirement::of(&ready), Retirement::Died);
        let old = Ended {
            lived: MIN_UPTIME,
            ..young
        };
        assert_eq!(Retirement::of(&old), Retirement::Died);
    }

    #[test]
    fn only_unasked_ends_are_deaths() {
        assert!(Retirement::Died.is_death());
        assert!(Retirement::CrashedAtStart.is_death());
        for asked in [
            Retirement::KilledAfterGrace,
            Retirement::Recycled,
            Retirement::Drained,
            Retirement::Rogue(RogueReason::Hung),
        ] {
            assert!(!asked.is_death(), "{asked}");
        }
    }

    #[test]
    fn retirements_read_as_the_logs_have_them() {
        let texts = [
            (Retirement::Died, "died"),
            (Retirement::CrashedAtStart, "crashed at start-up"),
            (
                Retirement::KilledAfterGrace,
                "killed after the grace period",
            ),
            (Retirement::Recycled, "recycled"),
            (Retirement::Drained, "drained"),
            (Retirement::Rogue(RogueReason::Hung), "rogue (hung)"),
            (Retirement::Rogue(RogueReason::Cpu), "rogue (cpu limit)"),
            (Retirement::Rogue(RogueReason::Boot), "rogue (boot timeout)"),
        ];
        for (retirement, text) in texts {
            assert_eq!(retirement.to_string(), text);
        }
    }
}
