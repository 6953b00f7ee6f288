//! The connection layers (trace, limit, shutdown) serve any connection type
//! that is a `ServedConnection`, as tower's layers serve any request type:
//! a stack of the user's own over its own connection type drains, counts
//! and refuses like the server's.

mod support;

use std::convert::Infallible;

use futures::FutureExt;
use ikc_server::limit::ConnectionLimitLayer;
use ikc_server::shutdown::{Shutdown, ShutdownMonitorLayer};
use ikc_server::trace::ConnectionTraceLayer;
use ikc_server::{PeerAddr, ServedConnection};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceBuilder, ServiceExt};

use support::within;

/// A connection of the test's own: it runs until told to drain.
struct Line {
    peer: PeerAddr,
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Line {
    fn new() -> Self {
        Line {
            peer: PeerAddr::Tcp("127.0.0.1:4000".parse().unwrap()),
            drain: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }
}

impl ServedConnection for Line {
    fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    fn set_drain(&mut self, token: CancellationToken) {
        self.drain = token;
    }

    fn set_abort(&mut self, token: CancellationToken) {
        self.abort = token;
    }
}

/// Serves a line until it is told to drain; answers how it ended.
async fn serve(line: Line) -> Result<&'static str, Infallible> {
    tokio::select! {
        () = line.drain.cancelled() => Ok("drained"),
        () = line.abort.cancelled() => Ok("aborted"),
    }
}

#[tokio::test]
async fn the_connection_layers_serve_a_connection_type_of_the_users_own() {
    let shutdown = Shutdown::new();
    let mut stack = ServiceBuilder::new()
        .layer(ConnectionTraceLayer::new())
        .layer(ConnectionLimitLayer::new(1))
        .layer(ShutdownMonitorLayer::new(shutdown.clone()))
        .service_fn(serve);

    let first = within("room for one", stack.ready())
        .await
        .expect("not draining")
        .call(Line::new());
    let first = tokio::spawn(first);
    assert_eq!(shutdown.connections(), 1, "the shutdown layer tracks it");

    // The limit holds a second connection back while the first runs.
    assert!(
        stack.ready().now_or_never().is_none(),
        "a second connection waits for the limit"
    );

    shutdown.drain();
    let ended = within("the first to drain", first).await.unwrap();
    assert_eq!(ended.expect("served"), "drained");
    within("every connection to end", shutdown.wait()).await;

    // Draining: a new connection is refused, not served.
    let refused = within("the refusal", stack.ready()).await;
    assert!(refused.is_err(), "a draining stack refuses new connections");
}
