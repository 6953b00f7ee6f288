//! The limits both ends announce in the handshake, over real sockets on
//! 127.0.0.1:0: `Welcome` and `Hello` carry the configured keepalive and
//! in-flight limit, a client keeps its calls within the server's limit
//! (queueing the rest, up to a bound), the server's `Overloaded` carries the
//! retry hint it was given, and each side drops a peer that stops answering
//! its pings.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::future::join_all;
use futures::{SinkExt, StreamExt};
use ikc_core::{BoxError, ErrorKind, IkcError, Kernel, Request, Value, service_fn};
use ikc_proto::{FrameCodec, HandshakeCodec, pb};
use ikc_server::{Client, ListenAddr, Server, ServerHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use support::{LOOPBACK, hello_bytes, publish_slow, read_handshake_answer, within, write_raw};

/// A keepalive short enough for a test to see a silent peer dropped well
/// within the helpers' wait bound.
const SHORT_KEEPALIVE: Duration = Duration::from_millis(200);

async fn serve(server: Server) -> ServerHandle {
    server
        .bind(LOOPBACK)
        .serve()
        .await
        .expect("the server starts")
}

fn addr_of(server: &ServerHandle) -> SocketAddr {
    match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        ListenAddr::Unix(path) => panic!("a TCP server, not {}", path.display()),
    }
}

/// Polls `fut` once: a call is in the client's table (sent, or queued)
/// after its first poll.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Opens a raw connection to `addr` with a `Hello` that announces nothing,
/// and returns the `Welcome` and the connection, now speaking frames.
async fn raw_handshake(addr: SocketAddr) -> (pb::Welcome, Framed<TcpStream, FrameCodec>) {
    let stream = within("a raw connect", TcpStream::connect(addr))
        .await
        .expect("the server accepts");
    let mut framed = Framed::new(stream, HandshakeCodec::client());
    let hello = pb::Hello {
        version: 1,
        kernel: "Raw".to_owned(),
        pid: std::process::id(),
        ..Default::default()
    };
    within("sending Hello", framed.send(hello.into()))
        .await
        .expect("Hello is sent");
    let welcome = match within("the Welcome", framed.next()).await {
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Welcome(welcome)),
        })) => welcome,
        other => panic!("expected Welcome, got {other:?}"),
    };
    (welcome, framed.map_codec(HandshakeCodec::into_frame_codec))
}

fn call_frame(id: u64, target: &str, arg: Value) -> pb::Frame {
    pb::Request {
        id,
        target: target.to_owned(),
        arg: Some(arg.into()),
        from: String::new(),
        deadline_ms: 0,
        traceparent: String::new(),
    }
    .into()
}

#[tokio::test]
async fn welcome_announces_the_servers_keepalive_and_in_flight_limit() {
    let server = serve(
        Server::builder()
            .max_in_flight(7)
            .max_frame_length(100_000)
            .keepalive(Some(Duration::from_millis(1500))),
    )
    .await;
    let mut stream = TcpStream::connect(addr_of(&server)).await.unwrap();
    write_raw(&mut stream, hello_bytes(1, "Raw").await).await;
    let Some(pb::handshake::Kind::Welcome(welcome)) = read_handshake_answer(&mut stream).await
    else {
        panic!("expected Welcome");
    };
    assert_eq!(
        welcome.limits,
        Some(pb::Limits {
            max_frame_len: 100_000,
            max_in_flight: 7,
            keepalive_ms: 1500,
        })
    );
}

#[tokio::test]
async fn hello_announces_the_clients_keepalive_and_in_flight_limit() {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = tokio::spawn(async move {
        Client::builder()
            .keepalive(Some(Duration::from_secs(2)))
            .max_in_flight(5)
            .max_frame_length(200_000)
            .handshake_timeout(Duration::from_secs(1))
            .connect(&addr)
            .await
    });
    let (stream, _) = within("the client to connect", listener.accept())
        .await
        .unwrap();
    let mut framed = Framed::new(stream, HandshakeCodec::server());
    let hello = match within("the Hello", framed.next()).await {
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Hello(hello)),
        })) => hello,
        other => panic!("expected Hello, got {other:?}"),
    };
    assert_eq!(
        hello.limits,
        Some(pb::Limits {
            max_frame_len: 200_000,
            max_in_flight: 5,
            keepalive_ms: 2000,
        })
    );
    drop(framed);
    // Closed during the handshake: the client gives up with an error.
    assert!(within("the client", client).await.unwrap().is_err());
}

#[tokio::test]
async fn a_client_keeps_its_calls_within_the_servers_limit_and_every_call_is_answered() {
    let kernel = Kernel::new("Server");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    kernel
        .publish("slow", ["work"], {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            service_fn(move |req: Request| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Slow, so that calls pile up behind the limit.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, BoxError>(req.into_arg())
                }
            })
        })
        .unwrap();
    let server = serve(Server::builder().kernel(kernel).max_in_flight(2)).await;
    let client = within(
        "the client to connect",
        Client::connect(&addr_of(&server).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(client.handle().peer_limits().max_in_flight, Some(2));

    let calls = (0..20).map(|n| client.call("slow/work", n));
    let answers: Vec<Result<Value, IkcError>> = within("twenty calls", join_all(calls)).await;

    for (n, answer) in (0..20).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)), "call {n}");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} calls ran at once at the server");
}

#[tokio::test]
async fn past_the_queue_bound_a_client_call_fails_at_once_with_overloaded_and_the_hint() {
    let kernel = Kernel::new("Server");
    let mut gate = publish_slow(&kernel);
    let server = serve(Server::builder().kernel(kernel).max_in_flight(1)).await;
    let hint = Duration::from_millis(66);
    let client = within(
        "the client to connect",
        Client::builder()
            .max_queued_calls(1)
            .overloaded_retry_after(hint)
            .connect(&addr_of(&server).to_string()),
    )
    .await
    .unwrap();

    let mut running = Box::pin(client.call("slow/wait", "running"));
    assert!(poll_once(&mut running).await.is_pending());
    assert_eq!(gate.started().await, Value::from("running"));
    let mut queued = Box::pin(client.call("slow/wait", "queued"));
    assert!(poll_once(&mut queued).await.is_pending());

    let refused = within(
        "the call past the bound",
        client.call("slow/wait", "refused"),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Overloaded, "{refused}");
    assert_eq!(refused.retry_after(), Some(hint));

    gate.release(2);
    assert_eq!(
        within("the running call", running).await,
        Ok(Value::from("running"))
    );
    assert_eq!(
        within("the queued call", queued).await,
        Ok(Value::from("queued"))
    );
}

#[tokio::test]
async fn the_servers_retry_hint_reaches_a_raw_peer_that_overloads_it() {
    let kernel = Kernel::new("Server");
    let mut gate = publish_slow(&kernel);
    let hint = Duration::from_millis(321);
    let server = serve(
        Server::builder()
            .kernel(kernel)
            .max_in_flight(1)
            .overloaded_retry_after(hint),
    )
    .await;
    let (_, mut raw) = raw_handshake(addr_of(&server)).await;

    within("a call", raw.send(call_frame(1, "slow/wait", 1.into())))
        .await
        .unwrap();
    gate.started().await;
    within("a call", raw.send(call_frame(2, "slow/wait", 2.into())))
        .await
        .unwrap();
    let error = match within("the answer to the second call", raw.next()).await {
        Some(Ok(pb::Frame {
            kind: Some(pb::frame::Kind::Error(error)),
        })) => error,
        other => panic!("expected an Error frame, got {other:?}"),
    };
    assert_eq!(error.id, 2);
    let error = IkcError::from_proto(error);
    assert_eq!(error.kind(), ErrorKind::Overloaded, "{error}");
    assert_eq!(error.retry_after(), Some(hint));
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_by_the_servers_keepalive() {
    let server = serve(Server::builder().keepalive(Some(SHORT_KEEPALIVE))).await;
    let (welcome, mut raw) = raw_handshake(addr_of(&server)).await;
    assert_eq!(
        welcome.limits.map(|l| l.keepalive_ms),
        Some(u32::try_from(SHORT_KEEPALIVE.as_millis()).unwrap())
    );

    // Read, never answer: a Ping after one interval, the close after another.
    let frames = within("the server to drop the silent peer", async {
        let mut frames = Vec::new();
        while let Some(Ok(frame)) = raw.next().await {
            frames.push(frame);
        }
        frames
    })
    .await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f.kind, Some(pb::frame::Kind::Ping(_)))),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_client_drops_a_server_that_stops_answering_pings() {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent_server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, HandshakeCodec::server());
        let _hello = framed.next().await;
        let welcome = pb::Welcome {
            kernel: "Silent".to_owned(),
            pid: std::process::id(),
            ..Default::default()
        };
        framed.send(welcome.into()).await.unwrap();
        // Holds the connection open, reads nothing, answers nothing.
        framed
    });
    let client = within(
        "the client to connect",
        Client::builder()
            .keepalive(Some(SHORT_KEEPALIVE))
            .connect(&addr),
    )
    .await
    .unwrap();
    let _held_open = within("the silent server", silent_server).await.unwrap();

    within("the client to drop the silent server", client.closed()).await;
    let error = client.call("echo/say", "late").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Disconnected, "{error}");
}
