//! Transports a channel can run over.
//!
//! A channel needs any `Sink<pb::Frame> + Stream<Item = Result<pb::Frame, E>>`:
//! on sockets that is a tokio-util `Framed` with
//! [`FrameCodec`](ikc_proto::FrameCodec). [`memory`] connects two channels in
//! one process, for tests and for kernels that talk to themselves.

pub mod memory;
