//! Measures a server's memory per idle connection: reads the server's RSS,
//! opens N ikc connections (handshake done, then idle), reads it again.
//!
//! ```sh
//! ulimit -n 30000
//! target/release/ikc serve --bind 127.0.0.1:6099 --max-connections 20000 &
//! cargo run --release --example idle_connections -- --addr 127.0.0.1:6099 --server-pid $! --conns 10000
//! ```

use std::time::Duration;

use clap::Parser;
use ikc::Client;

/// Opens idle connections and reports the server's RSS per connection.
#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long)]
    addr: String,
    /// The server's pid, to read its RSS from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server is running");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // One connection first, so the server's one-time costs are not counted.
    let warm = Client::connect(&args.addr).await?;
    warm.call("IKC/ping", ()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(args.server_pid);
    let mut clients = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        clients.push(Client::connect(&args.addr).await?);
    }
    // Every connection has answered once, so each is fully set up.
    for client in &clients {
        client.call("IKC/ping", ()).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(args.server_pid);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / args.conns as f64;
    println!(
        "conns={} server_rss_before_kib={before} server_rss_after_kib={after} bytes_per_conn={per_conn:.0}",
        args.conns
    );
    Ok(())
}
