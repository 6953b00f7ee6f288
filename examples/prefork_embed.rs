//! Your own binary as a pre-forking server: a supervisor process binds the
//! socket and forks workers, each running your sessions on its own tokio
//! runtime; the supervisor never accepts, babysits the workers (heartbeat,
//! CPU, crash loops) and replaces them.
//!
//! ```sh
//! cargo run --example prefork_embed -- 127.0.0.1:6034 2     # address, workers
//! cargo run -- call --addr 127.0.0.1:6034 jobs/whoami        # answered by a worker
//! kill -USR2 <supervisor pid>    # one status line per worker
//! kill -HUP  <supervisor pid>    # new workers, ready before the old ones drain
//! kill -TERM <supervisor pid>    # graceful stop of every worker
//! ```
//!
//! Each worker's runtime reports a heartbeat to the supervisor on its own:
//! a worker whose runtime hangs stops beating and is replaced.
//!
//! Build nothing async before `Supervisor::run`: it forks, and only a
//! process without threads forks safely. The kernel and its sessions are
//! made in each worker, after the fork.

use std::process::ExitCode;
use std::time::Duration;

use ikc::core::BoxError;
use ikc::prefork::{Bound, Supervisor, WorkerContext};
use ikc::{Kernel, Request, Server, Value, service_fn};

/// What runs in each worker: a kernel with a `jobs` session telling which
/// worker answered.
fn worker(context: WorkerContext) -> ExitCode {
    let id = context.id();
    let kernel = Kernel::new("Jobs");
    let published = kernel.publish(
        "jobs",
        ["whoami"],
        service_fn(move |_: Request| async move {
            Ok::<_, BoxError>(Value::from(vec![
                Value::from(i64::from(id)),
                Value::from(i64::from(std::process::id())),
            ]))
        }),
    );
    if let Err(error) = published {
        eprintln!("cannot publish: {error}");
        return ExitCode::FAILURE;
    }
    context.serve(Server::builder().kernel(kernel))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6034".to_owned());
    let workers = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    let bound = match addr
        .parse()
        .map_err(BoxError::from)
        .and_then(|addr| Ok(Bound::tcp(addr)?))
    {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("cannot listen on {addr}: {error}");
            return ExitCode::from(3);
        }
    };
    // The real address (port 0 picks one), for whoever started us.
    println!("listening on {}", bound.local_addr());
    let supervisor = Supervisor::builder()
        .workers(workers)
        .babysit(Duration::from_secs(1))
        .hang_timeout(Duration::from_secs(10))
        .grace_period(Duration::from_secs(5));
    match supervisor.run(bound, worker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supervisor failed: {error}");
            ExitCode::FAILURE
        }
    }
}
