//! Symmetric peers: a client publishes a session and the server calls it
//! back, by the name `Request::caller` gives the server's handler; then a
//! second client calls the first one through the server (a hub).
//!
//! ```sh
//! cargo run --example callback
//! ```
//!
//! Everything runs in this one process on 127.0.0.1 (a free port), so the
//! program is complete as it is; in real use the server and each client are
//! separate processes.

use std::sync::{Arc, Mutex};

use ikc::core::BoxError;
use ikc::{Client, Kernel, Request, Server, Value, service_fn};

/// Starts the server, two clients, and shows the two ways of calling a
/// client: the server calling it back, another client calling it through
/// the server. Returns the progress reports the first client received.
async fn run() -> Result<Vec<String>, BoxError> {
    // The server publishes `jobs/start`. Its handler does not need to be told
    // who is calling: the channel fills in `caller`, and the server reports
    // progress to that kernel's `progress/update`.
    let kernel = Kernel::new("Server");
    let server_kernel = kernel.clone();
    kernel.publish(
        "jobs",
        ["start"],
        service_fn(move |req: Request| {
            let kernel = server_kernel.clone();
            async move {
                let caller = req.caller().ok_or("jobs are started by remote kernels")?;
                let job: String = req.arg_as()?;
                let update = format!("poe://{}/progress/update", caller.kernel).parse()?;
                for step in ["queued", "running", "done"] {
                    kernel
                        .call(&update, Value::from(format!("{job}: {step}")))
                        .await?;
                }
                Ok::<_, BoxError>(Value::from(format!("{job} finished for {}", caller.kernel)))
            }
        }),
    )?;
    let server = Server::builder()
        .kernel(kernel)
        .bind("127.0.0.1:0".parse()?)
        .serve()
        .await?;
    let addr = server.local_addr().to_string();

    // The first client, "Builder", publishes `progress` before it calls.
    let reports = Arc::new(Mutex::new(Vec::new()));
    let builder = Client::builder().name("Builder").connect(&addr).await?;
    let received = Arc::clone(&reports);
    builder.publish(
        "progress",
        ["update"],
        service_fn(move |req: Request| {
            let received = Arc::clone(&received);
            async move {
                let report: String = req.arg_as()?;
                println!("Builder got: {report}");
                received.lock().expect("not poisoned").push(report);
                Ok::<_, BoxError>(Value::Null)
            }
        }),
    )?;
    let answer = builder.call("poe://Server/jobs/start", "build-42").await?;
    println!("Server answered: {answer:?}");

    // A second client calls the first one through the server: the server
    // routes `poe://Builder/...` over Builder's connection.
    let watcher = Client::builder().name("Watcher").connect(&addr).await?;
    watcher
        .call("poe://Builder/progress/update", "Watcher says hello")
        .await?;

    watcher.close();
    builder.close();
    server.shutdown();
    server.stopped().await;
    let reports = reports.lock().expect("not poisoned").clone();
    Ok(reports)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_server_calls_its_caller_back_and_clients_call_each_other() {
        let reports = tokio::time::timeout(std::time::Duration::from_secs(10), super::run())
            .await
            .expect("the example finishes")
            .expect("the example succeeds");
        assert_eq!(
            reports,
            [
                "build-42: queued",
                "build-42: running",
                "build-42: done",
                "Watcher says hello"
            ]
        );
    }
}
