//! More than one server: `--addr a,b,c` on the client commands, and a
//! balanced client over three `ikc serve` processes, one of them killed
//! with SIGKILL under load.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls each of the load's workers makes.
const CALLS: i64 = 1000;

use futures::future::join_all;
use ikc::server::balance::discover::static_list;
use ikc::{Client, ErrorKind, Value};
use nix::sys::signal::Signal;

use support::{Served, WAIT, run, stdout};

fn serve(name: &str) -> Served {
    Served::start(&["--bind", "127.0.0.1:0", "--name", name])
}

#[test]
fn call_and_ping_take_a_list_of_servers_and_a_bad_entry_is_named() {
    let (a, b) = (serve("A"), serve("B"));
    let list = format!("{},{}", a.addr, b.addr);

    let output = run(&["call", "--addr", &list, "echo/say", r#""hi""#]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), r#""hi""#);

    // A call naming a kernel reaches that kernel.
    let output = run(&["call", "--addr", &list, "poe://B/IKC/ping"]);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains(r#""kernel":"B""#), "{output:?}");

    let output = run(&["ping", "--addr", &list]);
    assert!(output.status.success(), "{output:?}");

    // A DNS address without its port is a usage error too (nothing is
    // resolved: the test sends no query off this machine).
    let output = run(&["call", "--addr", "dns:fleet.example", "echo/say"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("dns:HOST:PORT"),
        "{output:?}"
    );

    let bad = format!("{},nowhere", a.addr);
    let output = run(&["call", "--addr", &bad, "echo/say"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"nowhere\""),
        "the error names the bad entry: {output:?}"
    );
}

#[test]
fn bench_spreads_its_connections_over_a_list() {
    let (a, b) = (serve("A"), serve("B"));
    let list = format!("{},{}", a.addr, b.addr);
    let output = run(&[
        "bench", "--addr", &list, "--conns", "2", "--secs", "0.3", "--warmup", "0", "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert!(
        report["measured"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );

    // The second connection goes to the second server: a dead one is an
    // unreachable server (status 3), named.
    let dead = {
        let c = serve("C");
        c.addr.clone()
    };
    let list = format!("{},{dead}", a.addr);
    let output = run(&[
        "bench", "--addr", &list, "--conns", "2", "--secs", "0.3", "--warmup", "0",
    ]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&dead),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_fails_only_calls_that_may_have_run() {
    let servers = [serve("Fleet"), serve("Fleet"), serve("Fleet")];
    let list = static_list(servers.iter().map(|s| s.addr.clone())).unwrap();
    let client = Client::balanced(Client::builder(), list).await;
    for n in 0..30 {
        tokio::time::timeout(WAIT, client.call("echo/say", n))
            .await
            .expect("bounded")
            .expect("every member answers before the kill");
    }
    let done = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..8)
        .map(|worker| {
            let client = client.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..CALLS {
                    let arg = Value::from(worker * 100_000 + n);
                    answers.push((arg.clone(), client.call("echo/say", arg).await));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                answers
            })
        })
        .collect();
    // Kill one server once the load runs.
    tokio::time::timeout(WAIT, async {
        while done.load(Ordering::Relaxed) < 200 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the load starts");
    servers[0].signal(Signal::SIGKILL);
    let at_kill = done.load(Ordering::Relaxed);
    let workers = tokio::time::timeout(WAIT, join_all(load))
        .await
        .expect("no call hangs");
    let (mut answered, mut failed) = (0, Vec::new());
    for worker in workers {
        for (arg, answer) in worker.expect("the worker ran") {
            match answer {
                Ok(value) => {
                    assert_eq!(value, arg, "an answer is its own call's");
                    answered += 1;
                }
                Err(error) => failed.push(error),
            }
        }
    }
    for error in &failed {
        assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
        assert!(
            error.may_have_run(),
            "only calls that may have run fail: {error}"
        );
    }
    // Each worker has one call in flight at a time.
    assert!(
        failed.len() <= 8,
        "at most the calls in flight fail: {failed:?}"
    );
    assert_eq!(answered + failed.len(), 8 * CALLS as usize);
    assert!(at_kill < 8 * CALLS as usize, "the kill came under load");
    assert!(answered > at_kill, "the rest carry on after the kill");
}
