//! `examples/prefork_embed.rs`, run as a user runs it: the built example in
//! a subprocess, called over 127.0.0.1, stopped with a real signal. The test
//! process never forks. `cargo test` builds the examples before it runs the
//! tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ikc::{Client, Value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The bound on every wait here.
const WAIT: Duration = Duration::from_secs(15);

/// The example's binary, beside this test's in the target directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/PROFILE/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo test` builds it, or `cargo build --example {name}`",
        path.display()
    );
    path
}

/// Kills the supervisor's process group when the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_embedded_supervisor_serves_from_its_workers_and_stops_on_sigterm() {
    let mut child = Command::new(example("prefork_embed"))
        .args(["127.0.0.1:0", "2"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let mut running = Running(child);
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (log_tx, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let first = lines
        .recv_timeout(WAIT)
        .expect("the example says where it listens");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let supervisor = i32::try_from(running.0.id()).expect("a pid");

    // Each new connection goes to whichever worker accepts it: both answer
    // in time, and neither is the supervisor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    let mut workers = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while workers.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only workers {workers:?} answered"
        );
        let answer = runtime.block_on(async {
            let client = Client::connect(&addr).await?;
            let answer = client.call("jobs/whoami", Value::Null).await?;
            client.close();
            Ok::<_, ikc::core::BoxError>(answer)
        });
        let Ok(Value::List(pair)) = answer else {
            // A worker still starting is not an error of the example.
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let [Value::Int(id), Value::Int(pid)] = pair.as_slice() else {
            panic!("unexpected answer {pair:?}");
        };
        assert_ne!(*pid, i64::from(supervisor), "the supervisor never accepts");
        workers.insert(*id);
    }
    assert_eq!(workers, [1, 2].into(), "worker numbers from 1");

    kill(Pid::from_raw(supervisor), Signal::SIGTERM).expect("SIGTERM reaches it");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait works") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not stop on SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    };
    // The log is read to its end (the pipe closes when the process is gone).
    let log: Vec<String> = log.iter().collect();
    assert!(status.success(), "{status}; log:\n{}", log.join("\n"));
    assert!(
        log.iter().any(|line| line.contains("all workers stopped")),
        "log:\n{}",
        log.join("\n")
    );
}
