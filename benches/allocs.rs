//! Heap allocations per call, counted by a wrapping global allocator
//! (`stats_alloc`): codec, router, the in-memory round trip and the loopback
//! TCP round trip (both ends in this process, so both ends are counted).
//!
//! Not a criterion bench: it prints one line per case.
//! `cargo bench --bench allocs` makes 20,000 calls per case; under
//! `cargo test` (no `--bench` flag) 500, as a quick check.

use std::alloc::System;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use ikc::proto::{FrameCodec, pb};
use ikc::{Request, Specifier, Value};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_util::codec::{Decoder, Encoder};
use tower::ServiceExt;

mod support;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PAYLOAD: usize = 64;

/// Counts the allocations `run` makes and prints them per call.
fn report(name: &str, calls: u64, run: impl FnOnce()) {
    let region = Region::new(GLOBAL);
    run();
    let stats = region.change();
    #[allow(clippy::cast_precision_loss)] // a ratio for display
    let per = |n: usize| n as f64 / calls as f64;
    println!(
        "allocs/{name:<24} allocs_per_call={:.2} reallocs_per_call={:.2} bytes_per_call={:.0}",
        per(stats.allocations),
        per(stats.reallocations),
        per(stats.bytes_allocated),
    );
}

fn main() {
    let calls: u64 = if std::env::args().any(|arg| arg == "--bench") {
        20_000
    } else {
        500
    };
    let payload = support::payload(PAYLOAD);

    let frame: pb::Frame = pb::Request {
        id: 1,
        target: "poe://Server/echo/say".to_owned(),
        arg: Some(Value::Bytes(payload.clone()).into_proto()),
        from: String::new(),
        deadline_ms: 10_000,
        traceparent: String::new(),
    }
    .into();
    let mut codec = FrameCodec::new();
    let mut buffer = BytesMut::with_capacity(1024);
    report("codec_encode_decode_64B", calls, || {
        for _ in 0..calls {
            codec.encode(&frame, &mut buffer).expect("encode");
            std::hint::black_box(codec.decode(&mut buffer).expect("decode"));
        }
    });

    let kernel = support::echo_kernel("Server");
    let target: Specifier = "poe://Server/echo/say".parse().expect("a specifier");
    let mut cx = Context::from_waker(Waker::noop());
    report("router_oneshot_64B", calls, || {
        for _ in 0..calls {
            let request = Request::call(target.clone(), Value::Bytes(payload.clone()));
            let call = pin!(kernel.router().oneshot(request));
            assert!(matches!(call.poll(&mut cx), Poll::Ready(Ok(_))));
        }
    });

    let runtime = support::runtime();
    let (handle, target) = runtime.block_on(async { support::memory_pair() });
    for inflight in [1, 32] {
        // One unmeasured pass first: buffers and tables reach their size.
        let run = || {
            runtime.block_on(support::closed_loop(calls, inflight, &payload, |arg| {
                handle.call(&target, arg)
            }));
        };
        run();
        report(&format!("memory_inflight_{inflight}"), calls, run);
    }

    let (_server, client) = runtime.block_on(support::loopback());
    for inflight in [1, 32] {
        let run = || {
            runtime.block_on(support::closed_loop(calls, inflight, &payload, |arg| {
                client.call(support::TARGET, arg)
            }));
        };
        run();
        report(&format!("tcp_inflight_{inflight}"), calls, run);
    }
}
