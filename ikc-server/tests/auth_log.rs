//! A peer refused for not proving the shared secret is logged with its
//! address.
//!
//! One test in its own binary on purpose (as `trace.rs`): tracing caches
//! each callsite's interest process-wide, so a thread-local subscriber in a
//! binary whose other tests hit the same callsite at the same time can miss
//! the event. In `auth.rs`, beside the other refusal tests, this one failed
//! about once in 15 runs.
#![cfg(feature = "auth")]

mod support;

use ikc_proto::pb;
use ikc_server::Server;
use ikc_server::auth::Secret;
use tokio::net::TcpStream;

use support::{
    CapturedLogs, LOOPBACK, hello_bytes, read_handshake_answer, server_kernel, write_raw,
};

// Current-thread runtime: the subscriber is this thread's default and the
// server runs on this thread.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_peer_is_logged_with_its_address() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .secret(Secret::new("correct horse battery staple"))
        .serve()
        .await
        .unwrap();

    // A Hello without the nonce a peer that knows the secret sends.
    let mut peer = TcpStream::connect(server.local_addr().to_string())
        .await
        .unwrap();
    let local = peer.local_addr().unwrap();
    write_raw(&mut peer, hello_bytes(1, "Raw").await).await;
    assert!(matches!(
        read_handshake_answer(&mut peer).await,
        Some(pb::handshake::Kind::Refuse(_))
    ));

    let lines = logs.lines();
    let line = lines
        .iter()
        .find(|line| line.contains("did not prove the shared secret"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{lines:#?}"));
    assert!(line.contains(&local.to_string()), "{line}");
}
