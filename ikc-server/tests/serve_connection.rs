//! `ServerHandle::serve_connection`: a stream of the caller's own (here an
//! in-memory pipe) served as a listener's connection is: handshake, calls,
//! registration, refusal of a bad peer, and the graceful shutdown that
//! drains it with the others.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ikc_core::{Kernel, Value};
use ikc_proto::{FrameCodec, HandshakeCodec, pb};
use ikc_server::{ConnectionOutcome, Server, ServerHandle};
use tokio::io::DuplexStream;
use tokio_util::codec::Framed;

use support::{publish_echo, shut_down, within};

async fn server() -> ServerHandle {
    let kernel = Kernel::new("Piped");
    publish_echo(&kernel);
    Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse().expect("an address"))
        .grace_period(Duration::from_secs(5))
        .serve()
        .await
        .expect("the server starts")
}

/// Says Hello as kernel `name` over `io`; returns the stream speaking frames.
async fn handshake(io: DuplexStream, name: &str) -> Framed<DuplexStream, FrameCodec> {
    let mut framed = Framed::new(io, HandshakeCodec::client());
    let hello = pb::Hello {
        version: 1,
        kernel: name.to_owned(),
        pid: std::process::id(),
        ..Default::default()
    };
    within("sending Hello", framed.send(hello.into()))
        .await
        .expect("Hello is sent");
    match within("the Welcome", framed.next()).await {
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Welcome(welcome)),
        })) => assert_eq!(welcome.kernel, "Piped"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    framed.map_codec(HandshakeCodec::into_frame_codec)
}

fn call(id: u64, target: &str, arg: Value) -> pb::Frame {
    pb::Request {
        id,
        target: target.to_owned(),
        arg: Some(arg.into()),
        ..Default::default()
    }
    .into()
}

#[tokio::test]
async fn a_stream_of_ones_own_is_served_like_an_accepted_connection() {
    let server = server().await;
    let (near, far) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(far).await }
    });
    let mut peer = handshake(near, "PipePeer").await;
    assert!(
        server.kernel().peer("PipePeer").is_some(),
        "the peer of the pipe is registered"
    );

    within(
        "a call",
        peer.send(call(7, "echo/say", Value::from("over a pipe"))),
    )
    .await
    .expect("the call is sent");
    match within("the reply", peer.next()).await {
        Some(Ok(pb::Frame {
            kind: Some(pb::frame::Kind::Reply(reply)),
        })) => {
            assert_eq!(reply.id, 7);
            assert_eq!(
                Value::try_from(reply.value.expect("a value")).expect("a value"),
                Value::from("over a pipe")
            );
        }
        other => panic!("expected the reply, got {other:?}"),
    }

    // The peer closes its side: the connection ends, and its peer is gone.
    drop(peer);
    let outcome = within("the connection to end", serving)
        .await
        .expect("the task runs")
        .expect("the connection ends without a transport error");
    assert_eq!(outcome, ConnectionOutcome::Closed);
    assert!(
        server.kernel().peer("PipePeer").is_none(),
        "the peer is unregistered"
    );
    shut_down(&server).await;
}

#[tokio::test]
async fn garbage_on_a_stream_of_ones_own_is_refused() {
    let server = server().await;
    let (mut near, far) = tokio::io::duplex(1024);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(far).await }
    });
    support::write_raw(&mut near, b"IKC\x01\xff\xff\xff\xffnot a hello".to_vec()).await;
    let outcome = within("the refusal", serving).await.expect("the task runs");
    assert!(
        matches!(outcome, Ok(ConnectionOutcome::Refused) | Err(_)),
        "{outcome:?}"
    );
    // The server still serves its listener.
    let client = within(
        "a client",
        ikc_server::Client::connect(&server.local_addr().to_string()),
    )
    .await
    .expect("the server still accepts");
    assert_eq!(
        within("a call", client.call("echo/say", "still here"))
            .await
            .expect("answered"),
        Value::from("still here")
    );
    shut_down(&server).await;
}

#[tokio::test]
async fn a_shutdown_drains_a_stream_of_ones_own_with_the_others() {
    let server = server().await;
    let (near, far) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(far).await }
    });
    let mut peer = handshake(near, "Drained").await;
    server.shutdown();
    // The peer is told to go away, then the server closes the connection.
    let frames = within("the GoAway and the close", async {
        let mut frames = Vec::new();
        while let Some(Ok(frame)) = peer.next().await {
            frames.push(frame);
        }
        frames
    })
    .await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f.kind, Some(pb::frame::Kind::GoAway(_)))),
        "{frames:?}"
    );
    let outcome = within("the connection to end", serving)
        .await
        .expect("the task runs")
        .expect("no transport error");
    assert_eq!(outcome, ConnectionOutcome::Closed);
    let report = within("the shutdown", server.stopped()).await;
    assert_eq!(report.aborted, 0);
    assert!(report.connections >= 1, "{report:?}");
}
