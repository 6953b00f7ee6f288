//! A remote session as a tower `Service`: subscribe to a session another
//! kernel publishes, then call it through tower middleware, here a retry of
//! the calls the server refused as `Overloaded` (after the hint it gave).
//!
//! ```sh
//! cargo run --example remote_session
//! ```
//!
//! The program starts the server on a free port of 127.0.0.1 and its client
//! in the same process.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ikc::core::{BoxError, Call};
use ikc::{Client, ErrorKind, IkcError, Kernel, Request, Server, Value, service_fn};
use tower::retry::Policy;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Retries a call the server refused as `Overloaded` (it did not run it),
/// up to `left` more times, after the server's retry-after hint. Other
/// errors are the caller's to see: a call that may have run is not retried.
#[derive(Debug, Clone, Copy)]
struct RetryOverloaded {
    left: usize,
}

impl Policy<Call, Value, IkcError> for RetryOverloaded {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _call: &mut Call,
        result: &mut Result<Value, IkcError>,
    ) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if error.kind() != ErrorKind::Overloaded || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pause = error.retry_after().unwrap_or(Duration::from_millis(10));
        println!("overloaded; retrying in {pause:?}");
        Some(Box::pin(tokio::time::sleep(pause)))
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}

/// A server whose `inventory/count` refuses its first two calls as
/// `Overloaded`; the number of calls it got.
async fn start_server() -> Result<(ikc::server::ServerHandle, Arc<AtomicUsize>), BoxError> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let kernel = Kernel::new("Store");
    kernel.publish(
        "inventory",
        ["count"],
        service_fn(move |req: Request| {
            let seen = counted.fetch_add(1, Ordering::Relaxed);
            async move {
                if seen < 2 {
                    let busy = IkcError::new(ErrorKind::Overloaded, "busy, try again")
                        .with_retry_after(Duration::from_millis(20));
                    return Err::<Value, BoxError>(busy.into());
                }
                let item: String = req.arg_as()?;
                Ok(Value::from(format!("{item}: 12 in stock")))
            }
        }),
    )?;
    let server = Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse()?)
        .serve()
        .await?;
    Ok((server, calls))
}

/// Subscribes to `inventory` and calls it through the retry; the answer and
/// how many calls the server saw.
async fn run() -> Result<(Value, usize), BoxError> {
    let (server, calls) = start_server().await?;
    let client = Client::connect(&server.local_addr().to_string()).await?;

    // Checks that the server publishes the session; a `RemoteSession` is a
    // `Service<Call>`.
    let inventory = client.subscribe("poe://Store/inventory").await?;
    let mut inventory = ServiceBuilder::new()
        .retry(RetryOverloaded { left: 3 })
        .service(inventory);
    let answer = inventory
        .ready()
        .await?
        .call(Call::new("count", "apples"))
        .await?;
    println!("{answer:?}");

    client.close();
    server.shutdown();
    server.stopped().await;
    Ok((answer, calls.load(Ordering::Relaxed)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ikc::Value;

    #[tokio::test]
    async fn overloaded_calls_are_retried_until_answered() {
        let (answer, calls) =
            tokio::time::timeout(std::time::Duration::from_secs(10), super::run())
                .await
                .expect("the example finishes")
                .expect("the example succeeds");
        assert_eq!(answer, Value::from("apples: 12 in stock"));
        assert_eq!(calls, 3, "two refusals, then the answer");
    }
}
