//! Request layers: tower middleware added with `Server::layer` wraps every
//! request the server's peers send, and the errors middleware raises reach
//! the caller as typed errors.

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ikc_core::{ErrorKind as CallErrorKind, Request, Value};
use ikc_server::{Client, Server};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::util::MapRequestLayer;

use support::{LOOPBACK, call_error, publish_recorder, server_kernel, still_pending, within};

/// What a recording layer saw, shared with the test.
type Seen = Arc<Mutex<Vec<String>>>;

/// A layer that appends `tag:session/event` for every request it sees.
fn recording_layer(
    tag: &'static str,
    seen: &Seen,
) -> MapRequestLayer<impl Fn(Request) -> Request + Clone + Send + Sync + 'static> {
    let seen = Arc::clone(seen);
    MapRequestLayer::new(move |req: Request| {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{tag}:{}/{}", req.session(), req.event()));
        req
    })
}

fn seen(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

#[tokio::test]
async fn request_layer_sees_every_request_including_failed_ones() {
    let (kernel, _gate) = server_kernel("Server");
    let mut notes = publish_recorder(&kernel);
    let requests = Seen::default();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .layer(recording_layer("count", &requests))
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    within("say", client.call("echo/say", 1)).await.unwrap();
    within("upper", client.call("echo/upper", "a"))
        .await
        .unwrap();
    let error = call_error(within("missing", client.call("missing/event", 1)).await);
    assert_eq!(error.kind(), CallErrorKind::NoSession);
    within("ping", client.call("IKC/ping", Value::Null))
        .await
        .unwrap();
    within("post", client.post("record/note", "posted"))
        .await
        .unwrap();
    within("the post to arrive", notes.recv()).await;

    assert_eq!(
        seen(&requests),
        [
            "count:echo/say",
            "count:echo/upper",
            "count:missing/event",
            "count:IKC/ping",
            "count:record/note",
        ]
    );
}

#[tokio::test]
async fn first_layer_added_is_the_outermost() {
    let (kernel, _gate) = server_kernel("Server");
    let requests = Seen::default();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .layer(recording_layer("outer", &requests))
        .layer(recording_layer("inner", &requests))
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    within("say", client.call("echo/say", 1)).await.unwrap();

    assert_eq!(seen(&requests), ["outer:echo/say", "inner:echo/say"]);
}

#[tokio::test]
async fn concurrency_limit_layer_holds_requests_beyond_its_limit() {
    let (kernel, mut gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .layer(ConcurrencyLimitLayer::new(1))
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let first = within("connect", Client::connect(&addr)).await.unwrap();
    let second = within("connect", Client::connect(&addr)).await.unwrap();
    let slow = tokio::spawn(async move { first.call("slow/wait", "first").await });
    gate.started().await;

    // The limit is the server's, not one connection's: a request from
    // another client waits for the slot.
    let mut quick = tokio::spawn(async move { second.call("echo/say", "second").await });
    still_pending("a request over the limit", &mut quick).await;
    gate.release(1);

    let answer = within("the slow answer", slow).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from("first"));
    let answer = within("the held answer", quick).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from("second"));
}

#[tokio::test]
async fn load_shed_over_a_concurrency_limit_answers_overloaded() {
    let (kernel, mut gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .layer(LoadShedLayer::new())
        .layer(ConcurrencyLimitLayer::new(1))
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow/wait", "first").await }
    });
    gate.started().await;

    let error = call_error(within("a shed call", client.call("echo/say", "second")).await);

    assert_eq!(error.kind(), CallErrorKind::Overloaded, "{error}");
    gate.release(1);
    let answer = within("the slow answer", slow).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from("first"));
    let answer = within("a call with room", client.call("echo/say", "third")).await;
    assert_eq!(answer.unwrap(), Value::from("third"));
}

#[tokio::test]
async fn request_timeout_answers_timeout_to_the_caller() {
    let (kernel, mut gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .request_timeout(Duration::from_millis(100))
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let error = call_error(within("a slow call", client.call("slow/wait", 1)).await);

    assert_eq!(error.kind(), CallErrorKind::Timeout, "{error}");
    assert!(error.may_have_run(), "the handler had started: {error}");
    assert_eq!(gate.started().await, Value::from(1));
    let answer = within("a quick call", client.call("echo/say", 2)).await;
    assert_eq!(answer.unwrap(), Value::from(2));
}
