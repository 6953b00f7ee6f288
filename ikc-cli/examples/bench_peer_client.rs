//! The ikc load generator for the peers benchmark harness
//! (`shared/peers/run.sh`), on top of [`ikc_cli::bench`].
//!
//! ```sh
//! cargo run --release --example bench_peer_client -- --addr 127.0.0.1:50060 \
//!     --conns 4 --inflight 32 --payload 64 --secs 5 --warmup 0.5 --workers 1
//! ```
//!
//! Its last two lines on stdout follow the harness's contract:
//!
//! ```text
//! # detail peer=ikc n=... total_done=... errors=E mismatches=M cli_cpu_pct=.. srv_cpu_pct=.. srv_cpu_us_per_req=..
//! peer=ikc conns=C inflight=D payload=B rps=R p50_us=X p99_us=Y p999_us=Z
//! ```
//!
//! CPU figures are process CPU time (from `/proc/PID/stat`) over the measured
//! window; with `--server-pid`, the server's too.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: ikc_cli::alloc::Mimalloc = ikc_cli::alloc::Mimalloc;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ikc_cli::bench::{BenchOptions, BenchReport, Window};

/// Load an ikc echo server for the peers harness.
#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:50060")]
    addr: String,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Measured seconds.
    #[arg(long, default_value = "5", value_parser = ikc_cli::bench::parse_secs)]
    secs: Duration,
    /// Seconds of load before measuring.
    #[arg(long, default_value = "0.5", value_parser = ikc_cli::bench::parse_secs)]
    warmup: Duration,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The server's pid, to report its CPU time over the window.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// How long after the window the client waits before giving up.
const HARD_DEADLINE_GRACE: Duration = Duration::from_secs(15);

const PEER: &str = "ikc";

fn main() -> ExitCode {
    let args = Args::parse();
    if args.workers == 0 {
        eprintln!("bench_peer_client: workers must be more than 0");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_peer_client: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Run on a worker, not on the thread that called `block_on`.
        tokio::spawn(client(args)).await.unwrap_or_else(|error| {
            eprintln!("bench_peer_client: client task failed: {error}");
            ExitCode::FAILURE
        })
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn client(args: Args) -> ExitCode {
    let mut options = BenchOptions::new(args.addr.clone());
    options.conns = args.conns;
    options.inflight = args.inflight;
    options.payload = args.payload;
    options.secs = args.secs;
    options.warmup = args.warmup;
    options.progress = false;
    let window = Window::starting_now(&options);
    let cpu = tokio::spawn(sample_cpu(window, args.server_pid));
    let run = ikc_cli::bench::run_in(options, window);
    let report = match tokio::time::timeout_at((window.end + HARD_DEADLINE_GRACE).into(), run).await
    {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => {
            eprintln!("bench_peer_client: {error}");
            print_result(&args, 0.0, [0.0; 3]);
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("bench_peer_client: hard deadline passed; giving up");
            print_result(&args, 0.0, [0.0; 3]);
            return ExitCode::from(3);
        }
    };
    let cpu = cpu.await.ok();
    print_detail(&args, &report, cpu);
    print_result(
        &args,
        report.rps(),
        [0.5, 0.99, 0.999].map(|q| report.latency_us(q)),
    );
    if let Some(problem) = &report.first_problem {
        eprintln!("bench_peer_client: {problem}");
    }
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_result(args: &Args, rps: f64, [p50, p99, p999]: [f64; 3]) {
    println!(
        "peer={PEER} conns={} inflight={} payload={} rps={rps:.1} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1}",
        args.conns, args.inflight, args.payload,
    );
}

/// CPU time of the client and the server at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    client: Option<f64>,
    server: Option<f64>,
}

impl CpuSample {
    fn now(server_pid: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            client: cpu_secs("self"),
            server: server_pid.and_then(|pid| cpu_secs(&pid.to_string())),
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" closing the command name: state is field 3,
    // utime 14 and stime 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

async fn sample_cpu(window: Window, server_pid: Option<u32>) -> (CpuSample, CpuSample) {
    tokio::time::sleep_until(window.measure_start.into()).await;
    let first = CpuSample::now(server_pid);
    tokio::time::sleep_until(window.end.into()).await;
    (first, CpuSample::now(server_pid))
}

fn print_detail(args: &Args, report: &BenchReport, cpu: Option<(CpuSample, CpuSample)>) {
    let na = || "na".to_owned();
    let (mut client_pct, mut server_pct, mut server_us_per_req) = (na(), na(), na());
    if let Some((a, b)) = cpu {
        let wall = b.at.duration_since(a.at).as_secs_f64();
        if wall > 0.0 {
            if let (Some(x), Some(y)) = (a.client, b.client) {
                client_pct = format!("{:.0}", 100.0 * (y - x) / wall);
            }
            if let (Some(x), Some(y)) = (a.server, b.server) {
                server_pct = format!("{:.0}", 100.0 * (y - x) / wall);
                if report.measured > 0 {
                    // Server CPU over the span, per request completed in it
                    // (estimated from the measured rate).
                    let per = (y - x) / (report.rps() * wall) * 1e6;
                    server_us_per_req = format!("{per:.1}");
                }
            }
        }
    }
    let us = |nanos: f64| nanos / 1000.0;
    #[allow(clippy::cast_precision_loss)] // microseconds for display
    let (min, max) = (
        us(report.latency.min() as f64),
        us(report.latency.max() as f64),
    );
    println!(
        "# detail peer={PEER} n={} total_done={} errors={} mismatches={} mean_us={:.1} min_us={min:.1} max_us={max:.1} cli_cpu_pct={client_pct} srv_cpu_pct={server_pct} srv_cpu_us_per_req={server_us_per_req} workers={} warmup_s={} secs={}",
        report.measured,
        report.answered,
        report.errors,
        report.mismatches,
        us(report.latency.mean()),
        args.workers,
        args.warmup.as_secs_f64(),
        args.secs.as_secs_f64(),
    );
}
