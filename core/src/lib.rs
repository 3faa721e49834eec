//! # credflow-core
//!
//! The sans-IO heart of credflow: everything about keeping an OAuth 2.0 client-credentials token
//! valid and using it well, and nothing about sockets, clocks or threads.
//!
//! (The full architecture guide lands with the session type.)

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cast_possible_truncation
    )
)]

pub mod breaker;
pub mod classify;
pub mod env;
pub mod http;
pub mod lifecycle;
pub mod oauth;
pub mod ratelimit;
pub mod retry;
pub mod rng;
pub mod secret;
pub mod snapshot;
pub mod time;

pub use time::{Duration, Instant, UnixTime, WallClock};
