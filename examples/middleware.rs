//! Sessions under tower middleware: a timeout, a concurrency limit, load
//! shedding and a rate limit from tower, and a logging layer of our own, on
//! every request a server handles (`Server::layer`) or on one session.
//!
//! ```sh
//! cargo run --example middleware
//! ```
//!
//! The program starts the server on a free port of 127.0.0.1 and calls it
//! to show each layer at work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ikc::core::BoxError;
use ikc::{Client, ErrorKind, Kernel, Request, Server, Value, service_fn};
use tower::{Layer, Service, ServiceBuilder};

/// A layer of our own: logs each request's target and outcome, and counts
/// them. Any `Service<Request>` can be wrapped the same way.
#[derive(Debug, Clone, Default)]
struct LogLayer {
    handled: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct Log<S> {
    inner: S,
    handled: Arc<AtomicUsize>,
}

impl<S> Layer<S> for LogLayer {
    type Service = Log<S>;

    fn layer(&self, inner: S) -> Log<S> {
        Log {
            inner,
            handled: Arc::clone(&self.handled),
        }
    }
}

impl<S> Service<Request> for Log<S>
where
    S: Service<Request, Response = Value>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let target = req.target().to_string();
        let caller = req.caller().map(|peer| peer.kernel.clone());
        let handled = Arc::clone(&self.handled);
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answer = answer.await.map_err(Into::into);
            handled.fetch_add(1, Ordering::Relaxed);
            let outcome = match &answer {
                Ok(_) => "ok".to_owned(),
                Err(error) => format!("failed: {error}"),
            };
            println!(
                "{target} from {} took {:?}: {outcome}",
                caller.as_deref().unwrap_or("this kernel"),
                started.elapsed()
            );
            answer
        })
    }
}

/// What the calls saw, for the example's test.
#[derive(Debug, PartialEq)]
struct Seen {
    quick: Value,
    too_slow: ErrorKind,
    /// The kinds of the two calls made at once, sorted.
    at_once: Vec<String>,
    throttled: Value,
    logged: usize,
}

async fn run() -> Result<Seen, BoxError> {
    let kernel = Kernel::new("Server");
    // `work/quick` answers at once; `work/slow` takes 300 ms.
    kernel.publish(
        "work",
        ["quick", "slow"],
        service_fn(|req: Request| async move {
            if req.event() == "slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok::<_, BoxError>(req.into_arg())
        }),
    )?;
    // A rate limit on one session: 100 calls a second. `RateLimit` keeps a
    // timer, so a `Buffer` in front of it gives the clonable handle a
    // published session needs.
    kernel.publish(
        "throttled",
        ["ping"],
        ServiceBuilder::new()
            .buffer(64)
            .rate_limit(100, Duration::from_secs(1))
            .service(service_fn(|_: Request| async {
                Ok::<_, BoxError>(Value::from("pong"))
            })),
    )?;

    let log = LogLayer::default();
    // The first layer is the outermost: every request is logged, then
    // shed when one already runs, then timed out after 100 ms.
    let server = Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse()?)
        .layer(log.clone())
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .serve()
        .await?;
    let client = Client::connect(&server.local_addr().to_string()).await?;

    let quick = client.call("work/quick", "fast enough").await?;
    let too_slow = client
        .call("work/slow", Value::Null)
        .await
        .unwrap_err()
        .kind();
    // Two at once: the concurrency limit lets one run, load shedding
    // answers the other `Overloaded` at once instead of queueing it.
    let (first, second) = tokio::join!(
        client.call("work/slow", Value::Null),
        client.call("work/slow", Value::Null)
    );
    let mut at_once: Vec<String> = [first, second]
        .into_iter()
        .map(|answer| answer.map_or_else(|error| error.kind().to_string(), |_| "ok".to_owned()))
        .collect();
    at_once.sort();
    let throttled = client.call("throttled/ping", Value::Null).await?;

    client.close();
    server.shutdown();
    server.stopped().await;
    Ok(Seen {
        quick,
        too_slow,
        at_once,
        throttled,
        logged: log.handled.load(Ordering::Relaxed),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let seen = run().await?;
    println!("{seen:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use ikc::{ErrorKind, Value};

    #[tokio::test]
    async fn each_layer_does_its_part() {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), super::run())
            .await
            .expect("the example finishes")
            .expect("the example succeeds");
        assert_eq!(
            seen,
            super::Seen {
                quick: Value::from("fast enough"),
                too_slow: ErrorKind::Timeout,
                // One ran into the timeout, the other was shed.
                at_once: vec!["Overloaded".to_owned(), "Timeout".to_owned()],
                throttled: Value::from("pong"),
                logged: 5,
            }
        );
    }
}
