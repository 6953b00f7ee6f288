//! `Channel`: calls both ways over one connection, ids that match answers to
//! calls, deadlines, disconnection, cancellation, posts, the in-flight limit,
//! bad input from a peer, and graceful close. All in memory, most of it on
//! paused time.

mod support;

use std::time::Duration;

use futures::future::join_all;
use ikc_core::channel::SessionService;
use ikc_core::transport::memory;
use ikc_core::{
    BoxError, Channel, ChannelError, ErrorKind, IkcError, Kernel, MonitorEvent, PeerInfo, Request,
    Value, service_fn,
};
use ikc_proto::pb;
use support::{
    answers, connect, connect_with, counting, driver_end, echo, failing, faulty, held, late_reads,
    next_event, raw_peer, raw_request, recording, reversing_echo, spec, typed, within,
};
use tokio::time::Instant;
use tower::ServiceBuilder;

#[tokio::test]
async fn both_ends_of_one_channel_call_each_other() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server.publish("who", ["ask"], answers("server")).unwrap();
    client.publish("who", ["ask"], answers("client")).unwrap();
    let link = connect(&client, &server);

    let from_server = within(
        "the server's answer",
        link.a_to_b.call(&spec("poe://Server/who/ask"), Value::Null),
    )
    .await;
    let from_client = within(
        "the client's answer",
        link.b_to_a.call(&spec("poe://Client/who/ask"), Value::Null),
    )
    .await;
    assert_eq!(from_server, Ok(Value::from("server")));
    assert_eq!(from_client, Ok(Value::from("client")));
    assert_eq!(link.a_to_b.peer().kernel, "Server");
    assert_eq!(link.b_to_a.peer().kernel, "Client");
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_calls_each_get_their_own_answer_even_out_of_order() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    // The first call sleeps longest, so answers come back in reverse order.
    server.publish("echo", ["late"], reversing_echo()).unwrap();
    let link = connect(&client, &server);

    let target = spec("poe://Server/echo/late");
    let calls = (0..200_u32).map(|n| link.a_to_b.call(&target, Value::from(n)));
    let answers = within("every answer", join_all(calls)).await;
    for (n, answer) in (0..200_u32).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_is_a_timeout_and_its_handler_is_dropped() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let start = Instant::now();
    let error = within(
        "the deadline",
        link.a_to_b.call_timeout(
            &spec("poe://Server/slow/wait"),
            Value::from("late"),
            Duration::from_millis(250),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.may_have_run());
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(control.dropped().await, Value::from("late"));
}

#[tokio::test(start_paused = true)]
async fn the_channel_call_timeout_applies_to_every_call() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, _control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect_with(
        &client,
        &server,
        |b| b.call_timeout(Some(Duration::from_secs(2))),
        |b| b,
    );

    let start = Instant::now();
    let error = within(
        "the channel's call timeout",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_travels_with_the_request_to_the_handler() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server
        .publish(
            "clock",
            ["left"],
            service_fn(|req: Request| async move {
                let left = req
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()));
                let millis = left.map(|l| u32::try_from(l.as_millis()).unwrap());
                Ok::<_, BoxError>(Value::from(millis))
            }),
        )
        .unwrap();
    let link = connect(&client, &server);

    let left = within(
        "the handler's view of the deadline",
        link.a_to_b.call_timeout(
            &spec("poe://Server/clock/left"),
            Value::Null,
            Duration::from_secs(5),
        ),
    )
    .await;
    assert_eq!(left, Ok(Value::from(5_000)));
}

#[tokio::test(start_paused = true)]
async fn when_the_peer_goes_away_every_pending_call_fails_disconnected_at_once() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let pending: Vec<_> = (0..3)
        .map(|n| {
            let to_server = link.a_to_b.clone();
            tokio::spawn(async move {
                to_server
                    .call(&spec("poe://Server/slow/wait"), Value::from(n))
                    .await
            })
        })
        .collect();
    for _ in 0..3 {
        control.started().await;
    }

    let start = Instant::now();
    link.b_driver.abort();
    for call in pending {
        let error = within("the pending call to fail", call)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Disconnected);
        assert!(error.may_have_run(), "the request had been sent");
    }
    // No timer ran: the calls failed when the connection ended, not at their
    // 30 s call timeout.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(link.a_to_b.is_closed());
    within("the closed signal", link.a_to_b.closed()).await;

    // New calls fail fast, and once the driver ended the kernel is unknown.
    let error = link
        .a_to_b
        .call(&spec("poe://Server/slow/wait"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);
    assert!(!error.may_have_run());
    driver_end(link.a_driver).await.unwrap();
    let error = client
        .call(&spec("poe://Server/slow/wait"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoKernel);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn when_the_transport_is_dropped_pending_calls_fail_disconnected() {
    let kernel = Kernel::new("Client");
    let (mut raw, to_raw, driver) = raw_peer(&kernel, "Raw", |b| b);

    let call = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/any/thing"), Value::Null).await }
    });
    let request = raw.recv_request().await;
    assert_eq!(request.target, "poe://Raw/any/thing");
    drop(raw);

    let error = within("the pending call", call).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);
    assert!(driver_end(driver).await.is_ok());
    assert!(kernel.peer("Raw").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_drops_its_call_cancels_the_handler_on_the_peer() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let call = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/slow/wait"), Value::from("abandoned"))
                .await
        }
    });
    assert_eq!(control.started().await, Value::from("abandoned"));

    let start = Instant::now();
    call.abort();
    assert_eq!(control.dropped().await, Value::from("abandoned"));
    assert_eq!(start.elapsed(), Duration::ZERO, "cancelled at once");

    // The channel keeps working after the cancel.
    control.release();
    let answer = within(
        "a call after the cancel",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::from("next")),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("next")));
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_times_out_with_tokio_timeout_cancels_the_handler_on_the_peer() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::from("gave up")),
    )
    .await;
    assert!(gave_up.is_err(), "the held call cannot answer");
    assert_eq!(control.dropped().await, Value::from("gave up"));
}

#[tokio::test]
async fn a_post_gets_no_answer() {
    let kernel = Kernel::new("Server");
    let (service, mut seen) = recording();
    kernel.publish("log", ["line"], service).unwrap();
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b);

    raw.send(raw_request(0, "log/line", "posted")).await;
    raw.send(raw_request(7, "log/line", "called")).await;

    let posted = within("the post", seen.recv()).await.unwrap();
    assert!(posted.is_post());
    assert_eq!(posted.arg(), &Value::from("posted"));
    // The first frame back answers the call: the post got nothing.
    let reply = raw.recv_reply().await;
    assert_eq!(reply.id, 7);
    let called = within("the call", seen.recv()).await.unwrap();
    assert!(!called.is_post());
}

#[tokio::test]
async fn a_post_sent_through_the_handle_is_delivered_without_waiting() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (service, mut seen) = recording();
    server.publish("log", ["line"], service).unwrap();
    let link = connect(&client, &server);

    link.a_to_b
        .post(
            &spec("poe://Server/log/line"),
            Value::from("fire and forget"),
        )
        .await
        .unwrap();
    let req = within("the post", seen.recv()).await.unwrap();
    assert!(req.is_post());
    assert_eq!(req.arg(), &Value::from("fire and forget"));
}

#[tokio::test]
async fn a_failing_post_is_reported_on_the_receivers_monitor() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server
        .publish("broken", ["go"], failing("disk full"))
        .unwrap();
    let mut monitor = server.monitor();
    let link = connect(&client, &server);
    assert!(matches!(
        next_event(&mut monitor).await,
        MonitorEvent::Register { .. }
    ));

    link.a_to_b
        .post(&spec("poe://Server/broken/go"), Value::Null)
        .await
        .unwrap();
    let MonitorEvent::Error { kernel, message } = next_event(&mut monitor).await else {
        panic!("expected an Error event");
    };
    assert_eq!(kernel.as_deref(), Some("Client"));
    assert!(message.contains("poe://Server/broken/go"), "{message}");
    assert!(message.contains("disk full"), "{message}");

    link.a_to_b
        .post(&spec("poe://Server/nowhere/go"), Value::Null)
        .await
        .unwrap();
    let MonitorEvent::Error { message, .. } = next_event(&mut monitor).await else {
        panic!("expected an Error event");
    };
    assert!(message.contains("NoSession"), "{message}");
}

#[tokio::test]
async fn above_max_in_flight_a_call_is_overloaded_with_a_retry_hint_not_left_waiting() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect_with(&client, &server, |b| b, |b| b.max_in_flight(2));

    let running: Vec<_> = (0..2)
        .map(|n| {
            let to_server = link.a_to_b.clone();
            tokio::spawn(async move {
                to_server
                    .call(&spec("poe://Server/slow/wait"), Value::from(n))
                    .await
            })
        })
        .collect();
    control.started().await;
    control.started().await;

    let error = within(
        "the third call's answer",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::from(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Overloaded);
    assert!(error.retry_after().is_some_and(|d| d > Duration::ZERO));

    control.release();
    for (n, call) in (0..2).zip(running) {
        let answer = within("a running call", call).await.unwrap();
        assert_eq!(answer, Ok(Value::from(n)));
    }
    let after = within(
        "a call once there is room",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::from(3)),
    )
    .await;
    assert_eq!(after, Ok(Value::from(3)));
}

#[tokio::test]
async fn a_wrong_argument_type_is_a_bad_request_and_a_handler_error_keeps_its_message() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    server
        .publish(
            "calc",
            ["add"],
            service_fn(|req: Request| async move {
                let (a, b): (i64, i64) = req.arg_as()?;
                Ok::<_, BoxError>(Value::from(a + b))
            }),
        )
        .unwrap();
    server
        .publish("broken", ["go"], failing("disk full"))
        .unwrap();
    let link = connect(&client, &server);

    let sum = within(
        "the sum",
        link.a_to_b
            .call(&spec("poe://Server/calc/add"), Value::from(vec![2, 3])),
    )
    .await;
    assert_eq!(sum, Ok(Value::from(5)));

    let error = within(
        "the bad argument's answer",
        link.a_to_b
            .call(&spec("poe://Server/calc/add"), Value::from("two")),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
    assert!(error.message().starts_with("bad argument"), "{error}");

    let error = within(
        "the handler's error",
        link.a_to_b
            .call(&spec("poe://Server/broken/go"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Handler);
    assert_eq!(error.message(), "disk full");
}

#[tokio::test]
async fn a_malformed_target_from_the_peer_is_answered_bad_request() {
    let kernel = Kernel::new("Server");
    kernel.publish("echo", ["say"], echo()).unwrap();
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b);

    for (id, target) in [
        (1, "a//b"),
        (2, ""),
        (3, "echo"),
        (4, "a/b/c/d"),
        (5, "e\0/x"),
    ] {
        raw.send(raw_request(id, target, Value::Null)).await;
        let error = raw.recv_error().await;
        assert_eq!(error.id, id);
        let error = typed(error);
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{target:?}");
        assert!(error.message().starts_with("bad target"), "{error}");
    }

    raw.send(raw_request(6, "echo/say", "still served")).await;
    let reply = raw.recv_reply().await;
    assert_eq!(reply.id, 6);
    assert_eq!(
        Value::from_proto(reply.value),
        Ok(Value::from("still served"))
    );
}

#[tokio::test]
async fn an_argument_nested_too_deep_is_answered_bad_request() {
    let kernel = Kernel::new("Server");
    let (service, mut seen) = recording();
    kernel.publish("echo", ["say"], service).unwrap();
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b);

    let mut deep = pb::Value::default();
    for _ in 0..100 {
        deep = pb::Value {
            kind: Some(pb::value::Kind::List(pb::List { items: vec![deep] })),
        };
    }
    let mut request = raw_request(1, "echo/say", Value::Null);
    request.arg = Some(deep);
    raw.send(request).await;
    let error = raw.recv_error().await;
    assert_eq!(error.id, 1);
    assert_eq!(typed(error).kind(), ErrorKind::BadRequest);
    assert!(seen.try_recv().is_err(), "the session never saw it");
}

#[tokio::test]
async fn unknown_frame_kinds_and_stray_answers_are_ignored() {
    let kernel = Kernel::new("Server");
    kernel.publish("echo", ["say"], echo()).unwrap();
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b);

    raw.send(pb::Frame { kind: None }).await;
    raw.send(pb::Reply {
        id: 99,
        value: None,
    })
    .await;
    raw.send(IkcError::new(ErrorKind::Handler, "stray").to_proto(98))
        .await;
    raw.send(pb::Cancel { id: 97 }).await;
    raw.send(pb::Pong { nonce: 1 }).await;
    raw.send(raw_request(1, "echo/say", "after the noise"))
        .await;

    // The first thing that comes back is the answer to the request.
    let reply = raw.recv_reply().await;
    assert_eq!(reply.id, 1);
    assert_eq!(
        Value::from_proto(reply.value),
        Ok(Value::from("after the noise"))
    );
}

#[tokio::test]
async fn a_ping_is_answered_with_a_pong_carrying_its_nonce() {
    let kernel = Kernel::new("Server");
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b);
    raw.send(pb::Ping { nonce: 0xfeed }).await;
    assert_eq!(raw.recv().await, Some(pb::Pong { nonce: 0xfeed }.into()));
}

#[tokio::test]
async fn answers_the_caller_cannot_use_become_typed_errors() {
    let kernel = Kernel::new("Client");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| b);

    // An error kind from a newer protocol revision.
    let call = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    let request = raw.recv_request().await;
    raw.send(pb::Error {
        id: request.id,
        kind: 999,
        message: "from the future".to_owned(),
        may_have_run: false,
        retry_after_ms: 0,
    })
    .await;
    let error = within("the call", call).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unknown);
    assert_eq!(error.message(), "from the future");

    // A reply nested deeper than the limit.
    let call = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    let request = raw.recv_request().await;
    let mut deep = pb::Value::default();
    for _ in 0..100 {
        deep = pb::Value {
            kind: Some(pb::value::Kind::List(pb::List { items: vec![deep] })),
        };
    }
    raw.send(pb::Reply {
        id: request.id,
        value: Some(deep),
    })
    .await;
    let error = within("the call", call).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
}

#[tokio::test]
async fn a_transport_error_ends_the_channel_without_panicking_and_is_reported() {
    let kernel = Kernel::new("Server");
    let mut monitor = kernel.monitor();
    let (kernel_end, mut raw_end) = memory::pair(16);
    let (transport, faults) = faulty(kernel_end);
    let info = PeerInfo::new("Raw".to_owned(), vec![], 1);
    let (handle, driver) = Channel::builder(kernel.clone())
        .connect(info, ikc_core::transport::Frames::new(transport))
        .unwrap();
    let driver = tokio::spawn(driver);
    assert!(matches!(
        next_event(&mut monitor).await,
        MonitorEvent::Register { .. }
    ));

    let pending = tokio::spawn({
        let handle = handle.clone();
        async move { handle.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    let first = within("the call to go out", futures::StreamExt::next(&mut raw_end))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first.kind, Some(pb::frame::Kind::Request(_))));

    faults
        .unbounded_send(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "garbage on the wire",
        ))
        .unwrap();

    let ended = driver_end(driver).await;
    assert!(matches!(ended, Err(ChannelError::Read(_))), "{ended:?}");
    let error = within("the pending call", pending)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);

    // The peer was told why, with a Protocol error for no call in particular.
    let told = within("the peer's notice", futures::StreamExt::next(&mut raw_end))
        .await
        .unwrap()
        .unwrap();
    let Some(pb::frame::Kind::Error(notice)) = told.kind else {
        panic!("expected an Error frame, got {told:?}");
    };
    assert_eq!(notice.id, 0);
    let notice = typed(notice);
    assert_eq!(notice.kind(), ErrorKind::Protocol);
    assert!(notice.message().contains("garbage on the wire"));

    let MonitorEvent::Error {
        kernel: peer,
        message,
    } = next_event(&mut monitor).await
    else {
        panic!("expected an Error event");
    };
    assert_eq!(peer.as_deref(), Some("Raw"));
    assert!(message.contains("garbage on the wire"));
    assert_eq!(
        next_event(&mut monitor).await,
        MonitorEvent::Unregister {
            kernel: "Raw".to_owned()
        }
    );
}

#[tokio::test]
async fn go_away_tells_the_peer_answers_in_flight_requests_refuses_new_ones_and_completes() {
    let kernel = Kernel::new("Server");
    let (slow, mut control) = held();
    kernel.publish("slow", ["wait"], slow).unwrap();
    let (mut raw, to_raw, driver) = raw_peer(&kernel, "Raw", |b| b);

    raw.send(raw_request(1, "slow/wait", "in flight")).await;
    control.started().await;

    to_raw.go_away();
    let Some(pb::Frame {
        kind: Some(pb::frame::Kind::GoAway(go_away)),
    }) = raw.recv().await
    else {
        panic!("expected GoAway");
    };
    assert_eq!(go_away.last_id, 1);

    // A new request is refused; our own new calls are refused too.
    raw.send(raw_request(2, "slow/wait", "too late")).await;
    let refused = raw.recv_error().await;
    assert_eq!(refused.id, 2);
    assert_eq!(typed(refused).kind(), ErrorKind::ShuttingDown);
    let own = to_raw
        .call(&spec("poe://Raw/s/e"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(own.kind(), ErrorKind::ShuttingDown);
    assert!(!driver.is_finished(), "a request is still in flight");

    // The request in flight is still answered, then the driver completes.
    control.release();
    let reply = raw.recv_reply().await;
    assert_eq!(reply.id, 1);
    assert_eq!(Value::from_proto(reply.value), Ok(Value::from("in flight")));
    assert!(driver_end(driver).await.is_ok());
    assert_eq!(raw.recv().await, None, "the connection is closed");
    assert!(kernel.peer("Raw").is_none());
}

#[tokio::test]
async fn after_go_away_the_peer_kernel_refuses_new_calls_and_both_drivers_complete() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let in_flight = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/slow/wait"), Value::from("in flight"))
                .await
        }
    });
    control.started().await;

    link.b_to_a.go_away();
    let refused = within(
        "the refusal",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ShuttingDown);

    control.release();
    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(answer, Ok(Value::from("in flight")));
    assert!(driver_end(link.b_driver).await.is_ok());
    assert!(driver_end(link.a_driver).await.is_ok());
    assert!(server.kernels().is_empty());
    assert!(client.kernels().is_empty());
}

#[tokio::test]
async fn tower_layers_around_the_router_serve_the_peer_and_their_errors_become_typed() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    server.publish("echo", ["say"], echo()).unwrap();
    let layered = SessionService::new(
        ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1)
            .service(server.router()),
    );
    let link = connect_with(&client, &server, |b| b, |b| b.service(layered));

    let busy = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/slow/wait"), Value::from("first"))
                .await
        }
    });
    control.started().await;
    let shed = within(
        "the shed call",
        link.a_to_b
            .call(&spec("poe://Server/echo/say"), Value::Null),
    )
    .await
    .unwrap_err();
    assert_eq!(shed.kind(), ErrorKind::Overloaded);

    control.release();
    assert_eq!(
        within("the first call", busy).await.unwrap(),
        Ok(Value::from("first"))
    );
    let answer = within(
        "a call once the limit has room",
        link.a_to_b
            .call(&spec("poe://Server/echo/say"), Value::from("again")),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("again")));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_layer_on_the_serving_side_answers_timeout() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let layered = SessionService::new(
        ServiceBuilder::new()
            .timeout(Duration::from_millis(40))
            .service(server.router()),
    );
    let link = connect_with(&client, &server, |b| b, |b| b.service(layered));

    let start = Instant::now();
    let error = within(
        "the server's timeout",
        link.a_to_b
            .call(&spec("poe://Server/slow/wait"), Value::from("slow")),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    assert_eq!(control.dropped().await, Value::from("slow"));
}

#[tokio::test]
async fn requests_wait_in_order_for_a_stack_that_is_not_ready_and_a_waiting_call_can_be_cancelled()
{
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    let (counted, count) = counting();
    server.publish("slow", ["wait"], slow).unwrap();
    server.publish("echo", ["say"], echo()).unwrap();
    server.publish("counted", ["hit"], counted).unwrap();
    // A stack that admits one request at a time: the others must wait for
    // its readiness on the channel, not be refused and not be lost.
    let stack = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(tower::ServiceExt::map_err(
            server.router(),
            ikc_core::BoxError::from,
        ));
    let link = connect_with(
        &client,
        &server,
        |b| b,
        move |b| b.service(SessionService::new(stack)),
    );

    let first = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/slow/wait"), Value::from("first"))
                .await
        }
    });
    control.started().await;
    // Given up while still waiting for the stack: never runs.
    let abandoned = link
        .a_to_b
        .call_timeout(
            &spec("poe://Server/counted/hit"),
            Value::from("abandoned"),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert_eq!(abandoned.kind(), ErrorKind::Timeout);
    let second = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call(&spec("poe://Server/echo/say"), Value::from("second"))
                .await
        }
    });

    control.release();
    assert_eq!(
        within("first", first).await.unwrap(),
        Ok(Value::from("first"))
    );
    assert_eq!(
        within("second", second).await.unwrap(),
        Ok(Value::from("second"))
    );
    // The abandoned call was dropped before the stack let it through.
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn calls_the_peer_never_read_before_its_go_away_fail_as_shutting_down_not_run() {
    let kernel = Kernel::new("Local");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| b);

    let read = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/read"), Value::Null).await }
    });
    let first = raw.recv_request().await;
    let unread = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/unread"), Value::Null).await }
    });
    let second = raw.recv_request().await;
    assert!(second.id > first.id);

    // The peer says it read up to the first call, then closes.
    raw.send(pb::GoAway {
        reason: "stopping".to_owned(),
        last_id: first.id,
    })
    .await;
    drop(raw);

    let read = within("the read call", read).await.unwrap().unwrap_err();
    assert_eq!(read.kind(), ErrorKind::Disconnected);
    assert!(read.may_have_run());
    let unread = within("the unread call", unread)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(unread.kind(), ErrorKind::ShuttingDown);
    assert!(!unread.may_have_run(), "{unread}");
}

#[tokio::test]
async fn a_write_that_fails_as_the_peer_closes_still_delivers_what_it_said_before() {
    let kernel = Kernel::new("Local");
    let (kernel_end, mut raw_end) = memory::pair(16);
    let (transport, hold) = late_reads(kernel_end);
    let info = PeerInfo::new("Raw".to_owned(), vec![], 1);
    let (to_raw, driver) = Channel::builder(kernel)
        .connect(info, ikc_core::transport::Frames::new(transport))
        .unwrap();
    let driver = tokio::spawn(driver);

    let answered = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    let first = within("the call to go out", futures::StreamExt::next(&mut raw_end))
        .await
        .unwrap()
        .unwrap();
    let Some(pb::frame::Kind::Request(first)) = first.kind else {
        panic!("expected a request, got {first:?}");
    };
    // A draining peer answers what it read, says GoAway and closes; the
    // channel sees none of it before its next write fails.
    hold.hold();
    let reply = pb::Reply {
        id: first.id,
        value: Some(Value::from("answered").into_proto()),
    };
    futures::SinkExt::send(&mut raw_end, reply.into())
        .await
        .unwrap();
    let go_away = pb::GoAway {
        reason: "stopping".to_owned(),
        last_id: first.id,
    };
    futures::SinkExt::send(&mut raw_end, go_away.into())
        .await
        .unwrap();
    drop(raw_end);
    let late = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    // The late call's write fails; only then does the channel learn what
    // the peer said (the reactor's news comes after the failed write).
    within("the late call's write to fail", hold.write_failed()).await;
    hold.release();
    let late = within("the late call", late).await.unwrap();

    let answered = within("the answered call", answered).await.unwrap();
    assert_eq!(answered.unwrap(), Value::from("answered"));
    let late = late.unwrap_err();
    assert_eq!(late.kind(), ErrorKind::ShuttingDown, "{late}");
    assert!(!late.may_have_run(), "{late}");
    let ended = driver_end(driver).await;
    assert!(matches!(ended, Err(ChannelError::Write(_))), "{ended:?}");
}

#[tokio::test]
async fn a_call_made_after_the_peer_went_away_and_closed_fails_as_shutting_down_not_run() {
    let kernel = Kernel::new("Local");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| b);

    // A draining server: GoAway right after the handshake, then it closes,
    // before the caller had a chance to send anything.
    raw.send(pb::GoAway {
        reason: "stopping".to_owned(),
        last_id: 0,
    })
    .await;
    drop(raw);
    within("the channel closes", to_raw.closed()).await;

    // Nothing was sent, and the peer said it was going away: the caller may
    // retry elsewhere, as for a call the peer never read.
    let late = to_raw
        .call(&spec("poe://Raw/s/late"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(late.kind(), ErrorKind::ShuttingDown, "{late}");
    assert!(!late.may_have_run(), "{late}");
    let post = to_raw
        .post(&spec("poe://Raw/s/late"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(post.kind(), ErrorKind::ShuttingDown, "{post}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_probed_with_ping_and_dropped_when_it_stays_silent() {
    let kernel = Kernel::new("Local");
    // Shorter than the test helpers' own wait bound.
    let interval = Duration::from_secs(1);
    let (mut raw, to_raw, driver) = raw_peer(&kernel, "Raw", |b| b.keepalive(Some(interval)));
    let pending = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&spec("poe://Raw/s/e"), Value::Null).await }
    });
    let request = raw.recv_request().await;
    assert!(request.id > 0);

    // Silence: after one interval a Ping, after another the channel is gone.
    let ping = raw.recv().await;
    assert!(
        matches!(
            ping,
            Some(pb::Frame {
                kind: Some(pb::frame::Kind::Ping(_))
            })
        ),
        "{ping:?}"
    );
    let error = within("the pending call", pending)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);
    let ended = within("the driver", driver).await.unwrap();
    assert!(
        matches!(ended, Err(ChannelError::Silent { silent }) if silent == interval * 2),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays_connected_through_long_silences() {
    let a = Kernel::new("A");
    let b = Kernel::new("B");
    b.publish("echo", ["say"], echo()).unwrap();
    let interval = Duration::from_secs(10);
    let link = connect_with(
        &a,
        &b,
        |c| c.keepalive(Some(interval)),
        |c| c.keepalive(Some(interval)),
    );

    tokio::time::sleep(interval * 10).await;
    assert!(!link.a_to_b.is_closed());
    let answer = link
        .a_to_b
        .call(&spec("poe://B/echo/say"), Value::from("still"))
        .await;
    assert_eq!(answer, Ok(Value::from("still")));
}

#[tokio::test]
async fn calls_and_posts_wait_for_room_while_the_peer_does_not_read_and_all_arrive_in_order() {
    // More than the transport, the driver's outbox and the handles' queue
    // hold together, so some wait for room until the peer reads.
    const SENT: i64 = 2_000;
    let kernel = Kernel::new("Client");
    let (mut peer, handle, _driver) = raw_peer(&kernel, "Slow", |builder| builder);
    let sender = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for n in 0..SENT {
                handle
                    .post(&spec("poe://Slow/log/line"), Value::from(n))
                    .await
                    .expect("the channel is open");
            }
        })
    };
    // A call queued behind the posts is answered once the peer gets to it.
    let call = tokio::spawn(async move {
        handle
            .call(&spec("poe://Slow/echo/say"), Value::from("last"))
            .await
    });
    let mut posts = 0;
    let mut request = None;
    while posts < SENT || request.is_none() {
        let frame = peer.recv_request().await;
        if frame.id != 0 {
            assert_eq!(frame.target, "poe://Slow/echo/say");
            assert!(request.replace(frame).is_none(), "one call");
            continue;
        }
        assert_eq!(frame.target, "poe://Slow/log/line");
        let arg = Value::from_proto(frame.arg).unwrap();
        assert_eq!(arg, Value::from(posts), "posts arrive in order, none lost");
        posts += 1;
    }
    within("the sender to finish", sender).await.unwrap();
    let request = request.expect("the call arrived");
    peer.send(pb::Reply {
        id: request.id,
        value: Some(Value::from("answered").into_proto()),
    })
    .await;
    let answer = within("the call", call).await.unwrap();
    assert_eq!(answer, Ok(Value::from("answered")));
}

#[tokio::test]
async fn a_handle_waiting_for_room_is_served_in_turn_not_starved_by_a_busy_one() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let kernel = Kernel::new("Client");
    let (mut peer, handle, _driver) = raw_peer(&kernel, "Slow", |builder| builder);
    let busy_sent = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (handle, sent) = (handle.clone(), Arc::clone(&busy_sent));
        tokio::spawn(async move {
            for n in 0..20_000_i64 {
                let posted = handle
                    .post(&spec("poe://Slow/log/busy"), Value::from(n))
                    .await;
                if posted.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Until the busy handle waits for room: the peer reads nothing yet, so
    // the transport, the driver and the queue fill up.
    let settled = async {
        let mut last = usize::MAX;
        loop {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let now = busy_sent.load(Ordering::Relaxed);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let queued = within("the busy handle to fill the queue", settled).await;
    assert!(queued > 1_000, "the queue holds many frames, got {queued}");

    let once =
        tokio::spawn(async move { handle.post(&spec("poe://Slow/log/once"), Value::Null).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // The peer reads slowly; the one-off post must get its turn after the
    // frames already queued, not after everything the busy handle sends.
    let mut read = 0;
    loop {
        let frame = peer.recv_request().await;
        read += 1;
        if frame.target == "poe://Slow/log/once" {
            break;
        }
        assert!(
            read < queued + 200,
            "the one-off post was still not sent after {read} frames"
        );
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    within("the one-off post", once).await.unwrap().unwrap();
    busy.abort();
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_room_in_the_queue_still_times_out() {
    // The peer never reads and there is no keepalive: only the call's own
    // deadline can end it.
    let kernel = Kernel::new("Client");
    let (_peer, handle, _driver) = raw_peer(&kernel, "Silent", |builder| builder.keepalive(None));
    let filler = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for n in 0..5_000_i64 {
                if handle
                    .post(&spec("poe://Silent/log/line"), Value::from(n))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert!(
        !filler.is_finished(),
        "the queue is full and the filler waits"
    );
    let answer = within(
        "the call to time out",
        handle.call_timeout(
            "poe://Silent/echo/say",
            Value::Null,
            Duration::from_millis(100),
        ),
    )
    .await;
    assert_eq!(answer.unwrap_err().kind(), ErrorKind::Timeout);
    filler.abort();
}

#[tokio::test]
async fn posts_queued_when_the_peer_stops_sending_are_still_delivered() {
    const POSTS: i64 = 600;
    let kernel = Kernel::new("Client");
    let (mut peer, handle, driver) = raw_peer(&kernel, "Peer", |builder| builder);
    // More than the driver takes in one go: most wait in the handles' queue.
    for n in 0..POSTS {
        handle
            .post(&spec("poe://Peer/log/line"), Value::from(n))
            .await
            .unwrap();
    }
    peer.close_write().await;
    for n in 0..POSTS {
        let post = peer.recv_request().await;
        assert_eq!(Value::from_proto(post.arg).unwrap(), Value::from(n));
    }
    assert!(within("the driver to end", driver).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_trace_context_travels_with_a_relayed_request_and_a_peers_is_kept_as_sent() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (service, mut seen) = recording();
    server.publish("log", ["line"], service).unwrap();
    let _link = connect(&client, &server);
    let call =
        Request::call(spec("poe://Server/log/line"), Value::Null).with_traceparent(TRACEPARENT);
    within(
        "the answer",
        tower::ServiceExt::oneshot(client.router(), call),
    )
    .await
    .unwrap();
    let req = within("the call", seen.recv()).await.unwrap();
    assert_eq!(req.traceparent(), Some(TRACEPARENT));
    // A call of the kernel's own carries no context but the current span's.
    within(
        "the answer",
        client.call(&spec("poe://Server/log/line"), Value::Null),
    )
    .await
    .unwrap();
    let req = within("the call", seen.recv()).await.unwrap();
    assert_eq!(req.traceparent(), None);

    // Whatever a peer sends there is handed on untouched: parsing it is the
    // tracing layer's, which ignores what does not parse.
    let (mut raw, _handle, _driver) = raw_peer(&server, "Raw", |b| b);
    for sent in ["not a trace context", ""] {
        raw.send(pb::Request {
            traceparent: sent.to_owned(),
            ..raw_request(3, "log/line", Value::Null)
        })
        .await;
        assert_eq!(raw.recv_reply().await.id, 3);
        let req = within("the call", seen.recv()).await.unwrap();
        assert_eq!(req.traceparent(), (!sent.is_empty()).then_some(sent));
    }
}
