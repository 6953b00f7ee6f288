//! `ikc serve --workers N` end to end (issue 6): the real binary runs in a
//! subprocess and is driven with real signals. The test process never
//! forks; it finds the supervisor's workers in `/proc` (a worker is a
//! process whose parent is the supervisor) and asks them with `ikc ping`.
//!
//! Every wait is bounded: a deadline and polling for process state, a
//! deadline on each log line. [`Prefork`] kills the supervisor and every
//! worker it ever saw when dropped, so a failed test leaks no process.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::{children, stat};

/// Upper bound for anything a test waits for; the happy path takes a small
/// fraction of it.
const WAIT: Duration = Duration::from_secs(15);
/// Pause between two looks at process state.
const POLL: Duration = Duration::from_millis(20);

fn ikc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ikc"));
    command.env_remove("RUST_LOG");
    command
}

/// Runs `ikc ARGS` to completion, within [`WAIT`].
fn run(args: &[&str]) -> Output {
    let mut child = ikc()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikc runs");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait works").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ikc {args:?} did not finish");
        }
        thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

/// `ikc ping --addr ADDR` (a new connection each time): the answering pid.
fn ping(addr: &str) -> Result<i32, String> {
    let output = run(&["ping", "--addr", addr]);
    if !output.status.success() {
        return Err(format!(
            "ping failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())?;
    answer["pid"]
        .as_i64()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| format!("no pid in {answer}"))
}

fn send(pid: i32, signal: Signal) {
    kill(Pid::from_raw(pid), signal).unwrap_or_else(|error| panic!("{signal} to {pid}: {error}"));
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

/// Seconds since midnight (UTC) of a log line's timestamp,
/// `2026-01-02T03:04:05.678901Z ...`.
fn timestamp(line: &str) -> f64 {
    let time = line
        .split_whitespace()
        .next()
        .and_then(|stamp| stamp.split('T').nth(1))
        .and_then(|time| time.strip_suffix('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    assert_eq!(parts.len(), 3, "bad timestamp in {line:?}");
    parts[0].mul_add(3600.0, parts[1].mul_add(60.0, parts[2]))
}

/// A running `ikc serve --workers N` (the supervisor) and its log.
struct Prefork {
    child: Child,
    pid: i32,
    /// The address of the supervisor's first "listening on" line.
    addr: String,
    lines: mpsc::Receiver<String>,
    log: RefCell<Vec<String>>,
    /// Every worker seen, with its start time, to kill leftovers on drop.
    seen: RefCell<BTreeMap<i32, u64>>,
}

impl Prefork {
    /// Starts `ikc serve ARGS` and waits until it listens.
    fn start(args: &[&str]) -> Prefork {
        let mut command = ikc();
        command.arg("serve").args(args);
        Prefork::spawn(command)
            .unwrap_or_else(|log| panic!("ikc serve {args:?} never listened:\n{log}"))
    }

    /// Spawns `command` (an `ikc serve`) and waits for its first "listening
    /// on" line: the supervisor's, logged before it forks (each worker logs
    /// one too). `Err(log)` when it ends before.
    fn spawn(mut command: Command) -> Result<Prefork, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ikc serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = i32::try_from(child.id()).expect("pid fits");
        let mut prefork = Prefork {
            child,
            pid,
            addr: String::new(),
            lines: rx,
            log: RefCell::default(),
            seen: RefCell::default(),
        };
        let Some(line) = prefork.find_log(0, WAIT, |line| line.contains("listening on ")) else {
            return Err(prefork.log_text());
        };
        let addr = line.split("listening on ").nth(1).expect("address follows");
        prefork.addr = addr.split_whitespace().next().expect("address").to_owned();
        Ok(prefork)
    }

    /// The first log line from index `from` on that matches, waiting for
    /// it at most `within`; `None` when it never comes (or stderr closed).
    fn find_log(
        &self,
        from: usize,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut next = from;
        loop {
            {
                let log = self.log.borrow();
                if let Some(line) = log.iter().skip(next).find(|line| wanted(line)) {
                    return Some(line.clone());
                }
                next = next.max(log.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.borrow_mut().push(line);
        }
    }

    /// As [`Prefork::find_log`] within [`WAIT`], failing the test with the
    /// log when the line never comes.
    fn wait_log(&self, from: usize, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        self.find_log(from, WAIT, wanted).unwrap_or_else(|| {
            panic!(
                "the supervisor never logged {what} within {WAIT:?}; log:\n{}",
                self.log_text()
            )
        })
    }

    /// Index of the next log line: every line read so far is before it, so
    /// what is logged from now on is at or after it.
    fn mark(&self) -> usize {
        let mut log = self.log.borrow_mut();
        log.extend(self.lines.try_iter());
        log.len()
    }

    fn log_text(&self) -> String {
        self.mark();
        self.log.borrow().join("\n")
    }

    fn signal(&self, signal: Signal) {
        send(self.pid, signal);
    }

    /// The supervisor's live workers now.
    fn workers(&self) -> BTreeSet<i32> {
        let now = children(self.pid);
        self.seen.borrow_mut().extend(&now);
        now.into_keys().collect()
    }

    /// Polls the workers until `done` holds for them, within [`WAIT`].
    fn wait_workers(&self, what: &str, done: impl Fn(&BTreeSet<i32>) -> bool) -> BTreeSet<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let workers = self.workers();
            if done(&workers) {
                return workers;
            }
            assert!(
                Instant::now() < deadline,
                "never {what} within {WAIT:?}; workers now {workers:?}; log:\n{}",
                self.log_text()
            );
            thread::sleep(POLL);
        }
    }

    /// Whether worker `pid` (seen before) no longer exists.
    fn gone(&self, pid: i32) -> bool {
        let seen = self.seen.borrow().get(&pid).copied();
        match stat(pid) {
            None => true,
            Some(stat) if stat.state == 'Z' => true,
            // The pid was reused by another process.
            Some(stat) => seen.is_some_and(|start| start != stat.start),
        }
    }

    /// SIGUSR2, then the per-worker lines of the status it logs.
    fn status(&self) -> Vec<String> {
        let from = self.mark();
        self.signal(Signal::SIGUSR2);
        let header = self.wait_log(from, "a status after SIGUSR2", |line| {
            line.contains(" status workers=")
        });
        let count: usize = field(&header, "workers")
            .and_then(|n| n.parse().ok())
            .expect("worker count in the status line");
        // Workers log to the same stderr, so keep only the status lines.
        let mut rows = Vec::new();
        let mut next = from;
        while rows.len() < count {
            let row = self.wait_log(next, "a worker status line", |line| {
                line.contains("heartbeat_age=")
            });
            next = self
                .log
                .borrow()
                .iter()
                .position(|line| *line == row)
                .expect("found above")
                + 1;
            rows.push(row);
        }
        rows
    }

    /// SIGUSR2, then the status header it logs (workers, target,
    /// degraded...).
    fn status_header(&self) -> String {
        let from = self.mark();
        self.signal(Signal::SIGUSR2);
        self.wait_log(from, "a status after SIGUSR2", |line| {
            line.contains(" status workers=")
        })
    }

    /// Polls the status until exactly `n` workers run, none of them in
    /// `not` (workers killed but maybe not reaped yet), each at least `age`
    /// seconds old; their pids.
    fn wait_running_since(&self, n: usize, not: &BTreeSet<i32>, age: f64) -> BTreeSet<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows: Vec<String> = self
                .status()
                .into_iter()
                .filter(|row| {
                    field(row, "pid")
                        .and_then(|p| p.parse().ok())
                        .is_some_and(|pid: i32| !not.contains(&pid))
                })
                .collect();
            let old_enough = |row: &String| {
                field(row, "age")
                    .and_then(|a| a.strip_suffix('s')?.parse::<f64>().ok())
                    .is_some_and(|a| a >= age)
            };
            if rows.len() == n
                && rows
                    .iter()
                    .all(|row| row.contains("state=running") && old_enough(row))
            {
                self.workers();
                return rows
                    .iter()
                    .map(|row| field(row, "pid").and_then(|p| p.parse().ok()).expect("pid"))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "never {n} running workers {age}s old within {WAIT:?}; last status {rows:?}"
            );
            thread::sleep(POLL);
        }
    }

    /// Index of the first log line from `from` on equal to `line`.
    fn index_of(&self, from: usize, line: &str) -> usize {
        self.log
            .borrow()
            .iter()
            .skip(from)
            .position(|l| l == line)
            .expect("a line found in the log")
            + from
    }

    /// Polls the status (SIGUSR2) until exactly `n` workers run (they
    /// reported ready); their pids.
    fn wait_running(&self, n: usize) -> BTreeSet<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.status();
            if rows.len() == n && rows.iter().all(|row| row.contains("state=running")) {
                let pids: BTreeSet<i32> = rows
                    .iter()
                    .map(|row| field(row, "pid").and_then(|p| p.parse().ok()).expect("pid"))
                    .collect();
                self.workers();
                return pids;
            }
            assert!(
                Instant::now() < deadline,
                "never {n} running workers within {WAIT:?}; last status {rows:?}"
            );
            thread::sleep(POLL);
        }
    }

    /// Waits for the supervisor to exit, within [`WAIT`].
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the supervisor did not exit within {WAIT:?}; log:\n{}",
                self.log_text()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Prefork {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Freeze the supervisor first, so it forks no replacement while
            // its workers are killed.
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGSTOP);
            let deadline = Instant::now() + Duration::from_secs(2);
            while stat(self.pid).is_some_and(|stat| !matches!(stat.state, 'T' | 't' | 'Z' | 'X'))
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(2));
            }
            for pid in children(self.pid).into_keys() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // Workers seen earlier that may have outlived the supervisor. SIGKILL
        // also ends a worker a test stopped with SIGSTOP.
        for (pid, start) in self.seen.borrow().iter() {
            if stat(*pid).is_some_and(|stat| stat.start == *start) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--workers 2` on 127.0.0.1:0, babysitting every 0.2 s, plus `extra`.
fn two_workers(extra: &[&str]) -> Prefork {
    let mut args = vec![
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
    ];
    args.extend_from_slice(extra);
    Prefork::start(&args)
}

#[test]
fn workers_answer_and_the_supervisor_never_accepts() {
    let server = two_workers(&[]);
    let mut answered = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    // Each ping is a new connection; whichever worker accepts it answers.
    while answered.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {answered:?} answered within {WAIT:?}"
        );
        let pid = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
        assert_ne!(pid, server.pid, "the supervisor never accepts");
        assert_eq!(
            stat(pid).map(|stat| stat.ppid),
            Some(server.pid),
            "pid {pid} that answered is a worker of the supervisor"
        );
        answered.insert(pid);
    }
    assert_eq!(server.workers(), answered, "exactly the two workers");
}

#[test]
fn killed_worker_is_replaced_and_the_signal_is_logged() {
    let server = two_workers(&[]);
    let before = server.wait_workers("2 workers", |w| w.len() == 2);
    let victim = *before.first().expect("a worker");
    send(victim, Signal::SIGKILL);

    let after = server.wait_workers("a replacement for the killed worker", |w| {
        w.len() == 2 && !w.contains(&victim)
    });
    assert_eq!(after.difference(&before).count(), 1, "one new worker");
    let line = server.wait_log(0, "the killed worker's end", |line| {
        line.contains(&format!(" pid={victim} ")) && line.contains("signal SIGKILL")
    });
    assert!(line.contains("worker died"), "{line}");
    let pid = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    assert!(after.contains(&pid), "{pid} not in {after:?}");
}

#[test]
fn worker_is_recycled_after_its_connection_budget() {
    let server = Prefork::start(&[
        "--workers",
        "1",
        "--connections",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
    ]);
    let first = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    let second = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(first, second, "one connection per worker");
    for pid in [first, second] {
        assert_ne!(pid, server.pid, "the supervisor never accepts");
    }
    let line = server.wait_log(0, "the first worker recycled", |line| {
        line.contains(&format!(" pid={first} ")) && line.contains("reason=recycled")
    });
    assert!(line.contains("exit code 0"), "{line}");
    // The second one goes the same way once its connection closed.
    server.wait_log(0, "the second worker recycled", |line| {
        line.contains(&format!(" pid={second} ")) && line.contains("reason=recycled")
    });
    server.wait_workers("a third worker", |w| {
        w.len() == 1 && !w.contains(&first) && !w.contains(&second)
    });
}

#[test]
fn worker_at_its_budget_is_replaced_at_once_and_drains_its_clients_at_the_deadline() {
    let server = Prefork::start(&[
        "--workers",
        "1",
        "--connections",
        "1",
        "--recycle-deadline",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
    ]);
    let first = server.wait_running(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the long-lived client");
    // A client that stays connected uses the only worker's whole budget.
    let client = runtime
        .block_on(ikc::Client::connect(&server.addr))
        .expect("the long-lived client connects");
    let line = server.wait_log(0, "the worker's used-up budget", |line| {
        line.contains("used its connection budget")
    });
    let old: i32 = field(&line, "pid")
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert!(first.contains(&old), "{old} not in {first:?}");
    // A second client is served by the replacement, within ping's bound,
    // while the first one is still connected.
    let pid = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(pid, old, "the recycling worker accepts no more");
    assert!(!client.is_closed(), "the first client keeps its connection");
    // At the recycle deadline the old worker tells its client to go away
    // and exits.
    runtime
        .block_on(async { tokio::time::timeout(WAIT, client.closed()).await })
        .expect("the long-lived client is let go after the recycle deadline");
    let end = server.wait_log(0, "the old worker's end", |line| {
        line.contains(&format!(" pid={old} ")) && line.contains("worker exited")
    });
    assert!(
        end.contains("exit code 0") && end.contains("reason=recycled"),
        "{end}"
    );
}

#[test]
fn remote_shutdown_stops_the_whole_prefork_server() {
    let mut server = two_workers(&["--allow-remote-shutdown"]);
    let workers = server.wait_running(2);
    let from = server.mark();
    // The worker that takes the call may close the connection before it
    // answers: what matters is what the supervisor does.
    let _ = run(&["call", "--addr", &server.addr, "IKC/shutdown"]);
    let status = server.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", server.log_text());
    server.wait_log(from, "the stop", |line| {
        line.contains("stopping on IKC/shutdown")
    });
    for pid in &workers {
        let line = server.wait_log(0, "each worker's end", |line| {
            line.contains(&format!(" pid={pid} ")) && line.contains("worker exited")
        });
        assert!(
            line.contains("exit code 0") && line.contains("reason=drained"),
            "{line}"
        );
    }
    let log = server.log_text();
    let after: Vec<&str> = log.lines().skip(from).collect();
    assert!(
        !after.iter().any(|line| line.contains("worker started")),
        "no worker replaced after IKC/shutdown:\n{log}"
    );
}

/// Stops `server` with `signal` and checks the graceful end: status 0, each
/// worker drained with exit code 0, none left.
fn assert_graceful_stop(mut server: Prefork, signal: Signal) {
    let workers = server.wait_running(2);
    assert_eq!(server.workers(), workers);
    server.signal(signal);
    let status = server.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", server.log_text());
    server.wait_log(0, "all workers stopped", |line| {
        line.contains("all workers stopped")
    });
    for pid in &workers {
        let line = server.wait_log(0, "each worker's end", |line| {
            line.contains(&format!(" pid={pid} ")) && line.contains("worker exited")
        });
        assert!(
            line.contains("exit code 0") && line.contains("reason=drained"),
            "{line}"
        );
        assert!(server.gone(*pid), "worker {pid} still runs");
    }
}

#[test]
fn sigint_drains_every_worker_and_exits_0() {
    let server = two_workers(&[]);
    assert_graceful_stop(server, Signal::SIGINT);
}

#[test]
fn sigterm_on_a_unix_socket_drains_and_removes_the_socket_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ikc.sock");
    let path_text = path.to_str().expect("utf-8 path");
    let server = two_workers(&["--unix", path_text]);
    assert_eq!(server.addr, format!("unix:{path_text}"));
    let before = server.wait_running(2);
    let pid = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    assert!(before.contains(&pid));

    // Workers that drain (here: all of them, at a reload) leave the
    // supervisor's socket file alone.
    server.signal(Signal::SIGHUP);
    server.wait_workers("every worker replaced", |w| {
        w.len() == 2 && w.is_disjoint(&before)
    });
    for pid in &before {
        server.wait_log(0, "the old workers drained", |line| {
            line.contains(&format!(" pid={pid} ")) && line.contains("reason=drained")
        });
    }
    assert!(path.exists(), "the socket file outlives its old workers");
    let output = run(&["call", "--addr", &server.addr, "echo/say", r#"{"x":[1]}"#]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        r#"{"x":[1]}"#
    );

    assert_graceful_stop(server, Signal::SIGTERM);
    assert!(!path.exists(), "socket file removed at shutdown");
}

#[test]
fn sigterm_while_workers_start_still_stops_at_once() {
    // The default grace period (30 s) is longer than WAIT: a worker that
    // missed its SIGTERM would hold the shutdown until it is killed.
    let mut server = two_workers(&[]);
    server.wait_log(0, "the second worker started", |line| {
        line.contains("worker started") && line.contains("worker=2")
    });
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status}");
    let log = server.log_text();
    assert!(!log.contains("killed after the grace period"), "{log}");
}

#[test]
fn sigusr2_logs_one_status_line_per_worker() {
    let server = two_workers(&[]);
    let workers = server.wait_running(2);
    let rows = server.status();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        for key in ["pid", "age", "connections", "cpu", "heartbeat_age", "state"] {
            assert!(field(row, key).is_some(), "no {key}= in {row:?}");
        }
        let pid: i32 = field(row, "pid").and_then(|p| p.parse().ok()).expect("pid");
        assert!(workers.contains(&pid), "{pid} not in {workers:?}");
    }
    // A served connection shows up in the counts with the next heartbeat.
    ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    wait_connections(&server, 1);
}

/// One `ikc ping` of the pinger thread.
#[derive(Debug)]
struct Pinged {
    started: Instant,
    answer: Result<i32, String>,
}

/// Sums `connections=` over the status lines until it reaches `n`.
fn wait_connections(server: &Prefork, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let served: u64 = server
            .status()
            .iter()
            .filter_map(|row| field(row, "connections")?.parse::<u64>().ok())
            .sum();
        if served >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} connections in the status (heartbeats carry the count)"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_replaces_every_worker_while_pings_keep_working() {
    let server = two_workers(&["--grace", "1"]);
    let before = server.wait_running(2);
    // A client that never says hello keeps the old worker that took it
    // draining until the grace period ends, so the reload lasts about a
    // second, and pings go on meanwhile.
    let _slow = std::net::TcpStream::connect(&server.addr).expect("connect");
    wait_connections(&server, 1);

    // Ping without pause from another thread, before, during and after the
    // reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, pings) = mpsc::channel::<Pinged>();
    let pinger = {
        let addr = server.addr.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let answer = ping(&addr);
                if tx.send(Pinged { started, answer }).is_err() {
                    break;
                }
            }
        })
    };
    let mut results = vec![pings.recv_timeout(WAIT).expect("a first ping")];

    let hup = Instant::now();
    server.signal(Signal::SIGHUP);
    let after = server.wait_workers("every worker replaced", |w| {
        w.len() == 2 && w.is_disjoint(&before)
    });
    for pid in &before {
        server.wait_log(0, "the old workers drained", |line| {
            line.contains(&format!(" pid={pid} ")) && line.contains("reason=drained")
        });
    }
    let done = Instant::now();
    // Let the pinger land a few pings on the new workers too.
    let deadline = Instant::now() + WAIT;
    while results.iter().filter(|p| p.started > done).count() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        results.push(pings.recv_timeout(left).expect("pings go on"));
    }
    stop.store(true, Ordering::Release);
    results.extend(pings.iter());
    pinger.join().expect("the pinger ends");

    let log = server.log_text();
    let during: Vec<&Pinged> = results
        .iter()
        .filter(|p| p.started > hup && p.started < done)
        .collect();
    assert!(
        during
            .iter()
            .any(|p| p.answer.as_ref().is_ok_and(|pid| after.contains(pid))),
        "no new worker answered while the reload went on: {during:?}"
    );
    for pinged in &results {
        match &pinged.answer {
            Ok(pid) if pinged.started > done => assert!(after.contains(pid), "{pinged:?}"),
            Ok(pid) => assert!(
                before.contains(pid) || after.contains(pid),
                "{pinged:?} not from {before:?} or {after:?}"
            ),
            // A draining worker refuses what it did not run, and `ikc ping`
            // retries that on a new connection: no ping may fail.
            Err(error) => panic!("ping failed: {pinged:?}: {error}; log:\n{log}"),
        }
    }
}

#[test]
fn sigttin_adds_a_worker_and_sigttou_removes_one() {
    let server = two_workers(&[]);
    let before = server.wait_workers("2 workers", |w| w.len() == 2);
    server.signal(Signal::SIGTTIN);
    let more = server.wait_workers("a third worker", |w| w.len() == 3);
    assert!(before.is_subset(&more));
    server.wait_log(0, "the new target", |line| {
        line.contains("one worker more") && line.contains("target=3")
    });

    server.signal(Signal::SIGTTOU);
    let fewer = server.wait_workers("back to 2 workers", |w| w.len() == 2);
    assert!(fewer.is_subset(&more));
    server.wait_log(0, "the new target", |line| {
        line.contains("one worker less") && line.contains("target=2")
    });
    server.wait_log(0, "the retired worker drained", |line| {
        line.contains("worker exited") && line.contains("reason=drained")
    });
    // It stays at 2: the retired worker is not replaced.
    let rows = server.status();
    assert_eq!(rows.len(), 2, "{rows:?}");
}

#[test]
fn hung_worker_is_stopped_as_a_rogue_and_replaced() {
    let server = two_workers(&["--hang-timeout", "1"]);
    let before = server.wait_running(2);
    let victim = *before.first().expect("a worker");
    // A stopped process's runtime no longer beats: it is hung.
    send(victim, Signal::SIGSTOP);

    let rogue = server.wait_log(0, "the stopped worker as a rogue", |line| {
        line.contains("rogue worker") && line.contains(&format!(" pid={victim} "))
    });
    assert!(rogue.contains("hung"), "{rogue}");
    // One signal per step: SIGINT, SIGTERM, then SIGKILL ends it.
    for signal in ["SIGINT", "SIGTERM", "SIGKILL"] {
        server.wait_log(0, "the escalation", |line| {
            line.contains("signalling worker")
                && line.contains(&format!(" pid={victim} "))
                && line.contains(&format!("signal={signal}"))
        });
    }
    let end = server.wait_log(0, "the rogue's end", |line| {
        line.contains("worker exited") && line.contains(&format!(" pid={victim} "))
    });
    assert!(
        end.contains("signal SIGKILL") && end.contains("reason=rogue (hung)"),
        "{end}"
    );
    let after = server.wait_workers("a replacement for the rogue", |w| {
        w.len() == 2 && !w.contains(&victim)
    });
    assert!(server.gone(victim));
    let pid = ping(&server.addr).unwrap_or_else(|error| panic!("{error}"));
    assert!(after.contains(&pid), "{pid} not in {after:?}");
}

/// `ikc bench` against `addr` for `secs` seconds, with no warm-up.
fn bench(addr: &str, secs: &str) {
    // Its answer does not matter: the worker may stop in the middle.
    let _ = run(&["bench", "--addr", addr, "--secs", secs, "--warmup", "0"]);
}

/// A process's lifetime CPU time (utime + stime of `/proc/PID/stat`).
fn cpu_time(pid: i32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the last ')': field 3 (state) first, so utime (14) and stime
    // (15) are the 12th and 13th.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

#[test]
fn spinning_worker_is_asked_to_stop_and_replaced() {
    // A worker under continuous load uses well over 10 % of a CPU in a
    // one-second window (about a third here, beside the load's client). It is not hung, so the first signal of the
    // escalation (SIGINT) already drains it.
    let server = Prefork::start(&[
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
        "--cpu-window",
        "1",
        "--cpu-limit",
        "0.1",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let addr = server.addr.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                bench(&addr, "1");
            }
        })
    };
    let rogue = server.find_log(0, WAIT, |line| {
        line.contains("rogue worker") && line.contains("cpu limit")
    });
    stop.store(true, Ordering::Release);
    load.join().expect("the load ends");
    let rogue = rogue.unwrap_or_else(|| panic!("never a cpu rogue; log:\n{}", server.log_text()));
    assert_eq!(field(&rogue, "window"), Some("1s"), "{rogue}");
    let victim: i32 = field(&rogue, "pid")
        .and_then(|p| p.parse().ok())
        .expect("pid");
    server.wait_log(0, "the SIGINT", |line| {
        line.contains("signalling worker")
            && line.contains(&format!(" pid={victim} "))
            && line.contains("signal=SIGINT")
    });
    let end = server.wait_log(0, "the rogue's end", |line| {
        line.contains("worker exited") && line.contains(&format!(" pid={victim} "))
    });
    assert!(
        end.contains("exit code 0") && end.contains("reason=rogue (cpu limit)"),
        "{end}"
    );
    server.wait_workers("a replacement for the rogue", |w| {
        w.len() == 1 && !w.contains(&victim)
    });
}

#[test]
fn worker_that_works_in_bursts_past_the_cpu_limit_in_all_is_no_rogue() {
    // At most 0.3 s of CPU in any 1 s window. Each burst of load lasts
    // 0.25 s (the worker runs one thread: at most that much CPU, about a
    // third of it here) and the pauses between bursts are longer than a
    // window and a babysit interval, so no window holds more than one
    // burst. In all, the worker uses twice the limit: lifetime counting
    // would have stopped it.
    let limit = Duration::from_millis(300);
    let server = Prefork::start(&[
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
        "--cpu-window",
        "1",
        "--cpu-limit",
        "0.3",
    ]);
    let worker = *server.wait_running(1).first().expect("a worker");
    let deadline = Instant::now() + 6 * WAIT;
    let mut bursts = 0;
    let used = || {
        cpu_time(worker)
            .unwrap_or_else(|| panic!("worker {worker} is gone; log:\n{}", server.log_text()))
    };
    while used() < 2 * limit {
        assert!(
            Instant::now() < deadline,
            "the worker used only {:?} of CPU after {bursts} bursts; log:\n{}",
            used(),
            server.log_text()
        );
        bench(&server.addr, "0.25");
        bursts += 1;
        // The pause is the scenario (the worker idles), not an ordering.
        thread::sleep(Duration::from_millis(1_600));
    }
    // Let the babysitter judge the last burst's window too.
    thread::sleep(Duration::from_millis(1_500));
    let rows = server.status();
    let log = server.log_text();
    assert!(!log.contains("rogue worker"), "{log}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        field(&rows[0], "pid").and_then(|p| p.parse().ok()),
        Some(worker),
        "the same worker serves: {rows:?}"
    );
    assert!(rows[0].contains("state=running"), "{rows:?}");
    assert_eq!(server.workers(), BTreeSet::from([worker]));
}

#[test]
fn bind_error_exits_3_before_forking() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("address").to_string();
    let output = run(&["serve", "--workers", "2", "--bind", &addr]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("address in use") && stderr.contains(&addr),
        "{stderr}"
    );
    assert!(!stderr.contains("worker started"), "{stderr}");
}

/// `ikc serve ARGS` under `ulimit -n LIMIT` (through `sh`, as the test
/// process must not fork or change its own limits).
fn serve_with_fd_limit(limit: u32, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n "$1" || exit 99; shift; exec "$@""#)
        .arg("sh")
        .arg(limit.to_string())
        .arg(env!("CARGO_BIN_EXE_ikc"))
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG");
    command
}

#[test]
fn workers_that_cannot_be_started_are_retried_with_backoff() {
    // A worker needs descriptors the supervisor must open before the fork
    // (its heartbeat pipe, its copy of the listener). Under the lowest file
    // limit at which the supervisor can listen at all, every attempt fails:
    // that must not turn into a hot loop.
    let args = [
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
    ];
    let mut server = (4..=64)
        .find_map(|limit| Prefork::spawn(serve_with_fd_limit(limit, &args)).ok())
        .expect("the supervisor listens under some file limit");

    let mut failures = Vec::new();
    for n in 1..=4 {
        let line = server.wait_log(0, "a failed start", |line| {
            line.contains("cannot prepare a worker")
                && field(line, "failures") == Some(&n.to_string())
        });
        failures.push(line);
    }
    assert!(
        failures[0].contains("pause=100ms") && failures[3].contains("pause=800ms"),
        "the pause doubles: {failures:#?}"
    );
    // Attempts 2, 3 and 4 came after pauses of 100, 200 and 400 ms.
    let spread = timestamp(&failures[3]) - timestamp(&failures[0]);
    let spread = if spread < 0.0 {
        spread + 86_400.0
    } else {
        spread
    };
    assert!(
        spread >= 0.65,
        "attempts only {spread:.3}s apart: {failures:#?}"
    );
    assert!(server.workers().is_empty());
    let log = server.log_text();
    assert!(!log.contains("worker started"), "{log}");

    let status = server.status();
    assert!(status.is_empty(), "{status:?}");
    assert!(
        server.log_text().contains("degraded=true"),
        "the status says so"
    );
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status}");
}

/// Seconds from log line `a` to log line `b`.
fn seconds_between(a: &str, b: &str) -> f64 {
    let spread = timestamp(b) - timestamp(a);
    if spread < 0.0 {
        spread + 86_400.0
    } else {
        spread
    }
}

#[test]
fn worker_that_dies_before_it_is_ready_is_restarted_with_backoff() {
    // Each worker reads the secret file as it starts; once the file is gone,
    // every new worker exits before it reports ready.
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a shared secret").expect("write the secret");
    let server = Prefork::start(&[
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--babysit",
        "0.2",
        "--secret-file",
        secret.to_str().expect("utf-8 path"),
    ]);
    let first = *server.wait_running(1).first().expect("a worker");
    std::fs::remove_file(&secret).expect("remove the secret");
    let from = server.mark();
    send(first, Signal::SIGKILL);

    let mut failures = Vec::new();
    for n in 1..=4 {
        let line = server.wait_log(from, "a crash at start-up", |line| {
            line.contains("worker crashed at start-up; backing off")
                && field(line, "failures") == Some(&n.to_string())
        });
        failures.push(line);
    }
    assert!(
        failures[0].contains("pause=100ms") && failures[3].contains("pause=800ms"),
        "the pause doubles: {failures:#?}"
    );
    // Attempts 2, 3 and 4 came after pauses of 100, 200 and 400 ms.
    let spread = seconds_between(&failures[0], &failures[3]);
    assert!(
        spread >= 0.65,
        "attempts only {spread:.3}s apart: {failures:#?}"
    );
    // No hot loop: one start per failure, each of them dead before ready.
    let last = server.index_of(from, &failures[3]);
    let log: Vec<String> = server.log.borrow()[from..last].to_vec();
    let starts = log.iter().filter(|l| l.contains("worker started")).count();
    assert_eq!(starts, 4, "{log:#?}");
    let crashes = log
        .iter()
        .filter(|l| l.contains("worker died") && l.contains("exit code 1"))
        .count();
    assert_eq!(crashes, 4, "{log:#?}");
    let header = server.status_header();
    assert_eq!(field(&header, "degraded"), Some("true"), "{header}");

    // With the secret back, the next worker starts and the failures are
    // forgotten.
    std::fs::write(&secret, "a shared secret").expect("write the secret");
    let after = server.wait_running(1);
    assert!(!after.contains(&first));
    let header = server.status_header();
    assert_eq!(field(&header, "start_failures"), Some("0"), "{header}");
}

#[test]
fn workers_that_keep_dying_after_start_up_are_a_crash_loop_that_backs_off_and_ends() {
    // Four deaths within 8 s are a crash loop here.
    let server = two_workers(&["--crash-deaths", "4", "--crash-window", "8"]);
    let mut killed = BTreeSet::new();
    // Two rounds: both workers die once they have run for over a second
    // (ready, well past start-up).
    for _ in 0..2 {
        let pids = server.wait_running_since(2, &killed, 1.2);
        for pid in &pids {
            send(*pid, Signal::SIGKILL);
        }
        killed.extend(pids);
    }
    let first = server.wait_log(0, "the crash loop", |line| line.contains("crash loop:"));
    assert_eq!(field(&first, "deaths"), Some("4"), "{first}");
    assert_eq!(field(&first, "pause"), Some("100ms"), "{first}");

    // One death more: the pause doubles, and the next start waits for it.
    let victim = *server
        .wait_running_since(2, &killed, 0.0)
        .first()
        .expect("a worker");
    send(victim, Signal::SIGKILL);
    killed.insert(victim);
    let second = server.wait_log(0, "the crash loop going on", |line| {
        line.contains("crash loop:") && field(line, "deaths") == Some("5")
    });
    assert_eq!(field(&second, "pause"), Some("200ms"), "{second}");
    let next = server.index_of(0, &second);
    let started = server.wait_log(next, "the next start", |line| {
        line.contains("worker started")
    });
    let waited = seconds_between(&second, &started);
    assert!(waited >= 0.19, "started {waited:.3}s after the death");
    let header = server.status_header();
    for (key, value) in [
        ("degraded", "true"),
        ("crash_loop", "true"),
        ("deaths", "5"),
    ] {
        assert_eq!(field(&header, key), Some(value), "{header}");
    }

    // No more deaths: once they age out of the window, the loop is over.
    let deadline = Instant::now() + Duration::from_secs(8) + WAIT;
    loop {
        let header = server.status_header();
        if field(&header, "degraded") == Some("false") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still degraded: {header}; log:\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(200));
    }
    server.wait_log(0, "the end of the crash loop", |line| {
        line.contains("crash loop over")
    });
    server.wait_running_since(2, &killed, 0.0);
}

#[test]
fn workers_killed_in_a_loop_under_load_leave_no_call_hanging() {
    use ikc::server::client::Reconnect;
    use ikc::{Client, ErrorKind, Value};

    let server = two_workers(&[]);
    server.wait_workers("2 workers", |w| w.len() == 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the callers");
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let callers: Vec<_> = (0..4_i64)
        .map(|caller| {
            let addr = server.addr.clone();
            let stop = Arc::clone(&stop);
            let progress = Arc::clone(&progress);
            runtime.spawn(async move {
                let reconnect = Reconnect {
                    min: Duration::from_millis(10),
                    max: Duration::from_millis(100),
                };
                let client = Client::builder()
                    .reconnect(reconnect)
                    .connect(&addr)
                    .await
                    .expect("connect");
                let (mut answered, mut broken, mut wrong) = (0_u64, 0_u64, Vec::new());
                let mut n = 0_i64;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let arg = caller * 1_000_000 + n;
                    // A call that hangs shows as Timeout, well before the
                    // test's own bound.
                    match client
                        .call_timeout("echo/say", arg, Duration::from_secs(3))
                        .await
                    {
                        Ok(value) if value == Value::from(arg) => {
                            answered += 1;
                            progress.fetch_add(1, Ordering::Release);
                        }
                        Ok(value) => wrong.push(format!("{arg} answered with {value:?}")),
                        Err(error)
                            if matches!(
                                error.kind(),
                                ErrorKind::Disconnected | ErrorKind::ShuttingDown
                            ) =>
                        {
                            broken += 1;
                            // Give the reconnect a moment instead of spinning.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(error) => wrong.push(error.to_string()),
                    }
                }
                (answered, broken, wrong)
            })
        })
        .collect();

    // Kill a worker five times while the callers call; each time the
    // supervisor must restore two workers, and calls must have been answered
    // since the last kill (the load goes on through the kills).
    for _ in 0..5 {
        let seen = progress.load(Ordering::Acquire);
        let deadline = Instant::now() + WAIT;
        while progress.load(Ordering::Acquire) < seen + 50 {
            assert!(Instant::now() < deadline, "calls stopped being answered");
            thread::sleep(POLL);
        }
        let before = server.wait_workers("2 workers", |w| w.len() == 2);
        let victim = *before.first().expect("a worker");
        send(victim, Signal::SIGKILL);
        server.wait_workers("a replacement", |w| w.len() == 2 && !w.contains(&victim));
    }
    stop.store(true, Ordering::Release);

    let (mut answered, mut broken) = (0, 0);
    for caller in callers {
        let (ok, failed, wrong) = runtime
            .block_on(async { tokio::time::timeout(WAIT, caller).await })
            .expect("a caller hung")
            .expect("a caller panicked");
        assert!(
            wrong.is_empty(),
            "calls ended otherwise than answered or Disconnected: {wrong:?}"
        );
        answered += ok;
        broken += failed;
    }
    assert!(answered > 0, "no call was answered ({broken} broken)");
    server.wait_workers("2 workers at the end", |w| w.len() == 2);
}
