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

use crate::peers::{Peers, WeakPeers};
use crate::router::Routes;
use crate::sessions::WeakSessions;
use crate::{BoxError, ErrorKind, IkcError, MonitorEvent, Request, Specifier};

/// Name of the session every kernel publishes about itself.
pub const IKC_SESSION: &str = "IKC";

/// The events of the built-in session.
pub const IKC_EVENTS: [&str; 4] = ["ping", "published", "kernels", "monitor"];

/// Called when a peer asks the kernel to shut down.
pub(crate) type ShutdownHook = Arc<dyn Fn() + Send + Sync>;

/// The kernel's parts, held without keeping them alive: the session is one
/// of the kernel's sessions.
#[derive(Clone)]
struct Weak {
    names: Arc<crate::names::Names>,
    sessions: WeakSessions,
    peers: WeakPeers,
}

impl Weak {
    fn upgrade(&self) -> Option<Routes> {
        Some(Routes {
            names: Arc::clone(&self.names),
            sessions: self.sessions.upgrade()?,
            peers: self.peers.upgrade()?,
        })
    }
}

/// Publishes the `IKC` session among `routes`' sessions (again, to add
/// `shutdown`).
pub(crate) fn publish(routes: &Routes, shutdown: Option<ShutdownHook>) {
    let weak = Weak {
        names: Arc::clone(&routes.names),
        sessions: routes.sessions.downgrade(),
        peers: routes.peers.downgrade(),
    };
    let mut events = IKC_EVENTS.to_vec();
    if shutdown.is_some() {
        events.push("shutdown");
    }
    let service = service_fn(move |req: Request| {
        let routes = weak.upgrade();
        let weak = weak.clone();
        let shutdown = shutdown.clone();
        async move {
            let routes =
                routes.ok_or_else(|| IkcError::new(ErrorKind::ShuttingDown, "kernel is gone"))?;
            match req.event() {
                "monitor" => forward_monitor(&routes.peers, weak, req.arg())?,
                "shutdown" => {
                    if let Some(hook) = shutdown {
                        tracing::info!(
                            from = req.from().unwrap_or("?"),
                            "shutdown requested by a peer"
                        );
                        hook();
                    }
                }
                event => return Ok::<_, BoxError>(answer(&routes, event)),
            }
            Ok(Value::Null)
        }
    });
    routes
        .sessions
        .publish(IKC_SESSION, events, service)
        .expect("built-in names are valid");
}

fn answer(routes: &Routes, event: &str) -> Value {
    match event {
        "ping" => Value::from(BTreeMap::from([
            ("kernel", Value::from(routes.names.name())),
            ("pid", Value::from(routes.names.pid())),
        ])),
        "published" => Value::from(
            routes
                .sessions
                .list()
                .into_iter()
                .map(|(session, events)| (session, Value::from(events)))
                .collect::<BTreeMap<_, _>>(),
        ),
        "kernels" => routes
            .peers
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
fn forward_monitor(peers: &Peers, kernel: Weak, target: &Value) -> Result<(), IkcError> {
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
    let mut monitor = peers.monitor().subscribe();
    tokio::spawn(async move {
        while let Some(event) = monitor.next_event().await {
            let gone = matches!(&event, MonitorEvent::Unregister { kernel } if *kernel == watcher);
            let Some(routes) = kernel.upgrade() else {
                break;
            };
            if gone || routes.post(&target, event_value(&event)).await.is_err() {
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
