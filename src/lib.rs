//! asyncloop: asynchronous I/O for C and C++ programs. The module map; docs/architecture.md
//! describes the layers (`capi -> http, pg -> net -> reactor`) and the rules they follow.

pub mod capi;
pub mod error;
pub mod http;
pub mod net;
pub mod pg;
pub mod reactor;
