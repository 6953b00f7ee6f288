//! The connection metrics a server records, read from a debugging recorder
//! installed for this test binary: bytes in and out, and a connection the
//! keepalive dropped.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ikc_core::Kernel;
use ikc_server::{Client, ListenAddr, Server};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{LOOPBACK, hello_bytes, publish_echo, read_until_closed, within};

/// What each counter grew by since the last snapshot: the debugging
/// recorder resets counters as it reads them. A counter never recorded reads 0.
fn counters(snapshotter: &Snapshotter) -> impl Fn(&str) -> u64 {
    let grown: HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_owned(), n)),
            _ => None,
        })
        .collect();
    move |name| grown.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn bytes_and_keepalive_drops_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let kernel = Kernel::new("Server");
    publish_echo(&kernel);
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .keepalive(Some(Duration::from_millis(100)))
        .serve()
        .await
        .expect("the server starts");
    let addr: SocketAddr = match server.local_addr() {
        ListenAddr::Tcp(addr) => *addr,
        ListenAddr::Unix(path) => panic!("a TCP server, not {}", path.display()),
    };

    // A client that calls: bytes both ways.
    let client = within(
        "a client to connect",
        Client::builder().name("Caller").connect(&addr.to_string()),
    )
    .await
    .expect("the client connects");
    // Read (and so reset) what the handshake counted.
    drop(snapshotter.snapshot());
    within("a call", client.call("echo/say", "x".repeat(1000)))
        .await
        .expect("echo answers");
    let grew = counters(&snapshotter);
    let (received, sent) = (
        grew("ikc_bytes_received_total"),
        grew("ikc_bytes_sent_total"),
    );
    assert!(
        received >= 1000,
        "received {received} bytes for a 1000 B call"
    );
    assert!(sent >= 1000, "sent {sent} bytes for a 1000 B answer");
    assert_eq!(grew("ikc_keepalive_drops_total"), 0);

    // A peer that says Hello and then never answers a Ping: dropped after
    // two keepalive intervals, and counted. The calling client, which
    // answers Pings, stays.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    silent
        .write_all(&hello_bytes(1, "Silent").await)
        .await
        .unwrap();
    read_until_closed(&mut silent).await;
    assert_eq!(counters(&snapshotter)("ikc_keepalive_drops_total"), 1);
    within("a second call", client.call("echo/say", "y"))
        .await
        .expect("the answering client is still served");
    assert_eq!(counters(&snapshotter)("ikc_keepalive_drops_total"), 0);
}
