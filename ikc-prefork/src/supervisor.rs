//! [`Supervisor`]: the parent process. It binds, forks the workers, never
//! accepts, and keeps the workers healthy. Synchronous and single-threaded:
//! it never touches tokio.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikc_server::activation::Activated;
use ikc_server::listener::{ListenAddr, SocketFile, bind_tcp_std, bind_unix_std};
use ikc_server::upgrade::{Exec, Handover, NextGeneration, PidFile};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::PreforkError;
use crate::babysit::{self, CpuSamples, Facts, Limits, WorkerState};
use crate::crash_loop::Deaths;
use crate::heartbeat::{self, Beat, BeatReader};
use crate::retirement::{Ended, ExitCause, Retirement};
use crate::signals::{Received, Signals};
use crate::sys::{self, Forked};
use crate::worker::{Inherited, WorkerContext};

/// Default for [`Supervisor::babysit`]: every 5 seconds.
pub const DEFAULT_BABYSIT: Duration = Duration::from_secs(5);
/// Default for [`Supervisor::cpu_window`]: CPU use is judged over the last
/// 600 s (ten minutes, IKC 0.13's limit).
pub const DEFAULT_CPU_WINDOW: Duration = Duration::from_secs(600);
/// Default for [`Supervisor::cpu_limit`]: 570 s of CPU time within one
/// window, a worker that spun 95 % of the last ten minutes.
pub const DEFAULT_CPU_LIMIT: Duration = Duration::from_secs(570);
/// Default deaths for [`Supervisor::crash_loop`]: 5 workers that die...
pub const DEFAULT_CRASH_LOOP_DEATHS: u32 = 5;
/// ...within 60 s are a crash loop (default for [`Supervisor::crash_loop`]).
pub const DEFAULT_CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// Default for [`Supervisor::hang_timeout`]: 30 s without a heartbeat.
pub const DEFAULT_HANG_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`Supervisor::grace_period`]: 30 s to drain.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Default for [`Supervisor::recycle_deadline`]: 30 s.
pub const DEFAULT_RECYCLE_DEADLINE: Duration = Duration::from_secs(30);

/// Default for [`Supervisor::upgrade_timeout`]: 60 s for the new
/// generation's workers to report ready.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

/// First pause after a failed fork, a crash at start-up or a death in a
/// crash loop; it doubles.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between such attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Where CPU times are read (`/proc/PID/stat`).
const PROC_ROOT: &str = "/proc";

/// The listening socket the supervisor binds before forking.
#[derive(Debug)]
pub struct Bound {
    inner: BoundInner,
    addr: ListenAddr,
    /// This supervisor is the new generation of an upgrade: how it tells
    /// the old one that its workers serve.
    handover: Option<Handover>,
}

#[derive(Debug)]
enum BoundInner {
    Tcp(std::net::TcpListener),
    // The file guard removes the socket when the supervisor exits; workers
    // get only the descriptor, so they never remove it.
    Unix {
        listener: std::os::unix::net::UnixListener,
        owned: Option<SocketFile>,
    },
}

impl Bound {
    /// Binds a TCP address, before any fork.
    ///
    /// # Errors
    ///
    /// Address in use or permission denied, naming the address.
    pub fn tcp(addr: std::net::SocketAddr) -> Result<Bound, PreforkError> {
        let listener = bind_tcp_std(addr)?;
        let addr = ListenAddr::Tcp(listener.local_addr().map_err(PreforkError::Io)?);
        Ok(Bound {
            inner: BoundInner::Tcp(listener),
            addr,
            handover: None,
        })
    }

    /// Binds a Unix socket, before any fork (probing a stale socket file
    /// first, as the server does).
    ///
    /// # Errors
    ///
    /// As [`Bound::tcp`], and a path that is not a socket.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Bound, PreforkError> {
        let path = path.into();
        let (listener, file) = bind_unix_std(&path)?;
        Ok(Bound {
            inner: BoundInner::Unix {
                listener,
                owned: Some(file),
            },
            addr: ListenAddr::Unix(path),
            handover: None,
        })
    }

    /// The socket a service manager passed (socket activation; see
    /// [`ikc_server::activation`]). A Unix socket's file is the manager's:
    /// the supervisor leaves it in place.
    ///
    /// # Errors
    ///
    /// When the socket cannot say its address.
    pub fn activated(socket: Activated) -> Result<Bound, PreforkError> {
        Ok(match socket {
            Activated::Tcp(listener) => {
                let addr = ListenAddr::Tcp(listener.local_addr().map_err(PreforkError::Io)?);
                Bound {
                    inner: BoundInner::Tcp(listener),
                    addr,
                    handover: None,
                }
            }
            Activated::Unix(listener) => {
                let local = listener.local_addr().map_err(PreforkError::Io)?;
                let path = local.as_pathname().map(Path::to_owned).unwrap_or_default();
                Bound {
                    inner: BoundInner::Unix {
                        listener,
                        owned: None,
                    },
                    addr: ListenAddr::Unix(path),
                    handover: None,
                }
            }
        })
    }

    /// The socket the old generation of a binary upgrade passed (taken as
    /// [`Bound::activated`]), with its [`Handover`]: the supervisor tells
    /// the old generation once every worker reported ready, and takes
    /// charge of the Unix socket file the old one created.
    ///
    /// # Errors
    ///
    /// When the handed-over socket file is gone.
    pub fn handed_over(mut self, mut handover: Handover) -> Result<Bound, PreforkError> {
        let adopted = handover.take_socket_file().map_err(PreforkError::Io)?;
        if let (BoundInner::Unix { owned, .. }, Some(file)) = (&mut self.inner, adopted) {
            *owned = Some(file);
        }
        self.handover = Some(handover);
        Ok(self)
    }

    /// Where the workers will listen.
    #[must_use]
    pub fn local_addr(&self) -> &ListenAddr {
        &self.addr
    }

    fn socket(&self) -> BorrowedFd<'_> {
        match &self.inner {
            BoundInner::Tcp(listener) => listener.as_fd(),
            BoundInner::Unix { listener, .. } => listener.as_fd(),
        }
    }

    /// The Unix socket file this supervisor removes at exit, if any.
    fn socket_file(&self) -> Option<&Path> {
        match &self.inner {
            BoundInner::Unix {
                owned: Some(file), ..
            } => Some(file.path()),
            _ => None,
        }
    }

    /// Leaves the socket file to the new generation.
    fn hand_over_socket_file(&mut self) {
        if let BoundInner::Unix { owned, .. } = &mut self.inner {
            if let Some(file) = owned.take() {
                file.keep();
            }
        }
    }

    fn inherit(&self) -> std::io::Result<Inherited> {
        Ok(match &self.inner {
            BoundInner::Tcp(listener) => Inherited::Tcp(listener.try_clone()?),
            BoundInner::Unix { listener, .. } => Inherited::Unix(listener.try_clone()?),
        })
    }
}

/// Runs pre-forked workers on one listening socket: IKC::Server's
/// `processes`, `babysit` and `connections`.
///
/// ```no_run
/// use ikc_prefork::{Bound, Supervisor, WorkerContext};
/// use ikc_server::Server;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let bound = Bound::tcp("127.0.0.1:6030".parse()?)?;
///     Supervisor::builder().workers(4).run(bound, |worker: WorkerContext| {
///         // Runs in each worker, after the fork.
///         let kernel = ikc_core::Kernel::new("Server");
///         worker.serve(Server::builder().kernel(kernel))
///     })?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Supervisor {
    workers: usize,
    connections: Option<u64>,
    babysit: Duration,
    cpu_window: Duration,
    cpu_limit: Duration,
    hang_timeout: Duration,
    grace_period: Duration,
    recycle_deadline: Duration,
    crash_loop_deaths: u32,
    crash_loop_window: Duration,
    after_babysit: Option<Hook>,
    upgrade: Option<Exec>,
    upgrade_timeout: Duration,
    /// Further sockets an upgrade hands over, by name.
    hand_over: Vec<(String, Arc<OwnedFd>)>,
    pid_file: Option<PathBuf>,
}

/// What [`Supervisor::after_babysit`] runs.
#[derive(Clone)]
struct Hook(Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hook(..)")
    }
}

impl Supervisor {
    /// A supervisor with the defaults: 1 worker, unlimited connections per
    /// worker.
    pub fn builder() -> Self {
        Supervisor {
            workers: 1,
            connections: None,
            babysit: DEFAULT_BABYSIT,
            cpu_window: DEFAULT_CPU_WINDOW,
            cpu_limit: DEFAULT_CPU_LIMIT,
            hang_timeout: DEFAULT_HANG_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            recycle_deadline: DEFAULT_RECYCLE_DEADLINE,
            crash_loop_deaths: DEFAULT_CRASH_LOOP_DEATHS,
            crash_loop_window: DEFAULT_CRASH_LOOP_WINDOW,
            after_babysit: None,
            upgrade: None,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            hand_over: Vec::new(),
            pid_file: None,
        }
    }

    /// Workers to keep running (IKC's `processes` minus the parent). At
    /// least 1. Default: 1.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Connections a worker accepts before it stops accepting, finishes
    /// them and exits. Default: no limit. (IKC defaulted to 1, which forks
    /// once per connection; ikc's connections carry many requests and are
    /// cheap to keep, so recycling is opt-in, for leaky handlers.)
    ///
    /// A worker that reaches its budget counts as recycling at once: the
    /// supervisor forks its replacement, and the old worker keeps its
    /// connections until the [recycle deadline](Self::recycle_deadline),
    /// then is drained (its peers get `GoAway`). Each worker's budget is
    /// `connections` plus a random 0-10 %, so workers started together do
    /// not all recycle together.
    pub fn connections(mut self, connections: Option<u64>) -> Self {
        self.connections = connections.map(|c| c.max(1));
        self
    }

    /// How often the babysitter checks the workers. Default: 5 s.
    pub fn babysit(mut self, every: Duration) -> Self {
        self.babysit = every.max(Duration::from_millis(10));
        self
    }

    /// The span over which the babysitter judges a worker's CPU use (see
    /// [`Supervisor::cpu_limit`]). At least 10 ms. Default: 600 s.
    pub fn cpu_window(mut self, window: Duration) -> Self {
        self.cpu_window = window.max(Duration::from_millis(10));
        self
    }

    /// CPU time (user + system) a worker may use within one CPU window;
    /// one that used more spins, and is stopped as a rogue. The babysitter
    /// samples each worker's CPU time at every check and judges the last
    /// full window, so a worker younger than the window is not judged, and
    /// a busy worker that also waits is never a rogue however much CPU it
    /// used in all (IKC 0.13 likewise forgave a worker once it slept). Every
    /// thread of the worker counts; its runtime runs one, so a limit at or
    /// above the window fires only for a worker that keeps other threads
    /// busy too. The rule needs `/proc`: without it the supervisor warns
    /// once at start-up and the rule is off. Default: 570 s (95 % of the
    /// default 600 s window).
    pub fn cpu_limit(mut self, limit: Duration) -> Self {
        self.cpu_limit = limit;
        self
    }

    /// Time without a heartbeat after which a worker is stopped as hung (and
    /// the time a new worker has to report ready). Default: 30 s.
    pub fn hang_timeout(mut self, timeout: Duration) -> Self {
        self.hang_timeout = timeout;
        self
    }

    /// Time a draining worker has to finish before SIGKILL. Default: 30 s.
    pub fn grace_period(mut self, period: Duration) -> Self {
        self.grace_period = period;
        self
    }

    /// Time a worker that used its connection budget keeps the connections
    /// it holds before it is told to drain (see
    /// [`connections`](Self::connections)). Default: 30 s.
    pub fn recycle_deadline(mut self, deadline: Duration) -> Self {
        self.recycle_deadline = deadline;
        self
    }

    /// A crash loop: `deaths` workers (at least 1) that die within
    /// `window`, at any age (a worker dies when it exits or is killed
    /// without the supervisor asking; drained, recycled and rogue workers do
    /// not count). While the deaths in the last window reach `deaths`, the
    /// start after each death waits 100 ms, doubling with each further
    /// death up to 10 s, the supervisor warns (`crash loop: ...`), and the
    /// SIGUSR2 status says `degraded=true` with the count; it ends once the
    /// deaths age out of the window. Default: 5 deaths within 60 s.
    pub fn crash_loop(mut self, deaths: u32, window: Duration) -> Self {
        self.crash_loop_deaths = deaths.max(1);
        self.crash_loop_window = window;
        self
    }

    /// Runs `hook` in the supervisor after each babysit round (every
    /// [`babysit`](Self::babysit)), when the [`metrics`](crate::metrics)
    /// of the workers were just recorded: the place to hand them to an
    /// exporter outside this process (`ikc serve --workers N --metrics`
    /// writes them where its workers' endpoint reads them). The hook runs
    /// in the single-threaded supervisor between forks: it must not start
    /// a thread or a runtime. Default: none.
    pub fn after_babysit(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.after_babysit = Some(Hook(Arc::new(hook)));
        self
    }

    /// Binary upgrade on SIGUSR1: the supervisor starts `exec` (the binary
    /// on disk, [`Exec::current`] taken at start-up) as a new generation,
    /// handing it the listening socket (see [`ikc_server::upgrade`]); the
    /// new generation's `main` takes it with
    /// [`ikc_server::activation::passed`] and
    /// [`Bound::handed_over`]. Once every worker of the new generation
    /// reported ready, this supervisor drains its own workers and returns,
    /// as on SIGTERM; if the new generation exits first, or is not ready
    /// within the [upgrade timeout](Self::upgrade_timeout), it is stopped
    /// and this one goes on serving. Default: off (SIGUSR1 is logged and
    /// ignored).
    pub fn upgrade(mut self, exec: Exec) -> Self {
        self.upgrade = Some(exec);
        self
    }

    /// A further socket an upgrade hands to the new generation, under
    /// `name` in `LISTEN_FDNAMES` (a metrics endpoint's, say, so that the
    /// new generation does not have to bind its address while the old one
    /// holds it). Default: none.
    pub fn hand_over(mut self, name: impl Into<String>, socket: impl Into<OwnedFd>) -> Self {
        self.hand_over.push((name.into(), Arc::new(socket.into())));
        self
    }

    /// How long the new generation of an upgrade has to be ready. Default:
    /// 60 s.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
        self
    }

    /// Writes the supervisor's pid to `path` once its workers first serve,
    /// and removes it at exit while it still names this supervisor: after
    /// an upgrade it names the new generation. Default: none.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Forks the workers on `bound` and supervises them until SIGINT or
    /// SIGTERM, then stops them gracefully and returns. `worker` runs in
    /// each forked child; its return value is the child's exit status.
    ///
    /// Call this before any tokio runtime or thread exists in the process:
    /// the supervisor forks, and a forked child of a multi-threaded process
    /// may not run ordinary code.
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed.
    pub fn run<F>(self, bound: Bound, worker: F) -> Result<(), PreforkError>
    where
        F: Fn(WorkerContext) -> ExitCode,
    {
        let signals = Signals::install().map_err(PreforkError::Io)?;
        let limits = Limits {
            cpu: self.cpu_limit,
            hang: self.hang_timeout,
            boot: self.hang_timeout,
            step: self.babysit * 2,
            grace: self.grace_period,
            recycle: self.recycle_deadline,
        };
        // Without /proc the CPU rule cannot see anything: say so once.
        if let Err(error) = cpu_time_readable(Path::new(PROC_ROOT)) {
            tracing::warn!(
                %error,
                "cannot read CPU times from {PROC_ROOT}: the CPU limit is off \
                 (the hang and boot rules still apply)"
            );
        }
        let deaths = Deaths::new(self.crash_loop_deaths, self.crash_loop_window);
        let mut state = State {
            config: self,
            limits,
            bound,
            signals,
            workers: BTreeMap::new(),
            target: 0,
            old: Vec::new(),
            stopping: None,
            failures: 0,
            deaths,
            next_spawn: Instant::now(),
            next: None,
            pid_file: None,
            announced: false,
        };
        state.target = state.config.workers;
        tracing::info!(workers = state.target, "listening on {}", state.bound.addr);
        state.run(&worker);
        Ok(())
    }
}

/// One worker, as the supervisor tracks it.
#[derive(Debug)]
struct Worker {
    id: u32,
    started: Instant,
    last_beat: Instant,
    accepted: u64,
    ready: bool,
    /// It used its connection budget (its exit is a recycling).
    recycled: bool,
    state: WorkerState,
    beats: Option<BeatReader>,
    /// Its CPU time at the babysit checks of the last CPU window.
    cpu: CpuSamples,
}

struct State {
    config: Supervisor,
    limits: Limits,
    bound: Bound,
    signals: Signals,
    workers: BTreeMap<Pid, Worker>,
    target: usize,
    /// Workers a reload (SIGHUP) still has to replace.
    old: Vec<Pid>,
    /// When the graceful stop began.
    stopping: Option<Instant>,
    /// Consecutive failed forks or crashes at start-up.
    failures: u32,
    /// Workers that died lately, at any age: a crash loop.
    deaths: Deaths,
    next_spawn: Instant,
    /// The new generation of an upgrade in progress.
    next: Option<NextGeneration>,
    pid_file: Option<PidFile>,
    /// Every worker reported ready once (the pid file is written, the old
    /// generation told).
    announced: bool,
}

impl State {
    fn run(&mut self, worker: &dyn Fn(WorkerContext) -> ExitCode) {
        let mut next_babysit = Instant::now() + self.config.babysit;
        loop {
            let now = Instant::now();
            let mut wake = next_babysit.min(self.next_spawn.max(now + Duration::from_millis(1)));
            if self.stopping.is_some() {
                wake = wake.min(now + Duration::from_millis(100));
            }
            self.wait(wake.saturating_duration_since(now));

            let received = self.signals.take();
            self.on_signals(received);
            self.read_beats();
            self.reap();
            self.upgrade_step();
            let now = Instant::now();
            if now >= next_babysit {
                self.babysit(now);
                if let Some(Hook(hook)) = &self.config.after_babysit {
                    hook();
                }
                next_babysit = now + self.config.babysit;
            }
            if let Some(since) = self.stopping {
                if self.workers.is_empty() {
                    tracing::info!("all workers stopped");
                    return;
                }
                if since.elapsed() > self.config.grace_period + self.config.babysit {
                    for pid in self.workers.keys() {
                        let _ = kill(*pid, Signal::SIGKILL);
                    }
                }
                continue;
            }
            self.reload_step();
            self.fill(worker);
            self.announce();
        }
    }

    /// SIGUSR1: starts the new generation of a binary upgrade.
    fn start_upgrade(&mut self) {
        let Some(exec) = &self.config.upgrade else {
            tracing::warn!("SIGUSR1: binary upgrade is not enabled; ignored");
            return;
        };
        if let Some(next) = &self.next {
            tracing::warn!(
                pid = next.id(),
                "SIGUSR1: an upgrade is already under way; ignored"
            );
            return;
        }
        let sockets: Vec<(&str, BorrowedFd<'_>)> =
            std::iter::once((ikc_server::upgrade::LISTENER, self.bound.socket()))
                .chain(
                    self.config
                        .hand_over
                        .iter()
                        .map(|(name, fd)| (name.as_str(), fd.as_fd())),
                )
                .collect();
        let within = self.config.upgrade_timeout;
        match NextGeneration::spawn(exec, &sockets, self.bound.socket_file(), within) {
            Ok(next) => {
                tracing::info!(
                    pid = next.id(),
                    program = %exec.program().display(),
                    "upgrading: started the new generation; serving until its workers are ready"
                );
                self.next = Some(next);
            }
            Err(error) => tracing::error!(%error, "upgrade failed; still serving"),
        }
    }

    /// During an upgrade: hands over once the new generation serves, gives
    /// up on it when it exited or took too long (`reap` collects it).
    fn upgrade_step(&mut self) {
        let Some(next) = &mut self.next else {
            return;
        };
        let Some(done) = next.poll() else {
            return;
        };
        let pid = next.id();
        self.next = None;
        match done {
            Ok(()) => {
                self.bound.hand_over_socket_file();
                tracing::info!(pid, "upgrade: the new generation serves");
                self.stop("an upgrade");
            }
            Err(error) => tracing::error!(%error, "upgrade failed; still serving"),
        }
    }

    /// Once every worker first serves: writes the pid file, and tells the
    /// old generation of an upgrade that this one serves.
    fn announce(&mut self) {
        if self.announced
            || self.serving().count() < self.target
            || self
                .workers
                .values()
                .any(|w| !w.ready && w.state.is_serving())
        {
            return;
        }
        self.announced = true;
        if let Some(path) = &self.config.pid_file {
            match PidFile::write(path) {
                Ok(file) => self.pid_file = Some(file),
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "cannot write the pid file")
                }
            }
        }
        if let Some(handover) = self.bound.handover.take() {
            match handover.ready() {
                Ok(()) => tracing::info!("every worker is ready; told the old generation"),
                Err(error) => {
                    tracing::warn!(%error, "cannot tell the old generation that this one serves")
                }
            }
        }
    }

    /// Sleeps in `poll` until a signal, a heartbeat, or `timeout`.
    fn wait(&self, timeout: Duration) {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.workers.len() + 2);
        fds.push(PollFd::new(self.signals.wake_fd(), PollFlags::POLLIN));
        if let Some(next) = &self.next {
            fds.push(PollFd::new(next.as_fd(), PollFlags::POLLIN));
        }
        for worker in self.workers.values() {
            if let Some(beats) = &worker.beats {
                let fd: BorrowedFd<'_> = beats.fd();
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        // EINTR (a signal arrived) is the normal way to wake up.
        let _ = poll(&mut fds, PollTimeout::from(millis));
    }

    fn on_signals(&mut self, received: Received) {
        if received.stop {
            self.stop("a stop signal");
        }
        if received.status {
            self.dump_status();
        }
        if self.stopping.is_some() {
            return;
        }
        if received.upgrade {
            self.start_upgrade();
        }
        if received.reload {
            self.old = self.serving().collect();
            tracing::info!(
                workers = self.old.len(),
                "reloading: replacing every worker, one at a time"
            );
        }
        if received.more {
            self.target += 1;
            tracing::info!(target = self.target, "one worker more");
        }
        if received.fewer && self.target > 1 {
            self.target -= 1;
            tracing::info!(target = self.target, "one worker less");
            // Prefer retiring a worker a reload would replace anyway.
            let retire = self.old.pop().or_else(|| self.serving().last());
            if let Some(pid) = retire {
                self.drain(pid);
            }
        }
    }

    /// Begins the graceful stop of the whole server: every worker drains.
    fn stop(&mut self, why: &str) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!(
            workers = self.workers.len(),
            "stopping on {why}: draining the workers"
        );
        self.stopping = Some(Instant::now());
        if let Some(next) = self.next.take() {
            tracing::info!(
                pid = next.id(),
                "stopping the new generation of the upgrade too"
            );
            drop(next.abandon());
        }
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.drain(pid);
        }
    }

    fn serving(&self) -> impl DoubleEndedIterator<Item = Pid> + '_ {
        self.workers
            .iter()
            .filter(|(_, w)| w.state.is_serving())
            .map(|(pid, _)| *pid)
    }

    /// Tells a worker to finish and exit.
    fn drain(&mut self, pid: Pid) {
        if let Some(worker) = self.workers.get_mut(&pid) {
            if worker.state.is_serving() || matches!(worker.state, WorkerState::Recycling { .. }) {
                worker.state = WorkerState::Draining {
                    since: Instant::now(),
                    killed: false,
                };
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
    }

    fn read_beats(&mut self) {
        let now = Instant::now();
        let mut stop_asked = false;
        for (pid, worker) in &mut self.workers {
            let Some(beats) = &mut worker.beats else {
                continue;
            };
            match beats.read() {
                Ok(Some(list)) => {
                    for beat in list {
                        worker.last_beat = now;
                        match beat {
                            Beat::Ready => {
                                worker.ready = true;
                                if worker.state == WorkerState::Booting {
                                    worker.state = WorkerState::Running;
                                }
                                self.failures = 0;
                            }
                            Beat::Alive { accepted } => worker.accepted = accepted,
                            Beat::Recycling => {
                                worker.recycled = true;
                                if worker.state.is_serving() {
                                    // Not serving any more: `fill` forks
                                    // its replacement now.
                                    worker.state = WorkerState::Recycling { since: now };
                                    tracing::info!(
                                        pid = pid.as_raw(),
                                        worker = worker.id,
                                        deadline = ?self.limits.recycle,
                                        "worker used its connection budget; replacing it"
                                    );
                                }
                            }
                            Beat::Stop => {
                                tracing::info!(
                                    pid = pid.as_raw(),
                                    worker = worker.id,
                                    "a peer asked the server to shut down (IKC/shutdown)"
                                );
                                stop_asked = true;
                            }
                        }
                    }
                }
                // The worker closed its end (it is exiting): stop polling it.
                Ok(None) | Err(_) => worker.beats = None,
            }
        }
        if stop_asked {
            self.stop("IKC/shutdown");
        }
    }

    /// Collects every exited worker and logs why it ended.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => status,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    tracing::error!(%error, "waitpid failed");
                    return;
                }
            };
            let Some((pid, cause)) = ExitCause::from_wait(status) else {
                continue;
            };
            if let Some(worker) = self.workers.remove(&pid) {
                self.retired(pid, &worker, cause);
            } else if let Some(next) = self
                .next
                .take_if(|next| next.id() == pid.as_raw().unsigned_abs())
            {
                tracing::error!(error = %next.exited(&cause), "upgrade failed; still serving");
            }
        }
    }

    fn retired(&mut self, pid: Pid, worker: &Worker, cause: ExitCause) {
        self.old.retain(|p| *p != pid);
        let lived = worker.started.elapsed();
        let why = Retirement::of(&Ended {
            cause,
            state: worker.state,
            recycled: worker.recycled,
            ready: worker.ready,
            lived,
            budgeted: self.config.connections.is_some(),
        });
        crate::metrics::exited(why);
        if why.is_death() {
            tracing::warn!(pid = pid.as_raw(), worker = worker.id, %cause, reason = %why, ?lived, "worker died");
            let now = Instant::now();
            let mut pause = Duration::ZERO;
            if why == Retirement::CrashedAtStart {
                self.failures += 1;
                pause = backoff(self.failures);
                tracing::warn!(
                    failures = self.failures,
                    ?pause,
                    "worker crashed at start-up; backing off"
                );
            }
            // Deaths at any age: a worker that crashes after it was ready.
            if let Some(over) = self.deaths.record(now) {
                let deaths = self.deaths.count(now);
                let window = self.deaths.window();
                let loop_pause = backoff(over);
                tracing::warn!(
                    deaths,
                    ?window,
                    pause = ?loop_pause,
                    "crash loop: {deaths} workers died within {window:?}; backing off"
                );
                pause = pause.max(loop_pause);
            }
            self.next_spawn = self.next_spawn.max(now + pause);
        } else {
            tracing::info!(pid = pid.as_raw(), worker = worker.id, %cause, reason = %why, ?lived, "worker exited");
        }
    }

    fn babysit(&mut self, now: Instant) {
        if self.deaths.ended(now) {
            tracing::info!(
                deaths = self.deaths.count(now),
                window = ?self.deaths.window(),
                "crash loop over: workers start without pause"
            );
        }
        let window = self.config.cpu_window;
        for (pid, worker) in &mut self.workers {
            // A worker that vanished without a wait status (reaped elsewhere)
            // is forgotten on the next reap; here it only must not be signalled.
            if kill(*pid, None).is_err() {
                continue;
            }
            // An unreadable sample is skipped, not taken as zero: the next
            // one then spans the gap (CpuSamples scales it to the window).
            if let Some(cpu) = cpu_time(*pid) {
                worker.cpu.record(now, cpu, window);
            }
            let facts = Facts {
                started: worker.started,
                last_beat: worker.last_beat,
                cpu_in_window: worker.cpu.used_in_window(window),
            };
            let before = worker.state;
            if let Some(signal) = babysit::check(&mut worker.state, facts, now, &self.limits) {
                if before != worker.state
                    && matches!(worker.state, WorkerState::Rogue { step: 1, .. })
                {
                    let cpu_window = seconds(facts.cpu_in_window);
                    tracing::warn!(pid = pid.as_raw(), worker = worker.id, state = %worker.state, %cpu_window, ?window, "rogue worker");
                }
                tracing::info!(pid = pid.as_raw(), %signal, "signalling worker");
                let _ = kill(*pid, signal);
            }
        }
        // Workers that disappeared without our wait seeing them.
        let vanished: Vec<Pid> = self
            .workers
            .keys()
            .copied()
            .filter(|pid| kill(*pid, None) == Err(Errno::ESRCH))
            .collect();
        for pid in vanished {
            if let Some(worker) = self.workers.remove(&pid) {
                self.retired(pid, &worker, ExitCause::Vanished);
            }
        }
        crate::metrics::babysat(
            self.workers
                .values()
                .map(|worker| (worker.id, &worker.state, worker.cpu.latest())),
        );
    }

    /// During a reload: once the new workers are ready, retire one old one.
    fn reload_step(&mut self) {
        if self.old.is_empty() {
            return;
        }
        let booting = self
            .workers
            .values()
            .any(|w| w.state == WorkerState::Booting);
        let serving = self.serving().count();
        if !booting && serving > self.target {
            if let Some(pid) = self.old.pop() {
                self.drain(pid);
            }
        }
    }

    /// Starts workers until enough serve (one extra during a reload).
    fn fill(&mut self, worker: &dyn Fn(WorkerContext) -> ExitCode) {
        let wanted = self.target + usize::from(!self.old.is_empty());
        while self.serving().count() < wanted && Instant::now() >= self.next_spawn {
            if self.spawn(worker).is_err() {
                return;
            }
        }
    }

    fn spawn(&mut self, worker: &dyn Fn(WorkerContext) -> ExitCode) -> Result<(), ()> {
        let id = (1..)
            .find(|id| self.workers.values().all(|w| w.id != *id))
            .unwrap_or(0);
        let prepared = heartbeat::pipe()
            .and_then(|(reader, heartbeat)| Ok((reader, heartbeat, self.bound.inherit()?)));
        let (reader, heartbeat, listener) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                self.spawn_failed(&format!("cannot prepare a worker: {error}"));
                return Err(());
            }
        };
        // Drawn in the supervisor: a child's copy of the random generator
        // would give every worker the same number.
        let budget = self.config.connections.map(jittered);
        match sys::fork() {
            Ok(Forked::Child) => {
                // In the worker: drop what belongs to the supervisor, then
                // never return into its code.
                //
                // The supervisor may tell this worker to drain (SIGTERM)
                // before its runtime listens for signals; catch it from now
                // on, and take one that reached the supervisor's handlers in
                // this process since the fork. (A stop the supervisor got
                // just before the fork shows here too: the supervisor is then
                // stopping, and drains this worker anyway.)
                let stop = crate::worker::stop_flag();
                self.signals.unregister();
                if self.signals.stop_requested() {
                    stop.store(true, std::sync::atomic::Ordering::Release);
                }
                drop(reader);
                for other in self.workers.values_mut() {
                    other.beats = None;
                }
                self.bound.handover = None;
                self.next = None;
                let context = WorkerContext {
                    id,
                    listener,
                    connections: budget,
                    heartbeat,
                    stop,
                };
                let code =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(context)))
                        .unwrap_or(ExitCode::FAILURE);
                std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
            }
            Ok(Forked::Parent(pid)) => {
                let now = Instant::now();
                tracing::info!(pid = pid.as_raw(), worker = id, "worker started");
                crate::metrics::started();
                self.workers.insert(
                    pid,
                    Worker {
                        id,
                        started: now,
                        last_beat: now,
                        accepted: 0,
                        ready: false,
                        recycled: false,
                        state: WorkerState::Booting,
                        beats: Some(reader),
                        cpu: CpuSamples::new(),
                    },
                );
                Ok(())
            }
            Err(error) => {
                self.spawn_failed(&format!("fork failed: {error}"));
                Err(())
            }
        }
    }

    fn spawn_failed(&mut self, what: &str) {
        self.failures += 1;
        let pause = backoff(self.failures);
        tracing::error!(failures = self.failures, ?pause, "{what}; retrying");
        self.next_spawn = Instant::now() + pause;
    }

    fn dump_status(&mut self) {
        let now = Instant::now();
        // Degraded: workers cannot be started, or they keep dying.
        let crash_loop = self.deaths.looping(now);
        let degraded = self.failures > 0 || crash_loop;
        tracing::info!(
            workers = self.workers.len(),
            target = self.target,
            reloading = self.old.len(),
            degraded,
            crash_loop,
            deaths = self.deaths.count(now),
            start_failures = self.failures,
            "status"
        );
        let window = self.config.cpu_window;
        for (pid, worker) in &self.workers {
            tracing::info!(
                "worker {} pid={} age={:.1}s connections={} cpu={} cpu_window={} heartbeat_age={:.1}s state={}",
                worker.id,
                pid.as_raw(),
                now.duration_since(worker.started).as_secs_f64(),
                worker.accepted,
                seconds(cpu_time(*pid)),
                seconds(worker.cpu.used_in_window(window)),
                now.duration_since(worker.last_beat).as_secs_f64(),
                worker.state,
            );
        }
    }
}

/// A worker's connection budget: `connections` plus a random 0-10 %, so
/// that workers started together reach it at different times.
fn jittered(connections: u64) -> u64 {
    connections + rand::random_range(0..=connections / 10)
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (BACKOFF_MIN * factor).min(BACKOFF_MAX)
}

/// A CPU time for the logs: `1.23s`, or `-` when unknown.
fn seconds(time: Option<Duration>) -> String {
    time.map_or_else(|| "-".to_owned(), |t| format!("{:.2}s", t.as_secs_f64()))
}

/// A process's lifetime CPU time (user + system), from `/proc`; `None` when
/// it cannot be read (no `/proc`, or the process is gone).
fn cpu_time(pid: Pid) -> Option<Duration> {
    cpu_time_at(Path::new(PROC_ROOT), pid).ok()
}

/// As [`cpu_time`], from the procfs mounted at `proc_root`.
fn cpu_time_at(proc_root: &Path, pid: Pid) -> procfs::ProcResult<Duration> {
    let ticks = procfs::ticks_per_second().max(1);
    let stat = procfs::process::Process::new_with_root(proc_root.join(pid.as_raw().to_string()))
        .and_then(|process| process.stat())?;
    let ticks_used = stat.utime + stat.stime;
    Ok(Duration::from_secs(ticks_used / ticks)
        + Duration::from_nanos((ticks_used % ticks) * 1_000_000_000 / ticks))
}

/// Whether the CPU rule can work: the supervisor's own CPU time can be read
/// from the procfs at `proc_root` (the workers' then can too); the error
/// says why not.
fn cpu_time_readable(proc_root: &Path) -> procfs::ProcResult<()> {
    cpu_time_at(proc_root, Pid::this()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_cap() {
        assert_eq!(backoff(1), BACKOFF_MIN);
        assert_eq!(backoff(2), BACKOFF_MIN * 2);
        assert_eq!(backoff(4), BACKOFF_MIN * 8);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn budgets_get_up_to_a_tenth_more_and_small_ones_stay_exact() {
        assert_eq!(jittered(1), 1);
        assert_eq!(jittered(9), 9);
        let budgets: std::collections::BTreeSet<u64> = (0..200).map(|_| jittered(1000)).collect();
        assert!(
            budgets.iter().all(|b| (1000..=1100).contains(b)),
            "{budgets:?}"
        );
        assert!(budgets.len() > 10, "the budgets vary: {budgets:?}");
    }

    #[test]
    fn cpu_time_of_this_process_is_read_from_proc() {
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(Pid::this()).is_some_and(|cpu| cpu > Duration::ZERO));
        assert!(cpu_time_readable(Path::new(PROC_ROOT)).is_ok());
    }

    #[test]
    fn cpu_time_is_unavailable_without_a_procfs() {
        let missing = std::env::temp_dir().join(format!("ikc-no-proc-{}", std::process::id()));
        assert!(!missing.exists());
        assert!(cpu_time_at(&missing, Pid::this()).is_err());
        assert!(
            cpu_time_readable(&missing).is_err(),
            "the check reports unavailable"
        );
    }
}
