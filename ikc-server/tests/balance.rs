//! A balanced client over three servers on 127.0.0.1: calls spread over
//! all of them; one stopped gracefully under load costs no call; a server
//! added later gets traffic; a call naming a kernel goes to that kernel,
//! also when made at once;
//! an empty set answers `NoKernel` at once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::channel::mpsc;
use futures::future::join_all;
use ikc_core::{ErrorKind, Kernel, Request, Value, service_fn};
use ikc_server::balance::discover::{Change, static_list};
use ikc_server::{BoxError, Client, Server, ServerHandle};

use support::{LOOPBACK, within};

/// A server whose `count/hit` counts the calls it answered.
struct Counted {
    server: ServerHandle,
    hits: Arc<AtomicUsize>,
}

async fn counted(name: &str) -> Counted {
    let kernel = Kernel::new(name);
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    kernel
        .publish(
            "count",
            ["hit"],
            service_fn(move |req: Request| {
                seen.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, BoxError>(req.into_arg()) }
            }),
        )
        .unwrap();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    Counted { server, hits }
}

fn addr(counted: &Counted) -> String {
    counted.server.local_addr().to_string()
}

fn hits(counted: &Counted) -> usize {
    counted.hits.load(Ordering::Relaxed)
}

#[tokio::test]
async fn calls_spread_over_every_server() {
    let servers = join_all(["Fleet", "Fleet", "Fleet"].map(counted)).await;
    let list = static_list(servers.iter().map(addr)).unwrap();
    let client = Client::balanced(Client::builder(), list).await;
    assert_eq!(client.members(), 3);
    for round in 0..30 {
        let calls = (0..10).map(|n| client.call("count/hit", round * 10 + n));
        for answer in within("a round of calls", join_all(calls)).await {
            answer.expect("every call is answered");
        }
    }
    let counts: Vec<usize> = servers.iter().map(hits).collect();
    assert_eq!(counts.iter().sum::<usize>(), 300, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n >= 30),
        "each server takes a share: {counts:?}"
    );
}

#[tokio::test]
async fn a_server_stopped_gracefully_under_load_costs_no_call() {
    let servers = join_all(["Fleet", "Fleet", "Fleet"].map(counted)).await;
    let list = static_list(servers.iter().map(addr)).unwrap();
    let client = Client::balanced(Client::builder(), list).await;
    // Every member connected before the load starts.
    for n in 0..30 {
        within("warm-up", client.call("count/hit", n))
            .await
            .unwrap();
    }
    let load = (0..8).map(|worker| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut failed = Vec::new();
            for n in 0..200 {
                if let Err(error) = client.call("count/hit", worker * 1000 + n).await {
                    failed.push(error);
                }
            }
            failed
        })
    });
    let load: Vec<_> = load.collect();
    // Stop one server while the calls run; it drains and goes.
    while hits(&servers[0]) < 60 {
        tokio::task::yield_now().await;
    }
    let at_stop = hits(&servers[1]) + hits(&servers[2]);
    servers[0].server.shutdown();
    within("the server to drain", servers[0].server.stopped()).await;
    let mut failed = Vec::new();
    for worker in within("the load", join_all(load)).await {
        failed.extend(worker.unwrap());
    }
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    let after = hits(&servers[1]) + hits(&servers[2]);
    assert!(after > at_stop, "the others carried the load on");
    assert_eq!(
        hits(&servers[0]) + after,
        30 + 8 * 200,
        "every call ran once"
    );
}

#[tokio::test]
async fn a_server_added_later_gets_traffic() {
    let first = counted("Fleet").await;
    let second = counted("Fleet").await;
    let (changes, discovery) = mpsc::unbounded::<Result<Change<String, String>, BoxError>>();
    changes
        .unbounded_send(Ok(Change::Insert(addr(&first), addr(&first))))
        .unwrap();
    let client = Client::balanced(Client::builder(), discovery).await;
    within("a call to the first", client.call("count/hit", 1))
        .await
        .unwrap();
    assert_eq!(hits(&second), 0);

    changes
        .unbounded_send(Ok(Change::Insert(addr(&second), addr(&second))))
        .unwrap();
    let mut calls = 0;
    while hits(&second) == 0 {
        calls += 1;
        assert!(calls < 2000, "the new server never got a call");
        within("a call", client.call("count/hit", calls))
            .await
            .unwrap();
    }
    assert_eq!(client.members(), 2);

    // Removed again: its connection drains, and calls go to the first.
    changes
        .unbounded_send(Ok(Change::Remove(addr(&second))))
        .unwrap();
    within("a call after the removal", client.call("count/hit", 0))
        .await
        .unwrap();
    let before = hits(&second);
    for n in 0..50 {
        within("a call", client.call("count/hit", n)).await.unwrap();
    }
    assert_eq!(hits(&second), before, "a removed server gets no more calls");
}

#[tokio::test]
async fn a_call_naming_a_kernel_goes_to_that_kernel() {
    let servers = join_all(["Alpha", "Beta", "Gamma"].map(counted)).await;
    let list = static_list(servers.iter().map(addr)).unwrap();
    let client = Client::balanced(Client::builder(), list).await;
    // Each member connects on its first readiness check: spread calls first.
    for n in 0..60 {
        within("warm-up", client.call("count/hit", n))
            .await
            .unwrap();
    }
    let before = hits(&servers[1]);
    for n in 0..20 {
        let answer = within("a call to Beta", client.call("poe://Beta/count/hit", n))
            .await
            .unwrap();
        assert_eq!(answer, Value::from(n));
    }
    assert_eq!(hits(&servers[1]), before + 20);
}

#[tokio::test]
async fn a_call_naming_a_kernel_made_at_once_waits_for_the_first_connections() {
    let servers = join_all(["Alpha", "Beta", "Gamma"].map(counted)).await;
    // A fresh client each time, as each `ikc call` is: the first member to
    // connect must not take a call naming another.
    for round in 0..3 {
        for (n, name) in ["Alpha", "Beta", "Gamma"].into_iter().enumerate() {
            let list = static_list(servers.iter().map(addr)).unwrap();
            let client = Client::balanced(Client::builder(), list).await;
            let target = format!("poe://{name}/count/hit");
            let before = hits(&servers[n]);
            within("a first call naming a kernel", client.call(&target, round))
                .await
                .unwrap_or_else(|e| panic!("{target} in round {round}: {e}"));
            assert_eq!(hits(&servers[n]), before + 1, "{target}");
        }
    }
}

#[tokio::test]
async fn an_empty_set_answers_no_kernel_at_once() {
    let client = Client::balanced(Client::builder(), futures::stream::empty()).await;
    let error = within("the answer", client.call("count/hit", 1))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoKernel, "{error}");
}

#[tokio::test]
async fn a_server_that_is_not_up_yet_is_retried_and_joins_when_it_is() {
    let up = counted("Fleet").await;
    // A port nothing listens on yet.
    let late_addr = std::net::TcpListener::bind(LOOPBACK)
        .unwrap()
        .local_addr()
        .unwrap();
    let list = static_list([addr(&up), late_addr.to_string()]).unwrap();
    let pauses = ikc_server::client::Reconnect {
        min: std::time::Duration::from_millis(10),
        max: std::time::Duration::from_millis(100),
    };
    let client = Client::balanced(Client::builder().reconnect(pauses), list).await;
    for n in 0..20 {
        within(
            "a call while one member is down",
            client.call("count/hit", n),
        )
        .await
        .expect("the member that is up answers");
    }

    let kernel = Kernel::new("Fleet");
    let late_hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&late_hits);
    kernel
        .publish(
            "count",
            ["hit"],
            service_fn(move |req: Request| {
                seen.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, BoxError>(req.into_arg()) }
            }),
        )
        .unwrap();
    let _late = Server::builder()
        .kernel(kernel)
        .bind(late_addr)
        .serve()
        .await
        .unwrap();
    within("the late server to get calls", async {
        let mut n = 0;
        while late_hits.load(Ordering::Relaxed) == 0 {
            n += 1;
            client.call("count/hit", n).await.unwrap();
            tokio::task::yield_now().await;
        }
    })
    .await;
}
