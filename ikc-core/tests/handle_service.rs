//! `ChannelHandle` as a tower `Service<Request>`: calls and posts through
//! it, tower middleware on top, and a closed connection refused at
//! `poll_ready`.

mod support;

use std::time::Duration;

use ikc_core::{ErrorKind, Kernel, Request, Value};
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

use support::{connect, driver_end, echo, spec, within};

fn kernels() -> (Kernel, Kernel) {
    let a = Kernel::new("A");
    let b = Kernel::new("B");
    b.publish("echo", ["say"], echo()).expect("echo publishes");
    (a, b)
}

#[tokio::test]
async fn a_request_through_the_handle_is_answered_by_the_peer() {
    let (a, b) = kernels();
    let link = connect(&a, &b);
    let request = Request::call(spec("echo/say"), Value::from("as a service"));
    let answer = within("the call", link.a_to_b.clone().oneshot(request))
        .await
        .expect("answered");
    assert_eq!(answer, Value::from("as a service"));

    // A target naming the peer kernel is the same session.
    let request = Request::call(spec("poe://B/echo/say"), Value::from(2));
    let answer = within("the call", link.a_to_b.clone().oneshot(request)).await;
    assert_eq!(answer.expect("answered"), Value::from(2));

    // A session the peer does not publish: its typed error.
    let request = Request::call(spec("nothing/here"), Value::Null);
    let error = within("the call", link.a_to_b.clone().oneshot(request))
        .await
        .expect_err("no such session");
    assert_eq!(error.kind(), ErrorKind::NoSession);
}

#[tokio::test]
async fn a_post_through_the_handle_reaches_the_peer() {
    let (a, b) = kernels();
    let (tx, mut rx) = mpsc::unbounded_channel();
    b.publish(
        "sink",
        ["put"],
        tower::service_fn(move |req: Request| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(req.into_arg());
                Ok::<_, ikc_core::BoxError>(Value::Null)
            }
        }),
    )
    .expect("sink publishes");
    let link = connect(&a, &b);
    let post = Request::post(spec("sink/put"), Value::from("posted"));
    let answer = within("the post", link.a_to_b.clone().oneshot(post))
        .await
        .expect("sent");
    assert_eq!(answer, Value::Null);
    let received = within("the post to arrive", rx.recv()).await;
    assert_eq!(received, Some(Value::from("posted")));
}

#[tokio::test]
async fn tower_middleware_composes_on_the_handle() {
    let (a, b) = kernels();
    let link = connect(&a, &b);
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .concurrency_limit(2)
        .service(link.a_to_b.clone());
    for n in 0..4 {
        let request = Request::call(spec("echo/say"), Value::from(n));
        let ready = within("ready", service.ready()).await.expect("ready");
        let answer = within("the call", ready.call(request)).await;
        assert_eq!(answer.expect("answered"), Value::from(n));
    }
}

#[tokio::test]
async fn a_closed_connection_is_refused_when_polled_ready() {
    let (a, b) = kernels();
    let link = connect(&a, &b);
    let mut handle = link.a_to_b.clone();
    link.b_driver.abort();
    let _ = driver_end(link.a_driver).await;
    within("the close", handle.closed()).await;
    let error = within("poll_ready", handle.ready())
        .await
        .expect_err("a closed connection is not ready");
    assert_eq!(error.kind(), ErrorKind::Disconnected);
}
