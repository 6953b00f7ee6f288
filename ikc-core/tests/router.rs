//! `Router`: always ready, one slow session never holds up another, the
//! built-in `IKC` session, `*` targets, and a kernel acting as a hub between
//! two kernels that are not connected to each other.

mod support;

use std::collections::BTreeMap;

use futures::FutureExt;
use ikc_core::builtin::IKC_EVENTS;
use ikc_core::{ErrorKind, IKC_SESSION, Kernel, MonitorEvent, Request, Value};
use support::{answers, connect, echo, failing, held, next_event, recording, spec, within};
use tower::{Service, ServiceExt};

#[tokio::test]
async fn the_router_is_ready_at_once_even_while_a_session_is_busy() {
    let kernel = Kernel::new("Server");
    let (slow, mut control) = held();
    kernel.publish("slow", ["wait"], slow).unwrap();
    let mut router = kernel.router();
    assert!(router.ready().now_or_never().is_some_and(|r| r.is_ok()));

    let busy = tokio::spawn(
        router
            .clone()
            .oneshot(Request::call(spec("slow/wait"), Value::from(1))),
    );
    control.started().await;
    assert!(
        router.ready().now_or_never().is_some_and(|r| r.is_ok()),
        "a busy session must not make the router unready"
    );

    control.release();
    let answer = within("the slow answer", busy).await.unwrap();
    assert_eq!(answer, Ok(Value::from(1)));
}

#[tokio::test]
async fn an_unknown_target_is_an_error_answer_and_the_router_keeps_serving() {
    let kernel = Kernel::new("Server");
    kernel.publish("echo", ["say"], echo()).unwrap();
    let mut router = kernel.router();

    let error = router
        .ready()
        .await
        .unwrap()
        .call(Request::call(spec("nowhere/say"), Value::Null))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);

    let answer = router
        .ready()
        .await
        .unwrap()
        .call(Request::call(spec("echo/say"), Value::from("still here")))
        .await;
    assert_eq!(answer, Ok(Value::from("still here")));
}

#[tokio::test]
async fn a_slow_local_session_does_not_block_a_fast_one() {
    let kernel = Kernel::new("Server");
    let (slow, mut control) = held();
    kernel.publish("slow", ["wait"], slow).unwrap();
    kernel.publish("fast", ["now"], answers("fast")).unwrap();

    let slow_call = tokio::spawn({
        let kernel = kernel.clone();
        async move { kernel.call(&spec("slow/wait"), Value::from("slow")).await }
    });
    control.started().await;

    let fast = within(
        "the fast session while the slow one waits",
        kernel.call(&spec("fast/now"), Value::Null),
    )
    .await;
    assert_eq!(fast, Ok(Value::from("fast")));
    assert!(
        !slow_call.is_finished(),
        "the slow call waits for its release"
    );

    // Released only after the fast call completed.
    control.release();
    let slow = within("the slow answer", slow_call).await.unwrap();
    assert_eq!(slow, Ok(Value::from("slow")));
}

#[tokio::test]
async fn a_slow_session_does_not_block_a_fast_one_over_the_same_channel() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    server.publish("fast", ["now"], answers("fast")).unwrap();
    let link = connect(&client, &server);

    let slow_call = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/slow/wait"), Value::from("slow"))
                .await
        }
    });
    control.started().await;

    let fast = within(
        "the fast session while the slow one waits",
        link.a_to_b
            .call(&spec("poe://Server/fast/now"), Value::Null),
    )
    .await;
    assert_eq!(fast, Ok(Value::from("fast")));
    assert!(
        !slow_call.is_finished(),
        "the slow call waits for its release"
    );

    control.release();
    let slow = within("the slow answer", slow_call).await.unwrap();
    assert_eq!(slow, Ok(Value::from("slow")));
}

#[tokio::test]
async fn builtin_ping_answers_the_kernel_name_and_pid() {
    let kernel = Kernel::new("Server");
    let answer = kernel.call(&spec("IKC/ping"), Value::Null).await.unwrap();
    assert_eq!(
        answer,
        Value::from(BTreeMap::from([
            ("kernel", Value::from("Server")),
            ("pid", Value::from(kernel.pid())),
        ]))
    );
}

#[tokio::test]
async fn builtin_published_lists_every_session_with_its_events() {
    let kernel = Kernel::new("Server");
    kernel.publish("calc", ["sub", "add"], echo()).unwrap();
    let answer = kernel
        .call(&spec("IKC/published"), Value::Null)
        .await
        .unwrap();
    let mut builtin = IKC_EVENTS.to_vec();
    builtin.sort_unstable();
    assert_eq!(
        answer,
        Value::from(BTreeMap::from([
            (IKC_SESSION, Value::from(builtin)),
            ("calc", Value::from(vec!["add", "sub"])),
        ]))
    );
}

#[tokio::test]
async fn builtin_shutdown_is_published_only_when_allowed_and_calls_the_hook() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let link = connect(&client, &server);
    let refused = within(
        "the refusal",
        link.a_to_b
            .call(&spec("poe://Server/IKC/shutdown"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NoEvent);

    let (stop_tx, mut stop) = tokio::sync::mpsc::unbounded_channel();
    server.allow_remote_shutdown(move || {
        let _ = stop_tx.send(());
    });
    let answer = within(
        "the shutdown answer",
        link.a_to_b
            .call(&spec("poe://Server/IKC/shutdown"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::Null));
    within("the shutdown hook", stop.recv()).await.unwrap();
    // The other built-in events stay.
    let ping = within(
        "the ping",
        link.a_to_b
            .call(&spec("poe://Server/IKC/ping"), Value::Null),
    )
    .await;
    assert!(ping.is_ok(), "{ping:?}");
}

#[tokio::test]
async fn builtin_kernels_lists_the_connected_kernels() {
    let server = Kernel::new("Server");
    let empty = server
        .call(&spec("IKC/kernels"), Value::Null)
        .await
        .unwrap();
    assert_eq!(empty, Value::List(vec![]));

    let client = Kernel::new("Client");
    client.add_alias("10.0.0.2:5000").unwrap();
    let _link = connect(&server, &client);
    let listed = server
        .call(&spec("IKC/kernels"), Value::Null)
        .await
        .unwrap();
    assert_eq!(
        listed,
        Value::from(vec![Value::from(BTreeMap::from([
            ("kernel", Value::from("Client")),
            ("aliases", Value::from(vec!["10.0.0.2:5000"])),
            ("pid", Value::from(client.pid())),
        ]))])
    );
}

#[tokio::test]
async fn builtin_session_answers_a_remote_kernel_too() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let link = connect(&client, &server);
    let answer = within(
        "the remote ping",
        link.a_to_b
            .call(&spec("poe://Server/IKC/ping"), Value::Null),
    )
    .await
    .unwrap();
    assert_eq!(
        answer.as_map().and_then(|m| m.get("kernel")),
        Some(&Value::from("Server"))
    );
    let error = within(
        "the remote answer",
        link.a_to_b
            .call(&spec("poe://Server/IKC/reboot"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
}

#[tokio::test]
async fn a_hub_forwards_a_call_between_two_kernels_connected_only_to_it() {
    let a = Kernel::new("A");
    let hub = Kernel::new("S");
    let b = Kernel::new("B");
    b.publish(
        "sess",
        ["ev"],
        tower::service_fn(|req: Request| async move {
            Ok::<_, ikc_core::BoxError>(Value::from(format!("B got {:?}", req.arg().as_str())))
        }),
    )
    .unwrap();
    a.publish("sess", ["ev"], answers("A answers")).unwrap();
    let a_s = connect(&a, &hub);
    let b_s = connect(&b, &hub);
    assert!(a.peer("B").is_none(), "A is not connected to B");

    let answer = within(
        "B's answer through the hub",
        a_s.a_to_b
            .call(&spec("poe://B/sess/ev"), Value::from("hello")),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("B got Some(\"hello\")")));

    let back = within(
        "A's answer through the hub",
        b_s.a_to_b.call(&spec("poe://A/sess/ev"), Value::Null),
    )
    .await;
    assert_eq!(back, Ok(Value::from("A answers")));

    // The hub answers for kernels it does not know, and for B's errors.
    let unknown = within(
        "the hub's answer",
        a_s.a_to_b.call(&spec("poe://C/sess/ev"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NoKernel);
    let no_event = within(
        "B's error through the hub",
        a_s.a_to_b.call(&spec("poe://B/sess/other"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(no_event.kind(), ErrorKind::NoEvent);
}

#[tokio::test]
async fn star_prefers_the_local_session() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server.publish("who", ["ask"], answers("local")).unwrap();
    client.publish("who", ["ask"], answers("remote")).unwrap();
    let _link = connect(&server, &client);

    let answer = server.call(&spec("poe://*/who/ask"), Value::Null).await;
    assert_eq!(answer, Ok(Value::from("local")));
}

#[tokio::test]
async fn star_finds_the_connected_kernel_that_publishes_the_session() {
    let server = Kernel::new("Server");
    let without = Kernel::new("Without");
    let with = Kernel::new("With");
    with.publish("only", ["ask"], answers("from With")).unwrap();
    let _l1 = connect(&server, &without);
    let _l2 = connect(&server, &with);

    let answer = within(
        "the kernel that has the session",
        server.call(&spec("poe://*/only/ask"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("from With")));

    let error = within(
        "every kernel's refusal",
        server.call(&spec("poe://*/missing/ask"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
}

#[tokio::test]
async fn a_local_post_is_delivered_to_the_session() {
    let kernel = Kernel::new("Server");
    let (service, mut seen) = recording();
    kernel.publish("log", ["line"], service).unwrap();

    kernel
        .post(&spec("log/line"), Value::from("hello"))
        .await
        .unwrap();
    let req = within("the posted request", seen.recv()).await.unwrap();
    assert!(req.is_post());
    assert_eq!(req.arg(), &Value::from("hello"));

    let error = kernel
        .post(&spec("nowhere/line"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
}

#[tokio::test]
async fn a_remote_post_through_the_router_is_delivered_to_the_peer() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (service, mut seen) = recording();
    server.publish("log", ["line"], service).unwrap();
    let _link = connect(&client, &server);

    client
        .post(&spec("poe://Server/log/line"), Value::from("remote"))
        .await
        .unwrap();
    let req = within("the posted request", seen.recv()).await.unwrap();
    assert!(req.is_post());
    assert_eq!(req.arg(), &Value::from("remote"));
}

#[tokio::test]
async fn a_failing_local_post_is_not_the_posters_error_and_is_reported_on_the_monitor() {
    let kernel = Kernel::new("Server");
    kernel
        .publish("broken", ["go"], failing("disk full"))
        .unwrap();
    let mut monitor = kernel.monitor();

    let posted = kernel.post(&spec("broken/go"), Value::Null).await;
    assert_eq!(posted, Ok(()));
    assert_eq!(
        next_event(&mut monitor).await,
        MonitorEvent::Error {
            kernel: None,
            message: "post to broken/go failed: Handler: disk full".to_owned(),
        }
    );
    // A call of the same event still reports the failure to its caller.
    let error = kernel
        .call(&spec("broken/go"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Handler);
}

#[tokio::test]
async fn a_caller_giving_up_through_the_hub_cancels_the_handler_two_hops_away() {
    let a = Kernel::new("A");
    let hub = Kernel::new("S");
    let b = Kernel::new("B");
    let (slow, mut control) = held();
    b.publish("slow", ["wait"], slow).unwrap();
    let a_s = connect(&a, &hub);
    let _b_s = connect(&b, &hub);

    let call = tokio::spawn({
        let to_hub = a_s.a_to_b.clone();
        async move {
            to_hub
                .call(&spec("poe://B/slow/wait"), Value::from("through S"))
                .await
        }
    });
    assert_eq!(control.started().await, Value::from("through S"));
    call.abort();
    assert_eq!(control.dropped().await, Value::from("through S"));
}

#[tokio::test]
async fn when_the_far_kernel_disconnects_a_call_through_the_hub_fails_disconnected() {
    let a = Kernel::new("A");
    let hub = Kernel::new("S");
    let b = Kernel::new("B");
    let (slow, mut control) = held();
    b.publish("slow", ["wait"], slow).unwrap();
    let a_s = connect(&a, &hub);
    let b_s = connect(&b, &hub);

    let call = tokio::spawn({
        let to_hub = a_s.a_to_b.clone();
        async move { to_hub.call(&spec("poe://B/slow/wait"), Value::Null).await }
    });
    control.started().await;
    b_s.a_driver.abort();

    let error = within("the hub's answer", call).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);
    assert!(error.may_have_run());
    // The hub itself stays connected to A.
    let ping = within(
        "the hub's ping",
        a_s.a_to_b.call(&spec("poe://S/IKC/ping"), Value::Null),
    )
    .await;
    assert!(ping.is_ok(), "{ping:?}");
}

#[tokio::test]
async fn a_router_calls_the_session_published_now_after_a_republish_or_retract() {
    let kernel = Kernel::new("Server");
    kernel.publish("who", ["ask"], answers("first")).unwrap();
    let mut router = kernel.router();
    let ask = async |router: &mut ikc_core::Router| {
        router
            .ready()
            .await
            .unwrap()
            .call(Request::call(spec("who/ask"), Value::Null))
            .await
    };
    assert_eq!(ask(&mut router).await, Ok(Value::from("first")));
    assert_eq!(ask(&mut router).await, Ok(Value::from("first")));

    kernel.publish("who", ["ask"], answers("second")).unwrap();
    assert_eq!(ask(&mut router).await, Ok(Value::from("second")));

    assert!(kernel.retract("who"));
    let error = ask(&mut router).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);

    kernel.publish("who", ["other"], answers("third")).unwrap();
    let error = ask(&mut router).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
}

#[tokio::test]
async fn a_session_that_is_not_ready_is_waited_for_and_holds_nothing_back() {
    // One request at a time: the second waits for the first, through the
    // same router, and nothing the router keeps may sit on the permit.
    let kernel = Kernel::new("Server");
    let (slow, mut control) = held();
    let limited = tower::limit::ConcurrencyLimit::new(slow, 1);
    kernel.publish("slow", ["wait"], limited).unwrap();
    let mut router = kernel.router();

    let call = |router: &mut ikc_core::Router, n: i64| {
        let fut = router.call(Request::call(spec("slow/wait"), Value::from(n)));
        tokio::spawn(fut)
    };
    let first = call(&mut router, 1);
    assert_eq!(control.started().await, Value::from(1));
    let second = call(&mut router, 2);
    control.release();
    assert_eq!(
        within("the first answer", first).await.unwrap(),
        Ok(Value::from(1))
    );
    assert_eq!(
        within("the second answer", second).await.unwrap(),
        Ok(Value::from(2))
    );

    // The permit is free again, for this router and for another one.
    let third = call(&mut router, 3);
    assert_eq!(
        within("the third answer", third).await.unwrap(),
        Ok(Value::from(3))
    );
    let fourth = call(&mut kernel.router(), 4);
    assert_eq!(
        within("the fourth answer", fourth).await.unwrap(),
        Ok(Value::from(4))
    );
}

#[tokio::test]
async fn a_router_calling_more_sessions_than_it_keeps_reaches_each_and_checks_each_event() {
    let kernel = Kernel::new("Server");
    // More sessions than one router keeps services for.
    let names: Vec<String> = (0..12).map(|n| format!("s{n}")).collect();
    for name in &names {
        let answer = Value::from(name.as_str());
        let service =
            ikc_core::channel::SessionService::new(ikc_core::service_fn(move |_: Request| {
                let answer = answer.clone();
                async move { Ok::<_, ikc_core::BoxError>(answer) }
            }));
        kernel.publish(name, ["a", "b"], service).unwrap();
    }
    let mut router = kernel.router();
    for _ in 0..3 {
        for name in &names {
            for event in ["a", "b", "a"] {
                let answer = route(&mut router, &format!("{name}/{event}")).await;
                assert_eq!(answer, Ok(Value::from(name.as_str())), "{name}/{event}");
            }
            // The event checked last was allowed; this one is not.
            let error = route(&mut router, &format!("{name}/c")).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NoEvent, "{name}/c");
        }
    }
}

/// A session whose service has failed: `poll_ready` answers an error.
#[derive(Clone)]
struct Broken;

impl Service<Request> for Broken {
    type Response = Value;
    type Error = ikc_core::BoxError;
    type Future = std::future::Ready<Result<Value, ikc_core::BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Err("the session's backend is gone".into()))
    }

    fn call(&mut self, _req: Request) -> Self::Future {
        panic!("a service that failed its poll_ready is never called")
    }
}

#[tokio::test]
async fn a_session_that_fails_its_readiness_answers_that_error_every_time() {
    let kernel = Kernel::new("Server");
    kernel
        .publish(
            "broken",
            ["ask"],
            ikc_core::channel::SessionService::new(Broken),
        )
        .unwrap();
    let mut router = kernel.router();
    // The first call, then the calls once the router keeps the session.
    for _ in 0..3 {
        let error = route(&mut router, "broken/ask").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Handler, "{error}");
        assert!(error.message().contains("backend is gone"), "{error}");
    }
}

/// Calls `target` with a null argument through `router`.
async fn route(router: &mut ikc_core::Router, target: &str) -> Result<Value, ikc_core::IkcError> {
    router
        .ready()
        .await
        .unwrap()
        .call(Request::call(spec(target), Value::Null))
        .await
}
