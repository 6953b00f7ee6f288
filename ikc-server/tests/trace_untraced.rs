//! With request spans off (a subscriber at `debug`, the spans at `trace`),
//! requests run without a span, and a failed one is still logged.
//!
//! One test in its own binary on purpose (as `trace.rs` and
//! `auth_log.rs`): tracing caches each callsite's interest process-wide.

mod support;

use ikc_server::{Client, Server};

use support::{CapturedLogs, LOOPBACK, server_kernel, within};

// Current-thread runtime: the subscriber is this thread's default and the
// server runs on this thread.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_request_is_logged_when_request_spans_are_off() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    within("say", client.call("echo/say", 1)).await.unwrap();
    // `upper` needs a string.
    within("upper", client.call("echo/upper", 2))
        .await
        .unwrap_err();

    let lines = logs.lines();
    let failed: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("request failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(failed[0].contains("upper needs a string"), "{}", failed[0]);
    assert!(
        !lines.iter().any(|line| line.contains("ikc.request")),
        "no request span at debug: {lines:#?}"
    );
}
