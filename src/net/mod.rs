//! TCP and Unix stream sockets on the loop: listeners (SO_REUSEPORT, IPv4/IPv6, port 0, Unix
//! paths whose stale files are replaced), streams (connect with timeout,
//! read start/stop, queued writev writes, shutdown, close; a stream may carry its owner's
//! per-connection state, see `Stream`), socket options and addresses, host names resolved off
//! the loop and their addresses tried in turn; TLS (rustls) as a transform of a stream
//! (`tls`).

mod addr;
pub(crate) mod connect;
mod listener;
pub(crate) mod resolve;
pub(crate) mod socket;
mod stream;
pub mod tls;
mod unix;

pub use addr::{parse_ip_port, Address, SockAddr};
pub use listener::{ListenOptions, TcpListener};
pub use socket::set_opt as set_socket_option;
pub use stream::{Callbacks, ReadEvent, Stream, StreamEvents, TcpStream, WeakStream};
