//! Unix sockets: clients connect with `unix:PATH`; a stale socket file is
//! replaced, a live one or a file that is not a socket is left alone with
//! an error, and the socket file is removed at shutdown only if it is still
//! the server's own.

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use ikc_core::{BoxError, Request, Value, service_fn};
use ikc_server::{Client, ListenAddr, Server, ServerHandle, TransportErrorKind};

use support::{server_kernel, shut_down, spec, within};

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

async fn serve_unix(path: &Path) -> Result<ServerHandle, ikc_server::Error> {
    let (kernel, _gate) = server_kernel("Server");
    Server::builder().kernel(kernel).unix(path).serve().await
}

#[tokio::test]
async fn client_and_server_call_each_other_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let server = serve_unix(&path).await.unwrap();
    assert_eq!(server.local_addr(), &ListenAddr::Unix(path.clone()));
    assert!(is_socket(&path));

    let addr = format!("unix:{}", path.display());
    assert_eq!(server.local_addr().to_string(), addr);
    let client = within("connect", Client::builder().name("Local").connect(&addr))
        .await
        .unwrap();
    let answer = within("call", client.call("echo/upper", "over unix")).await;
    assert_eq!(answer.unwrap(), Value::from("OVER UNIX"));

    client
        .publish(
            "probe",
            ["where"],
            service_fn(|_: Request| async { Ok::<_, BoxError>(Value::from("client")) }),
        )
        .unwrap();
    let answer = within(
        "the server's call",
        server
            .kernel()
            .call(&spec("poe://Local/probe/where"), Value::Null),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from("client"));
}

#[tokio::test]
async fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    // A listener that died without cleaning up leaves its file behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path), "the stale socket file is there");

    let server = serve_unix(&path).await.unwrap();

    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    let answer = within("call", client.call("echo/say", "fresh")).await;
    assert_eq!(answer.unwrap(), Value::from("fresh"));
}

#[tokio::test]
async fn live_listener_at_the_path_is_address_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();

    let error = serve_unix(&path).await.unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::AddressInUse);
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    // The other listener keeps its socket.
    assert!(is_socket(&path));
    std::os::unix::net::UnixStream::connect(&path).unwrap();
    live.accept().unwrap();
}

#[tokio::test]
async fn file_that_is_not_a_socket_is_an_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    std::fs::write(&path, "precious").unwrap();

    let error = serve_unix(&path).await.unwrap_err();

    assert_eq!(error.kind(), TransportErrorKind::Bind);
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("not a socket"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn socket_file_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let server = serve_unix(&path).await.unwrap();
    let addr = server.local_addr().to_string();
    let client = within("connect", Client::connect(&addr)).await.unwrap();
    within("call", client.call("echo/say", 1)).await.unwrap();

    shut_down(&server).await;

    assert!(!path.exists(), "the socket file is gone");
    let error = within("connect", Client::connect(&addr)).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
}

#[tokio::test]
async fn socket_file_replaced_by_another_is_left_alone_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let server = serve_unix(&path).await.unwrap();
    // Someone moves our socket aside and puts their own file in its place
    // (renamed, not removed, so the inode cannot be reused meanwhile).
    std::fs::rename(&path, dir.path().join("moved.sock")).unwrap();
    std::fs::write(&path, "not yours").unwrap();

    shut_down(&server).await;

    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not yours");
}
