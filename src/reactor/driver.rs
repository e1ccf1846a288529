//! The two drivers behind one completion interface.

use std::io;
use std::time::Duration;

use super::epoll::EpollDriver;
use super::op::{Completion, Op};
use super::token::Token;
use super::uring::UringDriver;

/// Which kernel interface a loop runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring only; creating the loop fails where it is unavailable.
    Uring,
    /// epoll.
    Epoll,
}

impl Backend {
    /// Parses `auto`, `uring`/`io_uring` or `epoll` (as in `ASYNCLOOP_BACKEND`).
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Backend::Auto),
            "uring" | "io_uring" | "iouring" => Some(Backend::Uring),
            "epoll" => Some(Backend::Epoll),
            _ => None,
        }
    }

    /// Lower-case name: "auto", "uring", "epoll".
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// A running driver.
pub enum Driver {
    Uring(UringDriver),
    Epoll(EpollDriver),
}

macro_rules! both {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Driver::Uring($d) => $e,
            Driver::Epoll($d) => $e,
        }
    };
}

impl Driver {
    pub fn backend(&self) -> Backend {
        match self {
            Driver::Uring(_) => Backend::Uring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }
    pub fn submit(&mut self, token: Token, op: &Op) -> io::Result<()> {
        both!(self, d => d.submit(token, op))
    }
    pub fn cancel(&mut self, token: Token, op: &Op) -> io::Result<()> {
        both!(self, d => d.cancel(token, op))
    }
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        both!(self, d => d.wait(timeout, out))
    }
    /// Completions the driver already has without asking the kernel (epoll: sends and
    /// connects finished at submission, cancellations), for the loop to report in the turn
    /// that made them.
    pub fn take_ready(&mut self, out: &mut Vec<Completion>) {
        match self {
            Driver::Uring(_) => {}
            Driver::Epoll(d) => d.take_ready(out),
        }
    }
    pub fn buffer(&mut self, bid: u16) -> *mut u8 {
        both!(self, d => d.buffer(bid))
    }
    pub fn recycle(&mut self, bid: u16) {
        both!(self, d => d.recycle(bid))
    }
}
