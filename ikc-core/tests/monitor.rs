//! `Monitor`: a peer's `Register` is on the bus before its first request is
//! dispatched and its `Unregister` only after its last request finished;
//! subscriptions, failures and the end of the kernel are reported in order.

mod support;

use std::sync::{Arc, Mutex, PoisonError};

use ikc_core::builtin::event_value;
use ikc_core::{BoxError, ErrorKind, Kernel, Monitor, MonitorEvent, Request, Value, service_fn};
use support::{
    connect, drain_now, driver_end, echo, failing, next_event, peer_info, recording, spec, within,
};
use tokio::sync::{mpsc, oneshot, watch};

fn register(kernel: &Kernel) -> MonitorEvent {
    let info = peer_info(kernel);
    MonitorEvent::Register {
        kernel: info.kernel,
        aliases: info.aliases,
        pid: info.pid,
    }
}

fn unregister(kernel: &str) -> MonitorEvent {
    MonitorEvent::Unregister {
        kernel: kernel.to_owned(),
    }
}

fn subscribe(kernel: &str, session: &str) -> MonitorEvent {
    MonitorEvent::Subscribe {
        kernel: kernel.to_owned(),
        session: session.to_owned(),
    }
}

fn unsubscribe(kernel: &str, session: &str) -> MonitorEvent {
    MonitorEvent::Unsubscribe {
        kernel: kernel.to_owned(),
        session: session.to_owned(),
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::test]
async fn register_is_on_the_bus_before_the_peers_first_request_is_dispatched() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    client.add_alias("10.0.0.2:5000").unwrap();
    // The session reads the bus when the request reaches it.
    let probe: Shared<Monitor> = Arc::new(Mutex::new(server.monitor()));
    let seen: Shared<Vec<MonitorEvent>> = Arc::default();
    server
        .publish("probe", ["look"], {
            let (probe, seen) = (Arc::clone(&probe), Arc::clone(&seen));
            service_fn(move |_: Request| {
                lock(&seen).extend(drain_now(&mut lock(&probe)));
                async { Ok::<_, BoxError>(Value::Null) }
            })
        })
        .unwrap();

    let link = connect(&client, &server);
    within(
        "the first request",
        link.a_to_b
            .call(&spec("poe://Server/probe/look"), Value::Null),
    )
    .await
    .unwrap();

    assert_eq!(*lock(&seen), [register(&client)]);
}

#[tokio::test]
async fn unregister_comes_only_after_the_peers_last_request_finished() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let mut monitor = server.monitor();
    let probe: Shared<Monitor> = Arc::new(Mutex::new(server.monitor()));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let (finished_tx, finished) = oneshot::channel();
    let finished_tx = Arc::new(Mutex::new(Some(finished_tx)));
    server
        .publish("last", ["request"], {
            let probe = Arc::clone(&probe);
            service_fn(move |_: Request| {
                let (probe, finished_tx) = (Arc::clone(&probe), Arc::clone(&finished_tx));
                let (started_tx, mut release_rx) = (started_tx.clone(), release_rx.clone());
                async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.wait_for(|released| *released).await;
                    // What the bus holds as this last request finishes.
                    let events = drain_now(&mut lock(&probe));
                    if let Some(tx) = lock(&finished_tx).take() {
                        let _ = tx.send(events);
                    }
                    Ok::<_, BoxError>(Value::Null)
                }
            })
        })
        .unwrap();
    let link = connect(&client, &server);
    assert_eq!(next_event(&mut monitor).await, register(&client));
    drop(drain_now(&mut lock(&probe)));

    let _call = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/last/request"), Value::Null)
                .await
        }
    });
    within("the request to start", started.recv())
        .await
        .unwrap();

    // The client goes away while its request runs.
    link.a_driver.abort();
    within("the server to see the end", link.b_to_a.closed()).await;
    release.send_replace(true);

    let at_finish = within("the request to finish", finished).await.unwrap();
    assert!(
        !at_finish.contains(&unregister("Client")),
        "Unregister came before the last request finished: {at_finish:?}"
    );
    assert_eq!(next_event(&mut monitor).await, unregister("Client"));
    let _ = driver_end(link.b_driver).await;
}

/// Reports what the bus holds when the handler holding it is dropped.
struct ReportOnDrop {
    probe: Shared<Monitor>,
    tx: Option<oneshot::Sender<Vec<MonitorEvent>>>,
}

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(drain_now(&mut lock(&self.probe)));
        }
    }
}

#[tokio::test]
async fn when_a_channel_is_dropped_its_handlers_are_dropped_before_unregister() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let mut monitor = server.monitor();
    let probe: Shared<Monitor> = Arc::new(Mutex::new(server.monitor()));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = oneshot::channel();
    let dropped_tx = Arc::new(Mutex::new(Some(dropped_tx)));
    server
        .publish("forever", ["wait"], {
            let probe = Arc::clone(&probe);
            service_fn(move |_: Request| {
                let guard = ReportOnDrop {
                    probe: Arc::clone(&probe),
                    tx: lock(&dropped_tx).take(),
                };
                let started_tx = started_tx.clone();
                async move {
                    let _guard = guard;
                    let _ = started_tx.send(());
                    std::future::pending::<Result<Value, BoxError>>().await
                }
            })
        })
        .unwrap();
    let link = connect(&client, &server);
    assert_eq!(next_event(&mut monitor).await, register(&client));
    drop(drain_now(&mut lock(&probe)));

    let _call = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/forever/wait"), Value::Null)
                .await
        }
    });
    within("the request to start", started.recv())
        .await
        .unwrap();

    link.b_driver.abort();
    let at_drop = within("the handler to be dropped", dropped).await.unwrap();
    assert!(
        !at_drop.contains(&unregister("Client")),
        "Unregister came before the handler was dropped: {at_drop:?}"
    );
    assert_eq!(next_event(&mut monitor).await, unregister("Client"));
}

#[tokio::test]
async fn subscribing_and_dropping_the_remote_session_are_reported_to_the_publisher() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server.publish("echo", ["say"], echo()).unwrap();
    let mut monitor = server.monitor();
    let _link = connect(&client, &server);
    assert_eq!(next_event(&mut monitor).await, register(&client));

    let echo = within(
        "the subscription",
        client.subscribe(&spec("poe://Server/echo")),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut monitor).await, subscribe("Client", "echo"));

    // Dropping one clone keeps the subscription: the next event on the bus
    // is the following subscription, not an Unsubscribe.
    let second = echo.clone();
    drop(echo);
    let ikc = within(
        "the subscription",
        client.subscribe(&spec("poe://Server/IKC")),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut monitor).await, subscribe("Client", "IKC"));

    second.unsubscribe();
    assert_eq!(
        next_event(&mut monitor).await,
        unsubscribe("Client", "echo")
    );
    drop(ikc);
    assert_eq!(next_event(&mut monitor).await, unsubscribe("Client", "IKC"));
}

#[tokio::test]
async fn a_refused_subscription_is_not_reported() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server.publish("echo", ["say"], echo()).unwrap();
    let mut monitor = server.monitor();
    let _link = connect(&client, &server);
    assert_eq!(next_event(&mut monitor).await, register(&client));

    let refused = within(
        "the refusal",
        client.subscribe(&spec("poe://Server/missing")),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NoSession);
    let _echo = within(
        "the subscription",
        client.subscribe(&spec("poe://Server/echo")),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut monitor).await, subscribe("Client", "echo"));
}

#[tokio::test]
async fn a_peers_whole_life_is_reported_in_order() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server.publish("broken", ["go"], failing("no")).unwrap();
    let mut monitor = server.monitor();
    let mut client_monitor = client.monitor();
    let link = connect(&client, &server);

    assert_eq!(next_event(&mut monitor).await, register(&client));
    let broken = within(
        "the subscription",
        client.subscribe(&spec("poe://Server/broken")),
    )
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut monitor).await,
        subscribe("Client", "broken")
    );
    broken.post("go", Value::Null).await.unwrap();
    assert!(matches!(
        next_event(&mut monitor).await,
        MonitorEvent::Error { kernel: Some(k), .. } if k == "Client"
    ));
    drop(broken);
    assert_eq!(
        next_event(&mut monitor).await,
        unsubscribe("Client", "broken")
    );
    link.a_driver.abort();
    assert_eq!(next_event(&mut monitor).await, unregister("Client"));

    // The client saw its own side: the server registered, and unregistered
    // when the client's channel ended.
    assert_eq!(next_event(&mut client_monitor).await, register(&server));
    assert_eq!(next_event(&mut client_monitor).await, unregister("Server"));
}

#[tokio::test]
async fn every_monitor_gets_every_event() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let mut first = server.monitor();
    let mut second = server.monitor();
    let _link = connect(&client, &server);
    assert_eq!(next_event(&mut first).await, register(&client));
    assert_eq!(next_event(&mut second).await, register(&client));
}

#[tokio::test]
async fn the_monitor_ends_when_the_kernel_is_gone() {
    let kernel = Kernel::new("Server");
    let mut monitor = kernel.monitor();
    kernel.emit(MonitorEvent::Shutdown);
    drop(kernel);
    assert_eq!(next_event(&mut monitor).await, MonitorEvent::Shutdown);
    assert_eq!(within("the end", monitor.next_event()).await, None);
}

#[tokio::test]
async fn builtin_monitor_posts_each_event_to_the_watcher() {
    let server = Kernel::new("Server");
    let watcher = Kernel::new("Watcher");
    let (service, mut seen) = recording();
    watcher.publish("watch", ["event"], service).unwrap();
    let link = connect(&watcher, &server);

    let answer = within(
        "the monitor request",
        link.a_to_b.call(
            &spec("poe://Server/IKC/monitor"),
            Value::from("poe://Watcher/watch/event"),
        ),
    )
    .await;
    assert_eq!(answer, Ok(Value::Null));

    let other = Kernel::new("Other");
    let other_link = connect(&other, &server);
    let posted = within("the forwarded Register", seen.recv()).await.unwrap();
    assert!(posted.is_post());
    assert_eq!(posted.arg(), &event_value(&register(&other)));
    assert_eq!(
        posted.arg().as_map().and_then(|m| m.get("event")),
        Some(&Value::from("register"))
    );

    other_link.a_driver.abort();
    let posted = within("the forwarded Unregister", seen.recv())
        .await
        .unwrap();
    assert_eq!(posted.arg(), &event_value(&unregister("Other")));
}

#[tokio::test]
async fn builtin_monitor_needs_a_remote_specifier_to_post_to() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let link = connect(&client, &server);
    for arg in [
        Value::from(3),
        Value::from("not a specifier"),
        Value::from("watch/event"),
    ] {
        let error = within(
            "the refusal",
            link.a_to_b
                .call(&spec("poe://Server/IKC/monitor"), arg.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{arg:?}");
    }
}
