//! The Prometheus endpoint of `ikc serve --metrics ADDR`: the
//! `metrics-exporter-prometheus` recorder, rendered over HTTP by hyper at
//! `GET /metrics`. Any other method is answered 405, any other path 404;
//! a request that is not HTTP ends its own connection only, and one that
//! does not finish its head within a few seconds is dropped.
//!
//! With `--workers N` ([`Prefork`]) the supervisor binds the endpoint and
//! its workers serve it, as they serve ikc: the supervisor is
//! single-threaded and must not run a runtime. Every process keeps its own
//! recorder and writes its rendering to a private directory (each worker
//! every second, the supervisor after each babysit round); the worker that
//! takes a scrape answers with all of them, each worker's samples labelled
//! `worker="N"`. Labelled, not summed: a replaced worker starts its
//! counters at zero, which Prometheus reads as a counter reset of that
//! worker's series (`rate()` handles it), while a sum would go backwards;
//! and a histogram cannot be summed from its rendering without
//! re-bucketing. `sum without (worker) (...)` gives the whole server. A
//! worker whose file is older than [`STALE`] (it died) is left out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::net::TcpListener;

/// What a scrape is answered with.
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How long a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a worker writes its rendering for the others.
const WORKER_WRITE: Duration = Duration::from_secs(1);

/// A worker's rendering older than this is left out of a scrape: the
/// worker is gone (a live one rewrites it every [`WORKER_WRITE`]).
pub const STALE: Duration = Duration::from_secs(3);

/// A recorder. ikc's latency histogram comes as its series
/// (`ikc::server::metrics`), so no buckets are set.
fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

/// The rendering of `handle`, with the servers' request metrics flushed
/// into it first.
fn render(handle: &PrometheusHandle) -> String {
    ikc::server::metrics::flush();
    handle.render()
}

/// The endpoint's socket's name in `LISTEN_FDNAMES` when an upgrade hands
/// it to the next generation.
pub const SOCKET_NAME: &str = "ikc-metrics";

/// Binds the endpoint's address, before any runtime (a pre-fork
/// supervisor) or to hand it to the next generation of an upgrade.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// and serves it on `listener` ([`bind`], or the one an upgrade passed);
/// returns its address. Must run on a tokio runtime.
///
/// # Errors
///
/// When the listener cannot be used or a recorder is installed already.
pub fn serve(listener: std::net::TcpListener) -> Result<SocketAddr, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let recorder = recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    tokio::spawn(accept(listener, Arc::new(move || render(&handle))));
    Ok(local)
}

async fn accept(listener: TcpListener, render: Render) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "metrics endpoint: accept failed");
                continue;
            }
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(Arc::clone(&render), req));
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
    render: Render,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = Response::builder();
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => response
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::from(render())),
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

/// The endpoint of a pre-forked server: bound by the supervisor, served by
/// its workers (see the module docs).
#[derive(Debug)]
pub struct Prefork {
    listener: std::net::TcpListener,
    supervisor: PrometheusHandle,
    dir: tempfile::TempDir,
}

impl Prefork {
    /// Takes the endpoint's `listener` ([`bind`], or the one an upgrade
    /// passed) and installs the supervisor's recorder as the process's
    /// global one. Call it in the supervisor before it forks: it starts no
    /// thread.
    ///
    /// # Errors
    ///
    /// When the directory cannot be made, or a recorder is installed
    /// already.
    pub fn new(listener: std::net::TcpListener) -> Result<Prefork, String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("ikc-metrics-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for the workers' metrics: {e}"))?;
        let recorder = recorder();
        let supervisor = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
        Ok(Prefork {
            listener,
            supervisor,
            dir,
        })
    }

    /// The address bound (the port chosen when `addr`'s was 0).
    ///
    /// # Errors
    ///
    /// When the socket cannot say.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A copy of the endpoint's socket, for an upgrade to hand over.
    ///
    /// # Errors
    ///
    /// When the descriptor cannot be duplicated.
    pub fn socket(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        std::os::fd::AsFd::as_fd(&self.listener).try_clone_to_owned()
    }

    /// Writes the supervisor's rendering for the workers to serve: the
    /// supervisor's [`after_babysit`](ikc::prefork::Supervisor::after_babysit).
    pub fn write_supervisor(&self) {
        write(
            &self.dir.path().join("supervisor.prom"),
            &self.supervisor.render(),
        );
    }

    /// In worker `id`, after the fork: a recorder of the worker's own, to
    /// install on the worker's thread (`metrics::set_default_local_recorder`;
    /// the global one is the supervisor's copy), and a thread that writes
    /// its rendering every second and serves the endpoint.
    #[must_use]
    pub fn worker(&self, id: u32) -> Option<PrometheusRecorder> {
        let recorder = recorder();
        let listener = match self.listener.try_clone() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "worker metrics are off: cannot use the endpoint");
                return None;
            }
        };
        let handle = recorder.handle();
        let dir = self.dir.path().to_owned();
        let endpoint = std::thread::Builder::new()
            .name("ikc-metrics".into())
            .spawn(move || worker_endpoint(listener, dir, id, handle));
        if let Err(error) = endpoint {
            tracing::warn!(%error, "worker metrics are off: cannot start the endpoint");
        }
        Some(recorder)
    }
}

/// A worker's endpoint thread: its own small runtime, writing the worker's
/// rendering every second and answering scrapes with every process's.
fn worker_endpoint(
    listener: std::net::TcpListener,
    dir: PathBuf,
    id: u32,
    handle: PrometheusHandle,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "worker metrics are off: no runtime");
            return;
        }
    };
    let own = dir.join(format!("worker-{id}.prom"));
    let refresh = {
        let handle = handle.clone();
        move || write(&own, &render(&handle))
    };
    let render: Render = Arc::new({
        let refresh = refresh.clone();
        move || {
            refresh();
            gather(&dir)
        }
    });
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "worker metrics are off: cannot use the endpoint");
                return;
            }
        };
        tokio::spawn(accept(listener, render));
        let mut tick = tokio::time::interval(WORKER_WRITE);
        loop {
            tick.tick().await;
            refresh();
        }
    });
}

/// Writes `text` to `path` whole: a reader sees the old file or the new.
fn write(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    let written = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, path));
    if let Err(error) = written {
        tracing::debug!(%error, path = %path.display(), "cannot write metrics");
    }
}

/// Every process's rendering in `dir`: the supervisor's, and each live
/// worker's labelled with its number.
fn gather(dir: &Path) -> String {
    let mut parts = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let worker = match name.strip_suffix(".prom") {
            Some("supervisor") => None,
            Some(stem) => match stem.strip_prefix("worker-").and_then(|n| n.parse().ok()) {
                Some(id) => Some(id),
                None => continue,
            },
            None => continue,
        };
        let fresh = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| SystemTime::now().duration_since(at).unwrap_or_default() < STALE);
        if worker.is_some() && !fresh {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            parts.push((worker, text));
        }
    }
    parts.sort_by_key(|(worker, _)| *worker);
    merge(&parts)
}

/// Merges Prometheus text renderings into one, each metric family once
/// (its `# HELP`/`# TYPE` lines from the first rendering that has it, then
/// the samples of all), a worker's samples labelled `worker="N"`.
fn merge(parts: &[(Option<u32>, String)]) -> String {
    // Family name -> its comment lines and samples, in first-seen order.
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (worker, text) in parts {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.split_whitespace();
                let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                    continue;
                };
                if kind != "HELP" && kind != "TYPE" {
                    continue;
                }
                let at = match families.iter().position(|(n, _, _)| n == name) {
                    Some(at) => at,
                    None => {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        families.len() - 1
                    }
                };
                let comments = &mut families[at].1;
                if !comments.iter().any(|c| c == line) && comments.len() < 2 {
                    comments.push(line.to_owned());
                }
                current = Some(at);
                continue;
            }
            let Some(at) = current else { continue };
            let sample = match worker {
                None => line.to_owned(),
                Some(id) => labelled(line, *id),
            };
            families[at].2.push(sample);
        }
    }
    let mut out = String::new();
    for (_, comments, samples) in families {
        for line in comments.iter().chain(&samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `sample` with `worker="id"` as its first label.
fn labelled(sample: &str, id: u32) -> String {
    let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
    let (name, rest) = sample.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(labels) => format!("{name}{{worker=\"{id}\",{labels}"),
        None => format!("{name}{{worker=\"{id}\"}}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_groups_each_family_once_and_labels_the_workers() {
        let supervisor = "# TYPE ikc_workers gauge\nikc_workers{state=\"running\"} 2\n\n";
        let worker = "# HELP ikc_requests_total Requests.\n# TYPE ikc_requests_total counter\n\
                      ikc_requests_total{session=\"echo\"} 3\n\n\
                      # TYPE ikc_connections_open gauge\nikc_connections_open 1\n\n";
        let merged = merge(&[
            (None, supervisor.to_owned()),
            (Some(1), worker.to_owned()),
            (Some(2), worker.replace(" 3", " 4")),
        ]);
        assert_eq!(
            merged,
            "# TYPE ikc_workers gauge\nikc_workers{state=\"running\"} 2\n\n\
             # HELP ikc_requests_total Requests.\n# TYPE ikc_requests_total counter\n\
             ikc_requests_total{worker=\"1\",session=\"echo\"} 3\n\
             ikc_requests_total{worker=\"2\",session=\"echo\"} 4\n\n\
             # TYPE ikc_connections_open gauge\n\
             ikc_connections_open{worker=\"1\"} 1\nikc_connections_open{worker=\"2\"} 1\n\n"
        );
    }
}
