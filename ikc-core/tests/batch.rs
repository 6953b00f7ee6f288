//! `ChannelHandle::call_many`: a batch's answers in the order of its
//! arguments, its calls within the peer's limit, cancelled when dropped,
//! failed at once on a closed channel, and its task woken once for the
//! answers of one read. In memory, on paused time.

mod support;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake};

use ikc_core::{ErrorKind, Kernel, PeerLimits, Value};
use ikc_proto::pb;
use support::{connect, connect_with, held, raw_peer, reversing_echo, slow_counting, within};

#[tokio::test(start_paused = true)]
async fn a_batch_answers_in_the_order_of_its_args_though_the_answers_come_back_reversed() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    // The first call sleeps longest.
    server.publish("echo", ["late"], reversing_echo()).unwrap();
    let link = connect(&client, &server);

    let answers = within(
        "the batch",
        link.a_to_b
            .call_many("poe://Server/echo/late", (0..200_u32).map(Value::from)),
    )
    .await;
    assert_eq!(answers.len(), 200);
    for (n, answer) in (0..200_u32).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)), "call {n}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_over_the_peers_in_flight_limit_waits_its_turn_and_every_call_is_answered() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, most) = slow_counting();
    server.publish("slow", ["work"], slow).unwrap();
    let link = connect_with(
        &client,
        &server,
        |b| b.peer_limits(PeerLimits::default().with_max_in_flight(2)),
        |b| b.max_in_flight(2),
    );

    let answers = within(
        "twenty calls",
        link.a_to_b
            .call_many("poe://Server/slow/work", (0..20).map(Value::from)),
    )
    .await;
    for (n, answer) in (0..20).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)), "call {n}");
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_batch_cancels_every_handler_it_started_on_the_peer() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect(&client, &server);

    let batch = tokio::spawn({
        let to_server = link.a_to_b.clone();
        async move {
            to_server
                .call_many("poe://Server/slow/wait", [1, 2, 3].map(Value::from))
                .await
        }
    });
    let mut started = Vec::new();
    for _ in 0..3 {
        started.push(control.started().await);
    }
    started.sort_by_key(|v| v.as_i64());
    assert_eq!(started, [1, 2, 3].map(Value::from));

    batch.abort();
    let mut dropped = Vec::new();
    for _ in 0..3 {
        dropped.push(control.dropped().await);
    }
    dropped.sort_by_key(|v| v.as_i64());
    assert_eq!(dropped, [1, 2, 3].map(Value::from));
}

#[tokio::test(start_paused = true)]
async fn a_batch_on_a_closed_channel_fails_every_call_at_once() {
    let kernel = Kernel::new("Client");
    let (raw, to_raw, driver) = raw_peer(&kernel, "Raw", |b| b);
    drop(raw);
    within("the driver to end", driver).await.unwrap().unwrap();

    let answers = within(
        "the batch",
        to_raw.call_many("poe://Raw/any/thing", [1, 2].map(Value::from)),
    )
    .await;
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_eq!(answer.unwrap_err().kind(), ErrorKind::Disconnected);
    }
}

/// Counts the wakes of the task it stands for.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn the_answers_of_one_read_wake_the_batch_once() {
    let kernel = Kernel::new("Client");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| b);
    let wakes = Arc::new(Wakes::default());
    let waker = Arc::clone(&wakes).into();
    let mut cx = Context::from_waker(&waker);

    let mut batch = pin!(to_raw.call_many("poe://Raw/echo/say", [1, 2, 3].map(Value::from)));
    assert!(batch.as_mut().poll(&mut cx).is_pending());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(raw.recv_request().await.id);
    }
    // The three answers lie in the transport before the driver reads any.
    for (id, n) in ids.iter().zip([10, 20, 30]) {
        raw.send(pb::Reply {
            id: *id,
            value: Some(Value::from(n).into_proto()),
        })
        .await;
    }
    within("the driver to deliver the answers", async {
        while wakes.0.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let Poll::Ready(answers) = batch.as_mut().poll(&mut cx) else {
        panic!("every answer was delivered with the wake");
    };
    assert_eq!(answers, [10, 20, 30].map(|n| Ok(Value::from(n))));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
}
