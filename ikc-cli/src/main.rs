//! The `ikc` command line: serve sessions, and call, post, ping or monitor a
//! running server.
//!
//! Exit status: 0 on success; 1 when a call ends with an error (its kind is
//! printed, e.g. `error: NoSession: ...`); 2 for a usage error; 3 when the
//! server cannot be reached, does not answer within `--connect-timeout`, or
//! refuses the connection.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: ikc_cli::alloc::Mimalloc = ikc_cli::alloc::Mimalloc;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ikc::core::BoxError;
use ikc::server::Error as ServerError;
use ikc::server::access::Policy;
use ikc::server::auth::{Keyring, Secret};
use ikc::server::balance::discover;
use ikc::server::balance::dns::Dns;
use ikc::server::client::ClientBuilder;
use ikc::server::tls::{ClientTls, ServerTls};
use ikc::{Client, Kernel, Request, Server, Value, service_fn};
use tracing::Instrument;

/// Inter-kernel communication: serve sessions and call them from other processes.
#[derive(Debug, Parser)]
#[command(name = "ikc", version, about, propagate_version = true)]
struct Cli {
    /// Log more: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server publishing the demo `echo` session (events `say`, `upper`) and `IKC`.
    ///
    /// Signals: SIGINT and SIGTERM drain and stop; SIGUSR1 upgrades the
    /// binary (starts the one on disk again, hands it the listening socket,
    /// drains once it serves); SIGUSR2 logs the status (with --workers, a
    /// line per worker). With --workers also: SIGHUP replaces every worker,
    /// SIGTTIN and SIGTTOU run one worker more or less.
    Serve(Box<ServeArgs>),
    /// Call an event and print the answer as JSON.
    Call(CallArgs),
    /// Post an event (no answer).
    Post(CallArgs),
    /// Ping a server (`IKC/ping`) and print who answered.
    Ping(AddrArgs),
    /// Print the server's monitor events (register, unregister, subscribe...) as they happen.
    Monitor(AddrArgs),
    /// Load a server with calls and print throughput and latency.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The socket systemd passed (socket activation), taken in `main`
    /// before any thread starts; served in place of --bind/--unix.
    #[arg(skip)]
    activated: Option<ikc::server::activation::Activated>,
    /// When this process is the new generation of a binary upgrade: how
    /// it tells the old one that it serves (taken in `main` too).
    #[arg(skip)]
    handover: Option<ikc::server::upgrade::Handover>,
    /// The metrics endpoint's socket the old generation handed over.
    #[arg(skip)]
    metrics_listener: Option<std::net::TcpListener>,
    /// This binary and its arguments as it started: what SIGUSR1 starts
    /// again.
    #[arg(skip)]
    exec: Option<ikc::server::upgrade::Exec>,
    /// The server kernel's name.
    #[arg(long, default_value = ikc::server::DEFAULT_NAME)]
    name: String,
    /// TCP address to listen on.
    #[arg(long, default_value_t = ikc::server::DEFAULT_BIND)]
    bind: SocketAddr,
    /// Listen on this Unix socket instead of TCP.
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Connections held at once.
    #[arg(long, default_value_t = ikc::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Let peers stop the server with `IKC/shutdown`.
    #[arg(long)]
    allow_remote_shutdown: bool,
    /// Require peers to prove they know the secret in this file (HMAC-SHA256
    /// challenge and response; the secret never goes on the wire). The file
    /// is one secret, or a TOML `[keys]` table of id = "secret" for
    /// rotation (peers name the key they prove with --key-id).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Speak TLS on TCP with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require every TCP client to present a certificate that
    /// leads to the PEM CA certificates in this file (needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (default address
    /// 127.0.0.1:9464 when given without one); off by default. With
    /// --workers: one endpoint for the supervisor and every worker, each
    /// worker's samples labelled worker="N".
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9464", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Let peers call and post only what the access policy in this TOML
    /// file allows (see the `ikc_server::access` docs); the rest is
    /// answered Forbidden.
    #[arg(long)]
    access: Option<PathBuf>,
    /// Pre-forked worker processes; 0 serves in this process.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// With --workers: connections a worker accepts before it is recycled (default: no limit).
    #[arg(long)]
    connections: Option<u64>,
    /// With --workers: seconds a recycled worker keeps its connections before it drains them.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    recycle_deadline: Duration,
    /// With --workers: seconds between the babysitter's checks.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    babysit: Duration,
    /// With --workers: seconds without a heartbeat before a worker counts as hung.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    hang_timeout: Duration,
    /// With --workers: seconds over which a worker's CPU use is judged (see --cpu-limit).
    #[arg(long, default_value = "600", value_parser = parse_secs)]
    cpu_window: Duration,
    /// With --workers: seconds of CPU time a worker may use within one --cpu-window; one
    /// that used more spins and counts as a rogue (needs /proc).
    #[arg(long, default_value = "570", value_parser = parse_secs)]
    cpu_limit: Duration,
    /// With --workers: this many worker deaths within --crash-window make a crash loop,
    /// in which each start waits (100 ms, doubling up to 10 s).
    #[arg(long, default_value_t = ikc::prefork::DEFAULT_CRASH_LOOP_DEATHS)]
    crash_deaths: u32,
    /// With --workers: seconds within which --crash-deaths deaths make a crash loop.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    crash_window: Duration,
    /// Seconds a graceful shutdown waits for connections before aborting them.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    grace: Duration,
    /// Accept Perl POE::Component::IKC clients too (told apart by their first line): on or off.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    legacy: bool,
    /// Export spans over OTLP/HTTP to the collector at this URL
    /// (http://127.0.0.1:4318, say), the service named after --name; peers'
    /// calls that carry a trace context are its children. Needs an ikc
    /// built with the `otel` feature (exit status 2 without). With
    /// --workers, each worker exports its own spans.
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
    /// Write the pid of the process that serves (the supervisor's with
    /// --workers) to this file once it serves; after a binary upgrade
    /// (SIGUSR1) it names the new generation.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Seconds the new generation of a binary upgrade (SIGUSR1) has to
    /// serve (every worker ready, with --workers) before it is stopped and
    /// this one goes on serving.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    upgrade_timeout: Duration,
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?} is not on or off")),
    }
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

#[derive(Debug, Args)]
struct AddrArgs {
    /// Server address: HOST:PORT or unix:PATH. Several, comma-separated
    /// (a,b,c), or servers found by DNS (dns:HOST:PORT for every A/AAAA
    /// address of HOST, srv:NAME for every SRV target of NAME; the system's
    /// resolver) make a balanced client: `call`, `post` and `ping` go to any
    /// of them (a call that provably did not run is sent to another once),
    /// `bench` spreads its connections over a list.
    #[arg(long, default_value = "127.0.0.1:6030")]
    addr: String,
    /// Prove to the server that we know the secret in this file (and require
    /// the server to prove it too): one secret, or a TOML `[keys]` table
    /// (then --key-id names the key, unless it holds one).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The id of the key of --secret-file to prove (default: its only key).
    #[arg(long, requires = "secret_file")]
    key_id: Option<String>,
    /// Speak TLS, trusting the PEM certificates in this file.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Present this PEM client certificate chain to a server that requires
    /// one (mutual TLS; needs --tls-ca and --tls-key).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds to wait for the connection, the TLS handshake and the ikc
    /// handshake together before giving up (exit status 3).
    #[arg(long, default_value = CONNECT_TIMEOUT, value_parser = parse_secs)]
    connect_timeout: Duration,
}

/// The default of `--connect-timeout`: the library's
/// `DEFAULT_CONNECT_TIMEOUT`, 10 s (a test checks that they agree).
const CONNECT_TIMEOUT: &str = "10";

/// Reads `--secret-file`, with the error a user can act on.
fn read_keys(path: Option<&PathBuf>) -> Result<Option<Keyring>, ExitCode> {
    path.map(|path| {
        Keyring::from_file(path).map_err(|error| {
            eprintln!("error: cannot use the secret file: {error}");
            ExitCode::from(2)
        })
    })
    .transpose()
}

/// The key of `--secret-file` a client proves: `--key-id`'s, or its only
/// one.
fn read_secret(path: Option<&PathBuf>, id: Option<&str>) -> Result<Option<Secret>, ExitCode> {
    let Some(keys) = read_keys(path)? else {
        return Ok(None);
    };
    match keys.pick(id) {
        Some(secret) => Ok(Some(secret.clone())),
        None => {
            let ids = keys.ids().collect::<Vec<_>>().join(", ");
            match id {
                Some(id) => {
                    eprintln!("error: the secret file holds no key {id:?} (it holds {ids})")
                }
                None => eprintln!(
                    "error: the secret file holds several keys ({ids}): name one with --key-id"
                ),
            }
            Err(ExitCode::from(2))
        }
    }
}

/// Reads `--access`, with the error a user can act on.
fn read_policy(path: Option<&PathBuf>) -> Result<Option<Policy>, ExitCode> {
    path.map(|path| {
        Policy::from_file(path).map_err(|error| {
            eprintln!("error: cannot use --access {}: {error}", path.display());
            ExitCode::from(2)
        })
    })
    .transpose()
}

/// `ikc bench`: see `ikc_cli::bench` for what is measured.
#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    addr: AddrArgs,
    /// The event to call, with a bytes payload; it must answer the payload.
    #[arg(long, default_value = ikc_cli::bench::DEFAULT_TARGET)]
    target: String,
    /// Connections, one client each.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Calls in flight on each connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Send the calls in batches of N (`Client::call_many`): each
    /// connection keeps inflight/N batches going. 1: one call at a time.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Payload bytes per call.
    #[arg(long, default_value_t = ikc_cli::bench::DEFAULT_PAYLOAD)]
    payload: usize,
    /// Measured seconds.
    #[arg(long, default_value = "5", value_parser = ikc_cli::bench::parse_secs)]
    secs: std::time::Duration,
    /// Seconds of load before measuring, not counted.
    #[arg(long, default_value = "0.5", value_parser = ikc_cli::bench::parse_secs)]
    warmup: std::time::Duration,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CallArgs {
    #[command(flatten)]
    addr: AddrArgs,
    /// The event: poe://kernel/session/event, or session/event on the server.
    specifier: String,
    /// The argument, as JSON (default: null).
    arg: Option<String>,
    /// Export the call's span over OTLP/HTTP to the collector at this URL,
    /// and send its trace context with the call (service name `ikc`).
    /// Needs an ikc built with the `otel` feature (exit status 2 without).
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
}

fn log_filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn init_logging(verbose: u8) {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(verbose))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Logging as [`init_logging`] does, and every span of ikc's own (at any
/// level: `ikc.request` is a trace span) exported by `exporter`. The log
/// filter is the log's alone, so `-v` and `RUST_LOG` change the log, not
/// what is exported.
#[cfg(feature = "otel")]
fn init_logging_and_export(verbose: u8, exporter: &ikc_cli::otlp::Exporter) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    // Spans only, and only ikc's: no span of the HTTP client that sends
    // them, nor events as span events.
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("ikc")
    });
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(log_filter(verbose));
    tracing_subscriber::registry()
        .with(log)
        .with(exporter.layer().with_filter(ours))
        .init();
}

/// `--otlp` and the kernel it names the service after, if given.
fn otlp_endpoint(command: &Command) -> Option<(&str, &str)> {
    match command {
        Command::Serve(args) => args.otlp.as_deref().map(|url| (url, args.name.as_str())),
        Command::Call(args) | Command::Post(args) => args.otlp.as_deref().map(|url| (url, "ikc")),
        Command::Ping(_) | Command::Monitor(_) | Command::Bench(_) => None,
    }
}

/// What `--otlp` set up, to shut down once the runtime has stopped.
#[cfg(feature = "otel")]
type Export = Option<ikc_cli::otlp::Exporter>;
#[cfg(not(feature = "otel"))]
type Export = Option<std::convert::Infallible>;

/// Sets up logging, and span export with `--otlp`.
fn init_telemetry(cli: &Cli) -> Result<Export, ExitCode> {
    let Some((_endpoint, _service)) = otlp_endpoint(&cli.command) else {
        init_logging(cli.verbose);
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        let exporter = ikc_cli::otlp::Exporter::new(_endpoint, _service).and_then(|exporter| {
            // A pre-forked server's workers start their own export once
            // forked: a fork keeps no thread.
            if !matches!(&cli.command, Command::Serve(args) if args.workers > 0) {
                exporter.start()?;
            }
            Ok(exporter)
        });
        match exporter {
            Ok(exporter) => {
                init_logging_and_export(cli.verbose, &exporter);
                Ok(Some(exporter))
            }
            Err(error) => {
                eprintln!("error: --otlp: {}", ikc::core::error::error_chain(&error));
                Err(ExitCode::from(2))
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        eprintln!(
            "error: --otlp: this ikc was built without the otel feature (cargo build --features otel)"
        );
        Err(ExitCode::from(2))
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Command::Serve(args) = &mut cli.command {
        // It changes the environment: before any thread exists.
        if let Err(error) = take_passed(args) {
            eprintln!("error: the sockets passed (LISTEN_FDS): {error}");
            return ExitCode::from(3);
        }
    }
    let export = match init_telemetry(&cli) {
        Ok(export) => export,
        Err(code) => return code,
    };
    // The pre-fork supervisor must fork before any runtime or thread exists.
    if let Command::Serve(args) = &mut cli.command {
        if args.workers > 0 {
            let code = serve_prefork(args, &export);
            finish_export(&export);
            return code;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli.command));
    drop(runtime);
    finish_export(&export);
    code
}

/// Starts the span export of `--otlp` in a pre-forked worker, once
/// forked; a worker that cannot serves without it.
fn start_export(export: &Export) {
    #[cfg(feature = "otel")]
    if let Some(Err(error)) = export.as_ref().map(ikc_cli::otlp::Exporter::start) {
        tracing::warn!(
            "--otlp: this worker exports no spans: {}",
            ikc::core::error::error_chain(&error)
        );
    }
    #[cfg(not(feature = "otel"))]
    let _: &Export = export;
}

/// Sends the spans of `--otlp` not sent yet, once the runtime has stopped.
fn finish_export(export: &Export) {
    #[cfg(feature = "otel")]
    if let Some(exporter) = export {
        exporter.shutdown();
    }
    #[cfg(not(feature = "otel"))]
    let _: &Export = export;
}

/// What systemd or the old generation of an upgrade passed (socket
/// activation, the handover, the metrics socket), and the binary to start
/// again on SIGUSR1.
fn take_passed(args: &mut ServeArgs) -> std::io::Result<()> {
    let mut passed = ikc::server::activation::passed();
    args.activated = passed.listener()?;
    args.handover = passed.handover()?;
    args.metrics_listener = passed.tcp_listener(ikc_cli::metrics::SOCKET_NAME)?;
    // Read now: once an upgrade replaced the file, the running binary's
    // path names the deleted one.
    args.exec = ikc::server::upgrade::Exec::current().ok();
    Ok(())
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Call(args) => call(args, false).await,
        Command::Post(args) => call(args, true).await,
        Command::Ping(args) => ping(args).await,
        Command::Monitor(args) => monitor(args).await,
        Command::Bench(args) => bench(args).await,
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal sent as soon as
/// the server says it listens must not find the default action (exit
/// without a clean stop) still in place.
fn termination() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = signals else {
            tracing::error!("cannot install signal handlers; stop the server with IKC/shutdown");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
}

fn report(error: &ServerError) -> ExitCode {
    eprintln!("error: {}", ikc::core::error::error_chain(error));
    ExitCode::from(3)
}

/// The server `ikc serve` runs, in this process or in each worker.
fn demo_server(args: &ServeArgs) -> Result<Server, ExitCode> {
    let kernel = match Kernel::try_new(&args.name) {
        Ok(kernel) => kernel,
        Err(error) => {
            eprintln!("error: invalid --name {:?}: {error}", args.name);
            return Err(ExitCode::from(2));
        }
    };
    ikc_cli::demo::publish_echo(&kernel).expect("demo names are valid");
    let server = Server::builder()
        .kernel(kernel)
        .bind(args.bind)
        .max_connections(args.max_connections)
        .grace_period(args.grace)
        .legacy(args.legacy)
        .allow_remote_shutdown(args.allow_remote_shutdown);
    let server = match read_keys(args.secret_file.as_ref())? {
        Some(keys) => server.secret(keys),
        None => server,
    };
    let server = match read_policy(args.access.as_ref())? {
        Some(policy) => server.access_policy(policy),
        None => server,
    };
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(server);
    };
    let tls = ServerTls::from_pem_files(cert, key).and_then(|tls| match &args.tls_client_ca {
        Some(ca) => tls.client_ca_pem_file(ca),
        None => Ok(tls),
    });
    match tls {
        Ok(tls) => Ok(server.tls(tls)),
        Err(error) => {
            eprintln!("error: cannot use --tls-cert/--tls-key/--tls-client-ca: {error}");
            Err(ExitCode::from(2))
        }
    }
}

/// The metrics endpoint's socket of `--metrics`: the one the old
/// generation of an upgrade handed over, else the address bound now.
fn metrics_listener(args: &mut ServeArgs) -> Option<Result<std::net::TcpListener, String>> {
    let addr = args.metrics?;
    Some(match args.metrics_listener.take() {
        Some(listener) => Ok(listener),
        None => ikc_cli::metrics::bind(addr),
    })
}

fn serve_prefork(args: &mut ServeArgs, export: &Export) -> ExitCode {
    use ikc::prefork::{Bound, Supervisor};
    if let Err(code) = demo_server(args) {
        return code;
    }
    let bound = match (args.activated.take(), &args.unix) {
        (Some(activated), _) => Bound::activated(activated),
        (None, Some(path)) => Bound::unix(path),
        (None, None) => Bound::tcp(args.bind),
    };
    let bound = match (bound, args.handover.take()) {
        (Ok(bound), Some(handover)) => bound.handed_over(handover),
        (bound, _) => bound,
    };
    let metrics = metrics_listener(args);
    let args = &*args;
    let bound = match bound {
        Ok(bound) => bound,
        Err(ikc::prefork::PreforkError::Bind(error)) => return report(&error),
        Err(error) => {
            eprintln!("error: {}", ikc::core::error::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let metrics = match metrics.map(|l| l.and_then(ikc_cli::metrics::Prefork::new)) {
        None => None,
        Some(Ok(metrics)) => Some(std::sync::Arc::new(metrics)),
        Some(Err(error)) => {
            eprintln!("error: --metrics: {error}");
            return ExitCode::from(3);
        }
    };
    if let Some(Ok(local)) = metrics.as_ref().map(|m| m.local_addr()) {
        tracing::info!("metrics on http://{local}/metrics");
    }
    let mut supervisor = Supervisor::builder()
        .workers(args.workers)
        .connections(args.connections)
        .recycle_deadline(args.recycle_deadline)
        .babysit(args.babysit)
        .hang_timeout(args.hang_timeout)
        .cpu_window(args.cpu_window)
        .cpu_limit(args.cpu_limit)
        .crash_loop(args.crash_deaths, args.crash_window)
        // Workers get the grace period; the supervisor kills stragglers a
        // little later.
        .grace_period(args.grace + Duration::from_secs(1))
        .upgrade_timeout(args.upgrade_timeout);
    if let Some(exec) = &args.exec {
        supervisor = supervisor.upgrade(exec.clone());
    }
    if let Some(path) = &args.pid_file {
        supervisor = supervisor.pid_file(path);
    }
    if let Some(Ok(socket)) = metrics.as_ref().map(|m| m.socket()) {
        supervisor = supervisor.hand_over(ikc_cli::metrics::SOCKET_NAME, socket);
    }
    if let Some(metrics) = &metrics {
        let metrics = std::sync::Arc::clone(metrics);
        supervisor = supervisor.after_babysit(move || metrics.write_supervisor());
    }
    let result = supervisor.run(bound, |worker| {
        let server = match demo_server(args) {
            Ok(server) => server,
            Err(code) => return code,
        };
        start_export(export);
        let code = match metrics.as_ref().and_then(|m| m.worker(worker.id())) {
            None => worker.serve(server),
            Some(recorder) => {
                // The worker's runtime runs on this thread: its server
                // records into the worker's own recorder.
                let _local = metrics::set_default_local_recorder(&recorder);
                worker.serve(server.metrics(true))
            }
        };
        finish_export(export);
        code
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", ikc::core::error::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut args: ServeArgs) -> ExitCode {
    use ikc::server::upgrade::PidFile;
    use std::os::fd::AsFd;

    let mut server = match demo_server(&args) {
        Ok(server) => server,
        Err(code) => return code,
    };
    // Installed before the pid file names this process: a SIGUSR1 sent as
    // soon as it does must not find the default action (exit).
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1());
    let usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2());
    let (listener, socket_file) = match listen(&mut args).await {
        Ok(listening) => listening,
        Err(code) => return code,
    };
    let mut metrics = None;
    let mut metrics_socket = None;
    if let Some(listener) = metrics_listener(&mut args) {
        let served = listener.and_then(|listener| {
            metrics_socket = listener.as_fd().try_clone_to_owned().ok();
            ikc_cli::metrics::serve(listener)
        });
        match served {
            Ok(local) => metrics = Some(local),
            Err(error) => {
                eprintln!("error: --metrics: {error}");
                return ExitCode::from(3);
            }
        }
        server = server.metrics(true);
    }
    // Handed to the next generation on SIGUSR1.
    let socket = listener.as_fd().try_clone_to_owned();
    let (upgraded_tx, upgraded) = tokio::sync::oneshot::channel();
    // Whether the stop is the end of an upgrade: the socket file is then
    // the new generation's.
    let handed_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let terminated = termination();
    let stop = {
        let handed_over = std::sync::Arc::clone(&handed_over);
        async move {
            tokio::select! {
                () = terminated => {}
                Ok(()) = upgraded => {
                    handed_over.store(true, std::sync::atomic::Ordering::Release);
                    tracing::info!("upgrade: the new generation serves; draining");
                }
            }
        }
    };
    let handle = match server.serve_with_listener_shutdown(listener, stop) {
        Ok(handle) => handle,
        Err(error) => return report(&error),
    };
    let status = usr2.map(|usr2| tokio::spawn(dump_status(usr2, handle.clone())));
    if let Some(local) = metrics {
        tracing::info!("metrics on http://{local}/metrics");
    }
    let pid_file = match args.pid_file.as_ref().map(PidFile::write) {
        Some(Err(error)) => {
            tracing::error!(%error, "cannot write the pid file");
            None
        }
        Some(Ok(file)) => Some(file),
        None => None,
    };
    if let Some(handover) = args.handover.take() {
        match handover.ready() {
            Ok(()) => tracing::info!("serving; told the old generation"),
            Err(error) => {
                tracing::warn!(%error, "cannot tell the old generation that this one serves")
            }
        }
    }
    let upgrades = match socket {
        Ok(socket) => {
            let sockets = [(ikc::server::upgrade::LISTENER, socket)]
                .into_iter()
                .chain(metrics_socket.map(|fd| (ikc_cli::metrics::SOCKET_NAME, fd)))
                .collect();
            let upgrade = Upgrade {
                exec: args.exec.take(),
                sockets,
                socket_file: socket_file.as_ref().map(|f| f.path().to_owned()),
                within: args.upgrade_timeout,
            };
            Some(tokio::spawn(upgrade.on_sigusr1(usr1, upgraded_tx)))
        }
        Err(error) => {
            tracing::warn!(%error, "cannot keep a copy of the listening socket; SIGUSR1 cannot upgrade");
            None
        }
    };
    let report = handle.stopped().await;
    if let Ok(status) = status {
        status.abort();
    }
    if let Some(task) = upgrades {
        task.abort();
    }
    if let (true, Some(file)) = (
        handed_over.load(std::sync::atomic::Ordering::Acquire),
        socket_file,
    ) {
        // The new generation serves on it and removes it when it stops.
        file.keep();
    }
    drop(pid_file);
    tracing::info!(
        connections = report.connections,
        aborted = report.aborted,
        "stopped"
    );
    ExitCode::SUCCESS
}

/// The listening socket of `ikc serve` in one process: the one systemd or
/// the old generation passed, else the --unix or --bind address bound
/// now; and the Unix socket file to remove at exit, when it is this
/// process's.
async fn listen(
    args: &mut ServeArgs,
) -> Result<
    (
        ikc::server::Listener,
        Option<ikc::server::listener::SocketFile>,
    ),
    ExitCode,
> {
    use ikc::server::Listener;
    use ikc::server::activation::Activated;
    if let Some(activated) = args.activated.take() {
        let file = match args.handover.as_mut().map(|h| h.take_socket_file()) {
            Some(Err(error)) => {
                eprintln!("error: the socket file the old generation handed over: {error}");
                return Err(ExitCode::from(3));
            }
            Some(Ok(file)) => file,
            None => None,
        };
        return match Listener::activated(activated) {
            Ok(listener) => Ok((listener, file)),
            Err(error) => {
                eprintln!("error: cannot serve the socket passed (LISTEN_FDS): {error}");
                Err(ExitCode::from(3))
            }
        };
    }
    let Some(path) = args.unix.take() else {
        return Listener::bind_tcp(args.bind)
            .await
            .map(|listener| (listener, None))
            .map_err(|error| report(&error));
    };
    let (listener, file) =
        ikc::server::listener::bind_unix_std(&path).map_err(|error| report(&error))?;
    match Listener::activated(Activated::Unix(listener)) {
        Ok(listener) => Ok((listener, Some(file))),
        Err(error) => {
            eprintln!("error: cannot serve unix:{}: {error}", path.display());
            Err(ExitCode::from(3))
        }
    }
}

/// SIGUSR2 in a single-process `ikc serve`: IKC::Server's state dump, one
/// status line (the supervisor's, with --workers, has a line per worker).
async fn dump_status(mut usr2: tokio::signal::unix::Signal, handle: ikc::server::ServerHandle) {
    while usr2.recv().await.is_some() {
        tracing::info!(
            pid = std::process::id(),
            listening = %handle.local_addr(),
            accepted = handle.accepted(),
            "status"
        );
    }
}

/// SIGUSR1 in a single-process `ikc serve`: a binary upgrade.
struct Upgrade {
    exec: Option<ikc::server::upgrade::Exec>,
    sockets: Vec<(&'static str, std::os::fd::OwnedFd)>,
    socket_file: Option<PathBuf>,
    within: Duration,
}

impl Upgrade {
    /// On each SIGUSR1, starts the new generation and waits for it to
    /// serve; once one does, tells the server to drain (`upgraded`) and
    /// returns. A failed upgrade is logged and this one serves on.
    async fn on_sigusr1(
        self,
        usr1: std::io::Result<tokio::signal::unix::Signal>,
        upgraded: tokio::sync::oneshot::Sender<()>,
    ) {
        use ikc::server::upgrade::NextGeneration;
        use std::os::fd::AsFd;
        let mut usr1 = match usr1 {
            Ok(usr1) => usr1,
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGUSR1; binary upgrade is off");
                return;
            }
        };
        while usr1.recv().await.is_some() {
            let Some(exec) = &self.exec else {
                tracing::error!("SIGUSR1: cannot find this binary's path; not upgrading");
                continue;
            };
            let sockets: Vec<_> = self
                .sockets
                .iter()
                .map(|(name, fd)| (*name, fd.as_fd()))
                .collect();
            let spawned =
                NextGeneration::spawn(exec, &sockets, self.socket_file.as_deref(), self.within);
            let next = match spawned {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(%error, "upgrade failed; still serving");
                    continue;
                }
            };
            tracing::info!(
                pid = next.id(),
                program = %exec.program().display(),
                "upgrading: started the new generation; serving until it is ready"
            );
            match next.ready().await {
                Ok(()) => {
                    let _ = upgraded.send(());
                    return;
                }
                Err(error) => tracing::error!(%error, "upgrade failed; still serving"),
            }
        }
    }
}

/// The client settings every client command (`call`, `post`, `ping`,
/// `monitor`, `bench`) takes from its options.
fn client_builder(args: &AddrArgs) -> Result<ClientBuilder, ExitCode> {
    let mut builder = Client::builder().connect_timeout(args.connect_timeout);
    if let Some(secret) = read_secret(args.secret_file.as_ref(), args.key_id.as_deref())? {
        builder = builder.secret(secret);
    }
    if let Some(ca) = &args.tls_ca {
        let tls =
            ClientTls::from_pem_file(ca).and_then(|tls| match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => tls.identity_pem_files(cert, key),
                _ => Ok(tls),
            });
        match tls {
            Ok(tls) => builder = builder.tls(tls),
            Err(error) => {
                eprintln!("error: cannot use --tls-ca/--tls-cert/--tls-key: {error}");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(builder)
}

async fn connect(args: &AddrArgs) -> Result<Client, ExitCode> {
    let builder = client_builder(args)?;
    // A draining worker refuses new handshakes; a new connection usually
    // reaches one that is not draining (a few tries cover a reload).
    let mut tries = 1;
    loop {
        match builder.clone().connect(&args.addr).await {
            Err(error)
                if error.kind() == ikc::server::TransportErrorKind::ShuttingDown
                    && tries < GOING_AWAY_TRIES =>
            {
                tracing::debug!(%error, "the server is going away; connecting again");
                tries += 1;
            }
            result => return result.map_err(|error| report(&error)),
        }
    }
}

fn print_json(value: &Value) {
    match serde_json::to_string(value) {
        Ok(json) => println!("{json}"),
        Err(error) => eprintln!("error: answer is not printable as JSON: {error}"),
    }
}

impl AddrArgs {
    /// The servers of a comma-separated `--addr`, when it names more than
    /// one; a bad entry is a usage error naming it.
    fn list(&self) -> Result<Option<ServerList>, ExitCode> {
        if let Some(dns) = self.dns()? {
            return Ok(Some(ServerList {
                list: Box::pin(dns),
            }));
        }
        if !self.addr.contains(',') {
            return Ok(None);
        }
        match discover::static_list(self.addr.split(',')) {
            Ok(list) => Ok(Some(list)),
            Err(error) => {
                eprintln!("error: --addr: {error}");
                Err(ExitCode::from(2))
            }
        }
        .map(|list| list.map(|list| ServerList { list }))
    }
}

impl AddrArgs {
    /// The DNS discovery a `dns:HOST:PORT` or `srv:NAME` address asks for.
    fn dns(&self) -> Result<Option<Dns>, ExitCode> {
        let usage = |why: &str| {
            eprintln!("error: --addr {}: {why}", self.addr);
            ExitCode::from(2)
        };
        let (srv, host) = if let Some(name) = self.addr.strip_prefix("srv:") {
            (Some(name), None)
        } else if let Some(host) = self.addr.strip_prefix("dns:") {
            let (host, port) = host
                .rsplit_once(':')
                .ok_or_else(|| usage("expected dns:HOST:PORT"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| usage("the port is not a number from 0 to 65535"))?;
            (None, Some((host, port)))
        } else {
            return Ok(None);
        };
        let resolver = Dns::system_resolver().map_err(|error| {
            eprintln!("error: {error}");
            ExitCode::from(2)
        })?;
        Ok(Some(match (srv, host) {
            (Some(name), _) => Dns::srv(resolver, name),
            (None, Some((host, port))) => Dns::host(resolver, host, port),
            (None, None) => return Ok(None),
        }))
    }
}

/// A comma-separated `--addr`, checked.
struct ServerList {
    list: futures::stream::BoxStream<
        'static,
        Result<discover::Change<String, String>, ikc::server::BoxError>,
    >,
}

/// `call`, `post` or `ping` on a balanced client over `list`.
async fn call_balanced(
    args: &AddrArgs,
    ServerList { list }: ServerList,
    specifier: &str,
    arg: Value,
    post: bool,
) -> Result<Result<Option<Value>, ikc::IkcError>, ExitCode> {
    let builder = client_builder(args)?;
    let client = Client::balanced(builder, list).await;
    Ok(if post {
        client.post(specifier, arg).await.map(|()| None)
    } else {
        client.call(specifier, arg).await.map(Some)
    })
}

/// Prints an answer and says how the command ends.
fn answered(result: Result<Option<Value>, ikc::IkcError>) -> ExitCode {
    match result {
        Ok(Some(value)) => {
            print_json(&value);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: CallArgs, post: bool) -> ExitCode {
    let arg = match args
        .arg
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
    {
        Ok(arg) => arg.unwrap_or_default(),
        Err(error) => {
            eprintln!("error: ARG is not valid JSON: {error}");
            return ExitCode::from(2);
        }
    };
    let specifier = args.specifier.as_str();
    // With --otlp, the call's own span: the root of the trace the server's
    // spans join.
    let span = if args.otlp.is_some() {
        tracing::info_span!("ikc.call", target = specifier, post)
    } else {
        tracing::Span::none()
    };
    match args.addr.list() {
        Err(code) => return code,
        Ok(Some(list)) => {
            let called = call_balanced(&args.addr, list, specifier, arg, post).instrument(span);
            return match called.await {
                Ok(result) => answered(result),
                Err(code) => code,
            };
        }
        Ok(None) => {}
    }
    let attempt = |client: Client| {
        let arg = arg.clone();
        async move {
            if post {
                client.post(specifier, arg).await.map(|()| None)
            } else {
                client.call(specifier, arg).await.map(Some)
            }
        }
        .instrument(span.clone())
    };
    let (client, result) = match with_retries(&args.addr, attempt).await {
        Ok(done) => done,
        Err(code) => return code,
    };
    // Let the post reach the server before the connection closes.
    client.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.closed()).await;
    answered(result)
}

/// How many times the CLI tries when a server answers that it is going away
/// without having run the request (a draining pre-forked worker, a restart).
const GOING_AWAY_TRIES: u32 = 3;

/// Connects and runs `attempt`; when the server refused it without running
/// it because it is going away, connects again and retries (up to
/// [`GOING_AWAY_TRIES`] in all): a new connection reaches a server that is
/// not going away.
async fn with_retries<T, F, Fut>(
    args: &AddrArgs,
    attempt: F,
) -> Result<(Client, Result<T, ikc::IkcError>), ExitCode>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ikc::IkcError>>,
{
    let mut tries = 1;
    loop {
        let client = connect(args).await?;
        match attempt(client.clone()).await {
            Err(error)
                if error.kind() == ikc::ErrorKind::ShuttingDown
                    && !error.may_have_run()
                    && tries < GOING_AWAY_TRIES =>
            {
                tracing::debug!(%error, "the server is going away; retrying on a new connection");
                tries += 1;
            }
            result => return Ok((client, result)),
        }
    }
}

async fn ping(args: AddrArgs) -> ExitCode {
    match args.list() {
        Err(code) => return code,
        Ok(Some(list)) => {
            return match call_balanced(&args, list, "IKC/ping", Value::Null, false).await {
                Ok(result) => answered(result),
                Err(code) => code,
            };
        }
        Ok(None) => {}
    }
    let ping = |client: Client| async move { client.call("IKC/ping", Value::Null).await };
    let result = match with_retries(&args, ping).await {
        Ok((_, result)) => result,
        Err(code) => return code,
    };
    match result {
        Ok(value) => {
            print_json(&value);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn monitor(args: AddrArgs) -> ExitCode {
    if args.addr.contains(',') || args.addr.starts_with("dns:") || args.addr.starts_with("srv:") {
        eprintln!("error: --addr: monitor watches one server; give one address");
        return ExitCode::from(2);
    }
    let client = match connect(&args).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let printer = service_fn(|req: Request| async move {
        print_json(req.arg());
        Ok::<_, BoxError>(Value::Null)
    });
    client
        .publish("monitor", ["event"], printer)
        .expect("names are valid");
    let target = format!("poe://{}/monitor/event", client.kernel().name());
    if let Err(error) = client.call("IKC/monitor", target).await {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    tokio::select! {
        () = client.closed() => {
            eprintln!("server closed the connection");
            ExitCode::SUCCESS
        }
        () = termination() => ExitCode::SUCCESS,
    }
}

/// Exit status: 0 when every call was answered with its payload, 1 when a
/// call failed or nothing was measured, 2 for bad options, 3 when the server
/// cannot be reached.
async fn bench(args: BenchArgs) -> ExitCode {
    if args.addr.addr.starts_with("dns:") || args.addr.addr.starts_with("srv:") {
        eprintln!("error: --addr: bench takes addresses (a,b,c), not a DNS name");
        return ExitCode::from(2);
    }
    if let Err(code) = args.addr.list() {
        return code;
    }
    let client = match client_builder(&args.addr) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let mut options = ikc_cli::bench::BenchOptions::new(args.addr.addr);
    options.client = client;
    options.target = args.target;
    options.conns = args.conns;
    options.inflight = args.inflight;
    options.batch = args.batch;
    options.payload = args.payload;
    options.secs = args.secs;
    options.warmup = args.warmup;
    let report = match ikc_cli::bench::run(options).await {
        Ok(report) => report,
        Err(ikc_cli::bench::BenchError::Connect { source, .. }) => return report(&source),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary_line());
    }
    if report.is_success() {
        return ExitCode::SUCCESS;
    }
    match &report.first_problem {
        Some(problem) => eprintln!("error: {problem}"),
        None => eprintln!("error: no call was answered in the measured window"),
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_defaults_to_the_librarys() {
        assert_eq!(
            parse_secs(CONNECT_TIMEOUT),
            Ok(ikc::server::client::DEFAULT_CONNECT_TIMEOUT)
        );
    }
}
