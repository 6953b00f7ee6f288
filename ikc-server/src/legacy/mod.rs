//! Talking to Perl POE::Component::IKC peers (IKC 0.2402, "legacy mode").
//!
//! A Perl peer speaks another protocol (documented, with byte captures, in
//! the project's `reference/perl-ikc/WIRE.md`): negotiation lines, then
//! `<decimal length>\0<Storable image>` frames carrying Perl hashes. This
//! module adapts it to the native model instead of running a second stack:
//! once negotiated, a legacy connection is a [`LegacyTransport`], a `Sink +
//! Stream` of [`pb::Frame`](ikc_proto::pb::Frame)s, and the core
//! [`Channel`](ikc_core::Channel) runs over it as over a native socket. The
//! peer is registered with the kernel like any peer (it shows on the
//! monitor bus), its calls go through the router and the server's request
//! layers, and the server can call sessions it publishes.
//!
//! ```text
//!  Perl peer ── lines ──> handshake ──> LegacyTransport ──> Channel ──> Router
//!            <─ frames ──  (SETUP /      (Storable hashes      (the same as
//!                           HELLO)        <-> pb::Frame)        for native peers)
//! ```
//!
//! - [`codec`]: the negotiation line codec (terminator detection as
//!   POE::Filter::Line) and the frame codec, both bounded.
//! - [`storable`]: Storable's network-order format, read and written for
//!   the types IKC messages carry, mapped to and from
//!   [`Value`](ikc_proto::Value).
//! - The negotiation: IKC0 `SETUP` and the old `HELLO` ... `WORLD` dialect,
//!   server and client sides.
//! - The translation of messages: a request hash `{event, params, from,
//!   rsvp, wantarray}` with an `rsvp` is a call, without one a post
//!   (ClientLite's `post_respond`, whose reply address travels in `params`,
//!   is a call too); the answer goes to the `rsvp` as Perl expects it, and a
//!   failure is an `IKC/remote_error` message worded as Perl IKC words it.
//!   `IKC/ping` is answered `PONG` and `IKC/do_you_have` (a POE client's
//!   subscription) is a `Subscribe`.
//!
//! The server tells the protocols apart by the first bytes: `IKC` starts a
//! native preface, `SETUP` or `HELLO` a legacy line
//! ([`Server::legacy`](crate::Server::legacy), on by default). A client
//! reaches a Perl server with
//! [`Client::connect_legacy`](crate::Client::connect_legacy).
//!
//! # Differences from Perl IKC
//!
//! - Only the Storable serializer is spoken. `FREEZER=POE::Component::IKC::Freezer`
//!   (Data::Dumper text, thawed with `eval`) is refused with `NOT`.
//! - A call whose handler returns null is answered `undef`; Perl sends no
//!   answer at all and leaves ClientLite waiting for its timeout.
//! - The kernel part of a target is ignored, as in Perl, unless it names
//!   another kernel connected to this one: then the request is routed
//!   there (a server is a hub for legacy peers too).
//! - A message that cannot be read is answered with an error message; Perl
//!   dies, and takes every connection with it.
//! - Perl sends big integers and floats as strings; they arrive as
//!   [`Value::String`](ikc_proto::Value::String). A handler that takes
//!   numbers from Perl peers should accept numeric strings.

pub mod codec;
mod error;
mod handshake;
mod message;
mod serve;
pub mod storable;
mod translate;
mod transport;

pub use self::error::LegacyError;
pub use self::serve::negotiate;
pub(crate) use self::serve::{Accept, Protocol, serve, sniff};
pub use self::transport::LegacyTransport;
