//! `Client` as a tower `Service<Request>`: requests to the server, to the
//! client's own kernel, posts, and tower middleware on top.

mod support;

use std::time::Duration;

use ikc_core::{BoxError, ErrorKind, Kernel, Request, Value, service_fn};
use ikc_server::{Client, Server, ServerHandle};
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

use support::{publish_echo, shut_down, spec, within};

async fn server() -> ServerHandle {
    let kernel = Kernel::new("Served");
    publish_echo(&kernel);
    Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse().expect("an address"))
        .serve()
        .await
        .expect("the server starts")
}

async fn client(server: &ServerHandle) -> Client {
    within(
        "the client",
        Client::builder()
            .name("Caller")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .expect("the client connects")
}

#[tokio::test]
async fn requests_go_to_the_server_or_to_the_clients_own_kernel() {
    let server = server().await;
    let client = client(&server).await;
    client
        .publish(
            "own",
            ["who"],
            service_fn(|_: Request| async { Ok::<_, BoxError>(Value::from("the client")) }),
        )
        .expect("the client publishes");

    let to_server = Request::call(spec("echo/upper"), Value::from("abc"));
    let answer = within("the call", client.clone().oneshot(to_server)).await;
    assert_eq!(answer.expect("answered"), Value::from("ABC"));

    let named = Request::call(spec("poe://Served/echo/say"), Value::from(1));
    let answer = within("the call", client.clone().oneshot(named)).await;
    assert_eq!(answer.expect("answered"), Value::from(1));

    let own = Request::call(spec("poe://Caller/own/who"), Value::Null);
    let answer = within("the local call", client.clone().oneshot(own)).await;
    assert_eq!(answer.expect("answered"), Value::from("the client"));

    let missing = Request::call(spec("echo/nothing"), Value::Null);
    let error = within("the call", client.clone().oneshot(missing))
        .await
        .expect_err("no such event");
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    shut_down(&server).await;
}

#[tokio::test]
async fn a_post_through_the_client_reaches_the_server() {
    let server = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    server
        .kernel()
        .publish(
            "sink",
            ["put"],
            service_fn(move |req: Request| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(req.into_arg());
                    Ok::<_, BoxError>(Value::Null)
                }
            }),
        )
        .expect("sink publishes");
    let client = client(&server).await;
    let post = Request::post(spec("sink/put"), Value::from("posted"));
    let sent = within("the post", client.clone().oneshot(post)).await;
    assert_eq!(sent.expect("sent"), Value::Null);
    assert_eq!(
        within("the post to arrive", rx.recv()).await,
        Some(Value::from("posted"))
    );
    shut_down(&server).await;
}

#[tokio::test]
async fn tower_middleware_composes_on_the_client() {
    let server = server().await;
    let client = client(&server).await;
    let mut service = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .concurrency_limit(4)
        .service(client.clone());
    for n in 0..8 {
        let request = Request::call(spec("echo/say"), Value::from(n));
        let ready = within("ready", service.ready()).await.expect("ready");
        let answer = within("the call", ready.call(request)).await;
        assert_eq!(answer.expect("answered"), Value::from(n));
    }
    shut_down(&server).await;
}
