//! The `ikc` command line: serve, call, post, ping, monitor.

use clap::{Parser, Subcommand};

/// Inter-kernel communication: serve sessions and call them from other processes.
#[derive(Debug, Parser)]
#[command(name = "ikc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an ikc server publishing the demo `echo` session.
    Serve,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => {
            eprintln!(
                "ikc {}: the server is not built yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(1);
        }
    }
}
