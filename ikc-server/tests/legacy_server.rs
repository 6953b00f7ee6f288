//! Legacy (Perl IKC) peers on an ikc server, beyond the replays: the
//! monitor bus, sharing a port with native peers, `legacy(false)`, bad
//! input, name conflicts, hub routing, and the ikc client's legacy mode
//! against the server's.

#![cfg(feature = "perl")]

mod legacy_capture;

use std::collections::BTreeMap;

use ikc_core::{BoxError, ErrorKind, Kernel, MonitorEvent, Request, Value};
use ikc_server::legacy::storable;
use ikc_server::{Client, Server, ServerHandle};
use legacy_capture::{Decoded, Peer, WAIT, connection, decode};
use tokio::sync::mpsc;
use tower::service_fn;

/// A server with `echo/say` and `rec/add` (which records its argument).
async fn server(legacy: bool) -> (ServerHandle, mpsc::UnboundedReceiver<Value>) {
    let kernel = Kernel::new("Server");
    kernel
        .publish(
            "echo",
            ["say"],
            service_fn(|req: Request| async move { Ok::<_, BoxError>(req.into_arg()) }),
        )
        .expect("valid names");
    let (tx, rx) = mpsc::unbounded_channel();
    kernel
        .publish(
            "rec",
            ["add"],
            service_fn(move |req: Request| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(req.arg().clone());
                    Ok::<_, BoxError>(Value::Null)
                }
            }),
        )
        .expect("valid names");
    let server = Server::builder()
        .kernel(kernel)
        .legacy(legacy)
        .bind("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("server starts");
    (server, rx)
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn frame(message: &Value) -> Vec<u8> {
    let image = storable::to_vec(message).expect("encodes");
    [format!("{}\0", image.len()).into_bytes(), image].concat()
}

/// A ClientLite-style call from `name`.
fn call(name: &str, event: &str, params: Value, n: u32) -> Vec<u8> {
    frame(&map(&[
        ("event", Value::from(event)),
        ("params", params),
        (
            "rsvp",
            map(&[
                ("kernel", Value::from(name)),
                ("session", Value::from("IKCLite")),
                ("state", Value::from(format!("response{n}"))),
            ]),
        ),
        ("wantarray", Value::from("")),
        (
            "from",
            map(&[
                ("kernel", Value::from(name)),
                ("session", Value::from("IKCLite")),
            ]),
        ),
    ]))
}

/// Negotiates as ClientLite named `name` does.
async fn lite(addr: &str, name: &str) -> Peer {
    let mut peer = Peer::connect(addr).await;
    peer.send(format!("SETUP KERNEL={name};FREEZER=Storable;PID=4242\r\n").as_bytes())
        .await;
    peer.read_pieces(1).await;
    let Decoded::Line(answer) = decode(&peer.pieces[0]) else {
        panic!("a line");
    };
    assert!(
        answer.starts_with("SETUP KERNEL=Server,127.0.0.1:"),
        "{answer}"
    );
    peer
}

fn params_of(piece: &Decoded) -> Value {
    let Decoded::Message(Value::Map(message)) = piece else {
        panic!("a message, got {piece:?}");
    };
    message.get("params").cloned().unwrap_or_default()
}

async fn next_event(monitor: &mut ikc_core::Monitor) -> MonitorEvent {
    tokio::time::timeout(WAIT, monitor.next_event())
        .await
        .expect("monitor event in time")
        .expect("monitor open")
}

#[tokio::test]
async fn a_legacy_peer_appears_on_the_monitor_bus_like_any_other() {
    let (server, _) = server(true).await;
    let mut monitor = server.kernel().monitor();
    let addr = server.local_addr().to_string();
    let mut peer = Peer::connect(&addr).await;
    // The captured ClientLite's SETUP line.
    peer.send(&connection("wire.jsonl", 1)[0].bytes).await;
    peer.read_pieces(1).await;
    match next_event(&mut monitor).await {
        MonitorEvent::Register { kernel, pid, .. } => {
            assert_eq!((kernel.as_str(), pid), ("Probe", 10487));
        }
        other => panic!("expected Register, got {other:?}"),
    }
    assert!(
        server
            .kernel()
            .kernels()
            .iter()
            .any(|k| k.kernel == "Probe")
    );
    peer.finish().await;
    match next_event(&mut monitor).await {
        MonitorEvent::Unregister { kernel } => assert_eq!(kernel, "Probe"),
        other => panic!("expected Unregister, got {other:?}"),
    }
    server.shutdown();
}

#[tokio::test]
async fn native_and_legacy_peers_share_one_port() {
    let (server, _) = server(true).await;
    let addr = server.local_addr().to_string();
    let mut perl = lite(&addr, "Perl").await;
    let native = Client::connect(&addr)
        .await
        .expect("native client connects");
    assert_eq!(
        native
            .call("echo/say", "native")
            .await
            .expect("native call"),
        Value::from("native")
    );
    perl.send(&call(
        "Perl",
        "poe://Server/echo/say",
        Value::from("perl"),
        0,
    ))
    .await;
    perl.read_pieces(2).await;
    assert_eq!(params_of(&decode(&perl.pieces[1])), Value::from("perl"));
    server.shutdown();
}

#[tokio::test]
async fn with_legacy_off_a_setup_line_is_not_answered() {
    let (server, _) = server(false).await;
    let addr = server.local_addr().to_string();
    let mut peer = Peer::connect(&addr).await;
    peer.send(b"SETUP KERNEL=Probe;FREEZER=Storable;PID=1\r\n")
        .await;
    // The native path refuses a bad preface by closing.
    peer.finish().await;
    assert!(peer.pieces.is_empty(), "{:?}", peer.pieces);
    server.shutdown();
}

#[tokio::test]
async fn legacy_posts_and_proxy_posts_reach_the_session() {
    let (server, mut recorded) = server(true).await;
    let addr = server.local_addr().to_string();
    let mut perl = lite(&addr, "Perl").await;
    // A plain post, then a post through IKC:proxy as a POE client sends it.
    perl.send(&frame(&map(&[
        ("event", Value::from("poe://Server/rec/add")),
        ("params", Value::from(vec![7, 8])),
    ])))
    .await;
    perl.send(&frame(&map(&[
        (
            "event",
            map(&[
                ("kernel", Value::from("Server")),
                ("session", Value::from("rec")),
                ("state", Value::from("IKC:proxy")),
            ]),
        ),
        (
            "params",
            Value::List(vec![
                Value::from("add"),
                Value::List(vec![Value::from(vec![5, 6])]),
            ]),
        ),
    ])))
    .await;
    for expected in [vec![7, 8], vec![5, 6]] {
        let got = tokio::time::timeout(WAIT, recorded.recv())
            .await
            .expect("recorded in time")
            .expect("recorder open");
        assert_eq!(got, Value::from(expected));
    }
    perl.finish().await;
    assert_eq!(perl.pieces.len(), 1, "posts are not answered");
    server.shutdown();
}

#[tokio::test]
async fn an_unreadable_message_is_answered_and_the_connection_goes_on() {
    let (server, _) = server(true).await;
    let addr = server.local_addr().to_string();
    let mut other = lite(&addr, "Other").await;
    let mut perl = lite(&addr, "Perl").await;
    // The payload that killed the Perl server (WIRE.md §4), then a blessed
    // object, then a good call.
    perl.send(b"5\0hello").await;
    let blessed = [0x05, 0x0b, 0x11, 3, b'F', b'o', b'o', 0x03, 0, 0, 0, 0];
    perl.send(
        &[
            format!("{}\0", blessed.len()).into_bytes(),
            blessed.to_vec(),
        ]
        .concat(),
    )
    .await;
    perl.send(&call("Perl", "echo/say", Value::from("still here"), 0))
        .await;
    perl.read_pieces(4).await;
    for piece in &perl.pieces[1..3] {
        let params = params_of(&decode(piece));
        let items = params.as_list().expect("error params");
        assert_eq!(items[2], Value::from("thaw"));
    }
    let Decoded::Message(Value::Map(error)) = decode(&perl.pieces[2]) else {
        panic!("a message");
    };
    assert_eq!(error.get("is_error"), Some(&Value::Int(1)));
    assert!(
        params_of(&decode(&perl.pieces[2])).as_list().expect("list")[0]
            .as_str()
            .expect("text")
            .contains("blessed object of class Foo")
    );
    assert_eq!(
        params_of(&decode(&perl.pieces[3])),
        Value::from("still here")
    );
    // Another connection never noticed.
    other
        .send(&call("Other", "echo/say", Value::from("fine"), 0))
        .await;
    other.read_pieces(2).await;
    assert_eq!(params_of(&decode(&other.pieces[1])), Value::from("fine"));
    server.shutdown();
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() {
    let kernel = Kernel::new("Server");
    let server = Server::builder()
        .kernel(kernel)
        .max_frame_length(1024)
        .bind("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("server starts");
    let addr = server.local_addr().to_string();
    let mut other = lite(&addr, "Other").await;
    let mut perl = lite(&addr, "Perl").await;
    perl.send(b"999999999\0").await;
    perl.finish().await;
    // The peer is told why before the close.
    let last = perl.pieces.last().map(decode).expect("an error message");
    let text = params_of(&last).as_list().expect("list")[0].clone();
    assert!(
        text.as_str().expect("text").contains("exceeds the maximum"),
        "{text:?}"
    );
    other
        .send(&call("Other", "IKC/ping", Value::from("PING"), 0))
        .await;
    other.read_pieces(2).await;
    assert_eq!(params_of(&decode(&other.pieces[1])), Value::from("PONG"));
    server.shutdown();
}

#[tokio::test]
async fn a_name_already_connected_is_refused_with_not() {
    let (server, _) = server(true).await;
    let addr = server.local_addr().to_string();
    let _first = lite(&addr, "Dup").await;
    let mut second = Peer::connect(&addr).await;
    second
        .send(b"SETUP KERNEL=Dup;FREEZER=Storable;PID=2\r\n")
        .await;
    second.read_pieces(1).await;
    assert_eq!(decode(&second.pieces[0]), Decoded::Line("NOT".to_owned()));
    server.shutdown();
}

#[tokio::test]
async fn a_legacy_peer_reaches_a_native_client_through_the_server() {
    let (server, _) = server(true).await;
    let addr = server.local_addr().to_string();
    let native = Client::builder()
        .name("Native")
        .connect(&addr)
        .await
        .expect("native client connects");
    native
        .publish(
            "greet",
            ["hi"],
            service_fn(|req: Request| async move {
                Ok::<_, BoxError>(Value::from(format!(
                    "hi {}",
                    req.arg().as_str().unwrap_or("?")
                )))
            }),
        )
        .expect("valid names");
    let mut perl = lite(&addr, "Perl").await;
    perl.send(&call(
        "Perl",
        "poe://Native/greet/hi",
        Value::from("perl"),
        0,
    ))
    .await;
    perl.read_pieces(2).await;
    assert_eq!(params_of(&decode(&perl.pieces[1])), Value::from("hi perl"));
    server.shutdown();
}

#[tokio::test]
async fn the_legacy_client_calls_posts_and_subscribes_over_the_perl_protocol() {
    let (server, mut recorded) = server(true).await;
    let addr = server.local_addr().to_string();
    let mut monitor = server.kernel().monitor();
    let client = Client::builder()
        .name("Lite")
        .legacy(true)
        .connect(&addr)
        .await
        .expect("legacy client connects");
    assert_eq!(client.server().kernel, "Server");
    match next_event(&mut monitor).await {
        MonitorEvent::Register { kernel, .. } => assert_eq!(kernel, "Lite"),
        other => panic!("expected Register, got {other:?}"),
    }
    assert_eq!(
        client.call("echo/say", vec![1, 2]).await.expect("call"),
        Value::from(vec![1, 2])
    );
    client.post("rec/add", 5).await.expect("post");
    let got = tokio::time::timeout(WAIT, recorded.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(got, Value::from(5));
    // Errors arrive as Perl error messages and find their call.
    let error = client
        .call("echo/nope", 1)
        .await
        .expect_err("not published");
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    let error = client.call("nosuch/say", 1).await.expect_err("no session");
    assert_eq!(error.kind(), ErrorKind::NoSession);
    let echo = client.subscribe("echo").await.expect("subscribed");
    assert_eq!(
        echo.call("say", Value::from("via subscription"))
            .await
            .expect("call"),
        Value::from("via subscription")
    );
    let error = client.subscribe("nosuch").await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::NoSession);
    server.shutdown();
}

#[tokio::test]
async fn the_server_calls_a_session_a_legacy_client_publishes() {
    let (server, _) = server(true).await;
    let addr = server.local_addr().to_string();
    let client = Client::connect_legacy(&addr).await.expect("connects");
    client
        .publish(
            "calc",
            ["double"],
            service_fn(|req: Request| async move {
                Ok::<_, BoxError>(Value::from(req.arg().as_i64().unwrap_or(0) * 2))
            }),
        )
        .expect("valid names");
    let target = format!("poe://{}/calc/double", client.kernel().name());
    let answer = server
        .kernel()
        .call(&target.parse().expect("specifier"), Value::from(21))
        .await
        .expect("answered");
    assert_eq!(answer, Value::from(42));
    server.shutdown();
}

#[tokio::test]
async fn a_legacy_peer_that_never_finishes_the_negotiation_is_dropped() {
    let server = Server::builder()
        .kernel(Kernel::new("Server"))
        .handshake_timeout(std::time::Duration::from_millis(200))
        .bind("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("server starts");
    let mut peer = Peer::connect(&server.local_addr().to_string()).await;
    peer.send(b"SETUP KERNEL=Slow").await;
    // The server closes; `finish` fails the test if it does not within WAIT.
    peer.finish().await;
    assert!(peer.pieces.is_empty());
    server.shutdown();
}

#[tokio::test]
async fn a_graceful_shutdown_closes_legacy_connections() {
    let (server, _) = server(true).await;
    let mut perl = lite(&server.local_addr().to_string(), "Perl").await;
    perl.send(&call("Perl", "echo/say", Value::from("before"), 0))
        .await;
    perl.read_pieces(2).await;
    server.shutdown();
    let report = tokio::time::timeout(WAIT, server.stopped())
        .await
        .expect("server stops in time");
    assert_eq!((report.connections, report.aborted), (1, 0));
    perl.finish().await;
    assert_eq!(perl.pieces.len(), 2, "nothing after the answer");
}

#[tokio::test]
async fn a_legacy_peer_gets_what_an_unauthenticated_peer_may_call_and_no_more() {
    let kernel = Kernel::new("Server");
    kernel
        .publish(
            "whoami",
            ["get"],
            service_fn(|req: Request| async move {
                let caller = req.caller().ok_or("no caller")?;
                Ok::<_, BoxError>(Value::from(caller.identity.to_string()))
            }),
        )
        .expect("valid names");
    kernel
        .publish(
            "native",
            ["only"],
            service_fn(|_: Request| async { Ok::<_, BoxError>(Value::from("native")) }),
        )
        .expect("valid names");
    let policy = r#"
        [[rule]]
        target = "native/*"
        allow = [{ legacy = false }]

        [[rule]]
        target = "*"
        allow = [{ authenticated = false }]
    "#;
    let server = Server::builder()
        .kernel(kernel)
        .access_policy(policy.parse().expect("a policy"))
        .bind("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("server starts");
    let addr = server.local_addr().to_string();
    let perl = Client::connect_legacy(&addr).await.expect("connects");
    let me = tokio::time::timeout(WAIT, perl.call("whoami/get", Value::Null))
        .await
        .expect("answered in time")
        .expect("an unauthenticated peer may call whoami");
    let me = me.as_str().unwrap_or_default().to_owned();
    assert!(me.starts_with("legacy from 127.0.0.1:"), "{me}");
    let refused = tokio::time::timeout(WAIT, perl.call("native/only", Value::Null))
        .await
        .expect("answered in time")
        .expect_err("a Perl peer may not call native/*");
    // The Perl protocol has no error kinds: the refusal arrives as text.
    assert!(
        refused.message().contains("may not call native/only"),
        "{refused:?}"
    );

    let native = Client::connect(&addr).await.expect("connects");
    assert_eq!(
        native
            .call("native/only", Value::Null)
            .await
            .expect("allowed"),
        Value::from("native")
    );
    server.shutdown();
}
