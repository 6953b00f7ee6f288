//! [`PeerLimits`]: what a peer announced about itself in the handshake.

use std::time::Duration;

use ikc_proto::pb;

/// The limits a peer announced in its `Hello` or `Welcome` (the protocol's
/// `Limits`); `None` where it announced nothing (0 on the wire: a legacy
/// peer, an in-memory channel, an older client).
///
/// Given to [`ChannelBuilder::peer_limits`](super::ChannelBuilder::peer_limits),
/// and read back with [`ChannelHandle::peer_limits`](super::ChannelHandle::peer_limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PeerLimits {
    /// The largest frame the peer accepts, in bytes.
    pub max_frame_length: Option<usize>,
    /// Requests the peer runs at once on this connection before it answers
    /// `Overloaded`: the channel keeps its calls within it.
    pub max_in_flight: Option<usize>,
    /// How long the peer waits on a silent connection before it sends a
    /// `Ping`.
    pub keepalive: Option<Duration>,
}

impl PeerLimits {
    /// The limits in a handshake's `Limits` (none when it has none).
    #[must_use]
    pub fn from_proto(limits: Option<&pb::Limits>) -> Self {
        let Some(limits) = limits else {
            return PeerLimits::default();
        };
        let announced = |n: u32| (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX));
        PeerLimits {
            max_frame_length: announced(limits.max_frame_len),
            max_in_flight: announced(limits.max_in_flight),
            keepalive: (limits.keepalive_ms > 0)
                .then(|| Duration::from_millis(u64::from(limits.keepalive_ms))),
        }
    }

    /// The largest frame we may send this peer: `own` limit, or less if the
    /// peer announced less.
    #[must_use]
    pub fn frame_limit(&self, own: usize) -> usize {
        self.max_frame_length.map_or(own, |peer| own.min(peer))
    }

    /// Sets [`max_in_flight`](Self::max_in_flight) (`None` for 0).
    #[must_use]
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = (requests > 0).then_some(requests);
        self
    }

    /// Sets [`keepalive`](Self::keepalive) (`None` for zero).
    #[must_use]
    pub fn with_keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval.filter(|i| !i.is_zero());
        self
    }
}

/// A keepalive interval as the handshake announces it: whole milliseconds,
/// at least 1 for a nonzero interval (0 means none), at most `u32::MAX`.
#[must_use]
pub fn keepalive_ms(interval: Option<Duration>) -> u32 {
    interval.map_or(0, |i| {
        u32::try_from(i.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_on_the_wire_is_not_announced_and_the_rest_is_read_as_sent() {
        assert_eq!(PeerLimits::from_proto(None), PeerLimits::default());
        let none = pb::Limits {
            max_frame_len: 0,
            max_in_flight: 0,
            keepalive_ms: 0,
        };
        assert_eq!(PeerLimits::from_proto(Some(&none)), PeerLimits::default());
        let some = pb::Limits {
            max_frame_len: 4096,
            max_in_flight: 8,
            keepalive_ms: 1500,
        };
        assert_eq!(
            PeerLimits::from_proto(Some(&some)),
            PeerLimits {
                max_frame_length: Some(4096),
                max_in_flight: Some(8),
                keepalive: Some(Duration::from_millis(1500)),
            }
        );
    }

    #[test]
    fn frames_sent_keep_within_the_smaller_of_both_limits() {
        let silent = PeerLimits::default();
        assert_eq!(silent.frame_limit(1 << 20), 1 << 20);
        let small = PeerLimits {
            max_frame_length: Some(4096),
            ..PeerLimits::default()
        };
        assert_eq!(small.frame_limit(1 << 20), 4096);
        assert_eq!(small.frame_limit(1024), 1024);
    }

    #[test]
    fn a_keepalive_is_announced_in_whole_milliseconds_and_never_as_zero() {
        assert_eq!(keepalive_ms(None), 0);
        assert_eq!(keepalive_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(keepalive_ms(Some(Duration::from_millis(250))), 250);
        assert_eq!(keepalive_ms(Some(Duration::from_secs(u64::MAX))), u32::MAX);
    }
}
