//! A client and its server on loopback TCP: calls, posts and subscriptions
//! one way, published sessions the other way and between clients through
//! the server, and each failure (timeout, refusal, version, no server)
//! reaching the client as a typed error; reconnecting and closing.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ikc_core::{
    BoxError, Call, ErrorKind as CallErrorKind, Kernel, MonitorEvent, Request, Value, service_fn,
};
use ikc_proto::{HandshakeCodec, pb};
use ikc_server::client::Reconnect;
use ikc_server::{Client, ListenAddr, Server, TransportErrorKind};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tower::ServiceExt;

use support::{
    LOOPBACK, call_error, publish_recorder, server_kernel, shut_down, spec, wait_for_event, within,
};

#[tokio::test]
async fn client_calls_and_posts_to_server_sessions() {
    let (kernel, _gate) = server_kernel("Server");
    let mut notes = publish_recorder(&kernel);
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let said = within("say", client.call("echo/say", "hello")).await;
    assert_eq!(said.unwrap(), Value::from("hello"));
    let shouted = within("upper", client.call("poe://Server/echo/upper", "hello")).await;
    assert_eq!(shouted.unwrap(), Value::from("HELLO"));

    within("post", client.post("record/note", "posted"))
        .await
        .unwrap();
    let note = within("the post to arrive", notes.recv()).await;
    assert_eq!(note, Some(Value::from("posted")));
}

#[tokio::test]
async fn unknown_targets_are_answered_with_typed_errors() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let cases = [
        ("nope/say", CallErrorKind::NoSession),
        ("echo/shout", CallErrorKind::NoEvent),
        ("poe://Elsewhere/echo/say", CallErrorKind::NoKernel),
        ("echo/upper", CallErrorKind::Handler), // null is not a string
        ("not a target", CallErrorKind::BadRequest),
    ];
    for (target, kind) in cases {
        let error = call_error(within(target, client.call(target, Value::Null)).await);
        assert_eq!(error.kind(), kind, "{target}: {error}");
    }
    // None of that hurt the connection.
    let answer = within("call", client.call("echo/say", 1)).await;
    assert_eq!(answer.unwrap(), Value::from(1));
}

#[tokio::test]
async fn subscribed_session_is_called_directly_and_as_a_tower_service() {
    let (kernel, _gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within(
        "connect",
        Client::builder()
            .name("Subscriber")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    let echo = within("subscribe", client.subscribe("poe://Server/echo"))
        .await
        .unwrap();
    assert_eq!(echo.kernel(), "Server");
    assert_eq!(echo.session(), "echo");
    wait_for_event(&mut monitor, |event| {
        *event
            == MonitorEvent::Subscribe {
                kernel: "Subscriber".to_owned(),
                session: "echo".to_owned(),
            }
    })
    .await;

    let shouted = within("upper", echo.call("upper", "quiet")).await;
    assert_eq!(shouted.unwrap(), Value::from("QUIET"));
    let said = within("oneshot", echo.clone().oneshot(Call::new("say", 7))).await;
    assert_eq!(said.unwrap(), Value::from(7));

    let error = within(
        "subscribe to a missing session",
        client.subscribe("missing"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), CallErrorKind::NoSession, "{error}");
}

#[tokio::test]
async fn server_calls_a_session_the_client_publishes() {
    let server = Server::builder()
        .name("Server")
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within(
        "connect",
        Client::builder()
            .name("Worker")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();
    client
        .publish(
            "tasks",
            ["double"],
            service_fn(|req: Request| async move {
                let n: i64 = req.arg_as()?;
                Ok::<_, BoxError>(Value::from(n * 2))
            }),
        )
        .unwrap();

    let answer = within(
        "the server's call",
        server
            .kernel()
            .call(&spec("poe://Worker/tasks/double"), Value::from(21)),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from(42));
}

#[tokio::test]
async fn two_clients_call_each_other_through_the_server() {
    let server = Server::builder()
        .name("Hub")
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let mut clients = Vec::new();
    for name in ["Alice", "Bob"] {
        let kernel = Kernel::new(name);
        kernel
            .publish(
                "inbox",
                ["greet"],
                service_fn(move |req: Request| async move {
                    let from = req.arg().as_str().unwrap_or("?").to_owned();
                    Ok::<_, BoxError>(Value::from(format!("{name} greets {from}")))
                }),
            )
            .unwrap();
        let client = within("connect", Client::builder().kernel(kernel).connect(&addr))
            .await
            .unwrap();
        clients.push(client);
    }
    let (alice, bob) = (&clients[0], &clients[1]);

    let answer = within(
        "Bob calls Alice",
        bob.call("poe://Alice/inbox/greet", "Bob"),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from("Alice greets Bob"));
    let answer = within(
        "Alice calls Bob",
        alice.call("poe://Bob/inbox/greet", "Alice"),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from("Bob greets Alice"));
}

#[tokio::test]
async fn handlers_see_which_connected_kernel_called_them() {
    // `whoami/ask` answers with the caller the channel filled in, and with
    // what the request claims in `from`.
    let kernel = Kernel::new("Server");
    kernel
        .publish(
            "whoami",
            ["ask"],
            service_fn(|req: Request| async move {
                let caller = req.caller().map(|peer| peer.kernel.clone());
                let from = req.from().map(str::to_owned);
                Ok::<_, BoxError>(Value::from(vec![
                    caller.map_or(Value::Null, Value::from),
                    from.map_or(Value::Null, Value::from),
                ]))
            }),
        )
        .unwrap();
    let server = Server::builder()
        .kernel(kernel.clone())
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    for name in ["Alice", "Bob"] {
        let client = within("connect", Client::builder().name(name).connect(&addr))
            .await
            .unwrap();
        let answer = within("ask", client.call("whoami/ask", Value::Null)).await;
        assert_eq!(
            answer.unwrap(),
            Value::from(vec![Value::from(name), Value::Null])
        );
        // What a request claims to come from does not change who sent it.
        let claimed =
            Request::call(spec("poe://Server/whoami/ask"), Value::Null).with_from("Mallory/x");
        let answer = within(
            "ask with a claim",
            client.kernel().router().oneshot(claimed),
        )
        .await;
        assert_eq!(
            answer.unwrap(),
            Value::from(vec![Value::from(name), Value::from("Mallory/x")])
        );
    }
    // A call made in the server's own kernel has no remote caller.
    let local = within(
        "a local call",
        kernel.call(&spec("whoami/ask"), Value::Null),
    )
    .await;
    assert_eq!(local.unwrap(), Value::from(vec![Value::Null, Value::Null]));
}

#[tokio::test]
async fn call_without_an_answer_in_time_fails_with_timeout() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within(
        "connect",
        Client::builder()
            .call_timeout(Some(Duration::from_millis(100)))
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    let error = call_error(within("call", client.call("slow/wait", 1)).await);
    assert_eq!(error.kind(), CallErrorKind::Timeout, "{error}");
    let error = call_error(
        within(
            "call_timeout",
            client.call_timeout("slow/wait", 2, Duration::from_millis(50)),
        )
        .await,
    );
    assert_eq!(error.kind(), CallErrorKind::Timeout, "{error}");

    // A timed-out call leaves the connection usable.
    let answer = within("call", client.call("echo/say", 3)).await;
    assert_eq!(answer.unwrap(), Value::from(3));
}

#[tokio::test]
async fn second_client_with_a_connected_kernel_name_is_refused_with_the_reason() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let first = within("connect", Client::builder().name("Twin").connect(&addr))
        .await
        .unwrap();

    let error = within("connect", Client::builder().name("Twin").connect(&addr))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::Refused);
    let message = error.to_string();
    assert!(
        message.contains("\"Twin\"") && message.contains("already in use"),
        "{message}"
    );
    let answer = within("call", first.call("echo/say", "first")).await;
    assert_eq!(answer.unwrap(), Value::from("first"));
}

#[tokio::test]
async fn client_reports_a_version_refusal_as_error_kind_version() {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, HandshakeCodec::server());
        let hello = framed.next().await.expect("a Hello").expect("it decodes");
        assert!(matches!(hello.kind, Some(pb::handshake::Kind::Hello(_))));
        let refuse = pb::Refuse {
            code: pb::RefuseCode::Version.into(),
            reason: "this server speaks version 7".to_owned(),
        };
        framed.send(refuse.into()).await.unwrap();
    });

    let error = within("connect", Client::connect(&addr.to_string()))
        .await
        .unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::Version);
    assert!(error.to_string().contains("version 7"), "{error}");
    within("the fake server", fake).await.unwrap();
}

#[tokio::test]
async fn connecting_where_nothing_listens_fails_with_connect() {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);

    let error = within("connect", Client::connect(&addr)).await.unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::Connect);
    assert!(error.to_string().contains(&addr), "{error}");
}

#[tokio::test]
async fn reconnecting_client_is_usable_again_once_the_server_restarts_on_its_port() {
    let (kernel, _gate) = server_kernel("First");
    let first = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = first.local_addr().clone() else {
        panic!("a TCP server reports a TCP address");
    };
    let client = within(
        "connect",
        Client::builder()
            .reconnect(Reconnect {
                min: Duration::from_millis(10),
                max: Duration::from_millis(100),
            })
            .connect(&addr.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(client.server().kernel, "First");

    shut_down(&first).await;
    within("the client to see the close", client.closed()).await;
    let error = call_error(within("call while down", client.call("echo/say", 0)).await);
    assert!(
        matches!(
            error.kind(),
            CallErrorKind::Disconnected | CallErrorKind::ShuttingDown
        ),
        "calls fail fast while the server is down: {error}"
    );

    let (kernel, _gate) = server_kernel("Second");
    let _second = Server::builder()
        .kernel(kernel)
        .bind(addr)
        .serve()
        .await
        .unwrap();
    let answer = within("the client to reconnect", async {
        loop {
            match client.call("echo/say", "back").await {
                Ok(answer) => return answer,
                Err(error) => {
                    assert!(
                        matches!(
                            error.kind(),
                            CallErrorKind::Disconnected | CallErrorKind::ShuttingDown
                        ),
                        "{error}"
                    );
                    // Polling the reconnect loop, not ordering events.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .await;
    assert_eq!(answer, Value::from("back"));
    assert_eq!(client.server().kernel, "Second");
}

#[tokio::test]
async fn client_is_announced_on_the_server_monitor_and_withdrawn_when_it_closes() {
    let server = Server::builder()
        .name("Server")
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let mut monitor = server.kernel().monitor();
    let client = within(
        "connect",
        Client::builder()
            .name("Visitor")
            .alias("guest")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    let events = wait_for_event(&mut monitor, |event| {
        matches!(event, MonitorEvent::Register { .. })
    })
    .await;
    let Some(MonitorEvent::Register {
        kernel, aliases, ..
    }) = events.last()
    else {
        unreachable!("wait_for_event stops at the wanted event");
    };
    assert_eq!(kernel, "Visitor");
    assert_eq!(aliases, &["guest".to_owned()]);
    assert_eq!(server.kernel().kernels().len(), 1);

    client.close();
    wait_for_event(&mut monitor, |event| {
        *event
            == MonitorEvent::Unregister {
                kernel: "Visitor".to_owned(),
            }
    })
    .await;
    assert!(server.kernel().kernels().is_empty());
}

#[tokio::test]
async fn dropping_the_last_client_clone_closes_its_connection() {
    let (kernel, _gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within(
        "connect",
        Client::builder()
            .name("Dropped")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();
    let clone = client.clone();

    drop(client);
    let answer = within("a call on the clone", clone.call("echo/say", "alive")).await;
    assert_eq!(answer.unwrap(), Value::from("alive"));
    assert_eq!(server.kernel().kernels().len(), 1);

    drop(clone);
    wait_for_event(&mut monitor, |event| {
        *event
            == MonitorEvent::Unregister {
                kernel: "Dropped".to_owned(),
            }
    })
    .await;
    assert!(server.kernel().kernels().is_empty());
}
