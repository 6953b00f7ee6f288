//! ikc-cli: the `ikc` command line, and the load generator and demo session
//! it is built from.
//!
//! The `ikc` binary serves the demo session (`ikc serve`, pre-forked with
//! `--workers`), calls, posts, pings and monitors running servers, and loads
//! them with calls (`ikc bench`). The library part holds what the binary and
//! the benchmark peers (`examples/bench_peer_*.rs`) share; applications use
//! the `ikc` library crate, which depends on none of this.
//!
//! # Modules
//!
//! | module | the one idea it holds |
//! |--------|-----------------------|
//! | [`alloc`] | [`Mimalloc`](alloc::Mimalloc), the global allocator of the binary and the benchmark peers (the `mimalloc` feature) |
//! | [`bench`](mod@bench) | the closed-loop load generator behind `ikc bench`, and its report |
//! | [`demo`] | the `echo` session that `ikc serve` publishes |
//! | [`metrics`] | the Prometheus endpoint of `ikc serve --metrics` |
//! | `otlp` | the OTLP span export of `--otlp ENDPOINT` (the `otel` feature) |
//!
//! The binary (`src/main.rs`) parses the command line with clap, sets up
//! logging with tracing-subscriber and allocates with mimalloc (the
//! `mimalloc` feature, on by default).

#![deny(unsafe_code)]

#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
pub mod alloc;
pub mod bench;
pub mod demo;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otlp;
