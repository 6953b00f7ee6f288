//! Graceful shutdown: requests already accepted are answered, new ones are
//! refused with a reason, what outlives the grace period is aborted and
//! counted, and `IKC/shutdown` stops only a server that allows it.

mod support;

use std::time::Duration;

use ikc_core::{ErrorKind as CallErrorKind, MonitorEvent, Value};
use ikc_server::{Client, Server};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use support::{
    LOOPBACK, call_error, read_until_closed, server_kernel, shut_down, still_pending,
    wait_for_event, within,
};

#[tokio::test]
async fn call_in_flight_at_shutdown_is_answered_with_its_value() {
    let (kernel, mut gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow/wait", 42).await }
    });
    assert_eq!(gate.started().await, Value::from(42));

    server.shutdown();
    wait_for_event(&mut monitor, |event| *event == MonitorEvent::Shutdown).await;
    // Draining waits for the call; the server must not stop under it.
    let mut stopped = Box::pin(server.stopped());
    still_pending("the stop while a call runs", &mut stopped).await;
    gate.release(1);

    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from(42));
    let report = within("the server to stop", stopped).await;
    assert_eq!(report.connections, 1);
    assert_eq!(report.aborted, 0);
}

/// Readiness for an orchestrator: a server that is draining takes no new
/// connection, so `ikc ping` (a new connection each time) fails while the
/// calls it accepted are still being answered.
#[tokio::test]
async fn a_draining_server_takes_no_new_connection() {
    let (kernel, mut gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = within("connect", Client::connect(&addr)).await.unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow/wait", 7).await }
    });
    assert_eq!(gate.started().await, Value::from(7));

    server.shutdown();
    wait_for_event(&mut monitor, |event| *event == MonitorEvent::Shutdown).await;
    let error = within("a new connection while draining", Client::connect(&addr))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind(),
            ikc_server::TransportErrorKind::Connect | ikc_server::TransportErrorKind::Handshake
        ),
        "{error}"
    );

    gate.release(1);
    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from(7));
    within("the server to stop", server.stopped()).await;
}

#[tokio::test]
async fn calls_made_after_go_away_are_refused_with_shutting_down() {
    let (kernel, mut gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    // Holds the connection open through the drain.
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow/wait", "held").await }
    });
    gate.started().await;

    server.shutdown();
    // Calls race the drain: the first one made after it is refused, by the
    // server or (once GoAway arrived) by the client itself; none hangs.
    let error = within("a call to be refused", async {
        loop {
            if let Err(error) = client.call("echo/say", "late").await {
                return error;
            }
        }
    })
    .await;
    assert_eq!(error.kind(), CallErrorKind::ShuttingDown, "{error}");
    let error = call_error(within("a call after GoAway", client.call("echo/say", "later")).await);
    assert_eq!(error.kind(), CallErrorKind::ShuttingDown, "{error}");
    let error = within("a post after GoAway", client.post("echo/say", "later"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), CallErrorKind::ShuttingDown, "{error}");

    gate.release(1);
    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(answer.unwrap(), Value::from("held"));
    within("the server to stop", server.stopped()).await;
    within("the client to see the close", client.closed()).await;
    let error = call_error(within("a call after the close", client.call("echo/say", 1)).await);
    assert!(
        matches!(
            error.kind(),
            CallErrorKind::ShuttingDown | CallErrorKind::Disconnected
        ),
        "{error}"
    );
}

#[tokio::test]
async fn connection_busy_past_the_grace_period_is_aborted_and_counted() {
    // The gate is never released: the request would run forever.
    let (kernel, mut gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .grace_period(Duration::from_millis(200))
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow/wait", "forever").await }
    });
    gate.started().await;

    let report = shut_down(&server).await;

    assert_eq!(report.connections, 1);
    assert_eq!(report.aborted, 1);
    let error = call_error(within("the stuck call", stuck).await.unwrap());
    assert_eq!(error.kind(), CallErrorKind::Disconnected, "{error}");
    assert!(error.may_have_run(), "the request was running: {error}");
}

#[tokio::test]
async fn idle_server_stops_at_once_with_nothing_aborted() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    within("call", client.call("echo/say", 1)).await.unwrap();

    // The default grace period is 30 s; an idle connection closes at once.
    let report = shut_down(&server).await;

    assert_eq!(report.connections, 1);
    assert_eq!(report.aborted, 0);
    within("the client to see the close", client.closed()).await;
    // Every handle hears the same report, even after the fact.
    assert_eq!(within("stopped again", server.stopped()).await, report);
}

#[tokio::test]
async fn serve_with_shutdown_stops_when_its_signal_completes() {
    let (kernel, _gate) = server_kernel("Server");
    let (stop, signal) = oneshot::channel::<()>();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve_with_shutdown(async move {
            let _ = signal.await;
        })
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();
    within("call", client.call("echo/say", 1)).await.unwrap();
    let mut stopped = Box::pin(server.stopped());
    still_pending("the server before its signal", &mut stopped).await;

    stop.send(()).unwrap();

    let report = within("the server to stop", stopped).await;
    assert_eq!(report.connections, 1);
    assert_eq!(report.aborted, 0);
}

#[tokio::test]
async fn new_connections_are_refused_after_shutdown() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();

    shut_down(&server).await;

    // Nothing listens any more: the connect fails, or at worst the stream
    // is closed without a word.
    if let Ok(mut stream) = TcpStream::connect(&addr).await {
        let received = read_until_closed(&mut stream).await;
        assert!(
            received.is_empty(),
            "a stopped server answered {received:?}"
        );
    }
    let error = within("connect", Client::connect(&addr)).await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            ikc_server::TransportErrorKind::Connect | ikc_server::TransportErrorKind::Handshake
        ),
        "{error}"
    );
}

#[tokio::test]
async fn remote_shutdown_is_no_event_unless_the_server_allows_it() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let error = call_error(within("IKC/shutdown", client.call("IKC/shutdown", Value::Null)).await);

    assert_eq!(error.kind(), CallErrorKind::NoEvent, "{error}");
    still_pending("the server", &mut Box::pin(server.stopped())).await;
    let answer = within("call", client.call("echo/say", "still up")).await;
    assert_eq!(answer.unwrap(), Value::from("still up"));
}

#[tokio::test]
async fn remote_shutdown_stops_a_server_that_allows_it() {
    let (kernel, _gate) = server_kernel("Server");
    let mut monitor = kernel.monitor();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .allow_remote_shutdown(true)
        .serve()
        .await
        .unwrap();
    let client = within("connect", Client::connect(&server.local_addr().to_string()))
        .await
        .unwrap();

    let answer = within("IKC/shutdown", client.call("IKC/shutdown", Value::Null)).await;

    assert_eq!(answer.unwrap(), Value::Null);
    wait_for_event(&mut monitor, |event| *event == MonitorEvent::Shutdown).await;
    let report = within("the server to stop", server.stopped()).await;
    assert_eq!(report.connections, 1);
    assert_eq!(report.aborted, 0);
    within("the client to see the close", client.closed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_no_call_the_server_accepted() {
    let (kernel, _gate) = server_kernel("Server");
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let mut callers = Vec::new();
    for caller in 0..4_i64 {
        let client = within("connect", Client::connect(&addr)).await.unwrap();
        let started_tx = started_tx.clone();
        // Each caller keeps 8 calls going until its connection ends.
        callers.push(tokio::spawn(async move {
            let mut answered = 0_u64;
            let mut refused = Vec::new();
            let mut n = 0_i64;
            loop {
                let batch: Vec<_> = (0..8)
                    .map(|_| {
                        n += 1;
                        let arg = caller * 1_000_000 + n;
                        let client = client.clone();
                        async move { (arg, client.call("echo/say", arg).await) }
                    })
                    .collect();
                let mut ended = false;
                for (arg, result) in futures::future::join_all(batch).await {
                    match result {
                        Ok(value) => {
                            assert_eq!(value, Value::from(arg), "an answer for another call");
                            answered += 1;
                        }
                        Err(error) => {
                            refused.push(error);
                            ended = true;
                        }
                    }
                }
                let _ = started_tx.send(());
                if ended {
                    return (answered, refused);
                }
            }
        }));
    }
    // Let every caller get going, then shut down under load.
    for _ in 0..20 {
        within("calls to be answered", started.recv()).await;
    }
    let report = shut_down(&server).await;
    assert_eq!(report.aborted, 0);

    let mut answered = 0;
    for caller in callers {
        let (ok, refused) = within("a caller to finish", caller).await.unwrap();
        answered += ok;
        for error in refused {
            // Refused calls were never run: the server refused them, or had
            // not read them when it went away. A call it read but did not
            // answer (Disconnected, may have run) would be a lost call.
            assert!(!error.may_have_run(), "a call was lost: {error}");
            assert!(
                matches!(
                    error.kind(),
                    CallErrorKind::ShuttingDown | CallErrorKind::Disconnected
                ),
                "{error}"
            );
        }
    }
    assert!(answered >= 20 * 8, "only {answered} calls were answered");
}
