//! The `IKC` session every kernel publishes about itself.
//!
//! | event       | argument             | answer                                   |
//! |-------------|----------------------|------------------------------------------|
//! | `ping`      | -                    | `{kernel, pid}`                          |
//! | `published` | -                    | `{session: [events]}`                    |
//! | `kernels`   | -                    | `[{kernel, aliases, pid}]`               |
//! | `monitor`   | specifier (string)   | null; then each monitor event is posted to the specifier as `{event, kernel, ...}` until that kernel disconnects |
//! | `shutdown`  | -                    | null; only published when the kernel allows remote shutdown |

use std::collections::BTreeMap;
use std::sync::Arc;

use ikc_proto::Value;
use tower::service_fn;

use crate::kernel::IKC_SESSION;
use crate::{BoxError, ErrorKind, IkcError, Kernel, MonitorEvent, Request, Specifier};

/// The events of the built-in session.
pub const IKC_EVENTS: [&str; 4] = ["ping", "published", "kernels", "monitor"];

/// Called when a peer asks the kernel to shut down.
pub(crate) type ShutdownHook = Arc<dyn Fn() + Send + Sync>;

pub(crate) fn publish(kernel: &Kernel, shutdown: Option<ShutdownHook>) {
    let weak = kernel.downgrade();
    let mut events = IKC_EVENTS.to_vec();
    if shutdown.is_some() {
        events.push("shutdown");
    }
    let service = service_fn(move |req: Request| {
        let kernel = weak.upgrade();
        let shutdown = shutdown.clone();
        async move {
            let kernel =
                kernel.ok_or_else(|| IkcError::new(ErrorKind::ShuttingDown, "kernel is gone"))?;
            match req.event() {
                "monitor" => forward_monitor(&kernel, req.arg())?,
                "shutdown" => {
                    if let Some(hook) = shutdown {
                        tracing::info!(
                            from = req.from().unwrap_or("?"),
                            "shutdown requested by a peer"
                        );
                        hook();
                    }
                }
                event => return Ok::<_, BoxError>(answer(&kernel, event)),
            }
            Ok(Value::Null)
        }
    });
    kernel
        .publish(IKC_SESSION, events, service)
        .expect("built-in names are valid");
}

fn answer(kernel: &Kernel, event: &str) -> Value {
    match event {
        "ping" => Value::from(BTreeMap::from([
            ("kernel", Value::from(kernel.name())),
            ("pid", Value::from(kernel.pid())),
        ])),
        "published" => Value::from(
            kernel
                .published()
                .into_iter()
                .map(|(session, events)| (session, Value::from(events)))
                .collect::<BTreeMap<_, _>>(),
        ),
        "kernels" => kernel
            .kernels()
            .into_iter()
            .map(|peer| {
                Value::from(BTreeMap::from([
                    ("kernel", Value::from(peer.kernel)),
                    ("aliases", Value::from(peer.aliases)),
                    ("pid", Value::from(peer.pid)),
                ]))
            })
            .collect(),
        // The router only lets published events through.
        _ => Value::Null,
    }
}

/// Posts every monitor event to `target` until its kernel disconnects.
fn forward_monitor(kernel: &Kernel, target: &Value) -> Result<(), IkcError> {
    let target: Specifier = target
        .as_str()
        .ok_or_else(|| {
            IkcError::new(
                ErrorKind::BadRequest,
                "monitor needs the specifier to post events to",
            )
        })?
        .parse()
        .map_err(|e: crate::ParseSpecifierError| {
            IkcError::new(ErrorKind::BadRequest, e.to_string())
        })?;
    let crate::KernelTarget::Named(watcher) = target.kernel().clone() else {
        return Err(IkcError::new(
            ErrorKind::BadRequest,
            "monitor needs poe://kernel/session/event",
        ));
    };
    let mut monitor = kernel.monitor();
    let kernel = kernel.downgrade();
    tokio::spawn(async move {
        while let Some(event) = monitor.next_event().await {
            let gone = matches!(&event, MonitorEvent::Unregister { kernel } if *kernel == watcher);
            let Some(kernel) = kernel.upgrade() else {
                break;
            };
            if gone || kernel.post(&target, event_value(&event)).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// A monitor event as the value posted to watchers.
#[must_use]
pub fn event_value(event: &MonitorEvent) -> Value {
    let mut map = BTreeMap::new();
    let name = match event {
        MonitorEvent::Register {
            kernel,
            aliases,
            pid,
        } => {
            map.insert("kernel", Value::from(kernel.as_str()));
            map.insert("aliases", Value::from(aliases.clone()));
            map.insert("pid", Value::from(*pid));
            "register"
        }
        MonitorEvent::Unregister { kernel } => {
            map.insert("kernel", Value::from(kernel.as_str()));
            "unregister"
        }
        MonitorEvent::Subscribe { kernel, session } => {
            map.insert("kernel", Value::from(kernel.as_str()));
            map.insert("session", Value::from(session.as_str()));
            "subscribe"
        }
        MonitorEvent::Unsubscribe { kernel, session } => {
            map.insert("kernel", Value::from(kernel.as_str()));
            map.insert("session", Value::from(session.as_str()));
            "unsubscribe"
        }
        MonitorEvent::Error { kernel, message } => {
            map.insert("kernel", Value::from(kernel.clone()));
            map.insert("message", Value::from(message.as_str()));
            "error"
        }
        MonitorEvent::Shutdown => "shutdown",
    };
    map.insert("event", Value::from(name));
    Value::from(map)
}
