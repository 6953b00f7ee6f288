//! The worker side: what a forked worker gets, and how it serves.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ikc_server::BoxError;
use ikc_server::ServerHandle;
use ikc_server::{Listener, Server};

use crate::heartbeat::{Beat, Heartbeat};

/// How often a worker's runtime reports it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The listening socket a worker inherits from the supervisor.
#[derive(Debug)]
pub(crate) enum Inherited {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// What a forked worker gets from the supervisor: its number, the listener,
/// its connection budget and its heartbeat pipe.
#[derive(Debug)]
pub struct WorkerContext {
    pub(crate) id: u32,
    pub(crate) listener: Inherited,
    pub(crate) connections: Option<u64>,
    pub(crate) heartbeat: Heartbeat,
    /// Set by SIGINT or SIGTERM from the fork on, before the runtime's own
    /// signal handling starts (see [`stop_flag`]).
    pub(crate) stop: Arc<AtomicBool>,
}

impl WorkerContext {
    /// The worker's number, from 1 (reported in `Welcome`).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Builds this worker's tokio runtime (single-threaded, as IKC workers
    /// were) and serves `server` on the inherited listener until SIGINT or
    /// SIGTERM (graceful drain) or until the connection budget is used up.
    /// Build the server's kernel inside the worker, so `IKC/ping` reports the
    /// worker's pid.
    ///
    /// When the server allows `IKC/shutdown`, the call stops the whole
    /// pre-forked server, not this worker alone: the worker asks the
    /// supervisor, which drains every worker.
    #[must_use]
    pub fn serve<L>(self, server: Server<L>) -> ExitCode
    where
        L: tower::Layer<ikc_server::RequestRouter>,
        L::Service: tower::Service<ikc_core::Request, Response = ikc_core::Value>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<ikc_core::Request>>::Error: Into<BoxError>,
        <L::Service as tower::Service<ikc_core::Request>>::Future: Send + 'static,
    {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "worker cannot start its runtime");
                return ExitCode::FAILURE;
            }
        };
        let WorkerContext {
            id,
            listener,
            connections,
            heartbeat,
            stop,
        } = self;
        runtime.block_on(async move {
            let listener = match listener {
                Inherited::Tcp(listener) => Listener::from_std_tcp(listener),
                Inherited::Unix(listener) => Listener::from_std_unix(listener),
            };
            let listener = match listener {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "worker cannot use the inherited listener");
                    return ExitCode::FAILURE;
                }
            };
            let heartbeat = Arc::new(heartbeat);
            let asks_stop = Arc::clone(&heartbeat);
            let mut server = server
                .worker(id)
                .on_remote_shutdown(move || asks_stop.send(Beat::Stop));
            if let Some(connections) = connections {
                server = server.accept_limit(connections);
            }
            let handle = match server.serve_with_listener_shutdown(listener, termination(stop)) {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::error!(%error, "worker cannot serve");
                    return ExitCode::FAILURE;
                }
            };
            heartbeat.send(Beat::Ready);
            let recycling = async {
                handle.stopped_accepting().await;
                // Only a used-up budget leaves the server running without
                // accepting; a shutdown makes it stop.
                if connections.is_some_and(|budget| handle.accepted() >= budget) {
                    heartbeat.send(Beat::Recycling);
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = beat(&heartbeat, &handle) => {}
                () = recycling => {}
                _ = handle.stopped() => {}
            }
            ExitCode::SUCCESS
        })
    }
}

/// Reports liveness from inside the runtime: if the runtime hangs, the
/// beats stop and the supervisor notices.
async fn beat(heartbeat: &Heartbeat, handle: &ServerHandle) {
    let mut interval = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        interval.tick().await;
        heartbeat.send(Beat::Alive {
            accepted: handle.accepted(),
        });
    }
}

/// A flag that SIGINT and SIGTERM set, registered in a new worker right
/// after the fork. A signal that arrives before the worker's runtime listens
/// for it would otherwise be lost (the process-wide handler stays installed,
/// so its default action, exit, does not happen either), and the worker
/// would only end when the supervisor kills it after the grace period.
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            tracing::warn!(%error, signal, "cannot watch for an early stop signal");
        }
    }
    stop
}

/// Completes on SIGINT or SIGTERM: the supervisor asks a worker to drain.
/// `stop` holds one that came before this runtime listened.
async fn termination(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    // Checked after the handlers exist, so no signal falls between the two.
    if stop.load(Ordering::Acquire) {
        return;
    }
    let (Ok(mut int), Ok(mut term)) = handlers else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
