//! Peers that misbehave on purpose, over the in-memory transport on paused
//! time: the channel bounds what it holds for them and lets them go.

mod support;

use std::time::Duration;

use futures::SinkExt;
use ikc_core::transport::memory;
use ikc_core::{Channel, Kernel, PeerInfo, Value};
use ikc_proto::pb;

use support::{TRANSPORT_BUFFER, echo, within};

#[tokio::test(start_paused = true)]
async fn peer_that_sends_calls_but_never_reads_is_dropped_by_the_keepalive() {
    // A send that waits this long means the channel stopped reading us.
    const STALLED: Duration = Duration::from_millis(100);
    // Far more than the channel may hold for one peer.
    const GIVE_UP: u64 = 10_000;
    let kernel = Kernel::new("Local");
    kernel.publish("echo", ["say"], echo()).unwrap();
    let (kernel_end, mut hog) = memory::pair(TRANSPORT_BUFFER);
    let peer = PeerInfo::new("Hog".to_owned(), Vec::new(), 4242);
    let (_handle, driver) = Channel::builder(kernel.clone())
        .keepalive(Some(Duration::from_secs(1)))
        .connect(peer, kernel_end)
        .expect("the hog registers");
    let driver = tokio::spawn(driver);

    let mut sent = 0;
    loop {
        let call = pb::Request {
            id: sent + 1,
            target: "poe://Local/echo/say".to_owned(),
            arg: Some(Value::from("answer me").into()),
            ..Default::default()
        };
        match tokio::time::timeout(STALLED, hog.send(call.into())).await {
            Ok(sent_ok) => sent_ok.expect("the channel is open"),
            Err(_) => break,
        }
        sent += 1;
        assert!(
            sent < GIVE_UP,
            "the channel kept reading a peer that reads nothing"
        );
    }

    // It cannot even be sent a Ping; after two keepalive intervals without
    // a frame from it, the channel ends instead of waiting to flush.
    let result = within("the hog to be dropped", driver)
        .await
        .expect("the driver does not panic");
    assert!(result.is_err(), "{result:?}");
    assert!(kernel.kernels().is_empty(), "{:?}", kernel.kernels());
}
