//! Connection faults: a peer whose connection is cut in the middle of a
//! frame is dropped cleanly while the server keeps serving everyone else.

mod support;

use ikc_core::{MonitorEvent, Value};
use ikc_server::{Client, Server};
use tokio::net::TcpStream;

use support::{
    LOOPBACK, hello_bytes, read_handshake_answer, server_kernel, wait_for_event, within, write_raw,
};

#[tokio::test]
async fn a_connection_cut_in_the_middle_of_a_frame_is_dropped_and_others_are_served() {
    let (kernel, _gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let control = within("connect", Client::connect(&addr)).await.unwrap();

    let mut cut = TcpStream::connect(&addr).await.unwrap();
    write_raw(&mut cut, hello_bytes(1, "Cut").await).await;
    assert!(matches!(
        read_handshake_answer(&mut cut).await,
        Some(ikc_proto::pb::handshake::Kind::Welcome(_))
    ));
    // A head announcing 100 bytes, then only 10 of them, then the cut.
    let mut partial = 100_u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[0x0a; 10]);
    write_raw(&mut cut, partial).await;
    drop(cut);

    wait_for_event(
        &mut monitor,
        |event| matches!(event, MonitorEvent::Unregister { kernel } if kernel == "Cut"),
    )
    .await;
    for n in 0..100 {
        let answer = within("a control call", control.call("echo/say", n)).await;
        assert_eq!(answer.unwrap(), Value::from(n));
    }
    assert!(server.kernel().peer("Cut").is_none());
}
