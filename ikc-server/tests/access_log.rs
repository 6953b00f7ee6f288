//! A peer refused by the access policy is logged once, at `info`, however
//! many of its requests are refused; another peer gets its own line.
//!
//! One test in its own binary, as `auth_log.rs` (tracing caches each
//! callsite's interest process-wide).

mod support;

use ikc_core::{ErrorKind, Value};
use ikc_server::{Client, Server};

use support::{CapturedLogs, LOOPBACK, server_kernel, within};

#[tokio::test(flavor = "current_thread")]
async fn each_refused_peer_is_logged_once() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (kernel, _gate) = server_kernel("Server");
    let policy =
        "[[rule]]\ntarget = \"echo/upper\"\nallow = []\n\n[[rule]]\ntarget = \"*\"\nallow = [{}]\n";
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .access_policy(policy.parse().unwrap())
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();

    let refused_lines = || {
        logs.lines()
            .into_iter()
            .filter(|line| line.contains("access policy refused"))
            .collect::<Vec<_>>()
    };
    for name in ["First", "Second"] {
        let client = within("connect", Client::builder().name(name).connect(&addr))
            .await
            .unwrap();
        for _ in 0..3 {
            let error = within("a refused call", client.call("echo/upper", "x"))
                .await
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Forbidden);
        }
        let answer = within("an allowed call", client.call("echo/say", "x")).await;
        assert_eq!(answer.unwrap(), Value::from("x"));
    }
    let lines = refused_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("First") && lines[1].contains("Second"),
        "{lines:#?}"
    );
    assert!(lines[0].contains("echo/upper"), "{lines:#?}");
}
