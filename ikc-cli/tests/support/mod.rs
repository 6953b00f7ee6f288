//! Running the `ikc` binary from tests: `ikc serve` in a subprocess
//! ([`Served`], killed when dropped) and one-shot commands ([`run`]),
//! every wait bounded; what `/proc` says about processes ([`stat`],
//! [`children`]).

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn ikc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ikc"));
    command.env_remove("RUST_LOG");
    command
}

/// A running `ikc serve`; killed when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: String,
    log: mpsc::Receiver<String>,
    /// Lines read so far, for a later [`Served::wait_for_log`] looking for
    /// one that came before the line an earlier wait was after.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Served {
    pub(crate) fn start(args: &[&str]) -> Served {
        let mut command = ikc();
        command.arg("serve").args(args);
        Served::spawn(command)
    }

    /// Spawns `command` (an `ikc serve`) and waits until it listens.
    pub(crate) fn spawn(mut command: Command) -> Served {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ikc serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            addr: String::new(),
            log: rx,
            seen: std::cell::RefCell::default(),
        };
        let line = served.wait_for_log("listening on ");
        let addr = line.split("listening on ").nth(1).expect("address follows");
        served.addr = addr.split_whitespace().next().expect("address").to_owned();
        served
    }

    /// The first line the server logged (so far or within [`WAIT`]) that
    /// contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        if let Some(line) = self.seen.borrow().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.borrow_mut().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(error) => panic!("server never logged {needle:?}: {error}"),
            }
        }
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).expect("signal delivered");
    }

    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run(args: &[&str]) -> Output {
    let mut command = ikc();
    command.args(args);
    output(command)
}

/// Runs `command` to its end (bounded) and takes its output.
pub(crate) fn output(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikc runs");
    finish(child, &format!("{command:?}"))
}

/// Waits (bounded) for `child`, started with its output piped, and takes
/// its output.
pub(crate) fn finish(mut child: Child, what: &str) -> Output {
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().expect("wait works").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) ppid: i32,
    /// Start time in clock ticks after boot: with the pid, it names one
    /// process even if the pid is reused.
    pub(crate) start: u64,
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, may hold spaces and parentheses; the other
    // fields follow its last ')': state (3), ppid (4), ... starttime (22).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process, with its `/proc/PID/stat`.
pub(crate) fn processes() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Whether `stat` is of a process that runs (not a zombie).
pub(crate) fn is_live(stat: &Stat) -> bool {
    !matches!(stat.state, 'Z' | 'X')
}

/// Live (not zombie) children of `parent`, with their start times.
pub(crate) fn children(parent: i32) -> BTreeMap<i32, u64> {
    processes()
        .into_iter()
        .filter(|(_, stat)| stat.ppid == parent && is_live(stat))
        .map(|(pid, stat)| (pid, stat.start))
        .collect()
}
