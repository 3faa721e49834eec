//! # credflow-embedded-tls
//!
//! The [`Connector`](credflow_embedded::Connector) a `credflow-embedded` device needs to reach
//! Genesys Cloud, which speaks only HTTPS: DNS and TCP from any `embedded-nal-async` stack
//! (embassy-net's `DnsSocket` and `TcpClient`), TLS 1.3 from embedded-tls, the server's
//! certificate verified against a CA the device holds.
//!
//! It is the README's example, compiled: the host test (`tests/emulator_tls.rs`) drives the
//! credflow client through it to the HTTPS emulator over tokio TCP, and the board firmware
//! (`boards/`) links it over embassy-net.
//!
//! ## RAM
//!
//! | what | size | where |
//! |---|---|---|
//! | TLS read record buffer | 16 640 B (a full 16 KiB record plus overhead) | [`TlsBuffers`], static |
//! | TLS write record buffer | 4 096 B (the ClientHello, request heads and bodies; longer writes are split into records) | [`TlsBuffers`], static |
//! | TCP socket buffers | the stack's (embassy-net `TcpClientState`: e.g. 2 × 1 KiB) | static |
//! | credflow `tx` | 1 KiB (one request head with the token; the token request) | the caller's |
//! | credflow `rx` | the largest response read (4 KiB for a token response and small API answers) | the caller's |
//! | certificate verification | [`CERT_CAPACITY`] (the server's chain, kept during the handshake) | the connect future |
//!
//! The read record buffer dominates: a server sends records of up to 16 KiB of plaintext
//! (RFC 8446 §5.1), and embedded-tls decrypts a record in place, so the whole record must
//! fit. A smaller buffer gets [`StreamError`] with kind `OutOfMemory` as soon as a larger
//! record arrives; the `max_fragment_length` extension (RFC 6066 §4) that would let a client
//! ask for smaller records is ignored by most servers (rustls does not implement it).

#![no_std]
#![warn(missing_docs)]

mod buffers;
mod connector;

pub use buffers::TlsBuffers;
pub use connector::{CERT_CAPACITY, ConnectError, StreamError, TlsConnector, TlsStream};
