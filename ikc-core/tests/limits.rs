//! The limits each end of a channel announces: our calls stay within the
//! peer's `max_in_flight` (the rest wait in a bounded queue, keeping their
//! deadlines), and the `Overloaded` answer carries the configured retry
//! hint. In memory, on paused time.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use futures::future::join_all;
use ikc_core::{ErrorKind, Kernel, PeerLimits, Value};
use ikc_proto::pb;
use support::{connect_with, held, raw_peer, raw_request, slow_counting, spec, typed, within};

/// Polls `fut` once: a call is in the table (and its frame on the way, or
/// queued) after its first poll.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// A peer that says it runs `n` requests at once.
fn runs_at_once(n: usize) -> PeerLimits {
    PeerLimits::default().with_max_in_flight(n)
}

#[tokio::test(start_paused = true)]
async fn calls_over_the_peers_in_flight_limit_wait_their_turn_and_are_all_answered() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, most) = slow_counting();
    server.publish("slow", ["work"], slow).unwrap();
    let link = connect_with(
        &client,
        &server,
        |b| b.peer_limits(runs_at_once(2)),
        |b| b.max_in_flight(2),
    );

    let target = spec("poe://Server/slow/work");
    let calls = (0..20).map(|n| link.a_to_b.call(&target, Value::from(n)));
    let answers = within("twenty calls", join_all(calls)).await;

    for (n, answer) in (0..20).zip(answers) {
        assert_eq!(answer, Ok(Value::from(n)), "call {n}");
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_finds_the_queue_full_fails_at_once_with_overloaded_and_the_hint() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let hint = Duration::from_millis(77);
    let link = connect_with(
        &client,
        &server,
        |b| {
            b.peer_limits(runs_at_once(1))
                .max_queued_calls(2)
                .overloaded_retry_after(hint)
        },
        |b| b.max_in_flight(1),
    );
    let target = spec("poe://Server/slow/wait");

    let mut running = Box::pin(link.a_to_b.call(&target, Value::from(0)));
    assert!(poll_once(&mut running).await.is_pending());
    assert_eq!(control.started().await, Value::from(0));
    // Queued: a first poll puts a call in the table and its frame on the way.
    let mut queued: Vec<_> = (1..=2)
        .map(|n| Box::pin(link.a_to_b.call(&target, Value::from(n))))
        .collect();
    for call in &mut queued {
        assert!(poll_once(call).await.is_pending());
    }

    let refused = within(
        "the call over the queue bound",
        link.a_to_b.call(&target, 3),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Overloaded, "{refused}");
    assert_eq!(refused.retry_after(), Some(hint));
    assert!(!refused.may_have_run());

    control.release();
    assert_eq!(
        within("the running call", running).await,
        Ok(Value::from(0))
    );
    for (n, call) in (1..=2).zip(queued) {
        assert_eq!(within("a queued call", call).await, Ok(Value::from(n)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_past_its_deadline_answers_timeout_and_is_never_sent() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let (slow, mut control) = held();
    server.publish("slow", ["wait"], slow).unwrap();
    let link = connect_with(
        &client,
        &server,
        |b| b.peer_limits(runs_at_once(1)),
        |b| b.max_in_flight(1),
    );
    let target = spec("poe://Server/slow/wait");

    let mut running = Box::pin(link.a_to_b.call(&target, Value::from("running")));
    assert!(poll_once(&mut running).await.is_pending());
    assert_eq!(control.started().await, Value::from("running"));

    let late = within(
        "the queued call's timeout",
        link.a_to_b
            .call_timeout(&target, Value::from("late"), Duration::from_millis(100)),
    )
    .await
    .unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Timeout, "{late}");
    assert!(!late.may_have_run(), "it never left: {late}");

    control.release();
    assert_eq!(
        within("the running call", running).await,
        Ok(Value::from("running"))
    );
    let next = within("the next call", link.a_to_b.call(&target, "next")).await;
    assert_eq!(next, Ok(Value::from("next")));
    // The server saw the running call and the next one, never the late one.
    assert_eq!(control.started().await, Value::from("next"));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_times_out_gives_its_slot_to_the_next_only_after_its_cancel() {
    let kernel = Kernel::new("Local");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| {
        b.peer_limits(runs_at_once(1)).keepalive(None)
    });
    let target = spec("poe://Raw/s/e");

    let first = tokio::spawn({
        let to_raw = to_raw.clone();
        let target = target.clone();
        async move {
            to_raw
                .call_timeout(&target, Value::from(1), Duration::from_millis(100))
                .await
        }
    });
    let first_id = raw.recv_request().await.id;
    let second = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&target, Value::from(2)).await }
    });

    // Nothing more until the first call ends: then its Cancel, then the next.
    let cancel = raw.recv().await;
    assert_eq!(
        cancel,
        Some(pb::Cancel { id: first_id }.into()),
        "the first call's Cancel comes before the next call"
    );
    let error = within("the first call", first).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    let next = raw.recv_request().await;
    assert_eq!(next.arg, Some(Value::from(2).into_proto()));
    raw.send(pb::Reply {
        id: next.id,
        value: Some(Value::from("two").into_proto()),
    })
    .await;
    assert_eq!(
        within("the second call", second).await.unwrap(),
        Ok(Value::from("two"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_dropped_by_its_caller_is_never_sent_nor_cancelled() {
    let kernel = Kernel::new("Local");
    let (mut raw, to_raw, _driver) = raw_peer(&kernel, "Raw", |b| {
        b.peer_limits(runs_at_once(1)).keepalive(None)
    });
    let target = spec("poe://Raw/s/e");

    let first = tokio::spawn({
        let to_raw = to_raw.clone();
        let target = target.clone();
        async move { to_raw.call(&target, Value::from(1)).await }
    });
    let first_id = raw.recv_request().await.id;
    let mut dropped = Box::pin(to_raw.call(&target, Value::from("dropped")));
    assert!(poll_once(&mut dropped).await.is_pending());
    drop(dropped);

    raw.send(pb::Reply {
        id: first_id,
        value: Some(Value::from("one").into_proto()),
    })
    .await;
    assert_eq!(
        within("the first call", first).await.unwrap(),
        Ok(Value::from("one"))
    );
    let third = tokio::spawn({
        let to_raw = to_raw.clone();
        async move { to_raw.call(&target, Value::from(3)).await }
    });
    // The next frame is the third call: no request, no Cancel for the dropped one.
    let next = raw.recv_request().await;
    assert_eq!(next.arg, Some(Value::from(3).into_proto()));
    raw.send(pb::Reply {
        id: next.id,
        value: Some(Value::Null.into_proto()),
    })
    .await;
    assert_eq!(
        within("the third call", third).await.unwrap(),
        Ok(Value::Null)
    );
}

#[tokio::test]
async fn the_overloaded_answer_carries_the_configured_retry_hint() {
    let kernel = Kernel::new("Local");
    let (slow, mut control) = held();
    kernel.publish("slow", ["wait"], slow).unwrap();
    let hint = Duration::from_millis(345);
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| {
        b.max_in_flight(1).overloaded_retry_after(hint)
    });

    raw.send(raw_request(1, "slow/wait", 1)).await;
    control.started().await;
    raw.send(raw_request(2, "slow/wait", 2)).await;
    let error = raw.recv_error().await;
    assert_eq!(error.id, 2);
    let error = typed(error);
    assert_eq!(error.kind(), ErrorKind::Overloaded, "{error}");
    assert_eq!(error.retry_after(), Some(hint));
}

#[tokio::test]
async fn a_cancelled_call_no_longer_counts_against_the_limit_even_before_its_handler_is_dropped() {
    let kernel = Kernel::new("Local");
    let (slow, mut control) = held();
    kernel.publish("slow", ["wait"], slow).unwrap();
    let (mut raw, _handle, _driver) = raw_peer(&kernel, "Raw", |b| b.max_in_flight(1));

    raw.send(raw_request(1, "slow/wait", 1)).await;
    assert_eq!(control.started().await, Value::from(1));
    // Back to back: the channel reads both before it drops the first handler.
    raw.send(pb::Cancel { id: 1 }).await;
    raw.send(raw_request(2, "slow/wait", 2)).await;
    assert_eq!(control.started().await, Value::from(2));
    control.release();
    let reply = raw.recv_reply().await;
    assert_eq!(reply.id, 2);
}

#[tokio::test]
async fn the_peers_announced_limits_are_read_back_from_the_handle() {
    let kernel = Kernel::new("Local");
    let announced = PeerLimits::from_proto(Some(&pb::Limits {
        max_frame_len: 1000,
        max_in_flight: 3,
        keepalive_ms: 2500,
    }));
    let (_raw, handle, _driver) = raw_peer(&kernel, "Raw", |b| b.peer_limits(announced));
    let limits = handle.peer_limits();
    assert_eq!(limits.max_frame_length, Some(1000));
    assert_eq!(limits.max_in_flight, Some(3));
    assert_eq!(limits.keepalive, Some(Duration::from_millis(2500)));
}
