//! `Kernel::subscribe`: only a published session on a connected kernel can
//! be subscribed to, and the `RemoteSession` it returns calls and posts, and
//! composes with tower middleware as a `Service<Call>`.

mod support;

use std::time::Duration;

use ikc_core::{Call, ErrorKind, IkcError, Kernel, RemoteSession, Value};
use support::{answers, connect, echo, held, recording, spec, within};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// A client connected to a server that publishes `echo` (`say`) and `slow`
/// (`wait`, held until released).
async fn subscribed(
    session: &str,
) -> (
    Kernel,
    Kernel,
    support::Link,
    support::HeldControl,
    RemoteSession,
) {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, control) = held();
    server.publish("echo", ["say"], echo()).unwrap();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);
    let remote = within(
        "the subscription",
        client.subscribe(&spec(&format!("poe://Server/{session}"))),
    )
    .await
    .unwrap();
    (client, server, link, control, remote)
}

#[tokio::test]
async fn subscribing_to_a_session_that_is_not_published_is_no_session() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let _link = connect(&client, &server);
    let error = within(
        "the refusal",
        client.subscribe(&spec("poe://Server/missing")),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
    assert!(error.message().contains("missing"), "{error}");
}

#[tokio::test]
async fn subscribing_on_a_kernel_that_is_not_connected_is_no_kernel() {
    let client = Kernel::new("Client");
    let error = client
        .subscribe(&spec("poe://Server/echo"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoKernel);
    assert!(error.message().contains("Server"), "{error}");
}

#[tokio::test]
async fn subscribing_needs_a_kernel_name_in_the_target() {
    let client = Kernel::new("Client");
    for target in ["echo/say", "poe://*/echo"] {
        let error = client.subscribe(&spec(target)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{target}");
    }
}

#[tokio::test]
async fn a_remote_session_calls_the_published_session() {
    let (_client, _server, _link, _control, echo) = subscribed("echo").await;
    assert_eq!(echo.kernel(), "Server");
    assert_eq!(echo.session(), "echo");

    let answer = within("the answer", echo.call("say", "hello")).await;
    assert_eq!(answer, Ok(Value::from("hello")));
    let copy = echo.clone();
    let answer = within("the answer", copy.call("say", vec![1, 2])).await;
    assert_eq!(answer, Ok(Value::from(vec![1, 2])));
}

#[tokio::test]
async fn a_remote_session_is_reached_through_an_alias_too() {
    let server = Kernel::new("Server");
    server.add_alias("10.0.0.1:4000").unwrap();
    server.publish("who", ["ask"], answers("server")).unwrap();
    let client = Kernel::new("Client");
    let _link = connect(&client, &server);

    let who = within(
        "the subscription",
        client.subscribe(&spec("poe://10.0.0.1:4000/who")),
    )
    .await
    .unwrap();
    assert_eq!(who.kernel(), "Server");
    assert_eq!(
        within("the answer", who.call("ask", Value::Null)).await,
        Ok(Value::from("server"))
    );
}

#[tokio::test]
async fn a_remote_session_posts_without_waiting_for_an_answer() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (service, mut seen) = recording();
    server.publish("log", ["line"], service).unwrap();
    let _link = connect(&client, &server);
    let log = within(
        "the subscription",
        client.subscribe(&spec("poe://Server/log")),
    )
    .await
    .unwrap();

    log.post("line", "posted").await.unwrap();
    let req = within("the post", seen.recv()).await.unwrap();
    assert!(req.is_post());
    assert_eq!(req.arg(), &Value::from("posted"));
    assert_eq!(req.target().to_string(), "poe://Server/log/line");
}

#[tokio::test]
async fn a_remote_session_call_of_an_unpublished_or_invalid_event_is_refused() {
    let (_client, _server, _link, _control, echo) = subscribed("echo").await;
    let error = within("the answer", echo.call("shout", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    let error = echo.call("two words", Value::Null).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
}

#[tokio::test]
async fn a_remote_session_of_a_retracted_session_answers_no_session() {
    let (_client, server, _link, _control, echo) = subscribed("echo").await;
    assert!(server.retract("echo"));
    let error = within("the answer", echo.call("say", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
}

#[tokio::test(start_paused = true)]
async fn a_remote_session_call_with_its_own_timeout_ends_in_timeout() {
    let (_client, _server, _link, mut control, slow) = subscribed("slow").await;
    let start = Instant::now();
    let error = within(
        "the timeout",
        slow.call_timeout("wait", "late", Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(control.dropped().await, Value::from("late"));
}

#[tokio::test]
async fn a_remote_session_fails_disconnected_once_the_connection_ended() {
    let (client, _server, link, _control, echo) = subscribed("echo").await;
    link.b_driver.abort();
    within("the client to see the end", link.a_to_b.closed()).await;
    let error = echo.call("say", Value::Null).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected);
    let _ = support::driver_end(link.a_driver).await;
    let error = client
        .subscribe(&spec("poe://Server/echo"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoKernel);
}

#[tokio::test]
async fn a_remote_session_is_a_tower_service_of_calls() {
    let (_client, _server, _link, _control, mut echo) = subscribed("echo").await;
    let answer = within(
        "the answer",
        echo.ready()
            .await
            .unwrap()
            .call(Call::new("say", "through tower")),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("through tower")));

    let error = within("the answer", echo.oneshot(Call::new("shout", 1)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_and_concurrency_limit_compose_with_a_remote_session() {
    let (_client, _server, _link, mut control, slow) = subscribed("slow").await;
    let mut limited = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .concurrency_limit(4)
        .service(slow);

    let start = Instant::now();
    let error = within(
        "tower's timeout",
        limited
            .ready()
            .await
            .unwrap()
            .call(Call::new("wait", "too slow")),
    )
    .await
    .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // The one place boxed middleware errors become typed ones.
    let error = IkcError::from_box(error);
    assert_eq!(error.kind(), ErrorKind::Timeout);
    // Dropping the call on timeout cancelled the handler on the server.
    assert_eq!(control.dropped().await, Value::from("too slow"));

    control.release();
    let answer = within(
        "an answer within the timeout",
        limited
            .ready()
            .await
            .unwrap()
            .call(Call::new("wait", "fast")),
    )
    .await;
    assert_eq!(answer.map_err(|e| e.to_string()), Ok(Value::from("fast")));
}
