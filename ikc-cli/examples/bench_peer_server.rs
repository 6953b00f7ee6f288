//! The ikc echo server for the peers benchmark harness
//! (`shared/peers/run.sh`): serves the demo `echo` session.
//!
//! ```sh
//! cargo run --release --example bench_peer_server -- \
//!     --addr 127.0.0.1:50060 --workers 1 --max-secs 60
//! ```
//!
//! It runs a tokio runtime with `--workers` worker threads, accepts on
//! `--addr` at once, and exits by itself after `--max-secs` seconds.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: ikc_cli::alloc::Mimalloc = ikc_cli::alloc::Mimalloc;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ikc::{Kernel, Server};

/// Serve the demo `echo` session for the peers harness.
#[derive(Debug, Parser)]
struct Args {
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:50060")]
    addr: SocketAddr,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Exit after this many seconds.
    #[arg(long, default_value = "900", value_parser = ikc_cli::bench::parse_secs)]
    max_secs: Duration,
    /// Record request metrics into a Prometheus recorder (rendered by
    /// nobody: the cost of recording, as `ikc serve --metrics` pays it).
    #[arg(long)]
    metrics: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.workers == 0 || args.max_secs.is_zero() {
        eprintln!("bench_peer_server: workers and max-secs must be more than 0");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_peer_server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // `block_on` runs on this thread, not a worker: serve from a task so
        // the accept loop and connections all run on the workers.
        let serving = tokio::spawn(serve(args.addr, args.max_secs, args.metrics));
        serving.await.unwrap_or_else(|error| {
            eprintln!("bench_peer_server: server task failed: {error}");
            ExitCode::FAILURE
        })
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn serve(addr: SocketAddr, max_secs: Duration, metrics: bool) -> ExitCode {
    let kernel = Kernel::new("ikc-bench");
    ikc_cli::demo::publish_echo(&kernel).expect("demo names are valid");
    if metrics
        && let Err(error) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
    {
        eprintln!("bench_peer_server: {error}");
        return ExitCode::FAILURE;
    }
    let server = Server::builder().kernel(kernel).bind(addr).metrics(metrics);
    let server = match server.serve().await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("bench_peer_server: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "bench_peer_server: listening on {} (exits after {max_secs:?})",
        server.local_addr()
    );
    tokio::time::sleep(max_secs).await;
    eprintln!("bench_peer_server: max-secs reached, exiting");
    ExitCode::SUCCESS
}
