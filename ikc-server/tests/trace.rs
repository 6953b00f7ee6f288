//! Tracing: each connection runs in an `ikc.conn` span and each request in
//! an `ikc.request` span naming its target.
//!
//! One test in its own binary on purpose: tracing caches each callsite's
//! interest process-wide, so a thread-local subscriber in a binary whose
//! other tests run at the same time can miss spans.

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ikc_server::{Client, Server};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use support::{LOOPBACK, server_kernel, within};

/// A tracing subscriber that keeps each span's name and fields as text.
///
/// It does not track the current span (`Subscriber::current_span` returns a
/// type only `tracing-core` names), so a field recorded later through
/// `Span::current()` (the connection's `kernel`) is not seen here.
#[derive(Debug, Clone, Default)]
struct SpanLog {
    next_id: Arc<AtomicU64>,
    spans: Arc<Mutex<HashMap<u64, String>>>,
}

impl SpanLog {
    /// The spans named `name`, as `name field=value...`.
    fn spans(&self, name: &str) -> Vec<String> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<_> = spans
            .values()
            .filter(|text| text.split(' ').next() == Some(name))
            .cloned()
            .collect();
        found.sort();
        found
    }
}

/// Appends ` field=value` for each field visited.
struct FieldText<'a>(&'a mut String);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Subscriber for SpanLog {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut text = span.metadata().name().to_owned();
        span.record(&mut FieldText(&mut text));
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, text);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(text) = spans.get_mut(&span.into_u64()) {
            values.record(&mut FieldText(text));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

// Current-thread runtime: the server's tasks run on the test's thread, where
// the subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn connections_and_requests_run_in_spans_naming_peer_and_target() {
    let log = SpanLog::default();
    let _default = tracing::subscriber::set_default(log.clone());
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within(
        "connect",
        Client::builder()
            .name("Tracer")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    within("say", client.call("echo/say", 1)).await.unwrap();
    within("post", client.post("echo/upper", "a"))
        .await
        .unwrap();
    within("say", client.call("echo/say", 2)).await.unwrap();

    let conns = log.spans("ikc.conn");
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert!(
        conns[0].starts_with("ikc.conn peer.addr=127.0.0.1:"),
        "{conns:?}"
    );
    assert_eq!(
        log.spans("ikc.request"),
        [
            "ikc.request session=echo event=say kind=call",
            "ikc.request session=echo event=say kind=call",
            "ikc.request session=echo event=upper kind=post",
        ]
    );
}
