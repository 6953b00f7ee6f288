//! The supervisor's facts about its workers, recorded through the
//! [`metrics`](::metrics) facade into whatever recorder the application
//! installed before [`Supervisor::run`](crate::Supervisor::run) (none:
//! nothing is recorded). Each worker records its own server's metrics in
//! its own process; `ikc serve --workers N --metrics ADDR` shows how the
//! two are exported together.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `ikc_workers` | gauge | `state` (`booting`, `running`, `recycling`, `draining`, `rogue`) | workers in each state, at the last babysit round |
//! | `ikc_worker_starts_total` | counter | | workers forked (the first ones, then every replacement) |
//! | `ikc_worker_exits_total` | counter | `reason` (`drained`, `recycled`, `died`, `crashed_at_start`, `killed_after_grace`, `rogue_cpu`, `rogue_hung`, `rogue_boot`) | workers that ended, by why |
//! | `ikc_worker_cpu_seconds` | gauge | `worker` (its number, from 1) | CPU time of the process now in that slot, as the babysitter last read it |
//!
//! Labels are bounded: a worker's number is the smallest free one, so
//! there are never more than the largest number of workers run at once.

use std::time::Duration;

use crate::babysit::{RogueReason, WorkerState};
use crate::retirement::Retirement;

/// The `state` label of each [`WorkerState`], in the order the gauge is set.
const STATES: [&str; 5] = ["booting", "running", "recycling", "draining", "rogue"];

/// The index of `state`'s label in [`STATES`].
fn state_index(state: &WorkerState) -> usize {
    match state {
        WorkerState::Booting => 0,
        WorkerState::Running => 1,
        WorkerState::Recycling { .. } => 2,
        WorkerState::Draining { .. } => 3,
        WorkerState::Rogue { .. } => 4,
    }
}

fn reason_label(why: Retirement) -> &'static str {
    match why {
        Retirement::Died => "died",
        Retirement::CrashedAtStart => "crashed_at_start",
        Retirement::KilledAfterGrace => "killed_after_grace",
        Retirement::Recycled => "recycled",
        Retirement::Drained => "drained",
        Retirement::Rogue(RogueReason::Cpu) => "rogue_cpu",
        Retirement::Rogue(RogueReason::Hung) => "rogue_hung",
        Retirement::Rogue(RogueReason::Boot) => "rogue_boot",
    }
}

/// A worker was forked.
pub(crate) fn started() {
    ::metrics::counter!("ikc_worker_starts_total").increment(1);
}

/// A worker ended, for `why`.
pub(crate) fn exited(why: Retirement) {
    ::metrics::counter!("ikc_worker_exits_total", "reason" => reason_label(why)).increment(1);
}

/// The workers' states, counted, and each one's CPU time as last read
/// (`None`: never read).
pub(crate) fn babysat<'a>(workers: impl Iterator<Item = (u32, &'a WorkerState, Option<Duration>)>) {
    let mut counts = [0u32; STATES.len()];
    for (id, state, cpu) in workers {
        counts[state_index(state)] += 1;
        if let Some(cpu) = cpu {
            ::metrics::gauge!("ikc_worker_cpu_seconds", "worker" => id.to_string())
                .set(cpu.as_secs_f64());
        }
    }
    for (state, count) in STATES.iter().zip(counts) {
        ::metrics::gauge!("ikc_workers", "state" => *state).set(f64::from(count));
    }
}
