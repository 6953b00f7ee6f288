//! Shared-secret authentication: both sides prove the secret, a peer without
//! it or with the wrong one is refused with a reason and a log line naming
//! its address, and a recorded handshake cannot be replayed.
#![cfg(feature = "auth")]

mod support;

use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use ikc_core::Value;
use ikc_proto::{HandshakeCodec, pb};
use ikc_server::auth::Secret;
use ikc_server::{Client, Server, ServerHandle, TransportErrorKind};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use support::{LOOPBACK, server_kernel, within};

const SECRET: &str = "correct horse battery staple";

async fn server_with_secret() -> ServerHandle {
    let (kernel, _gate) = server_kernel("Server");
    Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .secret(Secret::new(SECRET))
        .serve()
        .await
        .unwrap()
}

fn hmac(label: &[u8], first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac.finalize().into_bytes().to_vec()
}

async fn raw(server: &ServerHandle) -> Framed<TcpStream, HandshakeCodec> {
    let stream = TcpStream::connect(server.local_addr().to_string())
        .await
        .unwrap();
    Framed::new(stream, HandshakeCodec::client())
}

fn hello(nonce: &[u8]) -> pb::Handshake {
    pb::Hello {
        version: 1,
        kernel: "Raw".to_owned(),
        auth: nonce.to_vec().into(),
        ..Default::default()
    }
    .into()
}

async fn next(framed: &mut Framed<TcpStream, HandshakeCodec>) -> Option<pb::handshake::Kind> {
    within("a handshake answer", framed.next())
        .await
        .and_then(|m| m.ok())
        .and_then(|m| m.kind)
}

#[tokio::test]
async fn both_sides_with_the_secret_connect_and_call() {
    let server = server_with_secret().await;
    let client = Client::builder()
        .secret(Secret::new(SECRET))
        .connect(&server.local_addr().to_string())
        .await
        .unwrap();
    let answer = within("a call", client.call("echo/say", "authenticated")).await;
    assert_eq!(answer.unwrap(), Value::from("authenticated"));
}

#[tokio::test]
async fn a_client_without_the_secret_is_refused_with_the_reason() {
    let server = server_with_secret().await;
    let error = Client::connect(&server.local_addr().to_string())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Refused);
    assert!(
        error.to_string().contains("requires a shared secret"),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_with_the_wrong_secret_does_not_trust_the_server() {
    let server = server_with_secret().await;
    let error = Client::builder()
        .secret(Secret::new("wrong"))
        .connect(&server.local_addr().to_string())
        .await
        .unwrap_err();
    // The server's proof does not verify with the client's secret, so the
    // client stops before proving anything itself.
    assert_eq!(error.kind(), TransportErrorKind::Handshake);
    assert!(
        error
            .to_string()
            .contains("does not know the shared secret"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_without_the_secret_is_not_trusted_by_a_client_with_one() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let error = Client::builder()
        .secret(Secret::new(SECRET))
        .connect(&server.local_addr().to_string())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("did not prove"), "{error}");
}

#[tokio::test]
async fn a_wrong_proof_is_refused_as_auth() {
    let server = server_with_secret().await;
    let mut peer = raw(&server).await;
    peer.send(hello(&[7; 16])).await.unwrap();
    let Some(pb::handshake::Kind::Challenge(_)) = next(&mut peer).await else {
        panic!("expected a challenge");
    };
    peer.send(
        pb::Proof {
            proof: vec![0; 32].into(),
        }
        .into(),
    )
    .await
    .unwrap();
    match next(&mut peer).await {
        Some(pb::handshake::Kind::Refuse(refuse)) => {
            assert_eq!(refuse.code, i32::from(pb::RefuseCode::Auth));
            assert!(
                refuse.reason.contains("wrong shared secret"),
                "{}",
                refuse.reason
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_recorded_handshake_cannot_be_replayed() {
    let server = server_with_secret().await;
    let client_nonce = [42; 16];

    // A legitimate exchange, recorded by whoever watches the wire.
    let mut first = raw(&server).await;
    first.send(hello(&client_nonce)).await.unwrap();
    let Some(pb::handshake::Kind::Challenge(challenge)) = next(&mut first).await else {
        panic!("expected a challenge");
    };
    assert_eq!(
        challenge.proof.to_vec(),
        hmac(b"ikc-v1 server", &client_nonce, &challenge.nonce)
    );
    let recorded = hmac(b"ikc-v1 client", &challenge.nonce, &client_nonce);
    first
        .send(
            pb::Proof {
                proof: recorded.clone().into(),
            }
            .into(),
        )
        .await
        .unwrap();
    assert!(matches!(
        next(&mut first).await,
        Some(pb::handshake::Kind::Welcome(_))
    ));
    drop(first);

    // The same bytes on a new connection: the server's nonce is new, so the
    // recorded proof no longer fits.
    let mut replay = raw(&server).await;
    replay.send(hello(&client_nonce)).await.unwrap();
    let Some(pb::handshake::Kind::Challenge(second)) = next(&mut replay).await else {
        panic!("expected a challenge");
    };
    assert_ne!(second.nonce, challenge.nonce);
    replay
        .send(
            pb::Proof {
                proof: recorded.into(),
            }
            .into(),
        )
        .await
        .unwrap();
    assert!(matches!(
        next(&mut replay).await,
        Some(pb::handshake::Kind::Refuse(_))
    ));
}
