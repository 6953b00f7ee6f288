//! The `IKC` session every kernel publishes about itself: `ping`,
//! `published` and `kernels`.

use std::collections::BTreeMap;

use ikc_proto::Value;
use tower::service_fn;

use crate::kernel::IKC_SESSION;
use crate::{BoxError, ErrorKind, IkcError, Kernel, Request};

/// The events of the built-in session.
pub const IKC_EVENTS: [&str; 3] = ["ping", "published", "kernels"];

pub(crate) fn publish(kernel: &Kernel) {
    let weak = kernel.downgrade();
    let service = service_fn(move |req: Request| {
        let kernel = weak.upgrade();
        async move {
            let kernel =
                kernel.ok_or_else(|| IkcError::new(ErrorKind::ShuttingDown, "kernel is gone"))?;
            Ok::<_, BoxError>(answer(&kernel, req.event()))
        }
    });
    kernel
        .publish(IKC_SESSION, IKC_EVENTS, service)
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
