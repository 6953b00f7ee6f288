//! The OTLP span export of `--otlp ENDPOINT` (the `otel` feature): a
//! `tracing-opentelemetry` layer whose spans go over OTLP/HTTP (protobuf)
//! to a collector, named after the kernel.
//!
//! The export is made in two steps, because a pre-forked server sets up
//! its logging in the supervisor and serves in workers it forks, and a
//! fork keeps no thread: [`Exporter::new`] makes the layer and checks the
//! endpoint, starting no thread; [`Exporter::start`], in the process that
//! serves (each worker, after its fork), starts the SDK's batch thread and
//! its blocking HTTP client. Spans that end before `start` (the
//! supervisor's) are not exported. [`Exporter::shutdown`], once the
//! process's runtime has stopped, sends what is left.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanProcessor,
};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// The path of the trace signal under an OTLP/HTTP collector's address.
const TRACES_PATH: &str = "/v1/traces";

/// What `--otlp` set up: the tracer provider, and the batch processor
/// that [`Exporter::start`] puts behind it.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
    batch: Started,
    url: String,
    resource: Resource,
}

/// `--otlp` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("{endpoint} is not an http:// or https:// URL")]
    NotAUrl {
        /// The endpoint given.
        endpoint: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot export spans to {endpoint}")]
    Build {
        /// The URL spans were to go to.
        endpoint: String,
        /// Why not.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

impl Exporter {
    /// The export of spans to the collector at `endpoint` (its address,
    /// `http://127.0.0.1:4318`, or the full URL of its trace path), their
    /// service named `service` (the kernel's name). Nothing is sent until
    /// [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`ExporterError::NotAUrl`] when `endpoint` is not an http(s) URL.
    pub fn new(endpoint: &str, service: &str) -> Result<Self, ExporterError> {
        let url = traces_url(endpoint);
        let is_url = url.parse::<hyper::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !is_url {
            return Err(ExporterError::NotAUrl {
                endpoint: endpoint.to_owned(),
            });
        }
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        let batch = Started::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch.clone())
            .with_resource(resource.clone())
            .build();
        Ok(Exporter {
            provider,
            batch,
            url,
            resource,
        })
    }

    /// Starts sending spans: the OTLP/HTTP exporter and the batch thread
    /// that feeds it. Call it once, in the process that serves (a
    /// pre-forked worker calls it after its fork); a second call does
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`ExporterError::Build`] when the exporter cannot be built.
    pub fn start(&self) -> Result<(), ExporterError> {
        if self.batch.0.get().is_some() {
            return Ok(());
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(self.url.clone())
            .build()
            .map_err(|source| ExporterError::Build {
                endpoint: self.url.clone(),
                source,
            })?;
        let mut batch = BatchSpanProcessor::builder(exporter).build();
        // The provider gave its resource to the processor it was built
        // with, the empty one; this one learns it here.
        batch.set_resource(&self.resource);
        let _ = self.batch.0.set(batch);
        Ok(())
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
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: --otlp: spans not all sent: {error}");
        }
    }
}

/// The provider's span processor: the batch processor once
/// [`Exporter::start`] made it, nothing before.
#[derive(Debug, Clone, Default)]
struct Started(Arc<OnceLock<BatchSpanProcessor>>);

impl SpanProcessor for Started {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if let Some(batch) = self.0.get() {
            batch.on_start(span, cx);
        }
    }

    fn on_end(&self, span: SpanData) {
        if let Some(batch) = self.0.get() {
            batch.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.get().map_or(Ok(()), BatchSpanProcessor::force_flush)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0
            .get()
            .map_or(Ok(()), |batch| batch.shutdown_with_timeout(timeout))
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
    fn an_exporter_starts_without_a_collector_listening() {
        let exporter = Exporter::new("http://127.0.0.1:9", "Test").expect("an exporter");
        let _ = exporter.layer::<tracing_subscriber::Registry>();
        exporter.start().expect("started");
        exporter.start().expect("started twice");
        exporter.shutdown();
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_is_refused() {
        for endpoint in [
            "127.0.0.1:4318",
            "ftp://127.0.0.1:4318",
            "http://",
            "not a url",
        ] {
            assert!(
                matches!(
                    Exporter::new(endpoint, "Test"),
                    Err(ExporterError::NotAUrl { .. })
                ),
                "{endpoint}"
            );
        }
    }
}
