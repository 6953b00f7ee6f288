//! [`Translator`]: turns legacy message hashes into ikc frames and back,
//! keeping the tables that pair each call with its answer.
//!
//! From the peer:
//!
//! | legacy message                                        | becomes                               |
//! |-------------------------------------------------------|---------------------------------------|
//! | request with `rsvp`                                   | `Request` (a call; `rsvp` remembered) |
//! | request without `rsvp`, params `[data, <our rsvp>]`   | a call answered to that rsvp (`post_respond`) |
//! | request without `rsvp`                                | `Request` id 0 (a post)               |
//! | state `IKC:proxy`, params `[state, [args]]`           | a request for that state              |
//! | `IKC/ping`                                            | answered `PONG` here                  |
//! | `IKC/do_you_have`                                     | `Subscribe`                           |
//! | `is_error` / `IKC/remote_error`                       | `Error` for our call it names, else `Error` id 0 |
//! | a message to `IKCLite/response<id>`                   | `Reply` to our call `id`              |
//!
//! The kernel part of a target is ignored, as Perl IKC ignores it, unless it
//! names another kernel connected here: then the request is routed there.
//!
//! To the peer: `Reply` and `Error` become the reply to the remembered
//! `rsvp` or an `IKC/remote_error` message worded as Perl IKC words it;
//! our `Request`s and `Subscribe`s become requests as ClientLite sends
//! them. Errors for posts are sent too, as Perl IKC does (for the target
//! checks; a post's handler failing is only logged here).

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use ikc_core::{Kernel, PeerInfo};
use ikc_proto::{Value, pb};

mod from_peer;
mod to_peer;

use super::message::{Address, RequestNames, remote_error};
use super::storable;

/// A call from the peer, waiting for our answer.
#[derive(Debug)]
enum Incoming {
    Call {
        rsvp: Value,
        wantarray: bool,
        names: RequestNames,
    },
    Subscribe {
        rsvp: Value,
        session: Address,
    },
}

/// A call of ours, waiting for the peer's answer.
#[derive(Debug)]
enum Outgoing {
    /// The event text sent, to pair an error message with the call.
    Call {
        event: String,
    },
    Subscribe,
}

/// What translating produced: frames for our channel, messages for the peer.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) inbound: VecDeque<pb::Frame>,
    pub(crate) outbound: VecDeque<Bytes>,
}

/// The state of one legacy connection's translation; see the
/// [module docs](self).
#[derive(Debug)]
pub(crate) struct Translator {
    kernel: Kernel,
    peer: PeerInfo,
    max_frame_length: usize,
    incoming: HashMap<u64, Incoming>,
    next_incoming: u64,
    /// Ordered: an error message names no call id, and Perl answers
    /// requests in order, so the oldest call with the named event is it.
    outgoing: BTreeMap<u64, Outgoing>,
}

impl Translator {
    pub(crate) fn new(kernel: Kernel, peer: PeerInfo, max_frame_length: usize) -> Self {
        Translator {
            kernel,
            peer,
            max_frame_length,
            incoming: HashMap::new(),
            next_incoming: 1,
            outgoing: BTreeMap::new(),
        }
    }

    /// Encodes `message` for the peer; the encoded length when it is over
    /// the maximum frame length.
    fn emit(&self, out: &mut Output, message: &Value) -> Result<(), usize> {
        match storable::to_vec(message) {
            Ok(bytes) if bytes.len() <= self.max_frame_length => {
                out.outbound.push_back(Bytes::from(bytes));
                Ok(())
            }
            Ok(bytes) => Err(bytes.len()),
            Err(error) => {
                tracing::warn!(%error, "cannot encode a message for the legacy peer");
                Err(usize::MAX)
            }
        }
    }

    fn emit_error(&self, out: &mut Output, text: String, kernel: Value, when: &str) {
        let message = remote_error(&self.peer.kernel, text, kernel, when);
        if self.emit(out, &message).is_err() {
            tracing::warn!("error message for the legacy peer is too large; dropped");
        }
    }

    fn too_large(&self, len: usize) -> String {
        format!(
            "message of {len} bytes exceeds the maximum frame length of {} bytes",
            self.max_frame_length
        )
    }
}
