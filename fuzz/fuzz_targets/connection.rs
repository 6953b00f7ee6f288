//! Arbitrary bytes to a whole server connection: a real `Server`
//! (connection layers, handshake, channel driver, router, an `echo`
//! session) serving, through `ServerHandle::serve_connection`, one end of an
//! in-memory pipe whose other end a peer writes the fuzz input to and then
//! closes.
//!
//! The server runs on a current-thread runtime kept across inputs, so every
//! input meets the same server, which must stay healthy: a control client,
//! connected once over the server's Unix socket in a temporary directory,
//! calls `echo/say` after every input and checks the answer. A pipe rather
//! than a socket per input: no file descriptors or loopback ports to run
//! out of, and no syscalls in the way of the fuzzer's speed.
//!
//! Input: `[mode, chunk_seed, stream...]`. Bit 0 of `mode` set: the stream
//! is preceded by a valid preface and `Hello` (so mutations go straight to
//! frames); clear: the stream is everything, preface included. Writes are
//! cut by `chunk_seed`, with a yield to the server between them.
//!
//! Checked: no panic; the server closes the connection once the peer has
//! closed its side (within a bound); the control client is answered; the
//! peer's registration is gone afterwards (only the control client stays
//! connected).

#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::SinkExt;
use ikc_core::{BoxError, Kernel, Request, Value, service_fn};
use ikc_fuzz::Chunks;
use ikc_proto::{HandshakeCodec, pb};
use ikc_server::{Client, Server, ServerHandle};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_util::codec::FramedWrite;

/// The bound on one connection, from connect to the server's close. A
/// connection that outlives it is a finding (a hang).
const CONNECTION_BOUND: Duration = Duration::from_secs(5);

/// Largest frame the server accepts: small, so the fuzzer reaches the limit.
const MAX_FRAME: usize = 64 * 1024;

struct Harness {
    runtime: Runtime,
    server: ServerHandle,
    control: Client,
    hello: Vec<u8>,
    calls: AtomicI64,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ikc.sock");
        let kernel = Kernel::new("Fuzz");
        kernel
            .publish(
                "echo",
                ["say"],
                service_fn(|req: Request| async move { Ok::<_, BoxError>(req.into_arg()) }),
            )
            .expect("echo publishes");
        let (server, control, hello) = runtime.block_on(async {
            let server = Server::builder()
                .kernel(kernel)
                .unix(&path)
                .handshake_timeout(Duration::from_millis(500))
                .max_frame_length(MAX_FRAME)
                .max_in_flight(64)
                .serve()
                .await
                .expect("the server starts");
            let control = Client::builder()
                .name("Control")
                .connect(&format!("unix:{}", path.display()))
                .await
                .expect("the control client connects");
            let hello = pb::Hello {
                version: 1,
                kernel: "peer".to_owned(),
                pid: 1,
                ..Default::default()
            };
            let mut writer = FramedWrite::new(Vec::new(), HandshakeCodec::client());
            writer.send(hello.into()).await.expect("encoding in memory");
            (server, control, writer.into_inner())
        });
        Harness {
            runtime,
            server,
            control,
            hello,
            calls: AtomicI64::new(0),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, chunk_seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let harness = harness();
    harness.runtime.block_on(async {
        let (socket, served) = tokio::io::duplex(64 * 1024);
        let server = harness.server.clone();
        let serving = tokio::spawn(async move { server.serve_connection(served).await });
        let (mut read, mut write) = tokio::io::split(socket);
        // Read while writing: a server answering many requests must not be
        // stuck on a full socket buffer while the peer is still writing.
        let reader = async {
            let mut received = Vec::new();
            // A reset after a protocol error is a close too.
            let _ = read.read_to_end(&mut received).await;
            received.len()
        };
        let writer = async {
            if mode & 1 == 1 {
                write.write_all(&harness.hello).await?;
            }
            for chunk in Chunks::new(stream, chunk_seed) {
                write.write_all(chunk).await?;
                tokio::task::yield_now().await;
            }
            write.shutdown().await
        };
        let closed = tokio::time::timeout(CONNECTION_BOUND, async {
            // The server may close early (a protocol error): writes then fail.
            let (_, _) = tokio::join!(reader, writer);
        })
        .await;
        assert!(
            closed.is_ok(),
            "the server kept the connection open after the peer closed its side"
        );
        let served = tokio::time::timeout(CONNECTION_BOUND, serving).await;
        assert!(
            matches!(served, Ok(Ok(_))),
            "the connection did not end after the peer closed its side: {served:?}"
        );

        let n = harness.calls.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(
            CONNECTION_BOUND,
            harness.control.call("poe://Fuzz/echo/say", n),
        )
        .await
        .expect("the control call is answered in time")
        .expect("the control call succeeds");
        assert_eq!(answer, Value::from(n));

        let unregistered = tokio::time::timeout(CONNECTION_BOUND, async {
            while harness.server.kernel().kernels().len() != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            unregistered.is_ok(),
            "a closed peer stays registered: {:?}",
            harness.server.kernel().kernels()
        );
    });
});
