//! Asynchronous PostgreSQL through libpq (pq-sys): non-blocking connections in pipeline mode,
//! driven by the loop, and a per-loop pool that reconnects.

mod conn;
mod hosts;
mod pool;
mod result;

pub use conn::Statement;
pub use hosts::check_conninfo;
pub use pool::{BatchStep, PgPool, PoolOptions, PoolStats};
pub use result::{PgError, PgResult};
