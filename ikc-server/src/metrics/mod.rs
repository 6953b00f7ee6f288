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
//! | `ikc_request_duration_seconds` | histogram¹ | `session`, `event` | from the request's arrival to its answer (a post: to the end of its handler); buckets 50 µs to 10 s |
//! | `ikc_requests_in_flight` | gauge | | requests running now |
//! | `ikc_connections_accepted_total` | counter | | connections the server took |
//! | `ikc_connections_refused_total` | counter | | connections refused or failed in the handshake |
//! | `ikc_connections_aborted_total` | counter | | connections aborted at the end of the grace period |
//! | `ikc_connections_open` | gauge | | connections served now |
//! | `ikc_keepalive_drops_total` | counter | | connections dropped because the peer stayed silent past the keepalive (no answer to `Ping`) |
//! | `ikc_bytes_received_total` | counter | | bytes read from peers (after TLS, handshake included) |
//! | `ikc_bytes_sent_total` | counter | | bytes written to peers (after TLS) |
//!
//! ¹ Written as the series of a Prometheus histogram, so that a request
//! costs a few atomic adds rather than a sample in the recorder's
//! histogram: `ikc_request_duration_seconds_bucket{le}` and `_count` are
//! counters, `_sum` (seconds) a gauge that only grows. `histogram_quantile`
//! and `rate(_sum) / rate(_count)` read them as they read a histogram.
//!
//! The request metrics reach the recorder when they are flushed: every
//! second, and on [`flush`], which a scrape should call first (`ikc serve
//! --metrics` does); the connection metrics go straight to it.
//!
//! Labels are bounded: a request whose target does not exist (`NoSession`,
//! `NoEvent`, `NoKernel`) counts under `session="-"` and
//! `event="-"`, so a peer cannot grow the label set by sending names.

mod bytes;
mod layer;

pub(crate) use self::bytes::Counted;
pub use self::layer::{MetricsLayer, flush};

use ikc_core::channel::ChannelError;

use crate::BoxError;
use crate::run::ConnectionOutcome;

/// A connection the server took: counted, and open until [`ended`].
pub(crate) fn accepted() {
    ::metrics::counter!("ikc_connections_accepted_total").increment(1);
    ::metrics::gauge!("ikc_connections_open").increment(1.0);
}

/// A connection [`accepted`] ended with `outcome`.
pub(crate) fn ended(outcome: &Result<ConnectionOutcome, BoxError>) {
    ::metrics::gauge!("ikc_connections_open").decrement(1.0);
    let name = match outcome {
        Ok(ConnectionOutcome::Closed) => return,
        Ok(ConnectionOutcome::Aborted) => "ikc_connections_aborted_total",
        Ok(ConnectionOutcome::Refused) => "ikc_connections_refused_total",
        Err(error) => match error.downcast_ref::<ChannelError>() {
            Some(ChannelError::Silent { .. }) => "ikc_keepalive_drops_total",
            // A channel that ran and failed (the peer vanished, broke
            // the protocol): counted with the connections that closed.
            Some(_) => return,
            None => "ikc_connections_refused_total",
        },
    };
    ::metrics::counter!(name).increment(1);
}
