//! `ikc::testing`: the kit users test their sessions with, tested the way
//! they would use it (no sockets).

use std::time::Duration;

use ikc::core::MonitorEvent;
use ikc::testing::{self, MockSession, Reply};
use ikc::{ErrorKind, Kernel, Specifier, Value};

/// The bound on every wait here.
const WAIT: Duration = Duration::from_secs(5);

fn spec(text: &str) -> Specifier {
    text.parse().expect("a valid specifier")
}

/// A server kernel with `mock` published as `svc`, and a connected client.
fn served(mock: &MockSession) -> (Kernel, Kernel, testing::KernelPair) {
    let server = Kernel::new("Server");
    mock.publish(&server, "svc").expect("valid names");
    let client = Kernel::new("Client");
    let pair = testing::connect(&client, &server);
    (client, server, pair)
}

#[tokio::test]
async fn scripted_replies_are_used_in_order_and_the_last_one_repeats() {
    let mock = MockSession::new()
        .reply("next", Reply::value(1))
        .reply("next", Reply::value(2));
    let (client, _server, _pair) = served(&mock);
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(
            client
                .call(&spec("poe://Server/svc/next"), Value::Null)
                .await,
        );
    }
    let answers: Vec<Value> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, [1, 2, 2, 2].map(Value::from));
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn an_event_without_a_script_fails_with_handler() {
    let mock = MockSession::new().reply("known", Reply::value(1));
    let server = Kernel::new("Server");
    // Published with an extra event that has no reply.
    server
        .publish("svc", ["known", "other"], mock.clone())
        .expect("valid names");
    let client = Kernel::new("Client");
    let _pair = testing::connect(&client, &server);
    let error = client
        .call(&spec("poe://Server/svc/other"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Handler, "{error}");
    assert!(error.message().contains("no reply scripted"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn delayed_and_hanging_replies_meet_the_callers_deadline() {
    let mock = MockSession::new()
        .reply("slow", Reply::value("late").after(Duration::from_secs(2)))
        .reply("stuck", Reply::hang());
    let (_client, _server, pair) = served(&mock);
    let slow = pair
        .a_to_b()
        .call_timeout(&spec("svc/slow"), Value::Null, Duration::from_secs(1));
    assert_eq!(slow.await.unwrap_err().kind(), ErrorKind::Timeout);
    let slow = pair
        .a_to_b()
        .call_timeout(&spec("svc/slow"), Value::Null, Duration::from_secs(3));
    assert_eq!(slow.await.unwrap(), Value::from("late"));
    let stuck =
        pair.a_to_b()
            .call_timeout(&spec("svc/stuck"), Value::Null, Duration::from_secs(60));
    assert_eq!(stuck.await.unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn the_mock_records_arguments_and_the_calling_kernel() {
    let mock = MockSession::new().reply("note", Reply::value(Value::Null));
    let (client, _server, _pair) = served(&mock);
    client
        .post(&spec("poe://Server/svc/note"), Value::from("posted"))
        .await
        .unwrap();
    client
        .call(&spec("poe://Server/svc/note"), Value::from("called"))
        .await
        .unwrap();
    // One connection keeps its order: the call is answered after the post
    // reached the session.
    let got = mock.requests();
    let args: Vec<&Value> = got.iter().map(|req| req.arg()).collect();
    assert_eq!(args, [&Value::from("posted"), &Value::from("called")]);
    assert!(got[0].is_post() && !got[1].is_post());
    assert!(
        got.iter()
            .all(|req| req.caller().is_some_and(|peer| peer.kernel == "Client"))
    );
}

#[tokio::test]
async fn a_dropped_connection_fails_the_pending_call_with_disconnected() {
    let mock = MockSession::new().reply("stuck", Reply::hang());
    let (_client, server, pair) = served(&mock);
    let mut monitor = server.monitor();
    let pending = pair.a_to_b().call(&spec("svc/stuck"), Value::Null);
    tokio::pin!(pending);
    // The call reaches the session before the fault.
    let deadline = tokio::time::Instant::now() + WAIT;
    while mock.requests().is_empty() {
        tokio::select! {
            _ = &mut pending => panic!("the call ended before the fault"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never arrived"
        );
    }
    pair.disconnect();
    let error = tokio::time::timeout(WAIT, pending)
        .await
        .expect("the call ends")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
    testing::expect_unregister(&mut monitor, "Client", WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_event_is_reported_with_what_came_instead() {
    let server = Kernel::new("Server");
    let mut monitor = server.monitor();
    let client = Kernel::new("Client");
    let _pair = testing::connect(&client, &server);
    let registered = testing::expect_register(&mut monitor, "Client", WAIT)
        .await
        .unwrap();
    assert!(matches!(registered, MonitorEvent::Register { .. }));
    let missing = testing::expect_unregister(&mut monitor, "Client", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("Unregister of \"Client\""),
        "{missing}"
    );

    let other = Kernel::new("Other");
    let _second = testing::connect(&other, &server);
    let missing = testing::expect_register(&mut monitor, "Nobody", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(missing.seen(), [MonitorEvent::Register { kernel, .. }] if kernel == "Other"),
        "{missing}"
    );
}
