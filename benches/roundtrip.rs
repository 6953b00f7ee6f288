//! Round trips of the demo echo call (64 B): over an in-memory channel pair,
//! and over loopback TCP through `Server` and `Client` with 1 and 32 calls in
//! flight, directly and through a balanced client of that one server
//! (`roundtrip/balanced`: the balancer's own cost per call is the
//! difference). Both ends share one thread, so a result is the CPU cost of
//! the whole round trip, client and server together.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod support;

const PAYLOAD: usize = 64;

fn memory(c: &mut Criterion) {
    let runtime = support::runtime();
    let (handle, target) = runtime.block_on(async { support::memory_pair() });
    let payload = support::payload(PAYLOAD);
    let mut group = c.benchmark_group("roundtrip/memory");
    group.throughput(Throughput::Elements(1));
    for inflight in [1, 32] {
        group.bench_function(format!("inflight_{inflight}"), |b| {
            b.iter_custom(|calls| {
                runtime.block_on(async {
                    let start = Instant::now();
                    support::closed_loop(calls, inflight, &payload, |arg| {
                        handle.call(&target, arg)
                    })
                    .await;
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn loopback(c: &mut Criterion) {
    let runtime = support::runtime();
    let (_server, client) = runtime.block_on(support::loopback());
    let payload = support::payload(PAYLOAD);
    let mut group = c.benchmark_group("roundtrip/tcp");
    group.throughput(Throughput::Elements(1));
    for inflight in [1, 32] {
        group.bench_function(format!("inflight_{inflight}"), |b| {
            b.iter_custom(|calls| {
                runtime.block_on(async {
                    let start = Instant::now();
                    support::closed_loop(calls, inflight, &payload, |arg| {
                        client.call(support::TARGET, arg)
                    })
                    .await;
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn balanced(c: &mut Criterion) {
    let runtime = support::runtime();
    let (server, _client) = runtime.block_on(support::loopback());
    let client = runtime.block_on(async {
        let list = ikc::server::balance::discover::static_list([server.local_addr().to_string()])
            .expect("one address");
        let client = ikc::Client::balanced(ikc::Client::builder(), list).await;
        // The member connects on the first call.
        client
            .call(support::TARGET, "warm")
            .await
            .expect("the server answers");
        client
    });
    let payload = support::payload(PAYLOAD);
    let mut group = c.benchmark_group("roundtrip/balanced");
    group.throughput(Throughput::Elements(1));
    for inflight in [1, 32] {
        group.bench_function(format!("inflight_{inflight}"), |b| {
            b.iter_custom(|calls| {
                runtime.block_on(async {
                    let start = Instant::now();
                    support::closed_loop(calls, inflight, &payload, |arg| {
                        client.call(support::TARGET, arg)
                    })
                    .await;
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Two cores: short runs with few samples keep `cargo bench` quick.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = memory, loopback, balanced
}
criterion_main!(benches);
