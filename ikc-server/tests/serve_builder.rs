//! What the server builder promises, on loopback TCP: the bound address and
//! the names the kernel answers to, the frame limit and the handshake
//! deadline a misbehaving peer runs into, and clear bind errors.

mod support;

use std::time::Duration;

use ikc_core::{ErrorKind as CallErrorKind, Value};
use ikc_proto::pb;
use ikc_server::{Client, ListenAddr, Server, TransportErrorKind};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::{
    LOOPBACK, call_error, hello_bytes, read_handshake_answer, read_until_closed, server_kernel,
    within, write_raw,
};

#[tokio::test]
async fn port_zero_binds_a_free_port_and_reports_it() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();

    let ListenAddr::Tcp(addr) = server.local_addr() else {
        panic!("a TCP server reports a TCP address");
    };
    assert_eq!(addr.ip(), LOOPBACK.ip());
    assert_ne!(addr.port(), 0, "the real port is reported, not 0");
    let client = within("connect", Client::connect(&addr.to_string()))
        .await
        .unwrap();
    assert_eq!(client.server().kernel, "Server");
}

#[tokio::test]
async fn bound_ip_and_port_is_an_alias_of_the_server_kernel() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = within("connect", Client::connect(&addr)).await.unwrap();

    assert!(server.kernel().is_named(&addr));
    assert!(
        client.server().aliases.contains(&addr),
        "Welcome lists {addr} among {:?}",
        client.server().aliases
    );
    let answer = within("call", client.call(&format!("poe://{addr}/echo/say"), "hi")).await;
    assert_eq!(answer.unwrap(), Value::from("hi"));
}

#[tokio::test]
async fn name_and_aliases_from_the_builder_name_the_server_kernel() {
    let server = Server::builder()
        .name("Hub")
        .alias("central")
        .alias("switchboard")
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let peer = client.server();
    assert_eq!(peer.kernel, "Hub");
    assert!(peer.aliases.iter().any(|a| a == "central"));
    assert!(peer.aliases.iter().any(|a| a == "switchboard"));
    let ping = within("ping", client.call("poe://central/IKC/ping", Value::Null))
        .await
        .unwrap();
    let ping = ping.as_map().expect("ping answers a map");
    assert_eq!(ping["kernel"], Value::from("Hub"));
}

#[tokio::test]
async fn invalid_alias_is_a_config_error() {
    let error = Server::builder()
        .alias("has/slash")
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Config);
    assert!(error.to_string().contains("has/slash"), "{error}");
}

#[tokio::test]
async fn oversized_frame_is_refused_with_its_reason_and_others_keep_being_served() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .max_frame_length(1024)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let bystander = within("connect", Client::connect(&addr)).await.unwrap();
    let offender = within("connect", Client::connect(&addr)).await.unwrap();

    // The server announced its limit in Welcome: the client refuses the call
    // before sending it, with the reason, and the connection survives.
    let error = call_error(
        within(
            "the oversized call",
            offender.call("echo/say", "x".repeat(2000)),
        )
        .await,
    );
    assert_eq!(error.kind(), CallErrorKind::BadRequest, "{error}");
    assert!(
        error
            .message()
            .contains("exceeds the peer's frame limit of 1024 bytes"),
        "{error}"
    );
    assert!(!error.may_have_run());
    let answer = within("offender's next call", offender.call("echo/say", "small")).await;
    assert_eq!(answer.unwrap(), Value::from("small"));

    let answer = within("bystander call", bystander.call("echo/say", "still here")).await;
    assert_eq!(answer.unwrap(), Value::from("still here"));
    let newcomer = within("connect", Client::connect(&addr)).await.unwrap();
    let answer = within("newcomer call", newcomer.call("echo/say", "x".repeat(500))).await;
    assert_eq!(answer.unwrap(), Value::from("x".repeat(500)));
}

#[tokio::test]
async fn peer_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    let handshake_timeout = Duration::from_millis(200);
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .handshake_timeout(handshake_timeout)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let connected = Instant::now();
    let received = read_until_closed(&mut silent).await;
    assert!(received.is_empty(), "the server sent {received:?}");
    assert!(
        connected.elapsed() >= handshake_timeout - Duration::from_millis(50),
        "closed after {:?}, before the timeout",
        connected.elapsed()
    );

    let client = within("connect", Client::connect(&addr)).await.unwrap();
    let answer = within("call", client.call("echo/say", 1)).await;
    assert_eq!(answer.unwrap(), Value::from(1));
}

#[tokio::test]
async fn binding_a_port_in_use_fails_with_address_in_use_naming_the_address() {
    let first = Server::builder().bind(LOOPBACK).serve().await.unwrap();
    let ListenAddr::Tcp(addr) = first.local_addr().clone() else {
        panic!("a TCP server reports a TCP address");
    };

    let error = Server::builder().bind(addr).serve().await.unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::AddressInUse);
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the io error is kept"
    );
}

#[tokio::test]
async fn preface_with_another_protocol_version_is_refused_with_code_version() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let mut stream = TcpStream::connect(server.local_addr().to_string())
        .await
        .unwrap();

    write_raw(&mut stream, hello_bytes(2, "Future").await).await;
    let answer = read_handshake_answer(&mut stream).await;

    let Some(pb::handshake::Kind::Refuse(refuse)) = answer else {
        panic!("expected Refuse, got {answer:?}");
    };
    assert_eq!(refuse.code, i32::from(pb::RefuseCode::Version));
    assert!(refuse.reason.contains("version 2"), "{}", refuse.reason);
    // Then it closes the connection, with nothing after the refusal.
    let rest = read_until_closed(&mut stream).await;
    assert!(rest.is_empty(), "bytes after the refusal: {rest:?}");
}
