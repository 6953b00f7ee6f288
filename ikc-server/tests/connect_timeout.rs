//! The client's connect timeout: one deadline over the connect, the TLS
//! handshake and the ikc handshake, against servers that never answer, and
//! a refused connect that fails at once instead of waiting it out.

mod support;

use std::time::Duration;

#[cfg(feature = "tls")]
use ikc_server::tls::ClientTls;
use ikc_server::{Client, Server, TransportErrorKind};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::mpsc;

use support::{LOOPBACK, WAIT, server_kernel, within};

/// Far shorter than [`WAIT`] and than the default handshake timeout (5 s),
/// so only the connect timeout can end these attempts in time.
const SHORT: Duration = Duration::from_millis(300);

/// A TCP listener on loopback that accepts connections and never writes.
async fn silent_tcp_listener() -> String {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// Asserts that `result` is the connect timeout's error for `addr`, during
/// `step`.
#[track_caller]
fn assert_timed_out(result: Result<Client, ikc_server::Error>, addr: &str, step: &str) {
    let error = result.expect_err("the server never answers");
    assert_eq!(error.kind(), TransportErrorKind::Timeout, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(addr) && message.contains(step) && message.contains("300ms"),
        "{message}"
    );
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_a_timeout() {
    let addr = silent_tcp_listener().await;
    let result = within(
        "the connect timeout",
        Client::builder().connect_timeout(SHORT).connect(&addr),
    )
    .await;
    assert_timed_out(result, &addr, "the handshake");
}

#[cfg(feature = "perl")]
#[tokio::test]
async fn a_legacy_client_to_a_silent_server_is_a_timeout() {
    let addr = silent_tcp_listener().await;
    let result = within(
        "the connect timeout",
        Client::builder()
            .legacy(true)
            .connect_timeout(SHORT)
            .connect(&addr),
    )
    .await;
    assert_timed_out(result, &addr, "the IKC negotiation");
}

#[tokio::test]
async fn a_silent_unix_socket_server_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let addr = format!("unix:{}", path.display());
    let result = within(
        "the connect timeout",
        Client::builder().connect_timeout(SHORT).connect(&addr),
    )
    .await;
    assert_timed_out(result, &addr, "the handshake");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_tls_client_to_a_server_that_never_answers_the_tls_handshake_is_a_timeout() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let tls = ClientTls::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let addr = silent_tcp_listener().await;
    let result = within(
        "the connect timeout",
        Client::builder()
            .tls(tls)
            .connect_timeout(SHORT)
            .connect(&addr),
    )
    .await;
    assert_timed_out(result, &addr, "the TLS handshake");
}

#[tokio::test]
async fn a_server_whose_backlog_is_full_drops_the_syn_and_the_connect_times_out() {
    // Backlog 0: Linux queues one connection and then drops further SYNs
    // until someone accepts, which nobody does.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(LOOPBACK).unwrap();
    let listener = socket.listen(0).unwrap();
    let server = listener.local_addr().unwrap();
    let addr = server.to_string();
    // Fill the queue until a connect gets no answer at all. On loopback an
    // answered SYN is answered in microseconds.
    let filled = tokio::task::spawn_blocking(move || {
        let mut queued = Vec::new();
        for _ in 0..64 {
            match std::net::TcpStream::connect_timeout(&server, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Some(queued);
                }
                Err(error) => panic!("connecting to the listener failed: {error}"),
            }
        }
        None
    });
    let queued = within("the backlog to fill", filled)
        .await
        .unwrap()
        .expect("the backlog fills and then SYNs go unanswered");

    let result = within(
        "the connect timeout",
        Client::builder().connect_timeout(SHORT).connect(&addr),
    )
    .await;
    assert_timed_out(result, &addr, "the TCP connect");
    drop((queued, listener));
}

#[tokio::test]
async fn a_refused_connect_fails_at_once_with_connect_not_timeout() {
    // Bound, so the port is ours, but not listening: the SYN gets a reset.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(LOOPBACK).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    // A connect timeout far beyond the test's own bound: a refusal that
    // waited for it would fail the `within`.
    let result = within(
        "the refusal",
        Client::builder().connect_timeout(WAIT * 10).connect(&addr),
    )
    .await;
    let error = result.expect_err("nothing listens");
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
    assert!(error.to_string().contains(&addr), "{error}");
    drop(socket);
}

#[tokio::test]
async fn each_reconnect_attempt_is_bounded_by_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let addr = format!("unix:{}", path.display());
    let start_server = || {
        let (kernel, _gate) = server_kernel("Server");
        Server::builder().kernel(kernel).unix(path.clone()).serve()
    };
    let server = start_server().await.unwrap();
    // A handshake timeout far beyond the test's bound: only the connect
    // timeout can end an attempt the silent listener swallows.
    let client = Client::builder()
        .handshake_timeout(WAIT * 10)
        .connect_timeout(SHORT)
        .reconnect(ikc_server::client::Reconnect {
            min: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
        .connect(&addr)
        .await
        .unwrap();
    server.shutdown();
    within("the server to stop", server.stopped()).await;
    within("the client to see the end", client.closed()).await;

    // A listener that takes one reconnect attempt and never answers it.
    let _ = std::fs::remove_file(&path);
    let silent = UnixListener::bind(&path).unwrap();
    let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Ok((stream, _)) = silent.accept().await {
            let _ = accepted_tx.send(stream);
        }
    });
    // Kept open: the attempt on it ends only by its own timeout.
    let _swallowed = within("a reconnect attempt", accepted.recv())
        .await
        .unwrap();

    let _ = std::fs::remove_file(&path);
    let _server = start_server().await.unwrap();
    within("the client to reconnect", async {
        loop {
            if client.call("echo/say", 1).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
