//! The Prometheus endpoint of `ikc serve --metrics ADDR`: the
//! `metrics-exporter-prometheus` recorder, rendered over HTTP by hyper at
//! `GET /metrics`. Any other method is answered 405, any other path 404;
//! a request that is not HTTP ends its own connection only, and one that
//! does not finish its head within a few seconds is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Latency buckets of `ikc_request_duration_seconds`, 50 µs to 10 s.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
    10.0,
];

/// How long a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// and serves it on `addr`; returns the address bound (the port chosen
/// when `addr`'s is 0). Must run on a tokio runtime.
///
/// # Errors
///
/// When `addr` cannot be bound or a recorder is installed already.
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // The recorder's histograms are drained on each render; its upkeep
        // keeps them bounded between scrapes.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept(listener, handle));
    Ok(local)
}

async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "metrics endpoint: accept failed");
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(handle.clone(), req));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics endpoint: a scraper's connection failed");
            }
        });
    }
}

async fn answer(
    handle: PrometheusHandle,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = Response::builder();
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => response
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::from(handle.render())),
        (&Method::GET, _) => response
            .status(StatusCode::NOT_FOUND)
            .body(Full::from("not found: the metrics are at /metrics\n")),
        _ => response
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET")
            .body(Full::from("only GET\n")),
    };
    Ok(response.expect("a static response is valid"))
}
