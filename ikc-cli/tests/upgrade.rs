//! Binary upgrade on SIGUSR1, with real processes and signals: the test
//! runs a copy of `ikc` from a directory of its own, installs a new binary
//! over it (a fresh copy, or a script that fails) the way an operator
//! does, and signals the running server.
//!
//! Under load, an upgrade must not surface a failed call to a client
//! other than one refused before it ran (which the client retries on a
//! new connection), nor refuse a connection; a new binary that exits at
//! once or never gets ready leaves the old generation serving.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ikc::server::client::Reconnect;
use ikc::{Client, ErrorKind, Value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::{Served, WAIT, children, is_live, processes, run, stat};

const POLL: Duration = Duration::from_millis(20);

/// `ikc serve` with two workers on a free port, babysat every 0.2 s.
const PREFORK: &[&str] = &[
    "--workers",
    "2",
    "--bind",
    "127.0.0.1:0",
    "--babysit",
    "0.2",
];

/// A directory holding the `ikc` binary that the server runs, and its
/// pid file; kills whatever generation still serves when dropped.
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new() -> Install {
        let install = Install {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        install.put(Path::new(env!("CARGO_BIN_EXE_ikc")));
        install
    }

    fn binary(&self) -> PathBuf {
        self.dir.path().join("ikc")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("ikc.pid")
    }

    /// Installs `program` as the binary, as `install` does: a new file
    /// renamed over the old one (the running one stays intact). `cp`
    /// writes it: a descriptor open for writing in this process could be
    /// inherited by a process another test forks at that moment, and
    /// executing the file would then fail with ETXTBSY.
    fn put(&self, program: &Path) {
        let staged = self.dir.path().join("ikc.new");
        let copied = Command::new("cp")
            .arg(program)
            .arg(&staged)
            .status()
            .expect("cp runs");
        assert!(copied.success(), "cp {} failed", program.display());
        std::fs::rename(&staged, self.binary()).expect("rename it into place");
    }

    /// Installs a shell script as the binary.
    fn put_script(&self, body: &str) {
        let script = self.dir.path().join("script");
        // Written by this process, and copied by `cp` before it runs.
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("write the script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make it executable");
        self.put(&script);
    }

    /// `ikc serve ARGS --pid-file ...`, run from the installed binary.
    fn serve(&self, args: &[&str]) -> Served {
        let mut command = Command::new(self.binary());
        command
            .arg("serve")
            .args(args)
            .arg("--pid-file")
            .arg(self.pid_file())
            .env_remove("RUST_LOG");
        Served::spawn(command)
    }

    /// The pid in the pid file, once there is one naming a live process.
    fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    /// Polls the pid file until it names a live process other than `not`.
    fn wait_pid(&self, not: Option<i32>) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(pid) = self.pid().filter(|pid| Some(*pid) != not) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "the pid file never named a new live process (not {not:?})"
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        // A new generation outlives the test's child: stop it and its
        // workers.
        if let Some(pid) = self.pid() {
            for child in children(pid).into_keys() {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|stat| is_live(&stat))
}

/// The children of `parent`, zombies too: one not reaped yet is listed.
fn children_and_zombies(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, stat)| stat.ppid == parent)
        .map(|(pid, _)| pid)
        .collect()
}

/// The binary `pid` runs, as `/proc/PID/exe` names it.
fn exe(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        thread::sleep(POLL);
    }
}

/// What callers and connectors saw while they loaded the server.
#[derive(Debug, Default)]
struct Load {
    answered: u64,
    /// Refused before they ran, and retried.
    retried: u64,
    /// Anything else: a call that may have run and failed, a wrong answer.
    failed: Vec<String>,
    connections: u64,
    refused: Vec<String>,
}

/// Calls `echo/say` from 4 callers and opens connections from a thread,
/// without pause, until [`Loader::finish`].
struct Loader {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    callers: Vec<tokio::task::JoinHandle<Load>>,
    connector: thread::JoinHandle<Load>,
}

impl Loader {
    fn start(addr: &str) -> Loader {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the callers");
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let callers = (0..4_i64)
            .map(|caller| {
                let (addr, stop, progress) =
                    (addr.to_owned(), Arc::clone(&stop), Arc::clone(&progress));
                runtime.spawn(call(addr, caller, stop, progress))
            })
            .collect();
        let connector = {
            let (addr, stop) = (addr.to_owned(), Arc::clone(&stop));
            thread::spawn(move || connect(&addr, &stop))
        };
        Loader {
            runtime,
            stop,
            progress,
            callers,
            connector,
        }
    }

    /// Waits until `n` more calls were answered.
    fn wait_answers(&self, n: u64) {
        let seen = self.progress.load(Ordering::Acquire);
        let deadline = Instant::now() + WAIT;
        while self.progress.load(Ordering::Acquire) < seen + n {
            assert!(Instant::now() < deadline, "calls stopped being answered");
            thread::sleep(POLL);
        }
    }

    fn finish(self) -> Load {
        self.stop.store(true, Ordering::Release);
        let mut load = self.connector.join().expect("the connector ends");
        for caller in self.callers {
            let seen = self
                .runtime
                .block_on(async { tokio::time::timeout(WAIT, caller).await })
                .expect("a caller hung")
                .expect("a caller panicked");
            load.answered += seen.answered;
            load.retried += seen.retried;
            load.failed.extend(seen.failed);
        }
        load
    }
}

async fn call(addr: String, caller: i64, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> Load {
    let client = Client::builder()
        .reconnect(Reconnect {
            min: Duration::from_millis(5),
            max: Duration::from_millis(50),
        })
        .connect(&addr)
        .await
        .expect("connect");
    let mut load = Load::default();
    let mut n = 0_i64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let arg = caller * 1_000_000 + n;
        // Each call is retried until it is answered, as long as it
        // provably did not run.
        loop {
            match client
                .call_timeout("echo/say", arg, Duration::from_secs(5))
                .await
            {
                Ok(value) if value == Value::from(arg) => {
                    load.answered += 1;
                    progress.fetch_add(1, Ordering::Release);
                }
                Ok(value) => load.failed.push(format!("{arg} answered with {value:?}")),
                Err(error)
                    if !error.may_have_run()
                        && matches!(
                            error.kind(),
                            ErrorKind::ShuttingDown | ErrorKind::Disconnected
                        ) =>
                {
                    load.retried += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                Err(error) => load.failed.push(format!("call {arg}: {error:?}")),
            }
            break;
        }
    }
    load
}

/// Opens and closes connections until `stop`, counting refusals.
fn connect(addr: &str, stop: &AtomicBool) -> Load {
    let mut load = Load::default();
    while !stop.load(Ordering::Acquire) {
        let connected = match addr.strip_prefix("unix:") {
            Some(path) => std::os::unix::net::UnixStream::connect(path).map(drop),
            None => std::net::TcpStream::connect(addr).map(drop),
        };
        match connected {
            Ok(()) => load.connections += 1,
            Err(error) => load.refused.push(error.to_string()),
        }
        // Pacing, not ordering: a few hundred connections a second.
        thread::sleep(Duration::from_millis(3));
    }
    load
}

/// `GET /metrics` from the endpoint at `addr`: the whole response.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint answers");
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ikc\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

/// Upgrades the server `args` describe while it is loaded, and checks
/// that the new generation serves from the new binary and nothing failed.
fn upgrade_under_load(args: &[&str]) {
    let install = Install::new();
    let mut args = args.to_vec();
    args.extend(["--metrics", "127.0.0.1:0"]);
    let mut old = install.serve(&args);
    let old_pid = install.wait_pid(None);
    assert_eq!(old_pid, i32::try_from(old.child.id()).unwrap());
    let metrics = old.wait_for_log("metrics on http://");
    let metrics = metrics
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address")
        .to_owned();
    let loader = Loader::start(&old.addr);
    loader.wait_answers(200);

    install.put(Path::new(env!("CARGO_BIN_EXE_ikc")));
    assert!(
        exe(old_pid).ends_with("(deleted)"),
        "the old generation runs the replaced file: {}",
        exe(old_pid)
    );
    old.signal(Signal::SIGUSR1);
    let new_pid = install.wait_pid(Some(old_pid));
    assert_eq!(
        exe(new_pid),
        install.binary().display().to_string(),
        "the new generation runs the binary on disk"
    );
    assert!(
        old.wait_exit().success(),
        "the old generation drains and exits 0"
    );
    // The load goes on, now served by the new generation alone.
    loader.wait_answers(200);
    let load = loader.finish();

    assert!(load.failed.is_empty(), "failed calls: {:?}", load.failed);
    assert!(
        load.refused.is_empty(),
        "refused connections: {:?}",
        load.refused
    );
    assert!(load.answered >= 400 && load.connections > 0, "{load:?}");
    assert!(run(&["ping", "--addr", &old.addr]).status.success());
    // The metrics endpoint was handed over too: the same address, served
    // by the new generation.
    let scraped = scrape(&metrics);
    assert!(
        scraped.starts_with("HTTP/1.1 200") && scraped.contains("ikc_connections_accepted_total"),
        "{scraped}"
    );

    // The pid file follows the generation that serves: the new one removes
    // it when it stops.
    kill(Pid::from_raw(new_pid), Signal::SIGTERM).expect("signal the new generation");
    wait_gone(new_pid);
    assert!(
        !install.pid_file().exists(),
        "the pid file is removed at the end"
    );
}

#[test]
fn sigusr1_upgrades_a_preforked_server_under_load_without_a_failed_call_or_refused_connection() {
    upgrade_under_load(PREFORK);
}

#[test]
fn sigusr1_upgrades_a_single_process_server_on_a_unix_socket_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    upgrade_under_load(&["--unix", path.to_str().unwrap()]);
    // The socket file passed to the new generation, which removed it.
    assert!(
        !path.exists(),
        "the last generation removes the socket file"
    );
}

/// Installs a binary that fails as `script` says, signals SIGUSR1, and
/// checks that the old generation logged `why` and still serves.
fn failed_upgrade_leaves_the_old_generation_serving(args: &[&str], script: &str, why: &str) {
    let install = Install::new();
    let mut old = install.serve(args);
    let old_pid = install.wait_pid(None);
    install.put_script(script);
    old.signal(Signal::SIGUSR1);
    let line = old.wait_for_log("upgrade failed; still serving");
    assert!(line.contains(why), "{line}");
    // The failed generation was reaped: the old generation's children
    // are its own workers, which run its binary.
    let binary = install.binary().display().to_string();
    let deadline = Instant::now() + WAIT;
    while children_and_zombies(old_pid)
        .iter()
        .any(|pid| !exe(*pid).starts_with(&binary))
    {
        assert!(
            Instant::now() < deadline,
            "the failed generation was not reaped: {:?}",
            children_and_zombies(old_pid)
        );
        thread::sleep(POLL);
    }
    for _ in 0..3 {
        let ping = run(&["ping", "--addr", &old.addr]);
        assert!(ping.status.success(), "{ping:?}");
    }
    assert_eq!(
        install.pid(),
        Some(old_pid),
        "the pid file still names the old one"
    );
    assert!(matches!(old.child.try_wait(), Ok(None)), "the old one runs");
    // It can still stop cleanly.
    old.signal(Signal::SIGTERM);
    assert!(old.wait_exit().success());
}

#[test]
fn an_upgrade_to_a_binary_that_exits_at_once_leaves_the_old_generation_serving() {
    failed_upgrade_leaves_the_old_generation_serving(
        PREFORK,
        "exit 7",
        "exited before it was ready",
    );
}

#[test]
fn an_upgrade_that_is_never_ready_is_stopped_and_the_old_generation_serves_on() {
    failed_upgrade_leaves_the_old_generation_serving(
        &["--bind", "127.0.0.1:0", "--upgrade-timeout", "0.5"],
        "exec sleep 60",
        "was not ready within 500ms",
    );
}
