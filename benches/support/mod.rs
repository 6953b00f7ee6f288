//! Set-ups the benches share: an echo kernel, a connected in-memory pair, a
//! loopback server with a client, and a closed loop of calls.

// Each bench uses a part of this module.
#![allow(dead_code)]

use std::future::Future;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ikc::core::transport::memory;
use ikc::core::{Channel, ChannelHandle, PeerInfo};
use ikc::server::ServerHandle;
use ikc::{Client, Kernel, Server, Specifier, Value};

/// The echo event every bench calls.
pub(crate) const TARGET: &str = "echo/say";

/// Frames each end of the in-memory pair buffers.
const MEMORY_BUFFER: usize = 1024;

/// `len` bytes in the peers' pattern.
pub(crate) fn payload(len: usize) -> Bytes {
    #[allow(clippy::cast_possible_truncation)] // the pattern wraps
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// A kernel named `name` publishing `echo/say`, which answers its argument
/// unchanged (as the `echo` session of `ikc serve` does).
pub(crate) fn echo_kernel(name: &str) -> Kernel {
    let kernel = Kernel::new(name);
    kernel
        .publish(
            "echo",
            ["say"],
            ikc::service_fn(|req: ikc::Request| async move {
                Ok::<_, ikc::core::BoxError>(req.into_arg())
            }),
        )
        .expect("valid names");
    kernel
}

fn peer(kernel: &Kernel) -> PeerInfo {
    PeerInfo::new(kernel.name().to_owned(), Vec::new(), kernel.pid())
}

/// Two kernels connected in memory: a handle to call the echo server's
/// kernel, and the server's `echo/say`. Spawns both drivers, so call it
/// inside a runtime.
pub(crate) fn memory_pair() -> (ChannelHandle, Specifier) {
    let server = echo_kernel("Server");
    let client = Kernel::new("Client");
    let (a, b) = memory::pair(MEMORY_BUFFER);
    let (_, server_driver) = Channel::builder(server.clone())
        .connect(peer(&client), a)
        .expect("fresh names");
    let (to_server, client_driver) = Channel::builder(client)
        .connect(peer(&server), b)
        .expect("fresh names");
    tokio::spawn(server_driver);
    tokio::spawn(client_driver);
    let target = Specifier::remote("Server", "echo", "say").expect("valid names");
    (to_server, target)
}

/// An echo server on a free loopback port and a client connected to it.
pub(crate) async fn loopback() -> (ServerHandle, Client) {
    let server = Server::builder()
        .kernel(echo_kernel("Server"))
        .bind("127.0.0.1:0".parse().expect("a socket address"))
        .serve()
        .await
        .expect("bind a loopback port");
    let client = Client::connect(&server.local_addr().to_string())
        .await
        .expect("connect to the loopback server");
    (server, client)
}

/// Makes `calls` calls with `inflight` outstanding at once, checking that
/// each answer is `payload`.
pub(crate) async fn closed_loop<F, Fut>(calls: u64, inflight: usize, payload: &Bytes, call: F)
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<Value, ikc::IkcError>>,
{
    let mut running = FuturesUnordered::new();
    let mut started = 0;
    while started < calls && running.len() < inflight {
        running.push(call(Value::Bytes(payload.clone())));
        started += 1;
    }
    while let Some(answer) = running.next().await {
        match answer {
            Ok(Value::Bytes(bytes)) if bytes == *payload => {}
            other => panic!("echo answered {other:?}"),
        }
        if started < calls {
            running.push(call(Value::Bytes(payload.clone())));
            started += 1;
        }
    }
}

/// A single-threaded runtime: both ends of a bench share one thread, so a
/// result is the CPU cost of the whole round trip, free of cross-core
/// wake-up noise.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}
