//! The OTLP span export of `--otlp ENDPOINT` (the `otel` feature): a
//! `tracing-opentelemetry` layer whose spans go over OTLP/HTTP (protobuf)
//! to a collector, named after the kernel.
//!
//! The exporter runs on the SDK's batch thread with a blocking HTTP
//! client, so it is made before the tokio runtime starts, and
//! [`Exporter::shutdown`] (which sends what is left) runs after the runtime
//! has stopped.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// The path of the trace signal under an OTLP/HTTP collector's address.
const TRACES_PATH: &str = "/v1/traces";

/// What `--otlp` set up: the tracer provider, to shut down at exit.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

/// `--otlp` could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export spans to {endpoint}")]
pub struct ExporterError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

impl Exporter {
    /// An exporter of spans to the collector at `endpoint` (its address,
    /// `http://127.0.0.1:4318`, or the full URL of its trace path), their
    /// service named `service` (the kernel's name).
    ///
    /// # Errors
    ///
    /// When the OTLP exporter cannot be built (an endpoint that is not a
    /// URL, for one).
    pub fn new(endpoint: &str, service: &str) -> Result<Self, ExporterError> {
        let url = traces_url(endpoint);
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .build()
            .map_err(|source| ExporterError {
                endpoint: url,
                source,
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        Ok(Exporter { provider })
    }

    /// The layer that turns the process's spans into OpenTelemetry spans
    /// sent by this exporter.
    #[must_use]
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("ikc"))
    }

    /// Sends the spans not sent yet and stops. Call it once the runtime
    /// has stopped; a collector that does not answer is logged, not fatal.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: --otlp: spans not all sent: {error}");
        }
    }
}

/// `endpoint` with the trace path when it names only the collector
/// (`http://host:4318` or `http://host:4318/`); any other path is kept.
fn traces_url(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(at) if after_scheme[at..] != *"/" => endpoint.to_owned(),
        _ => format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collectors_address_gets_the_trace_path_and_a_full_url_is_kept() {
        for (given, used) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example:4318/v1/traces",
                "https://otel.example:4318/v1/traces",
            ),
            (
                "http://gw.example/otlp/traces",
                "http://gw.example/otlp/traces",
            ),
        ] {
            assert_eq!(traces_url(given), used, "{given}");
        }
    }

    #[test]
    fn an_exporter_is_made_without_a_collector_listening() {
        let exporter = Exporter::new("http://127.0.0.1:9", "Test").expect("an exporter");
        let _ = exporter.layer::<tracing_subscriber::Registry>();
        drop(exporter.provider);
    }
}
