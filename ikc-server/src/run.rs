//! A connection's channel run to its end, and how the connection ended:
//! the last step of the native and the Perl paths alike.

use ikc_core::ChannelHandle;
use ikc_core::transport::Transport;
use tokio_util::sync::CancellationToken;

use crate::BoxError;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionOutcome {
    /// The peer closed it, or it drained after a graceful close.
    Closed,
    /// The handshake was refused or failed.
    Refused,
    /// It was aborted (the shutdown grace period ran out).
    Aborted,
}

/// Runs a connection's channel until it ends: told to drain, it sends
/// `GoAway` and finishes what it accepted; told to abort, it stops at once.
pub(crate) async fn run_channel<T: Transport>(
    handle: &ChannelHandle,
    driver: ikc_core::channel::ChannelDriver<T>,
    drain: &CancellationToken,
    abort: &CancellationToken,
) -> Result<ConnectionOutcome, BoxError> {
    let mut driver = std::pin::pin!(driver);
    tokio::select! {
        result = &mut driver => return result.map(|()| ConnectionOutcome::Closed).map_err(Into::into),
        () = drain.cancelled() => handle.go_away(),
        () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
    }
    tokio::select! {
        result = &mut driver => result.map(|()| ConnectionOutcome::Closed).map_err(Into::into),
        () = abort.cancelled() => Ok(ConnectionOutcome::Aborted),
    }
}
