//! TLS on rustls (ring provider) as a transform of a `Stream`: the stream decrypts what it
//! receives before its owner's `on_read` sees it and seals what its owner writes into the
//! same write queue, so the HTTP server and client run unchanged over TLS, on both backends.
//!
//! - `config`: server and client configurations (PEM certificate chains and keys, client
//!   certificate verification, trusted roots: the system's or a CA file).
//! - `session`: one connection's TLS state driven over rustls' unbuffered API; no I/O.
//! - `stream`: the hooks of `Stream` that run a session over the stream's receive buffers and
//!   write queue.
//! - `verify`: certificate verification with distinct failures (self-signed among them).
//!
//! Every failure has a code (`Error::TLS_*`) and a reason text (`TlsError`).

mod config;
/// Fuzz harness, compiled only with the `fuzzing` feature (fuzz target, corpus replay).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_support;
mod session;
mod stream;
mod verify;

pub use config::{
    TlsClientConfig, TlsClientOptions, TlsServerConfig, TlsServerOptions, TlsVersion, ALPN_HTTP1,
};
pub use session::{Progress, TlsSession};
pub use stream::TlsInfo;

use crate::error::Error;

/// A TLS failure: its code (`Error::TLS_*`, or `INVALID` for a bad argument) and a readable
/// reason, such as rustls' "invalid peer certificate: certificate expired: ...".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError {
    pub code: Error,
    pub reason: String,
}

impl TlsError {
    pub fn new(code: Error, reason: impl Into<String>) -> TlsError {
        TlsError {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Error {
        e.code
    }
}
