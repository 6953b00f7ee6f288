//! ikc-prefork (in progress).
#![forbid(unsafe_code)]
