//! TLS on TCP: a client that trusts the server's certificate calls through;
//! a plain client, or one that trusts another certificate, does not get in.
//! The certificates are made in the test (rcgen).
#![cfg(feature = "tls")]

mod support;

use ikc_core::Value;
use ikc_server::tls::{ClientTls, ServerTls};
use ikc_server::{Client, Server, ServerHandle, TransportErrorKind};

use support::{LOOPBACK, server_kernel, within};

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

async fn tls_server(cert: &str, key: &str) -> ServerHandle {
    let (kernel, _gate) = server_kernel("Server");
    Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .handshake_timeout(std::time::Duration::from_secs(2))
        .tls(ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap())
        .serve()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_server_certificate_calls_over_tls() {
    let (cert, key) = certificate();
    let server = tls_server(&cert, &key).await;
    let client = Client::builder()
        .tls(ClientTls::from_pem(cert.as_bytes()).unwrap())
        .connect(&server.local_addr().to_string())
        .await
        .unwrap();
    let answer = within("a call over TLS", client.call("echo/say", vec![1, 2, 3])).await;
    assert_eq!(answer.unwrap(), Value::from(vec![1, 2, 3]));
}

#[tokio::test]
async fn a_plain_client_does_not_get_through_a_tls_server() {
    let (cert, key) = certificate();
    let server = tls_server(&cert, &key).await;
    let error = within(
        "a plain connect",
        Client::connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Handshake, "{error}");
}

#[tokio::test]
async fn a_client_trusting_another_certificate_refuses_the_server() {
    let (cert, key) = certificate();
    let (other, _) = certificate();
    let server = tls_server(&cert, &key).await;
    let error = Client::builder()
        .tls(ClientTls::from_pem(other.as_bytes()).unwrap())
        .connect(&server.local_addr().to_string())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Handshake);
    assert!(error.to_string().contains("TLS handshake"), "{error}");
}

#[test]
fn a_key_that_is_not_pem_is_a_clear_error() {
    let (cert, _) = certificate();
    let error = ServerTls::from_pem(cert.as_bytes(), b"not a key").unwrap_err();
    assert!(error.to_string().contains("private key"), "{error}");
}
