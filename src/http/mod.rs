//! HTTP/1.1 on llhttp: the request parser with limits, requests, responses, the Date cache, the
//! server (connections, pipelining, deferred responses, timeouts) and its router.

mod method;
pub mod parser;
pub mod request;

#[cfg(test)]
mod parser_tests;

pub use parser::{BodyMode, HttpError, Limits};
pub use request::{valid_method, RequestData};
pub mod client;
pub mod date;
/// Fuzz harnesses, compiled only with the `fuzzing` feature (fuzz targets, corpus replay).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_support;
pub(crate) mod head_cache;
mod prepared;
pub mod response;
pub mod response_parser;
pub mod router;
pub mod server;
mod target;
pub mod ws;

pub use prepared::PreparedResponse;
pub use server::{BodyEvent, ChunkedWriter, HttpServer, Request, ServerOptions};
