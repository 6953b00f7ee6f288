//! Metrics for operators, through the [`metrics`](::metrics) facade: the
//! server records, the application installs the recorder it exports with
//! (`metrics-exporter-prometheus`, as `ikc serve --metrics ADDR` does, or
//! any other). Without a recorder, recording does nothing.
//!
//! - [`MetricsLayer`]: per session and event, requests, errors by kind and
//!   latency, and the requests in flight; added by
//!   [`Server::metrics`](crate::Server::metrics).
//! - Connection counters, recorded by every server.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `ikc_requests_total` | counter | `session`, `event`, `kind` (`call`/`post`) | requests a peer sent, counted when they end |
//! | `ikc_request_errors_total` | counter | `session`, `event`, `error` (an `ErrorKind`, e.g. `Handler`) | requests that ended with an error |
//! | `ikc_request_duration_seconds` | histogram | `session`, `event` | from the request's arrival to its answer (a post: to the end of its handler) |
//! | `ikc_requests_in_flight` | gauge | | requests running now |
//! | `ikc_connections_accepted_total` | counter | | connections the server took |
//! | `ikc_connections_refused_total` | counter | | connections refused or failed in the handshake |
//! | `ikc_connections_aborted_total` | counter | | connections aborted at the end of the grace period |
//! | `ikc_connections_open` | gauge | | connections served now |
//!
//! Labels are bounded: a request whose target does not exist (`NoSession`,
//! `NoEvent`, `NoKernel`) counts under `session="-"` and
//! `event="-"`, so a peer cannot grow the label set by sending names.

mod layer;

pub use self::layer::MetricsLayer;

use crate::run::ConnectionOutcome;

/// A connection the server took: counted, and open until [`ended`].
pub(crate) fn accepted() {
    ::metrics::counter!("ikc_connections_accepted_total").increment(1);
    ::metrics::gauge!("ikc_connections_open").increment(1.0);
}

/// A connection [`accepted`] ended with `outcome` (`None`: it failed).
pub(crate) fn ended(outcome: Option<ConnectionOutcome>) {
    ::metrics::gauge!("ikc_connections_open").decrement(1.0);
    match outcome {
        Some(ConnectionOutcome::Refused) | None => {
            ::metrics::counter!("ikc_connections_refused_total").increment(1);
        }
        Some(ConnectionOutcome::Aborted) => {
            ::metrics::counter!("ikc_connections_aborted_total").increment(1);
        }
        Some(ConnectionOutcome::Closed) => {}
    }
}
