//! The kernel's router: one local call of the demo echo session through
//! tower's `oneshot`, and parsing the target a request names.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use ikc::{Request, Specifier, Value};
use tower::ServiceExt;

mod support;

fn local_call(c: &mut Criterion) {
    let kernel = support::echo_kernel("Server");
    let target: Specifier = "poe://Server/echo/say".parse().expect("a specifier");
    let payload = support::payload(64);
    let mut cx = Context::from_waker(Waker::noop());
    c.bench_function("router/oneshot_echo_64B", |b| {
        b.iter(|| {
            let request = Request::call(target.clone(), Value::Bytes(payload.clone()));
            // The echo session answers at once: one poll completes the call.
            let call = pin!(kernel.router().oneshot(request));
            match call.poll(&mut cx) {
                Poll::Ready(answer) => std::hint::black_box(answer.expect("echo answers")),
                Poll::Pending => panic!("the echo session answers without waiting"),
            }
        });
    });
}

fn parse_target(c: &mut Criterion) {
    c.bench_function("router/parse_target", |b| {
        b.iter(|| {
            let target: Specifier = std::hint::black_box("poe://Server/echo/say")
                .parse()
                .expect("a specifier");
            std::hint::black_box(target)
        });
    });
}

criterion_group! {
    name = benches;
    // Two cores: short runs with few samples keep `cargo bench` quick.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = local_call, parse_target
}
criterion_main!(benches);
