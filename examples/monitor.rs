//! Watching kernels come and go: a server's monitor stream shows each
//! client's `Register` and `Unregister`, in order, as IKC's monitors did.
//!
//! ```sh
//! cargo run --example monitor
//! ```
//!
//! Against a running `ikc serve`, `cargo run -- monitor` prints the same
//! events.

use ikc::core::{BoxError, MonitorEvent};
use ikc::{Client, Server};

/// Starts a server, connects and closes two clients, and prints what the
/// server's monitor saw; the events, for the test.
async fn run() -> Result<Vec<MonitorEvent>, BoxError> {
    let server = Server::builder()
        .name("Hub")
        .bind("127.0.0.1:0".parse()?)
        .serve()
        .await?;
    // Subscribe before anything happens: a monitor sees events from its
    // creation on.
    let mut monitor = server.kernel().monitor();
    let addr = server.local_addr().to_string();

    let mut seen = Vec::new();
    for name in ["Alice", "Bob"] {
        let client = Client::builder().name(name).connect(&addr).await?;
        seen.push(next(&mut monitor).await?);
        client.close();
        seen.push(next(&mut monitor).await?);
    }
    server.shutdown();
    server.stopped().await;
    Ok(seen)
}

/// The monitor's next event, printed.
async fn next(monitor: &mut ikc::core::Monitor) -> Result<MonitorEvent, BoxError> {
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), monitor.next_event())
        .await?
        .ok_or("the server's kernel is gone")?;
    match &event {
        MonitorEvent::Register { kernel, pid, .. } => println!("{kernel} (pid {pid}) connected"),
        MonitorEvent::Unregister { kernel } => println!("{kernel} disconnected"),
        other => println!("{other:?}"),
    }
    Ok(event)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ikc::core::MonitorEvent;

    #[tokio::test]
    async fn each_client_registers_then_unregisters() {
        let seen = super::run().await.expect("the example succeeds");
        let names: Vec<String> = seen
            .iter()
            .map(|event| match event {
                MonitorEvent::Register { kernel, .. } => format!("+{kernel}"),
                MonitorEvent::Unregister { kernel } => format!("-{kernel}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["+Alice", "-Alice", "+Bob", "-Bob"]);
    }
}
