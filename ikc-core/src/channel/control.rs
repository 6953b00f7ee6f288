//! Control: what keeps a channel alive and says how it ends, besides calls
//! and their answers.
//!
//! Once per wake-up of the driver: the keepalive (a `Ping` to a silent
//! peer, the end of one that stays silent), the sweep that times our calls
//! out, and a drain asked for by [`ChannelHandle::go_away`](super::ChannelHandle::go_away)
//! (our `GoAway`). From the peer: `Ping`, `Pong`, `GoAway`, `Subscribe`,
//! `Unsubscribe`, and errors not about a call.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use ikc_proto::pb;
use tokio::time::Instant;

use super::keepalive::{Keepalive, Probe};
use super::outbox::Outbox;
use super::shared::Shared;
use super::{ChannelContext, ChannelError};
use crate::IkcError;
use crate::monitor::MonitorEvent;

/// How often the driver looks for calls of ours past their deadline; a
/// timeout fires up to this much late.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// The time of one wake-up of the driver: the clock, read at the first use
/// and kept for the rest of it. Deadlines of the requests read in one
/// wake-up are approximate anyway (the caller enforces its own), and
/// reading the clock per request is not free.
#[derive(Debug, Default)]
pub(super) struct Clock(Option<Instant>);

impl Clock {
    pub(super) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }

    /// A new wake-up: the clock is read again when next needed.
    pub(super) fn reset(&mut self) {
        self.0 = None;
    }
}

/// A channel's control state; see the [module docs](self).
pub(super) struct Control {
    keepalive: Option<Keepalive>,
    /// Wakes the driver to time out our calls; polled only while some wait.
    sweep: Pin<Box<tokio::time::Sleep>>,
    /// Frames arrived since the keepalive last looked.
    pub(super) heard: bool,
    /// We sent `GoAway`: new requests are refused.
    pub(super) draining: bool,
}

impl Control {
    pub(super) fn new(keepalive: Option<Duration>) -> Self {
        Control {
            keepalive: keepalive.map(Keepalive::new),
            sweep: Box::pin(tokio::time::sleep(SWEEP_EVERY)),
            heard: false,
            draining: false,
        }
    }

    /// The timers and the drain, looked at once per wake-up, not per turn
    /// of the driver's loop: polling a timer is not free, and a busy
    /// connection turns the loop often. `reading` is false once nothing
    /// more is read (the keepalive then has nothing to hear). An error
    /// when the peer is gone.
    pub(super) fn poll(
        &mut self,
        shared: &Shared,
        reading: bool,
        last_request_id: u64,
        outbox: &mut Outbox,
        cx: &mut Context<'_>,
    ) -> Result<(), ChannelError> {
        if reading {
            let heard = std::mem::take(&mut self.heard);
            match self.keepalive.as_mut().and_then(|k| k.poll(heard, cx)) {
                None => {}
                Some(Probe::Ping(nonce)) => outbox.push_frame(pb::Ping { nonce }),
                Some(Probe::Dead) => {
                    let silent = self
                        .keepalive
                        .as_ref()
                        .map_or(Duration::ZERO, |k| k.interval * 2);
                    tracing::debug!(peer = %shared.peer.kernel, ?silent, "peer silent past the keepalive, closing");
                    shared.close();
                    return Err(ChannelError::Silent { silent });
                }
            }
        }

        if shared.has_pending() && self.sweep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            for id in shared.expire(now) {
                outbox.push_frame(pb::Cancel { id });
            }
            self.sweep.as_mut().reset(now + SWEEP_EVERY);
            // Register for the next sweep.
            let _ = self.sweep.as_mut().poll(cx);
        }

        if !self.draining && shared.drain_requested() {
            self.draining = true;
            outbox.push_frame(pb::GoAway {
                reason: "shutting down".to_owned(),
                last_id: last_request_id,
            });
        }
        Ok(())
    }

    /// Handles a control frame from the peer (the driver handles calls,
    /// answers and cancels).
    pub(super) fn on_frame(
        kind: pb::frame::Kind,
        shared: &Shared,
        context: &ChannelContext,
        outbox: &mut Outbox,
    ) {
        use pb::frame::Kind;
        let peer = &shared.peer.kernel;
        match kind {
            Kind::Ping(ping) => outbox.push_frame(pb::Pong { nonce: ping.nonce }),
            Kind::Pong(_) => {}
            Kind::GoAway(go_away) => {
                tracing::debug!(%peer, reason = %go_away.reason, "peer is going away");
                shared.set_peer_going_away(go_away.last_id);
            }
            Kind::Subscribe(subscribe) => {
                if context.sessions.is_published(&subscribe.session) {
                    context.emit(MonitorEvent::Subscribe {
                        kernel: peer.clone(),
                        session: subscribe.session,
                    });
                    outbox.push_frame(pb::Reply {
                        id: subscribe.id,
                        value: None,
                    });
                } else {
                    outbox.push_error(subscribe.id, &IkcError::no_session(&subscribe.session));
                }
            }
            Kind::Unsubscribe(unsubscribe) => context.emit(MonitorEvent::Unsubscribe {
                kernel: peer.clone(),
                session: unsubscribe.session,
            }),
            Kind::Error(error) if error.id == 0 => {
                let error = IkcError::from_proto(error);
                tracing::debug!(%peer, %error, "peer reported an error");
                context.emit(MonitorEvent::Error {
                    kernel: Some(peer.clone()),
                    message: error.to_string(),
                });
            }
            Kind::Request(_) | Kind::Reply(_) | Kind::Error(_) | Kind::Cancel(_) => {
                tracing::trace!("a call's frame offered as control; ignored");
            }
        }
    }
}
