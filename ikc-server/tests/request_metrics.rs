//! The request metrics of `MetricsLayer`, read from a debugging recorder
//! installed for this test binary: counts, errors, the latency histogram's
//! series and the requests in flight, as `metrics::flush` hands them to
//! the recorder, and as the layer flushes them by itself.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ikc_core::{BoxError, ErrorKind, IkcError, Request, Specifier, Value};
use ikc_server::metrics::{self, MetricsLayer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

use support::within;

/// Every series read so far, summed over snapshots: the debugging recorder
/// resets counters and gauges as it reads them.
#[derive(Default)]
struct Seen(HashMap<String, f64>);

impl Seen {
    fn read(&mut self, snapshotter: &Snapshotter) -> &mut Self {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.0.entry(name).or_default() += n as f64,
                DebugValue::Gauge(value) => *self.0.entry(name).or_default() += value.into_inner(),
                DebugValue::Histogram(_) => panic!("no recorder histogram expected: {name}"),
            }
        }
        self
    }

    /// The series `name` with `labels` (`key=value`, in any order).
    fn get(&self, name: &str, labels: &[&str]) -> f64 {
        let mut labels = labels.to_vec();
        labels.sort_unstable();
        let name = format!("{name}{{{}}}", labels.join(","));
        self.0.get(&name).copied().unwrap_or(0.0)
    }
}

/// A service whose `echo/hold` calls wait for a sender the test keeps,
/// whose `echo/fail` calls fail, and whose others answer at once.
fn echo(
    held: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
) -> tower::util::BoxService<Request, Value, BoxError> {
    tower::util::BoxService::new(tower::service_fn(move |req: Request| {
        let held = Arc::clone(&held);
        async move {
            match (req.session(), req.event()) {
                ("echo", "hold") => {
                    let (tx, rx) = oneshot::channel();
                    held.lock().unwrap().push(tx);
                    let _ = rx.await;
                    Ok(Value::Null)
                }
                ("echo", "fail") => Err(BoxError::from(IkcError::new(
                    ErrorKind::Handler,
                    "asked to fail",
                ))),
                ("echo", _) => Ok(req.into_arg()),
                _ => Err(IkcError::new(ErrorKind::NoSession, "no such session").into()),
            }
        }
    }))
}

/// `labels` and one more.
fn with<'a>(labels: &[&'a str], more: &'a str) -> Vec<&'a str> {
    [labels, &[more]].concat()
}

fn call(target: &str) -> Request {
    let target: Specifier = target.parse().expect("a valid specifier");
    Request::call(target, Value::from(1))
}

#[tokio::test]
async fn requests_reach_the_recorder_when_flushed_and_by_themselves() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut first = MetricsLayer::new().layer(echo(Arc::clone(&held)));
    let mut second = MetricsLayer::new().layer(echo(Arc::clone(&held)));

    for _ in 0..3 {
        first
            .ready()
            .await
            .unwrap()
            .call(call("echo/say"))
            .await
            .unwrap();
    }
    let failed = first.ready().await.unwrap().call(call("echo/fail")).await;
    assert!(failed.is_err());
    let missing = first
        .ready()
        .await
        .unwrap()
        .call(call("nosuch/thing"))
        .await;
    assert!(missing.is_err());
    // One request held in each layer: the gauge adds both layers' up.
    let held_first = tokio::spawn(first.ready().await.unwrap().call(call("echo/hold")));
    let held_second = tokio::spawn(second.ready().await.unwrap().call(call("echo/hold")));
    within("both held requests to start", async {
        while held.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    metrics::flush();
    let mut seen = Seen::default();
    seen.read(&snapshotter);
    let say = ["session=echo", "event=say"];
    let calls = with(&say, "kind=call");
    assert_eq!(seen.get("ikc_requests_total", &calls), 3.0);
    assert_eq!(seen.get("ikc_request_duration_seconds_count", &say), 3.0);
    let inf = with(&say, "le=+Inf");
    assert_eq!(seen.get("ikc_request_duration_seconds_bucket", &inf), 3.0);
    assert!(seen.get("ikc_request_duration_seconds_sum", &say) > 0.0);
    // Cumulative: each bound counts at least what the one below it does.
    let bounds = ["0.00005", "0.0001", "0.00025", "0.001", "0.1", "10", "+Inf"];
    let counts: Vec<f64> = bounds
        .iter()
        .map(|le| {
            let le = format!("le={le}");
            seen.get("ikc_request_duration_seconds_bucket", &with(&say, &le))
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    let failed = ["session=echo", "event=fail", "error=Handler"];
    assert_eq!(seen.get("ikc_request_errors_total", &failed), 1.0);
    let missing = ["session=-", "event=-", "error=NoSession"];
    assert_eq!(seen.get("ikc_request_errors_total", &missing), 1.0);
    let unrouted = ["session=-", "event=-", "kind=call"];
    assert_eq!(seen.get("ikc_requests_total", &unrouted), 1.0);
    assert_eq!(seen.get("ikc_requests_in_flight", &[]), 2.0);

    // Answered: out of flight once flushed.
    for tx in held.lock().unwrap().drain(..) {
        tx.send(()).unwrap();
    }
    within("the first held answer", held_first)
        .await
        .unwrap()
        .unwrap();
    within("the second held answer", held_second)
        .await
        .unwrap()
        .unwrap();
    metrics::flush();
    seen.read(&snapshotter);
    assert_eq!(seen.get("ikc_requests_in_flight", &[]), 0.0);
    let held_calls = ["session=echo", "event=hold", "kind=call"];
    assert_eq!(seen.get("ikc_requests_total", &held_calls), 2.0);

    // Without `flush`: the layers' own task hands a call over within a
    // few of its periods.
    first
        .ready()
        .await
        .unwrap()
        .call(call("echo/say"))
        .await
        .unwrap();
    within("the layer to flush by itself", async {
        while seen.read(&snapshotter).get("ikc_requests_total", &calls) < 4.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
