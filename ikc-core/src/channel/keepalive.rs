//! Keepalive: how a channel notices a peer that went silent.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

/// Detects a dead peer on a silent connection (half-open TCP): after
/// `interval` without a frame from the peer, send a Ping; after another
/// `interval` still without one, the peer is gone.
pub(super) struct Keepalive {
    pub(super) interval: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    last_heard: tokio::time::Instant,
    probing: bool,
    nonce: u64,
}

pub(super) enum Probe {
    Ping(u64),
    Dead,
}

impl Keepalive {
    pub(super) fn new(interval: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Keepalive {
            interval,
            timer: Box::pin(tokio::time::sleep_until(now + interval)),
            last_heard: now,
            probing: false,
            nonce: 0,
        }
    }

    /// `heard`: frames arrived since the last check. The timer is only
    /// moved when it fires, so a busy connection costs no timer updates.
    pub(super) fn poll(&mut self, heard: bool, cx: &mut Context<'_>) -> Option<Probe> {
        if heard {
            self.last_heard = tokio::time::Instant::now();
            self.probing = false;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            let now = tokio::time::Instant::now();
            if now < self.last_heard + self.interval {
                self.timer.as_mut().reset(self.last_heard + self.interval);
            } else if !self.probing {
                self.probing = true;
                self.nonce += 1;
                self.timer.as_mut().reset(now + self.interval);
                // Register for the new deadline: it decides whether the
                // peer is gone.
                let _ = self.timer.as_mut().poll(cx);
                return Some(Probe::Ping(self.nonce));
            } else {
                return Some(Probe::Dead);
            }
        }
    }
}
