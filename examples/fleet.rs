//! More than one server: three servers run the same kernel (same name, same
//! sessions), and one balanced client spreads its calls over them. One
//! server then drains (as a rolling restart does) and no call is lost: the
//! calls it had not read are sent to another server.
//!
//! ```sh
//! cargo run --example fleet
//! ```
//!
//! Everything runs in this one process on 127.0.0.1 (free ports); in real
//! use each server is its own process or machine, listed with
//! `static_list`, or found by DNS (`ikc::server::balance::dns::Dns`, the
//! records a Kubernetes headless service or Consul gives).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;
use ikc::core::BoxError;
use ikc::server::ServerHandle;
use ikc::server::balance::discover::static_list;
use ikc::{Client, Kernel, Request, Server, Value, service_fn};

/// A server of the fleet: `work/do` answers its argument and counts.
async fn server(served: Arc<AtomicUsize>) -> Result<ServerHandle, BoxError> {
    let kernel = Kernel::new("Worker");
    kernel.publish(
        "work",
        ["do"],
        service_fn(move |req: Request| {
            served.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, BoxError>(req.into_arg()) }
        }),
    )?;
    Ok(Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse()?)
        .serve()
        .await?)
}

/// Runs the fleet; returns the calls each server answered.
async fn run() -> Result<Vec<usize>, BoxError> {
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let mut servers = Vec::new();
    for count in &counts {
        servers.push(server(Arc::clone(count)).await?);
    }
    let addrs = servers.iter().map(|s| s.local_addr().to_string());
    let client = Client::balanced(Client::builder(), static_list(addrs)?).await;

    // Calls spread over the three.
    let calls = (0..300).map(|n| client.call("work/do", n));
    for answer in join_all(calls).await {
        answer?;
    }
    // One server drains while calls run: every call is still answered.
    let calls = (0..300).map(|n| client.call("work/do", n));
    servers[0].shutdown();
    for answer in join_all(calls).await {
        answer?;
    }
    servers[0].stopped().await;
    let answered: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    println!("calls answered by each server: {answered:?}");
    assert_eq!(client.call("work/do", "last").await?, Value::from("last"));
    Ok(answered)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn calls_spread_over_the_fleet_and_survive_a_drain() {
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), super::run())
            .await
            .expect("the example finishes")
            .expect("every call is answered");
        assert!(answered.iter().all(|&n| n > 0), "{answered:?}");
        assert_eq!(answered.iter().sum::<usize>(), 600);
    }
}
