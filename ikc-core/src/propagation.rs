//! Trace context across kernels: the W3C `traceparent` a request carries,
//! made from the current `tracing` span's OpenTelemetry context and read
//! back into a span's parent (the `otel` feature).
//!
//! The sending side is the channel's: every request it sends carries the
//! current span's context when that span has a valid one
//! ([`current_traceparent`]), else the context the request came with (a hub
//! without a tracer passes its caller's on). The receiving side is the
//! server's request span (ikc-server's `trace` module), made the child of
//! the caller's with [`set_parent`].
//!
//! Both go through OpenTelemetry's [`TraceContextPropagator`], so the text
//! is what any W3C Trace Context peer writes and reads:
//! `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
//!
//! ```
//! use ikc_core::propagation;
//!
//! // Not a traceparent: ignored, as whatever a peer sends that does not parse.
//! assert!(propagation::parent_context("00-not-a-trace").is_none());
//! let cx = propagation::parent_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert!(cx.is_some());
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header name the W3C propagator reads and writes.
const TRACEPARENT: &str = "traceparent";

/// The current span's trace context as a `traceparent`; `None` when the
/// current span has no valid OpenTelemetry context (no span, or no
/// `tracing-opentelemetry` layer in the subscriber).
#[must_use]
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// `span`'s trace context as a `traceparent`, as
/// [`current_traceparent`] for the current span.
#[must_use]
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Outgoing(None);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.0
}

/// The remote parent `traceparent` names; `None` when it does not parse
/// (wrong version, lengths, hex, or an all-zero id).
#[must_use]
pub fn parent_context(traceparent: &str) -> Option<Context> {
    // Read into an empty context: `extract` falls back on the current one
    // (the connection's span, in a server) when the text does not parse.
    let cx =
        TraceContextPropagator::new().extract_with_context(&Context::new(), &Incoming(traceparent));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` the child of the caller's span `traceparent` names, before
/// `span` is first entered; returns whether it did. Without a
/// `traceparent`, or with one that does not parse, `span` starts a trace of
/// its own: a request's span is not the child of its connection's span
/// (`tracing`'s parent, kept for logs), which would gather every request of
/// a connection into one trace. A disabled span, or a subscriber without a
/// `tracing-opentelemetry` layer, is left as it was.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    match traceparent.and_then(parent_context) {
        Some(cx) => span.set_parent(cx).is_ok(),
        None => {
            let _ = span.set_parent(Context::new());
            false
        }
    }
}

/// Takes the `traceparent` the propagator writes (and nothing else: a
/// request carries no `tracestate`).
struct Outgoing(Option<String>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// Hands the propagator a request's `traceparent`.
struct Incoming<'a>(&'a str);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs `f` under a subscriber whose spans have OpenTelemetry contexts.
    fn traced<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_traceparent_that_does_not_parse_names_no_parent() {
        for text in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "\u{0}\u{ffff}-\u{e9}",
        ] {
            assert!(parent_context(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn a_traceparent_that_does_not_parse_names_no_parent_inside_a_traced_span_either() {
        traced(|| {
            let connection = tracing::info_span!("connection");
            connection.in_scope(|| assert!(parent_context("00-garbage").is_none()));
        });
    }

    #[test]
    fn a_traceparent_names_its_trace_and_span() {
        let cx = parent_context(SAMPLE).expect("a valid traceparent");
        let span = cx.span();
        let parent = span.span_context();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_remote() && parent.is_sampled());
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_traceparent() {
        assert_eq!(current_traceparent(), None);
        let span = tracing::info_span!("untraced");
        assert!(!set_parent(&span, Some(SAMPLE)));
    }

    #[test]
    fn a_span_made_the_child_of_a_traceparent_sends_its_trace_on() {
        traced(|| {
            let span = tracing::info_span!("callee");
            assert!(set_parent(&span, Some(SAMPLE)));
            let sent = span.in_scope(current_traceparent).expect("a traced span");
            let parts: Vec<&str> = sent.split('-').collect();
            assert_eq!(parts.len(), 4, "{sent}");
            assert_eq!(
                (parts[0], parts[1]),
                ("00", "4bf92f3577b34da6a3ce929d0e0e4736")
            );
            assert_ne!(parts[2], "00f067aa0ba902b7", "the callee's own span id");
        });
    }

    #[test]
    fn a_traceparent_that_does_not_parse_leaves_the_span_a_root() {
        traced(|| {
            let connection = tracing::info_span!("connection");
            let connection_trace = connection.in_scope(current_traceparent).expect("traced");
            let span = connection.in_scope(|| tracing::info_span!("callee"));
            assert!(!set_parent(&span, Some("00-garbage")));
            let sent = span.in_scope(current_traceparent).expect("a traced span");
            // Neither the garbage's trace nor the connection's.
            assert_ne!(sent.split('-').nth(1), connection_trace.split('-').nth(1));
        });
    }
}
