//! The connection limit: on a real server (a full server leaves new peers
//! in the backlog instead of accepting and dropping them), and the
//! `ConnectionLimit` layer alone, driven by tower-test.

mod support;

use std::time::Duration;

use ikc_core::Value;
use ikc_server::limit::ConnectionLimitLayer;
use ikc_server::{Client, Server, TransportErrorKind};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower_test::{assert_request_eq, mock};

use support::{LOOPBACK, server_kernel, within};

#[tokio::test]
async fn full_server_leaves_a_third_peer_unanswered_until_a_connection_closes() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .max_connections(2)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let first = within("first connect", Client::connect(&addr))
        .await
        .unwrap();
    let second = within("second connect", Client::connect(&addr))
        .await
        .unwrap();

    // The third peer's TCP connect succeeds (the kernel's backlog takes it),
    // but the server does not accept it, so no Welcome comes.
    let error = within(
        "the third handshake to time out",
        Client::builder()
            .handshake_timeout(Duration::from_millis(300))
            .connect(&addr),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Handshake, "{error}");
    assert_eq!(server.kernel().kernels().len(), 2);

    first.close();
    within("the first connection to close", first.closed()).await;
    let third = within("a connect once a slot is free", Client::connect(&addr))
        .await
        .unwrap();
    let answer = within("call", third.call("echo/say", "in")).await;
    assert_eq!(answer.unwrap(), Value::from("in"));
    let answer = within("call", second.call("echo/say", "still in")).await;
    assert_eq!(answer.unwrap(), Value::from("still in"));
}

#[tokio::test]
async fn permit_is_held_until_the_connection_future_is_dropped() {
    let (mut service, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(ConnectionLimitLayer::new(1));

    assert_ready_ok!(service.poll_ready());
    let mut connection = task::spawn(service.call("conn 1"));
    assert_pending!(service.poll_ready());
    assert_eq!(service.get_ref().available(), 0);

    assert_request_eq!(handle, "conn 1").send_response("closed");
    assert_eq!(assert_ready_ok!(connection.poll()), "closed");
    // Finished but not dropped: the permit lives in the future.
    assert_pending!(service.poll_ready());

    drop(connection);
    assert!(
        service.is_woken(),
        "a freed permit wakes the waiting service"
    );
    assert_ready_ok!(service.poll_ready());
}

#[tokio::test]
async fn clones_share_the_count_but_not_a_reserved_permit() {
    let (mut first, mut handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(ConnectionLimitLayer::new(1));

    assert_ready_ok!(first.poll_ready());
    let mut clone = first.clone();
    // The clone counts against the same limit, and the permit `first`
    // reserved stays with `first`.
    assert_pending!(clone.poll_ready());

    let connection = first.call("from first");
    assert_request_eq!(handle, "from first").send_response("done");
    assert!(!clone.is_woken());
    drop(connection);
    assert!(clone.is_woken());
    assert_ready_ok!(clone.poll_ready());
    assert_pending!(first.poll_ready());
}

#[tokio::test]
async fn dropping_a_service_returns_the_permit_it_reserved() {
    let (mut first, _handle) =
        mock::spawn_layer::<&'static str, &'static str, _>(ConnectionLimitLayer::new(1));
    let mut second = first.clone();

    assert_ready_ok!(first.poll_ready());
    assert_pending!(second.poll_ready());
    drop(first);

    assert!(second.is_woken());
    assert_ready_ok!(second.poll_ready());
}

#[tokio::test]
async fn each_layered_service_has_its_own_count() {
    let layer = ConnectionLimitLayer::new(1);
    let (mut a, _a_handle) = mock::spawn_layer::<&'static str, &'static str, _>(layer);
    let (mut b, _b_handle) = mock::spawn_layer::<&'static str, &'static str, _>(layer);

    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
}
