//! Pre-forked ikc workers under a supervisor: IKC::Server's `processes`,
//! `babysit` and `connections`, rebuilt safely.
//!
//! The [`Supervisor`] binds the listening socket ([`Bound`]) in the parent,
//! forks the workers and never accepts. Each worker builds its own tokio
//! runtime after the fork and serves the ikc-server stack on the inherited
//! socket ([`WorkerContext::serve`]). The supervisor:
//!
//! - reaps exited workers, logs why each ended (exit code or signal;
//!   drained, recycled, rogue, died), and replaces them;
//! - babysits every `babysit` seconds: a worker that spins (more than
//!   `cpu_limit` of CPU time within the last `cpu_window`: 570 s in 600 s
//!   by default), whose heartbeat stopped (hung), or that never became
//!   ready is a rogue and gets SIGINT, SIGTERM, then SIGKILL, one step per
//!   `2 x babysit`. The CPU rule judges a window, not the lifetime: a busy
//!   worker that also waits is never a rogue (IKC 0.13 likewise forgave a
//!   worker once it slept), and a worker younger than the window is not
//!   judged;
//! - retries failed forks (EAGAIN, ENOMEM) and re-starts workers that crash
//!   at start-up with a capped exponential backoff, never in a hot loop;
//!   workers that keep dying at any age (5 deaths within 60 s by default:
//!   a crash loop) make each start wait likewise, with a `crash loop`
//!   warning and `degraded=true` in the status, until the deaths age out;
//! - recycles a worker after `connections` accepted connections: it stops
//!   accepting and is replaced at once; its connections may finish until
//!   the recycle deadline, then it drains (`GoAway`) and exits 0;
//! - on SIGINT/SIGTERM drains every worker (SIGKILL after the grace period)
//!   and returns (so does `IKC/shutdown` from a peer, when the server
//!   allows it: the worker that got it asks the supervisor); on SIGUSR2 logs whether it is degraded (workers fail to
//!   start, or a crash loop), then each worker's pid, age, connections, CPU
//!   time (in all and in the last CPU window), heartbeat age and state; on
//!   SIGHUP replaces every worker one at a time, each new one ready before
//!   an old one drains; on SIGTTIN/SIGTTOU runs one worker more/less;
//! - on SIGUSR1, when [`Supervisor::upgrade`] is set, upgrades the binary:
//!   starts the binary on disk again as a new generation, hands it the
//!   listening socket, and drains its own workers once every new worker
//!   is ready (or stops the new generation and goes on serving when it
//!   exits or is not ready in time; see `ikc_server::upgrade`).
//!
//! The CPU times come from `/proc/PID/stat`. Where `/proc` cannot be read,
//! the supervisor logs one warning at start-up and the CPU rule is off; the
//! hang and boot rules, which rely on the heartbeat, still apply.
//!
//! The supervisor is synchronous and single-threaded, and never touches
//! tokio: forking a multi-threaded process would leave the child only
//! async-signal-safe functions. The only `unsafe` code of ikc is the fork
//! wrapper in this crate.
//!
//! # Modules
//!
//! | module | the one idea it holds |
//! |--------|-----------------------|
//! | `supervisor` | [`Supervisor`] and [`Bound`]: the parent's loop (fork, reap, fill, signals, status) |
//! | [`babysit`] | the rogue rules: a worker's state and the facts it is judged on |
//! | `retirement` | why a worker ended: the exit cause of its wait status, read as died, crashed at start-up, drained, recycled, killed or rogue |
//! | `crash_loop` | deaths counted over a window |
//! | [`metrics`] | the supervisor's facts (workers by state, starts, exits by reason, CPU) through the `metrics` facade |
//! | `heartbeat` | the pipe on which a worker reports ready, alive, recycling, stop |
//! | `signals` | the signals the supervisor handles: flags, and a wake pipe its `poll` watches |
//! | `worker` | [`WorkerContext`]: a worker's side after the fork |
//! | `sys` | the fork, the only `unsafe` code |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub mod babysit;
mod crash_loop;
mod heartbeat;
pub mod metrics;
mod retirement;
mod signals;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod worker;

pub use supervisor::{
    Bound, DEFAULT_BABYSIT, DEFAULT_CPU_LIMIT, DEFAULT_CPU_WINDOW, DEFAULT_CRASH_LOOP_DEATHS,
    DEFAULT_CRASH_LOOP_WINDOW, DEFAULT_GRACE_PERIOD, DEFAULT_HANG_TIMEOUT,
    DEFAULT_RECYCLE_DEADLINE, DEFAULT_UPGRADE_TIMEOUT, Supervisor,
};
pub use worker::{HEARTBEAT_INTERVAL, WorkerContext};

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreforkError {
    /// Binding the listening socket failed (address in use, permission).
    #[error("cannot listen")]
    Bind(#[from] ikc_server::Error),
    /// A system call the supervisor needs failed.
    #[error("supervisor set-up failed")]
    Io(#[source] std::io::Error),
}
