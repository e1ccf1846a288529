//! Asynchronous PostgreSQL through libpq (pq-sys): non-blocking connections in pipeline mode,
//! driven by the loop; a per-loop pool that reconnects and routes read-only work to replicas;
//! interactive transactions on leased connections; COPY in both directions; LISTEN/NOTIFY.

mod backoff;
mod conn;
mod copy;
mod hosts;
mod lease;
mod notify;
mod pipeline;
mod pool;
mod result;
mod txn;
mod value;

pub use copy::{CopyDoneCb, CopyIn, CopyOut, Flow};
pub use hosts::check_conninfo;
pub use notify::{ListenerOptions, Notification, PgListener};
pub use pipeline::Statement;
pub use pool::{BatchStep, PgPool, PoolOptions, PoolStats, QueryOptions};
pub use result::{PgError, PgResult};
pub use txn::{EndCb, Isolation, Transaction, TxnOptions};
pub use value::{oid, ValueError};
