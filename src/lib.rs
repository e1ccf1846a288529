//! asyncloop: asynchronous I/O for C and C++ programs. The module map; see DESIGN.md.

pub mod capi;
pub mod error;
pub mod http;
pub mod net;
pub mod pg;
pub mod reactor;
