//! Channels over a byte stream whose write buffer takes frames the handles
//! encoded themselves (a `Framed` with the `FrameCodec`, a transport that
//! takes encoded frames), as ikc-server's TCP
//! and Unix connections do: calls, posts and cancels written by the caller
//! reach the peer whole, in order, and within the peer's frame limit.

mod support;

use std::time::Duration;

use futures::future::join_all;
use ikc_core::{Channel, ChannelBuilder, ChannelHandle, ErrorKind, Kernel, Request, Value};
use ikc_proto::FrameCodec;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use support::{echo, held, peer_info, recording, spec, within};

struct Link {
    client_to_server: ChannelHandle,
    drivers: [JoinHandle<Result<(), ikc_core::ChannelError>>; 2],
}

/// Connects `client` to `server` over an in-process byte stream, both ends
/// encoding their own frames; `client_options` configures the client's
/// channel, and `before` runs with the client's handle before its driver
/// starts.
fn connect(
    client: &Kernel,
    server: &Kernel,
    client_options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
    before: impl FnOnce(&ChannelHandle),
) -> Link {
    connect_with(client, server, client_options, |b| b, before)
}

/// [`connect`], the server's channel configured too.
fn connect_with(
    client: &Kernel,
    server: &Kernel,
    client_options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
    server_options: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
    before: impl FnOnce(&ChannelHandle),
) -> Link {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let registered = client_options(Channel::builder(client.clone()))
        .register(peer_info(server))
        .expect("the server registers with the client");
    before(registered.handle());
    let (client_to_server, client_driver) =
        registered.connect(Framed::new(near, FrameCodec::new()));
    let (_, server_driver) = server_options(Channel::builder(server.clone()))
        .register(peer_info(client))
        .expect("the client registers with the server")
        .connect(Framed::new(far, FrameCodec::new()));
    Link {
        client_to_server,
        drivers: [tokio::spawn(client_driver), tokio::spawn(server_driver)],
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.drivers.iter().for_each(JoinHandle::abort);
    }
}

#[tokio::test]
async fn calls_with_every_kind_of_value_are_answered() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    server.publish("echo", ["say"], echo()).unwrap();
    let link = connect(&client, &server, |b| b, |_| {});
    let values = [
        Value::Null,
        Value::from(true),
        Value::from(-7_i64),
        Value::from(2.5),
        Value::from("text"),
        Value::Bytes(vec![1, 2, 3].into()),
        // Lists and maps are written by prost, not from the parts.
        Value::from(vec![Value::from(1_i64), Value::from("two")]),
        Value::Map([("k".to_owned(), Value::from(1_i64))].into()),
    ];
    let target = spec("poe://Server/echo/say");
    for value in values {
        let answer = within(
            "the answer",
            link.client_to_server.call(&target, value.clone()),
        )
        .await;
        assert_eq!(answer, Ok(value));
    }
}

#[tokio::test]
async fn posts_and_calls_reach_the_peer_in_the_order_they_were_made() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (recorder, mut seen) = recording();
    server.publish("log", ["note"], recorder).unwrap();
    let link = connect(&client, &server, |b| b, |_| {});
    let target = spec("poe://Server/log/note");
    let handle = &link.client_to_server;
    for n in 0..40_i64 {
        if n % 3 == 0 {
            within("the answer", handle.call(&target, Value::from(n)))
                .await
                .unwrap();
        } else {
            within("the post queued", handle.post(&target, Value::from(n)))
                .await
                .unwrap();
        }
    }
    for n in 0..40_i64 {
        let request: Request = within("the next request", seen.recv()).await.unwrap();
        assert_eq!(request.arg(), &Value::from(n));
        assert_eq!(request.is_post(), n % 3 != 0);
    }
}

#[tokio::test]
async fn posts_queued_before_the_driver_started_are_sent_first() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (recorder, mut seen) = recording();
    server.publish("log", ["note"], recorder).unwrap();
    let target = spec("poe://Server/log/note");
    let link = connect(
        &client,
        &server,
        |b| b,
        |handle| {
            for n in 0..3_i64 {
                let post = handle.post(&target, Value::from(n));
                futures::FutureExt::now_or_never(post)
                    .expect("a post is queued at once")
                    .unwrap();
            }
        },
    );
    within(
        "the call",
        link.client_to_server.call(&target, Value::from(3_i64)),
    )
    .await
    .unwrap();
    for n in 0..4_i64 {
        let request = within("the next request", seen.recv()).await.unwrap();
        assert_eq!(request.arg(), &Value::from(n));
    }
}

#[tokio::test]
async fn a_request_over_the_peers_limit_is_refused_before_it_is_sent() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (recorder, mut seen) = recording();
    server.publish("log", ["note"], recorder).unwrap();
    let link = connect(&client, &server, |b| b.max_frame_length(100), |_| {});
    let target = spec("poe://Server/log/note");
    let handle = &link.client_to_server;

    let big = Value::Bytes(vec![0; 200].into());
    let error = within("the refusal", handle.call(&target, big.clone()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
    assert!(
        error
            .message()
            .contains("exceeds the peer's frame limit of 100 bytes"),
        "{error}"
    );
    let error = within("the refusal", handle.post(&target, big))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");

    // Nothing of them was sent: the next request is the first the peer sees.
    within("the small call", handle.call(&target, Value::from("small")))
        .await
        .unwrap();
    let request = within("the request", seen.recv()).await.unwrap();
    assert_eq!(request.arg(), &Value::from("small"));
}

#[tokio::test]
async fn more_calls_than_the_queue_holds_are_all_answered() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    server.publish("echo", ["say"], echo()).unwrap();
    let link = connect(&client, &server, |b| b, |_| {});
    let target = spec("poe://Server/echo/say");
    // More than the 1024 frames the queue to the driver takes at once, and
    // a burst in which the peer's driver uses up its read budget just as
    // its outbox fills with answers: it must come back for the rest by
    // itself, as no read is left pending to wake it.
    let calls = (0..3000_i64).map(|n| link.client_to_server.call(&target, Value::from(n)));
    let answers = within("every answer", join_all(calls)).await;
    for (n, answer) in (0..3000_i64).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)));
    }
}

#[tokio::test]
async fn a_call_given_up_is_cancelled_on_the_peer() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server, |b| b, |_| {});
    let error = within(
        "the timeout",
        link.client_to_server.call_timeout(
            &spec("poe://Server/slow/wait"),
            Value::from("given up"),
            Duration::from_millis(20),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    // The sweep's Cancel, encoded like any frame, dropped the handler.
    assert_eq!(
        within("the handler dropped", control.dropped()).await,
        Value::from("given up")
    );
}

#[tokio::test(start_paused = true)]
async fn calls_a_peer_never_reads_still_time_out() {
    // The peer reads nothing. The first calls are sent until the stream and
    // the write buffer are full; the later ones stay queued, never taken
    // by the driver, and their clock is started by its sweep instead.
    let client = Kernel::new("Client");
    let (near, _far) = tokio::io::duplex(1024);
    let (handle, driver) = Channel::builder(client.clone())
        .register(ikc_core::PeerInfo::new("Deaf".to_owned(), Vec::new(), 1))
        .expect("the peer registers")
        .connect(Framed::new(near, FrameCodec::new()));
    let driver = tokio::spawn(driver);
    let target = spec("poe://Deaf/echo/say");
    let batch = |handle: ChannelHandle, target: ikc_core::Specifier| async move {
        let calls = (0..1000_i64)
            .map(|n| handle.call_timeout(&target, Value::from(n), Duration::from_millis(100)));
        join_all(calls).await
    };
    let first = tokio::spawn(batch(handle.clone(), target.clone()));
    // The first batch is queued, then taken and written as far as it goes
    // (this runtime has one thread: each yield lets the others run).
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let later = within("the later timeouts", batch(handle.clone(), target)).await;
    let first = within("the first timeouts", first).await.unwrap();
    for answer in first.into_iter().chain(later) {
        assert_eq!(answer.unwrap_err().kind(), ErrorKind::Timeout);
    }
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_from_many_threads_at_once_are_all_answered() {
    // Handles on several threads queue calls while the driver takes them:
    // a handle that finds the driver already told does not wake it again,
    // and no call may be left behind by that.
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    server.publish("echo", ["say"], echo()).unwrap();
    let link = connect(&client, &server, |b| b, |_| {});
    let target = spec("poe://Server/echo/say");
    let tasks: Vec<_> = (0..8_i64)
        .map(|task| {
            let handle = link.client_to_server.clone();
            let target = target.clone();
            tokio::spawn(async move {
                for n in 0..500_i64 {
                    let value = Value::from(task * 1000 + n);
                    let answer = handle.call(&target, value.clone()).await;
                    assert_eq!(answer, Ok(value));
                }
            })
        })
        .collect();
    for task in within("every task's answers", join_all(tasks)).await {
        task.expect("no call failed");
    }
}

#[tokio::test]
async fn a_reply_over_the_peers_limit_is_answered_with_the_reason() {
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    server.publish("echo", ["say"], echo()).unwrap();
    // The server may send the client frames of 100 bytes at most.
    let link = connect_with(&client, &server, |b| b, |b| b.max_frame_length(100), |_| {});
    let target = spec("poe://Server/echo/say");
    let handle = &link.client_to_server;

    let big = Value::Bytes(vec![0; 200].into());
    let error = within("the refusal", handle.call(&target, big))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    assert!(
        error
            .message()
            .contains("exceeds the peer's frame limit of 100 bytes"),
        "{error}"
    );
    // The connection carries on.
    let answer = within("the small call", handle.call(&target, Value::from("small"))).await;
    assert_eq!(answer, Ok(Value::from("small")));
}

#[tokio::test]
async fn a_relayed_request_keeps_the_trace_context_it_came_with() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (server, client) = (Kernel::new("Server"), Kernel::new("Client"));
    let (recorder, mut seen) = recording();
    server.publish("log", ["note"], recorder).unwrap();
    let _link = connect(&client, &server, |b| b, |_| {});
    let target = spec("poe://Server/log/note");
    // A scalar argument is written from the parts, a list by prost.
    for arg in [Value::from(1_i64), Value::from(vec![Value::Null])] {
        let call = Request::call(target.clone(), arg.clone()).with_traceparent(TRACEPARENT);
        let routed = tower::ServiceExt::oneshot(client.router(), call);
        within("the answer", routed).await.unwrap();
        let request: Request = within("the request", seen.recv()).await.unwrap();
        assert_eq!(
            (request.arg(), request.traceparent()),
            (&arg, Some(TRACEPARENT))
        );
    }
    let post = Request::post(target, Value::Null).with_traceparent(TRACEPARENT);
    within(
        "the post",
        tower::ServiceExt::oneshot(client.router(), post),
    )
    .await
    .unwrap();
    let request: Request = within("the request", seen.recv()).await.unwrap();
    assert_eq!(request.traceparent(), Some(TRACEPARENT));
}
