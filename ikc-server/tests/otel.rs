//! Tracing across kernels (the `otel` feature): a call from a client
//! through a hub to a second client is one OpenTelemetry trace, each
//! kernel's span the child of the one before; a trace context a peer
//! garbles is ignored.
//!
//! The three kernels share this process, and so one subscriber: each span
//! is told apart by its `session` (the session it served) or its name. The
//! spans reach the test through a span processor that sends each finished
//! one on a channel, so the test waits for them instead of polling.
#![cfg(feature = "otel")]

mod support;

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ikc_core::{BoxError, Kernel, Request, Value, service_fn};
use ikc_server::{Client, Server, ServerHandle};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use support::{LOOPBACK, spec, within};

/// Hands every finished span to each test listening.
#[derive(Debug, Default)]
struct Finished {
    listeners: Mutex<Vec<mpsc::UnboundedSender<SpanData>>>,
}

impl SpanProcessor for &'static Finished {
    fn on_start(&self, _: &mut Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener.send(span.clone()).is_ok());
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The spans finished from now on. The first call installs the process's
/// subscriber: a `tracing-opentelemetry` layer and nothing else, for every
/// thread (the kernels' tasks run on the runtime's).
fn finished_spans() -> mpsc::UnboundedReceiver<SpanData> {
    static FINISHED: OnceLock<&'static Finished> = OnceLock::new();
    let finished = *FINISHED.get_or_init(|| {
        let finished: &'static Finished = Box::leak(Box::default());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(finished)
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("ikc-test"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only subscriber of this test binary");
        finished
    });
    let (tx, rx) = mpsc::unbounded_channel();
    finished
        .listeners
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(tx);
    rx
}

/// Waits for the span of the request that `session` served.
async fn served_by(spans: &mut mpsc::UnboundedReceiver<SpanData>, session: &str) -> SpanData {
    let wanted = |span: &SpanData| {
        span.name == "ikc.request"
            && span
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "session" && kv.value.as_str() == session)
    };
    within(&format!("the span of {session}"), async {
        loop {
            let span = spans.recv().await.expect("the processor lives on");
            if wanted(&span) {
                return span;
            }
        }
    })
    .await
}

/// A hub named `names.0` whose `RELAY/pass` (`sessions.0`) calls `WORK/do`
/// (`sessions.1`) on the kernel `names.1`, and that kernel, a client of the
/// hub, publishing `WORK/do` (one more than its argument). Each test has
/// its own names, to tell its spans from the other's.
async fn hub_and_worker(names: (&str, &str), sessions: (&str, &str)) -> (ServerHandle, Client) {
    let (hub_name, worker_name) = names;
    let (relay, work) = sessions;
    let hub = Kernel::new(hub_name);
    let hub_kernel = hub.clone();
    let worker_target = spec(&format!("poe://{worker_name}/{work}/do"));
    hub.publish(
        relay,
        ["pass"],
        service_fn(move |req: Request| {
            let (hub, target) = (hub_kernel.clone(), worker_target.clone());
            async move { Ok::<_, BoxError>(hub.call(&target, req.into_arg()).await?) }
        }),
    )
    .unwrap();
    let server = Server::builder()
        .kernel(hub)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let worker = within(
        "the worker connects",
        Client::builder()
            .name(worker_name)
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();
    worker
        .publish(
            work,
            ["do"],
            service_fn(|req: Request| async move {
                let n: i64 = req.arg_as()?;
                Ok::<_, BoxError>(Value::from(n + 1))
            }),
        )
        .unwrap();
    (server, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_hub_is_one_trace_in_all_three_kernels() {
    let mut spans = finished_spans();
    let (server, _worker) = hub_and_worker(("Hub", "Worker"), ("relay", "work")).await;
    let caller = within(
        "the caller connects",
        Client::builder()
            .name("Caller")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    let root = tracing::info_span!("a.call");
    let caller_cx = root.context().span().span_context().clone();
    assert!(caller_cx.is_valid(), "the caller's span is traced");
    let answer = within(
        "the relayed call",
        caller.call("poe://Hub/relay/pass", 41).instrument(root),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from(42));

    let at_worker = served_by(&mut spans, "work").await;
    let at_hub = served_by(&mut spans, "relay").await;
    let trace = caller_cx.trace_id();
    assert_ne!(trace, TraceId::INVALID);
    // The hub's span is the caller's child, across the connection.
    assert_eq!(at_hub.span_context.trace_id(), trace);
    assert_eq!(at_hub.parent_span_id, caller_cx.span_id());
    assert!(at_hub.parent_span_is_remote);
    // The worker's is the hub's, not the caller's: one hop at a time.
    assert_eq!(at_worker.span_context.trace_id(), trace);
    assert_eq!(at_worker.parent_span_id, at_hub.span_context.span_id());
    assert!(at_worker.parent_span_is_remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_context_that_does_not_parse_starts_a_trace_of_its_own() {
    const GARBLED: &str = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut spans = finished_spans();
    let (server, _worker) = hub_and_worker(
        ("GarbledHub", "GarbledWorker"),
        ("relay_garbled", "work_garbled"),
    )
    .await;
    let caller = within(
        "the caller connects",
        Client::builder()
            .name("GarbledCaller")
            .connect(&server.local_addr().to_string()),
    )
    .await
    .unwrap();

    // Sent outside any span, so the caller's channel sends the request's
    // own context as it is.
    let request = Request::call(spec("poe://GarbledHub/relay_garbled/pass"), Value::from(1))
        .with_traceparent(GARBLED);
    let answer = within(
        "the call with a garbled context",
        tower::ServiceExt::oneshot(caller.kernel().router(), request),
    )
    .await;
    assert_eq!(answer.unwrap(), Value::from(2));

    let at_worker = served_by(&mut spans, "work_garbled").await;
    let at_hub = served_by(&mut spans, "relay_garbled").await;
    let garbled = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_ne!(at_hub.span_context.trace_id(), garbled);
    assert_eq!(at_hub.parent_span_id, SpanId::INVALID, "a root");
    // The trace it started goes on to the next kernel.
    assert_eq!(
        at_worker.span_context.trace_id(),
        at_hub.span_context.trace_id()
    );
    assert_eq!(at_worker.parent_span_id, at_hub.span_context.span_id());
}
